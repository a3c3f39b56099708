"""Stuck runs: not terminal, not waiting on a sleep or a hook, and without progress for
longer than a threshold (the ``stuck_after_seconds`` setting).

Progress is an event other than a step attempt starting or failing again: a step that
keeps timing out writes events without getting anywhere. The diagnosis says why, in the
order an operator would look: the run's code does not start, its executor keeps being
lost (a lease that keeps expiring), one of its steps keeps failing, nobody started it,
its sleep ended long ago and it did not resume, or simply nothing happened. A run with a
pending hook is waiting for someone, and a sleeping run for its time: neither is stuck
unless something else is wrong with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from compute_worker.domain.execution import ExecutionRecord
from compute_worker.domain.world import TERMINAL_RUN_STATUSES

START_FAILING: Final = "start_failing"
EXECUTOR_LOST: Final = "executor_lost"
STEP_RETRYING: Final = "step_retrying"
NOT_STARTED: Final = "not_started"
SLEEP_OVERDUE: Final = "sleep_overdue"
NO_PROGRESS: Final = "no_progress"
STUCK_REASONS: tuple[str, ...] = (
    START_FAILING, EXECUTOR_LOST, STEP_RETRYING, NOT_STARTED, SLEEP_OVERDUE, NO_PROGRESS,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class StuckRun:
    run_id: str
    reason: str  # one of STUCK_REASONS
    message: str
    since: datetime  # when the run stopped making progress
    detected_at: datetime


@dataclass(frozen=True, slots=True)
class FailingStep:
    step_name: str
    attempt: int
    error: str | None


@dataclass(frozen=True, slots=True)
class RunProgress:
    """What the detector reads of one live run."""

    run_id: str
    status: str
    created_at: datetime
    started_at: datetime | None
    last_progress_at: datetime  # the last event that is not a step attempt (or creation)
    last_event_id: str | None
    execution: ExecutionRecord | None = None
    hook_pending: bool = False
    sleep_until: datetime | None = None  # the end of its earliest pending sleep
    failing_step: FailingStep | None = None  # a live step that already failed
    recorded: StuckRun | None = None  # what the detector said last time


def diagnose(run: RunProgress, now: datetime, threshold: timedelta) -> StuckRun | None:
    """Why ``run`` is stuck at ``now``, or None when it is not."""
    if run.status in TERMINAL_RUN_STATUSES:
        return None
    since = run.last_progress_at
    trouble = _trouble(run) if now - since > threshold else None
    if trouble is not None:
        return _stuck(run, trouble[0], trouble[1], since, now)
    if run.hook_pending:
        return None
    if run.sleep_until is not None:
        if now - run.sleep_until <= threshold:
            return None
        message = "its sleep is over and it has not resumed"
        return _stuck(run, SLEEP_OVERDUE, message, run.sleep_until, now)
    if now - since <= threshold:
        return None
    if run.status == "pending" and run.started_at is None:
        return _stuck(run, NOT_STARTED, "it was queued and no worker has started it", since, now)
    return _stuck(run, NO_PROGRESS, "it has written no event (a step or workflow code that "
                  "does not return, or an executor that is not running)", since, now)  # fmt: skip


def _trouble(run: RunProgress) -> tuple[str, str] | None:
    record = run.execution
    if record is not None and record.progress_mark == run.last_event_id:
        if record.start_failures:
            return START_FAILING, (
                f"its code does not start ({record.start_failures} failed attempts): "
                f"{record.last_error or 'no error recorded'}"
            )
        if record.lost_executors:
            return EXECUTOR_LOST, (
                f"the worker executing it was lost {record.lost_executors} times without "
                "progress (its lease kept running out)"
            )
    step = run.failing_step
    if step is not None:
        last = f": {step.error}" if step.error else ""
        return STEP_RETRYING, (
            f"step {step.step_name!r} keeps failing (attempt {step.attempt}){last}"
        )
    return None


def _stuck(run: RunProgress, reason: str, message: str, since: datetime, now: datetime) -> StuckRun:
    """Keeps the first detection time while the diagnosis stays the same."""
    recorded = run.recorded
    if recorded is not None and (recorded.reason, recorded.since) == (reason, since):
        now = recorded.detected_at
    return StuckRun(run.run_id, reason, message, since, now)
