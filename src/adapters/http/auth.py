"""Bearer authentication, one required scope per route."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from domain.ports.security import ApiKey

Handler = Callable[[Request], Awaitable[Response]]


def bearer_secret(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return secret.strip() or None


def requires(scope: str) -> Callable[[Handler], Handler]:
    """Authenticate the caller and check ``scope`` before the handler runs."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: Request) -> Response:
            container = request.state.container
            key: ApiKey = await container.authenticate().execute(bearer_secret(request), scope)
            request.state.api_key = key
            return await handler(request)

        guarded.required_scope = scope  # type: ignore[attr-defined]
        return guarded

    return decorate
