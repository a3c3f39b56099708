"""Pure ASGI middleware (no BaseHTTPMiddleware: it buffers and costs a task per request)."""

from __future__ import annotations

import logging
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.http.context import correlation_id
from adapters.http.errors import error_response

log = logging.getLogger(__name__)

CORRELATION_HEADER = b"x-workflow-correlation-id"
_MAX_ID_LENGTH = 200


class CorrelationIdMiddleware:
    """Read ``x-workflow-correlation-id`` or make one (UUID v4), inject it into the
    request headers before routing, and echo it on every response, errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = list(scope["headers"])
        value = next((v for k, v in headers if k == CORRELATION_HEADER), b"")
        text = value.decode("latin-1").strip()
        if not text or len(text) > _MAX_ID_LENGTH or not text.isprintable():
            text = str(uuid.uuid4())
            headers = [(k, v) for k, v in headers if k != CORRELATION_HEADER]
            headers.append((CORRELATION_HEADER, text.encode()))
            scope = {**scope, "headers": headers}
        encoded = text.encode("latin-1")
        token = correlation_id.set(text)

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [
                    *(h for h in message.get("headers", []) if h[0] != CORRELATION_HEADER),
                    (CORRELATION_HEADER, encoded),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as error:
            # inside this middleware, so that even a 500 carries the correlation id
            if started:
                raise
            log.error("unhandled error on %s %s", scope.get("method"), scope.get("path"),
                      exc_info=error)  # fmt: skip
            response = error_response(500, "internal_error", "An internal error occurred")
            await response(scope, receive, send_with_id)
        finally:
            correlation_id.reset(token)
