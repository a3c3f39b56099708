"""``PostgresSignal``: change notifications that cross processes (LISTEN/NOTIFY).

Every topic notified here is also sent on one PostgreSQL channel; other workers
sharing the database wake their local subscribers at once (an idle worker sees a
new queue message, a hook payload or a stream chunk without waiting for its
poll). Notifications are best effort: every waiter still polls, so a lost
connection costs latency, never correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from compute_worker.adapters.system import LocalSignal
from compute_worker.domain.ports.streams import Signal, Subscription

log = logging.getLogger(__name__)

CHANNEL = "compute_worker"
RECONNECT_SECONDS = 2.0


def asyncpg_dsn(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresSignal(Signal):
    def __init__(self, database_url: str) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._local = LocalSignal()
        self._origin = uuid.uuid4().hex[:12]  # to skip our own notifications
        self._pending: set[str] = set()
        self._sender: asyncpg.Connection | None = None
        self._sending: asyncio.Task[None] | None = None
        self._listening: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._listening = asyncio.create_task(self._listen_forever())

    async def close(self) -> None:
        for task in (self._listening, self._sending):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._sender is not None:
            with contextlib.suppress(Exception):
                await self._sender.close()

    def subscribe(self, topic: str) -> Subscription:
        return self._local.subscribe(topic)

    def notify(self, topic: str) -> None:
        self._local.notify(topic)
        self._pending.add(topic)
        if self._sending is None or self._sending.done():
            self._sending = asyncio.create_task(self._send())

    async def _send(self) -> None:
        while self._pending:
            topics, self._pending = self._pending, set()
            try:
                if self._sender is None or self._sender.is_closed():
                    self._sender = await asyncpg.connect(self._dsn)
                await self._sender.execute(
                    "SELECT pg_notify($1, t) FROM unnest($2::text[]) AS t",
                    CHANNEL,
                    [f"{self._origin}|{topic}" for topic in topics],
                )
            except (OSError, asyncpg.PostgresError) as error:
                log.warning("could not send notifications: %s", error)
                self._sender = None
                return

    async def _listen_forever(self) -> None:
        while True:
            try:
                await self._listen()
            except (OSError, asyncpg.PostgresError) as error:
                log.warning("LISTEN connection failed: %s", error)
            await asyncio.sleep(RECONNECT_SECONDS)

    async def _listen(self) -> None:
        """Until the connection is lost."""
        connection = await asyncpg.connect(self._dsn)
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _conn: lost.set())
        try:
            await connection.add_listener(CHANNEL, self._received)
            await lost.wait()
        finally:
            with contextlib.suppress(Exception):
                await connection.close()

    def _received(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        origin, _, topic = payload.partition("|")
        if origin != self._origin:
            self._local.notify(topic)
