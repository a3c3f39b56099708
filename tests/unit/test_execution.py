"""Bounded retries of runs that do not get anywhere (domain/execution.py) and the use case
that counts them and fails the run, over the in-memory fakes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from compute_worker.adapters.system import LocalSignal
from compute_worker.domain.execution import (
    ExecutionRecord,
    RetryPolicy,
    executor_lost,
    start_failed,
)
from compute_worker.domain.ids import IdFactory
from compute_worker.domain.use_cases.proxy_world_event import CreateEvent, ProxyWorldEvent
from compute_worker.domain.use_cases.record_execution_trouble import RecordExecutionTrouble
from compute_worker.domain.world import EventRequest, EventType
from compute_worker.domain.world_writes import WorldWrites
from tests.fakes import FakeStore, FakeUnitOfWork, FixedClock

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_start_attempts=3, max_lost_executors=2, first_delay_seconds=2)


def test_failed_starts_back_off_exponentially_and_give_up_at_the_bound() -> None:
    first = start_failed(None, "wrun_1", "evnt_a", "boom", NOW, POLICY)
    assert not first.give_up
    assert first.record.start_failures == 1
    assert first.record.next_attempt_at == NOW + timedelta(seconds=2)
    second = start_failed(first.record, "wrun_1", "evnt_a", "boom", NOW, POLICY)
    assert second.record.next_attempt_at == NOW + timedelta(seconds=4)
    third = start_failed(second.record, "wrun_1", "evnt_a", "still boom", NOW, POLICY)
    assert third.give_up
    assert third.reason == "the run could not start after 3 attempts: still boom"
    assert third.record.next_attempt_at is None


def test_the_backoff_is_capped() -> None:
    assert RetryPolicy(first_delay_seconds=2, max_delay_seconds=60).delay(30) == timedelta(
        seconds=60
    )


def test_progress_between_failures_starts_the_count_again() -> None:
    record = ExecutionRecord("wrun_1", start_failures=2, progress_mark="evnt_a")
    verdict = start_failed(record, "wrun_1", "evnt_b", "boom", NOW, POLICY)
    assert verdict.record.start_failures == 1
    assert verdict.record.progress_mark == "evnt_b"
    assert not verdict.give_up


def test_lost_executors_are_counted_apart_from_failed_starts() -> None:
    record = ExecutionRecord("wrun_1", start_failures=2, progress_mark="evnt_a")
    once = executor_lost(record, "wrun_1", "evnt_a", NOW, POLICY)
    assert (once.record.start_failures, once.record.lost_executors) == (2, 1)
    twice = executor_lost(once.record, "wrun_1", "evnt_a", NOW, POLICY)
    assert not twice.give_up
    thrice = executor_lost(twice.record, "wrun_1", "evnt_a", NOW, POLICY)
    assert thrice.give_up
    assert "lost 3 times in a row without progress" in (thrice.reason or "")


@pytest.fixture
def world() -> tuple[FakeStore, ProxyWorldEvent, RecordExecutionTrouble]:
    store, clock = FakeStore(), FixedClock(NOW)
    uow, ids = FakeUnitOfWork(store), IdFactory(clock_ms=clock.now_ms)
    writes = WorldWrites(ids, clock, LocalSignal())
    events = ProxyWorldEvent(uow, ids, clock, writes)
    return store, events, RecordExecutionTrouble(uow, clock, writes, POLICY)


async def _new_run(events: ProxyWorldEvent) -> str:
    data = {"deploymentId": "dpl_x", "workflowName": "w", "input": []}
    created = await events.execute(CreateEvent(None, EventRequest(EventType.RUN_CREATED,
                                                                  None, None, data)))  # fmt: skip
    assert created.run is not None
    return created.run.run_id


async def test_the_use_case_fails_the_run_with_runtime_error_after_the_last_attempt(
    world: tuple[FakeStore, ProxyWorldEvent, RecordExecutionTrouble],
) -> None:
    store, events, trouble = world
    run_id = await _new_run(events)
    assert await trouble.start_failed(run_id, "ImportError: x (workflows.py, line 2)") is False
    assert await trouble.start_failed(run_id, "ImportError: x (workflows.py, line 2)") is False
    assert store.executions[run_id].start_failures == 2
    assert store.runs[run_id].status == "pending"
    assert await trouble.start_failed(run_id, "ImportError: x", 'File "workflows.py"') is True
    failed = store.runs[run_id]
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.code == "RUNTIME_ERROR"
    assert failed.error.message == "the run could not start after 3 attempts: ImportError: x"
    assert failed.error.stack == 'File "workflows.py"'


async def test_a_terminal_or_missing_run_is_left_alone(
    world: tuple[FakeStore, ProxyWorldEvent, RecordExecutionTrouble],
) -> None:
    store, events, trouble = world
    assert await trouble.executor_lost("wrun_01M8VHANHB265GCQTM60HA8MZ0") is False
    run_id = await _new_run(events)
    await events.execute(CreateEvent(run_id, EventRequest(EventType.RUN_CANCELLED)))
    assert await trouble.start_failed(run_id, "boom") is True
    assert run_id not in store.executions
    assert store.runs[run_id].status == "cancelled"
