"""Starting a run once per idempotency key: the command ``POST /v1/runs`` and a schedule's
slot share (``Trigger``), and ``start_once`` for a unit of work that starts a run among
other writes (a schedule's slot and its watermark). A key already held answers its run
(``replayed``); one held for a different request is an ``IdempotencyConflict``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from compute_worker.domain import errors
from compute_worker.domain.audit import RequestContext, audit_entry
from compute_worker.domain.idempotency import IdempotencyRecord, check_key, request_hash
from compute_worker.domain.ports.tracing import TRACEPARENT
from compute_worker.domain.ports.transactions import Transaction
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
    # the trigger's trace (W3C traceparent), kept in the run's executionContext so that
    # its execution joins the trace; not part of what the Idempotency-Key identifies
    traceparent: str | None = None

    def payload(self) -> dict[str, Any]:
        return {
            "workflowName": self.workflow_name,
            "input": self.input,
            "deploymentId": self.deployment_id,
            "executionContext": self.execution_context,
        }

    def run_context(self) -> dict[str, Any] | None:
        """The run's execution context: the caller's, with the trigger's trace unless the
        caller gave one."""
        given = self.execution_context
        if self.traceparent is None or (given is not None and TRACEPARENT in given):
            return given
        return {**(given or {}), TRACEPARENT: self.traceparent}


@dataclass(frozen=True, slots=True)
class Triggered:
    run: Run
    replayed: bool = False


def start_once(
    tx: Transaction,
    writes: WorldWrites,
    cmd: Trigger,
    context: RequestContext,
    now: datetime,
    retention: timedelta,
    action: str,
    request: Any = None,
) -> Triggered:
    """Start ``cmd``'s run unless a live record holds its key (then answer that record's
    run, ``replayed``), inside a unit that also does other work: the holder is looked up
    first, so a taken key rolls nothing back (``TriggerRun``, alone in its unit, writes
    first and rolls back instead). ``request`` is what a repeat must equal to be the same
    request (default: ``cmd``)."""
    key = check_key(cmd.idempotency_key)
    digest = request_hash(cmd.payload() if request is None else request)
    holder = tx.idempotency_holder(cmd.scope, key, now)
    if holder is None:
        run = writes.start_run(tx, cmd.workflow_name, cmd.input, cmd.deployment_id,
                               cmd.run_context())  # fmt: skip
        holder = tx.record_idempotency(
            IdempotencyRecord(cmd.scope, key, digest, now + retention, 202, run), now
        )
        if holder is None:
            tx.append_audit(audit_entry(context, action, 202, now, run.run_id))
            return Triggered(run)
    if holder.request_hash != digest or holder.run is None:
        raise errors.IdempotencyConflict(
            "This Idempotency-Key was used with a different request", {"idempotencyKey": key}
        )
    return Triggered(holder.run, replayed=True)
