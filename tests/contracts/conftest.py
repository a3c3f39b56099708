"""The ``world`` fixture: the World's use cases built over one backend.

Parametrized over the in-memory fakes, SQLite and PostgreSQL, and wired the way
``app/container.py`` wires them, so the same cases hold the fakes and the real
adapters to one behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, insert
from sqlalchemy.engine import Connection

from compute_worker.adapters.security.run_keys import HkdfRunKeyDeriver
from compute_worker.adapters.sql.database import Database, DatabaseConfig
from compute_worker.adapters.sql.deployments import SqlDeployments
from compute_worker.adapters.sql.queue import SqlQueue
from compute_worker.adapters.sql.reads import SqlStreamReader, SqlWorldReader
from compute_worker.adapters.sql.schema import active_deployment
from compute_worker.adapters.sql.stuck import SqlStuckRuns
from compute_worker.adapters.system import LocalSignal, SystemClock
from compute_worker.domain.ids import IdFactory
from compute_worker.domain.outbound import OutboundPolicy
from compute_worker.domain.ports.clock import Clock
from compute_worker.domain.ports.deployments import DeploymentReader
from compute_worker.domain.ports.queue import QueueConsumer
from compute_worker.domain.ports.streams import StreamReader
from compute_worker.domain.ports.stuck import StuckRunStore
from compute_worker.domain.ports.transactions import UnitOfWork
from compute_worker.domain.ports.world import WorldReader
from compute_worker.domain.reducer import NO_PARAMS
from compute_worker.domain.stream_tail import StreamTail
from compute_worker.domain.use_cases.get_encryption_key import GetDeploymentId, GetEncryptionKey
from compute_worker.domain.use_cases.proxy_world_event import CreateEvent, ProxyWorldEvent
from compute_worker.domain.use_cases.publish_message import PublishMessage
from compute_worker.domain.use_cases.query_world import QueryWorld
from compute_worker.domain.use_cases.streams import InspectStream, ReadStream, WriteStream
from compute_worker.domain.wdk import AppAnnouncements
from compute_worker.domain.world import (
    CreateParams,
    EventRequest,
    EventResult,
    EventType,
    ResolveData,
)
from compute_worker.domain.world_writes import WorldWrites
from tests.fakes import (
    FakeDeployments,
    FakeQueue,
    FakeStore,
    FakeStreamReader,
    FakeStuckRuns,
    FakeUnitOfWork,
    FakeWorldReader,
    FixedClock,
)

RUN_KEY_SECRET = bytes(range(32))
POLL_INTERVAL = 0.05
LOOPBACK = OutboundPolicy(("localhost",), what="queue delivery")


@dataclass
class World:
    """One backend's World: the use cases plus the knobs the cases need."""

    backend: str
    clock: Clock
    ids: IdFactory
    uow: UnitOfWork
    reader: WorldReader
    stream_reader: StreamReader
    deployments: DeploymentReader
    queue: QueueConsumer
    stuck: StuckRunStore
    events: ProxyWorldEvent
    query: QueryWorld
    write_stream: WriteStream
    stream_tail: StreamTail
    read_stream: ReadStream
    inspect_stream: InspectStream
    publish: PublishMessage
    encryption_key: GetEncryptionKey
    deployment_id: GetDeploymentId
    activate: Callable[[str], Awaitable[None]]
    pass_time: Callable[[float], Awaitable[None]]
    reopen: Callable[[], contextlib.AbstractAsyncContextManager[World]]

    def now(self) -> datetime:
        return self.clock.now()

    async def create(
        self,
        run_id: str | None,
        event_type: EventType,
        correlation_id: str | None = None,
        data: dict[str, Any] | None = None,
        spec_version: int | None = None,
        resolve: ResolveData = "all",
        params: CreateParams = NO_PARAMS,
    ) -> EventResult:
        request = EventRequest(event_type, correlation_id, spec_version, data)
        return await self.events.execute(CreateEvent(run_id, request, resolve, params))


def _build(
    backend: str,
    *,
    clock: Clock,
    ids: IdFactory,
    uow: UnitOfWork,
    reader: WorldReader,
    stream_reader: StreamReader,
    deployments: DeploymentReader,
    queue: QueueConsumer,
    stuck: StuckRunStore,
    activate: Callable[[str], Awaitable[None]],
    pass_time: Callable[[float], Awaitable[None]],
    reopen: Callable[[], contextlib.AbstractAsyncContextManager[World]],
) -> World:
    signal = LocalSignal()
    writes = WorldWrites(ids, clock, signal)
    return World(
        backend=backend,
        clock=clock,
        ids=ids,
        uow=uow,
        reader=reader,
        stream_reader=stream_reader,
        deployments=deployments,
        queue=queue,
        stuck=stuck,
        events=ProxyWorldEvent(uow, ids, clock, writes),
        query=QueryWorld(reader, signal),
        write_stream=WriteStream(uow, clock, writes),
        stream_tail=(tail := StreamTail(stream_reader, signal, poll_interval=POLL_INTERVAL)),
        read_stream=ReadStream(tail),
        inspect_stream=InspectStream(stream_reader),
        publish=PublishMessage(uow, clock, writes, apps := AppAnnouncements(LOOPBACK)),
        encryption_key=GetEncryptionKey(reader, HkdfRunKeyDeriver(RUN_KEY_SECRET), deployments),
        deployment_id=GetDeploymentId(deployments, uow, apps),
        activate=activate,
        pass_time=pass_time,
        reopen=reopen,
    )


def _fake_world(store: FakeStore, clock: FixedClock) -> World:
    deployments = FakeDeployments(store)

    async def activate(deployment_id: str) -> None:
        deployments.activate(deployment_id)

    async def pass_time(seconds: float) -> None:
        clock.advance(seconds)

    @contextlib.asynccontextmanager
    async def reopen() -> AsyncIterator[World]:
        yield _fake_world(store, clock)

    return _build(
        "fake",
        clock=clock,
        ids=IdFactory(clock_ms=clock.now_ms),  # event times follow the fixed clock
        uow=FakeUnitOfWork(store),
        reader=FakeWorldReader(store),
        stream_reader=FakeStreamReader(store),
        deployments=deployments,
        queue=FakeQueue(store, clock),
        stuck=FakeStuckRuns(store),
        activate=activate,
        pass_time=pass_time,
        reopen=reopen,
    )


@contextlib.asynccontextmanager
async def _sql_world(backend: str, config: DatabaseConfig) -> AsyncIterator[World]:
    db = Database(config)
    try:
        await db.migrate()

        async def activate(deployment_id: str) -> None:
            def upsert(conn: Connection) -> None:
                conn.execute(delete(active_deployment).where(active_deployment.c.slot == 1))
                updated_ms = int(datetime.now(UTC).timestamp() * 1000)
                conn.execute(
                    insert(active_deployment).values(
                        slot=1, deployment_id=deployment_id, updated_ms=updated_ms
                    )
                )

            await db.writer.run_sql(upsert)

        yield _build(
            backend,
            clock=SystemClock(),
            ids=IdFactory(),
            uow=db.writer,
            reader=SqlWorldReader(db.reads),
            stream_reader=SqlStreamReader(db.reads),
            deployments=SqlDeployments(db.reads),
            queue=SqlQueue(db.writer),
            stuck=SqlStuckRuns(db.reads, db.writer),
            activate=activate,
            pass_time=asyncio.sleep,
            reopen=lambda: _sql_world(backend, config),
        )
    finally:
        await db.close()


@pytest.fixture(
    params=["fake", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, DatabaseConfig | None]:
    """Which backend, and its database; synchronous, as ``postgres_url`` must be."""
    name: str = request.param
    if name == "fake":
        return name, None
    if name == "sqlite":
        return name, DatabaseConfig(sqlite_path=tmp_path / "world.db")
    url: str = request.getfixturevalue("postgres_url")
    return name, DatabaseConfig(sqlite_path=tmp_path / "unused.db", database_url=url)


@pytest.fixture
async def world(backend: tuple[str, DatabaseConfig | None]) -> AsyncIterator[World]:
    name, config = backend
    if config is None:
        yield _fake_world(FakeStore(), FixedClock())
        return
    async with _sql_world(name, config) as built:
        yield built
