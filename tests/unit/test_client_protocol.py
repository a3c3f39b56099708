"""The client's sans-IO core without a network: plans driven by hand (answers and
transport errors fed in, sleeps observed), the error table, Retry-After, the JSON
codec, bundles built from folders and dicts, and webhook signatures checked by the
server's own verifiers."""

from __future__ import annotations

import base64
import io
import json
import os
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent

from compute_worker.adapters.client import errors, plans, protocol
from compute_worker.adapters.client.bundle import bundle_from
from compute_worker.adapters.client.models import Run
from compute_worker.adapters.client.plans import Api
from compute_worker.adapters.client.protocol import (
    Emit,
    Open,
    Reply,
    Request,
    RetryPolicy,
    Send,
    Sleep,
    dumps,
    error_from,
    loads,
    retry_after,
)
from compute_worker.adapters.client.webhooks import signed_headers, webhook_body
from compute_worker.adapters.webhooks.verifiers import VERIFIERS

RUN = {
    "runId": "wrun_1", "status": "pending", "deploymentId": "dpl_1", "workflowName": "w",
    "input": [1], "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z",
}  # fmt: skip


def reply(status: int, body: Any = None, **headers: str) -> Reply:
    content = b"" if body is None else json.dumps(body).encode()
    return Reply(status, {k.replace("_", "-"): v for k, v in headers.items()}, content)


def envelope(code: str, message: str = "no", **details: Any) -> dict[str, Any]:
    return {"code": code, "message": message, "details": details}


class Script:
    """Drive a plan: each Send gets the next scripted answer (a Reply, or an exception
    thrown into the plan); every Sleep is recorded and returns at once."""

    def __init__(self, *answers: Reply | Exception) -> None:
        self.answers = list(answers)
        self.sent: list[Request] = []
        self.slept: list[float] = []

    def run(self, plan: Any) -> Any:
        value: Any = None
        error: Exception | None = None
        while True:
            try:
                step = plan.throw(error) if error is not None else plan.send(value)
            except StopIteration as stop:
                return stop.value
            value, error = None, None
            if isinstance(step, Sleep):
                self.slept.append(step.seconds)
            elif isinstance(step, Send):
                self.sent.append(step.request)
                answer = self.answers.pop(0)
                if isinstance(answer, Exception):
                    error = answer
                else:
                    value = answer
            else:  # pragma: no cover
                raise AssertionError(step)
            self.performed(step, value)

    def performed(self, step: Send | Sleep, answer: Reply | None) -> None:
        """Called once each instruction is done, with the answer a Send got."""


API = Api("secret-key", RetryPolicy(retries=3, backoff=0.1), "test-agent")


def _get_run() -> Any:
    return API.get_run("wrun_1", cid="corr-1")


# -- retries ----------------------------------------------------------------------------------


def test_a_get_is_retried_after_429_and_503_honouring_retry_after() -> None:
    script = Script(
        reply(429, envelope("rate_limited"), retry_after="3"),
        reply(503, envelope("storage_unavailable"), retry_after="1"),
        reply(200, RUN, x_workflow_correlation_id="corr-1"),
    )
    run = script.run(_get_run())
    assert isinstance(run, Run) and run.run_id == "wrun_1"
    assert script.slept[0] >= 3 and script.slept[1] >= 1
    assert all(r.correlation_id == "corr-1" for r in script.sent)  # one id for every attempt
    assert script.sent[0].headers["Authorization"] == "Bearer secret-key"
    assert run.correlation_id == "corr-1"


def test_retries_are_bounded_and_then_the_typed_error_is_raised() -> None:
    script = Script(*[reply(503, envelope("storage_unavailable"), retry_after="1")] * 4)
    with pytest.raises(errors.StorageUnavailableError) as raised:
        script.run(_get_run())
    assert len(script.sent) == 4 and len(script.slept) == 3
    assert raised.value.retry_after == 1 and raised.value.status == 503


def test_a_retry_after_beyond_the_limit_is_not_waited_for() -> None:
    script = Script(reply(429, envelope("rate_limited"), retry_after="3600"))
    with pytest.raises(errors.RateLimitedError) as raised:
        script.run(_get_run())
    assert script.slept == [] and raised.value.retry_after == 3600


def test_transport_errors_are_retried_for_safe_requests_only() -> None:
    script = Script(httpx.ReadTimeout("slow"), reply(200, RUN))
    assert script.run(_get_run()).run_id == "wrun_1"
    assert len(script.slept) == 1

    resume = API.resume("tok", {"ok": 1}, None)
    script = Script(httpx.ReadTimeout("slow"))
    with pytest.raises(errors.ComputeConnectionError) as raised:
        script.run(resume)  # the payload may have been delivered: never sent twice
    assert script.slept == [] and raised.value.status is None
    assert isinstance(raised.value, ConnectionError)

    resumed = {"runId": "wrun_1", "hookId": "hook_1", "token": "tok"}
    script = Script(httpx.ConnectError("refused"), reply(202, resumed))
    assert script.run(API.resume("tok", 1, None)).hook_id == "hook_1"  # never left: safe


def test_a_refused_resume_is_not_retried_even_when_rate_limited() -> None:
    script = Script(reply(429, envelope("rate_limited"), retry_after="1"))
    with pytest.raises(errors.RateLimitedError):
        script.run(API.resume("tok", 1, None))
    assert script.slept == []


def test_a_trigger_carries_one_fresh_key_through_its_retries() -> None:
    plan = API.trigger("w", (1, b"\x00"), deployment_id=None, idempotency_key=None,
                       execution_context=None, cid=None)  # fmt: skip
    script = Script(httpx.RemoteProtocolError("cut"), reply(202, RUN, idempotency_replayed="true"))
    run = script.run(plan)
    keys = {request.headers["Idempotency-Key"] for request in script.sent}
    assert len(keys) == 1 and run.idempotency_key in keys and run.replayed is True
    body = loads(script.sent[0].body or b"")
    assert body == {"workflowName": "w", "input": [1, b"\x00"]}
    other = Script(reply(202, RUN))
    again = other.run(API.trigger("w", (), deployment_id="dpl_1", idempotency_key=None,
                                  execution_context={"a": 1}, cid=None))  # fmt: skip
    assert again.idempotency_key not in keys and again.replayed is False
    assert loads(other.sent[0].body or b"")["deploymentId"] == "dpl_1"


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class HeldScript(Script):
    """A server that holds a ``?wait`` read of a live run for the wait asked, on a fake
    clock (the plans' ``time``); an ended run is answered at once."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *answers: Reply | Exception) -> None:
        super().__init__(*answers)
        self.time = FakeTime()
        monkeypatch.setattr(plans, "time", self.time)
        monkeypatch.setattr(protocol, "time", self.time)

    def performed(self, step: Send | Sleep, answer: Reply | None) -> None:
        if isinstance(step, Sleep):
            self.time.now += step.seconds
        elif answer is not None and b'"running"' in answer.content:
            self.time.now += float(step.request.params.get("wait", 0))


RUNNING = reply(200, {**RUN, "status": "running"})
DONE = {**RUN, "status": "completed", "output": 7}


def test_wait_long_polls_without_payloads_then_reads_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = HeldScript(monkeypatch, RUNNING, RUNNING, reply(200, {**DONE, "output": None}),
                        reply(200, DONE))  # fmt: skip
    run = script.run(API.wait("wrun_1", None, None))
    assert (run.status, run.output) == ("completed", 7)
    asked = [(r.params.get("resolveData"), r.params.get("wait")) for r in script.sent]
    assert asked == [("none", "30.000")] * 3 + [(None, None)]
    assert [r.read_timeout for r in script.sent] == [40.0] * 3 + [None]
    assert script.slept == []


def test_a_long_poll_never_waits_past_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    script = HeldScript(monkeypatch, RUNNING, RUNNING)
    with pytest.raises(errors.RunTimeoutError) as raised:
        script.run(API.wait("wrun_1", 45, None))
    assert [r.params.get("wait") for r in script.sent] == ["30.000", "15.000"]
    assert raised.value.run.status == "running" and script.time.now == 1045.0


def test_a_server_that_ignores_wait_is_polled_with_growing_pauses() -> None:
    running = {**RUN, "status": "running"}
    script = Script(*[reply(200, running)] * 5, reply(200, {**DONE, "output": None}),
                    reply(200, DONE))  # fmt: skip
    run = script.run(API.wait("wrun_1", None, None))
    assert run.output == 7 and run.status == "completed"
    assert [r.params.get("resolveData") for r in script.sent] == ["none"] * 6 + [None]
    assert script.slept == sorted(script.slept) and script.slept[-1] <= 1.0


def test_wait_gives_up_at_its_timeout() -> None:
    script = Script(RUNNING)
    with pytest.raises(errors.RunTimeoutError) as raised:
        script.run(API.wait("wrun_1", 0, None))
    assert raised.value.run.status == "running" and isinstance(raised.value, TimeoutError)
    assert "wait" not in script.sent[0].params  # no time left to wait for


def test_a_listing_follows_cursors_until_the_last_page() -> None:
    pages = [
        {"data": [RUN, {**RUN, "runId": "wrun_2"}], "cursor": "c1", "hasMore": True},
        {"data": [{**RUN, "runId": "wrun_3"}], "cursor": "c2", "hasMore": False},
    ]
    plan = API.list_runs(status=["running", "pending"], workflow="w", deployment_id=None,
                         created_after=datetime(2026, 1, 1, tzinfo=UTC), created_before=None,
                         stuck=None, page_size=2, resolve_data="all", cid=None)  # fmt: skip
    emitted, value = [], None
    answers = [reply(200, page) for page in pages]
    sent = []
    while True:
        try:
            step = plan.send(value)
        except StopIteration:
            break
        value = None
        if isinstance(step, Send):
            sent.append(step.request)
            value = answers.pop(0)
        else:
            emitted.append(step.value)
    assert [run.run_id for run in emitted] == ["wrun_1", "wrun_2", "wrun_3"]
    after = "2026-01-01T00:00:00+00:00"
    assert sent[0].params == {
        "status": "running,pending", "workflowName": "w", "createdAfter": after, "limit": "2",
    }  # fmt: skip
    assert sent[1].params["cursor"] == "c1"


# -- the error table --------------------------------------------------------------------------

ERRORS = [
    (400, "invalid_request", errors.ValidationError),
    (400, "idempotency_key_required", errors.ValidationError),
    (401, "unauthorized", errors.AuthenticationError),
    (401, "invalid_signature", errors.AuthenticationError),
    (403, "forbidden", errors.PermissionDeniedError),
    (404, "run_not_found", errors.RunNotFoundError),
    (404, "deployment_not_found", errors.DeploymentNotFoundError),
    (404, "workflow_not_found", errors.WorkflowNotFoundError),
    (404, "hook_not_found", errors.HookNotFoundError),
    (404, "stream_not_found", errors.StreamNotFoundError),
    (404, "no_active_deployment", errors.NoActiveDeploymentError),
    (409, "no_active_deployment", errors.NoActiveDeploymentError),
    (404, "not_found", errors.NotFoundError),
    (409, "idempotency_conflict", errors.IdempotencyComputeClientError),
    (409, "run_already_terminal", errors.RunAlreadyTerminalError),
    (409, "entity_conflict", errors.ConflictError),
    (413, "payload_too_large", errors.PayloadTooLargeError),
    (422, "invalid_deployment", errors.InvalidDeploymentError),
    (429, "rate_limited", errors.RateLimitedError),
    (500, "internal_error", errors.ServerError),
    (502, None, errors.ServerError),
    (503, "storage_unavailable", errors.StorageUnavailableError),
    (405, "method_not_allowed", errors.ComputeClientError),
]


@pytest.mark.parametrize(("status", "code", "expected"), ERRORS)
def test_errors_are_mapped_from_status_and_code(
    status: int, code: str | None, expected: type[errors.ComputeClientError]
) -> None:
    body = envelope(code, "said the server", field="x") if code else None
    request = Request("GET", "/v1/x", "corr-9", idempotent=True)
    error = error_from(reply(status, body), request)
    assert type(error) is expected
    assert (error.status, error.correlation_id) == (status, "corr-9")
    assert error.code == (code or f"http_{status}")
    if code:
        assert error.message == "said the server" and error.details == {"field": "x"}
    assert "corr-9" in str(error)


def test_a_non_json_error_body_still_maps_by_status() -> None:
    request = Request("GET", "/v1/x", "c", idempotent=True)
    error = error_from(Reply(502, {}, b"<html>bad gateway</html>"), request)
    assert isinstance(error, errors.ServerError) and "502" in error.message


def test_an_unexpected_answer_is_a_response_error() -> None:
    script = Script(reply(200, {"nothing": "useful"}))
    with pytest.raises(errors.ResponseError) as raised:
        script.run(_get_run())
    assert raised.value.code == "invalid_response"


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after({"retry-after": "7"}) == 7
    assert retry_after({}) is None
    assert retry_after({"retry-after": "soon"}) is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (retry_after({"retry-after": later}) or 0) <= 30


def test_json_revives_and_sends_bytes_as_envelopes() -> None:
    value = {"a": b"\x00\xff", "b": [bytearray(b"x")], "c": {"__type": "other"}}
    assert loads(dumps(value)) == {"a": b"\x00\xff", "b": [b"x"], "c": {"__type": "other"}}
    with pytest.raises(TypeError):
        dumps({"when": datetime.now(UTC)})


# -- bundles ----------------------------------------------------------------------------------


def _names(content: bytes) -> list[str]:
    return sorted(zipfile.ZipFile(io.BytesIO(content)).namelist())


def test_a_folder_is_zipped_without_caches_and_vcs(tmp_path: Path) -> None:
    (tmp_path / "workflows.py").write_text("print(1)\n")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "util.py").write_text("x = 1\n")
    (tmp_path / "lib" / "util.cpython-311.pyc").write_bytes(b"\x00")
    for skipped in ("__pycache__", ".git", ".venv", "lib/__pycache__"):
        (tmp_path / skipped).mkdir(parents=True, exist_ok=True)
        (tmp_path / skipped / "junk").write_text("no")
    bundle = bundle_from(tmp_path)
    assert bundle.content_type == "application/zip" and bundle.files == 2
    assert _names(bundle.content) == ["lib/util.py", "workflows.py"]
    assert bundle_from(str(tmp_path)).content == bundle.content  # the same files, same zip


def test_a_dict_of_files_and_archives_as_they_are(tmp_path: Path) -> None:
    bundle = bundle_from({"workflows.py": "a = 1\n", "data/blob.bin": b"\x00\x01"})
    assert _names(bundle.content) == ["data/blob.bin", "workflows.py"]
    archive = tmp_path / "bundle.tar.gz"
    archive.write_bytes(b"gz")
    assert (bundle_from(archive).content, bundle_from(archive).content_type) == (
        b"gz", "application/gzip",
    )  # fmt: skip
    (tmp_path / "b.zip").write_bytes(b"zip")
    assert bundle_from(tmp_path / "b.zip").content_type == "application/zip"


def test_bundles_refuse_links_empty_folders_and_other_files(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no files"):
        bundle_from(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        bundle_from(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="folder"):
        bundle_from(tmp_path / "notes.txt")
    linked = tmp_path / "linked"
    linked.mkdir()
    os.symlink("/etc/hostname", linked / "workflows.py")
    with pytest.raises(ValueError, match="symbolic link"):
        bundle_from(linked)


# -- webhooks ---------------------------------------------------------------------------------

SECRETS = {"github": "gh-secret", "stripe": "whsec_stripe", "standard": "whsec_c2VjcmV0LWtleQ=="}


@pytest.mark.parametrize("scheme", sorted(SECRETS))
def test_signed_deliveries_pass_the_servers_verifiers(scheme: str) -> None:
    body = webhook_body(scheme, {"type": "test"}, "dlv_1")
    headers = signed_headers(scheme, SECRETS[scheme], body, delivery_id="dlv_1")
    lowered = {k.lower(): v for k, v in headers.items()}
    verifier: Callable[..., Any] = VERIFIERS[scheme]().verify
    assert verifier(lowered, body, SECRETS[scheme]) == "dlv_1"
    with pytest.raises(Exception, match="signature"):
        verifier(lowered, body + b" ", SECRETS[scheme])
    if scheme == "stripe":
        assert json.loads(body)["id"] == "dlv_1"  # Stripe names deliveries by event id


def test_an_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="scheme"):
        signed_headers("paypal", "s", b"{}")


# -- live streams -----------------------------------------------------------------------------


def drive_stream(plan: Any, steps: list[Any]) -> tuple[list[bytes], list[Request], list[float]]:
    """Answer each Open/Send/NextEvent with the next of ``steps`` (an exception is thrown
    in); collect what the plan emits, the requests it made and its sleeps."""
    emitted: list[bytes] = []
    requests: list[Request] = []
    slept: list[float] = []
    value: Any = None
    error: Exception | None = None
    while True:
        try:
            step = plan.throw(error) if error is not None else plan.send(value)
        except StopIteration:
            return emitted, requests, slept
        value, error = None, None
        if isinstance(step, Emit):
            emitted.append(step.value)
            continue
        if isinstance(step, Sleep):
            slept.append(step.seconds)
            continue
        if isinstance(step, Send | Open):
            requests.append(step.request)
        answer = steps.pop(0)
        if isinstance(answer, Exception):
            error = answer
        else:
            value = answer


def sse(data: bytes, index: int) -> ServerSentEvent:
    return ServerSentEvent(data=base64.b64encode(data).decode(), id=str(index))


def test_a_broken_stream_is_resumed_after_the_last_chunk() -> None:
    steps: list[Any] = [
        reply(200),
        sse(b"a", 0),
        sse(b"b", 1),
        httpx.ReadError("reset"),
        reply(200),
        sse(b"c", 2),
        None,  # ended without its end event: broken again
        reply(200),
        ServerSentEvent(event="end", data='{"nextIndex": 3}'),
    ]
    emitted, requests, slept = drive_stream(API.stream("wrun_1", "log", 0, None), steps)
    assert emitted == [b"a", b"b", b"c"]
    assert [r.params["startIndex"] for r in requests] == ["0", "2", "3"]
    assert len({r.correlation_id for r in requests}) == 1 and len(slept) == 2
    assert requests[0].path == "/v1/runs/wrun_1/streams/log"
    assert requests[0].headers["Accept"] == "text/event-stream"


def test_a_stream_that_keeps_breaking_gives_up() -> None:
    steps: list[Any] = [httpx.ConnectError("refused")] * 4
    with pytest.raises(errors.ComputeConnectionError):
        drive_stream(API.stream("wrun_1", "log", 0, None), steps)


def test_a_stream_not_written_yet_is_waited_for_while_its_run_lives() -> None:
    missing = reply(404, envelope("stream_not_found"))
    steps: list[Any] = [
        missing, reply(200, {**RUN, "status": "running"}),
        reply(200), ServerSentEvent(event="end", data="{}"),
    ]  # fmt: skip
    emitted, requests, slept = drive_stream(API.stream("wrun_1", "a/b", 0, None), steps)
    assert emitted == [] and len(slept) == 1
    assert requests[0].path == "/v1/runs/wrun_1/streams/a%2Fb"
    assert requests[1].path == "/v1/runs/wrun_1" and requests[1].params["resolveData"] == "none"

    over = [missing, reply(200, {**RUN, "status": "completed"})]
    with pytest.raises(errors.StreamNotFoundError):
        drive_stream(API.stream("wrun_1", "log", 0, None), over)
