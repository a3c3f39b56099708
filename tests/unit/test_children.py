"""Child runs over fakes: started once per token on the parent's deployment, refused for an
ended parent, the outcome handed to the parent's hook when the child ends, and cancelling
a parent cancels its live children recursively."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from compute_worker.adapters.system import LocalSignal
from compute_worker.domain import errors
from compute_worker.domain.audit import RequestContext
from compute_worker.domain.children import START_STEP, child_token, children_of
from compute_worker.domain.deployments import Deployment, WorkflowInfo
from compute_worker.domain.ids import IdFactory
from compute_worker.domain.use_cases.cancel_run import CancelRun
from compute_worker.domain.use_cases.record_run_events import RecordRunEvents
from compute_worker.domain.use_cases.start_child_run import StartChildRun
from compute_worker.domain.world import EventRequest, EventType
from compute_worker.domain.world_writes import WorldWrites
from tests.fakes import FakeStore, FakeUnitOfWork, FixedClock

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CTX = RequestContext("POST", "/v1/runs/x/cancel", "corr-1", "key_A")


class Family:
    def __init__(self) -> None:
        self.store, self.clock = FakeStore(), FixedClock(NOW)
        self.uow = FakeUnitOfWork(self.store)
        self.ids = IdFactory(clock_ms=self.clock.now_ms)
        self.writes = WorldWrites(self.ids, self.clock, LocalSignal())
        self.start = StartChildRun(self.uow, self.clock, self.writes)
        self.record = RecordRunEvents(self.uow, self.clock, self.writes)
        self.cancel = CancelRun(self.uow, self.clock, self.writes)
        workflows = (WorkflowInfo("parent"), WorkflowInfo("child"))
        self.store.deployments["dpl_1"] = Deployment("dpl_1", "python", "sha256:0", workflows, NOW)
        self.store.active_deployment = "dpl_1"

    async def run_of(self, name: str) -> str:
        def start(tx):  # type: ignore[no-untyped-def]
            return self.writes.start_run(tx, name, [], None, None)

        run = await self.uow.run(start)
        await self.record.execute(run.run_id, [EventRequest(EventType.RUN_STARTED)])
        return run.run_id

    async def child_of(self, parent_id: str, index: int = 0) -> str:
        """What a parent's ``start_workflow`` does: a hook, then the start step."""
        token = child_token(parent_id, index)
        hook_id, step_id = f"hook_{parent_id}_{index}", f"step_{parent_id}_{index}"
        await self.record.execute(parent_id, [
            EventRequest(EventType.HOOK_CREATED, hook_id, None, {"token": token}),
            EventRequest(EventType.STEP_CREATED, step_id, None,
                         {"stepName": START_STEP + "child", "input": []}),
            EventRequest(EventType.STEP_STARTED, step_id),
        ])  # fmt: skip
        child = await self.start.execute(parent_id, "child", [index], token)
        result = {"result": {"runId": child.run_id}}
        completed = EventRequest(EventType.STEP_COMPLETED, step_id, None, result)
        await self.record.execute(parent_id, [completed])
        await self.record.execute(child.run_id, [EventRequest(EventType.RUN_STARTED)])
        return child.run_id


async def test_a_child_starts_once_per_token_on_the_parent_s_deployment() -> None:
    family = Family()
    parent = await family.run_of("parent")
    first = await family.start.execute(parent, "child", [1], "child:p:0")
    again = await family.start.execute(parent, "child", [1], "child:p:0")
    assert again.run_id == first.run_id and first.deployment_id == "dpl_1"
    assert first.execution_context == {"parentRunId": parent, "parentToken": "child:p:0"}
    other = await family.start.execute(parent, "child", [2], "child:p:1")
    assert other.run_id != first.run_id
    with pytest.raises(errors.WorkflowNotFound):
        await family.start.execute(parent, "nope", [], "child:p:2")
    with pytest.raises(errors.RunNotFound):
        await family.start.execute("wrun_missing", "child", [], "child:x:0")


async def test_an_ended_parent_starts_no_child() -> None:
    family = Family()
    parent = await family.run_of("parent")
    await family.record.execute(parent, [EventRequest(EventType.RUN_COMPLETED, None, None,
                                                      {"output": None})])  # fmt: skip
    with pytest.raises(errors.RunAlreadyTerminal):
        await family.start.execute(parent, "child", [], "child:p:0")


async def test_the_child_s_outcome_reaches_the_parent_s_hook() -> None:
    family = Family()
    parent = await family.run_of("parent")
    child = await family.child_of(parent)
    await family.record.execute(child, [EventRequest(EventType.RUN_COMPLETED, None, None,
                                                     {"output": {"n": 2}})])  # fmt: skip
    received = [e for e in family.store.events.values()
                if e.run_id == parent and e.event_type == EventType.HOOK_RECEIVED]  # fmt: skip
    assert [e.event_data for e in received] == [
        {"payload": {"runId": child, "status": "completed", "output": {"n": 2}}}
    ]


async def test_cancelling_a_parent_cancels_its_live_children_recursively() -> None:
    family = Family()
    parent = await family.run_of("parent")
    child = await family.child_of(parent, 0)
    done = await family.child_of(parent, 1)
    grandchild = await family.child_of(child, 0)
    await family.record.execute(done, [EventRequest(EventType.RUN_COMPLETED, None, None,
                                                    {"output": 1})])  # fmt: skip
    events = [e for e in family.store.events.values() if e.run_id == parent]
    assert children_of(sorted(events, key=lambda e: e.event_id)) == [child, done]
    await family.cancel.execute(parent, CTX)
    statuses = {run_id: family.store.runs[run_id].status for run_id in (child, done, grandchild)}
    assert statuses == {child: "cancelled", done: "completed", grandchild: "cancelled"}
    (entry,) = [e for e in family.store.audit if e.action == "runs.cancel"]
    assert entry.metadata["cancelledChildren"] == [child, grandchild]


async def test_a_child_whose_start_step_is_not_recorded_yet_is_cancelled_with_its_parent() -> None:
    """The parent is cancelled between the child's start and its start step's result: the
    child's token still leads the cascade to it."""
    family = Family()
    parent = await family.run_of("parent")
    token = child_token(parent, 0)
    await family.record.execute(parent, [
        EventRequest(EventType.HOOK_CREATED, "hook_0", None, {"token": token}),
        EventRequest(EventType.STEP_CREATED, "step_0", None,
                     {"stepName": START_STEP + "child", "input": []}),
        EventRequest(EventType.STEP_STARTED, "step_0"),
    ])  # fmt: skip
    child = await family.start.execute(parent, "child", [0], token)
    await family.cancel.execute(parent, CTX)
    assert family.store.runs[child.run_id].status == "cancelled"
    (entry,) = [e for e in family.store.audit if e.action == "runs.cancel"]
    assert entry.metadata["cancelledChildren"] == [child.run_id]
    with pytest.raises(errors.RunAlreadyTerminal):  # and the cancelled parent starts no more
        await family.start.execute(parent, "child", [1], child_token(parent, 1))
