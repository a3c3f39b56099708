"""The workflow engine: claims workflow messages, executes runs durably, recovers orphans.

A run is executed by at most one worker at a time (a run lease renewed by a
heartbeat). A new run starts on the worker that accepted it: its lease is written in
the commit that creates it (``StartOnAccept``), and the worker executes it from the
run and log it already holds. Queue messages are wake-ups: the worker that owns the
run pokes its live coroutine; another worker starts (replays) it when nobody owns it.
A worker that dies stops renewing; its leases run out and a live worker replays its
runs. A run's final write ends its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from compute_worker.adapters.worldcompute.runtime.failures import (
    RunCancelled,
    StartFailed,
    error_data,
)
from compute_worker.adapters.worldcompute.runtime.runner import Outcome, RunExecutor
from compute_worker.domain import errors
from compute_worker.domain.deployments import Deployment
from compute_worker.domain.ports.engine import (
    DeploymentCode,
    LeaseClaim,
    LeaseGrant,
    RunLeases,
    RunStarts,
    RunWorld,
)
from compute_worker.domain.ports.queue import QueueConsumer
from compute_worker.domain.ports.streams import Signal
from compute_worker.domain.ports.tracing import (
    DEPLOYMENT_ID,
    RUN_ID,
    TRACEPARENT,
    WORKFLOW_NAME,
    NoTracer,
    Tracer,
)
from compute_worker.domain.use_cases.record_execution_trouble import RecordExecutionTrouble
from compute_worker.domain.world import (
    QUEUE_TOPIC,
    RUNTIME_ERROR,
    WORKFLOW_QUEUE_PREFIX,
    Event,
    EventRequest,
    EventType,
    QueueMessage,
    Run,
    run_topic,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EngineSettings:
    lease_seconds: float = 10.0
    message_lease_seconds: float = 30.0
    poll_interval: float = 0.5
    recovery_interval: float = 2.0
    max_live_runs: int = 10_000
    claim_batch: int = 64
    # a workflow message is a wake-up: lease recovery finds the run without it, so one
    # that keeps failing to be handled is dropped (with a warning) after this many tries
    max_deliveries: int = 20


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# a run the engine has in memory already (a run it accepted): no need to read it
Known = tuple[Run, list[Event]]


class StartOnAccept(RunStarts):
    """The ``RunStarts`` the World's writes are built with (the container builds them
    before the engine that uses them): the engine attaches itself while it runs; until
    then, and once it stops, new runs are left to the queue."""

    def __init__(self) -> None:
        self._engine: WorkflowEngine | None = None

    def attach(self, engine: WorkflowEngine | None) -> None:
        self._engine = engine

    def claim(self, deployment: Deployment) -> LeaseClaim | None:
        engine = self._engine
        return None if engine is None else engine.claim_new_run()

    def start(self, run: Run, events: Sequence[Event]) -> None:
        engine = self._engine
        if engine is not None:  # stopped meanwhile: the lease runs out, recovery starts it
            engine.start_new_run(run, events)


class WorkflowEngine:
    def __init__(
        self,
        queue: QueueConsumer,
        leases: RunLeases,
        world: RunWorld,
        code: DeploymentCode,
        signal: Signal,
        executor: RunExecutor,
        trouble: RecordExecutionTrouble,
        settings: EngineSettings | None = None,
        tracer: Tracer | None = None,
        starts: StartOnAccept | None = None,
    ) -> None:
        self._queue = queue
        self._leases = leases
        self._world = world
        self._code = code
        self._signal = signal
        self._executor = executor
        self._trouble = trouble
        self.settings = settings or EngineSettings()
        self._tracer = tracer or NoTracer()
        self._starts = starts
        self.worker_id = worker_name()
        self._live: dict[str, asyncio.Task[None]] = {}
        # live runs a wake-up reached: one that comes while a run is parking would be lost
        # (its message acked, the run parked), so a run woken meanwhile runs again
        self._woken: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._spawned: set[asyncio.Task[object]] = set()

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._consume(), name="engine-consume"),
            asyncio.create_task(self._heartbeat(), name="engine-heartbeat"),
            asyncio.create_task(self._recover(), name="engine-recover"),
        ]
        if self._starts is not None:
            self._starts.attach(self)

    async def stop(self) -> None:
        """Stop claiming and executing; runs in flight are released for other workers."""
        if self._starts is not None:
            self._starts.attach(None)
        for task in [*self._tasks, *self._spawned, *self._live.values()]:
            task.cancel()
        for task in [*self._tasks, *self._spawned, *self._live.values()]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self._executor.close()

    @property
    def live_runs(self) -> list[str]:
        return list(self._live)

    # -- loops --------------------------------------------------------------------------

    async def _consume(self) -> None:
        subscription = self._signal.subscribe(QUEUE_TOPIC)
        try:
            while True:
                try:
                    messages = await self._queue.claim(
                        self.worker_id,
                        limit=self.settings.claim_batch,
                        lease_seconds=self.settings.message_lease_seconds,
                        queue_prefix=WORKFLOW_QUEUE_PREFIX,
                    )
                    for message in messages:
                        await self._handle(message)
                except errors.StorageUnavailable:
                    log.warning("queue unavailable; retrying")
                    messages = []
                if len(messages) < self.settings.claim_batch:
                    await subscription.wait(self.settings.poll_interval)
        finally:
            subscription.close()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            with contextlib.suppress(errors.StorageUnavailable):
                await self._leases.renew(
                    self.worker_id, self.live_runs, self.settings.lease_seconds
                )

    async def _recover(self) -> None:
        while True:
            try:
                for run_id in await self._leases.orphaned(limit=100):
                    if run_id not in self._live:
                        await self.ensure_running(run_id)
            except errors.StorageUnavailable:
                log.warning("recovery scan failed; retrying")
            await asyncio.sleep(self.settings.recovery_interval)

    # -- runs ---------------------------------------------------------------------------

    async def _handle(self, message: QueueMessage) -> None:
        payload = message.payload if isinstance(message.payload, dict) else {}
        run_id = payload.get("runId")
        if message.attempt > self.settings.max_deliveries:
            log.warning("dropping a workflow message delivered %d times; lease recovery "
                        "keeps its run going", message.attempt,
                        extra={"messageId": message.message_id, "runId": run_id})  # fmt: skip
            await self._queue.ack(message.message_id, self.worker_id)
            return
        if isinstance(run_id, str) and run_id:
            if len(self._live) >= self.settings.max_live_runs and run_id not in self._live:
                await self._queue.retry_later(message.message_id, self.worker_id, 1.0)
                return  # this worker is full: later, or another worker
            # both writes in one group commit
            await asyncio.gather(
                self.ensure_running(run_id),
                self._queue.ack(message.message_id, self.worker_id),
            )
            return
        log.warning("dropping a workflow message without runId", extra={"id": message.message_id})
        await self._queue.ack(message.message_id, self.worker_id)

    async def ensure_running(self, run_id: str) -> bool:
        """Start executing ``run_id`` here unless it is live here or owned elsewhere."""
        if run_id in self._live:
            self._woken.add(run_id)
            self._signal.notify(run_topic(run_id))
            return True
        if len(self._live) >= self.settings.max_live_runs:
            return False
        grant = await self._leases.acquire(run_id, self.worker_id, self.settings.lease_seconds)
        if grant is None:
            return True  # another live worker owns it and watches its events
        if run_id in self._live:  # started meanwhile by a concurrent wake-up
            return True
        if grant is LeaseGrant.RECOVERED and await self._trouble.executor_lost(run_id):
            log.warning("run failed: its executor was lost too many times",
                        extra={"runId": run_id})  # fmt: skip
            await self._leases.release(run_id, self.worker_id)
            return True
        self._live[run_id] = asyncio.create_task(self._execute(run_id), name=f"run-{run_id}")
        return True

    def claim_new_run(self) -> LeaseClaim | None:
        """The lease for a run being created here, unless this worker is full."""
        if len(self._live) >= self.settings.max_live_runs:
            return None
        return LeaseClaim(self.worker_id, self.settings.lease_seconds)

    def start_new_run(self, run: Run, events: Sequence[Event]) -> None:
        """Execute a run created with this worker's lease, from what its commit wrote —
        unless the commit took so long that the lease may have run out meanwhile (another
        worker may have recovered the run): then take the lease as for any wake-up."""
        if run.run_id in self._live:
            return
        age = (datetime.now(UTC) - run.created_at).total_seconds()
        if age > self.settings.lease_seconds / 2:
            log.warning("a run's creation took %.1f s to commit; taking its lease anew", age,
                        extra={"runId": run.run_id})  # fmt: skip
            self._spawn(self.ensure_running(run.run_id), f"lease-{run.run_id}")
            return
        known = (run, list(events))
        self._live[run.run_id] = asyncio.create_task(
            self._execute(run.run_id, known), name=f"run-{run.run_id}"
        )

    def _spawn(self, work: Coroutine[Any, Any, object], name: str) -> None:
        """A task the engine does not wait for, kept until done (and cancelled at stop)."""
        task = asyncio.create_task(work, name=name)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    async def _execute(self, run_id: str, known: Known | None = None) -> None:
        lease_done = False
        try:
            lease_done = await self._execute_run(run_id, known)
        except asyncio.CancelledError:
            raise
        except (RunCancelled, errors.RunExpired, errors.EntityConflict):
            log.info("run ended elsewhere", extra={"runId": run_id})
        except StartFailed as failure:
            await self._start_failed(run_id, failure.message, failure.stack)
        except errors.DomainError as error:
            log.warning("run interrupted, will be retried: %s", error.message,
                        extra={"runId": run_id})  # fmt: skip
            await asyncio.sleep(self.settings.recovery_interval)
        except Exception as error:
            log.exception("run execution crashed", extra={"runId": run_id})
            await self._start_failed(run_id, f"internal error: {type(error).__name__}: {error}")
        finally:
            self._live.pop(run_id, None)
            self._woken.discard(run_id)
            if not lease_done:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._leases.release(run_id, self.worker_id))

    async def _start_failed(self, run_id: str, message: str, stack: str | None = None) -> None:
        """Count the failed start; the run is tried again after a backoff, or failed."""
        with contextlib.suppress(errors.StorageUnavailable):
            failed = await self._trouble.start_failed(run_id, message, stack)
            log.warning("run failed: %s" if failed else "run could not start, will retry: %s",
                        message, extra={"runId": run_id})  # fmt: skip

    async def _execute_run(self, run_id: str, known: Known | None) -> bool:
        """Execute until the run ends or parks; True when its lease needs no release: it
        parked (or, woken while parking, went to another worker), or its final write
        ended the lease."""
        while True:
            self._woken.discard(run_id)
            outcome = await self._execute_once(run_id, known)
            known = None
            if outcome is None:
                return False
            if outcome.kind in ("finished", "cancelled"):
                return True
            if outcome.kind != "parked":
                return False
            if run_id in self._woken:
                continue  # woken while it stopped: the lease is still ours, run it again
            parked = await self._leases.park(
                run_id, self.worker_id, outcome.wakes_at, outcome.read_up_to
            )
            if not parked:
                continue  # a hook payload or a cancellation it had not read: run it again
            if run_id not in self._woken:
                return True
            # woken while the park was committed: take the parked lease back
            grant = await self._leases.acquire(run_id, self.worker_id, self.settings.lease_seconds)
            if grant is None:
                return True  # another worker took the parked run and executes it

    async def _execute_once(self, run_id: str, known: Known | None) -> Outcome | None:
        run = known[0] if known is not None else await self._world.run(run_id)
        if run is None or run.is_terminal:
            return None
        deployment = await self._code.deployment(run.deployment_id)
        if deployment is None:
            return None  # a run of an external runtime: not ours to execute
        # run_started rides on the first write
        events = known[1] if known is not None else await self._world.events(run_id)
        try:
            return await self._traced(run, deployment, events)
        except errors.WorkflowNotFound as error:
            await self._world.record(
                run_id, [EventRequest(EventType.RUN_FAILED, None, None,
                                      error_data(error, RUNTIME_ERROR))]
            )  # fmt: skip
            return None

    async def _traced(self, run: Run, deployment: Deployment, events: list[Event]) -> Outcome:
        """The execution in a span of its own, in the trace of what triggered the run (its
        ``executionContext.traceparent``); the executor's step spans are its children."""
        parent = (run.execution_context or {}).get(TRACEPARENT)
        attributes = {RUN_ID: run.run_id, WORKFLOW_NAME: run.workflow_name,
                      DEPLOYMENT_ID: run.deployment_id}  # fmt: skip
        span = self._tracer.start(f"run {run.workflow_name}", attributes,
                                  parent if isinstance(parent, str) else None)  # fmt: skip
        try:
            with self._tracer.active(span):
                outcome = await self._executor.execute(run, deployment, events)
            span.set("workflow.outcome", outcome.kind)
            return outcome
        except BaseException as error:
            span.fail(str(error) or type(error).__name__)
            raise
        finally:
            span.end()
