"""Server-Sent Events framing of a live stream read (``GET /v1/runs/:id/streams/:name``).

One event per chunk: ``id`` is the chunk's index (so ``Last-Event-ID`` resumes after
it) and ``data`` its bytes in base64 (chunks are bytes; base64 keeps any of them
exact). When the stream ends, an ``end`` event with ``{"nextIndex": n}``. While
nothing happens a comment line every ``HEARTBEAT_SECONDS`` keeps proxies from
dropping the connection.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import cast

HEARTBEAT_SECONDS = 10.0
_END = object()


def chunk_event(index: int, data: bytes) -> bytes:
    return f"id: {index}\ndata: {base64.b64encode(data).decode()}\n\n".encode()


def end_event(next_index: int) -> bytes:
    return f"event: end\ndata: {json.dumps({'nextIndex': next_index})}\n\n".encode()


async def sse_events(
    chunks: AsyncIterator[tuple[int, bytes]],
    start_index: int,
    heartbeat: float = HEARTBEAT_SECONDS,
) -> AsyncIterator[bytes]:
    """The events of ``chunks``; the source is read by a task of its own so that a
    heartbeat can be sent while it waits (cancelling it closes the source)."""
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=1)

    async def pump() -> None:
        async for item in chunks:
            await queue.put(item)
        await queue.put(_END)

    task = asyncio.create_task(pump())
    next_index = max(start_index, 0)
    try:
        yield b": stream open\n\n"  # headers and a first byte at once
        while True:
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, task}, timeout=heartbeat,
                                         return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            if not done:
                getter.cancel()
                yield b": keep-alive\n\n"
                continue
            if getter not in done and task.exception() is not None:
                getter.cancel()
                task.result()  # the source failed: raise what it raised
            item = await getter  # ready: the source ended after queueing its last item
            if item is _END:
                yield end_event(next_index)
                return
            index, data = cast(tuple[int, bytes], item)
            next_index = index + 1
            yield chunk_event(index, data)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
