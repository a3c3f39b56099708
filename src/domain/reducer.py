"""The event reducer: validate one ``events.create`` request against the current
state of its run and decide the new state (world.md §2, decisions D5, D6, D11).

Pure: the caller loads a :class:`Snapshot`, calls :func:`decide` and writes the
resulting :class:`Transition` in the same transaction. Every domain error is
raised here, before anything is written; the checks that need no state are in
``domain.validation``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from compute_worker.domain import errors, ids
from compute_worker.domain.validation import (
    allow_reserved,
    apply_attribute_changes,
    check_attribute_changes,
    check_request_shape,
    parse_attribute_changes,
    parse_attributes,
    parse_date,
)
from compute_worker.domain.world import (
    CURRENT_SPEC_VERSION,
    SUPPORTED_SPEC_VERSION,
    CreateParams,
    Event,
    EventRequest,
    EventType,
    Hook,
    Run,
    Step,
    StructuredError,
    Wait,
)

_T = TypeVar("_T")

_STEP_FINISH_CHECKS_RUN = frozenset({EventType.STEP_STARTED, EventType.STEP_FAILED})
_RUN_ENDINGS = frozenset({EventType.RUN_COMPLETED, EventType.RUN_FAILED, EventType.RUN_CANCELLED})
# Events that may come from outside a replay: written without ``stateUpdatedAt``, they
# move the run's marker, which a replay's ``stateUpdatedAt`` must not be older than.
_OUT_OF_BAND = frozenset({EventType.HOOK_RECEIVED, EventType.STEP_COMPLETED})
NO_PARAMS = CreateParams()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state an event is decided against, loaded under the run's write lock."""

    run: Run | None = None
    step: Step | None = None
    hook: Hook | None = None
    wait: Wait | None = None
    token_holder: Hook | None = None


@dataclass(frozen=True, slots=True)
class EventDraft:
    """An event to append; the store gives it its monotonic id."""

    event_type: EventType
    spec_version: int
    correlation_id: str | None = None
    event_data: dict[str, Any] | None = None
    occurred_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    """What to write, and what to answer once it is written."""

    events: tuple[EventDraft, ...] = ()
    run: Run | None = None
    run_is_new: bool = False
    step: Step | None = None
    step_is_new: bool = False
    new_hook: Hook | None = None
    disposed_hook_id: str | None = None
    wait: Wait | None = None
    wait_is_new: bool = False
    purge_hooks_and_waits: bool = False
    # what the EventResult carries besides the event
    answer_run: Run | None = None
    answer_step: Step | None = None
    answer_hook: Hook | None = None
    answer_wait: Wait | None = None
    answer_with_log: bool = False
    answer_with_event: bool = True
    step_created: bool = False  # a lazy step_started created the step


def decide(
    request: EventRequest,
    run_id: str,
    state: Snapshot,
    now: datetime,
    params: CreateParams = NO_PARAMS,
) -> Transition:
    """Validate ``request`` for ``run_id`` against ``state`` and return the transition."""
    transition = _decide(request, run_id, state, now, params)
    if params.occurred_at is not None and transition.events:
        last = replace(transition.events[-1], occurred_at=params.occurred_at)
        transition = replace(transition, events=(*transition.events[:-1], last))
    run = transition.run or state.run
    if (
        request.event_type in _OUT_OF_BAND
        and params.state_updated_at is None
        and transition.events
        and run is not None
        and not run.is_terminal  # an ended run has no replay left to guard
    ):
        transition = replace(transition, run=replace(run, state_marker_ms=_ms(now)))
    return transition


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _check_fresh(run: Run, params: CreateParams) -> None:
    seen, marker = params.state_updated_at, run.state_marker_ms
    if seen is not None and marker is not None and seen < marker:
        raise errors.PreconditionFailed(
            f'Workflow run "{run.run_id}" has an event newer than stateUpdatedAt {seen} '
            f"(at {marker}); reload its events and retry",
            {"runId": run.run_id, "stateUpdatedAt": seen, "latestExternalEventAt": marker},
        )


def _decide(
    request: EventRequest, run_id: str, state: Snapshot, now: datetime, params: CreateParams
) -> Transition:
    check_request_shape(request)
    spec = request.spec_version if request.spec_version is not None else CURRENT_SPEC_VERSION
    kind = request.event_type
    if kind is EventType.RUN_CREATED:
        return _run_created(request, run_id, state, spec, now)

    run = state.run
    synthetic: tuple[EventDraft, ...] = ()
    if run is None and kind is EventType.RUN_STARTED and _can_start_resiliently(request):
        run, created = _new_run(request, run_id, spec, now)
        synthetic = (created,)
    if run is None:
        raise errors.RunNotFound(f'Workflow run "{run_id}" not found', {"runId": run_id})
    if not synthetic:
        _check_spec_version(run.spec_version)
        _check_fresh(run, params)

    lazy = kind is EventType.STEP_STARTED and creates_step(request)
    if run.is_terminal:
        early = _terminal_run_guard(kind, run, spec, lazy)
        if early is not None:
            return early
    if lazy:
        _lazy_step_guard(run, state.step, request.correlation_id or "")
    elif kind.family == "step":
        _step_guard(kind, run, state.step, request.correlation_id or "")
    if kind in (EventType.HOOK_RECEIVED, EventType.HOOK_DISPOSED):
        _hook_guard(run, state.hook, request.correlation_id or "")

    handler = _HANDLERS[kind]
    transition = handler(request, run, state, spec, now)
    if synthetic:
        transition = replace(
            transition,
            events=synthetic + transition.events,
            run_is_new=True,
        )
    return transition


# -- runs ---------------------------------------------------------------------------------


def _check_spec_version(spec: int | None) -> None:
    if spec is not None and spec > SUPPORTED_SPEC_VERSION:
        raise errors.RunNotSupported(
            f"Run spec version {spec} is newer than the supported {SUPPORTED_SPEC_VERSION}",
            {"runSpecVersion": spec, "supportedSpecVersion": SUPPORTED_SPEC_VERSION},
        )
    if spec is None or spec <= 1:
        raise errors.RunNotSupported(
            "Legacy (spec version 1) runs are not supported by this world",
            {"runSpecVersion": spec or 1, "supportedSpecVersion": SUPPORTED_SPEC_VERSION},
        )


def _can_start_resiliently(request: EventRequest) -> bool:
    data = request.event_data or {}
    return (
        isinstance(data.get("deploymentId"), str)
        and isinstance(data.get("workflowName"), str)
        and "input" in data
    )


def _new_run(
    request: EventRequest, run_id: str, spec: int, now: datetime
) -> tuple[Run, EventDraft]:
    data = request.event_data or {}
    context = data.get("executionContext")
    if context is not None and not isinstance(context, dict):
        raise errors.InvalidRequest(
            "eventData.executionContext must be an object",
            {"field": "data.eventData.executionContext"},
        )
    _check_spec_version(spec)
    where = "data.eventData.attributes"
    attributes = parse_attributes(data.get("attributes", {}), where)
    allowed = allow_reserved(data, "data.eventData.allowReservedAttributes")
    check_attribute_changes(list(attributes.items()), (), allowed, where)
    run = Run(
        run_id=run_id,
        status="pending",
        deployment_id=data["deploymentId"],
        workflow_name=data["workflowName"],
        input=data["input"],
        execution_context=context,
        spec_version=spec,
        attributes=attributes,
        created_at=now,
        updated_at=now,
    )
    created_data = {
        "deploymentId": run.deployment_id,
        "workflowName": run.workflow_name,
        "input": run.input,
    }
    if context is not None:
        created_data["executionContext"] = context
    for name in ("attributes", "allowReservedAttributes"):
        if name in data:
            created_data[name] = data[name]
    return run, EventDraft(EventType.RUN_CREATED, spec, None, created_data)


def _run_created(
    request: EventRequest, run_id: str, state: Snapshot, spec: int, now: datetime
) -> Transition:
    if state.run is not None:
        raise errors.EntityConflict(f'Workflow run "{run_id}" already exists', {"runId": run_id})
    run, _ = _new_run(request, run_id, spec, now)
    draft = EventDraft(EventType.RUN_CREATED, spec, None, request.event_data)
    return Transition(events=(draft,), run=run, run_is_new=True, answer_run=run)


def _terminal_run_guard(kind: EventType, run: Run, spec: int, lazy: bool) -> Transition | None:
    if kind is EventType.RUN_CANCELLED and run.status == "cancelled":
        draft = EventDraft(EventType.RUN_CANCELLED, spec)
        return Transition(events=(draft,), answer_run=run)
    if kind is EventType.RUN_STARTED:
        raise errors.RunExpired(
            f'Workflow run "{run.run_id}" is already in terminal state "{run.status}"',
            {"runId": run.run_id, "status": run.status},
        )
    if kind in _RUN_ENDINGS:
        raise errors.EntityConflict(
            f'Cannot transition run from terminal state "{run.status}"',
            {"runId": run.run_id, "status": run.status},
        )
    if kind in (EventType.STEP_CREATED, EventType.HOOK_CREATED, EventType.WAIT_CREATED) or lazy:
        raise errors.EntityConflict(
            f'Cannot create new entities on run "{run.run_id}" in terminal state "{run.status}"',
            {"runId": run.run_id, "status": run.status},
        )
    if kind is EventType.ATTR_SET:
        raise errors.EntityConflict(
            f'Cannot set attributes on run "{run.run_id}" in terminal state "{run.status}"',
            {"runId": run.run_id, "status": run.status},
        )
    return None


def _run_started(
    request: EventRequest, run: Run, state: Snapshot, spec: int, now: datetime
) -> Transition:
    if run.status == "running":
        return Transition(answer_run=run, answer_with_event=False)
    started = replace(run, status="running", started_at=run.started_at or now, updated_at=now)
    draft = EventDraft(EventType.RUN_STARTED, spec)
    return Transition(events=(draft,), run=started, answer_run=started, answer_with_log=True)


def _run_completed(
    request: EventRequest, run: Run, state: Snapshot, spec: int, now: datetime
) -> Transition:
    data = request.event_data or {}
    done = replace(
        run, status="completed", output=data.get("output"), completed_at=now, updated_at=now
    )
    return _ending(request, done, spec)


def _run_failed(
    request: EventRequest, run: Run, state: Snapshot, spec: int, now: datetime
) -> Transition:
    data = request.event_data or {}
    error = structured_error(data.get("error"), data.get("stack"), data.get("errorCode"))
    failed = replace(run, status="failed", error=error, completed_at=now, updated_at=now)
    return _ending(request, failed, spec)


def _run_cancelled(
    request: EventRequest, run: Run, state: Snapshot, spec: int, now: datetime
) -> Transition:
    cancelled = replace(run, status="cancelled", completed_at=now, updated_at=now)
    return _ending(request, cancelled, spec)


def _ending(request: EventRequest, run: Run, spec: int) -> Transition:
    draft = EventDraft(request.event_type, spec, None, request.event_data)
    return Transition(events=(draft,), run=run, purge_hooks_and_waits=True, answer_run=run)


def _attr_set(
    request: EventRequest, run: Run, state: Snapshot, spec: int, now: datetime
) -> Transition:
    data = request.event_data or {}
    where = "data.eventData.changes"
    changes = parse_attribute_changes(data["changes"], where)
    allowed = allow_reserved(data, "data.eventData.allowReservedAttributes")
    check_attribute_changes(changes, run.attributes.keys(), allowed, where)
    changed = replace(
        run, attributes=apply_attribute_changes(run.attributes, changes), updated_at=now
    )
    draft = EventDraft(EventType.ATTR_SET, spec, request.correlation_id, request.event_data)
    return Transition(events=(draft,), run=changed, answer_run=changed)


def structured_error(error: Any, stack: Any = None, code: Any = None) -> StructuredError:
    """Normalize a thrown value the way the reference worlds do (string or object); the
    bytes a spec ≥ 4 runtime serialized it to are kept as they are."""
    message: str | None = None
    if isinstance(error, bytes):
        return StructuredError("serialized error", None, code if isinstance(code, str) else None,
                               raw=error)  # fmt: skip
    if isinstance(error, str):
        message = error
    elif isinstance(error, dict):
        message = error.get("message") if isinstance(error.get("message"), str) else None
        stack = stack if stack is not None else error.get("stack")
        code = code if code is not None else error.get("code")
    return StructuredError(
        message=message or "Unknown error",
        stack=stack if isinstance(stack, str) else None,
        code=code if isinstance(code, str) else None,
    )


# -- steps --------------------------------------------------------------------------------


def _step_guard(kind: EventType, run: Run, step: Step | None, step_id: str) -> None:
    if kind is EventType.STEP_CREATED:
        if step is not None:
            raise errors.EntityConflict(
                f'Step "{step_id}" already exists', {"runId": run.run_id, "stepId": step_id}
            )
        return
    if step is None:
        raise errors.StepNotFound(
            f'Step "{step_id}" not found', {"runId": run.run_id, "stepId": step_id}
        )
    if step.is_terminal:
        raise errors.EntityConflict(
            f'Cannot modify step "{step_id}" in terminal state "{step.status}"',
            {"stepId": step_id, "status": step.status},
        )
    if run.is_terminal and kind in _STEP_FINISH_CHECKS_RUN and step.status != "running":
        raise errors.RunExpired(
            f'Workflow run "{run.run_id}" is already in terminal state "{run.status}"',
            {"runId": run.run_id, "status": run.status},
        )


def creates_step(request: EventRequest) -> bool:
    """A step_started that carries what step_created would (spec 5: lazy step creation)."""
    data = request.event_data or {}
    return isinstance(data.get("stepName"), str) and "input" in data


def _lazy_step_guard(run: Run, step: Step | None, step_id: str) -> None:
    """A lazy start always creates its step: if it exists, another handler won the create
    and this one must neither start nor run it."""
    if step is not None:
        raise errors.EntityConflict(
            f'Step "{step_id}" already created', {"runId": run.run_id, "stepId": step_id}
        )


def _new_step(request: EventRequest, run: Run, spec: int, now: datetime) -> Step:
    data = request.event_data or {}
    return Step(
        run_id=run.run_id,
        step_id=request.correlation_id or "",
        step_name=data["stepName"],
        status="pending",
        input=data["input"],
        spec_version=spec,
        created_at=now,
        updated_at=now,
    )


def _step_created(
    request: EventRequest, run: Run, state: Snapshot, spec: int, now: datetime
) -> Transition:
    return _step_change(request, spec, _new_step(request, run, spec, now), is_new=True)


def _step_started(
    request: EventRequest, run: Run, state: Snapshot, spec: int, now: datetime
) -> Transition:
    if state.step is None:  # lazy: create the step and its step_created, then start it
        created = _new_step(request, run, spec, now)
        data = request.event_data or {}
        created_data = {"stepName": created.step_name, "input": created.input}
        if "workflowName" in data:
            created_data["workflowName"] = data["workflowName"]
        synthetic = EventDraft(EventType.STEP_CREATED, spec, created.step_id, created_data)
        started_data = {k: v for k, v in data.items() if k != "input"}  # input is on the step
        started = _started(created, now)
        draft = EventDraft(EventType.STEP_STARTED, spec, created.step_id, started_data)
        return Transition(events=(synthetic, draft), step=started, step_is_new=True,
                          answer_step=started, step_created=True)  # fmt: skip
    step = state.step
    if step.retry_after is not None and step.retry_after > now:
        seconds = max(1, math.ceil((step.retry_after - now).total_seconds()))
        raise errors.TooEarly(
            f'Step "{step.step_id}" may not start before {step.retry_after.isoformat()}', seconds
        )
    return _step_change(request, spec, _started(step, now))


def _started(step: Step, now: datetime) -> Step:
    return replace(
        step,
        status="running",
        attempt=step.attempt + 1,
        started_at=step.started_at or now,
        retry_after=None,
        updated_at=now,
    )


def _step_completed(
    request: EventRequest, run: Run, state: Snapshot, spec: int, now: datetime
) -> Transition:
    data = request.event_data or {}
    step = replace(
        _existing(state.step),
        status="completed",
        output=data["result"],
        completed_at=now,
        updated_at=now,
    )
    return _step_change(request, spec, step)


def _step_failed(
    request: EventRequest, run: Run, state: Snapshot, spec: int, now: datetime
) -> Transition:
    data = request.event_data or {}
    error = structured_error(data.get("error"), data.get("stack"), data.get("errorCode"))
    step = replace(
        _existing(state.step), status="failed", error=error, completed_at=now, updated_at=now
    )
    return _step_change(request, spec, step)


def _step_retrying(
    request: EventRequest, run: Run, state: Snapshot, spec: int, now: datetime
) -> Transition:
    data = request.event_data or {}
    error = structured_error(data.get("error"), data.get("stack"), data.get("errorCode"))
    retry_after = data.get("retryAfter")
    step = replace(
        _existing(state.step),
        status="pending",
        error=error,
        retry_after=parse_date(retry_after, "retryAfter") if retry_after is not None else None,
        updated_at=now,
    )
    return _step_change(request, spec, step)


def _step_change(request: EventRequest, spec: int, step: Step, is_new: bool = False) -> Transition:
    draft = EventDraft(request.event_type, spec, request.correlation_id, request.event_data)
    return Transition(events=(draft,), step=step, step_is_new=is_new, answer_step=step)


def _existing(entity: _T | None) -> _T:
    if entity is None:  # the guards ran first; this is a programming error
        raise AssertionError("entity expected after the guard")
    return entity


# -- hooks --------------------------------------------------------------------------------


def _hook_guard(run: Run, hook: Hook | None, hook_id: str) -> None:
    if hook is None or hook.run_id != run.run_id:
        raise errors.HookNotFound("Hook not found", {"hookId": hook_id})


def _hook_created(
    request: EventRequest, run: Run, state: Snapshot, spec: int, now: datetime
) -> Transition:
    data = request.event_data or {}
    hook_id = request.correlation_id or ""
    token: str = data["token"]
    existing = state.hook
    if existing is not None:
        if existing.run_id == run.run_id and existing.token == token:
            return Transition(answer_hook=existing, answer_with_event=False)
        raise errors.EntityConflict(f'Hook "{hook_id}" already exists', {"hookId": hook_id})
    if state.token_holder is not None:
        conflict_data = {"token": token, "conflictingRunId": state.token_holder.run_id}
        conflict = EventDraft(EventType.HOOK_CONFLICT, spec, hook_id, conflict_data)
        return Transition(events=(conflict,))
    hook = Hook(
        run_id=run.run_id,
        hook_id=hook_id,
        token=token,
        metadata=data.get("metadata"),
        is_webhook=bool(data.get("isWebhook", False)),
        is_system=bool(data.get("isSystem", False)),
        spec_version=spec,
        created_at=now,
    )
    draft = EventDraft(EventType.HOOK_CREATED, spec, hook_id, request.event_data)
    return Transition(events=(draft,), new_hook=hook, answer_hook=hook)


def _hook_received(
    request: EventRequest, run: Run, state: Snapshot, spec: int, now: datetime
) -> Transition:
    draft = EventDraft(request.event_type, spec, request.correlation_id, request.event_data)
    return Transition(events=(draft,))


def _hook_disposed(
    request: EventRequest, run: Run, state: Snapshot, spec: int, now: datetime
) -> Transition:
    draft = EventDraft(request.event_type, spec, request.correlation_id, request.event_data)
    return Transition(events=(draft,), disposed_hook_id=request.correlation_id)


# -- waits --------------------------------------------------------------------------------


def _wait_created(
    request: EventRequest, run: Run, state: Snapshot, spec: int, now: datetime
) -> Transition:
    correlation_id = request.correlation_id or ""
    if state.wait is not None:
        raise errors.EntityConflict(
            f'Wait "{state.wait.wait_id}" already exists', {"waitId": state.wait.wait_id}
        )
    data = request.event_data or {}
    wait = Wait(
        run_id=run.run_id,
        correlation_id=correlation_id,
        status="waiting",
        resume_at=parse_date(data["resumeAt"], "resumeAt"),
        spec_version=spec,
        created_at=now,
        updated_at=now,
    )
    draft = EventDraft(request.event_type, spec, correlation_id, request.event_data)
    return Transition(events=(draft,), wait=wait, wait_is_new=True, answer_wait=wait)


def _wait_completed(
    request: EventRequest, run: Run, state: Snapshot, spec: int, now: datetime
) -> Transition:
    wait = state.wait
    correlation_id = request.correlation_id or ""
    if wait is None:
        wait_id = f"{run.run_id}-{correlation_id}"
        raise errors.WaitNotFound(f'Wait "{wait_id}" not found', {"waitId": wait_id})
    if wait.status == "completed":
        raise errors.EntityConflict(
            f'Wait "{wait.wait_id}" is already completed', {"waitId": wait.wait_id}
        )
    done = replace(wait, status="completed", completed_at=now, updated_at=now)
    draft = EventDraft(request.event_type, spec, correlation_id, request.event_data)
    return Transition(events=(draft,), wait=done, answer_wait=done)


_HANDLERS = {
    EventType.RUN_STARTED: _run_started,
    EventType.RUN_COMPLETED: _run_completed,
    EventType.RUN_FAILED: _run_failed,
    EventType.RUN_CANCELLED: _run_cancelled,
    EventType.STEP_CREATED: _step_created,
    EventType.STEP_STARTED: _step_started,
    EventType.STEP_COMPLETED: _step_completed,
    EventType.STEP_FAILED: _step_failed,
    EventType.STEP_RETRYING: _step_retrying,
    EventType.HOOK_CREATED: _hook_created,
    EventType.HOOK_RECEIVED: _hook_received,
    EventType.HOOK_DISPOSED: _hook_disposed,
    EventType.WAIT_CREATED: _wait_created,
    EventType.WAIT_COMPLETED: _wait_completed,
    EventType.ATTR_SET: _attr_set,
}


def materialize(drafts: tuple[EventDraft, ...], run_id: str, event_ids: list[str]) -> list[Event]:
    """Turn drafts into stored events; run_started keeps no eventData (world.md §2.0 step 8).

    An event's time is the one embedded in its monotonic id, so ordering by
    ``(createdAt, eventId)`` and by ``eventId`` agree.
    """
    events = []
    for draft, event_id in zip(drafts, event_ids, strict=True):
        data = None if draft.event_type is EventType.RUN_STARTED else draft.event_data
        events.append(
            Event(
                event_id=event_id,
                run_id=run_id,
                event_type=draft.event_type,
                correlation_id=draft.correlation_id,
                event_data=data,
                spec_version=draft.spec_version,
                created_at=ids.ulid_datetime(event_id),
                occurred_at=draft.occurred_at,
            )
        )
    return events
