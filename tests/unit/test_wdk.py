"""WDK apps as deployments (kind ``wdk``) over the in-memory fakes: registration,
triggering, routing published messages, announced URLs, the Python engine's queue
leaving app messages alone, and the delivery rules of ``domain.wdk``."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from compute_worker.adapters.system import LocalSignal
from compute_worker.domain import errors, ids
from compute_worker.domain.audit import RequestContext
from compute_worker.domain.deployments import Deployment, Endpoint, WorkflowInfo
from compute_worker.domain.ids import IdFactory
from compute_worker.domain.outbound import OutboundPolicy, OutboundRefused
from compute_worker.domain.use_cases.deployments import CreateDeployment, NewDeployment
from compute_worker.domain.use_cases.get_encryption_key import GetDeploymentId
from compute_worker.domain.use_cases.proxy_world_event import CreateEvent, ProxyWorldEvent
from compute_worker.domain.use_cases.publish_message import Publish, PublishMessage
from compute_worker.domain.use_cases.resume_hook import ResumeHook
from compute_worker.domain.use_cases.trigger_run import Trigger, TriggerRun
from compute_worker.domain.wdk import (
    AppAnnouncements,
    DeliveryPolicy,
    Reply,
    delivery_url,
    devalue,
    payload_bytes,
    queue_kind,
    read_devalue,
    signature,
)
from compute_worker.domain.world import EventRequest, EventType
from compute_worker.domain.world_writes import WorldWrites
from tests.fakes import (
    FakeArtifactStore,
    FakeBundleLoader,
    FakeDeployments,
    FakeQueue,
    FakeStore,
    FakeUnitOfWork,
    FixedClock,
)

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
CTX = RequestContext("POST", "/v1/deployments", "corr-1", key_id="key_A")
LOOPBACK = OutboundPolicy(("localhost",), what="queue delivery")
NAME = "workflow//./workflows/scenarios//noStep"


class Wdk:
    def __init__(self, policy: OutboundPolicy = LOOPBACK) -> None:
        self.store, self.clock = FakeStore(), FixedClock(NOW)
        uow, self.ids = FakeUnitOfWork(self.store), IdFactory(clock_ms=self.clock.now_ms)
        writes = WorldWrites(self.ids, self.clock, LocalSignal())
        apps = AppAnnouncements(policy)
        self.create = CreateDeployment(
            uow, self.ids, self.clock, FakeArtifactStore(), FakeBundleLoader(), policy
        )
        self.trigger = TriggerRun(uow, self.clock, writes)
        self.publish = PublishMessage(uow, self.clock, writes, apps)
        self.deployment_id = GetDeploymentId(FakeDeployments(self.store), uow, apps)
        self.events = ProxyWorldEvent(uow, self.ids, self.clock, writes)
        self.resume = ResumeHook(uow, self.clock, writes)
        self.queue = FakeQueue(self.store, self.clock)

    async def app(self, url: str = "http://127.0.0.1:3000", **endpoint: object) -> Deployment:
        given = Endpoint(url, **endpoint)  # type: ignore[arg-type]
        return await self.create.execute(NewDeployment("wdk", {}, endpoint=given), CTX)

    def python(self, *names: str) -> str:
        deployment_id = self.ids.new(ids.DEPLOYMENT)
        workflows = tuple(WorkflowInfo(n) for n in names)
        self.store.deployments[deployment_id] = Deployment(
            deployment_id, "python", "sha256:" + "0" * 64, workflows, NOW
        )
        return deployment_id


# -- registration ---------------------------------------------------------------------------


async def test_a_wdk_deployment_keeps_its_endpoint_and_is_audited() -> None:
    wdk = Wdk()
    made = await wdk.app(
        "http://localhost:3000/app/", headers={"x-gateway": "t"}, delivery_secret="s" * 20
    )
    stored = wdk.store.deployments[made.deployment_id]
    assert (stored.kind, stored.workflows, stored.external) == ("wdk", (), True)
    assert stored.endpoint == Endpoint("http://localhost:3000/app", {"x-gateway": "t"}, "s" * 20)
    assert stored.digest.startswith("sha256:")
    assert [e.action for e in wdk.store.audit] == ["deployments.create"]


@pytest.mark.parametrize(
    ("endpoint", "files", "field"),
    [
        (None, {}, "endpoint"),
        (Endpoint("http://127.0.0.1:3000"), {"a.py": b"x"}, "files"),
        (Endpoint(""), {}, "endpoint.url"),
        (Endpoint("http://127.0.0.1:3000/?q=1"), {}, "endpoint.url"),
        (Endpoint("http://127.0.0.1:3000", {"x-vqs-queue-name": "x"}), {}, "endpoint.headers"),
        (Endpoint("http://127.0.0.1:3000", {"Content-Type": "x"}), {}, "endpoint.headers"),
        (Endpoint("http://127.0.0.1:3000", {"bad name": "x"}), {}, "endpoint.headers"),
        (Endpoint("http://127.0.0.1:3000", {"x-a": "line\nbreak"}), {}, "endpoint.headers"),
        (Endpoint("http://127.0.0.1:3000", delivery_secret=""), {}, "endpoint.deliverySecret"),
    ],
)
async def test_bad_wdk_registrations_name_the_field_and_store_nothing(
    endpoint: Endpoint | None, files: dict[str, bytes], field: str
) -> None:
    wdk = Wdk()
    with pytest.raises(errors.InvalidRequest) as raised:
        await wdk.create.execute(NewDeployment("wdk", files, endpoint=endpoint), CTX)
    assert raised.value.details is not None and raised.value.details["field"] == field
    assert wdk.store.deployments == {}


@pytest.mark.parametrize(
    "url", ["http://10.0.0.5:3000", "http://example.com", "ftp://127.0.0.1", "file:///etc"]
)
async def test_urls_outside_the_allow_list_are_refused(url: str) -> None:
    wdk = Wdk()
    with pytest.raises(OutboundRefused) as raised:
        await wdk.app(url)
    assert raised.value.code == "outbound_refused"
    assert wdk.store.deployments == {}


async def test_with_nothing_allowed_every_app_url_is_refused() -> None:
    with pytest.raises(OutboundRefused, match="queue delivery refused"):
        await Wdk(OutboundPolicy((), what="queue delivery")).app()


async def test_an_endpoint_on_a_bundle_deployment_is_refused() -> None:
    wdk = Wdk()
    command = NewDeployment("python", {"workflows.py": b""}, endpoint=Endpoint("http://x"))
    with pytest.raises(errors.InvalidRequest, match="wdk"):
        await wdk.create.execute(command, CTX)


# -- triggering -----------------------------------------------------------------------------


async def test_a_trigger_on_an_app_writes_devalue_input_and_queues_its_first_message() -> None:
    wdk = Wdk()
    app = await wdk.app()
    command = Trigger(NAME, "key-1", "key_A", [{"approved": True}, 2], app.deployment_id)
    run = (await wdk.trigger.execute(command, CTX)).run
    assert run.input == b'devl[[1,3],{"approved":2},true,2]'
    assert (run.deployment_id, run.workflow_name, run.spec_version) == (
        app.deployment_id, NAME, 3,
    )  # fmt: skip
    [queued] = wdk.store.messages.values()
    assert (queued.message.queue_name, queued.message.payload) == (
        "__wkf_workflow_" + NAME, {"runId": run.run_id},
    )  # fmt: skip
    assert queued.message.deployment_id == app.deployment_id
    again = await wdk.trigger.execute(command, CTX)
    assert again.replayed and again.run.run_id == run.run_id


async def test_an_app_workflow_name_must_make_a_queue_name() -> None:
    wdk = Wdk()
    app = await wdk.app()
    command = Trigger("has space", "key-1", "key_A", [], app.deployment_id)
    with pytest.raises(errors.InvalidRequest, match="machine name"):
        await wdk.trigger.execute(command, CTX)
    assert wdk.store.runs == {}


async def test_resuming_an_apps_hook_writes_devalue_and_wakes_the_app() -> None:
    wdk = Wdk()
    app = await wdk.app()
    command = Trigger(NAME, "key-1", "key_A", [], app.deployment_id)
    run = (await wdk.trigger.execute(command, CTX)).run
    for request in (
        EventRequest(EventType.RUN_STARTED),
        EventRequest(EventType.HOOK_CREATED, "hook_1", None, {"token": "tok"}),
    ):
        await wdk.events.execute(CreateEvent(run.run_id, request))
    wdk.store.messages.clear()
    await wdk.resume.execute("tok", {"approved": True}, CTX)
    [received] = [e for e in wdk.store.events.values() if e.event_type is EventType.HOOK_RECEIVED]
    assert received.event_data == {"payload": b'devl[{"approved":1},true]'}
    [queued] = wdk.store.messages.values()
    assert (queued.message.queue_name, queued.message.deployment_id) == (
        "__wkf_workflow_" + NAME, app.deployment_id,
    )  # fmt: skip


def test_devalue_matches_the_javascript_library() -> None:
    # outputs of devalue.stringify (devalue 5) for the same values
    assert devalue({"approved": True}) == '[{"approved":1},true]'
    assert devalue([]) == "[[]]"
    assert devalue(["a", "a", None]) == '[[1,1,2],"a",null]'
    assert devalue("x") == '["x"]'
    assert devalue(float("nan")) == "-3"
    assert devalue([float("inf"), -0.0]) == "[[-4,-6]]"
    assert devalue({"a": {"b": [1]}}) == '[{"a":1},{"b":2},[3],1]'
    assert payload_bytes([1]) == b"devl[[1],1]"


@pytest.mark.parametrize(
    "value",
    [{"approved": True}, [], ["a", "a", None], "x", [1.5, -2, {"k": [[], {}]}], {"a": {"b": [1]}}],
)
def test_read_devalue_reads_what_devalue_writes(value: object) -> None:
    assert read_devalue(devalue(value)) == value


def test_read_devalue_reads_constants_and_refuses_other_types() -> None:
    assert read_devalue("[[-1,-4,-6]]") == [None, float("inf"), -0.0]
    assert read_devalue("-1") is None
    for text in ('[["Date","2026-01-01T00:00:00.000Z"]]', "[[5]]", "[[0]]", "{}", "[]", "-9"):
        with pytest.raises(ValueError):
            read_devalue(text)


# -- the Python engine's queue ----------------------------------------------------------------


async def test_the_engine_queue_never_hands_out_an_app_message() -> None:
    wdk = Wdk()
    app = await wdk.app()
    python = wdk.python("greet")
    for deployment_id in (app.deployment_id, python, None):
        await wdk.publish.execute(Publish("__wkf_workflow_greet", {}, deployment_id))
    claimed = await wdk.queue.claim("w1", limit=10, lease_seconds=30)
    assert sorted(m.deployment_id or "" for m in claimed) == sorted(["", python])


# -- publishing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["__wkf_workflow_x", "__ns1_wkf_step_x", "__a_wkf_workflow_" + NAME]
)
async def test_namespaced_and_runtime_queue_names_are_accepted(name: str) -> None:
    message_id = await Wdk().publish.execute(Publish(name, {"x": 1}))
    assert message_id.startswith("msg_")


@pytest.mark.parametrize(
    "name", ["__wkf_job_x", "__NS_wkf_workflow_x", "__wkf_workflow_", "__wkf_step_a b", "wkf_x"]
)
async def test_other_queue_names_are_refused(name: str) -> None:
    with pytest.raises(errors.InvalidRequest) as raised:
        await Wdk().publish.execute(Publish(name, {}))
    assert raised.value.details == {"field": "queueName"}


async def test_a_message_goes_to_its_runs_deployment_else_the_callers() -> None:
    wdk = Wdk()
    app, other = await wdk.app(), await wdk.app()
    run = (await wdk.trigger.execute(Trigger(NAME, "k", "key_A", [], app.deployment_id), CTX)).run
    step = {"workflowRunId": run.run_id, "stepId": "step_1"}
    await wdk.publish.execute(Publish("__wkf_step_s", step, caller_deployment_id="elsewhere"))
    orphan = {"runId": "wrun_none"}
    await wdk.publish.execute(
        Publish("__wkf_workflow_w", orphan, caller_deployment_id=other.deployment_id)
    )
    routed = {q.message.queue_name: q.message.deployment_id for q in wdk.store.messages.values()}
    assert routed["__wkf_step_s"] == app.deployment_id
    assert routed["__wkf_workflow_w"] == other.deployment_id


async def test_an_announced_url_becomes_the_delivery_url_when_allowed() -> None:
    wdk = Wdk()
    app = await wdk.app("http://localhost", delivery_secret="secret")
    publish = Publish("__wkf_workflow_w", {}, app.deployment_id, app_url="http://127.0.0.1:4567/")
    await wdk.publish.execute(publish)
    endpoint = wdk.store.deployments[app.deployment_id].endpoint
    assert endpoint == Endpoint("http://127.0.0.1:4567", {}, "secret")
    with pytest.raises(errors.InvalidRequest) as raised:
        await wdk.deployment_id.execute(app.deployment_id, "http://10.1.1.1:80")
    assert raised.value.details is not None
    assert raised.value.details["field"] == "x-compute-app-url"
    assert wdk.store.deployments[app.deployment_id].endpoint == endpoint


async def test_deployment_id_answers_the_named_deployment_not_the_active_one() -> None:
    wdk = Wdk()
    app = await wdk.app()
    wdk.store.active_deployment = wdk.python("greet")
    assert await wdk.deployment_id.execute(app.deployment_id, "http://localhost:9999") == (
        app.deployment_id
    )
    assert wdk.store.deployments[app.deployment_id].endpoint == Endpoint("http://localhost:9999")
    assert await wdk.deployment_id.execute() == wdk.store.active_deployment
    with pytest.raises(errors.DeploymentNotFound):
        await wdk.deployment_id.execute("dpl_missing")


# -- deliveries -----------------------------------------------------------------------------


def test_queue_kinds_and_delivery_urls() -> None:
    assert queue_kind("__wkf_workflow_x") == "workflow"
    assert queue_kind("__ns_wkf_step_x") == "step"
    assert queue_kind("__wkf_job_x") is None
    assert delivery_url("http://h/app/", "__ns_wkf_workflow_x") == (
        "http://h/app/.well-known/workflow/v1/flow"
    )
    assert delivery_url("http://h", "__wkf_step_x") == "http://h/.well-known/workflow/v1/step"


def test_the_signature_is_lane_md_hmac() -> None:
    body = b'{"runId":"wrun_1"}'
    expected = hmac.new(b"k", b"1700000000.msg_1.3." + body, hashlib.sha256).hexdigest()
    assert signature("k", 1700000000, "msg_1", 3, body) == "v1=" + expected


POLICY = DeliveryPolicy(max_failures=4, max_deliveries=10)


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        (Reply(200, b'{"ok":true}'), ("ack", 0.0, 5, 0)),
        (Reply(204), ("ack", 0.0, 5, 0)),
        (Reply(200, b'{"timeoutSeconds": 2.5}'), ("again", 2.5, 5, 0)),
        (Reply(200, b'{"timeoutSeconds": 0}'), ("again", 0.0, 5, 0)),
        (Reply(200, b'{"timeoutSeconds": -1}'), ("ack", 0.0, 5, 0)),
        (Reply(200, b'{"timeoutSeconds": "3"}'), ("ack", 0.0, 5, 0)),
        (Reply(200, b"not json"), ("ack", 0.0, 5, 0)),
        (Reply(500, b'"TypeError: boom"'), ("again", 2.0, 5, 2)),
        (Reply(401), ("again", 2.0, 5, 2)),
        (Reply(302), ("again", 2.0, 5, 2)),
        (Reply(None, reached=False, error="refused"), ("again", 2.0, 4, 2)),
        (Reply(None, reached=True, error="timeout"), ("again", 2.0, 5, 2)),
    ],
)
def test_replies_decide_what_happens_next(
    reply: Reply, verdict: tuple[str, float, int, int]
) -> None:
    judged = POLICY.judge(reply, attempt=5, failures=1)
    assert (judged.action, judged.delay_seconds, judged.attempt, judged.failures) == verdict


def test_failures_back_off_then_the_message_is_dropped_with_a_reason() -> None:
    assert [POLICY.backoff(n) for n in (1, 2, 3, 7, 8, 100)] == [1, 2, 4, 60, 60, 60]
    dropped = POLICY.judge(Reply(503, b'"StepNotFound: x"'), attempt=4, failures=3)
    assert dropped.action == "drop" and "4 failed deliveries in a row" in dropped.reason
    assert dropped.reason.endswith('HTTP 503: "StepNotFound: x"')
    capped = POLICY.judge(Reply(200, json.dumps({"timeoutSeconds": 1}).encode()), 10, 0)
    assert capped.action == "drop" and "safety cap" in capped.reason
