"""Pure ASGI middleware (no BaseHTTPMiddleware: it buffers and costs a task per request):
the correlation id, HTTPS enforcement, the rate-limit headers, request metrics and the
close of a connection whose request body was answered unread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from compute_worker.adapters.http.context import correlation_id
from compute_worker.adapters.http.errors import error_response
from compute_worker.domain.errors import HttpsRequired
from compute_worker.domain.ports.tracing import CORRELATION_ID, TRACEPARENT

log = logging.getLogger(__name__)

CORRELATION_HEADER = b"x-workflow-correlation-id"
_MAX_ID_LENGTH = 200
_VERSION_4 = ~(0xF << 76) & ~(0x3 << 62)  # the bits a v4 UUID fixes, cleared...
_V4_BITS = (0x4 << 76) | (0x2 << 62)  # ...and set: version 4, RFC 4122 variant


def new_correlation_id() -> str:
    """A random UUID v4 (the spec's form) without a system call per request:
    correlation ids need to be unique, not secret (a client may choose its own)."""
    value = f"{random.getrandbits(128) & _VERSION_4 | _V4_BITS:032x}"
    return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"


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
            text = new_correlation_id()
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


HEALTH_PATH = "/v1/health"


class RequireHttpsMiddleware:
    """403 ``https_required`` for requests that did not arrive over TLS (directly, or
    through a proxy trusted to set ``X-Forwarded-Proto``), before authentication."""

    def __init__(self, app: ASGIApp, enabled: bool, trust_forwarded_proto: bool) -> None:
        self.app = app
        self.enabled = enabled
        self.trust_forwarded_proto = trust_forwarded_proto

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.enabled or scope["type"] != "http" or self._secure(scope):
            await self.app(scope, receive, send)
            return
        if scope["path"] == HEALTH_PATH:
            await self.app(scope, receive, send)
            return
        response = error_response(403, HttpsRequired.code, "This server accepts HTTPS only")
        await response(scope, receive, send)

    def _secure(self, scope: Scope) -> bool:
        if scope.get("scheme") == "https":
            return True
        if not self.trust_forwarded_proto:
            return False
        forwarded: bytes = dict(scope["headers"]).get(b"x-forwarded-proto", b"")
        return forwarded.split(b",")[0].strip().lower() == b"https"


class RateLimitHeadersMiddleware:
    """Adds ``RateLimit-*`` headers when a route counted the request (errors included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})

        async def send_with_headers(message: Message) -> None:
            quota = state.get("rate_limit")
            if message["type"] == "http.response.start" and quota is not None:
                message["headers"] = [*message.get("headers", []), *quota.headers()]
            await send(message)

        await self.app(scope, receive, send_with_headers)


UNMATCHED_ROUTE = "unmatched"


class RequestMetricsMiddleware:
    """Counts each request and times it to the end of its response, by method, route
    template (``/v1/runs/{run_id}``, never the raw path) and status, in the metrics of the
    ``HttpServices`` serving it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        served = scope.get("state", {}).get("services") if scope["type"] == "http" else None
        if served is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            elapsed = time.perf_counter() - started
            served.metrics.observe_request(scope["method"], route, status, elapsed)


DRAIN_BYTES = 64 * 1024 * 1024  # read and dropped at most, after an answer sent unread
DRAIN_SECONDS = 10.0
DRAIN_IDLE_SECONDS = 1.0  # the client sends nothing more: it waits for the answer


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.strip() not in (b"", b"0")
        if name == b"transfer-encoding":
            return True
    return False


class UnreadBodyMiddleware:
    """A response sent before the request body was read in full (a 413, or a refusal
    that comes before the body is read: 401, 403, 429…) says ``connection: close``, and
    once it is out the rest of the body is read and dropped (at most ``DRAIN_BYTES``,
    ``DRAIN_SECONDS``, until the client pauses ``DRAIN_IDLE_SECONDS``) before the
    server closes. So every client sees the answer at once: one that writes its whole
    body before it reads (httpx) and one that reads as soon as it can alike. Closing
    with the body unread would reset the connection (the client sees an error, not the
    answer); keeping it open stalls a client whose writes block."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        received = False
        unread = False

        async def tracking_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                received = True
            return message

        async def drain() -> None:
            dropped = 0
            deadline = asyncio.get_running_loop().time() + DRAIN_SECONDS
            while not received and dropped < DRAIN_BYTES:
                left = min(DRAIN_IDLE_SECONDS, deadline - asyncio.get_running_loop().time())
                if left <= 0:
                    return
                try:
                    message = await asyncio.wait_for(tracking_receive(), left)
                except TimeoutError:
                    return
                dropped += len(message.get("body", b""))

        async def closing_send(message: Message) -> None:
            nonlocal unread
            if message["type"] == "http.response.start" and not received:
                unread = True
                headers = [*message.get("headers", []), (b"connection", b"close")]
                message = {**message, "headers": headers}
            elif (
                unread
                and message["type"] == "http.response.body"
                and not message.get("more_body", False)
            ):
                await send({**message, "more_body": True})  # the answer is out now
                with contextlib.suppress(OSError):
                    await drain()
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app(scope, tracking_receive, closing_send)


class TracingMiddleware:
    """A server span per request (``Tracer`` of the ``HttpServices``): continued from the
    caller's W3C ``traceparent`` when it sends one, current while the route runs (so a
    triggered run joins the trace), named by method and route template, and returned to
    the caller as ``traceparent``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        served = scope.get("state", {}).get("services") if scope["type"] == "http" else None
        if served is None or not served.tracer.enabled:
            await self.app(scope, receive, send)
            return
        tracer = served.tracer
        headers = dict(scope["headers"])
        parent = headers.get(TRACEPARENT_HEADER, b"").decode("latin-1") or None
        span = tracer.start(
            scope["method"],
            {"http.request.method": scope["method"], "url.path": scope["path"],
             CORRELATION_ID: correlation_id.get() or ""},
            parent=parent, server=True,
        )  # fmt: skip
        answer = (span.traceparent or "").encode("latin-1")

        async def send_with_trace(message: Message) -> None:
            if message["type"] == "http.response.start":
                span.set("http.response.status_code", message["status"])
                if message["status"] >= 500:
                    span.fail(f"HTTP {message['status']}")
                message["headers"] = [
                    *(h for h in message.get("headers", []) if h[0] != TRACEPARENT_HEADER),
                    (TRACEPARENT_HEADER, answer),
                ]
            await send(message)

        try:
            with tracer.active(span):
                await self.app(scope, receive, send_with_trace)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            span.set("http.route", route)
            span.rename(f"{scope['method']} {route}")
            span.end()


TRACEPARENT_HEADER = TRACEPARENT.encode()
