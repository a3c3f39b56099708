"""The public lane over a real socket, on SQLite and PostgreSQL (http-api.md): health,
OpenAPI, triggering and reading runs, cancel, resume, idempotency, deployments and
webhooks — the paths that succeed. Refusals live in ``test_public_api_errors.py``."""

from __future__ import annotations

import asyncio
import io
import json
import re
import tarfile
import uuid
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from ._helpers import CORRELATION_HEADER, assert_error, assert_ok, is_uuid4
from .public_fixtures import (
    ADMIN_KEY,
    ONLY_KEYS,
    OTHER_WORKFLOWS,
    SCHEMES,
    SECOND_KEY,
    WITHOUT_KEYS,
    WORKFLOW_NAMES,
    WORKFLOWS,
    PublicServer,
    PublicServers,
    WebhookSink,
    audit_entries,
    deploy,
    signed_headers,
    started_run,
    trigger,
    wait_for_active_in_health,
    wait_for_hook,
    wait_for_run,
    webhook_body,
    webhook_providers,
    world_run_ids,
)

ULID = r"[0-9A-HJKMNP-TV-Z]{26}"
ISO_MS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def artifact_files(server: PublicServer) -> list[Path]:
    return sorted(path for path in server.artifact_dir.rglob("*") if path.is_file())


# -- health and OpenAPI ----------------------------------------------------------------------


async def test_health_reports_checks_and_the_active_deployment(api_server: PublicServer) -> None:
    async with api_server.client(key=None) as anon, api_server.client() as api:
        response = await anon.get("/v1/health")
        body = assert_ok(response)
        assert is_uuid4(response.headers[CORRELATION_HEADER])
        assert body["status"] == "ok"
        assert isinstance(body["version"], str) and body["version"]
        assert isinstance(body["world"], str) and body["world"]
        assert body["activeDeploymentId"] is None
        assert body["checks"] == {"database": "ok", "artifactStore": "ok"}

        deployment = await deploy(api)
        await wait_for_active_in_health(anon, deployment["deploymentId"])
        response = await anon.get("/v1/health", headers={CORRELATION_HEADER: "health-check-1"})
        assert assert_ok(response)["activeDeploymentId"] == deployment["deploymentId"]
        assert response.headers[CORRELATION_HEADER] == "health-check-1"


def _operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """``(METHOD, path with every {param} as {})`` → operation."""
    return {
        (method.upper(), re.sub(r"\{[^}]+\}", "{}", path)): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    }


PUBLIC_ROUTES = {
    ("GET", "/v1/health"),
    ("GET", "/v1/openapi.json"),
    ("POST", "/v1/runs"),
    ("GET", "/v1/runs"),
    ("GET", "/v1/runs/{}"),
    ("GET", "/v1/runs/{}/steps"),
    ("GET", "/v1/runs/{}/events"),
    ("GET", "/v1/runs/{}/hooks"),
    ("GET", "/v1/runs/{}/streams"),
    ("GET", "/v1/runs/{}/streams/{}"),
    ("POST", "/v1/runs/{}/cancel"),
    ("POST", "/v1/runs/resume"),
    ("POST", "/v1/deployments"),
    ("GET", "/v1/deployments"),
    ("GET", "/v1/deployments/{}"),
    ("POST", "/v1/deployments/{}/activate"),
    ("GET", "/v1/schedules"),
    ("GET", "/v1/schedules/{}"),
    ("POST", "/v1/schedules/{}/pause"),
    ("POST", "/v1/schedules/{}/resume"),
    ("POST", "/v1/schedules/{}/trigger"),
    ("POST", "/v1/webhooks/{}"),
}
WORLD_ROUTES = {
    ("POST", "/v1/queue/publish"),
    ("GET", "/v1/world/deployment-id"),
    ("POST", "/v1/world/encryption-key"),
    ("POST", "/v1/world/runs/start-child"),
    ("POST", "/v1/world/events/create"),
    ("POST", "/v1/world/events/create-batch"),
    ("POST", "/v1/world/events/list"),
    ("POST", "/v1/world/events/list-by-correlation"),
    ("GET", "/v1/world/events/{}"),
    ("POST", "/v1/world/runs/list"),
    ("GET", "/v1/world/runs/{}"),
    ("POST", "/v1/world/runs/{}/attributes"),
    ("GET", "/v1/world/steps/{}"),
    ("POST", "/v1/world/steps/list"),
    ("GET", "/v1/world/hooks/{}"),
    ("GET", "/v1/world/hooks/by-token/{}"),
    ("POST", "/v1/world/hooks/list"),
    ("POST", "/v1/world/streams/write"),
    ("POST", "/v1/world/streams/close"),
    ("GET", "/v1/world/streams/read"),
    ("GET", "/v1/world/streams/list"),
    ("GET", "/v1/world/streams/chunks"),
    ("GET", "/v1/world/streams/info"),
}
WITH_BODY = {"POST /v1/runs", "POST /v1/runs/resume", "POST /v1/deployments"}


async def test_openapi_is_public_and_describes_every_route(api_server: PublicServer) -> None:
    async with api_server.client(key=None) as anon:
        document = assert_ok(await anon.get("/v1/openapi.json"))
    assert document["openapi"].startswith("3.1")
    operations = _operations(document)
    missing = (PUBLIC_ROUTES | WORLD_ROUTES) - operations.keys()
    assert not missing, f"routes missing from the OpenAPI document: {sorted(missing)}"
    unknown = operations.keys() - (PUBLIC_ROUTES | WORLD_ROUTES)
    assert not unknown, f"the OpenAPI document lists routes not served: {sorted(unknown)}"
    for route in sorted(PUBLIC_ROUTES | WORLD_ROUTES):
        responses = operations[route]["responses"]
        success = [status for status in responses if str(status).startswith("2")]
        assert success, f"{route} documents no success response"
        for status in success:
            content = responses[status].get("content", {})
            assert any("schema" in media for media in content.values()), (route, status)
    for method, path in PUBLIC_ROUTES:
        if f"{method} {path}" in WITH_BODY:
            body = operations[(method, path)].get("requestBody", {})
            assert body.get("content"), f"{method} {path} documents no request body"
    # GET /v1/deployments/active: its own path, or named by the templated one
    active = document["paths"].get("/v1/deployments/active") or {}
    templated = operations[("GET", "/v1/deployments/{}")]
    assert "get" in active or "active" in str(templated), "GET /v1/deployments/active"


async def test_the_document_names_the_scope_each_route_checks(api_server: PublicServer) -> None:
    """Every operation's ``x-required-scope`` is the scope the route refuses a key
    without (403 naming it) and lets a key holding only it through; an operation
    without one answers without a key."""
    async with api_server.client(key=None) as anon:
        document = assert_ok(await anon.get("/v1/openapi.json"))
    problems = []
    for (method, path), operation in sorted(_operations(document).items()):
        # an id every path parameter accepts (event ids must look like ``evnt_…``)
        url = path.replace("{}", "evnt_xdoccheck")
        scope = operation.get("x-required-scope")
        if scope is None:
            async with api_server.client(key=None) as anon:
                status = (await anon.request(method, url, json={})).status_code
            if status in (401, 403):
                problems.append((method, path, "public but", status))
            continue
        assert operation["security"] == [{"bearer": []}], operation
        async with api_server.client(WITHOUT_KEYS[scope]) as lacking:
            refused = await lacking.request(method, url, json={})
        if refused.status_code != 403 or refused.json()["details"] != {"requiredScope": scope}:
            problems.append((method, path, scope, refused.status_code, refused.text))
        async with (
            api_server.client(ONLY_KEYS[scope]) as holding,
            holding.stream(
                method, url, json={}, headers={"Idempotency-Key": "doc-check"}
            ) as granted,
        ):
            if granted.status_code in (401, 403):
                problems.append((method, path, "only", scope, granted.status_code))
    assert not problems, problems


# -- triggering and reading runs -------------------------------------------------------------


async def test_trigger_accepts_a_pending_run_that_then_completes(
    api: httpx.AsyncClient, deployed: dict[str, Any]
) -> None:
    context = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    response = await trigger(api, "adder", [2, 3], executionContext=context)
    run = assert_ok(response, 202)
    assert re.fullmatch(f"wrun_{ULID}", run["runId"]), run
    assert response.headers["location"] == f"/v1/runs/{run['runId']}"
    assert run["status"] == "pending"
    assert run["deploymentId"] == deployed["deploymentId"]
    assert run["workflowName"] == "adder"
    assert run["input"] == [2, 3]
    assert run["executionContext"] == context
    assert re.fullmatch(ISO_MS, run["createdAt"]) and re.fullmatch(ISO_MS, run["updatedAt"])
    assert "output" not in run and "completedAt" not in run
    assert "idempotency-replayed" not in response.headers

    fetched = assert_ok(await api.get(response.headers["location"]))
    assert fetched["runId"] == run["runId"]
    done = await wait_for_run(api, run["runId"])
    assert done["output"] == 5
    assert done["input"] == [2, 3]
    assert done["executionContext"] == context
    assert re.fullmatch(ISO_MS, done["startedAt"]) and re.fullmatch(ISO_MS, done["completedAt"])
    assert done["createdAt"] == run["createdAt"]
    assert "error" not in done


async def test_input_defaults_to_an_empty_list(
    api: httpx.AsyncClient, deployed: dict[str, Any]
) -> None:
    response = await api.post(
        "/v1/runs", json={"workflowName": "echo"}, headers={"Idempotency-Key": "no-input"}
    )
    run = assert_ok(response, 202)
    assert run["input"] == []
    assert (await wait_for_run(api, run["runId"]))["output"] == []


async def test_resolve_data_none_omits_input_and_output(
    api: httpx.AsyncClient, deployed: dict[str, Any]
) -> None:
    run_id = await started_run(api, "echo", {"secret": "payload"})
    full = await wait_for_run(api, run_id)
    assert full["input"] == [{"secret": "payload"}]
    assert full["output"] == [{"secret": "payload"}]

    lean = assert_ok(await api.get(f"/v1/runs/{run_id}", params={"resolveData": "none"}))
    assert "input" not in lean and "output" not in lean
    assert lean["status"] == "completed"
    assert {k: v for k, v in full.items() if k not in ("input", "output")} == lean
    assert assert_ok(await api.get(f"/v1/runs/{run_id}", params={"resolveData": "all"})) == full


async def test_explicit_deployment_id_runs_there_while_another_is_active(
    api: httpx.AsyncClient, deployed: dict[str, Any]
) -> None:
    other = await deploy(api, OTHER_WORKFLOWS, activate=False)
    response = await trigger(api, "only_in_other", [7], deploymentId=other["deploymentId"])
    run = assert_ok(response, 202)
    assert run["deploymentId"] == other["deploymentId"]
    done = await wait_for_run(api, run["runId"])
    assert done["output"] == {"other": 7}
    active = assert_ok(await api.get("/v1/deployments/active"))
    assert active["deploymentId"] == deployed["deploymentId"]


async def test_a_run_keeps_its_deployment_when_another_is_activated(
    api: httpx.AsyncClient, deployed: dict[str, Any]
) -> None:
    token = f"tok-{uuid.uuid4()}"
    run_id = await started_run(api, "wait_for_hook", token)
    await wait_for_hook(api, token)
    other = await deploy(api, OTHER_WORKFLOWS)  # has no wait_for_hook
    assert other["active"] is True

    assert_ok(await api.post("/v1/runs/resume", json={"token": token, "payload": "go"}), 202)
    done = await wait_for_run(api, run_id)
    assert done["output"] == "go"
    assert done["deploymentId"] == deployed["deploymentId"]


# -- cancel and resume -----------------------------------------------------------------------


async def test_cancel_stops_a_waiting_run_and_is_idempotent(
    api: httpx.AsyncClient, deployed: dict[str, Any]
) -> None:
    token = f"tok-{uuid.uuid4()}"
    run_id = await started_run(api, "wait_for_hook", token)
    await wait_for_hook(api, token)

    cancelled = assert_ok(await api.post(f"/v1/runs/{run_id}/cancel"))
    assert cancelled["runId"] == run_id
    assert cancelled["status"] == "cancelled"
    again = assert_ok(await api.post(f"/v1/runs/{run_id}/cancel"))
    assert again["status"] == "cancelled"
    assert assert_ok(await api.get(f"/v1/runs/{run_id}"))["status"] == "cancelled"

    # the run's hook is disposed: its token no longer resumes anything
    response = await api.post("/v1/runs/resume", json={"token": token, "payload": 1})
    assert_error(response, 404, "hook_not_found")
    await asyncio.sleep(0.3)
    assert assert_ok(await api.get(f"/v1/runs/{run_id}"))["status"] == "cancelled"


async def test_resume_delivers_the_payload_to_the_waiting_run(
    api: httpx.AsyncClient, deployed: dict[str, Any]
) -> None:
    token = f"tok-{uuid.uuid4()}"
    run_id = await started_run(api, "wait_for_hook", token)
    hook = await wait_for_hook(api, token)
    payload = {"approved": True, "by": "ops", "items": [1, 2]}

    resumed = assert_ok(
        await api.post("/v1/runs/resume", json={"token": token, "payload": payload}), 202
    )
    assert resumed == {"runId": run_id, "hookId": hook["hookId"], "token": token}
    assert re.fullmatch(f"hook_{ULID}", resumed["hookId"])
    done = await wait_for_run(api, run_id)
    assert done["output"] == payload


# -- idempotency -----------------------------------------------------------------------------


async def test_same_key_and_equivalent_payload_replays_the_original_response(
    api: httpx.AsyncClient, deployed: dict[str, Any]
) -> None:
    headers = {"Idempotency-Key": "order-42", "Content-Type": "application/json"}
    first_body = '{"workflowName":"echo","input":[{"a":1,"b":[2,3]}]}'
    same_value = '{ "input" : [ { "b" : [2, 3], "a" : 1 } ],\n  "workflowName" : "echo" }'
    first = await api.post("/v1/runs", content=first_body, headers=headers)
    original = assert_ok(first, 202)
    assert "idempotency-replayed" not in first.headers
    await wait_for_run(api, original["runId"])  # the run moved on since

    replay = await api.post("/v1/runs", content=same_value, headers=headers)
    assert replay.status_code == 202
    assert replay.headers["idempotency-replayed"] == "true"
    assert replay.json() == original
    assert replay.headers["location"] == first.headers["location"]
    assert await world_run_ids(api) == [original["runId"]]


async def test_idempotency_keys_are_scoped_per_api_key(
    api_server: PublicServer, deployed: dict[str, Any]
) -> None:
    async with api_server.client(ADMIN_KEY) as first, api_server.client(SECOND_KEY) as second:
        one = await trigger(first, "echo", [1], idempotency_key="shared-key")
        two = await trigger(second, "echo", [1], idempotency_key="shared-key")
        assert "idempotency-replayed" not in one.headers
        assert "idempotency-replayed" not in two.headers
        run_one, run_two = assert_ok(one, 202)["runId"], assert_ok(two, 202)["runId"]
        assert run_one != run_two
        assert sorted(await world_run_ids(first)) == sorted([run_one, run_two])


async def test_concurrent_requests_with_one_key_create_one_run(
    api_server: PublicServer, api: httpx.AsyncClient, deployed: dict[str, Any]
) -> None:
    limits = httpx.Limits(max_connections=25)
    async with api_server.client(limits=limits) as burst:
        responses = await asyncio.wait_for(
            asyncio.gather(
                *(trigger(burst, "echo", ["once"], idempotency_key="burst") for _ in range(25))
            ),
            timeout=60,
        )
    assert [r.status_code for r in responses] == [202] * 25, [r.text for r in responses]
    run_ids = {r.json()["runId"] for r in responses}
    assert len(run_ids) == 1
    replayed = [r.headers.get("idempotency-replayed") for r in responses]
    assert replayed.count(None) == 1 and replayed.count("true") == 24
    (run_id,) = run_ids
    assert await world_run_ids(api) == [run_id]
    entries = await audit_entries(api_server, "--run-id", run_id)
    triggers = [e for e in entries if e["action"] == "runs.trigger"]
    assert [e["status"] for e in triggers] == [202]


async def test_an_expired_idempotency_key_creates_a_new_run(servers: PublicServers) -> None:
    server = await servers.start(idempotency_retention_hours=0.0003)  # about 1 s
    async with server.client() as api:
        await deploy(api)
        first = assert_ok(await trigger(api, "echo", [1], idempotency_key="short-lived"), 202)
        replay = await trigger(api, "echo", [1], idempotency_key="short-lived")
        assert replay.headers.get("idempotency-replayed") == "true"
        assert replay.json()["runId"] == first["runId"]

        await asyncio.sleep(2)
        later = await trigger(api, "echo", [1], idempotency_key="short-lived")
        second = assert_ok(later, 202)
        assert "idempotency-replayed" not in later.headers
        assert second["runId"] != first["runId"]
        assert sorted(await world_run_ids(api)) == sorted([first["runId"], second["runId"]])


# -- deployments -----------------------------------------------------------------------------


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _targz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _check_described(deployment: dict[str, Any], names: list[str]) -> None:
    assert re.fullmatch(f"dpl_{ULID}", deployment["deploymentId"]), deployment
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", deployment["digest"]), deployment
    assert deployment["kind"] == "python"
    assert sorted(w["name"] for w in deployment["workflows"]) == sorted(names)
    assert all(isinstance(w["steps"], list) for w in deployment["workflows"])
    assert re.fullmatch(ISO_MS, deployment["createdAt"])
    assert deployment["active"] is False


async def test_json_bundle_creates_an_inactive_deployment(
    api_server: PublicServer, api: httpx.AsyncClient
) -> None:
    payload = {"kind": "python", "files": {"workflows.py": WORKFLOWS}, "metadata": {"team": "core"}}
    response = await api.post("/v1/deployments", json=payload)
    created = assert_ok(response, 201)
    _check_described(created, WORKFLOW_NAMES)
    adder = next(w for w in created["workflows"] if w["name"] == "adder")
    assert "add" in adder["steps"]
    assert created["metadata"] == {"team": "core"}

    assert assert_ok(await api.get(f"/v1/deployments/{created['deploymentId']}")) == created
    assert_error(await api.get("/v1/deployments/active"), 404, "no_active_deployment")
    async with api_server.client(key=None) as anon:
        assert assert_ok(await anon.get("/v1/health"))["activeDeploymentId"] is None
    assert len(artifact_files(api_server)) == 1


@pytest.mark.parametrize(
    "content_type", [None, "application/x-www-form-urlencoded", "text/plain", "application/json"]
)
async def test_a_json_bundle_is_read_as_json_whatever_curl_calls_it(
    api: httpx.AsyncClient, content_type: str | None
) -> None:
    """``curl -d`` says form-urlencoded unless told otherwise; JSON is JSON."""
    body = json.dumps({"kind": "python", "files": {"workflows.py": WORKFLOWS}}).encode()
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = await api.post("/v1/deployments", content=body, headers=headers)
    _check_described(assert_ok(response, 201), WORKFLOW_NAMES)


async def test_zip_upload_with_kind_and_entrypoint_in_the_query(api: httpx.AsyncClient) -> None:
    bundle = _zip(
        {"flows/__init__.py": b"", "flows/main.py": WORKFLOWS.encode(), "README.md": b"# flows\n"}
    )
    response = await api.post(
        "/v1/deployments",
        content=bundle,
        params={"kind": "python", "entrypoint": "flows/main.py"},
        headers={"Content-Type": "application/zip"},
    )
    created = assert_ok(response, 201)
    _check_described(created, WORKFLOW_NAMES)

    run = assert_ok(
        await trigger(api, "adder", [20, 22], deploymentId=created["deploymentId"]), 202
    )
    assert (await wait_for_run(api, run["runId"]))["output"] == 42


async def test_targz_upload_with_a_workflow_toml_manifest(api: httpx.AsyncClient) -> None:
    manifest = b'kind = "python"\nentrypoint = "app/entry.py"\n\n[metadata]\nteam = "data"\n'
    bundle = _targz(
        {"workflow.toml": manifest, "app/__init__.py": b"", "app/entry.py": WORKFLOWS.encode()}
    )
    response = await api.post(
        "/v1/deployments", content=bundle, headers={"Content-Type": "application/gzip"}
    )
    created = assert_ok(response, 201)
    _check_described(created, WORKFLOW_NAMES)
    assert created["metadata"] == {"team": "data"}

    run = assert_ok(await trigger(api, "echo", ["tar"], deploymentId=created["deploymentId"]), 202)
    assert (await wait_for_run(api, run["runId"]))["output"] == ["tar"]


async def test_the_same_bundle_twice_is_two_deployments_sharing_one_artifact(
    api_server: PublicServer, api: httpx.AsyncClient
) -> None:
    first = await deploy(api, activate=False)
    second = await deploy(api, activate=False)
    assert first["deploymentId"] != second["deploymentId"]
    assert first["digest"] == second["digest"]
    as_zip = assert_ok(
        await api.post(
            "/v1/deployments",
            content=_zip({"workflows.py": WORKFLOWS.encode()}),
            headers={"Content-Type": "application/zip"},
        ),
        201,
    )
    assert as_zip["digest"] == first["digest"]  # the content, not the upload format
    files = artifact_files(api_server)
    assert len(files) == 1, files
    assert first["digest"].removeprefix("sha256:") in files[0].name


async def test_activate_moves_the_active_pointer(
    api_server: PublicServer, api: httpx.AsyncClient
) -> None:
    first = await deploy(api, activate=False)
    second = await deploy(api, OTHER_WORKFLOWS, activate=False)

    activated = assert_ok(await api.post(f"/v1/deployments/{first['deploymentId']}/activate"))
    assert activated == {**first, "active": True}
    assert assert_ok(await api.get("/v1/deployments/active")) == activated

    assert_ok(await api.post(f"/v1/deployments/{second['deploymentId']}/activate"))
    active = assert_ok(await api.get("/v1/deployments/active"))
    assert active["deploymentId"] == second["deploymentId"] and active["active"] is True
    assert assert_ok(await api.get(f"/v1/deployments/{first['deploymentId']}"))["active"] is False
    async with api_server.client(key=None) as anon:
        await wait_for_active_in_health(anon, second["deploymentId"])


# -- webhooks --------------------------------------------------------------------------------


@pytest.fixture
def sink() -> WebhookSink:
    return WebhookSink()


@pytest.fixture
async def hooked(servers: PublicServers, sink: WebhookSink) -> PublicServer:
    """A server with webhook providers for every scheme, an active deployment and a sink."""
    server = await servers.start(webhook_providers=webhook_providers(), on_webhook=sink)
    async with server.client() as api:
        await deploy(api)
    return server


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_a_signed_webhook_triggers_its_workflow_once(
    hooked: PublicServer, sink: WebhookSink, scheme: str
) -> None:
    delivery_id = f"evt_{uuid.uuid4().hex}"
    body = webhook_body(delivery_id, data={"amount": 1200})
    headers = signed_headers(scheme, body, delivery_id)
    provider = f"{scheme}-trigger"
    async with hooked.client(key=None) as anon, hooked.client() as api:
        accepted = assert_ok(
            await anon.post(f"/v1/webhooks/{provider}", content=body, headers=headers), 202
        )
        assert accepted["deliveryId"] == delivery_id
        run = await wait_for_run(api, accepted["runId"])
        payload = {"id": delivery_id, "type": "test.event", "data": {"amount": 1200}}
        delivery = {"provider": provider, "deliveryId": delivery_id, "payload": payload}
        assert run["workflowName"] == "on_delivery"
        assert run["input"] == [delivery]
        assert run["output"] == delivery
        assert sink.deliveries == [{**delivery, "runId": accepted["runId"]}]

        again = await anon.post(f"/v1/webhooks/{provider}", content=body, headers=headers)
        assert assert_ok(again)["duplicate"] is True
        assert await world_run_ids(api) == [accepted["runId"]]
        assert len(sink.deliveries) == 1


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_a_signed_webhook_resumes_the_hook_it_names(
    hooked: PublicServer, sink: WebhookSink, scheme: str
) -> None:
    token = f"tok-{uuid.uuid4()}"
    delivery_id = f"evt_{uuid.uuid4().hex}"
    body = webhook_body(delivery_id, data={"token": token, "status": "approved"})
    async with hooked.client(key=None) as anon, hooked.client() as api:
        run_id = await started_run(api, "wait_for_hook", token)
        await wait_for_hook(api, token)
        response = await anon.post(
            f"/v1/webhooks/{scheme}-resume",
            content=body,
            headers=signed_headers(scheme, body, delivery_id),
        )
        assert assert_ok(response, 202) == {"deliveryId": delivery_id, "runId": run_id}
        done = await wait_for_run(api, run_id)
    assert done["output"]["payload"]["data"] == {"token": token, "status": "approved"}
    assert [d["deliveryId"] for d in sink.deliveries] == [delivery_id]
