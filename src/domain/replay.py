"""Workflow replay (pure): what the event log already says about the next call.

A workflow is re-run from the top; its n-th durable call (step, sleep or hook)
gets the n-th deterministic correlation id. When the log already holds that
call's outcome it is returned without executing anything; a call of another
kind or name than the log recorded at that position means the code changed
under a running workflow: ``nondeterministic_workflow``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from compute_worker.domain import ids
from compute_worker.domain.reducer import structured_error
from compute_worker.domain.validation import parse_date
from compute_worker.domain.world import Event, EventType, StructuredError

NONDETERMINISTIC = "nondeterministic_workflow"
KIND_PREFIX = {"step": ids.STEP, "wait": ids.WAIT, "hook": ids.HOOK}


def correlation_id(run_id: str, created_ms: int, index: int, kind: str) -> str:
    """The id of the ``index``-th durable call of a run: the same on every replay."""
    return KIND_PREFIX[kind] + call_ulid(run_id, created_ms, index)


def call_ulid(run_id: str, created_ms: int, index: int) -> str:
    """The ULID part shared by the step, wait and hook ids of one call position."""
    digest = hashlib.sha256(f"{run_id}:{index}".encode()).digest()
    return ids.encode_ulid(created_ms, int.from_bytes(digest[:10], "big") >> 1)


@dataclass
class StepRecord:
    name: str
    status: str = "pending"
    attempt: int = 0
    result: Any = None
    error: StructuredError | None = None
    retry_after: datetime | None = None


@dataclass
class WaitRecord:
    resume_at: datetime
    completed: bool = False


@dataclass
class HookRecord:
    token: str | None
    payloads: list[Any] = field(default_factory=list)
    disposed: bool = False
    conflict: bool = False


class NonDeterminism(Exception):
    """The code's call sequence disagrees with the log."""

    code = NONDETERMINISTIC


@dataclass
class RunHistory:
    """Everything the log of one run says, indexed by correlation id."""

    steps: dict[str, StepRecord] = field(default_factory=dict)
    waits: dict[str, WaitRecord] = field(default_factory=dict)
    hooks: dict[str, HookRecord] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    cancelled: bool = False

    @classmethod
    def of(cls, events: list[Event]) -> RunHistory:
        history = cls()
        for event in events:
            history.apply(event)
        return history

    def apply(self, event: Event) -> None:
        """Fold one more event in (events arrive in log order, each once)."""
        if event.event_id in self.seen:
            return
        self.seen.add(event.event_id)
        handler = _APPLY.get(event.event_type)
        if handler is not None:
            handler(self, event.correlation_id or "", event.event_data or {})

    def check_kind(self, body_ids: dict[str, str], kind: str, name: str | None = None) -> None:
        """Fail when the log has another kind of call (or another step) at this position."""
        for other, corr in body_ids.items():
            known = corr in self.steps or corr in self.waits or corr in self.hooks
            if other != kind and known:
                raise NonDeterminism(
                    f"the workflow called a {kind} where its history has a {other} ({corr})"
                )
        step = self.steps.get(body_ids["step"])
        if kind == "step" and step is not None and name is not None and step.name != name:
            raise NonDeterminism(
                f"the workflow called step {name!r} where its history has {step.name!r}"
            )


def _step_created(h: RunHistory, corr: str, data: dict[str, Any]) -> None:
    h.steps[corr] = StepRecord(name=str(data.get("stepName", "")))


def _step_started(h: RunHistory, corr: str, data: dict[str, Any]) -> None:
    step = h.steps.setdefault(corr, StepRecord(name=""))
    step.status, step.attempt, step.retry_after = "running", step.attempt + 1, None


def _step_completed(h: RunHistory, corr: str, data: dict[str, Any]) -> None:
    step = h.steps.setdefault(corr, StepRecord(name=""))
    step.status, step.result = "completed", data.get("result")


def _step_failed(h: RunHistory, corr: str, data: dict[str, Any]) -> None:
    step = h.steps.setdefault(corr, StepRecord(name=""))
    step.status = "failed"
    step.error = structured_error(data.get("error"), data.get("stack"), data.get("errorCode"))


def _step_retrying(h: RunHistory, corr: str, data: dict[str, Any]) -> None:
    step = h.steps.setdefault(corr, StepRecord(name=""))
    step.status = "pending"
    step.error = structured_error(data.get("error"), data.get("stack"), data.get("errorCode"))
    retry_after = data.get("retryAfter")
    step.retry_after = parse_date(retry_after, "retryAfter") if retry_after else None


def _wait_created(h: RunHistory, corr: str, data: dict[str, Any]) -> None:
    h.waits[corr] = WaitRecord(parse_date(data["resumeAt"], "resumeAt"))


def _wait_completed(h: RunHistory, corr: str, data: dict[str, Any]) -> None:
    if corr in h.waits:
        h.waits[corr].completed = True


def _hook_created(h: RunHistory, corr: str, data: dict[str, Any]) -> None:
    h.hooks[corr] = HookRecord(token=data.get("token"))


def _hook_conflict(h: RunHistory, corr: str, data: dict[str, Any]) -> None:
    h.hooks[corr] = HookRecord(token=data.get("token"), conflict=True)


def _hook_received(h: RunHistory, corr: str, data: dict[str, Any]) -> None:
    h.hooks.setdefault(corr, HookRecord(token=None)).payloads.append(data.get("payload"))


def _hook_disposed(h: RunHistory, corr: str, data: dict[str, Any]) -> None:
    h.hooks.setdefault(corr, HookRecord(token=None)).disposed = True


def _run_cancelled(h: RunHistory, corr: str, data: dict[str, Any]) -> None:
    h.cancelled = True


_APPLY = {
    EventType.STEP_CREATED: _step_created,
    EventType.STEP_STARTED: _step_started,
    EventType.STEP_COMPLETED: _step_completed,
    EventType.STEP_FAILED: _step_failed,
    EventType.STEP_RETRYING: _step_retrying,
    EventType.WAIT_CREATED: _wait_created,
    EventType.WAIT_COMPLETED: _wait_completed,
    EventType.HOOK_CREATED: _hook_created,
    EventType.HOOK_CONFLICT: _hook_conflict,
    EventType.HOOK_RECEIVED: _hook_received,
    EventType.HOOK_DISPOSED: _hook_disposed,
    EventType.RUN_CANCELLED: _run_cancelled,
}
