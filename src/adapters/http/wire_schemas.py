"""The JSON Schemas of the wire format (``wire.py``), kept by hand beside it: the
entities (``SCHEMAS``, the OpenAPI document's components), request bodies and query
parameters. Routes name them in their ``Operation``; ``openapi.py`` assembles the
document from the routes. ``tests/integration/test_entity_shapes.py`` checks that what
``wire.py`` writes fits them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from compute_worker.domain.idempotency import MAX_KEY_LENGTH
from compute_worker.domain.pagination import MAX_STORED_INT
from compute_worker.domain.stuck import STUCK_REASONS
from compute_worker.domain.use_cases.publish_message import MAX_DELAY_SECONDS
from compute_worker.domain.use_cases.query_world import MAX_RUN_WAIT
from compute_worker.domain.validation import MAX_SPEC_VERSION
from compute_worker.domain.wdk import MAX_HEADERS, MAX_URL
from compute_worker.domain.world import (
    MAX_CORRELATION_ID,
    MAX_DEPLOYMENT_ID,
    MAX_NAME,
    MAX_RUN_ID,
    MAX_TOKEN,
    QUEUE_NAME,
    EventType,
)

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
RUN_WAIT: JsonSchema = {
    "type": "number",
    "exclusiveMinimum": 0,
    "maximum": MAX_RUN_WAIT,
    "description": "seconds to wait for the run to end (completed, failed or cancelled) "
    "before answering; the answer comes at its end or after this long, whichever is first",
}
STATUS: JsonSchema = {
    "type": "string",
    "enum": ["pending", "running", "completed", "failed", "cancelled"],
}


def text(max_length: int | None = None, **more: Any) -> JsonSchema:
    """A non-empty string (the server refuses an empty one), at most ``max_length`` long."""
    found: JsonSchema = {"type": "string", "minLength": 1, **more}
    if max_length is not None:
        found["maxLength"] = max_length
    return found


NAME = text()
# dates on the World lane: ISO-8601, or epoch milliseconds (zod coerce.date; years 1..9999)
DATE_OR_MS: JsonSchema = {
    "anyOf": [
        DATE,
        {"type": "number", "minimum": -62_135_596_800_000, "maximum": 253_402_300_799_999},
    ]
}
LIMIT: JsonSchema = {"type": "integer", "description": "clamped to 1..1000"}
# an opaque cursor: the ``cursor`` of an earlier page (any other string, the empty one
# included, is a 400; an empty query parameter is one left out, see ``query``)
CURSOR: JsonSchema = {"type": "string", "format": "cursor", "minLength": 1}
STREAM_CURSOR: JsonSchema = {"type": "string", "format": "stream-cursor"}  # getStreamChunks'

_ONE_STATUS = "\\s*(pending|running|completed|failed|cancelled)?\\s*"
STATUSES: JsonSchema = {
    "type": "string",
    "pattern": f"^{_ONE_STATUS}(,{_ONE_STATUS})*$",
    "description": "one or several, comma-separated",
}


def _filter_text(max_length: int) -> JsonSchema:
    """A filter the database compares (``list_runs.check_text``): at most ``max_length``
    characters, no NUL; empty is the filter left out."""
    return {"type": "string", "maxLength": max_length, "pattern": "^[^\\x00]*$"}


WORKFLOW_FILTER = _filter_text(MAX_NAME)
DEPLOYMENT_FILTER = _filter_text(MAX_DEPLOYMENT_ID)


PAGINATION = obj(
    limit=LIMIT,
    cursor=CURSOR,
    sortOrder={"type": "string", "enum": ["asc", "desc"]},
)


def page(item: str) -> JsonSchema:
    return obj(
        ["data", "cursor", "hasMore"],
        data={"type": "array", "items": ref(item)},
        cursor={"type": ["string", "null"], "format": "cursor"},
        hasMore=BOOL,
    )


BASE64 = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"  # padded, strict
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
        data={"type": "string", "contentEncoding": "base64", "pattern": BASE64},
    )
    | {"additionalProperties": False},  # with any other member it is a plain object
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
    """An optional parameter sent empty (``?limit=``, ``?sortOrder=``) is one left out
    (``wire.int_param``, ``wire.resolve_param``): its schema says so for the types that
    a plain string does not cover. Not ``wait``, a number: the contract refuses it empty
    (http-api.md)."""
    typed = schema.get("type") in ("integer", "boolean") or "format" in schema
    if not required and (typed or "enum" in schema):
        schema = {"anyOf": [schema, {"const": ""}]}
    return {"name": name, "in": "query", "required": required, "schema": schema}


def listing(*extra: JsonSchema) -> tuple[JsonSchema, ...]:
    return (query("limit", LIMIT), query("cursor", CURSOR), *extra)


SORT = query("sortOrder", {"type": "string", "enum": ["asc", "desc"]})
RESOLVE_PARAM = query("resolveData", RESOLVE)
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": True,
    "schema": text(MAX_KEY_LENGTH, pattern="^[ -~]+$"),
}

# -- the public lane's bodies and answers ------------------------------------------------------

TRIGGER = obj(
    ["workflowName"],
    workflowName=NAME,
    input={"type": "array"},
    deploymentId=NAME,
    executionContext=obj(),
)
RESUME = obj(["token"], token=text(MAX_TOKEN), payload=ANY)
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
APP_ENDPOINT = {"additionalProperties": False} | obj(
    ["url"],
    url=text(
        MAX_URL,
        pattern=r"^\s*https?://[^?#]+$",
        description="the app's base URL (allowed by delivery_allow): no query or fragment",
    ),
    headers={"type": "object", "additionalProperties": STR, "maxProperties": MAX_HEADERS},
    deliverySecret={"type": "string", "description": "signs deliveries; never shown"},
)
BUNDLE_UPLOAD: Content = {
    "application/json": {
        "oneOf": [
            obj(
                ["files"],
                kind={"enum": ["python", "graph"]},
                files={"type": "object", "additionalProperties": STR, "minProperties": 1},
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
# run attributes: the key rules (domain/validation.py check_attribute_changes: 1..256
# characters, "$…" only with allowReservedAttributes, values at most 256 UTF-8 bytes, each
# key once, 64 per run after the merge) are checked against the run, not written here
_ATTRIBUTES: JsonSchema = {"type": "object", "additionalProperties": STR}
_CHANGES: JsonSchema = {
    "type": "array",
    "items": obj(["key", "value"], key=STR, value={"type": ["string", "null"]}),
}
_WRITER: JsonSchema = {
    "oneOf": [
        obj(["type"], type={"const": "workflow"}),
        obj(["type", "stepId", "attempt"], type={"const": "step"}, stepId=STR, attempt=INT),
    ]
}
_RESERVED_OK: JsonSchema = {"enum": [True, None], "description": "allows keys starting with $"}
_RUN_ATTRIBUTES = {"attributes": _ATTRIBUTES, "allowReservedAttributes": _RESERVED_OK}

# what each event type's ``eventData`` must hold (domain/validation.py check_request_shape)
_EVENT_FIELDS: dict[EventType, tuple[list[str], dict[str, JsonSchema]]] = {
    EventType.RUN_CREATED: (
        ["deploymentId", "workflowName", "input"],
        {"deploymentId": text(MAX_DEPLOYMENT_ID), "workflowName": text(MAX_NAME),
         "input": ANY, "executionContext": {"type": ["object", "null"]}, **_RUN_ATTRIBUTES},
    ),
    EventType.RUN_STARTED: (
        [],
        {"deploymentId": text(MAX_DEPLOYMENT_ID), "workflowName": text(MAX_NAME),
         **_RUN_ATTRIBUTES},
    ),
    EventType.STEP_CREATED: (["stepName", "input"], {"stepName": text(MAX_NAME), "input": ANY}),
    EventType.STEP_COMPLETED: (["result"], {"result": ANY}),
    EventType.STEP_RETRYING: ([], {"retryAfter": DATE_OR_MS}),
    EventType.HOOK_CREATED: (
        ["token"],
        {"token": text(MAX_TOKEN), "isWebhook": {"type": ["boolean", "null"]},
         "isSystem": {"type": ["boolean", "null"]}},
    ),
    EventType.HOOK_RECEIVED: (["payload"], {"payload": ANY}),
    EventType.WAIT_CREATED: (["resumeAt"], {"resumeAt": DATE_OR_MS}),
    EventType.ATTR_SET: (
        ["changes", "writer"],
        {"changes": _CHANGES, "writer": _WRITER, "allowReservedAttributes": _RESERVED_OK},
    ),
}  # fmt: skip
_CORRELATED = ("step", "hook", "wait")


def _event_data(kind: EventType) -> JsonSchema:
    required, fields = _EVENT_FIELDS.get(kind, ([], {}))
    correlated = kind.family in _CORRELATED
    correlation = (
        text(MAX_CORRELATION_ID) if correlated else {**STR, "maxLength": MAX_CORRELATION_ID}
    )
    return obj(
        [
            "eventType",
            *(["correlationId"] if correlated else []),
            *(["eventData"] if required else []),
        ],
        eventType={"const": kind.value},
        correlationId=correlation if correlated else {**STR, "maxLength": MAX_CORRELATION_ID},
        specVersion={"type": "integer", "minimum": 0, "maximum": MAX_SPEC_VERSION - 1},
        # kept as sent: a null member is a null value here, not a member left out
        eventData=obj(required, **fields) | {"x-verbatim": True},
    )


def _events(*left_out: EventType) -> JsonSchema:
    # hook_conflict is written by the world only
    kinds = [k for k in EventType if k is not EventType.HOOK_CONFLICT and k not in left_out]
    return {"oneOf": [_event_data(kind) for kind in kinds]}


EVENT_DATA = _events()
_RUN_CREATED = {"properties": {"data": {"properties": {"eventType": {"const": "run_created"}}}}}
EVENT_REQUEST: JsonSchema = {
    # run_created may leave runId out (the world mints one); every other event names its run
    "anyOf": [_RUN_CREATED, obj(["runId"], runId=text(MAX_RUN_ID))],
} | obj(
    ["data"],
    runId={"type": ["string", "null"]},
    data=EVENT_DATA,
    params=obj(
        resolveData=RESOLVE,
        stateUpdatedAt={
            "type": "number",
            "minimum": 0,
            "exclusiveMaximum": MAX_STORED_INT,
            "description": "epoch ms of the latest event the caller loaded: 412 "
            "PreconditionFailedError when a hook_received or step_completed written without "
            "it is newer",
        },
        occurredAt={**DATE_OR_MS, "description": "when it happened on the client; on the event"},
        requestId={**STR, "description": "kept in the audit log", "maxLength": 255},
        sinceCursor={
            **CURSOR,
            "description": "on step_completed/step_failed: answer the events after this "
            "events.list cursor (events, cursor, hasMore)",
        },
        v1Compat=BOOL,
        skipPreload=BOOL,
    ),
)
EVENT_BATCH = obj(
    ["runId", "events"],
    runId=text(MAX_RUN_ID),
    events={
        "type": "array",
        "items": _events(EventType.RUN_CREATED),  # a run is created by events.create
        "minItems": 1,
        "maxItems": 1000,
    },
)
EVENT_RESULTS = obj(["results"], results={"type": "array", "items": ref("EventResult")})
PUBLISH = obj(
    ["queueName", "message"],
    queueName=text(MAX_NAME, pattern=QUEUE_NAME.pattern),
    message=ANY,
    opts=obj(
        deploymentId={**STR, "maxLength": MAX_DEPLOYMENT_ID},
        idempotencyKey={**STR, "maxLength": MAX_NAME},
        delaySeconds={"type": "number", "minimum": 0, "maximum": MAX_DELAY_SECONDS},
        headers={"type": "object", "additionalProperties": STR},  # a string map (LANE.md §3)
    ),
)
QUEUED = obj(["messageId"], messageId=STR)
DEPLOYMENT_ID = obj(["deploymentId"], deploymentId=STR)
APP_HEADERS = (
    {"name": "x-compute-deployment-id", "in": "header", "schema": STR,
     "description": "the calling app's own deployment (kind wdk)"},
    {"name": "x-compute-app-url", "in": "header", "schema": STR,
     "description": "where the app listens now: its deliveries go there"},
)  # fmt: skip
# the run's id in ``runId`` or in ``run.runId``
KEY_REQUEST: JsonSchema = {
    **obj(runId=STR, deploymentId=STR, run=obj(runId=STR, deploymentId=STR),
          context=obj(deploymentId=STR)),
    "anyOf": [obj(["runId"], runId=NAME), obj(["run"], run=obj(["runId"], runId=NAME))],
}  # fmt: skip
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
# the server reads ``chunks`` when given, else ``chunk``
STREAM_WRITE: JsonSchema = {
    "anyOf": [
        obj(["name", "runId", "chunk"], name=text(MAX_NAME), runId=text(MAX_RUN_ID),
            chunk=CHUNK, chunks={"type": "null"}),
        obj(["name", "runId", "chunks"], name=text(MAX_NAME), runId=text(MAX_RUN_ID),
            chunks={"type": "array", "items": CHUNK}, chunk=ANY),
    ]
}  # fmt: skip
STREAM_CLOSE = obj(["name", "runId"], name=text(MAX_NAME), runId=text(MAX_RUN_ID))
STREAM_NAMES = obj(["streams"], streams={"type": "array", "items": STR})
STREAM_CHUNKS = obj(
    ["data", "cursor", "hasMore", "done"],
    data={"type": "array", "items": obj(["index", "data"], index=INT, data=ref("Bytes"))},
    cursor={**STREAM_CURSOR, "type": ["string", "null"]},
    hasMore=BOOL,
    done=BOOL,
)
STREAM_INFO = obj(["tailIndex", "done"], tailIndex=INT, done=BOOL)
