"""Authentication, scopes, transport guards, the strict remote guard, HTTP/2 and the
audit log, over a real socket on SQLite and PostgreSQL (http-api.md)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import re
import signal
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from compute_worker import create_compute_worker_server
from compute_worker.app.guards import StartupRefused

from ._helpers import CORRELATION_HEADER, assert_error, assert_ok
from .conftest import Backend
from .public_fixtures import (
    ADMIN_KEY,
    CLI,
    ONLY_KEYS,
    SCOPES,
    SECOND_KEY,
    SHORT_KEY_CACHE,
    WITHOUT_KEYS,
    WORKFLOWS,
    PublicServer,
    PublicServers,
    audit_entries,
    cli_env,
    deploy,
    row_counts,
    run_cli,
    started_run,
    trigger,
    until_refused,
    wait_for_hook,
    wait_for_run,
)

TARGET_WORLD = "compute-worker-remote"


# -- 401: unknown, revoked, missing keys -----------------------------------------------------


async def test_unknown_and_revoked_keys_get_the_same_401(servers: PublicServers) -> None:
    api_server = await servers.start(**SHORT_KEY_CACHE)
    created = await run_cli(
        "keys", "create", "--name", "short-lived", "--scope", "runs:read", *api_server.cli_args
    )
    assert created.returncode == 0, created
    key_id = created.stdout.split("\t")[0]
    secret = created.stdout.split("secret (shown once):")[1].strip()
    async with api_server.client(secret) as client:
        assert_error(await client.get("/v1/runs/wrun_probe"), 404, "run_not_found")  # valid
    revoked = await run_cli("keys", "revoke", key_id, *api_server.cli_args)
    assert revoked.returncode == 0, revoked
    await until_refused(api_server, secret)  # another process: within the cache's 0.5 s

    correlation = f"auth-failures-{uuid.uuid4()}"
    attempts = {
        "revoked": {"Authorization": f"Bearer {secret}"},
        "unknown": {"Authorization": "Bearer cwk_" + "x" * 43},
        "missing": {},
        "no-secret": {"Authorization": "Bearer"},
        "basic": {"Authorization": f"Basic {secret}"},
    }
    before = await row_counts(api_server)
    bodies, header_names = {}, {}
    async with api_server.client(key=None) as anon:
        for name, headers in attempts.items():
            response = await anon.get(
                "/v1/runs/wrun_probe", headers={**headers, CORRELATION_HEADER: correlation}
            )
            bodies[name] = assert_error(response, 401, "unauthorized")
            header_names[name] = sorted(response.headers.keys())
            assert response.headers[CORRELATION_HEADER] == correlation
        trigger_response = await trigger(anon, "echo", headers=attempts["revoked"])
        assert_error(trigger_response, 401, "unauthorized")
    assert all(body == bodies["unknown"] for body in bodies.values()), bodies
    assert header_names["revoked"] == header_names["unknown"]
    assert key_id not in str(bodies["revoked"])
    assert await row_counts(api_server) == before

    entries = await audit_entries(api_server, "--correlation-id", correlation)
    assert [e["status"] for e in entries] == [401] * len(attempts)
    assert {e["action"] for e in entries} == {"auth.failure"}
    assert all(e["path"] == "/v1/runs/wrun_probe" and e["method"] == "GET" for e in entries)
    assert secret not in str(entries)


# -- 403: the route/scope table --------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    scope: str
    body: dict[str, Any] | None = None


PUBLIC_ROUTES = [
    Route("POST", "/v1/runs", "trigger:write", {"workflowName": "echo", "input": [1]}),
    Route("GET", "/v1/runs/{run}", "runs:read"),
    Route("GET", "/v1/runs?status=running", "runs:read"),
    Route("GET", "/v1/runs/{run}/steps", "runs:read"),
    Route("GET", "/v1/runs/{run}/events", "runs:read"),
    Route("GET", "/v1/runs/{run}/hooks", "runs:read"),
    Route("GET", "/v1/runs/{run}/streams", "runs:read"),
    Route("GET", "/v1/runs/{run}/streams/default", "runs:read"),
    Route("GET", "/v1/deployments", "deploy:read"),
    Route("POST", "/v1/runs/{run}/cancel", "runs:write"),
    Route("POST", "/v1/runs/resume", "runs:write", {"token": "{token}", "payload": 1}),
    Route("GET", "/v1/deployments/{deployment}", "deploy:read"),
    Route("GET", "/v1/deployments/active", "deploy:read"),
    Route("POST", "/v1/deployments", "deploy:write",
          {"kind": "python", "files": {"workflows.py": WORKFLOWS}}),
    Route("POST", "/v1/deployments/{deployment}/activate", "deploy:write"),
]  # fmt: skip
WORLD = "world:proxy"
WORLD_ROUTES = [
    Route("POST", "/v1/queue/publish", WORLD, {}),
    Route("GET", "/v1/world/deployment-id", WORLD),
    Route("POST", "/v1/world/encryption-key", WORLD, {"runId": "{run}"}),
    Route("POST", "/v1/world/events/create", WORLD, {}),
    Route("POST", "/v1/world/events/create-batch", WORLD, {}),
    Route("POST", "/v1/world/events/list", WORLD, {"runId": "{run}"}),
    Route("POST", "/v1/world/events/list-by-correlation", WORLD, {}),
    Route("POST", "/v1/world/runs/list", WORLD, {}),
    Route("GET", "/v1/world/runs/{run}", WORLD),
    Route("GET", "/v1/world/steps/step_01M80000000000000000000000", WORLD),
    Route("POST", "/v1/world/steps/list", WORLD, {"runId": "{run}"}),
    Route("GET", "/v1/world/hooks/{hook}", WORLD),
    Route("GET", "/v1/world/hooks/by-token/{token}", WORLD),
    Route("POST", "/v1/world/hooks/list", WORLD, {}),
    Route("POST", "/v1/world/streams/write", WORLD, {}),
    Route("POST", "/v1/world/streams/close", WORLD, {}),
    Route("GET", "/v1/world/streams/read?name=scope-check&runId={run}", WORLD),
    Route("GET", "/v1/world/streams/list?runId={run}", WORLD),
    Route("GET", "/v1/world/streams/chunks?name=scope-check", WORLD),
    Route("GET", "/v1/world/streams/info?name=scope-check", WORLD),
]


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


async def _status(
    server: PublicServer, key: str, route: Route, ids: dict[str, str], correlation: str
) -> tuple[int, dict[str, Any] | None]:
    """Send ``route`` with ``key``; read the body only of refusals (a granted stream
    read would stay open)."""
    headers = {"Authorization": f"Bearer {key}", CORRELATION_HEADER: correlation,
               "Idempotency-Key": f"scope-{uuid.uuid4()}"}  # fmt: skip
    async with (
        server.client(key=None) as client,
        client.stream(
            route.method, _fill(route.path, ids), json=_fill(route.body, ids), headers=headers
        ) as response,
    ):
        if response.status_code in (401, 403):
            await response.aread()
            return response.status_code, response.json()
        return response.status_code, None


async def test_every_route_requires_its_scope(
    api_server: PublicServer, api: httpx.AsyncClient
) -> None:
    deployment = await deploy(api)
    token = f"tok-{uuid.uuid4()}"
    run_id = await started_run(api, "wait_for_hook", token)
    hook = await wait_for_hook(api, token)
    ids = {"run": run_id, "deployment": deployment["deploymentId"],
           "hook": hook["hookId"], "token": token}  # fmt: skip
    routes = PUBLIC_ROUTES + WORLD_ROUTES
    before = await row_counts(api_server)
    refused = f"scope-table-{uuid.uuid4()}"
    problems: list[tuple[Any, ...]] = []
    sent = 0
    for route in routes:
        lacking = [WITHOUT_KEYS[route.scope]]
        lacking += [ONLY_KEYS[s] for s in SCOPES if s != route.scope]
        for key in lacking:
            status, body = await _status(api_server, key, route, ids, refused)
            sent += 1
            if status != 403 or body is None or body.get("code") != "forbidden":
                problems.append((route.method, route.path, key, status, body))
            elif body.get("details", {}).get("requiredScope") != route.scope:
                problems.append((route.method, route.path, "requiredScope", body))
    assert not problems, problems
    assert await row_counts(api_server) == before
    entries = await audit_entries(api_server, "--correlation-id", refused)
    assert len(entries) == sent
    assert {(e["action"], e["status"]) for e in entries} == {("auth.failure", 403)}
    assert {e["path"] for e in entries} == {_fill(r.path, ids).split("?")[0] for r in routes}

    for route in routes:  # the scope alone is enough to pass the guard
        status, body = await _status(api_server, ONLY_KEYS[route.scope], route, ids, "granted")
        if status in (401, 403):
            problems.append((route.method, route.path, route.scope, status, body))
    assert not problems, problems


async def test_a_forbidden_request_is_audited_with_the_key_id(api_server: PublicServer) -> None:
    (row,) = await _keys_named(api_server, "only-runs:read")
    correlation = f"forbidden-{uuid.uuid4()}"
    async with api_server.client(ONLY_KEYS["runs:read"]) as reader:
        response = await trigger(reader, "echo", headers={CORRELATION_HEADER: correlation})
        assert_error(response, 403, "forbidden")
    (entry,) = await audit_entries(api_server, "--correlation-id", correlation)
    assert (entry["action"], entry["status"]) == ("auth.failure", 403)
    assert entry["keyId"] == row[0]


async def test_public_routes_need_no_key(api_server: PublicServer) -> None:
    async with api_server.client(key=None) as anon:
        assert_ok(await anon.get("/v1/health"))
        assert_ok(await anon.get("/v1/openapi.json"))
        webhook = await anon.post("/v1/webhooks/nobody", content=b"{}")
        assert_error(webhook, 404, "unknown_provider")  # not 401: signatures, not keys


# -- require_https ---------------------------------------------------------------------------


async def test_require_https_refuses_plain_http_before_authentication(
    servers: PublicServers,
) -> None:
    server = await servers.start(require_https=True)
    before = await row_counts(server)
    forwarded = {"X-Forwarded-Proto": "https"}
    async with server.client() as api, server.client(key=None) as anon:
        assert assert_ok(await anon.get("/v1/health"))["status"] == "ok"
        assert_error(await trigger(api, "echo"), 403, "https_required")
        assert_error(await anon.get("/v1/deployments/active"), 403, "https_required")  # not 401
        payload = {"kind": "python", "files": {"workflows.py": WORKFLOWS}}
        response = await api.post("/v1/deployments", json=payload, headers=forwarded)
        assert_error(response, 403, "https_required")  # the proxy header is not trusted
    assert await row_counts(server) == before


async def test_a_trusted_proxy_may_declare_https(servers: PublicServers) -> None:
    server = await servers.start(require_https=True, trust_forwarded_proto=True)
    async with server.client(headers={"X-Forwarded-Proto": "https"}) as proxied:
        assert_error(await proxied.get("/v1/deployments/active"), 404, "no_active_deployment")
        payload = {"kind": "python", "files": {"workflows.py": WORKFLOWS}}
        assert_ok(await proxied.post("/v1/deployments", json=payload), 201)
    async with server.client() as direct:
        assert_error(await direct.get("/v1/deployments/active"), 403, "https_required")
        response = await direct.get("/v1/deployments/active", headers={"X-Forwarded-Proto": "http"})
        assert_error(response, 403, "https_required")


# -- rate limits -----------------------------------------------------------------------------


def _quota(response: httpx.Response) -> tuple[int, int, int]:
    headers = response.headers
    limit = int(headers["ratelimit-limit"])
    remaining = int(headers["ratelimit-remaining"])
    reset = int(headers["ratelimit-reset"])
    assert 0 < reset <= 60, headers
    return limit, remaining, reset


async def _fresh_window(client: httpx.AsyncClient, path: str) -> None:
    """Wait until a new one-minute window if the current one ends within 10 s, so the
    requests that follow all count in one window."""
    response = await client.get(path)
    reset = int(response.headers["ratelimit-reset"])
    if reset < 10:
        await asyncio.sleep(reset + 0.5)


def _assert_rate_limited(response: httpx.Response, limit: int) -> None:
    body = assert_error(response, 429, "rate_limited")
    retry_after = int(response.headers["retry-after"])
    assert 0 < retry_after <= 60, response.headers
    assert _quota(response)[:2] == (limit, 0)
    assert body["message"]


async def test_rate_limit_per_api_key(servers: PublicServers) -> None:
    server = await servers.start(rate_limit_per_minute=3)
    async with server.client(ADMIN_KEY) as first, server.client(SECOND_KEY) as second:
        await _fresh_window(second, "/v1/runs/wrun_probe")
        remaining = []
        for _ in range(3):
            response = await first.get("/v1/runs/wrun_probe")
            assert_error(response, 404, "run_not_found")
            remaining.append(_quota(response)[1])
        assert remaining == [2, 1, 0]
        before = await row_counts(server)
        _assert_rate_limited(await first.get("/v1/runs/wrun_probe"), 3)
        _assert_rate_limited(await trigger(first, "echo"), 3)
        assert await row_counts(server) == before
        # another key has its own budget
        response = await second.get("/v1/runs/wrun_probe")
        assert_error(response, 404, "run_not_found")
        assert _quota(response)[0] == 3 and _quota(response)[1] >= 1


async def test_rate_limit_per_client_address_on_public_routes(servers: PublicServers) -> None:
    server = await servers.start(rate_limit_per_minute=3)
    elsewhere = httpx.AsyncHTTPTransport(local_address="127.0.0.2")  # another client address
    async with server.client(key=None) as anon, server.client(None, transport=elsewhere) as other:
        await _fresh_window(other, "/v1/health")
        remaining = []
        for _ in range(3):
            response = await anon.get("/v1/health")
            assert_ok(response)
            remaining.append(_quota(response)[1])
        assert remaining == [2, 1, 0]
        _assert_rate_limited(await anon.get("/v1/health"), 3)
        _assert_rate_limited(await anon.get("/v1/openapi.json"), 3)  # same address
        response = await other.get("/v1/health")
        assert_ok(response)
        assert _quota(response)[0] == 3 and _quota(response)[1] >= 1
    async with server.client() as keyed:  # a key's budget is not the address's
        assert_error(await keyed.get("/v1/runs/wrun_probe"), 404, "run_not_found")


# -- body size -------------------------------------------------------------------------------


async def test_a_body_over_the_limit_is_413(servers: PublicServers) -> None:
    server = await servers.start(max_body_bytes=1024)
    async with server.client() as api:
        await deploy(api)  # bundles have their own, larger limit
        before = await row_counts(server)
        big_input = ["x" * 2000]
        assert_error(await trigger(api, "echo", big_input), 413, "payload_too_large")

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"workflowName": "echo", "input": ["'
            for _ in range(8):
                yield b"y" * 256
            yield b'"]}'

        chunked = await api.post(
            "/v1/runs", content=chunks(), headers={"Idempotency-Key": "chunked"}
        )  # no Content-Length: counted while reading
        assert "content-length" not in chunked.request.headers
        assert_error(chunked, 413, "payload_too_large")
        response = await api.post("/v1/runs/resume", json={"token": "t", "payload": big_input})
        assert_error(response, 413, "payload_too_large")
        response = await api.post("/v1/webhooks/nobody", content=b"{" + b" " * 2048 + b"}")
        assert response.status_code in (404, 413), response.text
        assert await row_counts(server) == before
        assert_ok(await trigger(api, "echo", ["small"]), 202)


# -- seeded keys -----------------------------------------------------------------------------


async def _keys_named(server: PublicServer, name: str) -> list[list[str]]:
    listed = await run_cli("keys", "list", *server.cli_args)
    assert listed.returncode == 0, listed
    rows = [line.split("\t") for line in listed.stdout.splitlines() if line.strip()]
    return [row for row in rows if row[1] == name]


async def test_seed_api_keys_are_idempotent_and_updated(servers: PublicServers) -> None:
    secret = "seeded-ci-key-6a1f0c9e2b7d4835"
    seed = [{"key": secret, "scopes": ["runs:read"], "name": "ci"}]
    first = await servers.start(seed_api_keys=seed)
    await servers.start(seed_api_keys=seed)  # same database, same seed
    rows = await _keys_named(first, "ci")
    assert len(rows) == 1, rows
    assert rows[0][2] == "runs:read" and rows[0][3] == "active"
    async with first.client(secret) as client:
        assert_error(await client.get("/v1/runs/wrun_probe"), 404, "run_not_found")
        assert_error(await trigger(client, "echo"), 403, "forbidden")

    widened = [{"key": secret, "scopes": ["runs:read", "trigger:write"], "name": "ci"}]
    third = await servers.start(seed_api_keys=widened)
    rows = await _keys_named(third, "ci")
    assert [row[:1] + row[2:] for row in rows] == [
        [rows[0][0], "runs:read trigger:write", "active"]
    ]
    async with third.client(secret) as client:
        assert_error(await trigger(client, "echo"), 409, "no_active_deployment")  # scope granted


# -- the strict remote guard -----------------------------------------------------------------


@pytest.mark.parametrize("switch", ["NODE_ENV", "COMPUTE_WORKER_ENV"])
@pytest.mark.parametrize("target", ["someone-else", None])
def test_production_refuses_a_mismatching_target_world(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, switch: str, target: str | None
) -> None:
    monkeypatch.setenv(switch, "production")
    if target is None:
        monkeypatch.delenv("WORKFLOW_TARGET_WORLD", raising=False)
    else:
        monkeypatch.setenv("WORKFLOW_TARGET_WORLD", target)
    with pytest.raises(StartupRefused, match="WORKFLOW_TARGET_WORLD") as refused:
        create_compute_worker_server(
            data_dir=tmp_path / "data",
            sqlite_path=tmp_path / "world.db",
            expected_target_world=TARGET_WORLD,
        )
    assert TARGET_WORLD in str(refused.value)
    assert not (tmp_path / "world.db").exists()


async def test_production_with_the_expected_target_world_starts(
    monkeypatch: pytest.MonkeyPatch, servers: PublicServers
) -> None:
    monkeypatch.setenv("NODE_ENV", "production")
    monkeypatch.setenv("WORKFLOW_TARGET_WORLD", TARGET_WORLD)
    server = await servers.start(expected_target_world=TARGET_WORLD)
    async with server.client(key=None) as anon:
        assert assert_ok(await anon.get("/v1/health"))["world"] == TARGET_WORLD


async def test_outside_production_a_mismatch_only_warns(
    monkeypatch: pytest.MonkeyPatch, servers: PublicServers, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("NODE_ENV", raising=False)
    monkeypatch.delenv("COMPUTE_WORKER_ENV", raising=False)
    monkeypatch.setenv("WORKFLOW_TARGET_WORLD", "someone-else")
    with caplog.at_level(logging.WARNING):
        server = await servers.start(expected_target_world=TARGET_WORLD)
    assert any("WORKFLOW_TARGET_WORLD" in record.getMessage() for record in caplog.records)
    async with server.client(key=None) as anon:
        assert_ok(await anon.get("/v1/health"))


async def test_cli_serve_exits_non_zero_on_a_mismatching_target_world(tmp_path: Path) -> None:
    database, data = str(tmp_path / "world.db"), str(tmp_path / "data")
    args = ["serve", "--port", "0", "--sqlite-path", database, "--data-dir", data,
            "--expected-target-world", TARGET_WORLD]  # fmt: skip
    env = cli_env(NODE_ENV="production", WORKFLOW_TARGET_WORLD="someone-else")
    result = await run_cli(*args, env=env, within=30)
    assert result.returncode != 0
    assert "WORKFLOW_TARGET_WORLD" in result.stderr and "production" in result.stderr
    assert TARGET_WORLD in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "world.db").exists()


async def test_cli_serve_starts_when_the_target_world_matches(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    env = cli_env(NODE_ENV="production", WORKFLOW_TARGET_WORLD=TARGET_WORLD)
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            CLI, "serve", "--port", "0", "--sqlite-path", str(tmp_path / "world.db"),
            "--data-dir", str(tmp_path / "data"), "--expected-target-world", TARGET_WORLD,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=stderr,
            env=env,
        )  # fmt: skip
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        match = re.search(r"listening on (http://\S+)", line)
        assert match, (line, log.read_text())
        async with httpx.AsyncClient(base_url=match.group(1), timeout=10) as anon:
            assert assert_ok(await anon.get("/v1/health"))["world"] == TARGET_WORLD
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0, log.read_text()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


# -- HTTP/2 ----------------------------------------------------------------------------------


async def test_h2c_with_prior_knowledge(api_server: PublicServer) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(
        base_url=api_server.url, http2=True, http1=False, headers=auth, timeout=20
    ) as h2:
        health = await h2.get("/v1/health")
        assert health.http_version == "HTTP/2"
        assert_ok(health)
        deployment = await deploy(h2)
        responses = await asyncio.gather(*(trigger(h2, "adder", [i, 1]) for i in range(10)))
        assert {r.http_version for r in responses} == {"HTTP/2"}
        runs = [assert_ok(r, 202) for r in responses]
        assert {run["deploymentId"] for run in runs} == {deployment["deploymentId"]}
        done = await wait_for_run(h2, runs[3]["runId"])
        assert done["output"] == 4
        assert_error(await h2.get("/v1/runs/wrun_missing"), 404, "run_not_found")


def _self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_tls_negotiates_h2_through_alpn(servers: PublicServers, tmp_path: Path) -> None:
    cert, key = _self_signed_certificate(tmp_path)
    server = await servers.start(certfile=cert, keyfile=key, require_https=True)
    assert server.url.startswith("https://")
    trust = ssl.create_default_context(cafile=str(cert))
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(
        base_url=server.url, http2=True, verify=trust, headers=auth, timeout=20
    ) as h2:
        health = await h2.get("/v1/health")
        assert health.http_version == "HTTP/2"
        assert_ok(health)
        deployment = await deploy(h2)  # require_https is satisfied over TLS
        assert deployment["active"] is True
        response = await h2.get("/v1/deployments/active")
        assert response.http_version == "HTTP/2"
        assert assert_ok(response)["deploymentId"] == deployment["deploymentId"]
    async with httpx.AsyncClient(base_url=server.url, verify=trust, timeout=20) as h1:
        response = await h1.get("/v1/health")
        assert response.http_version == "HTTP/1.1"
        assert_ok(response)


async def test_a_tls_server_closes_promptly_after_running_a_workflow(tmp_path: Path) -> None:
    cert, key = _self_signed_certificate(tmp_path)
    backend = Backend("sqlite", {"sqlite_path": tmp_path / "world.db"})
    async with PublicServers(backend, tmp_path) as servers:
        server = await servers.start(certfile=cert, keyfile=key)
        trust = ssl.create_default_context(cafile=str(cert))
        async with server.client(verify=trust, http2=True) as h2:
            await deploy(h2)
            run = assert_ok(await trigger(h2, "adder", [1, 2]), 202)
            assert (await wait_for_run(h2, run["runId"]))["output"] == 3
        started = time.monotonic()
        await asyncio.wait_for(server.handle.close(), 90)
        assert time.monotonic() - started < 10


# -- the audit log ---------------------------------------------------------------------------


async def test_a_trigger_is_audited_with_its_correlation_and_run_ids(
    api_server: PublicServer, api: httpx.AsyncClient
) -> None:
    await deploy(api)
    correlation = f"corr-{uuid.uuid4()}"
    caller_run = "wrun_01M8CALLERSUPPL1ED00000000"
    headers = {CORRELATION_HEADER: correlation, "x-workflow-run-id": caller_run}
    response = await trigger(api, "echo", [1], headers=headers)
    run = assert_ok(response, 202)
    assert response.headers[CORRELATION_HEADER] == correlation

    (entry,) = await audit_entries(api_server, "--correlation-id", correlation)
    assert entry["action"] == "runs.trigger"
    assert (entry["method"], entry["path"], entry["status"]) == ("POST", "/v1/runs", 202)
    assert entry["keyId"].startswith("key_")
    assert entry["metadata"]["correlationId"] == correlation
    assert entry["metadata"]["runId"] == caller_run
    assert dt.datetime.fromisoformat(entry["time"]).tzinfo is not None

    # without the header the entry names the run the request created
    plain = f"corr-{uuid.uuid4()}"
    created = assert_ok(await trigger(api, "echo", [2], headers={CORRELATION_HEADER: plain}), 202)
    (entry,) = await audit_entries(api_server, "--correlation-id", plain)
    assert entry["metadata"] == {"correlationId": plain, "runId": created["runId"]}
    by_run = await audit_entries(api_server, "--run-id", created["runId"])
    assert plain in {e["metadata"]["correlationId"] for e in by_run}
    assert run["runId"] != created["runId"]


async def test_state_changes_are_audited_and_reads_are_not(
    api_server: PublicServer, api: httpx.AsyncClient
) -> None:
    correlation = f"corr-{uuid.uuid4()}"
    headers = {CORRELATION_HEADER: correlation}
    payload = {"kind": "python", "files": {"workflows.py": WORKFLOWS}}
    created = assert_ok(await api.post("/v1/deployments", json=payload, headers=headers), 201)
    path = f"/v1/deployments/{created['deploymentId']}"
    assert_ok(await api.post(f"{path}/activate", headers=headers))
    assert_ok(await api.get(path, headers=headers))
    token = f"tok-{uuid.uuid4()}"
    waiting = assert_ok(await trigger(api, "wait_for_hook", [token], headers=headers), 202)
    await wait_for_hook(api, token)
    assert_ok(await api.get(f"/v1/runs/{waiting['runId']}", headers=headers))
    resume = {"token": token, "payload": "ok"}
    assert_ok(await api.post("/v1/runs/resume", json=resume, headers=headers), 202)
    await wait_for_run(api, waiting["runId"])
    cancel = await api.post(f"/v1/runs/{waiting['runId']}/cancel", headers=headers)
    assert_error(cancel, 409, "run_already_terminal")

    entries = await audit_entries(api_server, "--correlation-id", correlation)
    summary = [(e["action"], e["method"], e["path"], e["status"]) for e in entries]
    assert summary == [
        ("deployments.create", "POST", "/v1/deployments", 201),
        ("deployments.activate", "POST", f"{path}/activate", 200),
        ("runs.trigger", "POST", "/v1/runs", 202),
        ("runs.resume", "POST", "/v1/runs/resume", 202),
        ("runs.cancel", "POST", f"/v1/runs/{waiting['runId']}/cancel", 409),
    ]
    assert ADMIN_KEY not in str(entries)
    assert {e["metadata"]["correlationId"] for e in entries} == {correlation}
    assert entries[2]["metadata"]["runId"] == waiting["runId"]
    assert entries[3]["metadata"]["runId"] == waiting["runId"]


async def test_a_cancel_is_audited_with_the_run_it_touched(
    api_server: PublicServer, api: httpx.AsyncClient
) -> None:
    await deploy(api)
    token = f"tok-{uuid.uuid4()}"
    run_id = await started_run(api, "wait_for_hook", token)
    await wait_for_hook(api, token)
    correlation = f"corr-{uuid.uuid4()}"
    cancelled = await api.post(
        f"/v1/runs/{run_id}/cancel", headers={CORRELATION_HEADER: correlation}
    )
    assert assert_ok(cancelled)["status"] == "cancelled"
    (entry,) = await audit_entries(api_server, "--correlation-id", correlation)
    assert (entry["action"], entry["status"]) == ("runs.cancel", 200)
    assert entry["metadata"]["runId"] == run_id


async def test_a_refused_cancel_is_audited_with_the_run_it_named(
    api_server: PublicServer, api: httpx.AsyncClient
) -> None:
    await deploy(api)
    run_id = await started_run(api, "echo", 1)
    await wait_for_run(api, run_id)
    correlation = f"corr-{uuid.uuid4()}"
    refused = await api.post(f"/v1/runs/{run_id}/cancel", headers={CORRELATION_HEADER: correlation})
    assert_error(refused, 409, "run_already_terminal")
    (entry,) = await audit_entries(api_server, "--correlation-id", correlation)
    assert (entry["action"], entry["status"]) == ("runs.cancel", 409)
    assert entry["metadata"].get("runId") == run_id
