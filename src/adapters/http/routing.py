"""The route declaration: each route's one ``Operation`` — who may call it (the scope,
or public), the audit action of a state-changing route, and what the OpenAPI document
says of it (summary, request body, parameters, answers).

A handler is declared with ``@operation(...)`` and served by an ``ApiRoute`` of the
route table; the ``ApiRoute`` puts it behind the access its operation declares
(``auth.with_access``) and keeps the operation, which ``openapi.py`` reads with the
route's path and method. The scope checked and the scope documented are one value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from starlette.routing import Route

from compute_worker.adapters.http.auth import Handler, with_access
from compute_worker.adapters.http.wire_schemas import Content, JsonSchema, json_content

Answers = Mapping[int, tuple[str, Content | None]]  # status → (description, content)


@dataclass(frozen=True, slots=True)
class Operation:
    summary: str
    scope: str | None  # the scope a key must hold; None: public, rate-limited per address
    responses: Answers
    action: str | None = None  # state-changing: a failure after authentication is audited
    body: Content | None = None  # the request body, by media type (required when given)
    params: tuple[JsonSchema, ...] = field(default=())  # query and header parameters


@dataclass(frozen=True, slots=True)
class Endpoint:
    handler: Handler
    operation: Operation


def operation(
    summary: str,
    *,
    scope: str | None,
    responses: Answers,
    action: str | None = None,
    body: Content | None = None,
    params: tuple[JsonSchema, ...] = (),
) -> Callable[[Handler], Endpoint]:
    """Declare a handler's operation (``scope=None``: a public route)."""

    def declare(handler: Handler) -> Endpoint:
        return Endpoint(handler, Operation(summary, scope, responses, action, body, params))

    return declare


def answer(description: str, schema: JsonSchema) -> tuple[str, Content]:
    """A JSON answer."""
    return description, json_content(schema)


class ApiRoute(Route):
    """``method path`` served by the endpoint's handler behind its declared access."""

    def __init__(self, method: str, path: str, endpoint: Endpoint) -> None:
        declared = endpoint.operation
        self.method = method
        self.operation = declared
        super().__init__(
            path,
            with_access(endpoint.handler, declared.scope, declared.action),
            methods=[method],
            name=endpoint.handler.__name__,
        )
