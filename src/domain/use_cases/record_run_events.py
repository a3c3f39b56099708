"""RecordRunEvents: several events of one run appended in one transaction, all or
nothing — how the engine writes a run's log, in the server's process and from the
``process`` backend's children (``POST /v1/world/events/create-batch``). A batch that
ends the run also closes the run's open streams."""

from __future__ import annotations

from collections.abc import Sequence

from compute_worker.domain import errors
from compute_worker.domain.audit import RequestContext, audit_entry
from compute_worker.domain.ports.clock import Clock
from compute_worker.domain.ports.transactions import Transaction, UnitOfWork
from compute_worker.domain.validation import check_request_shape
from compute_worker.domain.world import EventRequest, EventResult, EventType
from compute_worker.domain.world_writes import WorldWrites


class RecordRunEvents:
    def __init__(self, uow: UnitOfWork, clock: Clock, writes: WorldWrites) -> None:
        self._uow = uow
        self._clock = clock
        self._writes = writes

    async def execute(
        self,
        run_id: str,
        requests: Sequence[EventRequest],
        context: RequestContext | None = None,
        answer_logs: bool = False,
    ) -> list[EventResult]:
        """``context``: the world-lane request (audited); ``answer_logs``: answer
        ``run_started`` with the run's log (the lane does; the engine needs none)."""
        for index, request in enumerate(requests):
            check_request_shape(request)  # before the transaction: a batch is whole or refused
            if request.event_type is EventType.RUN_CREATED:
                raise errors.InvalidRequest(
                    "run_created cannot be batched; use /v1/world/events/create",
                    {"field": f"events[{index}].eventType"},
                )

        def work(tx: Transaction) -> list[EventResult]:
            results = [self._writes.append(tx, run_id, request, answer_log=answer_logs)
                       for request in requests]  # fmt: skip
            if any(result.event is not None and result.run is not None
                   and result.run.is_terminal for result in results):  # fmt: skip
                self._writes.close_run_streams(tx, run_id)
            if context is not None:
                entry = audit_entry(context, "world.events.create-batch", 200, self._clock.now(),
                                    run_id, events=len(requests))  # fmt: skip
                tx.append_audit(entry)
            return results

        return await self._uow.run(work)
