"""Engines, connection settings and migrations for SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
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
# a pooled PostgreSQL connection unused this long is checked before it is handed out
IDLE_PING_SECONDS = 5.0
_IDLE_SINCE = "cw_idle_since"


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
                _postgres_url(config.database_url), pool_size=10, max_overflow=10
            )  # fmt: skip
            _ping_when_idle(self.db_engine)
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


def _ping_when_idle(db_engine: AsyncEngine) -> None:
    """Check a pooled connection before use only when it sat idle ``IDLE_PING_SECONDS``
    (a server restart or an idle timeout closes those). SQLAlchemy's ``pool_pre_ping``
    checks on every checkout, and on asyncpg that is BEGIN, a query and ROLLBACK: three
    round trips, ~0.3 ms of every read and every write batch. A connection that breaks
    while in use is caught there instead: SQLAlchemy invalidates the pool, a read runs
    again once (``SqlReads``), a write answers ``storage_unavailable``."""
    pool = db_engine.sync_engine.pool

    @event.listens_for(pool, "checkin")
    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is None or time.monotonic() - since < IDLE_PING_SECONDS:
            return
        try:
            dbapi_connection.ping()
        except Exception as error:  # the pool opens a new connection and tries again
            raise exc.DisconnectionError("a pooled connection was closed while idle") from error


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
