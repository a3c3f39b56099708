"""CancelRun: ``POST /v1/runs/:id/cancel`` — append ``run_cancelled`` (which disposes
the run's hooks and clears its waits) and close the run's open streams; the same for its
child runs that have not ended, recursively (``domain/children.py``). The engine sees the
event and stops the code."""

from __future__ import annotations

from compute_worker.domain import errors
from compute_worker.domain.audit import RequestContext, audit_entry
from compute_worker.domain.ports.clock import Clock
from compute_worker.domain.ports.transactions import Transaction, UnitOfWork
from compute_worker.domain.world import EventRequest, EventType, Run
from compute_worker.domain.world_writes import WorldWrites


class CancelRun:
    def __init__(self, uow: UnitOfWork, clock: Clock, writes: WorldWrites) -> None:
        self._uow = uow
        self._clock = clock
        self._writes = writes

    async def execute(self, run_id: str, context: RequestContext) -> Run:
        return await self._uow.run(lambda tx: self._cancel(tx, run_id, context))

    def _cancel(self, tx: Transaction, run_id: str, context: RequestContext) -> Run:
        run = tx.lock_run(run_id)
        if run is None:
            raise errors.RunNotFound(f"Run {run_id} not found", {"runId": run_id})
        if run.status == "cancelled":
            return run
        if run.is_terminal:
            raise errors.RunAlreadyTerminal(
                f"Run {run_id} is already {run.status}", {"runId": run_id, "status": run.status}
            )
        result = self._writes.append(tx, run_id, EventRequest(EventType.RUN_CANCELLED))
        self._writes.close_run_streams(tx, run_id)
        children = self._writes.cancel_children(tx, run_id)
        extra = {"cancelledChildren": children} if children else {}
        tx.append_audit(
            audit_entry(context, "runs.cancel", 200, self._clock.now(), run_id, **extra)
        )
        assert result.run is not None
        return result.run
