"""Explicit mapping between rows and domain entities."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from compute_worker.adapters import codec
from compute_worker.domain.audit import AuditEntry
from compute_worker.domain.deployments import Deployment, Endpoint, WorkflowInfo
from compute_worker.domain.execution import ExecutionRecord
from compute_worker.domain.schedules import (
    Schedule,
    ScheduleState,
    catch_up_policy,
    schedule_from_wire,
)
from compute_worker.domain.stuck import StuckRun
from compute_worker.domain.world import Event, EventType, Hook, Run, Step, StructuredError, Wait


def to_ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def from_ms(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, UTC)


def at_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def encode(value: Any) -> str:
    return codec.dumps_text(value)


def decode(text: str | None) -> Any:
    return None if text is None else codec.loads(text, codec.STORED_MAX_DEPTH)


def _error_text(error: StructuredError | None) -> str | None:
    if error is None:
        return None
    fields = {"message": error.message, "stack": error.stack, "code": error.code}
    return encode(fields if error.raw is None else {**fields, "raw": error.raw})


def error_from(text: str | None) -> StructuredError | None:
    data = decode(text)
    if data is None:
        return None
    return StructuredError(data["message"], data["stack"], data["code"], data.get("raw"))


def run_values(run: Run, immutable: bool = True) -> dict[str, Any]:
    """The row; ``immutable=False`` leaves out what never changes after creation."""
    values = {
        "status": run.status,
        "output": encode(run.output) if run.status == "completed" else None,
        "error": _error_text(run.error),
        "updated_ms": to_ms(run.updated_at),
        "started_ms": to_ms(run.started_at),
        "completed_ms": to_ms(run.completed_at),
        "expired_ms": to_ms(run.expired_at),
        "state_marker_ms": run.state_marker_ms,
        "attributes": encode(run.attributes) if run.attributes else None,
    }
    if immutable:
        context = run.execution_context
        values.update(
            run_id=run.run_id,
            deployment_id=run.deployment_id,
            workflow_name=run.workflow_name,
            spec_version=run.spec_version,
            execution_context=None if context is None else encode(context),
            input=encode(run.input),
            created_ms=to_ms(run.created_at),
        )
    return values


def run_from(row: Any) -> Run:
    return Run(
        run_id=row.run_id,
        status=row.status,
        deployment_id=row.deployment_id,
        workflow_name=row.workflow_name,
        spec_version=row.spec_version,
        execution_context=decode(row.execution_context),
        input=decode(row.input),
        output=decode(row.output),
        error=error_from(row.error),
        created_at=at_ms(row.created_ms),
        updated_at=at_ms(row.updated_ms),
        started_at=from_ms(row.started_ms),
        completed_at=from_ms(row.completed_ms),
        expired_at=from_ms(row.expired_ms),
        state_marker_ms=row.state_marker_ms,
        attributes=decode(row.attributes) or {},
    )


def step_values(step: Step, immutable: bool = True) -> dict[str, Any]:
    """The row; ``immutable=False`` leaves out what never changes after creation."""
    values = {
        "status": step.status,
        "output": encode(step.output) if step.status == "completed" else None,
        "error": _error_text(step.error),
        "attempt": step.attempt,
        "updated_ms": to_ms(step.updated_at),
        "started_ms": to_ms(step.started_at),
        "completed_ms": to_ms(step.completed_at),
        "retry_after_ms": to_ms(step.retry_after),
    }
    if immutable:
        values.update(
            run_id=step.run_id,
            step_id=step.step_id,
            step_name=step.step_name,
            input=encode(step.input),
            spec_version=step.spec_version,
            created_ms=to_ms(step.created_at),
        )
    return values


def step_from(row: Any) -> Step:
    return Step(
        run_id=row.run_id,
        step_id=row.step_id,
        step_name=row.step_name,
        status=row.status,
        input=decode(row.input),
        output=decode(row.output),
        error=error_from(row.error),
        attempt=row.attempt,
        spec_version=row.spec_version,
        created_at=at_ms(row.created_ms),
        updated_at=at_ms(row.updated_ms),
        started_at=from_ms(row.started_ms),
        completed_at=from_ms(row.completed_ms),
        retry_after=from_ms(row.retry_after_ms),
    )


def hook_values(hook: Hook) -> dict[str, Any]:
    return {
        "hook_id": hook.hook_id,
        "run_id": hook.run_id,
        "token": hook.token,
        "metadata": None if hook.metadata is None else encode(hook.metadata),
        "is_webhook": hook.is_webhook,
        "is_system": hook.is_system,
        "spec_version": hook.spec_version,
        "owner_id": hook.owner_id,
        "project_id": hook.project_id,
        "environment": hook.environment,
        "created_ms": to_ms(hook.created_at),
    }


def hook_from(row: Any) -> Hook:
    return Hook(
        hook_id=row.hook_id,
        run_id=row.run_id,
        token=row.token,
        metadata=decode(row.metadata),
        is_webhook=bool(row.is_webhook),
        is_system=bool(row.is_system),
        spec_version=row.spec_version,
        owner_id=row.owner_id,
        project_id=row.project_id,
        environment=row.environment,
        created_at=at_ms(row.created_ms),
    )


def wait_values(wait: Wait) -> dict[str, Any]:
    return {
        "run_id": wait.run_id,
        "correlation_id": wait.correlation_id,
        "status": wait.status,
        "spec_version": wait.spec_version,
        "resume_ms": to_ms(wait.resume_at),
        "completed_ms": to_ms(wait.completed_at),
        "created_ms": to_ms(wait.created_at),
        "updated_ms": to_ms(wait.updated_at),
    }


def wait_from(row: Any) -> Wait:
    return Wait(
        run_id=row.run_id,
        correlation_id=row.correlation_id,
        status=row.status,
        spec_version=row.spec_version,
        resume_at=from_ms(row.resume_ms),
        completed_at=from_ms(row.completed_ms),
        created_at=at_ms(row.created_ms),
        updated_at=at_ms(row.updated_ms),
    )


def event_values(event: Event) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "run_id": event.run_id,
        "event_type": event.event_type.value,
        "correlation_id": event.correlation_id,
        "event_data": None if event.event_data is None else encode(event.event_data),
        "spec_version": event.spec_version,
        "created_ms": to_ms(event.created_at),
        "occurred_ms": to_ms(event.occurred_at),
    }


def event_from(row: Any) -> Event:
    return Event(
        event_id=row.event_id,
        run_id=row.run_id,
        event_type=EventType(row.event_type),
        correlation_id=row.correlation_id,
        event_data=decode(row.event_data),
        spec_version=row.spec_version,
        created_at=at_ms(row.created_ms),
        occurred_at=from_ms(row.occurred_ms),
    )


def deployment_values(deployment: Deployment) -> dict[str, Any]:
    return {
        "deployment_id": deployment.deployment_id,
        "kind": deployment.kind,
        "digest": deployment.digest,
        "entrypoint": deployment.entrypoint,
        "workflows": encode([workflow_values(w) for w in deployment.workflows]),
        "metadata": None if deployment.metadata is None else encode(deployment.metadata),
        "created_ms": to_ms(deployment.created_at),
        "endpoint": None if deployment.endpoint is None else encode_endpoint(deployment.endpoint),
    }


def workflow_values(workflow: WorkflowInfo) -> dict[str, Any]:
    values: dict[str, Any] = {"name": workflow.name, "steps": list(workflow.steps)}
    if workflow.schedule is not None:
        values["schedule"] = workflow.schedule.wire()
    return values


def encode_endpoint(endpoint: Endpoint) -> str:
    return encode(
        {"url": endpoint.url, "headers": endpoint.headers, "secret": endpoint.delivery_secret}
    )


def decode_endpoint(text: str | None) -> Endpoint | None:
    found = decode(text)
    if found is None:
        return None
    return Endpoint(found["url"], dict(found.get("headers") or {}), found.get("secret"))


def deployment_from(row: Any, active_id: str | None) -> Deployment:
    return Deployment(
        deployment_id=row.deployment_id,
        kind=row.kind,
        digest=row.digest,
        entrypoint=row.entrypoint,
        workflows=tuple(
            WorkflowInfo(w["name"], tuple(w["steps"]), schedule_from_wire(w.get("schedule")))
            for w in decode(row.workflows)
        ),
        metadata=decode(row.metadata),
        created_at=at_ms(row.created_ms),
        active=row.deployment_id == active_id,
        endpoint=decode_endpoint(row.endpoint),
    )


def encode_run_snapshot(run: Run) -> str:
    return encode(run_values(run))


_LATER_RUN_COLUMNS = {
    "state_marker_ms": None,
    "attributes": None,
}  # absent from snapshots stored before them


def decode_run_snapshot(text: str) -> Run:
    """The run as it was when a response was first sent (columns as stored)."""
    return run_from(SimpleNamespace(**{**_LATER_RUN_COLUMNS, **decode(text)}))


def audit_values(entry: AuditEntry) -> dict[str, Any]:
    """Columns hold what fits them (for indexes and PostgreSQL's length limits);
    ``metadata_json`` keeps the full values a client sent."""
    return {
        "created_ms": to_ms(entry.created_at),
        "key_id": entry.key_id,
        "action": entry.action,
        "method": entry.method[:16],
        "path": entry.path[:2048],
        "status": entry.status,
        "correlation_id": entry.correlation_id[:255],
        "run_id": None if entry.run_id is None else entry.run_id[:64],
        "metadata_json": encode(entry.metadata),
    }


def audit_from(row: Any) -> AuditEntry:
    return AuditEntry(
        entry_id=row.seq,
        created_at=at_ms(row.created_ms),
        key_id=row.key_id,
        action=row.action,
        method=row.method,
        path=row.path,
        status=row.status,
        correlation_id=row.correlation_id,
        run_id=row.run_id,
        metadata=decode(row.metadata_json),
    )


def execution_values(record: ExecutionRecord) -> dict[str, Any]:
    return {
        "run_id": record.run_id,
        "start_failures": record.start_failures,
        "lost_executors": record.lost_executors,
        "last_error": record.last_error,
        "last_error_ms": to_ms(record.last_error_at),
        "next_attempt_ms": to_ms(record.next_attempt_at),
        "progress_mark": record.progress_mark,
    }


def execution_from(row: Any) -> ExecutionRecord:
    return ExecutionRecord(
        run_id=row.run_id,
        start_failures=row.start_failures,
        lost_executors=row.lost_executors,
        last_error=row.last_error,
        last_error_at=from_ms(row.last_error_ms),
        next_attempt_at=from_ms(row.next_attempt_ms),
        progress_mark=row.progress_mark,
    )


def schedule_values(state: ScheduleState) -> dict[str, Any]:
    return {
        "name": state.name,
        "deployment_id": state.deployment_id,
        "cron": state.schedule.cron,
        "timezone": state.schedule.timezone,
        "catch_up": state.schedule.catch_up,
        "last_slot_ms": to_ms(state.last_slot),
        "paused": state.paused,
        "updated_ms": to_ms(state.updated_at or state.last_slot),
    }


def schedule_from(row: Any) -> ScheduleState:
    return ScheduleState(
        name=row.name,
        deployment_id=row.deployment_id,
        schedule=Schedule(row.cron, row.timezone, catch_up_policy(row.catch_up)),
        last_slot=at_ms(row.last_slot_ms),
        paused=bool(row.paused),
        updated_at=at_ms(row.updated_ms),
    )


def stuck_values(stuck: StuckRun) -> dict[str, Any]:
    return {
        "run_id": stuck.run_id,
        "reason": stuck.reason,
        "message": stuck.message,
        "since_ms": to_ms(stuck.since),
        "detected_ms": to_ms(stuck.detected_at),
    }


def stuck_from(row: Any) -> StuckRun:
    return StuckRun(
        run_id=row.run_id,
        reason=row.reason,
        message=row.message,
        since=at_ms(row.since_ms),
        detected_at=at_ms(row.detected_ms),
    )
