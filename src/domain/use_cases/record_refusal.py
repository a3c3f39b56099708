"""RecordRefusal: the audit row of a refused request — an authentication failure, or a
state-changing request that failed after authentication (the rows of accepted changes
are written by their use cases, in their transactions)."""

from __future__ import annotations

from compute_worker.domain.audit import RequestContext, audit_entry
from compute_worker.domain.ports.audit import AuditLog
from compute_worker.domain.ports.clock import Clock


class RecordRefusal:
    def __init__(self, log: AuditLog, clock: Clock) -> None:
        self._log = log
        self._clock = clock

    async def execute(
        self, context: RequestContext, action: str, status: int, code: str, run_id: str | None
    ) -> None:
        entry = audit_entry(context, action, status, self._clock.now(), run_id, code=code)
        await self._log.append(entry)
