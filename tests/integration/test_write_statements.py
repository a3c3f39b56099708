"""How many statements the hot write paths send to SQLite (not a timing: a count).

The writer thread's connection traces every statement it runs; a change that adds a
round trip to a trigger shows here. The floor of a trigger: BEGIN, the active
deployment, the run, its queue message, the idempotency record, the audit entry,
the run's events, COMMIT. On a node that executes what it accepts, the run's lease in
place of its queue message, and the run's whole life two transactions when it has no
step: the trigger's and the one that ends it (which also ends the lease). Of a step, as
the engine writes it (the previous step's ``step_completed`` with the next one's
``step_created`` and ``step_started``): BEGIN, the run (locked) with the finished step
(one read), the run's state marker, the new step, the finished step's update, the three events (one
``executemany``), COMMIT. On PostgreSQL, where each statement is a round trip to the
server, the step's writes are one statement (``adapters/sql/pg_flush.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_cursor

from compute_worker.adapters.sql.pg_flush import MAX_STEPS
from compute_worker.app.container import Container
from compute_worker.app.runtime import Runtime
from compute_worker.app.settings import Settings
from compute_worker.domain import errors
from compute_worker.domain.audit import RequestContext
from compute_worker.domain.pagination import PageRequest
from compute_worker.domain.ports.world import WorldReader
from compute_worker.domain.use_cases.deployments import NewDeployment
from compute_worker.domain.use_cases.trigger_run import Trigger
from compute_worker.domain.world import EventRequest, EventType

CONTEXT = RequestContext("POST", "/v1/runs", "statements")
WORKFLOWS = b"""
from compute_worker import workflow

@workflow
async def zero():
    return 0
"""


@dataclass
class Traced:
    container: Container
    statements: list[str] = field(default_factory=list)

    def verbs(self) -> list[str]:
        """Each statement as its verb and table, e.g. ``INSERT runs`` (a SELECT: the
        table of its first column)."""
        shown = []
        for sql in self.statements:
            words = sql.replace("(", " ").split()
            verb = words[0].upper()
            table = {"INSERT": 2, "SELECT": 1, "UPDATE": 1, "DELETE": 2}.get(verb)
            shown.append(verb if table is None else f"{verb} {words[table].split('.')[0]}")
        return shown


@pytest.fixture(params=[False], ids=["api"])
async def traced(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Traced]:
    """``request.param``: the runtime executes runs (its engine started) or not."""
    settings = Settings.load({"data_dir": tmp_path, "schedule_poll_seconds": 0}, env={})
    runtime = Runtime(settings, execute=request.param)
    found = Traced(runtime.container)
    engine = runtime.container.database().writer_engine
    assert engine is not None

    @event.listens_for(engine, "connect")
    def _trace(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_trace_callback(found.statements.append)

    async with runtime as container:
        await _deploy(container)
        yield found


async def _deploy(container: Container) -> None:
    created = await container.create_deployment().execute(
        NewDeployment("python", {"workflows.py": WORKFLOWS}), CONTEXT
    )
    await container.activate_deployment().execute(created.deployment_id, CONTEXT)


def _begin(step_id: str) -> list[EventRequest]:
    """A step's first events, as the engine writes them."""
    data = {"stepName": "inc", "input": [1]}
    return [EventRequest(EventType.STEP_CREATED, step_id, None, data),
            EventRequest(EventType.STEP_STARTED, step_id)]  # fmt: skip


async def test_a_trigger_is_one_transaction_of_the_minimum_statements(traced: Traced) -> None:
    trigger = traced.container.trigger_run()
    await trigger.execute(Trigger("zero", "warm", "key_a"), CONTEXT)
    traced.statements.clear()
    await trigger.execute(Trigger("zero", "k1", "key_a"), CONTEXT)
    assert traced.verbs() == [
        "BEGIN",
        "SELECT active_deployment",
        "INSERT runs",
        "INSERT queue_messages",
        "INSERT idempotency_records",
        "INSERT audit_log",
        "INSERT events",
        "COMMIT",
    ]
    traced.statements.clear()
    replayed = await trigger.execute(Trigger("zero", "k1", "key_a"), CONTEXT)
    assert replayed.replayed
    assert traced.verbs()[-1] == "ROLLBACK"  # the replay's run is never written


async def test_a_step_is_one_transaction_reading_the_run_with_the_finished_step_once(
    traced: Traced,
) -> None:
    run = (await traced.container.trigger_run().execute(Trigger("zero", "k", "key_a"), CONTEXT)).run
    record = traced.container.record_run_events()

    await record.execute(run.run_id, [EventRequest(EventType.RUN_STARTED), *_begin("step_1")])
    traced.statements.clear()
    done = EventRequest(EventType.STEP_COMPLETED, "step_1", None, {"result": 2})
    await record.execute(run.run_id, [done, *_begin("step_2")])
    assert traced.verbs() == [
        "BEGIN",
        "SELECT runs",
        "UPDATE runs",
        "INSERT steps",
        "UPDATE steps",
        "INSERT events",
        "INSERT events",
        "INSERT events",
        "COMMIT",
    ]


def _without_polls(verbs: list[str]) -> list[str]:
    """A transaction without the engine's queue polls (every 0.5 s; a claim that found
    nothing is a SELECT alone), which group commit may have batched with the units under
    test, and without the savepoints that batching wraps each unit in."""
    return [verb for verb in verbs if verb not in ("SELECT queue_messages", "SAVEPOINT", "RELEASE")]


@pytest.mark.parametrize("traced", [True], ids=["executing"], indirect=True)
async def test_a_run_accepted_where_it_executes_costs_two_transactions(traced: Traced) -> None:
    trigger, reader = traced.container.trigger_run(), traced.container.world_reader()
    warm = (await trigger.execute(Trigger("zero", "warm", "key_a"), CONTEXT)).run
    await _until_completed(reader, warm.run_id)
    traced.statements.clear()
    run = (await trigger.execute(Trigger("zero", "k1", "key_a"), CONTEXT)).run
    await _until_completed(reader, run.run_id)
    touching = ("runs", "events", "run_leases", "queue_messages")
    transactions = [verbs for verbs in map(_without_polls, _transactions(traced.verbs()))
                    if any(verb.split()[-1] in touching for verb in verbs)]  # fmt: skip
    trigger_commit, final_commit = transactions  # no claim, no lease taken, none released
    assert trigger_commit == [
        "BEGIN", "SELECT active_deployment", "INSERT runs", "INSERT run_leases",
        "INSERT idempotency_records", "INSERT audit_log", "INSERT events", "COMMIT",
    ]  # fmt: skip
    assert "DELETE run_leases" in final_commit and final_commit[-1] == "COMMIT"
    assert "SELECT events" not in final_commit  # run_started answers the engine no log
    writes = [verb for verb in traced.verbs() if not verb.startswith(("SELECT", "BEGIN", "COMMIT"))]
    assert not any("queue_messages" in verb for verb in writes)  # the run never was a message


async def _until_completed(reader: WorldReader, run_id: str) -> None:
    for _ in range(500):
        found = await reader.get_run(run_id)
        if found is not None and found.status == "completed":
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{run_id} did not complete")


def _transactions(verbs: list[str]) -> list[list[str]]:
    found: list[list[str]] = []
    for verb in verbs:
        if verb == "BEGIN":
            found.append([])
        if found:
            found[-1].append(verb)
    return found


@pytest.fixture
async def traced_postgres(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Traced]:
    """The same, on PostgreSQL: the statements of SQLAlchemy's asyncpg cursor (BEGIN
    and COMMIT, asyncpg's own, are not among them)."""
    settings = Settings.load({"data_dir": tmp_path, "database_url": postgres_url,
                              "schedule_poll_seconds": 0}, env={})  # fmt: skip
    runtime = Runtime(settings, execute=False)
    found = Traced(runtime.container)

    for method in ("execute", "executemany"):
        original = getattr(AsyncAdapt_asyncpg_cursor, method)

        def traced(cursor: Any, operation: str, *args: Any, _original: Any = original) -> Any:
            found.statements.append(operation)
            return _original(cursor, operation, *args)

        monkeypatch.setattr(AsyncAdapt_asyncpg_cursor, method, traced)

    async with runtime as container:
        await _deploy(container)
        yield found


async def test_a_step_on_postgresql_is_four_round_trips(traced_postgres: Traced) -> None:
    """Its writes (the run's marker, the new step, the finished one, three events) go in
    one statement: between BEGIN and COMMIT, the run (locked) with the finished step, and
    the writes."""
    traced = traced_postgres
    trigger = traced.container.trigger_run()
    run = (await trigger.execute(Trigger("zero", "k", "key_a"), CONTEXT)).run
    record, reader = traced.container.record_run_events(), traced.container.world_reader()

    await record.execute(run.run_id, [EventRequest(EventType.RUN_STARTED), *_begin("step_1")])
    traced.statements.clear()
    done = EventRequest(EventType.STEP_COMPLETED, "step_1", None, {"result": 2})
    await record.execute(run.run_id, [done, *_begin("step_2")])
    assert traced.verbs() == ["SELECT runs", "WITH"]

    first = await reader.get_step(run.run_id, "step_1")
    second = await reader.get_step(run.run_id, "step_2")
    assert first is not None and (first.status, first.output) == ("completed", 2)
    assert second is not None and (second.status, second.attempt) == ("running", 1)
    found = await reader.get_run(run.run_id)
    assert found is not None and found.status == "running"
    logged = await _event_types(reader, run.run_id)
    assert logged[-3:] == [EventType.STEP_COMPLETED, EventType.STEP_CREATED, EventType.STEP_STARTED]

    # a step whose id is taken: the one statement writes nothing, the unit is refused
    traced.statements.clear()
    again = [EventRequest(EventType.STEP_CREATED, "step_2", None, {"stepName": "inc", "input": []}),
             EventRequest(EventType.RUN_COMPLETED, None, None, {"output": 1})]  # fmt: skip
    with pytest.raises(errors.EntityConflict):
        await record.execute(run.run_id, again)
    found = await reader.get_run(run.run_id)
    assert found is not None and found.status == "running"
    assert await _event_types(reader, run.run_id) == logged


async def _event_types(reader: WorldReader, run_id: str) -> list[EventType]:
    page = await reader.list_events(run_id, PageRequest(limit=100, sort_order="asc"))
    return [found.event_type for found in page.data]


async def test_a_flush_past_the_one_statement_limits_goes_row_by_row_on_postgresql(
    traced_postgres: Traced,
) -> None:
    traced = traced_postgres
    run = (await traced.container.trigger_run().execute(Trigger("zero", "k", "key_a"), CONTEXT)).run
    record, reader = traced.container.record_run_events(), traced.container.world_reader()
    await record.execute(run.run_id, [EventRequest(EventType.RUN_STARTED)])
    many = [event for index in range(MAX_STEPS + 1) for event in _begin(f"step_{index}")]
    traced.statements.clear()
    await record.execute(run.run_id, many)  # 9 new steps, 18 events: past MAX_STEPS
    assert "WITH" not in traced.verbs()
    assert traced.verbs().count("INSERT steps") == MAX_STEPS + 1
    page = await reader.list_steps(run.run_id, PageRequest(limit=100, sort_order="asc"))
    assert len(page.data) == MAX_STEPS + 1
    assert {step.status for step in page.data} == {"running"}
