"""Read side of the World (world.md §3): the entities and the event log."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from compute_worker.domain.execution import ExecutionRecord
from compute_worker.domain.pagination import Page, PageRequest
from compute_worker.domain.stuck import StuckRun
from compute_worker.domain.world import Event, Hook, Run, Step


@dataclass(frozen=True, slots=True)
class RunQuery:
    """Filters of a run listing; every one given must hold. ``created_after`` and
    ``created_before`` are exclusive bounds."""

    statuses: tuple[str, ...] = ()
    workflow_name: str | None = None
    deployment_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    stuck: bool | None = None  # only runs the detector found stuck (True) or not (False)


@dataclass(frozen=True, slots=True)
class RunDetails:
    """A run with what its public view shows beside it, read together."""

    run: Run
    execution: ExecutionRecord | None  # while it is live: the engine's count of its troubles
    stuck: StuckRun | None  # while it is live: why the detector found it stuck
    named_steps: tuple[Step, ...]  # its steps whose name starts with the prefix asked, in order


class WorldReader(Protocol):
    async def get_run(self, run_id: str) -> Run | None: ...
    async def list_runs(self, page: PageRequest, query: RunQuery | None = None) -> Page[Run]: ...
    async def get_step(self, run_id: str | None, step_id: str) -> Step | None: ...
    async def list_steps(self, run_id: str, page: PageRequest) -> Page[Step]: ...
    async def get_event(self, run_id: str | None, event_id: str) -> Event | None: ...
    async def list_events(self, run_id: str, page: PageRequest) -> Page[Event]: ...
    async def list_events_by_correlation(
        self, correlation_id: str, page: PageRequest, run_id: str | None = None
    ) -> Page[Event]: ...
    async def get_hook(self, hook_id: str) -> Hook | None: ...
    async def get_hook_by_token(self, token: str) -> Hook | None: ...
    async def list_hooks(self, run_id: str | None, page: PageRequest) -> Page[Hook]: ...
    async def get_execution(self, run_id: str) -> ExecutionRecord | None:
        """What the engine counted of the run's failed starts and lost executors."""
        ...

    async def stuck_runs(self, run_ids: Sequence[str]) -> Mapping[str, StuckRun]:
        """What the stuck-run detector recorded for those of ``run_ids`` still live."""
        ...

    async def run_details(self, run_id: str, step_prefix: str) -> RunDetails | None:
        """The run and its details in one read (``GET /v1/runs/:id`` is polled)."""
        ...
