"""Shared fixtures: a fresh PostgreSQL database per test session, SQLite paths."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

POSTGRES_ADMIN = os.environ.get(
    "COMPUTE_WORKER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _admin(statement: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(POSTGRES_ADMIN, timeout=5)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The admin URL of a reachable PostgreSQL server, or a skip saying why not."""
    try:
        _admin("SELECT 1")
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.skip(f"no PostgreSQL server at {POSTGRES_ADMIN}: {exc}")
    yield POSTGRES_ADMIN


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database for one test; dropped afterwards."""
    name = f"cw_test_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')
    base = postgres_server.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "world.db"
