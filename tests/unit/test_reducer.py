"""The pure event reducer against world.md §2 and decisions D5, D6, D11."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from compute_worker.domain import errors, ids
from compute_worker.domain.reducer import (
    EventDraft,
    Snapshot,
    Transition,
    decide,
    materialize,
    structured_error,
)
from compute_worker.domain.validation import check_request_shape, parse_date, validate_client_run_id
from compute_worker.domain.world import (
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

NOW = datetime(2025, 1, 15, 12, 0, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(minutes=10)
NOW_MS = int(NOW.timestamp() * 1000)

RUN_ID = ids.RUN + ids.encode_ulid(NOW_MS - 60_000, 7)
OTHER_RUN_ID = ids.RUN + ids.encode_ulid(NOW_MS - 120_000, 9)
STEP_ID = ids.STEP + ids.encode_ulid(NOW_MS, 1)
HOOK_ID = ids.HOOK + ids.encode_ulid(NOW_MS, 2)
WAIT_CORR = ids.WAIT + ids.encode_ulid(NOW_MS, 3)

PAYLOAD = b"devl\x00\x01\xfe\xff"
TERMINAL_RUN = ("completed", "failed", "cancelled")
TERMINAL_STEP = ("completed", "failed", "cancelled")
STEP_MUTATIONS = (
    EventType.STEP_STARTED,
    EventType.STEP_COMPLETED,
    EventType.STEP_FAILED,
    EventType.STEP_RETRYING,
)
RUN_CREATED_DATA = {"deploymentId": "dpl_1", "workflowName": "workflow//w", "input": PAYLOAD}


# -- builders -----------------------------------------------------------------------------


def make_run(status: str = "running", **changes: Any) -> Run:
    run = Run(
        run_id=RUN_ID,
        status=status,  # type: ignore[arg-type]
        deployment_id="dpl_1",
        workflow_name="workflow//w",
        input=PAYLOAD,
        created_at=EARLIER,
        updated_at=EARLIER,
        started_at=EARLIER if status != "pending" else None,
        completed_at=EARLIER if status in TERMINAL_RUN else None,
    )
    return replace(run, **changes)


def make_step(status: str = "pending", **changes: Any) -> Step:
    step = Step(
        run_id=RUN_ID,
        step_id=STEP_ID,
        step_name="step//s",
        status=status,  # type: ignore[arg-type]
        input=PAYLOAD,
        created_at=EARLIER,
        updated_at=EARLIER,
        attempt=0 if status == "pending" else 1,
        started_at=None if status == "pending" else EARLIER,
    )
    return replace(step, **changes)


def make_hook(**changes: Any) -> Hook:
    hook = Hook(run_id=RUN_ID, hook_id=HOOK_ID, token="tok-1", created_at=EARLIER)
    return replace(hook, **changes)


def make_wait(status: str = "waiting", **changes: Any) -> Wait:
    wait = Wait(
        run_id=RUN_ID,
        correlation_id=WAIT_CORR,
        status=status,  # type: ignore[arg-type]
        created_at=EARLIER,
        updated_at=EARLIER,
        resume_at=NOW,
    )
    return replace(wait, **changes)


def req(
    event_type: EventType,
    correlation_id: str | None = None,
    data: dict[str, Any] | None = None,
    spec: int | None = None,
) -> EventRequest:
    return EventRequest(event_type, correlation_id, spec, data)


def run_decide(request: EventRequest, state: Snapshot, run_id: str = RUN_ID) -> Transition:
    return decide(request, run_id, state, NOW)


def only_event(transition: Transition) -> EventDraft:
    assert len(transition.events) == 1
    return transition.events[0]


# A request of every type that passes the shape checks, with its correlation id.
VALID_REQUESTS: dict[EventType, EventRequest] = {
    EventType.RUN_CREATED: req(EventType.RUN_CREATED, data=RUN_CREATED_DATA),
    EventType.RUN_STARTED: req(EventType.RUN_STARTED),
    EventType.RUN_COMPLETED: req(EventType.RUN_COMPLETED, data={"output": PAYLOAD}),
    EventType.RUN_FAILED: req(EventType.RUN_FAILED, data={"error": "boom"}),
    EventType.RUN_CANCELLED: req(EventType.RUN_CANCELLED),
    EventType.STEP_CREATED: req(
        EventType.STEP_CREATED, STEP_ID, {"stepName": "step//s", "input": PAYLOAD}
    ),
    EventType.STEP_STARTED: req(EventType.STEP_STARTED, STEP_ID),
    EventType.STEP_COMPLETED: req(EventType.STEP_COMPLETED, STEP_ID, {"result": PAYLOAD}),
    EventType.STEP_FAILED: req(EventType.STEP_FAILED, STEP_ID, {"error": "bad"}),
    EventType.STEP_RETRYING: req(EventType.STEP_RETRYING, STEP_ID, {"error": "again"}),
    EventType.HOOK_CREATED: req(EventType.HOOK_CREATED, HOOK_ID, {"token": "tok-1"}),
    EventType.HOOK_RECEIVED: req(EventType.HOOK_RECEIVED, HOOK_ID, {"payload": PAYLOAD}),
    EventType.HOOK_DISPOSED: req(EventType.HOOK_DISPOSED, HOOK_ID),
    EventType.WAIT_CREATED: req(
        EventType.WAIT_CREATED, WAIT_CORR, {"resumeAt": "2025-01-15T13:00:00Z"}
    ),
    EventType.WAIT_COMPLETED: req(EventType.WAIT_COMPLETED, WAIT_CORR),
}


# -- request shape ------------------------------------------------------------------------


@pytest.mark.parametrize("correlation_id", [None, HOOK_ID])
def test_hook_conflict_cannot_be_sent_by_a_client(correlation_id: str | None) -> None:
    request = req(EventType.HOOK_CONFLICT, correlation_id, {"token": "tok-1"})
    with pytest.raises(errors.InvalidRequest) as caught:
        run_decide(request, Snapshot(run=make_run()))
    assert caught.value.code == "invalid_request"
    assert caught.value.details == {"field": "data.eventType"}


CORRELATED = [t for t in EventType if t.family in ("step", "hook", "wait")]


@pytest.mark.parametrize("event_type", [t for t in CORRELATED if t is not EventType.HOOK_CONFLICT])
@pytest.mark.parametrize("correlation_id", [None, ""])
def test_step_hook_and_wait_events_need_a_correlation_id(
    event_type: EventType, correlation_id: str | None
) -> None:
    request = replace(VALID_REQUESTS[event_type], correlation_id=correlation_id)
    with pytest.raises(errors.InvalidRequest) as caught:
        run_decide(request, Snapshot(run=make_run()))
    assert caught.value.code == "invalid_request"
    assert caught.value.details == {"field": "data.correlationId"}


@pytest.mark.parametrize(
    "event_type",
    [
        EventType.RUN_STARTED,
        EventType.RUN_COMPLETED,
        EventType.RUN_FAILED,
        EventType.RUN_CANCELLED,
    ],
)
def test_run_events_need_no_correlation_id(event_type: EventType) -> None:
    check_request_shape(VALID_REQUESTS[event_type])


@pytest.mark.parametrize(
    ("event_type", "data", "missing"),
    [
        (EventType.RUN_CREATED, None, "deploymentId"),
        (EventType.RUN_CREATED, {"workflowName": "w", "input": PAYLOAD}, "deploymentId"),
        (EventType.RUN_CREATED, {"deploymentId": "d", "input": PAYLOAD}, "workflowName"),
        (EventType.RUN_CREATED, {"deploymentId": "d", "workflowName": "w"}, "input"),
        (EventType.STEP_CREATED, {"input": PAYLOAD}, "stepName"),
        (EventType.STEP_CREATED, {"stepName": "step//s"}, "input"),
        (EventType.STEP_COMPLETED, {}, "result"),
        (EventType.STEP_COMPLETED, None, "result"),
        (EventType.HOOK_CREATED, {"metadata": PAYLOAD}, "token"),
        (EventType.HOOK_RECEIVED, {}, "payload"),
        (EventType.WAIT_CREATED, {}, "resumeAt"),
    ],
)
def test_missing_required_event_data_is_an_invalid_request(
    event_type: EventType, data: dict[str, Any] | None, missing: str
) -> None:
    request = replace(VALID_REQUESTS[event_type], event_data=data)
    with pytest.raises(errors.InvalidRequest) as caught:
        run_decide(request, Snapshot(run=make_run(), step=make_step("running")))
    assert caught.value.code == "invalid_request"
    assert caught.value.details == {"field": f"data.eventData.{missing}"}


@pytest.mark.parametrize(
    ("event_type", "data", "field"),
    [
        (EventType.RUN_CREATED, {**RUN_CREATED_DATA, "deploymentId": 5}, "deploymentId"),
        (EventType.RUN_CREATED, {**RUN_CREATED_DATA, "deploymentId": ""}, "deploymentId"),
        (EventType.RUN_CREATED, {**RUN_CREATED_DATA, "workflowName": None}, "workflowName"),
        (EventType.RUN_CREATED, {**RUN_CREATED_DATA, "executionContext": []}, "executionContext"),
        (EventType.RUN_STARTED, {"deploymentId": 1}, "deploymentId"),
        (EventType.RUN_STARTED, {"workflowName": ""}, "workflowName"),
        (EventType.STEP_CREATED, {"stepName": "", "input": PAYLOAD}, "stepName"),
        (EventType.HOOK_CREATED, {"token": 123}, "token"),
        (EventType.HOOK_CREATED, {"token": ""}, "token"),
        (EventType.HOOK_CREATED, {"token": "t", "isWebhook": "yes"}, "isWebhook"),
        (EventType.WAIT_CREATED, {"resumeAt": "tomorrow"}, "resumeAt"),
        (EventType.WAIT_CREATED, {"resumeAt": None}, "resumeAt"),
        (EventType.STEP_RETRYING, {"error": "e", "retryAfter": "soon"}, "retryAfter"),
    ],
)
def test_badly_typed_event_data_is_an_invalid_request(
    event_type: EventType, data: dict[str, Any], field: str
) -> None:
    request = replace(VALID_REQUESTS[event_type], event_data=data)
    with pytest.raises(errors.InvalidRequest) as caught:
        check_request_shape(request)
    assert caught.value.details == {"field": f"data.eventData.{field}"}


def test_shape_is_checked_before_the_run_is_looked_up() -> None:
    request = replace(VALID_REQUESTS[EventType.STEP_STARTED], correlation_id=None)
    with pytest.raises(errors.InvalidRequest):
        run_decide(request, Snapshot())


@pytest.mark.parametrize("event_type", list(VALID_REQUESTS))
def test_every_valid_request_passes_the_shape_check(event_type: EventType) -> None:
    check_request_shape(VALID_REQUESTS[event_type])


# -- §2.0 step 1: client run ids ----------------------------------------------------------


def run_id_at(offset: timedelta, randomness: int = 0) -> str:
    stamp_ms = NOW_MS + int(offset.total_seconds() * 1000)
    return ids.RUN + ids.encode_ulid(stamp_ms, randomness)


@pytest.mark.parametrize(
    "offset",
    [
        timedelta(0),
        -timedelta(hours=23, minutes=59),
        -timedelta(hours=24),
        timedelta(minutes=4, seconds=59),
        timedelta(minutes=5),
    ],
    ids=["now", "23h59m-ago", "exactly-24h-ago", "4m59s-ahead", "exactly-5m-ahead"],
)
def test_client_run_id_inside_the_window_is_accepted(offset: timedelta) -> None:
    validate_client_run_id(run_id_at(offset, 12345), NOW)


def test_client_run_id_ulid_is_case_insensitive() -> None:
    run_id = run_id_at(timedelta(0), 999)
    validate_client_run_id(ids.RUN + run_id.removeprefix(ids.RUN).lower(), NOW)


@pytest.mark.parametrize(
    ("offset", "message"),
    [
        (
            -timedelta(hours=24, seconds=1),
            "embedded timestamp is 86401s in the past (threshold: 86400s)",
        ),
        (-timedelta(days=2), "embedded timestamp is 172800s in the past (threshold: 86400s)"),
        (
            timedelta(minutes=5, seconds=1),
            "embedded timestamp is 301s in the future (threshold: 300s)",
        ),
        (timedelta(hours=1), "embedded timestamp is 3600s in the future (threshold: 300s)"),
    ],
)
def test_client_run_id_outside_the_window_is_refused(offset: timedelta, message: str) -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        validate_client_run_id(run_id_at(offset), NOW)
    assert caught.value.code == "invalid_request"
    assert caught.value.kind == "WorkflowWorldError"
    assert caught.value.message == f"Invalid runId timestamp: {message}"


GOOD_ULID = ids.encode_ulid(NOW_MS, 5)


@pytest.mark.parametrize(
    "run_id",
    [
        "",
        "wrun_",
        GOOD_ULID,
        "run_" + GOOD_ULID,
        "step_" + GOOD_ULID,
        "wrun_" + GOOD_ULID[:-1],
        "wrun_" + GOOD_ULID + "0",
        "wrun_" + GOOD_ULID[:-1] + "U",
        "wrun_" + GOOD_ULID[:-1] + "-",
        "wrun_8" + "0" * 25,
        "wrun_" + "Z" * 26,
    ],
)
def test_client_run_id_that_is_not_a_ulid_is_refused(run_id: str) -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        validate_client_run_id(run_id, NOW)
    assert caught.value.code == "invalid_request"
    assert caught.value.message == f'Invalid runId: "{run_id}" is not a valid ULID'


# -- §2.0 steps 2-4: missing runs, resilient start, version gate ---------------------------


@pytest.mark.parametrize(
    "event_type", [t for t in VALID_REQUESTS if t is not EventType.RUN_CREATED]
)
def test_event_for_a_missing_run_is_run_not_found(event_type: EventType) -> None:
    with pytest.raises(errors.RunNotFound) as caught:
        run_decide(VALID_REQUESTS[event_type], Snapshot(step=make_step("running")))
    assert caught.value.code == "run_not_found"
    assert caught.value.kind == "WorkflowRunNotFoundError"
    assert caught.value.details == {"runId": RUN_ID}


def test_resilient_start_creates_the_run_and_starts_it() -> None:
    data = {**RUN_CREATED_DATA, "executionContext": {"traceId": "t1"}}
    transition = run_decide(req(EventType.RUN_STARTED, data=data), Snapshot())

    created, started = transition.events
    assert created == EventDraft(EventType.RUN_CREATED, 3, None, data)
    assert started == EventDraft(EventType.RUN_STARTED, 3, None, None)
    run = transition.run
    assert run is not None
    assert transition.run_is_new
    assert (run.run_id, run.status, run.started_at) == (RUN_ID, "running", NOW)
    assert (run.deployment_id, run.workflow_name, run.input) == ("dpl_1", "workflow//w", PAYLOAD)
    assert run.execution_context == {"traceId": "t1"}
    assert run.spec_version == 3
    assert run.created_at == NOW
    assert transition.answer_run == run
    assert transition.answer_with_log
    assert transition.answer_with_event


def test_resilient_start_without_execution_context() -> None:
    transition = run_decide(req(EventType.RUN_STARTED, data=RUN_CREATED_DATA, spec=2), Snapshot())
    created = transition.events[0]
    assert created.event_data == RUN_CREATED_DATA
    assert created.spec_version == 2
    assert transition.run is not None
    assert transition.run.execution_context is None
    assert transition.run.spec_version == 2


def test_resilient_start_accepts_a_null_input() -> None:
    data = {**RUN_CREATED_DATA, "input": None}
    transition = run_decide(req(EventType.RUN_STARTED, data=data), Snapshot())
    assert transition.run is not None
    assert transition.run.status == "running"
    assert transition.run.input is None


@pytest.mark.parametrize("missing", ["deploymentId", "workflowName", "input"])
def test_resilient_start_needs_all_three_fields(missing: str) -> None:
    data = {k: v for k, v in RUN_CREATED_DATA.items() if k != missing}
    with pytest.raises(errors.RunNotFound):
        run_decide(req(EventType.RUN_STARTED, data=data), Snapshot())


@pytest.mark.parametrize("spec", [1, 6])
def test_resilient_start_of_an_unsupported_version_is_refused(spec: int) -> None:
    with pytest.raises(errors.RunNotSupported) as caught:
        run_decide(req(EventType.RUN_STARTED, data=RUN_CREATED_DATA, spec=spec), Snapshot())
    assert caught.value.code == "run_not_supported"


def test_resilient_start_fields_are_ignored_when_the_run_exists() -> None:
    transition = run_decide(
        req(EventType.RUN_STARTED, data=RUN_CREATED_DATA), Snapshot(run=make_run("pending"))
    )
    assert only_event(transition) == EventDraft(EventType.RUN_STARTED, 3, None, None)
    assert not transition.run_is_new


@pytest.mark.parametrize("spec", [6, 99])
@pytest.mark.parametrize("status", ["running", "completed"])
def test_run_newer_than_spec_5_is_not_supported(spec: int, status: str) -> None:
    with pytest.raises(errors.RunNotSupported) as caught:
        run_decide(
            VALID_REQUESTS[EventType.RUN_CANCELLED],
            Snapshot(run=make_run(status, spec_version=spec)),
        )
    assert caught.value.code == "run_not_supported"
    assert caught.value.kind == "RunNotSupportedError"
    assert caught.value.details == {"runSpecVersion": spec, "supportedSpecVersion": 5}


@pytest.mark.parametrize("spec", [None, 0, 1])
def test_legacy_runs_are_refused(spec: int | None) -> None:
    state = Snapshot(run=make_run(spec_version=spec), step=make_step("running"))
    with pytest.raises(errors.RunNotSupported) as caught:
        run_decide(VALID_REQUESTS[EventType.STEP_COMPLETED], state)
    assert caught.value.code == "run_not_supported"


@pytest.mark.parametrize("spec", [2, 3, 4, 5])
def test_runs_of_spec_2_to_5_are_supported(spec: int) -> None:
    transition = run_decide(
        VALID_REQUESTS[EventType.RUN_CANCELLED], Snapshot(run=make_run(spec_version=spec))
    )
    assert transition.run is not None
    assert transition.run.status == "cancelled"


@pytest.mark.parametrize(("spec", "expected"), [(None, 3), (2, 2), (3, 3)])
def test_event_spec_version_defaults_to_3(spec: int | None, expected: int) -> None:
    request = replace(VALID_REQUESTS[EventType.HOOK_RECEIVED], spec_version=spec)
    transition = run_decide(request, Snapshot(run=make_run(), hook=make_hook()))
    assert only_event(transition).spec_version == expected


# -- §2.0 step 5: terminal-run guard ------------------------------------------------------


@pytest.mark.parametrize("status", TERMINAL_RUN)
def test_run_started_on_a_terminal_run_is_run_expired(status: str) -> None:
    with pytest.raises(errors.RunExpired) as caught:
        run_decide(VALID_REQUESTS[EventType.RUN_STARTED], Snapshot(run=make_run(status)))
    assert caught.value.code == "run_expired"
    assert caught.value.kind == "RunExpiredError"
    assert (
        caught.value.message == f'Workflow run "{RUN_ID}" is already in terminal state "{status}"'
    )


@pytest.mark.parametrize(
    ("status", "event_type"),
    [
        (status, event_type)
        for status in TERMINAL_RUN
        for event_type in (EventType.RUN_COMPLETED, EventType.RUN_FAILED, EventType.RUN_CANCELLED)
        if not (status == "cancelled" and event_type is EventType.RUN_CANCELLED)
    ],
)
def test_ending_a_terminal_run_again_is_a_conflict(status: str, event_type: EventType) -> None:
    with pytest.raises(errors.EntityConflict) as caught:
        run_decide(VALID_REQUESTS[event_type], Snapshot(run=make_run(status)))
    assert caught.value.code == "entity_conflict"
    assert caught.value.kind == "EntityConflictError"
    assert caught.value.message.startswith("Cannot transition run from terminal state")


@pytest.mark.parametrize("status", TERMINAL_RUN)
@pytest.mark.parametrize(
    "event_type", [EventType.STEP_CREATED, EventType.HOOK_CREATED, EventType.WAIT_CREATED]
)
def test_no_new_entities_on_a_terminal_run(status: str, event_type: EventType) -> None:
    with pytest.raises(errors.EntityConflict) as caught:
        run_decide(VALID_REQUESTS[event_type], Snapshot(run=make_run(status)))
    assert caught.value.code == "entity_conflict"


def test_hook_conflict_is_not_produced_on_a_terminal_run() -> None:
    state = Snapshot(run=make_run("completed"), token_holder=make_hook(run_id=OTHER_RUN_ID))
    with pytest.raises(errors.EntityConflict):
        run_decide(VALID_REQUESTS[EventType.HOOK_CREATED], state)


def test_cancelling_a_cancelled_run_is_idempotent() -> None:
    run = make_run("cancelled")
    transition = run_decide(VALID_REQUESTS[EventType.RUN_CANCELLED], Snapshot(run=run))
    event = only_event(transition)
    assert event.event_type is EventType.RUN_CANCELLED
    assert event.correlation_id is None
    assert transition.run is None  # nothing to write on the run
    assert transition.answer_run is run
    assert transition.answer_with_event
    assert not transition.purge_hooks_and_waits


def test_idempotent_cancel_event_carries_the_effective_spec_version() -> None:
    run = make_run("cancelled", spec_version=2)
    transition = run_decide(req(EventType.RUN_CANCELLED), Snapshot(run=run))
    assert only_event(transition).spec_version == 3


@pytest.mark.parametrize("status", TERMINAL_RUN)
def test_hook_events_pass_the_terminal_guard_when_the_hook_exists(status: str) -> None:
    state = Snapshot(run=make_run(status), hook=make_hook())
    received = run_decide(VALID_REQUESTS[EventType.HOOK_RECEIVED], state)
    disposed = run_decide(VALID_REQUESTS[EventType.HOOK_DISPOSED], state)
    assert only_event(received).event_type is EventType.HOOK_RECEIVED
    assert disposed.disposed_hook_id == HOOK_ID


@pytest.mark.parametrize("status", TERMINAL_RUN)
@pytest.mark.parametrize("event_type", [EventType.HOOK_RECEIVED, EventType.HOOK_DISPOSED])
def test_hook_events_on_a_terminal_run_whose_hooks_are_gone(
    status: str, event_type: EventType
) -> None:
    with pytest.raises(errors.HookNotFound):
        run_decide(VALID_REQUESTS[event_type], Snapshot(run=make_run(status)))


@pytest.mark.parametrize("status", TERMINAL_RUN)
def test_wait_completed_on_a_terminal_run_whose_waits_are_gone(status: str) -> None:
    with pytest.raises(errors.WaitNotFound):
        run_decide(VALID_REQUESTS[EventType.WAIT_COMPLETED], Snapshot(run=make_run(status)))


# -- §2.1 run lifecycle -------------------------------------------------------------------


def test_run_created() -> None:
    data = {**RUN_CREATED_DATA, "executionContext": {"k": "v"}}
    transition = run_decide(req(EventType.RUN_CREATED, data=data), Snapshot())

    assert only_event(transition) == EventDraft(EventType.RUN_CREATED, 3, None, data)
    run = transition.run
    assert run is not None
    assert transition.run_is_new
    assert transition.answer_run == run
    assert run.run_id == RUN_ID
    assert run.status == "pending"
    assert (run.deployment_id, run.workflow_name, run.input) == ("dpl_1", "workflow//w", PAYLOAD)
    assert run.execution_context == {"k": "v"}
    assert run.spec_version == 3
    assert (run.created_at, run.updated_at) == (NOW, NOW)
    assert run.started_at is None
    assert run.completed_at is None
    assert run.output is None
    assert run.error is None
    assert transition.answer_with_event
    assert not transition.answer_with_log
    assert not transition.purge_hooks_and_waits


def test_run_created_copies_the_event_spec_version() -> None:
    transition = run_decide(req(EventType.RUN_CREATED, data=RUN_CREATED_DATA, spec=2), Snapshot())
    assert transition.run is not None
    assert transition.run.spec_version == 2
    assert only_event(transition).spec_version == 2


@pytest.mark.parametrize("spec", [0, 1, 6])
def test_run_created_with_an_unsupported_version_is_refused(spec: int) -> None:
    with pytest.raises(errors.RunNotSupported):
        run_decide(req(EventType.RUN_CREATED, data=RUN_CREATED_DATA, spec=spec), Snapshot())


@pytest.mark.parametrize("status", ["pending", "running", "completed"])
def test_run_created_twice_is_a_conflict(status: str) -> None:
    with pytest.raises(errors.EntityConflict) as caught:
        run_decide(VALID_REQUESTS[EventType.RUN_CREATED], Snapshot(run=make_run(status)))
    assert caught.value.code == "entity_conflict"
    assert caught.value.message == f'Workflow run "{RUN_ID}" already exists'


def test_run_started_on_a_pending_run() -> None:
    run = make_run("pending")
    transition = run_decide(VALID_REQUESTS[EventType.RUN_STARTED], Snapshot(run=run))

    assert only_event(transition) == EventDraft(EventType.RUN_STARTED, 3, None, None)
    assert transition.run == replace(run, status="running", started_at=NOW, updated_at=NOW)
    assert not transition.run_is_new
    assert transition.answer_run == transition.run
    assert transition.answer_with_log
    assert transition.answer_with_event


def test_run_started_keeps_an_earlier_started_at() -> None:
    run = make_run("pending", started_at=EARLIER)
    transition = run_decide(VALID_REQUESTS[EventType.RUN_STARTED], Snapshot(run=run))
    assert transition.run is not None
    assert transition.run.started_at == EARLIER


def test_run_started_drops_its_event_data() -> None:
    request = req(EventType.RUN_STARTED, data={"input": PAYLOAD, "executionContext": {}})
    transition = run_decide(request, Snapshot(run=make_run("pending")))
    assert only_event(transition).event_data is None


def test_run_started_on_a_running_run_returns_the_run_without_an_event() -> None:
    run = make_run("running")
    transition = run_decide(VALID_REQUESTS[EventType.RUN_STARTED], Snapshot(run=run))
    assert transition.events == ()
    assert transition.run is None
    assert transition.answer_run is run
    assert not transition.answer_with_event
    assert not transition.answer_with_log


@pytest.mark.parametrize("status", ["pending", "running"])
def test_run_completed(status: str) -> None:
    run = make_run(status)
    request = VALID_REQUESTS[EventType.RUN_COMPLETED]
    transition = run_decide(request, Snapshot(run=run))

    assert only_event(transition) == EventDraft(
        EventType.RUN_COMPLETED, 3, None, {"output": PAYLOAD}
    )
    assert transition.run == replace(
        run, status="completed", output=PAYLOAD, completed_at=NOW, updated_at=NOW
    )
    assert transition.answer_run == transition.run
    assert transition.purge_hooks_and_waits


def test_run_completed_without_output() -> None:
    transition = run_decide(req(EventType.RUN_COMPLETED), Snapshot(run=make_run()))
    assert transition.run is not None
    assert transition.run.status == "completed"
    assert transition.run.output is None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"error": "boom", "errorCode": "USER_ERROR"}, StructuredError("boom", None, "USER_ERROR")),
        ({"error": {"message": "m", "stack": "at x"}}, StructuredError("m", "at x", None)),
        (
            {"error": {"message": "m", "stack": "at x"}, "errorCode": "RUNTIME_ERROR"},
            StructuredError("m", "at x", "RUNTIME_ERROR"),
        ),
        ({"error": {}}, StructuredError("Unknown error")),
        ({"error": {"message": 5}}, StructuredError("Unknown error")),
        ({"error": 42}, StructuredError("Unknown error")),
        ({"error": None}, StructuredError("Unknown error")),
        ({"error": ""}, StructuredError("Unknown error")),
        ({}, StructuredError("Unknown error")),
    ],
)
def test_run_failed(data: dict[str, Any], expected: StructuredError) -> None:
    run = make_run()
    transition = run_decide(req(EventType.RUN_FAILED, data=data), Snapshot(run=run))

    assert only_event(transition) == EventDraft(EventType.RUN_FAILED, 3, None, data)
    assert transition.run == replace(
        run, status="failed", error=expected, completed_at=NOW, updated_at=NOW
    )
    assert transition.run.output is None
    assert transition.answer_run == transition.run
    assert transition.purge_hooks_and_waits


def test_run_failed_from_pending() -> None:
    transition = run_decide(VALID_REQUESTS[EventType.RUN_FAILED], Snapshot(run=make_run("pending")))
    assert transition.run is not None
    assert transition.run.status == "failed"


@pytest.mark.parametrize("status", ["pending", "running"])
def test_run_cancelled(status: str) -> None:
    run = make_run(status)
    transition = run_decide(VALID_REQUESTS[EventType.RUN_CANCELLED], Snapshot(run=run))

    assert only_event(transition) == EventDraft(EventType.RUN_CANCELLED, 3, None, None)
    assert transition.run == replace(run, status="cancelled", completed_at=NOW, updated_at=NOW)
    assert transition.answer_run == transition.run
    assert transition.purge_hooks_and_waits


def test_structured_error_prefers_explicit_stack_and_code() -> None:
    error = {"message": "m", "stack": "inner", "code": "INNER"}
    assert structured_error(error, "outer", "OUTER") == StructuredError("m", "outer", "OUTER")
    assert structured_error(error) == StructuredError("m", "inner", "INNER")
    assert structured_error("s", 5, 6) == StructuredError("s")


# -- §2.0 step 6 and §2.2 step lifecycle ---------------------------------------------------


def test_step_created() -> None:
    request = req(EventType.STEP_CREATED, STEP_ID, {"stepName": "step//s", "input": PAYLOAD}, 2)
    transition = run_decide(request, Snapshot(run=make_run()))

    assert only_event(transition) == EventDraft(
        EventType.STEP_CREATED, 2, STEP_ID, {"stepName": "step//s", "input": PAYLOAD}
    )
    assert transition.step == Step(
        run_id=RUN_ID,
        step_id=STEP_ID,
        step_name="step//s",
        status="pending",
        input=PAYLOAD,
        created_at=NOW,
        updated_at=NOW,
        attempt=0,
        spec_version=2,
    )
    assert transition.step_is_new
    assert transition.answer_step == transition.step
    assert transition.run is None


def test_step_created_on_a_pending_run() -> None:
    transition = run_decide(
        VALID_REQUESTS[EventType.STEP_CREATED], Snapshot(run=make_run("pending"))
    )
    assert transition.step is not None


@pytest.mark.parametrize("status", ["pending", "running", "completed"])
def test_step_created_twice_is_a_conflict(status: str) -> None:
    state = Snapshot(run=make_run(), step=make_step(status))
    with pytest.raises(errors.EntityConflict) as caught:
        run_decide(VALID_REQUESTS[EventType.STEP_CREATED], state)
    assert caught.value.code == "entity_conflict"


@pytest.mark.parametrize("event_type", STEP_MUTATIONS)
def test_step_event_for_a_missing_step_is_not_found(event_type: EventType) -> None:
    with pytest.raises(errors.StepNotFound) as caught:
        run_decide(VALID_REQUESTS[event_type], Snapshot(run=make_run()))
    assert caught.value.code == "step_not_found"
    assert caught.value.kind == "WorkflowWorldError"
    assert caught.value.message == f'Step "{STEP_ID}" not found'


@pytest.mark.parametrize("run_status", ["running", "completed"])
@pytest.mark.parametrize("step_status", TERMINAL_STEP)
@pytest.mark.parametrize("event_type", STEP_MUTATIONS)
def test_step_event_on_a_terminal_step_is_a_conflict(
    run_status: str, step_status: str, event_type: EventType
) -> None:
    state = Snapshot(run=make_run(run_status), step=make_step(step_status))
    with pytest.raises(errors.EntityConflict) as caught:
        run_decide(VALID_REQUESTS[event_type], state)
    assert caught.value.code == "entity_conflict"


def test_step_started_from_pending() -> None:
    step = make_step("pending")
    transition = run_decide(
        VALID_REQUESTS[EventType.STEP_STARTED], Snapshot(run=make_run(), step=step)
    )

    assert only_event(transition) == EventDraft(EventType.STEP_STARTED, 3, STEP_ID, None)
    assert transition.step == replace(
        step, status="running", attempt=1, started_at=NOW, updated_at=NOW
    )
    assert not transition.step_is_new
    assert transition.answer_step == transition.step


def test_step_started_again_bumps_attempt_and_keeps_started_at() -> None:
    step = make_step("running", attempt=1, started_at=EARLIER)
    transition = run_decide(
        VALID_REQUESTS[EventType.STEP_STARTED], Snapshot(run=make_run(), step=step)
    )
    assert transition.step is not None
    assert transition.step.status == "running"
    assert transition.step.attempt == 2
    assert transition.step.started_at == EARLIER


def test_step_started_ignores_the_attempt_in_event_data() -> None:
    step = make_step("pending", attempt=3, started_at=EARLIER)
    request = req(EventType.STEP_STARTED, STEP_ID, {"attempt": 10})
    transition = run_decide(request, Snapshot(run=make_run(), step=step))
    assert transition.step is not None
    assert transition.step.attempt == 4
    assert only_event(transition).event_data == {"attempt": 10}


@pytest.mark.parametrize(
    ("remaining", "expected"),
    [
        (timedelta(seconds=60), 60),
        (timedelta(seconds=59, milliseconds=200), 60),
        (timedelta(seconds=1), 1),
        (timedelta(milliseconds=1), 1),
        (timedelta(hours=1, microseconds=1), 3601),
    ],
)
def test_step_started_before_retry_after_is_too_early(remaining: timedelta, expected: int) -> None:
    step = make_step("pending", attempt=1, retry_after=NOW + remaining)
    state = Snapshot(run=make_run(), step=step)
    with pytest.raises(errors.TooEarly) as caught:
        run_decide(VALID_REQUESTS[EventType.STEP_STARTED], state)
    assert caught.value.code == "too_early"
    assert caught.value.kind == "TooEarlyError"
    assert caught.value.retry_after == expected
    assert caught.value.details == {"retryAfter": expected}


@pytest.mark.parametrize("elapsed", [timedelta(0), timedelta(seconds=1), timedelta(days=1)])
def test_step_started_once_retry_after_has_passed(elapsed: timedelta) -> None:
    step = make_step("pending", attempt=1, started_at=EARLIER, retry_after=NOW - elapsed)
    transition = run_decide(
        VALID_REQUESTS[EventType.STEP_STARTED], Snapshot(run=make_run(), step=step)
    )
    assert transition.step is not None
    assert transition.step.status == "running"
    assert transition.step.attempt == 2
    assert transition.step.retry_after is None
    assert transition.step.started_at == EARLIER


@pytest.mark.parametrize("step_status", ["pending", "running"])
def test_step_completed(step_status: str) -> None:
    step = make_step(step_status)
    transition = run_decide(
        VALID_REQUESTS[EventType.STEP_COMPLETED], Snapshot(run=make_run(), step=step)
    )

    assert only_event(transition) == EventDraft(
        EventType.STEP_COMPLETED, 3, STEP_ID, {"result": PAYLOAD}
    )
    assert transition.step == replace(
        step, status="completed", output=PAYLOAD, completed_at=NOW, updated_at=NOW
    )
    assert transition.answer_step == transition.step


def test_step_completed_with_a_null_result() -> None:
    request = req(EventType.STEP_COMPLETED, STEP_ID, {"result": None})
    transition = run_decide(request, Snapshot(run=make_run(), step=make_step("running")))
    assert transition.step is not None
    assert transition.step.status == "completed"
    assert transition.step.output is None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"error": "bad", "stack": "at s"}, StructuredError("bad", "at s")),
        ({"error": {"message": "bad", "stack": "at e"}}, StructuredError("bad", "at e")),
        ({"error": "bad"}, StructuredError("bad")),
        ({}, StructuredError("Unknown error")),
    ],
)
def test_step_failed(data: dict[str, Any], expected: StructuredError) -> None:
    step = make_step("running")
    request = req(EventType.STEP_FAILED, STEP_ID, data)
    transition = run_decide(request, Snapshot(run=make_run(), step=step))

    assert only_event(transition) == EventDraft(EventType.STEP_FAILED, 3, STEP_ID, data)
    assert transition.step == replace(
        step, status="failed", error=expected, completed_at=NOW, updated_at=NOW
    )
    assert transition.answer_step == transition.step


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        ("2025-01-15T12:01:00Z", NOW + timedelta(seconds=60)),
        ("2025-01-15T13:01:00+01:00", NOW + timedelta(seconds=60)),
        ("2025-01-15T12:01:00", NOW + timedelta(seconds=60)),
        (NOW_MS + 60_000, NOW + timedelta(seconds=60)),
        (NOW + timedelta(seconds=5), NOW + timedelta(seconds=5)),
        (None, None),
    ],
)
def test_step_retrying(retry_after: Any, expected: datetime | None) -> None:
    step = make_step("running", attempt=2, started_at=EARLIER)
    data = {"error": "flaky", "stack": "at s", "retryAfter": retry_after}
    transition = run_decide(
        req(EventType.STEP_RETRYING, STEP_ID, data), Snapshot(run=make_run(), step=step)
    )

    assert only_event(transition) == EventDraft(EventType.STEP_RETRYING, 3, STEP_ID, data)
    assert transition.step == replace(
        step,
        status="pending",
        error=StructuredError("flaky", "at s"),
        retry_after=expected,
        updated_at=NOW,
    )
    assert transition.step.attempt == 2
    assert transition.step.started_at == EARLIER
    assert transition.step.completed_at is None


def test_step_retrying_replaces_the_previous_error() -> None:
    step = make_step("running", error=StructuredError("old"))
    request = req(EventType.STEP_RETRYING, STEP_ID, {"error": "new"})
    transition = run_decide(request, Snapshot(run=make_run(), step=step))
    assert transition.step is not None
    assert transition.step.error == StructuredError("new")


def test_attempts_across_start_retry_start() -> None:
    run = make_run()
    step = make_step("pending")
    start = VALID_REQUESTS[EventType.STEP_STARTED]
    retry = req(EventType.STEP_RETRYING, STEP_ID, {"error": "e", "retryAfter": NOW_MS + 30_000})

    first = decide(start, RUN_ID, Snapshot(run=run, step=step), NOW).step
    assert first is not None
    assert (first.attempt, first.started_at) == (1, NOW)
    retried = decide(retry, RUN_ID, Snapshot(run=run, step=first), NOW).step
    assert retried is not None
    assert (retried.status, retried.attempt) == ("pending", 1)

    with pytest.raises(errors.TooEarly) as caught:
        decide(start, RUN_ID, Snapshot(run=run, step=retried), NOW + timedelta(seconds=10))
    assert caught.value.retry_after == 20

    later = NOW + timedelta(seconds=30)
    second = decide(start, RUN_ID, Snapshot(run=run, step=retried), later).step
    assert second is not None
    assert (second.status, second.attempt, second.started_at) == ("running", 2, NOW)
    assert second.retry_after is None
    assert second.updated_at == later


# -- §2.3 hooks ---------------------------------------------------------------------------


def test_hook_created() -> None:
    data = {"token": "tok-1", "metadata": PAYLOAD}
    transition = run_decide(req(EventType.HOOK_CREATED, HOOK_ID, data), Snapshot(run=make_run()))

    assert only_event(transition) == EventDraft(EventType.HOOK_CREATED, 3, HOOK_ID, data)
    assert transition.new_hook == Hook(
        run_id=RUN_ID,
        hook_id=HOOK_ID,
        token="tok-1",
        created_at=NOW,
        metadata=PAYLOAD,
        is_webhook=False,
        spec_version=3,
    )
    assert transition.answer_hook == transition.new_hook
    assert transition.answer_with_event


@pytest.mark.parametrize(("given", "expected"), [(True, True), (False, False)])
def test_hook_created_passes_is_webhook_through(given: bool, expected: bool) -> None:
    request = req(EventType.HOOK_CREATED, HOOK_ID, {"token": "t", "isWebhook": given})
    transition = run_decide(request, Snapshot(run=make_run("pending")))
    assert transition.new_hook is not None
    assert transition.new_hook.is_webhook is expected


@pytest.mark.parametrize("holder_run", [OTHER_RUN_ID, RUN_ID])
def test_hook_created_with_a_held_token_records_hook_conflict(holder_run: str) -> None:
    holder = make_hook(run_id=holder_run, hook_id=ids.HOOK + ids.encode_ulid(NOW_MS, 99))
    request = req(EventType.HOOK_CREATED, HOOK_ID, {"token": "tok-1", "metadata": PAYLOAD})
    transition = run_decide(request, Snapshot(run=make_run(), token_holder=holder))

    assert only_event(transition) == EventDraft(
        EventType.HOOK_CONFLICT, 3, HOOK_ID, {"token": "tok-1", "conflictingRunId": holder_run}
    )
    assert transition.new_hook is None
    assert transition.answer_hook is None
    assert transition.answer_with_event


def test_repeated_hook_created_with_the_same_token_is_idempotent() -> None:
    existing = make_hook()
    state = Snapshot(run=make_run(), hook=existing)
    transition = run_decide(VALID_REQUESTS[EventType.HOOK_CREATED], state)

    assert transition.events == ()
    assert transition.new_hook is None
    assert transition.answer_hook is existing
    assert not transition.answer_with_event


@pytest.mark.parametrize(
    "existing",
    [
        make_hook(token="another-token"),
        make_hook(run_id=OTHER_RUN_ID),
        make_hook(run_id=OTHER_RUN_ID, token="another-token"),
    ],
    ids=["other-token", "other-run", "other-run-and-token"],
)
def test_hook_created_with_a_taken_hook_id_is_a_conflict(existing: Hook) -> None:
    state = Snapshot(run=make_run(), hook=existing)
    with pytest.raises(errors.EntityConflict) as caught:
        run_decide(VALID_REQUESTS[EventType.HOOK_CREATED], state)
    assert caught.value.code == "entity_conflict"


def test_hook_received() -> None:
    state = Snapshot(run=make_run(), hook=make_hook())
    transition = run_decide(VALID_REQUESTS[EventType.HOOK_RECEIVED], state)

    assert only_event(transition) == EventDraft(
        EventType.HOOK_RECEIVED, 3, HOOK_ID, {"payload": PAYLOAD}
    )
    # written from outside a replay: the run's stateUpdatedAt marker moves to the event
    assert transition == Transition(events=transition.events, run=transition.run)
    assert transition.run is not None and transition.run.state_marker_ms == NOW_MS
    assert replace(transition.run, state_marker_ms=None) == state.run


@pytest.mark.parametrize(
    ("seen", "refused"), [(NOW_MS - 2, True), (NOW_MS - 1, False), (NOW_MS + 9, False)]
)
def test_state_updated_at_must_not_be_older_than_the_marker(seen: int, refused: bool) -> None:
    run = replace(make_run(), state_marker_ms=NOW_MS - 1)
    state = Snapshot(run=run, hook=make_hook())
    params = CreateParams(state_updated_at=seen)
    request = VALID_REQUESTS[EventType.HOOK_RECEIVED]
    if refused:
        with pytest.raises(errors.PreconditionFailed):
            decide(request, RUN_ID, state, NOW, params)
        return
    transition = decide(request, RUN_ID, state, NOW, params)
    assert transition.run is None  # carrying stateUpdatedAt: the marker stays


def test_occurred_at_goes_on_the_requested_event_only() -> None:
    occurred = EARLIER
    request = req(EventType.RUN_STARTED, None, {"deploymentId": "d", "workflowName": "w",
                                                "input": PAYLOAD})  # fmt: skip
    transition = decide(request, RUN_ID, Snapshot(), NOW, CreateParams(occurred_at=occurred))
    assert [(d.event_type, d.occurred_at) for d in transition.events] == [
        (EventType.RUN_CREATED, None),
        (EventType.RUN_STARTED, occurred),
    ]


def test_hook_disposed() -> None:
    state = Snapshot(run=make_run(), hook=make_hook())
    transition = run_decide(VALID_REQUESTS[EventType.HOOK_DISPOSED], state)

    assert only_event(transition) == EventDraft(EventType.HOOK_DISPOSED, 3, HOOK_ID, None)
    assert transition.disposed_hook_id == HOOK_ID
    assert transition.new_hook is None
    assert transition.answer_hook is None


@pytest.mark.parametrize("event_type", [EventType.HOOK_RECEIVED, EventType.HOOK_DISPOSED])
@pytest.mark.parametrize(
    "hook", [None, make_hook(run_id=OTHER_RUN_ID)], ids=["missing", "other-run"]
)
def test_hook_events_need_the_hook(event_type: EventType, hook: Hook | None) -> None:
    with pytest.raises(errors.HookNotFound) as caught:
        run_decide(VALID_REQUESTS[event_type], Snapshot(run=make_run(), hook=hook))
    assert caught.value.code == "hook_not_found"
    assert caught.value.kind == "HookNotFoundError"


# -- §2.4 waits ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "resume_at",
    ["2025-01-15T13:00:00Z", "2025-01-15T13:00:00", NOW_MS + 3_600_000, float(NOW_MS + 3_600_000)],
)
def test_wait_created(resume_at: Any) -> None:
    data = {"resumeAt": resume_at}
    transition = run_decide(req(EventType.WAIT_CREATED, WAIT_CORR, data), Snapshot(run=make_run()))

    assert only_event(transition) == EventDraft(EventType.WAIT_CREATED, 3, WAIT_CORR, data)
    wait = transition.wait
    assert wait == Wait(
        run_id=RUN_ID,
        correlation_id=WAIT_CORR,
        status="waiting",
        created_at=NOW,
        updated_at=NOW,
        resume_at=NOW + timedelta(hours=1),
        spec_version=3,
    )
    assert wait.wait_id == f"{RUN_ID}-{WAIT_CORR}"
    assert transition.wait_is_new
    assert transition.answer_wait == wait


@pytest.mark.parametrize("status", ["waiting", "completed"])
def test_wait_created_twice_is_a_conflict(status: str) -> None:
    state = Snapshot(run=make_run(), wait=make_wait(status))
    with pytest.raises(errors.EntityConflict) as caught:
        run_decide(VALID_REQUESTS[EventType.WAIT_CREATED], state)
    assert caught.value.code == "entity_conflict"


def test_wait_completed() -> None:
    wait = make_wait()
    transition = run_decide(
        VALID_REQUESTS[EventType.WAIT_COMPLETED], Snapshot(run=make_run(), wait=wait)
    )

    assert only_event(transition) == EventDraft(EventType.WAIT_COMPLETED, 3, WAIT_CORR, None)
    assert transition.wait == replace(wait, status="completed", completed_at=NOW, updated_at=NOW)
    assert not transition.wait_is_new
    assert transition.answer_wait == transition.wait


def test_wait_completed_twice_is_a_conflict() -> None:
    state = Snapshot(run=make_run(), wait=make_wait("completed", completed_at=EARLIER))
    with pytest.raises(errors.EntityConflict) as caught:
        run_decide(VALID_REQUESTS[EventType.WAIT_COMPLETED], state)
    assert caught.value.code == "entity_conflict"


def test_wait_completed_for_a_missing_wait_is_not_found() -> None:
    with pytest.raises(errors.WaitNotFound) as caught:
        run_decide(VALID_REQUESTS[EventType.WAIT_COMPLETED], Snapshot(run=make_run()))
    assert caught.value.code == "wait_not_found"
    assert caught.value.details == {"waitId": f"{RUN_ID}-{WAIT_CORR}"}


# -- §2.5 side effects on terminal runs ---------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "state", "purges"),
    [
        (EventType.RUN_COMPLETED, Snapshot(run=make_run()), True),
        (EventType.RUN_FAILED, Snapshot(run=make_run()), True),
        (EventType.RUN_CANCELLED, Snapshot(run=make_run()), True),
        (EventType.RUN_CANCELLED, Snapshot(run=make_run("cancelled")), False),
        (EventType.RUN_STARTED, Snapshot(run=make_run("pending")), False),
        (EventType.STEP_CREATED, Snapshot(run=make_run()), False),
        (EventType.STEP_COMPLETED, Snapshot(run=make_run(), step=make_step("running")), False),
        (EventType.HOOK_CREATED, Snapshot(run=make_run()), False),
        (EventType.HOOK_DISPOSED, Snapshot(run=make_run(), hook=make_hook()), False),
        (EventType.WAIT_COMPLETED, Snapshot(run=make_run(), wait=make_wait()), False),
    ],
)
def test_only_run_endings_purge_hooks_and_waits(
    event_type: EventType, state: Snapshot, purges: bool
) -> None:
    transition = run_decide(VALID_REQUESTS[event_type], state)
    assert transition.purge_hooks_and_waits is purges


@pytest.mark.parametrize("run_status", TERMINAL_RUN)
@pytest.mark.parametrize("step_status", ["pending", "running"])
@pytest.mark.parametrize("event_type", [EventType.STEP_COMPLETED, EventType.STEP_RETRYING])
def test_step_completed_and_retrying_are_allowed_after_the_run_ended(
    run_status: str, step_status: str, event_type: EventType
) -> None:
    state = Snapshot(run=make_run(run_status), step=make_step(step_status))
    transition = run_decide(VALID_REQUESTS[event_type], state)
    expected = "completed" if event_type is EventType.STEP_COMPLETED else "pending"
    assert transition.step is not None
    assert transition.step.status == expected
    assert transition.run is None
    assert not transition.purge_hooks_and_waits


@pytest.mark.parametrize("run_status", TERMINAL_RUN)
@pytest.mark.parametrize(
    ("event_type", "expected"),
    [(EventType.STEP_STARTED, "running"), (EventType.STEP_FAILED, "failed")],
)
def test_running_step_may_start_or_fail_after_the_run_ended(
    run_status: str, event_type: EventType, expected: str
) -> None:
    state = Snapshot(run=make_run(run_status), step=make_step("running"))
    transition = run_decide(VALID_REQUESTS[event_type], state)
    assert transition.step is not None
    assert transition.step.status == expected


@pytest.mark.parametrize("run_status", TERMINAL_RUN)
@pytest.mark.parametrize("event_type", [EventType.STEP_STARTED, EventType.STEP_FAILED])
def test_pending_step_may_not_start_or_fail_after_the_run_ended(
    run_status: str, event_type: EventType
) -> None:
    state = Snapshot(run=make_run(run_status), step=make_step("pending"))
    with pytest.raises(errors.RunExpired) as caught:
        run_decide(VALID_REQUESTS[event_type], state)
    assert caught.value.code == "run_expired"


def test_run_expired_wins_over_too_early() -> None:
    step = make_step("pending", retry_after=NOW + timedelta(minutes=1))
    with pytest.raises(errors.RunExpired):
        run_decide(
            VALID_REQUESTS[EventType.STEP_STARTED], Snapshot(run=make_run("failed"), step=step)
        )


# -- materialize and parse_date -----------------------------------------------------------


def test_materialize_gives_ids_and_drops_run_started_data() -> None:
    drafts = (
        EventDraft(EventType.RUN_CREATED, 3, None, RUN_CREATED_DATA),
        EventDraft(EventType.RUN_STARTED, 3, None, {"input": PAYLOAD}),
        EventDraft(EventType.HOOK_CONFLICT, 2, HOOK_ID, {"token": "t"}),
    )
    factory = ids.IdFactory(clock_ms=lambda: int(NOW.timestamp() * 1000))
    event_ids = [factory.new(ids.EVENT) for _ in drafts]
    events = materialize(drafts, RUN_ID, event_ids)
    assert events == [
        Event(event_ids[0], RUN_ID, EventType.RUN_CREATED, NOW, None, RUN_CREATED_DATA, 3),
        Event(event_ids[1], RUN_ID, EventType.RUN_STARTED, NOW, None, None, 3),
        Event(event_ids[2], RUN_ID, EventType.HOOK_CONFLICT, NOW, HOOK_ID, {"token": "t"}, 2),
    ]


def test_materialize_needs_one_id_per_draft() -> None:
    with pytest.raises(ValueError):
        materialize((EventDraft(EventType.RUN_CANCELLED, 3),), RUN_ID, [])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-01-15T12:00:00Z", NOW),
        ("2025-01-15T12:00:00.000Z", NOW),
        ("2025-01-15T14:00:00+02:00", NOW),
        ("2025-01-15T12:00:00", NOW),
        (NOW_MS, NOW),
        (float(NOW_MS), NOW),
        (NOW, NOW),
        (NOW.replace(tzinfo=None), NOW),
    ],
)
def test_parse_date(value: Any, expected: datetime) -> None:
    parsed = parse_date(value, "resumeAt")
    assert parsed == expected
    assert parsed.tzinfo is not None


@pytest.mark.parametrize("value", ["", "yesterday", "2025-13-01", True, None, [], {}, 10**20])
def test_parse_date_refuses_non_dates(value: Any) -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        parse_date(value, "resumeAt")
    assert caught.value.details == {"field": "data.eventData.resumeAt"}
