"""The wire format: camelCase JSON, ISO-8601 UTC dates with milliseconds, bytes as
Uint8Array envelopes. The only module that spells camelCase."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from compute_worker.adapters import codec
from compute_worker.domain import errors
from compute_worker.domain.deployments import Deployment, WorkflowInfo
from compute_worker.domain.execution import ExecutionRecord, RetryPolicy
from compute_worker.domain.pagination import Page
from compute_worker.domain.stuck import StuckRun
from compute_worker.domain.use_cases.schedules import ScheduleView
from compute_worker.domain.world import (
    Event,
    EventResult,
    Hook,
    ResolveData,
    Run,
    Step,
    StructuredError,
    Wait,
)

T = TypeVar("T")
JSON_TYPE = "application/json; charset=utf-8"


class JSONResponse(Response):
    media_type = JSON_TYPE

    def render(self, content: Any) -> bytes:
        return codec.dumps(content)


def iso(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _put_dates(out: dict[str, Any], **dates: datetime | None) -> None:
    for name, value in dates.items():
        if value is not None:
            out[name] = iso(value)


def _put_spec_version(out: dict[str, Any], spec_version: int | None) -> None:
    """Unset optional fields are left out: WDK's schemas use ``optional()``, which
    refuses ``null``."""
    if spec_version is not None:
        out["specVersion"] = spec_version


def error_wire(error: StructuredError | None) -> dict[str, Any] | bytes | None:
    """The error as stored: ``{message, stack?, code?}``, or the runtime's own bytes."""
    if error is None:
        return None
    if error.raw is not None:
        return error.raw
    out: dict[str, Any] = {"message": error.message}
    if error.stack is not None:
        out["stack"] = error.stack
    if error.code is not None:
        out["code"] = error.code
    return out


def run_wire(run: Run, resolve: ResolveData = "all") -> dict[str, Any]:
    out: dict[str, Any] = {
        "runId": run.run_id,
        "status": run.status,
        "deploymentId": run.deployment_id,
        "workflowName": run.workflow_name,
    }
    _put_spec_version(out, run.spec_version)
    if run.execution_context is not None:
        out["executionContext"] = run.execution_context
    if resolve == "all":
        out["input"] = run.input
        if run.status == "completed":
            out["output"] = run.output
    if run.error is not None:
        out["error"] = error_wire(run.error)
        if run.error.code is not None:
            out["errorCode"] = run.error.code
    out["attributes"] = run.attributes
    out["createdAt"] = iso(run.created_at)
    out["updatedAt"] = iso(run.updated_at)
    _put_dates(
        out, startedAt=run.started_at, completedAt=run.completed_at, expiredAt=run.expired_at
    )
    return out


def public_run_wire(
    run: Run,
    resolve: ResolveData = "all",
    execution: ExecutionRecord | None = None,
    policy: RetryPolicy | None = None,
    stuck: StuckRun | None = None,
) -> dict[str, Any]:
    """The public Run shape (http-api.md): the World's run without its spec version,
    ``execution`` while the engine is retrying a run that does not get anywhere, and
    ``stuck`` while the stuck-run detector finds it stuck."""
    out = run_wire(run, resolve)
    for world_only in ("specVersion", "attributes", "errorCode"):
        out.pop(world_only, None)
    if execution is not None and not run.is_terminal:
        out["execution"] = execution_wire(execution, policy or RetryPolicy())
    if stuck is not None and not run.is_terminal:
        out["stuck"] = {
            "reason": stuck.reason,
            "message": stuck.message,
            "since": iso(stuck.since),
            "detectedAt": iso(stuck.detected_at),
        }
    return out


def execution_wire(record: ExecutionRecord, policy: RetryPolicy) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if record.start_failures:
        out["startAttempts"] = record.start_failures
        out["maxStartAttempts"] = policy.max_start_attempts
    if record.lost_executors:
        out["lostExecutors"] = record.lost_executors
        out["maxLostExecutors"] = policy.max_lost_executors
    if record.last_error is not None:
        out["lastError"] = record.last_error
    if record.last_error_at is not None:
        out["lastErrorAt"] = iso(record.last_error_at)
    if record.next_attempt_at is not None:
        out["nextAttemptAt"] = iso(record.next_attempt_at)
    return out


def public_step_wire(step: Step, resolve: ResolveData = "all") -> dict[str, Any]:
    out = step_wire(step, resolve)
    out.pop("specVersion", None)
    return out


def public_event_wire(event: Event) -> dict[str, Any]:
    out = event_wire(event)
    out.pop("specVersion", None)
    return out


def public_hook_wire(hook: Hook, with_token: bool) -> dict[str, Any]:
    """A live hook; its token (a capability to resume the run) only ``with_token``."""
    out: dict[str, Any] = {"runId": hook.run_id, "hookId": hook.hook_id}
    if with_token:
        out["token"] = hook.token
    out.update(metadata=hook.metadata, isWebhook=hook.is_webhook, createdAt=iso(hook.created_at))
    return out


def _workflow_wire(workflow: WorkflowInfo) -> dict[str, Any]:
    out: dict[str, Any] = {"name": workflow.name, "steps": list(workflow.steps)}
    if workflow.schedule is not None:
        out["schedule"] = workflow.schedule.wire()
    return out


def schedule_wire(view: ScheduleView) -> dict[str, Any]:
    state = view.state
    return {
        "name": state.name,
        "deploymentId": state.deployment_id,
        "cron": state.schedule.cron,
        "timezone": state.schedule.timezone,
        "catchUp": view.catch_up,
        "paused": state.paused,
        "lastSlot": iso(state.last_slot),
        "nextFireAt": None if view.next_fire_at is None else iso(view.next_fire_at),
    }


def deployment_wire(deployment: Deployment) -> dict[str, Any]:
    out: dict[str, Any] = {
        "deploymentId": deployment.deployment_id,
        "digest": deployment.digest,
        "kind": deployment.kind,
        "entrypoint": deployment.entrypoint,
        "workflows": [_workflow_wire(w) for w in deployment.workflows],
        "metadata": deployment.metadata or {},
        "createdAt": iso(deployment.created_at),
        "active": deployment.active,
    }
    endpoint = deployment.endpoint
    if endpoint is not None:  # the delivery secret is never shown, only whether there is one
        out["endpoint"] = {
            "url": endpoint.url,
            "headers": endpoint.headers,
            "signed": endpoint.delivery_secret is not None,
        }
    return out


def step_wire(step: Step, resolve: ResolveData = "all") -> dict[str, Any]:
    out: dict[str, Any] = {
        "runId": step.run_id,
        "stepId": step.step_id,
        "stepName": step.step_name,
        "status": step.status,
        "attempt": step.attempt,
    }
    _put_spec_version(out, step.spec_version)
    if resolve == "all":
        out["input"] = step.input
        if step.status == "completed":
            out["output"] = step.output
    if step.error is not None:
        out["error"] = error_wire(step.error)
    out["createdAt"] = iso(step.created_at)
    out["updatedAt"] = iso(step.updated_at)
    _put_dates(
        out,
        startedAt=step.started_at,
        completedAt=step.completed_at,
        retryAfter=step.retry_after,
    )
    return out


def hook_wire(hook: Hook, resolve: ResolveData = "all") -> dict[str, Any]:
    out: dict[str, Any] = {
        "runId": hook.run_id,
        "hookId": hook.hook_id,
        "token": hook.token,
        "ownerId": hook.owner_id,
        "projectId": hook.project_id,
        "environment": hook.environment,
        "isWebhook": hook.is_webhook,
        "createdAt": iso(hook.created_at),
    }
    if hook.is_system:
        out["isSystem"] = True
    _put_spec_version(out, hook.spec_version)
    if resolve == "all" and hook.metadata is not None:
        out["metadata"] = hook.metadata
    return out


def wait_wire(wait: Wait) -> dict[str, Any]:
    out: dict[str, Any] = {
        "waitId": wait.wait_id,
        "runId": wait.run_id,
        "status": wait.status,
        "createdAt": iso(wait.created_at),
        "updatedAt": iso(wait.updated_at),
    }
    _put_spec_version(out, wait.spec_version)
    _put_dates(out, resumeAt=wait.resume_at, completedAt=wait.completed_at)
    return out


def event_wire(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = {
        "eventId": event.event_id,
        "runId": event.run_id,
        "eventType": event.event_type.value,
        "createdAt": iso(event.created_at),
    }
    _put_dates(out, occurredAt=event.occurred_at)
    _put_spec_version(out, event.spec_version)
    if event.correlation_id is not None:
        out["correlationId"] = event.correlation_id
    if event.event_data is not None:
        out["eventData"] = event.event_data
    return out


def event_result_wire(result: EventResult) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if result.event is not None:
        out["event"] = event_wire(result.event)
    if result.run is not None:
        out["run"] = run_wire(result.run)
    if result.step is not None:
        out["step"] = step_wire(result.step)
    if result.hook is not None:
        out["hook"] = hook_wire(result.hook)
    if result.wait is not None:
        out["wait"] = wait_wire(result.wait)
    if result.events is not None:
        out["events"] = [event_wire(event) for event in result.events]
        out["cursor"] = result.cursor
    if result.has_more is not None:
        out["hasMore"] = result.has_more
    if result.max_events is not None:
        out["maxEvents"] = result.max_events
    if result.step_created:
        out["stepCreated"] = True
    return out


def page_wire(page: Page[T], render: Callable[[T], dict[str, Any]]) -> dict[str, Any]:
    return {
        "data": [render(item) for item in page.data],
        "cursor": page.cursor,
        "hasMore": page.has_more,
    }


# -- reading requests -----------------------------------------------------------------------


async def read_bytes(request: Request, max_bytes: int) -> bytes:
    """The raw body; 413 ``payload_too_large`` past ``max_bytes`` (checked while reading)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(max_bytes)
    body = bytearray()
    async for piece in request.stream():
        body.extend(piece)
        if len(body) > max_bytes:
            raise PayloadTooLarge(max_bytes)
    return bytes(body)


async def read_json(request: Request, max_bytes: int) -> Any:
    """The body as JSON (bytes revived); 413 past ``max_bytes``, 400 when not JSON."""
    body = await read_bytes(request, max_bytes)
    if not body:
        raise errors.InvalidRequest("The request body must be JSON", {"field": "body"})
    try:
        return codec.loads(body)
    except ValueError as exc:
        raise errors.InvalidRequest(f"The request body is not valid JSON: {exc}") from None


class PayloadTooLarge(errors.DomainError):
    code = "payload_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body exceeds {limit} bytes", {"limit": limit})


async def read_object(request: Request, max_bytes: int) -> dict[str, Any]:
    body = await read_json(request, max_bytes)
    if not isinstance(body, dict):
        raise errors.InvalidRequest("The request body must be a JSON object", {"field": "body"})
    return body


def field(
    body: dict[str, Any], name: str, kind: type | tuple[type, ...], *, required: bool = False,
    path: str | None = None,
) -> Any:  # fmt: skip
    """``body[name]`` checked against ``kind``; None when absent and not required."""
    where = path or name
    value = body.get(name)
    if value is None:
        if required:
            raise errors.InvalidRequest(f"{where} is required", {"field": where})
        return None
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise errors.InvalidRequest(f"{where} must be a number", {"field": where})
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)  # JSON knows numbers only: 3.0 is the integer 3
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise errors.InvalidRequest(
            f"{where} must be of type {_json_name(names)}", {"field": where}
        )
    return value


def input_field(body: dict[str, Any]) -> list[Any]:
    """A run's ``input``: an array; absent or null is no arguments."""
    value = body.get("input")
    if value is None:
        return []
    if not isinstance(value, list):
        raise errors.InvalidRequest("input must be an array", {"field": "input"})
    return value


def _json_name(python_name: str) -> str:
    return (
        python_name.replace("str", "string").replace("dict", "object").replace("list", "array")
        .replace("int", "integer").replace("float", "number").replace("bool", "boolean")
    )  # fmt: skip


def resolve_data(value: Any, where: str = "resolveData") -> ResolveData:
    if value is None or value == "all":
        return "all"
    if value == "none":
        return "none"
    raise errors.InvalidRequest(f"{where} must be 'all' or 'none'", {"field": where})


def int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise errors.InvalidRequest(f"{name} must be an integer", {"field": name}) from None
