"""Engines, connection settings and migrations for SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from compute_worker.adapters.sql.reads import READ_THREADS, SqlReads
from compute_worker.adapters.sql.writer import (
    AsyncCommitter,
    Committer,
    GroupCommitWriter,
    SqliteCommitter,
    begin_immediate,
)

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_MS = 10_000
_MIGRATION_LOCK = 727_001  # pg advisory lock id taken while migrating
POSTGRES_FLUSHERS = 8


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    sqlite_path: Path
    database_url: str | None = None

    @property
    def is_postgres(self) -> bool:
        return self.database_url is not None

    def describe(self) -> str:
        if self.database_url is None:
            return f"sqlite:{self.sqlite_path}"
        return make_url(self.database_url).render_as_string(hide_password=True)

    def where(self) -> str:
        """``host:port/db`` of PostgreSQL, the file of SQLite (no credentials)."""
        if self.database_url is None:
            return str(self.sqlite_path)
        url = make_url(self.database_url)
        host = url.host or "the local socket"
        return f"{host}:{url.port or 5432}/{url.database or url.username or ''}"


class DatabaseUnavailable(Exception):
    """The database cannot be reached or opened; the message is the reason, in words."""


class Database:
    """The reads (``reads``), the group-commit writer (writes) and the async engine
    (``db_engine``: PostgreSQL's pool, and the probes) of one database."""

    def __init__(self, config: DatabaseConfig) -> None:
        self.config = config
        self.db_engine: AsyncEngine
        self.writer_engine: Engine | None = None  # SQLite: the writer thread's own engine
        committer: Committer
        if config.database_url is not None:
            self.db_engine = create_async_engine(
                _postgres_url(config.database_url), pool_size=10, max_overflow=10,
                pool_pre_ping=True,
            )  # fmt: skip
            committer = AsyncCommitter(self.db_engine, POSTGRES_FLUSHERS)
            self.reads = SqlReads(self.db_engine)
        else:
            _create_private_file(config.sqlite_path)
            self.db_engine = create_async_engine(f"sqlite+aiosqlite:///{config.sqlite_path}")
            _sqlite_pragmas(self.db_engine.sync_engine)
            writer_engine = create_engine(
                f"sqlite+pysqlite:///{config.sqlite_path}",
                poolclass=NullPool,
                connect_args={"check_same_thread": False},
            )
            _sqlite_pragmas(writer_engine)
            begin_immediate(writer_engine)
            committer = SqliteCommitter(writer_engine)
            self.writer_engine = writer_engine
            read_engine = create_engine(
                f"sqlite+pysqlite:///{config.sqlite_path}",
                pool_size=READ_THREADS,
                max_overflow=0,
                connect_args={"check_same_thread": False},
            )
            _sqlite_pragmas(read_engine)
            self.reads = SqlReads(self.db_engine, read_engine)
        self.writer = GroupCommitWriter(committer)

    @property
    def dialect(self) -> str:
        return "postgresql" if self.config.is_postgres else "sqlite"

    async def migrate(self) -> None:
        """Bring the schema to the latest revision; safe with several processes at once."""
        await self.writer.run_alone(_upgrade)

    async def probe(self, within: float) -> None:
        """Open one connection within ``within`` seconds, or raise ``DatabaseUnavailable``
        saying why (refused, unknown host, no answer, no such database, auth, not a
        database file, ...)."""
        try:
            async with asyncio.timeout(within):
                async with self.db_engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
        except TimeoutError:
            raise DatabaseUnavailable(f"no answer within {within:g} s") from None
        except Exception as error:
            raise DatabaseUnavailable(_reason(error)) from error

    async def ping(self) -> None:
        """Raises unless the database answers and its recent writes succeeded."""
        async with self.db_engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        self.writer.raise_if_failing()

    async def close(self) -> None:
        await self.writer.close()
        self.reads.close()
        await self.db_engine.dispose()


def _postgres_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def _create_private_file(path: Path) -> None:
    """The SQLite file and its folder, readable by this user only (0600, 0700); SQLite
    gives its -wal and -shm files the mode of the database file."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))


def _reason(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, socket.gaierror):
        return "unknown host"
    if isinstance(error, exc.DBAPIError) and error.orig is not None:
        inner: BaseException = error.orig
        inner = getattr(inner, "__cause__", None) or inner
        return str(inner).strip().splitlines()[0] if str(inner).strip() else type(inner).__name__
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _sqlite_pragmas(db_engine: Any) -> None:
    @event.listens_for(db_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def _upgrade(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    command.upgrade(config, "head")
