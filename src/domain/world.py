"""World entities (world.md §1): runs, steps, hooks, waits, events, stream chunks —
and the World's names: queues, the signal topics its writers notify, stream names.

Plain frozen dataclasses; the persistence adapter maps rows to them explicitly.
Payload fields (``input``, ``output``, ``metadata``, event payloads) are opaque:
bytes or JSON values that the world stores and returns exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from compute_worker.domain.pagination import Position

RunStatus = Literal["pending", "running", "completed", "failed", "cancelled"]
StepStatus = Literal["pending", "running", "completed", "failed", "cancelled"]
WaitStatus = Literal["waiting", "completed"]
ResolveData = Literal["all", "none"]

TERMINAL_RUN_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
TERMINAL_STEP_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
RUN_STATUSES: tuple[str, ...] = ("pending", "running", "completed", "failed", "cancelled")
CURRENT_SPEC_VERSION = 3  # what a request without specVersion is written at
# the newest spec accepted: 4 adds run attributes (``attr_set``), 5 payloads that the
# runtime may gzip and lazy step creation on ``step_started`` (@workflow/world 5.0 beta)
SUPPORTED_SPEC_VERSION = 5

# RunErrorCode values (world.md §1): the workflow raised, or the platform could not run it
USER_ERROR = "USER_ERROR"
RUNTIME_ERROR = "RUNTIME_ERROR"

# Longest values the World stores (the columns are sized to match).
MAX_RUN_ID = 64
MAX_CORRELATION_ID = 128
MAX_NAME = 512  # workflow, step, stream and queue names; queue idempotency keys
MAX_DEPLOYMENT_ID = 255
MAX_TOKEN = 1024


class EventType(StrEnum):
    RUN_CREATED = "run_created"
    RUN_STARTED = "run_started"
    RUN_COMPLETED = "run_completed"
    RUN_FAILED = "run_failed"
    RUN_CANCELLED = "run_cancelled"
    STEP_CREATED = "step_created"
    STEP_STARTED = "step_started"
    STEP_COMPLETED = "step_completed"
    STEP_FAILED = "step_failed"
    STEP_RETRYING = "step_retrying"
    HOOK_CREATED = "hook_created"
    HOOK_RECEIVED = "hook_received"
    HOOK_DISPOSED = "hook_disposed"
    HOOK_CONFLICT = "hook_conflict"
    WAIT_CREATED = "wait_created"
    WAIT_COMPLETED = "wait_completed"
    ATTR_SET = "attr_set"

    @property
    def family(self) -> str:
        return self.value.split("_", 1)[0]


@dataclass(frozen=True, slots=True)
class StructuredError:
    message: str
    stack: str | None = None
    code: str | None = None
    # the thrown value as the runtime serialized it (spec ≥ 4 runtimes send bytes and read
    # them back to rebuild the error); kept byte-exact and answered instead of the fields
    raw: bytes | None = None


@dataclass(frozen=True, slots=True)
class Run:
    run_id: str
    status: RunStatus
    deployment_id: str
    workflow_name: str
    input: Any
    created_at: datetime
    updated_at: datetime
    spec_version: int | None = CURRENT_SPEC_VERSION
    execution_context: dict[str, Any] | None = None
    output: Any = None
    error: StructuredError | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    expired_at: datetime | None = None
    attributes: dict[str, str] = field(default_factory=dict)  # spec ≥ 4 (attr_set)
    # bookkeeping of the store, not part of the World's run (never on the wire): the ULID
    # time (epoch ms) of the latest event written from outside a replay (``stateUpdatedAt``)
    state_marker_ms: int | None = field(default=None, compare=False)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_RUN_STATUSES


@dataclass(frozen=True, slots=True)
class Step:
    run_id: str
    step_id: str
    step_name: str
    status: StepStatus
    input: Any
    created_at: datetime
    updated_at: datetime
    attempt: int = 0
    output: Any = None
    error: StructuredError | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    retry_after: datetime | None = None
    spec_version: int | None = CURRENT_SPEC_VERSION

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STEP_STATUSES


@dataclass(frozen=True, slots=True)
class Hook:
    run_id: str
    hook_id: str
    token: str
    created_at: datetime
    metadata: Any = None
    is_webhook: bool = False
    spec_version: int | None = CURRENT_SPEC_VERSION
    is_system: bool = False  # created by the runtime itself (5.0), not by workflow code
    owner_id: str = ""
    project_id: str = ""
    environment: str = ""


@dataclass(frozen=True, slots=True)
class Wait:
    run_id: str
    correlation_id: str
    status: WaitStatus
    created_at: datetime
    updated_at: datetime
    resume_at: datetime | None = None
    completed_at: datetime | None = None
    spec_version: int | None = CURRENT_SPEC_VERSION

    @property
    def wait_id(self) -> str:
        return wait_id_for(self.run_id, self.correlation_id)


def wait_id_for(run_id: str, correlation_id: str) -> str:
    return f"{run_id}-{correlation_id}"


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    run_id: str
    event_type: EventType
    created_at: datetime
    correlation_id: str | None = None
    event_data: dict[str, Any] | None = None
    spec_version: int | None = CURRENT_SPEC_VERSION
    occurred_at: datetime | None = None  # when the client says it happened (``createdAt``: stored)


@dataclass(frozen=True, slots=True)
class EventRequest:
    """What a client asks ``events.create`` to append (world.md §1.5)."""

    event_type: EventType
    correlation_id: str | None = None
    spec_version: int | None = None
    event_data: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class CreateParams:
    """``events.create``'s ``params`` besides ``resolveData`` (world.md D13)."""

    # epoch ms of the latest event the caller's replay loaded: refused (412) when an event
    # from outside a replay was written after it
    state_updated_at: int | None = None
    occurred_at: datetime | None = None
    request_id: str | None = None
    # on step_completed / step_failed: answer the events written after this events.list
    # position (the runtime's inline loop skips its events.list with them)
    since: Position | None = None


@dataclass(frozen=True, slots=True)
class EventResult:
    event: Event | None = None
    run: Run | None = None
    step: Step | None = None
    hook: Hook | None = None
    wait: Wait | None = None
    events: tuple[Event, ...] | None = None
    # with ``events``: the events.list cursor past the last of them, and whether more follow
    cursor: str | None = None
    has_more: bool | None = None
    max_events: int | None = None  # on run lifecycle answers: the most events a run may hold
    step_created: bool = False  # a step_started that created its step (the caller owns it)


@dataclass(frozen=True, slots=True)
class StreamChunk:
    index: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamChunkPage:
    data: tuple[StreamChunk, ...]
    cursor: str | None
    has_more: bool
    done: bool


@dataclass(frozen=True, slots=True)
class StreamInfo:
    tail_index: int
    done: bool


@dataclass(frozen=True, slots=True)
class QueueMessage:
    message_id: str
    queue_name: str
    payload: Any
    attempt: int
    created_at: datetime
    deployment_id: str | None = None
    idempotency_key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


# -- the World's names ----------------------------------------------------------------------

WORKFLOW_QUEUE_PREFIX = "__wkf_workflow_"  # the engine claims these; a message wakes a run
# @workflow/world's ValidQueueName: an optional namespace (WORKFLOW_QUEUE_NAMESPACE), then the
# kind and the workflow or step name (printable ASCII: it travels in a header)
QUEUE_NAME = re.compile(r"^__(?:[a-z][a-z0-9]*_)?wkf_(workflow|step)_[\x21-\x7e]+$")
QUEUE_TOPIC = "queue"  # the signal topic notified once a queue message is committed

# Events that a run's executor must react to, usually written by someone else.
WAKING_EVENTS = frozenset(
    {EventType.RUN_CANCELLED, EventType.RUN_COMPLETED, EventType.RUN_FAILED,
     EventType.HOOK_RECEIVED, EventType.HOOK_DISPOSED}
)  # fmt: skip


def workflow_queue(workflow_name: str) -> str:
    """The queue whose messages wake the runs of ``workflow_name``."""
    return WORKFLOW_QUEUE_PREFIX + workflow_name


def message_run_id(payload: Any) -> str | None:
    """The run a queue message is about: ``runId`` (workflow messages) or
    ``workflowRunId`` (step messages), when the payload names one."""
    if not isinstance(payload, dict):
        return None
    found = payload.get("runId") or payload.get("workflowRunId")
    return found if isinstance(found, str) and 0 < len(found) <= 64 else None


def run_topic(run_id: str) -> str:
    """The signal topic notified after a run's waking events are committed."""
    return f"run:{run_id}"


def stream_topic(name: str) -> str:
    """The signal topic notified after chunks of stream ``name`` are committed."""
    return f"stream:{name}"


def run_stream_name(run_id: str, name: str) -> str:
    """Where a run's ``get_writable(name)`` stream is stored: ``strm_<run ULID>_<name>``."""
    return f"strm_{run_id.removeprefix('wrun_')}_{name}"


def short_stream_name(run_id: str, stored: str) -> str:
    """The name a workflow gave a stream of ``run_id``; other names are kept whole."""
    prefix = run_stream_name(run_id, "")
    return stored[len(prefix) :] if stored.startswith(prefix) and stored != prefix else stored
