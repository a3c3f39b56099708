"""``compute-worker`` as a user runs it: real subprocesses started in a fresh working
directory, with no path options. Where the data lands, ``--version``, flags and their
environment variables, and the one-line refusals (exit 2 bad settings, exit 3 the
environment: database unreachable, port taken, data directory unusable)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import pytest

from .engine_fixtures import REPO, eventually, read_lines
from .public_fixtures import cli_env

CLI = str(Path(sys.executable).with_name("compute-worker"))
CLOSED_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:1/db"  # nothing listens on port 1


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


async def cli(
    cwd: Path, *args: str, env: Mapping[str, str] | None = None, within: float = 60
) -> Result:
    """``compute-worker ARGS`` in ``cwd``, with an environment free of our variables."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        CLI, *args, cwd=cwd, env={**cli_env(), **(env or {})},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), within)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(
            f"compute-worker {' '.join(args)} ran for more than {within} s"
        ) from None
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode(), time.monotonic() - started)


def assert_refused(result: Result, code: int, *says: str) -> str:
    """Exit ``code``, one line on stderr holding each of ``says``, no traceback."""
    assert result.returncode == code, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("compute-worker: "), lines
    for part in says:
        assert part in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh, empty working directory."""
    folder = tmp_path / "fresh"
    folder.mkdir()
    return folder


# -- serve --dev from a fresh directory ------------------------------------------------------


class Served:
    """``compute-worker serve ...`` running in ``cwd``; stdout and stderr go to files."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.cwd = cwd
        self.args = args
        self.out = cwd.parent / "serve.out"
        self.err = cwd.parent / "serve.err"
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Served:
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.process = await asyncio.create_subprocess_exec(
                CLI, "serve", *self.args, cwd=self.cwd,
                env={**cli_env(), "PYTHONUNBUFFERED": "1"},
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=err,
            )  # fmt: skip
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def line(self, prefix: str, within: float = 60) -> str:
        """The first stdout line starting with ``prefix``, without it."""

        async def probe() -> str | None:
            for line in read_lines(self.out):
                if line.strip().startswith(prefix):
                    return line.strip().removeprefix(prefix).strip()
            assert self.process is not None
            if self.process.returncode is not None:
                raise AssertionError(f"serve exited {self.process.returncode}: {self.logs()}")
            return None

        return await eventually(probe, within, f"a line {prefix!r}", interval=0.05)

    def logs(self) -> str:
        return "\n".join(read_lines(self.out) + read_lines(self.err))[-4000:]

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in read_lines(self.err):
            if line.startswith("{"):
                records.append(json.loads(line))
        return records

    async def stop(self, signum: int) -> int:
        assert self.process is not None
        self.process.send_signal(signum)
        return await asyncio.wait_for(self.process.wait(), 30)


@pytest.fixture
async def served(home: Path) -> AsyncIterator[Served]:
    async with Served(home, "--dev", "--port", "0") as server:
        yield server


async def test_serve_dev_keeps_everything_under_data_of_the_working_directory(
    home: Path, served: Served
) -> None:
    url = await served.line("compute-worker listening on ")
    data = home / "data"
    assert await served.line("data directory: ") == str(data)
    assert await served.line("dashboard: ") == f"{url}/ui/"  # on in dev mode
    key = await served.line("dev API key (all scopes): ")
    assert await served.line("(kept in ") == f"{data / 'dev-api-key'})"
    await served.line("demo deployment ")

    assert (data / "dev-api-key").read_text().strip() == key
    for folder in (data, data / "artifacts", data / "artifacts" / "unpacked"):
        assert folder.is_dir() and stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    for private in ("compute-worker.db", "dev-api-key", "encryption.key"):
        assert stat.S_IMODE((data / private).stat().st_mode) == 0o600, private

    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=20) as client:
        assert (await client.get("/ui/")).headers["content-type"].startswith("text/html")
        trigger = await client.post(
            "/v1/runs",
            json={"workflowName": "hello", "input": ["you"]},
            headers={"Idempotency-Key": "fresh-1"},
        )
        assert trigger.status_code == 202, trigger.text
        run_id = trigger.json()["runId"]

        async def finished() -> dict[str, Any] | None:
            run = (await client.get(f"/v1/runs/{run_id}")).json()
            return run if run["status"] in ("completed", "failed", "cancelled") else None

        run = await eventually(finished, 60, f"run {run_id} to finish")
    assert (run["status"], run.get("output")) == ("completed", "HELLO, YOU!"), served.logs()
    unpacked = list((data / "artifacts" / "unpacked").iterdir())
    assert [p.name.startswith("sha256-") for p in unpacked] == [True], unpacked
    assert not (home / "data" / "code").exists()

    started = [r for r in served.log_records() if r["message"] == "compute-worker started"]
    assert len(started) == 1, served.logs()
    assert started[0]["url"] == url
    assert (started[0]["database"], started[0]["worldcompute"]) == ("sqlite", "process")
    assert started[0]["databaseAt"] == str(data / "compute-worker.db")
    assert started[0]["dataDir"] == str(data)

    assert await served.stop(signal.SIGINT) == 0, served.logs()
    stopped = [r for r in served.log_records() if r["message"] == "compute-worker stopped"]
    assert len(stopped) == 1 and stopped[0]["uptimeSeconds"] > 0, served.logs()
    assert "Traceback" not in served.logs()


async def test_serve_dev_has_its_demo_active_as_soon_as_it_answers(home: Path) -> None:
    """A script that waits for health and the key file, then triggers at once (as a
    newcomer's smoke test does), finds the demo deployment active: it is in place before
    the server listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url, key_file = f"http://127.0.0.1:{port}", home / "data" / "dev-api-key"
    async with Served(home, "--dev", "--port", str(port)) as server:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:

            async def answering() -> bool | None:
                try:
                    health = await client.get("/v1/health")
                except httpx.TransportError:
                    return None
                return True if health.status_code == 200 and key_file.exists() else None

            await eventually(answering, 60, "health and the dev key", interval=0.02)
            trigger = await client.post(
                "/v1/runs", json={"workflowName": "hello", "input": ["you"]},
                headers={"Idempotency-Key": "at-once",
                         "Authorization": f"Bearer {key_file.read_text().strip()}"},
            )  # fmt: skip
        assert trigger.status_code == 202, (trigger.text, server.logs())


async def test_serve_stops_cleanly_on_sigterm(home: Path) -> None:
    async with Served(home, "--port", "0") as server:
        await server.line("compute-worker listening on ")
        assert await server.stop(signal.SIGTERM) == 0, server.logs()
        assert "compute-worker stopped" in {r["message"] for r in server.log_records()}
    assert (home / "data" / "compute-worker.db").exists()


async def test_migrate_prints_the_absolute_path_of_a_relative_sqlite_path(home: Path) -> None:
    result = await cli(home, "migrate", "--sqlite-path", "db/world.db")
    assert result.returncode == 0, result
    assert result.stdout.strip() == f"database at the latest schema: {home / 'db' / 'world.db'}"
    assert (home / "db" / "world.db").exists()
    assert (home / "data").is_dir()  # the data directory holds the encryption secret


# -- --version, --help, settings -------------------------------------------------------------


async def test_version_prints_the_package_version(home: Path) -> None:
    result = await cli(home, "--version")
    assert result.returncode == 0, result
    assert result.stdout.strip() == f"compute-worker {metadata.version('workflow-compute-worker')}"
    assert not (home / "data").exists()


async def test_help_shows_each_flag_with_its_description_and_env_var(home: Path) -> None:
    result = await cli(home, "serve", "--help")
    assert result.returncode == 0, result
    text = " ".join(result.stdout.split())
    for flag, env in [
        ("--process-children INTEGER", "COMPUTE_WORKER_PROCESS_CHILDREN"),
        ("--process-memory-mb INTEGER", "COMPUTE_WORKER_PROCESS_MEMORY_MB"),
        ("--step-timeout-seconds NUMBER", "COMPUTE_WORKER_STEP_TIMEOUT_SECONDS"),
        ("--internal-url URL", "COMPUTE_WORKER_INTERNAL_URL"),
        ("--code-dir PATH", "COMPUTE_WORKER_CODE_DIR"),
        ("--require-https / --no-require-https", "COMPUTE_WORKER_REQUIRE_HTTPS"),
    ]:
        assert flag in text and f"env: {env}" in text, flag
    assert "child processes (runs executing at once) per deployment" in text
    top = await cli(home, "--help")
    shown = " ".join(top.stdout.split())
    assert (
        "Exit codes: 0 ok, 1 failure (a failed or cancelled run, a refused request), "
        "2 usage or bad setting, 3 the environment refused to start" in shown
    )
    assert "or the server could not be reached" in shown


async def test_a_formerly_env_only_setting_works_as_flag_and_as_env_var(home: Path) -> None:
    async def effective(*flags: str, **env: str) -> dict[str, Any]:
        result = await cli(home, "settings", *flags, env=env)
        assert result.returncode == 0, result
        shown: dict[str, Any] = json.loads(result.stdout)
        return shown

    assert (await effective())["process_children"] == 4
    assert (await effective("--process-children", "2"))["process_children"] == 2
    from_env = await effective(
        COMPUTE_WORKER_PROCESS_CHILDREN="3",
        COMPUTE_WORKER_STEP_TIMEOUT_SECONDS="45",
        COMPUTE_WORKER_INTERNAL_URL="http://10.1.2.3:8080",
    )
    assert from_env["process_children"] == 3 and from_env["step_timeout_seconds"] == 45
    assert from_env["internal_url"] == "http://10.1.2.3:8080"
    both = await effective("--process-children", "2", COMPUTE_WORKER_PROCESS_CHILDREN="3")
    assert both["process_children"] == 2  # the flag wins
    paths = await effective()
    assert paths["data_dir"] == str(home / "data")
    assert paths["code_dir"] == str(home / "data" / "artifacts" / "unpacked")
    assert not (home / "data").exists()  # showing settings touches nothing


async def test_settings_markdown_prints_the_configuration_table(home: Path) -> None:
    result = await cli(home, "settings", "--markdown")
    assert result.returncode == 0, result
    assert result.stdout.startswith("| option | env | flag | default | values | meaning |")
    assert "| `process_children` | `COMPUTE_WORKER_PROCESS_CHILDREN` |" in result.stdout


# -- refusals --------------------------------------------------------------------------------


async def test_a_bad_flag_value_exits_2_with_one_line(home: Path) -> None:
    result = await cli(home, "serve", "--process-children", "lots")
    assert_refused(result, 2, "--process-children must be an integer between 1 and 256, not 'lots'")
    assert not (home / "data").exists()


async def test_a_bad_environment_variable_exits_2_with_one_line(home: Path) -> None:
    result = await cli(home, "serve", env={"COMPUTE_WORKER_PORT": "abc"})
    assert_refused(
        result, 2, "COMPUTE_WORKER_PORT must be an integer between 0 and 65535, not 'abc'"
    )


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["migrate"], ["keys", "list"]])
async def test_an_unreachable_postgres_exits_3_within_seconds(
    home: Path, command: list[str]
) -> None:
    result = await cli(home, *command, "--database-url", CLOSED_POSTGRES, within=20)
    assert_refused(
        result, 3,
        "cannot connect to PostgreSQL at 127.0.0.1:1/db: connection refused — is it running?",
        "Check --database-url / COMPUTE_WORKER_DATABASE_URL.",
    )  # fmt: skip
    assert result.seconds < 20


async def test_a_missing_postgres_database_exits_3(home: Path, postgres_server: str) -> None:
    url = postgres_server.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    result = await cli(home, "migrate", "--database-url", f"{url}/cw_no_such_database")
    assert_refused(result, 3, 'database "cw_no_such_database" does not exist', "--database-url")


async def test_a_taken_port_exits_3_with_the_message(home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await cli(home, "serve", "--port", str(port))
    assert_refused(
        result, 3,
        f"cannot listen on 127.0.0.1:{port}: address already in use — stop the other server "
        "or choose --port / COMPUTE_WORKER_PORT.",
    )  # fmt: skip


async def test_a_data_dir_that_cannot_be_a_directory_exits_3(home: Path) -> None:
    (home / "data").write_text("a file where the data directory should be\n")
    result = await cli(home, "serve", "--port", "0")
    assert_refused(
        result, 3,
        f"cannot create the data directory {home / 'data'}: exists and is not a directory",
        "--data-dir / COMPUTE_WORKER_DATA_DIR",
    )  # fmt: skip
    below_a_file = await cli(home, "migrate", "--data-dir", "data/below")
    assert_refused(below_a_file, 3, f"{home / 'data'} is not a directory", "--data-dir")


async def test_an_unwritable_data_dir_exits_3(home: Path) -> None:
    if os.geteuid() == 0:  # root writes anywhere: use a place no one can create folders in
        target, says = "/dev/null/data", "/dev/null is not a directory"
    else:
        locked = home / "locked"
        locked.mkdir(mode=0o500)
        target, says = str(locked / "data"), "permission denied"
    result = await cli(home, "serve", "--port", "0", "--data-dir", target)
    assert_refused(result, 3, f"the data directory {target}", says, "--data-dir")


async def test_an_unwritable_artifact_dir_exits_3(home: Path) -> None:
    (home / "artifacts").write_text("not a folder\n")
    result = await cli(home, "serve", "--port", "0", "--artifact-dir", "artifacts")
    assert_refused(
        result, 3, "the artifact directory", "--artifact-dir / COMPUTE_WORKER_ARTIFACT_DIR"
    )


async def test_an_unopenable_sqlite_path_exits_3(home: Path) -> None:
    (home / "db").mkdir()
    result = await cli(home, "serve", "--port", "0", "--sqlite-path", "db")
    assert_refused(result, 3, f"cannot open the SQLite database {home / 'db'}: it is a directory")
    (home / "not-a-db").write_text("plain text, not SQLite\n" * 100)
    garbage = await cli(home, "migrate", "--sqlite-path", "not-a-db")
    assert_refused(garbage, 3, "cannot open the SQLite database", "file is not a database",
                   "--sqlite-path / COMPUTE_WORKER_SQLITE_PATH")  # fmt: skip


async def test_a_missing_tls_certificate_exits_3(home: Path) -> None:
    result = await cli(home, "serve", "--port", "0", "--certfile", "missing.pem")
    assert_refused(
        result, 3, f"cannot load the TLS certificate {home / 'missing.pem'}: no such file",
        "--certfile / COMPUTE_WORKER_CERTFILE",
    )  # fmt: skip


# -- make run --------------------------------------------------------------------------------


async def test_make_run_takes_port_host_and_extra_flags(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = tmp_path / "make-data"
    out, err = tmp_path / "make.out", tmp_path / "make.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            "make", "--no-print-directory", "run", f"PORT={port}", "HOST=127.0.0.1",
            f"ARGS=--data-dir {data} --worldcompute local",
            cwd=REPO, env={**cli_env(), "PYTHONUNBUFFERED": "1"},
            stdin=asyncio.subprocess.DEVNULL, stdout=stdout, stderr=stderr,
            start_new_session=True,
        )  # fmt: skip
    try:

        async def listening() -> str | None:
            for line in read_lines(out):
                if line.startswith("compute-worker listening on "):
                    return line
            if process.returncode is not None:
                raise AssertionError(f"make run exited: {out.read_text()}{err.read_text()}")
            return None

        line = await eventually(listening, 60, "make run to listen", interval=0.1)
        assert line == f"compute-worker listening on http://127.0.0.1:{port}"
        assert f"data directory: {data}" in read_lines(out)
        assert (data / "dev-api-key").exists()
        started = [json.loads(x) for x in read_lines(err) if '"compute-worker started"' in x]
        assert started and started[0]["worldcompute"] == "local"
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
    assert "compute-worker stopped" in err.read_text()
