"""``GET /v1/runs/{runId}?wait=S`` on real servers over a real socket, on SQLite and
PostgreSQL: the answer comes when the run ends or after ``S`` seconds, bad values are
400 ``invalid_request`` with nothing changed, a run ended by another worker is seen,
a client that goes away ends the wait, and ``Client.runs.wait`` long-polls."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from compute_worker.client import AsyncClient, Client, Run

from ._helpers import assert_error, assert_ok
from .public_fixtures import (
    ADMIN_KEY,
    PublicServer,
    PublicServers,
    deploy,
    row_counts,
    started_run,
    wait_for_hook,
    wait_for_run,
)


async def _timed_get(client: httpx.AsyncClient, path: str, **params: str) -> tuple[Any, float]:
    started = time.monotonic()
    response = await client.get(path, params=params, timeout=30)
    return response, time.monotonic() - started


async def _hook_run(client: httpx.AsyncClient) -> tuple[str, str]:
    """A run of ``wait_for_hook``, live and waiting on its hook: (run id, token)."""
    token = f"tok-{uuid.uuid4()}"
    run_id = await started_run(client, "wait_for_hook", token)
    await wait_for_hook(client, token)
    return run_id, token


async def _resume(client: httpx.AsyncClient, token: str, payload: Any) -> None:
    assert_ok(await client.post("/v1/runs/resume", json={"token": token, "payload": payload}), 202)


async def test_a_wait_answers_when_the_run_completes(
    api: httpx.AsyncClient, deployed: dict[str, Any]
) -> None:
    run_id, token = await _hook_run(api)
    waiting = asyncio.create_task(_timed_get(api, f"/v1/runs/{run_id}", wait="10"))
    await asyncio.sleep(0.5)
    assert not waiting.done(), "answered before the run ended"
    resumed_at = time.monotonic()
    await _resume(api, token, {"go": True})
    response, _ = await asyncio.wait_for(waiting, 15)
    took = time.monotonic() - resumed_at
    run = assert_ok(response)
    assert (run["runId"], run["status"], run["output"]) == (run_id, "completed", {"go": True})
    assert took < 5, f"the wait answered {took:.2f} s after the resume"
    plain = assert_ok(await api.get(f"/v1/runs/{run_id}"))
    assert run == plain  # the same body as without a wait


async def test_a_wait_on_an_ended_run_answers_at_once(
    api: httpx.AsyncClient, deployed: dict[str, Any]
) -> None:
    run_id = await started_run(api, "adder", 2, 3)
    await wait_for_run(api, run_id)
    response, took = await _timed_get(api, f"/v1/runs/{run_id}", wait="60", resolveData="none")
    run = assert_ok(response)
    assert run["status"] == "completed" and "output" not in run
    assert took < 1


async def test_a_wait_that_times_out_answers_the_live_run(
    api: httpx.AsyncClient, deployed: dict[str, Any]
) -> None:
    run_id, _ = await _hook_run(api)
    response, took = await _timed_get(api, f"/v1/runs/{run_id}", wait="0.5")
    assert assert_ok(response)["status"] == "running"
    assert 0.5 <= took < 3


async def test_a_wait_on_an_unknown_run_is_404_at_once(api: httpx.AsyncClient) -> None:
    run_id = "wrun_01M80000000000000000000000"
    response, took = await _timed_get(api, f"/v1/runs/{run_id}", wait="30")
    assert assert_error(response, 404, "run_not_found")["details"]["runId"] == run_id
    assert took < 1


BAD_WAITS = ["abc", "0", "-1", "61", "60.5", "nan", "inf", "-inf", "1e999", "", " 5", "0x10",
             "1_0", "5s"]  # fmt: skip


@pytest.mark.parametrize("wait", BAD_WAITS)
async def test_a_bad_wait_is_400_and_changes_nothing(
    api_server: PublicServer, api: httpx.AsyncClient, deployed: dict[str, Any], wait: str
) -> None:
    run_id, _ = await _hook_run(api)
    before = await row_counts(api_server)
    for target in (run_id, "wrun_01M80000000000000000000000"):  # checked before the run
        response, took = await _timed_get(api, f"/v1/runs/{target}", wait=wait)
        body = assert_error(response, 400, "invalid_request")
        assert body["details"] == {"field": "wait"}, body
        assert "wait" in body["message"] and took < 1
    assert await row_counts(api_server) == before
    assert assert_ok(await api.get(f"/v1/runs/{run_id}"))["status"] == "running"


async def test_the_openapi_document_declares_wait(api: httpx.AsyncClient) -> None:
    document = assert_ok(await api.get("/v1/openapi.json"))
    params = {p["name"]: p for p in document["paths"]["/v1/runs/{runId}"]["get"]["parameters"]}
    assert params["wait"]["in"] == "query" and params["wait"]["required"] is False
    schema = params["wait"]["schema"]
    assert (schema["type"], schema["exclusiveMinimum"], schema["maximum"]) == ("number", 0, 60)


async def test_a_run_ended_by_another_worker_ends_the_wait(
    servers: PublicServers, tmp_path: Path
) -> None:
    """Worker A triggers and executes the run; worker B (role ``api``: it executes
    nothing) answers the wait. On PostgreSQL B hears A's NOTIFY; on SQLite, which has no
    notification between processes, B's once-a-second re-read sees the end."""
    shared = {"encryption_secret": b"w" * 32, "artifact_dir": tmp_path / "artifacts"}
    worker_a = await servers.start(**shared)
    worker_b = await servers.start(role="api", **shared)
    async with worker_a.client() as a, worker_b.client() as b:
        await deploy(a)
        run_id, token = await _hook_run(a)
        waiting = asyncio.create_task(_timed_get(b, f"/v1/runs/{run_id}", wait="20"))
        await asyncio.sleep(0.5)
        assert not waiting.done(), "answered before the run ended"
        resumed_at = time.monotonic()
        await _resume(a, token, "from A")
        response, _ = await asyncio.wait_for(waiting, 25)
        took = time.monotonic() - resumed_at
    run = assert_ok(response)
    assert (run["status"], run["output"]) == ("completed", "from A")
    assert took < 5, f"worker B answered {took:.2f} s after the resume"


def _requests_with_status(metrics: str, status: str) -> float:
    pattern = (
        r'^\w+_http_requests_total\{[^}]*method="GET"[^}]*route="/v1/runs/\{run_id\}"'
        rf'[^}}]*status="{status}"[^}}]*\}} ([0-9.e+]+)$'
    )
    return sum(float(found) for found in re.findall(pattern, metrics, re.MULTILINE))


async def test_a_client_that_goes_away_ends_the_wait(
    api_server: PublicServer, api: httpx.AsyncClient, deployed: dict[str, Any]
) -> None:
    run_id, _ = await _hook_run(api)
    address = urlsplit(api_server.url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    writer.write(
        f"GET /v1/runs/{run_id}?wait=30 HTTP/1.1\r\nHost: {address.netloc}\r\n"
        f"Authorization: Bearer {ADMIN_KEY}\r\n\r\n".encode()
    )
    await writer.drain()
    await asyncio.sleep(0.5)
    writer.close()  # gone mid-wait
    await writer.wait_closed()
    deadline = time.monotonic() + 5  # well before the 30 s asked for
    while _requests_with_status((await api.get("/metrics")).text, "499") < 1:
        assert time.monotonic() < deadline, "the wait goes on without its client"
        await asyncio.sleep(0.1)
    # the server is as healthy as before: the next wait works as ever
    response, took = await _timed_get(api, f"/v1/runs/{run_id}", wait="0.2")
    assert assert_ok(response)["status"] == "running" and took < 3
    assert reader.at_eof() or not await reader.read()


def _sync_wait(url: str, run_id: str) -> Run:
    with Client(url, ADMIN_KEY) as cw:
        return cw.runs.wait(run_id, timeout=20)


async def test_the_clients_wait_returns_when_the_run_completes(
    api_server: PublicServer, api: httpx.AsyncClient, deployed: dict[str, Any]
) -> None:
    run_id, token = await _hook_run(api)
    async with AsyncClient(api_server.url, ADMIN_KEY) as cw:
        waiting = asyncio.create_task(cw.runs.wait(run_id, timeout=20))
        sync_wait = asyncio.create_task(asyncio.to_thread(_sync_wait, api_server.url, run_id))
        await asyncio.sleep(0.5)
        assert not waiting.done() and not sync_wait.done()
        await _resume(api, token, [1, 2])
        ended = await asyncio.wait_for(waiting, 10)
        ended_sync = await asyncio.wait_for(sync_wait, 10)
    assert (ended.status, ended.output) == ("completed", [1, 2])
    assert (ended_sync.status, ended_sync.output) == ("completed", [1, 2])
