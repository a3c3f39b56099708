"""The one-statement flush of PostgreSQL: which shapes it takes and what it compiles to
(its behaviour against a real server: tests/integration/test_write_statements.py)."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql

from compute_worker.adapters.sql.pg_flush import (
    MAX_EVENTS,
    MAX_RUNS,
    FlushShape,
    flush_params,
    flush_statement,
)

RUN = ("b_run_id", "status", "updated_ms")
STEP = ("run_id", "step_id", "status")
DIRTY_STEP = ("b_run_id", "b_step_id", "status")
EVENT = ("event_id", "run_id", "event_type")


def shape(runs: int = 1, new: int = 1, dirty: int = 1, events: int = 3) -> FlushShape:
    return FlushShape((RUN,) * runs, (STEP,) * new, (DIRTY_STEP,) * dirty,
                      EVENT if events else None, events)  # fmt: skip


def test_a_step_unit_is_one_statement_counting_its_new_step() -> None:
    compiled = flush_statement(shape()).compile(dialect=postgresql.asyncpg.dialect())
    sql = " ".join(str(compiled).split())
    assert sql.startswith("WITH run_0 AS (UPDATE runs SET")
    assert "step_update_0 AS (UPDATE steps SET" in sql
    assert "new_events AS (INSERT INTO events" in sql
    assert "new_step_0 AS (INSERT INTO steps" in sql and "ON CONFLICT DO NOTHING" in sql
    assert sql.endswith("AS new_step_0")
    params = flush_params([{"b_run_id": "r", "status": "running", "updated_ms": 1}],
                          [{"run_id": "r", "step_id": "s2", "status": "running"}],
                          [{"b_run_id": "r", "b_step_id": "s1", "status": "completed"}],
                          [{"event_id": f"e{i}", "run_id": "r", "event_type": "t"}
                           for i in range(3)])  # fmt: skip
    assert set(params) == set(compiled.positiontup or ())
    assert (params["r0_b_run_id"], params["u0_b_step_id"], params["e2_event_id"]) == (
        "r", "s1", "e2")  # fmt: skip


def test_what_one_statement_takes() -> None:
    assert shape().statements == 4 and shape().fits
    assert shape(runs=0, new=0, dirty=0, events=2).statements == 1  # written as it is
    assert not shape(events=MAX_EVENTS + 1).fits
    assert not shape(new=5, dirty=4).fits
    assert not shape(runs=MAX_RUNS + 1).fits
