"""Stream use cases (world.md §5, decision D8): write, close, live read, snapshots.

Chunks keep call order: each write enqueues its transaction before its first
await, and the store numbers chunks in commit order. The live read is
``domain.stream_tail``'s.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Sequence

from compute_worker.domain import errors
from compute_worker.domain.audit import RequestContext, audit_entry
from compute_worker.domain.ports.clock import Clock
from compute_worker.domain.ports.streams import StreamReader
from compute_worker.domain.ports.transactions import Transaction, UnitOfWork
from compute_worker.domain.stream_tail import StreamTail
from compute_worker.domain.validation import check_length
from compute_worker.domain.world import (
    MAX_NAME,
    MAX_RUN_ID,
    StreamChunk,
    StreamChunkPage,
    StreamInfo,
)
from compute_worker.domain.world_writes import WorldWrites

DEFAULT_CHUNK_PAGE = 100
MAX_CHUNK_PAGE = 1000


def _check_name(name: str, run_id: str) -> None:
    if not name:
        raise errors.InvalidRequest("name must be a non-empty string", {"field": "name"})
    if not run_id:
        raise errors.InvalidRequest("runId must be a non-empty string", {"field": "runId"})
    check_length(name, MAX_NAME, "name")
    check_length(run_id, MAX_RUN_ID, "runId")


class WriteStream:
    def __init__(self, uow: UnitOfWork, clock: Clock, writes: WorldWrites) -> None:
        self._uow = uow
        self._clock = clock
        self._writes = writes

    async def write(
        self,
        name: str,
        run_id: str,
        chunks: Sequence[bytes],
        context: RequestContext | None = None,
    ) -> None:
        """Append chunks in order; empty chunks are dropped (they are never emitted)."""
        _check_name(name, run_id)
        await self._uow.run(lambda tx: self._append(tx, name, run_id, chunks, False, context))

    async def close(self, name: str, run_id: str, context: RequestContext | None = None) -> None:
        """Write the EOF marker; closing a closed stream is a no-op."""
        _check_name(name, run_id)
        await self._uow.run(lambda tx: self._append(tx, name, run_id, (), True, context))

    def _append(
        self,
        tx: Transaction,
        name: str,
        run_id: str,
        chunks: Sequence[bytes],
        close: bool,
        context: RequestContext | None,
    ) -> None:
        if context is not None:
            action = "world.streams.close" if close else "world.streams.write"
            tx.append_audit(audit_entry(context, action, 200, self._clock.now(), run_id,
                                        stream=name))  # fmt: skip
        self._writes.append_chunks(tx, name, run_id, chunks, close=close)


class ReadStream:
    """``readFromStream``: the backlog from ``start_index``, then new chunks until EOF."""

    def __init__(self, tail: StreamTail) -> None:
        self._tail = tail

    def read(self, name: str, start_index: int = 0) -> AsyncIterator[bytes]:
        if not name:
            raise errors.InvalidRequest("name must be a non-empty string", {"field": "name"})
        return _data_of(self._tail.read(name, start_index))


async def _data_of(chunks: AsyncIterator[tuple[int, bytes]]) -> AsyncIterator[bytes]:
    async for _, data in chunks:
        yield data


class InspectStream:
    """Snapshots: ``getStreamChunks``, ``getStreamInfo`` and ``listStreamsByRunId``."""

    def __init__(self, reader: StreamReader) -> None:
        self._reader = reader

    async def chunks(
        self, name: str, limit: int | None = None, cursor: str | None = None
    ) -> StreamChunkPage:
        start = _decode_index_cursor(cursor) if cursor else 0
        size = DEFAULT_CHUNK_PAGE if limit is None else min(max(limit, 1), MAX_CHUNK_PAGE)
        data, has_more = await self._reader.data_chunks(name, start, size)
        _, done = await self._reader.data_chunk_count(name)
        page = tuple(StreamChunk(start + i, chunk) for i, chunk in enumerate(data))
        next_cursor = _encode_index_cursor(start + len(page)) if page else cursor
        return StreamChunkPage(page, next_cursor, has_more, done)

    async def info(self, name: str) -> StreamInfo:
        count, done = await self._reader.data_chunk_count(name)
        return StreamInfo(tail_index=count - 1, done=done)

    async def names_for_run(self, run_id: str) -> list[str]:
        return await self._reader.names_for_run(run_id)


def _encode_index_cursor(index: int) -> str:
    return base64.b64encode(json.dumps({"i": index}).encode()).decode()


def _decode_index_cursor(cursor: str) -> int:
    try:
        value = json.loads(base64.b64decode(cursor, validate=True))["i"]
        if isinstance(value, int) and 0 <= value < 2**62:
            return value
    except (ValueError, KeyError, TypeError, binascii.Error):
        pass
    raise errors.InvalidRequest("cursor is not one this server issued", {"field": "cursor"})
