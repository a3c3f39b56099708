"""TriggerRun: ``POST /v1/runs``. One transaction writes the idempotency record,
the run with its ``run_created`` event, the workflow's queue message and the
audit entry — or nothing (``domain.triggering``)."""

from __future__ import annotations

from datetime import timedelta

from compute_worker.domain.audit import RequestContext
from compute_worker.domain.idempotency import DEFAULT_RETENTION, check_key
from compute_worker.domain.ports.clock import Clock
from compute_worker.domain.ports.transactions import Transaction, UnitOfWork
from compute_worker.domain.triggering import Trigger, Triggered, start_once
from compute_worker.domain.world_writes import WorldWrites

__all__ = ["Trigger", "TriggerRun", "Triggered"]


class TriggerRun:
    def __init__(
        self,
        uow: UnitOfWork,
        clock: Clock,
        writes: WorldWrites,
        retention: timedelta = DEFAULT_RETENTION,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._writes = writes
        self._retention = retention

    async def execute(self, cmd: Trigger, context: RequestContext) -> Triggered:
        check_key(cmd.idempotency_key)  # before the transaction: a missing key costs none

        def trigger(tx: Transaction) -> Triggered:
            return start_once(tx, self._writes, cmd, context, self._clock.now(), self._retention)

        return await self._uow.run(trigger)
