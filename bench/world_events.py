"""events.create throughput, beside the raw commit rate of the same database.

    .venv/bin/python bench/world_events.py [--seconds 3] [--postgres URL | --no-postgres]

Each writer owns one run and records steps the way a runtime does
(step_created, step_started, step_completed). The baseline is one row per
commit on the same database with the bare driver (aiosqlite / asyncpg), measured
in the same run. Target (shared/PERFORMANCE.md): 8 writers >= 60 % of the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import aiosqlite
import asyncpg

from compute_worker.adapters.sql.database import Database, DatabaseConfig
from compute_worker.adapters.system import LocalSignal, SystemClock
from compute_worker.domain.ids import IdFactory
from compute_worker.domain.use_cases.proxy_world_event import CreateEvent, ProxyWorldEvent
from compute_worker.domain.world import EventRequest, EventType
from compute_worker.domain.world_writes import WorldWrites

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


async def raw_sqlite(path: Path, seconds: float) -> float:
    async with aiosqlite.connect(path, isolation_level=None) as db:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        await db.execute("CREATE TABLE IF NOT EXISTS raw (id INTEGER PRIMARY KEY, v TEXT)")
        count, deadline = 0, time.perf_counter() + seconds
        started = time.perf_counter()
        while time.perf_counter() < deadline:
            await db.execute("BEGIN IMMEDIATE")
            await db.execute("INSERT INTO raw (v) VALUES ('x')")
            await db.execute("COMMIT")
            count += 1
        return count / (time.perf_counter() - started)


async def raw_postgres(url: str, seconds: float, connections: int) -> float:
    pool = await asyncpg.create_pool(url, min_size=connections, max_size=connections)
    await pool.execute("CREATE TABLE IF NOT EXISTS raw (id BIGSERIAL PRIMARY KEY, v TEXT)")
    count = 0
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal count
        async with pool.acquire() as conn:
            while time.perf_counter() < deadline:
                async with conn.transaction():
                    await conn.execute("INSERT INTO raw (v) VALUES ('x')")
                count += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    await pool.close()
    return count / elapsed


async def world_rate(config: DatabaseConfig, writers: int, seconds: float) -> float:
    database = Database(config)
    await database.migrate()
    ids, clock = IdFactory(), SystemClock()
    writes = WorldWrites(ids, clock, LocalSignal())
    use_case = ProxyWorldEvent(database.writer, ids, clock, writes)
    count = 0
    deadline = time.perf_counter() + seconds

    async def writer() -> None:
        nonlocal count
        created = await use_case.execute(
            CreateEvent(None, EventRequest(EventType.RUN_CREATED, event_data={
                "deploymentId": "dpl_bench", "workflowName": "bench", "input": [],
            }))
        )  # fmt: skip
        run_id = created.run.run_id if created.run else ""
        step = 0
        while time.perf_counter() < deadline:
            step_id = f"step_{step:08d}"
            step += 1
            for kind, data in (
                (EventType.STEP_CREATED, {"stepName": "s", "input": [step]}),
                (EventType.STEP_STARTED, None),
                (EventType.STEP_COMPLETED, {"result": step}),
            ):
                await use_case.execute(CreateEvent(run_id, EventRequest(kind, step_id, None, data)))
                count += 1

    started = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    elapsed = time.perf_counter() - started
    await database.close()
    return count / elapsed


async def fresh_postgres(admin: str) -> tuple[str, str]:
    name = f"cw_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return name, admin.rsplit("/", 1)[0] + "/" + name


async def drop_postgres(admin: str, name: str) -> None:
    conn = await asyncpg.connect(admin)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


def median_of(runs: list[float]) -> float:
    return statistics.median(runs)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--postgres", default=ADMIN_URL, help="admin URL of a PostgreSQL server")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cw-bench-"))
    try:
        print(f"events.create, {args.seconds:.0f} s per figure, median of {args.repeat}\n")
        raw = median_of([await raw_sqlite(folder / f"raw{i}.db", args.seconds)
                         for i in range(args.repeat)])  # fmt: skip
        print(f"SQLite (WAL, synchronous=FULL)  raw aiosqlite commits/s: {raw:8.0f}")
        for writers in (1, 8):
            configs = [DatabaseConfig(folder / f"w{writers}-{i}.db") for i in range(args.repeat)]
            rate = median_of([await world_rate(c, writers, args.seconds) for c in configs])
            print(f"  events.create, {writers} writer(s): {rate:8.0f} events/s"
                  f"  = {rate / raw:5.0%} of raw")  # fmt: skip
        if not args.no_postgres:
            await bench_postgres(args, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def bench_postgres(args: argparse.Namespace, folder: Path) -> None:
    try:
        name, url = await fresh_postgres(args.postgres)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"\nPostgreSQL skipped: {exc}")
        return
    try:
        print()
        for writers in (1, 8):
            raw = await raw_postgres(url, args.seconds, writers)
            async_url = url.replace("postgresql://", "postgresql+asyncpg://")
            config = DatabaseConfig(folder / "unused.db", async_url)
            rate = median_of([await world_rate(config, writers, args.seconds)
                              for _ in range(args.repeat)])  # fmt: skip
            print(f"PostgreSQL, {writers} connection(s)/writer(s): raw asyncpg tx/s {raw:8.0f}; "
                  f"events.create {rate:8.0f} events/s = {rate / raw:5.0%} of raw")  # fmt: skip
    finally:
        await drop_postgres(args.postgres, name)


if __name__ == "__main__":
    asyncio.run(main())
