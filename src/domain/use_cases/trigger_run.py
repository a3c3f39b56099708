"""TriggerRun: ``POST /v1/runs``. One transaction writes the run with its
``run_created`` event, the workflow's queue message, the idempotency record (with
the response, in one statement) and the audit entry — or nothing. A key a live
record holds rolls all of it back and answers from that record."""

from __future__ import annotations

from datetime import timedelta

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
from compute_worker.domain.triggering import Trigger, Triggered
from compute_worker.domain.world_writes import WorldWrites

__all__ = ["Trigger", "TriggerRun", "Triggered"]


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
        try:
            return await self._uow.run(lambda tx: self._trigger(tx, cmd, key, digest, context))
        except _KeyTaken as taken:
            holder = taken.holder
        if holder.request_hash != digest or holder.run is None:
            raise errors.IdempotencyConflict(
                "This Idempotency-Key was used with a different request", {"idempotencyKey": key}
            )
        return Triggered(holder.run, replayed=True)

    def _trigger(
        self, tx: Transaction, cmd: Trigger, key: str, digest: str, context: RequestContext
    ) -> Triggered:
        now = self._clock.now()
        try:
            run = self._writes.start_run(tx, cmd.workflow_name, cmd.input, cmd.deployment_id,
                                         cmd.run_context())  # fmt: skip
        except errors.DomainError:
            holder = tx.idempotency_holder(cmd.scope, key, now)
            if holder is None:
                raise
            raise _KeyTaken(holder) from None  # a replay answers even if the workflow is gone
        record = IdempotencyRecord(cmd.scope, key, digest, now + self._retention, 202, run)
        holder = tx.record_idempotency(record, now)
        if holder is not None:
            raise _KeyTaken(holder)  # rolls back the run just written
        tx.append_audit(audit_entry(context, "runs.trigger", 202, now, run.run_id))
        return Triggered(run)


class _KeyTaken(Exception):
    """A live idempotency record holds the key: the unit's writes are rolled back."""

    def __init__(self, holder: IdempotencyRecord) -> None:
        super().__init__("idempotency key taken")
        self.holder = holder
