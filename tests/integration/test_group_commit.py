"""The group-commit writer on real databases: a unit whose caller stopped waiting once the
unit was running (a client gone mid-request) still commits, and its after-commit work
still runs — a run accepted here is started, a signal is sent."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from compute_worker.adapters.sql.database import Database, DatabaseConfig
from compute_worker.adapters.sql.transaction import SqlTransaction
from compute_worker.domain.ports.transactions import Transaction


@pytest.fixture(params=["sqlite", "postgresql"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> DatabaseConfig:
    if request.param == "sqlite":
        return DatabaseConfig(tmp_path / "world.db")
    return DatabaseConfig(tmp_path / "unused.db", request.getfixturevalue("postgres_url"))


async def test_a_unit_whose_caller_left_still_commits_and_runs_its_after_commit_work(
    config: DatabaseConfig,
) -> None:
    database = Database(config)
    loop = asyncio.get_running_loop()
    after_commit = asyncio.Event()
    caller: asyncio.Task[None] | None = None

    def work(tx: Transaction) -> None:
        assert isinstance(tx, SqlTransaction) and caller is not None
        tx.conn.execute(text("CREATE TABLE marks (note TEXT)"))
        tx.conn.execute(text("INSERT INTO marks VALUES ('written')"))
        tx.after_commit(after_commit.set)
        loop.call_soon_threadsafe(caller.cancel)  # the caller leaves while the unit runs
        time.sleep(0.05)

    try:
        caller = asyncio.create_task(database.writer.run(work))
        with pytest.raises(asyncio.CancelledError):
            await caller
        await asyncio.wait_for(after_commit.wait(), 5)
        marks = await database.writer.run_sql(
            lambda conn: conn.execute(text("SELECT note FROM marks")).scalars().all()
        )
        assert marks == ["written"]
    finally:
        await database.close()
