"""The OpenAPI 3.1 document served at ``GET /v1/openapi.json``: every route, with its
request and response schemas. Built once from small helpers, kept beside the routes."""

from __future__ import annotations

from functools import cache
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from adapters.http.services import services
from adapters.http.wire import JSONResponse

JsonSchema = dict[str, Any]


def _ref(name: str) -> JsonSchema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str] | None = None, **props: JsonSchema) -> JsonSchema:
    schema: JsonSchema = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    return schema


STR: JsonSchema = {"type": "string"}
INT: JsonSchema = {"type": "integer"}
BOOL: JsonSchema = {"type": "boolean"}
ANY: JsonSchema = {}
DATE: JsonSchema = {"type": "string", "format": "date-time"}
RESOLVE: JsonSchema = {"type": "string", "enum": ["all", "none"]}
STATUS: JsonSchema = {
    "type": "string",
    "enum": ["pending", "running", "completed", "failed", "cancelled"],
}
PAGINATION = _obj(
    limit={"type": "integer", "minimum": 1, "maximum": 1000},
    cursor=STR,
    sortOrder={"type": "string", "enum": ["asc", "desc"]},
)


def _page(item: str) -> JsonSchema:
    return _obj(
        ["data", "cursor", "hasMore"],
        data={"type": "array", "items": _ref(item)},
        cursor={"type": ["string", "null"]},
        hasMore=BOOL,
    )


SCHEMAS: dict[str, JsonSchema] = {
    "Error": _obj(
        ["code", "message"], code=STR, message=STR, name=STR, details=_obj(), retryAfter=INT
    ),
    "StructuredError": _obj(["message"], message=STR, stack=STR, code=STR),
    "Bytes": _obj(
        ["__type", "data"],
        __type={"const": "Uint8Array"},
        data={"type": "string", "contentEncoding": "base64"},
    ),
    "Run": _obj(
        ["runId", "status", "deploymentId", "workflowName", "createdAt", "updatedAt"],
        runId=STR,
        status=STATUS,
        deploymentId=STR,
        workflowName=STR,
        specVersion=INT,
        input=ANY,
        output=ANY,
        error=_ref("StructuredError"),
        executionContext=_obj(),
        createdAt=DATE,
        updatedAt=DATE,
        startedAt=DATE,
        completedAt=DATE,
        execution=_ref("Execution"),
    ),
    "Execution": _obj(
        startAttempts=INT,
        maxStartAttempts=INT,
        lostExecutors=INT,
        maxLostExecutors=INT,
        lastError=STR,
        lastErrorAt=DATE,
        nextAttemptAt=DATE,
    ),
    "Step": _obj(
        ["runId", "stepId", "stepName", "status", "attempt"],
        runId=STR,
        stepId=STR,
        stepName=STR,
        status=STATUS,
        attempt=INT,
        input=ANY,
        output=ANY,
        error=_ref("StructuredError"),
        startedAt=DATE,
        completedAt=DATE,
        retryAfter=DATE,
        createdAt=DATE,
        updatedAt=DATE,
        specVersion=INT,
    ),
    "Hook": _obj(
        ["runId", "hookId", "token"],
        runId=STR,
        hookId=STR,
        token=STR,
        ownerId=STR,
        projectId=STR,
        environment=STR,
        metadata=ANY,
        isWebhook=BOOL,
        createdAt=DATE,
        specVersion=INT,
    ),
    "Wait": _obj(
        ["waitId", "runId", "status"],
        waitId=STR,
        runId=STR,
        status={"type": "string", "enum": ["waiting", "completed"]},
        resumeAt=DATE,
        completedAt=DATE,
        createdAt=DATE,
        updatedAt=DATE,
        specVersion=INT,
    ),
    "Event": _obj(
        ["eventId", "runId", "eventType", "createdAt"],
        eventId=STR,
        runId=STR,
        eventType=STR,
        correlationId=STR,
        eventData=_obj(),
        createdAt=DATE,
        specVersion=INT,
    ),
    "EventResult": _obj(
        event=_ref("Event"),
        run=_ref("Run"),
        step=_ref("Step"),
        hook=_ref("Hook"),
        wait=_ref("Wait"),
        events={"type": "array", "items": _ref("Event")},
    ),
    "Deployment": _obj(
        ["deploymentId", "digest", "kind", "workflows", "createdAt", "active"],
        deploymentId=STR,
        digest=STR,
        kind={"enum": ["python", "graph"]},
        entrypoint=STR,
        metadata=_obj(),
        createdAt=DATE,
        active=BOOL,
        workflows={
            "type": "array",
            "items": _obj(["name", "steps"], name=STR, steps={"type": "array", "items": STR}),
        },
    ),
    "PublicStep": _obj(
        ["runId", "stepId", "stepName", "status", "attempt", "createdAt", "updatedAt"],
        runId=STR,
        stepId=STR,
        stepName=STR,
        status=STATUS,
        attempt=INT,
        input=ANY,
        output=ANY,
        error=_ref("StructuredError"),
        createdAt=DATE,
        updatedAt=DATE,
        startedAt=DATE,
        completedAt=DATE,
        retryAfter=DATE,
    ),
    "PublicEvent": _obj(
        ["eventId", "runId", "eventType", "createdAt"],
        eventId=STR,
        runId=STR,
        eventType=STR,
        correlationId=STR,
        eventData=_obj(),
        createdAt=DATE,
    ),
    "PublicHook": _obj(
        ["runId", "hookId", "isWebhook", "createdAt"],
        runId=STR,
        hookId=STR,
        token={**STR, "description": "only for keys that also hold runs:write"},
        metadata=ANY,
        isWebhook=BOOL,
        createdAt=DATE,
    ),
    "RunStream": _obj(
        ["name", "chunks", "done"],
        name={**STR, "description": "the name given to get_writable(), else the stored name"},
        chunks={**INT, "description": "data chunks written so far"},
        done={**BOOL, "description": "closed"},
    ),
    "DeploymentListing": {
        "allOf": [
            _ref("Deployment"),
            _obj(
                ["pinnedRuns"],
                pinnedRuns={**INT, "description": "runs bound to it not yet terminal"},
            ),
        ]
    },
    "Health": _obj(
        ["status", "version", "world", "activeDeploymentId", "checks"],
        status={"enum": ["ok", "degraded"]},
        version=STR,
        world=STR,
        activeDeploymentId={"type": ["string", "null"]},
        checks=_obj(database=STR, artifactStore=STR),
    ),
}

_ERRORS = {
    "400": "invalid_request",
    "401": "unauthorized",
    "403": "forbidden",
    "404": "not found",
    "409": "conflict",
    "413": "payload_too_large",
    "429": "rate_limited",
}


def _json(schema: JsonSchema) -> JsonSchema:
    return {"content": {"application/json": {"schema": schema}}}


def _op(
    summary: str,
    responses: dict[int, tuple[str, JsonSchema | None]],
    scope: str | None,
    body: JsonSchema | None = None,
    params: list[JsonSchema] | None = None,
) -> JsonSchema:
    operation: JsonSchema = {"summary": summary, "responses": {}}
    for status, (text, schema) in responses.items():
        answer: JsonSchema = {"description": text}
        if schema is not None:
            answer.update(_json(schema))
        operation["responses"][str(status)] = answer
    for code, text in _ERRORS.items():
        operation["responses"].setdefault(code, {"description": text, **_json(_ref("Error"))})
    if scope is not None:
        operation["security"] = [{"bearer": []}]
        operation["x-required-scope"] = scope
    if body is not None:
        operation["requestBody"] = {"required": True, **_json(body)}
    if params:
        operation["parameters"] = params
    return operation


def _path(name: str) -> JsonSchema:
    return {"name": name, "in": "path", "required": True, "schema": STR}


def _query(name: str, schema: JsonSchema = STR, required: bool = False) -> JsonSchema:
    return {"name": name, "in": "query", "required": required, "schema": schema}


def _listing_params(*extra: JsonSchema) -> list[JsonSchema]:
    return [
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
        _query("cursor"),
        *extra,
    ]


SORT = _query("sortOrder", {"type": "string", "enum": ["asc", "desc"]})
RESOLVE_PARAM = _query("resolveData", RESOLVE)


def _history_paths() -> dict[str, JsonSchema]:
    """A run's steps, events, hooks and streams; 404 ``run_not_found`` for an unknown run."""
    run = _path("runId")
    stream_body = {
        "text/event-stream": {
            "schema": {
                "type": "string",
                "description": "one event per chunk: `id: <index>`, `data: <base64 of the "
                'chunk>`; then `event: end` with data `{"nextIndex": n}`',
            }
        },
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    }
    read = _op(
        "Read one stream of the run live, until it closes or the run has ended",
        {},
        "runs:read",
        None,
        [
            run,
            _path("name"),
            _query("startIndex", INT),
            _query("format", {"type": "string", "enum": ["sse", "bytes"]}),
        ],
    )
    read["responses"]["200"] = {"description": "the chunks, as they are written",
                                "content": stream_body}  # fmt: skip
    return {
        "/v1/runs/{runId}/steps": {
            "get": _op(
                "A run's steps, oldest first",
                {200: ("page", _page("PublicStep"))},
                "runs:read",
                None,
                [run, *_listing_params(SORT, RESOLVE_PARAM)],
            )
        },
        "/v1/runs/{runId}/events": {
            "get": _op(
                "A run's event log, oldest first",
                {200: ("page", _page("PublicEvent"))},
                "runs:read",
                None,
                [run, *_listing_params(SORT, RESOLVE_PARAM)],
            )
        },
        "/v1/runs/{runId}/hooks": {
            "get": _op(
                "A run's live hooks (tokens only for keys holding runs:write)",
                {200: ("page", _page("PublicHook"))},
                "runs:read",
                None,
                [run, *_listing_params(SORT)],
            )
        },
        "/v1/runs/{runId}/streams": {
            "get": _op(
                "A run's streams",
                {
                    200: (
                        "streams",
                        _obj(["data"], data={"type": "array", "items": _ref("RunStream")}),
                    )
                },
                "runs:read",
                None,
                [run],
            )
        },
        "/v1/runs/{runId}/streams/{name}": {"get": read},
    }


def _public_paths() -> dict[str, JsonSchema]:
    idem = {"name": "Idempotency-Key", "in": "header", "required": True, "schema": STR}
    trigger = _obj(
        ["workflowName"],
        workflowName=STR,
        input={"type": "array"},
        deploymentId=STR,
        executionContext=_obj(),
    )
    files_bundle = _obj(
        ["files"],
        kind={"enum": ["python", "graph"]},
        files={"type": "object", "additionalProperties": STR},
        entrypoint=STR,
        metadata=_obj(),
    )
    upload: JsonSchema = {
        "required": True,
        "content": {
            "application/json": {"schema": files_bundle},
            "application/zip": {"schema": {"type": "string", "format": "binary"}},
            "application/gzip": {"schema": {"type": "string", "format": "binary"}},
        },
    }
    create = _op(
        "Create a deployment from a bundle",
        {201: ("created", _ref("Deployment")), 422: ("invalid bundle", _ref("Error"))},
        "deploy:write",
        params=[_query("kind"), _query("entrypoint"), _query("metadata")],
    )
    create["requestBody"] = upload
    return {
        "/v1/health": {
            "get": _op(
                "Health", {200: ("ok", _ref("Health")), 503: ("degraded", _ref("Health"))}, None
            )
        },
        "/v1/openapi.json": {"get": _op("This document", {200: ("OpenAPI 3.1", _obj())}, None)},
        "/v1/runs": {
            "post": _op(
                "Trigger a run", {202: ("accepted", _ref("Run"))}, "trigger:write", trigger, [idem]
            ),
            "get": _op(
                "List runs, newest first",
                {200: ("page", _page("Run"))},
                "runs:read",
                None,
                [
                    _query(
                        "status",
                        {"type": "string", "description": "one or several, comma-separated"},
                    ),
                    _query("workflowName"),
                    _query("deploymentId"),
                    _query("createdAfter", DATE),
                    _query("createdBefore", DATE),
                    *_listing_params(RESOLVE_PARAM),
                ],
            ),
        },
        "/v1/runs/{runId}": {
            "get": _op(
                "Read a run",
                {200: ("the run", _ref("Run"))},
                "runs:read",
                None,
                [_path("runId"), _query("resolveData", RESOLVE)],
            )
        },
        "/v1/runs/{runId}/cancel": {
            "post": _op(
                "Cancel a run",
                {200: ("cancelled", _ref("Run"))},
                "runs:write",
                None,
                [_path("runId")],
            )
        },
        "/v1/runs/resume": {
            "post": _op(
                "Resume a run through its hook token",
                {
                    202: (
                        "delivered",
                        _obj(["runId", "hookId", "token"], runId=STR, hookId=STR, token=STR),
                    )
                },
                "runs:write",
                _obj(["token"], token=STR, payload=ANY),
            )
        },
        "/v1/deployments": {
            "post": create,
            "get": _op(
                "List deployments, newest first",
                {200: ("page", _page("DeploymentListing"))},
                "deploy:read",
                None,
                _listing_params(),
            ),
        },
        "/v1/deployments/{deploymentId}": {
            "get": _op(
                "Read a deployment (`active` names the active one)",
                {200: ("the deployment", _ref("Deployment"))},
                "deploy:read",
                None,
                [_path("deploymentId")],
            )
        },
        "/v1/deployments/{deploymentId}/activate": {
            "post": _op(
                "Activate a deployment",
                {200: ("active", _ref("Deployment"))},
                "deploy:write",
                None,
                [_path("deploymentId")],
            )
        },
        "/v1/webhooks/{provider}": {
            "post": _op(
                "Receive a signed third-party webhook",
                {
                    202: ("accepted", _obj(["deliveryId"], deliveryId=STR, runId=STR)),
                    200: (
                        "duplicate delivery",
                        _obj(["duplicate"], duplicate=BOOL, deliveryId=STR),
                    ),
                },
                None,
                {"type": "object"},
                [_path("provider")],
            )
        },
    }


def _world_paths() -> dict[str, JsonSchema]:
    scope = "world:proxy"
    listing = _obj(["runId"], runId=STR, pagination=PAGINATION, resolveData=RESOLVE)
    event_request = _obj(
        ["data"],
        runId={"type": ["string", "null"]},
        data=_obj(
            ["eventType"], eventType=STR, correlationId=STR, specVersion=INT, eventData=_obj()
        ),
        params=_obj(resolveData=RESOLVE),
    )
    ok = _obj(["ok"], ok=BOOL)
    chunk: JsonSchema = {"oneOf": [STR, _ref("Bytes")]}
    return {
        "/v1/queue/publish": {
            "post": _op(
                "queue()",
                {200: ("queued", _obj(["messageId"], messageId=STR))},
                scope,
                _obj(
                    ["queueName", "message"],
                    queueName=STR,
                    message=ANY,
                    opts=_obj(
                        deploymentId=STR,
                        idempotencyKey=STR,
                        delaySeconds={"type": "number"},
                        headers=_obj(),
                    ),
                ),
            )
        },
        "/v1/world/deployment-id": {
            "get": _op(
                "getDeploymentId()",
                {200: ("the id", _obj(["deploymentId"], deploymentId=STR))},
                scope,
            )
        },
        "/v1/world/encryption-key": {
            "post": _op(
                "getEncryptionKeyForRun()",
                {200: ("key", _obj(["key"], key={"type": ["string", "null"]}))},
                scope,
                _obj(runId=STR, deploymentId=STR, run=_ref("Run"), context=_obj(deploymentId=STR)),
            )
        },
        "/v1/world/events/create": {
            "post": _op(
                "events.create()", {200: ("result", _ref("EventResult"))}, scope, event_request
            )
        },
        "/v1/world/events/list": {
            "post": _op("events.list()", {200: ("page", _page("Event"))}, scope, listing)
        },
        "/v1/world/events/list-by-correlation": {
            "post": _op(
                "events.listByCorrelationId()",
                {200: ("page", _page("Event"))},
                scope,
                _obj(
                    ["correlationId"], correlationId=STR, pagination=PAGINATION, resolveData=RESOLVE
                ),
            )
        },
        "/v1/world/runs/list": {
            "post": _op(
                "runs.list()",
                {200: ("page", _page("Run"))},
                scope,
                _obj(workflowName=STR, status=STATUS, pagination=PAGINATION, resolveData=RESOLVE),
            )
        },
        "/v1/world/runs/{runId}": {
            "get": _op(
                "runs.get()",
                {200: ("run", _ref("Run"))},
                scope,
                None,
                [_path("runId"), _query("resolveData", RESOLVE)],
            )
        },
        "/v1/world/steps/list": {
            "post": _op("steps.list()", {200: ("page", _page("Step"))}, scope, listing)
        },
        "/v1/world/steps/{stepId}": {
            "get": _op(
                "steps.get()",
                {200: ("step", _ref("Step"))},
                scope,
                None,
                [_path("stepId"), _query("runId"), _query("resolveData", RESOLVE)],
            )
        },
        "/v1/world/hooks/list": {
            "post": _op(
                "hooks.list()",
                {200: ("page", _page("Hook"))},
                scope,
                _obj(runId=STR, pagination=PAGINATION, resolveData=RESOLVE),
            )
        },
        "/v1/world/hooks/by-token/{token}": {
            "get": _op(
                "hooks.getByToken()", {200: ("hook", _ref("Hook"))}, scope, None, [_path("token")]
            )
        },
        "/v1/world/hooks/{hookId}": {
            "get": _op(
                "hooks.get()",
                {200: ("hook", _ref("Hook"))},
                scope,
                None,
                [_path("hookId"), _query("resolveData", RESOLVE)],
            )
        },
        "/v1/world/streams/write": {
            "post": _op(
                "writeToStream() / writeToStreamMulti()",
                {200: ("written", ok)},
                scope,
                _obj(
                    ["name", "runId"],
                    name=STR,
                    runId=STR,
                    chunk=chunk,
                    chunks={"type": "array", "items": chunk},
                ),
            )
        },
        "/v1/world/streams/close": {
            "post": _op(
                "closeStream()",
                {200: ("closed", ok)},
                scope,
                _obj(["name", "runId"], name=STR, runId=STR),
            )
        },
        "/v1/world/streams/read": {
            "get": {
                **_op(
                    "readFromStream(): live bytes until the stream closes",
                    {},
                    scope,
                    None,
                    [_query("name", STR, True), _query("startIndex", INT)],
                ),
                "responses": {
                    "200": {
                        "description": "raw bytes",
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    }
                },
            }
        },
        "/v1/world/streams/list": {
            "get": _op(
                "listStreamsByRunId()",
                {200: ("names", _obj(["streams"], streams={"type": "array", "items": STR}))},
                scope,
                None,
                [_query("runId", STR, True)],
            )
        },
        "/v1/world/streams/chunks": {
            "get": _op(
                "getStreamChunks()",
                {
                    200: (
                        "page",
                        _obj(
                            ["data", "cursor", "hasMore", "done"],
                            data={
                                "type": "array",
                                "items": _obj(["index", "data"], index=INT, data=_ref("Bytes")),
                            },
                            cursor={"type": ["string", "null"]},
                            hasMore=BOOL,
                            done=BOOL,
                        ),
                    )
                },
                scope,
                None,
                [
                    _query("name", STR, True),
                    _query("runId"),
                    _query("limit", INT),
                    _query("cursor"),
                ],
            )
        },
        "/v1/world/streams/info": {
            "get": _op(
                "getStreamInfo()",
                {200: ("info", _obj(["tailIndex", "done"], tailIndex=INT, done=BOOL))},
                scope,
                None,
                [_query("name", STR, True), _query("runId")],
            )
        },
    }


@cache
def document(version: str) -> JsonSchema:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "compute-worker",
            "version": version,
            "description": "Durable workflows for the Workflow Studio, with a Workflow "
            "DevKit compatible World (/v1/world, /v1/queue).",
        },
        "paths": {**_public_paths(), **_history_paths(), **_world_paths()},
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


async def openapi(request: Request) -> Response:
    return JSONResponse(document(services(request).version))
