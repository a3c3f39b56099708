"""The JSON Schemas of the wire format (``wire.py``), kept by hand beside it: the
entities (``SCHEMAS``, the OpenAPI document's components), request bodies and query
parameters. Routes name them in their ``Operation``; ``openapi.py`` assembles the
document from the routes. ``tests/integration/test_entity_shapes.py`` checks that what
``wire.py`` writes fits them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from compute_worker.domain.stuck import STUCK_REASONS

JsonSchema = dict[str, Any]


def ref(name: str) -> JsonSchema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: list[str] | None = None, **props: JsonSchema) -> JsonSchema:
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
PAGINATION = obj(
    limit={"type": "integer", "minimum": 1, "maximum": 1000},
    cursor=STR,
    sortOrder={"type": "string", "enum": ["asc", "desc"]},
)


def page(item: str) -> JsonSchema:
    return obj(
        ["data", "cursor", "hasMore"],
        data={"type": "array", "items": ref(item)},
        cursor={"type": ["string", "null"]},
        hasMore=BOOL,
    )


# a run's or step's error: structured, or the bytes a spec ≥ 4 runtime serialized it to
ERROR_VALUE: JsonSchema = {
    "description": "a StructuredError, or a Bytes envelope of the runtime's serialized error"
}

SCHEMAS: dict[str, JsonSchema] = {
    "Error": obj(
        ["code", "message"], code=STR, message=STR, name=STR, details=obj(), retryAfter=INT
    ),
    "StructuredError": obj(["message"], message=STR, stack=STR, code=STR),
    "Bytes": obj(
        ["__type", "data"],
        __type={"const": "Uint8Array"},
        data={"type": "string", "contentEncoding": "base64"},
    ),
    "Run": obj(
        ["runId", "status", "deploymentId", "workflowName", "createdAt", "updatedAt"],
        runId=STR,
        status=STATUS,
        deploymentId=STR,
        workflowName=STR,
        specVersion=INT,
        input=ANY,
        output=ANY,
        error=ERROR_VALUE,
        errorCode=STR,
        attributes={"type": "object", "additionalProperties": STR},
        executionContext=obj(),
        createdAt=DATE,
        updatedAt=DATE,
        startedAt=DATE,
        completedAt=DATE,
        expiredAt=DATE,
        execution=ref("Execution"),
        stuck=ref("Stuck"),
    ),
    "Stuck": obj(
        ["reason", "message", "since", "detectedAt"],
        reason={"enum": list(STUCK_REASONS)},
        message=STR,
        since=DATE,
        detectedAt=DATE,
    ),
    "Execution": obj(
        startAttempts=INT,
        maxStartAttempts=INT,
        lostExecutors=INT,
        maxLostExecutors=INT,
        lastError=STR,
        lastErrorAt=DATE,
        nextAttemptAt=DATE,
    ),
    "Step": obj(
        ["runId", "stepId", "stepName", "status", "attempt"],
        runId=STR,
        stepId=STR,
        stepName=STR,
        status=STATUS,
        attempt=INT,
        input=ANY,
        output=ANY,
        error=ERROR_VALUE,
        startedAt=DATE,
        completedAt=DATE,
        retryAfter=DATE,
        createdAt=DATE,
        updatedAt=DATE,
        specVersion=INT,
    ),
    "Hook": obj(
        ["runId", "hookId", "token"],
        runId=STR,
        hookId=STR,
        token=STR,
        ownerId=STR,
        projectId=STR,
        environment=STR,
        metadata=ANY,
        isWebhook=BOOL,
        isSystem=BOOL,
        createdAt=DATE,
        specVersion=INT,
    ),
    "Wait": obj(
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
    "Event": obj(
        ["eventId", "runId", "eventType", "createdAt"],
        eventId=STR,
        runId=STR,
        eventType=STR,
        correlationId=STR,
        eventData=obj(),
        createdAt=DATE,
        occurredAt=DATE,
        specVersion=INT,
    ),
    "EventResult": obj(
        event=ref("Event"),
        run=ref("Run"),
        step=ref("Step"),
        hook=ref("Hook"),
        wait=ref("Wait"),
        events={"type": "array", "items": ref("Event")},
        cursor={"type": ["string", "null"], "description": "events.list cursor after `events`"},
        hasMore=BOOL,
        maxEvents={**INT, "description": "on run lifecycle answers: the most events a run holds"},
        stepCreated={**BOOL, "description": "a step_started created its step (lazy start)"},
    ),
    "Deployment": obj(
        ["deploymentId", "digest", "kind", "workflows", "createdAt", "active"],
        deploymentId=STR,
        digest=STR,
        kind={"enum": ["python", "graph", "wdk"]},
        entrypoint=STR,
        metadata=obj(),
        createdAt=DATE,
        active=BOOL,
        endpoint=obj(
            ["url", "headers", "signed"],
            url=STR,
            headers={"type": "object", "additionalProperties": STR},
            signed={"type": "boolean", "description": "deliveries carry x-compute-signature"},
        ),
        workflows={
            "type": "array",
            "items": obj(
                ["name", "steps"],
                name=STR,
                steps={"type": "array", "items": STR},
                schedule=ref("ScheduleSpec"),
            ),
        },
    ),
    "PublicStep": obj(
        ["runId", "stepId", "stepName", "status", "attempt", "createdAt", "updatedAt"],
        runId=STR,
        stepId=STR,
        stepName=STR,
        status=STATUS,
        attempt=INT,
        input=ANY,
        output=ANY,
        error=ref("StructuredError"),
        createdAt=DATE,
        updatedAt=DATE,
        startedAt=DATE,
        completedAt=DATE,
        retryAfter=DATE,
    ),
    "PublicEvent": obj(
        ["eventId", "runId", "eventType", "createdAt"],
        eventId=STR,
        runId=STR,
        eventType=STR,
        correlationId=STR,
        eventData=obj(),
        createdAt=DATE,
        occurredAt=DATE,
    ),
    "PublicHook": obj(
        ["runId", "hookId", "isWebhook", "createdAt"],
        runId=STR,
        hookId=STR,
        token={**STR, "description": "only for keys that also hold runs:write"},
        metadata=ANY,
        isWebhook=BOOL,
        createdAt=DATE,
    ),
    "RunStream": obj(
        ["name", "chunks", "done"],
        name={**STR, "description": "the name given to get_writable(), else the stored name"},
        chunks={**INT, "description": "data chunks written so far"},
        done={**BOOL, "description": "closed"},
    ),
    "ScheduleSpec": obj(
        ["cron", "timezone"],
        cron={**STR, "description": "five fields, or six with leading seconds"},
        timezone={**STR, "description": "IANA name, UTC by default"},
        catchUp={"enum": ["skip", "one", "all"], "description": "absent: the worker's setting"},
    ),
    "Schedule": obj(
        ["name", "deploymentId", "cron", "timezone", "catchUp", "paused", "lastSlot", "nextFireAt"],
        name={**STR, "description": "the scheduled workflow's name"},
        deploymentId=STR,
        cron=STR,
        timezone=STR,
        catchUp={"enum": ["skip", "one", "all"], "description": "in force (own or setting)"},
        paused=BOOL,
        lastSlot={**DATE, "description": "every slot up to it is handled"},
        nextFireAt={
            "type": ["string", "null"],
            "format": "date-time",
            "description": "null while paused",
        },
    ),
    "DeploymentListing": {
        "allOf": [
            ref("Deployment"),
            obj(
                ["pinnedRuns"],
                pinnedRuns={**INT, "description": "runs bound to it not yet terminal"},
            ),
        ]
    },
    "Health": obj(
        ["status", "version", "world", "activeDeploymentId", "checks"],
        status={"enum": ["ok", "degraded"]},
        version=STR,
        world=STR,
        activeDeploymentId={"type": ["string", "null"]},
        checks=obj(database=STR, artifactStore=STR),
    ),
}


Content = Mapping[str, JsonSchema]  # media type → schema


def json_content(schema: JsonSchema) -> Content:
    return {"application/json": schema}


BINARY: Content = {"application/octet-stream": {"type": "string", "format": "binary"}}
OK = obj(["ok"], ok=BOOL)
ERROR = ref("Error")


# -- parameters (the path's come from the route itself) --------------------------------------


def query(name: str, schema: JsonSchema = STR, required: bool = False) -> JsonSchema:
    return {"name": name, "in": "query", "required": required, "schema": schema}


def listing(*extra: JsonSchema) -> tuple[JsonSchema, ...]:
    return (query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}), query("cursor"),
            *extra)  # fmt: skip


SORT = query("sortOrder", {"type": "string", "enum": ["asc", "desc"]})
RESOLVE_PARAM = query("resolveData", RESOLVE)
IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": True, "schema": STR}

# -- the public lane's bodies and answers ------------------------------------------------------

TRIGGER = obj(
    ["workflowName"],
    workflowName=STR,
    input={"type": "array"},
    deploymentId=STR,
    executionContext=obj(),
)
RESUME = obj(["token"], token=STR, payload=ANY)
START_CHILD = obj(
    ["parentRunId", "workflowName", "token"],
    parentRunId=STR,
    workflowName=STR,
    input={"type": "array"},
    token={**STR, "description": "the parent's hook token: the child starts once per token"},
)
CHILD_STARTED = obj(["runId"], runId=STR)
SCHEDULES = obj(["data"], data={"type": "array", "items": ref("Schedule")})
RESUMED = obj(["runId", "hookId", "token"], runId=STR, hookId=STR, token=STR)
APP_ENDPOINT = obj(
    ["url"],
    url={"type": "string", "description": "the app's base URL (allowed by delivery_allow)"},
    headers={"type": "object", "additionalProperties": STR},
    deliverySecret={"type": "string", "description": "signs deliveries; never shown"},
)
BUNDLE_UPLOAD: Content = {
    "application/json": {
        "oneOf": [
            obj(
                ["files"],
                kind={"enum": ["python", "graph"]},
                files={"type": "object", "additionalProperties": STR},
                entrypoint=STR,
                metadata=obj(),
            ),
            obj(
                ["kind", "endpoint"], kind={"enum": ["wdk"]}, endpoint=APP_ENDPOINT, metadata=obj()
            ),
        ]
    },
    "application/zip": {"type": "string", "format": "binary"},
    "application/gzip": {"type": "string", "format": "binary"},
}
RUN_STREAMS = obj(["data"], data={"type": "array", "items": ref("RunStream")})
RUN_STREAM_CHUNKS: Content = {
    "text/event-stream": {
        "type": "string",
        "description": "one event per chunk: `id: <index>`, `data: <base64 of the "
        'chunk>`; then `event: end` with data `{"nextIndex": n}`',
    },
    **BINARY,
}
WEBHOOK_ACCEPTED = obj(["deliveryId"], deliveryId=STR, runId=STR)
WEBHOOK_DUPLICATE = obj(["duplicate"], duplicate=BOOL, deliveryId=STR)

# -- the world-proxy lane's bodies and answers -------------------------------------------------

LISTING_BODY = obj(["runId"], runId=STR, pagination=PAGINATION, resolveData=RESOLVE)
EVENT_DATA = obj(["eventType"], eventType=STR, correlationId=STR, specVersion=INT, eventData=obj())
EVENT_REQUEST = obj(
    ["data"],
    runId={"type": ["string", "null"]},
    data=EVENT_DATA,
    params=obj(
        resolveData=RESOLVE,
        stateUpdatedAt={
            **INT,
            "description": "epoch ms of the latest event the caller loaded: 412 "
            "PreconditionFailedError when a hook_received or step_completed written without "
            "it is newer",
        },
        occurredAt={**DATE, "description": "when it happened on the client; returned on the event"},
        requestId={**STR, "description": "kept in the audit log", "maxLength": 255},
        sinceCursor={
            **STR,
            "description": "on step_completed/step_failed: answer the events after this "
            "events.list cursor (events, cursor, hasMore)",
        },
        v1Compat=BOOL,
        skipPreload=BOOL,
    ),
)
EVENT_BATCH = obj(
    ["runId", "events"],
    runId=STR,
    events={"type": "array", "items": EVENT_DATA, "minItems": 1, "maxItems": 1000},
)
EVENT_RESULTS = obj(["results"], results={"type": "array", "items": ref("EventResult")})
PUBLISH = obj(
    ["queueName", "message"],
    queueName=STR,
    message=ANY,
    opts=obj(deploymentId=STR, idempotencyKey=STR, delaySeconds={"type": "number"}, headers=obj()),
)
QUEUED = obj(["messageId"], messageId=STR)
DEPLOYMENT_ID = obj(["deploymentId"], deploymentId=STR)
APP_HEADERS = (
    {"name": "x-compute-deployment-id", "in": "header", "schema": STR,
     "description": "the calling app's own deployment (kind wdk)"},
    {"name": "x-compute-app-url", "in": "header", "schema": STR,
     "description": "where the app listens now: its deliveries go there"},
)  # fmt: skip
KEY_REQUEST = obj(runId=STR, deploymentId=STR, run=ref("Run"), context=obj(deploymentId=STR))
KEY = obj(["key"], key={"type": ["string", "null"]})
BY_CORRELATION = obj(
    ["correlationId"], correlationId=STR, runId=STR, pagination=PAGINATION, resolveData=RESOLVE
)
ATTRIBUTES = obj(["attributes"], attributes={"type": "object", "additionalProperties": STR})
SET_ATTRIBUTES = obj(
    ["changes"],
    changes={
        "type": "array",
        "items": obj(["key", "value"], key=STR, value={"type": ["string", "null"]}),
    },
    allowReservedAttributes={"const": True},
)
RUNS_LISTING = obj(workflowName=STR, status=STATUS, pagination=PAGINATION, resolveData=RESOLVE)
HOOKS_LISTING = obj(runId=STR, pagination=PAGINATION, resolveData=RESOLVE)
CHUNK: JsonSchema = {"oneOf": [STR, ref("Bytes")]}
STREAM_WRITE = obj(
    ["name", "runId"], name=STR, runId=STR, chunk=CHUNK, chunks={"type": "array", "items": CHUNK}
)
STREAM_CLOSE = obj(["name", "runId"], name=STR, runId=STR)
STREAM_NAMES = obj(["streams"], streams={"type": "array", "items": STR})
STREAM_CHUNKS = obj(
    ["data", "cursor", "hasMore", "done"],
    data={"type": "array", "items": obj(["index", "data"], index=INT, data=ref("Bytes"))},
    cursor={"type": ["string", "null"]},
    hasMore=BOOL,
    done=BOOL,
)
STREAM_INFO = obj(["tailIndex", "done"], tailIndex=INT, done=BOOL)
