"""The World over the process backend's pipe (``adapters/worldcompute/process/pipe.py``):
the child's ``PipeRunWorld`` and the parent's ``WorldCalls``, joined by an in-memory
pipe that carries bytes as the real one does, over a World fake that holds state."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from compute_worker.adapters import codec
from compute_worker.adapters.system import LocalSignal
from compute_worker.adapters.worldcompute.process.pipe import (
    MAX_IN_FLIGHT,
    PipeRunWorld,
    WorldCalls,
)
from compute_worker.domain import errors
from compute_worker.domain.ports.engine import RunWorld
from compute_worker.domain.ports.streams import Subscription
from compute_worker.domain.world import (
    Event,
    EventRequest,
    EventResult,
    EventType,
    Run,
    Step,
    StructuredError,
)

OWN = "wrun_01M8VPM30852TKQ3HE99GRFHEE"
OTHER = "wrun_01M8VPM30852TKQ3HE99GRFHEZ"
T0 = datetime(2026, 11, 24, 14, 41, 27, 123000, tzinfo=UTC)
ERROR = StructuredError("it broke", "Traceback …", "USER_ERROR")
RUN = Run(
    run_id=OWN, status="completed", deployment_id="dpl_1", workflow_name="checkout",
    input=["order-42", {"bytes": b"\x00\xff"}], created_at=T0, updated_at=T0 + timedelta(9),
    spec_version=3, execution_context={"traceparent": "00-aa-bb-01"}, output={"r": 1},
    error=ERROR, started_at=T0, completed_at=T0, expired_at=T0, attributes={"team": "x"},
)  # fmt: skip
STEP = Step(
    run_id=OWN, step_id="step_01M8VPM30852TKQ3HE99GRFHEG", step_name="charge",
    status="completed", input=[1, b"\x01"], created_at=T0, updated_at=T0, attempt=2,
    output={"charged": True}, error=ERROR, started_at=T0, completed_at=T0, retry_after=T0,
    spec_version=3,
)  # fmt: skip
EVENT = Event(
    event_id="evnt_01M8VPM30852TKQ3HE99GRFHEH", run_id=OWN,
    event_type=EventType.STEP_COMPLETED, created_at=T0, correlation_id=STEP.step_id,
    event_data={"result": b"\x00\x01"}, spec_version=3, occurred_at=T0,
)  # fmt: skip

RESULT = EventResult(event=EVENT, run=RUN, step=STEP, events=(EVENT,), cursor="c",
                     has_more=False, max_events=25_000, step_created=True)  # fmt: skip


@dataclass
class FakeWorld(RunWorld):
    """Holds what was asked of it; ``gate`` (when set) holds ``run`` until it is set."""

    recorded: list[tuple[str, list[EventRequest]]] = field(default_factory=list)
    streams: dict[str, list[bytes | None]] = field(default_factory=dict)
    children: list[tuple[str, str, list[Any], str]] = field(default_factory=list)
    gate: asyncio.Event | None = None
    fail_with: Exception | None = None

    async def record(self, run_id: str, requests: Sequence[EventRequest]) -> list[EventResult]:
        if self.fail_with is not None:
            raise self.fail_with
        self.recorded.append((run_id, list(requests)))
        return [RESULT]

    async def run(self, run_id: str) -> Run | None:
        if self.gate is not None:
            await self.gate.wait()
        return RUN if run_id == OWN else None

    async def events(self, run_id: str, after_event_id: str | None = None) -> list[Event]:
        return [EVENT, EVENT] if after_event_id is None else [EVENT]

    def subscribe(self, run_id: str) -> Subscription:
        raise AssertionError("subscriptions stay in the child")

    async def write_stream(self, name: str, run_id: str, chunks: Sequence[bytes]) -> None:
        self.streams.setdefault(name, []).extend(chunks)

    async def close_stream(self, name: str, run_id: str) -> None:
        self.streams.setdefault(name, []).append(None)

    async def start_child(self, parent_run_id: str, workflow_name: str, run_input: list[Any],
                          token: str) -> str:  # fmt: skip
        self.children.append((parent_run_id, workflow_name, run_input, token))
        return "wrun_child"


class Pipe:
    """Both ends: the child's lines go through ``codec`` to the parent's ``WorldCalls``
    (read by a task, like the backend's reader), its replies back to the child."""

    def __init__(self, world: FakeWorld, max_bytes: int = 1 << 20) -> None:
        self.lines: asyncio.Queue[bytes] = asyncio.Queue()
        self.replies: list[dict[str, Any]] = []
        self.child = PipeRunWorld(self.lines.put_nowait, LocalSignal(), max_bytes)
        self.calls = WorldCalls(world, OWN, self._reply)
        self._reader = asyncio.create_task(self._read())

    async def _reply(self, message: dict[str, Any]) -> None:
        revived = codec.loads(codec.dumps(message), codec.STORED_MAX_DEPTH)
        self.replies.append(revived)
        self.child.answer(revived)

    async def _read(self) -> None:
        while True:
            line = await self.lines.get()
            assert line.endswith(b"\n") and line.count(b"\n") == 1
            await self.calls.take(codec.loads(line))

    def send_raw(self, message: dict[str, Any]) -> None:
        """What hostile code in the child can put on the pipe."""
        self.lines.put_nowait(codec.dumps(message) + b"\n")

    async def close(self) -> None:
        await self.calls.drain()
        self._reader.cancel()


@pytest.fixture
def world() -> FakeWorld:
    return FakeWorld()


@pytest.fixture
async def pipe(world: FakeWorld) -> AsyncIterator[Pipe]:
    joined = Pipe(world)
    yield joined
    await joined.close()


async def test_every_call_round_trips_entities_and_bytes_exactly(
    pipe: Pipe, world: FakeWorld
) -> None:
    request = EventRequest(EventType.STEP_COMPLETED, STEP.step_id, 3, {"result": b"\xff"})
    results = await pipe.child.record(OWN, [request])
    assert results == [RESULT]
    assert world.recorded == [(OWN, [request])]
    assert await pipe.child.run(OWN) == RUN
    assert await pipe.child.events(OWN) == [EVENT, EVENT]
    assert await pipe.child.events(OWN, EVENT.event_id) == [EVENT]
    await pipe.child.write_stream("out", OWN, [b"\x00a", b"b"])
    await pipe.child.close_stream("out", OWN)
    assert world.streams == {"out": [b"\x00a", b"b", None]}
    assert await pipe.child.start_child(OWN, "child", [1, b"\x02"], "tok") == "wrun_child"
    assert world.children == [(OWN, "child", [1, b"\x02"], "tok")]


async def test_calls_for_another_run_are_forbidden(pipe: Pipe, world: FakeWorld) -> None:
    request = EventRequest(EventType.RUN_CANCELLED, None, None, None)
    refused = [
        pipe.child.record(OTHER, [request]),
        pipe.child.run(OTHER),
        pipe.child.events(OTHER),
        pipe.child.write_stream("out", OTHER, [b"x"]),
        pipe.child.close_stream("out", OTHER),
        pipe.child.start_child(OTHER, "child", [], "tok"),
    ]
    for call in refused:
        with pytest.raises(errors.Forbidden, match=f"its run {OWN} only"):
            await call
    assert (world.recorded, world.streams, world.children) == ([], {}, [])


@pytest.mark.parametrize(
    ("call", "member"),
    [
        ({"method": "record", "runId": OWN, "events": "x"}, "events"),
        ({"method": "record", "runId": OWN, "events": []}, "events"),
        ({"method": "record", "runId": OWN, "events": [1]}, "events[0]"),
        ({"method": "record", "runId": OWN, "events": [{"eventType": "nope"}]},
         "events[0].eventType"),
        ({"method": "record", "runId": OWN,
          "events": [{"eventType": "step_started", "correlationId": 7}]},
         "events[0].correlationId"),
        ({"method": "record", "runId": 5, "events": []}, "runId"),
        ({"method": "run"}, "runId"),
        ({"method": "events", "runId": OWN, "afterEventId": "not an id"}, "afterEventId"),
        ({"method": "write_stream", "name": "s", "runId": OWN, "chunks": ["text"]},
         "chunks[0]"),
        ({"method": "write_stream", "name": ["s"], "runId": OWN, "chunks": []}, "name"),
        ({"method": "start_child", "parentRunId": OWN, "workflowName": "c", "token": "t",
          "input": {"not": "a list"}}, "input"),
        ({"method": "start_child", "parentRunId": OWN, "token": "t"}, "workflowName"),
        ({"method": "subscribe", "runId": OWN}, "method"),
        ({"method": None}, "method"),
    ],
)  # fmt: skip
async def test_malformed_calls_get_invalid_request_naming_the_member(
    pipe: Pipe, world: FakeWorld, call: dict[str, Any], member: str
) -> None:
    pipe.send_raw({"op": "call", "id": 7, **call})
    await _replied(pipe, 1)
    (reply,) = pipe.replies
    assert reply["id"] == 7 and reply["error"]["code"] == "invalid_request", reply
    assert member in reply["error"]["message"]
    assert world.recorded == [] and world.streams == {}


@pytest.mark.parametrize("call_id", [None, "7", -1, 2**53, True, 1.5, [1]])
async def test_a_call_without_a_valid_id_gets_no_reply(pipe: Pipe, call_id: Any) -> None:
    pipe.send_raw({"op": "call", "id": call_id, "method": "run", "runId": OWN})
    pipe.send_raw({"op": "call", "id": 8, "method": "run", "runId": OWN})
    await _replied(pipe, 1)
    await pipe.calls.drain()
    assert [reply["id"] for reply in pipe.replies] == [8]


async def test_domain_errors_come_back_as_themselves_and_the_rest_as_internal(
    pipe: Pipe, world: FakeWorld
) -> None:
    request = EventRequest(EventType.STEP_STARTED, "step_x", None, None)
    for raised, rebuilt in [
        (errors.RunExpired("run expired"), errors.RunExpired),
        (errors.EntityConflict("already"), errors.EntityConflict),
        (errors.StreamClosed("closed"), errors.StreamClosed),
        (errors.IdempotencyConflict("a code the child does not know"), errors.StorageUnavailable),
    ]:
        world.fail_with = raised
        with pytest.raises(rebuilt) as caught:
            await pipe.child.record(OWN, [request])
        assert caught.value.message == raised.message
    world.fail_with = KeyError("a bug of the server's")
    with pytest.raises(errors.StorageUnavailable, match=r"^internal error$"):
        await pipe.child.record(OWN, [request])


async def test_calls_are_answered_concurrently_in_any_order(pipe: Pipe, world: FakeWorld) -> None:
    world.gate = asyncio.Event()
    slow = asyncio.create_task(pipe.child.run(OWN))
    assert await pipe.child.events(OWN) == [EVENT, EVENT]  # while run() is held
    assert not slow.done()
    world.gate.set()
    assert await slow == RUN


async def test_at_most_max_in_flight_calls_are_answered_at_once(
    pipe: Pipe, world: FakeWorld
) -> None:
    world.gate = asyncio.Event()
    waiting = [asyncio.create_task(pipe.child.run(OWN)) for _ in range(MAX_IN_FLIGHT + 3)]
    await asyncio.sleep(0.05)
    assert pipe.lines.qsize() == 2  # one taken by the reader, waiting for a slot
    world.gate.set()
    assert await asyncio.gather(*waiting) == [RUN] * (MAX_IN_FLIGHT + 3)


async def test_a_call_larger_than_the_parent_reads_is_refused_in_the_child(
    world: FakeWorld,
) -> None:
    pipe = Pipe(world, max_bytes=1000)
    try:
        with pytest.raises(errors.StorageUnavailable, match="exceeds 1000 bytes"):
            await pipe.child.write_stream("out", OWN, [b"x" * 1000])
        assert pipe.lines.empty() and world.streams == {}
        await pipe.child.write_stream("out", OWN, [b"x" * 100])
        assert world.streams == {"out": [b"x" * 100]}
    finally:
        await pipe.close()


async def test_calls_waiting_when_the_parent_hangs_up_fail() -> None:
    child = PipeRunWorld(lambda line: None, LocalSignal(), 1000)
    waiting = asyncio.create_task(child.run(OWN))
    await asyncio.sleep(0)
    child.hang_up()
    with pytest.raises(errors.StorageUnavailable, match="closed the pipe"):
        await waiting


async def _replied(pipe: Pipe, count: int) -> None:
    for _ in range(200):
        if len(pipe.replies) >= count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{len(pipe.replies)} replies, not {count}")
