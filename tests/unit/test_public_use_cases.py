"""The public lane's use cases over the in-memory fakes: triggering, cancelling,
resuming and waiting for runs, deployments, webhooks, API keys and the audit log.

Every case asserts outcomes: what the store holds afterwards, what the use case
returned, or which error (class and ``code``) it raised.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from compute_worker.adapters.system import LocalSignal
from compute_worker.domain import errors, ids
from compute_worker.domain.api_keys import hash_secret, new_secret
from compute_worker.domain.audit import RequestContext
from compute_worker.domain.deployments import Deployment, WorkflowInfo
from compute_worker.domain.ids import IdFactory
from compute_worker.domain.outbound import OutboundPolicy
from compute_worker.domain.ports.audit import AuditQuery
from compute_worker.domain.use_cases.api_keys import ManageApiKeys, QueryAudit
from compute_worker.domain.use_cases.authenticate import Authenticate, SeedApiKeys, SeedKey
from compute_worker.domain.use_cases.cancel_run import CancelRun
from compute_worker.domain.use_cases.deployments import (
    ActivateDeployment,
    CreateDeployment,
    GetDeployment,
    NewDeployment,
)
from compute_worker.domain.use_cases.proxy_world_event import CreateEvent, ProxyWorldEvent
from compute_worker.domain.use_cases.query_world import QueryWorld
from compute_worker.domain.use_cases.receive_webhook import ReceiveWebhook
from compute_worker.domain.use_cases.resume_hook import Resumed, ResumeHook
from compute_worker.domain.use_cases.trigger_run import Trigger, Triggered, TriggerRun
from compute_worker.domain.webhooks import WebhookProvider
from compute_worker.domain.world import EventRequest, EventType
from compute_worker.domain.world_writes import WorldWrites
from tests.fakes import (
    FakeApiKeyStore,
    FakeArtifactStore,
    FakeAuditLog,
    FakeBundleLoader,
    FakeDeployments,
    FakeStore,
    FakeUnitOfWork,
    FakeVerifier,
    FakeWorldReader,
    FixedClock,
)

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
CTX = RequestContext("POST", "/v1/runs", "corr-1", key_id="key_A")
BUNDLE = {"workflows.py": b"from compute_worker import workflow\n"}
SECRET = "s3cret"
E = EventType


@dataclass
class App:
    store: FakeStore
    clock: FixedClock
    ids: IdFactory
    signal: LocalSignal
    writes: WorldWrites
    events: ProxyWorldEvent
    trigger: TriggerRun
    cancel: CancelRun
    resume: ResumeHook
    artifacts: FakeArtifactStore
    loader: FakeBundleLoader
    create_deployment: CreateDeployment
    activate: ActivateDeployment
    get_deployment: GetDeployment
    keys: FakeApiKeyStore
    manage_keys: ManageApiKeys
    authenticate: Authenticate
    seed: SeedApiKeys
    query_audit: QueryAudit
    query: QueryWorld

    def webhooks(
        self, provider: WebhookProvider, on_webhook: Callable[[dict[str, Any]], Awaitable[None]]
    ) -> ReceiveWebhook:
        return ReceiveWebhook(
            FakeUnitOfWork(self.store), self.clock, {provider.name: provider},
            {"fake": FakeVerifier()}, self.writes, on_webhook,
        )  # fmt: skip


@pytest.fixture
def app() -> App:
    store, clock = FakeStore(), FixedClock(NOW)
    uow, id_factory, signal = FakeUnitOfWork(store), IdFactory(clock_ms=clock.now_ms), LocalSignal()
    writes = WorldWrites(id_factory, clock, signal)
    events = ProxyWorldEvent(uow, id_factory, clock, writes)
    trigger = TriggerRun(uow, clock, writes)
    resume = ResumeHook(uow, clock, writes)
    artifacts, loader, keys = FakeArtifactStore(), FakeBundleLoader(), FakeApiKeyStore()
    return App(
        store=store,
        clock=clock,
        ids=id_factory,
        signal=signal,
        writes=writes,
        events=events,
        trigger=trigger,
        cancel=CancelRun(uow, clock, writes),
        resume=resume,
        artifacts=artifacts,
        loader=loader,
        create_deployment=CreateDeployment(
            uow, id_factory, clock, artifacts, loader, OutboundPolicy(("localhost",))
        ),
        activate=ActivateDeployment(uow, clock),
        get_deployment=GetDeployment(FakeDeployments(store)),
        keys=keys,
        manage_keys=ManageApiKeys(keys, id_factory, clock),
        authenticate=Authenticate(keys, clock),
        seed=SeedApiKeys(keys, id_factory, clock),
        query_audit=QueryAudit(FakeAuditLog(store)),
        query=QueryWorld(FakeWorldReader(store), signal),
    )


# -- helpers --------------------------------------------------------------------------------


def add_deployment(app: App, *workflows: str, active: bool = False) -> str:
    deployment_id = app.ids.new(ids.DEPLOYMENT)
    found = tuple(WorkflowInfo(name) for name in workflows or ("greet",))
    app.store.deployments[deployment_id] = Deployment(
        deployment_id, "python", "sha256:" + "0" * 64, found, app.clock.now()
    )
    if active:
        app.store.active_deployment = deployment_id
    return deployment_id


async def trigger(
    app: App, key: str | None = "key-1", scope: str = "key_A", **fields: Any
) -> Triggered:
    command = Trigger(fields.pop("workflow_name", "greet"), key, scope, **fields)
    return await app.trigger.execute(command, CTX)


async def record(
    app: App, run_id: str, kind: EventType, correlation: str | None = None, **data: Any
) -> None:
    await app.events.execute(CreateEvent(run_id, EventRequest(kind, correlation, None, data)))


async def run_in(app: App, status: str, token: str = "tok-1") -> str:
    """A run of ``greet`` in ``status``; a running run holds a hook and a wait."""
    add_deployment(app, "greet", active=True)
    run_id = (await trigger(app, key=f"key-{status}-{token}")).run.run_id
    if status == "pending":
        return run_id
    await record(app, run_id, E.RUN_STARTED)
    await record(app, run_id, E.HOOK_CREATED, app.ids.new(ids.HOOK), token=token)
    resume_at = (app.clock.now() + timedelta(hours=1)).isoformat()
    await record(app, run_id, E.WAIT_CREATED, app.ids.new(ids.WAIT), resumeAt=resume_at)
    endings: dict[str, tuple[EventType, dict[str, Any]]] = {
        "completed": (E.RUN_COMPLETED, {"output": 1}),
        "failed": (E.RUN_FAILED, {"error": "boom"}),
        "cancelled": (E.RUN_CANCELLED, {}),
    }
    if status in endings:
        kind, data = endings[status]
        await record(app, run_id, kind, **data)
    return run_id


def footprint(store: FakeStore) -> dict[str, int]:
    """How many of each stored thing; unchanged means a unit left nothing behind."""
    names = ("runs", "events", "messages", "hooks", "waits", "deployments", "idempotency",
             "audit", "deliveries")  # fmt: skip
    return {name: len(getattr(store, name)) for name in names}


def event_types(app: App, run_id: str) -> list[EventType]:
    return [e.event_type for e in app.store.events.values() if e.run_id == run_id]


def messages(app: App) -> list[tuple[str, Any, str | None]]:
    return [
        (q.message.queue_name, q.message.payload, q.message.deployment_id)
        for q in app.store.messages.values()
    ]


def audit(app: App) -> list[tuple[str, str | None]]:
    return [(entry.action, entry.run_id) for entry in app.store.audit]


# -- TriggerRun -----------------------------------------------------------------------------


async def test_trigger_writes_run_event_message_idempotency_and_audit_together(
    app: App,
) -> None:
    deployment_id = add_deployment(app, "greet", active=True)
    triggered = await trigger(app, input=[1, {"a": 2}], execution_context={"trace": "t"})
    run = triggered.run
    assert (run.status, run.workflow_name, run.deployment_id) == ("pending", "greet", deployment_id)
    assert (run.input, run.execution_context, triggered.replayed) == (
        [1, {"a": 2}],
        {"trace": "t"},
        False,
    )
    assert app.store.runs[run.run_id].status == "pending"
    assert event_types(app, run.run_id) == [E.RUN_CREATED]
    assert messages(app) == [("__wkf_workflow_greet", {"runId": run.run_id}, deployment_id)]
    record_ = app.store.idempotency[("key_A", "key-1")]
    assert (record_.status, record_.run) == (202, run)
    assert audit(app) == [("runs.trigger", run.run_id)]
    assert (app.store.audit[0].key_id, app.store.audit[0].correlation_id) == ("key_A", "corr-1")


async def test_trigger_with_explicit_deployment_id_ignores_the_active_pointer(app: App) -> None:
    add_deployment(app, "greet", active=True)
    chosen = add_deployment(app, "greet")
    run = (await trigger(app, deployment_id=chosen)).run
    assert run.deployment_id == chosen
    assert messages(app)[0][2] == chosen


async def test_a_run_stays_bound_to_its_deployment_after_another_is_activated(app: App) -> None:
    first = add_deployment(app, "greet", active=True)
    run_id = (await trigger(app)).run.run_id
    await app.activate.execute(add_deployment(app, "greet"), CTX)
    assert app.store.runs[run_id].deployment_id == first
    assert messages(app)[0][2] == first


@pytest.mark.parametrize(
    ("setup", "fields", "error", "code"),
    [
        ("none", {}, errors.NoActiveDeploymentToTrigger, "no_active_deployment"),
        ("active", {"deployment_id": "dpl_x"}, errors.DeploymentNotFound, "deployment_not_found"),
        ("active", {"workflow_name": "nope"}, errors.WorkflowNotFound, "workflow_not_found"),
    ],
)
async def test_a_failed_trigger_writes_nothing(
    app: App, setup: str, fields: dict[str, Any], error: type[errors.DomainError], code: str
) -> None:
    if setup == "active":
        add_deployment(app, "greet", "bill", active=True)
    before = footprint(app.store)
    with pytest.raises(error) as raised:
        await trigger(app, **fields)
    assert raised.value.code == code
    assert footprint(app.store) == before


async def test_unknown_workflow_names_the_deployments_workflows(app: App) -> None:
    deployment_id = add_deployment(app, "greet", "bill", active=True)
    with pytest.raises(errors.WorkflowNotFound) as raised:
        await trigger(app, workflow_name="nope")
    assert raised.value.details == {"deploymentId": deployment_id, "workflows": ["greet", "bill"]}


async def test_a_key_whose_trigger_failed_can_be_used_again(app: App) -> None:
    with pytest.raises(errors.NoActiveDeploymentToTrigger):
        await trigger(app)
    add_deployment(app, "greet", active=True)
    assert (await trigger(app)).replayed is False
    assert len(app.store.runs) == 1


async def test_same_key_and_equivalent_payload_replays_the_run(app: App) -> None:
    add_deployment(app, "greet", active=True)
    first = await trigger(app, input=[{"a": 1, "b": [1, 2]}], execution_context={"x": 1, "y": 2})
    again = await trigger(app, input=[{"b": [1, 2], "a": 1}], execution_context={"y": 2, "x": 1})
    assert (again.run, again.replayed) == (first.run, True)
    assert (len(app.store.runs), len(app.store.messages)) == (1, 1)


async def test_a_replay_answers_after_its_workflow_left_the_active_deployment(app: App) -> None:
    add_deployment(app, "greet", active=True)
    first = await trigger(app)
    add_deployment(app, "other", active=True)  # has no "greet"
    again = await trigger(app)
    assert (again.run, again.replayed) == (first.run, True)
    with pytest.raises(errors.WorkflowNotFound):
        await trigger(app, key="key-2")
    assert (len(app.store.runs), len(app.store.messages), len(audit(app))) == (1, 1, 1)


async def test_same_key_with_another_payload_conflicts(app: App) -> None:
    add_deployment(app, "greet", active=True)
    await trigger(app, input=[1])
    with pytest.raises(errors.IdempotencyConflict) as raised:
        await trigger(app, input=[2])
    assert raised.value.code == "idempotency_conflict"
    assert len(app.store.runs) == 1


async def test_concurrent_triggers_with_one_key_create_one_run(app: App) -> None:
    add_deployment(app, "greet", active=True)
    results = await asyncio.gather(*(trigger(app) for _ in range(5)))
    assert len({r.run.run_id for r in results}) == 1
    assert sorted(r.replayed for r in results) == [False, True, True, True, True]
    assert len(app.store.runs) == 1


@pytest.mark.parametrize(
    ("key", "error", "code"),
    [
        (None, errors.IdempotencyKeyRequired, "idempotency_key_required"),
        ("", errors.IdempotencyKeyRequired, "idempotency_key_required"),
        ("k" * 256, errors.InvalidRequest, "invalid_request"),
        ("line\nbreak", errors.InvalidRequest, "invalid_request"),
        ("tab\there", errors.InvalidRequest, "invalid_request"),
        ("caf\u00e9", errors.InvalidRequest, "invalid_request"),
    ],
)
async def test_missing_or_invalid_idempotency_keys_are_refused(
    app: App, key: str | None, error: type[errors.DomainError], code: str
) -> None:
    add_deployment(app, "greet", active=True)
    with pytest.raises(error) as raised:
        await trigger(app, key=key)
    assert raised.value.code == code
    assert app.store.runs == {}


@pytest.mark.parametrize("key", ["k" * 255, "a", "with space", "~!@#$%^&*()"])
async def test_printable_ascii_keys_up_to_255_chars_are_accepted(app: App, key: str) -> None:
    add_deployment(app, "greet", active=True)
    assert (await trigger(app, key=key)).replayed is False


async def test_idempotency_keys_are_scoped_per_api_key(app: App) -> None:
    add_deployment(app, "greet", active=True)
    mine = await trigger(app, scope="key_A")
    theirs = await trigger(app, scope="key_B")
    assert mine.run.run_id != theirs.run.run_id
    assert (mine.replayed, theirs.replayed) == (False, False)


@pytest.mark.parametrize(
    ("elapsed", "replayed"),
    [(timedelta(hours=23, minutes=59), True), (timedelta(hours=24, seconds=1), False)],
)
async def test_idempotency_records_expire_after_retention(
    app: App, elapsed: timedelta, replayed: bool
) -> None:
    add_deployment(app, "greet", active=True)
    first = await trigger(app)
    app.clock.advance(elapsed.total_seconds())
    again = await trigger(app)
    assert again.replayed is replayed
    assert (again.run.run_id == first.run.run_id) is replayed
    assert len(app.store.runs) == (1 if replayed else 2)


# -- CancelRun ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["pending", "running"])
async def test_cancel_ends_the_run_and_clears_its_hooks_and_waits(app: App, status: str) -> None:
    run_id = await run_in(app, status)
    cancelled = await app.cancel.execute(run_id, CTX)
    assert cancelled.status == "cancelled"
    assert app.store.runs[run_id].status == "cancelled"
    assert event_types(app, run_id)[-1] == E.RUN_CANCELLED
    assert [h for h in app.store.hooks.values() if h.run_id == run_id] == []
    assert [w for w in app.store.waits.values() if w.run_id == run_id] == []
    assert audit(app)[-1] == ("runs.cancel", run_id)


async def test_cancelling_a_cancelled_run_returns_it_unchanged(app: App) -> None:
    run_id = await run_in(app, "cancelled")
    before = footprint(app.store)
    assert await app.cancel.execute(run_id, CTX) == app.store.runs[run_id]
    assert footprint(app.store) == before


@pytest.mark.parametrize("status", ["completed", "failed"])
async def test_a_finished_run_cannot_be_cancelled(app: App, status: str) -> None:
    run_id = await run_in(app, status)
    with pytest.raises(errors.RunAlreadyTerminal) as raised:
        await app.cancel.execute(run_id, CTX)
    assert (raised.value.code, raised.value.details) == (
        "run_already_terminal", {"runId": run_id, "status": status},
    )  # fmt: skip
    assert app.store.runs[run_id].status == status


async def test_cancelling_an_unknown_run_is_run_not_found(app: App) -> None:
    with pytest.raises(errors.RunNotFound) as raised:
        await app.cancel.execute("wrun_missing", CTX)
    assert raised.value.code == "run_not_found"


# -- QueryWorld.get_run_view(wait=...) -------------------------------------------------------


async def _timed(work: Awaitable[Any]) -> tuple[Any, float]:
    started = time.monotonic()
    return await work, time.monotonic() - started


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
async def test_a_wait_for_an_ended_run_answers_at_once(app: App, status: str) -> None:
    run_id = await run_in(app, status)
    view, took = await _timed(app.query.get_run_view(run_id, wait=30))
    assert (view.run.run_id, view.run.status) == (run_id, status)
    assert took < 0.5


async def test_a_wait_answers_when_the_run_ends_during_it(app: App) -> None:
    run_id = await run_in(app, "running")
    waiting = asyncio.create_task(_timed(app.query.get_run_view(run_id, wait=30)))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await record(app, run_id, E.RUN_COMPLETED, output=3)
    view, took = await asyncio.wait_for(waiting, 5)
    assert (view.run.status, view.run.output) == ("completed", 3)
    assert took < 0.2 + 0.5  # woken by the run's topic, before the 1 s re-read


async def test_a_wait_that_times_out_answers_the_live_run(app: App) -> None:
    run_id = await run_in(app, "running")
    view, took = await _timed(app.query.get_run_view(run_id, wait=0.3))
    assert view.run.status == "running"
    assert 0.3 <= took < 1.0
    assert view == await app.query.get_run_view(run_id)  # the same view as without a wait


async def test_a_wait_sees_an_end_no_notification_reaches(app: App) -> None:
    """As on a worker whose signal does not hear the one that ended the run."""
    run_id = await run_in(app, "running")
    deaf = QueryWorld(FakeWorldReader(app.store), LocalSignal(), recheck_seconds=0.1)
    waiting = asyncio.create_task(deaf.get_run_view(run_id, wait=30))
    await asyncio.sleep(0.15)
    await record(app, run_id, E.RUN_FAILED, error="boom")
    assert (await asyncio.wait_for(waiting, 2)).run.status == "failed"


async def test_a_wait_for_an_unknown_run_is_run_not_found_at_once(app: App) -> None:
    with pytest.raises(errors.RunNotFound) as raised:
        await asyncio.wait_for(app.query.get_run_view("wrun_missing", wait=30), 1)
    assert (raised.value.code, raised.value.details) == ("run_not_found", {"runId": "wrun_missing"})


@pytest.mark.parametrize("wait", [0, -1, 60.001, 61, math.nan, math.inf, -math.inf])
async def test_a_wait_out_of_range_is_refused_before_any_read(app: App, wait: float) -> None:
    with pytest.raises(errors.InvalidRequest) as raised:
        await app.query.get_run_view("wrun_missing", wait=wait)
    assert (raised.value.code, raised.value.details) == ("invalid_request", {"field": "wait"})
    assert app.signal._subscribers == {}


async def test_a_wait_of_sixty_seconds_is_allowed(app: App) -> None:
    run_id = await run_in(app, "completed")
    assert (await app.query.get_run_view(run_id, wait=60)).run.status == "completed"


async def test_the_subscription_is_closed_however_the_wait_ends(app: App) -> None:
    run_id = await run_in(app, "running")
    await app.query.get_run_view(run_id, wait=0.05)  # timed out
    assert app.signal._subscribers == {}
    abandoned = asyncio.create_task(app.query.get_run_view(run_id, wait=30))
    await asyncio.sleep(0.05)
    assert list(app.signal._subscribers) == [f"run:{run_id}"]  # waiting
    abandoned.cancel()  # as when the client goes away
    with pytest.raises(asyncio.CancelledError):
        await abandoned
    assert app.signal._subscribers == {}
    ending = asyncio.create_task(app.query.get_run_view(run_id, wait=30))
    await asyncio.sleep(0.05)
    await app.cancel.execute(run_id, CTX)
    assert (await ending).run.status == "cancelled"
    assert app.signal._subscribers == {}


# -- ResumeHook -----------------------------------------------------------------------------


async def test_resume_delivers_the_payload_and_wakes_the_run(app: App) -> None:
    run_id = await run_in(app, "running", token="tok-1")
    hook_id = next(iter(app.store.hooks))
    resumed = await app.resume.execute("tok-1", {"ok": True}, CTX)
    assert resumed == Resumed(run_id, hook_id, "tok-1")
    last = list(app.store.events.values())[-1]
    assert (last.event_type, last.correlation_id, last.event_data) == (
        E.HOOK_RECEIVED, hook_id, {"payload": {"ok": True}},
    )  # fmt: skip
    deployment_id = app.store.runs[run_id].deployment_id
    assert messages(app)[-1] == ("__wkf_workflow_greet", {"runId": run_id}, deployment_id)
    assert audit(app)[-1] == ("runs.resume", run_id)


@pytest.mark.parametrize(
    ("token", "error", "code"),
    [
        ("tok-unknown", errors.HookNotFound, "hook_not_found"),
        ("", errors.InvalidRequest, "invalid_request"),
    ],
)
async def test_resume_refuses_unknown_and_empty_tokens(
    app: App, token: str, error: type[errors.DomainError], code: str
) -> None:
    await run_in(app, "running", token="tok-1")
    before = footprint(app.store)
    with pytest.raises(error) as raised:
        await app.resume.execute(token, {}, CTX)
    assert raised.value.code == code
    assert footprint(app.store) == before


async def test_the_hook_of_a_cancelled_run_is_gone(app: App) -> None:
    run_id = await run_in(app, "running", token="tok-1")
    await app.cancel.execute(run_id, CTX)
    with pytest.raises(errors.HookNotFound):
        await app.resume.execute("tok-1", {}, CTX)


# -- CreateDeployment -----------------------------------------------------------------------


async def test_create_deployment_stores_the_bundle_and_describes_it(app: App) -> None:
    app.loader.workflows = (WorkflowInfo("greet", ("hello", "bye")), WorkflowInfo("bill"))
    created = await app.create_deployment.execute(
        NewDeployment("python", BUNDLE, metadata={"team": "a"}), CTX
    )
    assert created.deployment_id.startswith("dpl_")
    assert (created.kind, created.entrypoint, created.metadata, created.active) == (
        "python", "workflows.py", {"team": "a"}, False,
    )  # fmt: skip
    assert [w.name for w in created.workflows] == ["greet", "bill"]
    assert created.workflows[0].steps == ("hello", "bye")
    assert app.artifacts.bundles == {created.digest: BUNDLE}
    assert app.store.deployments[created.deployment_id].digest == created.digest
    assert audit(app) == [("deployments.create", None)]


async def test_the_same_bundle_twice_is_two_deployments_sharing_one_artifact(app: App) -> None:
    first = await app.create_deployment.execute(NewDeployment("python", BUNDLE), CTX)
    second = await app.create_deployment.execute(NewDeployment("python", dict(BUNDLE)), CTX)
    assert first.deployment_id != second.deployment_id
    assert first.digest == second.digest
    assert len(app.artifacts.bundles) == 1
    assert len(app.store.deployments) == 2


INVALID_BUNDLES = {
    "kind": ("java", BUNDLE, None, errors.InvalidRequest),
    "no-default-entrypoint": ("python", {"main.py": b""}, None, errors.InvalidDeployment),
    "no-entrypoint": ("python", BUNDLE, "main.py", errors.InvalidDeployment),
    "graph-default": ("graph", BUNDLE, None, errors.InvalidDeployment),
    "empty": ("python", {}, None, errors.InvalidDeployment),
    "dotdot": ("python", BUNDLE, "../workflows.py", errors.InvalidDeployment),
    "absolute": ("python", BUNDLE, "/workflows.py", errors.InvalidDeployment),
    "backslash": ("python", BUNDLE, "a\\..\\workflows.py", errors.InvalidDeployment),
    "drive": ("python", BUNDLE, "C:/workflows.py", errors.InvalidDeployment),
}


@pytest.mark.parametrize(
    ("kind", "files", "entrypoint", "error"), INVALID_BUNDLES.values(), ids=INVALID_BUNDLES.keys()
)
async def test_invalid_bundles_are_refused_and_nothing_is_stored(
    app: App,
    kind: str,
    files: dict[str, bytes],
    entrypoint: str | None,
    error: type[errors.DomainError],
) -> None:
    with pytest.raises(error) as raised:
        await app.create_deployment.execute(NewDeployment(kind, files, entrypoint), CTX)
    assert raised.value.code == error.code
    assert (app.artifacts.bundles, app.store.deployments, app.store.audit) == ({}, {}, [])


async def test_an_invalid_kind_names_the_field(app: App) -> None:
    with pytest.raises(errors.InvalidRequest) as raised:
        await app.create_deployment.execute(NewDeployment("java", BUNDLE), CTX)
    assert raised.value.details == {"field": "kind"}


async def test_a_file_path_escaping_the_bundle_is_refused(app: App) -> None:
    files = {**BUNDLE, "../escape.py": b"x = 1\n"}
    with pytest.raises(errors.InvalidDeployment):
        await app.create_deployment.execute(NewDeployment("python", files), CTX)
    assert app.artifacts.bundles == {}


async def test_a_bundle_the_loader_refuses_is_not_stored(app: App) -> None:
    app.loader.error = "SyntaxError: invalid syntax (workflows.py, line 1)"
    with pytest.raises(errors.InvalidDeployment) as raised:
        await app.create_deployment.execute(NewDeployment("python", BUNDLE), CTX)
    assert "SyntaxError" in raised.value.message
    assert (app.artifacts.bundles, app.store.deployments, app.store.audit) == ({}, {}, [])


# -- ActivateDeployment, GetDeployment ------------------------------------------------------


async def test_activation_moves_the_pointer(app: App) -> None:
    first, second = add_deployment(app), add_deployment(app)
    assert (await app.activate.execute(first, CTX)).active is True
    activated = await app.activate.execute(second, CTX)
    assert (activated.deployment_id, activated.active) == (second, True)
    assert app.store.active_deployment == second
    assert (await app.get_deployment.execute(first)).active is False
    assert (await app.get_deployment.execute(second)).active is True
    assert (await app.get_deployment.execute("active")).deployment_id == second
    assert audit(app) == [("deployments.activate", None)] * 2


async def test_activating_an_unknown_deployment_leaves_the_pointer(app: App) -> None:
    current = add_deployment(app, active=True)
    with pytest.raises(errors.DeploymentNotFound) as raised:
        await app.activate.execute("dpl_missing", CTX)
    assert raised.value.code == "deployment_not_found"
    assert (app.store.active_deployment, app.store.audit) == (current, [])


@pytest.mark.parametrize(
    ("deployment_id", "error", "code"),
    [
        ("active", errors.NoActiveDeployment, "no_active_deployment"),
        ("dpl_missing", errors.DeploymentNotFound, "deployment_not_found"),
    ],
)
async def test_get_deployment_not_found(
    app: App, deployment_id: str, error: type[errors.DomainError], code: str
) -> None:
    add_deployment(app)
    with pytest.raises(error) as raised:
        await app.get_deployment.execute(deployment_id)
    assert raised.value.code == code


# -- ReceiveWebhook -------------------------------------------------------------------------


class Callback:
    """An ``on_webhook`` that keeps what it was handed, and can be told to fail."""

    def __init__(self, fail: bool = False) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail = fail

    async def __call__(self, delivery: dict[str, Any]) -> None:
        self.received.append(delivery)
        if self.fail:
            raise RuntimeError("the callback broke")


TRIGGERS = WebhookProvider("acme", "fake", SECRET, trigger_workflow="greet")
RESUMES = WebhookProvider("acme", "fake", SECRET, resume_token_field="hook.token")
SIGNED = {FakeVerifier.SIGNATURE: SECRET, FakeVerifier.DELIVERY: "dlv-1"}


async def test_unknown_provider(app: App) -> None:
    with pytest.raises(errors.UnknownProvider) as raised:
        await app.webhooks(TRIGGERS, Callback()).execute("other", SIGNED, b"{}", CTX)
    assert raised.value.code == "unknown_provider"


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, errors.InvalidSignature),
        ({FakeVerifier.SIGNATURE: "wrong"}, errors.InvalidSignature),
        ({**SIGNED, FakeVerifier.STALE: "1"}, errors.StaleSignature),
    ],
)
async def test_signature_failures_propagate_and_store_nothing(
    app: App, headers: dict[str, str], error: type[errors.DomainError]
) -> None:
    add_deployment(app, "greet", active=True)
    callback = Callback()
    with pytest.raises(error):
        await app.webhooks(TRIGGERS, callback).execute("acme", headers, b"{}", CTX)
    assert (app.store.deliveries, app.store.runs, callback.received) == ({}, {}, [])


async def test_a_trigger_delivery_starts_a_run_with_the_delivery_as_input(app: App) -> None:
    add_deployment(app, "greet", active=True)
    callback = Callback()
    result = await app.webhooks(TRIGGERS, callback).execute("acme", SIGNED, b'{"n": 1}', CTX)
    delivery = {"provider": "acme", "deliveryId": "dlv-1", "payload": {"n": 1}}
    assert (result.delivery_id, result.duplicate) == ("dlv-1", False)
    assert result.run_id is not None
    run = app.store.runs[result.run_id]
    assert (run.workflow_name, run.input) == ("greet", [delivery])
    assert app.store.deliveries == {("acme", "dlv-1"): {"n": 1}}
    assert audit(app) == [("webhooks.receive", result.run_id)]
    assert callback.received == [{**delivery, "runId": result.run_id}]


async def test_a_duplicate_delivery_does_not_act_twice(app: App) -> None:
    add_deployment(app, "greet", active=True)
    callback = Callback()
    webhooks = app.webhooks(TRIGGERS, callback)
    first = await webhooks.execute("acme", SIGNED, b'{"n": 1}', CTX)
    again = await webhooks.execute("acme", SIGNED, b'{"n": 2}', CTX)
    assert (again.delivery_id, again.duplicate, again.run_id) == ("dlv-1", True, None)
    assert list(app.store.runs) == [first.run_id]
    assert len(callback.received) == 1


async def test_without_a_delivery_id_the_body_digest_deduplicates(app: App) -> None:
    add_deployment(app, "greet", active=True)
    webhooks = app.webhooks(TRIGGERS, Callback())
    headers = {FakeVerifier.SIGNATURE: SECRET}
    first = await webhooks.execute("acme", headers, b'{"n": 1}', CTX)
    again = await webhooks.execute("acme", headers, b'{"n": 1}', CTX)
    assert first.delivery_id == "sha256:" + hashlib.sha256(b'{"n": 1}').hexdigest()
    assert (again.delivery_id, again.duplicate) == (first.delivery_id, True)
    assert len(app.store.runs) == 1


async def test_a_resume_delivery_resumes_the_hook_at_the_token_field(app: App) -> None:
    run_id = await run_in(app, "running", token="tok-1")
    body = b'{"hook": {"token": "tok-1"}, "ok": true}'
    result = await app.webhooks(RESUMES, Callback()).execute("acme", SIGNED, body, CTX)
    assert result.run_id == run_id
    last = list(app.store.events.values())[-1]
    delivery = {"provider": "acme", "deliveryId": "dlv-1",
                "payload": {"hook": {"token": "tok-1"}, "ok": True}}  # fmt: skip
    assert (last.event_type, last.event_data) == (E.HOOK_RECEIVED, {"payload": delivery})
    assert audit(app)[-1] == ("webhooks.receive", run_id)


@pytest.mark.parametrize(
    "body", [b"{}", b'{"hook": {"token": ""}}', b'{"hook": {"token": 7}}', b"not json"]
)
async def test_a_resume_delivery_without_a_token_stores_nothing(app: App, body: bytes) -> None:
    await run_in(app, "running", token="tok-1")
    before = footprint(app.store)
    callback = Callback()
    with pytest.raises(errors.InvalidRequest) as raised:
        await app.webhooks(RESUMES, callback).execute("acme", SIGNED, body, CTX)
    assert raised.value.details == {"field": "hook.token"}
    assert footprint(app.store) == before
    assert callback.received == []


async def test_a_failing_callback_does_not_fail_the_delivery(app: App) -> None:
    add_deployment(app, "greet", active=True)
    callback = Callback(fail=True)
    result = await app.webhooks(TRIGGERS, callback).execute("acme", SIGNED, b"{}", CTX)
    assert result.run_id in app.store.runs
    assert list(app.store.deliveries) == [("acme", "dlv-1")]
    assert len(callback.received) == 1


# -- ManageApiKeys, Authenticate, SeedApiKeys -----------------------------------------------


async def test_a_created_key_authenticates_and_only_its_hash_is_stored(app: App) -> None:
    created = await app.manage_keys.create("ci", {"trigger:write", "runs:read"})
    key = await app.authenticate.execute(created.secret, "runs:read")
    assert (key.key_id, key.name, key.scopes) == (
        created.key.key_id, "ci", frozenset({"trigger:write", "runs:read"}),
    )  # fmt: skip
    assert created.key.key_id.startswith("key_")
    assert list(app.keys.hashes) == [hash_secret(created.secret)]
    assert await app.manage_keys.list() == [created.key]


async def test_a_key_without_the_scope_is_forbidden(app: App) -> None:
    created = await app.manage_keys.create("ci", {"runs:read"})
    with pytest.raises(errors.Forbidden) as raised:
        await app.authenticate.execute(created.secret, "deploy:write")
    assert (raised.value.code, raised.value.details) == (
        "forbidden", {"requiredScope": "deploy:write"},
    )  # fmt: skip


async def _secret(app: App, case: str) -> str | None:
    if case == "missing":
        return None
    if case in ("empty", "unknown"):
        return "" if case == "empty" else new_secret()
    if case == "expired":
        minted = await app.manage_keys.mint("child", {"runs:read"}, timedelta(minutes=5))
        app.clock.advance(300)
        return minted.secret
    created = await app.manage_keys.create("ci", {"runs:read"})
    await app.manage_keys.revoke(created.key.key_id)
    return created.secret


@pytest.mark.parametrize("case", ["missing", "empty", "unknown", "revoked", "expired"])
async def test_unusable_keys_are_unauthorized(app: App, case: str) -> None:
    secret = await _secret(app, case)
    with pytest.raises(errors.Unauthorized) as raised:
        await app.authenticate.execute(secret, "runs:read")
    assert (raised.value.code, raised.value.message) == (
        "unauthorized",
        "Missing or invalid API key",
    )


async def test_a_minted_key_works_until_its_ttl_runs_out(app: App) -> None:
    minted = await app.manage_keys.mint("child", {"world:proxy"}, timedelta(minutes=5))
    assert minted.key.expires_at == NOW + timedelta(minutes=5)
    app.clock.advance(299)
    assert (
        await app.authenticate.execute(minted.secret, "world:proxy")
    ).key_id == minted.key.key_id
    app.clock.advance(1)
    with pytest.raises(errors.Unauthorized):
        await app.authenticate.execute(minted.secret, "world:proxy")


@pytest.mark.parametrize("key_id", ["key_missing", "revoked"])
async def test_revoking_an_unknown_or_revoked_key_is_not_found(app: App, key_id: str) -> None:
    if key_id == "revoked":
        key_id = (await app.manage_keys.create("ci", {"runs:read"})).key.key_id
        await app.manage_keys.revoke(key_id)
    with pytest.raises(errors.NotFound) as raised:
        await app.manage_keys.revoke(key_id)
    assert raised.value.code == "not_found"


async def test_seeding_twice_does_not_duplicate_and_updates_scopes(app: App) -> None:
    await app.seed.execute([SeedKey("seed-secret", frozenset({"runs:read"}), "ops")])
    await app.seed.execute([SeedKey("seed-secret", frozenset({"runs:read"}), "ops")])
    [seeded] = await app.manage_keys.list()
    await app.seed.execute([SeedKey("seed-secret", frozenset({"runs:read", "runs:write"}), "ops2")])
    [updated] = await app.manage_keys.list()
    assert updated.key_id == seeded.key_id
    assert (updated.name, updated.scopes) == ("ops2", frozenset({"runs:read", "runs:write"}))
    assert (await app.authenticate.execute("seed-secret", "runs:write")).key_id == seeded.key_id


async def _with_scopes(app: App, operation: str, scopes: set[str]) -> None:
    if operation == "create":
        await app.manage_keys.create("ci", scopes)
    elif operation == "mint":
        await app.manage_keys.mint("child", scopes, timedelta(minutes=1))
    else:
        await app.seed.execute([SeedKey("seed-secret", frozenset(scopes))])


@pytest.mark.parametrize("operation", ["create", "mint", "seed"])
@pytest.mark.parametrize("scopes", [{"root"}, {"runs:read", "runs:delete"}, set()])
async def test_unknown_or_missing_scopes_are_refused(
    app: App, operation: str, scopes: set[str]
) -> None:
    with pytest.raises(errors.InvalidRequest) as raised:
        await _with_scopes(app, operation, scopes)
    assert raised.value.details == {"field": "scopes"}
    assert app.keys.keys == {}


async def test_a_key_needs_a_name(app: App) -> None:
    with pytest.raises(errors.InvalidRequest):
        await app.manage_keys.create("  ", {"runs:read"})
    assert app.keys.keys == {}


# -- QueryAudit -----------------------------------------------------------------------------


async def test_the_audit_query_needs_a_filter(app: App) -> None:
    with pytest.raises(errors.InvalidRequest) as raised:
        await app.query_audit.execute(AuditQuery())
    assert raised.value.code == "invalid_request"


async def test_the_audit_log_is_searchable_by_correlation_run_and_time(app: App) -> None:
    add_deployment(app, "greet", active=True)
    first = (await trigger(app, key="k-1")).run.run_id
    app.clock.advance(60)
    other = RequestContext("POST", "/v1/runs", "corr-2", key_id="key_A")
    second = (await app.trigger.execute(Trigger("greet", "k-2", "key_A"), other)).run.run_id

    async def runs_of(query: AuditQuery) -> list[str | None]:
        return [entry.run_id for entry in await app.query_audit.execute(query)]

    assert await runs_of(AuditQuery(correlation_id="corr-2")) == [second]
    assert await runs_of(AuditQuery(run_id=first)) == [first]
    assert await runs_of(AuditQuery(since=NOW + timedelta(seconds=30))) == [second]
    assert await runs_of(AuditQuery(since=NOW, limit=1)) == [first]
