"""Stream use cases (world.md §5, decision D8): write, close, live read, snapshots.

Chunks keep call order: each write enqueues its transaction before its first
await, and the store numbers chunks in commit order.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from domain import errors, ids
from domain.audit import RequestContext, audit_entry
from domain.ids import IdFactory
from domain.ports.clock import Clock
from domain.ports.streams import Signal, StreamReader
from domain.ports.transactions import Transaction, UnitOfWork
from domain.validation import check_length
from domain.world import (
    MAX_NAME,
    MAX_RUN_ID,
    StreamChunk,
    StreamChunkPage,
    StreamInfo,
    stream_topic,
)

READ_BATCH = 500
DEFAULT_CHUNK_PAGE = 100
MAX_CHUNK_PAGE = 1000
ENDED_CHECK_SECONDS = 1.0


def _check_name(name: str, run_id: str) -> None:
    if not name:
        raise errors.InvalidRequest("name must be a non-empty string", {"field": "name"})
    if not run_id:
        raise errors.InvalidRequest("runId must be a non-empty string", {"field": "runId"})
    check_length(name, MAX_NAME, "name")
    check_length(run_id, MAX_RUN_ID, "runId")


class WriteStream:
    def __init__(self, uow: UnitOfWork, ids: IdFactory, clock: Clock, signal: Signal) -> None:
        self._uow = uow
        self._ids = ids
        self._clock = clock
        self._signal = signal

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
        if tx.stream_is_closed(name):
            if close:
                return
            raise errors.StreamClosed(f'Stream "{name}" is closed', {"name": name})
        rows = [(self._ids.new(ids.CHUNK), bytes(data)) for data in chunks if data]
        eof_id = self._ids.new(ids.CHUNK) if close else None
        tx.append_chunks(name, run_id, rows, eof_id)
        tx.after_commit(lambda: self._signal.notify(stream_topic(name)))

    def close_run_streams(self, tx: Transaction, run_id: str) -> None:
        """Close every stream of the run still open, inside ``tx`` (the engine does it in
        the transaction that ends the run, so readers never wait on a finished run)."""
        for name in tx.open_streams(run_id):
            self._append(tx, name, run_id, (), True, None)


class ReadStream:
    """Live tail: the backlog from ``start_index``, then new chunks until EOF."""

    def __init__(self, reader: StreamReader, signal: Signal, poll_interval: float) -> None:
        self._reader = reader
        self._signal = signal
        self._poll_interval = poll_interval

    async def read(self, name: str, start_index: int = 0) -> AsyncIterator[bytes]:
        async for _, data in self.read_indexed(name, start_index):
            yield data

    async def read_indexed(
        self,
        name: str,
        start_index: int = 0,
        ended: Callable[[], Awaitable[bool]] | None = None,
    ) -> AsyncIterator[tuple[int, bytes]]:
        """``(index, chunk)`` pairs. With ``ended``, the tail also stops once ``ended()``
        says no more chunks can come (it is asked about once a second while idle) and
        the chunks committed until then are read."""
        if not name:
            raise errors.InvalidRequest("name must be a non-empty string", {"field": "name"})
        subscription = self._signal.subscribe(stream_topic(name))  # before the backlog read
        idle_checks = max(1, round(ENDED_CHECK_SECONDS / self._poll_interval))
        try:
            index = start_index
            if start_index < 0:
                count, _ = await self._reader.data_chunk_count(name)
                index = max(0, count + start_index)
            skip, after, quiet, finishing = index, 0, 0, False
            while True:
                batch = await self._reader.chunks_after(name, after, READ_BATCH)
                for chunk in batch:
                    after = chunk.seq
                    if chunk.eof:
                        return
                    if not chunk.data:
                        continue
                    if skip > 0:
                        skip -= 1
                        continue
                    yield index, chunk.data
                    index += 1
                if len(batch) == READ_BATCH:
                    continue
                if finishing:
                    return
                if await subscription.wait(self._poll_interval) or ended is None:
                    continue
                quiet += 1
                if (quiet - 1) % idle_checks == 0:
                    finishing = await ended()  # then one more read catches the last chunks
        finally:
            subscription.close()


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
