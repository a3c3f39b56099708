"""The ``compute-worker`` command line (click).

    compute-worker --version
    compute-worker serve [--dev] [every setting as a flag: --host, --port, --data-dir, ...]
    compute-worker migrate [--data-dir D] [--sqlite-path F | --database-url URL]
    compute-worker keys create --name N --scope S [--scope S ...] | keys list | keys revoke ID
    compute-worker audit (--correlation-id ID | --run-id ID | --since TIME) [--json]
    compute-worker settings [--markdown] [setting flags]
    compute-worker deploy | run | deployments … | runs … | hooks …   (cli_client.py: the
        user's side, through the Python client against a running server)
    compute-worker schedules list | pause NAME | resume NAME | trigger NAME  (cli_schedules.py)

Exit codes (``EXIT_*``): 0 ok, 1 a failure (for the client commands: a failed or
cancelled run, or a request the server refused), 2 usage or a bad setting, 3 the
environment refused to start (database unreachable, port taken, data directory
unwritable) or, for the client commands, the server could not be reached or failed.

Adding a command: decorate a function with ``@cli.command()`` (or a group's
``.command()``); ``@settings_options(...)`` gives it setting flags generated from
``app.settings`` and a built ``settings`` argument; ``run_async`` runs its coroutine.
Raise ``click.UsageError`` for bad input (exit 2), ``StartupError`` when the
environment refuses (exit 3), ``DomainError``/``CommandFailed`` for failures (exit 1):
``main`` prints each as one ``compute-worker: ...`` line.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from datetime import datetime
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar

import click

from compute_worker.app.cli_client import add_client_commands, iso_time
from compute_worker.app.errors import StartupError
from compute_worker.app.guards import check_target_world
from compute_worker.app.logs import configure_logging
from compute_worker.app.settings import Settings, SettingSpec, describe_settings, package_version
from compute_worker.app.settings_doc import markdown_table
from compute_worker.domain import ids
from compute_worker.domain.api_keys import ALL_SCOPES, new_secret
from compute_worker.domain.audit import RequestContext
from compute_worker.domain.errors import DomainError
from compute_worker.domain.ports.audit import AuditQuery
from compute_worker.domain.use_cases.authenticate import SeedKey

if TYPE_CHECKING:
    from compute_worker.app.runtime import Runtime

PROG = "compute-worker"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_STARTUP = 0, 1, 2, 3
DATABASE_SETTINGS: tuple[str, ...] = ("data_dir", "sqlite_path", "database_url")
"""The settings of the commands that open the database without serving."""

T = TypeVar("T")
log = logging.getLogger("compute_worker")


class CommandFailed(click.ClickException):
    """A command could not do its job (exit 1); the message says why."""

    exit_code = EXIT_FAILURE


# -- building blocks for commands ------------------------------------------------------------


def _option(spec: SettingSpec) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The click option of one setting; values stay raw so that ``Settings`` validates
    every origin (flag, environment, option) alike."""
    assert spec.flag is not None and spec.flags is not None and spec.env is not None
    shown = f"[default: {spec.default}; env: {spec.env}]"
    if spec.kind == "bool":
        return click.option(spec.flags, spec.name, default=None, help=f"{spec.description} {shown}")
    return click.option(
        spec.flag, spec.name, default=None, metavar=spec.metavar,
        help=f"{spec.description} {shown}",
    )  # fmt: skip


def settings_options(
    names: Iterable[str] | None = None,
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Add a flag for each setting in ``names`` (default: every setting the CLI can set)
    and call the command with ``settings=Settings.load(flags)``; the flags are no
    longer passed one by one. Precedence: flag > environment > default."""
    wanted = None if names is None else set(names)
    specs = [
        spec
        for spec in describe_settings()
        if spec.flag is not None and (wanted is None or spec.name in wanted)
    ]

    def decorate(command: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(command)
        def with_settings(**kwargs: Any) -> T:
            flags = {spec.name: kwargs.pop(spec.name, None) for spec in specs}
            return command(settings=Settings.load(flags, origin="flag"), **kwargs)

        wrapped: Callable[..., T] = with_settings
        for spec in reversed(specs):
            wrapped = _option(spec)(wrapped)
        return wrapped

    return decorate


def run_async(work: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(work)


def runtime(settings: Settings) -> Runtime:
    """The server's runtime, imported when a command needs it: the commands that only
    talk to a server (``cli_client.py``) start in half the time without it."""
    from compute_worker.app.runtime import Runtime

    return Runtime(settings)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Exit codes: 0 ok, 1 failure (a failed or cancelled run, a refused request), "
    "2 usage or bad setting, 3 the environment refused to start (database, port, data "
    "directory) or the server could not be reached.",
)
@click.version_option(
    package_version(), "--version", prog_name=PROG, message="%(prog)s %(version)s"
)
def cli() -> None:
    """compute-worker: a durable workflow server for the Workflow Studio."""


# -- serve -----------------------------------------------------------------------------------


DEV_DELIVERY_ALLOW = ("localhost",)  # loopback names and addresses
DEV_GRAPH_HTTP_ALLOW = ("*", "localhost", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")


@cli.command()
@settings_options()
@click.option("--dev", is_flag=True, help="Create (once) and print a development key with "
              "every scope, activate the demo deployment, and allow deliveries to WDK apps on "
              "loopback unless --delivery-allow says otherwise.")  # fmt: skip
def serve(settings: Settings, dev: bool) -> None:
    """Run the HTTP server until SIGINT or SIGTERM."""
    check_target_world(settings)
    from compute_worker.adapters.system import run_on_loop

    configure_logging(settings.log_level)
    run_on_loop(_serve(settings, dev), settings.event_loop)


async def _serve(settings: Settings, dev: bool) -> None:
    from compute_worker.adapters.system import freeze_startup_heap
    from compute_worker.app.server import ComputeWorkerServer
    from compute_worker.app.startup import prepare_storage

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for name in ("SIGINT", "SIGTERM"):
        loop.add_signal_handler(getattr(signal, name), stop.set)
    if dev:
        await asyncio.to_thread(prepare_storage, settings)
        dev_key = await asyncio.to_thread(_dev_key, settings)
        update: dict[str, object] = {"seed_api_keys": (*settings.seed_api_keys, dev_key)}
        if not settings.delivery_allow:  # WDK apps on this machine, unless told otherwise
            update["delivery_allow"] = DEV_DELIVERY_ALLOW
        if settings.graph_http_allow == ("*",):  # graphs may call services on this network
            update["graph_http_allow"] = DEV_GRAPH_HTTP_ALLOW
        if settings.ui is None:  # the dashboard: on in dev mode unless turned off
            update["ui"] = True
        settings = settings.model_copy(update=update)
    elif settings.sandbox == "auto":  # production: no unboxed workflow code unless told
        settings = settings.model_copy(update={"sandbox": "required"})
    demo = await _ensure_demo(settings) if dev and settings.role != "executor" else None
    server = ComputeWorkerServer(settings)
    handle = await server.start()
    freeze_startup_heap()
    try:
        print(f"{PROG} listening on {handle.url}", flush=True)
        print(f"data directory: {settings.data_dir}", flush=True)
        if settings.ui:
            print(f"dashboard: {handle.url}/ui/", flush=True)
        if dev:
            key = settings.seed_api_keys[-1].secret
            print(f"dev API key (all scopes): {key}", flush=True)
            print(f"  (kept in {settings.dev_key_path})", flush=True)
            if demo is None:
                print("role executor: the demo deployment is for an api node", flush=True)
            elif demo.startswith(ids.DEPLOYMENT):
                print(
                    f"demo deployment {demo} is active; try:\n  COMPUTE_WORKER_URL={handle.url} "
                    f"COMPUTE_WORKER_API_KEY={key} {PROG} run hello you --follow",
                    flush=True,
                )
            else:
                print(demo, flush=True)
        await stop.wait()
    finally:
        await handle.close()


def _dev_key(settings: Settings) -> SeedKey:
    """A development key with every scope, kept in the data folder across restarts."""
    path = settings.dev_key_path
    secret = path.read_text().strip() if path.exists() else ""
    if not secret:  # none yet, or a crash left the file empty: write it whole, then rename
        secret = new_secret()
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secret + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    return SeedKey(secret, ALL_SCOPES, "dev")


async def _ensure_demo(settings: Settings) -> str:
    """Activate the demo deployment unless a deployment is active already, before the
    server listens (so no request can find the worker without one); the id of the demo
    deployment, or what to print instead."""
    from compute_worker.domain.use_cases.deployments import NewDeployment

    context = RequestContext("CLI", "serve --dev", "cli-serve-dev")
    async with runtime(settings) as container:
        active = await container.deployments().active_deployment_id()
        if active is not None:
            return f"active deployment: {active}"
        source = (resources.files("compute_worker.app.demo") / "workflows.py").read_bytes()
        bundle = NewDeployment("python", {"workflows.py": source}, metadata={"name": "demo"})
        try:
            created = await container.create_deployment().execute(bundle, context)
            await container.activate_deployment().execute(created.deployment_id, context)
        except DomainError as refused:
            return f"the demo deployment was refused: {refused.message}"
    return created.deployment_id


# -- migrate, keys, audit --------------------------------------------------------------------


@cli.command()
@settings_options(DATABASE_SETTINGS)
def migrate(settings: Settings) -> None:
    """Create or upgrade the database schema (the server also migrates at start)."""
    configure_logging("warning")
    run_async(_migrate(settings))


async def _migrate(settings: Settings) -> None:
    async with runtime(settings):
        pass
    print(f"database at the latest schema: {settings.sqlite_path}"
          if settings.database_url is None else "database at the latest schema")  # fmt: skip


@cli.group()
def keys() -> None:
    """Create, list and revoke API keys."""


@keys.command("create")
@click.option("--name", required=True, help="A name to recognise the key by.")
@click.option("--scope", "scopes", multiple=True, required=True,
              type=click.Choice(sorted(ALL_SCOPES)), help="Repeat for several scopes.")  # fmt: skip
@settings_options(DATABASE_SETTINGS)
def keys_create(settings: Settings, name: str, scopes: tuple[str, ...]) -> None:
    """Create a key; its secret is shown once."""

    async def create() -> None:
        async with runtime(settings) as container:
            created = await container.manage_api_keys().create(name, list(scopes))
        key = created.key
        print(f"{key.key_id}\t{key.name}\t{' '.join(sorted(key.scopes))}")
        print(f"secret (shown once): {created.secret}")

    configure_logging("warning")
    run_async(create())


@keys.command("list")
@settings_options(DATABASE_SETTINGS)
def keys_list(settings: Settings) -> None:
    """List keys (never their secrets)."""

    async def list_keys() -> None:
        async with runtime(settings) as container:
            found = await container.manage_api_keys().list()
        for key in found:
            state = f"revoked {key.revoked_at.isoformat()}" if key.revoked_at else "active"
            print(f"{key.key_id}\t{key.name}\t{' '.join(sorted(key.scopes))}\t{state}")

    configure_logging("warning")
    run_async(list_keys())


@keys.command("revoke")
@click.argument("key_id")
@settings_options(DATABASE_SETTINGS)
def keys_revoke(settings: Settings, key_id: str) -> None:
    """Revoke a key by id."""

    async def revoke() -> None:
        async with runtime(settings) as container:
            await container.manage_api_keys().revoke(key_id)
        print(f"revoked {key_id}")

    configure_logging("warning")
    run_async(revoke())


@cli.command()
@click.option("--correlation-id", help="Entries of one request (x-workflow-correlation-id).")
@click.option("--run-id", help="Entries that name a run.")
@click.option("--since", callback=iso_time, metavar="TIME",
              help="ISO-8601 time, e.g. 2026-11-24T10:00:00Z.")  # fmt: skip
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@settings_options(DATABASE_SETTINGS)
def audit(
    settings: Settings,
    correlation_id: str | None,
    run_id: str | None,
    since: datetime | None,
    limit: int,
    as_json: bool,
) -> None:
    """Print audit entries (forensic queries); needs at least one filter."""
    if correlation_id is None and run_id is None and since is None:
        raise click.UsageError("give --correlation-id, --run-id or --since")
    query = AuditQuery(correlation_id, run_id, since, limit)

    async def entries() -> list[Any]:
        async with runtime(settings) as container:
            return list(await container.query_audit().execute(query))

    configure_logging("warning")
    for entry in run_async(entries()):
        record = {
            "id": entry.entry_id, "time": entry.created_at.isoformat(), "keyId": entry.key_id,
            "action": entry.action, "method": entry.method, "path": entry.path,
            "status": entry.status, "metadata": entry.metadata,
        }  # fmt: skip
        if as_json:
            print(json.dumps(record))
        else:
            key = entry.key_id or "-"
            print(f"{record['time']}\t{entry.status}\t{entry.method} {entry.path}"
                  f"\t{entry.action}\tkey={key}\t{json.dumps(entry.metadata)}")  # fmt: skip


# -- settings --------------------------------------------------------------------------------


@cli.command("settings")
@click.option("--markdown", is_flag=True, help="Print the README's Configuration table instead.")
@settings_options()
def show_settings(settings: Settings, markdown: bool) -> None:
    """Print the effective settings (flags > environment > defaults) as JSON, secrets
    withheld; or, with --markdown, the table of every setting."""
    if markdown:
        click.echo(markdown_table(), nl=False)
    else:
        click.echo(json.dumps(settings.public(), indent=2))


add_client_commands(cli)

# -- commands kept in modules of their own (they build on the blocks above) ------------------

from compute_worker.app.cli_schedules import schedules  # noqa: E402

cli.add_command(schedules)


# -- entry point -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (``EXIT_*``)."""
    started = time.monotonic()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = cli.main(args=args, prog_name=PROG, standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
        return EXIT_USAGE
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else PROG
        message = " ".join(exc.format_message().split())  # click may wrap choices
        _fail(f"{message.rstrip('.')} — see '{where} --help'.")
        return EXIT_USAGE
    except click.ClickException as exc:
        _fail(exc.format_message())
        return exc.exit_code
    except click.Abort:
        _fail("aborted")
        return EXIT_FAILURE
    except StartupError as exc:  # SettingsError and StartupRefused included
        _fail(str(exc))
        return exc.exit_code
    except DomainError as exc:
        _fail(exc.message)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        _fail(f"interrupted after {time.monotonic() - started:.1f} s")
        return EXIT_FAILURE
    return code if isinstance(code, int) else EXIT_OK


def _fail(message: str) -> None:
    click.echo(f"{PROG}: {message}", err=True)
