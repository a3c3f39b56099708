"""Streams over HTTP (world.md §5, decision D8): live tail readers, start indexes,
close semantics, snapshots, and a writer in a second server process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ._helpers import assert_error, assert_ok, env, new_id, unenv
from .conftest import SEED_KEYS, RunningServer, make_client

LIVE_TIMEOUT = 10.0  # no live read may hang the suite for longer
READ = "/v1/world/streams/read"


class LiveReader:
    """A streaming ``GET /v1/world/streams/read`` consumed in a background task."""

    def __init__(self, client: httpx.AsyncClient, name: str, **params: Any) -> None:
        self.client = client
        self.params = {"name": name, **params}
        self.received = bytearray()
        self.connected = asyncio.Event()
        self.changed = asyncio.Event()
        self.status: int | None = None
        self.task: asyncio.Task[None] | None = None

    async def _consume(self) -> None:
        async with self.client.stream("GET", READ, params=self.params) as response:
            self.status = response.status_code
            self.content_type = response.headers.get("content-type", "")
            self.connected.set()
            async for piece in response.aiter_raw():
                self.received.extend(piece)
                self.changed.set()

    async def start(self) -> LiveReader:
        self.task = asyncio.create_task(self._consume())
        waiter = asyncio.ensure_future(self.connected.wait())
        try:
            await asyncio.wait(
                {self.task, waiter}, timeout=LIVE_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
        if self.task.done() and not self.connected.is_set():
            self.task.result()  # raises what went wrong
        assert self.connected.is_set(), "the reader got no response headers"
        assert self.status == 200
        assert self.content_type.startswith("application/octet-stream")
        return self

    async def until(self, expected: bytes, within: float = LIVE_TIMEOUT) -> None:
        """Wait until the reader has received exactly ``expected`` so far."""

        async def wait() -> None:
            while bytes(self.received) != expected:
                assert len(self.received) <= len(expected) and expected.startswith(
                    bytes(self.received)
                ), (bytes(self.received), expected)
                assert self.task is not None and not self.task.done(), "the body ended early"
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), within)

    async def ended(self, within: float = LIVE_TIMEOUT) -> bytes:
        assert self.task is not None
        await asyncio.wait_for(asyncio.shield(self.task), within)
        return bytes(self.received)

    async def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


@contextlib.asynccontextmanager
async def live_reader(
    client: httpx.AsyncClient, name: str, **params: Any
) -> AsyncIterator[LiveReader]:
    reader = LiveReader(client, name, **params)
    try:
        yield await reader.start()
    finally:
        await reader.cancel()


async def write(client: httpx.AsyncClient, name: str, run_id: str, **body: Any) -> None:
    assert_ok(
        await client.post("/v1/world/streams/write", json={"name": name, "runId": run_id, **body})
    )


async def close(client: httpx.AsyncClient, name: str, run_id: str) -> None:
    assert_ok(await client.post("/v1/world/streams/close", json={"name": name, "runId": run_id}))


async def read_all(client: httpx.AsyncClient, name: str, **params: Any) -> bytes:
    """A whole read of a closed stream; the body must end on its own."""

    async def fetch() -> bytes:
        response = await client.get(READ, params={"name": name, **params})
        assert response.status_code == 200, response.text
        return response.content

    return await asyncio.wait_for(fetch(), LIVE_TIMEOUT)


def stream_name() -> str:
    return new_id("strm_") + "_user"


# -- live tail ------------------------------------------------------------------------------


async def test_reader_connected_before_any_write_sees_everything_live(
    server: RunningServer,
) -> None:
    name, run_id = stream_name(), new_id("wrun_")
    every_byte = bytes(range(256))
    async with (
        make_client(server.url) as reading,
        make_client(server.url) as writing,
        live_reader(reading, name) as reader,
    ):
        await asyncio.sleep(0.3)  # the reader is waiting on a stream that does not exist
        assert bytes(reader.received) == b""
        assert reader.task is not None and not reader.task.done()

        expected = b""
        steps: list[tuple[dict[str, Any], bytes]] = [
            ({"chunk": "hello "}, b"hello "),
            ({"chunks": ["wor", "ld", env(b"\x00\x01\x02")]}, b"world\x00\x01\x02"),
            ({"chunk": env(every_byte)}, every_byte),
            ({"chunks": [env(b"\xff"), "é", ""]}, b"\xff" + "é".encode()),
            ({"chunk": ""}, b""),
        ]
        for body, data in steps:
            await write(writing, name, run_id, **body)
            expected += data
            await reader.until(expected)  # seen live, before the stream is closed
        await close(writing, name, run_id)
        assert await reader.ended() == expected

    async with make_client(server.url) as again:
        assert await read_all(again, name) == expected


async def test_two_readers_and_a_late_one(client: httpx.AsyncClient, server: RunningServer) -> None:
    name, run_id = stream_name(), new_id("wrun_")
    async with (
        make_client(server.url) as other,
        live_reader(client, name) as first,
        live_reader(other, name) as second,
    ):
        await write(client, name, run_id, chunk="a")
        await first.until(b"a")
        await second.until(b"a")
        async with make_client(server.url) as late_client, live_reader(late_client, name) as late:
            await late.until(b"a")
            await write(client, name, run_id, chunks=["b", "c"])
            await close(client, name, run_id)
            assert await late.ended() == b"abc"
        assert await first.ended() == b"abc"
        assert await second.ended() == b"abc"


async def test_start_index_and_negative_start_index(client: httpx.AsyncClient) -> None:
    name, run_id = stream_name(), new_id("wrun_")
    await write(client, name, run_id, chunk="a")
    await write(client, name, run_id, chunks=["b", "", "c"])
    await close(client, name, run_id)
    assert await read_all(client, name) == b"abc"
    assert await read_all(client, name, startIndex=0) == b"abc"
    assert await read_all(client, name, startIndex=1) == b"bc"
    assert await read_all(client, name, startIndex=2) == b"c"
    assert await read_all(client, name, startIndex=3) == b""
    assert await read_all(client, name, startIndex=-2) == b"bc"
    assert await read_all(client, name, startIndex=-1) == b"c"
    assert await read_all(client, name, startIndex=-10) == b"abc"


async def test_negative_start_index_counts_at_connect_time(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    name, run_id = stream_name(), new_id("wrun_")
    await write(client, name, run_id, chunks=["1", "2", "3"])
    async with make_client(server.url) as other, live_reader(other, name, startIndex=-1) as reader:
        await reader.until(b"3")
        await write(client, name, run_id, chunk="4")
        await reader.until(b"34")
        await close(client, name, run_id)
        assert await reader.ended() == b"34"


async def test_write_after_close_is_refused_and_second_close_is_a_no_op(
    client: httpx.AsyncClient,
) -> None:
    name, run_id = stream_name(), new_id("wrun_")
    await write(client, name, run_id, chunk="kept")
    await close(client, name, run_id)
    for body in ({"chunk": "late"}, {"chunks": ["x", env(b"y")]}):
        response = await client.post(
            "/v1/world/streams/write", json={"name": name, "runId": run_id, **body}
        )
        assert_error(response, 409, "stream_closed")
    await close(client, name, run_id)  # a second close: no-op
    assert await read_all(client, name) == b"kept"
    info = assert_ok(
        await client.get("/v1/world/streams/info", params={"name": name, "runId": run_id})
    )
    assert info == {"tailIndex": 0, "done": True}


# -- snapshots ------------------------------------------------------------------------------


async def test_streams_list_by_run(client: httpx.AsyncClient) -> None:
    run_id, other_run = new_id("wrun_"), new_id("wrun_")
    written, closed_only, foreign = stream_name(), stream_name(), stream_name()
    await write(client, written, run_id, chunk="x")
    await close(client, closed_only, run_id)
    await write(client, foreign, other_run, chunk="y")
    listed = assert_ok(await client.get("/v1/world/streams/list", params={"runId": run_id}))
    assert sorted(listed["streams"]) == sorted([written, closed_only])
    unknown = assert_ok(
        await client.get("/v1/world/streams/list", params={"runId": new_id("wrun_")})
    )
    assert unknown == {"streams": []}


async def test_stream_chunks_pages_and_info(client: httpx.AsyncClient) -> None:
    name, run_id = stream_name(), new_id("wrun_")
    empty = assert_ok(
        await client.get("/v1/world/streams/info", params={"name": name, "runId": run_id})
    )
    assert empty == {"tailIndex": -1, "done": False}

    payloads = [b"zero", bytes(range(256)), b"", b"two", "żółw".encode(), b"four"]
    await write(client, name, run_id, chunks=[env(p) for p in payloads])
    stored = [p for p in payloads if p]  # empty chunks are dropped

    params = {"name": name, "runId": run_id, "limit": 2}
    seen: list[tuple[int, bytes]] = []
    cursor = None
    pages = 0
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = assert_ok(await client.get("/v1/world/streams/chunks", params=query))
        pages += 1
        seen.extend((item["index"], unenv(item["data"])) for item in page["data"])
        assert page["done"] is False
        cursor = page["cursor"]
        if not page["hasMore"]:
            break
        assert pages < 10
    assert seen == list(enumerate(stored))
    assert pages == 3

    info = assert_ok(
        await client.get("/v1/world/streams/info", params={"name": name, "runId": run_id})
    )
    assert info == {"tailIndex": len(stored) - 1, "done": False}
    await close(client, name, run_id)
    info = assert_ok(
        await client.get("/v1/world/streams/info", params={"name": name, "runId": run_id})
    )
    assert info == {"tailIndex": len(stored) - 1, "done": True}
    whole = assert_ok(
        await client.get("/v1/world/streams/chunks", params={"name": name, "runId": run_id})
    )
    assert [unenv(item["data"]) for item in whole["data"]] == stored
    assert whole["done"] is True and whole["hasMore"] is False
    assert await read_all(client, name) == b"".join(stored)


async def test_stream_read_and_snapshot_input_errors(client: httpx.AsyncClient) -> None:
    body = assert_error(await client.get(READ), 400, "invalid_request")
    assert body["details"]["field"] == "name"
    body = assert_error(
        await client.get(READ, params={"name": "s", "startIndex": "first"}), 400, "invalid_request"
    )
    assert body["details"]["field"] == "startIndex"
    body = assert_error(
        await client.get("/v1/world/streams/chunks", params={"name": "s", "cursor": "%%%"}),
        400,
        "invalid_request",
    )
    assert body["details"]["field"] == "cursor"
    for bad in ({"runId": new_id("wrun_"), "chunk": "x"}, {"name": "s", "chunk": "x"}):
        response = await client.post("/v1/world/streams/write", json=bad)
        assert_error(response, 400, "invalid_request")
    body = assert_error(
        await client.post(
            "/v1/world/streams/write", json={"name": "s", "runId": "wrun_x", "chunk": 42}
        ),
        400,
        "invalid_request",
    )
    assert body["details"]["field"] == "chunk"
    body = assert_error(
        await client.post(
            "/v1/world/streams/write", json={"name": "s", "runId": "wrun_x", "chunks": ["a", {}]}
        ),
        400,
        "invalid_request",
    )
    assert body["details"]["field"] == "chunks[1]"
    # nothing of the refused writes was stored
    info = assert_ok(await client.get("/v1/world/streams/info", params={"name": "s"}))
    assert info == {"tailIndex": -1, "done": False}


# -- a writer in another process ------------------------------------------------------------


@contextlib.contextmanager
def server_process(
    args: list[str], tmp_path: Path, env_extra: dict[str, str] | None = None
) -> Iterator[str]:
    """A real ``compute-worker serve --port 0`` process; yields its URL, stops it after."""
    log_path = tmp_path / f"server-process-{time.monotonic_ns()}.log"
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    command = [str(Path(sys.executable).with_name("compute-worker")), "serve", "--port", "0"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
        )
    try:
        yield _wait_for_url(process, log_path)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


@pytest.fixture
def second_server(server: RunningServer, tmp_path: Path) -> Iterator[str]:
    """A second server process on the same database as ``server`` (the same SQLite file,
    or the same PostgreSQL database); yields its URL."""
    args = [
        "--data-dir",
        str(tmp_path / "second-data"),
        "--seed-api-keys",
        json.dumps(SEED_KEYS),
        *server.backend.cli_args,
    ]
    with server_process(args, tmp_path) as url:
        yield url


async def test_server_process_seeds_keys_from_the_environment(tmp_path: Path) -> None:
    args = ["--data-dir", str(tmp_path / "env-data"), "--sqlite-path", str(tmp_path / "e.db")]
    seeds = {"COMPUTE_WORKER_SEED_API_KEYS": json.dumps(SEED_KEYS)}
    with server_process(args, tmp_path, seeds) as url:
        async with make_client(url) as http:
            name = stream_name()
            await write(http, name, new_id("wrun_"), chunk="ok")
            info = assert_ok(await http.get("/v1/world/streams/info", params={"name": name}))
            assert info == {"tailIndex": 0, "done": False}


def _wait_for_url(process: subprocess.Popen[bytes], log_path: Path) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        found = re.search(r"listening on (http://\S+)", text)
        if found:
            return found.group(1)
        if process.poll() is not None:
            raise AssertionError(f"the second server exited ({process.returncode}):\n{text}")
        time.sleep(0.05)
    raise AssertionError(f"the second server did not start:\n{log_path.read_text()}")


async def test_reader_sees_writes_from_another_process_live(
    server: RunningServer, second_server: str
) -> None:
    assert second_server != server.url
    name, run_id = stream_name(), new_id("wrun_")
    async with (
        make_client(server.url) as reading,
        make_client(second_server) as remote,
        live_reader(reading, name) as reader,
    ):
        expected = b""
        for body, data in (
            ({"chunk": "from "}, b"from "),
            ({"chunks": ["another ", env(b"\x00process\xff")]}, b"another \x00process\xff"),
            ({"chunk": env(b"!")}, b"!"),
        ):
            await write(remote, name, run_id, **body)
            expected += data
            await reader.until(expected, within=5.0)  # seen by polling, before the close
        await close(remote, name, run_id)
        assert await reader.ended(within=5.0) == expected

    # and the other way round: what the first server wrote, the second one reads
    other = stream_name()
    async with make_client(server.url) as local, make_client(second_server) as remote:
        await write(local, other, run_id, chunks=["x", "y"])
        async with live_reader(remote, other) as reader:
            await reader.until(b"xy", within=5.0)
            await close(local, other, run_id)
            assert await reader.ended(within=5.0) == b"xy"
        listed = assert_ok(await remote.get("/v1/world/streams/list", params={"runId": run_id}))
        assert sorted(listed["streams"]) == sorted([name, other])
