"""The four hand-written shapes of a run, step, event and hook agree: the SQL rows
(``adapters/sql/rows.py``, through a real database), the wire (``adapters/http/wire.py``),
the readers of the process backend's child (``adapters/world_wire.py``) and the OpenAPI
schemas (``adapters/http/wire_schemas.py``). Each entity below sets every field, so a
field one of them forgets fails here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from compute_worker.adapters import codec, world_wire
from compute_worker.adapters.http import wire
from compute_worker.adapters.http.wire_schemas import SCHEMAS
from compute_worker.adapters.sql import rows
from compute_worker.adapters.sql.schema import events, hooks, metadata, runs, steps, waits
from compute_worker.domain.execution import ExecutionRecord, RetryPolicy
from compute_worker.domain.world import (
    Event,
    EventResult,
    EventType,
    Hook,
    Run,
    Step,
    StructuredError,
    Wait,
)

T0 = datetime(2026, 11, 24, 14, 41, 27, 123000, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


ERROR = StructuredError("it broke", "Traceback …\nValueError: it broke", "USER_ERROR")
RUN = Run(
    run_id="wrun_01M8VPM30852TKQ3HE99GRFHEE",
    status="completed",
    deployment_id="dpl_01M8VPM30852TKQ3HE99GRFHEF",
    workflow_name="checkout",
    input=["order-42", {"bytes": b"\x00\xff"}],
    created_at=at(0),
    updated_at=at(9),
    spec_version=3,
    execution_context={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    output={"receipt": "r-1"},
    error=ERROR,
    started_at=at(1),
    completed_at=at(8),
    expired_at=at(10),
    attributes={"$rootRunId": "wrun_01M8VPM30852TKQ3HE99GRFHE0", "team": "payments"},
    state_marker_ms=1_795_000_000_000,  # the store's own; never on the wire (compare=False)
)
STEP = Step(
    run_id=RUN.run_id,
    step_id="step_01M8VPM30852TKQ3HE99GRFHEG",
    step_name="charge",
    status="completed",
    input=[1, 2],
    created_at=at(2),
    updated_at=at(5),
    attempt=2,
    output={"charged": True},
    error=ERROR,
    started_at=at(3),
    completed_at=at(4),
    retry_after=at(6),
    spec_version=3,
)
EVENT = Event(
    event_id="evnt_01M8VPM30852TKQ3HE99GRFHEH",
    run_id=RUN.run_id,
    event_type=EventType.STEP_COMPLETED,
    created_at=at(4),
    correlation_id=STEP.step_id,
    event_data={"result": {"charged": True}},
    spec_version=3,
    occurred_at=at(3.5),
)
HOOK = Hook(
    run_id=RUN.run_id,
    hook_id="hook_01M8VPM30852TKQ3HE99GRFHEJ",
    token="approve:order-42",
    created_at=at(5),
    metadata={"node": "approval"},
    is_webhook=True,
    spec_version=3,
    owner_id="owner",
    project_id="project",
    environment="production",
    is_system=True,
)
WAIT = Wait(
    run_id=RUN.run_id,
    correlation_id="wait_01M8VPM30852TKQ3HE99GRFHEK",
    status="completed",
    created_at=at(6),
    updated_at=at(7),
    resume_at=at(6.5),
    completed_at=at(7),
    spec_version=3,
)
EXECUTION = ExecutionRecord(RUN.run_id, 2, 1, "did not start", at(3), at(5), "evnt_x")


# a spec ≥ 4 runtime's error: the bytes it serialized the thrown value to
SERIALIZED = Run(
    **{
        **{f.name: getattr(RUN, f.name) for f in fields(RUN)},
        "status": "failed",
        "output": None,
        "error": StructuredError("serialized error", None, "USER_ERROR", b"devl\x00\xff"),
    }
)


def test_every_field_is_set() -> None:
    """The entities above leave no field at its default, so each comparison is whole."""
    for entity in (RUN, STEP, EVENT, HOOK, WAIT):
        defaults = (None, "", (), {}, False)
        unset = [f.name for f in fields(entity) if getattr(entity, f.name) in defaults]
        assert unset == [], (type(entity).__name__, unset)


# -- SQL rows <-> domain, through the database ---------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'shapes.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        yield engine
    finally:
        await engine.dispose()


ROWS: list[tuple[Any, Any, Callable[[Any], dict[str, Any]], Callable[[Any], Any]]] = [
    (runs, RUN, rows.run_values, rows.run_from),
    (runs, SERIALIZED, rows.run_values, rows.run_from),
    (steps, STEP, rows.step_values, rows.step_from),
    (events, EVENT, rows.event_values, rows.event_from),
    (hooks, HOOK, rows.hook_values, rows.hook_from),
    (waits, WAIT, rows.wait_values, rows.wait_from),
]


async def test_rows_read_back_what_was_written(database: AsyncEngine) -> None:
    for table, entity, values, read in ROWS:
        async with database.begin() as conn:
            await conn.execute(insert(table).values(**values(entity)))
        async with database.connect() as conn:
            (row,) = (await conn.execute(select(table))).all()
        async with database.begin() as conn:
            await conn.execute(table.delete())
        assert read(row) == entity, table.name
        assert getattr(read(row), "state_marker_ms", None) == getattr(
            entity, "state_marker_ms", None
        )


# -- the wire, the child's decoder and the OpenAPI schemas -----------------------------------


def check(shape: str, written: dict[str, Any]) -> None:
    """``written`` is valid against the named component and uses no key it lacks."""
    schema = {**SCHEMAS[shape], "components": {"schemas": SCHEMAS}}
    Draft202012Validator(schema).validate(codec.loads(codec.dumps(written)))
    declared = _properties(SCHEMAS[shape])
    assert set(written) <= declared, (shape, sorted(set(written) - declared))


def _properties(schema: dict[str, Any]) -> set[str]:
    found = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        if "$ref" in part:
            found |= _properties(SCHEMAS[part["$ref"].rsplit("/", 1)[1]])
        else:
            found |= _properties(part)
    return found


def over_the_wire(written: dict[str, Any]) -> dict[str, Any]:
    """What a client reads: the JSON text, bytes revived."""
    decoded: dict[str, Any] = codec.loads(codec.dumps(written))
    return decoded


def test_the_child_decodes_every_field_the_wire_writes() -> None:
    assert world_wire.run_from(over_the_wire(world_wire.run_wire(RUN))) == RUN
    decoded = world_wire.run_from(over_the_wire(world_wire.run_wire(SERIALIZED)))
    assert decoded.error is not None and decoded.error.raw == b"devl\x00\xff"
    assert world_wire.step_from(over_the_wire(world_wire.step_wire(STEP))) == STEP
    assert world_wire.event_from(over_the_wire(world_wire.event_wire(EVENT))) == EVENT
    result = EventResult(
        event=EVENT, run=RUN, step=STEP, events=(EVENT, EVENT), cursor="c", has_more=False,
        max_events=25_000, step_created=True,
    )  # fmt: skip
    assert world_wire.result_from(over_the_wire(world_wire.event_result_wire(result))) == result


def test_the_world_lane_shapes_are_the_documented_ones() -> None:
    check("Run", world_wire.run_wire(RUN))
    check("Run", world_wire.run_wire(SERIALIZED))
    assert over_the_wire(world_wire.run_wire(SERIALIZED))["error"] == b"devl\x00\xff"
    check("Step", world_wire.step_wire(STEP))
    check("Event", world_wire.event_wire(EVENT))
    check("Hook", world_wire.hook_wire(HOOK))
    check("Wait", world_wire.wait_wire(WAIT))
    result = EventResult(EVENT, RUN, STEP, HOOK, WAIT, (EVENT,), "c", True, 25_000)
    check("EventResult", world_wire.event_result_wire(result))
    assert "stateMarkerMs" not in world_wire.run_wire(
        RUN
    ) and "state_marker_ms" not in world_wire.run_wire(RUN)


def test_the_public_lane_shapes_are_the_documented_ones() -> None:
    check("Run", wire.public_run_wire(RUN))
    pending = Run(**{**{f.name: getattr(RUN, f.name) for f in fields(RUN)}, "status": "running"})
    public = wire.public_run_wire(pending, execution=EXECUTION, policy=RetryPolicy())
    assert public["execution"] == wire.execution_wire(EXECUTION, RetryPolicy())
    check("Run", public)
    check("Execution", public["execution"])
    check("PublicStep", wire.public_step_wire(STEP))
    check("PublicEvent", wire.public_event_wire(EVENT))
    check("PublicHook", wire.public_hook_wire(HOOK, with_token=True))
    check("PublicHook", wire.public_hook_wire(HOOK, with_token=False))
