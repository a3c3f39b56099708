"""Hand-written in-memory fakes of the ports that hold state (no mocks).

Every fake works on one shared :class:`FakeStore`. :class:`FakeUnitOfWork` gives
a unit of work a private copy of the store and swaps it in only when the unit
returns, so a unit that raises leaves nothing behind — the same all-or-nothing
the SQL writer gets from a savepoint. The contract suite in ``tests/contracts``
runs the same cases against these fakes and the SQL adapters, so they cannot drift.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from compute_worker.domain import errors
from compute_worker.domain.audit import AuditEntry
from compute_worker.domain.deployments import Deployment, DeploymentKind, Endpoint, WorkflowInfo
from compute_worker.domain.execution import ExecutionRecord
from compute_worker.domain.idempotency import IdempotencyRecord
from compute_worker.domain.pagination import Page, PageRequest, Position, encode_cursor
from compute_worker.domain.ports.audit import AuditLog, AuditQuery
from compute_worker.domain.ports.bundles import ArtifactStore, BundleLoader
from compute_worker.domain.ports.clock import Clock
from compute_worker.domain.ports.deployments import DeploymentReader
from compute_worker.domain.ports.queue import QueueConsumer
from compute_worker.domain.ports.schedules import ScheduleReader
from compute_worker.domain.ports.security import ApiKey, ApiKeyStore
from compute_worker.domain.ports.streams import StoredChunk, StreamReader, StreamSummary
from compute_worker.domain.ports.stuck import ScanMark, StuckRunStore
from compute_worker.domain.ports.transactions import Transaction, UnitOfWork
from compute_worker.domain.ports.webhooks import SignatureVerifier
from compute_worker.domain.ports.world import RunDetails, RunQuery, WorldReader
from compute_worker.domain.schedules import ScheduleState
from compute_worker.domain.stuck import FailingStep, RunProgress, StuckRun
from compute_worker.domain.world import Event, EventType, Hook, QueueMessage, Run, Step, Wait

T = TypeVar("T")
R = TypeVar("R")


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class FixedClock(Clock):
    """A clock that only moves when told to."""

    def __init__(self, now: datetime | None = None) -> None:
        start = now if now is not None else datetime.now(UTC)
        self._now = start.replace(microsecond=start.microsecond // 1000 * 1000)

    def now(self) -> datetime:
        return self._now

    def now_ms(self) -> int:
        return to_ms(self._now)

    def set(self, moment: datetime) -> None:
        self._now = moment

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


@dataclass(frozen=True, slots=True)
class _Queued:
    message: QueueMessage
    available_at: datetime
    lease_owner: str | None = None


@dataclass
class FakeStore:
    """All the state of the fake world. Entities are frozen; containers are copied per unit."""

    runs: dict[str, Run] = field(default_factory=dict)
    steps: dict[tuple[str, str], Step] = field(default_factory=dict)
    hooks: dict[str, Hook] = field(default_factory=dict)
    waits: dict[tuple[str, str], Wait] = field(default_factory=dict)
    events: dict[str, Event] = field(default_factory=dict)
    chunks: dict[str, list[StoredChunk]] = field(default_factory=dict)
    stream_runs: dict[str, list[str]] = field(default_factory=dict)
    messages: dict[str, _Queued] = field(default_factory=dict)
    queue_keys: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    deployments: dict[str, Deployment] = field(default_factory=dict)
    active_deployment: str | None = None
    idempotency: dict[tuple[str, str], IdempotencyRecord] = field(default_factory=dict)
    audit: list[AuditEntry] = field(default_factory=list)
    deliveries: dict[tuple[str, str], Any] = field(default_factory=dict)
    executions: dict[str, ExecutionRecord] = field(default_factory=dict)
    leases: dict[str, tuple[str, datetime]] = field(default_factory=dict)  # run id: owner, expiry
    schedules: dict[str, ScheduleState] = field(default_factory=dict)
    stuck: dict[str, StuckRun] = field(default_factory=dict)
    last_seq: int = 0

    def clone(self) -> FakeStore:
        twin = FakeStore(**{f.name: copy.copy(getattr(self, f.name)) for f in fields(self)})
        twin.chunks = {name: list(found) for name, found in self.chunks.items()}
        twin.stream_runs = {run_id: list(names) for run_id, names in self.stream_runs.items()}
        return twin

    def adopt(self, other: FakeStore) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(other, f.name))


class FakeTransaction(Transaction):
    """The Transaction primitives over a private copy of the store."""

    def __init__(self, state: FakeStore) -> None:
        self.state = state
        self.callbacks: list[Callable[[], Any]] = []

    def after_commit(self, callback: Callable[[], Any]) -> None:
        self.callbacks.append(callback)

    # -- runs, steps ----------------------------------------------------------------------

    def lock_run(self, run_id: str) -> Run | None:
        return self.state.runs.get(run_id)

    def note_new_run(self, run_id: str) -> None:
        assert run_id not in self.state.runs, f"{run_id} is not new"

    def insert_run(self, run: Run) -> bool:
        if run.run_id in self.state.runs:
            return False
        self.state.runs[run.run_id] = copy.deepcopy(run)
        return True

    def update_run(self, run: Run) -> None:
        old = self.state.runs.get(run.run_id)
        if old is not None:  # input and createdAt are immutable, as in the SQL adapter
            self.state.runs[run.run_id] = replace(
                copy.deepcopy(run), input=old.input, created_at=old.created_at
            )

    def step_to_create(self, run_id: str, step_id: str) -> Step | None:
        return self.get_step(run_id, step_id)

    def get_step(self, run_id: str, step_id: str) -> Step | None:
        return self.state.steps.get((run_id, step_id))

    def lock_run_with_step(self, run_id: str, step_id: str) -> tuple[Run | None, Step | None]:
        return self.lock_run(run_id), self.get_step(run_id, step_id)

    def insert_step(self, step: Step) -> bool:
        key = (step.run_id, step.step_id)
        if key in self.state.steps:
            return False
        self.state.steps[key] = copy.deepcopy(step)
        return True

    def update_step(self, step: Step) -> None:
        key = (step.run_id, step.step_id)
        old = self.state.steps.get(key)
        if old is not None:
            self.state.steps[key] = replace(
                copy.deepcopy(step),
                input=old.input,
                step_name=old.step_name,
                created_at=old.created_at,
            )

    # -- hooks, waits ---------------------------------------------------------------------

    def get_hook(self, hook_id: str) -> Hook | None:
        return self.state.hooks.get(hook_id)

    def get_hook_by_token(self, token: str) -> Hook | None:
        return next((h for h in self.state.hooks.values() if h.token == token), None)

    def insert_hook(self, hook: Hook) -> bool:
        if hook.hook_id in self.state.hooks or self.get_hook_by_token(hook.token) is not None:
            return False
        self.state.hooks[hook.hook_id] = copy.deepcopy(hook)
        return True

    def delete_hook(self, hook_id: str) -> bool:
        return self.state.hooks.pop(hook_id, None) is not None

    def get_wait(self, run_id: str, correlation_id: str) -> Wait | None:
        return self.state.waits.get((run_id, correlation_id))

    def insert_wait(self, wait: Wait) -> None:
        key = (wait.run_id, wait.correlation_id)
        if key in self.state.waits:
            raise errors.EntityConflict("The write conflicts with existing data")
        self.state.waits[key] = wait

    def update_wait(self, wait: Wait) -> None:
        key = (wait.run_id, wait.correlation_id)
        old = self.state.waits.get(key)
        if old is not None:
            self.state.waits[key] = replace(wait, created_at=old.created_at)

    def delete_hooks_and_waits(self, run_id: str) -> None:
        state = self.state
        state.hooks = {k: h for k, h in state.hooks.items() if h.run_id != run_id}
        state.waits = {k: w for k, w in state.waits.items() if w.run_id != run_id}

    # -- events ---------------------------------------------------------------------------

    def last_event_id(self, run_id: str) -> str | None:
        found = self.run_events(run_id)
        return found[-1].event_id if found else None

    def insert_events(self, events: Sequence[Event]) -> None:
        for event in events:
            if event.event_id in self.state.events:
                raise errors.EntityConflict("The write conflicts with existing data")
            self.state.events[event.event_id] = copy.deepcopy(event)

    def run_events(self, run_id: str) -> list[Event]:
        found = [e for e in self.state.events.values() if e.run_id == run_id]
        return sorted(found, key=lambda e: (to_ms(e.created_at), e.event_id))

    def run_events_after(self, run_id: str, after: Position, limit: int) -> list[Event]:
        mark = (after.created_ms, after.item_id)
        return [e for e in self.run_events(run_id) if _event_key(e) > mark][:limit]

    # -- streams --------------------------------------------------------------------------

    def stream_is_closed(self, name: str) -> bool:
        return any(chunk.eof for chunk in self.state.chunks.get(name, ()))

    def open_streams(self, run_id: str) -> list[str]:
        names = self.state.stream_runs.get(run_id, [])
        return sorted(name for name in names if not self.stream_is_closed(name))

    def append_chunks(
        self, name: str, run_id: str, chunks: Sequence[tuple[str, bytes]], eof_chunk_id: str | None
    ) -> None:
        rows = [(bytes(data), False) for _, data in chunks]
        if eof_chunk_id is not None:
            rows.append((b"", True))
        stored = self.state.chunks.setdefault(name, [])
        for data, eof in rows:
            self.state.last_seq += 1
            stored.append(StoredChunk(self.state.last_seq, data, eof))
        names = self.state.stream_runs.setdefault(run_id, [])
        if name not in names:
            names.append(name)

    # -- queue ----------------------------------------------------------------------------

    def find_queued_by_key(self, idempotency_key: str, now: datetime) -> str | None:
        found = self.state.queue_keys.get(idempotency_key)
        if found is None:
            return None
        message_id, expires_at = found
        if expires_at <= now:
            del self.state.queue_keys[idempotency_key]
            return None
        return message_id

    def insert_message(
        self, message: QueueMessage, available_at: datetime, key_expires_at: datetime | None
    ) -> None:
        if message.message_id in self.state.messages:
            raise errors.EntityConflict("The write conflicts with existing data")
        self.state.messages[message.message_id] = _Queued(copy.deepcopy(message), available_at)
        if message.idempotency_key is not None and key_expires_at is not None:
            self.state.queue_keys[message.idempotency_key] = (message.message_id, key_expires_at)

    # -- the engine's count of a run's troubles -------------------------------------------

    def get_execution(self, run_id: str) -> ExecutionRecord | None:
        return self.state.executions.get(run_id)

    def put_execution(self, record: ExecutionRecord) -> None:
        self.state.executions[record.run_id] = record

    # -- the run's lease ------------------------------------------------------------------

    def lease_new_run(self, run_id: str, owner: str, expires_at: datetime) -> None:
        assert run_id not in self.state.leases, f"{run_id} is leased already"
        self.state.leases[run_id] = (owner, expires_at)

    def end_run_lease(self, run_id: str) -> None:
        self.state.leases.pop(run_id, None)

    # -- deployments ----------------------------------------------------------------------

    def get_deployment(self, deployment_id: str) -> Deployment | None:
        found = self.state.deployments.get(deployment_id)
        if found is None:
            return None
        return replace(found, active=deployment_id == self.state.active_deployment)

    def active_deployment_id(self) -> str | None:
        return self.state.active_deployment

    def insert_deployment(self, deployment: Deployment) -> None:
        if deployment.deployment_id in self.state.deployments:
            raise errors.EntityConflict("The write conflicts with existing data")
        self.state.deployments[deployment.deployment_id] = replace(deployment, active=False)

    def set_endpoint(self, deployment_id: str, endpoint: Endpoint) -> None:
        found = self.state.deployments[deployment_id]
        self.state.deployments[deployment_id] = replace(found, endpoint=endpoint)

    def set_active_deployment(self, deployment_id: str, at: datetime) -> None:
        self.state.active_deployment = deployment_id

    # -- schedules ------------------------------------------------------------------------

    def lock_schedule(self, name: str) -> ScheduleState | None:
        return self.state.schedules.get(name)

    def lock_schedules(self) -> list[ScheduleState]:
        return [self.state.schedules[name] for name in sorted(self.state.schedules)]

    def put_schedule(self, state: ScheduleState) -> None:
        self.state.schedules[state.name] = state

    def delete_schedule(self, name: str) -> None:
        self.state.schedules.pop(name, None)

    # -- idempotency, audit, webhook deliveries -------------------------------------------

    def record_idempotency(
        self, record: IdempotencyRecord, now: datetime
    ) -> IdempotencyRecord | None:
        holder = self.idempotency_holder(record.scope, record.key, now)
        if holder is None:
            self.state.idempotency[(record.scope, record.key)] = record
        return holder

    def idempotency_holder(self, scope: str, key: str, now: datetime) -> IdempotencyRecord | None:
        holder = self.state.idempotency.get((scope, key))
        return holder if holder is not None and holder.expires_at > now else None

    def append_audit(self, entry: AuditEntry) -> None:
        self.state.audit.append(replace(entry, entry_id=len(self.state.audit) + 1))

    def record_delivery(self, provider: str, delivery_id: str, payload: Any, at: datetime) -> bool:
        key = (provider, delivery_id)
        if key in self.state.deliveries:
            return False
        self.state.deliveries[key] = copy.deepcopy(payload)
        return True


class FakeUnitOfWork(UnitOfWork):
    """Runs a unit on a copy of the store and adopts the copy only if the unit returns."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store

    async def run(self, work: Callable[[Transaction], R]) -> R:
        tx = FakeTransaction(self.store.clone())
        result = work(tx)  # before any await: units apply in call order, one at a time
        self.store.adopt(tx.state)
        for callback in tx.callbacks:
            callback()
        await asyncio.sleep(0)  # let other tasks run, as a real commit would
        return result


def _page(items: Iterable[T], position: Callable[[T], Position], page: PageRequest) -> Page[T]:
    """``domain.pagination`` order: ``(created_ms, id)``, limit+1, cursor of the last item."""

    def key(item: T) -> tuple[int, str]:
        at = position(item)
        return at.created_ms, at.item_id

    descending = page.sort_order == "desc"
    ordered = sorted(items, key=key, reverse=descending)
    if page.after is not None:
        mark = (page.after.created_ms, page.after.item_id)
        ordered = [i for i in ordered if (key(i) < mark if descending else key(i) > mark)]
    fetched = ordered[: page.limit + 1]
    has_more = len(fetched) > page.limit
    fetched = fetched[: page.limit]
    cursor = None
    if fetched:
        cursor = encode_cursor(position(fetched[-1]))
    elif page.after is not None:
        cursor = encode_cursor(page.after)
    return Page(tuple(fetched), cursor, has_more)


def _matches(run: Run, query: RunQuery, stuck: Mapping[str, StuckRun]) -> bool:
    created = to_ms(run.created_at)
    is_stuck = run.run_id in stuck and not run.is_terminal
    return (
        query.stuck in (None, is_stuck)
        and (not query.statuses or run.status in query.statuses)
        and query.workflow_name in (None, run.workflow_name)
        and query.deployment_id in (None, run.deployment_id)
        and (query.created_after is None or created > to_ms(query.created_after))
        and (query.created_before is None or created < to_ms(query.created_before))
    )


class FakeWorldReader(WorldReader):
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    async def get_run(self, run_id: str) -> Run | None:
        return self.store.runs.get(run_id)

    async def list_runs(self, page: PageRequest, query: RunQuery | None = None) -> Page[Run]:
        query = query or RunQuery()
        found = [run for run in self.store.runs.values() if _matches(run, query, self.store.stuck)]
        return _page(found, lambda r: Position(to_ms(r.created_at), r.run_id), page)

    async def get_step(self, run_id: str | None, step_id: str) -> Step | None:
        if run_id is not None:
            return self.store.steps.get((run_id, step_id))
        return next((s for s in self.store.steps.values() if s.step_id == step_id), None)

    async def list_steps(self, run_id: str, page: PageRequest) -> Page[Step]:
        found = [s for s in self.store.steps.values() if s.run_id == run_id]
        return _page(found, lambda s: Position(to_ms(s.created_at), s.step_id), page)

    async def get_event(self, run_id: str | None, event_id: str) -> Event | None:
        event = self.store.events.get(event_id)
        return event if event is not None and run_id in (None, event.run_id) else None

    async def list_events(self, run_id: str, page: PageRequest) -> Page[Event]:
        found = [e for e in self.store.events.values() if e.run_id == run_id]
        return _page(found, _event_position, page)

    async def list_events_by_correlation(
        self, correlation_id: str, page: PageRequest, run_id: str | None = None
    ) -> Page[Event]:
        found = [
            e for e in self.store.events.values()
            if e.correlation_id == correlation_id and run_id in (None, e.run_id)
        ]  # fmt: skip
        return _page(found, _event_position, page)

    async def get_hook(self, hook_id: str) -> Hook | None:
        return self.store.hooks.get(hook_id)

    async def get_hook_by_token(self, token: str) -> Hook | None:
        return next((h for h in self.store.hooks.values() if h.token == token), None)

    async def list_hooks(self, run_id: str | None, page: PageRequest) -> Page[Hook]:
        found = [h for h in self.store.hooks.values() if run_id is None or h.run_id == run_id]
        return _page(found, lambda h: Position(to_ms(h.created_at), h.hook_id), page)

    async def get_execution(self, run_id: str) -> ExecutionRecord | None:
        return self.store.executions.get(run_id)

    async def stuck_runs(self, run_ids: Sequence[str]) -> Mapping[str, StuckRun]:
        live = {r for r in run_ids if r in self.store.runs and not self.store.runs[r].is_terminal}
        return {r: self.store.stuck[r] for r in live if r in self.store.stuck}

    async def run_details(self, run_id: str, step_prefix: str) -> RunDetails | None:
        run = self.store.runs.get(run_id)
        if run is None:
            return None
        live = not run.is_terminal
        named = sorted(
            (s for s in self.store.steps.values()
             if s.run_id == run_id and s.step_name.startswith(step_prefix)),
            key=lambda s: (to_ms(s.created_at), s.step_id),
        )  # fmt: skip
        return RunDetails(
            run,
            self.store.executions.get(run_id) if live else None,
            self.store.stuck.get(run_id) if live else None,
            tuple(named),
        )


class FakeStuckRuns(StuckRunStore):
    """Reads live runs off the store as ``SqlStuckRuns`` reads them off the tables."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store

    async def live_runs(self, after: ScanMark | None, limit: int) -> Sequence[RunProgress]:
        live = sorted(
            (r for r in self.store.runs.values() if not r.is_terminal),
            key=lambda r: (to_ms(r.created_at), r.run_id),
        )
        if after is not None:
            mark = (to_ms(after[0]), after[1])
            live = [r for r in live if (to_ms(r.created_at), r.run_id) > mark]
        return [self._progress(run) for run in live[:limit]]

    def _progress(self, run: Run) -> RunProgress:
        store = self.store
        events = sorted((e for e in store.events.values() if e.run_id == run.run_id),
                        key=lambda e: (to_ms(e.created_at), e.event_id))  # fmt: skip
        moves = [e.created_at for e in events if e.event_type not in _ATTEMPT_EVENTS]
        sleeps = [w.resume_at or datetime.max.replace(tzinfo=UTC) for w in store.waits.values()
                  if w.run_id == run.run_id and w.status == "waiting"]  # fmt: skip
        failing = sorted(
            (s for s in store.steps.values() if s.run_id == run.run_id and not s.is_terminal
             and (s.error is not None or s.attempt > 1)),
            key=lambda s: -s.attempt,
        )  # fmt: skip
        return RunProgress(
            run_id=run.run_id,
            status=run.status,
            created_at=run.created_at,
            started_at=run.started_at,
            last_progress_at=max([run.created_at, *moves]),
            last_event_id=events[-1].event_id if events else None,
            execution=store.executions.get(run.run_id),
            hook_pending=any(h.run_id == run.run_id for h in store.hooks.values()),
            sleep_until=min(sleeps, default=None),
            failing_step=FailingStep(
                failing[0].step_name,
                failing[0].attempt,
                failing[0].error.message if failing[0].error else None,
            )
            if failing
            else None,
            recorded=store.stuck.get(run.run_id),
        )

    async def save(self, stuck: Sequence[StuckRun], cleared: Sequence[str]) -> None:
        for found in stuck:
            self.store.stuck[found.run_id] = found
        for run_id in cleared:
            self.store.stuck.pop(run_id, None)
        for run_id in list(self.store.stuck):
            run = self.store.runs.get(run_id)
            if run is not None and run.is_terminal:
                del self.store.stuck[run_id]


_ATTEMPT_EVENTS = frozenset({EventType.STEP_STARTED, EventType.STEP_RETRYING})


def _event_key(event: Event) -> tuple[int, str]:
    return (to_ms(event.created_at), event.event_id)


def _event_position(event: Event) -> Position:
    return Position(to_ms(event.created_at), event.event_id)


class FakeStreamReader(StreamReader):
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def _data(self, name: str) -> list[bytes]:
        return [c.data for c in self.store.chunks.get(name, ()) if not c.eof and c.data]

    async def chunks_after(self, name: str, after_seq: int, limit: int) -> list[StoredChunk]:
        found = [c for c in self.store.chunks.get(name, ()) if c.seq > after_seq]
        return found[:limit]

    async def data_chunk_count(self, name: str) -> tuple[int, bool]:
        closed = any(c.eof for c in self.store.chunks.get(name, ()))
        return len(self._data(name)), closed

    async def data_chunks(
        self, name: str, start_index: int, limit: int
    ) -> tuple[list[bytes], bool]:
        found = self._data(name)[start_index : start_index + limit + 1]
        return found[:limit], len(found) > limit

    async def names_for_run(self, run_id: str) -> list[str]:
        return list(self.store.stream_runs.get(run_id, ()))

    async def run_streams(self, run_id: str) -> list[StreamSummary]:
        summaries = []
        for name in self.store.stream_runs.get(run_id, ()):
            count, done = await self.data_chunk_count(name)
            summaries.append(StreamSummary(name, count, done))
        return summaries


class FakeQueue(QueueConsumer):
    """Leases measured on ``clock``; a lease that runs out makes the message due again."""

    def __init__(self, store: FakeStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def claim(
        self, worker_id: str, *, limit: int, lease_seconds: float, queue_prefix: str = ""
    ) -> list[QueueMessage]:
        now = self.clock.now()
        due = sorted(
            (
                queued
                for queued in self.store.messages.values()
                if queued.available_at <= now
                and queued.message.queue_name.startswith(queue_prefix)
                and not self._for_an_app(queued.message)
            ),
            key=lambda q: (q.available_at, q.message.message_id),
        )[:limit]
        claimed = []
        for queued in due:
            message = replace(queued.message, attempt=queued.message.attempt + 1)
            lease_end = now + timedelta(seconds=lease_seconds)
            self.store.messages[message.message_id] = _Queued(message, lease_end, worker_id)
            claimed.append(copy.deepcopy(message))
        return claimed

    def _for_an_app(self, message: QueueMessage) -> bool:
        """Messages of wdk deployments are the dispatcher's, never the engine's."""
        found = self.store.deployments.get(message.deployment_id or "")
        return found is not None and found.external

    async def ack(self, message_id: str, worker_id: str) -> bool:
        queued = self.store.messages.get(message_id)
        if queued is None or queued.lease_owner != worker_id:
            return False
        del self.store.messages[message_id]
        return True

    async def retry_later(self, message_id: str, worker_id: str, delay_seconds: float) -> bool:
        queued = self.store.messages.get(message_id)
        if queued is None or queued.lease_owner != worker_id:
            return False
        due = self.clock.now() + timedelta(seconds=delay_seconds)
        self.store.messages[message_id] = _Queued(queued.message, due, None)
        return True


class FakeSchedules(ScheduleReader):
    def __init__(self, store: FakeStore) -> None:
        self._store = store

    async def list_schedules(self) -> list[ScheduleState]:
        return [self._store.schedules[name] for name in sorted(self._store.schedules)]

    async def get_schedule(self, name: str) -> ScheduleState | None:
        return self._store.schedules.get(name)


class FakeDeployments(DeploymentReader):
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def activate(self, deployment_id: str | None) -> None:
        """Point the active pointer at ``deployment_id`` (which need not be stored)."""
        self.store.active_deployment = deployment_id

    async def active_deployment_id(self) -> str | None:
        return self.store.active_deployment

    async def get(self, deployment_id: str) -> Deployment | None:
        found = self.store.deployments.get(deployment_id)
        if found is None:
            return None
        return replace(found, active=deployment_id == self.store.active_deployment)

    async def list_deployments(self, page: PageRequest) -> Page[Deployment]:
        active = self.store.active_deployment
        found = [
            replace(d, active=d.deployment_id == active) for d in self.store.deployments.values()
        ]
        return _page(found, lambda d: Position(to_ms(d.created_at), d.deployment_id), page)

    async def pinned_runs(self, deployment_ids: Sequence[str]) -> dict[str, int]:
        wanted = set(deployment_ids)
        pinned: dict[str, int] = {}
        for run in self.store.runs.values():
            if run.deployment_id in wanted and not run.is_terminal:
                pinned[run.deployment_id] = pinned.get(run.deployment_id, 0) + 1
        return pinned


class FakeArtifactStore(ArtifactStore):
    """Bundles in a dict keyed by their content digest: one entry per distinct content."""

    def __init__(self) -> None:
        self.bundles: dict[str, dict[str, bytes]] = {}
        self.available = True

    async def put(self, files: Mapping[str, bytes]) -> str:
        await self.check()
        digest = hashlib.sha256()
        for path in sorted(files):
            encoded = path.encode()
            digest.update(len(encoded).to_bytes(4, "big") + encoded)
            digest.update(len(files[path]).to_bytes(8, "big") + files[path])
        name = "sha256:" + digest.hexdigest()
        self.bundles.setdefault(name, dict(files))
        return name

    async def get(self, digest: str) -> dict[str, bytes]:
        found = self.bundles.get(digest)
        if found is None:
            raise errors.NotFound(f"no artifact has the digest {digest}")
        return dict(found)

    async def check(self) -> None:
        if not self.available:
            raise errors.StorageUnavailable("the fake artifact store is switched off")


class FakeBundleLoader(BundleLoader):
    """Describes every bundle with the configured workflows, or refuses it with ``error``."""

    def __init__(
        self, workflows: Sequence[WorkflowInfo] = (WorkflowInfo("greet", ("hello",)),)
    ) -> None:
        self.workflows = tuple(workflows)
        self.error: str | None = None

    async def describe(
        self, kind: DeploymentKind, files: Mapping[str, bytes], entrypoint: str
    ) -> tuple[WorkflowInfo, ...]:
        if self.error is not None:
            raise errors.InvalidDeployment(self.error)
        if entrypoint not in files:
            raise errors.InvalidDeployment(f"the entrypoint {entrypoint!r} is not in the bundle")
        return self.workflows


class FakeApiKeyStore(ApiKeyStore):
    """Keys by id, and the hash of each key's secret; never the secret itself."""

    def __init__(self) -> None:
        self.keys: dict[str, ApiKey] = {}
        self.hashes: dict[str, str] = {}  # secret hash -> key id

    async def find_by_hash(self, secret_hash: str) -> ApiKey | None:
        key_id = self.hashes.get(secret_hash)
        return None if key_id is None else self.keys[key_id]

    async def upsert_seed(self, key: ApiKey, secret_hash: str) -> None:
        key_id = self.hashes.get(secret_hash)
        if key_id is None:
            await self.create(key, secret_hash)
            return
        self.keys[key_id] = replace(self.keys[key_id], name=key.name, scopes=key.scopes)

    async def create(self, key: ApiKey, secret_hash: str) -> None:
        if key.key_id in self.keys or secret_hash in self.hashes:
            raise errors.EntityConflict("The write conflicts with existing data")
        self.keys[key.key_id] = key
        self.hashes[secret_hash] = key.key_id

    async def list(self) -> Sequence[ApiKey]:
        return sorted(self.keys.values(), key=lambda k: (k.created_at, k.key_id))

    async def revoke(self, key_id: str, at: datetime) -> bool:
        key = self.keys.get(key_id)
        if key is None or key.revoked_at is not None:
            return False
        self.keys[key_id] = replace(key, revoked_at=at)
        return True

    async def delete_minted(self, key_id: str) -> bool:
        key = self.keys.get(key_id)
        if key is None or key.expires_at is None:
            return False
        del self.keys[key_id]
        self.hashes = {h: k for h, k in self.hashes.items() if k != key_id}
        return True

    async def purge_expired(self, now: datetime) -> int:
        expired = [k.key_id for k in self.keys.values() if k.expires_at and k.expires_at <= now]
        for key_id in expired:
            await self.delete_minted(key_id)
        return len(expired)


class FakeAuditLog(AuditLog):
    """The audit rows of the store, the same ones units append through the transaction."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store

    async def append(self, entry: AuditEntry) -> None:
        self.store.audit.append(replace(entry, entry_id=len(self.store.audit) + 1))

    async def find(self, query: AuditQuery) -> list[AuditEntry]:
        found = [
            entry
            for entry in self.store.audit
            if (query.correlation_id is None or entry.correlation_id == query.correlation_id)
            and (query.run_id is None or entry.run_id == query.run_id)
            and (query.since is None or entry.created_at >= query.since)
        ]
        return found[: query.limit]


class FakeVerifier(SignatureVerifier):
    """Accepts a request whose ``x-fake-signature`` header equals the secret; returns
    the ``x-fake-delivery`` header as the delivery id. ``x-fake-stale`` makes it stale."""

    SIGNATURE = "x-fake-signature"
    DELIVERY = "x-fake-delivery"
    STALE = "x-fake-stale"

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str) -> str | None:
        if headers.get(self.SIGNATURE) != secret:
            raise errors.InvalidSignature("The webhook signature does not match")
        if self.STALE in headers:
            raise errors.StaleSignature("The webhook timestamp is too old")
        return headers.get(self.DELIVERY) or None
