"""The Python client against a real server on a real socket, on SQLite and PostgreSQL:
the synchronous ``Client`` (run in a worker thread, the server lives on this loop) and
``AsyncClient``, live streams, retries honouring the real rate limiter's Retry-After,
idempotency replays, connection errors and the environment variables."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from compute_worker.client import (
    AsyncClient,
    Client,
    ComputeConnectionError,
    IdempotencyComputeClientError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RunNotFoundError,
    RunTimeoutError,
    StreamNotFoundError,
    ValidationError,
)

from .conftest import Backend
from .public_fixtures import ADMIN_KEY, ONLY_KEYS, PublicServer, PublicServers
from .test_client_asgi import FLOWS

SLOW = (
    FLOWS
    + """

from compute_worker import sleep


@workflow
async def ticker(count):
    for i in range(count):
        await emit(f"tick {i}\\n", close=i == count - 1)
        await sleep("200ms")
    return count


@workflow
async def late_writer():
    await sleep("500ms")
    await emit("finally\\n", close=True)
    return "written"
"""
)


def sync_tour(url: str, folder: Path) -> dict[str, Any]:
    """Every synchronous method once, as a script would use them."""
    seen: dict[str, Any] = {}
    with Client(url, ADMIN_KEY) as cw:
        seen["health"] = cw.health().status
        deployment = cw.deployments.create(folder, activate=True)
        seen["active"] = cw.deployments.active().deployment_id == deployment.deployment_id
        seen["get"] = cw.deployments.get(deployment.deployment_id).workflow_names()
        seen["activate"] = cw.deployments.activate(deployment.deployment_id).active
        seen["listed"] = [d.deployment_id for d in cw.deployments.list()]

        token = f"tok-{uuid.uuid4()}"
        run = cw.runs.trigger("talk", token, execution_context={"trace": "t1"})
        with cw.runs.stream(run.run_id, "log") as chunks:
            seen["first_chunk"] = next(chunks)  # live: the run now waits on its hook
            seen["hooks"] = [h.token for h in cw.runs.hooks(run.run_id)]
            seen["resumed"] = cw.hooks.resume(token, {"ok": True}).run_id == run.run_id
            seen["rest"] = list(chunks)
        ended = cw.runs.wait(run.run_id, timeout=30)
        seen["output"], seen["context"] = ended.output, ended.execution_context
        seen["get_run"] = cw.runs.get(run.run_id).status
        seen["lean"] = cw.runs.get(run.run_id, resolve_data="none").input
        seen["steps"] = [s.output for s in cw.runs.steps(run.run_id)]
        seen["events"] = [e.event_type for e in cw.runs.events(run.run_id)]
        seen["streams"] = [(s.name, s.chunks, s.done) for s in cw.runs.streams(run.run_id)]
        waited = cw.runs.trigger("adder", 40, 2, wait=True, timeout=30)
        seen["waited"] = (waited.status, waited.output)
        seen["listed_runs"] = [r.run_id for r in cw.runs.list(status=["completed"])]
        seen["ids"] = (run.run_id, waited.run_id)
        pending = cw.runs.trigger("talk", f"tok-{uuid.uuid4()}")
        seen["cancel"] = cw.runs.cancel(pending.run_id).status
        try:
            cw.runs.wait(cw.runs.trigger("talk", "never").run_id, timeout=0.3)
        except RunTimeoutError as error:
            seen["timeout"] = error.run.status
        try:
            cw.runs.get("wrun_missing")
        except RunNotFoundError as error:
            seen["missing"] = (error.status, error.code, bool(error.correlation_id))
    return seen


async def test_the_sync_client_end_to_end(api_server: PublicServer, tmp_path: Path) -> None:
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "workflows.py").write_text(FLOWS)
    seen = await asyncio.to_thread(sync_tour, api_server.url, folder)
    assert seen["health"] == "ok" and seen["active"] and seen["activate"]
    assert set(seen["get"]) == {"adder", "talk", "on_delivery"} and len(seen["listed"]) == 1
    assert seen["first_chunk"] == b"one\n" and seen["rest"] == [b"two\n"]
    assert len(seen["hooks"]) == 1 and seen["hooks"][0] is not None and seen["resumed"]
    assert seen["output"] == {"ok": True} and seen["context"] == {"trace": "t1"}
    assert seen["get_run"] == "completed" and seen["lean"] is None
    assert seen["steps"] == ["one\n", "two\n"]
    assert seen["events"][0] == "run_created" and seen["events"][-1] == "run_completed"
    assert seen["streams"] == [("log", 2, True)]
    assert seen["waited"] == ("completed", 42)
    assert seen["listed_runs"] == list(reversed(seen["ids"]))
    assert seen["cancel"] == "cancelled" and seen["timeout"] in ("pending", "running")
    assert seen["missing"] == (404, "run_not_found", True)


async def test_the_async_client_reads_a_stream_as_it_is_written(
    api_server: PublicServer,
) -> None:
    async with AsyncClient(api_server.url, ADMIN_KEY) as cw:
        await cw.deployments.create({"workflows.py": SLOW}, activate=True)
        run = await cw.runs.trigger("ticker", 6)
        arrivals = []
        async for chunk in cw.runs.stream(run.run_id, "log"):
            arrivals.append((time.monotonic(), chunk))
        assert [c for _, c in arrivals] == [f"tick {i}\n".encode() for i in range(6)]
        # they came as the run wrote them, 200 ms apart (the first ones, written before the
        # client asked, may come at once)
        assert arrivals[-1][0] - arrivals[0][0] > 0.4
        assert (await cw.runs.wait(run.run_id, timeout=30)).output == 6

        # a stream not written yet is waited for while its run lives
        late = await cw.runs.trigger("late_writer")
        assert [c async for c in cw.runs.stream(late.run_id, "log")] == [b"finally\n"]
        with pytest.raises(StreamNotFoundError):  # over, and never written: not waited for
            [c async for c in cw.runs.stream(late.run_id, "other")]
        async with cw.runs.stream(run.run_id, "log", start_index=2) as tail:
            assert await anext(tail) == b"tick 2\n"  # closed early: the connection goes


async def test_idempotent_triggers_replay_over_http(api_server: PublicServer) -> None:
    async with AsyncClient(api_server.url, ADMIN_KEY) as cw:
        await cw.deployments.create({"workflows.py": FLOWS}, activate=True)
        key = f"order-{uuid.uuid4()}"
        first = await cw.runs.trigger("adder", 1, 2, idempotency_key=key, wait=True)
        again = await cw.runs.trigger("adder", 1, 2, idempotency_key=key)
        assert again.replayed and again.run_id == first.run_id and not first.replayed
        with pytest.raises(IdempotencyComputeClientError):
            await cw.runs.trigger("adder", 2, 2, idempotency_key=key)
        fresh = [await cw.runs.trigger("adder", 1, 2) for _ in range(2)]
        assert len({r.run_id for r in fresh} | {first.run_id}) == 3  # a new key each time


async def test_errors_over_http(api_server: PublicServer) -> None:
    async with (
        AsyncClient(api_server.url, ONLY_KEYS["runs:read"], retries=0) as reader,
        AsyncClient(api_server.url, ADMIN_KEY) as admin,
    ):
        with pytest.raises(PermissionDeniedError) as refused:
            await reader.deployments.active()
        assert refused.value.details["requiredScope"] == "deploy:read"
        with pytest.raises(NotFoundError):
            await admin.deployments.active()
        with pytest.raises(ValidationError) as bad:
            [r async for r in admin.runs.list(created_after="not a date")]
        assert bad.value.details == {"field": "createdAfter"}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_an_unreachable_server_is_a_connection_error_after_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    async with AsyncClient(url, "k", retries=2) as cw:
        started = time.monotonic()
        with pytest.raises(ComputeConnectionError) as raised:
            await cw.runs.get("wrun_x", correlation_id="unreachable-1")
    assert raised.value.correlation_id == "unreachable-1" and raised.value.status is None
    assert isinstance(raised.value, ConnectionError)
    retries = [r for r in caplog.records if "retrying GET" in r.getMessage()]
    assert len(retries) == 2 and time.monotonic() - started < 10


async def test_url_and_key_come_from_the_environment(
    api_server: PublicServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMPUTE_WORKER_URL", api_server.url)
    monkeypatch.setenv("COMPUTE_WORKER_API_KEY", ADMIN_KEY)
    async with AsyncClient() as cw:
        assert cw.url == api_server.url
        assert [d async for d in cw.deployments.list()] == []  # authenticated
    with Client() as sync:
        assert sync.url == api_server.url


async def test_a_rate_limited_client_waits_as_retry_after_says(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """On SQLite only: the limiter is per process, the same whatever the database."""
    async with PublicServers(Backend("sqlite", {"sqlite_path": tmp_path / "w.db"}), tmp_path) as s:
        await _rate_limited(await s.start(rate_limit_per_minute=4), caplog)


async def _rate_limited(server: PublicServer, caplog: pytest.LogCaptureFixture) -> None:
    # the limiter's windows are minutes of this process's monotonic clock: start late in
    # one, so that its Retry-After is short
    into = time.monotonic() % 60
    if not 50 <= into <= 56:
        await asyncio.sleep((53 - into) % 60)
    async with (
        AsyncClient(server.url, ADMIN_KEY, retries=0) as impatient,
        AsyncClient(server.url, ADMIN_KEY, retries=2) as patient,
    ):
        await impatient.deployments.create({"workflows.py": FLOWS}, activate=True)  # 2 of 4
        for _ in range(2):
            await impatient.deployments.active()
        with pytest.raises(RateLimitedError) as limited:  # the 5th request this minute
            await impatient.deployments.active()
        assert limited.value.status == 429 and limited.value.retry_after is not None
        wait = limited.value.retry_after
        assert 1 <= wait <= 11, wait

        started = time.monotonic()
        run = await patient.runs.trigger("adder", 1, 1)  # safe: it carries its key
        assert time.monotonic() - started >= wait - 1
    assert any("status 429" in r.getMessage() for r in caplog.records)
    async with AsyncClient(server.url, ADMIN_KEY) as check:
        assert [r.run_id async for r in check.runs.list()] == [run.run_id]  # one run
