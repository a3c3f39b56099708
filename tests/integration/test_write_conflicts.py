"""Two write units that lock the same rows in opposite orders on PostgreSQL (a child run
ending while its parent is cancelled does this): PostgreSQL aborts one as a deadlock's
victim, the writer runs that unit again, and both writes land exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import Connection

from compute_worker.adapters.sql.database import Database, DatabaseConfig

TABLE = "cw_test_conflicts"


def _create(conn: Connection) -> None:
    conn.exec_driver_sql(f"CREATE TABLE {TABLE} (id int PRIMARY KEY, n int NOT NULL)")
    conn.exec_driver_sql(f"INSERT INTO {TABLE} VALUES (1, 0), (2, 0)")


def _bump_in_order(first: int, second: int, attempts: Counter[str]) -> Callable[[Connection], None]:
    def work(conn: Connection) -> None:
        attempts[f"{first}->{second}"] += 1
        conn.exec_driver_sql(f"UPDATE {TABLE} SET n = n + 1 WHERE id = {first}")
        conn.exec_driver_sql("SELECT pg_sleep(0.3)")  # the other unit takes its first lock
        conn.exec_driver_sql(f"UPDATE {TABLE} SET n = n + 1 WHERE id = {second}")

    return work


def _counts(conn: Connection) -> dict[int, int]:
    return {row[0]: row[1] for row in conn.exec_driver_sql(f"SELECT id, n FROM {TABLE}")}


async def test_a_deadlock_victim_runs_again_and_both_writes_land_once(
    tmp_path: Path, postgres_url: str
) -> None:
    database = Database(DatabaseConfig(tmp_path / "unused.db", postgres_url))
    try:
        await database.writer.run_alone(_create)
        attempts: Counter[str] = Counter()
        one = asyncio.ensure_future(database.writer.run_sql(_bump_in_order(1, 2, attempts)))
        await asyncio.sleep(0.1)  # a flusher of its own for each unit: two transactions
        two = asyncio.ensure_future(database.writer.run_sql(_bump_in_order(2, 1, attempts)))
        await asyncio.wait_for(asyncio.gather(one, two), 30)
        assert sum(attempts.values()) == 3, attempts  # one of them was the victim, once
        assert await database.writer.run_sql(_counts) == {1: 2, 2: 2}
        await database.ping()  # a conflict that resolved leaves the database healthy
    finally:
        await database.close()
