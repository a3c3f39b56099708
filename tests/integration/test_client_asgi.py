"""``AsyncClient`` against the real application in process: ``httpx.ASGITransport`` over
``create_compute_worker(...)`` with its lifespan running (a real SQLite file, the local
backend), no socket. Every method, its typed results and its typed errors."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from compute_worker import create_compute_worker
from compute_worker.client import (
    AsyncClient,
    AuthenticationError,
    ConflictError,
    Deployment,
    DeploymentNotFoundError,
    HookNotFoundError,
    IdempotencyComputeClientError,
    InvalidDeploymentError,
    NoActiveDeploymentError,
    PermissionDeniedError,
    RunAlreadyTerminalError,
    RunNotFoundError,
    StreamInfo,
    ValidationError,
    WorkflowNotFoundError,
)

from .public_fixtures import ADMIN_KEY, ONLY_KEYS, SEED_KEYS, WEBHOOK_SECRETS, webhook_providers

FLOWS = """\
from compute_worker import create_hook, get_writable, step, workflow


@step
async def emit(text, close=False):
    out = get_writable("log")
    await out.write(text)
    if close:
        await out.close()
    return text


@step
async def add(a, b):
    return a + b


@workflow
async def adder(a, b):
    return await add(a, b)


@workflow
async def talk(token):
    await emit("one\\n")
    got = await create_hook(token=token)
    await emit("two\\n", close=True)
    return got


@workflow
async def on_delivery(delivery):
    return delivery
"""


@pytest.fixture
async def cw(tmp_path: Path) -> AsyncIterator[AsyncClient]:
    app = create_compute_worker(
        data_dir=tmp_path, worldcompute="local", seed_api_keys=SEED_KEYS,
        webhook_providers=webhook_providers(),
    )  # fmt: skip
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with AsyncClient("http://in-process", ADMIN_KEY, transport=transport) as client:
            client.transport = transport  # type: ignore[attr-defined]
            yield client


def other(cw: AsyncClient, key: str | None) -> AsyncClient:
    return AsyncClient(cw.url, key, transport=cw.transport, retries=0)  # type: ignore[attr-defined]


async def _deployed(cw: AsyncClient) -> Deployment:
    return await cw.deployments.create({"workflows.py": FLOWS}, activate=True)


async def test_deployments_from_a_folder_with_progress(cw: AsyncClient, tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    (folder / "__pycache__").mkdir(parents=True)
    (folder / "workflows.py").write_text(FLOWS)
    (folder / "__pycache__" / "workflows.cpython-311.pyc").write_bytes(b"\x00")
    seen: list[tuple[int, int]] = []
    created = await cw.deployments.create(
        folder, metadata={"release": "1"}, progress=lambda sent, total: seen.append((sent, total))
    )
    assert isinstance(created, Deployment) and created.active is False
    assert created.metadata == {"release": "1"} and created.kind == "python"
    assert set(created.workflow_names()) == {"adder", "talk", "on_delivery"}
    assert created.correlation_id
    assert seen[0][0] == 0 and seen[-1][0] == seen[-1][1] > 0

    with pytest.raises(NoActiveDeploymentError):
        await cw.deployments.active()
    activated = await cw.deployments.activate(created.deployment_id)
    assert activated.active is True
    assert (await cw.deployments.active()).deployment_id == created.deployment_id
    assert (await cw.deployments.get(created.deployment_id)).digest == created.digest
    second = await cw.deployments.create({"workflows.py": FLOWS})
    listed = [d async for d in cw.deployments.list(page_size=1)]
    assert [d.deployment_id for d in listed] == [second.deployment_id, created.deployment_id]
    assert all(d.pinned_runs == 0 for d in listed)

    with pytest.raises(DeploymentNotFoundError):
        await cw.deployments.get("dpl_missing")
    with pytest.raises(InvalidDeploymentError) as raised:
        await cw.deployments.create({"workflows.py": "raise SystemExit('nope')\n"})
    assert raised.value.status == 422


async def test_runs_from_trigger_to_stream(cw: AsyncClient) -> None:
    deployment = await _deployed(cw)
    done = await cw.runs.trigger("adder", 2, 3, wait=True, timeout=30)
    assert (done.status, done.output, done.input) == ("completed", 5, [2, 3])
    assert done.deployment_id == deployment.deployment_id and done.is_terminal
    assert done.completed_at is not None and done.idempotency_key

    token = f"tok-{uuid.uuid4()}"
    run = await cw.runs.trigger("talk", token, correlation_id="client-asgi-1")
    assert run.status == "pending" and run.correlation_id == "client-asgi-1"
    for _ in range(200):
        hooks = await cw.runs.hooks(run.run_id)
        if hooks:
            break
        await asyncio.sleep(0.05)
    assert [h.token for h in hooks] == [token]
    assert await cw.runs.streams(run.run_id) == [StreamInfo(name="log", chunks=1, done=False)]
    resumed = await cw.hooks.resume(token, {"approved": True})
    assert resumed.run_id == run.run_id and resumed.token == token
    ended = await cw.runs.wait(run.run_id, timeout=30)
    assert ended.output == {"approved": True}
    assert [chunk async for chunk in cw.runs.stream(run.run_id, "log")] == [b"one\n", b"two\n"]
    assert [c async for c in cw.runs.stream(run.run_id, "log", start_index=-1)] == [b"two\n"]

    steps = await cw.runs.steps(run.run_id)
    assert [s.output for s in steps] == ["one\n", "two\n"]
    assert all(s.status == "completed" and s.attempt == 1 for s in steps)
    events = await cw.runs.events(run.run_id)
    assert events[0].event_type == "run_created" and events[-1].event_type == "run_completed"
    page = await cw.runs.events_page(run.run_id, limit=2)
    later = await cw.runs.events_page(run.run_id, page.cursor, limit=100)
    assert [e.event_id for e in page.data + later.data] == [e.event_id for e in events]

    listed = [r.run_id async for r in cw.runs.list(status="completed", workflow="talk")]
    assert listed == [run.run_id]
    everything = [r.run_id async for r in cw.runs.list(page_size=1)]
    assert everything == [run.run_id, done.run_id]
    assert [r async for r in cw.runs.list(deployment_id="dpl_other")] == []


async def test_idempotency_replay_and_conflict(cw: AsyncClient) -> None:
    await _deployed(cw)
    first = await cw.runs.trigger("adder", 1, 1, idempotency_key="asgi-key")
    again = await cw.runs.trigger("adder", 1, 1, idempotency_key="asgi-key")
    assert (again.run_id, again.replayed, first.replayed) == (first.run_id, True, False)
    with pytest.raises(IdempotencyComputeClientError) as raised:
        await cw.runs.trigger("adder", 1, 2, idempotency_key="asgi-key")
    assert raised.value.status == 409 and raised.value.code == "idempotency_conflict"
    assert isinstance(raised.value, ConflictError)


async def test_cancel_and_the_errors_of_runs(cw: AsyncClient) -> None:
    with pytest.raises(NoActiveDeploymentError) as no_active:
        await cw.runs.trigger("adder", 1, 1)
    assert no_active.value.status == 409
    await _deployed(cw)
    token = f"tok-{uuid.uuid4()}"
    run = await cw.runs.trigger("talk", token)
    cancelled = await cw.runs.cancel(run.run_id)
    assert cancelled.status == "cancelled"
    assert (await cw.runs.cancel(run.run_id)).status == "cancelled"
    with pytest.raises(HookNotFoundError):
        await cw.hooks.resume(token, 1)
    done = await cw.runs.trigger("adder", 1, 1, wait=True)
    with pytest.raises(RunAlreadyTerminalError):
        await cw.runs.cancel(done.run_id)
    with pytest.raises(RunNotFoundError) as missing:
        await cw.runs.get("wrun_missing")
    assert missing.value.details == {"runId": "wrun_missing"}
    with pytest.raises(WorkflowNotFoundError) as unknown:
        await cw.runs.trigger("nope")
    assert "adder" in str(unknown.value.details)
    with pytest.raises(ValidationError) as bad:
        [r async for r in cw.runs.list(status="finished")]
    assert bad.value.details == {"field": "status"}


async def test_keys_are_checked(cw: AsyncClient) -> None:
    async with other(cw, "not-a-key") as stranger, other(cw, ONLY_KEYS["runs:read"]) as reader:
        with pytest.raises(AuthenticationError) as unknown:
            await stranger.runs.get("wrun_x")
        assert unknown.value.status == 401
        with pytest.raises(PermissionDeniedError) as refused:
            await reader.runs.trigger("adder", 1, 1)
        assert refused.value.details == {"requiredScope": "trigger:write"}
        assert (await stranger.health()).status == "ok"


async def test_signed_webhook_deliveries(cw: AsyncClient) -> None:
    await _deployed(cw)
    for scheme, secret in WEBHOOK_SECRETS.items():
        delivery = f"dlv-{scheme}-{uuid.uuid4()}"
        sent: dict[str, Any] = {"type": "push", "n": 1}
        accepted = await cw.webhooks.send(
            f"{scheme}-trigger", sent, scheme=scheme, secret=secret, delivery_id=delivery
        )
        assert accepted.duplicate is False and accepted.run_id
        assert accepted.delivery_id == delivery
        again = await cw.webhooks.send(
            f"{scheme}-trigger", sent, scheme=scheme, secret=secret, delivery_id=delivery
        )
        assert again.duplicate is True
        run = await cw.runs.wait(accepted.run_id, timeout=30)
        assert run.output["provider"] == f"{scheme}-trigger"
        with pytest.raises(AuthenticationError) as forged:
            await cw.webhooks.send(f"{scheme}-trigger", sent, scheme=scheme, secret="wrong")
        assert forged.value.code == "invalid_signature"
