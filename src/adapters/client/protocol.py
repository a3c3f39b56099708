"""The client's sans-IO core: requests, answers, and *plans*.

A plan is a generator that says what it needs — :class:`Send` a request,
:class:`Sleep`, :class:`Open` a live stream and read its :class:`NextEvent`, or
:class:`Emit` a value to whoever iterates — and receives the outcome (an
:class:`Reply`, an event, or a transport error thrown into it). Every decision
(retries, backoff, pagination, waiting for a run, resuming a broken stream) is
written once, as a plan; the synchronous and asynchronous drivers only perform
the I/O they are asked for. See ``sync.py`` and ``aio.py``.
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import random
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from httpx_sse import ServerSentEvent
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from compute_worker.adapters.client.errors import (
    ComputeClientError,
    ComputeConnectionError,
    ResponseError,
    error_class,
)

log = logging.getLogger("compute_worker.client")

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
CORRELATION_HEADER = "x-workflow-correlation-id"
Progress = Callable[[int, int], None]


# -- requests and answers --------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    correlation_id: str
    idempotent: bool  # sending it twice does what sending it once does
    params: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    progress: Progress | None = None
    read_timeout: float | None = None  # overrides the client's (live streams)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]  # lower-case names
    content: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def correlation_id(self) -> str | None:
        return self.headers.get(CORRELATION_HEADER)


# -- instructions a plan yields --------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    request: Request  # → Reply


@dataclass(frozen=True)
class Sleep:
    seconds: float  # → None


@dataclass(frozen=True)
class Open:
    """Open a live SSE response (closing any the plan had open) → Reply; a 2xx reply
    has no content: its events come with :class:`NextEvent`."""

    request: Request


@dataclass(frozen=True)
class NextEvent:
    """→ the next ``ServerSentEvent`` of the open response, or None at its end."""


@dataclass(frozen=True)
class Emit:
    value: Any  # handed to the caller that iterates the plan → None


Instruction = Send | Sleep | Open | NextEvent | Emit
Plan = Generator[Instruction, Any, T]


# -- JSON with bytes (the wire's Uint8Array envelopes) ----------------------------------------


def _revive(obj: dict[str, Any]) -> Any:
    if obj.get("__type") == "Uint8Array" and set(obj) == {"__type", "data"}:
        data = obj["data"]
        if isinstance(data, str):
            return base64.b64decode(data)
    return obj


def _envelope(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"__type": "Uint8Array", "data": base64.b64encode(bytes(value)).decode()}
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> bytes:
    return json.dumps(value, default=_envelope, separators=(",", ":")).encode()


def loads(content: bytes) -> Any:
    return json.loads(content, object_hook=_revive)


# -- errors -----------------------------------------------------------------------------------


def retry_after(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date), if the answer has one."""
    raw = headers.get("retry-after", "").strip()
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_from(reply: Reply, request: Request) -> ComputeClientError:
    """The typed error of a refusal, from its status and envelope ``code``."""
    body: Any = None
    try:
        body = loads(reply.content) if reply.content else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    code = body.get("code") if isinstance(body.get("code"), str) else None
    message = body.get("message") if isinstance(body.get("message"), str) else None
    details = body.get("details") if isinstance(body.get("details"), dict) else None
    cls = error_class(reply.status, code)
    return cls(
        message or f"{request.method} {request.path} answered {reply.status}",
        status=reply.status,
        code=code or f"http_{reply.status}",
        details=details,
        correlation_id=reply.correlation_id or request.correlation_id,
        retry_after=retry_after(reply.headers),
    )


def connection_error(error: Exception, request: Request) -> ComputeConnectionError:
    return ComputeConnectionError(
        f"{request.method} {request.path} failed: {type(error).__name__}: {error}".rstrip(": "),
        code="connection_error",
        correlation_id=request.correlation_id,
    )


def parse(model: type[M], reply: Reply, request: Request, **extra: Any) -> M:
    """``reply``'s JSON as ``model``, carrying the answer's correlation id."""
    try:
        body = loads(reply.content)
        if isinstance(body, dict):
            body = {**body, **extra}
        found = model.model_validate(body)
    except (ValueError, PydanticValidationError) as error:
        raise ResponseError(
            f"{request.method} {request.path}: unexpected answer ({error})",
            status=reply.status,
            code="invalid_response",
            correlation_id=reply.correlation_id or request.correlation_id,
        ) from None
    if "correlation_id" in type(found).model_fields:
        found = found.model_copy(
            update={"correlation_id": reply.correlation_id or request.correlation_id}
        )
    return found


# -- retries ----------------------------------------------------------------------------------

RETRIED_STATUSES = frozenset({429, 503})
NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` more attempts at most, after ``backoff * 2**n`` seconds (with jitter,
    at most ``max_backoff``), or after ``Retry-After`` when the server gives one — but
    never past ``max_retry_after`` (then the error is raised at once)."""

    retries: int = 3
    backoff: float = 0.25
    max_backoff: float = 8.0
    max_retry_after: float = 60.0

    def pause(self, attempt: int, server_says: float | None = None) -> float:
        base = min(self.max_backoff, self.backoff * 2.0**attempt)
        jittered = base * random.uniform(0.5, 1.0)
        return jittered if server_says is None else max(server_says, jittered / 4)

    def after_error(self, request: Request, error: Exception, attempt: int) -> float | None:
        """Transport failures are retried for idempotent requests, and for any request
        that provably never left (no connection was made)."""
        if attempt >= self.retries:
            return None
        if request.idempotent or isinstance(error, NEVER_SENT):
            return self.pause(attempt)
        return None

    def after_reply(self, request: Request, reply: Reply, attempt: int) -> float | None:
        if attempt >= self.retries or reply.status not in RETRIED_STATUSES:
            return None
        if not request.idempotent:
            return None
        server_says = retry_after(reply.headers)
        if server_says is not None and server_says > self.max_retry_after:
            return None
        return self.pause(attempt, server_says)


def _log_retry(request: Request, why: str, delay: float, attempt: int, policy: RetryPolicy) -> None:
    log.warning(
        "retrying %s %s in %.2f s after %s (retry %d of %d)",
        request.method, request.path, delay, why, attempt + 1, policy.retries,
        extra={"correlationId": request.correlation_id},
    )  # fmt: skip


def call(request: Request, read: Callable[[Reply], T], policy: RetryPolicy) -> Plan[T]:
    """Send ``request`` (retrying where ``policy`` says it is safe) and ``read`` a 2xx
    answer; a refusal raises its typed error."""
    attempt = 0
    while True:
        try:
            reply: Reply = yield Send(request)
        except httpx.TransportError as error:
            delay = policy.after_error(request, error, attempt)
            if delay is None:
                raise connection_error(error, request) from error
            why = type(error).__name__
        else:
            if reply.ok:
                return read(reply)
            delay = policy.after_reply(request, reply, attempt)
            if delay is None:
                raise error_from(reply, request)
            why = f"status {reply.status}"
        _log_retry(request, why, delay, attempt, policy)
        yield Sleep(delay)
        attempt += 1


def send_raw(request: Request, policy: RetryPolicy) -> Plan[Reply]:
    """Send, retrying transport failures only; any answer is returned, refusals too."""
    attempt = 0
    while True:
        try:
            reply: Reply = yield Send(request)
        except httpx.TransportError as error:
            delay = policy.after_error(request, error, attempt)
            if delay is None:
                raise connection_error(error, request) from error
            why = type(error).__name__
        else:
            return reply
        _log_retry(request, why, delay, attempt, policy)
        yield Sleep(delay)
        attempt += 1


def sleep_until(deadline: float | None, pause: float) -> float | None:
    """How long to pause before the next poll, or None when ``deadline`` has passed."""
    if deadline is None:
        return pause
    left = deadline - time.monotonic()
    return None if left <= 0 else min(pause, left)


def decode_chunk(event: ServerSentEvent) -> bytes:
    try:
        return base64.b64decode(event.data, validate=True)
    except ValueError as error:
        raise ResponseError(
            f"a stream event is not base64: {error}", code="invalid_response"
        ) from None
