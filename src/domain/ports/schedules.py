"""Schedules: the cron calendar (a library stands behind it) and the schedules' read side."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from compute_worker.domain.schedules import ScheduleState


class CronCalendar(Protocol):
    """Slot times of a cron expression in a timezone; every datetime is aware UTC."""

    def problem(self, cron: str, timezone: str) -> str | None:
        """Why ``cron`` in ``timezone`` is no schedule, or None when it is one."""
        ...

    def slots(self, cron: str, timezone: str, after: datetime, until: datetime,
              limit: int) -> list[datetime]:  # fmt: skip
        """The slots in ``(after, until]``, oldest first, ``limit`` at most."""
        ...

    def latest(self, cron: str, timezone: str, until: datetime) -> datetime | None:
        """The last slot at or before ``until``."""
        ...

    def next_after(self, cron: str, timezone: str, after: datetime) -> datetime | None:
        """The first slot after ``after``."""
        ...


class ScheduleReader(Protocol):
    async def list_schedules(self) -> list[ScheduleState]:
        """The active deployment's schedules, by name."""
        ...

    async def get_schedule(self, name: str) -> ScheduleState | None: ...
