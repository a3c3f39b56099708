"""The stuck-run detector (``DetectStuckRuns`` over ``StuckRunStore``) on the fakes, SQLite
and PostgreSQL alike: each cause is reported with its reason, runs waiting on a sleep or
a hook and finished runs are not, progress clears a finding, and the listing filters on it."""

from __future__ import annotations

from datetime import timedelta

from compute_worker.adapters.system import LocalSignal
from compute_worker.domain import ids
from compute_worker.domain.execution import RetryPolicy
from compute_worker.domain.stuck import (
    EXECUTOR_LOST,
    NO_PROGRESS,
    NOT_STARTED,
    SLEEP_OVERDUE,
    START_FAILING,
    STEP_RETRYING,
)
from compute_worker.domain.use_cases.detect_stuck_runs import DetectStuckRuns
from compute_worker.domain.use_cases.list_runs import ListRuns, RunFilter
from compute_worker.domain.use_cases.record_execution_trouble import RecordExecutionTrouble
from compute_worker.domain.world import EventType
from compute_worker.domain.world_writes import WorldWrites
from tests.contracts.conftest import World
from tests.contracts.test_world_contract import iso, new_hook, new_run, new_step

E = EventType
THRESHOLD = timedelta(seconds=0.3)


def trouble(world: World) -> RecordExecutionTrouble:
    writes = WorldWrites(world.ids, world.clock, LocalSignal())
    return RecordExecutionTrouble(world.uow, world.clock, writes, RetryPolicy(1000, 1000))


async def test_each_cause_is_reported_and_waiting_runs_are_not(world: World) -> None:
    detector = DetectStuckRuns(world.stuck, world.clock, THRESHOLD, batch=3)  # several ticks
    expected: dict[str, str] = {}
    expected[await new_run(world)] = NOT_STARTED
    expected[await new_run(world, started=True)] = NO_PROGRESS
    retrying = await new_run(world, started=True)
    step_id = await new_step(world, retrying, started=True)
    await world.create(retrying, E.STEP_RETRYING, step_id, {"error": "step timed out"})
    await world.create(retrying, E.STEP_STARTED, step_id)
    expected[retrying] = STEP_RETRYING
    lost = await new_run(world, started=True)
    await trouble(world).executor_lost(lost)
    expected[lost] = EXECUTOR_LOST
    broken = await new_run(world)
    await trouble(world).start_failed(broken, "ModuleNotFoundError: No module named 'gone'")
    expected[broken] = START_FAILING
    overdue = await new_run(world, started=True)
    await world.create(overdue, E.WAIT_CREATED, world.ids.new(ids.WAIT),
                       {"resumeAt": iso(world.now())})  # fmt: skip
    expected[overdue] = SLEEP_OVERDUE

    sleeping = await new_run(world, started=True)
    await world.create(sleeping, E.WAIT_CREATED, world.ids.new(ids.WAIT),
                       {"resumeAt": iso(world.now() + timedelta(hours=1))})  # fmt: skip
    hooked = await new_run(world, started=True)
    await new_hook(world, hooked)
    done = await new_run(world, started=True)
    await world.create(done, E.RUN_COMPLETED, data={"output": 1})
    fresh_later = [sleeping, hooked, done]

    await world.pass_time(THRESHOLD.total_seconds() + 0.2)
    found = {}
    for _ in range(4):  # 8 live runs, 3 a tick: the pass ends within 3 ticks
        found.update({stuck.run_id: stuck for stuck in await detector.tick()})
    assert {run_id: stuck.reason for run_id, stuck in found.items()} == expected
    assert not set(fresh_later) & set(found)
    assert "ModuleNotFoundError" in found[broken].message
    assert "step timed out" in found[retrying].message
    assert found[retrying].since < found[retrying].detected_at

    listing = await ListRuns(world.reader).execute(RunFilter(stuck=True, limit=100))
    assert {run.run_id for run in listing.page.data} == set(expected)
    assert {run_id: s.reason for run_id, s in listing.stuck.items()} == expected
    healthy = await ListRuns(world.reader).execute(RunFilter(stuck=False, limit=100))
    assert {run.run_id for run in healthy.page.data} == set(fresh_later)
    assert healthy.stuck == {}

    # found once: the next passes report nothing new and keep the first detection time
    for _ in range(4):
        assert await detector.tick() == []
    again = await world.reader.stuck_runs(list(expected))
    assert again[broken].detected_at == found[broken].detected_at

    # progress clears a finding; a run that ends drops out of the listing
    silent = next(run_id for run_id, reason in expected.items() if reason == NO_PROGRESS)
    await new_step(world, silent)
    await world.create(lost, E.RUN_CANCELLED)
    for _ in range(4):
        await detector.tick()
    left = await world.reader.stuck_runs(list(expected))
    assert set(left) == set(expected) - {silent, lost}


async def test_a_run_view_holds_its_trouble_and_stuck_record_while_live_and_its_children(
    world: World,
) -> None:
    run_id = await new_run(world, started=True)
    await trouble(world).executor_lost(run_id)
    for name, output in (("start_workflow:child", {"runId": "wrun_CHILD1"}),
                         ("start_workflow%x", {"runId": "wrun_NOT"}),  # LIKE's % is no wildcard
                         ("start_workflow:other", {"runId": "wrun_CHILD2"}),
                         ("plain", {"runId": "wrun_NOT"})):  # fmt: skip
        step_id = world.ids.new(ids.STEP)
        await world.create(run_id, E.STEP_CREATED, step_id, {"stepName": name, "input": []})
        await world.create(run_id, E.STEP_STARTED, step_id)
        await world.create(run_id, E.STEP_COMPLETED, step_id, {"result": output})
    await world.pass_time(THRESHOLD.total_seconds() + 0.2)
    for _ in range(3):
        await DetectStuckRuns(world.stuck, world.clock, THRESHOLD).tick()

    view = await world.query.get_run_view(run_id)
    assert view.run.run_id == run_id and view.run.status == "running"
    assert view.execution is not None and view.execution.lost_executors == 1
    assert view.stuck is not None and view.stuck.reason == NO_PROGRESS
    assert view.stuck == (await world.reader.stuck_runs([run_id]))[run_id]
    assert view.children == [("wrun_CHILD1", "child"), ("wrun_CHILD2", "other")]

    await world.create(run_id, E.RUN_COMPLETED, data={"output": 1})
    ended = await world.query.get_run_view(run_id)
    assert (ended.execution, ended.stuck, len(ended.children)) == (None, None, 2)
