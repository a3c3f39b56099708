"""``SqlAuditLog``: append-only audit rows and the forensic queries over them."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Connection

from compute_worker.adapters.sql import rows
from compute_worker.adapters.sql.reads import SqlReads
from compute_worker.adapters.sql.schema import audit_log
from compute_worker.adapters.sql.writer import GroupCommitWriter
from compute_worker.domain.audit import AuditEntry
from compute_worker.domain.ports.audit import AuditLog, AuditQuery


class SqlAuditLog(AuditLog):
    def __init__(self, reads: SqlReads, writer: GroupCommitWriter) -> None:
        self._reads = reads
        self._writer = writer

    async def append(self, entry: AuditEntry) -> None:
        values = rows.audit_values(entry)
        await self._writer.run_sql(lambda conn: conn.execute(audit_log.insert(), values))

    async def find(self, query: AuditQuery) -> list[AuditEntry]:
        statement = select(audit_log).order_by(audit_log.c.seq).limit(query.limit)
        if query.correlation_id is not None:
            statement = statement.where(audit_log.c.correlation_id == query.correlation_id)
        if query.run_id is not None:
            statement = statement.where(audit_log.c.run_id == query.run_id)
        if query.since is not None:
            statement = statement.where(audit_log.c.created_ms >= rows.to_ms(query.since))

        def fetch(conn: Connection) -> list[AuditEntry]:
            return [rows.audit_from(row) for row in conn.execute(statement)]

        return await self._reads.run(fetch)
