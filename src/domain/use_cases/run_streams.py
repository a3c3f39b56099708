"""RunStreams: a run's streams on the public lane (``GET /v1/runs/:id/streams[/:name]``).

A stream is named as the workflow named it (``get_writable("log")``) or by its stored
name (``strm_<run ULID>_log``). The live read is ``StreamTail``'s, told to stop also
once the run has ended and every chunk it wrote was read, so a reader never waits
for ever on a stream its run left open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from compute_worker.domain import errors
from compute_worker.domain.ports.streams import StreamReader
from compute_worker.domain.ports.world import WorldReader
from compute_worker.domain.stream_tail import StreamTail
from compute_worker.domain.validation import check_length
from compute_worker.domain.world import MAX_NAME, run_stream_name, short_stream_name


@dataclass(frozen=True, slots=True)
class RunStream:
    name: str
    stored_name: str
    chunks: int
    done: bool


class RunStreams:
    def __init__(self, runs: WorldReader, streams: StreamReader, live: StreamTail) -> None:
        self._runs = runs
        self._streams = streams
        self._live = live

    async def describe(self, run_id: str) -> list[RunStream]:
        await self._check_run(run_id)
        return [
            RunStream(short_stream_name(run_id, s.name), s.name, s.chunks, s.done)
            for s in await self._streams.run_streams(run_id)
        ]

    async def open(
        self, run_id: str, name: str, start_index: int = 0
    ) -> AsyncIterator[tuple[int, bytes]]:
        """Check the run and the stream now (so that a 404 comes before any byte), then
        tail it: ``(index, chunk)`` pairs until it closes or its run is over."""
        check_length(name, MAX_NAME, "name")
        await self._check_run(run_id)
        known = set(await self._streams.names_for_run(run_id))
        stored = next((n for n in (run_stream_name(run_id, name), name) if n in known), None)
        if stored is None:
            raise errors.StreamNotFound(
                f'Run "{run_id}" has no stream "{name}"', {"runId": run_id, "name": name}
            )
        return self._live.read(stored, start_index, ended=lambda: self._ended(run_id))

    async def _check_run(self, run_id: str) -> None:
        if await self._runs.get_run(run_id) is None:
            raise errors.RunNotFound(f'Workflow run "{run_id}" not found', {"runId": run_id})

    async def _ended(self, run_id: str) -> bool:
        run = await self._runs.get_run(run_id)
        return run is None or run.is_terminal
