"""The durable queue the engine consumes (world.md §4, decision D9)."""

from __future__ import annotations

from typing import Protocol

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
