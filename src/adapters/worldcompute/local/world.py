"""``LocalRunWorld``: the World of a run, in the server's own process (the ``local``
backend, the ``process`` backend's parent and the engine's own bookkeeping), made of
the use cases every client of the World goes through."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from compute_worker.domain.ids import ulid_datetime
from compute_worker.domain.pagination import PageRequest, Position
from compute_worker.domain.ports.engine import RunWorld
from compute_worker.domain.ports.streams import Signal, Subscription
from compute_worker.domain.ports.world import WorldReader
from compute_worker.domain.use_cases.record_run_events import RecordRunEvents
from compute_worker.domain.use_cases.start_child_run import StartChildRun
from compute_worker.domain.use_cases.streams import WriteStream
from compute_worker.domain.world import Event, EventRequest, EventResult, Run, run_topic

PAGE = 1000


class LocalRunWorld(RunWorld):
    def __init__(
        self,
        record: RecordRunEvents,
        reader: WorldReader,
        streams: WriteStream,
        signal: Signal,
        children: StartChildRun,
    ) -> None:
        self._children = children
        self._record = record
        self._reader = reader
        self._streams = streams
        self._signal = signal

    async def record(self, run_id: str, requests: Sequence[EventRequest]) -> list[EventResult]:
        return await self._record.execute(run_id, requests)

    async def run(self, run_id: str) -> Run | None:
        return await self._reader.get_run(run_id)

    async def events(self, run_id: str, after_event_id: str | None = None) -> list[Event]:
        after = None
        if after_event_id is not None:
            moment = ulid_datetime(after_event_id)
            after = Position(int(moment.timestamp() * 1000), after_event_id)
        found: list[Event] = []
        while True:
            page = await self._reader.list_events(run_id, PageRequest(PAGE, "asc", after))
            found.extend(page.data)
            if not page.has_more or not page.data:
                return found
            last = page.data[-1]
            after = Position(int(last.created_at.timestamp() * 1000), last.event_id)

    def subscribe(self, run_id: str) -> Subscription:
        return self._signal.subscribe(run_topic(run_id))

    async def write_stream(self, name: str, run_id: str, chunks: Sequence[bytes]) -> None:
        await self._streams.write(name, run_id, chunks)

    async def close_stream(self, name: str, run_id: str) -> None:
        await self._streams.close(name, run_id)

    async def start_child(self, parent_run_id: str, workflow_name: str, run_input: list[Any],
                          token: str) -> str:  # fmt: skip
        run = await self._children.execute(parent_run_id, workflow_name, run_input, token)
        return run.run_id
