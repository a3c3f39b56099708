"""Start on accept over fakes: a new run that this node's engine takes is written with its
lease instead of a wake-up message and handed over once committed; a node that declines,
an app's run and a trigger that is rolled back leave the queue as it was; the write that
ends a run ends its lease."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from compute_worker.adapters.system import LocalSignal
from compute_worker.domain import errors
from compute_worker.domain.audit import RequestContext
from compute_worker.domain.deployments import Deployment, DeploymentKind, WorkflowInfo
from compute_worker.domain.ids import IdFactory
from compute_worker.domain.ports.engine import LeaseClaim, RunStarts
from compute_worker.domain.use_cases.record_run_events import RecordRunEvents
from compute_worker.domain.use_cases.trigger_run import Trigger, TriggerRun
from compute_worker.domain.world import Event, EventRequest, EventType, Run
from compute_worker.domain.world_writes import WorldWrites
from tests.fakes import FakeStore, FakeUnitOfWork, FixedClock

NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
CTX = RequestContext("POST", "/v1/runs", "corr-1", key_id="key_A")


class Engine(RunStarts):
    """This node's engine as the World's writes see it: takes runs while it has room."""

    def __init__(self, room: bool = True) -> None:
        self.room = room
        self.asked: list[str] = []
        self.started: list[tuple[Run, list[Event]]] = []

    def claim(self, deployment: Deployment) -> LeaseClaim | None:
        self.asked.append(deployment.deployment_id)
        return LeaseClaim("worker-1", 10.0) if self.room else None

    def start(self, run: Run, events: Sequence[Event]) -> None:
        self.started.append((run, list(events)))


class Node:
    def __init__(self, engine: Engine, kind: DeploymentKind = "python") -> None:
        self.store, self.clock, self.engine = FakeStore(), FixedClock(NOW), engine
        uow, ids = FakeUnitOfWork(self.store), IdFactory(clock_ms=self.clock.now_ms)
        writes = WorldWrites(ids, self.clock, LocalSignal(), starts=engine)
        self.trigger = TriggerRun(uow, self.clock, writes)
        self.record = RecordRunEvents(uow, self.clock, writes)
        self.store.deployments["dpl_1"] = Deployment(
            "dpl_1", kind, "sha256:" + "0" * 64, (WorkflowInfo("greet"),), NOW
        )
        self.store.active_deployment = "dpl_1"

    async def accept(self, key: str = "key-1", workflow: str = "greet") -> Run:
        return (await self.trigger.execute(Trigger(workflow, key, "key_A"), CTX)).run


async def test_a_run_the_engine_takes_is_leased_to_it_and_handed_over_once_committed() -> None:
    node = Node(Engine())
    run = await node.accept()
    assert node.store.leases == {run.run_id: ("worker-1", NOW + timedelta(seconds=10))}
    assert node.store.messages == {}  # nothing for another worker to claim
    [(started, events)] = node.engine.started
    assert started == node.store.runs[run.run_id] == run
    assert [(e.event_type, e.event_id) for e in events] == [
        (e.event_type, e.event_id) for e in node.store.events.values()
    ]
    assert events[0].event_type is EventType.RUN_CREATED


async def test_a_node_that_declines_leaves_the_run_to_the_queue() -> None:
    node = Node(Engine(room=False))
    run = await node.accept()
    assert node.store.leases == {} and node.engine.started == []
    [queued] = node.store.messages.values()
    assert queued.message.payload == {"runId": run.run_id}


async def test_an_apps_run_goes_to_the_queue_without_asking_the_engine() -> None:
    node = Node(Engine(), kind="wdk")
    await node.accept(workflow="workflow//./src/app//greet")
    assert node.engine.asked == [] and node.store.leases == {}
    assert len(node.store.messages) == 1


async def test_a_trigger_that_is_refused_or_replayed_starts_nothing() -> None:
    node = Node(Engine())
    with pytest.raises(errors.WorkflowNotFound):
        await node.accept(workflow="missing")
    first = await node.accept()
    replay = await node.accept()  # same key: answered from its record
    assert replay.run_id == first.run_id
    assert [run.run_id for run, _ in node.engine.started] == [first.run_id]
    assert list(node.store.leases) == [first.run_id]


async def test_the_write_that_ends_a_run_ends_its_lease() -> None:
    node = Node(Engine())
    run = await node.accept()
    await node.record.execute(run.run_id, [EventRequest(EventType.RUN_STARTED)])
    assert run.run_id in node.store.leases  # running: still its executor's
    done = EventRequest(EventType.RUN_COMPLETED, event_data={"output": 1})
    await node.record.execute(run.run_id, [done])
    assert node.store.leases == {}
