"""``CronsimCalendar``: the cron calendar over ``cronsim`` and the standard ``zoneinfo``.

cronsim (the parser behind Healthchecks.io) reads the usual five fields, a sixth leading
*seconds* field (``*/10 * * * * *``: every ten seconds), ranges, steps, names, ``L``,
``W``, ``#`` and ``@daily``-style aliases; slots are computed in the schedule's timezone,
so a daily ``0 9 * * *`` in ``Europe/Paris`` follows daylight saving time. Also the check
the upload runs on every declared schedule (``schedule_problems``).
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from cronsim import CronSim, CronSimError

from compute_worker.domain.deployments import WorkflowInfo
from compute_worker.domain.ports.schedules import CronCalendar

MAX_CRON_LENGTH = 256
_SECOND = timedelta(seconds=1)


class CronsimCalendar(CronCalendar):
    def problem(self, cron: str, timezone: str) -> str | None:
        if not isinstance(cron, str) or not cron.strip():
            return "the cron expression is empty"
        if len(cron) > MAX_CRON_LENGTH:
            return f"the cron expression is longer than {MAX_CRON_LENGTH} characters"
        try:
            zone = _zone(timezone)
        except ValueError as exc:
            return str(exc)
        try:
            CronSim(cron, datetime.now(zone))
        except (CronSimError, ValueError, OverflowError) as exc:
            return f"invalid cron expression {cron!r}: {exc}"
        if self.next_after(cron, timezone, datetime.now(UTC)) is None:
            return f"the cron expression {cron!r} never comes due"
        return None

    def slots(self, cron: str, timezone: str, after: datetime, until: datetime,
              limit: int) -> list[datetime]:  # fmt: skip
        found: list[datetime] = []
        for slot in _iterate(cron, timezone, after, reverse=False):
            if slot > until or len(found) >= limit:
                break
            found.append(slot)
        return found

    def latest(self, cron: str, timezone: str, until: datetime) -> datetime | None:
        # cronsim's reverse walk starts at the given second itself when it matches
        return next(iter(_iterate(cron, timezone, until + _SECOND, reverse=True)), None)

    def next_after(self, cron: str, timezone: str, after: datetime) -> datetime | None:
        return next(iter(_iterate(cron, timezone, after, reverse=False)), None)


def _zone(name: str) -> zoneinfo.ZoneInfo:
    if not isinstance(name, str) or not name:
        raise ValueError("the timezone is empty")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown timezone {name!r} (an IANA name, e.g. Europe/Paris)") from None


def _iterate(cron: str, timezone: str, start: datetime, *, reverse: bool) -> Iterable[datetime]:
    """Slots strictly after (before, reversed) ``start``, whole seconds, as aware UTC."""
    zone = _zone(timezone)
    begin = start.astimezone(zone).replace(microsecond=0)
    try:
        for slot in CronSim(cron, begin, reverse=reverse):
            yield slot.astimezone(UTC)
    except (StopIteration, OverflowError, ValueError):  # past the calendar's last year
        return


def schedule_problems(workflows: Iterable[WorkflowInfo]) -> list[dict[str, Any]]:
    """What is wrong with the schedules ``workflows`` declare, one problem each
    (``workflow``, ``field``, ``message``), as ``InvalidDeployment`` lists them."""
    calendar = CronsimCalendar()
    problems: list[dict[str, Any]] = []
    for info in workflows:
        schedule = info.schedule
        if schedule is None:
            continue
        trouble = calendar.problem(schedule.cron, schedule.timezone)
        if trouble is not None:
            field = "timezone" if "timezone" in trouble else "schedule"
            problems.append({"message": f"workflow {info.name!r}: {trouble}",
                             "workflow": info.name, "field": field})  # fmt: skip
    return problems
