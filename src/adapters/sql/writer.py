"""Group commit: the UnitOfWork port for SQL.

Callers submit synchronous units of work; the committer takes every unit waiting
at that moment and runs them in one transaction, each inside a savepoint so that
a unit that raises is rolled back alone (a unit alone in its batch needs no
savepoint: the transaction is rolled back instead). One commit (one fsync) then serves the
whole batch, and each caller awaits its own outcome. Units run in submission
order, so row locks (PostgreSQL) are taken in that order.

How a batch reaches the database is the only dialect difference:

* SQLite: a dedicated thread owns a synchronous connection and pulls batches
  from a thread-safe queue itself, so a batch costs one hand-off, never a
  round trip through the event loop (the aiosqlite bridge pays a thread hop and
  a greenlet switch per statement, ~0.85 ms per transaction on its own, and a
  busy event loop would otherwise leave the writer idle between batches).
  Writers serialize on ``BEGIN IMMEDIATE``, which also orders several processes
  sharing one file.
* PostgreSQL: ``AsyncConnection.run_sync`` over asyncpg, with several flushers
  so that independent batches use several pooled connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sqlalchemy import Engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from compute_worker.adapters.sql.errors import WriteConflict, translate
from compute_worker.adapters.sql.prepared import Cursor
from compute_worker.adapters.sql.transaction import SqlTransaction
from compute_worker.domain import errors
from compute_worker.domain.ports.metrics import WriterObserver
from compute_worker.domain.ports.transactions import Transaction, UnitOfWork

R = TypeVar("R")
log = logging.getLogger(__name__)

MAX_BATCH = 256


@dataclass(slots=True, eq=False)
class _Unit:
    work: Callable[[Transaction], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    alone: bool = False  # its own transaction, no savepoint (migrations)
    outcome: Any = None
    error: BaseException | None = None
    callbacks: list[Callable[[], Any]] = field(default_factory=list)

    def settle(self) -> None:
        """On the event loop: hand the outcome to the caller, then run after-commit work —
        also when the caller stopped waiting (a client gone mid-request): what committed
        must still be signalled, and a run accepted here started."""
        if self.error is not None:
            if not self.future.done():
                self.future.set_exception(self.error)
            return
        if not self.future.done():
            self.future.set_result(self.outcome)
        for callback in self.callbacks:
            try:
                callback()
            except Exception:
                log.exception("after-commit callback failed")


class _Failed(Exception):
    """The one unit of a batch raised (its ``error`` is set): roll the transaction back."""


def run_units(conn: Connection, units: list[_Unit], memo: dict[str, Any]) -> None:
    """Every unit in its own savepoint, inside the caller's transaction; a batch of one
    needs none (the transaction itself is rolled back when the unit raises)."""
    cursor = Cursor(conn)
    single = len(units) == 1
    for unit in units:
        if unit.alone:
            unit.outcome = unit.work(conn)  # type: ignore[arg-type]
            continue
        tx = SqlTransaction(conn, cursor, memo)
        if not single:
            cursor.raw("SAVEPOINT cw_unit")
        try:
            unit.outcome = unit.work(tx)
            tx.flush()
        except Exception as error:
            unit.error = translate(error)
            if single:
                raise _Failed from error
            cursor.raw("ROLLBACK TO SAVEPOINT cw_unit")
            cursor.raw("RELEASE SAVEPOINT cw_unit")
            continue
        if not single:
            cursor.raw("RELEASE SAVEPOINT cw_unit")
        unit.callbacks = tx.callbacks


def commit_batch(conn: Connection, batch: list[_Unit], memo: dict[str, Any]) -> None:
    """Run ``batch`` in one transaction; when that fails as a whole, isolate the unit
    that broke it by running each unit in a transaction of its own."""
    try:
        with conn.begin():
            run_units(conn, batch, memo)
        return
    except _Failed:
        return  # a batch of one whose unit raised: rolled back, its error set
    except Exception as error:
        if len(batch) == 1:
            log.warning("write transaction failed", exc_info=error)
            batch[0].error, batch[0].callbacks = translate(error), []
            return
    for unit in batch:
        unit.outcome, unit.error, unit.callbacks = None, None, []
        commit_batch(conn, [unit], memo)


def observed_commit(
    conn: Connection, batch: list[_Unit], memo: dict[str, Any], observer: WriterObserver | None
) -> None:
    """``commit_batch``, timed for the observer (the metrics: batch sizes and latency)."""
    started = time.perf_counter()
    commit_batch(conn, batch, memo)
    if observer is not None:
        observer.batch_committed(len(batch), time.perf_counter() - started)


class Committer(Protocol):
    observer: WriterObserver | None

    def submit(self, unit: _Unit) -> None: ...
    async def close(self) -> None: ...


WRITES_FAILING_FOR = 60.0  # seconds a failed write marks the database unhealthy
# a unit PostgreSQL aborted for a deadlock (two transactions locking the same runs in
# opposite orders, e.g. a child ending while its parent is cancelled) runs again, in a
# later batch, this many times in all before its caller sees storage_unavailable
CONFLICT_ATTEMPTS = 4


class GroupCommitWriter(UnitOfWork):
    def __init__(self, committer: Committer) -> None:
        self._committer = committer
        self._failed_at: float | None = None  # the last write, if it failed for storage

    async def run(self, work: Callable[[Transaction], R]) -> R:
        loop = asyncio.get_running_loop()
        attempt = 1
        while True:
            unit = _Unit(work, loop.create_future(), loop)
            self._committer.submit(unit)  # before any await: submission order is call order
            try:
                result: R = await unit.future
            except WriteConflict:
                if attempt == CONFLICT_ATTEMPTS:
                    self._failed_at = time.monotonic()
                    raise
                log.info("write collided with a concurrent one; retrying",
                         extra={"attempt": attempt})  # fmt: skip
                await asyncio.sleep(random.uniform(0, 0.01 * attempt))
                attempt += 1
                continue
            except errors.StorageUnavailable:
                self._failed_at = time.monotonic()
                raise
            self._failed_at = None
            return result

    def raise_if_failing(self) -> None:
        """``StorageUnavailable`` while the last write failed for want of storage (disk
        full, database gone) in the last minute and none has succeeded since."""
        failed = self._failed_at
        if failed is not None and time.monotonic() - failed < WRITES_FAILING_FOR:
            raise errors.StorageUnavailable("the last write to the database failed")

    async def run_sql(self, fn: Callable[[Connection], R]) -> R:
        """Batch a unit that works on the connection itself (adapter-internal writes)."""
        return await self.run(lambda tx: fn(_connection_of(tx)))

    async def run_alone(self, fn: Callable[[Connection], R]) -> R:
        """Run ``fn`` in a transaction of its own, outside any batch (migrations)."""
        loop = asyncio.get_running_loop()
        unit = _Unit(fn, loop.create_future(), loop, alone=True)  # type: ignore[arg-type]
        self._committer.submit(unit)
        result: R = await unit.future
        return result

    def observe(self, observer: WriterObserver) -> None:
        """Report every committed batch to ``observer`` from now on."""
        self._committer.observer = observer

    async def close(self) -> None:
        await self._committer.close()


def _connection_of(tx: Transaction) -> Connection:
    if not isinstance(tx, SqlTransaction):
        raise TypeError("the SQL writer hands out SqlTransaction only")
    return tx.conn


class SqliteCommitter(Committer):
    """One thread, one synchronous SQLite connection, ``BEGIN IMMEDIATE`` per batch."""

    def __init__(self, db_engine: Engine) -> None:
        self._db_engine = db_engine
        self.observer: WriterObserver | None = None
        self._memo: dict[str, Any] = {}
        self._queue: queue.SimpleQueue[_Unit | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="sqlite-writer", daemon=True)
        self._thread.start()

    def submit(self, unit: _Unit) -> None:
        self._queue.put(unit)

    def _serve(self) -> None:
        conn: Connection | None = None
        while True:
            first = self._queue.get()
            if first is None:
                break
            batch, stop = self._drain(first)
            try:
                if conn is None:
                    conn = self._db_engine.connect()
                self._commit(conn, batch)
            except Exception as error:  # no connection, or it broke: start afresh
                log.warning("SQLite writer connection failed", exc_info=error)
                if conn is not None:
                    conn.invalidate()
                conn = None
                for unit in batch:
                    unit.error, unit.callbacks = translate(error), []
            for loop, units in _by_loop(batch).items():
                with contextlib.suppress(RuntimeError):  # that loop is closed
                    loop.call_soon_threadsafe(_settle_all, units)
            if stop:
                break
        if conn is not None:
            conn.close()
        self._db_engine.dispose()

    def _drain(self, first: _Unit) -> tuple[list[_Unit], bool]:
        batch = [first]
        if first.alone:
            return batch, False
        while len(batch) < MAX_BATCH:
            try:
                unit = self._queue.get_nowait()
            except queue.Empty:
                break
            if unit is None:
                return batch, True
            if unit.alone:
                self._queue.put(unit)  # runs alone, next round (order among writers kept)
                break
            batch.append(unit)
        return batch, False

    def _commit(self, conn: Connection, batch: list[_Unit]) -> None:
        live = [unit for unit in batch if not unit.future.cancelled()]
        if live:
            observed_commit(conn, live, self._memo, self.observer)

    async def close(self) -> None:
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)


def _by_loop(batch: list[_Unit]) -> dict[asyncio.AbstractEventLoop, list[_Unit]]:
    groups: dict[asyncio.AbstractEventLoop, list[_Unit]] = {}
    for unit in batch:
        groups.setdefault(unit.loop, []).append(unit)
    return groups


def _settle_all(units: list[_Unit]) -> None:
    for unit in units:
        unit.settle()


class AsyncCommitter(Committer):
    """PostgreSQL: flusher tasks run batches through ``run_sync`` on pooled asyncpg
    connections (one batch per connection at a time)."""

    def __init__(self, db_engine: AsyncEngine, flushers: int) -> None:
        self._db_engine = db_engine
        self.observer: WriterObserver | None = None
        self._memo: dict[str, Any] = {}
        self._pending: deque[_Unit] = deque()
        self._wakeup = asyncio.Event()
        self._flushers = [asyncio.create_task(self._flush_forever()) for _ in range(flushers)]

    def submit(self, unit: _Unit) -> None:
        self._pending.append(unit)
        self._wakeup.set()

    async def _flush_forever(self) -> None:
        while True:
            await self._wakeup.wait()
            batch = self._take_batch()
            if not batch:
                self._wakeup.clear()
                continue
            await self._flush(batch)

    def _take_batch(self) -> list[_Unit]:
        batch: list[_Unit] = []
        while self._pending and len(batch) < MAX_BATCH:
            unit = self._pending.popleft()
            if unit.future.cancelled():
                continue
            if unit.alone and batch:
                self._pending.appendleft(unit)
                break
            batch.append(unit)
            if unit.alone:
                break
        return batch

    async def _flush(self, batch: list[_Unit]) -> None:
        try:
            async with self._db_engine.connect() as conn:
                await conn.run_sync(
                    lambda sync: observed_commit(sync, batch, self._memo, self.observer)
                )
        except Exception as error:  # no connection: fail this batch, keep the flusher
            log.warning("PostgreSQL writer connection failed", exc_info=error)
            for unit in batch:
                unit.error, unit.callbacks = translate(error), []
        _settle_all(batch)

    async def close(self) -> None:
        for task in self._flushers:
            task.cancel()
        for task in self._flushers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while self._pending:
            unit = self._pending.popleft()
            if not unit.future.done():
                unit.future.set_exception(errors.StorageUnavailable("The worker is stopping"))


def begin_immediate(db_engine: Engine) -> None:
    """Make pysqlite leave transactions to us, and begin them as writers."""

    @event.listens_for(db_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(db_engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
