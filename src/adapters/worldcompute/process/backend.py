"""The ``process`` backend: a deployment's code runs in child processes, never in the
server. Each child holds one deployment's bundle, executes one run at a time, and
reaches the World through the parent over its stdin and stdout (``pipe``): the parent
answers the World calls of the run the child executes, and of no other, through its
in-process RunWorld; a child holds no credential. The parent enforces limits: address
space (``RLIMIT_AS``), per step wall-clock time and CPU time, and the workflow-code
watchdog: a child whose event loop stops answering (a loop or a blocking call in a
``@workflow`` body) for ``workflow_turn_seconds`` outside a step is killed. A cancelled
run's child is killed at once, which frees its slot.
A child that crashes, hangs or runs out of memory costs the step in flight an
attempt (retried, or failed once its retries are spent); the server lives on.
Suspended runs park (no process held) and are replayed when woken.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

from compute_worker.adapters import codec, world_wire
from compute_worker.adapters.worldcompute.bundles.code import BundleCode
from compute_worker.adapters.worldcompute.bundles.isolation import child_environment
from compute_worker.adapters.worldcompute.bundles.sandbox import (
    BUNDLE,
    EGRESS_SOCKET,
    SCRATCH,
    EgressSocket,
    Sandbox,
)
from compute_worker.adapters.worldcompute.bundles.sandbox import PATH as SANDBOX_PATH
from compute_worker.adapters.worldcompute.process import child as child_module
from compute_worker.adapters.worldcompute.process.pipe import CALL, WorldCalls
from compute_worker.adapters.worldcompute.runtime.context import backoff, iso
from compute_worker.adapters.worldcompute.runtime.failures import StartFailed
from compute_worker.adapters.worldcompute.runtime.runner import Outcome, OutcomeKind
from compute_worker.adapters.worldcompute.runtime.tracing import TracedSteps
from compute_worker.domain import errors
from compute_worker.domain.deployments import DEFAULT_ENTRYPOINTS, Deployment
from compute_worker.domain.outbound import OutboundPolicy
from compute_worker.domain.ports.engine import RunWorld
from compute_worker.domain.ports.metrics import ProcessObserver
from compute_worker.domain.ports.streams import Signal
from compute_worker.domain.ports.tracing import NoTracer, Tracer
from compute_worker.domain.validation import parse_date
from compute_worker.domain.world import (
    RUNTIME_ERROR,
    Event,
    EventRequest,
    EventType,
    Run,
    run_topic,
)

log = logging.getLogger(__name__)

RECYCLE_AFTER = timedelta(minutes=45)  # what a bundle leaks from run to run stays bounded
ENVELOPE_BYTES = 4096  # of a World call around its arguments (a world-lane request's body)
START_TIMEOUT = 30.0
WATCH_INTERVAL = 0.1
MAX_CRASHES = 3
CANCEL_CHECK_INTERVAL = 5.0  # besides every wake-up of the run
CANCELLED = "the run was cancelled"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ProcessLimits:
    memory_bytes: int = 1024 * 1024 * 1024
    step_timeout_seconds: float = 300.0
    step_cpu_seconds: float = 300.0
    workflow_turn_seconds: float = 60.0
    children_per_deployment: int = 4
    park_after_seconds: float = 1.0
    poll_interval: float = 1.0
    body_bytes: int = 10 * 1024 * 1024  # the world lane's max_body_bytes: a call's arguments

    @property
    def message_bytes(self) -> int:
        """The longest line the parent reads of a child (a longer one: it is killed)."""
        return self.body_bytes + ENVELOPE_BYTES


@dataclass
class StepInFlight:
    step_id: str
    name: str
    attempt: int
    max_retries: int
    timeout: float | None  # the step's own; else the backend's limit
    began: float
    # the child's CPU seconds when the watchdog first saw the step (within WATCH_INTERVAL
    # of its start): read then, not on every step's message, as it costs /proc reads
    cpu_at_start: float | None = None


@dataclass
class Crash:
    """The child died (or was killed) before answering; ``step`` was in flight."""

    reason: str
    step: StepInFlight | None


@dataclass(eq=False)
class Child:
    deployment_id: str
    process: asyncio.subprocess.Process
    started: float = field(default_factory=time.monotonic)
    steps: dict[str, StepInFlight] = field(default_factory=dict)
    heard: float = field(default_factory=time.monotonic)  # last message of any kind
    answer: asyncio.Future[dict[str, Any]] | None = None
    kill_reason: str | None = None
    killed: bool = False  # dead from the kill on, before the process is reaped
    observer: ProcessObserver | None = None
    traced: TracedSteps | None = None  # the step spans of the run it executes
    reader: asyncio.Task[None] | None = None
    members: tuple[int, ...] = ()  # the processes of its session (see cpu_seconds)
    stderr: asyncio.Task[None] | None = None
    calls: WorldCalls | None = None  # the World calls of the run it executes

    @property
    def step(self) -> StepInFlight | None:
        """The step begun last of those in flight."""
        return next(reversed(self.steps.values()), None)

    @property
    def alive(self) -> bool:
        """Not exited and not killed: a child killed but not yet reaped is never lent
        again (its next run would die of the kill, reported as a signal of unknown cause)."""
        return self.process.returncode is None and not self.killed

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(codec.dumps(message) + b"\n")

    async def reply(self, message: dict[str, Any]) -> None:
        """``send``, then wait while the child is slow to read (its replies pile up no
        further than the calls in flight)."""
        self.send(message)
        assert self.process.stdin is not None
        with contextlib.suppress(ConnectionError):
            await self.process.stdin.drain()

    def kill(self, reason: str, why: str) -> None:
        """``reason``: for the run's error; ``why``: the short kind the metrics count."""
        if self.alive:
            self.kill_reason, self.killed = self.kill_reason or reason, True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            if self.observer is not None:
                self.observer.child_killed(why)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the child so far (Linux /proc): of every process of
        its session (a sandboxed child is bwrap's grandchild), found once."""
        if not self.members:
            self.members = _session_members(self.process.pid)
        total = 0
        for pid in self.members:
            fields = _stat(pid)
            if fields is not None:
                total += int(fields[11]) + int(fields[12])
        return total / _CLOCK_TICKS


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _session_members(session: int) -> tuple[int, ...]:
    found = [session]
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != session:
            fields = _stat(int(entry.name))
            if fields is not None and fields[3] == str(session):
                found.append(int(entry.name))
    return tuple(found)


class ChildPool:
    """Warm children per deployment; each executes one run at a time."""

    def __init__(
        self,
        code: BundleCode,
        limits: ProcessLimits,
        observer: ProcessObserver | None = None,
        event_loop: str = "asyncio",
        sandbox: Sandbox | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self._event_loop = event_loop  # the children's: "asyncio" or "uvloop"
        self._sandbox = sandbox  # None: children run unboxed (the host cannot, or told so)
        self._egress = None
        if sandbox is not None and sandbox.network == "allow-list":
            self._egress = EgressSocket(OutboundPolicy(sandbox.allow, what="sandbox network"))
        self._code = code
        self.limits = limits
        self._observer = observer
        self.tracer = tracer or NoTracer()
        self._lost: dict[str, int] = {}  # children that died, by deployment, not yet replaced
        self._idle: dict[str, list[Child]] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._all: set[Child] = set()

    async def checkout(self, deployment: Deployment) -> Child:
        slots = self._slots.setdefault(
            deployment.deployment_id, asyncio.Semaphore(self.limits.children_per_deployment)
        )
        await slots.acquire()
        idle = self._idle.setdefault(deployment.deployment_id, [])
        while idle:
            candidate = idle.pop()
            age = time.monotonic() - candidate.started
            if candidate.alive and age < RECYCLE_AFTER.total_seconds():
                return candidate
            if not candidate.alive:
                self._died(candidate)
            await self._stop(candidate)
        try:
            return await self._spawn(deployment)
        except BaseException:
            slots.release()
            raise

    async def checkin(self, child: Child) -> None:
        self._slots[child.deployment_id].release()
        if child.alive:
            self._idle.setdefault(child.deployment_id, []).append(child)
        else:
            self._died(child)
            await self._forget(child)

    def _died(self, child: Child) -> None:
        """The next child of its deployment is a restart."""
        self._lost[child.deployment_id] = self._lost.get(child.deployment_id, 0) + 1

    async def close(self) -> None:
        for child in list(self._all):
            await self._stop(child)
        if self._egress is not None:
            await self._egress.close()

    async def _spawn(self, deployment: Deployment) -> Child:
        folder = await self._code.folder(deployment)
        env = {
            **child_environment(),
            child_module.ENV_BUNDLE: str(folder),
            child_module.ENV_ENTRYPOINT: deployment.entrypoint
            or DEFAULT_ENTRYPOINTS[deployment.kind],
            child_module.ENV_KIND: deployment.kind,
            child_module.ENV_MEMORY: str(self.limits.memory_bytes),
            child_module.ENV_PARK_AFTER: str(self.limits.park_after_seconds),
            child_module.ENV_POLL: str(self.limits.poll_interval),
            child_module.ENV_BEAT: str(beat_interval(self.limits.workflow_turn_seconds)),
            child_module.ENV_TURN: str(self.limits.workflow_turn_seconds),
            child_module.ENV_LOOP: self._event_loop,
            child_module.ENV_MESSAGE_BYTES: str(self.limits.message_bytes),
            **(self._code.graph_http().env() if deployment.kind == "graph" else {}),
        }
        command = [sys.executable, "-m", child_module.__name__]
        if self._sandbox is not None:
            env.update(HOME=SCRATCH, TMPDIR=SCRATCH, PATH=SANDBOX_PATH)
            env[child_module.ENV_BUNDLE] = BUNDLE
            graph = deployment.kind == "graph"
            egress = None
            if self._egress is not None and not graph:
                egress = await self._egress.path()
                env[child_module.ENV_EGRESS] = EGRESS_SOCKET
            command = self._sandbox.command(command, folder, graph=graph, egress=egress)
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, cwd=folder, start_new_session=True,
            limit=self.limits.message_bytes,
        )  # fmt: skip
        child = Child(deployment.deployment_id, process, observer=self._observer)
        self._all.add(child)
        if self._observer is not None:
            lost = self._lost.get(deployment.deployment_id, 0)
            self._lost[deployment.deployment_id] = max(0, lost - 1)
            self._observer.child_started(restart=lost > 0)
        child.stderr = asyncio.create_task(_forward_stderr(child))
        ready = asyncio.get_running_loop().create_future()
        child.answer = ready
        child.reader = asyncio.create_task(_read_messages(child, self.limits.message_bytes))
        try:
            await asyncio.wait_for(asyncio.shield(ready), START_TIMEOUT)
        except StartFailed:
            await self._forget(child)
            raise
        except (TimeoutError, RuntimeError) as error:
            child.kill("it did not start", "start_timeout")
            await self._forget(child)
            reason = f"within {START_TIMEOUT:g} s" if isinstance(error, TimeoutError) else error
            raise StartFailed(f"the workflow process did not start: {reason}") from None
        return child

    async def _stop(self, child: Child) -> None:
        if child.alive:
            with contextlib.suppress(Exception):
                child.send({"op": "stop"})
            try:
                await asyncio.wait_for(child.process.wait(), 2.0)
            except TimeoutError:
                child.kill("stopping", "stop")
        await self._forget(child)

    async def _forget(self, child: Child) -> None:
        if child in self._all:
            self._all.discard(child)
            if child.alive:
                child.kill("forgotten", "stop")
            with contextlib.suppress(Exception):
                await child.process.wait()
            if self._observer is not None:
                self._observer.child_exited()


async def _read_messages(child: Child, limit: int) -> None:
    """The child's messages, until it exits. It runs hostile code: a line that is not a
    message is passed over, a member of the wrong type leaves the message unheard, and a
    line longer than ``limit`` (none of its own is) gets the child killed."""
    assert child.process.stdout is not None
    while True:
        try:
            line = await child.process.stdout.readline()
        except ValueError:  # asyncio's LimitOverrunError, as readline raises it
            child.kill(f"the workflow process sent a message over {limit} bytes", "protocol")
            # read on to the end: a pipe left full is never seen closing, and its
            # transport would stay open after the child is gone
            while await child.process.stdout.read(1 << 16):
                pass
            break
        if not line:
            break
        try:
            message = codec.loads(line)
        except ValueError:
            log.warning("a workflow process sent a line that is not JSON",
                        extra={"deploymentId": child.deployment_id})  # fmt: skip
            continue
        if not isinstance(message, dict):
            continue
        child.heard = time.monotonic()
        try:
            await _take(child, message)
        except errors.InvalidRequest as refused:
            log.warning("a workflow process sent a malformed message: %s", refused.message,
                        extra={"deploymentId": child.deployment_id})  # fmt: skip
    await child.process.wait()
    if child.answer is not None and not child.answer.done():
        reason = child.kill_reason or _exit_reason(child.process.returncode)
        child.answer.set_exception(RuntimeError(reason))


async def _take(child: Child, message: dict[str, Any]) -> None:
    op = message.get("op")
    if op == CALL:
        if child.calls is None:
            raise errors.InvalidRequest("a World call while no run is assigned")
        await child.calls.take(message)
    elif op == "step":
        step_id: str = world_wire.field(message, "stepId", str, required=True)
        name: str = world_wire.field(message, "name", str, required=True)
        attempt: int = world_wire.field(message, "attempt", int, required=True)
        retries: int = world_wire.field(message, "maxRetries", int, required=True)
        timeout = world_wire.field(message, "timeout", (int, float))
        child.steps[step_id] = StepInFlight(step_id, name, attempt, retries, timeout,
                                            time.monotonic())  # fmt: skip
        if child.traced is not None:
            child.traced.begin(step_id, name, attempt)
    elif op == "step_done":
        step_id = world_wire.field(message, "stepId", str, required=True)
        child.steps.pop(step_id, None)
        if child.traced is not None:
            error = message.get("error")
            child.traced.end(step_id, None if error is None else str(error)[:2000])
    elif op == "log":
        _forward_log(child, message)
    elif op in ("ready", "done") and child.answer is not None and not child.answer.done():
        child.answer.set_result(message)
    elif op == "failed" and child.answer is not None and not child.answer.done():
        child.answer.set_exception(
            StartFailed(str(message.get("message")), world_wire.field(message, "stack", str))
        )


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR, "critical": logging.CRITICAL}  # fmt: skip
workflow_log = logging.getLogger("compute_worker.workflow")


def _forward_log(child: Child, message: dict[str, Any]) -> None:
    """A log record of workflow code, into the server's log (never trusted for more)."""
    level = _LEVELS.get(str(message.get("level")), logging.INFO)
    workflow_log.log(level, "%s", str(message.get("message"))[:10_000],
                     extra={"deploymentId": child.deployment_id, "runId": message.get("runId"),
                            "source": str(message.get("logger"))[:200]})  # fmt: skip


async def _forward_stderr(child: Child) -> None:
    assert child.process.stderr is not None
    while True:
        try:
            line = await child.process.stderr.readline()
        except ValueError:  # a line over the limit: the rest of it comes next
            continue
        if not line:
            return
        log.info("workflow process: %s", line.decode(errors="replace").rstrip()[:10_000],
                 extra={"deploymentId": child.deployment_id})  # fmt: skip


def beat_interval(turn_seconds: float) -> float:
    """How often a child tells the parent its event loop is free."""
    return max(0.05, min(1.0, turn_seconds / 4))


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"the workflow process was killed by {name}{hint}"
    if code is not None and 128 < code < 128 + signal.NSIG:
        # bubblewrap reports a child killed by a signal as 128 + the signal, like a shell
        with contextlib.suppress(ValueError):
            name = signal.Signals(code - 128).name
            return f"the workflow process exited with status {code} (killed by {name}?)"
    return f"the workflow process exited with status {code}"


OUTCOMES: dict[str, OutcomeKind] = {kind: kind for kind in get_args(OutcomeKind)}


def _outcome(message: dict[str, Any]) -> Outcome | None:
    """The outcome a child's ``done`` message reports; None when it is malformed (the
    child runs user code: its messages are checked like any input)."""
    kind, wakes_at, read_up_to = (message.get(name) for name in ("outcome", "wakesAt",
                                                                  "readUpTo"))  # fmt: skip
    kind = "finished" if kind is None else kind
    known = OUTCOMES.get(kind) if isinstance(kind, str) else None
    if known is None or not isinstance(read_up_to, str | None):
        return None
    if wakes_at is None:
        return Outcome(known, None, read_up_to)
    try:
        return Outcome(known, parse_date(wakes_at, "wakesAt"), read_up_to)
    except errors.DomainError:
        return None


class ProcessExecutor:
    def __init__(self, pool: ChildPool, world: RunWorld, signal: Signal) -> None:
        self._pool = pool
        self._world = world
        self._signal = signal

    async def execute(self, run: Run, deployment: Deployment, events: list[Event]) -> Outcome:
        for attempt in range(MAX_CRASHES):
            if attempt:  # replayed from the log as the crashed child left it
                found = await self._world.run(run.run_id)
                if found is None or found.is_terminal:
                    return Outcome("finished")
                run, events = found, await self._world.events(run.run_id)
            child = await self._pool.checkout(deployment)
            try:
                result = await self._run_in(child, run, events)
            finally:
                await self._pool.checkin(child)
            if isinstance(result, Outcome):
                return result
            log.warning("run interrupted: %s", result.reason, extra={"runId": run.run_id})
            await self._charge_step(run.run_id, result)
            reason = result.reason
        error = {"message": f"the run's workflow process failed {MAX_CRASHES} times; "
                            f"last: {reason}"}  # fmt: skip
        await self._world.record(
            run.run_id,
            [
                EventRequest(
                    EventType.RUN_FAILED, None, None, {"error": error, "errorCode": RUNTIME_ERROR}
                )
            ],
        )
        return Outcome("finished")  # fmt: skip

    async def _run_in(self, child: Child, run: Run, events: list[Event]) -> Outcome | Crash:
        """Execute ``run`` in ``child``, handing it the run and its log (what the engine
        read, or wrote when it accepted the run): no World call before its code starts."""
        run_id = run.run_id
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        child.answer, child.kill_reason = answer, None
        child.steps.clear()
        child.heard = time.monotonic()
        tracer = self._pool.tracer
        trace = tracer.current()  # the run's span, carried into the child
        child.traced = TracedSteps(tracer, trace, run) if tracer.enabled else None
        child.calls = WorldCalls(self._world, run_id, child.reply)
        child.send({"op": "run", "runId": run_id, "run": world_wire.run_wire(run),
                    "events": [world_wire.event_wire(event) for event in events],
                    **({"traceparent": trace} if trace else {})})  # fmt: skip
        subscription = self._signal.subscribe(run_topic(run_id))
        watch = asyncio.create_task(self._watch(child, run_id, subscription.wait))
        try:
            message = await answer
        except RuntimeError as error:
            if child.kill_reason == CANCELLED:
                return Outcome("cancelled")
            return Crash(str(error), child.step)
        finally:
            watch.cancel()
            subscription.close()
            calls, child.calls = child.calls, None  # no call is taken after the run's end
            await calls.drain()
            if child.traced is not None:  # attempts its process did not report the end of
                child.traced.close(child.kill_reason or "the workflow process stopped")
                child.traced = None
        if message.get("outcome") == "interrupted":
            raise errors.StorageUnavailable(message.get("message", "the World was unavailable"))
        outcome = _outcome(message)
        if outcome is None:
            reason = "the workflow process sent a malformed outcome"
            child.kill(reason, "protocol")
            return Crash(reason, None)
        return outcome

    async def _watch(self, child: Child, run_id: str, wait: Callable[[float], Any]) -> None:
        """Forward wake-ups to the child; kill it when a step runs out of time or CPU, when
        workflow code keeps its event loop busy too long, or when the run is cancelled."""
        limits = self._pool.limits
        checked = time.monotonic()
        while child.alive:
            woken = await wait(WATCH_INTERVAL)
            now = time.monotonic()
            if woken or now - checked > CANCEL_CHECK_INTERVAL:
                checked = now
                run = await self._world.run(run_id)
                if run is not None and run.status == "cancelled":
                    child.kill(CANCELLED, "cancelled")  # it may be stuck; its slot is needed now
                    return
            if woken:
                child.send({"op": "wake", "runId": run_id})
            step = child.step
            if step is None:
                silent = now - child.heard
                if silent > limits.workflow_turn_seconds:
                    child.kill(
                        f"the workflow code did not yield for {limits.workflow_turn_seconds:g} s "
                        "(a loop or a blocking call in the @workflow body? blocking work "
                        "belongs in a step)",
                        "workflow_turn",
                    )
                continue
            timeout = step.timeout if step.timeout is not None else limits.step_timeout_seconds
            if time.monotonic() - step.began > timeout:
                child.kill(f"step {step.name} exceeded its timeout of {timeout:g} s",
                           "step_timeout")  # fmt: skip
            elif step.cpu_at_start is None:
                step.cpu_at_start = child.cpu_seconds()
            elif child.cpu_seconds() - step.cpu_at_start > limits.step_cpu_seconds:
                child.kill(f"step {step.name} exceeded {limits.step_cpu_seconds:g} s of CPU time",
                           "step_cpu")  # fmt: skip

    async def _charge_step(self, run_id: str, crash: Crash) -> None:
        step = crash.step
        if step is None:
            return
        error = {"message": crash.reason}
        if step.attempt > step.max_retries:
            request = EventRequest(EventType.STEP_FAILED, step.step_id, None, {"error": error})
        else:
            retry_at = datetime.now(UTC) + timedelta(seconds=backoff(step.attempt))
            request = EventRequest(EventType.STEP_RETRYING, step.step_id, None,
                                   {"error": error, "retryAfter": iso(retry_at)})  # fmt: skip
        with contextlib.suppress(errors.EntityConflict, errors.RunExpired):
            await self._world.record(run_id, [request])

    async def close(self) -> None:
        await self._pool.close()
