"""``WorldWrites``: every write to the World, made inside the caller's transaction.

A use case owns its transaction (``UnitOfWork.run``) and hands it here to append an
event (the runs, steps, hooks and waits it touches are materialized with it, world.md
§2), enqueue a message (world.md §4), start a run, resume a hook, append to or close
streams (world.md §5), or count a run's execution trouble (``domain.execution``).
The methods are synchronous, so several writes share one transaction, and they never
commit; the signals they send go out once the transaction has committed. One service
that every use case shares, so that no use case calls another.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from compute_worker.domain import errors, ids
from compute_worker.domain.children import (
    CHILD_SCOPE,
    child_outcome,
    child_tokens,
    children_of,
    parent_of,
)
from compute_worker.domain.deployments import Deployment
from compute_worker.domain.execution import ExecutionRecord, Verdict
from compute_worker.domain.ids import IdFactory
from compute_worker.domain.pagination import Position, encode_cursor
from compute_worker.domain.ports.clock import Clock
from compute_worker.domain.ports.engine import RunStarts
from compute_worker.domain.ports.metrics import NoObserver, RunObserver
from compute_worker.domain.ports.streams import Signal
from compute_worker.domain.ports.transactions import Transaction
from compute_worker.domain.reducer import NO_PARAMS, Snapshot, Transition, decide, materialize
from compute_worker.domain.validation import (
    AttributeChange,
    apply_attribute_changes,
    check_attribute_changes,
)
from compute_worker.domain.wdk import WDK_SPEC_VERSION, payload_bytes
from compute_worker.domain.world import (
    QUEUE_NAME,
    QUEUE_TOPIC,
    RUNTIME_ERROR,
    WAKING_EVENTS,
    CreateParams,
    Event,
    EventRequest,
    EventResult,
    EventType,
    Hook,
    QueueMessage,
    Run,
    run_topic,
    stream_topic,
    workflow_queue,
)

_MAX_DECISIONS = 3  # a lost insert race (run id, hook token) is decided again, once or twice
_LIFECYCLE = frozenset(
    {EventType.RUN_STARTED, EventType.RUN_COMPLETED, EventType.RUN_FAILED,
     EventType.RUN_CANCELLED}
)  # fmt: skip
_STEP_ENDINGS = frozenset({EventType.STEP_COMPLETED, EventType.STEP_FAILED})
DELTA_PAGE = 100  # events answered after ``sinceCursor``: one events.list page (hasMore past it)
DEFAULT_KEY_RETENTION = timedelta(hours=24)  # a queue idempotency key, after its message
runs_log = logging.getLogger("compute_worker.runs")

# Counts a run's trouble on its record (``domain.execution``): given the record so far
# and the run's last event id, the verdict.
TroubleCount = Callable[[ExecutionRecord | None, str | None], Verdict]


class WorldWrites:
    def __init__(
        self,
        ids: IdFactory,
        clock: Clock,
        signal: Signal,
        key_retention: timedelta = DEFAULT_KEY_RETENTION,
        observer: RunObserver | None = None,
        starts: RunStarts | None = None,
    ) -> None:
        """``starts``: this node's engine, when new runs start where they are accepted
        (``RunStarts``); without it every new run is left to the queue."""
        self._ids = ids
        self._clock = clock
        self._signal = signal
        self._key_retention = key_retention
        self._observer: RunObserver = observer or NoObserver()
        self._starts = starts

    # -- events -------------------------------------------------------------------------

    def append(
        self,
        tx: Transaction,
        run_id: str,
        request: EventRequest,
        params: CreateParams = NO_PARAMS,
        answer_log: bool = False,
    ) -> EventResult:
        """Decide ``request`` against the run's state and write the event with every
        entity it changes. ``answer_log``: answer ``run_started`` with the run's log, as
        the world lane does (a read of every event; the engine needs none)."""
        for _ in range(_MAX_DECISIONS):
            snapshot = _load_snapshot(tx, run_id, request)
            first_id = self._ids.new(ids.EVENT, floor=tx.last_event_id(run_id))
            now = ids.ulid_datetime(first_id)
            transition = decide(request, run_id, snapshot, now, params)
            if _claim_new_rows(tx, transition, request):
                break
        else:
            raise errors.EntityConflict("the event lost too many races; retry it")
        event_ids = [first_id, *(self._ids.new(ids.EVENT) for _ in transition.events[1:])]
        event_ids = event_ids[: len(transition.events)]  # a transition may append nothing
        events = materialize(transition.events, run_id, event_ids)
        _write(tx, run_id, transition)
        tx.insert_events(events)
        if any(event.event_type in WAKING_EVENTS for event in events):
            tx.after_commit(lambda: self._signal.notify(run_topic(run_id)))
        changed = transition.run
        if changed is not None and any(event.event_type in _LIFECYCLE for event in events):
            tx.after_commit(lambda: log_run(changed))
            if changed.is_terminal:
                tx.end_run_lease(run_id)  # in the final commit: no release to write after
                self._tell_parent(tx, changed)
        if events:
            step = transition.step
            tx.after_commit(lambda: self._observer.events_committed(changed, step, events))
        log, cursor, has_more = None, None, None
        if transition.answer_with_log and answer_log:
            log, has_more = tuple(tx.run_events(run_id)), False
            cursor = _cursor_after(log[-1]) if log else None
        elif params.since is not None and request.event_type in _STEP_ENDINGS and events:
            found = tx.run_events_after(run_id, params.since, DELTA_PAGE + 1)
            log, has_more = tuple(found[:DELTA_PAGE]), len(found) > DELTA_PAGE
            cursor = _cursor_after(log[-1]) if log else encode_cursor(params.since)
        return EventResult(
            event=events[-1] if events and transition.answer_with_event else None,
            run=transition.answer_run,
            step=transition.answer_step,
            hook=transition.answer_hook,
            wait=transition.answer_wait,
            events=log,
            cursor=cursor,
            has_more=has_more,
            step_created=transition.step_created,
        )

    def set_attributes(
        self,
        tx: Transaction,
        run_id: str,
        changes: Sequence[AttributeChange],
        allow_reserved: bool,
    ) -> dict[str, str]:
        """Merge ``changes`` into the run's attributes (``runs.experimentalSetAttributes``:
        no event, as world-local does it); the attributes after the merge."""
        run = tx.lock_run(run_id)
        if run is None:
            raise errors.RunNotFound(f'Workflow run "{run_id}" not found', {"runId": run_id})
        check_attribute_changes(changes, run.attributes.keys(), allow_reserved, "changes")
        merged = apply_attribute_changes(run.attributes, changes)
        tx.update_run(replace(run, attributes=merged, updated_at=self._clock.now()))
        return merged

    # -- the queue ----------------------------------------------------------------------

    def enqueue(
        self,
        tx: Transaction,
        queue_name: str,
        payload: Any,
        *,
        deployment_id: str | None = None,
        idempotency_key: str | None = None,
        delay_seconds: float = 0,
        headers: dict[str, str] | None = None,
    ) -> str:
        """The new message's id; with an idempotency key seen within the retention
        window, the original message's id and nothing enqueued."""
        now = self._clock.now()
        if idempotency_key:
            existing = tx.find_queued_by_key(idempotency_key, now)
            if existing is not None:
                return existing
        message = QueueMessage(
            message_id=self._ids.new(ids.MESSAGE),
            queue_name=queue_name,
            payload=payload,
            attempt=0,
            created_at=now,
            deployment_id=deployment_id,
            idempotency_key=idempotency_key or None,
            headers=dict(headers or {}),
        )
        expires = now + self._key_retention if idempotency_key else None
        tx.insert_message(message, now + timedelta(seconds=delay_seconds), expires)
        tx.after_commit(lambda: self._signal.notify(QUEUE_TOPIC))
        return message.message_id

    def wake(self, tx: Transaction, run: Run) -> str:
        """Enqueue the message that has the engine execute (or poke) ``run``."""
        return self.enqueue(
            tx, workflow_queue(run.workflow_name), {"runId": run.run_id},
            deployment_id=run.deployment_id,
        )  # fmt: skip

    # -- runs and hooks -----------------------------------------------------------------

    def start_run(
        self,
        tx: Transaction,
        workflow_name: str,
        run_input: list[Any],
        deployment_id: str | None,
        execution_context: dict[str, Any] | None,
    ) -> Run:
        """Create a run of ``workflow_name`` on the deployment (default: the active one)
        and enqueue it, or lease it to this node's engine, which starts it once committed."""
        deployment = _deployment(tx, deployment_id)
        spec_version = None
        stored_input: Any = run_input
        if deployment.external:
            # the app knows its workflows; the name only has to make a queue name, and
            # the input is written as the WDK runtime reads it (LANE.md §7, §8)
            if not QUEUE_NAME.match(workflow_queue(workflow_name)):
                raise errors.InvalidRequest(
                    "workflowName of a WDK app is its machine name, printable ASCII "
                    '(e.g. "workflow//./workflows/order//placeOrder")',
                    {"field": "workflowName"},
                )
            spec_version, stored_input = WDK_SPEC_VERSION, payload_bytes(run_input)
        elif deployment.workflow(workflow_name) is None:
            names = [w.name for w in deployment.workflows]
            raise errors.WorkflowNotFound(
                f'Workflow "{workflow_name}" is not in deployment {deployment.deployment_id}',
                {"deploymentId": deployment.deployment_id, "workflows": names},
            )
        data: dict[str, Any] = {
            "deploymentId": deployment.deployment_id,
            "workflowName": workflow_name,
            "input": stored_input,
        }
        if execution_context is not None:
            data["executionContext"] = execution_context
        run_id = self._ids.new(ids.RUN)
        tx.note_new_run(run_id)
        request = EventRequest(EventType.RUN_CREATED, None, spec_version, data)
        result = self.append(tx, run_id, request)
        run, created = result.run, result.event
        assert run is not None and created is not None
        starts = self._starts
        claim = None if starts is None or deployment.external else starts.claim(deployment)
        if starts is None or claim is None:
            self.wake(tx, run)
            return run
        expires = self._clock.now() + timedelta(seconds=claim.ttl_seconds)
        tx.lease_new_run(run_id, claim.owner, expires)
        tx.after_commit(lambda: starts.start(run, [created]))
        return run

    def resume_hook(self, tx: Transaction, token: str, payload: Any) -> Hook:
        """Deliver ``payload`` to the live hook holding ``token`` (``hook_received``) and
        wake its run; the hook is returned. For a WDK app's run the payload is written
        as ``devl`` + devalue, and the wake-up is delivered to the app."""
        hook = tx.get_hook_by_token(token)
        if hook is None:
            raise errors.HookNotFound("No live hook holds this token")
        run = tx.lock_run(hook.run_id)
        if run is None or run.is_terminal:
            status = run.status if run is not None else "missing"
            raise errors.RunAlreadyTerminal(
                f"Run {hook.run_id} is already {status}", {"runId": hook.run_id}
            )
        deployment = tx.get_deployment(run.deployment_id) if run.deployment_id else None
        if deployment is not None and deployment.external:
            payload = payload_bytes(payload)  # as the WDK runtime reads it (LANE.md §8)
        request = EventRequest(EventType.HOOK_RECEIVED, hook.hook_id, None, {"payload": payload})
        self.append(tx, run.run_id, request)
        self.wake(tx, run)
        return hook

    # -- streams ------------------------------------------------------------------------

    def _tell_parent(self, tx: Transaction, run: Run) -> None:
        """A child run that ended hands its outcome to its parent's hook (``children``)."""
        link = parent_of(run)
        if link is None:
            return
        hook = tx.get_hook_by_token(link[1])
        if hook is None or hook.run_id != link[0]:
            return  # the parent ended (its hooks are disposed) or never waits for it
        with contextlib.suppress(errors.HookNotFound, errors.RunAlreadyTerminal):
            self.resume_hook(tx, link[1], child_outcome(run))

    def cancel_children(self, tx: Transaction, run_id: str) -> list[str]:
        """Cancel the children of ``run_id`` that have not ended, and theirs; their ids."""
        cancelled: list[str] = []
        for child_id in self._children(tx, run_id):
            child = tx.lock_run(child_id)
            if child is None or child.is_terminal:
                continue
            self.append(tx, child_id, EventRequest(EventType.RUN_CANCELLED))
            self.close_run_streams(tx, child_id)
            cancelled += [child_id, *self.cancel_children(tx, child_id)]
        return cancelled

    def _children(self, tx: Transaction, run_id: str) -> list[str]:
        """The children the run's log names, and those whose start committed before the
        start step's result was recorded (found by their token's idempotency record)."""
        events = tx.run_events(run_id)
        found = children_of(events)
        now = self._clock.now()
        for token in child_tokens(run_id, events):
            holder = tx.idempotency_holder(CHILD_SCOPE, token, now)
            if holder is not None and holder.run is not None and holder.run.run_id not in found:
                found.append(holder.run.run_id)
        return found

    def append_chunks(
        self,
        tx: Transaction,
        name: str,
        run_id: str,
        chunks: Sequence[bytes],
        *,
        close: bool = False,
    ) -> None:
        """Append ``chunks`` in order (empty ones are dropped: they are never emitted),
        then the EOF marker when ``close``; closing a closed stream changes nothing."""
        if tx.stream_is_closed(name):
            if close:
                return
            raise errors.StreamClosed(f'Stream "{name}" is closed', {"name": name})
        rows = [(self._ids.new(ids.CHUNK), bytes(data)) for data in chunks if data]
        eof_id = self._ids.new(ids.CHUNK) if close else None
        tx.append_chunks(name, run_id, rows, eof_id)
        tx.after_commit(lambda: self._signal.notify(stream_topic(name)))

    def close_run_streams(self, tx: Transaction, run_id: str) -> None:
        """Close every stream of the run still open (in the transaction that ends the run,
        so readers never wait on a finished run)."""
        for name in tx.open_streams(run_id):
            self.append_chunks(tx, name, run_id, (), close=True)

    # -- execution trouble --------------------------------------------------------------

    def count_trouble(
        self,
        tx: Transaction,
        run_id: str,
        count: TroubleCount,
        stack: str | None = None,
        kind: str = "start_failed",
    ) -> bool:
        """Count a failed start or a lost executor (``kind``) on the run's record; fail the
        run with ``RUNTIME_ERROR`` when the verdict gives up (True: failed for good, or
        gone)."""
        run = tx.lock_run(run_id)
        if run is None or run.is_terminal:
            return run is not None
        verdict = count(tx.get_execution(run_id), tx.last_event_id(run_id))
        tx.put_execution(verdict.record)
        gave_up = verdict.give_up
        tx.after_commit(lambda: self._observer.trouble_counted(kind, gave_up))
        if verdict.give_up:
            error = {"message": verdict.reason, "stack": stack} if stack else verdict.reason
            data = {"error": error, "errorCode": RUNTIME_ERROR}
            self.append(tx, run_id, EventRequest(EventType.RUN_FAILED, None, None, data))
        return verdict.give_up


def _cursor_after(event: Event) -> str:
    """The ``events.list`` cursor that resumes after ``event``."""
    created_ms = int(event.created_at.timestamp() * 1000)
    return encode_cursor(Position(created_ms, event.event_id))


def _load_snapshot(tx: Transaction, run_id: str, request: EventRequest) -> Snapshot:
    family = request.event_type.family
    correlation_id = request.correlation_id or ""
    if family == "step":
        if request.event_type is EventType.STEP_CREATED:  # a new id: its insert checks it
            return Snapshot(run=tx.lock_run(run_id),
                            step=tx.step_to_create(run_id, correlation_id))  # fmt: skip
        run, step = tx.lock_run_with_step(run_id, correlation_id)
        return Snapshot(run=run, step=step)
    run = tx.lock_run(run_id)
    if family == "wait":
        return Snapshot(run=run, wait=tx.get_wait(run_id, correlation_id))
    if family == "hook":
        hook = tx.get_hook(correlation_id)
        holder = None
        if request.event_type is EventType.HOOK_CREATED:
            token = (request.event_data or {}).get("token")
            holder = tx.get_hook_by_token(token) if isinstance(token, str) else None
            holder = None if holder is not None and holder.hook_id == correlation_id else holder
        return Snapshot(run=run, hook=hook, token_holder=holder)
    return Snapshot(run=run)


def _claim_new_rows(tx: Transaction, transition: Transition, request: EventRequest) -> bool:
    """Insert the rows whose uniqueness another writer may have raced us for.

    False means the race was lost and the event must be decided again on fresh state.
    """
    if transition.run_is_new and transition.run is not None and not tx.insert_run(transition.run):
        if request.event_type is EventType.RUN_CREATED:
            run_id = transition.run.run_id
            raise errors.EntityConflict(f'Workflow run "{run_id}" already exists')
        return False
    return transition.new_hook is None or tx.insert_hook(transition.new_hook)


def _write(tx: Transaction, run_id: str, transition: Transition) -> None:
    if transition.run is not None and not transition.run_is_new:
        tx.update_run(transition.run)
    if transition.step is not None:
        if transition.step_is_new:
            if not tx.insert_step(transition.step):
                raise errors.EntityConflict(f'Step "{transition.step.step_id}" already exists')
        else:
            tx.update_step(transition.step)
    if transition.disposed_hook_id is not None and not tx.delete_hook(transition.disposed_hook_id):
        raise errors.EntityConflict(f'Hook "{transition.disposed_hook_id}" already disposed')
    if transition.wait is not None:
        if transition.wait_is_new:
            tx.insert_wait(transition.wait)
        else:
            tx.update_wait(transition.wait)
    if transition.purge_hooks_and_waits:
        tx.delete_hooks_and_waits(run_id)


def _deployment(tx: Transaction, deployment_id: str | None) -> Deployment:
    if deployment_id is None:
        deployment_id = tx.active_deployment_id()
        if deployment_id is None:
            raise errors.NoActiveDeploymentToTrigger(
                "No deployment is active; activate one or pass deploymentId"
            )
    deployment = tx.get_deployment(deployment_id)
    if deployment is None:
        raise errors.DeploymentNotFound(
            f"Deployment {deployment_id} not found", {"deploymentId": deployment_id}
        )
    return deployment


def log_run(run: Run) -> None:
    """One info line per run start and end, with what an operator looks for."""
    fields: dict[str, object] = {
        "runId": run.run_id,
        "workflowName": run.workflow_name,
        "deploymentId": run.deployment_id,
        "status": run.status,
    }
    if not run.is_terminal:
        runs_log.info("run started", extra=fields)
        return
    if run.completed_at is not None:
        began = run.started_at or run.created_at
        fields["durationMs"] = round((run.completed_at - began).total_seconds() * 1000)
    if run.error is not None:
        fields["error"] = run.error.message
        fields["errorCode"] = run.error.code
    runs_log.info("run %s", run.status, extra=fields)
