"""``SqlTransaction``: the Transaction port over one synchronous SQLAlchemy connection.

It runs inside the group-commit writer's transaction (see ``writer.py``); it never
begins or commits by itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Connection

from adapters import codec
from adapters.sql import rows
from adapters.sql.dialect import insert_if_absent, locked
from adapters.sql.schema import (
    events,
    hooks,
    queue_keys,
    queue_messages,
    runs,
    steps,
    stream_chunks,
    stream_runs,
    waits,
)
from domain.ports.transactions import Transaction
from domain.world import Event, Hook, QueueMessage, Run, Step, Wait


class SqlTransaction(Transaction):
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.callbacks: list[Callable[[], Any]] = []

    def after_commit(self, callback: Callable[[], Any]) -> None:
        self.callbacks.append(callback)

    # -- runs ---------------------------------------------------------------------------

    def lock_run(self, run_id: str) -> Run | None:
        query = locked(self.conn, select(runs).where(runs.c.run_id == run_id))
        row = self.conn.execute(query).first()
        return None if row is None else rows.run_from(row)

    def insert_run(self, run: Run) -> bool:
        return insert_if_absent(self.conn, runs, rows.run_values(run))

    def update_run(self, run: Run) -> None:
        values = rows.run_values(run)
        self.conn.execute(update(runs).where(runs.c.run_id == run.run_id).values(**values))

    # -- steps --------------------------------------------------------------------------

    def get_step(self, run_id: str, step_id: str) -> Step | None:
        query = select(steps).where(steps.c.run_id == run_id, steps.c.step_id == step_id)
        row = self.conn.execute(query).first()
        return None if row is None else rows.step_from(row)

    def insert_step(self, step: Step) -> bool:
        return insert_if_absent(self.conn, steps, rows.step_values(step))

    def update_step(self, step: Step) -> None:
        self.conn.execute(
            update(steps)
            .where(steps.c.run_id == step.run_id, steps.c.step_id == step.step_id)
            .values(**rows.step_values(step))
        )

    # -- hooks and waits ----------------------------------------------------------------

    def get_hook(self, hook_id: str) -> Hook | None:
        row = self.conn.execute(select(hooks).where(hooks.c.hook_id == hook_id)).first()
        return None if row is None else rows.hook_from(row)

    def get_hook_by_token(self, token: str) -> Hook | None:
        row = self.conn.execute(select(hooks).where(hooks.c.token == token)).first()
        return None if row is None else rows.hook_from(row)

    def insert_hook(self, hook: Hook) -> bool:
        return insert_if_absent(self.conn, hooks, rows.hook_values(hook))

    def delete_hook(self, hook_id: str) -> bool:
        return self.conn.execute(delete(hooks).where(hooks.c.hook_id == hook_id)).rowcount == 1

    def get_wait(self, run_id: str, correlation_id: str) -> Wait | None:
        query = select(waits).where(
            waits.c.run_id == run_id, waits.c.correlation_id == correlation_id
        )
        row = self.conn.execute(query).first()
        return None if row is None else rows.wait_from(row)

    def insert_wait(self, wait: Wait) -> None:
        self.conn.execute(waits.insert().values(**rows.wait_values(wait)))

    def update_wait(self, wait: Wait) -> None:
        self.conn.execute(
            update(waits)
            .where(waits.c.run_id == wait.run_id, waits.c.correlation_id == wait.correlation_id)
            .values(**rows.wait_values(wait))
        )

    def delete_hooks_and_waits(self, run_id: str) -> None:
        self.conn.execute(delete(hooks).where(hooks.c.run_id == run_id))
        self.conn.execute(delete(waits).where(waits.c.run_id == run_id))

    # -- events -------------------------------------------------------------------------

    def last_event_id(self, run_id: str) -> str | None:
        query = select(func.max(events.c.event_id)).where(events.c.run_id == run_id)
        result: str | None = self.conn.execute(query).scalar()
        return result

    def insert_events(self, new_events: Sequence[Event]) -> None:
        if new_events:
            self.conn.execute(events.insert(), [rows.event_values(e) for e in new_events])

    def run_events(self, run_id: str) -> list[Event]:
        query = (
            select(events)
            .where(events.c.run_id == run_id)
            .order_by(events.c.created_ms, events.c.event_id)
        )
        return [rows.event_from(row) for row in self.conn.execute(query)]

    # -- streams ------------------------------------------------------------------------

    def stream_is_closed(self, name: str) -> bool:
        query = select(stream_chunks.c.seq).where(
            stream_chunks.c.name == name, stream_chunks.c.eof.is_(True)
        )
        return self.conn.execute(query.limit(1)).first() is not None

    def append_chunks(
        self, name: str, run_id: str, chunks: Sequence[tuple[str, bytes]], eof_chunk_id: str | None
    ) -> None:
        now = int(time.time() * 1000)
        values = [
            {"name": name, "chunk_id": chunk_id, "run_id": run_id, "data": data, "eof": False}
            for chunk_id, data in chunks
        ]
        if eof_chunk_id is not None:
            values.append(
                {"name": name, "chunk_id": eof_chunk_id, "run_id": run_id, "data": b"", "eof": True}
            )
        if values:
            self.conn.execute(
                stream_chunks.insert(), [{**value, "created_ms": now} for value in values]
            )
        insert_if_absent(
            self.conn, stream_runs, {"run_id": run_id, "name": name, "created_ms": now}
        )

    # -- queue --------------------------------------------------------------------------

    def find_queued_by_key(self, idempotency_key: str, now: datetime) -> str | None:
        query = select(queue_keys.c.message_id, queue_keys.c.expires_ms).where(
            queue_keys.c.idempotency_key == idempotency_key
        )
        row = self.conn.execute(query).first()
        if row is None:
            return None
        if row.expires_ms <= rows.to_ms(now):
            self.conn.execute(
                delete(queue_keys).where(queue_keys.c.idempotency_key == idempotency_key)
            )
            return None
        message_id: str = row.message_id
        return message_id

    def insert_message(
        self, message: QueueMessage, available_at: datetime, key_expires_at: datetime | None
    ) -> None:
        self.conn.execute(
            queue_messages.insert().values(
                message_id=message.message_id,
                queue_name=message.queue_name,
                payload=codec.dumps_text(message.payload),
                deployment_id=message.deployment_id,
                idempotency_key=message.idempotency_key,
                headers=codec.dumps_text(message.headers),
                attempt=message.attempt,
                available_ms=rows.to_ms(available_at),
                created_ms=rows.to_ms(message.created_at),
            )
        )
        if message.idempotency_key is not None and key_expires_at is not None:
            self.conn.execute(
                queue_keys.insert().values(
                    idempotency_key=message.idempotency_key,
                    message_id=message.message_id,
                    expires_ms=rows.to_ms(key_expires_at),
                )
            )
