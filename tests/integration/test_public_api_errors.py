"""The public lane's refusals over a real socket, on SQLite and PostgreSQL: every bad
path checks the status, the ``code`` and that nothing changed (row counts, the
active pointer, stored artifacts, runs)."""

from __future__ import annotations

import io
import tarfile
import time
import uuid
import zipfile
from typing import Any

import httpx
import pytest

from ._helpers import CORRELATION_HEADER, assert_error, assert_ok, is_uuid4
from .public_fixtures import (
    SCHEMES,
    WORKFLOW_NAMES,
    WORKFLOWS,
    PublicServer,
    PublicServers,
    WebhookSink,
    deploy,
    row_counts,
    signed_headers,
    started_run,
    trigger,
    wait_for_hook,
    wait_for_run,
    webhook_body,
    webhook_providers,
    world_run_ids,
)

# -- triggering ------------------------------------------------------------------------------


async def test_unknown_workflow_is_404_naming_the_deployments_workflows(
    api_server: PublicServer, api: httpx.AsyncClient, deployed: dict[str, Any]
) -> None:
    before = await row_counts(api_server)
    body = assert_error(await trigger(api, "no_such_flow", [1]), 404, "workflow_not_found")
    assert sorted(body["details"]["workflows"]) == sorted(WORKFLOW_NAMES)
    assert body["details"]["deploymentId"] == deployed["deploymentId"]
    assert "no_such_flow" in body["message"]
    assert await row_counts(api_server) == before


async def test_unknown_deployment_id_is_404(
    api_server: PublicServer, api: httpx.AsyncClient, deployed: dict[str, Any]
) -> None:
    before = await row_counts(api_server)
    missing = "dpl_01M80000000000000000000000"
    response = await trigger(api, "echo", [1], deploymentId=missing)
    body = assert_error(response, 404, "deployment_not_found")
    assert body["details"]["deploymentId"] == missing
    assert await row_counts(api_server) == before


async def test_no_active_deployment_is_409_and_does_not_burn_the_key(
    api_server: PublicServer, api: httpx.AsyncClient
) -> None:
    await deploy(api, activate=False)
    before = await row_counts(api_server)
    response = await trigger(api, "echo", [1], idempotency_key="first-try")
    assert_error(response, 409, "no_active_deployment")
    assert await row_counts(api_server) == before

    await deploy(api)
    retried = await trigger(api, "echo", [1], idempotency_key="first-try")
    assert assert_ok(retried, 202)["status"] == "pending"
    assert "idempotency-replayed" not in retried.headers


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b'{"workflowName": "echo", ', "body"),
        (b'["echo"]', "body"),
        (b'{"input": [1]}', "workflowName"),
        (b'{"workflowName": 7}', "workflowName"),
        (b'{"workflowName": "echo", "input": {"a": 1}}', "input"),
        (b'{"workflowName": "echo", "deploymentId": 12}', "deploymentId"),
        (b'{"workflowName": "echo", "executionContext": "x"}', "executionContext"),
    ],
    ids=["truncated", "array", "no-name", "name-type", "input-type", "dpl-type", "ctx-type"],
)
async def test_a_malformed_trigger_body_is_400_naming_the_field(
    api_server: PublicServer,
    api: httpx.AsyncClient,
    deployed: dict[str, Any],
    content: bytes,
    field: str,
) -> None:
    before = await row_counts(api_server)
    headers = {"Idempotency-Key": f"bad-{uuid.uuid4()}", "Content-Type": "application/json"}
    body = assert_error(
        await api.post("/v1/runs", content=content, headers=headers), 400, "invalid_request"
    )
    if field != "body":
        assert field in str(body.get("details")), body
    assert await row_counts(api_server) == before


# -- idempotency -----------------------------------------------------------------------------


async def test_missing_idempotency_key_is_400(
    api_server: PublicServer, api: httpx.AsyncClient, deployed: dict[str, Any]
) -> None:
    before = await row_counts(api_server)
    response = await api.post("/v1/runs", json={"workflowName": "echo", "input": [1]})
    assert_error(response, 400, "idempotency_key_required")
    assert await row_counts(api_server) == before


@pytest.mark.parametrize(
    "key",
    ["k" * 256, "clé-non-ascii", "tab\there"],
    ids=["too-long", "non-ascii", "control-character"],
)
async def test_a_malformed_idempotency_key_is_400(
    api_server: PublicServer, api: httpx.AsyncClient, deployed: dict[str, Any], key: str
) -> None:
    before = await row_counts(api_server)
    response = await api.post(
        "/v1/runs",
        content=b'{"workflowName": "echo"}',
        headers={b"Idempotency-Key": key.encode(), b"Content-Type": b"application/json"},
    )
    body = assert_error(response, 400, "invalid_request")
    assert "Idempotency-Key" in str(body.get("details")), body
    assert await row_counts(api_server) == before


async def test_a_255_character_idempotency_key_is_accepted(
    api: httpx.AsyncClient, deployed: dict[str, Any]
) -> None:
    key = "k" * 254 + "~"
    assert_ok(await trigger(api, "echo", idempotency_key=key), 202)
    replay = await trigger(api, "echo", idempotency_key=key)
    assert replay.headers.get("idempotency-replayed") == "true"


async def test_same_key_with_a_different_payload_is_409(
    api_server: PublicServer, api: httpx.AsyncClient, deployed: dict[str, Any]
) -> None:
    original = assert_ok(await trigger(api, "echo", [1], idempotency_key="conflict"), 202)
    before = await row_counts(api_server, ["runs", "idempotency_records"])
    for changed in ({"input": [2]}, {"workflowName": "adder", "input": [1]}):
        payload = {"workflowName": "echo", **changed}
        response = await api.post("/v1/runs", json=payload, headers={"Idempotency-Key": "conflict"})
        assert_error(response, 409, "idempotency_conflict")
    assert await row_counts(api_server, ["runs", "idempotency_records"]) == before
    replay = await trigger(api, "echo", [1], idempotency_key="conflict")
    assert replay.headers.get("idempotency-replayed") == "true"
    assert replay.json() == original
    assert await world_run_ids(api) == [original["runId"]]


# -- runs: read, cancel, resume --------------------------------------------------------------


async def test_unknown_run_is_404(api: httpx.AsyncClient) -> None:
    body = assert_error(
        await api.get("/v1/runs/wrun_01M80000000000000000000000"), 404, "run_not_found"
    )
    assert body["details"]["runId"] == "wrun_01M80000000000000000000000"


async def test_an_unknown_resolve_data_value_is_400(
    api: httpx.AsyncClient, deployed: dict[str, Any]
) -> None:
    run_id = await started_run(api, "echo", 1)
    response = await api.get(f"/v1/runs/{run_id}", params={"resolveData": "some"})
    body = assert_error(response, 400, "invalid_request")
    assert "resolveData" in str(body.get("details")), body


@pytest.mark.parametrize(
    ("body", "field"),
    [({"payload": 1}, "token"), ({"token": ""}, "token"), ({"token": 5}, "token")],
    ids=["missing", "empty", "number"],
)
async def test_a_malformed_resume_body_is_400(
    api_server: PublicServer, api: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    before = await row_counts(api_server)
    error = assert_error(await api.post("/v1/runs/resume", json=body), 400, "invalid_request")
    assert field in str(error.get("details")), error
    assert await row_counts(api_server) == before


async def test_cancel_errors_leave_runs_as_they_were(
    api_server: PublicServer, api: httpx.AsyncClient, deployed: dict[str, Any]
) -> None:
    run_id = await started_run(api, "echo", "done")
    completed = await wait_for_run(api, run_id)
    before = await row_counts(api_server)

    body = assert_error(await api.post(f"/v1/runs/{run_id}/cancel"), 409, "run_already_terminal")
    assert body["details"]["runId"] == run_id
    unknown = "wrun_01M80000000000000000000000"
    assert_error(await api.post(f"/v1/runs/{unknown}/cancel"), 404, "run_not_found")

    assert await row_counts(api_server) == before
    assert assert_ok(await api.get(f"/v1/runs/{run_id}")) == completed


async def test_resume_with_an_unknown_token_is_404(
    api_server: PublicServer, api: httpx.AsyncClient, deployed: dict[str, Any]
) -> None:
    token = f"tok-{uuid.uuid4()}"
    run_id = await started_run(api, "wait_for_hook", token)
    await wait_for_hook(api, token)
    before = await row_counts(api_server)

    response = await api.post("/v1/runs/resume", json={"token": "never-issued", "payload": 1})
    assert_error(response, 404, "hook_not_found")
    assert_error(await api.post("/v1/runs/resume", json={"payload": 1}), 400, "invalid_request")
    assert await row_counts(api_server) == before
    assert assert_ok(await api.get(f"/v1/runs/{run_id}"))["status"] in ("pending", "running")


async def test_resume_after_the_run_completed_is_refused(
    api_server: PublicServer, api: httpx.AsyncClient, deployed: dict[str, Any]
) -> None:
    token = f"tok-{uuid.uuid4()}"
    run_id = await started_run(api, "wait_for_hook", token)
    await wait_for_hook(api, token)
    assert_ok(await api.post("/v1/runs/resume", json={"token": token, "payload": 1}), 202)
    await wait_for_run(api, run_id)
    before = await row_counts(api_server)

    response = await api.post("/v1/runs/resume", json={"token": token, "payload": 2})
    assert response.status_code in (404, 409), response.text
    code = "hook_not_found" if response.status_code == 404 else "run_already_terminal"
    assert_error(response, response.status_code, code)
    assert await row_counts(api_server) == before
    assert assert_ok(await api.get(f"/v1/runs/{run_id}"))["output"] == 1


# -- routes and methods ----------------------------------------------------------------------


async def test_unknown_route_and_wrong_method(api_server: PublicServer) -> None:
    async with api_server.client() as api, api_server.client(key=None) as anon:
        for client in (api, anon):
            response = await client.get("/v1/nothing-here")
            assert_error(response, 404, "not_found")
            assert is_uuid4(response.headers[CORRELATION_HEADER])
        assert_error(
            await api.put("/v1/runs"), 405, "method_not_allowed"
        )  # GET lists, POST triggers
        assert_error(await api.post("/v1/runs/wrun_x/steps"), 405, "method_not_allowed")
        assert_error(await api.delete("/v1/runs/wrun_x"), 405, "method_not_allowed")
        assert_error(await api.put("/v1/deployments"), 405, "method_not_allowed")
        assert_error(await anon.post("/v1/health"), 405, "method_not_allowed")


# -- deployments -----------------------------------------------------------------------------


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _tar_with_symlink() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        source = WORKFLOWS.encode()
        info = tarfile.TarInfo("workflows.py")
        info.size = len(source)
        archive.addfile(info, io.BytesIO(source))
        link = tarfile.TarInfo("secrets.py")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        archive.addfile(link)
    return buffer.getvalue()


def _json(files: dict[str, str], **extra: Any) -> tuple[str, bytes | dict[str, Any]]:
    return "application/json", {"kind": "python", "files": files, **extra}


INVALID_BUNDLES: dict[str, tuple[tuple[str, bytes | dict[str, Any]], str]] = {
    "syntax-error": (_json({"workflows.py": "def broken(:\n    pass\n"}), "SyntaxError"),
    "import-error": (
        _json({"workflows.py": "raise RuntimeError('boom at import time')\n"}),
        "boom at import time",
    ),
    "no-workflow": (_json({"workflows.py": "VALUE = 1\n"}), "@workflow"),
    "missing-default-entrypoint": (_json({"other.py": WORKFLOWS}), "workflows.py"),
    "missing-entrypoint": (
        _json({"workflows.py": WORKFLOWS}, entrypoint="flows/missing.py"),
        "flows/missing.py",
    ),
    "parent-path": (_json({"workflows.py": WORKFLOWS, "../x.py": "X = 1\n"}), "../x.py"),
    "absolute-path": (_json({"workflows.py": WORKFLOWS, "/etc/x.py": "X = 1\n"}), "/etc/x.py"),
    "empty": (_json({}), "no files"),
    "parent-path-in-zip": (
        ("application/zip", _zip({"workflows.py": WORKFLOWS.encode(), "../evil.py": b"X = 1"})),
        "../evil.py",
    ),
    "symlink-in-tar": (("application/gzip", _tar_with_symlink()), "secrets.py"),
    "oversize-zip": (
        (
            "application/zip",
            _zip({"workflows.py": WORKFLOWS.encode(), "big.bin": b"0" * (21 << 20)}),
        ),
        "exceeds",
    ),
    "not-a-zip": (("application/zip", b"this is not a zip archive"), "zip"),
}


@pytest.mark.parametrize("case", list(INVALID_BUNDLES))
async def test_an_invalid_bundle_is_422_and_nothing_is_stored(
    api_server: PublicServer, api: httpx.AsyncClient, case: str
) -> None:
    (content_type, payload), reason = INVALID_BUNDLES[case]
    active = await deploy(api)
    before = await row_counts(api_server)
    stored = sorted(api_server.artifact_dir.rglob("*"))
    if isinstance(payload, dict):
        response = await api.post("/v1/deployments", json=payload)
    else:
        response = await api.post(
            "/v1/deployments", content=payload, headers={"Content-Type": content_type}
        )
    assert response.status_code == 422, response.text
    assert response.headers[CORRELATION_HEADER]
    body = response.json()
    assert body["code"] == "invalid_deployment", body
    assert reason in body["message"], body
    # the bundle's own traceback may be quoted, never the server's frames or folders
    for leak in ("site-packages", "adapters/", "/tmp", str(api_server.data_dir)):
        assert leak not in body["message"], body
    assert await row_counts(api_server) == before
    assert sorted(api_server.artifact_dir.rglob("*")) == stored
    assert (
        assert_ok(await api.get("/v1/deployments/active"))["deploymentId"] == active["deploymentId"]
    )


MALFORMED_UPLOADS = {
    "text-plain": ("text/plain", b"workflows.py"),
    "unknown-kind": ("application/json", b'{"kind": "rust", "files": {"main.rs": "fn main(){}"}}'),
    "files-array": ("application/json", b'{"kind": "python", "files": ["workflows.py"]}'),
    "no-files": ("application/json", b'{"kind": "python"}'),
    "not-json": ("application/json", b'{"kind": "python", "files": '),
}


@pytest.mark.parametrize("case", list(MALFORMED_UPLOADS))
async def test_a_malformed_upload_is_400_and_nothing_is_stored(
    api_server: PublicServer, api: httpx.AsyncClient, case: str
) -> None:
    content_type, content = MALFORMED_UPLOADS[case]
    before = await row_counts(api_server)
    response = await api.post(
        "/v1/deployments", content=content, headers={"Content-Type": content_type}
    )
    assert_error(response, 400, "invalid_request")
    assert await row_counts(api_server) == before
    assert not [path for path in api_server.artifact_dir.rglob("*") if path.is_file()]


async def test_unknown_deployments_are_404(
    api_server: PublicServer, api: httpx.AsyncClient
) -> None:
    assert_error(await api.get("/v1/deployments/active"), 404, "no_active_deployment")
    missing = "dpl_01M80000000000000000000000"
    body = assert_error(await api.get(f"/v1/deployments/{missing}"), 404, "deployment_not_found")
    assert body["details"]["deploymentId"] == missing

    active = await deploy(api)
    before = await row_counts(api_server)
    response = await api.post(f"/v1/deployments/{missing}/activate")
    assert_error(response, 404, "deployment_not_found")
    # ``active`` is a fixed word, never an id
    assert_error(await api.post("/v1/deployments/active/activate"), 404, "deployment_not_found")
    assert await row_counts(api_server) == before
    assert (
        assert_ok(await api.get("/v1/deployments/active"))["deploymentId"] == active["deploymentId"]
    )


# -- webhooks --------------------------------------------------------------------------------


@pytest.fixture
def sink() -> WebhookSink:
    return WebhookSink()


@pytest.fixture
async def hooked(servers: PublicServers, sink: WebhookSink) -> PublicServer:
    server = await servers.start(webhook_providers=webhook_providers(), on_webhook=sink)
    async with server.client() as api:
        await deploy(api)
    return server


WEBHOOK_TABLES = ["runs", "webhook_deliveries", "events"]


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_a_bad_signature_is_401_and_the_delivery_is_not_stored(
    hooked: PublicServer, sink: WebhookSink, scheme: str
) -> None:
    delivery_id = f"evt_{uuid.uuid4().hex}"
    body = webhook_body(delivery_id, data={"amount": 5})
    headers = signed_headers(scheme, body, delivery_id)
    provider = f"{scheme}-trigger"
    tampered = body.replace(b'"amount": 5', b'"amount": 500')
    wrong_secret = signed_headers(scheme, body, delivery_id, secret="whsec_" + "A" * 44)
    unsigned = {"Content-Type": "application/json", "webhook-id": delivery_id}
    before = await row_counts(hooked, WEBHOOK_TABLES)
    async with hooked.client(key=None) as anon:
        for content, sent in ((tampered, headers), (body, wrong_secret), (body, unsigned)):
            response = await anon.post(f"/v1/webhooks/{provider}", content=content, headers=sent)
            assert_error(response, 401, "invalid_signature")
        assert await row_counts(hooked, WEBHOOK_TABLES) == before
        assert sink.deliveries == []

        # the delivery id was not consumed: the genuine delivery is accepted, once
        genuine = await anon.post(f"/v1/webhooks/{provider}", content=body, headers=headers)
        assert assert_ok(genuine, 202)["deliveryId"] == delivery_id
    assert len(sink.deliveries) == 1


@pytest.mark.parametrize("scheme", ["stripe", "standard"])
async def test_a_stale_timestamp_is_401_stale_signature(
    hooked: PublicServer, sink: WebhookSink, scheme: str
) -> None:
    delivery_id = f"evt_{uuid.uuid4().hex}"
    body = webhook_body(delivery_id)
    provider = f"{scheme}-trigger"
    before = await row_counts(hooked, WEBHOOK_TABLES)
    async with hooked.client(key=None) as anon:
        for skew in (-3600, 3600):
            stale = signed_headers(scheme, body, delivery_id, timestamp=int(time.time()) + skew)
            response = await anon.post(f"/v1/webhooks/{provider}", content=body, headers=stale)
            assert_error(response, 401, "stale_signature")
        assert await row_counts(hooked, WEBHOOK_TABLES) == before
        assert sink.deliveries == []
        fresh = signed_headers(scheme, body, delivery_id)
        response = await anon.post(f"/v1/webhooks/{provider}", content=body, headers=fresh)
        assert_ok(response, 202)


async def test_an_unknown_provider_is_404(hooked: PublicServer, sink: WebhookSink) -> None:
    delivery_id = f"evt_{uuid.uuid4().hex}"
    body = webhook_body(delivery_id)
    before = await row_counts(hooked, WEBHOOK_TABLES)
    async with hooked.client(key=None) as anon:
        response = await anon.post(
            "/v1/webhooks/nobody", content=body, headers=signed_headers("github", body, delivery_id)
        )
    assert_error(response, 404, "unknown_provider")
    assert await row_counts(hooked, WEBHOOK_TABLES) == before
    assert sink.deliveries == []


async def test_a_resume_delivery_without_a_token_is_400(
    hooked: PublicServer, sink: WebhookSink
) -> None:
    delivery_id = f"evt_{uuid.uuid4().hex}"
    body = webhook_body(delivery_id, data={"status": "approved"})
    before = await row_counts(hooked, WEBHOOK_TABLES)
    async with hooked.client(key=None) as anon:
        response = await anon.post(
            "/v1/webhooks/standard-resume",
            content=body,
            headers=signed_headers("standard", body, delivery_id),
        )
    body_error = assert_error(response, 400, "invalid_request")
    assert "data.token" in str(body_error.get("details")), body_error
    assert await row_counts(hooked, WEBHOOK_TABLES) == before
    assert sink.deliveries == []


async def test_a_resume_delivery_for_an_unknown_token_changes_nothing(
    hooked: PublicServer, sink: WebhookSink
) -> None:
    delivery_id = f"evt_{uuid.uuid4().hex}"
    body = webhook_body(delivery_id, data={"token": "never-issued"})
    before = await row_counts(hooked, WEBHOOK_TABLES)
    async with hooked.client(key=None) as anon:
        response = await anon.post(
            "/v1/webhooks/github-resume",
            content=body,
            headers=signed_headers("github", body, delivery_id),
        )
    assert_error(response, 404, "hook_not_found")
    assert await row_counts(hooked, WEBHOOK_TABLES) == before
    assert sink.deliveries == []
