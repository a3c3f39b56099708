"""The worker delivers WDK apps' queue messages (LANE.md §4) to a small fake app on a
real socket that records every delivery: headers, body and signature, ack,
``timeoutSeconds``, failure backoff, dedupe, a dead message, one workflow delivery per
run at a time with several workers, the concurrency limit, and a kill -9 of the worker
with a message pending — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from .engine_fixtures import ENGINE_KEY, ServerProcess, eventually
from .public_fixtures import PublicServer, PublicServers, deploy, trigger, wait_for_run

SECRET = "delivery-secret-0123456789"
FLOW = "/.well-known/workflow/v1/flow"
STEP = "/.well-known/workflow/v1/step"
QUICK = {"delivery_allow": ["localhost"], "delivery_lease_seconds": 3}


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def attempt(self) -> int:
        return int(self.headers["x-vqs-message-attempt"])

    @property
    def message_id(self) -> str:
        return self.headers["x-vqs-message-id"]


@dataclass
class FakeApp:
    """An HTTP/1.1 server that records deliveries and answers with ``answer``."""

    answer: Callable[[Delivery], Any] = lambda d: (200, b'{"ok":true}')
    deliveries: list[Delivery] = field(default_factory=list)
    active: int = 0
    most_active: int = 0
    server: asyncio.Server | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> FakeApp:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            delivery = Delivery(path, headers, body, time.monotonic())
            self.deliveries.append(delivery)
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            try:
                answer = self.answer(delivery)
                status, reply = await answer if asyncio.iscoroutine(answer) else answer
            finally:
                self.active -= 1
            writer.write(
                f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                f"content-length: {len(reply)}\r\nconnection: close\r\n\r\n".encode()
                + reply
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def app() -> AsyncIterator[FakeApp]:
    fake = await FakeApp().start()
    yield fake
    await fake.close()


@pytest.fixture
async def worker(servers: PublicServers) -> PublicServer:
    return await servers.start(**QUICK)


async def register(client: httpx.AsyncClient, url: str, **endpoint: Any) -> str:
    body = {"kind": "wdk", "endpoint": {"url": url, **endpoint}}
    response = await client.post("/v1/deployments", json=body)
    assert response.status_code == 201, response.text
    deployment_id: str = response.json()["deploymentId"]
    return deployment_id


async def publish(
    client: httpx.AsyncClient, deployment_id: str, queue: str, message: Any, **opts: Any
) -> str:
    body = {"queueName": queue, "message": message, "opts": {"deploymentId": deployment_id, **opts}}
    response = await client.post("/v1/queue/publish", json=body)
    assert response.status_code == 200, response.text
    message_id: str = response.json()["messageId"]
    return message_id


async def delivered(app: FakeApp, count: int, within: float = 20.0) -> list[Delivery]:
    async def probe() -> bool:
        return len(app.deliveries) >= count

    await eventually(probe, within, f"{count} deliveries (got {len(app.deliveries)})")
    return app.deliveries


async def queued(worker: PublicServer) -> int:
    """Messages still in the queue, counted through the database."""
    if worker.backend.kind == "sqlite":
        with sqlite3.connect(worker.backend.options["sqlite_path"]) as conn:
            return int(conn.execute("select count(*) from queue_messages").fetchone()[0])
    url = worker.backend.options["database_url"].replace("postgresql+asyncpg", "postgresql")
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("select count(*) from queue_messages"))
    finally:
        await conn.close()


async def drained(worker: PublicServer, within: float = 20.0) -> None:
    async def probe() -> bool:
        return await queued(worker) == 0

    await eventually(probe, within, "the queue to drain", interval=0.2)


# -- the request ------------------------------------------------------------------------------


async def test_a_delivery_carries_the_lane_headers_body_and_signature(
    worker: PublicServer, app: FakeApp
) -> None:
    async with worker.client() as client:
        deployment_id = await register(
            client, app.url + "/", headers={"x-gateway": "gw"}, deliverySecret=SECRET
        )
        message = {"runId": "wrun_1", "input": {"__type": "Uint8Array", "data": "AAEC/w=="}}
        message_id = await publish(
            client, deployment_id, "__ns_wkf_workflow_w//a", message,
            headers={"x-extra": "e", "x-vqs-message-id": "forged"},
        )  # fmt: skip
        step_id = await publish(client, deployment_id, "__wkf_step_s", {"workflowRunId": "wrun_1"})
    [first, second] = sorted(await delivered(app, 2), key=lambda d: d.path)
    assert (first.path, second.path) == (FLOW, STEP)
    assert json.loads(first.body) == message
    headers = first.headers
    assert (headers["x-vqs-queue-name"], headers["x-vqs-message-id"]) == (
        "__ns_wkf_workflow_w//a", message_id,
    )  # fmt: skip
    assert headers["x-vqs-message-attempt"] == "1"
    assert headers["content-type"] == "application/json"
    assert (headers["x-gateway"], headers["x-extra"]) == ("gw", "e")
    timestamp = int(headers["x-compute-timestamp"])
    assert abs(timestamp - time.time()) < 60
    signed = f"{timestamp}.{message_id}.1.".encode() + first.body
    expected = hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert headers["x-compute-signature"] == f"v1={expected}"
    assert second.message_id == step_id
    await drained(worker)


async def test_timeout_seconds_delivers_the_same_message_again_later(
    worker: PublicServer, app: FakeApp
) -> None:
    app.answer = lambda d: (200, b'{"timeoutSeconds": 1}' if d.attempt == 1 else b'{"ok":true}')
    async with worker.client() as client:
        deployment_id = await register(client, app.url)
        message_id = await publish(client, deployment_id, "__wkf_workflow_w", {"runId": "wrun_t"})
    first, second = await delivered(app, 2)
    assert (first.message_id, second.message_id) == (message_id, message_id)
    assert (first.attempt, second.attempt) == (1, 2)
    assert second.at - first.at >= 0.9
    await drained(worker)
    assert len(app.deliveries) == 2


async def test_failures_are_delivered_again_with_backoff(
    worker: PublicServer, app: FakeApp
) -> None:
    app.answer = lambda d: (500, b'"TypeError: boom"') if d.attempt < 3 else (200, b"{}")
    async with worker.client() as client:
        deployment_id = await register(client, app.url)
        await publish(client, deployment_id, "__wkf_workflow_w", {"runId": "wrun_f"})
    first, second, third = await delivered(app, 3)
    assert [d.attempt for d in (first, second, third)] == [1, 2, 3]
    assert second.at - first.at >= 0.9  # 1 s, then 2 s
    assert third.at - second.at >= 1.9
    await drained(worker)


async def test_an_unreachable_app_is_tried_again_without_counting_attempts(
    worker: PublicServer, app: FakeApp
) -> None:
    closed = await FakeApp().start()
    await closed.close()  # nothing listens there now
    async with worker.client() as client:
        deployment_id = await register(client, closed.url)
        await publish(client, deployment_id, "__wkf_workflow_w", {"runId": "wrun_u"})
        await asyncio.sleep(2.5)  # refused twice or more
        announce = {"x-compute-deployment-id": deployment_id, "x-compute-app-url": app.url}
        assert (await client.get("/v1/world/deployment-id", headers=announce)).status_code == 200
    [only] = await delivered(app, 1, within=30)
    assert only.attempt == 1
    await drained(worker)


async def test_idempotency_keys_deliver_once(worker: PublicServer, app: FakeApp) -> None:
    async with worker.client() as client:
        deployment_id = await register(client, app.url)
        ids = {
            await publish(
                client,
                deployment_id,
                "__wkf_workflow_w",
                {"runId": "wrun_d"},
                idempotencyKey="once",
            )
            for _ in range(3)
        }
    assert len(ids) == 1
    await delivered(app, 1)
    await drained(worker)
    await asyncio.sleep(0.5)
    assert len(app.deliveries) == 1


async def test_a_message_that_keeps_failing_is_dropped(
    servers: PublicServers, app: FakeApp
) -> None:
    worker = await servers.start(**QUICK, delivery_max_failures=2)
    app.answer = lambda d: (503, b"down")
    async with worker.client() as client:
        deployment_id = await register(client, app.url)
        await publish(client, deployment_id, "__wkf_step_s", {"workflowRunId": "wrun_x"})
    await delivered(app, 2)
    await drained(worker)
    await asyncio.sleep(1.5)
    assert len(app.deliveries) == 2


async def test_a_triggered_run_reaches_the_app(worker: PublicServer, app: FakeApp) -> None:
    """With a Python deployment active, the app's run still goes to the app (the
    Python engine leaves its message alone)."""
    async with worker.client() as client:
        await deploy(client)  # active
        deployment_id = await register(client, app.url)
        body = {"workflowName": "workflow//./w//f", "input": [1], "deploymentId": deployment_id}
        response = await client.post("/v1/runs", json=body, headers={"Idempotency-Key": "t-1"})
        assert response.status_code == 202, response.text
        run_id = response.json()["runId"]
    [delivery] = await delivered(app, 1)
    assert delivery.headers["x-vqs-queue-name"] == "__wkf_workflow_workflow//./w//f"
    assert json.loads(delivery.body) == {"runId": run_id}
    async with worker.client() as client:
        run = (await client.get(f"/v1/runs/{run_id}")).json()
        assert (run["status"], run["deploymentId"], run["input"]) == ("pending", deployment_id, [1])
        python = await trigger(client, "adder", [1, 2])
        assert (await wait_for_run(client, python.json()["runId"]))["output"] == 3


# -- concurrency ------------------------------------------------------------------------------


async def test_one_runs_workflow_deliveries_never_overlap_across_workers(
    servers: PublicServers, app: FakeApp
) -> None:
    workers = [await servers.start(**QUICK) for _ in range(2)]
    overlaps: list[str] = []
    busy: set[str] = set()

    async def slow(delivery: Delivery) -> tuple[int, bytes]:
        run_id = json.loads(delivery.body)["runId"]
        if run_id in busy:
            overlaps.append(run_id)
        busy.add(run_id)
        await asyncio.sleep(0.2)
        busy.discard(run_id)
        return 200, b"{}"

    app.answer = slow
    async with workers[0].client() as client:
        deployment_id = await register(client, app.url)
        for index in range(12):
            await publish(client, deployment_id, "__wkf_workflow_w", {"runId": f"wrun_{index % 3}"})
    await delivered(app, 12, within=40)
    await drained(workers[0])
    assert overlaps == []
    assert len({d.message_id for d in app.deliveries}) == 12 == len(app.deliveries)


async def test_the_concurrency_limit_holds_per_app(servers: PublicServers, app: FakeApp) -> None:
    worker = await servers.start(**QUICK, delivery_concurrency=2)

    async def slow(delivery: Delivery) -> tuple[int, bytes]:
        await asyncio.sleep(0.3)
        return 200, b"{}"

    app.answer = slow
    async with worker.client() as client:
        deployment_id = await register(client, app.url)
        for index in range(6):
            step = {"workflowRunId": "wrun_c", "stepId": f"step_{index}"}
            await publish(client, deployment_id, "__wkf_step_s", step)
    await delivered(app, 6, within=30)
    assert app.most_active == 2


# -- crashes ----------------------------------------------------------------------------------


async def test_kill_9_mid_delivery_loses_nothing_and_keeps_the_attempt_count(
    backend: Any, tmp_path: Path, app: FakeApp
) -> None:
    """The app holds the first delivery; the worker is killed; the restarted worker
    delivers the message again once its lease ran out, as attempt 2."""
    release = asyncio.Event()

    async def hold_first(delivery: Delivery) -> tuple[int, bytes]:
        if delivery.attempt == 1:
            await release.wait()
        return 200, b"{}"

    app.answer = hold_first
    args = [*backend.cli_args, "--data-dir", str(tmp_path / "data"),
            "--delivery-allow", "localhost", "--delivery-lease-seconds", "2"]  # fmt: skip
    first = ServerProcess(args, tmp_path, "first").start()
    try:
        url = await first.ready()
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {ENGINE_KEY}"}
        ) as client:
            deployment_id = await register(client, app.url)
            message_id = await publish(client, deployment_id, "__wkf_workflow_w", {"runId": "r"})
        await delivered(app, 1)
        first.kill9()
    finally:
        first.stop()
    release.set()
    second = ServerProcess(args, tmp_path, "second").start()
    try:
        await second.ready()
        again = (await delivered(app, 2, within=30))[1]
        assert (again.message_id, again.attempt) == (message_id, 2)
        await asyncio.sleep(1.0)
        assert len(app.deliveries) == 2
    finally:
        second.stop()
