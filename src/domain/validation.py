"""Checks of a request that need no state (world.md §1.5, §2.0): an ``events.create``
request's shape, the lengths the columns hold, dates, a client-chosen run id.

Pure; each refusal is an ``InvalidRequest`` naming the field. The reducer runs
``check_request_shape`` again before deciding, so no path skips it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from compute_worker.domain import errors, ids
from compute_worker.domain.world import (
    MAX_CORRELATION_ID,
    MAX_DEPLOYMENT_ID,
    MAX_NAME,
    MAX_TOKEN,
    EventRequest,
    EventType,
)

RUN_ID_MAX_AGE = timedelta(hours=24)
MAX_SPEC_VERSION = 2**31  # stored as a 32-bit integer
RUN_ID_MAX_SKEW = timedelta(minutes=5)

_NEEDS_CORRELATION = frozenset({"step", "hook", "wait"})


def validate_client_run_id(run_id: str, now: datetime) -> None:
    """A client-chosen run id must be a ``wrun_`` ULID minted within 24 h past .. 5 min future."""
    try:
        stamp_ms = ids.ulid_timestamp_ms(run_id, ids.RUN)
    except ValueError:
        raise errors.InvalidRequest(f'Invalid runId: "{run_id}" is not a valid ULID') from None
    stamp = datetime.fromtimestamp(stamp_ms / 1000, UTC)
    if stamp < now - RUN_ID_MAX_AGE:
        seconds = int((now - stamp).total_seconds())
        raise errors.InvalidRequest(
            f"Invalid runId timestamp: embedded timestamp is {seconds}s in the past "
            f"(threshold: {int(RUN_ID_MAX_AGE.total_seconds())}s)"
        )
    if stamp > now + RUN_ID_MAX_SKEW:
        seconds = int((stamp - now).total_seconds())
        raise errors.InvalidRequest(
            f"Invalid runId timestamp: embedded timestamp is {seconds}s in the future "
            f"(threshold: {int(RUN_ID_MAX_SKEW.total_seconds())}s)"
        )


def check_request_shape(request: EventRequest) -> None:
    """Validation that needs no state: correlation ids, required eventData fields."""
    kind = request.event_type
    spec = request.spec_version
    if spec is not None and not 0 <= spec < MAX_SPEC_VERSION:
        raise errors.InvalidRequest(
            f"specVersion must be between 0 and {MAX_SPEC_VERSION - 1}",
            {"field": "data.specVersion"},
        )
    if kind is EventType.HOOK_CONFLICT:
        raise errors.InvalidRequest(
            "hook_conflict events are written by the world only", {"field": "data.eventType"}
        )
    if kind.family in _NEEDS_CORRELATION and not request.correlation_id:
        raise errors.InvalidRequest(
            f"{kind.value} needs a correlationId", {"field": "data.correlationId"}
        )
    check_length(request.correlation_id, MAX_CORRELATION_ID, "data.correlationId")
    data = request.event_data or {}
    for name in _REQUIRED_FIELDS.get(kind, ()):
        if name not in data:
            raise errors.InvalidRequest(
                f"{kind.value} needs eventData.{name}", {"field": f"data.eventData.{name}"}
            )
    for name in _STRING_FIELDS.get(kind, ()):
        if name in data and (not isinstance(data[name], str) or not data[name]):
            raise errors.InvalidRequest(
                f"eventData.{name} must be a non-empty string",
                {"field": f"data.eventData.{name}"},
            )
        if name in data:
            check_length(data[name], _MAX_LENGTHS[name], f"data.eventData.{name}")
    context = data.get("executionContext")
    if kind is EventType.RUN_CREATED and context is not None and not isinstance(context, dict):
        raise errors.InvalidRequest(
            "eventData.executionContext must be an object",
            {"field": "data.eventData.executionContext"},
        )
    if kind is EventType.HOOK_CREATED and data.get("isWebhook") not in (None, True, False):
        raise errors.InvalidRequest(
            "eventData.isWebhook must be a boolean", {"field": "data.eventData.isWebhook"}
        )
    if kind is EventType.WAIT_CREATED:
        parse_date(data["resumeAt"], "resumeAt")
    if kind is EventType.STEP_RETRYING and data.get("retryAfter") is not None:
        parse_date(data["retryAfter"], "retryAfter")


_REQUIRED_FIELDS: dict[EventType, tuple[str, ...]] = {
    EventType.RUN_CREATED: ("deploymentId", "workflowName", "input"),
    EventType.STEP_CREATED: ("stepName", "input"),
    EventType.STEP_COMPLETED: ("result",),
    EventType.HOOK_CREATED: ("token",),
    EventType.HOOK_RECEIVED: ("payload",),
    EventType.WAIT_CREATED: ("resumeAt",),
}
_STRING_FIELDS: dict[EventType, tuple[str, ...]] = {
    EventType.RUN_CREATED: ("deploymentId", "workflowName"),
    EventType.RUN_STARTED: ("deploymentId", "workflowName"),
    EventType.STEP_CREATED: ("stepName",),
    EventType.HOOK_CREATED: ("token",),
}


_MAX_LENGTHS = {"deploymentId": MAX_DEPLOYMENT_ID, "workflowName": MAX_NAME,
                "stepName": MAX_NAME, "token": MAX_TOKEN}  # fmt: skip


def check_length(value: str | None, limit: int, field: str) -> None:
    """Longer values cannot be stored; refuse them the same way on every database."""
    if value is not None and len(value) > limit:
        raise errors.InvalidRequest(f"{field} is longer than {limit} characters", {"field": field})


def parse_date(value: Any, name: str, where: str | None = None) -> datetime:
    """Dates arrive as ISO-8601 strings or epoch milliseconds (zod ``coerce.date``);
    ``where`` is the field's path for errors (default: ``data.eventData.<name>``)."""
    try:
        if isinstance(value, datetime):
            parsed = value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            parsed = datetime.fromtimestamp(value / 1000, UTC)
        elif isinstance(value, str):
            parsed = datetime.fromisoformat(value)
        else:
            raise TypeError(name)
    except (TypeError, ValueError, OverflowError, OSError):
        field = where or f"data.eventData.{name}"
        raise errors.InvalidRequest(
            f"{field.removeprefix('data.')} must be an ISO-8601 date or epoch milliseconds",
            {"field": field},
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
