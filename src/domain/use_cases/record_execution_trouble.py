"""RecordExecutionTrouble: count a run's failed start or lost executor, and fail the run
with ``RUNTIME_ERROR`` once the retry policy gives up — in one transaction."""

from __future__ import annotations

from collections.abc import Callable

from domain.execution import ExecutionRecord, RetryPolicy, Verdict, executor_lost, start_failed
from domain.ports.clock import Clock
from domain.ports.transactions import Transaction, UnitOfWork
from domain.use_cases.proxy_world_event import ProxyWorldEvent
from domain.world import RUNTIME_ERROR, EventRequest, EventType


class RecordExecutionTrouble:
    def __init__(
        self, uow: UnitOfWork, clock: Clock, events: ProxyWorldEvent, policy: RetryPolicy
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._events = events
        self.policy = policy

    async def start_failed(self, run_id: str, message: str, stack: str | None = None) -> bool:
        """True when the run was failed for good; otherwise it is retried after a backoff."""
        now = self._clock.now()
        return await self._uow.run(
            lambda tx: self._apply(
                tx,
                run_id,
                stack,
                lambda record, mark: start_failed(record, run_id, mark, message, now, self.policy),
            )
        )

    async def executor_lost(self, run_id: str) -> bool:
        """True when the run was failed for good instead of being executed again."""
        now = self._clock.now()
        return await self._uow.run(
            lambda tx: self._apply(
                tx,
                run_id,
                None,
                lambda record, mark: executor_lost(record, run_id, mark, now, self.policy),
            )
        )

    def _apply(
        self,
        tx: Transaction,
        run_id: str,
        stack: str | None,
        count: Callable[[ExecutionRecord | None, str | None], Verdict],
    ) -> bool:
        run = tx.lock_run(run_id)
        if run is None or run.is_terminal:
            return run is not None
        verdict = count(tx.get_execution(run_id), tx.last_event_id(run_id))
        tx.put_execution(verdict.record)
        if verdict.give_up:
            error = {"message": verdict.reason, "stack": stack} if stack else verdict.reason
            data = {"error": error, "errorCode": RUNTIME_ERROR}
            self._events.record(tx, run_id, EventRequest(EventType.RUN_FAILED, None, None, data))
        return verdict.give_up
