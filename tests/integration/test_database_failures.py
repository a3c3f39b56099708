"""The database adapter when its database cannot be had: ``probe`` says why in words,
writes fail with ``StorageUnavailable`` instead of hanging (and work again once the
database is back), failed writes make health ``degraded``, pooled PostgreSQL
connections the server closed are replaced, and the SQLite file is created private."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import Connection

from compute_worker.adapters.sql import database as database_module
from compute_worker.adapters.sql.database import Database, DatabaseConfig, DatabaseUnavailable
from compute_worker.domain import errors
from compute_worker.domain.use_cases.check_health import CheckHealth

CLOSED_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:1/db"  # nothing listens on port 1


def _select_one(conn: Connection) -> int:
    return int(conn.exec_driver_sql("SELECT 1").scalar_one())


async def _probe_reason(config: DatabaseConfig) -> str:
    database = Database(config)
    try:
        with pytest.raises(DatabaseUnavailable) as unavailable:
            await asyncio.wait_for(database.probe(5), 10)
    finally:
        await database.close()
    return str(unavailable.value)


async def test_probe_says_why_postgres_cannot_be_reached(
    tmp_path: Path, postgres_server: str
) -> None:
    unused = tmp_path / "unused.db"
    assert await _probe_reason(DatabaseConfig(unused, CLOSED_POSTGRES)) == "connection refused"
    unknown_host = "postgresql+asyncpg://postgres@no-such-host.invalid/db"
    assert await _probe_reason(DatabaseConfig(unused, unknown_host)) == "unknown host"
    base = postgres_server.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    missing = await _probe_reason(DatabaseConfig(unused, f"{base}/cw_absent_database"))
    assert missing == 'database "cw_absent_database" does not exist'
    assert DatabaseConfig(unused, CLOSED_POSTGRES).where() == "127.0.0.1:1/db"


async def test_probe_passes_on_a_reachable_database(tmp_path: Path, postgres_url: str) -> None:
    sqlite, postgres = DatabaseConfig(tmp_path / "ok.db"), DatabaseConfig(tmp_path, postgres_url)
    for config in (sqlite, postgres):
        database = Database(config)
        try:
            await database.probe(5)
        finally:
            await database.close()


async def test_probe_says_a_file_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("plain text\n" * 200)
    assert await _probe_reason(DatabaseConfig(path)) == "file is not a database"


async def test_postgres_writes_fail_instead_of_hanging_when_the_server_is_unreachable(
    tmp_path: Path,
) -> None:
    database = Database(DatabaseConfig(tmp_path / "unused.db", CLOSED_POSTGRES))
    try:
        for _ in range(12):  # more than its flushers: each failure leaves its flusher alive
            with pytest.raises(errors.StorageUnavailable):
                await asyncio.wait_for(database.writer.run_sql(_select_one), 10)
    finally:
        await database.close()


def _asyncpg_url(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _close_every_other_connection(url: str) -> int:
    """What a PostgreSQL restart or an idle timeout does to the pool: its connections
    are closed under it. Returns how many were."""
    admin = await asyncpg.connect(_asyncpg_url(url), timeout=5)
    try:
        closed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    await asyncio.sleep(0.2)  # the closed sockets reach the client
    return int(closed)


async def _fill_the_pool(database: Database) -> None:
    await database.migrate()
    for _ in range(3):
        assert await asyncio.gather(*(database.reads.run(_select_one) for _ in range(4))) == [1] * 4
        assert await database.writer.run_sql(_select_one) == 1


async def test_postgres_reads_and_writes_go_on_after_the_server_closed_the_pools_connections(
    tmp_path: Path, postgres_url: str
) -> None:
    database = Database(DatabaseConfig(tmp_path, postgres_url))
    try:
        await _fill_the_pool(database)
        assert await _close_every_other_connection(postgres_url) >= 1
        assert await database.reads.run(_select_one) == 1  # the read ran again, once
        outcomes: list[object] = []
        for _ in range(3):  # a write that met a closed connection says so, the next succeeds
            try:
                outcomes.append(await database.writer.run_sql(_select_one))
            except errors.StorageUnavailable as error:
                outcomes.append(error.code)
        assert outcomes[-1] == 1
        assert set(outcomes) <= {1, "storage_unavailable"}
        assert await asyncio.gather(*(database.reads.run(_select_one) for _ in range(8))) == [1] * 8
    finally:
        await database.close()


async def test_postgres_checks_a_pooled_connection_that_sat_idle_before_using_it(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = Database(DatabaseConfig(tmp_path, postgres_url))
    try:
        await _fill_the_pool(database)
        monkeypatch.setattr(database_module, "IDLE_PING_SECONDS", 0.0)  # every one is "idle"
        assert await _close_every_other_connection(postgres_url) >= 1
        assert await database.writer.run_sql(_select_one) == 1  # no failure: checked first
        assert await database.reads.run(_select_one) == 1
    finally:
        await database.close()


async def test_sqlite_writes_fail_instead_of_hanging_when_the_file_cannot_be_opened(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "db"
    database = Database(DatabaseConfig(folder / "world.db"))
    try:
        shutil.rmtree(folder)  # gone before the writer's first connection
        with pytest.raises(errors.StorageUnavailable):
            await asyncio.wait_for(database.writer.run_sql(_select_one), 10)
        folder.mkdir()  # back: the writer thread is still there and connects afresh
        assert await asyncio.wait_for(database.writer.run_sql(_select_one), 10) == 1
    finally:
        await database.close()


def test_the_sqlite_file_and_its_folder_are_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / "world.db"
    Database(DatabaseConfig(path))
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


def _write_to_a_missing_table(conn: Connection) -> None:
    conn.exec_driver_sql("INSERT INTO no_such_table VALUES (1)")  # OperationalError


async def test_failed_writes_make_the_database_unhealthy_until_one_succeeds(
    tmp_path: Path,
) -> None:
    database = Database(DatabaseConfig(tmp_path / "world.db"))
    health = CheckHealth({"database": database.ping}, NoDeployment())
    try:
        await database.ping()
        with pytest.raises(errors.StorageUnavailable):
            await database.writer.run_sql(_write_to_a_missing_table)
        with pytest.raises(errors.StorageUnavailable, match="the last write"):
            await database.ping()  # reads work, writes do not: not healthy
        found = await health.execute()
        assert found.checks == {"database": "unavailable"}
        assert not found.healthy
        assert await database.writer.run_sql(_select_one) == 1
        await database.ping()
    finally:
        await database.close()


class NoDeployment:
    async def active_deployment_id(self) -> str | None:
        return None
