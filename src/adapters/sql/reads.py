"""Read side: ``SqlReads`` (how every adapter's queries reach the database), and
``SqlWorldReader`` and ``SqlStreamReader``.

Queries are synchronous Core functions, each run whole on one pooled connection; no ORM.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, Table, and_, exc, exists, func, select, tuple_
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from compute_worker.adapters.sql import rows
from compute_worker.adapters.sql.errors import translate
from compute_worker.adapters.sql.schema import (
    events,
    hooks,
    run_execution,
    run_stuck,
    runs,
    steps,
    stream_chunks,
    stream_runs,
)
from compute_worker.domain.execution import ExecutionRecord
from compute_worker.domain.pagination import Page, PageRequest, Position, encode_cursor
from compute_worker.domain.ports.streams import StoredChunk, StreamReader, StreamSummary
from compute_worker.domain.ports.world import RunDetails, RunQuery, WorldReader
from compute_worker.domain.stuck import StuckRun
from compute_worker.domain.world import TERMINAL_RUN_STATUSES, Event, Hook, Run, Step

T = TypeVar("T")


READ_THREADS = 4


class SqlReads:
    """How the read side runs a query: a synchronous Core function, whole, on a pooled
    connection.

    SQLite: plain pysqlite connections on threads of their own, so a read is one hand-off
    to a thread and back. Through aiosqlite and the async engine each statement, fetch
    and connection reset was a hop of its own: a read took 2-3x as long, and the event
    loop carried the greenlet bridge (``bench/reads.py``; figures in bench/RESULTS.md).
    PostgreSQL: ``AsyncConnection.run_sync`` on the asyncpg pool, in autocommit: a read
    needs no BEGIN and ROLLBACK round trips (at READ COMMITTED each statement sees its own
    snapshot anyway). A read whose connection turns out to be lost runs again, once, on
    a new one.
    """

    def __init__(
        self, db_engine: AsyncEngine, sqlite: Engine | None = None, threads: int = READ_THREADS
    ) -> None:
        self._postgres = db_engine.execution_options(isolation_level="AUTOCOMMIT")
        self._sqlite = sqlite
        self._threads = (
            None
            if sqlite is None
            else ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sqlite-read")
        )

    async def run(self, fn: Callable[[Connection], T]) -> T:
        try:
            if self._threads is not None:
                loop = asyncio.get_running_loop()
                read: T = await loop.run_in_executor(self._threads, self._read, fn)
                return read
            try:
                return await self._read_postgres(fn)
            except exc.DBAPIError as error:
                if not error.connection_invalidated:
                    raise
                return await self._read_postgres(fn)  # the pool was renewed
        except Exception as error:
            raise translate(error) from error

    async def _read_postgres(self, fn: Callable[[Connection], T]) -> T:
        async with self._postgres.connect() as conn:
            return await conn.run_sync(fn)

    def _read(self, fn: Callable[[Connection], T]) -> T:
        assert self._sqlite is not None
        with self._sqlite.connect() as conn:
            return fn(conn)

    def close(self) -> None:
        """Reads still running finish on their threads; their connections close after."""
        if self._threads is not None and self._sqlite is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._sqlite.dispose()


def paged(
    conn: Connection,
    table: Table,
    id_column: str,
    where: list[ColumnElement[bool]],
    page: PageRequest,
    mapper: Callable[[Any], T],
) -> Page[T]:
    """Keyset pagination on ``(created_ms, id)``; fetches ``limit + 1`` to know hasMore."""
    created, item_id = table.c.created_ms, table.c[id_column]
    key = tuple_(created, item_id)
    conditions = list(where)
    if page.after is not None:
        mark = tuple_(page.after.created_ms, page.after.item_id)
        conditions.append(key > mark if page.sort_order == "asc" else key < mark)
    order = (created, item_id) if page.sort_order == "asc" else (created.desc(), item_id.desc())
    query: Select[Any] = select(table).where(*conditions).order_by(*order)
    fetched = conn.execute(query.limit(page.limit + 1)).all()
    has_more = len(fetched) > page.limit
    fetched = fetched[: page.limit]
    cursor = None
    if fetched:
        last = fetched[-1]
        cursor = encode_cursor(Position(last.created_ms, last._mapping[id_column]))
    elif page.after is not None:
        cursor = encode_cursor(page.after)
    return Page(tuple(mapper(row) for row in fetched), cursor, has_more)


def stuck_records(
    conn: Connection, run_ids: Sequence[str], live_only: bool = False
) -> dict[str, StuckRun]:
    """What the stuck-run detector recorded for those of ``run_ids`` it found stuck
    (``live_only``: not the stale records of runs that ended since)."""
    if not run_ids:
        return {}
    query = select(run_stuck).where(run_stuck.c.run_id.in_(list(run_ids)))
    if live_only:
        query = query.where(
            exists().where(
                runs.c.run_id == run_stuck.c.run_id, runs.c.status.not_in(TERMINAL_RUN_STATUSES)
            )
        )
    return {row.run_id: rows.stuck_from(row) for row in conn.execute(query)}


def _run_filters(query: RunQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if query.statuses:
        where.append(runs.c.status.in_(query.statuses))
    if query.workflow_name is not None:
        where.append(runs.c.workflow_name == query.workflow_name)
    if query.deployment_id is not None:
        where.append(runs.c.deployment_id == query.deployment_id)
    if query.created_after is not None:
        where.append(runs.c.created_ms > rows.to_ms(query.created_after))
    if query.created_before is not None:
        where.append(runs.c.created_ms < rows.to_ms(query.created_before))
    if query.stuck is not None:
        found = exists().where(run_stuck.c.run_id == runs.c.run_id)
        live = runs.c.status.not_in(TERMINAL_RUN_STATUSES)
        where.append(and_(found, live) if query.stuck else ~and_(found, live))
    return where


class SqlWorldReader(WorldReader):
    def __init__(self, reads: SqlReads) -> None:
        self._reads = reads

    async def _one(self, query: Select[Any], mapper: Callable[[Any], T]) -> T | None:
        def fetch(conn: Connection) -> T | None:
            row = conn.execute(query).first()
            return None if row is None else mapper(row)

        return await self._reads.run(fetch)

    async def get_run(self, run_id: str) -> Run | None:
        return await self._one(select(runs).where(runs.c.run_id == run_id), rows.run_from)

    async def run_details(self, run_id: str, step_prefix: str) -> RunDetails | None:
        def fetch(conn: Connection) -> RunDetails | None:
            row = conn.execute(select(runs).where(runs.c.run_id == run_id)).first()
            if row is None:
                return None
            run = rows.run_from(row)
            execution = stuck = None
            if not run.is_terminal:
                query = select(run_execution).where(run_execution.c.run_id == run_id)
                found = conn.execute(query).first()
                execution = None if found is None else rows.execution_from(found)
                stuck = stuck_records(conn, [run_id]).get(run_id)
            named = conn.execute(
                select(steps)
                .where(steps.c.run_id == run_id, steps.c.step_name.startswith(step_prefix,
                                                                               autoescape=True))
                .order_by(steps.c.created_ms, steps.c.step_id)
            )  # fmt: skip
            return RunDetails(run, execution, stuck, tuple(rows.step_from(r) for r in named))

        return await self._reads.run(fetch)

    async def list_runs(self, page: PageRequest, query: RunQuery | None = None) -> Page[Run]:
        where = _run_filters(query or RunQuery())
        return await self._reads.run(
            lambda conn: paged(conn, runs, "run_id", where, page, rows.run_from)
        )

    async def get_step(self, run_id: str | None, step_id: str) -> Step | None:
        query = select(steps).where(steps.c.step_id == step_id)
        if run_id is not None:
            query = query.where(steps.c.run_id == run_id)
        return await self._one(query.limit(1), rows.step_from)

    async def list_steps(self, run_id: str, page: PageRequest) -> Page[Step]:
        where = [steps.c.run_id == run_id]
        return await self._reads.run(
            lambda conn: paged(conn, steps, "step_id", where, page, rows.step_from)
        )

    async def get_event(self, run_id: str | None, event_id: str) -> Event | None:
        query = select(events).where(events.c.event_id == event_id)
        if run_id is not None:
            query = query.where(events.c.run_id == run_id)
        return await self._one(query, rows.event_from)

    async def list_events(self, run_id: str, page: PageRequest) -> Page[Event]:
        where = [events.c.run_id == run_id]
        return await self._reads.run(
            lambda conn: paged(conn, events, "event_id", where, page, rows.event_from),
        )

    async def list_events_by_correlation(
        self, correlation_id: str, page: PageRequest, run_id: str | None = None
    ) -> Page[Event]:
        where = [events.c.correlation_id == correlation_id]
        if run_id is not None:
            where.append(events.c.run_id == run_id)
        return await self._reads.run(
            lambda conn: paged(conn, events, "event_id", where, page, rows.event_from),
        )

    async def get_execution(self, run_id: str) -> ExecutionRecord | None:
        query = select(run_execution).where(run_execution.c.run_id == run_id)
        return await self._one(query, rows.execution_from)

    async def stuck_runs(self, run_ids: Sequence[str]) -> Mapping[str, StuckRun]:
        return await self._reads.run(lambda conn: stuck_records(conn, run_ids, True))

    async def get_hook(self, hook_id: str) -> Hook | None:
        return await self._one(select(hooks).where(hooks.c.hook_id == hook_id), rows.hook_from)

    async def get_hook_by_token(self, token: str) -> Hook | None:
        return await self._one(select(hooks).where(hooks.c.token == token), rows.hook_from)

    async def list_hooks(self, run_id: str | None, page: PageRequest) -> Page[Hook]:
        where = [] if run_id is None else [hooks.c.run_id == run_id]
        return await self._reads.run(
            lambda conn: paged(conn, hooks, "hook_id", where, page, rows.hook_from)
        )


class SqlStreamReader(StreamReader):
    def __init__(self, reads: SqlReads) -> None:
        self._reads = reads

    async def chunks_after(self, name: str, after_seq: int, limit: int) -> list[StoredChunk]:
        query = (
            select(stream_chunks.c.seq, stream_chunks.c.data, stream_chunks.c.eof)
            .where(stream_chunks.c.name == name, stream_chunks.c.seq > after_seq)
            .order_by(stream_chunks.c.seq)
            .limit(limit)
        )

        def fetch(conn: Connection) -> list[StoredChunk]:
            return [StoredChunk(r.seq, bytes(r.data), bool(r.eof)) for r in conn.execute(query)]

        return await self._reads.run(fetch)

    async def data_chunk_count(self, name: str) -> tuple[int, bool]:
        is_data = and_(
            stream_chunks.c.name == name,
            stream_chunks.c.eof.is_(False),
            func.length(stream_chunks.c.data) > 0,
        )
        closed = exists().where(stream_chunks.c.name == name, stream_chunks.c.eof.is_(True))
        query = select(select(func.count()).where(is_data).scalar_subquery(), closed)

        def fetch(conn: Connection) -> tuple[int, bool]:
            count, done = conn.execute(query).one()
            return int(count), bool(done)

        return await self._reads.run(fetch)

    async def data_chunks(
        self, name: str, start_index: int, limit: int
    ) -> tuple[list[bytes], bool]:
        query = (
            select(stream_chunks.c.data)
            .where(
                stream_chunks.c.name == name,
                stream_chunks.c.eof.is_(False),
                func.length(stream_chunks.c.data) > 0,
            )
            .order_by(stream_chunks.c.seq)
            .offset(start_index)
            .limit(limit + 1)
        )

        def fetch(conn: Connection) -> tuple[list[bytes], bool]:
            found = [bytes(row.data) for row in conn.execute(query)]
            return found[:limit], len(found) > limit

        return await self._reads.run(fetch)

    async def names_for_run(self, run_id: str) -> list[str]:
        query = (
            select(stream_runs.c.name)
            .where(stream_runs.c.run_id == run_id)
            .order_by(stream_runs.c.created_ms, stream_runs.c.name)
        )

        def fetch(conn: Connection) -> list[str]:
            return [row.name for row in conn.execute(query)]

        return await self._reads.run(fetch)

    async def run_streams(self, run_id: str) -> list[StreamSummary]:
        chunk = stream_chunks.alias("chunk")
        is_data = and_(
            chunk.c.name == stream_runs.c.name,
            chunk.c.eof.is_(False),
            func.length(chunk.c.data) > 0,
        )
        closed = and_(chunk.c.name == stream_runs.c.name, chunk.c.eof.is_(True))
        query = (
            select(
                stream_runs.c.name,
                select(func.count()).select_from(chunk).where(is_data).scalar_subquery(),
                exists().where(closed),
            )
            .where(stream_runs.c.run_id == run_id)
            .order_by(stream_runs.c.created_ms, stream_runs.c.name)
        )

        def fetch(conn: Connection) -> list[StreamSummary]:
            return [
                StreamSummary(name, int(count), bool(done))
                for name, count, done in conn.execute(query)
            ]

        return await self._reads.run(fetch)
