"""The World's entities as JSON: camelCase members, ISO-8601 UTC dates with
milliseconds, bytes as Uint8Array envelopes (``adapters.codec``). Written by the world
lane (``adapters.http``) and by the ``process`` backend's parent, read back by its child;
``tests/integration/test_entity_shapes.py`` holds the readers to the writers. With
``adapters.http.wire``, the only modules that spell camelCase."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from compute_worker.domain import errors
from compute_worker.domain.reducer import structured_error
from compute_worker.domain.validation import parse_date
from compute_worker.domain.world import (
    Event,
    EventRequest,
    EventResult,
    EventType,
    Hook,
    ResolveData,
    Run,
    Step,
    StructuredError,
    Wait,
)


def iso(moment: datetime) -> str:
    """``2026-12-04T18:00:00.123Z``: UTC, milliseconds (``isoformat`` is C, 2x ``strftime``)."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"


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


# -- event requests: what a run asks to append ------------------------------------------


def event_request_wire(request: EventRequest) -> dict[str, Any]:
    out: dict[str, Any] = {"eventType": request.event_type.value}
    if request.correlation_id is not None:
        out["correlationId"] = request.correlation_id
    if request.spec_version is not None:
        out["specVersion"] = request.spec_version
    if request.event_data is not None:
        out["eventData"] = request.event_data
    return out


MAX_BATCH_EVENTS = 1000


def event_requests_from(listed: list[Any], where: str = "events") -> list[EventRequest]:
    """A batch of event requests (all of one run, appended in one transaction)."""
    if not 1 <= len(listed) <= MAX_BATCH_EVENTS:
        raise errors.InvalidRequest(
            f"{where} must hold 1 to {MAX_BATCH_EVENTS} items", {"field": where}
        )
    requests = []
    for index, item in enumerate(listed):
        if not isinstance(item, dict):
            raise errors.InvalidRequest(
                f"{where}[{index}] must be an object", {"field": f"{where}[{index}]"}
            )
        requests.append(event_request_from(item, f"{where}[{index}]"))
    return requests


def event_request_from(data: dict[str, Any], where: str) -> EventRequest:
    """``InvalidRequest`` naming the member (``where``: its path) that is not as it must be."""
    kind = field(data, "eventType", str, required=True, path=f"{where}.eventType")
    try:
        event_type = EventType(kind)
    except ValueError:
        raise errors.InvalidRequest(
            f"{where}.eventType {kind!r} is not an event type", {"field": f"{where}.eventType"}
        ) from None
    return EventRequest(
        event_type=event_type,
        correlation_id=field(data, "correlationId", str, path=f"{where}.correlationId"),
        spec_version=field(data, "specVersion", int, path=f"{where}.specVersion"),
        event_data=field(data, "eventData", dict, path=f"{where}.eventData"),
    )


# -- reading entities back (from a trusted writer: the server) ------------------------


def _date(value: Any) -> Any:
    return None if value is None else parse_date(value, "date")


def event_from(data: dict[str, Any]) -> Event:
    return Event(
        event_id=data["eventId"],
        run_id=data["runId"],
        event_type=EventType(data["eventType"]),
        correlation_id=data.get("correlationId"),
        event_data=data.get("eventData"),
        spec_version=data.get("specVersion"),
        created_at=parse_date(data["createdAt"], "createdAt"),
        occurred_at=_date(data.get("occurredAt")),
    )


def run_from(data: dict[str, Any]) -> Run:
    error = data.get("error")
    return Run(
        run_id=data["runId"],
        status=data["status"],
        deployment_id=data["deploymentId"],
        workflow_name=data["workflowName"],
        input=data.get("input"),
        output=data.get("output"),
        error=None if error is None else structured_error(error),
        spec_version=data.get("specVersion"),
        execution_context=data.get("executionContext"),
        attributes=data.get("attributes") or {},
        created_at=parse_date(data["createdAt"], "createdAt"),
        updated_at=parse_date(data["updatedAt"], "updatedAt"),
        started_at=_date(data.get("startedAt")),
        completed_at=_date(data.get("completedAt")),
        expired_at=_date(data.get("expiredAt")),
    )


def step_from(data: dict[str, Any]) -> Step:
    error = data.get("error")
    return Step(
        run_id=data["runId"],
        step_id=data["stepId"],
        step_name=data["stepName"],
        status=data["status"],
        input=data.get("input"),
        output=data.get("output"),
        error=None if error is None else structured_error(error),
        attempt=data.get("attempt", 0),
        spec_version=data.get("specVersion"),
        created_at=parse_date(data["createdAt"], "createdAt"),
        updated_at=parse_date(data["updatedAt"], "updatedAt"),
        started_at=_date(data.get("startedAt")),
        completed_at=_date(data.get("completedAt")),
        retry_after=_date(data.get("retryAfter")),
    )


def result_from(data: dict[str, Any]) -> EventResult:
    """An ``EventResult`` as a running workflow needs it: hooks and waits are left out."""
    return EventResult(
        event=event_from(data["event"]) if "event" in data else None,
        run=run_from(data["run"]) if "run" in data else None,
        step=step_from(data["step"]) if "step" in data else None,
        events=tuple(event_from(e) for e in data["events"]) if "events" in data else None,
        cursor=data.get("cursor"),
        has_more=data.get("hasMore"),
        max_events=data.get("maxEvents"),
        step_created=bool(data.get("stepCreated")),
    )


# -- reading members of a body (from anyone) ----------------------------------------------


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


def _json_name(python_name: str) -> str:
    return (
        python_name.replace("str", "string").replace("dict", "object").replace("list", "array")
        .replace("int", "integer").replace("float", "number").replace("bool", "boolean")
    )  # fmt: skip


def input_field(body: dict[str, Any]) -> list[Any]:
    """A run's ``input``: an array; absent or null is no arguments."""
    value = body.get("input")
    if value is None:
        return []
    if not isinstance(value, list):
        raise errors.InvalidRequest("input must be an array", {"field": "input"})
    return value
