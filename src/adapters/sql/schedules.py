"""``SqlSchedules``: the active deployment's schedules, read side."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Connection

from compute_worker.adapters.sql import rows
from compute_worker.adapters.sql.reads import SqlReads
from compute_worker.adapters.sql.schema import schedules
from compute_worker.domain.ports.schedules import ScheduleReader
from compute_worker.domain.schedules import ScheduleState


class SqlSchedules(ScheduleReader):
    def __init__(self, reads: SqlReads) -> None:
        self._reads = reads

    async def list_schedules(self) -> list[ScheduleState]:
        query = select(schedules).order_by(schedules.c.name)

        def fetch(conn: Connection) -> list[ScheduleState]:
            return [rows.schedule_from(row) for row in conn.execute(query)]

        return await self._reads.run(fetch)

    async def get_schedule(self, name: str) -> ScheduleState | None:
        query = select(schedules).where(schedules.c.name == name)

        def fetch(conn: Connection) -> ScheduleState | None:
            row = conn.execute(query).first()
            return None if row is None else rows.schedule_from(row)

        return await self._reads.run(fetch)
