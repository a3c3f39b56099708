"""The public lane's listings (``ListRuns``, ``InspectRun``, ``RunStreams``,
``ListDeployments``) over the fakes, SQLite and PostgreSQL alike: filters, order,
cursors, stream summaries and pinned-run counts."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from compute_worker.domain import errors, ids
from compute_worker.domain.deployments import Deployment, WorkflowInfo
from compute_worker.domain.ports.security import ApiKey
from compute_worker.domain.use_cases.inspect_run import HistoryPage, InspectRun
from compute_worker.domain.use_cases.list_deployments import ListDeployments
from compute_worker.domain.use_cases.list_runs import ListRuns, RunFilter
from compute_worker.domain.use_cases.run_streams import RunStreams
from compute_worker.domain.world import EventType, run_stream_name
from tests.contracts.conftest import World
from tests.contracts.test_world_contract import new_hook, new_step, run_data

E = EventType


async def run_on(world: World, deployment_id: str, workflow: str = "wf") -> str:
    data = run_data(deploymentId=deployment_id, workflowName=workflow)
    created = await world.create(None, E.RUN_CREATED, data=data)
    assert created.run is not None
    await world.pass_time(0.005)  # distinct creation times
    return created.run.run_id


async def test_runs_filter_by_status_deployment_workflow_and_time(world: World) -> None:
    runs = ListRuns(world.reader)
    a1 = await run_on(world, "dpl_a", "one")
    a2 = await run_on(world, "dpl_a", "two")
    b1 = await run_on(world, "dpl_b", "one")
    await world.create(a2, E.RUN_STARTED)
    await world.create(b1, E.RUN_STARTED)
    await world.create(b1, E.RUN_COMPLETED, data={"output": 1})

    async def listed(**filters: object) -> list[str]:
        listing = await runs.execute(RunFilter(**filters))  # type: ignore[arg-type]
        return [run.run_id for run in listing.page.data]

    assert await listed() == [b1, a2, a1]
    assert await listed(statuses=("running",)) == [a2]
    assert await listed(statuses=("running", "completed")) == [b1, a2]
    assert await listed(statuses=("pending", "pending")) == [a1]
    assert await listed(deployment_id="dpl_a") == [a2, a1]
    assert await listed(deployment_id="dpl_a", workflow_name="one") == [a1]
    assert await listed(deployment_id="dpl_c") == []
    middle = (await world.query.get_run(a2)).created_at
    assert await listed(created_after=middle) == [b1]
    assert await listed(created_before=middle) == [a1]
    assert await listed(created_after=middle - timedelta(milliseconds=1),
                        created_before=middle + timedelta(milliseconds=1)) == [a2]  # fmt: skip

    first = (await runs.execute(RunFilter(limit=2))).page
    rest = (await runs.execute(RunFilter(limit=2, cursor=first.cursor))).page
    assert [r.run_id for r in first.data + rest.data] == [b1, a2, a1]
    assert (first.has_more, rest.has_more) == (True, False)


async def test_history_of_a_run_is_oldest_first_and_404_for_unknown_runs(world: World) -> None:
    inspect = InspectRun(world.reader)
    run_id = await run_on(world, "dpl_a")
    await world.create(run_id, E.RUN_STARTED)
    steps = [await new_step(world, run_id) for _ in range(3)]
    hook_id, token = await new_hook(world, run_id)

    listed = await inspect.steps(run_id, HistoryPage())
    assert [s.step_id for s in listed.data] == steps
    newest = await inspect.steps(run_id, HistoryPage(limit=2, sort_order="desc"))
    assert [s.step_id for s in newest.data] == steps[::-1][:2] and newest.has_more
    writer = ApiKey("key_w", "w", frozenset({"runs:read", "runs:write"}), world.now())
    reader = ApiKey("key_r", "r", frozenset({"runs:read"}), world.now())
    events = await inspect.events(run_id, HistoryPage(), "all", writer)
    assert [e.event_type for e in events.data][:2] == [E.RUN_CREATED, E.RUN_STARTED]
    stripped = await inspect.events(run_id, HistoryPage(), "none", writer)
    assert stripped.data[0].event_data is not None
    assert "input" not in stripped.data[0].event_data

    def hook_data(page: Any) -> dict[str, Any]:
        (created,) = [e for e in page.data if e.event_type == E.HOOK_CREATED]
        return dict(created.event_data or {})

    assert hook_data(events)["token"] == token
    for resolve in ("all", "none"):  # a key that may not resume the run does not see it
        hidden = await inspect.events(run_id, HistoryPage(), resolve, reader)
        assert "token" not in hook_data(hidden)
        assert [e.event_id for e in hidden.data] == [e.event_id for e in events.data]
    seen = await inspect.hooks(run_id, HistoryPage(), writer)
    assert [(h.hook_id, h.token) for h in seen.page.data] == [(hook_id, token)]
    assert (
        seen.tokens_visible
        and not (await inspect.hooks(run_id, HistoryPage(), reader)).tokens_visible
    )

    for read in (
        inspect.steps("wrun_missing", HistoryPage()),
        inspect.events("wrun_missing", HistoryPage(), "all", writer),
        inspect.hooks("wrun_missing", HistoryPage(), writer),
    ):
        with pytest.raises(errors.RunNotFound):
            await read


async def test_a_runs_streams_are_summarized_and_read_by_short_name(world: World) -> None:
    streams = RunStreams(world.reader, world.stream_reader, world.stream_tail)
    run_id = await run_on(world, "dpl_a")
    log, other = run_stream_name(run_id, "log"), run_stream_name(run_id, "other")
    await world.write_stream.write(log, run_id, [b"a", b"", b"b"])
    await world.write_stream.close(other, run_id)
    foreign = f"{world.ids.new(ids.STREAM)}_x"
    await world.write_stream.write(foreign, run_id, [b"z"])

    summary = {s.name: (s.stored_name, s.chunks, s.done) for s in await streams.describe(run_id)}
    assert summary == {
        "log": (log, 2, False),
        "other": (other, 0, True),
        foreign: (foreign, 1, False),
    }

    async def read(name: str, start: int = 0) -> list[tuple[int, bytes]]:
        chunks = await streams.open(run_id, name, start)
        return [item async for item in chunks]

    await world.write_stream.close(log, run_id)
    assert await asyncio.wait_for(read("log"), 5) == [(0, b"a"), (1, b"b")]
    assert await asyncio.wait_for(read(log, -1), 5) == [(1, b"b")]
    with pytest.raises(errors.StreamNotFound):
        await streams.open(run_id, "missing")
    with pytest.raises(errors.RunNotFound):
        await streams.open("wrun_missing", "log")


async def test_a_read_of_an_open_stream_stops_once_its_run_ended(world: World) -> None:
    streams = RunStreams(world.reader, world.stream_reader, world.stream_tail)
    run_id = await run_on(world, "dpl_a")
    await world.create(run_id, E.RUN_STARTED)
    name = run_stream_name(run_id, "log")
    await world.write_stream.write(name, run_id, [b"1"])
    chunks = await streams.open(run_id, "log")
    assert await asyncio.wait_for(anext(chunks), 5) == (0, b"1")
    await world.write_stream.write(name, run_id, [b"2"])
    await world.create(run_id, E.RUN_COMPLETED, data={"output": None})
    rest = await asyncio.wait_for(_drain(chunks), 5)
    assert rest == [(1, b"2")]


async def _drain(chunks: object) -> list[tuple[int, bytes]]:
    return [item async for item in chunks]  # type: ignore[attr-defined]


def _deployment(world: World, created_offset: float) -> Deployment:
    return Deployment(
        deployment_id=world.ids.new(ids.DEPLOYMENT),
        kind="python",
        digest="sha256:" + "0" * 64,
        workflows=(WorkflowInfo("wf", ("step",)),),
        created_at=world.now() + timedelta(seconds=created_offset),
        entrypoint="workflows.py",
        metadata={"n": created_offset},
    )


async def test_deployments_are_listed_newest_first_with_pinned_runs(world: World) -> None:
    listing = ListDeployments(world.deployments)
    made = [_deployment(world, offset) for offset in (0, 1, 2)]
    for deployment in made:
        await world.uow.run(lambda tx, d=deployment: tx.insert_deployment(d))
    await world.activate(made[1].deployment_id)
    live = await run_on(world, made[0].deployment_id)
    await run_on(world, made[0].deployment_id)
    done = await run_on(world, made[0].deployment_id)
    await world.create(done, E.RUN_CANCELLED)
    await world.create(live, E.RUN_STARTED)
    await run_on(world, made[2].deployment_id)

    page = await listing.execute()
    assert [item.deployment.deployment_id for item in page.data] == [
        d.deployment_id for d in reversed(made)
    ]
    assert [item.deployment.active for item in page.data] == [False, True, False]
    assert [item.pinned_runs for item in page.data] == [1, 0, 2]
    assert page.data[2].deployment.workflows == (WorkflowInfo("wf", ("step",)),)
    first = await listing.execute(limit=2)
    rest = await listing.execute(limit=2, cursor=first.cursor)
    assert [i.deployment.deployment_id for i in first.data + rest.data] == [
        d.deployment_id for d in reversed(made)
    ]
    assert await world.deployments.pinned_runs([]) == {}
