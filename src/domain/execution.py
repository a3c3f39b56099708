"""Runs that should be executing but are not getting anywhere, and when to give up.

Two things can repeat for ever if nothing counts them: a run whose code cannot start
(its workflow process does not come up, its bundle does not load) and a run whose
executor keeps dying under it (the worker is killed, the lease runs out, another worker
recovers it, dies too …). Each is counted here, *without progress*: a failure after the
run wrote a new event starts the count again, so a long run that is recovered now and
then is never given up on. Past the policy's bound the run fails with ``RUNTIME_ERROR``
and a message saying why; until then its record is visible in the public API.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_start_attempts: int = 5
    max_lost_executors: int = 20
    first_delay_seconds: float = 2.0
    max_delay_seconds: float = 60.0

    def delay(self, failures: int) -> timedelta:
        """Exponential backoff: 2 s, 4 s, 8 s … capped."""
        seconds = self.first_delay_seconds * 2 ** max(0, failures - 1)
        return timedelta(seconds=min(self.max_delay_seconds, seconds))


@dataclass(frozen=True, slots=True)
class ExecutionRecord:
    """The engine's count of a run's troubles (kept beside the run, not in its event log)."""

    run_id: str
    start_failures: int = 0
    lost_executors: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None
    next_attempt_at: datetime | None = None
    progress_mark: str | None = None  # the run's last event id when the count was taken


@dataclass(frozen=True, slots=True)
class Verdict:
    record: ExecutionRecord
    give_up: bool
    reason: str | None = None


def start_failed(
    record: ExecutionRecord | None,
    run_id: str,
    last_event_id: str | None,
    message: str,
    now: datetime,
    policy: RetryPolicy,
) -> Verdict:
    """Count a failed start; past ``max_start_attempts`` in a row, give up."""
    current = _since_progress(record, run_id, last_event_id)
    failures = current.start_failures + 1
    updated = replace(
        current,
        start_failures=failures,
        last_error=message,
        last_error_at=now,
        next_attempt_at=now + policy.delay(failures),
    )
    if failures < policy.max_start_attempts:
        return Verdict(updated, give_up=False)
    reason = f"the run could not start after {failures} attempts: {message}"
    return Verdict(replace(updated, next_attempt_at=None), give_up=True, reason=reason)


def executor_lost(
    record: ExecutionRecord | None,
    run_id: str,
    last_event_id: str | None,
    now: datetime,
    policy: RetryPolicy,
) -> Verdict:
    """Count a recovery from a worker that stopped renewing the run's lease."""
    current = _since_progress(record, run_id, last_event_id)
    lost = current.lost_executors + 1
    message = "the worker executing the run stopped (its lease ran out); another took over"
    updated = replace(current, lost_executors=lost, last_error=message, last_error_at=now)
    if lost <= policy.max_lost_executors:
        return Verdict(updated, give_up=False)
    reason = (
        f"the run's executor was lost {lost} times in a row without progress "
        "(each worker running it died or stopped renewing its lease)"
    )
    return Verdict(updated, give_up=True, reason=reason)


def _since_progress(
    record: ExecutionRecord | None, run_id: str, last_event_id: str | None
) -> ExecutionRecord:
    """The record to count on: a fresh one when the run wrote events since it was taken."""
    if record is None or record.progress_mark != last_event_id:
        return ExecutionRecord(run_id=run_id, progress_mark=last_event_id)
    return record
