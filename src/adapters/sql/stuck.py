"""``SqlStuckRuns``: what the stuck-run detector reads of live runs, a batch at a time
(a handful of grouped queries over the batch's run ids, no per-run round trips), and
the ``run_stuck`` table where it records its findings."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, exists, func, or_, select, tuple_
from sqlalchemy.engine import Connection

from compute_worker.adapters.sql import rows
from compute_worker.adapters.sql.dialect import upsert
from compute_worker.adapters.sql.reads import SqlReads, stuck_records
from compute_worker.adapters.sql.schema import (
    events,
    hooks,
    run_execution,
    run_stuck,
    runs,
    steps,
    waits,
)
from compute_worker.adapters.sql.writer import GroupCommitWriter
from compute_worker.domain.ports.stuck import ScanMark, StuckRunStore
from compute_worker.domain.stuck import FailingStep, RunProgress, StuckRun
from compute_worker.domain.world import TERMINAL_RUN_STATUSES, EventType

# a step attempt starting or failing again is not progress (domain.stuck)
_ATTEMPTS = (EventType.STEP_STARTED.value, EventType.STEP_RETRYING.value)
_LIVE_STEP = ("pending", "running")
_FOREVER = datetime.max.replace(tzinfo=UTC)  # a wait without an end


class SqlStuckRuns(StuckRunStore):
    def __init__(self, reads: SqlReads, writer: GroupCommitWriter) -> None:
        self._reads = reads
        self._writer = writer

    async def live_runs(self, after: ScanMark | None, limit: int) -> Sequence[RunProgress]:
        return await self._reads.run(lambda conn: _live_runs(conn, after, limit))

    async def save(self, stuck: Sequence[StuckRun], cleared: Sequence[str]) -> None:
        def save(conn: Connection) -> None:
            if stuck:
                conn.execute(
                    upsert(conn.dialect.name, run_stuck), [rows.stuck_values(s) for s in stuck]
                )
            if cleared:
                conn.execute(delete(run_stuck).where(run_stuck.c.run_id.in_(list(cleared))))
            ended = exists().where(
                runs.c.run_id == run_stuck.c.run_id, runs.c.status.in_(TERMINAL_RUN_STATUSES)
            )
            conn.execute(delete(run_stuck).where(ended))

        await self._writer.run_sql(save)


def _live_runs(conn: Connection, after: ScanMark | None, limit: int) -> list[RunProgress]:
    query = select(runs.c.run_id, runs.c.status, runs.c.created_ms, runs.c.started_ms).where(
        runs.c.status.not_in(TERMINAL_RUN_STATUSES)
    )
    if after is not None:
        mark = (rows.to_ms(after[0]), after[1])
        query = query.where(tuple_(runs.c.created_ms, runs.c.run_id) > mark)
    found = conn.execute(query.order_by(runs.c.created_ms, runs.c.run_id).limit(limit)).all()
    ids = [row.run_id for row in found]
    if not ids:
        return []
    progress = dict(
        conn.execute(
            select(events.c.run_id, func.max(events.c.created_ms))
            .where(events.c.run_id.in_(ids), events.c.event_type.not_in(_ATTEMPTS))
            .group_by(events.c.run_id)
        ).all()
    )
    last_event = {row.run_id: row.event_id for row in conn.execute(_last_events(ids))}
    executions = {
        row.run_id: rows.execution_from(row)
        for row in conn.execute(select(run_execution).where(run_execution.c.run_id.in_(ids)))
    }
    hooked = set(conn.execute(select(hooks.c.run_id).where(hooks.c.run_id.in_(ids))).scalars())
    sleeps: dict[str, datetime] = {}
    waiting = select(waits.c.run_id, waits.c.resume_ms).where(
        waits.c.run_id.in_(ids), waits.c.status == "waiting"
    )
    for run_id, resume_ms in conn.execute(waiting):
        until = _FOREVER if resume_ms is None else rows.at_ms(resume_ms)
        sleeps[run_id] = min(until, sleeps.get(run_id, _FOREVER))
    failing = _failing_steps(conn, ids)
    recorded = stuck_records(conn, ids)
    return [
        RunProgress(
            run_id=row.run_id,
            status=row.status,
            created_at=rows.at_ms(row.created_ms),
            started_at=rows.from_ms(row.started_ms),
            last_progress_at=rows.at_ms(max(progress.get(row.run_id) or 0, row.created_ms)),
            last_event_id=last_event.get(row.run_id),
            execution=executions.get(row.run_id),
            hook_pending=row.run_id in hooked,
            sleep_until=sleeps.get(row.run_id),
            failing_step=failing.get(row.run_id),
            recorded=recorded.get(row.run_id),
        )
        for row in found
    ]


def _last_events(ids: list[str]) -> Any:
    """Each run's latest event id (what the engine's trouble count is marked with)."""
    ranked = (
        select(
            events.c.run_id,
            events.c.event_id,
            func.row_number()
            .over(
                partition_by=events.c.run_id,
                order_by=(events.c.created_ms.desc(), events.c.event_id.desc()),
            )
            .label("rank"),
        )
        .where(events.c.run_id.in_(ids))
        .subquery()
    )
    return select(ranked.c.run_id, ranked.c.event_id).where(ranked.c.rank == 1)


def _failing_steps(conn: Connection, ids: list[str]) -> dict[str, FailingStep]:
    """Per run, its live step that failed most often (it has an error and is retried)."""
    found: dict[str, FailingStep] = {}
    query = (
        select(steps.c.run_id, steps.c.step_name, steps.c.attempt, steps.c.error)
        .where(
            steps.c.run_id.in_(ids),
            steps.c.status.in_(_LIVE_STEP),
            or_(steps.c.error.is_not(None), steps.c.attempt > 1),
        )
        .order_by(steps.c.run_id, steps.c.attempt.desc())
    )
    for row in conn.execute(query):
        if row.run_id not in found:
            error = rows.error_from(row.error)
            found[row.run_id] = FailingStep(
                row.step_name, row.attempt, error.message if error else None
            )
    return found
