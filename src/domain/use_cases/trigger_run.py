"""TriggerRun: ``POST /v1/runs``. One transaction writes the idempotency record,
the run with its ``run_created`` event, the workflow's queue message and the
audit entry — or nothing."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from compute_worker.domain import errors
from compute_worker.domain.audit import RequestContext, audit_entry
from compute_worker.domain.idempotency import (
    DEFAULT_RETENTION,
    IdempotencyRecord,
    check_key,
    request_hash,
)
from compute_worker.domain.ports.clock import Clock
from compute_worker.domain.ports.transactions import Transaction, UnitOfWork
from compute_worker.domain.world import Run
from compute_worker.domain.world_writes import WorldWrites


@dataclass(frozen=True, slots=True)
class Trigger:
    workflow_name: str
    idempotency_key: str | None
    scope: str  # the calling API key's id: idempotency keys are per key
    input: list[Any] = field(default_factory=list)
    deployment_id: str | None = None
    execution_context: dict[str, Any] | None = None

    def payload(self) -> dict[str, Any]:
        return {
            "workflowName": self.workflow_name,
            "input": self.input,
            "deploymentId": self.deployment_id,
            "executionContext": self.execution_context,
        }


@dataclass(frozen=True, slots=True)
class Triggered:
    run: Run
    replayed: bool = False


class TriggerRun:
    def __init__(
        self,
        uow: UnitOfWork,
        clock: Clock,
        writes: WorldWrites,
        retention: timedelta = DEFAULT_RETENTION,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._writes = writes
        self._retention = retention

    async def execute(self, cmd: Trigger, context: RequestContext) -> Triggered:
        key = check_key(cmd.idempotency_key)
        digest = request_hash(cmd.payload())
        return await self._uow.run(lambda tx: self._trigger(tx, cmd, key, digest, context))

    def _trigger(
        self, tx: Transaction, cmd: Trigger, key: str, digest: str, context: RequestContext
    ) -> Triggered:
        now = self._clock.now()
        claim = IdempotencyRecord(cmd.scope, key, digest, now + self._retention)
        holder = tx.claim_idempotency(claim, now)
        if holder is not None:
            if holder.request_hash != digest or holder.run is None:
                raise errors.IdempotencyConflict(
                    "This Idempotency-Key was used with a different request",
                    {"idempotencyKey": key},
                )
            return Triggered(holder.run, replayed=True)
        run = self._writes.start_run(tx, cmd.workflow_name, cmd.input, cmd.deployment_id,
                                     cmd.execution_context)  # fmt: skip
        tx.complete_idempotency(replace(claim, status=202, run=run))
        tx.append_audit(audit_entry(context, "runs.trigger", 202, now, run.run_id))
        return Triggered(run)
