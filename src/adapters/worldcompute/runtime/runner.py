"""Driving one workflow execution: cancellation and parking; what a backend is to the
engine (``RunExecutor``).

Shared by the ``local`` backend (in the server) and the ``process`` backend's
child processes. The run's code is stopped promptly when ``run_cancelled``
arrives; with ``park_after`` set, a run whose every branch has waited that long
on a sleep or a hook is stopped without a trace in the log (it is replayed when
woken), so suspended runs hold no memory or process.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from compute_worker.adapters.worldcompute.runtime.context import WorkflowContext
from compute_worker.domain.deployments import Deployment
from compute_worker.domain.world import Event, Run

CHECK_INTERVAL = 0.2


OutcomeKind = Literal["finished", "parked", "cancelled", "stalled"]


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind
    wakes_at: datetime | None = None
    read_up_to: str | None = None  # parked: the last event of the log the run had read


class RunExecutor(Protocol):
    """Where a run's code executes: in this process (local) or in a child (process)."""

    async def execute(self, run: Run, deployment: Deployment, events: list[Event]) -> Outcome: ...
    async def close(self) -> None: ...


async def run_workflow(
    context: WorkflowContext,
    workflow: Any,
    park_after: float | None = None,
    stall_after: float | None = None,
) -> Outcome:
    """Run ``workflow`` to its end, or until it parks (``park_after`` s idle on sleeps and
    hooks), is cancelled, or stalls: awaits nothing durable for ``stall_after`` s."""
    run_id = context.run.run_id
    subscription = context.world.subscribe(run_id)
    task = asyncio.create_task(context.execute(workflow))
    try:
        while not task.done():
            timeout = CHECK_INTERVAL if park_after is not None else context.poll_interval * 4
            waiter = asyncio.ensure_future(subscription.wait(timeout))
            done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                waiter.cancel()
                break
            if waiter.result() or park_after is None:
                await context.refresh()
            if context.history.cancelled:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                return Outcome("cancelled")
            if park_after is not None and context.idle_seconds() >= park_after:
                wakes_at = context.wakes_at()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                return Outcome("parked", wakes_at, context.read_up_to)
            if stall_after is not None and context.stalled_seconds() >= stall_after:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                return Outcome("stalled")
        task.result()
        return Outcome("finished")
    finally:
        subscription.close()
        if not task.done():
            task.cancel()
