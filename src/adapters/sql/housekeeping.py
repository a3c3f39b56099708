"""``SqlHousekeeping``: forgets idempotency keys past their retention (queue
publishes and ``POST /v1/runs``), so those tables do not grow without bound."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.engine import Connection

from compute_worker.adapters.sql.rows import to_ms
from compute_worker.adapters.sql.schema import idempotency_records, queue_keys
from compute_worker.adapters.sql.writer import GroupCommitWriter


class SqlHousekeeping:
    def __init__(self, writer: GroupCommitWriter) -> None:
        self._writer = writer

    async def purge_expired(self, now: datetime) -> int:
        def purge(conn: Connection) -> int:
            cutoff = to_ms(now)
            removed = conn.execute(delete(queue_keys).where(queue_keys.c.expires_ms <= cutoff))
            records = conn.execute(
                delete(idempotency_records).where(idempotency_records.c.expires_ms <= cutoff)
            )
            return int(removed.rowcount) + int(records.rowcount)

        return await self._writer.run_sql(purge)
