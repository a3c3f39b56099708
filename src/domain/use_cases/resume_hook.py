"""ResumeHook: ``POST /v1/runs/resume`` — deliver a payload to the live hook holding a
token (``hook_received``) and wake its run through the workflow queue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compute_worker.domain import errors
from compute_worker.domain.audit import RequestContext, audit_entry
from compute_worker.domain.ports.clock import Clock
from compute_worker.domain.ports.transactions import Transaction, UnitOfWork
from compute_worker.domain.world_writes import WorldWrites


@dataclass(frozen=True, slots=True)
class Resumed:
    run_id: str
    hook_id: str
    token: str


class ResumeHook:
    def __init__(self, uow: UnitOfWork, clock: Clock, writes: WorldWrites) -> None:
        self._uow = uow
        self._clock = clock
        self._writes = writes

    async def execute(self, token: str, payload: Any, context: RequestContext) -> Resumed:
        if not token:
            raise errors.InvalidRequest("token must be a non-empty string", {"field": "token"})
        return await self._uow.run(lambda tx: self._resume(tx, token, payload, context))

    def _resume(
        self, tx: Transaction, token: str, payload: Any, context: RequestContext
    ) -> Resumed:
        hook = self._writes.resume_hook(tx, token, payload)
        tx.append_audit(audit_entry(context, "runs.resume", 202, self._clock.now(), hook.run_id))
        return Resumed(hook.run_id, hook.hook_id, hook.token)
