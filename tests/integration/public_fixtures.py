"""Shared pieces for the public-lane integration tests (http-api.md).

Seeded API keys, a workflow bundle, ``PublicServers`` (real servers on port 0 over
the ``backend`` fixture of ``conftest.py``: one SQLite file or one fresh PostgreSQL
database per test), HTTP and CLI helpers, and row counts for "nothing changed"
checks. Test modules import this explicitly and declare thin fixtures over it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import sqlite3
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx

from compute_worker import start_compute_worker_server

from ._helpers import assert_ok

if TYPE_CHECKING:
    from compute_worker.app.server import ServerHandle

    from .conftest import Backend

CLIENT_TIMEOUT = httpx.Timeout(20.0)
RUN_TIMEOUT = 20.0  # seconds for a triggered run to reach a status
CLI = str(Path(sys.executable).with_name("compute-worker"))
CLI_TIMEOUT = 60.0

PUBLIC_SCOPES = ("trigger:write", "runs:read", "runs:write", "deploy:read", "deploy:write")
SCOPES = (*PUBLIC_SCOPES, "world:proxy")

ADMIN_KEY = "pub-admin-key-4c1d8e2f9a7b3605"  # every scope
SECOND_KEY = "pub-second-key-93b0f1e6d2c4a871"  # trigger:write + runs:read
WITHOUT_KEYS = {scope: f"pub-without-{scope.replace(':', '-')}-key-0f3a" for scope in SCOPES}
ONLY_KEYS = {scope: f"pub-only-{scope.replace(':', '-')}-key-7e21" for scope in SCOPES}


def _scope_keys() -> list[dict[str, Any]]:
    """Per scope, one key holding every other scope and one holding only that scope."""
    keys = []
    for scope in SCOPES:
        others = [s for s in (*SCOPES, "admin") if s != scope]
        keys.append({"key": WITHOUT_KEYS[scope], "scopes": others, "name": f"without-{scope}"})
        keys.append({"key": ONLY_KEYS[scope], "scopes": [scope], "name": f"only-{scope}"})
    return keys


SEED_KEYS: list[dict[str, Any]] = [
    {"key": ADMIN_KEY, "scopes": [*SCOPES, "admin"], "name": "admin"},
    {"key": SECOND_KEY, "scopes": ["trigger:write", "runs:read"], "name": "second"},
    *_scope_keys(),
]

WORKFLOWS = """\
from compute_worker import create_hook, step, workflow


@step
async def add(a, b):
    return a + b


@workflow
async def adder(a, b):
    return await add(a, b)


@workflow
async def echo(*args):
    return list(args)


@workflow
async def wait_for_hook(token):
    return await create_hook(token=token)


@workflow
async def on_delivery(delivery):
    return delivery
"""
WORKFLOW_NAMES = ["adder", "echo", "wait_for_hook", "on_delivery"]

OTHER_WORKFLOWS = """\
from compute_worker import workflow

@workflow
async def only_in_other(x):
    return {"other": x}
"""


@dataclass
class PublicServer:
    url: str
    backend: Backend
    data_dir: Path
    handle: ServerHandle

    def client(
        self, key: str | None = ADMIN_KEY, headers: Mapping[str, str] | None = None, **kwargs: Any
    ) -> httpx.AsyncClient:
        headers = {**({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
        return httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=CLIENT_TIMEOUT, **kwargs
        )

    @property
    def cli_args(self) -> list[str]:
        """The flags that point the CLI at this server's database and data folder."""
        return [*self.backend.cli_args, "--data-dir", str(self.data_dir)]

    @property
    def artifact_dir(self) -> Path:
        return self.data_dir / "artifacts"


class PublicServers:
    """Starts servers sharing one database (the backend's); closes them all on exit."""

    def __init__(self, backend: Backend, tmp_path: Path) -> None:
        self.backend = backend
        self.tmp_path = tmp_path
        self._handles: list[ServerHandle] = []

    async def start(self, **options: Any) -> PublicServer:
        options.setdefault("seed_api_keys", SEED_KEYS)
        data_dir = self.tmp_path / f"data-{len(self._handles)}"
        handle = await asyncio.wait_for(
            start_compute_worker_server(
                data_dir=data_dir, port=0, **self.backend.options, **options
            ),
            timeout=60,
        )
        self._handles.append(handle)
        return PublicServer(handle.url, self.backend, data_dir, handle)

    async def __aenter__(self) -> PublicServers:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for handle in reversed(self._handles):
            await asyncio.wait_for(handle.close(), timeout=90)


# -- HTTP helpers ----------------------------------------------------------------------------

# A server with this option forgets a key another process revoked within 0.5 s
# (the setting's default is 5 s); ``until_refused`` waits for that.
SHORT_KEY_CACHE = {"api_key_cache_seconds": 0.5}


async def until_refused(server: PublicServer, secret: str, within_s: float = 10.0) -> None:
    """Until ``secret`` gets a 401 from ``server`` (a key revoked by another process
    stops working once the server's key cache entry is over)."""
    deadline = asyncio.get_running_loop().time() + within_s
    async with server.client(secret) as client:
        while (await client.get("/v1/runs/wrun_probe")).status_code != 401:
            assert asyncio.get_running_loop().time() < deadline, "the revoked key still works"
            await asyncio.sleep(0.05)


async def deploy(
    client: httpx.AsyncClient, source: str = WORKFLOWS, *, activate: bool = True, **body: Any
) -> dict[str, Any]:
    """Upload a JSON bundle with ``source`` as ``workflows.py``; activate it by default."""
    payload = {"kind": "python", "files": {"workflows.py": source}, **body}
    deployment: dict[str, Any] = assert_ok(await client.post("/v1/deployments", json=payload), 201)
    if activate:
        path = f"/v1/deployments/{deployment['deploymentId']}/activate"
        deployment = assert_ok(await client.post(path))
    return deployment


async def trigger(
    client: httpx.AsyncClient,
    workflow: str,
    args: Sequence[Any] = (),
    *,
    idempotency_key: str | None = None,
    headers: Mapping[str, str] | None = None,
    **body: Any,
) -> httpx.Response:
    """``POST /v1/runs`` with a fresh Idempotency-Key unless one is given."""
    sent = {"Idempotency-Key": idempotency_key or f"idem-{uuid.uuid4()}", **(headers or {})}
    payload = {"workflowName": workflow, "input": list(args), **body}
    return await client.post("/v1/runs", json=payload, headers=sent)


async def started_run(client: httpx.AsyncClient, workflow: str, *args: Any) -> str:
    run_id: str = assert_ok(await trigger(client, workflow, args), 202)["runId"]
    return run_id


async def wait_for_run(
    client: httpx.AsyncClient, run_id: str, status: str = "completed", within: float = RUN_TIMEOUT
) -> dict[str, Any]:
    """Poll ``GET /v1/runs/:id`` until the run has ``status``; fail early on another end."""
    deadline = time.monotonic() + within
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        run = assert_ok(await client.get(f"/v1/runs/{run_id}"))
        if run["status"] == status:
            return run
        if run["status"] in ("completed", "failed", "cancelled"):
            raise AssertionError(f"run ended {run['status']}, expected {status}: {run}")
        await asyncio.sleep(0.05)
    raise AssertionError(f"run still {run.get('status')} after {within} s: {run}")


async def wait_for_hook(
    client: httpx.AsyncClient, token: str, within: float = RUN_TIMEOUT
) -> dict[str, Any]:
    """Wait until a running workflow has created the hook holding ``token``."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        response = await client.get(f"/v1/world/hooks/by-token/{token}")
        if response.status_code == 200:
            hook: dict[str, Any] = response.json()
            return hook
        await asyncio.sleep(0.05)
    raise AssertionError(f"no hook with token {token!r} after {within} s")


async def wait_for_active_in_health(
    client: httpx.AsyncClient, deployment_id: str | None, within: float = 5.0
) -> dict[str, Any]:
    """``GET /v1/health`` until it names ``deployment_id`` (health answers are reused
    for about a second, so a fresh activation may show a moment later)."""
    deadline = time.monotonic() + within
    while True:
        health: dict[str, Any] = assert_ok(await client.get("/v1/health"))
        if health["activeDeploymentId"] == deployment_id or time.monotonic() > deadline:
            assert health["activeDeploymentId"] == deployment_id, health
            return health
        await asyncio.sleep(0.1)


async def world_run_ids(client: httpx.AsyncClient) -> list[str]:
    """Every run id, through the world lane (the client's key needs ``world:proxy``)."""
    page = assert_ok(await client.post("/v1/world/runs/list", json={"pagination": {"limit": 1000}}))
    assert page["hasMore"] is False
    return [run["runId"] for run in page["data"]]


# -- database rows ---------------------------------------------------------------------------

STATE_TABLES = (
    "runs",
    "events",
    "hooks",
    "deployments",
    "active_deployment",
    "idempotency_records",
    "webhook_deliveries",
    "api_keys",
)


async def row_counts(server: PublicServer, tables: Sequence[str] = STATE_TABLES) -> dict[str, int]:
    """How many rows each table holds: equal before and after means nothing changed."""
    queries = {table: f"SELECT COUNT(*) FROM {table}" for table in tables}
    if server.backend.kind == "sqlite":
        path = server.backend.options["sqlite_path"]

        def count() -> dict[str, int]:
            with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn:
                return {t: conn.execute(q).fetchone()[0] for t, q in queries.items()}

        return await asyncio.to_thread(count)
    url = server.backend.options["database_url"].replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return {table: await conn.fetchval(query) for table, query in queries.items()}
    finally:
        await conn.close()


# -- the CLI ---------------------------------------------------------------------------------

_LEAKY_ENV = ("NODE_ENV", "COMPUTE_WORKER_ENV", "WORKFLOW_TARGET_WORLD")


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


def cli_env(**extra: str) -> dict[str, str]:
    """The current environment without production switches, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _LEAKY_ENV and not k.startswith("COMPUTE_WORKER_")
    }
    return {**env, **extra}


async def run_cli(
    *args: str, env: Mapping[str, str] | None = None, within: float = CLI_TIMEOUT
) -> CliResult:
    """Run ``compute-worker`` in a subprocess without blocking the in-process server."""
    process = await asyncio.create_subprocess_exec(
        CLI,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env) if env is not None else cli_env(),
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), within)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return CliResult(process.returncode, stdout.decode(), stderr.decode())


async def audit_entries(server: PublicServer, *filters: str) -> list[dict[str, Any]]:
    """``compute-worker audit <filters> --json`` against the server's database."""
    result = await run_cli("audit", *filters, "--json", *server.cli_args)
    assert result.returncode == 0, result
    return result.json_lines()


# -- webhooks --------------------------------------------------------------------------------

SCHEMES = ("github", "stripe", "standard")
WEBHOOK_SECRETS = {
    "github": "gh-secret-5d0c2a8f71e94b36",
    "stripe": "whsec_stripe_8e1f4c7a2b9d6035",
    "standard": "whsec_" + base64.b64encode(b"standard-webhooks-key-32-bytes!!").decode(),
}
TOKEN_FIELD = "data.token"


def webhook_providers() -> dict[str, Any]:
    """Per scheme: ``<scheme>-trigger`` starts ``on_delivery``; ``<scheme>-resume``
    resumes the hook whose token is at ``data.token``."""
    providers: dict[str, Any] = {}
    for scheme, secret in WEBHOOK_SECRETS.items():
        providers[f"{scheme}-trigger"] = {
            "scheme": scheme, "secret": secret, "trigger": {"workflow": "on_delivery"},
        }  # fmt: skip
        providers[f"{scheme}-resume"] = {
            "scheme": scheme, "secret": secret, "resume": {"tokenField": TOKEN_FIELD},
        }  # fmt: skip
    return providers


def webhook_body(delivery_id: str, **fields: Any) -> bytes:
    """A JSON event; Stripe takes the delivery id from the event's ``id``."""
    return json.dumps({"id": delivery_id, "type": "test.event", **fields}).encode()


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def signed_headers(
    scheme: str,
    body: bytes,
    delivery_id: str,
    *,
    timestamp: int | None = None,
    secret: str | None = None,
) -> dict[str, str]:
    """The headers a provider using ``scheme`` sends with ``body``, signed as it would."""
    secret = WEBHOOK_SECRETS[scheme] if secret is None else secret
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    headers = {"Content-Type": "application/json"}
    if scheme == "github":
        digest = _hmac(secret.encode(), body).hex()
        return {**headers, "X-Hub-Signature-256": f"sha256={digest}",
                "X-GitHub-Delivery": delivery_id, "X-GitHub-Event": "push"}  # fmt: skip
    if scheme == "stripe":
        digest = _hmac(secret.encode(), stamp.encode() + b"." + body).hex()
        return {**headers, "Stripe-Signature": f"t={stamp},v1={digest}"}
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signature = _hmac(key, f"{delivery_id}.{stamp}.".encode() + body)
    return {
        **headers,
        "webhook-id": delivery_id,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(signature).decode(),
    }


@dataclass
class WebhookSink:
    """An ``on_webhook`` callback that keeps what it was handed."""

    deliveries: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, delivery: dict[str, Any]) -> None:
        self.deliveries.append(delivery)
