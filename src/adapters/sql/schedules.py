"""``SqlSchedules``: the active deployment's schedules, read side."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from compute_worker.adapters.sql import rows
from compute_worker.adapters.sql.reads import run_read
from compute_worker.adapters.sql.schema import schedules
from compute_worker.domain.ports.schedules import ScheduleReader
from compute_worker.domain.schedules import ScheduleState


class SqlSchedules(ScheduleReader):
    def __init__(self, db_engine: AsyncEngine) -> None:
        self._db_engine = db_engine

    async def list_schedules(self) -> list[ScheduleState]:
        query = select(schedules).order_by(schedules.c.name)

        def fetch(conn: Connection) -> list[ScheduleState]:
            return [rows.schedule_from(row) for row in conn.execute(query)]

        return await run_read(self._db_engine, fetch)

    async def get_schedule(self, name: str) -> ScheduleState | None:
        query = select(schedules).where(schedules.c.name == name)

        def fetch(conn: Connection) -> ScheduleState | None:
            row = conn.execute(query).first()
            return None if row is None else rows.schedule_from(row)

        return await run_read(self._db_engine, fetch)
