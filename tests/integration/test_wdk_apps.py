"""Workflow DevKit apps on a real server (kind ``wdk``, LANE.md §3, §7): registering
one over the public API, triggering its workflows, the world lane naming it, and the
Python engine leaving its messages alone — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from compute_worker.client import AppEndpoint, AsyncClient, ComputeClientError

from .public_fixtures import ADMIN_KEY, PublicServer, PublicServers

NAME = "workflow//./workflows/scenarios//noStep"
SECRET = "delivery-secret-0123456789"


@pytest.fixture
async def wdk_server(servers: PublicServers) -> PublicServer:
    return await servers.start(delivery_allow=["localhost"])


@pytest.fixture
async def api(wdk_server: PublicServer) -> AsyncIterator[httpx.AsyncClient]:
    async with wdk_server.client() as client:
        yield client


async def register(api: httpx.AsyncClient, url: str, **endpoint: Any) -> dict[str, Any]:
    response = await api.post(
        "/v1/deployments", json={"kind": "wdk", "endpoint": {"url": url, **endpoint}}
    )
    assert response.status_code == 201, response.text
    found: dict[str, Any] = response.json()
    return found


async def test_an_app_is_registered_activated_and_triggered(api: httpx.AsyncClient) -> None:
    made = await register(
        api, "http://127.0.0.1:3999/", headers={"x-gateway": "g"}, deliverySecret=SECRET
    )
    assert made["kind"] == "wdk" and made["workflows"] == []
    assert made["endpoint"] == {"url": "http://127.0.0.1:3999", "headers": {"x-gateway": "g"},
                                "signed": True}  # fmt: skip
    assert SECRET not in (await api.get(f"/v1/deployments/{made['deploymentId']}")).text
    activated = await api.post(f"/v1/deployments/{made['deploymentId']}/activate")
    assert activated.status_code == 200, activated.text
    headers = {"Idempotency-Key": "wdk-1"}
    body = {"workflowName": NAME, "input": [{"a": 1}]}
    triggered = await api.post("/v1/runs", json=body, headers=headers)
    assert triggered.status_code == 202, triggered.text
    run = triggered.json()
    assert (run["deploymentId"], run["workflowName"]) == (made["deploymentId"], NAME)
    replayed = await api.post("/v1/runs", json=body, headers=headers)
    assert replayed.json()["runId"] == run["runId"]
    assert replayed.headers["Idempotency-Replayed"] == "true"
    await asyncio.sleep(1.5)  # the Python engine polls twice a second: it must not take it
    still = (await api.get(f"/v1/runs/{run['runId']}")).json()
    assert still["status"] == "pending"
    world = await api.get(f"/v1/world/runs/{run['runId']}")
    assert world.json()["input"] == {"__type": "Uint8Array", "data": "ZGV2bFtbMV0seyJhIjoyfSwxXQ=="}
    assert run["input"] == still["input"] == [{"a": 1}]  # the public lane shows the value


def envelope(data: bytes) -> dict[str, str]:
    return {"__type": "Uint8Array", "data": base64.b64encode(data).decode()}


async def test_the_public_lane_decrypts_an_apps_output(api: httpx.AsyncClient) -> None:
    """What a WDK runtime writes (``encr`` + AES-256-GCM of ``devl`` + devalue, with the
    run's key from the lane) is shown as the value; what cannot be read stays bytes."""
    made = await register(api, "http://localhost")
    body = {"workflowName": NAME, "input": [], "deploymentId": made["deploymentId"]}
    run_id = (await api.post("/v1/runs", json=body, headers={"Idempotency-Key": "e-1"})).json()[
        "runId"
    ]
    found = await api.post("/v1/world/encryption-key", json={"runId": run_id})
    key = base64.b64decode(found.json()["key"])
    nonce = os.urandom(12)
    sealed = b"encr" + nonce + AESGCM(key).encrypt(nonce, b'devl[{"total":1},42]', None)
    for event in (
        {"eventType": "run_started"},
        {"eventType": "run_completed", "eventData": {"output": envelope(sealed)}},
    ):
        created = await api.post("/v1/world/events/create", json={"runId": run_id, "data": event})
        assert created.status_code == 200, created.text  # fmt: skip
    shown = (await api.get(f"/v1/runs/{run_id}")).json()
    assert (shown["status"], shown["output"]) == ("completed", {"total": 42})
    listed = (await api.get("/v1/runs", params={"deploymentId": made["deploymentId"]})).json()
    assert [r["output"] for r in listed["data"]] == [{"total": 42}]
    world = (await api.get(f"/v1/world/runs/{run_id}")).json()
    assert world["output"] == envelope(sealed)  # the World lane keeps the bytes


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"kind": "wdk"}, 400, "invalid_request"),
        ({"kind": "wdk", "endpoint": "http://127.0.0.1"}, 400, "invalid_request"),
        ({"kind": "wdk", "endpoint": {}}, 400, "invalid_request"),
        ({"kind": "wdk", "endpoint": {"url": 5}}, 400, "invalid_request"),
        ({"kind": "wdk", "endpoint": {"url": "http://127.0.0.1", "extra": 1}}, 400,
         "invalid_request"),
        ({"kind": "wdk", "endpoint": {"url": "http://127.0.0.1", "headers": {"a": 1}}}, 400,
         "invalid_request"),
        ({"kind": "wdk", "endpoint": {"url": "http://10.0.0.9:80"}}, 400, "outbound_refused"),
        ({"kind": "wdk", "endpoint": {"url": "gopher://127.0.0.1"}}, 400, "outbound_refused"),
        ({"kind": "python", "endpoint": {"url": "http://127.0.0.1"}}, 400, "invalid_request"),
    ],
)  # fmt: skip
async def test_bad_registrations_are_refused_with_a_code(
    api: httpx.AsyncClient, body: dict[str, Any], status: int, code: str
) -> None:
    response = await api.post("/v1/deployments", json=body)
    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    listed = await api.get("/v1/deployments")
    assert listed.json()["data"] == []


async def test_without_an_allow_list_no_app_can_be_registered(servers: PublicServers) -> None:
    server = await servers.start()
    async with server.client() as api:
        response = await api.post(
            "/v1/deployments", json={"kind": "wdk", "endpoint": {"url": "http://127.0.0.1:1"}}
        )
    assert response.status_code == 400
    assert response.json()["code"] == "outbound_refused"
    assert "nothing" in str(response.json()["details"])


async def test_the_world_lane_names_the_apps_own_deployment(api: httpx.AsyncClient) -> None:
    made = await register(api, "http://localhost")
    named = {"x-compute-deployment-id": made["deploymentId"],
             "x-compute-app-url": "http://127.0.0.1:4321"}  # fmt: skip
    found = await api.get("/v1/world/deployment-id", headers=named)
    assert found.json() == {"deploymentId": made["deploymentId"]}
    now = (await api.get(f"/v1/deployments/{made['deploymentId']}")).json()
    assert now["endpoint"]["url"] == "http://127.0.0.1:4321"
    missing = await api.get("/v1/world/deployment-id",
                            headers={"x-compute-deployment-id": "dpl_missing"})  # fmt: skip
    assert (missing.status_code, missing.json()["code"]) == (404, "deployment_not_found")
    refused = await api.get(
        "/v1/world/deployment-id",
        headers={**named, "x-compute-app-url": "http://192.168.1.1:80"},
    )
    assert refused.status_code == 400
    assert refused.json()["details"]["field"] == "x-compute-app-url"


async def test_namespaced_queue_names_are_published(api: httpx.AsyncClient) -> None:
    made = await register(api, "http://localhost")
    response = await api.post(
        "/v1/queue/publish",
        json={"queueName": "__ns_wkf_workflow_" + NAME, "message": {"runId": "wrun_x"}},
        headers={"x-compute-deployment-id": made["deploymentId"]},
    )
    assert response.status_code == 200, response.text
    assert response.json()["messageId"].startswith("msg_")


async def test_the_python_client_registers_an_app(wdk_server: PublicServer) -> None:
    async with AsyncClient(wdk_server.url, ADMIN_KEY) as cw:
        made = await cw.deployments.register_app(
            "http://127.0.0.1:3000", headers={"x-gateway": "g"}, delivery_secret=SECRET,
            activate=True,
        )  # fmt: skip
        assert (made.kind, made.active) == ("wdk", True)
        assert made.endpoint == AppEndpoint(
            url="http://127.0.0.1:3000", headers={"x-gateway": "g"}, signed=True
        )
        assert (await cw.deployments.active()).deployment_id == made.deployment_id
        with pytest.raises(ComputeClientError) as refused:
            await cw.deployments.register_app("http://10.9.9.9:3000")
        assert refused.value.code == "outbound_refused"
