"""Access to a route, as its ``Operation`` declares it (``routing.py``): bearer
authentication and the declared scope, per-key (or per-address) rate limits, and the
audit rows of auth failures and of state-changing requests that fail."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from compute_worker.adapters.http.errors import status_of
from compute_worker.adapters.http.middleware import CORRELATION_HEADER
from compute_worker.adapters.http.services import services
from compute_worker.domain import errors
from compute_worker.domain.api_keys import authorize
from compute_worker.domain.audit import RequestContext

Handler = Callable[[Request], Awaitable[Response]]
RUN_ID_HEADER = "x-workflow-run-id"


def bearer_secret(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return secret.strip() or None


def request_context(request: Request) -> RequestContext:
    key = getattr(request.state, "api_key", None)
    return RequestContext(
        method=request.method,
        path=request.url.path,
        correlation_id=request.headers.get(CORRELATION_HEADER.decode(), ""),
        key_id=key.key_id if key is not None else None,
        run_id_header=request.headers.get(RUN_ID_HEADER) or None,
    )


async def _audit_failure(request: Request, action: str, error: errors.DomainError) -> None:
    # when the database is down, the original error is what the client must see
    with contextlib.suppress(errors.DomainError):
        await services(request).record_refusal.execute(
            request_context(request), action, status_of(error), error.code,
            request.path_params.get("run_id"),
        )  # fmt: skip


def _limit(request: Request, identity: str) -> None:
    limiter = services(request).rate_limiter
    if limiter is None:
        return
    try:
        request.state.rate_limit = limiter.take(identity)
    except errors.RateLimited as exc:
        request.state.rate_limit = limiter.exhausted(exc.retry_after)
        raise


def with_access(handler: Handler, scope: str | None, action: str | None) -> Handler:
    """``handler`` behind its route's access. With a ``scope``: authenticate, check the
    key holds it, apply the key's rate limit; with an ``action`` the route changes state
    and a failure after authentication is audited too. Without one: a public route,
    rate-limited per client address."""
    if scope is None:

        @functools.wraps(handler)
        async def limited(request: Request) -> Response:
            client = request.client.host if request.client else "unknown"
            _limit(request, f"addr:{client}")
            return await handler(request)

        return limited

    @functools.wraps(handler)
    async def guarded(request: Request) -> Response:
        try:
            key = await services(request).authenticate.identify(bearer_secret(request))
            request.state.api_key = key  # audit rows name the key, even when refused
            authorize(key, scope)
        except (errors.Unauthorized, errors.Forbidden) as exc:
            await _audit_failure(request, "auth.failure", exc)
            raise
        _limit(request, f"key:{key.key_id}")
        if action is None:
            return await handler(request)
        try:
            return await handler(request)
        except errors.DomainError as exc:
            await _audit_failure(request, action, exc)
            raise

    return guarded
