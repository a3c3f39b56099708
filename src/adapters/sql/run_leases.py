"""``SqlRunLeases``: one executing worker per run, taken and renewed through the writer."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.engine import Connection

from compute_worker.adapters.sql.dialect import insert_if_absent
from compute_worker.adapters.sql.reads import SqlReads
from compute_worker.adapters.sql.rows import to_ms
from compute_worker.adapters.sql.schema import (
    deployments,
    events,
    run_execution,
    run_leases,
    runs,
)
from compute_worker.adapters.sql.writer import GroupCommitWriter
from compute_worker.domain.deployments import EXTERNAL_KINDS
from compute_worker.domain.ports.engine import LeaseGrant, RunLeases
from compute_worker.domain.world import EventType

LIVE_STATUSES = ("pending", "running")
PARKED = "parked"
NEVER_MS = 2**62
# what others write to wake a run; one after what a parking run read keeps it from parking
_WAKE_UPS = (EventType.HOOK_RECEIVED.value, EventType.RUN_CANCELLED.value)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class SqlRunLeases(RunLeases):
    def __init__(self, reads: SqlReads, writer: GroupCommitWriter) -> None:
        self._reads = reads
        self._writer = writer

    async def acquire(self, run_id: str, owner: str, ttl_seconds: float) -> LeaseGrant | None:
        def take(conn: Connection) -> LeaseGrant | None:
            now = _now_ms()
            expires = now + int(ttl_seconds * 1000)
            values = {"run_id": run_id, "owner": owner, "expires_ms": expires}
            if insert_if_absent(conn, run_leases, values):
                return LeaseGrant.TAKEN
            lease = update(run_leases).values(owner=owner, expires_ms=expires)
            free = conn.execute(
                lease.where(
                    run_leases.c.run_id == run_id,
                    or_(run_leases.c.owner == owner, run_leases.c.owner == PARKED),
                )
            )
            if free.rowcount == 1:
                return LeaseGrant.TAKEN
            lost = conn.execute(
                lease.where(run_leases.c.run_id == run_id, run_leases.c.expires_ms <= now)
            )
            return LeaseGrant.RECOVERED if lost.rowcount == 1 else None

        return await self._writer.run_sql(take)

    async def renew(self, owner: str, run_ids: Sequence[str], ttl_seconds: float) -> None:
        if not run_ids:
            return
        statement = (
            update(run_leases)
            .where(run_leases.c.owner == owner, run_leases.c.run_id.in_(list(run_ids)))
            .values(expires_ms=_now_ms() + int(ttl_seconds * 1000))
        )
        await self._writer.run_sql(lambda conn: conn.execute(statement))

    async def release(self, run_id: str, owner: str) -> None:
        statement = delete(run_leases).where(
            run_leases.c.run_id == run_id, run_leases.c.owner == owner
        )
        await self._writer.run_sql(lambda conn: conn.execute(statement))

    async def park(
        self, run_id: str, owner: str, until: datetime | None, read_up_to: str | None
    ) -> bool:
        unread = select(events.c.event_id).where(
            events.c.run_id == run_id, events.c.event_type.in_(_WAKE_UPS)
        )
        if read_up_to is not None:
            unread = unread.where(events.c.event_id > read_up_to)
        statement = (
            update(run_leases)
            .where(run_leases.c.run_id == run_id, run_leases.c.owner == owner, ~unread.exists())
            .values(owner=PARKED, expires_ms=NEVER_MS if until is None else to_ms(until))
        )
        return await self._writer.run_sql(lambda conn: conn.execute(statement).rowcount == 1)

    async def orphaned(self, limit: int) -> list[str]:
        """Only runs of this server's deployments: runs that external runtimes create
        through the world lane, and runs of apps (kind wdk), are theirs to execute."""
        now = _now_ms()
        query = (
            select(runs.c.run_id)
            .select_from(
                runs.join(deployments, deployments.c.deployment_id == runs.c.deployment_id)
                .outerjoin(run_leases, run_leases.c.run_id == runs.c.run_id)
                .outerjoin(run_execution, run_execution.c.run_id == runs.c.run_id)
            )
            .where(
                runs.c.status.in_(LIVE_STATUSES),
                deployments.c.kind.not_in(EXTERNAL_KINDS),
                or_(run_leases.c.run_id.is_(None), and_(run_leases.c.expires_ms <= now)),
                or_(
                    run_execution.c.next_attempt_ms.is_(None),
                    run_execution.c.next_attempt_ms <= now,
                ),
            )
            .order_by(runs.c.created_ms)
            .limit(limit)
        )
        return await self._reads.run(lambda conn: list(conn.execute(query).scalars()))
