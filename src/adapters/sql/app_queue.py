"""``SqlAppQueue``: leases on the queue messages of apps (``wdk`` deployments).

The same rows as ``SqlQueue`` (whose claims skip these deployments), claimed per
deployment by the dispatcher. ``available_ms`` is the lease deadline while leased; the
attempt is counted when a message is claimed, so a worker killed mid-delivery leaves
the count behind. A run's workflow messages (``run_id``) are never leased twice at
once: on PostgreSQL a claim holds a transaction-scoped advisory lock (or claims nothing
this time), so the check for a leased sibling sees every other claim's commit; SQLite
has one writer anyway.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased

from compute_worker.adapters import codec
from compute_worker.adapters.sql import rows
from compute_worker.adapters.sql.dialect import is_postgres, locked
from compute_worker.adapters.sql.queue import APP_DEPLOYMENTS
from compute_worker.adapters.sql.reads import SqlReads
from compute_worker.adapters.sql.schema import deployments, queue_messages
from compute_worker.adapters.sql.writer import GroupCommitWriter
from compute_worker.domain.deployments import EXTERNAL_KINDS, Deployment
from compute_worker.domain.ports.queue import AppQueue
from compute_worker.domain.wdk import AppMessage

CLAIM_LOCK = 0x636F6D707574  # the advisory lock key of app claims ("comput")
# never waited for: a claim shares its transaction with other writes (group commit), and
# waiting for the lock while holding their row locks could deadlock with another worker
TRY_CLAIM_LOCK = select(func.pg_try_advisory_xact_lock(CLAIM_LOCK))
_sibling = aliased(queue_messages)
_q = queue_messages.c


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class SqlAppQueue(AppQueue):
    def __init__(self, reads: SqlReads, writer: GroupCommitWriter) -> None:
        self._reads = reads
        self._writer = writer

    async def apps(self) -> list[Deployment]:
        query = select(deployments).where(deployments.c.kind.in_(EXTERNAL_KINDS))

        def fetch(conn: Connection) -> list[Deployment]:
            return [rows.deployment_from(row, None) for row in conn.execute(query)]

        return await self._reads.run(fetch)

    async def claim(
        self,
        worker_id: str,
        *,
        room: Mapping[str, int],
        per_app: int,
        limit: int,
        lease_seconds: float,
    ) -> list[AppMessage]:
        full = [deployment_id for deployment_id, free in room.items() if free <= 0]

        def claim(conn: Connection) -> list[AppMessage]:
            if is_postgres(conn) and not conn.execute(TRY_CLAIM_LOCK).scalar():
                return []  # another worker is claiming: this one tries again next poll
            now = _now_ms()
            leased_sibling = exists().where(
                _sibling.c.run_id == _q.run_id,
                _sibling.c.message_id != _q.message_id,
                _sibling.c.lease_owner.is_not(None),
                _sibling.c.available_ms > now,
            )
            query = (
                select(queue_messages)
                .where(
                    _q.deployment_id.in_(APP_DEPLOYMENTS),
                    _q.available_ms <= now,
                    _q.run_id.is_(None) | ~leased_sibling,
                )
                .order_by(_q.available_ms, _q.message_id)
                .limit(limit)
            )
            if full:
                query = query.where(_q.deployment_id.not_in(full))
            found = conn.execute(locked(conn.dialect.name, query, skip_locked=True)).all()
            taken, runs, left = [], set(), dict(room)
            for row in found:  # one workflow message per run at a time, room per app
                if row.run_id in runs or left.get(row.deployment_id, per_app) <= 0:
                    continue
                if row.run_id is not None:
                    runs.add(row.run_id)
                left[row.deployment_id] = left.get(row.deployment_id, per_app) - 1
                taken.append(row)
            if not taken:
                return []
            conn.execute(
                update(queue_messages)
                .where(_q.message_id.in_([row.message_id for row in taken]))
                .values(
                    lease_owner=worker_id,
                    available_ms=now + int(lease_seconds * 1000),
                    attempt=_q.attempt + 1,
                )
            )
            return [
                AppMessage(
                    message_id=row.message_id,
                    queue_name=row.queue_name,
                    body=row.payload.encode(),
                    attempt=row.attempt + 1,
                    failures=row.failures,
                    deployment_id=row.deployment_id,
                    headers=codec.loads(row.headers, codec.STORED_MAX_DEPTH),
                    run_id=row.run_id,
                )
                for row in taken
            ]

        return await self._writer.run_sql(claim)

    async def renew(self, message_ids: list[str], worker_id: str, lease_seconds: float) -> None:
        if not message_ids:
            return

        def renew(conn: Connection) -> None:
            conn.execute(
                update(queue_messages)
                .where(_q.message_id.in_(message_ids), _q.lease_owner == worker_id)
                .values(available_ms=_now_ms() + int(lease_seconds * 1000))
            )

        await self._writer.run_sql(renew)

    async def finish(self, message_id: str, worker_id: str) -> bool:
        def finish(conn: Connection) -> bool:
            result = conn.execute(
                delete(queue_messages).where(
                    _q.message_id == message_id, _q.lease_owner == worker_id
                )
            )
            return result.rowcount == 1

        return await self._writer.run_sql(finish)

    async def reschedule(
        self, message_id: str, worker_id: str, delay_seconds: float, attempt: int, failures: int
    ) -> bool:
        def release(conn: Connection) -> bool:
            result = conn.execute(
                update(queue_messages)
                .where(_q.message_id == message_id, _q.lease_owner == worker_id)
                .values(
                    lease_owner=None,
                    available_ms=_now_ms() + int(delay_seconds * 1000),
                    attempt=attempt,
                    failures=failures,
                )
            )
            return result.rowcount == 1

        return await self._writer.run_sql(release)
