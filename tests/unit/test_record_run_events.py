"""RecordRunEvents over fakes: one transaction per batch, the audit row of a request, the
run's streams closed by the batch that ends it, refusals that change nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from compute_worker.adapters.system import LocalSignal
from compute_worker.domain import errors
from compute_worker.domain.audit import RequestContext
from compute_worker.domain.ids import IdFactory
from compute_worker.domain.use_cases.proxy_world_event import CreateEvent, ProxyWorldEvent
from compute_worker.domain.use_cases.record_run_events import RecordRunEvents
from compute_worker.domain.use_cases.streams import WriteStream
from compute_worker.domain.world import CreateParams, EventRequest, EventType, run_stream_name
from compute_worker.domain.world_writes import WorldWrites
from tests.fakes import FakeStore, FakeUnitOfWork, FixedClock

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CTX = RequestContext("POST", "/v1/world/events/create-batch", "corr-9", key_id="key_W")
E = EventType


class World:
    def __init__(self) -> None:
        self.store, self.clock = FakeStore(), FixedClock(NOW)
        uow, ids = FakeUnitOfWork(self.store), IdFactory(clock_ms=self.clock.now_ms)
        writes = WorldWrites(ids, self.clock, LocalSignal())
        self.events = ProxyWorldEvent(uow, ids, self.clock, writes)
        self.streams = WriteStream(uow, self.clock, writes)
        self.record = RecordRunEvents(uow, self.clock, writes)

    async def new_run(self) -> str:
        data = {"deploymentId": "dpl_x", "workflowName": "w", "input": []}
        request = EventRequest(E.RUN_CREATED, event_data=data)
        created = await self.events.execute(CreateEvent(None, request))
        assert created.run is not None
        return created.run.run_id

    def log(self, run_id: str) -> list[EventType]:
        return [e.event_type for e in self.store.events.values() if e.run_id == run_id]


@pytest.fixture
def world() -> World:
    return World()


async def test_a_batch_is_one_write_with_one_audit_row(world: World) -> None:
    run_id = await world.new_run()
    results = await world.record.execute(
        run_id,
        [
            EventRequest(E.RUN_STARTED),
            EventRequest(E.STEP_CREATED, "step_1", None, {"stepName": "s", "input": []}),
        ],
        CTX,
    )
    assert [r.run.status if r.run else None for r in results] == ["running", None]
    assert world.log(run_id) == [E.RUN_CREATED, E.RUN_STARTED, E.STEP_CREATED]
    [entry] = world.store.audit
    assert (entry.action, entry.run_id, entry.key_id) == (
        "world.events.create-batch",
        run_id,
        "key_W",
    )
    assert entry.metadata["events"] == 2


async def test_the_engine_writes_without_an_audit_row(world: World) -> None:
    run_id = await world.new_run()
    await world.record.execute(run_id, [EventRequest(E.RUN_STARTED)])
    assert world.store.audit == []


async def test_the_batch_that_ends_the_run_closes_its_streams(world: World) -> None:
    run_id = await world.new_run()
    name = run_stream_name(run_id, "log")
    await world.streams.write(name, run_id, [b"line"])
    await world.record.execute(run_id, [EventRequest(E.RUN_STARTED)])
    assert world.store.chunks[name][-1].eof is False
    await world.record.execute(run_id, [EventRequest(E.RUN_COMPLETED, None, None, {})])
    assert world.store.chunks[name][-1].eof is True


@pytest.mark.parametrize(
    "bad",
    [
        EventRequest(
            E.RUN_CREATED, None, None, {"deploymentId": "d", "workflowName": "w", "input": []}
        ),
        EventRequest(E.STEP_STARTED),  # no correlation id
        EventRequest(E.STEP_COMPLETED, "step_unknown", None, {"result": 1}),  # not found
    ],
    ids=["run-created", "shape", "decided"],
)
async def test_a_refused_event_leaves_the_whole_batch_unwritten(
    world: World, bad: EventRequest
) -> None:
    run_id = await world.new_run()
    with pytest.raises(errors.DomainError):
        await world.record.execute(run_id, [EventRequest(E.RUN_STARTED), bad], CTX)
    assert world.log(run_id) == [E.RUN_CREATED]
    assert world.store.audit == []


async def test_events_create_keeps_the_request_id_in_its_audit_row(world: World) -> None:
    run_id = await world.new_run()
    context = RequestContext("POST", "/v1/world/events/create", "corr-7", key_id="key_W")
    params = CreateParams(request_id="iad1::abc-123")
    await world.events.execute(
        CreateEvent(run_id, EventRequest(E.RUN_STARTED), params=params), context
    )
    [entry] = world.store.audit
    assert entry.metadata == {
        "correlationId": "corr-7", "runId": run_id, "eventType": "run_started",
        "requestId": "iad1::abc-123",
    }  # fmt: skip
