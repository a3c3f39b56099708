"""The peer: DBOS Transact on the same 10-step workflow, beside our engine, in one run.

    .venv/bin/pip install -e '.[bench]'   # dbos
    .venv/bin/python bench/dbos_peer.py [--seconds 2] [--repeat 3] [--samples 100]
                                        [--dbos-api sync|async] [--postgres ADMIN_URL]

A 10-step workflow of trivial steps (each returns x + 1). DBOS runs it on a SQLite
system database in a temp dir, twice: with SQLite's default (rollback) journal,
then with ``PRAGMA journal_mode=WAL`` set on the file before DBOS opens it. Our
engine runs the same workflow through bench/engine.py's ``Bench`` (in process,
SQLite WAL synchronous=FULL, ``worldcompute local``).

With ``--postgres`` (the admin URL of a PostgreSQL server), both also run on PostgreSQL,
each in a fresh database of that server: DBOS with it as its system database, ours with
it as ``database_url`` — the per-process figures the PostgreSQL target compares.

For each: workflows/s one at a time and 20 at a time (DBOS: sync workflows on
threads by default, measured faster here than its asyncio API; ``--dbos-api
async`` for the other), and the time per step, two ways, one at a time:
"wall" = workflow latency / 10 (bench/engine.py's figure), "marginal" = (median
10-step latency - median 0-step latency) / 10. Then the ratios ours/DBOS.
Throughputs are medians of ``--repeat`` rounds. Targets (shared/PERFORMANCE.md):
per step <= 0.6 ms (2x better than DBOS on WAL), >= 3,000 steps/s 20 at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import engine
from compute_worker.app.runtime import Runtime

HAVE_DBOS = importlib.util.find_spec("dbos") is not None
if HAVE_DBOS:
    import psycopg  # DBOS's driver
    from dbos import DBOS

CONCURRENCY = (1, 20)


@dataclass
class Figures:
    name: str
    rates: dict[int, float]  # workflows/s by concurrency
    ten_ms: float  # median latency of a 10-step workflow, one at a time
    zero_ms: float  # median latency of a 0-step workflow, one at a time

    @property
    def wall_step_ms(self) -> float:
        return self.ten_ms / 10

    @property
    def marginal_step_ms(self) -> float:
        return (self.ten_ms - self.zero_ms) / 10


def median_ms(durations: list[float]) -> float:
    return statistics.median(durations) * 1000


# -- DBOS ------------------------------------------------------------------------------

if HAVE_DBOS:

    @DBOS.step()
    def inc(x: int) -> int:
        return x + 1

    @DBOS.workflow()
    def ten(x: int) -> int:
        for _ in range(10):
            x = inc(x)
        return x

    @DBOS.workflow()
    def zero() -> int:
        return 0

    @DBOS.step()
    async def ainc(x: int) -> int:
        return x + 1

    @DBOS.workflow()
    async def aten(x: int) -> int:
        for _ in range(10):
            x = await ainc(x)
        return x

    @DBOS.workflow()
    async def azero() -> int:
        return 0


def timed_sync(func: object, *args: object) -> float:
    started = time.perf_counter()
    func(*args)  # type: ignore[operator]
    return time.perf_counter() - started


def dbos_sync(args: argparse.Namespace) -> tuple[dict[int, float], float, float]:
    for _ in range(20):
        ten(0)
    zero_ms = median_ms([timed_sync(zero) for _ in range(args.samples)])
    ten_ms = median_ms([timed_sync(ten, 0) for _ in range(args.samples)])

    def loop(deadline: float) -> int:
        done = 0
        while time.perf_counter() < deadline:
            ten(0)
            done += 1
        return done

    rates: dict[int, float] = {}
    for concurrency in CONCURRENCY:
        rounds = []
        with ThreadPoolExecutor(concurrency) as pool:
            for _ in range(args.repeat):
                started = time.perf_counter()
                done = sum(pool.map(loop, [started + args.seconds] * concurrency))
                rounds.append(done / (time.perf_counter() - started))
        rates[concurrency] = statistics.median(rounds)
    return rates, ten_ms, zero_ms


async def dbos_async(args: argparse.Namespace) -> tuple[dict[int, float], float, float]:
    async def timed(func: object, *call: object) -> float:
        started = time.perf_counter()
        await func(*call)  # type: ignore[operator]
        return time.perf_counter() - started

    for _ in range(20):
        await aten(0)
    zero_ms = median_ms([await timed(azero) for _ in range(args.samples)])
    ten_ms = median_ms([await timed(aten, 0) for _ in range(args.samples)])

    async def loop(deadline: float) -> int:
        done = 0
        while time.perf_counter() < deadline:
            await aten(0)
            done += 1
        return done

    rates: dict[int, float] = {}
    for concurrency in CONCURRENCY:
        rounds = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            deadline = started + args.seconds
            done = sum(await asyncio.gather(*(loop(deadline) for _ in range(concurrency))))
            rounds.append(done / (time.perf_counter() - started))
        rates[concurrency] = statistics.median(rounds)
    return rates, ten_ms, zero_ms


def measure_dbos(folder: Path, wal: bool, args: argparse.Namespace) -> Figures:
    path = folder / f"dbos-{'wal' if wal else 'default'}.sqlite"
    if wal:  # persistent in the file: DBOS's connections open it in WAL
        with sqlite3.connect(path) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
    figures = run_dbos(f"sqlite:///{path}", args)
    with sqlite3.connect(path) as connection:
        journal = connection.execute("PRAGMA journal_mode").fetchone()[0]
    return Figures(f"DBOS, SQLite journal={journal}", *figures)


def run_dbos(database_url: str, args: argparse.Namespace) -> tuple[dict[int, float], float, float]:
    DBOS(config={"name": "cw-bench-peer", "system_database_url": database_url,
                 "log_level": "WARNING"})  # fmt: skip
    DBOS.launch()
    try:
        if args.dbos_api == "sync":
            return dbos_sync(args)
        return asyncio.run(dbos_async(args))
    finally:
        DBOS.destroy()  # keeps the registry: the same functions serve the next launch


# -- ours (bench/engine.py) ------------------------------------------------------------


async def measure_ours(
    folder: Path, args: argparse.Namespace, database_url: str | None = None
) -> Figures:
    """bench/engine.py's setup (its ``main`` does it inline), with its ``Bench``."""
    options = {"data_dir": folder / "ours", "worldcompute": "local", "internal_url": None}
    if database_url is not None:
        options["database_url"] = database_url
    settings = engine.Settings.load(options, env={})
    async with Runtime(settings, execute=True) as container:
        created = await container.create_deployment().execute(
            engine.NewDeployment("python", {"workflows.py": engine.BUNDLE.encode()}), engine.CONTEXT
        )
        await container.activate_deployment().execute(created.deployment_id, engine.CONTEXT)
        bench = engine.Bench(container)
        for _ in range(20):
            await bench.run_one("ten", [0])
        zero_ms = median_ms([await bench.run_one("zero", []) for _ in range(args.samples)])
        ten_ms = median_ms([await bench.run_one("ten", [0]) for _ in range(args.samples)])
        rates = {
            concurrency: statistics.median(
                [(await bench.throughput(concurrency, args.seconds))[0]
                 for _ in range(args.repeat)]
            )
            for concurrency in CONCURRENCY
        }  # fmt: skip
    where = "SQLite WAL FULL" if database_url is None else "PostgreSQL"
    return Figures(f"ours (engine.py), {where}", rates, ten_ms, zero_ms)


def on_postgres(admin: str, folder: Path, args: argparse.Namespace) -> list[Figures]:
    """DBOS and ours, each on a fresh database of the server at ``admin``."""
    rows = []
    for who in ("dbos", "ours"):
        name = f"cw_peer_{who}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        url = admin.rsplit("/", 1)[0] + "/" + name
        try:
            if who == "dbos":
                rows.append(Figures("DBOS, PostgreSQL", *run_dbos(url, args)))
            else:
                async_url = url.replace("postgresql://", "postgresql+asyncpg://")
                rows.append(asyncio.run(measure_ours(folder / "pg", args, async_url)))
        finally:
            with psycopg.connect(admin, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return rows


# -- report ----------------------------------------------------------------------------


def table(rows: list[Figures]) -> None:
    print(f"| {'setup':36s} | 1 at a time (wf/s) | 20 at a time (wf/s) | steps/s at 20 "
          f"| per step, wall | per step, marginal | 0-step run |")  # fmt: skip
    print(f"| {'-' * 36} | {'-' * 18} | {'-' * 19} | {'-' * 13} | {'-' * 14} | {'-' * 18} "
          f"| {'-' * 10} |")  # fmt: skip
    for row in rows:
        print(f"| {row.name:36s} | {row.rates[1]:18.1f} | {row.rates[20]:19.1f} "
              f"| {row.rates[20] * 10:13.0f} | {row.wall_step_ms:11.3f} ms "
              f"| {row.marginal_step_ms:15.3f} ms | {row.zero_ms:7.2f} ms |")  # fmt: skip


def ratios(ours: Figures, peer: Figures) -> None:
    print(f"ours / {peer.name}:  workflows/s 1 at a time {ours.rates[1] / peer.rates[1]:5.2f}x, "
          f"20 at a time {ours.rates[20] / peer.rates[20]:5.2f}x;  time per step (lower is "
          f"better) wall {ours.wall_step_ms / peer.wall_step_ms:5.2f}x, marginal "
          f"{ours.marginal_step_ms / peer.marginal_step_ms:5.2f}x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per throughput round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per throughput (median)")
    parser.add_argument("--samples", type=int, default=100, help="runs per latency median")
    parser.add_argument("--dbos-api", choices=["sync", "async"], default="sync")
    parser.add_argument("--postgres", help="admin URL of a PostgreSQL server: also measure both "
                        "on it (e.g. postgresql://postgres@127.0.0.1:5432/postgres)")  # fmt: skip
    args = parser.parse_args()
    if not HAVE_DBOS:
        print("dbos is not installed: .venv/bin/pip install -e '.[bench]' (nothing measured)")
        return
    folder = Path(tempfile.mkdtemp(prefix="cw-dbos-peer-"))
    try:
        print(f"10-step workflows of trivial steps; DBOS Transact {version('dbos')} "
              f"({args.dbos_api} API), {args.seconds:g} s per round, throughput median of "
              f"{args.repeat}, latencies median of {args.samples}, "
              f"{os.cpu_count()} CPUs\n")  # fmt: skip
        rows = [measure_dbos(folder, wal, args) for wal in (False, True)]
        rows.append(asyncio.run(measure_ours(folder, args)))
        if args.postgres:
            rows.extend(on_postgres(args.postgres, folder, args))
        table(rows)
        print()
        for peer in rows[:2]:
            ratios(rows[2], peer)
        if args.postgres:
            ratios(rows[4], rows[3])
        print("\nwall = 10-step latency / 10; marginal = (10-step - 0-step latency) / 10; "
              "both one at a time.\n"
              "targets: per step <= 0.6 ms; >= 3,000 steps/s at 20 at a time")  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    logging.getLogger("dbos").setLevel(logging.WARNING)
    main()
