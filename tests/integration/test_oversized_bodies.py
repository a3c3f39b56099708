"""A body over ``max_body_bytes`` is answered 413 and the connection closed, so every
client sees the answer at once: httpx (which writes the whole body before it reads,
declared or chunked) and a raw socket that stops sending to read. A refusal that
comes before the body is read (401) closes the same way; answers to bodies read in
full keep the connection. Real server on a real socket."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from compute_worker import start_compute_worker_server

from .engine_fixtures import ENGINE_KEY, ENGINE_SEED_KEYS

LIMIT = 1024 * 1024
PROMPT = 5.0  # seconds; the hang this guards against lasted 60
AUTH = {"authorization": f"Bearer {ENGINE_KEY}"}


@pytest.fixture
async def url(tmp_path: Path) -> AsyncIterator[str]:
    handle = await asyncio.wait_for(
        start_compute_worker_server(
            data_dir=tmp_path / "data", port=0, seed_api_keys=ENGINE_SEED_KEYS,
            worldcompute="local", max_body_bytes=LIMIT,
        ),
        30,
    )  # fmt: skip
    try:
        yield handle.url
    finally:
        await asyncio.wait_for(handle.close(), 30)


def _pieces(size: int) -> Iterator[bytes]:
    for _ in range(size // 65536):
        yield b"x" * 65536


async def _chunked(size: int) -> AsyncIterator[bytes]:
    for piece in _pieces(size):
        yield piece


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("size", [2 * LIMIT, 30 * LIMIT])
async def test_httpx_sees_413_promptly(url: str, chunked: bool, size: int) -> None:
    body = _chunked(size) if chunked else b"x" * size
    began = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=70) as client:
        response = await client.post("/v1/world/events/list", content=body, headers=AUTH)
    assert time.monotonic() - began < PROMPT
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert response.headers["connection"] == "close"


async def test_a_refusal_before_the_body_is_read_closes_promptly(url: str) -> None:
    began = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=70) as client:
        response = await client.post("/v1/world/events/list", content=b"x" * (8 * LIMIT))
    assert time.monotonic() - began < PROMPT
    assert response.status_code == 401
    assert response.headers["connection"] == "close"


async def test_a_body_read_in_full_keeps_the_connection(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=20, headers=AUTH) as client:
        response = await client.post("/v1/world/runs/list", json={})
    assert response.status_code == 200
    assert "connection" not in response.headers


def _raw_exchange(url: str) -> tuple[bytes, float, float]:
    """Declare 100 MB, send 64 KB, then read: the answer, when it came, when it closed."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=PROMPT * 2) as sock:
        head = (
            f"POST /v1/world/events/list HTTP/1.1\r\nhost: {parts.netloc}\r\n"
            f"authorization: {AUTH['authorization']}\r\ncontent-type: application/json\r\n"
            f"content-length: {100 * 1024 * 1024}\r\n\r\n"
        )
        sock.sendall(head.encode() + b"x" * 65536)
        began = time.monotonic()
        answer = b""
        answered = closed = 0.0
        while chunk := sock.recv(65536):
            answer += chunk
            answered = answered or time.monotonic() - began
        closed = time.monotonic() - began
    return answer, answered, closed


async def test_a_raw_socket_client_sees_413_and_the_close_promptly(url: str) -> None:
    answer, answered, closed = await asyncio.to_thread(_raw_exchange, url)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"connection: close" in head.lower()
    assert json.loads(body)["code"] == "payload_too_large"
    assert answered < PROMPT and closed < PROMPT
