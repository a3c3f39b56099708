"""RecordExecutionTrouble: count a run's failed start or lost executor, and fail the run
with ``RUNTIME_ERROR`` once the retry policy gives up — in one transaction."""

from __future__ import annotations

from compute_worker.domain.execution import RetryPolicy, executor_lost, start_failed
from compute_worker.domain.ports.clock import Clock
from compute_worker.domain.ports.transactions import UnitOfWork
from compute_worker.domain.world_writes import WorldWrites


class RecordExecutionTrouble:
    def __init__(
        self, uow: UnitOfWork, clock: Clock, writes: WorldWrites, policy: RetryPolicy
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._writes = writes
        self.policy = policy

    async def start_failed(self, run_id: str, message: str, stack: str | None = None) -> bool:
        """True when the run was failed for good; otherwise it is retried after a backoff."""
        now = self._clock.now()
        return await self._uow.run(
            lambda tx: self._writes.count_trouble(
                tx,
                run_id,
                lambda record, mark: start_failed(record, run_id, mark, message, now, self.policy),
                stack,
                kind="start_failed",
            )
        )

    async def executor_lost(self, run_id: str) -> bool:
        """True when the run was failed for good instead of being executed again."""
        now = self._clock.now()
        return await self._uow.run(
            lambda tx: self._writes.count_trouble(
                tx,
                run_id,
                lambda record, mark: executor_lost(record, run_id, mark, now, self.policy),
                kind="executor_lost",
            )
        )
