"""SQLite reads: ``SqlReads`` on its own threads beside the async engine over aiosqlite.

    .venv/bin/python bench/reads.py [--seconds 2] [--repeat 3] [--readers 16]

One SQLite file (WAL) with 1,000 runs of 10 events each; the same ``SqlWorldReader``
queries (``get_run``, ``list_events`` of a run) through both paths, interleaved in each
round: the latency of one read at a time and the reads per second of ``--readers``
concurrent readers, with the event loop's CPU per read (what the loop has left for HTTP).
Prints min / median / max. A benchmark, never a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from compute_worker.adapters.sql.database import Database, DatabaseConfig
from compute_worker.adapters.sql.reads import SqlReads, SqlWorldReader
from compute_worker.adapters.system import LocalSignal, SystemClock
from compute_worker.domain.ids import IdFactory
from compute_worker.domain.pagination import PageRequest
from compute_worker.domain.use_cases.proxy_world_event import CreateEvent, ProxyWorldEvent
from compute_worker.domain.world import EventRequest, EventType
from compute_worker.domain.world_writes import WorldWrites

RUNS, EVENTS = 1000, 10


async def seed(database: Database) -> list[str]:
    clock = SystemClock()
    ids = IdFactory()
    events = ProxyWorldEvent(database.writer, ids, clock, WorldWrites(ids, clock, LocalSignal()))
    run_ids: list[str] = []
    for _ in range(RUNS):
        data = {"deploymentId": "dpl_bench", "workflowName": "w", "input": [1]}
        request = EventRequest(EventType.RUN_CREATED, event_data=data)
        created = await events.execute(CreateEvent(None, request))
        assert created.run is not None
        run_ids.append(created.run.run_id)
        await events.execute(CreateEvent(created.run.run_id, EventRequest(EventType.RUN_STARTED)))
        for index in range(EVENTS - 2):
            step = {"stepName": "s", "input": [index]}
            request = EventRequest(EventType.STEP_CREATED, f"step_{index}", None, step)
            await events.execute(CreateEvent(created.run.run_id, request))
    return run_ids


Read = Callable[[str], Awaitable[object]]


def reads_of(reader: SqlWorldReader) -> Read:
    async def read(run_id: str) -> object:
        await reader.get_run(run_id)
        return await reader.list_events(run_id, PageRequest(100, "asc", None))

    return read


async def serial_ms(read: Read, run_ids: list[str], seconds: float) -> float:
    count, deadline, started = 0, time.perf_counter() + seconds, time.perf_counter()
    while time.perf_counter() < deadline:
        await read(random.choice(run_ids))
        count += 1
    return (time.perf_counter() - started) / count * 1000 / 2  # two reads per call


async def concurrent_rate(
    read: Read, run_ids: list[str], seconds: float, readers: int
) -> tuple[float, float]:
    """Reads per second, and the event loop thread's CPU ms per read."""
    count, deadline = 0, time.perf_counter() + seconds

    async def reader() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await read(random.choice(run_ids))
            count += 2

    cpu, started = time.thread_time(), time.perf_counter()
    await asyncio.gather(*(reader() for _ in range(readers)))
    elapsed, loop_cpu = time.perf_counter() - started, time.thread_time() - cpu
    return count / elapsed, loop_cpu / count * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--readers", type=int, default=16)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cw-bench-reads-"))
    database = Database(DatabaseConfig(folder / "reads.db"))
    try:
        await database.migrate()
        run_ids = await seed(database)
        paths = {
            "aiosqlite (async engine)": reads_of(SqlWorldReader(SqlReads(database.db_engine))),
            "SqlReads (threads)": reads_of(SqlWorldReader(database.reads)),
        }
        figures: dict[str, dict[str, list[float]]] = {name: {} for name in paths}
        for _ in range(args.repeat):
            for name, read in paths.items():
                serial = await serial_ms(read, run_ids, args.seconds)
                rate, loop_ms = await concurrent_rate(read, run_ids, args.seconds, args.readers)
                for figure, value in (("ms per read, one at a time", serial),
                                      (f"reads/s, {args.readers} readers", rate),
                                      ("event-loop CPU ms per read", loop_ms)):  # fmt: skip
                    figures[name].setdefault(figure, []).append(value)
        print(f"{RUNS} runs x {EVENTS} events; get_run + list_events; "
              f"{args.repeat} rounds of {args.seconds:g} s\n")  # fmt: skip
        print("| figure | path | min | median | max |\n| --- | --- | ---: | ---: | ---: |")
        for figure in next(iter(figures.values())):
            for name in paths:
                values = figures[name][figure]
                print(f"| {figure} | {name} | {min(values):.3f} | "
                      f"{statistics.median(values):.3f} | {max(values):.3f} |")  # fmt: skip
    finally:
        await database.close()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
