"""Transport guards as pure ASGI middleware: HTTPS enforcement and rate-limit headers."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.http.errors import error_response
from domain.errors import HttpsRequired

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
