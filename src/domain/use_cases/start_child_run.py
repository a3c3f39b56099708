"""StartChildRun: a running workflow starts a child run (``domain/children.py``) on its own
deployment, once per token: the token is the idempotency key, so a repeat answers the
child started first. A parent that has ended starts nothing (``run_already_terminal``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from compute_worker.domain import errors
from compute_worker.domain.audit import RequestContext
from compute_worker.domain.children import CHILD_SCOPE, child_context
from compute_worker.domain.idempotency import DEFAULT_RETENTION
from compute_worker.domain.ports.clock import Clock
from compute_worker.domain.ports.transactions import Transaction, UnitOfWork
from compute_worker.domain.triggering import Trigger, start_once
from compute_worker.domain.world import Run
from compute_worker.domain.world_writes import WorldWrites

CONTEXT = RequestContext("CHILD", "/v1/world/runs/start-child", "start-child")


class StartChildRun:
    def __init__(self, uow: UnitOfWork, clock: Clock, writes: WorldWrites,
                 retention: timedelta = DEFAULT_RETENTION) -> None:  # fmt: skip
        self._uow = uow
        self._clock = clock
        self._writes = writes
        self._retention = retention

    async def execute(self, parent_run_id: str, workflow_name: str, run_input: list[Any],
                      token: str) -> Run:  # fmt: skip
        def start(tx: Transaction) -> Run:
            parent = tx.lock_run(parent_run_id)
            if parent is None:
                raise errors.RunNotFound(f"Run {parent_run_id} not found",
                                         {"runId": parent_run_id})  # fmt: skip
            if parent.is_terminal:
                raise errors.RunAlreadyTerminal(
                    f"Run {parent_run_id} is already {parent.status}",
                    {"runId": parent_run_id, "status": parent.status},
                )
            cmd = Trigger(workflow_name, token, CHILD_SCOPE, run_input, parent.deployment_id,
                          child_context(parent_run_id, token))  # fmt: skip
            context = RequestContext(CONTEXT.method, CONTEXT.path, CONTEXT.correlation_id,
                                     run_id_header=parent_run_id)  # fmt: skip
            started = start_once(tx, self._writes, cmd, context, self._clock.now(),
                                 self._retention, "runs.start_child")  # fmt: skip
            return started.run

        return await self._uow.run(start)
