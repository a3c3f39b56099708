"""``SqlQueue``: leases on queue messages (world.md D9).

A claimed message becomes invisible until its lease ends; ``available_ms`` doubles
as the lease deadline, so a worker that dies simply lets it run out.
PostgreSQL claims with ``FOR UPDATE SKIP LOCKED``; SQLite's single writer needs no lock.
"""

from __future__ import annotations

import time

from sqlalchemy import delete, or_, select, update
from sqlalchemy.engine import Connection

from compute_worker.adapters import codec
from compute_worker.adapters.sql.dialect import locked
from compute_worker.adapters.sql.rows import at_ms
from compute_worker.adapters.sql.schema import deployments, queue_messages
from compute_worker.adapters.sql.writer import GroupCommitWriter
from compute_worker.domain.deployments import EXTERNAL_KINDS
from compute_worker.domain.ports.queue import QueueConsumer
from compute_worker.domain.world import QueueMessage


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# Messages of deployments an app executes (kind wdk) are the dispatcher's, never the engine's.
APP_DEPLOYMENTS = select(deployments.c.deployment_id).where(deployments.c.kind.in_(EXTERNAL_KINDS))
NOT_FOR_APPS = or_(
    queue_messages.c.deployment_id.is_(None),
    queue_messages.c.deployment_id.not_in(APP_DEPLOYMENTS),
)


class SqlQueue(QueueConsumer):
    def __init__(self, writer: GroupCommitWriter) -> None:
        self._writer = writer

    async def claim(
        self, worker_id: str, *, limit: int, lease_seconds: float, queue_prefix: str = ""
    ) -> list[QueueMessage]:
        def claim(conn: Connection) -> list[QueueMessage]:
            now = _now_ms()
            query = select(queue_messages).where(queue_messages.c.available_ms <= now, NOT_FOR_APPS)
            if queue_prefix:
                query = query.where(queue_messages.c.queue_name.startswith(queue_prefix))
            query = query.order_by(queue_messages.c.available_ms, queue_messages.c.message_id)
            found = conn.execute(
                locked(conn.dialect.name, query.limit(limit), skip_locked=True)
            ).all()
            if not found:
                return []
            ids = [row.message_id for row in found]
            conn.execute(
                update(queue_messages)
                .where(queue_messages.c.message_id.in_(ids))
                .values(
                    lease_owner=worker_id,
                    available_ms=now + int(lease_seconds * 1000),
                    attempt=queue_messages.c.attempt + 1,
                )
            )
            return [
                QueueMessage(
                    message_id=row.message_id,
                    queue_name=row.queue_name,
                    payload=codec.loads(row.payload, codec.STORED_MAX_DEPTH),
                    attempt=row.attempt + 1,
                    created_at=at_ms(row.created_ms),
                    deployment_id=row.deployment_id,
                    idempotency_key=row.idempotency_key,
                    headers=codec.loads(row.headers, codec.STORED_MAX_DEPTH),
                )
                for row in found
            ]

        return await self._writer.run_sql(claim)

    async def ack(self, message_id: str, worker_id: str) -> bool:
        def ack(conn: Connection) -> bool:
            result = conn.execute(
                delete(queue_messages).where(
                    queue_messages.c.message_id == message_id,
                    queue_messages.c.lease_owner == worker_id,
                )
            )
            return result.rowcount == 1

        return await self._writer.run_sql(ack)

    async def retry_later(self, message_id: str, worker_id: str, delay_seconds: float) -> bool:
        def release(conn: Connection) -> bool:
            result = conn.execute(
                update(queue_messages)
                .where(
                    queue_messages.c.message_id == message_id,
                    queue_messages.c.lease_owner == worker_id,
                )
                .values(lease_owner=None, available_ms=_now_ms() + int(delay_seconds * 1000))
            )
            return result.rowcount == 1

        return await self._writer.run_sql(release)
