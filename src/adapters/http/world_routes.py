"""The world-proxy lane (world.md D1-D4): ``/v1/queue/*`` and ``/v1/world/*``,
scope ``world:proxy``. Handlers parse, call one use case, render."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from compute_worker.adapters import world_wire
from compute_worker.adapters.http import wire
from compute_worker.adapters.http import wire_schemas as schema
from compute_worker.adapters.http.auth import Handler, request_context
from compute_worker.adapters.http.routing import Answers, ApiRoute, Endpoint, answer, operation
from compute_worker.adapters.http.services import services
from compute_worker.adapters.http.wire import (
    JSONResponse,
    int_param,
    read_object,
    resolve_data,
    resolve_param,
)
from compute_worker.adapters.http.wire_schemas import (
    BINARY,
    INT,
    NAME,
    RESOLVE_PARAM,
    STREAM_CURSOR,
    Content,
    JsonSchema,
    page,
    query,
    ref,
)
from compute_worker.adapters.world_wire import (
    event_request_from,
    event_requests_from,
    field,
    input_field,
)
from compute_worker.domain import errors, ids
from compute_worker.domain.api_keys import WORLD_SCOPE
from compute_worker.domain.pagination import MAX_STORED_INT, decode_cursor
from compute_worker.domain.use_cases.proxy_world_event import CreateEvent
from compute_worker.domain.use_cases.publish_message import Publish
from compute_worker.domain.use_cases.query_world import Paging
from compute_worker.domain.validation import (
    allow_reserved,
    check_length,
    parse_attribute_changes,
    parse_date,
)
from compute_worker.domain.world import CreateParams, EventRequest

DEPLOYMENT_HEADER = "x-compute-deployment-id"  # the app's own deployment (LANE.md §1)
APP_URL_HEADER = "x-compute-app-url"  # where the app listens now (LANE.md §3)


def world(
    summary: str,
    responses: Answers,
    *,
    action: str | None = None,
    body: JsonSchema | None = None,
    params: tuple[JsonSchema, ...] = (),
) -> Callable[[Handler], Endpoint]:
    """An operation of the lane: scope ``world:proxy``; ``action`` for a write."""
    content: Content | None = None if body is None else schema.json_content(body)
    return operation(summary, scope=WORLD_SCOPE, responses=responses, action=action,
                     body=content, params=params)  # fmt: skip


async def _body(request: Request) -> dict[str, Any]:
    return await read_object(request, services(request).max_body_bytes)


def _paging(body: dict[str, Any]) -> Paging:
    pagination = field(body, "pagination", dict) or {}
    return Paging(
        limit=field(pagination, "limit", int, path="pagination.limit"),
        cursor=field(pagination, "cursor", str, path="pagination.cursor"),
        sort_order=field(pagination, "sortOrder", str, path="pagination.sortOrder"),
    )


def _event_request(body: dict[str, Any]) -> EventRequest:
    return event_request_from(field(body, "data", dict, required=True), "data")


MAX_REQUEST_ID = 255


def _create_params(params: dict[str, Any]) -> CreateParams:
    """``params`` of ``events.create`` (``v1Compat`` and ``skipPreload`` are accepted and
    change nothing)."""
    seen = field(params, "stateUpdatedAt", (int, float), path="params.stateUpdatedAt")
    if seen is not None and not 0 <= seen < MAX_STORED_INT:
        raise errors.InvalidRequest(
            "params.stateUpdatedAt must be epoch milliseconds", {"field": "params.stateUpdatedAt"}
        )
    for flag in ("v1Compat", "skipPreload"):  # accepted, change nothing, yet booleans
        field(params, flag, bool, path=f"params.{flag}")
    occurred = params.get("occurredAt")
    request_id = field(params, "requestId", str, path="params.requestId")
    check_length(request_id, MAX_REQUEST_ID, "params.requestId")
    since = field(params, "sinceCursor", str, path="params.sinceCursor")
    return CreateParams(
        state_updated_at=None if seen is None else int(seen),
        occurred_at=None
        if occurred is None
        else parse_date(occurred, "occurredAt", "params.occurredAt"),
        request_id=request_id,
        since=None if since is None else decode_cursor(since, "params.sinceCursor"),
    )


class EventIdConvertor(Convertor[str]):
    """An event id in a path: ``evnt_…``, so ``GET /v1/world/events/create`` stays a 405
    of the POST route rather than a lookup of an event called "create"."""

    regex = ids.EVENT + "[0-9A-Za-z]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("event_id", EventIdConvertor())


@world(
    "events.create() for several events of one run, all or nothing",
    {
        200: answer("the result of each event", schema.EVENT_RESULTS),
        410: answer("the run is already terminal", ref("Error")),
        422: answer("the run's specVersion is newer than this server's", ref("Error")),
    },
    action="world.events.create-batch",
    body=schema.EVENT_BATCH,
)
async def create_events(request: Request) -> Response:
    """An extension of the lane: several events of one run in one transaction (all or
    nothing)."""
    body = await _body(request)
    run_id = field(body, "runId", str, required=True)
    requests = event_requests_from(field(body, "events", list, required=True))
    results = await services(request).record_run_events.execute(
        run_id, requests, request_context(request), answer_logs=True
    )
    return JSONResponse({"results": [world_wire.event_result_wire(result) for result in results]})


@world(
    "events.create()",
    {
        200: answer("result", ref("EventResult")),
        410: answer("the run is already terminal", ref("Error")),
        422: answer("the run's specVersion is newer than this server's", ref("Error")),
        412: answer("an event newer than params.stateUpdatedAt", ref("Error")),
    },
    action="world.events.create",
    body=schema.EVENT_REQUEST,
)
async def create_event(request: Request) -> Response:
    body = await _body(request)
    params = field(body, "params", dict) or {}
    command = CreateEvent(
        run_id=field(body, "runId", str),
        request=_event_request(body),
        resolve_data=resolve_data(params.get("resolveData"), "params.resolveData"),
        params=_create_params(params),
    )
    result = await services(request).proxy_world_event.execute(command, request_context(request))
    return JSONResponse(world_wire.event_result_wire(result))


@world("events.list()", {200: answer("page", page("Event"))}, body=schema.LISTING_BODY)
async def list_events(request: Request) -> Response:
    body = await _body(request)
    run_id = field(body, "runId", str, required=True)
    page = await services(request).query_world.list_events(
        run_id, _paging(body), resolve_data(body.get("resolveData"))
    )
    return JSONResponse(wire.page_wire(page, world_wire.event_wire))


@world(
    "events.listByCorrelationId()",
    {200: answer("page", page("Event"))},
    body=schema.BY_CORRELATION,
)
async def list_events_by_correlation(request: Request) -> Response:
    body = await _body(request)
    correlation_id = field(body, "correlationId", str, required=True)
    page = await services(request).query_world.list_events_by_correlation(
        correlation_id,
        _paging(body),
        resolve_data(body.get("resolveData")),
        field(body, "runId", str),
    )
    return JSONResponse(wire.page_wire(page, world_wire.event_wire))


@world(
    "events.get()",
    {200: answer("event", ref("Event"))},
    params=(query("runId"), RESOLVE_PARAM),
)
async def get_event(request: Request) -> Response:
    resolve = resolve_param(request)
    run_id = request.query_params.get("runId") or None
    event = await services(request).query_world.get_event(
        run_id, request.path_params["event_id"], resolve
    )
    return JSONResponse(world_wire.event_wire(event))


@world("runs.get()", {200: answer("run", ref("Run"))}, params=(RESOLVE_PARAM,))
async def get_run(request: Request) -> Response:
    resolve = resolve_param(request)
    run = await services(request).query_world.get_run(request.path_params["run_id"])
    return JSONResponse(world_wire.run_wire(run, resolve))


@world(
    "runs.experimentalSetAttributes() (spec ≥ 4)",
    {200: answer("the run's attributes after the merge", schema.ATTRIBUTES)},
    action="world.runs.attributes",
    body=schema.SET_ATTRIBUTES,
)
async def set_attributes(request: Request) -> Response:
    body = await _body(request)
    if "changes" not in body:
        raise errors.InvalidRequest("changes is required", {"field": "changes"})
    merged = await services(request).proxy_world_event.set_attributes(
        request.path_params["run_id"],
        parse_attribute_changes(body["changes"], "changes"),
        allow_reserved(body, "allowReservedAttributes"),
        request_context(request),
    )
    return JSONResponse({"attributes": merged})


@world("runs.list()", {200: answer("page", page("Run"))}, body=schema.RUNS_LISTING)
async def list_runs(request: Request) -> Response:
    body = await _body(request)
    resolve = resolve_data(body.get("resolveData"))
    page = await services(request).query_world.list_runs(
        _paging(body), field(body, "workflowName", str), field(body, "status", str)
    )
    return JSONResponse(wire.page_wire(page, lambda run: world_wire.run_wire(run, resolve)))


@world("steps.get()", {200: answer("step", ref("Step"))}, params=(query("runId"), RESOLVE_PARAM))
async def get_step(request: Request) -> Response:
    resolve = resolve_param(request)
    run_id = request.query_params.get("runId") or None
    step = await services(request).query_world.get_step(run_id, request.path_params["step_id"])
    return JSONResponse(world_wire.step_wire(step, resolve))


@world("steps.list()", {200: answer("page", page("Step"))}, body=schema.LISTING_BODY)
async def list_steps(request: Request) -> Response:
    body = await _body(request)
    resolve = resolve_data(body.get("resolveData"))
    page = await services(request).query_world.list_steps(
        field(body, "runId", str, required=True), _paging(body)
    )
    return JSONResponse(wire.page_wire(page, lambda step: world_wire.step_wire(step, resolve)))


@world("hooks.get()", {200: answer("hook", ref("Hook"))}, params=(RESOLVE_PARAM,))
async def get_hook(request: Request) -> Response:
    resolve = resolve_param(request)
    hook = await services(request).query_world.get_hook(request.path_params["hook_id"])
    return JSONResponse(world_wire.hook_wire(hook, resolve))


@world("hooks.getByToken()", {200: answer("hook", ref("Hook"))}, params=(RESOLVE_PARAM,))
async def get_hook_by_token(request: Request) -> Response:
    resolve = resolve_param(request)
    hook = await services(request).query_world.get_hook_by_token(request.path_params["token"])
    return JSONResponse(world_wire.hook_wire(hook, resolve))


@world("hooks.list()", {200: answer("page", page("Hook"))}, body=schema.HOOKS_LISTING)
async def list_hooks(request: Request) -> Response:
    body = await _body(request)
    resolve = resolve_data(body.get("resolveData"))
    page = await services(request).query_world.list_hooks(field(body, "runId", str), _paging(body))
    return JSONResponse(wire.page_wire(page, lambda hook: world_wire.hook_wire(hook, resolve)))


def _chunk_bytes(value: Any, where: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise errors.InvalidRequest(
        f"{where} must be a string or a Uint8Array envelope", {"field": where}
    )


@world(
    "writeToStream() / writeToStreamMulti()",
    {200: answer("written", schema.OK)},
    action="world.streams.write",
    body=schema.STREAM_WRITE,
)
async def write_stream(request: Request) -> Response:
    body = await _body(request)
    name = field(body, "name", str, required=True)
    run_id = field(body, "runId", str, required=True)
    if body.get("chunks") is not None:  # null is absent
        listed = field(body, "chunks", list, required=True)
        chunks = [_chunk_bytes(item, f"chunks[{i}]") for i, item in enumerate(listed)]
    elif body.get("chunk") is not None:
        chunks = [_chunk_bytes(body["chunk"], "chunk")]
    else:
        raise errors.InvalidRequest("chunk or chunks is required", {"field": "chunk"})
    await services(request).write_stream.write(name, run_id, chunks, request_context(request))
    return JSONResponse({"ok": True})


@world(
    "closeStream()",
    {200: answer("closed", schema.OK)},
    action="world.streams.close",
    body=schema.STREAM_CLOSE,
)
async def close_stream(request: Request) -> Response:
    body = await _body(request)
    name = field(body, "name", str, required=True)
    run_id = field(body, "runId", str, required=True)
    await services(request).write_stream.close(name, run_id, request_context(request))
    return JSONResponse({"ok": True})


def _query(request: Request, name: str) -> str:
    value = request.query_params.get(name)
    if not value:
        raise errors.InvalidRequest(f"query parameter {name} is required", {"field": name})
    return value


@world(
    "readFromStream(): live bytes until the stream closes",
    {200: ("raw bytes", BINARY)},
    params=(query("name", NAME, True), query("startIndex", INT)),
)
async def read_stream(request: Request) -> Response:
    name = _query(request, "name")
    start = int_param(request, "startIndex") or 0
    chunks = services(request).read_stream.read(name, start)
    return StreamingResponse(chunks, media_type="application/octet-stream")


@world(
    "listStreamsByRunId()",
    {200: answer("names", schema.STREAM_NAMES)},
    params=(query("runId", NAME, True),),
)
async def list_streams(request: Request) -> Response:
    run_id = _query(request, "runId")
    names = await services(request).inspect_stream.names_for_run(run_id)
    return JSONResponse({"streams": names})


@world(
    "getStreamChunks()",
    {200: answer("page", schema.STREAM_CHUNKS)},
    params=(
        query("name", NAME, True),
        query("runId"),
        query("limit", INT),
        query("cursor", STREAM_CURSOR),
    ),
)
async def stream_chunks(request: Request) -> Response:
    page = await services(request).inspect_stream.chunks(
        _query(request, "name"),
        int_param(request, "limit"),
        request.query_params.get("cursor") or None,
    )
    return JSONResponse(
        {
            "data": [{"index": chunk.index, "data": chunk.data} for chunk in page.data],
            "cursor": page.cursor,
            "hasMore": page.has_more,
            "done": page.done,
        }
    )


@world(
    "getStreamInfo()",
    {200: answer("info", schema.STREAM_INFO)},
    params=(query("name", NAME, True), query("runId")),
)
async def stream_info(request: Request) -> Response:
    info = await services(request).inspect_stream.info(_query(request, "name"))
    return JSONResponse({"tailIndex": info.tail_index, "done": info.done})


@world(
    "queue()",
    {200: answer("queued", schema.QUEUED)},
    action="queue.publish",
    body=schema.PUBLISH,
    params=schema.APP_HEADERS,
)
async def publish(request: Request) -> Response:
    body = await _body(request)
    if "message" not in body:
        raise errors.InvalidRequest("message is required", {"field": "message"})
    opts = field(body, "opts", dict) or {}
    headers = field(opts, "headers", dict, path="opts.headers") or {}
    if not all(isinstance(v, str) for v in headers.values()):
        raise errors.InvalidRequest(
            "opts.headers values must be strings", {"field": "opts.headers"}
        )
    command = Publish(
        queue_name=field(body, "queueName", str, required=True),
        payload=body["message"],
        deployment_id=field(opts, "deploymentId", str, path="opts.deploymentId"),
        idempotency_key=field(opts, "idempotencyKey", str, path="opts.idempotencyKey"),
        delay_seconds=field(opts, "delaySeconds", (int, float), path="opts.delaySeconds") or 0,
        headers=headers,
        caller_deployment_id=request.headers.get(DEPLOYMENT_HEADER) or None,
        app_url=request.headers.get(APP_URL_HEADER) or None,
    )
    message_id = await services(request).publish_message.execute(command, request_context(request))
    return JSONResponse({"messageId": message_id})


@world("Start a child run of a running workflow (compute-worker; once per token)",
       {201: answer("the child run", schema.CHILD_STARTED)}, body=schema.START_CHILD,
       action="runs.start_child")  # fmt: skip
async def start_child(request: Request) -> Response:
    body = await _body(request)
    run_input = input_field(body)
    parent_run_id = field(body, "parentRunId", str, required=True)
    run = await services(request).start_child_run.execute(
        parent_run_id,
        field(body, "workflowName", str, required=True),
        run_input,
        field(body, "token", str, required=True),
    )
    return JSONResponse({"runId": run.run_id}, status_code=201)


@world("getDeploymentId()", {200: answer("the id", schema.DEPLOYMENT_ID)},
       params=schema.APP_HEADERS)  # fmt: skip
async def deployment_id(request: Request) -> Response:
    found = await services(request).get_deployment_id.execute(
        request.headers.get(DEPLOYMENT_HEADER) or None,
        request.headers.get(APP_URL_HEADER) or None,
    )
    return JSONResponse({"deploymentId": found})


@world(
    "getEncryptionKeyForRun()",
    {200: answer("key", schema.KEY)},
    body=schema.KEY_REQUEST,
)
async def encryption_key(request: Request) -> Response:
    body = await _body(request)
    run = field(body, "run", dict) or {}
    context = field(body, "context", dict) or {}
    # every member is checked, the first one given counts
    run_ids = [field(body, "runId", str), field(run, "runId", str, path="run.runId")]
    deployments = [
        field(body, "deploymentId", str),
        field(run, "deploymentId", str, path="run.deploymentId"),
        field(context, "deploymentId", str, path="context.deploymentId"),
    ]
    run_id = next(filter(None, run_ids), None)
    deployment = next(filter(None, deployments), None)
    if not run_id:
        raise errors.InvalidRequest("runId is required", {"field": "runId"})
    key = await services(request).get_encryption_key.execute(run_id, deployment)
    return JSONResponse({"key": None if key is None else base64.b64encode(key).decode()})


ROUTES = [
    ApiRoute("POST", "/v1/queue/publish", publish),
    ApiRoute("GET", "/v1/world/deployment-id", deployment_id),
    ApiRoute("POST", "/v1/world/encryption-key", encryption_key),
    ApiRoute("POST", "/v1/world/events/create", create_event),
    ApiRoute("POST", "/v1/world/events/create-batch", create_events),
    ApiRoute("POST", "/v1/world/events/list", list_events),
    ApiRoute("POST", "/v1/world/events/list-by-correlation", list_events_by_correlation),
    ApiRoute("GET", "/v1/world/events/{event_id:event_id}", get_event),
    ApiRoute("POST", "/v1/world/runs/list", list_runs),
    ApiRoute("POST", "/v1/world/runs/start-child", start_child),
    ApiRoute("GET", "/v1/world/runs/{run_id}", get_run),
    ApiRoute("POST", "/v1/world/runs/{run_id}/attributes", set_attributes),
    ApiRoute("POST", "/v1/world/steps/list", list_steps),
    ApiRoute("GET", "/v1/world/steps/{step_id}", get_step),
    ApiRoute("POST", "/v1/world/hooks/list", list_hooks),
    ApiRoute("GET", "/v1/world/hooks/by-token/{token:path}", get_hook_by_token),
    ApiRoute("GET", "/v1/world/hooks/{hook_id}", get_hook),
    ApiRoute("POST", "/v1/world/streams/write", write_stream),
    ApiRoute("POST", "/v1/world/streams/close", close_stream),
    ApiRoute("GET", "/v1/world/streams/read", read_stream),
    ApiRoute("GET", "/v1/world/streams/list", list_streams),
    ApiRoute("GET", "/v1/world/streams/chunks", stream_chunks),
    ApiRoute("GET", "/v1/world/streams/info", stream_info),
]
