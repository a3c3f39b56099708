"""The Starlette application: routes, middleware, error handlers, lifespan.

The lifespan enters ``services`` (the caller's start-up: the runtime, then the
``HttpServices`` built from its container) and hands what it yields to the routes
through lifespan state (``request.state.services``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from compute_worker.adapters.http.errors import EXCEPTION_HANDLERS
from compute_worker.adapters.http.middleware import (
    CorrelationIdMiddleware,
    RateLimitHeadersMiddleware,
    RequestMetricsMiddleware,
    RequireHttpsMiddleware,
    TracingMiddleware,
)
from compute_worker.adapters.http.services import HttpServices

ServicesFactory = Callable[[], AbstractAsyncContextManager[HttpServices]]


def build_app(
    routes: Sequence[BaseRoute],
    services: ServicesFactory,
    *,
    require_https: bool = False,
    trust_forwarded_proto: bool = False,
) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, HttpServices]]:
        async with services() as served:
            yield {"services": served}

    return Starlette(
        routes=list(routes),
        middleware=[
            Middleware(CorrelationIdMiddleware),
            Middleware(TracingMiddleware),
            Middleware(
                RequireHttpsMiddleware,
                enabled=require_https,
                trust_forwarded_proto=trust_forwarded_proto,
            ),
            Middleware(RateLimitHeadersMiddleware),
            Middleware(RequestMetricsMiddleware),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
