"""Route guards: bearer authentication with one scope per route, per-key (or
per-address) rate limits, and the audit rows for auth failures and for
state-changing requests that fail."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from adapters.http.errors import status_of
from adapters.http.middleware import CORRELATION_HEADER
from adapters.http.services import services
from domain import errors
from domain.api_keys import authorize
from domain.audit import RequestContext

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


def requires(scope: str, action: str | None = None) -> Callable[[Handler], Handler]:
    """Authenticate, check ``scope``, apply the key's rate limit. With ``action`` the
    route changes state: a failure after authentication is audited too."""

    def decorate(handler: Handler) -> Handler:
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

        guarded.required_scope = scope  # type: ignore[attr-defined]
        return guarded

    return decorate


def public(handler: Handler) -> Handler:
    """A route without a key: rate-limited per client address."""

    @functools.wraps(handler)
    async def limited(request: Request) -> Response:
        client = request.client.host if request.client else "unknown"
        _limit(request, f"addr:{client}")
        return await handler(request)

    return limited
