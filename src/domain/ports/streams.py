"""Read side of streams (world.md §5) and the wake-up signal live readers wait on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StoredChunk:
    """A persisted chunk; ``seq`` orders chunks of one stream in commit order."""

    seq: int
    data: bytes
    eof: bool


@dataclass(frozen=True, slots=True)
class StreamSummary:
    """One stream of a run: its stored name, data chunks so far, whether it is closed."""

    name: str
    chunks: int
    done: bool


class StreamReader(Protocol):
    async def chunks_after(self, name: str, after_seq: int, limit: int) -> list[StoredChunk]: ...
    async def data_chunk_count(self, name: str) -> tuple[int, bool]:
        """How many non-empty data chunks the stream holds, and whether it is closed."""
        ...

    async def data_chunks(
        self, name: str, start_index: int, limit: int
    ) -> tuple[list[bytes], bool]:
        """Up to ``limit`` data chunks from ``start_index``, and whether more exist."""
        ...

    async def names_for_run(self, run_id: str) -> list[str]: ...
    async def run_streams(self, run_id: str) -> list[StreamSummary]:
        """Every stream written for the run, oldest first, in one read."""
        ...


class Subscription(Protocol):
    async def wait(self, seconds: float) -> bool:
        """Wait until notified or ``seconds`` passed; True when notified."""
        ...

    def notified(self) -> bool:
        """True when notified since the last ``wait``/``notified``; never waits."""
        ...

    def close(self) -> None: ...


class Signal(Protocol):
    """In-process change notifications. Readers also poll, for writers in other processes."""

    def subscribe(self, topic: str) -> Subscription: ...
    def notify(self, topic: str) -> None: ...
