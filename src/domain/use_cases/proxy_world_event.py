"""ProxyWorldEvent: ``events.create`` — append one event and update the entities it
touches in one transaction (world.md §2), or change nothing."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from domain import errors, ids
from domain.audit import RequestContext, audit_entry
from domain.ids import IdFactory
from domain.ports.clock import Clock
from domain.ports.streams import Signal
from domain.ports.transactions import Transaction, UnitOfWork
from domain.reducer import Snapshot, Transition, decide, materialize
from domain.validation import check_request_shape, validate_client_run_id
from domain.views import strip_event_refs
from domain.world import (
    WAKING_EVENTS,
    EventRequest,
    EventResult,
    EventType,
    ResolveData,
    Run,
    run_topic,
)

_MAX_DECISIONS = 3  # a lost insert race (run id, hook token) is decided again, once or twice


@dataclass(frozen=True, slots=True)
class CreateEvent:
    run_id: str | None
    request: EventRequest
    resolve_data: ResolveData = "all"


_LIFECYCLE = frozenset(
    {EventType.RUN_STARTED, EventType.RUN_COMPLETED, EventType.RUN_FAILED,
     EventType.RUN_CANCELLED}
)  # fmt: skip
runs_log = logging.getLogger("compute_worker.runs")


class ProxyWorldEvent:
    def __init__(self, uow: UnitOfWork, ids: IdFactory, clock: Clock, signal: Signal) -> None:
        self._uow = uow
        self._ids = ids
        self._clock = clock
        self._signal = signal

    async def execute(self, cmd: CreateEvent, context: RequestContext | None = None) -> EventResult:
        check_request_shape(cmd.request)
        run_id = self._resolve_run_id(cmd)

        def work(tx: Transaction) -> EventResult:
            result = self.record(tx, run_id, cmd.request)
            if context is not None:
                entry = audit_entry(context, "world.events.create", 200, self._clock.now(),
                                    run_id, eventType=cmd.request.event_type.value)  # fmt: skip
                tx.append_audit(entry)
            return result

        result = await self._uow.run(work)
        if cmd.resolve_data == "none" and result.event is not None:
            result = replace(result, event=strip_event_refs(result.event))
        return result

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

    def record(self, tx: Transaction, run_id: str, request: EventRequest) -> EventResult:
        """The whole write, synchronous, inside the caller's transaction."""
        for _ in range(_MAX_DECISIONS):
            snapshot = _load_snapshot(tx, run_id, request)
            first_id = self._ids.new(ids.EVENT, floor=tx.last_event_id(run_id))
            now = ids.ulid_datetime(first_id)
            transition = decide(request, run_id, snapshot, now)
            if _claim_new_rows(tx, transition, request):
                break
        else:
            raise errors.EntityConflict("the event lost too many races; retry it")
        event_ids = [first_id, *(self._ids.new(ids.EVENT) for _ in transition.events[1:])]
        event_ids = event_ids[: len(transition.events)]  # a transition may append nothing
        events = materialize(transition.events, run_id, event_ids)
        _write(tx, run_id, transition)
        tx.insert_events(events)
        if any(event.event_type in WAKING_EVENTS for event in events):
            tx.after_commit(lambda: self._signal.notify(run_topic(run_id)))
        changed = transition.run
        if changed is not None and any(event.event_type in _LIFECYCLE for event in events):
            tx.after_commit(lambda: log_run(changed))
        return EventResult(
            event=events[-1] if events and transition.answer_with_event else None,
            run=transition.answer_run,
            step=transition.answer_step,
            hook=transition.answer_hook,
            wait=transition.answer_wait,
            events=tuple(tx.run_events(run_id)) if transition.answer_with_log else None,
        )


def _load_snapshot(tx: Transaction, run_id: str, request: EventRequest) -> Snapshot:
    family = request.event_type.family
    correlation_id = request.correlation_id or ""
    run = tx.lock_run(run_id)
    if family == "step":
        return Snapshot(run=run, step=tx.get_step(run_id, correlation_id))
    if family == "wait":
        return Snapshot(run=run, wait=tx.get_wait(run_id, correlation_id))
    if family == "hook":
        hook = tx.get_hook(correlation_id)
        holder = None
        if request.event_type is EventType.HOOK_CREATED:
            token = (request.event_data or {}).get("token")
            holder = tx.get_hook_by_token(token) if isinstance(token, str) else None
            holder = None if holder is not None and holder.hook_id == correlation_id else holder
        return Snapshot(run=run, hook=hook, token_holder=holder)
    return Snapshot(run=run)


def _claim_new_rows(tx: Transaction, transition: Transition, request: EventRequest) -> bool:
    """Insert the rows whose uniqueness another writer may have raced us for.

    False means the race was lost and the event must be decided again on fresh state.
    """
    if transition.run_is_new and transition.run is not None and not tx.insert_run(transition.run):
        if request.event_type is EventType.RUN_CREATED:
            run_id = transition.run.run_id
            raise errors.EntityConflict(f'Workflow run "{run_id}" already exists')
        return False
    return transition.new_hook is None or tx.insert_hook(transition.new_hook)


def _write(tx: Transaction, run_id: str, transition: Transition) -> None:
    if transition.run is not None and not transition.run_is_new:
        tx.update_run(transition.run)
    if transition.step is not None:
        if transition.step_is_new:
            if not tx.insert_step(transition.step):
                raise errors.EntityConflict(f'Step "{transition.step.step_id}" already exists')
        else:
            tx.update_step(transition.step)
    if transition.disposed_hook_id is not None and not tx.delete_hook(transition.disposed_hook_id):
        raise errors.EntityConflict(f'Hook "{transition.disposed_hook_id}" already disposed')
    if transition.wait is not None:
        if transition.wait_is_new:
            tx.insert_wait(transition.wait)
        else:
            tx.update_wait(transition.wait)
    if transition.purge_hooks_and_waits:
        tx.delete_hooks_and_waits(run_id)


def log_run(run: Run) -> None:
    """One info line per run start and end, with what an operator looks for."""
    fields: dict[str, object] = {
        "runId": run.run_id,
        "workflowName": run.workflow_name,
        "deploymentId": run.deployment_id,
        "status": run.status,
    }
    if not run.is_terminal:
        runs_log.info("run started", extra=fields)
        return
    if run.completed_at is not None:
        began = run.started_at or run.created_at
        fields["durationMs"] = round((run.completed_at - began).total_seconds() * 1000)
    if run.error is not None:
        fields["error"] = run.error.message
        fields["errorCode"] = run.error.code
    runs_log.info("run %s", run.status, extra=fields)
