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
    UnreadBodyMiddleware,
)
from compute_worker.adapters.http.services import HttpServices

ServicesFactory = Callable[[], AbstractAsyncContextManager[HttpServices]]


def build_app(
    routes: Sequence[BaseRoute],
    services: ServicesFactory,
    *,
    require_https: bool = False,
    trust_forwarded_proto: bool = False,
    rate_limited: bool = True,
    traced: bool = False,
) -> Starlette:
    """Layers that would do nothing are left out (each costs every request a call):
    HTTPS enforcement unless ``require_https``, the rate-limit headers unless
    ``rate_limited`` (a rate limiter is configured), the request spans unless ``traced``."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, HttpServices]]:
        async with services() as served:
            yield {"services": served}

    https = Middleware(
        RequireHttpsMiddleware, enabled=True, trust_forwarded_proto=trust_forwarded_proto
    )
    return Starlette(
        routes=list(routes),
        middleware=[
            Middleware(UnreadBodyMiddleware),
            Middleware(CorrelationIdMiddleware),
            *([Middleware(TracingMiddleware)] if traced else []),
            *([https] if require_https else []),
            *([Middleware(RateLimitHeadersMiddleware)] if rate_limited else []),
            Middleware(RequestMetricsMiddleware),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
