"""``StreamTail``: a live read of one stream (world.md §5) — its backlog from a start
index, then each chunk as it is committed, until the EOF marker.

Shared by the world lane's ``readFromStream`` and the public lane's run streams. The
reader subscribes to the stream's signal topic before it reads the backlog, so no
chunk committed in between is missed; it also polls, for writers in other processes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from compute_worker.domain.ports.streams import Signal, StreamReader
from compute_worker.domain.world import stream_topic

READ_BATCH = 500
ENDED_CHECK_SECONDS = 1.0


class StreamTail:
    def __init__(self, reader: StreamReader, signal: Signal, poll_interval: float) -> None:
        self._reader = reader
        self._signal = signal
        self._poll_interval = poll_interval

    async def read(
        self,
        name: str,
        start_index: int = 0,
        ended: Callable[[], Awaitable[bool]] | None = None,
    ) -> AsyncIterator[tuple[int, bytes]]:
        """``(index, chunk)`` pairs. With ``ended``, the tail also stops once ``ended()``
        says no more chunks can come (it is asked about once a second while idle) and
        the chunks committed until then are read."""
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
