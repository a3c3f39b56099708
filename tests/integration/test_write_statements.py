"""How many statements the hot write paths send to SQLite (not a timing: a count).

The writer thread's connection traces every statement it runs; a change that adds a
round trip to a trigger shows here. The floor of a trigger: BEGIN, the active
deployment, the run, its queue message, the idempotency record, the audit entry,
the run's events, COMMIT."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from compute_worker.app.container import Container
from compute_worker.app.runtime import Runtime
from compute_worker.app.settings import Settings
from compute_worker.domain.audit import RequestContext
from compute_worker.domain.use_cases.deployments import NewDeployment
from compute_worker.domain.use_cases.trigger_run import Trigger

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
        """Each statement as its verb and table, e.g. ``INSERT runs``."""
        shown = []
        for sql in self.statements:
            words = sql.replace("(", " ").split()
            verb = words[0].upper()
            table = {"INSERT": 2, "SELECT": 3, "UPDATE": 1, "DELETE": 2}.get(verb)
            if verb == "SELECT":
                table = words.index("FROM") + 1
            shown.append(verb if table is None else f"{verb} {words[table].split('.')[0]}")
        return shown


@pytest.fixture
async def traced(tmp_path: Path) -> AsyncIterator[Traced]:
    runtime = Runtime(Settings.load({"data_dir": tmp_path}, env={}))
    found = Traced(runtime.container)
    engine = runtime.container.database().writer_engine
    assert engine is not None

    @event.listens_for(engine, "connect")
    def _trace(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_trace_callback(found.statements.append)

    async with runtime as container:
        created = await container.create_deployment().execute(
            NewDeployment("python", {"workflows.py": WORKFLOWS}), CONTEXT
        )
        await container.activate_deployment().execute(created.deployment_id, CONTEXT)
        yield found


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
