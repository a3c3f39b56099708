"""The Starlette application: routes, middleware, error handlers, lifespan.

The runtime context (``app.runtime``) is entered by the lifespan and its
container is handed to handlers through lifespan state (``request.state``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from adapters.http.errors import EXCEPTION_HANDLERS
from adapters.http.guards import RateLimitHeadersMiddleware, RequireHttpsMiddleware
from adapters.http.middleware import CorrelationIdMiddleware

RuntimeFactory = Callable[[], AbstractAsyncContextManager[Any]]


def build_app(
    routes: Sequence[BaseRoute],
    runtime: RuntimeFactory,
    settings: Any,
    *,
    require_https: bool = False,
    trust_forwarded_proto: bool = False,
) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        context = runtime()
        app.state.runtime = context  # the server stops its engine before closing connections
        async with context as container:
            yield {"container": container, "settings": settings}

    return Starlette(
        routes=list(routes),
        middleware=[
            Middleware(CorrelationIdMiddleware),
            Middleware(
                RequireHttpsMiddleware,
                enabled=require_https,
                trust_forwarded_proto=trust_forwarded_proto,
            ),
            Middleware(RateLimitHeadersMiddleware),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
