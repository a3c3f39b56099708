"""``guarded_client`` against real sockets: the policy is applied to the URL, to every
resolved address at connect time, and to every redirect hop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from compute_worker.adapters.outbound import guarded_client, read_limited
from compute_worker.domain.outbound import OutboundPolicy, OutboundRefused


@pytest.fixture
async def local_server() -> AsyncIterator[int]:
    """A tiny HTTP server on 127.0.0.1: ``/`` answers ok, ``/away`` redirects to 10.255.255.1."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        if request.startswith(b"GET /away"):
            head = b"HTTP/1.1 302 Found\r\nLocation: http://10.255.255.1/\r\nContent-Length: 0"
            writer.write(head + b"\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_localhost_is_reachable_only_when_named(local_server: int) -> None:
    async with guarded_client(OutboundPolicy(("localhost",))) as client:
        response = await client.get(f"http://localhost:{local_server}/")
        assert response.text == "ok"
        response = await client.get(f"http://127.0.0.1:{local_server}/")
        assert response.status_code == 200
    async with guarded_client(OutboundPolicy(("*",), what="http_request")) as client:
        with pytest.raises(OutboundRefused, match=r"http_request refused: .*loopback"):
            await client.get(f"http://localhost:{local_server}/")


async def test_the_workers_own_address_is_refused(local_server: int) -> None:
    policy = OutboundPolicy(("localhost",), deny=(f"127.0.0.1:{local_server}",))
    async with guarded_client(policy) as client:
        with pytest.raises(OutboundRefused, match="worker's own addresses"):
            await client.get(f"http://127.0.0.1:{local_server}/")


async def test_every_redirect_hop_is_checked(local_server: int) -> None:
    async with guarded_client(OutboundPolicy(("localhost",)), follow_redirects=True) as client:
        with pytest.raises(OutboundRefused, match=r"10\.255\.255\.1"):
            await client.get(f"http://127.0.0.1:{local_server}/away")


async def test_bodies_can_be_read_with_a_limit(local_server: int) -> None:
    async with (
        guarded_client(OutboundPolicy(("localhost",))) as client,
        client.stream("GET", f"http://127.0.0.1:{local_server}/") as response,
    ):
        with pytest.raises(OutboundRefused, match="larger than 1 bytes"):
            await read_limited(response, 1)
