"""The durable queue the engine consumes (world.md §4, decision D9)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from compute_worker.domain.deployments import Deployment
from compute_worker.domain.wdk import AppMessage
from compute_worker.domain.world import QueueMessage


class QueueConsumer(Protocol):
    async def claim(
        self, worker_id: str, *, limit: int, lease_seconds: float, queue_prefix: str = ""
    ) -> list[QueueMessage]:
        """Lease up to ``limit`` due messages; an expired lease makes a message due again."""
        ...

    async def ack(self, message_id: str, worker_id: str) -> bool:
        """Remove a delivered message; False when the lease was lost to another worker."""
        ...

    async def retry_later(self, message_id: str, worker_id: str, delay_seconds: float) -> bool:
        """Release the lease and deliver again after ``delay_seconds`` with attempt + 1."""
        ...


class AppQueue(Protocol):
    """The messages of apps (``wdk`` deployments), claimed by the dispatcher that
    delivers them. Two of a run's workflow messages are never leased at once."""

    async def apps(self) -> list[Deployment]:
        """Every ``wdk`` deployment, with its endpoint as last announced."""
        ...

    async def claim(
        self,
        worker_id: str,
        *,
        room: Mapping[str, int],
        per_app: int,
        limit: int,
        lease_seconds: float,
    ) -> list[AppMessage]:
        """Lease up to ``limit`` due messages of apps, at most ``room[id]`` (else
        ``per_app``) of each deployment, each one's attempt counted (+1) before it is
        handed out; none of a run whose workflow message is leased (here or by another
        worker)."""
        ...

    async def renew(self, message_ids: list[str], worker_id: str, lease_seconds: float) -> None:
        """Extend the leases ``worker_id`` still holds."""
        ...

    async def finish(self, message_id: str, worker_id: str) -> bool:
        """Delete a delivered (or given up) message; False when the lease was lost."""
        ...

    async def reschedule(
        self, message_id: str, worker_id: str, delay_seconds: float, attempt: int, failures: int
    ) -> bool:
        """Release the lease: due again after ``delay_seconds`` with these counts."""
        ...
