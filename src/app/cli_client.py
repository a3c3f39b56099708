"""The user's side of the ``compute-worker`` command line: deploy, trigger, watch and
tail through the public API, with the Python client (``compute_worker.client``) — these
commands use nothing of the server but its HTTP answers.

    compute-worker deploy PATH [--activate] [--kind python|graph] [--entrypoint F] [--metadata JSON]
    compute-worker deployments list | get ID | activate ID
    compute-worker run WORKFLOW [ARGS... | --input JSON] [--wait | --follow] [--timeout S]
    compute-worker runs list [--status S ...] [--workflow W] [--deployment ID] [--limit N]
    compute-worker runs get | watch | cancel | steps | events ID
    compute-worker runs logs ID [--stream NAME] [--follow]
    compute-worker hooks resume TOKEN [--payload JSON]

Every one takes ``--url``, ``--api-key``, ``--profile`` (see ``profiles.py``) and
``--json`` (one JSON document per line on stdout, for scripts). Exit codes: 0 done,
1 the run failed or was cancelled, or the server refused the request, 2 usage (a bad
flag, JSON that does not parse, a profile that does not exist), 3 the server could not
be reached or failed (connection refused, timeout, 5xx).
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from compute_worker.adapters.client.config import DEFAULT_URL, KEY_ENV, URL_ENV
from compute_worker.adapters.client.errors import (
    AuthenticationError,
    ComputeClientError,
    ComputeConnectionError,
    InvalidDeploymentError,
    PermissionDeniedError,
    ResponseError,
    RunTimeoutError,
    ServerError,
)
from compute_worker.adapters.client.models import Run
from compute_worker.adapters.client.sync import Client
from compute_worker.app.cli_output import Output, RunFollower
from compute_worker.app.profiles import PROFILE_ENV, Profile, load_profile

EXIT_RUN_FAILED, EXIT_UNREACHABLE = 1, 3
CLIENT_LOGGER = "compute_worker.client"
DEFAULT_LIST_LIMIT = 20
T = TypeVar("T")


class RequestRefused(click.ClickException):
    """The server answered with a refusal (4xx), or the run failed (exit 1)."""

    exit_code = EXIT_RUN_FAILED


class ServerUnreachable(click.ClickException):
    """No usable answer: refused connection, timeout, 5xx (exit 3)."""

    exit_code = EXIT_UNREACHABLE


class Session:
    """What every client command is given: the resolved profile and the output."""

    def __init__(self, profile: Profile, output: Output) -> None:
        self.profile = profile
        self.out = output

    @contextmanager
    def client(self, timeout: float = 30.0) -> Iterator[Client]:
        with Client(self.profile.url, self.profile.api_key, timeout=timeout) as cw:
            yield cw

    def refused(self, error: ComputeClientError) -> click.ClickException:
        """The exception (and exit code) of a client error, after ``--json`` printed it."""
        self.out.error(error)
        if isinstance(error, ComputeConnectionError):
            return ServerUnreachable(
                f"cannot reach the server at {self.profile.url}: {error.message} — is it "
                f"running? Check --url / {URL_ENV} ({self.profile.describe()})."
            )
        if isinstance(error, ServerError | ResponseError):
            return ServerUnreachable(f"the server failed: {error}")
        hint = ""
        if isinstance(error, AuthenticationError):
            hint = f" — check --api-key / {KEY_ENV} ({self.profile.describe()})"
        elif isinstance(error, PermissionDeniedError) and "requiredScope" in error.details:
            hint = f" — the key lacks the scope {error.details['requiredScope']}"
        return RequestRefused(f"{error}{hint}{self.out.details_text(error)}")


def client_command(
    group: click.Group | None = None, name: str | None = None
) -> Callable[[Callable[..., None]], click.Command]:
    """A command (of ``group``, if given) that talks to a server: the connection flags,
    ``--json``, and client errors turned into one stderr line and an exit code."""

    def decorate(command: Callable[..., None]) -> click.Command:
        @functools.wraps(command)
        def with_session(
            url: str | None, api_key: str | None, profile: str | None, as_json: bool, **kw: Any
        ) -> None:
            session = Session(load_profile(profile, url, api_key), Output(as_json))
            _show_client_warnings()
            try:
                command(session, **kw)
            except ComputeClientError as error:
                raise session.refused(error) from None

        options = [
            click.option(
                "--url",
                metavar="URL",
                help=f"The server [env: {URL_ENV}; else the profile's url; else {DEFAULT_URL}].",
            ),
            click.option(
                "--api-key",
                metavar="KEY",
                help=f"The API key [env: {KEY_ENV}; else the profile's api_key].",
            ),
            click.option(
                "--profile",
                metavar="NAME",
                help=f"A profile of the config file [env: {PROFILE_ENV}; default: default].",
            ),
            click.option(
                "--json",
                "as_json",
                is_flag=True,
                help="JSON on stdout (one document per line), for scripts.",
            ),
        ]
        wrapped: Callable[..., None] = with_session
        for option in reversed(options):
            wrapped = option(wrapped)
        made = (group.command(name) if group else click.command(name))(wrapped)
        common = {"url", "api_key", "profile", "as_json"}  # listed after the command's own
        made.params.sort(key=lambda param: param.name in common)
        return made

    return decorate


def _show_client_warnings() -> None:
    """The client's warnings (each retry, each stream reconnection) as stderr lines."""
    client_log = logging.getLogger(CLIENT_LOGGER)
    if not client_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("compute-worker: %(message)s"))
        client_log.addHandler(handler)
        client_log.setLevel(logging.WARNING)
        client_log.propagate = False


# -- parsing user input ------------------------------------------------------------------------


def _json_value(text: str, flag: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as error:
        raise click.UsageError(f"{flag} is not valid JSON ({error}): {text!r}") from None


def _run_input(input_json: str | None, args: tuple[str, ...]) -> list[Any]:
    """``--input '[1, 2]'`` (the list of arguments), or ARGS, each JSON when it parses
    as JSON and a string otherwise (``run checkout order-42``, ``run adder 1 2``)."""
    if input_json is not None:
        if args:
            raise click.UsageError("give the workflow's input as ARGS or as --input, not both")
        value = _json_value(input_json, "--input")
        if not isinstance(value, list):
            raise click.UsageError(
                f"--input must be a JSON list of the workflow's arguments, e.g. "
                f"'[\"order-42\"]' (got {type(value).__name__})"
            )
        return value
    parsed: list[Any] = []
    for arg in args:
        try:
            parsed.append(json.loads(arg))
        except ValueError:
            parsed.append(arg)
    return parsed


def iso_time(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    """A click callback: an ISO-8601 time flag, UTC when it has no offset."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"not an ISO-8601 time: {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- deploy and deployments ---------------------------------------------------------------


def add_client_commands(cli: click.Group) -> None:
    """Register the client commands on the ``compute-worker`` group."""
    for command in (deploy, run, deployments, runs, hooks):
        cli.add_command(command)


@client_command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--kind",
    type=click.Choice(["python", "graph"]),
    default="python",
    show_default=True,
    help="What the bundle holds.",
)
@click.option(
    "--entrypoint",
    metavar="FILE",
    help="The bundle's entry file [default: workflows.py, or workflow.json for graphs].",
)
@click.option("--metadata", "metadata_json", metavar="JSON", help="A JSON object kept with it.")
@click.option("--activate", is_flag=True, help="Make it the active deployment once uploaded.")
def deploy(
    session: Session,
    path: Path,
    kind: str,
    entrypoint: str | None,
    metadata_json: str | None,
    activate: bool,
) -> None:
    """Upload a folder (zipped here) or a .zip / .tar.gz bundle as a deployment."""
    metadata = None if metadata_json is None else _json_value(metadata_json, "--metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise click.UsageError("--metadata must be a JSON object")
    with session.client(timeout=120) as cw, session.out.upload(path) as progress:
        try:
            created = cw.deployments.create(
                path,
                kind=kind,
                entrypoint=entrypoint,
                metadata=metadata,
                activate=activate,
                progress=progress,
            )
        except (FileNotFoundError, ValueError) as error:  # the folder cannot be bundled
            raise click.UsageError(str(error)) from None
        except InvalidDeploymentError as error:
            session.out.error(error)
            raise RequestRefused(
                f"the deployment was refused: {error.message}{session.out.problems_text(error)}"
            ) from None
    session.out.deployment(created, verb="deployed")


@click.group()
def deployments() -> None:
    """List, show and activate deployments."""


@client_command(deployments, "list")
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=DEFAULT_LIST_LIMIT,
    show_default=True,
    help="Show at most this many, newest first.",
)
def deployments_list(session: Session, limit: int) -> None:
    """The deployments, newest first: which is active, kind, workflows, pinned runs."""
    with session.client() as cw:
        found = list(itertools.islice(cw.deployments.list(page_size=min(limit, 100)), limit))
    session.out.deployments(found)


@client_command(deployments, "get")
@click.argument("deployment_id", metavar="ID")
def deployments_get(session: Session, deployment_id: str) -> None:
    """One deployment (ID, or 'active' for the active one)."""
    with session.client() as cw:
        session.out.deployment(cw.deployments.get(deployment_id))


@client_command(deployments, "activate")
@click.argument("deployment_id", metavar="ID")
def deployments_activate(session: Session, deployment_id: str) -> None:
    """Make a deployment the one new runs use."""
    with session.client() as cw:
        session.out.deployment(cw.deployments.activate(deployment_id), verb="activated")


# -- run and runs ------------------------------------------------------------------------------


def _timeout_option(command: Callable[..., T]) -> Callable[..., T]:
    return click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        metavar="SECONDS",
        help="Stop waiting after this long (exit 1) [default: wait until the run ends].",
    )(command)


@client_command()
@click.argument("workflow")
@click.argument("args", nargs=-1)
@click.option(
    "--input",
    "input_json",
    metavar="JSON",
    help="The workflow's arguments as one JSON list, instead of ARGS.",
)
@click.option(
    "--deployment",
    "deployment_id",
    metavar="ID",
    help="Run on this deployment [default: the active one].",
)
@click.option(
    "--idempotency-key",
    metavar="KEY",
    help="Triggering again with this key answers the same run [default: a fresh key].",
)
@click.option("--wait", is_flag=True, help="Wait until the run ends; print its output.")
@click.option(
    "--follow", is_flag=True, help="Wait, showing steps, attempts, sleeps and hooks as they happen."
)
@_timeout_option
def run(
    session: Session,
    workflow: str,
    args: tuple[str, ...],
    input_json: str | None,
    deployment_id: str | None,
    idempotency_key: str | None,
    wait: bool,
    follow: bool,
    timeout: float | None,
) -> None:
    """Trigger WORKFLOW with ARGS (each JSON, or else a string) or --input.

    Without --wait or --follow it prints the new run and exits; with them it exits 1
    when the run fails or is cancelled."""
    arguments = _run_input(input_json, args)
    with session.client() as cw:
        started = cw.runs.trigger(
            workflow, *arguments, deployment_id=deployment_id, idempotency_key=idempotency_key
        )
        if not (wait or follow):
            session.out.triggered(started)
            return
        session.out.started(started)
        _until_over(session, cw, started.run_id, follow, timeout)


def _until_over(
    session: Session, cw: Client, run_id: str, follow: bool, timeout: float | None
) -> None:
    """Wait (or follow) the run to its end; print it; a failed or cancelled run is exit 1."""
    try:
        if follow:
            ended = RunFollower(cw, run_id, session.out).follow(timeout)
        else:
            with session.out.waiting(run_id):
                ended = cw.runs.wait(run_id, timeout=timeout)
    except KeyboardInterrupt:
        raise RequestRefused(
            f"stopped waiting; run {run_id} goes on — 'compute-worker runs watch {run_id}' "
            f"follows it again, 'compute-worker runs cancel {run_id}' stops it"
        ) from None
    except RunTimeoutError as error:
        session.out.error(error)
        raise RequestRefused(
            f"run {run_id} is still {error.run.status} after {timeout} s — "
            f"follow it with 'compute-worker runs watch {run_id}'"
        ) from None
    session.out.ended(ended)
    _exit_for(ended)


def _exit_for(ended: Run) -> None:
    if ended.status == "completed":
        return
    why = f": {ended.error.message}" if ended.error else ""
    code = f" ({ended.error.code})" if ended.error and ended.error.code else ""
    raise RequestRefused(f"run {ended.run_id} {ended.status}{why}{code}")


@click.group()
def runs() -> None:
    """List, inspect, watch, cancel and tail runs."""


@client_command(runs, "list")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    metavar="STATUS",
    type=click.Choice(["pending", "running", "completed", "failed", "cancelled"]),
    help="Only runs in this status (repeat for several).",
)
@click.option("--workflow", metavar="NAME", help="Only runs of this workflow.")
@click.option("--deployment", "deployment_id", metavar="ID", help="Only runs of this deployment.")
@click.option(
    "--since",
    "created_after",
    metavar="TIME",
    callback=iso_time,
    help="Only runs created after this ISO-8601 time (without an offset: UTC).",
)
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=DEFAULT_LIST_LIMIT,
    show_default=True,
    help="Show at most this many, newest first.",
)
@click.option(
    "--stuck/--not-stuck",
    default=None,
    help="Only runs the server finds stuck (no progress for stuck_after_seconds), or only "
    "the others.",
)
def runs_list(
    session: Session,
    statuses: tuple[str, ...],
    workflow: str | None,
    deployment_id: str | None,
    created_after: datetime | None,
    limit: int,
    stuck: bool | None,
) -> None:
    """Runs, newest first, as a table (a stuck run's status says so)."""
    with session.client() as cw:
        found = cw.runs.list(
            status=list(statuses) or None,
            workflow=workflow,
            deployment_id=deployment_id,
            created_after=created_after,
            stuck=stuck,
            page_size=min(limit, 100),
            resolve_data="none",
        )
        session.out.runs(list(itertools.islice(found, limit)))


@client_command(runs, "get")
@click.argument("run_id", metavar="ID")
def runs_get(session: Session, run_id: str) -> None:
    """A run: status, input, output or error, times."""
    with session.client() as cw:
        session.out.run(cw.runs.get(run_id))


@client_command(runs, "watch")
@click.argument("run_id", metavar="ID")
@_timeout_option
def runs_watch(session: Session, run_id: str, timeout: float | None) -> None:
    """Follow a run to its end: its history so far, then what happens live (exit 1 when it
    fails or is cancelled)."""
    with session.client() as cw:
        _until_over(session, cw, run_id, True, timeout)


@client_command(runs, "cancel")
@click.argument("run_id", metavar="ID")
def runs_cancel(session: Session, run_id: str) -> None:
    """Cancel a run: its code stops, its hooks are disposed, its streams closed."""
    with session.client() as cw:
        session.out.run(cw.runs.cancel(run_id), verb="cancelled")


@client_command(runs, "steps")
@click.argument("run_id", metavar="ID")
def runs_steps(session: Session, run_id: str) -> None:
    """A run's steps, oldest first: status, attempts, retry time, error."""
    with session.client() as cw:
        session.out.steps(cw.runs.steps(run_id))


@client_command(runs, "events")
@click.argument("run_id", metavar="ID")
def runs_events(session: Session, run_id: str) -> None:
    """A run's events, oldest first."""
    with session.client() as cw:
        session.out.events(cw.runs.events(run_id))


@client_command(runs, "hooks")
@click.argument("run_id", metavar="ID")
def runs_hooks(session: Session, run_id: str) -> None:
    """The hooks a run waits on, with their tokens (for keys holding runs:write)."""
    with session.client() as cw:
        session.out.hooks(cw.runs.hooks(run_id))


@client_command(runs, "logs")
@click.argument("run_id", metavar="ID")
@click.option(
    "--stream",
    "name",
    metavar="NAME",
    help="The stream to read [default: the run's only stream, else 'default'].",
)
@click.option(
    "--follow", is_flag=True, help="Keep reading live until the stream closes (the run ends)."
)
def runs_logs(session: Session, run_id: str, name: str | None, follow: bool) -> None:
    """Print what a run wrote to a stream (get_writable(NAME)), chunk by chunk."""
    with session.client() as cw:
        streams = cw.runs.streams(run_id)
        names = [found.name for found in streams]
        if name is None:
            name = names[0] if len(names) == 1 else "default"
        if not follow and name not in names:
            listed = ", ".join(names) or "none yet"
            raise click.UsageError(f"run {run_id} has no stream {name!r} (its streams: {listed})")
        written = next((found.chunks for found in streams if found.name == name), 0)
        with cw.runs.stream(run_id, name) as chunks:
            read = chunks if follow else itertools.islice(chunks, written)
            for index, chunk in enumerate(read):
                session.out.chunk(index, chunk)


@click.group()
def hooks() -> None:
    """Resume runs waiting on a hook."""


@client_command(hooks, "resume")
@click.argument("token")
@click.option(
    "--payload",
    "payload_json",
    metavar="JSON",
    default="null",
    show_default=True,
    help="The JSON value the waiting run receives.",
)
def hooks_resume(session: Session, token: str, payload_json: str) -> None:
    """Send a payload to the hook holding TOKEN; the run waiting on it goes on."""
    payload = _json_value(payload_json, "--payload")
    with session.client() as cw:
        session.out.resumed(cw.hooks.resume(token, payload))
