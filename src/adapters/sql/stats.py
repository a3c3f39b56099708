"""``SqlWorldStats``: the World's state at one moment, for the metrics scrape — a few
grouped counts, no rows."""

from __future__ import annotations

import time

from sqlalchemy import case, func, select
from sqlalchemy.engine import Connection

from compute_worker.adapters.sql.reads import SqlReads
from compute_worker.adapters.sql.schema import hooks, queue_messages, run_stuck, runs, waits
from compute_worker.domain.ports.metrics import QueueBacklog, WorldStats, WorldStatsReader
from compute_worker.domain.world import TERMINAL_RUN_STATUSES


class SqlWorldStats(WorldStatsReader):
    def __init__(self, reads: SqlReads) -> None:
        self._reads = reads

    async def world_stats(self) -> WorldStats:
        return await self._reads.run(_stats)


def _stats(conn: Connection) -> WorldStats:
    now_ms = int(time.time() * 1000)
    by_status = conn.execute(
        select(runs.c.workflow_name, runs.c.status, func.count())
        .group_by(runs.c.workflow_name, runs.c.status)
    ).all()  # fmt: skip
    q = queue_messages.c
    unclaimed = q.lease_owner.is_(None)
    ready = unclaimed & (q.available_ms <= now_ms)
    backlog = conn.execute(
        select(
            q.queue_name,
            func.count(case((ready, 1))),
            func.count(case((unclaimed & (q.available_ms > now_ms), 1))),
            func.count(case((q.lease_owner.is_not(None), 1))),
            func.min(case((ready, q.available_ms))),
        ).group_by(q.queue_name)
    ).all()
    hooks_pending = conn.execute(select(func.count()).select_from(hooks)).scalar_one()
    sleeps_pending = conn.execute(
        select(func.count()).select_from(waits).where(waits.c.status == "waiting")
    ).scalar_one()
    stuck = conn.execute(
        select(run_stuck.c.reason, func.count())
        .select_from(run_stuck.join(runs, runs.c.run_id == run_stuck.c.run_id))
        .where(runs.c.status.not_in(TERMINAL_RUN_STATUSES))
        .group_by(run_stuck.c.reason)
    ).all()
    return WorldStats(
        runs={(workflow, status): count for workflow, status, count in by_status},
        queues={
            name: QueueBacklog(
                ready=ready_count,
                delayed=delayed,
                leased=leased,
                oldest_ready_age_seconds=max(0.0, (now_ms - oldest) / 1000) if oldest else 0.0,
            )
            for name, ready_count, delayed, leased, oldest in backlog
        },
        hooks_pending=hooks_pending,
        sleeps_pending=sleeps_pending,
        stuck=dict(stuck),
    )
