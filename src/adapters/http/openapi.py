"""The OpenAPI 3.1 document served at ``GET /v1/openapi.json``, derived from the routes
the app serves: paths and methods from Starlette's route introspection, access and
everything else from each route's ``Operation`` (``routing.py``), schemas from
``wire_schemas.py``. Nothing here lists a route."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.schemas import SchemaGenerator

from compute_worker.adapters.http.routing import ApiRoute, Operation, answer, operation
from compute_worker.adapters.http.services import services
from compute_worker.adapters.http.wire import JSONResponse
from compute_worker.adapters.http.wire_schemas import (
    ERROR,
    SCHEMAS,
    STR,
    JsonSchema,
    json_content,
    obj,
)

# what any route may answer besides its own answers
ERRORS = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    409: "conflict",
    413: "payload_too_large",
    429: "rate_limited",
}
_PATH_PARAM = re.compile(r"\{(\w+)\}")


def document(routes: Sequence[BaseRoute], version: str) -> JsonSchema:
    declared = {r.endpoint: r for r in routes if isinstance(r, ApiRoute)}
    paths: dict[str, dict[str, JsonSchema]] = {}
    for endpoint in SchemaGenerator({}).get_endpoints(list(routes)):
        route = declared.get(endpoint.func)
        if route is None or endpoint.http_method != route.method.lower():
            continue
        path = _PATH_PARAM.sub(lambda m: "{" + _camel(m[1]) + "}", endpoint.path)
        paths.setdefault(path, {})[endpoint.http_method] = _operation(route.operation, path)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "compute-worker",
            "version": version,
            "description": "Durable workflows for the Workflow Studio, with a Workflow "
            "DevKit compatible World (/v1/world, /v1/queue).",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _operation(declared: Operation, path: str) -> JsonSchema:
    out: JsonSchema = {"summary": declared.summary, "responses": {}}
    for status, (description, content) in declared.responses.items():
        out["responses"][str(status)] = _answer(description, content)
    for status, description in ERRORS.items():
        out["responses"].setdefault(str(status), _answer(description, json_content(ERROR)))
    if declared.scope is not None:
        out["security"] = [{"bearer": []}]
        out["x-required-scope"] = declared.scope
    if declared.body is not None:
        body = {media: _null_is_absent(schema) if media == "application/json" else schema
                for media, schema in declared.body.items()}  # fmt: skip
        out["requestBody"] = {"required": True, "content": _media(body)}
    in_path = [
        {"name": name, "in": "path", "required": True, "schema": STR}
        for name in _PATH_PARAM.findall(path)
    ]
    if in_path or declared.params:
        out["parameters"] = [*in_path, *declared.params]
    return out


def _null_is_absent(schema: JsonSchema) -> JsonSchema:
    """A request body's schema with every optional member also accepting ``null``: the
    server reads a JSON null as a member left out (``wire.field``), except inside a
    member marked ``x-verbatim``."""
    if schema.get("x-verbatim"):
        return schema
    found = dict(schema)
    required = set(schema.get("required", ()))
    if "properties" in schema:
        found["properties"] = {
            name: _null_is_absent(member) if name in required else _or_null(_null_is_absent(member))
            for name, member in schema["properties"].items()
        }
    for combinator in ("oneOf", "anyOf", "allOf"):
        if combinator in schema:
            found[combinator] = [_null_is_absent(branch) for branch in schema[combinator]]
    if isinstance(schema.get("items"), dict):
        found["items"] = _null_is_absent(schema["items"])
    return found


def _or_null(schema: JsonSchema) -> JsonSchema:
    kind = schema.get("type")
    if not schema or kind == "null" or (isinstance(kind, list) and "null" in kind):
        return schema
    if isinstance(kind, str) and "enum" not in schema and "const" not in schema:
        return {**schema, "type": [kind, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def _answer(description: str, content: Any) -> JsonSchema:
    found: JsonSchema = {"description": description}
    if content:
        found["content"] = _media(content)
    return found


def _media(content: Any) -> JsonSchema:
    return {media: {"schema": schema} for media, schema in content.items()}


def _camel(name: str) -> str:
    """The wire's spelling of a path parameter (``run_id`` → ``runId``)."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@operation("This document", scope=None, responses={200: answer("OpenAPI 3.1", obj())})
async def openapi(request: Request) -> Response:
    state = request.app.state
    built = getattr(state, "openapi", None)
    if built is None:  # the routes are fixed once the app is: build it once
        built = state.openapi = document(request.app.routes, services(request).version)
    return JSONResponse(built)
