"""The wire format: camelCase JSON, ISO-8601 UTC dates with milliseconds, bytes as
Uint8Array envelopes. The World's own entities are ``adapters.world_wire``'s (the process
backend speaks them too); with it, the only module that spells camelCase."""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from compute_worker.adapters import codec
from compute_worker.adapters.world_wire import event_wire, iso, run_wire, step_wire
from compute_worker.domain import errors
from compute_worker.domain.deployments import Deployment, WorkflowInfo
from compute_worker.domain.execution import ExecutionRecord, RetryPolicy
from compute_worker.domain.pagination import Page
from compute_worker.domain.stuck import StuckRun
from compute_worker.domain.use_cases.schedules import ScheduleView
from compute_worker.domain.world import Event, Hook, ResolveData, Run, Step

T = TypeVar("T")
JSON_TYPE = "application/json; charset=utf-8"
# a JSON number: no ``nan``, ``inf``, ``0x10``, ``1_000`` or spaces, which ``float`` takes
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


class JSONResponse(Response):
    media_type = JSON_TYPE

    def render(self, content: Any) -> bytes:
        return codec.dumps(content)


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


def resolve_data(value: Any, where: str = "resolveData") -> ResolveData:
    if value is None or value == "all":
        return "all"
    if value == "none":
        return "none"
    raise errors.InvalidRequest(f"{where} must be 'all' or 'none'", {"field": where})


def resolve_param(request: Request) -> ResolveData:
    """``?resolveData=``: empty is left out, as every optional query parameter's is
    (``wire_schemas.query``)."""
    return resolve_data(request.query_params.get("resolveData") or None)


def int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise errors.InvalidRequest(f"{name} must be an integer", {"field": name}) from None


def number_param(request: Request, name: str) -> float | None:
    """A finite number written as JSON writes one; absent is None, anything else
    (empty included) is 400 ``invalid_request`` naming the parameter."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    value = float(raw) if _NUMBER.fullmatch(raw) else math.nan
    if not math.isfinite(value):  # 1e999 too
        raise errors.InvalidRequest(f"{name} must be a number", {"field": name})
    return value


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T | None:
    """``work``'s outcome; or None as soon as the client has gone, ``work`` cancelled.
    Hypercorn does not cancel a handler whose client went away: it only hands it
    ``http.disconnect``, so a long wait would run on for no one."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return task.result() if not task.cancelled() else None


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
