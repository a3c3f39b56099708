"""Checks of a request that need no state (world.md §1.5, §2.0): an ``events.create``
request's shape, the lengths the columns hold, dates, a client-chosen run id.

Pure; each refusal is an ``InvalidRequest`` naming the field. The reducer runs
``check_request_shape`` again before deciding, so no path skips it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
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

# Run attributes (spec ≥ 4), with the limits of @workflow/world's ``attributes.js``.
ATTRIBUTE_KEY_MAX = 256  # characters
ATTRIBUTE_VALUE_MAX_BYTES = 256  # UTF-8
ATTRIBUTES_PER_RUN = 64  # after the merge
RESERVED_ATTRIBUTE_PREFIX = "$"  # framework keys ($rootRunId, $parentRunId): only when allowed
AttributeChange = tuple[str, str | None]  # value None removes the key


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
    for flag in ("isWebhook", "isSystem"):
        if kind is EventType.HOOK_CREATED and data.get(flag) not in (None, True, False):
            raise errors.InvalidRequest(
                f"eventData.{flag} must be a boolean", {"field": f"data.eventData.{flag}"}
            )
    if kind in (EventType.RUN_CREATED, EventType.RUN_STARTED, EventType.ATTR_SET):
        allow_reserved(data, "data.eventData.allowReservedAttributes")
    if kind in (EventType.RUN_CREATED, EventType.RUN_STARTED) and "attributes" in data:
        parse_attributes(data["attributes"], "data.eventData.attributes")
    if kind is EventType.ATTR_SET:
        parse_attribute_changes(data["changes"], "data.eventData.changes")
        _check_writer(data["writer"])
    if kind is EventType.WAIT_CREATED:
        parse_date(data["resumeAt"], "resumeAt")
    if kind is EventType.STEP_RETRYING and data.get("retryAfter") is not None:
        parse_date(data["retryAfter"], "retryAfter")


def _check_writer(writer: Any) -> None:
    where = "data.eventData.writer"
    kind = writer.get("type") if isinstance(writer, dict) else None
    if kind == "workflow":
        return
    if kind == "step":
        step_id, attempt = writer.get("stepId"), writer.get("attempt")
        if isinstance(step_id, str) and isinstance(attempt, int) and not isinstance(attempt, bool):
            return
        raise errors.InvalidRequest(
            "eventData.writer of type step needs stepId (string) and attempt (integer)",
            {"field": where},
        )
    raise errors.InvalidRequest(
        'eventData.writer must be {"type": "workflow"} or {"type": "step", stepId, attempt}',
        {"field": where},
    )


def allow_reserved(data: Mapping[str, Any], where: str) -> bool:
    """``allowReservedAttributes``: absent, or ``true`` (WDK's schema is ``literal(true)``)."""
    value = data.get("allowReservedAttributes")
    if value is None:
        return False
    if value is not True:
        raise errors.InvalidRequest(f"{where.removeprefix('data.')} must be true", {"field": where})
    return True


def parse_attributes(value: Any, where: str) -> dict[str, str]:
    """A run's initial attributes: an object of strings."""
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise errors.InvalidRequest(
            f"{where.removeprefix('data.')} must be an object of strings", {"field": where}
        )
    return dict(value)


def parse_attribute_changes(value: Any, where: str) -> tuple[AttributeChange, ...]:
    """``[{key, value: string | null}, …]``."""

    def valid(item: Any) -> bool:
        return (
            isinstance(item, dict)
            and isinstance(item.get("key"), str)
            and "value" in item
            and (item["value"] is None or isinstance(item["value"], str))
        )

    if not isinstance(value, list) or not all(valid(item) for item in value):
        raise errors.InvalidRequest(
            f"{where.removeprefix('data.')} must be an array of "
            "{key: string, value: string | null}",
            {"field": where},
        )
    return tuple((item["key"], item["value"]) for item in value)


def check_attribute_changes(
    changes: Sequence[AttributeChange],
    existing: Collection[str],
    allow_reserved_keys: bool,
    where: str,
) -> None:
    """The rules of @workflow/world's ``validateAttributeChanges``, against the run's keys."""
    seen: set[str] = set()
    after = set(existing)
    for key, value in changes:
        problem = None
        if not key:
            problem = "an attribute key must not be empty"
        elif len(key) > ATTRIBUTE_KEY_MAX:
            problem = f"attribute key longer than {ATTRIBUTE_KEY_MAX} characters"
        elif key.startswith(RESERVED_ATTRIBUTE_PREFIX) and not allow_reserved_keys:
            problem = f'attribute key "{key}" is reserved (allowReservedAttributes not set)'
        elif value is not None and len(value.encode()) > ATTRIBUTE_VALUE_MAX_BYTES:
            problem = f'attribute "{key}" is longer than {ATTRIBUTE_VALUE_MAX_BYTES} bytes'
        elif key in seen:
            problem = f'attribute key "{key}" appears more than once'
        if problem is not None:
            raise errors.InvalidRequest(problem, {"field": where, "key": key})
        seen.add(key)
        if value is None:
            after.discard(key)
        else:
            after.add(key)
    if len(after) > ATTRIBUTES_PER_RUN:
        raise errors.InvalidRequest(
            f"a run holds at most {ATTRIBUTES_PER_RUN} attributes (would be {len(after)})",
            {"field": where},
        )


def apply_attribute_changes(
    existing: Mapping[str, str], changes: Sequence[AttributeChange]
) -> dict[str, str]:
    merged = dict(existing)
    for key, value in changes:
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


_REQUIRED_FIELDS: dict[EventType, tuple[str, ...]] = {
    EventType.RUN_CREATED: ("deploymentId", "workflowName", "input"),
    EventType.STEP_CREATED: ("stepName", "input"),
    EventType.STEP_COMPLETED: ("result",),
    EventType.HOOK_CREATED: ("token",),
    EventType.HOOK_RECEIVED: ("payload",),
    EventType.WAIT_CREATED: ("resumeAt",),
    EventType.ATTR_SET: ("changes", "writer"),
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
