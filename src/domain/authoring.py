"""The workflow authoring API (re-exported by ``compute_worker``): ``@workflow``,
``@step``, the errors a step raises or a workflow sees, and the durable primitives
``sleep``, ``create_hook``, ``get_writable``, ``start_workflow`` and ``run_metadata``.

It is the contract between a bundle's code and the engine, in the standard library
only: the public package re-exports it and the runtime (``adapters.worldcompute``)
implements its ``StepDispatcher``/``WorkflowRuntime`` protocols, so it sits below both.
The decorators record their metadata on the functions themselves (no registry):
the deployment loader finds them by looking at a bundle's module attributes.
A step called inside a running workflow goes through the engine (durable, recorded
once); called anywhere else it is a plain coroutine call.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar, overload

WORKFLOW_ATTR = "__compute_worker_workflow__"
STEP_ATTR = "__compute_worker_step__"
DEFAULT_MAX_RETRIES = 3

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


@dataclass(frozen=True, slots=True)
class WorkflowSpec:
    name: str
    schedule: str | None = None  # a cron expression: started on it while deployed and active
    timezone: str | None = None
    catch_up: str | None = None  # skip | one | all; None: the worker's setting


@dataclass(frozen=True, slots=True)
class StepSpec:
    name: str
    max_retries: int = DEFAULT_MAX_RETRIES
    timeout_seconds: float | None = None


class StepDispatcher(Protocol):
    """What a running workflow does with a step call (the engine implements it)."""

    async def call_step(
        self, spec: StepSpec, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any: ...  # fmt: skip


current_dispatcher: ContextVar[StepDispatcher | None] = ContextVar(
    "compute_worker_dispatcher", default=None
)


CATCH_UP = ("skip", "one", "all")


@overload
def workflow(fn: F, /) -> F: ...
@overload
def workflow(
    *,
    name: str | None = None,
    schedule: str | None = None,
    timezone: str | None = None,
    catch_up: str | None = None,
) -> Callable[[F], F]: ...
def workflow(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    schedule: str | None = None,
    timezone: str | None = None,
    catch_up: str | None = None,
) -> Any:
    """Mark an ``async def`` as a workflow; its run input list is passed as arguments.

    ``schedule`` (a cron expression, five fields or six with leading seconds, read in
    ``timezone``, UTC by default) starts it on that calendar while its deployment is the
    active one, with one argument ``{"schedule": name, "scheduledAt": ISO time}``;
    ``catch_up`` says what happens to slots missed while no worker ran (README,
    "Schedules"). The expression is checked when the bundle is uploaded."""

    if name is not None and not name.strip():
        raise ValueError("a workflow name must not be empty")
    if schedule is not None and (not isinstance(schedule, str) or not schedule.strip()):
        raise ValueError("schedule must be a non-empty cron expression")
    if schedule is None and (timezone is not None or catch_up is not None):
        raise ValueError("timezone and catch_up need a schedule")
    if catch_up is not None and catch_up not in CATCH_UP:
        raise ValueError(f"catch_up must be one of {', '.join(CATCH_UP)}, not {catch_up!r}")

    def mark(target: F) -> F:
        _require_async(target, "@workflow")
        spec = WorkflowSpec(name or target.__name__, schedule, timezone, catch_up)
        setattr(target, WORKFLOW_ATTR, spec)
        return target

    return mark(fn) if fn is not None else mark


@overload
def step(fn: F, /) -> F: ...
@overload
def step(
    *,
    name: str | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    timeout: float | None = None,
) -> Callable[[F], F]: ...
def step(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    timeout: float | None = None,
) -> Any:
    """Mark an ``async def`` as a step: retried up to ``max_retries`` times (``timeout``
    seconds per attempt), its result recorded once when called from a workflow."""
    if max_retries < 0:
        raise ValueError("max_retries must be 0 or more")
    if timeout is not None and timeout <= 0:
        raise ValueError("timeout must be positive")

    def mark(target: F) -> F:
        _require_async(target, "@step")
        spec = StepSpec(name or target.__name__, max_retries, timeout)

        @functools.wraps(target)
        async def call(*args: Any, **kwargs: Any) -> Any:
            dispatcher = current_dispatcher.get()
            if dispatcher is None:
                return await target(*args, **kwargs)
            return await dispatcher.call_step(spec, target, args, kwargs)

        setattr(call, STEP_ATTR, spec)
        return call  # type: ignore[return-value]

    return mark(fn) if fn is not None else mark


def _require_async(target: Callable[..., Any], decorator: str) -> None:
    import inspect

    if not inspect.iscoroutinefunction(target):
        raise TypeError(f"{decorator} needs an async def function, got {target!r}")


# -- errors a step or workflow raises or sees -------------------------------------------


class FatalError(Exception):
    """Raised by a step: fail at once, no retries."""


class RetryableError(Exception):
    """Raised by a step: retry after ``retry_after`` (seconds or a timedelta)."""

    def __init__(self, message: str, retry_after: float | timedelta | None = None) -> None:
        super().__init__(message)
        if isinstance(retry_after, timedelta):
            retry_after = retry_after.total_seconds()
        self.retry_after = retry_after


class StepFailedError(Exception):
    """Seen by a workflow when a step failed for good; the workflow may catch it."""

    def __init__(self, step_name: str, message: str, stack: str | None = None) -> None:
        super().__init__(f"step {step_name} failed: {message}")
        self.step_name = step_name
        self.error_message = message
        self.stack = stack


class HookConflictError(Exception):
    """``create_hook`` with a token that another live hook already holds."""


# -- durable primitives inside a workflow -----------------------------------------------


class WorkflowRuntime(StepDispatcher, Protocol):
    """The running workflow's side of ``sleep``, ``create_hook``, ``get_writable`` and
    ``start_workflow``."""

    async def sleep(self, until: datetime) -> None: ...
    def create_hook(self, token: str | None, metadata: Any) -> Hook: ...
    def writable(self, name: str) -> Writable: ...
    def metadata(self) -> dict[str, Any]: ...
    async def start_workflow(self, name: str, args: tuple[Any, ...]) -> ChildWorkflow: ...


class ChildWorkflow(Protocol):
    """A child run started by ``start_workflow``."""

    run_id: str
    workflow_name: str

    async def result(self) -> Any:
        """Wait (durably) for the child to end: its output, or ``StepFailedError`` when it
        failed or was cancelled."""
        ...


class Hook(Protocol):
    token: str

    def __await__(self) -> Generator[Any, None, Any]: ...
    def __aiter__(self) -> AsyncIterator[Any]: ...


class Writable(Protocol):
    name: str

    async def write(self, chunk: bytes | str) -> None: ...
    async def close(self) -> None: ...


def _runtime(what: str) -> WorkflowRuntime:
    dispatcher = current_dispatcher.get()
    if dispatcher is None or not hasattr(dispatcher, "sleep"):
        raise RuntimeError(f"{what} can only be used inside a running workflow or step")
    return dispatcher  # type: ignore[return-value]


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str | float | timedelta | datetime) -> datetime:
    """``"10s"``, ``"5m"``, ``"1h30m"``, seconds, a timedelta, or an aware datetime → deadline."""
    now = datetime.now(UTC)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, timedelta):
        return now + value
    if isinstance(value, int | float):
        return now + timedelta(seconds=value)
    total, number = 0.0, ""
    text = value.strip().lower()
    index = 0
    while index < len(text):
        char = text[index]
        if char.isdigit() or char == ".":
            number += char
            index += 1
            continue
        unit = "ms" if text.startswith("ms", index) else char
        if unit not in _UNITS or not number:
            raise ValueError(f"invalid duration {value!r}: use e.g. '500ms', '10s', '5m', '2h'")
        total += float(number) * _UNITS[unit]
        number, index = "", index + len(unit)
    if number:
        raise ValueError(f"invalid duration {value!r}: a number needs a unit (ms, s, m, h, d)")
    return now + timedelta(seconds=total)


async def sleep(duration: str | float | timedelta | datetime) -> None:
    """A durable timer: the run may be suspended, restarted or replayed meanwhile."""
    await _runtime("sleep()").sleep(parse_duration(duration))


def create_hook(token: str | None = None, metadata: Any = None) -> Hook:
    """A hook resumed through ``POST /v1/runs/resume``; ``await hook`` gets a payload."""
    return _runtime("create_hook()").create_hook(token, metadata)


def get_writable(name: str = "default") -> Writable:
    """A stream of this run that clients read live (``/v1/world/streams/read``)."""
    return _runtime("get_writable()").writable(name)


async def start_workflow(name: str, *args: Any) -> ChildWorkflow:
    """Start the workflow ``name`` of this deployment as a child run with ``args`` as its
    input: started exactly once, however often this workflow replays or crashes; linked
    to this run (``parentRunId``), and cancelled when this run is cancelled. ``await
    child.result()`` waits for it."""
    return await _runtime("start_workflow()").start_workflow(name, args)


def run_metadata() -> dict[str, Any]:
    """``run_id``, ``workflow_name`` and, inside a step, ``step_id``, ``step_name``, ``attempt``."""
    return _runtime("run_metadata()").metadata()
