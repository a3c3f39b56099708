"""What the execution engine needs: the World of one run, run leases, deployment code."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Protocol

from compute_worker.domain.deployments import Deployment
from compute_worker.domain.ports.streams import Subscription
from compute_worker.domain.world import Event, EventRequest, EventResult, Run


class RunWorld(Protocol):
    """The World as a running workflow sees it (in process, or over the world lane)."""

    async def record(self, run_id: str, requests: Sequence[EventRequest]) -> list[EventResult]:
        """Append events in order, in one transaction (all or nothing)."""
        ...

    async def run(self, run_id: str) -> Run | None: ...
    async def events(self, run_id: str, after_event_id: str | None = None) -> list[Event]: ...
    def subscribe(self, run_id: str) -> Subscription: ...
    async def write_stream(self, name: str, run_id: str, chunks: Sequence[bytes]) -> None: ...
    async def close_stream(self, name: str, run_id: str) -> None: ...
    async def start_child(self, parent_run_id: str, workflow_name: str, run_input: list[Any],
                          token: str) -> str:  # fmt: skip
        """Start a child run of ``parent_run_id`` once per ``token``; its run id."""
        ...


class LeaseGrant(Enum):
    TAKEN = "taken"  # the run had no live owner: new, released, parked, or ours already
    RECOVERED = "recovered"  # taken over from a worker that stopped renewing it


class RunLeases(Protocol):
    """At most one worker executes a run; a lease that is not renewed runs out."""

    async def acquire(self, run_id: str, owner: str, ttl_seconds: float) -> LeaseGrant | None:
        """Take the run's lease, or None while another live worker holds it."""
        ...

    async def renew(self, owner: str, run_ids: Sequence[str], ttl_seconds: float) -> None: ...
    async def release(self, run_id: str, owner: str) -> None: ...
    async def park(
        self, run_id: str, owner: str, until: datetime | None, read_up_to: str | None
    ) -> bool:
        """Suspend a run without an executor: any worker may take it when a message wakes
        it, and ``orphaned`` returns it once ``until`` passes (never by itself if None).
        False, and the lease kept, when an event that wakes a run (a hook payload, a
        cancellation) came after ``read_up_to`` (the last event the run read; None: its
        whole log): its wake-up may have been spent on the run while it stopped."""
        ...

    async def orphaned(self, limit: int) -> list[str]:
        """Runs not yet terminal whose lease is missing or expired, leaving out those the
        engine must not try again yet (``ExecutionRecord.next_attempt_at``)."""
        ...


@dataclass(frozen=True, slots=True)
class LeaseClaim:
    """The lease a new run is written with when the node accepting it executes it."""

    owner: str
    ttl_seconds: float


class RunStarts(Protocol):
    """Start on accept: the node that creates a run executes it at once. Its lease is
    written in the commit that creates the run, in place of the wake-up message, so
    there is no message to claim and no lease to take; if the node dies before the run
    ends, the lease runs out and ``RunLeases.orphaned`` hands the run to another."""

    def claim(self, deployment: Deployment) -> LeaseClaim | None:
        """The lease to write for a new run of ``deployment`` that this node will execute;
        None when it will not (not executing runs, full, or not its kind of run)."""
        ...

    def start(self, run: Run, events: Sequence[Event]) -> None:
        """Once the run's commit is durable: execute it (``events``: its log so far)."""
        ...


class DeploymentCode(Protocol):
    """The workflows of a deployment, loaded for execution."""

    async def deployment(self, deployment_id: str) -> Deployment | None: ...
    async def workflow(self, deployment: Deployment, name: str) -> Any:
        """The ``@workflow`` function (or graph interpreter) named ``name``."""
        ...
