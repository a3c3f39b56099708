"""ProxyWorldEvent: ``events.create`` — append one event and update the entities it
touches in one transaction (world.md §2), or change nothing — and the lane's other write
to a run, ``runs.experimentalSetAttributes``."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from compute_worker.domain import errors, ids
from compute_worker.domain.audit import RequestContext, audit_entry
from compute_worker.domain.ids import IdFactory
from compute_worker.domain.ports.clock import Clock
from compute_worker.domain.ports.transactions import Transaction, UnitOfWork
from compute_worker.domain.reducer import NO_PARAMS
from compute_worker.domain.validation import (
    AttributeChange,
    check_request_shape,
    validate_client_run_id,
)
from compute_worker.domain.views import strip_event_refs
from compute_worker.domain.world import (
    CreateParams,
    EventRequest,
    EventResult,
    EventType,
    ResolveData,
)
from compute_worker.domain.world_writes import WorldWrites

DEFAULT_MAX_EVENTS = 25_000  # @workflow/world's own default (WORKFLOW_MAX_EVENTS)


@dataclass(frozen=True, slots=True)
class CreateEvent:
    run_id: str | None
    request: EventRequest
    resolve_data: ResolveData = "all"
    params: CreateParams = NO_PARAMS


class ProxyWorldEvent:
    def __init__(
        self,
        uow: UnitOfWork,
        ids: IdFactory,
        clock: Clock,
        writes: WorldWrites,
        max_events: int = DEFAULT_MAX_EVENTS,
    ) -> None:
        self._uow = uow
        self._ids = ids
        self._clock = clock
        self._writes = writes
        self._max_events = max_events

    async def execute(self, cmd: CreateEvent, context: RequestContext | None = None) -> EventResult:
        check_request_shape(cmd.request)
        run_id = self._resolve_run_id(cmd)
        noted: dict[str, Any] = {"eventType": cmd.request.event_type.value}
        if cmd.params.request_id is not None:
            noted["requestId"] = cmd.params.request_id

        def work(tx: Transaction) -> EventResult:
            result = self._writes.append(tx, run_id, cmd.request, cmd.params, answer_log=True)
            if context is not None:
                entry = audit_entry(context, "world.events.create", 200, self._clock.now(),
                                    run_id, **noted)  # fmt: skip
                tx.append_audit(entry)
            return result

        result = await self._uow.run(work)
        if cmd.resolve_data == "none" and result.event is not None:
            result = replace(result, event=strip_event_refs(result.event))
        if cmd.resolve_data == "none" and cmd.params.since is not None and result.events:
            result = replace(result, events=tuple(strip_event_refs(e) for e in result.events))
        if result.run is not None:  # a run lifecycle answer: the runtime enforces the cap
            result = replace(result, max_events=self._max_events)
        return result

    async def set_attributes(
        self,
        run_id: str,
        changes: tuple[AttributeChange, ...],
        allow_reserved: bool,
        context: RequestContext | None = None,
    ) -> dict[str, str]:
        """The run's attributes after merging ``changes`` (a value None removes its key)."""

        def work(tx: Transaction) -> dict[str, str]:
            merged = self._writes.set_attributes(tx, run_id, changes, allow_reserved)
            if context is not None:
                entry = audit_entry(context, "world.runs.attributes", 200, self._clock.now(),
                                    run_id, changes=len(changes))  # fmt: skip
                tx.append_audit(entry)
            return merged

        return await self._uow.run(work)

    def _resolve_run_id(self, cmd: CreateEvent) -> str:
        if cmd.request.event_type is EventType.RUN_CREATED:
            if not cmd.run_id:
                return self._ids.new(ids.RUN)
            validate_client_run_id(cmd.run_id, self._clock.now())
            return cmd.run_id
        if not cmd.run_id:
            raise errors.InvalidRequest(
                f"runId is required for {cmd.request.event_type.value}", {"field": "runId"}
            )
        return cmd.run_id
