"""The chaos suite (``make chaos``; its short version runs in ``make test``): kill -9 of
``compute-worker serve`` and all of its children at random moments while runs are in
flight, cycle after cycle — on SQLite, on PostgreSQL with two worker processes, and on a
PostgreSQL cluster of the test's own (initdb/pg_ctl in a temp dir, a free port) restarted
under load (new runs keep coming, each trigger retried with its Idempotency-Key until it
is accepted, as a client would). Then one more start, and the books: runs lost, steps
re-run after their completion was recorded, duplicate terminal events, early wakes — all
must be 0.

``COMPUTE_WORKER_CHAOS_RUNS`` / ``_CYCLES``: short 6 runs, 2 cycles; ``make chaos`` 200, 10."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from .engine_fixtures import TERMINAL, EngineApi, ServerProcess, eventually, read_lines

RUNS = int(os.environ.get("COMPUTE_WORKER_CHAOS_RUNS", "6"))
CYCLES = int(os.environ.get("COMPUTE_WORKER_CHAOS_CYCLES", "2"))
STEPS = 4
PG_BIN = Path("/usr/lib/postgresql/15/bin")
ZEROS = ("runs lost", "steps re-run after completion", "duplicate terminal events", "early wakes")

WORKFLOWS = """
import os
import time

from compute_worker import run_metadata, sleep, step, workflow


@step
async def work(path, index):
    line = f"{run_metadata()['run_id']} {index} {time.time():.6f}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\\n").encode())
    finally:
        os.close(fd)
    time.sleep(0.05)
    return index


@workflow
async def chaotic(path):
    done = []
    for index in range(4):
        done.append(await work(path, index))
        if index == 1:
            await sleep("1500ms")
    return done
"""


def when(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(server: ServerProcess) -> int:
    """kill -9 the server and every process under it; the count killed."""
    victims = [server.pid, *descendants(server.pid)]
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert server.process is not None
    server.process.wait(timeout=10)
    return len(victims)


class Books:
    """What the runs' events and the steps' own log say once everything finished."""

    def __init__(self) -> None:
        self.figures: Counter[str] = Counter(dict.fromkeys(ZEROS, 0))

    async def audit(self, api: EngineApi, run_ids: list[str], lines: Path) -> Counter[str]:
        started: dict[tuple[str, int], list[float]] = {}
        for line in read_lines(lines):
            run_id, index, at = line.split()
            started.setdefault((run_id, int(index)), []).append(float(at))
        f = self.figures
        for run_id in run_ids:
            run = await api.run(run_id)
            if run["status"] != "completed":
                f["runs lost"] += 1
                continue
            events = await api.events(run_id)
            terminal = [e for e in events if e["eventType"] in ("run_completed", "run_failed",
                                                                 "run_cancelled")]  # fmt: skip
            f["duplicate terminal events"] += len(terminal) - 1
            steps = {s["stepId"]: s["input"][1] for s in await api.steps(run_id)}
            for event in events:
                if event["eventType"] == "step_completed":
                    index = steps[event["correlationId"]]
                    runs = started.get((run_id, index), [])
                    f["step executions"] += len(runs)
                    # a start after the completion was recorded re-ran a finished step
                    f["steps re-run after completion"] += sum(
                        at > when(event["createdAt"]) for at in runs
                    )
            waits = {e["correlationId"]: e for e in events if e["eventType"] == "wait_created"}
            for event in events:
                if event["eventType"] == "wait_completed":
                    resume = when(waits[event["correlationId"]]["eventData"]["resumeAt"])
                    f["early wakes"] += when(event["createdAt"]) < resume - 0.001
            f["runs completed"] += 1
        return f


async def trigger_all(api: EngineApi, lines: Path) -> list[str]:
    triggers = [api.trigger("chaotic", str(lines)) for _ in range(RUNS)]
    runs = []
    for batch in range(0, RUNS, 50):
        runs += await asyncio.wait_for(asyncio.gather(*triggers[batch : batch + 50]), 60)
    return [run["runId"] for run in runs]


async def settle(api: EngineApi, run_ids: list[str], within: float) -> None:
    async def probe() -> bool:
        statuses = [(await api.run(run_id))["status"] for run_id in run_ids]
        return all(status in TERMINAL for status in statuses)

    with contextlib.suppress(AssertionError):  # the books count what did not end as lost
        await eventually(probe, within, "every run to end", interval=1.0)


def report(name: str, figures: Counter[str], kills: int, seconds: float) -> None:
    runs = figures["runs completed"] + figures["runs lost"]
    print(
        f"\nchaos {name}: {runs} runs x {CYCLES} cycles, {kills} processes killed, "
        f"{seconds:.0f}s: " + ", ".join(f"{k} {v}" for k, v in sorted(figures.items()))
    )
    for zero in ZEROS:
        assert figures[zero] == 0, (zero, figures)


def worker(args: list[str], tmp_path: Path, name: str) -> ServerProcess:
    # sandbox off: the steps log to the test's folder
    return ServerProcess(["--worldcompute", "process", "--sandbox", "off", *args], tmp_path, name)


@contextlib.contextmanager
def shown_and_stopped(servers: list[ServerProcess]) -> Iterator[None]:
    """Stop ``servers`` (as the list holds them at the end) however the block ends; print
    their last log lines when it failed."""
    try:
        yield
    except BaseException:
        for server in servers:
            print(server.stdout_path.stem, server.logs()[-3000:])
        raise
    finally:
        for server in servers:
            server.stop()


async def chaos(tmp_path: Path, make: list[list[str]], name: str) -> None:
    """``make``: the arguments of each worker process (one or several on one database)."""
    lines = tmp_path / "steps.txt"
    began = time.monotonic()
    kills = 0
    servers: list[ServerProcess] = []
    run_ids: list[str] = []
    rng = random.Random(os.environ.get("COMPUTE_WORKER_CHAOS_SEED", "11"))
    with shown_and_stopped(servers):
        for cycle in range(CYCLES + 1):
            servers[:] = [worker(args, tmp_path, f"{name}-{i}-{cycle}")
                          for i, args in enumerate(make)]  # fmt: skip
            for server in servers:
                server.start()
            urls = [await server.ready(60) for server in servers]
            async with EngineApi(urls[0], timeout=60) as api:
                if cycle == 0:
                    await api.deploy(WORKFLOWS)
                    run_ids = await trigger_all(api, lines)
                if cycle == CYCLES:  # the last start: let everything finish, then audit
                    await settle(api, run_ids, 120 + RUNS)
                    figures = await Books().audit(api, run_ids, lines)
                    break
            await asyncio.sleep(rng.uniform(0.5, 4.0))
            for server in servers:
                kills += kill_tree(server)
        report(name, figures, kills, time.monotonic() - began)


async def test_kill_9_cycles_on_sqlite(tmp_path: Path) -> None:
    args = ["--data-dir", str(tmp_path / "data"), "--sqlite-path", str(tmp_path / "c.db")]
    await chaos(tmp_path, [args], "sqlite")


@pytest.mark.postgres
async def test_kill_9_cycles_on_postgres_with_two_workers(
    tmp_path: Path, postgres_url: str
) -> None:
    make = [
        ["--data-dir", str(tmp_path / f"data-{n}"), "--artifact-dir", str(tmp_path / "art"),
         "--database-url", postgres_url]
        for n in range(2)
    ]  # fmt: skip
    await chaos(tmp_path, make, "postgres")


# -- a PostgreSQL cluster of the test's own, restarted under load -----------------------


async def trigger_until_accepted(api: EngineApi, lines: Path, within: float = 90.0) -> str:
    """One run, its trigger repeated with the same Idempotency-Key through a database
    restart (503, a dropped connection) until the worker accepts it: the run's id."""
    body = {"workflowName": "chaotic", "input": [str(lines)]}
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    deadline = time.monotonic() + within
    while True:
        with contextlib.suppress(httpx.TransportError):
            response = await api.http.post("/v1/runs", json=body, headers=headers)
            if response.status_code in (200, 202):
                run_id: str = response.json()["runId"]
                return run_id
            assert response.status_code == 503, (response.status_code, response.text)
        assert time.monotonic() < deadline, "a trigger was refused for 90 s"
        await asyncio.sleep(0.2)


async def keep_triggering(api: EngineApi, lines: Path, run_ids: list[str],
                          stop: asyncio.Event) -> None:  # fmt: skip
    """New runs, a few a second, until ``stop``: restarts always find runs in flight."""
    while not stop.is_set():
        run_ids.append(await trigger_until_accepted(api, lines))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def as_postgres(*command: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.getuid() == 0 else list(command)


@pytest.fixture
def own_cluster() -> Iterator[tuple[str, Path, int]]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"no PostgreSQL 15 binaries in {PG_BIN}")
    # not under pytest's root-only temp dir: the postgres user must reach it
    root = Path(tempfile.mkdtemp(prefix="cw-chaos-pg-"))
    if os.getuid() == 0:
        shutil.chown(root, "postgres")
    data, port = root / "cluster", free_port()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.STDOUT, "check": True}
    subprocess.run(as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                               "--auth=trust"), **quiet)  # type: ignore[call-overload]  # fmt: skip
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
    ctl = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w"]
    subprocess.run(as_postgres(*ctl, "start"), **quiet)  # type: ignore[call-overload]
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres", root, port
    finally:
        subprocess.run(as_postgres(*ctl, "-m", "immediate", "stop"), check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.postgres
async def test_postgres_restarted_under_load(
    tmp_path: Path, own_cluster: tuple[str, Path, int]
) -> None:
    url, root, port = own_cluster
    data = root / "cluster"
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
    ctl = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w"]
    lines = tmp_path / "steps.txt"
    servers = [
        worker(["--data-dir", str(tmp_path / f"data-{n}"), "--artifact-dir", str(tmp_path / "a"),
                "--database-url", url], tmp_path, f"pg-restart-{n}")
        for n in range(2)
    ]  # fmt: skip
    rng = random.Random(os.environ.get("COMPUTE_WORKER_CHAOS_SEED", "11"))
    low, high = (5.0, 40.0) if RUNS >= 100 else (2.0, 4.0)
    began = time.monotonic()
    with shown_and_stopped(servers):
        for server in servers:
            server.start()
        urls = [await server.ready(60) for server in servers]
        async with EngineApi(urls[0], timeout=60) as api:
            await api.deploy(WORKFLOWS)
            run_ids = await trigger_all(api, lines)
            stop = asyncio.Event()
            more = asyncio.ensure_future(keep_triggering(api, lines, run_ids, stop))
            for _ in range(CYCLES):
                await asyncio.sleep(rng.uniform(low, high))
                await asyncio.to_thread(
                    subprocess.run, as_postgres(*ctl, "-m", "immediate", "restart"),
                    check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                )  # fmt: skip
            stop.set()
            await asyncio.wait_for(more, 120)
            await settle(api, run_ids, 180 + len(run_ids))
            figures = await Books().audit(api, run_ids, lines)
        assert all(s.process is not None and s.process.poll() is None for s in servers)
        report("postgres restarts", figures, 0, time.monotonic() - began)
