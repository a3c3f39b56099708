"""Typed results of the Python client (pydantic v2 models of the public wire format).

Fields are snake_case; the wire's camelCase names are their aliases. Dates are
timezone-aware ``datetime``s; payload fields (``input``, ``output``, metadata,
event data) stay as the JSON values they were, with bytes revived as ``bytes``.
Every result read from a response carries the ``correlation_id`` of that response
(the one to look for in the server's logs and audit rows).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

T = TypeVar("T")
RunStatus = Literal["pending", "running", "completed", "failed", "cancelled"]
StepStatus = Literal["pending", "running", "completed", "failed", "cancelled"]
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})


class Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore"
    )


class Result(Model):
    """A model read from one response."""

    correlation_id: str | None = Field(default=None, exclude=True)


class RunError(Model):
    message: str
    stack: str | None = None
    code: str | None = None


class RunExecution(Model):
    """Present on ``runs.get`` while the engine retries a run that does not get anywhere."""

    start_attempts: int | None = None
    max_start_attempts: int | None = None
    lost_executors: int | None = None
    max_lost_executors: int | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    next_attempt_at: datetime | None = None


class RunStuck(Model):
    """Present while the worker's stuck-run detector finds the run stuck (README: Stuck runs)."""

    reason: str
    message: str
    since: datetime
    detected_at: datetime


class ChildRun(Model):
    """A run a workflow started with ``start_workflow`` (on ``runs.get``)."""

    run_id: str
    workflow_name: str


class Run(Result):
    run_id: str
    status: RunStatus
    deployment_id: str
    workflow_name: str
    input: Any = None
    output: Any = None
    error: RunError | None = None
    execution_context: dict[str, Any] | None = None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    execution: RunExecution | None = None
    stuck: RunStuck | None = None
    parent_run_id: str | None = None  # on runs.get: the run that started this one
    children: list[ChildRun] = []  # on runs.get: the runs this one started

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class TriggeredRun(Run):
    """What ``runs.trigger`` returns: the run, the key it was triggered with, and
    whether the server answered with the original run of an earlier request."""

    idempotency_key: str = Field(default="", exclude=True)
    replayed: bool = Field(default=False, exclude=True)


class Step(Model):
    run_id: str
    step_id: str
    step_name: str
    status: StepStatus
    attempt: int
    input: Any = None
    output: Any = None
    error: RunError | None = None
    created_at: datetime
    updated_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    retry_after: datetime | None = None


class Event(Model):
    event_id: str
    run_id: str
    event_type: str
    correlation_id: str | None = None
    event_data: dict[str, Any] | None = None
    created_at: datetime


class Hook(Model):
    run_id: str
    hook_id: str
    token: str | None = None  # only for keys that also hold runs:write
    metadata: Any = None
    is_webhook: bool = False
    created_at: datetime


class StreamInfo(Model):
    name: str
    chunks: int
    done: bool


class WorkflowInfo(Model):
    name: str
    steps: list[str] = []


class AppEndpoint(Model):
    """Where the worker delivers a WDK app's queue messages (kind ``wdk``)."""

    url: str
    headers: dict[str, str] = {}
    signed: bool = False  # deliveries carry x-compute-signature


class Deployment(Result):
    deployment_id: str
    digest: str
    kind: Literal["python", "graph", "wdk"]
    endpoint: AppEndpoint | None = None  # kind wdk
    entrypoint: str | None = None
    workflows: list[WorkflowInfo] = []
    metadata: dict[str, Any] = {}
    created_at: datetime
    active: bool = False
    pinned_runs: int | None = None  # in listings: runs bound to it, not yet terminal

    def workflow_names(self) -> list[str]:
        return [workflow.name for workflow in self.workflows]


class Page(Result, Generic[T]):
    data: list[T]
    cursor: str | None = None
    has_more: bool = False


class Resumed(Result):
    run_id: str
    hook_id: str
    token: str


class WebhookDelivery(Result):
    delivery_id: str | None = None
    run_id: str | None = None
    duplicate: bool = False


class Health(Result):
    status: Literal["ok", "degraded"]
    version: str
    world: str
    active_deployment_id: str | None = None
    checks: dict[str, str] = {}
