"""The ``compute-worker`` command line.

compute-worker serve [--host H] [--port P] [--sqlite-path F] [--database-url URL] ...
compute-worker migrate [--sqlite-path F | --database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.logs import configure_logging
from app.runtime import Runtime
from app.server import ComputeWorkerServer
from app.settings import Settings, SettingsError
from domain.api_keys import ALL_SCOPES, new_secret
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
    for sub in (serve, migrate):
        for flag, options in _DATABASE_FLAGS:
            sub.add_argument(flag, **options)
    for flag, options in _SERVE_FLAGS:
        serve.add_argument(flag, **options)
    return parser


def _options(args: argparse.Namespace) -> dict[str, Any]:
    names = {flag[2:].replace("-", "_") for flag, _ in _DATABASE_FLAGS + _SERVE_FLAGS}
    options = {name: getattr(args, name, None) for name in names - {"dev"}}
    raw_seeds = options.get("seed_api_keys")
    if isinstance(raw_seeds, str):
        try:
            options["seed_api_keys"] = json.loads(raw_seeds)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"--seed-api-keys is not JSON: {exc}") from None
    return options


def _dev_key(settings: Settings) -> SeedKey:
    """A development key with every scope, kept in the data folder across restarts."""
    path = settings.data_dir / "dev-api-key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(new_secret() + "\n")
    return SeedKey(path.read_text().strip(), ALL_SCOPES, "dev")


async def _serve(settings: Settings, dev: bool) -> None:
    if dev:
        dev_key = await asyncio.to_thread(_dev_key, settings)
        settings = dataclasses.replace(settings, seed_api_keys=(*settings.seed_api_keys, dev_key))
    server = ComputeWorkerServer(settings)
    handle = await server.start()
    print(f"compute-worker listening on {handle.url}", flush=True)
    if dev:
        print(f"dev API key (all scopes): {settings.seed_api_keys[-1].secret}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for name in ("SIGINT", "SIGTERM"):
        loop.add_signal_handler(getattr(signal, name), stop.set)
    await stop.wait()
    await handle.close()


async def _migrate(settings: Settings) -> None:
    async with Runtime(settings):
        pass
    print(f"database at the latest schema: {Path(settings.database_path)}"
          if settings.database_url is None else "database at the latest schema")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.load(_options(args))
    except SettingsError as exc:
        print(f"compute-worker: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if args.command == "serve":
        asyncio.run(_serve(settings, args.dev))
    elif args.command == "migrate":
        asyncio.run(_migrate(settings))
    return 0
