"""``SqlTransaction``: the Transaction port over one synchronous SQLAlchemy connection.

It runs inside the group-commit writer's transaction (see ``writer.py``); it never
begins or commits by itself. Statements are built once per dialect with bound
parameters, so the hot path pays neither statement construction nor cache-key
generation (that, not SQLite, dominated a write when built per call).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    Delete,
    Insert,
    Select,
    Update,
    and_,
    bindparam,
    delete,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from compute_worker.adapters import codec
from compute_worker.adapters.sql import rows
from compute_worker.adapters.sql.deployments import ACTIVE_SLOT
from compute_worker.adapters.sql.dialect import insert_ignoring_conflicts, locked, upsert
from compute_worker.adapters.sql.pg_flush import FlushShape, flush_params, flush_statement
from compute_worker.adapters.sql.prepared import Cursor
from compute_worker.adapters.sql.schema import (
    active_deployment,
    audit_log,
    deployments,
    events,
    hooks,
    idempotency_records,
    queue_keys,
    queue_messages,
    run_execution,
    run_leases,
    runs,
    schedules,
    steps,
    stream_chunks,
    stream_runs,
    waits,
    webhook_deliveries,
)
from compute_worker.domain import errors
from compute_worker.domain.audit import AuditEntry
from compute_worker.domain.deployments import Deployment, Endpoint
from compute_worker.domain.execution import ExecutionRecord
from compute_worker.domain.idempotency import IdempotencyRecord
from compute_worker.domain.pagination import Position
from compute_worker.domain.ports.transactions import Transaction
from compute_worker.domain.schedules import ScheduleState
from compute_worker.domain.wdk import serial_run_id
from compute_worker.domain.world import Event, Hook, QueueMessage, Run, Step, Wait


@dataclass(frozen=True, slots=True)
class _Statements:
    lock_run: Select[Any]
    lock_run_with_step: Select[Any]
    insert_run: Insert
    update_run: Update
    get_step: Select[Any]
    insert_step: Insert
    update_step: Update
    get_hook: Select[Any]
    get_hook_by_token: Select[Any]
    insert_hook: Insert
    delete_hook: Delete
    get_wait: Select[Any]
    insert_wait: Insert
    update_wait: Update
    delete_run_hooks: Delete
    delete_run_waits: Delete
    last_event_id: Select[Any]
    insert_events: Insert
    run_events: Select[Any]
    run_events_after: Select[Any]
    stream_closed: Select[Any]
    open_streams: Select[Any]
    insert_chunks: Insert
    register_stream: Insert
    find_key: Select[Any]
    get_deployment: Select[Any]
    active_deployment: Select[Any]
    insert_deployment: Insert
    set_endpoint: Update
    set_active: Insert
    record_idempotency: Insert
    get_idempotency: Select[Any]
    insert_audit: Insert
    record_delivery: Insert
    delete_key: Delete
    insert_message: Insert
    insert_key: Insert
    insert_lease: Insert
    delete_lease: Delete
    get_execution: Select[Any]
    put_execution: Insert
    lock_schedule: Select[Any]
    all_schedules: Select[Any]
    put_schedule: Insert
    delete_schedule: Delete


@cache
def statements(dialect: str) -> _Statements:
    run_id: Any = bindparam("b_run_id")
    step_id: Any = bindparam("b_step_id")
    latest_event = (
        select(events.c.event_id)
        .where(events.c.run_id == runs.c.run_id)
        .order_by(events.c.created_ms.desc(), events.c.event_id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return _Statements(
        lock_run=locked(
            dialect,
            select(runs, latest_event.label("last_event_id")).where(runs.c.run_id == run_id),
        ),
        lock_run_with_step=locked(
            dialect,
            select(runs, latest_event.label("last_event_id"), *_prefixed(steps, _STEP))
            .outerjoin(steps, and_(steps.c.run_id == runs.c.run_id, steps.c.step_id == step_id))
            .where(runs.c.run_id == run_id),
            of=runs,
        ),
        insert_run=insert_ignoring_conflicts(dialect, runs),
        update_run=update(runs).where(runs.c.run_id == run_id),
        get_step=select(steps).where(
            steps.c.run_id == run_id, steps.c.step_id == bindparam("b_step_id")
        ),
        insert_step=insert_ignoring_conflicts(dialect, steps),
        update_step=update(steps).where(
            steps.c.run_id == run_id, steps.c.step_id == bindparam("b_step_id")
        ),
        get_hook=select(hooks).where(hooks.c.hook_id == bindparam("b_hook_id")),
        get_hook_by_token=select(hooks).where(hooks.c.token == bindparam("b_token")),
        insert_hook=insert_ignoring_conflicts(dialect, hooks),
        delete_hook=delete(hooks).where(hooks.c.hook_id == bindparam("b_hook_id")),
        get_wait=select(waits).where(
            waits.c.run_id == run_id, waits.c.correlation_id == bindparam("b_corr")
        ),
        insert_wait=waits.insert(),
        update_wait=update(waits).where(
            waits.c.run_id == run_id, waits.c.correlation_id == bindparam("b_corr")
        ),
        delete_run_hooks=delete(hooks).where(hooks.c.run_id == run_id),
        delete_run_waits=delete(waits).where(waits.c.run_id == run_id),
        last_event_id=select(events.c.event_id)
        .where(events.c.run_id == run_id)
        .order_by(events.c.created_ms.desc(), events.c.event_id.desc())
        .limit(1),
        insert_events=events.insert(),
        run_events=select(events)
        .where(events.c.run_id == run_id)
        .order_by(events.c.created_ms, events.c.event_id),
        run_events_after=select(events)
        .where(
            events.c.run_id == run_id,
            or_(
                events.c.created_ms > bindparam("b_after_ms"),
                and_(
                    events.c.created_ms == bindparam("b_after_ms"),
                    events.c.event_id > bindparam("b_after_id"),
                ),
            ),
        )
        .order_by(events.c.created_ms, events.c.event_id)
        .limit(bindparam("b_limit")),
        stream_closed=select(stream_chunks.c.seq)
        .where(stream_chunks.c.name == bindparam("b_name"), stream_chunks.c.eof.is_(True))
        .limit(1),
        open_streams=select(stream_runs.c.name)
        .where(
            stream_runs.c.run_id == run_id,
            ~select(stream_chunks.c.seq)
            .where(stream_chunks.c.name == stream_runs.c.name, stream_chunks.c.eof.is_(True))
            .exists(),
        )
        .order_by(stream_runs.c.name),
        insert_chunks=stream_chunks.insert(),
        register_stream=insert_ignoring_conflicts(dialect, stream_runs),
        find_key=select(queue_keys.c.message_id, queue_keys.c.expires_ms).where(
            queue_keys.c.idempotency_key == bindparam("b_key")
        ),
        delete_key=delete(queue_keys).where(queue_keys.c.idempotency_key == bindparam("b_key")),
        insert_message=queue_messages.insert(),
        get_deployment=select(deployments).where(
            deployments.c.deployment_id == bindparam("b_deployment_id")
        ),
        active_deployment=select(active_deployment.c.deployment_id).where(
            active_deployment.c.slot == ACTIVE_SLOT
        ),
        insert_deployment=deployments.insert(),
        set_endpoint=update(deployments).where(
            deployments.c.deployment_id == bindparam("b_deployment_id")
        ),
        set_active=_upsert_active(dialect),
        record_idempotency=_upsert_unless_live(dialect),
        get_idempotency=select(idempotency_records).where(
            idempotency_records.c.scope == bindparam("b_scope"),
            idempotency_records.c.idem_key == bindparam("b_key"),
            idempotency_records.c.expires_ms > bindparam("b_now"),
        ),
        insert_audit=audit_log.insert(),
        record_delivery=insert_ignoring_conflicts(dialect, webhook_deliveries),
        insert_key=queue_keys.insert(),
        insert_lease=run_leases.insert(),
        delete_lease=delete(run_leases).where(run_leases.c.run_id == run_id),
        get_execution=select(run_execution).where(run_execution.c.run_id == run_id),
        put_execution=upsert(dialect, run_execution),
        lock_schedule=locked(
            dialect, select(schedules).where(schedules.c.name == bindparam("b_name"))
        ),
        all_schedules=locked(dialect, select(schedules).order_by(schedules.c.name)),
        put_schedule=upsert(dialect, schedules),
        delete_schedule=delete(schedules).where(schedules.c.name == bindparam("b_name")),
    )


def _prefixed(table: Any, prefix: str) -> list[Any]:
    return [column.label(f"{prefix}{column.name}") for column in table.c]


def _upsert_active(dialect: str) -> Insert:
    module: Any = postgresql if dialect == "postgresql" else sqlite
    statement = module.insert(active_deployment)
    upsert: Insert = statement.on_conflict_do_update(
        index_elements=[active_deployment.c.slot],
        set_={
            "deployment_id": statement.excluded.deployment_id,
            "updated_ms": statement.excluded.updated_ms,
        },
    )
    return upsert


def _upsert_unless_live(dialect: str) -> Insert:
    """The idempotency record, written in one statement: inserted, or replacing an
    expired record of the same key; a live one is left alone (rowcount 0)."""
    module: Any = postgresql if dialect == "postgresql" else sqlite
    statement = module.insert(idempotency_records)
    keys = ("scope", "idem_key")
    upsert: Insert = statement.on_conflict_do_update(
        index_elements=list(keys),
        set_={c.name: statement.excluded[c.name] for c in idempotency_records.columns
              if c.name not in keys},
        where=idempotency_records.c.expires_ms <= bindparam("b_now"),
    )  # fmt: skip
    return upsert


_UNREAD: Any = object()
_STEP = "step_"  # the prefix of a step's columns read with its run (``lock_run_with_step``)


def _columns_of(row: Any, prefix: str) -> SimpleNamespace:
    """The columns of ``row`` named ``<prefix><name>``, by their own names."""
    return SimpleNamespace(**{name[len(prefix) :]: value for name, value
                              in row._asdict().items() if name.startswith(prefix)})  # fmt: skip


def _step_taken(key: tuple[str, str]) -> None:
    details = {"runId": key[0], "stepId": key[1]}
    raise errors.EntityConflict(f'Step "{key[1]}" already exists', details)


class SqlTransaction(Transaction):
    def __init__(
        self,
        conn: Connection,
        cursor: Cursor | None = None,
        deployments: dict[str, Deployment] | None = None,
    ) -> None:
        self.conn = conn
        self.cursor = cursor or Cursor(conn)
        # deployment rows never change once created (only the active pointer moves),
        # so the writer lends every unit one memo of those it has read
        self._deployments = {} if deployments is None else deployments
        self.sql = statements(conn.dialect.name)
        self._one_statement_flush = conn.dialect.name == "postgresql"
        self.callbacks: list[Callable[[], Any]] = []
        # what this unit already read or wrote: nobody else writes these rows meanwhile
        # (SQLite: one writer; PostgreSQL: the run row is locked), so no need to re-read
        self._last_event_ids: dict[str, str | None] = {}
        self._runs: dict[str, Run | None] = {}
        self._active: str | None = _UNREAD  # the active deployment's id, once read
        self._steps: dict[tuple[str, str], Step | None] = {}
        # written once, at the end of the unit (``flush``): a step's created, started and
        # completed states in one unit cost one row write, its events one statement
        self._dirty_runs: dict[str, dict[str, Any]] = {}  # the update_run parameters
        self._new_steps: set[tuple[str, str]] = set()
        self._dirty_steps: set[tuple[str, str]] = set()
        self._new_events: list[dict[str, Any]] = []

    def after_commit(self, callback: Callable[[], Any]) -> None:
        self.callbacks.append(callback)

    def _first(self, statement: Any, **params: Any) -> Any:
        return self.cursor.first(statement, params)

    def _count(self, statement: Any, params: dict[str, Any]) -> int:
        return self.cursor.execute(statement, params)

    # -- runs ---------------------------------------------------------------------------

    def lock_run(self, run_id: str) -> Run | None:
        if run_id in self._runs:
            return self._runs[run_id]
        return self._hold(run_id, self._first(self.sql.lock_run, b_run_id=run_id))

    def lock_run_with_step(self, run_id: str, step_id: str) -> tuple[Run | None, Step | None]:
        if run_id in self._runs:
            return self._runs[run_id], self.get_step(run_id, step_id)
        row = self._first(self.sql.lock_run_with_step, b_run_id=run_id, b_step_id=step_id)
        run = self._hold(run_id, row)
        found = None if row is None else getattr(row, f"{_STEP}step_id")
        step = None if found is None else rows.step_from(_columns_of(row, _STEP))
        return run, self._steps.setdefault((run_id, step_id), step)

    def _hold(self, run_id: str, row: Any) -> Run | None:
        """Keep the run ``row`` read (locked), and its last event id, for the unit."""
        self._last_event_ids[run_id] = None if row is None else row.last_event_id
        run = self._runs[run_id] = None if row is None else rows.run_from(row)
        return run

    def note_new_run(self, run_id: str) -> None:
        self._runs[run_id] = None
        self._last_event_ids[run_id] = None

    def insert_run(self, run: Run) -> bool:
        inserted = self._count(self.sql.insert_run, rows.run_values(run)) == 1
        if inserted:
            self._runs[run.run_id] = run
        return inserted

    def update_run(self, run: Run) -> None:
        values = rows.run_values(run, immutable=False)
        self._dirty_runs[run.run_id] = {"b_run_id": run.run_id, **values}  # at ``flush``
        self._runs[run.run_id] = run

    # -- steps --------------------------------------------------------------------------

    def get_step(self, run_id: str, step_id: str) -> Step | None:
        key = (run_id, step_id)
        if key in self._steps:
            return self._steps[key]
        row = self._first(self.sql.get_step, b_run_id=run_id, b_step_id=step_id)
        step = self._steps[key] = None if row is None else rows.step_from(row)
        return step

    def step_to_create(self, run_id: str, step_id: str) -> Step | None:
        return self._steps.get((run_id, step_id))  # else the insert finds out (flush)

    def insert_step(self, step: Step) -> bool:
        key = (step.run_id, step.step_id)
        if self._steps.get(key) is not None:  # one not read here: the deferred insert checks
            return False
        self._steps[key] = step
        self._new_steps.add(key)
        return True

    def update_step(self, step: Step) -> None:
        key = (step.run_id, step.step_id)
        self._steps[key] = step
        if key not in self._new_steps:
            self._dirty_steps.add(key)

    def flush(self) -> None:
        """Write what this unit deferred; before its savepoint is released. On
        PostgreSQL in one statement (``pg_flush``), else one statement per row and one
        for the events."""
        new_keys = list(self._new_steps)
        new_steps = [rows.step_values(self._step(key)) for key in new_keys]
        dirty_steps = [
            {"b_run_id": key[0], "b_step_id": key[1],
             **rows.step_values(self._step(key), immutable=False)}
            for key in self._dirty_steps
        ]  # fmt: skip
        dirty_runs = list(self._dirty_runs.values())
        new_events = self._new_events
        self._dirty_runs, self._new_events = {}, []
        self._new_steps.clear()
        self._dirty_steps.clear()
        if self._one_statement_flush:
            shape = FlushShape(
                run_keys=tuple(tuple(row) for row in dirty_runs),
                new_step_keys=tuple(tuple(row) for row in new_steps),
                dirty_step_keys=tuple(tuple(row) for row in dirty_steps),
                event_keys=tuple(new_events[0]) if new_events else None,
                events=len(new_events),
            )
            if shape.fits and shape.statements > 1:
                params = flush_params(dirty_runs, new_steps, dirty_steps, new_events)
                written = self.cursor.first(flush_statement(shape), params)
                for index, key in enumerate(new_keys):
                    if written is None or written[index] != 1:
                        _step_taken(key)
                return
        for params in dirty_runs:
            self.cursor.execute(self.sql.update_run, params)
        for key, values in zip(new_keys, new_steps, strict=True):
            if self._count(self.sql.insert_step, values) != 1:
                _step_taken(key)
        for params in dirty_steps:
            self.cursor.execute(self.sql.update_step, params)
        if new_events:
            self.cursor.execute_many(self.sql.insert_events, new_events)

    def _step(self, key: tuple[str, str]) -> Step:
        step = self._steps[key]
        assert step is not None
        return step

    # -- hooks and waits ----------------------------------------------------------------

    def get_hook(self, hook_id: str) -> Hook | None:
        row = self._first(self.sql.get_hook, b_hook_id=hook_id)
        return None if row is None else rows.hook_from(row)

    def get_hook_by_token(self, token: str) -> Hook | None:
        row = self._first(self.sql.get_hook_by_token, b_token=token)
        return None if row is None else rows.hook_from(row)

    def insert_hook(self, hook: Hook) -> bool:
        return self._count(self.sql.insert_hook, rows.hook_values(hook)) == 1

    def delete_hook(self, hook_id: str) -> bool:
        return self._count(self.sql.delete_hook, {"b_hook_id": hook_id}) == 1

    def get_wait(self, run_id: str, correlation_id: str) -> Wait | None:
        row = self._first(self.sql.get_wait, b_run_id=run_id, b_corr=correlation_id)
        return None if row is None else rows.wait_from(row)

    def insert_wait(self, wait: Wait) -> None:
        self.cursor.execute(self.sql.insert_wait, rows.wait_values(wait))

    def update_wait(self, wait: Wait) -> None:
        values = rows.wait_values(wait)
        del values["run_id"], values["correlation_id"], values["created_ms"]
        params = {"b_run_id": wait.run_id, "b_corr": wait.correlation_id, **values}
        self.cursor.execute(self.sql.update_wait, params)

    def delete_hooks_and_waits(self, run_id: str) -> None:
        self.cursor.execute(self.sql.delete_run_hooks, {"b_run_id": run_id})
        self.cursor.execute(self.sql.delete_run_waits, {"b_run_id": run_id})

    # -- events -------------------------------------------------------------------------

    def last_event_id(self, run_id: str) -> str | None:
        if run_id in self._last_event_ids:
            return self._last_event_ids[run_id]
        row = self._first(self.sql.last_event_id, b_run_id=run_id)
        return None if row is None else row[0]

    def insert_events(self, new_events: Sequence[Event]) -> None:
        for event in new_events:
            self._new_events.append(rows.event_values(event))
            self._last_event_ids[event.run_id] = event.event_id

    def run_events(self, run_id: str) -> list[Event]:
        self.flush()
        found = self.cursor.all(self.sql.run_events, {"b_run_id": run_id})
        return [rows.event_from(row) for row in found]

    def run_events_after(self, run_id: str, after: Position, limit: int) -> list[Event]:
        self.flush()
        params = {"b_run_id": run_id, "b_after_ms": after.created_ms,
                  "b_after_id": after.item_id, "b_limit": limit}  # fmt: skip
        return [rows.event_from(row) for row in self.cursor.all(self.sql.run_events_after, params)]

    # -- streams ------------------------------------------------------------------------

    def stream_is_closed(self, name: str) -> bool:
        return self._first(self.sql.stream_closed, b_name=name) is not None

    def open_streams(self, run_id: str) -> list[str]:
        return [row[0] for row in self.cursor.all(self.sql.open_streams, {"b_run_id": run_id})]

    def append_chunks(
        self, name: str, run_id: str, chunks: Sequence[tuple[str, bytes]], eof_chunk_id: str | None
    ) -> None:
        now = time.time_ns() // 1_000_000
        values = [
            {"name": name, "chunk_id": chunk_id, "run_id": run_id, "data": data, "eof": False}
            for chunk_id, data in chunks
        ]
        if eof_chunk_id is not None:
            values.append(
                {"name": name, "chunk_id": eof_chunk_id, "run_id": run_id, "data": b"", "eof": True}
            )
        if values:
            self.cursor.execute_many(
                self.sql.insert_chunks, [{**value, "created_ms": now} for value in values]
            )
        self.cursor.execute(
            self.sql.register_stream, {"run_id": run_id, "name": name, "created_ms": now}
        )

    # -- queue --------------------------------------------------------------------------

    def find_queued_by_key(self, idempotency_key: str, now: datetime) -> str | None:
        row = self._first(self.sql.find_key, b_key=idempotency_key)
        if row is None:
            return None
        if row.expires_ms <= rows.to_ms(now):
            self.cursor.execute(self.sql.delete_key, {"b_key": idempotency_key})
            return None
        message_id: str = row.message_id
        return message_id

    def insert_message(
        self, message: QueueMessage, available_at: datetime, key_expires_at: datetime | None
    ) -> None:
        self.cursor.execute(
            self.sql.insert_message,
            {
                "message_id": message.message_id,
                "queue_name": message.queue_name,
                "payload": codec.dumps_text(message.payload),
                "deployment_id": message.deployment_id,
                "idempotency_key": message.idempotency_key,
                "headers": codec.dumps_text(message.headers),
                "attempt": message.attempt,
                "available_ms": rows.to_ms(available_at),
                "lease_owner": None,
                "created_ms": rows.to_ms(message.created_at),
                "run_id": serial_run_id(message.queue_name, message.payload),
                "failures": 0,
            },
        )
        if message.idempotency_key is not None and key_expires_at is not None:
            self.cursor.execute(
                self.sql.insert_key,
                {
                    "idempotency_key": message.idempotency_key,
                    "message_id": message.message_id,
                    "expires_ms": rows.to_ms(key_expires_at),
                },
            )

    # -- the workflow engine's count of a run's troubles --------------------------------

    def get_execution(self, run_id: str) -> ExecutionRecord | None:
        row = self._first(self.sql.get_execution, b_run_id=run_id)
        return None if row is None else rows.execution_from(row)

    def put_execution(self, record: ExecutionRecord) -> None:
        self.cursor.execute(self.sql.put_execution, rows.execution_values(record))

    # -- the run's lease ----------------------------------------------------------------

    def lease_new_run(self, run_id: str, owner: str, expires_at: datetime) -> None:
        values = {"run_id": run_id, "owner": owner, "expires_ms": rows.to_ms(expires_at)}
        self.cursor.execute(self.sql.insert_lease, values)

    def end_run_lease(self, run_id: str) -> None:
        self.cursor.execute(self.sql.delete_lease, {"b_run_id": run_id})

    # -- deployments --------------------------------------------------------------------

    def get_deployment(self, deployment_id: str) -> Deployment | None:
        known = self._deployments.get(deployment_id)
        if known is None:
            row = self._first(self.sql.get_deployment, b_deployment_id=deployment_id)
            if row is None:
                return None
            known = self._deployments[deployment_id] = rows.deployment_from(row, None)
        return replace(known, active=self.active_deployment_id() == deployment_id)

    def active_deployment_id(self) -> str | None:
        if self._active is _UNREAD:
            row = self._first(self.sql.active_deployment)
            self._active = None if row is None else row.deployment_id
        return self._active

    def insert_deployment(self, deployment: Deployment) -> None:
        self.cursor.execute(self.sql.insert_deployment, rows.deployment_values(deployment))

    def set_endpoint(self, deployment_id: str, endpoint: Endpoint) -> None:
        self.cursor.execute(
            self.sql.set_endpoint,
            {"b_deployment_id": deployment_id, "endpoint": rows.encode_endpoint(endpoint)},
        )

    def set_active_deployment(self, deployment_id: str, at: datetime) -> None:
        values = {"slot": ACTIVE_SLOT, "deployment_id": deployment_id, "updated_ms": rows.to_ms(at)}
        self.cursor.execute(self.sql.set_active, values)
        self._active = deployment_id

    # -- schedules ----------------------------------------------------------------------

    def lock_schedule(self, name: str) -> ScheduleState | None:
        row = self._first(self.sql.lock_schedule, b_name=name)
        return None if row is None else rows.schedule_from(row)

    def lock_schedules(self) -> list[ScheduleState]:
        return [rows.schedule_from(row) for row in self.cursor.all(self.sql.all_schedules, {})]

    def put_schedule(self, state: ScheduleState) -> None:
        self.cursor.execute(self.sql.put_schedule, rows.schedule_values(state))

    def delete_schedule(self, name: str) -> None:
        self.cursor.execute(self.sql.delete_schedule, {"b_name": name})

    # -- idempotency, audit, webhook deliveries -----------------------------------------

    def record_idempotency(
        self, record: IdempotencyRecord, now: datetime
    ) -> IdempotencyRecord | None:
        values = {
            "scope": record.scope,
            "idem_key": record.key,
            "request_hash": record.request_hash,
            "status": record.status,
            "response": None if record.run is None else rows.encode_run_snapshot(record.run),
            "created_ms": rows.to_ms(now),
            "expires_ms": rows.to_ms(record.expires_at),
            "b_now": rows.to_ms(now),
        }
        if self._count(self.sql.record_idempotency, values) == 1:
            return None
        return self.idempotency_holder(record.scope, record.key, now)

    def idempotency_holder(self, scope: str, key: str, now: datetime) -> IdempotencyRecord | None:
        params = {"b_scope": scope, "b_key": key, "b_now": rows.to_ms(now)}
        row = self._first(self.sql.get_idempotency, **params)
        if row is None:
            return None
        return IdempotencyRecord(
            scope=row.scope,
            key=row.idem_key,
            request_hash=row.request_hash,
            expires_at=rows.at_ms(row.expires_ms),
            status=row.status,
            run=None if row.response is None else rows.decode_run_snapshot(row.response),
        )

    def append_audit(self, entry: AuditEntry) -> None:
        self.cursor.execute(self.sql.insert_audit, rows.audit_values(entry))

    def record_delivery(self, provider: str, delivery_id: str, payload: Any, at: datetime) -> bool:
        values = {
            "provider": provider,
            "delivery_id": delivery_id,
            "payload": codec.dumps_text(payload),
            "received_ms": rows.to_ms(at),
        }
        return self._count(self.sql.record_delivery, values) == 1
