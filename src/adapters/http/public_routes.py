"""The public lane (http-api.md): health, runs, deployments, schedules, webhooks.
Handlers parse, call one use case, render."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from compute_worker.adapters import bundles
from compute_worker.adapters.http import openapi, wire
from compute_worker.adapters.http import wire_schemas as schema
from compute_worker.adapters.http.auth import request_context
from compute_worker.adapters.http.routing import ApiRoute, answer, operation
from compute_worker.adapters.http.services import services
from compute_worker.adapters.http.sse import sse_events
from compute_worker.adapters.http.wire import (
    JSONResponse,
    int_param,
    number_param,
    read_object,
    resolve_param,
    unless_disconnected,
)
from compute_worker.adapters.http.wire_schemas import (
    DATE,
    INT,
    RESOLVE,
    RESOLVE_PARAM,
    SORT,
    listing,
    page,
    query,
    ref,
)
from compute_worker.adapters.world_wire import field, input_field
from compute_worker.domain import errors
from compute_worker.domain.children import parent_of
from compute_worker.domain.deployments import MAX_BUNDLE_BYTES, Deployment, Endpoint
from compute_worker.domain.use_cases.deployments import NewDeployment
from compute_worker.domain.use_cases.inspect_run import HistoryPage
from compute_worker.domain.use_cases.list_deployments import DeploymentListing
from compute_worker.domain.use_cases.list_runs import RunFilter
from compute_worker.domain.use_cases.trigger_run import Trigger
from compute_worker.domain.world import Run

ZIP_TYPES = ("application/zip", "application/x-zip-compressed")
# read as JSON like every other route: curl -d sends form-urlencoded unless told otherwise
JSON_TYPES = ("application/json", "", "application/x-www-form-urlencoded", "text/plain")
GZIP_TYPES = ("application/gzip", "application/x-gzip", "application/x-tar+gzip")
CLIENT_GONE = 499  # the status logged for a wait whose client went away (nginx's)


@operation(
    "Health",
    scope=None,
    responses={200: answer("ok", ref("Health")), 503: answer("degraded", ref("Health"))},
)
async def health(request: Request) -> Response:
    served = services(request)
    found = await served.check_health.execute()
    body = {
        "status": "ok" if found.healthy else "degraded",
        "version": served.version,
        "world": served.world,
        "activeDeploymentId": found.active_deployment_id,
        "checks": found.checks,
    }
    return JSONResponse(body, status_code=200 if found.healthy else 503)


async def _body(request: Request) -> dict[str, Any]:
    return await read_object(request, services(request).max_body_bytes)


async def _run_response(request: Request, run: Run, status: int = 200, **headers: str) -> Response:
    [shown] = await services(request).app_values.readable([run])
    return JSONResponse(wire.public_run_wire(shown), status_code=status, headers=headers)


@operation(
    "Trigger a run",
    scope="trigger:write",
    action="runs.trigger",
    responses={202: answer("accepted", ref("Run"))},
    body=schema.json_content(schema.TRIGGER),
    params=(schema.IDEMPOTENCY_KEY,),
)
async def trigger_run(request: Request) -> Response:
    body = await _body(request)
    run_input = input_field(body)
    command = Trigger(
        workflow_name=field(body, "workflowName", str, required=True),
        idempotency_key=request.headers.get("idempotency-key"),
        scope=request.state.api_key.key_id,
        input=run_input,
        deployment_id=field(body, "deploymentId", str),
        execution_context=field(body, "executionContext", dict),
        traceparent=services(request).tracer.current(),
    )
    result = await services(request).trigger_run.execute(command, request_context(request))
    headers = {"Location": f"/v1/runs/{result.run.run_id}"}
    if result.replayed:
        headers["Idempotency-Replayed"] = "true"
    return await _run_response(request, result.run, 202, **headers)


@operation(
    "Read a run; with `wait`, once it has ended or `wait` seconds have passed",
    scope="runs:read",
    responses={200: answer("the run", ref("Run"))},
    params=(query("resolveData", RESOLVE), query("wait", schema.RUN_WAIT)),
)
async def get_run(request: Request) -> Response:
    resolve = resolve_param(request)
    wait = number_param(request, "wait")
    served = services(request)
    read = served.query_world.get_run_view(request.path_params["run_id"], wait)
    view = await (read if wait is None else unless_disconnected(request, read))
    if view is None:
        return Response(status_code=CLIENT_GONE)  # no one reads it
    [run] = await served.app_values.readable([view.run])
    out = wire.public_run_wire(run, resolve, view.execution, served.retry_policy, view.stuck)
    link = parent_of(run)
    if link is not None:
        out["parentRunId"] = link[0]
    out["children"] = [{"runId": child, "workflowName": name} for child, name in view.children]
    return JSONResponse(out)


@operation(
    "Cancel a run",
    scope="runs:write",
    action="runs.cancel",
    responses={200: answer("cancelled", ref("Run"))},
)
async def cancel_run(request: Request) -> Response:
    run = await services(request).cancel_run.execute(
        request.path_params["run_id"], request_context(request)
    )
    return await _run_response(request, run)


@operation(
    "Resume a run through its hook token",
    scope="runs:write",
    action="runs.resume",
    responses={202: answer("delivered", schema.RESUMED)},
    body=schema.json_content(schema.RESUME),
)
async def resume_run(request: Request) -> Response:
    body = await _body(request)
    token = field(body, "token", str, required=True)
    resumed = await services(request).resume_hook.execute(
        token, body.get("payload"), request_context(request)
    )
    return JSONResponse(
        {"runId": resumed.run_id, "hookId": resumed.hook_id, "token": resumed.token},
        status_code=202,
    )


async def _new_deployment(request: Request) -> NewDeployment:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ZIP_TYPES or content_type in GZIP_TYPES:
        raw = await wire.read_bytes(request, MAX_BUNDLE_BYTES)
        files = (
            bundles.files_from_zip(raw) if content_type in ZIP_TYPES
            else bundles.files_from_targz(raw)
        )  # fmt: skip
        manifest = bundles.read_manifest(files)
        metadata = _metadata_param(request) or manifest.get("metadata")
        return NewDeployment(
            kind=request.query_params.get("kind") or manifest.get("kind") or "python",
            files=files,
            entrypoint=request.query_params.get("entrypoint") or manifest.get("entrypoint"),
            metadata=metadata if isinstance(metadata, dict) else None,
        )
    if content_type not in JSON_TYPES and not content_type.endswith("+json"):
        raise errors.InvalidRequest(
            "Upload a bundle as application/json, application/zip or application/gzip",
            {"field": "content-type"},
        )
    body = await read_object(request, max(services(request).max_body_bytes, MAX_BUNDLE_BYTES))
    kind = field(body, "kind", str) or "python"
    endpoint = field(body, "endpoint", dict)
    if kind == "wdk" or endpoint is not None:
        files = field(body, "files", dict) or {}
        return NewDeployment(
            kind=kind,
            files=bundles.files_from_json(files) if files else {},
            metadata=field(body, "metadata", dict),
            endpoint=None if endpoint is None else _endpoint(endpoint),
        )
    return NewDeployment(
        kind=kind,
        files=bundles.files_from_json(field(body, "files", dict, required=True)),
        entrypoint=field(body, "entrypoint", str),
        metadata=field(body, "metadata", dict),
    )


def _endpoint(body: dict[str, Any]) -> Endpoint:
    """``{"url", "headers"?: {name: value}, "deliverySecret"?}`` of a wdk deployment."""
    headers = field(body, "headers", dict, path="endpoint.headers") or {}
    if not all(isinstance(value, str) for value in headers.values()):
        raise errors.InvalidRequest(
            "endpoint.headers values must be strings", {"field": "endpoint.headers"}
        )
    unknown = sorted(set(body) - {"url", "headers", "deliverySecret"})
    if unknown:
        raise errors.InvalidRequest(
            f"endpoint has unknown field(s): {', '.join(unknown)}", {"field": "endpoint"}
        )
    return Endpoint(
        url=field(body, "url", str, required=True, path="endpoint.url"),
        headers=headers,
        delivery_secret=field(body, "deliverySecret", str, path="endpoint.deliverySecret"),
    )


def _metadata_param(request: Request) -> dict[str, Any] | None:
    """``?metadata=<JSON object>`` for bundle uploads (wins over the manifest's table)."""
    raw = request.query_params.get("metadata")
    if raw is None or raw == "":
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise errors.InvalidRequest("metadata must be a JSON object", {"field": "metadata"})
    return value


def _deployment_response(deployment: Deployment, status: int = 200) -> Response:
    return JSONResponse(wire.deployment_wire(deployment), status_code=status)


@operation(
    "Create a deployment from a bundle, or register a WDK app (kind wdk)",
    scope="deploy:write",
    action="deployments.create",
    responses={
        201: answer("created", ref("Deployment")),
        422: answer("invalid bundle", ref("Error")),
    },
    body=schema.BUNDLE_UPLOAD,
    params=(query("kind"), query("entrypoint"), query("metadata")),
)
async def create_deployment(request: Request) -> Response:
    command = await _new_deployment(request)
    deployment = await services(request).create_deployment.execute(
        command, request_context(request)
    )
    return _deployment_response(deployment, 201)


@operation(
    "Activate a deployment",
    scope="deploy:write",
    action="deployments.activate",
    responses={200: answer("active", ref("Deployment"))},
)
async def activate_deployment(request: Request) -> Response:
    deployment = await services(request).activate_deployment.execute(
        request.path_params["deployment_id"], request_context(request)
    )
    return _deployment_response(deployment)


@operation(
    "Read a deployment (`active` names the active one)",
    scope="deploy:read",
    responses={200: answer("the deployment", ref("Deployment"))},
)
async def get_deployment(request: Request) -> Response:
    deployment = await services(request).get_deployment.execute(
        request.path_params["deployment_id"]
    )
    return _deployment_response(deployment)


# -- listings and a run's history -----------------------------------------------------------


def _only(request: Request, allowed: Collection[str]) -> None:
    """Unknown query parameters are refused, so that a misspelt filter is not ignored."""
    for name in request.query_params:
        if name not in allowed:
            raise errors.InvalidRequest(
                f"unknown query parameter {name!r}; known: {', '.join(sorted(allowed))}",
                {"field": name},
            )


def _date_param(request: Request, name: str) -> datetime | None:
    """An ISO-8601 date or time; without an offset it is taken as UTC."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        moment = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise errors.InvalidRequest(
            f"{name} must be an ISO-8601 date-time such as 2026-11-24T14:41:27Z",
            {"field": name},
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _bool_param(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() not in ("true", "false"):
        raise errors.InvalidRequest(f"{name} must be true or false", {"field": name})
    return raw.lower() == "true"


def _statuses(request: Request) -> tuple[str, ...]:
    """``status=a,b`` and ``status=a&status=b`` alike."""
    return tuple(
        item.strip()
        for raw in request.query_params.getlist("status")
        for item in raw.split(",")
        if item.strip()
    )


def _history_page(request: Request) -> HistoryPage:
    return HistoryPage(
        limit=int_param(request, "limit"),
        cursor=request.query_params.get("cursor") or None,
        sort_order=request.query_params.get("sortOrder") or None,
    )


RUN_FILTERS = ("status", "workflowName", "deploymentId", "createdAfter", "createdBefore", "stuck")
PAGING = ("limit", "cursor")


@operation(
    "List runs, newest first",
    scope="runs:read",
    responses={200: answer("page", page("Run"))},
    params=(
        query("status", schema.STATUSES),
        query("workflowName", schema.WORKFLOW_FILTER),
        query("deploymentId", schema.DEPLOYMENT_FILTER),
        query("createdAfter", DATE),
        query("createdBefore", DATE),
        query(
            "stuck",
            {
                "type": "boolean",
                "description": "only runs the stuck-run detector "
                "found stuck (true) or not stuck (false)",
            },
        ),
        *listing(RESOLVE_PARAM),
    ),
)
async def list_runs(request: Request) -> Response:
    _only(request, (*RUN_FILTERS, *PAGING, "resolveData"))
    params = request.query_params
    resolve = resolve_param(request)
    command = RunFilter(
        statuses=_statuses(request),
        workflow_name=params.get("workflowName") or None,
        deployment_id=params.get("deploymentId") or None,
        created_after=_date_param(request, "createdAfter"),
        created_before=_date_param(request, "createdBefore"),
        stuck=_bool_param(request, "stuck"),
        limit=int_param(request, "limit"),
        cursor=params.get("cursor") or None,
    )
    listing = await services(request).list_runs.execute(command)
    shown = await services(request).app_values.readable(listing.page.data)
    return JSONResponse(
        wire.page_wire(
            replace(listing.page, data=tuple(shown)),
            lambda run: wire.public_run_wire(run, resolve, stuck=listing.stuck.get(run.run_id)),
        )
    )


@operation(
    "A run's steps, oldest first",
    scope="runs:read",
    responses={200: answer("page", page("PublicStep"))},
    params=listing(SORT, RESOLVE_PARAM),
)
async def list_run_steps(request: Request) -> Response:
    _only(request, (*PAGING, "sortOrder", "resolveData"))
    resolve = resolve_param(request)
    page = await services(request).inspect_run.steps(
        request.path_params["run_id"], _history_page(request)
    )
    return JSONResponse(wire.page_wire(page, lambda step: wire.public_step_wire(step, resolve)))


@operation(
    "A run's event log, oldest first (hook tokens only for keys holding runs:write)",
    scope="runs:read",
    responses={200: answer("page", page("PublicEvent"))},
    params=listing(SORT, RESOLVE_PARAM),
)
async def list_run_events(request: Request) -> Response:
    _only(request, (*PAGING, "sortOrder", "resolveData"))
    resolve = resolve_param(request)
    page = await services(request).inspect_run.events(
        request.path_params["run_id"], _history_page(request), resolve, request.state.api_key
    )
    return JSONResponse(wire.page_wire(page, wire.public_event_wire))


@operation(
    "A run's live hooks (tokens only for keys holding runs:write)",
    scope="runs:read",
    responses={200: answer("page", page("PublicHook"))},
    params=listing(SORT),
)
async def list_run_hooks(request: Request) -> Response:
    _only(request, (*PAGING, "sortOrder"))
    found = await services(request).inspect_run.hooks(
        request.path_params["run_id"], _history_page(request), request.state.api_key
    )
    return JSONResponse(
        wire.page_wire(found.page, lambda hook: wire.public_hook_wire(hook, found.tokens_visible))
    )


@operation(
    "A run's streams",
    scope="runs:read",
    responses={200: answer("streams", schema.RUN_STREAMS)},
)
async def list_run_streams(request: Request) -> Response:
    _only(request, ())
    streams = await services(request).run_streams.describe(request.path_params["run_id"])
    return JSONResponse(
        {"data": [{"name": s.name, "chunks": s.chunks, "done": s.done} for s in streams]}
    )


STREAM_FORMATS = ("sse", "bytes")
SSE_TYPE = "text/event-stream"


def _wants_sse(request: Request) -> bool:
    chosen = request.query_params.get("format")
    if chosen:
        if chosen not in STREAM_FORMATS:
            raise errors.InvalidRequest(
                f"format must be one of {', '.join(STREAM_FORMATS)}", {"field": "format"}
            )
        return chosen == "sse"
    return SSE_TYPE in request.headers.get("accept", "")


def _start_index(request: Request, sse: bool) -> int:
    """``startIndex``; an SSE client reconnecting with ``Last-Event-ID`` resumes after it."""
    last = request.headers.get("last-event-id", "").strip()
    if sse and last.isascii() and last.isdigit() and len(last) < 19:
        return int(last) + 1
    return int_param(request, "startIndex") or 0


async def _data_only(chunks: AsyncIterator[tuple[int, bytes]]) -> AsyncIterator[bytes]:
    async for _, data in chunks:
        yield data


@operation(
    "Read one stream of the run live, until it closes or the run has ended",
    scope="runs:read",
    responses={200: ("the chunks, as they are written", schema.RUN_STREAM_CHUNKS)},
    params=(
        query("startIndex", INT),
        query("format", {"type": "string", "enum": ["sse", "bytes"]}),
    ),
)
async def read_run_stream(request: Request) -> Response:
    _only(request, ("startIndex", "format"))
    sse = _wants_sse(request)
    start = _start_index(request, sse)
    chunks = await services(request).run_streams.open(
        request.path_params["run_id"], request.path_params["name"], start
    )
    if sse:
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(sse_events(chunks, start), media_type=SSE_TYPE, headers=headers)
    return StreamingResponse(_data_only(chunks), media_type="application/octet-stream")


def _listing_wire(listing: DeploymentListing) -> dict[str, Any]:
    return {**wire.deployment_wire(listing.deployment), "pinnedRuns": listing.pinned_runs}


@operation(
    "List deployments, newest first",
    scope="deploy:read",
    responses={200: answer("page", page("DeploymentListing"))},
    params=listing(),
)
async def list_deployments(request: Request) -> Response:
    _only(request, PAGING)
    page = await services(request).list_deployments.execute(
        int_param(request, "limit"), request.query_params.get("cursor") or None
    )
    return JSONResponse(wire.page_wire(page, _listing_wire))


# -- schedules ------------------------------------------------------------------------------


@operation(
    "List the active deployment's schedules with their next fire times",
    scope="deploy:read",
    responses={200: answer("schedules by name", schema.SCHEDULES)},
)
async def list_schedules(request: Request) -> Response:
    found = await services(request).list_schedules.execute()
    return JSONResponse({"data": [wire.schedule_wire(view) for view in found]})


@operation(
    "Read a schedule",
    scope="deploy:read",
    responses={200: answer("the schedule", ref("Schedule"))},
)
async def get_schedule(request: Request) -> Response:
    view = await services(request).list_schedules.get(request.path_params["name"])
    return JSONResponse(wire.schedule_wire(view))


async def _set_paused(request: Request, paused: bool) -> Response:
    served = services(request)
    name = request.path_params["name"]
    await served.pause_schedule.execute(name, paused, request_context(request))
    return JSONResponse(wire.schedule_wire(await served.list_schedules.get(name)))


@operation(
    "Pause a schedule (no run starts until it is resumed)",
    scope="deploy:write",
    action="schedules.pause",
    responses={200: answer("paused", ref("Schedule"))},
)
async def pause_schedule(request: Request) -> Response:
    return await _set_paused(request, True)


@operation(
    "Resume a schedule from now (the slots that came due while paused are not started)",
    scope="deploy:write",
    action="schedules.resume",
    responses={200: answer("resumed", ref("Schedule"))},
)
async def resume_schedule(request: Request) -> Response:
    return await _set_paused(request, False)


@operation(
    "Start a scheduled workflow now, outside its calendar",
    scope="trigger:write",
    action="schedules.trigger",
    responses={202: answer("accepted", ref("Run"))},
    params=({**schema.IDEMPOTENCY_KEY, "required": False},),
)
async def trigger_schedule(request: Request) -> Response:
    result = await services(request).trigger_schedule.execute(
        request.path_params["name"],
        request.headers.get("idempotency-key"),
        request.state.api_key.key_id,
        request_context(request),
    )
    headers = {"Location": f"/v1/runs/{result.run.run_id}"}
    if result.replayed:
        headers["Idempotency-Replayed"] = "true"
    return await _run_response(request, result.run, 202, **headers)


@operation(
    "Receive a signed third-party webhook",
    scope=None,
    responses={
        202: answer("accepted", schema.WEBHOOK_ACCEPTED),
        200: answer("duplicate delivery", schema.WEBHOOK_DUPLICATE),
    },
    body=schema.json_content({"type": "object"}),
)
async def receive_webhook(request: Request) -> Response:
    body = await wire.read_bytes(request, services(request).max_body_bytes)
    headers = {key.lower(): value for key, value in request.headers.items()}
    delivered = await services(request).receive_webhook.execute(
        request.path_params["provider"], headers, body, request_context(request)
    )
    if delivered.duplicate:
        return JSONResponse({"duplicate": True, "deliveryId": delivered.delivery_id})
    answer: dict[str, Any] = {"deliveryId": delivered.delivery_id}
    if delivered.run_id is not None:
        answer["runId"] = delivered.run_id
    return JSONResponse(answer, status_code=202)


ROUTES = [
    ApiRoute("GET", "/v1/health", health),
    ApiRoute("GET", "/v1/openapi.json", openapi.openapi),
    ApiRoute("POST", "/v1/runs", trigger_run),
    ApiRoute("GET", "/v1/runs", list_runs),
    ApiRoute("POST", "/v1/runs/resume", resume_run),
    ApiRoute("GET", "/v1/runs/{run_id}", get_run),
    ApiRoute("POST", "/v1/runs/{run_id}/cancel", cancel_run),
    ApiRoute("GET", "/v1/runs/{run_id}/steps", list_run_steps),
    ApiRoute("GET", "/v1/runs/{run_id}/events", list_run_events),
    ApiRoute("GET", "/v1/runs/{run_id}/hooks", list_run_hooks),
    ApiRoute("GET", "/v1/runs/{run_id}/streams", list_run_streams),
    ApiRoute("GET", "/v1/runs/{run_id}/streams/{name:path}", read_run_stream),
    ApiRoute("POST", "/v1/deployments", create_deployment),
    ApiRoute("GET", "/v1/deployments", list_deployments),
    ApiRoute("GET", "/v1/deployments/{deployment_id}", get_deployment),
    ApiRoute("POST", "/v1/deployments/{deployment_id}/activate", activate_deployment),
    ApiRoute("GET", "/v1/schedules", list_schedules),
    ApiRoute("GET", "/v1/schedules/{name}", get_schedule),
    ApiRoute("POST", "/v1/schedules/{name}/pause", pause_schedule),
    ApiRoute("POST", "/v1/schedules/{name}/resume", resume_schedule),
    ApiRoute("POST", "/v1/schedules/{name}/trigger", trigger_schedule),
    ApiRoute("POST", "/v1/webhooks/{provider}", receive_webhook),
]
