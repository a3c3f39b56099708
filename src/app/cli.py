"""The ``compute-worker`` command line.

compute-worker serve [--host H] [--port P] [--sqlite-path F] [--database-url URL] ...
compute-worker migrate [--sqlite-path F | --database-url URL]
compute-worker keys create --name N --scope S [--scope S ...] | keys list | keys revoke ID
compute-worker audit (--correlation-id ID | --run-id ID | --since TIME) [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import httpx

from app.errors import StartupError
from app.guards import StartupRefused, check_target_world
from app.logs import configure_logging
from app.runtime import Runtime
from app.server import ComputeWorkerServer
from app.settings import Settings, SettingsError
from app.startup import prepare_storage
from domain.api_keys import ALL_SCOPES, new_secret
from domain.errors import DomainError
from domain.ports.audit import AuditQuery
from domain.use_cases.authenticate import SeedKey

log = logging.getLogger("compute_worker")

_DATABASE_FLAGS: list[tuple[str, dict[str, Any]]] = [
    ("--data-dir", {"help": "folder for the default SQLite file, artifacts and secrets"}),
    ("--sqlite-path", {"help": "SQLite database file (default: <data-dir>/compute-worker.db)"}),
    ("--database-url", {"help": "postgresql+asyncpg://user@host/db (instead of SQLite)"}),
]
_SERVE_FLAGS: list[tuple[str, dict[str, Any]]] = [
    ("--host", {"help": "interface to listen on (default 127.0.0.1)"}),
    ("--port", {"type": int, "help": "TCP port (default 8080; 0 picks a free one)"}),
    ("--artifact-dir", {"help": "deployment artifact store (default: <data-dir>/artifacts)"}),
    ("--worldcompute", {"choices": ["local", "process"], "help": "workflow execution backend"}),
    ("--expected-target-world", {"help": "WORKFLOW_TARGET_WORLD required in production"}),
    ("--seed-api-keys", {"help": 'JSON list of {"key", "scopes", "name"?} created at start'}),
    ("--require-https", {"action": "store_const", "const": True, "help": "refuse plain HTTP"}),
    (
        "--trust-forwarded-proto",
        {
            "action": "store_const",
            "const": True,
            "help": "accept X-Forwarded-Proto: https from the proxy",
        },
    ),
    ("--webhook-providers", {"help": "JSON object of webhook providers (see README)"}),
    ("--idempotency-retention-hours", {"type": float, "help": "keep keys this long (24)"}),
    ("--stream-poll-interval", {"type": float, "help": "seconds between cross-process checks"}),
    (
        "--encryption",
        {
            "action": argparse.BooleanOptionalAction,
            "default": None,
            "help": "derive per-run encryption keys (default on)",
        },
    ),
    ("--rate-limit-per-minute", {"type": int, "help": "requests per key per minute (0: off)"}),
    ("--max-body-bytes", {"type": int, "help": "largest accepted request body"}),
    ("--certfile", {"help": "TLS certificate (PEM); enables HTTPS and h2 via ALPN"}),
    ("--keyfile", {"help": "TLS private key (PEM)"}),
    ("--log-level", {"choices": ["debug", "info", "warning", "error"]}),
    ("--dev", {"action": "store_true", "help": "create and print a development key (all scopes)"}),
]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="compute-worker", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server")
    migrate = commands.add_parser("migrate", help="create or upgrade the database schema")
    keys = commands.add_parser("keys", help="create, list and revoke API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key; its secret is shown once")
    create.add_argument("--name", required=True)
    create.add_argument("--scope", action="append", required=True, dest="scopes",
                        help="repeat for several: " + ", ".join(sorted(ALL_SCOPES)))  # fmt: skip
    key_list = key_commands.add_parser("list", help="list keys (never their secrets)")
    revoke = key_commands.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    audit = commands.add_parser("audit", help="print audit entries (forensic queries)")
    audit.add_argument("--correlation-id")
    audit.add_argument("--run-id")
    audit.add_argument("--since", help="ISO-8601 time, e.g. 2026-11-24T10:00:00Z")
    audit.add_argument("--limit", type=int, default=1000)
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    for sub in (serve, migrate, create, key_list, revoke, audit):
        for flag, options in _DATABASE_FLAGS:
            sub.add_argument(flag, **options)
    for flag, options in _SERVE_FLAGS:
        serve.add_argument(flag, **options)
    return parser


def _options(args: argparse.Namespace) -> dict[str, Any]:
    names = {flag[2:].replace("-", "_") for flag, _ in _DATABASE_FLAGS + _SERVE_FLAGS}
    options = {name: getattr(args, name, None) for name in names - {"dev"}}
    for name in ("seed_api_keys", "webhook_providers"):
        raw = options.get(name)
        if isinstance(raw, str):
            try:
                options[name] = json.loads(raw)
            except json.JSONDecodeError as exc:
                flag = "--" + name.replace("_", "-")
                raise SettingsError(f"{flag} is not JSON: {exc}") from None
    return options


def _dev_key(settings: Settings) -> SeedKey:
    """A development key with every scope, kept in the data folder across restarts."""
    path = settings.dev_key_path
    secret = path.read_text().strip() if path.exists() else ""
    if not secret:  # none yet, or a crash left the file empty: write it whole, then rename
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = new_secret()
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secret + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    return SeedKey(secret, ALL_SCOPES, "dev")


async def _serve(settings: Settings, dev: bool) -> None:
    if dev:
        await asyncio.to_thread(prepare_storage, settings)
        dev_key = await asyncio.to_thread(_dev_key, settings)
        settings = settings.model_copy(update={"seed_api_keys": (*settings.seed_api_keys, dev_key)})
    server = ComputeWorkerServer(settings)
    handle = await server.start()
    print(f"compute-worker listening on {handle.url}", flush=True)
    if dev:
        key = settings.seed_api_keys[-1].secret
        print(f"dev API key (all scopes): {key}", flush=True)
        print(await _ensure_demo(handle.url, key), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for name in ("SIGINT", "SIGTERM"):
        loop.add_signal_handler(getattr(signal, name), stop.set)
    await stop.wait()
    await handle.close()


async def _ensure_demo(url: str, key: str) -> str:
    """Activate the demo deployment unless a deployment is active already."""
    headers = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        active = await client.get("/v1/deployments/active")
        if active.status_code == 200:
            return f"active deployment: {active.json()['deploymentId']}"
        source = (resources.files("app.demo") / "workflows.py").read_text()
        created = await client.post("/v1/deployments", json={
            "kind": "python", "files": {"workflows.py": source},
            "metadata": {"name": "demo"}})  # fmt: skip
        if created.status_code != 201:
            return f"the demo deployment was refused: {created.text}"
        deployment_id = created.json()["deploymentId"]
        await client.post(f"/v1/deployments/{deployment_id}/activate")
    return (
        f"demo deployment {deployment_id} is active; try:\n"
        f"  curl -s -X POST {url}/v1/runs -H 'Authorization: Bearer {key}' "
        f'-H \'Idempotency-Key: demo-1\' -d \'{{"workflowName": "hello", "input": ["you"]}}\''
    )


async def _migrate(settings: Settings) -> None:
    async with Runtime(settings):
        pass
    print(f"database at the latest schema: {settings.sqlite_path}"
          if settings.database_url is None else "database at the latest schema")  # fmt: skip


async def _keys(settings: Settings, args: argparse.Namespace) -> None:
    async with Runtime(settings) as container:
        manage = container.manage_api_keys()
        if args.keys_command == "create":
            created = await manage.create(args.name, args.scopes)
            key = created.key
            print(f"{key.key_id}\t{key.name}\t{' '.join(sorted(key.scopes))}")
            print(f"secret (shown once): {created.secret}")
        elif args.keys_command == "list":
            for key in await manage.list():
                state = f"revoked {key.revoked_at.isoformat()}" if key.revoked_at else "active"
                print(f"{key.key_id}\t{key.name}\t{' '.join(sorted(key.scopes))}\t{state}")
        else:
            await manage.revoke(args.key_id)
            print(f"revoked {args.key_id}")


async def _audit(settings: Settings, args: argparse.Namespace) -> None:
    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since)
        except ValueError:
            raise SettingsError(f"--since is not an ISO-8601 time: {args.since!r}") from None
        since = since if since.tzinfo else since.replace(tzinfo=UTC)
    query = AuditQuery(args.correlation_id, args.run_id, since, args.limit)
    async with Runtime(settings) as container:
        entries = await container.query_audit().execute(query)
    for entry in entries:
        record = {
            "id": entry.entry_id, "time": entry.created_at.isoformat(), "keyId": entry.key_id,
            "action": entry.action, "method": entry.method, "path": entry.path,
            "status": entry.status, "metadata": entry.metadata,
        }  # fmt: skip
        if args.json:
            print(json.dumps(record))
        else:
            key = entry.key_id or "-"
            print(f"{record['time']}\t{entry.status}\t{entry.method} {entry.path}"
                  f"\t{entry.action}\tkey={key}\t{json.dumps(entry.metadata)}")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.load(_options(args), origin="flag")
        if args.command == "serve":
            check_target_world(settings)
    except (SettingsError, StartupRefused) as exc:
        print(f"compute-worker: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level if args.command == "serve" else "warning")
    commands = {
        "serve": lambda: _serve(settings, args.dev),
        "migrate": lambda: _migrate(settings),
        "keys": lambda: _keys(settings, args),
        "audit": lambda: _audit(settings, args),
    }
    try:
        asyncio.run(commands[args.command]())
    except StartupError as exc:  # the environment refused: exit 3 (2 for a bad setting)
        print(f"compute-worker: {exc}", file=sys.stderr)
        return exc.exit_code
    except DomainError as exc:
        print(f"compute-worker: {exc.message}", file=sys.stderr)
        return 1
    return 0
