"""The single table from domain error to HTTP status, and the error envelope.

Body: ``{"code", "message", "name", "details"?, "retryAfter"?}``; ``name`` is the
Workflow DevKit error class a runtime dispatches on (world.md D4). Unknown
exceptions become 500 ``internal_error`` with a generic message, logged with
the correlation id (in ``middleware.CorrelationIdMiddleware``, so the answer
still carries the id).
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match

from compute_worker.adapters.http.wire import JSONResponse, PayloadTooLarge
from compute_worker.domain import errors

log = logging.getLogger(__name__)

STATUS: dict[type[errors.DomainError], int] = {
    errors.InvalidRequest: 400,
    errors.IdempotencyKeyRequired: 400,
    errors.Unauthorized: 401,
    errors.InvalidSignature: 401,
    errors.StaleSignature: 401,
    errors.Forbidden: 403,
    errors.HttpsRequired: 403,
    errors.NotFound: 404,
    errors.EntityConflict: 409,
    errors.IdempotencyConflict: 409,
    errors.RunAlreadyTerminal: 409,
    errors.NoActiveDeploymentToTrigger: 409,
    errors.RunExpired: 410,
    errors.PreconditionFailed: 412,
    PayloadTooLarge: 413,
    errors.RunNotSupported: 422,
    errors.InvalidDeployment: 422,
    errors.TooEarly: 425,
    errors.Throttled: 429,
    errors.RateLimited: 429,
    errors.StorageUnavailable: 503,
}
RETRY_AFTER_DEFAULT = {503: 1}


def status_of(error: errors.DomainError) -> int:
    for cls in type(error).__mro__:
        status = STATUS.get(cls)
        if status is not None:
            return status
    return 400


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    name: str = "WorkflowWorldError",
    details: dict[str, Any] | None = None,
    retry_after: int | None = None,
) -> Response:
    body: dict[str, Any] = {"code": code, "message": message, "name": name}
    if details:
        body["details"] = details
    headers = {}
    if retry_after is not None:
        body["retryAfter"] = retry_after
        headers["Retry-After"] = str(retry_after)
    return JSONResponse(body, status_code=status, headers=headers)


async def domain_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.DomainError)
    status = status_of(exc)
    retry_after = getattr(exc, "retry_after", None) or RETRY_AFTER_DEFAULT.get(status)
    if status >= 500:
        log.warning("request failed: %s", exc.message, extra={"code": exc.code})
    return error_response(
        status, exc.code, exc.message, name=exc.kind, details=exc.details, retry_after=retry_after
    )


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "invalid_request"}


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = {
        404: f"No route for {request.method} {request.url.path}",
        405: f"{request.method} is not allowed on {request.url.path}",
    }.get(exc.status_code, str(exc.detail))
    response = error_response(exc.status_code, code, message)
    if exc.headers:
        response.headers.update(exc.headers)
    if exc.status_code == 405:  # every method of the path, not only the first route's
        response.headers["Allow"] = ", ".join(_allowed_methods(request))
    return response


def _allowed_methods(request: Request) -> list[str]:
    """The methods of the routes whose path matches; a literal path (``/v1/runs/resume``)
    hides the templates it also fits (``/v1/runs/{runId}``)."""
    matching = [
        route
        for route in request.app.routes
        if getattr(route, "methods", None) and route.matches(request.scope)[0] is not Match.NONE
    ]
    literal = [route for route in matching if not route.param_convertors]
    return sorted({method for route in literal or matching for method in route.methods})


EXCEPTION_HANDLERS: dict[Any, Any] = {
    errors.DomainError: domain_error_handler,
    HTTPException: http_error_handler,
}  # anything else: 500 internal_error, answered by CorrelationIdMiddleware
