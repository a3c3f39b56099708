"""HTTP requests that obey an :class:`~domain.outbound.OutboundPolicy`.

``guarded_client(policy)`` is an ``httpx.AsyncClient`` whose transport checks every
request's URL against the policy and, at connect time, every address its host resolves
to — then connects to that checked address (TLS still verifies the host name), so a
DNS answer cannot swap an allowed name for an internal address, and every redirect hop
is checked the same way. Proxies from the environment are ignored.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any

import anyio
import httpcore
import httpx

from compute_worker.domain.outbound import OutboundPolicy, OutboundRefused, Target

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, policy: OutboundPolicy, inner: httpcore.AsyncNetworkBackend) -> None:
        self._policy = policy
        self._inner = inner

    async def connect_tcp(  # the signature is httpcore's
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        target = Target("http", host.lower().strip("[]").rstrip("."), port)
        try:
            found = await anyio.getaddrinfo(target.host, port, type=socket.SOCK_STREAM)
        except OSError as error:
            raise httpcore.ConnectError(f"cannot resolve {host}: {error}") from error
        refusal: OutboundRefused | None = None
        for *_, address in found:
            ip = str(address[0])
            try:
                self._policy.check_address(target, ip)
            except OutboundRefused as refused:
                refusal = refusal or refused
                continue
            return await self._inner.connect_tcp(
                ip, port, timeout=timeout, local_address=local_address,
                socket_options=socket_options,
            )  # fmt: skip
        raise refusal or OutboundRefused(f"{host} resolves to no address")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise OutboundRefused("outbound requests may not use Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, policy: OutboundPolicy, *, http2: bool = False) -> None:
        super().__init__(trust_env=False, http2=http2)
        self._policy = policy
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            http1=True,
            http2=http2,
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=_GuardedBackend(policy, httpcore.AnyIOBackend()),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._policy.check_url(str(request.url))
        return await super().handle_async_request(request)


def guarded_client(
    policy: OutboundPolicy, *, timeout: httpx.Timeout | float = DEFAULT_TIMEOUT, **options: Any
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` limited to what ``policy`` allows (redirects not followed
    unless ``follow_redirects=True`` is passed; each hop is checked either way)."""
    return httpx.AsyncClient(transport=GuardedTransport(policy), timeout=timeout, **options)


async def read_limited(response: httpx.Response, max_bytes: int) -> bytes:
    """The body of a streamed response, refused past ``max_bytes``."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise OutboundRefused(f"the response is larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
