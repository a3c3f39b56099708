"""``WorkflowContext``: one run of a workflow function, made durable.

The workflow coroutine runs in memory; every durable call it makes (step, sleep,
hook) takes the next deterministic correlation id and is answered from the run's
history when the log already holds its outcome (replay), or executed and
recorded otherwise. Events are buffered and written in one transaction right
before the next side effect or suspension, so a step costs one commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from compute_worker.adapters import codec
from compute_worker.adapters.worldcompute.runtime.failures import (
    RunCancelled,
    error_data,
    user_traceback,
)
from compute_worker.domain import errors
from compute_worker.domain.authoring import (
    FatalError,
    HookConflictError,
    RetryableError,
    StepFailedError,
    StepSpec,
    current_dispatcher,
)
from compute_worker.domain.children import RESULT_STEP, START_STEP, child_token
from compute_worker.domain.ports.engine import RunWorld
from compute_worker.domain.replay import KIND_PREFIX, NonDeterminism, RunHistory, call_ulid
from compute_worker.domain.world import (
    RUNTIME_ERROR,
    USER_ERROR,
    Event,
    EventRequest,
    EventResult,
    EventType,
    Run,
    run_stream_name,
)

log = logging.getLogger(__name__)

RETRY_BASE_SECONDS = 0.5
RETRY_MAX_SECONDS = 60.0


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def backoff(attempt: int) -> float:
    return float(min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, attempt - 1)))


class _Pending:
    __slots__ = ("future", "request")

    def __init__(self, request: EventRequest) -> None:
        self.request = request
        self.future: asyncio.Future[EventResult] = asyncio.get_running_loop().create_future()


class StepObserver(Protocol):
    """Told when a step attempt begins and ends (the process backend's watchdog)."""

    def step_began(self, step_id: str, spec: StepSpec, attempt: int) -> None: ...
    def step_ended(self, step_id: str, error: str | None = None) -> None:
        """``error``: why the attempt failed, if it did."""
        ...


class WorkflowContext:
    def __init__(
        self,
        world: RunWorld,
        run: Run,
        events: list[Event],
        poll_interval: float = 1.0,
        observer: StepObserver | None = None,
        code_root: Path | None = None,
    ) -> None:
        self.world = world
        self.run = run
        self.history = RunHistory.of(events)
        self._last_event_id = events[-1].event_id if events else None
        self._created_ms = int(run.created_at.timestamp() * 1000)
        self._index = 0
        self._queue: list[_Pending] = []
        self._flushing: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.poll_interval = poll_interval
        self._background: set[asyncio.Future[None]] = set()
        self._observer = observer
        self.code_root = code_root  # where the bundle's files are: stacks show only those
        self._running_steps = 0
        self._blocked: dict[object, datetime | None] = {}  # waiter → when it wakes by itself
        self._idle_since: float | None = None
        self._retry_waits = 0  # steps waiting out their retry delay
        self._progress_at = time.monotonic()  # the last durable move (see stalled_seconds)
        if run.status == "pending":  # recorded with the first write of the run
            self._enqueue(EventRequest(EventType.RUN_STARTED))

    # -- the durable log --------------------------------------------------------------

    def _enqueue(self, request: EventRequest) -> asyncio.Future[EventResult]:
        pending = _Pending(request)
        self._queue.append(pending)
        return pending.future

    async def flush(self) -> None:
        """Write every buffered event (one transaction per batch) and wait for it."""
        while self._queue or self._flushing is not None:
            if self._flushing is None:
                self._flushing = asyncio.create_task(self._write_batch())
            task = self._flushing
            await asyncio.shield(task)

    async def _submit(self, request: EventRequest) -> EventResult:
        future = self._enqueue(request)
        await self.flush()
        return await future

    async def _write_batch(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    results = await self.world.record(self.run.run_id, [p.request for p in batch])
                except BaseException as error:
                    for pending in batch:
                        if not pending.future.done():
                            pending.future.set_exception(_as_stop(error))
                    raise
                for pending, result in zip(batch, results, strict=True):
                    if result.event is not None:
                        self._learn([result.event], read=False)
                    pending.future.set_result(result)
        except BaseException:
            for pending in self._queue:
                pending.future.cancel()
            self._queue = []
            raise
        finally:
            self._flushing = None
            self._progress_at = time.monotonic()

    def _learn(self, events: list[Event], read: bool = True) -> None:
        """Fold ``events`` in; ``read`` (a page of the log, not one we just wrote) moves the
        point ``refresh`` reads after: an event another writer appended just before ours
        (a hook payload) has a smaller id than ours, and must still be read."""
        for event in events:
            self.history.apply(event)
            if read and (self._last_event_id is None or event.event_id > self._last_event_id):
                self._last_event_id = event.event_id
        self._changed.set()

    async def refresh(self) -> None:
        """Fold in events written by others (hook payloads, cancellation)."""
        self._learn(await self.world.events(self.run.run_id, self._last_event_id))

    def _next_ids(self) -> dict[str, str]:
        index, self._index = self._index, self._index + 1
        body = call_ulid(self.run.run_id, self._created_ms, index)
        return {kind: prefix + body for kind, prefix in KIND_PREFIX.items()}

    def _check(self, ids: dict[str, str], kind: str, name: str | None = None) -> None:
        self.history.check_kind(ids, kind, name)

    # -- steps ------------------------------------------------------------------------

    async def call_step(
        self,
        spec: StepSpec,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        ids = self._next_ids()
        step_id = ids["step"]
        self._check(ids, "step", spec.name)
        record = self.history.steps.get(step_id)
        if record is not None and record.status == "completed":
            return record.result
        if record is not None and record.status == "failed":
            error = record.error
            raise StepFailedError(spec.name, error.message if error else "failed",
                                  error.stack if error else None)  # fmt: skip
        if record is None:
            created = {"stepName": spec.name, "input": _jsonable(args)}
            self._enqueue(EventRequest(EventType.STEP_CREATED, step_id, None, created))
        while True:
            record = self.history.steps.get(step_id)
            if record is not None and record.retry_after is not None:
                self._retry_waits += 1
                try:
                    await _sleep_until(record.retry_after)
                finally:
                    self._retry_waits -= 1
                    self._progress_at = time.monotonic()
            started = await self._submit(EventRequest(EventType.STEP_STARTED, step_id))
            attempt = started.step.attempt if started.step is not None else 1
            try:
                result = await self._run_step(spec, step_id, attempt, fn, args, kwargs)
                codec.dumps(result)  # the result must be storable before it counts
            except (asyncio.CancelledError, RunCancelled):
                raise
            except Exception as error:
                delay = self._retry_delay(spec, attempt, error)
                if delay is None:
                    await self._submit(EventRequest(EventType.STEP_FAILED, step_id, None,
                                                    self._error(error)))  # fmt: skip
                    raise StepFailedError(
                        spec.name,
                        str(error) or type(error).__name__,
                        user_traceback(error, self.code_root),
                    ) from error
                retry_at = datetime.now(UTC) + timedelta(seconds=delay)
                await self._submit(
                    EventRequest(
                        EventType.STEP_RETRYING,
                        step_id,
                        None,
                        {**self._error(error), "retryAfter": iso(retry_at)},
                    )
                )
                continue  # fmt: skip
            self._enqueue(EventRequest(EventType.STEP_COMPLETED, step_id, None, {"result": result}))
            return result

    def _retry_delay(self, spec: StepSpec, attempt: int, error: Exception) -> float | None:
        if isinstance(error, FatalError | TypeError) or attempt > spec.max_retries:
            return None
        if isinstance(error, RetryableError) and error.retry_after is not None:
            return max(0.0, float(error.retry_after))
        return backoff(attempt)

    async def _run_step(
        self,
        spec: StepSpec,
        step_id: str,
        attempt: int,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        await self.flush()  # nothing unrecorded may precede a side effect
        scope = StepScope(self, spec, step_id, attempt)
        token = current_dispatcher.set(scope)
        self._running_steps += 1
        self._update_idle()
        if self._observer is not None:
            self._observer.step_began(step_id, spec, attempt)
        failure: str | None = None
        try:
            if spec.timeout_seconds is not None:
                return await asyncio.wait_for(fn(*args, **kwargs), spec.timeout_seconds)
            return await fn(*args, **kwargs)
        except BaseException as error:
            failure = str(error) or type(error).__name__
            raise
        finally:
            current_dispatcher.reset(token)
            self._running_steps -= 1
            self._update_idle()
            if self._observer is not None:
                self._observer.step_ended(step_id, failure)

    # -- sleep ------------------------------------------------------------------------

    async def sleep(self, until: datetime) -> None:
        ids = self._next_ids()
        wait_id = ids["wait"]
        self._check(ids, "wait")
        record = self.history.waits.get(wait_id)
        if record is not None and record.completed:
            return
        if record is None:
            await self._submit(EventRequest(EventType.WAIT_CREATED, wait_id, None,
                                            {"resumeAt": iso(until)}))  # fmt: skip
            record = self.history.waits[wait_id]
        else:
            await self.flush()
        async with self._blocked_on(record.resume_at):
            await _sleep_until(record.resume_at)
        self._enqueue(EventRequest(EventType.WAIT_COMPLETED, wait_id))

    # -- hooks ------------------------------------------------------------------------

    def create_hook(self, token: str | None, metadata: Any) -> WorkflowHook:
        ids = self._next_ids()
        hook_id = ids["hook"]
        self._check(ids, "hook")
        record = self.history.hooks.get(hook_id)
        if record is not None:
            created: asyncio.Future[EventResult] | None = None
            token = record.token or token or ""
        else:
            token = token or secrets.token_urlsafe(24)
            data = {"token": token, "metadata": metadata}
            created = self._enqueue(EventRequest(EventType.HOOK_CREATED, hook_id, None, data))
            # live at once, so that clients can resume it before the workflow awaits it
            flushing = asyncio.ensure_future(self.flush())
            self._background.add(flushing)
            flushing.add_done_callback(self._background.discard)
        return WorkflowHook(self, hook_id, token, created)

    async def next_payload(self, hook: WorkflowHook) -> Any:
        if hook.created is not None:
            await hook.created
        async with self._blocked_on(None):  # once for the whole wait: polls do not reset it
            while True:
                record = self.history.hooks.get(hook.hook_id)
                if record is not None and record.conflict:
                    raise HookConflictError(f"another live hook holds the token {hook.token!r}")
                if record is not None and len(record.payloads) > hook.consumed:
                    hook.consumed += 1
                    return record.payloads[hook.consumed - 1]
                await self.flush()
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), self.poll_interval)
                if not self._changed.is_set():
                    await self.refresh()

    # -- suspension -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _blocked_on(self, wakes_at: datetime | None) -> AsyncIterator[None]:
        marker = object()
        self._blocked[marker] = wakes_at
        self._update_idle()
        try:
            yield
        finally:
            del self._blocked[marker]
            self._update_idle()

    def _update_idle(self) -> None:
        """Idle: some branch waits on a sleep or a hook and no step is running."""
        self._progress_at = time.monotonic()
        idle = bool(self._blocked) and self._running_steps == 0
        if not idle:
            self._idle_since = None
        elif self._idle_since is None:
            self._idle_since = time.monotonic()

    @property
    def read_up_to(self) -> str | None:
        """The last event id read from the log: what came after it, this run has not seen
        (except the events it wrote itself)."""
        return self._last_event_id

    def idle_seconds(self) -> float:
        """How long every branch of the workflow has waited on a sleep or a hook."""
        if self._idle_since is None or self._running_steps or self._queue or self._flushing:
            return 0.0
        return time.monotonic() - self._idle_since

    def stalled_seconds(self) -> float:
        """How long the workflow has awaited nothing durable: no step running or waiting
        to retry, no sleep or hook, no World write in flight — an ``asyncio.sleep`` or
        other I/O of the ``@workflow`` body, which no replay can stand for."""
        if self._blocked or self._running_steps or self._retry_waits or self._flushing:
            return 0.0
        return time.monotonic() - self._progress_at

    def wakes_at(self) -> datetime | None:
        """When the earliest sleep ends (None: only hooks can wake the run)."""
        times = [moment for moment in self._blocked.values() if moment is not None]
        return min(times) if times else None

    # -- child workflows (domain/children.py) -----------------------------------------

    async def start_workflow(self, name: str, args: tuple[Any, ...]) -> WorkflowChild:
        token = child_token(self.run.run_id, self._index)
        hook = self.create_hook(token, {"childWorkflow": name})  # before the child can end
        spec = StepSpec(START_STEP + name)
        started = await self.call_step(spec, self._start_child, (name, list(args), hook.token),
                                       {})  # fmt: skip
        return WorkflowChild(self, name, str(started["runId"]), hook)

    async def _start_child(self, name: str, args: list[Any], token: str) -> dict[str, str]:
        """The body of a ``start_workflow:<name>`` step: the token makes it start once."""
        try:
            child_id = await self.world.start_child(self.run.run_id, name, args, token)
        except (errors.NotFound, errors.InvalidRequest) as refused:
            raise FatalError(refused.message) from refused
        return {"runId": child_id, "workflowName": name}

    # -- streams and metadata ---------------------------------------------------------

    def writable(self, name: str) -> RunWritable:
        return RunWritable(self.world, self.run.run_id, name)

    def metadata(self) -> dict[str, Any]:
        return {"run_id": self.run.run_id, "workflow_name": self.run.workflow_name}

    # -- the whole run ----------------------------------------------------------------

    async def execute(self, workflow: Callable[..., Awaitable[Any]]) -> None:
        """Run the workflow to its end and record how it ended."""
        token = current_dispatcher.set(self)
        try:
            run_input = self.run.input if isinstance(self.run.input, list) else [self.run.input]
            output = await workflow(*run_input)
            codec.dumps(output)
        except (asyncio.CancelledError, RunCancelled):
            raise
        except NonDeterminism as error:
            await self._end(EventType.RUN_FAILED, self._error(error, NonDeterminism.code))
            return
        except errors.DomainError:
            raise  # the World refused a write: not the workflow's fault, retry the run later
        except Exception as error:
            code = RUNTIME_ERROR if isinstance(error, TypeError) else USER_ERROR
            await self._end(EventType.RUN_FAILED, self._error(error, code))
            return
        finally:
            current_dispatcher.reset(token)
        await self._end(EventType.RUN_COMPLETED, {"output": output})

    def _error(self, error: BaseException, code: str | None = None) -> dict[str, Any]:
        return error_data(error, code, self.code_root)

    async def _end(self, kind: EventType, data: dict[str, Any]) -> None:
        self._enqueue(EventRequest(kind, None, None, data))
        await self.flush()


class StepScope:
    """What code sees inside a step: nested steps run plainly, streams and metadata work."""

    def __init__(self, context: WorkflowContext, spec: StepSpec, step_id: str, attempt: int):
        self._context = context
        self._spec = spec
        self._step_id = step_id
        self._attempt = attempt

    async def call_step(
        self, spec: StepSpec, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:  # fmt: skip
        return await fn(*args, **kwargs)

    async def sleep(self, until: datetime) -> None:
        await _sleep_until(until)

    def create_hook(self, token: str | None, metadata: Any) -> WorkflowHook:
        raise RuntimeError("create_hook() belongs in the workflow, not inside a step")

    async def start_workflow(self, name: str, args: tuple[Any, ...]) -> WorkflowChild:
        raise RuntimeError("start_workflow() belongs in the workflow, not inside a step")

    def writable(self, name: str) -> RunWritable:
        return self._context.writable(name)

    def metadata(self) -> dict[str, Any]:
        return {**self._context.metadata(), "step_id": self._step_id,
                "step_name": self._spec.name, "attempt": self._attempt}  # fmt: skip


class WorkflowChild:
    """``ChildWorkflow``: the child's outcome arrives on the parent's hook and is recorded
    by a ``workflow_result:<name>`` step, once."""

    def __init__(self, context: WorkflowContext, name: str, run_id: str,
                 hook: WorkflowHook) -> None:  # fmt: skip
        self._context = context
        self.workflow_name = name
        self.run_id = run_id
        self._hook = hook
        self._result: asyncio.Future[Any] | None = None

    async def result(self) -> Any:
        if self._result is None:
            self._result = asyncio.ensure_future(self._outcome())
        return await asyncio.shield(self._result)

    async def _outcome(self) -> Any:
        outcome = await self._hook
        spec = StepSpec(RESULT_STEP + self.workflow_name, max_retries=0)
        return await self._context.call_step(spec, _child_result, (outcome,), {})


async def _child_result(outcome: Any) -> Any:
    """The body of a ``workflow_result:<name>`` step: the child's output, or its failure."""
    if not isinstance(outcome, dict) or outcome.get("status") != "completed":
        status = outcome.get("status") if isinstance(outcome, dict) else "unknown"
        error = outcome.get("error") if isinstance(outcome, dict) else None
        why = error.get("message") if isinstance(error, dict) else None
        run_id = outcome.get("runId") if isinstance(outcome, dict) else "?"
        raise FatalError(f"child run {run_id} {status}" + (f": {why}" if why else ""))
    return outcome.get("output")


class WorkflowHook:
    def __init__(
        self,
        context: WorkflowContext,
        hook_id: str,
        token: str,
        created: asyncio.Future[EventResult] | None,
    ) -> None:
        self._context = context
        self.hook_id = hook_id
        self.token = token
        self.created = created
        self.consumed = 0

    def __await__(self) -> Generator[Any, None, Any]:
        return self._context.next_payload(self).__await__()

    async def __aiter__(self) -> AsyncIterator[Any]:
        while True:
            yield await self._context.next_payload(self)


class RunWritable:
    """A named stream of the run: ``strm_<run ULID>_<name>``."""

    def __init__(self, world: RunWorld, run_id: str, name: str) -> None:
        self._world = world
        self._run_id = run_id
        self.name = run_stream_name(run_id, name)

    async def write(self, chunk: bytes | str) -> None:
        data = chunk.encode() if isinstance(chunk, str) else bytes(chunk)
        await self._world.write_stream(self.name, self._run_id, [data])

    async def close(self) -> None:
        await self._world.close_stream(self.name, self._run_id)


def _jsonable(args: tuple[Any, ...]) -> list[Any]:
    try:
        codec.dumps(list(args))
    except TypeError:
        return [repr(arg) for arg in args]
    return list(args)


def _as_stop(error: BaseException) -> BaseException:
    if isinstance(error, errors.RunExpired | errors.EntityConflict):
        return RunCancelled(str(error))
    return error


async def _sleep_until(moment: datetime) -> None:
    seconds = (moment - datetime.now(UTC)).total_seconds()
    if seconds > 0:
        await asyncio.sleep(seconds)
