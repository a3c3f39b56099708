"""Pure replay decisions (``domain.replay``) over event logs built by hand.

Each test writes the log a run would have after some history, folds it into a
``RunHistory`` and asks what the n-th durable call of the workflow gets: a
recorded outcome, nothing yet (execute it), or ``NonDeterminism``.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from compute_worker.domain import ids
from compute_worker.domain.replay import (
    KIND_PREFIX,
    NONDETERMINISTIC,
    NonDeterminism,
    RunHistory,
    correlation_id,
)
from compute_worker.domain.world import Event, EventType

NOW = datetime(2025, 3, 1, 9, 30, 0, tzinfo=UTC)
CREATED_MS = int(NOW.timestamp() * 1000)
RUN_ID = ids.RUN + ids.encode_ulid(CREATED_MS, 42)
OTHER_RUN_ID = ids.RUN + ids.encode_ulid(CREATED_MS, 43)


def call_ids(index: int, run_id: str = RUN_ID) -> dict[str, str]:
    """What the engine derives for the ``index``-th durable call (one id per kind)."""
    return {kind: correlation_id(run_id, CREATED_MS, index, kind) for kind in KIND_PREFIX}


class Log:
    """A hand-written event log of one run; event ids grow like the World's."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._counter = itertools.count(1)

    def add(
        self,
        event_type: EventType,
        correlation: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> Event:
        n = next(self._counter)
        event = Event(
            event_id=ids.EVENT + ids.encode_ulid(CREATED_MS + n, n),
            run_id=RUN_ID,
            event_type=event_type,
            created_at=NOW + timedelta(milliseconds=n),
            correlation_id=correlation,
            event_data=data,
        )
        self.events.append(event)
        return event

    def started_run(self) -> Log:
        self.add(
            EventType.RUN_CREATED,
            None,
            {"deploymentId": "dpl_x", "workflowName": "w", "input": [1]},
        )
        self.add(EventType.RUN_STARTED)
        return self

    def step(self, index: int, name: str, result: Any = None, *, complete: bool = True) -> str:
        step_id = call_ids(index)["step"]
        self.add(EventType.STEP_CREATED, step_id, {"stepName": name, "input": []})
        self.add(EventType.STEP_STARTED, step_id)
        if complete:
            self.add(EventType.STEP_COMPLETED, step_id, {"result": result})
        return step_id

    def history(self) -> RunHistory:
        return RunHistory.of(self.events)


# -- correlation ids ----------------------------------------------------------------------


def test_correlation_ids_are_deterministic() -> None:
    for index in range(5):
        for kind in KIND_PREFIX:
            first = correlation_id(RUN_ID, CREATED_MS, index, kind)
            assert first == correlation_id(RUN_ID, CREATED_MS, index, kind)


def test_correlation_ids_carry_the_kind_prefix_and_the_run_creation_time() -> None:
    for kind, prefix in KIND_PREFIX.items():
        corr = correlation_id(RUN_ID, CREATED_MS, 3, kind)
        assert corr.startswith(prefix)
        assert ids.ulid_timestamp_ms(corr, prefix) == CREATED_MS


def test_correlation_ids_are_distinct_per_index() -> None:
    for kind in KIND_PREFIX:
        produced = [correlation_id(RUN_ID, CREATED_MS, index, kind) for index in range(1000)]
        assert len(set(produced)) == len(produced)


def test_correlation_ids_are_distinct_per_run() -> None:
    mine = {correlation_id(RUN_ID, CREATED_MS, i, "step") for i in range(50)}
    theirs = {correlation_id(OTHER_RUN_ID, CREATED_MS, i, "step") for i in range(50)}
    assert not mine & theirs


def test_one_index_shares_its_randomness_across_kinds() -> None:
    """Step, wait and hook ids of one position differ only by prefix: one call, one slot."""
    at = call_ids(7)
    suffixes = {corr.split("_", 1)[1] for corr in at.values()}
    assert len(suffixes) == 1


# -- fresh log ----------------------------------------------------------------------------


def test_fresh_log_has_nothing_recorded() -> None:
    history = Log().started_run().history()
    assert history.steps == {} and history.waits == {} and history.hooks == {}
    assert history.cancelled is False
    for index in range(3):
        at = call_ids(index)
        for kind in KIND_PREFIX:
            history.check_kind(at, kind, "any-step" if kind == "step" else None)
        assert at["step"] not in history.steps


def test_empty_log_is_a_fresh_history() -> None:
    history = RunHistory.of([])
    assert history.steps == {} and history.seen == set()
    history.check_kind(call_ids(0), "step", "first")


# -- partially replayed -------------------------------------------------------------------


def test_completed_steps_return_their_recorded_results() -> None:
    log = Log().started_run()
    log.step(0, "fetch", {"rows": [1, 2]})
    log.step(1, "transform", "done")
    history = log.history()

    for index, name, result in ((0, "fetch", {"rows": [1, 2]}), (1, "transform", "done")):
        at = call_ids(index)
        history.check_kind(at, "step", name)
        record = history.steps[at["step"]]
        assert record.status == "completed"
        assert record.result == result
        assert record.attempt == 1
        assert record.name == name

    nxt = call_ids(2)
    history.check_kind(nxt, "step", "load")
    assert nxt["step"] not in history.steps  # not in the log yet: execute it


def test_a_started_but_unfinished_step_is_running_and_has_no_result() -> None:
    log = Log().started_run()
    step_id = log.step(0, "charge", complete=False)
    record = log.history().steps[step_id]
    assert record.status == "running"
    assert record.attempt == 1
    assert record.result is None


def test_a_created_but_never_started_step_is_pending() -> None:
    log = Log().started_run()
    step_id = call_ids(0)["step"]
    log.add(EventType.STEP_CREATED, step_id, {"stepName": "charge", "input": [1]})
    record = log.history().steps[step_id]
    assert (record.status, record.attempt, record.name) == ("pending", 0, "charge")


def test_events_folded_twice_count_once() -> None:
    log = Log().started_run()
    log.step(0, "charge", 5)
    history = RunHistory.of(log.events + log.events)
    record = history.steps[call_ids(0)["step"]]
    assert record.attempt == 1
    history.apply(log.events[-1])
    assert history.steps[call_ids(0)["step"]].attempt == 1


def test_history_learns_new_events_incrementally() -> None:
    log = Log().started_run()
    step_id = log.step(0, "charge", complete=False)
    history = log.history()
    assert history.steps[step_id].status == "running"
    history.apply(log.add(EventType.STEP_COMPLETED, step_id, {"result": 9}))
    assert history.steps[step_id].status == "completed"
    assert history.steps[step_id].result == 9


# -- divergence ---------------------------------------------------------------------------


def test_another_step_name_at_a_recorded_position_is_nondeterministic() -> None:
    log = Log().started_run()
    log.step(0, "charge", 1)
    history = log.history()
    with pytest.raises(NonDeterminism) as caught:
        history.check_kind(call_ids(0), "step", "refund")
    assert caught.value.code == NONDETERMINISTIC == "nondeterministic_workflow"
    assert "refund" in str(caught.value) and "charge" in str(caught.value)


def test_another_step_name_diverges_even_while_the_step_is_in_flight() -> None:
    log = Log().started_run()
    log.step(0, "charge", complete=False)
    with pytest.raises(NonDeterminism):
        log.history().check_kind(call_ids(0), "step", "refund")


def test_a_sleep_where_a_step_was_is_nondeterministic() -> None:
    log = Log().started_run()
    log.step(0, "charge", 1)
    with pytest.raises(NonDeterminism) as caught:
        log.history().check_kind(call_ids(0), "wait")
    assert "step" in str(caught.value)


def test_a_step_where_a_sleep_was_is_nondeterministic() -> None:
    log = Log().started_run()
    wait_id = call_ids(0)["wait"]
    log.add(EventType.WAIT_CREATED, wait_id, {"resumeAt": "2025-03-01T09:31:00.000Z"})
    with pytest.raises(NonDeterminism):
        log.history().check_kind(call_ids(0), "step", "charge")


def test_a_hook_where_a_step_was_is_nondeterministic() -> None:
    log = Log().started_run()
    log.step(0, "charge", 1)
    with pytest.raises(NonDeterminism):
        log.history().check_kind(call_ids(0), "hook")


def test_a_step_where_a_hook_was_is_nondeterministic() -> None:
    log = Log().started_run()
    log.add(EventType.HOOK_CREATED, call_ids(0)["hook"], {"token": "t"})
    with pytest.raises(NonDeterminism):
        log.history().check_kind(call_ids(0), "step", "charge")


def test_divergence_is_detected_at_the_position_where_it_happens() -> None:
    log = Log().started_run()
    log.step(0, "a", 1)
    log.step(1, "b", 2)
    history = log.history()
    history.check_kind(call_ids(0), "step", "a")  # same prefix: fine
    with pytest.raises(NonDeterminism):
        history.check_kind(call_ids(1), "step", "c")


def test_the_same_kind_and_name_never_diverges() -> None:
    log = Log().started_run()
    log.step(0, "a", 1)
    wait_id = call_ids(1)["wait"]
    log.add(EventType.WAIT_CREATED, wait_id, {"resumeAt": "2025-03-01T09:31:00.000Z"})
    log.add(EventType.HOOK_CREATED, call_ids(2)["hook"], {"token": "tok"})
    history = log.history()
    history.check_kind(call_ids(0), "step", "a")
    history.check_kind(call_ids(1), "wait")
    history.check_kind(call_ids(2), "hook")


# -- failures and retries -----------------------------------------------------------------


def test_step_retried_then_completed_counts_attempts() -> None:
    log = Log().started_run()
    step_id = call_ids(0)["step"]
    log.add(EventType.STEP_CREATED, step_id, {"stepName": "flaky", "input": []})
    for attempt in (1, 2):
        log.add(EventType.STEP_STARTED, step_id)
        log.add(
            EventType.STEP_RETRYING,
            step_id,
            {
                "error": {"message": f"boom {attempt}", "stack": "Traceback ..."},
                "retryAfter": f"2025-03-01T09:30:0{attempt}.000Z",
            },
        )
        record = log.history().steps[step_id]
        assert record.status == "pending"
        assert record.attempt == attempt
        assert record.error is not None and record.error.message == f"boom {attempt}"
        assert record.error.stack == "Traceback ..."
        assert record.retry_after == datetime(2025, 3, 1, 9, 30, attempt, tzinfo=UTC)
    log.add(EventType.STEP_STARTED, step_id)
    history = log.history()
    assert history.steps[step_id].retry_after is None  # cleared by step_started
    assert history.steps[step_id].status == "running"
    log.add(EventType.STEP_COMPLETED, step_id, {"result": "ok"})
    record = log.history().steps[step_id]
    assert (record.status, record.attempt, record.result) == ("completed", 3, "ok")


def test_step_retrying_without_retry_after() -> None:
    log = Log().started_run()
    step_id = log.step(0, "flaky", complete=False)
    log.add(EventType.STEP_RETRYING, step_id, {"error": "plain text error"})
    record = log.history().steps[step_id]
    assert record.retry_after is None
    assert record.error is not None and record.error.message == "plain text error"


def test_step_failed_for_good_keeps_its_error() -> None:
    log = Log().started_run()
    step_id = log.step(0, "charge", complete=False)
    log.add(
        EventType.STEP_FAILED,
        step_id,
        {"error": {"message": "card declined"}, "stack": "Traceback (most recent call last)"},
    )
    record = log.history().steps[step_id]
    assert record.status == "failed"
    assert record.attempt == 1
    assert record.error is not None
    assert record.error.message == "card declined"
    assert record.error.stack == "Traceback (most recent call last)"
    assert record.result is None


def test_step_failed_with_an_error_code() -> None:
    log = Log().started_run()
    step_id = log.step(0, "charge", complete=False)
    log.add(EventType.STEP_FAILED, step_id, {"error": "nope", "errorCode": "USER_ERROR"})
    error = log.history().steps[step_id].error
    assert error is not None and (error.message, error.code) == ("nope", "USER_ERROR")


def test_after_a_failed_step_the_next_call_is_fresh() -> None:
    """A workflow that caught the failure goes on: its next call takes the next slot."""
    log = Log().started_run()
    step_id = log.step(0, "charge", complete=False)
    log.add(EventType.STEP_FAILED, step_id, {"error": "nope"})
    history = log.history()
    history.check_kind(call_ids(1), "step", "compensate")
    assert call_ids(1)["step"] not in history.steps


# -- hooks --------------------------------------------------------------------------------


def test_hook_payloads_replay_in_order() -> None:
    log = Log().started_run()
    hook_id = call_ids(0)["hook"]
    log.add(EventType.HOOK_CREATED, hook_id, {"token": "approve:1", "metadata": None})
    for payload in ({"n": 1}, "two", [3]):
        log.add(EventType.HOOK_RECEIVED, hook_id, {"payload": payload})
    history = log.history()
    history.check_kind(call_ids(0), "hook")
    record = history.hooks[hook_id]
    assert record.token == "approve:1"
    assert record.payloads == [{"n": 1}, "two", [3]]
    assert record.conflict is False and record.disposed is False


def test_hook_without_payload_yet() -> None:
    log = Log().started_run()
    hook_id = call_ids(0)["hook"]
    log.add(EventType.HOOK_CREATED, hook_id, {"token": "t"})
    record = log.history().hooks[hook_id]
    assert record.payloads == []


def test_hook_conflict_is_recorded() -> None:
    log = Log().started_run()
    hook_id = call_ids(0)["hook"]
    log.add(EventType.HOOK_CONFLICT, hook_id, {"token": "taken"})
    history = log.history()
    history.check_kind(call_ids(0), "hook")
    record = history.hooks[hook_id]
    assert record.conflict is True
    assert record.token == "taken"
    assert record.payloads == []
    with pytest.raises(NonDeterminism):
        history.check_kind(call_ids(0), "step", "charge")


def test_hook_disposed() -> None:
    log = Log().started_run()
    hook_id = call_ids(0)["hook"]
    log.add(EventType.HOOK_CREATED, hook_id, {"token": "t"})
    log.add(EventType.HOOK_RECEIVED, hook_id, {"payload": 1})
    log.add(EventType.HOOK_DISPOSED, hook_id)
    record = log.history().hooks[hook_id]
    assert record.disposed is True
    assert record.payloads == [1]


# -- sleeps -------------------------------------------------------------------------------


def test_wait_created_then_completed() -> None:
    log = Log().started_run()
    wait_id = call_ids(0)["wait"]
    log.add(EventType.WAIT_CREATED, wait_id, {"resumeAt": "2025-03-01T10:30:00.000Z"})
    pending = log.history()
    pending.check_kind(call_ids(0), "wait")
    assert pending.waits[wait_id].completed is False
    assert pending.waits[wait_id].resume_at == datetime(2025, 3, 1, 10, 30, tzinfo=UTC)

    log.add(EventType.WAIT_COMPLETED, wait_id)
    assert log.history().waits[wait_id].completed is True


def test_wait_resume_at_as_epoch_milliseconds() -> None:
    log = Log().started_run()
    wait_id = call_ids(0)["wait"]
    log.add(EventType.WAIT_CREATED, wait_id, {"resumeAt": CREATED_MS + 60_000})
    assert log.history().waits[wait_id].resume_at == NOW + timedelta(minutes=1)


def test_wait_completed_for_an_unknown_wait_is_ignored() -> None:
    log = Log().started_run()
    log.add(EventType.WAIT_COMPLETED, call_ids(0)["wait"])
    assert log.history().waits == {}


def test_mixed_history_replays_each_call_in_its_slot() -> None:
    log = Log().started_run()
    log.step(0, "charge", {"receipt": "r1"})
    wait_id = call_ids(1)["wait"]
    log.add(EventType.WAIT_CREATED, wait_id, {"resumeAt": "2025-03-01T09:40:00.000Z"})
    log.add(EventType.WAIT_COMPLETED, wait_id)
    hook_id = call_ids(2)["hook"]
    log.add(EventType.HOOK_CREATED, hook_id, {"token": "approve"})
    log.add(EventType.HOOK_RECEIVED, hook_id, {"payload": {"ok": True}})
    history = log.history()

    history.check_kind(call_ids(0), "step", "charge")
    assert history.steps[call_ids(0)["step"]].result == {"receipt": "r1"}
    history.check_kind(call_ids(1), "wait")
    assert history.waits[wait_id].completed
    history.check_kind(call_ids(2), "hook")
    assert history.hooks[hook_id].payloads == [{"ok": True}]
    # the code now diverges: a sleep in the hook's slot
    with pytest.raises(NonDeterminism):
        history.check_kind(call_ids(2), "wait")


# -- cancellation -------------------------------------------------------------------------


def test_cancelled_flag() -> None:
    log = Log().started_run()
    log.step(0, "charge", complete=False)
    assert log.history().cancelled is False
    log.add(EventType.RUN_CANCELLED)
    history = log.history()
    assert history.cancelled is True
    assert history.steps[call_ids(0)["step"]].status == "running"


def test_run_level_events_do_not_create_entities() -> None:
    log = Log().started_run()
    log.add(EventType.RUN_COMPLETED, None, {"output": 1})
    history = log.history()
    assert history.steps == {} and history.waits == {} and history.hooks == {}
    assert history.cancelled is False
