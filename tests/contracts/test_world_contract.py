"""The World's behaviour (world.md §9 conformance cases, decisions D5-D11), run
against the fakes, SQLite and PostgreSQL alike through the ``world`` fixture."""

from __future__ import annotations

import asyncio
import gzip
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from compute_worker.adapters.security.run_keys import HkdfRunKeyDeriver
from compute_worker.adapters.world_wire import hook_wire, run_wire, step_wire
from compute_worker.domain import errors, ids
from compute_worker.domain.pagination import decode_cursor
from compute_worker.domain.use_cases.get_encryption_key import GetEncryptionKey
from compute_worker.domain.use_cases.proxy_world_event import DEFAULT_MAX_EVENTS
from compute_worker.domain.use_cases.publish_message import Publish
from compute_worker.domain.use_cases.query_world import Paging
from compute_worker.domain.world import CreateParams, EventType, StructuredError
from compute_worker.domain.world_writes import DELTA_PAGE
from tests.contracts.conftest import World

PAYLOAD = b"devl\x00\x01\xfe\xff"
WORKFLOW = "workflow//./src/workflows/order//processOrder"
STEP_NAME = "step//./src/workflows/order//processPayment"
QUEUE = "__wkf_workflow_test"
LIVE_TIMEOUT = 5.0

E = EventType
STEP_EVENTS: dict[EventType, dict[str, Any] | None] = {
    E.STEP_STARTED: None,
    E.STEP_COMPLETED: {"result": PAYLOAD},
    E.STEP_FAILED: {"error": "step broke"},
    E.STEP_RETRYING: {"error": "try again"},
}


# -- helpers ------------------------------------------------------------------------------


def run_data(**changes: Any) -> dict[str, Any]:
    return {"deploymentId": "dpl_test", "workflowName": WORKFLOW, "input": PAYLOAD, **changes}


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def client_run_id(world: World, offset: timedelta = timedelta(0)) -> str:
    stamp_ms = int((world.now() + offset).timestamp() * 1000)
    return ids.RUN + ids.encode_ulid(stamp_ms, secrets.randbits(80))


async def new_run(world: World, workflow_name: str = WORKFLOW, started: bool = False) -> str:
    created = await world.create(None, E.RUN_CREATED, data=run_data(workflowName=workflow_name))
    assert created.run is not None
    if started:
        await world.create(created.run.run_id, E.RUN_STARTED)
    return created.run.run_id


async def new_step(world: World, run_id: str, started: bool = False) -> str:
    step_id = world.ids.new(ids.STEP)
    data = {"stepName": STEP_NAME, "input": PAYLOAD}
    await world.create(run_id, E.STEP_CREATED, step_id, data)
    if started:
        await world.create(run_id, E.STEP_STARTED, step_id)
    return step_id


async def new_hook(world: World, run_id: str, token: str | None = None) -> tuple[str, str]:
    hook_id, token = world.ids.new(ids.HOOK), token or f"tok-{secrets.token_hex(8)}"
    result = await world.create(run_id, E.HOOK_CREATED, hook_id, {"token": token})
    assert result.hook is not None
    return hook_id, token


async def log_types(world: World, run_id: str) -> list[EventType]:
    page = await world.query.list_events(run_id, Paging(limit=1000), "all")
    return [event.event_type for event in page.data]


async def all_pages(fetch: Any, limit: int) -> list[list[Any]]:
    pages, cursor = [], None
    while True:
        page = await fetch(Paging(limit=limit, cursor=cursor))
        pages.append(list(page.data))
        assert page.cursor is not None  # the last page keeps its cursor (D7)
        cursor = page.cursor
        if not page.has_more:
            return pages


async def read_all(world: World, name: str, start: int = 0) -> bytes:
    async def collect() -> bytes:
        return b"".join([chunk async for chunk in world.read_stream.read(name, start)])

    return await asyncio.wait_for(collect(), LIVE_TIMEOUT)


def stream_name(world: World) -> str:
    return f"{world.ids.new(ids.STREAM)}_user"


# -- runs (§9 cases 1-11) -----------------------------------------------------------------


@pytest.mark.parametrize("spec_version", [None, 2, 3])
async def test_run_created_without_run_id_makes_a_pending_run(
    world: World, spec_version: int | None
) -> None:
    data = run_data(executionContext={"trace": "t1"})
    result = await world.create(None, E.RUN_CREATED, data=data, spec_version=spec_version)
    assert result.run is not None and result.event is not None
    assert result.run.run_id.startswith(ids.RUN) and result.run.status == "pending"
    assert result.event.event_type is E.RUN_CREATED and result.event.event_data == data
    assert result.run.spec_version == result.event.spec_version == (spec_version or 3)
    stored = await world.query.get_run(result.run.run_id)
    assert (stored.input, stored.execution_context) == (PAYLOAD, {"trace": "t1"})


@pytest.mark.parametrize(
    "offset, accepted",
    [
        (timedelta(days=-2), False),
        (timedelta(hours=-23), True),
        (timedelta(minutes=1), True),
        (timedelta(minutes=10), False),
    ],
)
async def test_client_run_id_time_must_be_recent(
    world: World, offset: timedelta, accepted: bool
) -> None:
    run_id = client_run_id(world, offset)
    if accepted:
        result = await world.create(run_id, E.RUN_CREATED, data=run_data())
        assert result.run is not None and result.run.run_id == run_id
    else:
        with pytest.raises(errors.InvalidRequest):
            await world.create(run_id, E.RUN_CREATED, data=run_data())


@pytest.mark.parametrize("run_id", ["wrun_notaulid", "wrun_" + "U" * 26, "run_" + "0" * 26])
async def test_client_run_id_must_be_a_ulid(world: World, run_id: str) -> None:
    with pytest.raises(errors.InvalidRequest):
        await world.create(run_id, E.RUN_CREATED, data=run_data())


async def test_run_created_twice_conflicts_and_stores_nothing(world: World) -> None:
    run_id = client_run_id(world)
    await world.create(run_id, E.RUN_CREATED, data=run_data())
    with pytest.raises(errors.EntityConflict):
        await world.create(run_id, E.RUN_CREATED, data=run_data(workflowName="other"))
    assert await log_types(world, run_id) == [E.RUN_CREATED]
    assert (await world.query.get_run(run_id)).workflow_name == WORKFLOW


async def test_run_started_returns_the_whole_log(world: World) -> None:
    run_id = await new_run(world)
    result = await world.create(run_id, E.RUN_STARTED, data=run_data(input=b"ignored"))
    assert result.run is not None and result.event is not None and result.events is not None
    assert result.run.status == "running" and result.run.started_at is not None
    assert [e.event_type for e in result.events] == [E.RUN_CREATED, E.RUN_STARTED]
    assert result.events[-1].event_id == result.event.event_id
    stored = (await world.query.list_events(run_id, Paging(), "all")).data
    assert stored[-1].event_type is E.RUN_STARTED and stored[-1].event_data is None


async def test_run_started_on_a_running_run_appends_nothing(world: World) -> None:
    run_id = await new_run(world, started=True)
    result = await world.create(run_id, E.RUN_STARTED)
    assert result.event is None and result.run is not None and result.run.status == "running"
    assert await log_types(world, run_id) == [E.RUN_CREATED, E.RUN_STARTED]


async def test_resilient_start_creates_the_missing_run(world: World) -> None:
    run_id = client_run_id(world)
    data = run_data(executionContext={"k": "v"})
    result = await world.create(run_id, E.RUN_STARTED, data=data)
    assert result.run is not None and result.run.status == "running"
    assert result.events is not None
    assert [e.event_type for e in result.events] == [E.RUN_CREATED, E.RUN_STARTED]
    assert result.events[0].event_data == data
    assert (await world.query.get_run(run_id)).input == PAYLOAD
    assert await log_types(world, run_id) == [E.RUN_CREATED, E.RUN_STARTED]


@pytest.mark.parametrize(
    "event_type, data, error",
    [
        (E.RUN_FAILED, {"error": "late"}, errors.EntityConflict),
        (E.RUN_COMPLETED, {"output": b"again"}, errors.EntityConflict),
        (E.RUN_CANCELLED, None, errors.EntityConflict),
        (E.RUN_STARTED, None, errors.RunExpired),
    ],
)
async def test_completed_run_refuses_further_transitions(
    world: World, event_type: EventType, data: dict[str, Any] | None, error: type[Exception]
) -> None:
    run_id = await new_run(world, started=True)
    done = await world.create(run_id, E.RUN_COMPLETED, data={"output": b"out"})
    assert done.run is not None and done.run.status == "completed"
    assert done.run.output == b"out" and done.run.completed_at is not None
    with pytest.raises(error):
        await world.create(run_id, event_type, data=data)
    stored = await world.query.get_run(run_id)
    assert (stored.status, stored.output) == ("completed", b"out")


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"error": "boom", "errorCode": "USER_ERROR"}, StructuredError("boom", None, "USER_ERROR")),
        ({"error": {"message": "bad", "stack": "at f()"}}, StructuredError("bad", "at f()", None)),
    ],
)
async def test_run_failed_records_a_structured_error(
    world: World, data: dict[str, Any], expected: StructuredError
) -> None:
    run_id = await new_run(world, started=True)
    result = await world.create(run_id, E.RUN_FAILED, data=data)
    assert result.run is not None and result.run.status == "failed"
    assert result.run.completed_at is not None
    assert (await world.query.get_run(run_id)).error == expected


async def test_run_cancelled_twice_is_idempotent(world: World) -> None:
    run_id = await new_run(world, started=True)
    first = await world.create(run_id, E.RUN_CANCELLED)
    second = await world.create(run_id, E.RUN_CANCELLED)
    assert first.event is not None and second.event is not None
    assert second.run is not None and second.run.status == "cancelled"
    assert await log_types(world, run_id) == [E.RUN_CREATED, E.RUN_STARTED] + [E.RUN_CANCELLED] * 2


async def test_cancel_after_completed_conflicts(world: World) -> None:
    run_id = await new_run(world, started=True)
    await world.create(run_id, E.RUN_COMPLETED, data={"output": None})
    with pytest.raises(errors.EntityConflict):
        await world.create(run_id, E.RUN_CANCELLED)


ENDINGS = [
    (E.RUN_COMPLETED, {"output": b"ok"}),
    (E.RUN_FAILED, {"error": "x"}),
    (E.RUN_CANCELLED, None),
]


@pytest.mark.parametrize("ending, data", ENDINGS)
async def test_terminal_run_frees_hooks_and_refuses_new_entities(
    world: World, ending: EventType, data: dict[str, Any] | None
) -> None:
    run_id = await new_run(world, started=True)
    hook_id, token = await new_hook(world, run_id)
    wait_id = world.ids.new(ids.WAIT)
    await world.create(run_id, E.WAIT_CREATED, wait_id, {"resumeAt": iso(world.now())})
    await world.create(run_id, ending, data=data)

    with pytest.raises(errors.HookNotFound):
        await world.query.get_hook(hook_id)
    with pytest.raises(errors.WaitNotFound):
        await world.create(run_id, E.WAIT_COMPLETED, wait_id)
    other_hook, _ = await new_hook(world, await new_run(world), token)
    assert (await world.query.get_hook_by_token(token)).hook_id == other_hook
    for event_type, corr, new_data in [
        (E.STEP_CREATED, world.ids.new(ids.STEP), {"stepName": STEP_NAME, "input": PAYLOAD}),
        (E.HOOK_CREATED, world.ids.new(ids.HOOK), {"token": "fresh-token"}),
        (E.WAIT_CREATED, world.ids.new(ids.WAIT), {"resumeAt": iso(world.now())}),
    ]:
        with pytest.raises(errors.EntityConflict):
            await world.create(run_id, event_type, corr, new_data)


@pytest.mark.parametrize(
    "event_type, data",
    [
        (E.RUN_STARTED, None),
        (E.RUN_COMPLETED, {"output": None}),
        (E.STEP_CREATED, {"stepName": STEP_NAME, "input": PAYLOAD}),
        (E.HOOK_CREATED, {"token": "t"}),
    ],
)
async def test_event_for_an_unknown_run_is_run_not_found(
    world: World, event_type: EventType, data: dict[str, Any] | None
) -> None:
    run_id = client_run_id(world)
    corr = None if event_type.family == "run" else world.ids.new(ids.STEP)
    with pytest.raises(errors.RunNotFound):
        await world.create(run_id, event_type, corr, data)
    assert await log_types(world, run_id) == []


async def test_runs_list_orders_and_filters(world: World) -> None:
    created = [await new_run(world, f"wf//{'ab'[i % 2]}") for i in range(5)]
    await world.create(created[1], E.RUN_STARTED)

    newest_first = await world.query.list_runs(Paging())
    assert [run.run_id for run in newest_first.data] == created[::-1]
    only_a = await world.query.list_runs(Paging(), workflow_name="wf//a")
    assert [run.run_id for run in only_a.data] == created[4::-2]
    running = await world.query.list_runs(Paging(), status="running")
    assert [run.run_id for run in running.data] == [created[1]]


async def test_runs_list_pages_without_duplicates(world: World) -> None:
    created = [await new_run(world) for _ in range(5)]
    pages = await all_pages(world.query.list_runs, limit=2)
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [run.run_id for page in pages for run in page] == created[::-1]


async def test_runs_cursor_of_the_last_page_resumes_with_new_runs(world: World) -> None:
    for _ in range(3):
        await new_run(world)
    first = await world.query.list_runs(Paging(2, None, "asc"), WORKFLOW)
    last = await world.query.list_runs(Paging(2, first.cursor, "asc"), WORKFLOW)
    assert len(last.data) == 1 and last.has_more is False and last.cursor is not None
    later = [await new_run(world) for _ in range(2)]
    resumed = await world.query.list_runs(Paging(10, last.cursor, "asc"), WORKFLOW)
    assert [run.run_id for run in resumed.data] == later


async def test_runs_without_data_keep_the_error(world: World) -> None:
    failed = await new_run(world, started=True)
    await world.create(failed, E.RUN_FAILED, data={"error": "boom"})
    done = await new_run(world, started=True)
    await world.create(done, E.RUN_COMPLETED, data={"output": b"out"})
    wires = [run_wire(await world.query.get_run(run_id), "none") for run_id in (failed, done)]
    assert all("input" not in wire and "output" not in wire for wire in wires)
    assert wires[0]["error"] == {"message": "boom"} and "error" not in wires[1]


# -- steps (§9 cases 12-19) ---------------------------------------------------------------


async def test_step_created_is_pending_and_unique(world: World) -> None:
    run_id = await new_run(world, started=True)
    step_id = world.ids.new(ids.STEP)
    data = {"stepName": STEP_NAME, "input": PAYLOAD}
    result = await world.create(run_id, E.STEP_CREATED, step_id, data)
    assert result.step is not None
    assert (result.step.status, result.step.attempt, result.step.input) == ("pending", 0, PAYLOAD)
    with pytest.raises(errors.EntityConflict):
        await world.create(run_id, E.STEP_CREATED, step_id, data)
    assert (await log_types(world, run_id)).count(E.STEP_CREATED) == 1


async def test_step_started_counts_attempts_and_keeps_started_at(world: World) -> None:
    run_id = await new_run(world, started=True)
    step_id = await new_step(world, run_id)
    first = await world.create(run_id, E.STEP_STARTED, step_id, {"attempt": 1})
    assert first.step is not None and first.step.status == "running"
    assert first.step.attempt == 1 and first.step.started_at is not None
    await world.pass_time(0.01)
    second = await world.create(run_id, E.STEP_STARTED, step_id)
    assert second.step is not None and second.step.attempt == 2
    stored = await world.query.get_step(run_id, step_id)
    assert stored.attempt == 2 and stored.started_at == first.step.started_at


async def test_step_retrying_holds_the_step_until_retry_after(world: World) -> None:
    run_id = await new_run(world, started=True)
    step_id = await new_step(world, run_id, started=True)
    later = iso(world.now() + timedelta(seconds=60))
    retrying = await world.create(
        run_id, E.STEP_RETRYING, step_id, {"error": "e", "retryAfter": later}
    )
    assert retrying.step is not None and retrying.step.status == "pending"
    assert retrying.step.error == StructuredError("e") and retrying.step.retry_after is not None
    with pytest.raises(errors.TooEarly) as early:
        await world.create(run_id, E.STEP_STARTED, step_id)
    assert early.value.retry_after in (59, 60, 61)

    soon = iso(world.now() + timedelta(seconds=1))
    await world.create(run_id, E.STEP_RETRYING, step_id, {"error": "e2", "retryAfter": soon})
    with pytest.raises(errors.TooEarly):
        await world.create(run_id, E.STEP_STARTED, step_id)
    await world.pass_time(1.3)
    started = await world.create(run_id, E.STEP_STARTED, step_id)
    assert started.step is not None and started.step.status == "running"
    assert started.step.retry_after is None and started.step.attempt == 2
    assert (await world.query.get_step(run_id, step_id)).retry_after is None


@pytest.mark.parametrize("event_type", list(STEP_EVENTS))
async def test_completed_step_refuses_further_events(world: World, event_type: EventType) -> None:
    run_id = await new_run(world, started=True)
    step_id = await new_step(world, run_id, started=True)
    done = await world.create(run_id, E.STEP_COMPLETED, step_id, {"result": b"res"})
    assert done.step is not None and done.step.status == "completed"
    assert done.step.output == b"res" and done.step.completed_at is not None
    with pytest.raises(errors.EntityConflict):
        await world.create(run_id, event_type, step_id, STEP_EVENTS[event_type])
    assert (await world.query.get_step(run_id, step_id)).output == b"res"


@pytest.mark.parametrize("event_type", list(STEP_EVENTS))
async def test_step_event_for_an_unknown_step_is_not_found(
    world: World, event_type: EventType
) -> None:
    run_id = await new_run(world, started=True)
    with pytest.raises(errors.StepNotFound):
        await world.create(run_id, event_type, world.ids.new(ids.STEP), STEP_EVENTS[event_type])


async def test_in_flight_steps_may_finish_after_the_run_ends(world: World) -> None:
    run_id = await new_run(world, started=True)
    running, running_too = [await new_step(world, run_id, started=True) for _ in range(2)]
    pending = await new_step(world, run_id)
    await world.create(run_id, E.RUN_CANCELLED)

    completed = await world.create(run_id, E.STEP_COMPLETED, running, {"result": b"r"})
    assert completed.step is not None and completed.step.status == "completed"
    failed = await world.create(run_id, E.STEP_FAILED, running_too, {"error": "x"})
    assert failed.step is not None and failed.step.status == "failed"
    for event_type in (E.STEP_STARTED, E.STEP_FAILED):
        with pytest.raises(errors.RunExpired):
            await world.create(run_id, event_type, pending, STEP_EVENTS[event_type])
    retried = await world.create(run_id, E.STEP_RETRYING, pending, {"error": "y"})
    assert retried.step is not None and retried.step.status == "pending"


async def test_steps_get_with_and_without_run_id(world: World) -> None:
    run_id = await new_run(world, started=True)
    step_id = await new_step(world, run_id)
    assert (await world.query.get_step(run_id, step_id)).step_name == STEP_NAME
    assert (await world.query.get_step(None, step_id)).run_id == run_id
    with pytest.raises(errors.StepNotFound):
        await world.query.get_step(run_id, world.ids.new(ids.STEP))


async def test_steps_list_is_newest_first_and_pages(world: World) -> None:
    run_id = await new_run(world, started=True)
    created = [await new_step(world, run_id) for _ in range(3)]
    await new_step(world, await new_run(world, started=True))  # another run's step
    pages = await all_pages(lambda p: world.query.list_steps(run_id, p), limit=2)
    assert [[s.step_id for s in page] for page in pages] == [created[:0:-1], created[:1]]
    wires = [step_wire(s, "none") for page in pages for s in page]
    assert all("input" not in wire and wire["stepName"] == STEP_NAME for wire in wires)


async def test_parallel_step_completed_has_exactly_one_winner(world: World) -> None:
    run_id = await new_run(world, started=True)
    step_id = await new_step(world, run_id, started=True)
    outcomes = await asyncio.gather(
        *(
            world.create(run_id, E.STEP_COMPLETED, step_id, {"result": bytes([i])})
            for i in range(10)
        ),
        return_exceptions=True,
    )
    winners = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(o, errors.EntityConflict) for o in outcomes if o not in winners)
    assert winners[0].step is not None
    assert (await world.query.get_step(run_id, step_id)).output == winners[0].step.output
    assert (await log_types(world, run_id)).count(E.STEP_COMPLETED) == 1


# -- hooks (§9 cases 20-24) ---------------------------------------------------------------


async def test_hook_created_is_readable_by_id_and_token(world: World) -> None:
    run_id = await new_run(world, started=True)
    hook_id = world.ids.new(ids.HOOK)
    data = {"token": "secret-token", "metadata": PAYLOAD, "isWebhook": True}
    result = await world.create(run_id, E.HOOK_CREATED, hook_id, data)
    assert result.hook is not None
    assert (result.hook.token, result.hook.metadata, result.hook.is_webhook) == (
        "secret-token",
        PAYLOAD,
        True,
    )
    by_id = await world.query.get_hook(hook_id)
    assert by_id == await world.query.get_hook_by_token("secret-token")
    assert (by_id.run_id, by_id.metadata, by_id.is_webhook) == (run_id, PAYLOAD, True)
    assert "metadata" not in hook_wire(by_id, "none")


async def test_hook_is_not_a_webhook_by_default(world: World) -> None:
    hook_id, _ = await new_hook(world, await new_run(world, started=True))
    assert (await world.query.get_hook(hook_id)).is_webhook is False


async def test_repeated_hook_created_returns_the_hook(world: World) -> None:
    run_id = await new_run(world, started=True)
    hook_id, token = await new_hook(world, run_id)
    again = await world.create(run_id, E.HOOK_CREATED, hook_id, {"token": token})
    assert again.hook is not None and again.hook.hook_id == hook_id
    assert (await log_types(world, run_id)).count(E.HOOK_CREATED) == 1


async def test_taken_token_gives_a_hook_conflict_event(world: World) -> None:
    holder_run = await new_run(world, started=True)
    holder, token = await new_hook(world, holder_run)
    run_id = await new_run(world, started=True)
    hook_id = world.ids.new(ids.HOOK)
    result = await world.create(run_id, E.HOOK_CREATED, hook_id, {"token": token})
    assert result.hook is None and result.event is not None
    assert result.event.event_type is E.HOOK_CONFLICT
    conflict = {"token": token, "conflictingRunId": holder_run}
    assert (result.event.correlation_id, result.event.event_data) == (hook_id, conflict)
    assert E.HOOK_CONFLICT in await log_types(world, run_id)
    assert (await world.query.get_hook_by_token(token)).hook_id == holder
    with pytest.raises(errors.HookNotFound):
        await world.query.get_hook(hook_id)


async def test_hook_cannot_be_created_with_hook_conflict(world: World) -> None:
    run_id = await new_run(world, started=True)
    with pytest.raises(errors.InvalidRequest):
        await world.create(run_id, E.HOOK_CONFLICT, world.ids.new(ids.HOOK), {"token": "t"})


async def test_parallel_hook_created_with_one_token_has_one_owner(world: World) -> None:
    runs = [await new_run(world, started=True) for _ in range(5)]
    hook_ids = [world.ids.new(ids.HOOK) for _ in runs]
    results = await asyncio.gather(
        *(
            world.create(run_id, E.HOOK_CREATED, hook_id, {"token": "contested"})
            for run_id, hook_id in zip(runs, hook_ids, strict=True)
        )
    )
    owners = [r for r in results if r.hook is not None]
    assert len(owners) == 1
    losers = [r for r in results if r.hook is None]
    assert all(r.event is not None and r.event.event_type is E.HOOK_CONFLICT for r in losers)
    owner = await world.query.get_hook_by_token("contested")
    assert owner.hook_id == owners[0].hook.hook_id
    listed = [
        h.hook_id for run_id in runs for h in (await world.query.list_hooks(run_id, Paging())).data
    ]
    assert listed == [owner.hook_id]


async def test_hook_disposed_frees_the_token(world: World) -> None:
    run_id = await new_run(world, started=True)
    hook_id, token = await new_hook(world, run_id)
    disposed = await world.create(run_id, E.HOOK_DISPOSED, hook_id)
    assert disposed.event is not None and disposed.event.event_type is E.HOOK_DISPOSED
    with pytest.raises(errors.HookNotFound):
        await world.query.get_hook(hook_id)
    with pytest.raises(errors.HookNotFound):
        await world.create(run_id, E.HOOK_DISPOSED, hook_id)
    reused, _ = await new_hook(world, await new_run(world, started=True), token)
    assert (await world.query.get_hook_by_token(token)).hook_id == reused


async def test_hook_received_appends_the_payload(world: World) -> None:
    run_id = await new_run(world, started=True)
    hook_id, _ = await new_hook(world, run_id)
    result = await world.create(run_id, E.HOOK_RECEIVED, hook_id, {"payload": PAYLOAD})
    assert result.event is not None and result.event.event_type is E.HOOK_RECEIVED
    assert result.event.event_data == {"payload": PAYLOAD}
    with pytest.raises(errors.HookNotFound):
        await world.create(run_id, E.HOOK_RECEIVED, world.ids.new(ids.HOOK), {"payload": b""})


async def test_hooks_list_filters_by_run_oldest_first(world: World) -> None:
    run_id = await new_run(world, started=True)
    created = [(await new_hook(world, run_id))[0] for _ in range(3)]
    await new_hook(world, await new_run(world, started=True))
    pages = await all_pages(lambda p: world.query.list_hooks(run_id, p), limit=2)
    assert [[h.hook_id for h in page] for page in pages] == [created[:2], created[2:]]


async def test_hooks_list_without_run_lists_every_live_hook(world: World) -> None:
    created = [(await new_hook(world, await new_run(world, started=True)))[0] for _ in range(3)]
    everything = await world.query.list_hooks(None, Paging())
    assert [h.hook_id for h in everything.data] == created


# -- waits (§9 case 25) -------------------------------------------------------------------


async def test_wait_lifecycle(world: World) -> None:
    run_id = await new_run(world, started=True)
    corr = world.ids.new(ids.WAIT)
    resume_at = iso(world.now() + timedelta(minutes=5))
    created = await world.create(run_id, E.WAIT_CREATED, corr, {"resumeAt": resume_at})
    assert created.wait is not None
    assert (created.wait.wait_id, created.wait.status) == (f"{run_id}-{corr}", "waiting")
    assert created.wait.resume_at == datetime.fromisoformat(resume_at)
    with pytest.raises(errors.EntityConflict):
        await world.create(run_id, E.WAIT_CREATED, corr, {"resumeAt": resume_at})
    done = await world.create(run_id, E.WAIT_COMPLETED, corr)
    assert done.wait is not None and done.wait.status == "completed"
    assert done.wait.completed_at is not None
    with pytest.raises(errors.EntityConflict):
        await world.create(run_id, E.WAIT_COMPLETED, corr)
    with pytest.raises(errors.WaitNotFound):
        await world.create(run_id, E.WAIT_COMPLETED, world.ids.new(ids.WAIT))


# -- events (§9 cases 26-27) --------------------------------------------------------------


async def test_events_list_orders_and_pages(world: World) -> None:
    run_id = await new_run(world, started=True)
    await new_step(world, run_id, started=True)
    expected = [E.RUN_CREATED, E.RUN_STARTED, E.STEP_CREATED, E.STEP_STARTED]
    assert await log_types(world, run_id) == expected
    desc = await world.query.list_events(run_id, Paging(sort_order="desc"), "all")
    assert [e.event_type for e in desc.data] == expected[::-1]
    pages = await all_pages(lambda p: world.query.list_events(run_id, p, "all"), limit=3)
    assert [[e.event_type for e in page] for page in pages] == [expected[:3], expected[3:]]
    unknown = await world.query.list_events(client_run_id(world), Paging(), "all")
    assert unknown.data == () and unknown.has_more is False


async def test_events_by_correlation_span_runs(world: World) -> None:
    corr = world.ids.new(ids.WAIT)
    runs = [await new_run(world, started=True) for _ in range(2)]
    for run_id in runs:
        await world.create(run_id, E.WAIT_CREATED, corr, {"resumeAt": iso(world.now())})
    found = await world.query.list_events_by_correlation(corr, Paging(), "all")
    assert [e.run_id for e in found.data] == runs
    unknown = await world.query.list_events_by_correlation("wait_unknown", Paging(), "all")
    assert unknown.data == ()


async def test_events_by_correlation_within_one_run(world: World) -> None:
    corr = world.ids.new(ids.WAIT)
    runs = [await new_run(world, started=True) for _ in range(3)]
    for run_id in runs:
        await world.create(run_id, E.WAIT_CREATED, corr, {"resumeAt": iso(world.now())})
    await world.create(runs[1], E.WAIT_COMPLETED, corr)
    found = await world.query.list_events_by_correlation(corr, Paging(), "all", runs[1])
    assert [(e.run_id, e.event_type) for e in found.data] == [
        (runs[1], E.WAIT_CREATED),
        (runs[1], E.WAIT_COMPLETED),
    ]
    other = await world.query.list_events_by_correlation(
        corr, Paging(), "all", client_run_id(world)
    )
    assert other.data == () and other.has_more is False


async def test_events_get_by_id_with_and_without_run_id(world: World) -> None:
    run_id = await new_run(world, started=True)
    step_id = await new_step(world, run_id)
    created = (await world.query.list_events(run_id, Paging(), "all")).data[-1]
    assert created.event_type is E.STEP_CREATED
    assert await world.query.get_event(run_id, created.event_id, "all") == created
    assert await world.query.get_event(None, created.event_id, "all") == created
    stripped = await world.query.get_event(run_id, created.event_id, "none")
    assert (stripped.correlation_id, stripped.event_data) == (step_id, {"stepName": STEP_NAME})
    with pytest.raises(errors.EventNotFound):
        await world.query.get_event(await new_run(world), created.event_id, "all")
    with pytest.raises(errors.EventNotFound):
        await world.query.get_event(run_id, world.ids.new(ids.EVENT), "all")


async def test_events_without_data_strip_only_the_payload(world: World) -> None:
    run_id = await new_run(world, started=True)
    step_id = await new_step(world, run_id)
    found = await world.query.list_events_by_correlation(step_id, Paging(), "none")
    assert [e.event_data for e in found.data] == [{"stepName": STEP_NAME}]
    events = await world.query.list_events(run_id, Paging(), "none")
    assert events.data[0].event_data == {"deploymentId": "dpl_test", "workflowName": WORKFLOW}


# -- events.create params (@workflow/world 4.5, D13) ---------------------------------------


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


async def test_state_updated_at_older_than_an_out_of_band_event_is_refused(world: World) -> None:
    run_id = await new_run(world, started=True)
    hook_id, _ = await new_hook(world, run_id)
    replayed = _ms((await world.query.list_events(run_id, Paging(), "all")).data[-1].created_at)
    await world.pass_time(0.01)
    received = await world.create(run_id, E.HOOK_RECEIVED, hook_id, {"payload": PAYLOAD})
    assert received.event is not None
    marker = _ms(received.event.created_at)
    assert marker > replayed
    stale = CreateParams(state_updated_at=replayed)
    before = await log_types(world, run_id)
    step_data = {"stepName": STEP_NAME, "input": PAYLOAD}
    with pytest.raises(errors.PreconditionFailed) as refused:
        await world.create(run_id, E.STEP_CREATED, world.ids.new(ids.STEP), step_data, params=stale)
    assert refused.value.details == {
        "runId": run_id, "stateUpdatedAt": replayed, "latestExternalEventAt": marker
    }  # fmt: skip
    assert await log_types(world, run_id) == before  # nothing written
    # equal passes (an up-to-date replay is never refused), and so does a newer one
    for seen in (marker, marker + 5000):
        fresh = CreateParams(state_updated_at=seen)
        created = await world.create(
            run_id, E.STEP_CREATED, world.ids.new(ids.STEP), step_data, params=fresh
        )
        assert created.step is not None
    # without stateUpdatedAt there is no guard
    assert (await world.create(run_id, E.STEP_CREATED, world.ids.new(ids.STEP), step_data)).step


async def test_only_events_written_outside_a_replay_move_the_marker(world: World) -> None:
    run_id = await new_run(world, started=True)
    first = await new_step(world, run_id, started=True)
    second = await new_step(world, run_id, started=True)
    loaded = _ms((await world.query.list_events(run_id, Paging(), "all")).data[-1].created_at)
    await world.pass_time(0.01)
    # a replay's own step_completed (with stateUpdatedAt) does not move the marker ...
    replay = CreateParams(state_updated_at=loaded)
    await world.create(run_id, E.STEP_COMPLETED, first, {"result": PAYLOAD}, params=replay)
    await world.create(run_id, E.STEP_STARTED, await new_step(world, run_id), params=replay)
    # ... a step_completed from outside does
    await world.pass_time(0.01)
    await world.create(run_id, E.STEP_COMPLETED, second, {"result": PAYLOAD})
    with pytest.raises(errors.PreconditionFailed):
        await world.create(run_id, E.WAIT_CREATED, world.ids.new(ids.WAIT),
                           {"resumeAt": iso(world.now())}, params=replay)  # fmt: skip
    async with world.reopen() as reopened:  # the marker is stored with the run
        with pytest.raises(errors.PreconditionFailed):
            await reopened.create(run_id, E.RUN_COMPLETED, data={"output": PAYLOAD}, params=replay)


async def test_occurred_at_is_kept_on_the_event(world: World) -> None:
    run_id = await new_run(world, started=True)
    occurred = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    data = {"stepName": STEP_NAME, "input": PAYLOAD}
    params = CreateParams(occurred_at=occurred)
    created = await world.create(
        run_id, E.STEP_CREATED, world.ids.new(ids.STEP), data, params=params
    )
    assert created.event is not None and created.event.occurred_at == occurred
    assert created.event.created_at != occurred
    listed = (await world.query.list_events(run_id, Paging(), "all")).data
    assert [e.occurred_at for e in listed] == [None, None, occurred]
    assert (
        await world.query.get_event(run_id, listed[-1].event_id, "none")
    ).occurred_at == occurred


async def test_run_started_answers_the_log_with_its_cursor(world: World) -> None:
    created = await world.create(None, E.RUN_CREATED, data=run_data())
    assert created.run is not None and created.max_events == DEFAULT_MAX_EVENTS
    assert created.cursor is None and created.has_more is None
    run_id = created.run.run_id
    started = await world.create(run_id, E.RUN_STARTED)
    assert started.events is not None and started.has_more is False
    assert started.max_events == DEFAULT_MAX_EVENTS
    assert started.cursor is not None
    assert decode_cursor(started.cursor).item_id == started.events[-1].event_id
    await new_step(world, run_id)
    after = await world.query.list_events(run_id, Paging(cursor=started.cursor), "all")
    assert [e.event_type for e in after.data] == [E.STEP_CREATED]
    step = await world.create(run_id, E.STEP_CREATED, world.ids.new(ids.STEP),
                              {"stepName": STEP_NAME, "input": PAYLOAD})  # fmt: skip
    assert step.max_events is None and step.cursor is None  # not a run lifecycle answer


async def test_step_endings_answer_the_events_since_a_cursor(world: World) -> None:
    run_id = await new_run(world, started=True)
    loaded = await world.query.list_events(run_id, Paging(), "all")
    since = CreateParams(since=decode_cursor(loaded.cursor or ""))
    step_id = await new_step(world, run_id, started=True)
    hook_id, _ = await new_hook(world, run_id)
    await world.create(run_id, E.HOOK_RECEIVED, hook_id, {"payload": PAYLOAD})
    done = await world.create(run_id, E.STEP_COMPLETED, step_id, {"result": PAYLOAD}, params=since)
    assert done.events is not None and done.has_more is False
    delta = [e.event_type for e in done.events]
    assert delta == [E.STEP_CREATED, E.STEP_STARTED, E.HOOK_CREATED, E.HOOK_RECEIVED,
                     E.STEP_COMPLETED]  # fmt: skip
    listed = await world.query.list_events(run_id, Paging(cursor=loaded.cursor), "all")
    assert done.events == listed.data and done.cursor == listed.cursor
    # nothing after the cursor past the delta; stripped with resolveData none
    later = await new_step(world, run_id, started=True)
    empty = CreateParams(since=decode_cursor(done.cursor or ""))
    failed = await world.create(run_id, E.STEP_FAILED, later, {"error": "x"}, resolve="none",
                                params=empty)  # fmt: skip
    assert failed.events is not None
    assert [e.event_type for e in failed.events] == [E.STEP_CREATED, E.STEP_STARTED, E.STEP_FAILED]
    assert failed.events[0].event_data == {"stepName": STEP_NAME}  # the input stripped
    # other events do not answer a delta
    other = await new_step(world, run_id)
    started = await world.create(run_id, E.STEP_STARTED, other, params=empty)
    assert started.events is None and started.cursor is None


async def test_a_delta_longer_than_a_page_says_so(world: World) -> None:
    run_id = await new_run(world, started=True)
    loaded = await world.query.list_events(run_id, Paging(), "all")
    step_id = await new_step(world, run_id, started=True)
    for _ in range(DELTA_PAGE):
        wait = {"resumeAt": iso(world.now())}
        await world.create(run_id, E.WAIT_CREATED, world.ids.new(ids.WAIT), wait)
    since = CreateParams(since=decode_cursor(loaded.cursor or ""))
    done = await world.create(run_id, E.STEP_COMPLETED, step_id, {"result": PAYLOAD}, params=since)
    assert done.events is not None and len(done.events) == DELTA_PAGE and done.has_more is True


async def test_event_ids_increase_in_creation_order(world: World) -> None:
    run_id = await new_run(world, started=True)
    hook_id, _ = await new_hook(world, run_id)
    sequential = [
        await world.create(run_id, E.HOOK_RECEIVED, hook_id, {"payload": bytes([i])})
        for i in range(20)
    ]
    burst = await asyncio.gather(
        *(
            world.create(run_id, E.HOOK_RECEIVED, hook_id, {"payload": bytes([i])})
            for i in range(20)
        )
    )
    made = [r.event.event_id for r in (*sequential, *burst) if r.event is not None]
    assert made[:20] == sorted(made[:20]) and len(set(made)) == 40
    listed = [e.event_id for e in (await world.query.list_events(run_id, Paging(), "all")).data]
    assert listed == sorted(listed) and listed[-40:-20] == made[:20]
    assert sorted(listed[-20:]) == sorted(made[20:])


# -- run_created under concurrency --------------------------------------------------------


async def test_parallel_run_created_with_one_run_id_has_one_winner(world: World) -> None:
    run_id = client_run_id(world)
    outcomes = await asyncio.gather(
        *(world.create(run_id, E.RUN_CREATED, data=run_data()) for _ in range(5)),
        return_exceptions=True,
    )
    winners = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(o, errors.EntityConflict) for o in outcomes if o not in winners)
    assert await log_types(world, run_id) == [E.RUN_CREATED]


# -- streams (§9 cases 28-33, D8) ---------------------------------------------------------


@pytest.mark.parametrize("start, expected", [(0, b"abc"), (1, b"bc"), (-2, b"bc"), (-9, b"abc")])
async def test_read_a_closed_stream_from_an_index(
    world: World, start: int, expected: bytes
) -> None:
    name, run_id = stream_name(world), client_run_id(world)
    for piece in (b"a", b"b", b"c"):
        await world.write_stream.write(name, run_id, [piece])
    await world.write_stream.close(name, run_id)
    assert await read_all(world, name, start) == expected


async def test_reader_before_the_first_write_follows_live(world: World) -> None:
    name, run_id = stream_name(world), client_run_id(world)
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def tail() -> None:
        async for chunk in world.read_stream.read(name):
            received.put_nowait(chunk)

    reader = asyncio.create_task(tail())
    try:
        await asyncio.sleep(0.1)
        for piece in (b"one", b"two"):
            await world.write_stream.write(name, run_id, [piece])
            assert await asyncio.wait_for(received.get(), LIVE_TIMEOUT) == piece
        await world.write_stream.close(name, run_id)
        await asyncio.wait_for(reader, LIVE_TIMEOUT)
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def test_concurrent_writes_keep_call_order(world: World) -> None:
    name, run_id = stream_name(world), client_run_id(world)
    pieces = [f"{i:03d};".encode() for i in range(100)]
    await asyncio.gather(*(world.write_stream.write(name, run_id, [p]) for p in pieces))
    await world.write_stream.close(name, run_id)
    assert await read_all(world, name) == b"".join(pieces)


async def test_empty_chunks_are_never_emitted(world: World) -> None:
    name, run_id = stream_name(world), client_run_id(world)
    await world.write_stream.write(name, run_id, [b"", b"a", b""])
    await world.write_stream.write(name, run_id, [b""])
    await world.write_stream.write(name, run_id, [b"b"])
    await world.write_stream.close(name, run_id)
    page = await world.inspect_stream.chunks(name)
    assert [(c.index, c.data) for c in page.data] == [(0, b"a"), (1, b"b")] and page.done
    assert (await world.inspect_stream.info(name)).tail_index == 1
    assert await read_all(world, name, -1) == b"b"


async def test_every_byte_value_round_trips(world: World) -> None:
    name, run_id = stream_name(world), client_run_id(world)
    pieces = [bytes(range(256)), bytes(range(255, -1, -1)), *(bytes([i]) for i in range(256))]
    await world.write_stream.write(name, run_id, pieces)
    await world.write_stream.close(name, run_id)
    assert await read_all(world, name) == b"".join(pieces)


async def test_write_after_close_is_refused_and_second_close_is_a_no_op(world: World) -> None:
    name, run_id = stream_name(world), client_run_id(world)
    await world.write_stream.write(name, run_id, [b"x"])
    await world.write_stream.close(name, run_id)
    with pytest.raises(errors.StreamClosed):
        await world.write_stream.write(name, run_id, [b"late"])
    await world.write_stream.close(name, run_id)
    assert await read_all(world, name) == b"x"
    info = await world.inspect_stream.info(name)
    assert (info.tail_index, info.done) == (0, True)


async def test_streams_are_listed_by_run(world: World) -> None:
    run_id, other_run = client_run_id(world), client_run_id(world)
    written, closed, elsewhere = (stream_name(world) for _ in range(3))
    await world.write_stream.write(written, run_id, [b"1"])
    await world.write_stream.write(written, run_id, [b"2"])
    await world.write_stream.close(closed, run_id)
    await world.write_stream.write(elsewhere, other_run, [b"3"])
    assert sorted(await world.inspect_stream.names_for_run(run_id)) == sorted([written, closed])
    assert await world.inspect_stream.names_for_run(client_run_id(world)) == []


async def test_streams_need_no_existing_run(world: World) -> None:
    name, run_id = stream_name(world), client_run_id(world)
    await world.write_stream.write(name, run_id, [b"health"])
    await world.write_stream.close(name, run_id)
    assert await read_all(world, name) == b"health"
    assert await world.inspect_stream.names_for_run(run_id) == [name]
    with pytest.raises(errors.RunNotFound):
        await world.query.get_run(run_id)


# -- queue (§9 cases 34-37, adapted to the QueueConsumer port; D9) ------------------------


async def test_published_message_is_claimed_with_attempt_one(world: World) -> None:
    payload = {"runId": "wrun_x", "runInput": {"input": PAYLOAD}, "all": [bytes(range(256))]}
    message_id = await world.publish.execute(
        Publish(QUEUE, payload, deployment_id="dpl_q", headers={"x-test": "1"})
    )
    assert message_id.startswith(ids.MESSAGE)
    assert (
        await world.queue.claim("w1", limit=10, lease_seconds=30, queue_prefix="__wkf_step_") == []
    )
    [message] = await world.queue.claim("w1", limit=10, lease_seconds=30)
    assert (message.message_id, message.attempt, message.queue_name) == (message_id, 1, QUEUE)
    assert (message.payload, message.deployment_id, message.headers) == (
        payload,
        "dpl_q",
        {"x-test": "1"},
    )
    assert await world.queue.claim("w2", limit=10, lease_seconds=30) == []


async def test_unacked_message_comes_back_after_its_lease(world: World) -> None:
    message_id = await world.publish.execute(Publish(QUEUE, {"n": 1}))
    await world.queue.claim("w1", limit=1, lease_seconds=0.5)
    assert await world.queue.claim("w2", limit=1, lease_seconds=0.5) == []
    await world.pass_time(0.7)
    [again] = await world.queue.claim("w2", limit=1, lease_seconds=30)
    assert (again.message_id, again.attempt) == (message_id, 2)
    assert await world.queue.ack(message_id, "w1") is False  # the lease went to w2
    assert await world.queue.ack(message_id, "w2") is True


async def test_retry_later_redelivers_after_the_delay(world: World) -> None:
    message_id = await world.publish.execute(Publish(QUEUE, {"n": 2}))
    await world.queue.claim("w1", limit=1, lease_seconds=30)
    assert await world.queue.retry_later(message_id, "w1", 0.5) is True
    assert await world.queue.claim("w1", limit=1, lease_seconds=30) == []
    await world.pass_time(0.7)
    [again] = await world.queue.claim("w1", limit=1, lease_seconds=30)
    assert (again.message_id, again.attempt) == (message_id, 2)


async def test_acked_message_is_gone(world: World) -> None:
    message_id = await world.publish.execute(Publish(QUEUE, {"n": 3}))
    await world.queue.claim("w1", limit=1, lease_seconds=0.3)
    assert await world.queue.ack(message_id, "w1") is True
    await world.pass_time(0.5)
    assert await world.queue.claim("w1", limit=10, lease_seconds=30) == []


async def test_duplicate_idempotency_key_enqueues_once(world: World) -> None:
    first = await world.publish.execute(Publish(QUEUE, {"n": 4}, idempotency_key="step_abc"))
    second = await world.publish.execute(Publish(QUEUE, {"n": 5}, idempotency_key="step_abc"))
    [message] = await world.queue.claim("w1", limit=10, lease_seconds=30)
    in_flight = await world.publish.execute(Publish(QUEUE, {"n": 6}, idempotency_key="step_abc"))
    assert first == second == in_flight == message.message_id
    assert message.payload == {"n": 4}
    assert await world.queue.claim("w2", limit=10, lease_seconds=30) == []


async def test_delay_seconds_is_honoured(world: World) -> None:
    message_id = await world.publish.execute(Publish(QUEUE, {"n": 7}, delay_seconds=0.5))
    assert await world.queue.claim("w1", limit=10, lease_seconds=30) == []
    await world.pass_time(0.7)
    [message] = await world.queue.claim("w1", limit=10, lease_seconds=30)
    assert (message.message_id, message.attempt) == (message_id, 1)


# -- encryption key and deployment id (§9 cases 38-39, D10) -------------------------------


async def test_encryption_key_is_stable_per_run(world: World) -> None:
    await world.activate("dpl_keys")
    run_id = client_run_id(world)
    before_run = await world.encryption_key.execute(run_id)
    await world.create(run_id, E.RUN_CREATED, data=run_data(deploymentId="dpl_keys"))
    key = await world.encryption_key.execute(run_id)
    assert key is not None and len(key) == 32
    assert key == before_run == await world.encryption_key.execute(run_id, "dpl_keys")
    assert await world.encryption_key.execute(await new_run(world)) != key
    async with world.reopen() as restarted:
        assert await restarted.encryption_key.execute(run_id) == key


async def test_encryption_key_is_none_without_a_secret(world: World) -> None:
    run_id = await new_run(world)
    keys = GetEncryptionKey(world.reader, HkdfRunKeyDeriver(None), world.deployments)
    assert await keys.execute(run_id) is None


async def test_deployment_id_is_the_active_one(world: World) -> None:
    with pytest.raises(errors.NoActiveDeployment):
        await world.deployment_id.execute()
    await world.activate("dpl_current")
    assert await world.deployment_id.execute() == "dpl_current"
    assert await world.deployment_id.execute() == "dpl_current"


# -- @workflow/world 5.0: spec 4-5 (attributes, lazy steps, opaque payloads; D14) ----------

GZIPPED = gzip.compress(b"devl" + b'["a large step result"]' * 50)


@pytest.mark.parametrize("spec_version", [4, 5])
async def test_runs_of_spec_4_and_5_run_their_lifecycle(world: World, spec_version: int) -> None:
    created = await world.create(None, E.RUN_CREATED, data=run_data(), spec_version=spec_version)
    assert created.run is not None and created.run.spec_version == spec_version
    run_id = created.run.run_id
    await world.create(run_id, E.RUN_STARTED, spec_version=spec_version)
    step_id = await new_step(world, run_id, started=True)
    await world.create(run_id, E.STEP_COMPLETED, step_id, {"result": GZIPPED}, spec_version)
    done = await world.create(run_id, E.RUN_COMPLETED, data={"output": GZIPPED},
                              spec_version=spec_version)  # fmt: skip
    assert done.run is not None and done.run.status == "completed"


async def test_spec_6_is_not_supported(world: World) -> None:
    with pytest.raises(errors.RunNotSupported) as refused:
        await world.create(None, E.RUN_CREATED, data=run_data(), spec_version=6)
    assert refused.value.details == {"runSpecVersion": 6, "supportedSpecVersion": 5}


async def test_gzip_payloads_are_kept_byte_exact(world: World) -> None:
    created = await world.create(None, E.RUN_CREATED, data=run_data(input=GZIPPED), spec_version=5)
    assert created.run is not None
    run_id = created.run.run_id
    await world.create(run_id, E.RUN_STARTED, spec_version=5)
    step_id = world.ids.new(ids.STEP)
    await world.create(run_id, E.STEP_CREATED, step_id, {"stepName": STEP_NAME, "input": GZIPPED})
    await world.create(run_id, E.STEP_STARTED, step_id)
    await world.create(run_id, E.STEP_COMPLETED, step_id, {"result": GZIPPED})
    hook_id, _ = await new_hook(world, run_id)
    await world.create(run_id, E.HOOK_RECEIVED, hook_id, {"payload": GZIPPED})
    await world.create(run_id, E.RUN_COMPLETED, data={"output": GZIPPED})
    async with world.reopen() as reopened:
        run = await reopened.query.get_run(run_id)
        step = await reopened.query.get_step(run_id, step_id)
        assert (run.input, run.output, step.input, step.output) == (GZIPPED,) * 4
        events = (await reopened.query.list_events(run_id, Paging(), "all")).data
        received = [e for e in events if e.event_type is E.HOOK_RECEIVED]
        assert received[0].event_data == {"payload": GZIPPED}
        assert gzip.decompress(step.output).startswith(b"devl")


async def test_serialized_errors_are_kept_as_bytes(world: World) -> None:
    run_id = await new_run(world, started=True)
    step_id = await new_step(world, run_id, started=True)
    thrown = b"encr" + bytes(range(40))
    retried = await world.create(run_id, E.STEP_RETRYING, step_id, {"error": thrown})
    assert retried.step is not None and retried.step.error is not None
    assert retried.step.error.raw == thrown
    await world.create(run_id, E.STEP_STARTED, step_id)
    await world.create(run_id, E.STEP_FAILED, step_id, {"error": thrown})
    await world.create(run_id, E.RUN_FAILED, data={"error": thrown, "errorCode": "USER_ERROR"})
    async with world.reopen() as reopened:
        run = await reopened.query.get_run(run_id)
        assert run.error is not None and (run.error.raw, run.error.code) == (thrown, "USER_ERROR")
        assert run_wire(run)["error"] == thrown and run_wire(run)["errorCode"] == "USER_ERROR"
        step = await reopened.query.get_step(run_id, step_id)
        assert step.error is not None and step_wire(step)["error"] == thrown


# run attributes (spec 4)


async def test_run_attributes_are_set_at_creation(world: World) -> None:
    plain = await world.create(None, E.RUN_CREATED, data=run_data(), spec_version=5)
    assert plain.run is not None and plain.run.attributes == {}
    assert run_wire(plain.run)["attributes"] == {}
    lineage = {"$rootRunId": "wrun_root", "$parentRunId": "wrun_parent", "team": "payments"}
    with pytest.raises(errors.InvalidRequest):  # $-keys are reserved for the framework
        await world.create(None, E.RUN_CREATED, data=run_data(attributes=lineage))
    data = run_data(attributes=lineage, allowReservedAttributes=True)
    created = await world.create(None, E.RUN_CREATED, data=data, spec_version=5)
    assert created.run is not None and created.run.attributes == lineage
    assert created.event is not None and created.event.event_data == data
    async with world.reopen() as reopened:
        assert (await reopened.query.get_run(created.run.run_id)).attributes == lineage


async def test_resilient_start_seeds_the_attributes(world: World) -> None:
    run_id = client_run_id(world)
    data = run_data(attributes={"env": "prod"})
    started = await world.create(run_id, E.RUN_STARTED, data=data, spec_version=5)
    assert started.run is not None and started.run.attributes == {"env": "prod"}
    assert started.events is not None
    assert started.events[0].event_data == data


@pytest.mark.parametrize(
    "attributes",
    [
        {"": "v"},
        {"k" * 257: "v"},
        {"k": "v" * 257},
        {"k": "é" * 129},  # 258 bytes
        {f"k{i}": "v" for i in range(65)},
        {"k": 1},
        ["k", "v"],
    ],
)
async def test_run_attributes_beyond_the_limits_are_refused(world: World, attributes: Any) -> None:
    with pytest.raises(errors.InvalidRequest):
        await world.create(None, E.RUN_CREATED, data=run_data(attributes=attributes))


async def test_attr_set_merges_into_the_run(world: World) -> None:
    data = run_data(attributes={"a": "1", "b": "2"})
    created = await world.create(None, E.RUN_CREATED, data=data, spec_version=5)
    assert created.run is not None
    run_id = created.run.run_id
    await world.create(run_id, E.RUN_STARTED)
    changes = [{"key": "a", "value": "10"}, {"key": "b", "value": None}, {"key": "c", "value": "3"}]
    data = {"changes": changes, "writer": {"type": "workflow"}}
    result = await world.create(run_id, E.ATTR_SET, "attr_1", data, spec_version=5)
    assert result.run is not None and result.run.attributes == {"a": "10", "c": "3"}
    assert result.event is not None and result.event.event_data == data
    step_writer = {"type": "step", "stepId": "step_1", "attempt": 1}
    await world.create(run_id, E.ATTR_SET, data={"changes": [{"key": "d", "value": "4"}],
                                                 "writer": step_writer})  # fmt: skip
    assert (await world.query.get_run(run_id)).attributes == {"a": "10", "c": "3", "d": "4"}
    assert (await log_types(world, run_id)).count(E.ATTR_SET) == 2


@pytest.mark.parametrize(
    "data",
    [
        {"changes": [{"key": "$x", "value": "1"}], "writer": {"type": "workflow"}},
        {"changes": [{"key": "a", "value": 1}], "writer": {"type": "workflow"}},
        {"changes": [{"key": "a"}], "writer": {"type": "workflow"}},
        {"changes": [{"key": "a", "value": "1"}, {"key": "a", "value": "2"}],
         "writer": {"type": "workflow"}},
        {"changes": {"a": "1"}, "writer": {"type": "workflow"}},
        {"changes": [], "writer": {"type": "robot"}},
        {"changes": [], "writer": {"type": "step", "stepId": "s"}},
        {"changes": []},
        {"writer": {"type": "workflow"}},
        {"changes": [], "writer": {"type": "workflow"}, "allowReservedAttributes": False},
    ],
)  # fmt: skip
async def test_bad_attr_set_is_refused_and_changes_nothing(
    world: World, data: dict[str, Any]
) -> None:
    run_id = await new_run(world, started=True)
    with pytest.raises(errors.InvalidRequest):
        await world.create(run_id, E.ATTR_SET, data=data)
    assert (await world.query.get_run(run_id)).attributes == {}
    assert E.ATTR_SET not in await log_types(world, run_id)


async def test_attr_set_keeps_the_cap_after_the_merge(world: World) -> None:
    full = {f"k{i}": "v" for i in range(64)}
    created = await world.create(None, E.RUN_CREATED, data=run_data(attributes=full))
    assert created.run is not None
    run_id, writer = created.run.run_id, {"type": "workflow"}
    update = [{"key": "k0", "value": "changed"}]  # updating a present key adds nothing
    assert (await world.create(run_id, E.ATTR_SET, data={"changes": update, "writer": writer})).run
    with pytest.raises(errors.InvalidRequest):
        one_more = [{"key": "k64", "value": "v"}]
        await world.create(run_id, E.ATTR_SET, data={"changes": one_more, "writer": writer})
    swap = [{"key": "k1", "value": None}, {"key": "k64", "value": "v"}]
    result = await world.create(run_id, E.ATTR_SET, data={"changes": swap, "writer": writer})
    assert result.run is not None and len(result.run.attributes) == 64


async def test_attr_set_needs_a_live_run(world: World) -> None:
    data = {"changes": [{"key": "a", "value": "1"}], "writer": {"type": "workflow"}}
    with pytest.raises(errors.RunNotFound):
        await world.create(client_run_id(world), E.ATTR_SET, data=data)
    run_id = await new_run(world, started=True)
    await world.create(run_id, E.RUN_COMPLETED, data={"output": PAYLOAD})
    with pytest.raises(errors.EntityConflict):
        await world.create(run_id, E.ATTR_SET, data=data)


async def test_set_attributes_merges_without_an_event(world: World) -> None:
    run_id = await new_run(world, started=True)
    before = await log_types(world, run_id)
    merged = await world.events.set_attributes(run_id, (("a", "1"), ("b", "2")), False)
    assert merged == {"a": "1", "b": "2"}
    assert await world.events.set_attributes(run_id, (("a", None),), False) == {"b": "2"}
    assert (await world.query.get_run(run_id)).attributes == {"b": "2"}
    assert await log_types(world, run_id) == before
    with pytest.raises(errors.InvalidRequest):
        await world.events.set_attributes(run_id, (("$rootRunId", "x"),), False)
    assert await world.events.set_attributes(run_id, (("$rootRunId", "x"),), True)
    with pytest.raises(errors.RunNotFound):
        await world.events.set_attributes(client_run_id(world), (("a", "1"),), False)


# lazy step creation (spec 5)


def lazy_start(**extra: Any) -> dict[str, Any]:
    return {"stepName": STEP_NAME, "input": GZIPPED, "workflowName": WORKFLOW, **extra}


async def test_lazy_step_started_creates_the_step_and_its_step_created(world: World) -> None:
    run_id = await new_run(world, started=True)
    step_id = world.ids.new(ids.STEP)
    data = lazy_start(ownerMessageId="msg_1")
    result = await world.create(run_id, E.STEP_STARTED, step_id, data, spec_version=5)
    assert result.step_created is True
    assert result.step is not None
    assert (result.step.status, result.step.attempt, result.step.input) == ("running", 1, GZIPPED)
    assert result.event is not None and result.event.event_type is E.STEP_STARTED
    assert result.event.event_data == {k: v for k, v in data.items() if k != "input"}
    events = (await world.query.list_events(run_id, Paging(), "all")).data
    assert [e.event_type for e in events][-2:] == [E.STEP_CREATED, E.STEP_STARTED]
    synthetic = events[-2]
    assert (synthetic.correlation_id, synthetic.spec_version) == (step_id, 5)
    assert synthetic.event_data == {
        "stepName": STEP_NAME,
        "input": GZIPPED,
        "workflowName": WORKFLOW,
    }
    assert synthetic.event_id < events[-1].event_id
    stored = await world.query.get_step(run_id, step_id)
    assert (stored.step_name, stored.status, stored.spec_version) == (STEP_NAME, "running", 5)
    done = await world.create(run_id, E.STEP_COMPLETED, step_id, {"result": GZIPPED})
    assert done.step is not None and done.step_created is False


async def test_a_lazy_start_of_an_existing_step_conflicts(world: World) -> None:
    run_id = await new_run(world, started=True)
    step_id = await new_step(world, run_id)
    with pytest.raises(errors.EntityConflict):
        await world.create(run_id, E.STEP_STARTED, step_id, lazy_start())
    assert (await world.query.get_step(run_id, step_id)).status == "pending"  # not started
    started = await world.create(run_id, E.STEP_STARTED, step_id, {"stepName": STEP_NAME})
    assert started.step is not None and started.step_created is False  # a plain start


async def test_parallel_lazy_starts_have_exactly_one_owner(world: World) -> None:
    run_id = await new_run(world, started=True)
    step_id = world.ids.new(ids.STEP)
    outcomes = await asyncio.gather(
        *(world.create(run_id, E.STEP_STARTED, step_id, lazy_start()) for _ in range(6)),
        return_exceptions=True,
    )
    owners = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(owners) == 1 and owners[0].step_created is True
    assert all(isinstance(o, errors.EntityConflict) for o in outcomes if o not in owners)
    types = await log_types(world, run_id)
    assert (types.count(E.STEP_CREATED), types.count(E.STEP_STARTED)) == (1, 1)
    assert (await world.query.get_step(run_id, step_id)).attempt == 1


async def test_lazy_start_on_an_ended_run_conflicts_and_without_data_is_not_found(
    world: World,
) -> None:
    run_id = await new_run(world, started=True)
    with pytest.raises(errors.StepNotFound):  # no creation data: the step must exist
        await world.create(run_id, E.STEP_STARTED, world.ids.new(ids.STEP), {"stepName": "s"})
    await world.create(run_id, E.RUN_CANCELLED)
    with pytest.raises(errors.EntityConflict):
        await world.create(run_id, E.STEP_STARTED, world.ids.new(ids.STEP), lazy_start())
    assert E.STEP_CREATED not in await log_types(world, run_id)


async def test_system_hooks_say_so(world: World) -> None:
    run_id = await new_run(world, started=True)
    hook_id = world.ids.new(ids.HOOK)
    result = await world.create(run_id, E.HOOK_CREATED, hook_id, {"token": "sys", "isSystem": True})
    assert result.hook is not None and result.hook.is_system is True
    assert (await world.query.get_hook(hook_id)).is_system is True
    assert hook_wire(await world.query.get_hook(hook_id))["isSystem"] is True
    plain, _ = await new_hook(world, run_id)
    assert "isSystem" not in hook_wire(await world.query.get_hook(plain))
    with pytest.raises(errors.InvalidRequest):
        await world.create(run_id, E.HOOK_CREATED, world.ids.new(ids.HOOK),
                           {"token": "t2", "isSystem": "yes"})  # fmt: skip
