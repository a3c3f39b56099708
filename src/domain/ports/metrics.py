"""What the observability adapters see of the World.

``RunObserver`` hears of every committed write that matters to an operator (the events
of a run, with the run or step they changed, and each counted execution trouble); the
metrics adapter counts them. ``WorldStats`` is the state of the World at one moment
(runs by workflow and status, the queue's backlog, hooks and sleeps pending), read on
demand by ``WorldStatsReader`` when metrics are scraped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from compute_worker.domain.world import Event, Run, Step


class RunObserver(Protocol):
    def events_committed(self, run: Run | None, step: Step | None, events: Sequence[Event]) -> None:
        """``events`` were committed; ``run``/``step``: the run or step they changed."""
        ...

    def trouble_counted(self, kind: str, gave_up: bool) -> None:
        """A failed start or lost executor (``kind``) was counted on a run; ``gave_up``:
        the retry policy failed the run instead of retrying it."""
        ...


class WriterObserver(Protocol):
    def batch_committed(self, units: int, seconds: float) -> None:
        """One transaction committed ``units`` units of work in ``seconds`` (any thread)."""
        ...


class ProcessObserver(Protocol):
    """The process backend's workflow children: how many live, why they were killed."""

    def child_started(self, restart: bool) -> None:
        """A child started; ``restart``: it replaces one of its deployment that died."""
        ...

    def child_killed(self, why: str) -> None:
        """A live child was killed (``why``: step_timeout, step_cpu, workflow_turn,
        cancelled, start_timeout or stop)."""
        ...

    def child_exited(self) -> None: ...


class NoObserver:
    """The observer that hears nothing (tests, tools)."""

    def events_committed(self, run: Run | None, step: Step | None, events: Sequence[Event]) -> None:
        return None

    def trouble_counted(self, kind: str, gave_up: bool) -> None:
        return None


@dataclass(frozen=True, slots=True)
class QueueBacklog:
    ready: int  # unclaimed messages due now
    delayed: int  # unclaimed messages due later
    leased: int  # claimed, lease running
    oldest_ready_age_seconds: float  # how long the oldest ready message has waited; 0 if none


@dataclass(frozen=True, slots=True)
class WorldStats:
    runs: Mapping[tuple[str, str], int]  # (workflow name, status) → runs
    queues: Mapping[str, QueueBacklog] = field(default_factory=dict)  # by queue name
    hooks_pending: int = 0
    sleeps_pending: int = 0
    stuck: Mapping[str, int] = field(default_factory=dict)  # live stuck runs by reason


class WorldStatsReader(Protocol):
    async def world_stats(self) -> WorldStats: ...
