"""SSE framing of live stream reads: one event per chunk, heartbeats while idle, an
``end`` event, and a failing source closes the response with its error."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import pytest

from compute_worker.adapters.http.sse import sse_events


async def _source(gate: asyncio.Event, fail: bool = False) -> AsyncIterator[tuple[int, bytes]]:
    yield 5, b"\x00\xffbytes\r\n"
    await gate.wait()
    if fail:
        raise RuntimeError("storage went away")
    yield 6, b"last"


async def test_chunks_heartbeats_and_the_end_event() -> None:
    gate = asyncio.Event()
    events = sse_events(_source(gate), 5, heartbeat=0.02)
    assert await anext(events) == b": stream open\n\n"
    encoded = base64.b64encode(b"\x00\xffbytes\r\n").decode()
    assert await anext(events) == f"id: 5\ndata: {encoded}\n\n".encode()
    assert await anext(events) == b": keep-alive\n\n"  # the source is quiet
    gate.set()
    rest = [event async for event in events]
    assert rest[-2:] == [b"id: 6\ndata: bGFzdA==\n\n", b'event: end\ndata: {"nextIndex": 7}\n\n']
    assert set(rest[:-2]) <= {b": keep-alive\n\n"}


async def test_an_empty_stream_ends_at_its_start_index() -> None:
    async def empty() -> AsyncIterator[tuple[int, bytes]]:
        return
        yield  # pragma: no cover

    events = [event async for event in sse_events(empty(), 3)]
    assert events == [b": stream open\n\n", b'event: end\ndata: {"nextIndex": 3}\n\n']


async def test_a_failing_source_raises_through_the_events() -> None:
    gate = asyncio.Event()
    gate.set()
    events = sse_events(_source(gate, fail=True), 0)
    with pytest.raises(RuntimeError, match="storage went away"):
        async for _ in events:
            pass


async def test_closing_the_events_closes_the_source() -> None:
    closed = asyncio.Event()

    async def endless() -> AsyncIterator[tuple[int, bytes]]:
        try:
            yield 0, b"x"
            await asyncio.Event().wait()
        finally:
            closed.set()

    events = sse_events(endless(), 0, heartbeat=10)
    await anext(events)
    await anext(events)
    await events.aclose()
    assert closed.is_set()
