"""Where a durable step's time goes on SQLite, against the floor of the disk.

    .venv/bin/python bench/step_floor.py [--runs 200] [--repeat 3]

One thread, no event loop, no HTTP: the writer's own work for the step of a 10-step
workflow, exactly what the engine hands it (``step_completed`` of one step,
``step_created`` and ``step_started`` of the next, in one transaction through
``WorldWrites`` and ``SqlTransaction``), on a database migrated like the server's
(WAL, ``synchronous=FULL``). Prints, medians of ``--repeat`` rounds:

- the floor: a bare ``sqlite3`` commit of one small row on the same disk;
- the unit: the Python and SQL that decide and write the step, before its commit;
- its commit, and the WAL pages (4 KiB frames) each commit writes: the step touches
  the run, the steps and the events tables with their indexes;
- the thread's CPU per step.

What a step costs end to end (the event loop's share, the hand-offs to the writer
thread and back) is bench/engine.py's and bench/suite.py's figure; the difference
between the two is that part. Target (shared/PERFORMANCE.md): <= 0.6 ms per step.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Connection

from compute_worker.adapters.sql.database import Database, DatabaseConfig
from compute_worker.adapters.sql.prepared import Cursor
from compute_worker.adapters.sql.transaction import SqlTransaction
from compute_worker.adapters.system import LocalSignal, SystemClock
from compute_worker.domain import ids
from compute_worker.domain.ids import IdFactory
from compute_worker.domain.world import EventRequest, EventType
from compute_worker.domain.world_writes import WorldWrites

STEPS = 10


@dataclass
class Round:
    unit_us: float  # deciding and writing a step, before its commit
    commit_us: float
    cpu_us: float  # the thread's CPU per step, commit included
    frames: float  # WAL frames per step commit


def bare_commit_us(path: Path, count: int = 2000) -> float:
    """One small row per commit, WAL, synchronous=FULL: the disk's floor."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE raw (id INTEGER PRIMARY KEY, v TEXT)")
        started = time.perf_counter()
        for _ in range(count):
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO raw (v) VALUES ('x')")
            db.execute("COMMIT")
        return (time.perf_counter() - started) / count * 1e6
    finally:
        db.close()


class StepWrites:
    """Runs of ``STEPS`` steps written the way the engine's units write them."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.cursor = Cursor(conn)
        self.memo: dict[str, object] = {}
        self.ids = IdFactory()
        self.writes = WorldWrites(self.ids, SystemClock(), LocalSignal())
        self.unit = self.commit = self.cpu = 0.0
        self.steps = 0

    def _append(self, run_id: str, requests: list[EventRequest]) -> tuple[float, float, float]:
        """One unit of ``requests``, committed: its build and commit seconds, and the
        thread's CPU seconds for both."""
        cpu, started = time.thread_time(), time.perf_counter()
        transaction = self.conn.begin()
        tx = SqlTransaction(self.conn, self.cursor, self.memo)  # type: ignore[arg-type]
        for request in requests:
            self.writes.append(tx, run_id, request)
        tx.flush()
        built = time.perf_counter()
        transaction.commit()
        return built - started, time.perf_counter() - built, time.thread_time() - cpu

    def run(self, number: int) -> None:
        run_id = ids.RUN + self.ids.ulid()
        data = {"deploymentId": "dpl_bench", "workflowName": "ten", "input": [0]}
        self._append(run_id, [EventRequest(EventType.RUN_CREATED, None, None, data)])
        self._append(run_id, [EventRequest(EventType.RUN_STARTED)])
        previous = None
        for index in range(STEPS):
            step_id = ids.STEP + ids.encode_ulid(int(time.time() * 1000), number * 100 + index)
            requests = [] if previous is None else [
                EventRequest(EventType.STEP_COMPLETED, previous, None, {"result": index})
            ]  # fmt: skip
            requests += [
                EventRequest(EventType.STEP_CREATED, step_id, None,
                             {"stepName": "inc", "input": [index]}),
                EventRequest(EventType.STEP_STARTED, step_id),
            ]  # fmt: skip
            unit, commit, cpu = self._append(run_id, requests)
            self.unit += unit
            self.commit += commit
            self.cpu += cpu
            self.steps += 1
            previous = step_id


def one_round(database: Database, path: Path, runs: int) -> Round:
    assert database.writer_engine is not None
    with database.writer_engine.connect() as conn:
        for number in range(20):  # warm up: statements prepared, memo filled
            StepWrites(conn).run(number)
        timed = StepWrites(conn)
        for number in range(runs):
            timed.run(1000 + number)
        frames = _frames_per_commit(conn, path)
    return Round(timed.unit / timed.steps * 1e6, timed.commit / timed.steps * 1e6,
                 timed.cpu / timed.steps * 1e6, frames)  # fmt: skip


def _frames_per_commit(conn: Connection, path: Path, runs: int = 20) -> float:
    """WAL frames written per commit, counted over a few more runs with the automatic
    checkpoint off (not while timing: a WAL left to grow makes commits slower)."""
    checkpoint = sqlite3.connect(path, isolation_level=None)
    try:
        checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
        conn.commit()
        counted = StepWrites(conn)
        for number in range(runs):
            counted.run(100_000 + number)
        frames = int(checkpoint.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])
        checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.exec_driver_sql("PRAGMA wal_autocheckpoint=1000")
        conn.commit()
    finally:
        checkpoint.close()
    return frames / (runs * (STEPS + 2))  # each run's created and started commits too


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cw-step-floor-"))
    try:
        floors, rounds = [], []
        for index in range(args.repeat):
            floors.append(bare_commit_us(folder / f"bare{index}.db"))
            path = folder / f"world{index}.db"
            database = Database(DatabaseConfig(path))
            await database.migrate()
            try:
                rounds.append(await asyncio.to_thread(one_round, database, path, args.runs))
            finally:
                await database.close()

        def median(values: list[float]) -> float:
            return statistics.median(values)

        floor = median(floors)
        unit = median([r.unit_us for r in rounds])
        commit = median([r.commit_us for r in rounds])
        print(f"one durable step on SQLite (WAL, synchronous=FULL), {args.runs} runs of "
              f"{STEPS} steps, median of {args.repeat}")  # fmt: skip
        print(f"  floor: bare sqlite3 commit of one row     {floor:7.0f} us")
        print(f"  the step's unit (decide + write, in SQL)  {unit:7.0f} us")
        print(f"  its commit                                {commit:7.0f} us  "
              f"({median([r.frames for r in rounds]):.1f} WAL pages a commit)")  # fmt: skip
        print(f"  unit + commit                             {unit + commit:7.0f} us  "
              f"= {(unit + commit) / floor:.1f}x the floor; thread CPU "
              f"{median([r.cpu_us for r in rounds]):.0f} us")  # fmt: skip
        print("  target: <= 600 us per step end to end (bench/engine.py, bench/suite.py)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
