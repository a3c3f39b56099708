"""Every client operation, once, as a plan (``protocol.py``): the request it sends,
how the answer is read, and — for waits, listings and live streams — the loop around
it. ``Client`` and ``AsyncClient`` run these plans with their own I/O."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from httpx_sse import ServerSentEvent
from pydantic import BaseModel

from compute_worker.adapters.client.bundle import Bundle
from compute_worker.adapters.client.errors import RunTimeoutError, StreamNotFoundError
from compute_worker.adapters.client.models import (
    Deployment,
    Event,
    Health,
    Hook,
    Page,
    Resumed,
    Run,
    Step,
    StreamInfo,
    TriggeredRun,
    WebhookDelivery,
)
from compute_worker.adapters.client.protocol import (
    CORRELATION_HEADER,
    Emit,
    NextEvent,
    Open,
    Plan,
    Progress,
    Reply,
    Request,
    RetryPolicy,
    Sleep,
    call,
    connection_error,
    decode_chunk,
    dumps,
    error_from,
    log,
    parse,
    send_raw,
    sleep_until,
)

M = TypeVar("M", bound=BaseModel)
JSON = "application/json"
SSE = "text/event-stream"
WAIT_FIRST, WAIT_GROWTH, WAIT_MAX = 0.05, 1.5, 1.0  # seconds between polls of a run
LONG_POLL = 30.0  # seconds one run read may wait on the server for the end (it allows 60)
LONG_POLL_SLACK = 10.0  # the read timeout of such a read, beyond its wait
STREAM_READ_TIMEOUT = 45.0  # the server sends a heartbeat every 10 s
_UNSET: Any = object()


def _q(segment: str) -> str:
    return quote(segment, safe="")


def _when(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.isoformat()


class Api:
    """The operations of the public API, as plans."""

    def __init__(self, api_key: str | None, policy: RetryPolicy, user_agent: str) -> None:
        self._api_key = api_key
        self.policy = policy
        self._user_agent = user_agent

    # -- requests ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        correlation_id: str | None,
        idempotent: bool,
        params: Mapping[str, str | None] | None = None,
        json_body: Any = _UNSET,
        body: bytes | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        accept: str = JSON,
        progress: Progress | None = None,
        read_timeout: float | None = None,
    ) -> Request:
        sent = {"Accept": accept, "User-Agent": self._user_agent,
                CORRELATION_HEADER: correlation_id or str(uuid.uuid4())}  # fmt: skip
        if self._api_key:
            sent["Authorization"] = f"Bearer {self._api_key}"
        if json_body is not _UNSET:
            body, content_type = dumps(json_body), JSON
        if content_type is not None:
            sent["Content-Type"] = content_type
        sent.update(headers or {})
        return Request(
            method=method,
            path=path,
            correlation_id=sent[CORRELATION_HEADER],
            idempotent=idempotent,
            params={k: v for k, v in (params or {}).items() if v is not None},
            headers=sent,
            body=body,
            progress=progress,
            read_timeout=read_timeout,
        )

    def _get(self, path: str, model: type[M], cid: str | None, **params: str | None) -> Plan[M]:
        request = self.request("GET", path, correlation_id=cid, idempotent=True, params=params)
        return call(request, lambda reply: parse(model, reply, request), self.policy)

    def _post(
        self, path: str, model: type[M], cid: str | None, *, idempotent: bool, json_body: Any = None
    ) -> Plan[M]:
        request = self.request(
            "POST", path, correlation_id=cid, idempotent=idempotent, json_body=json_body
        )
        return call(request, lambda reply: parse(model, reply, request), self.policy)

    def _items(
        self, path: str, model: type[M], cid: str | None, **params: str | None
    ) -> Plan[None]:
        """Emit every item of a paginated listing, page after page."""
        cursor: str | None = None
        while True:
            page = yield from self._get(path, Page[model], cid, **params, cursor=cursor)  # type: ignore[valid-type]
            for item in page.data:
                yield Emit(item)
            if not page.has_more or not page.cursor:
                return
            cursor = page.cursor

    def _all(
        self, path: str, model: type[M], cid: str | None, **params: str | None
    ) -> Plan[list[M]]:
        found: list[M] = []
        cursor: str | None = None
        while True:
            page = yield from self._get(path, Page[model], cid, **params, cursor=cursor)  # type: ignore[valid-type]
            found.extend(page.data)
            if not page.has_more or not page.cursor:
                return found
            cursor = page.cursor

    # -- health -----------------------------------------------------------------------------

    def health(self, cid: str | None = None) -> Plan[Health]:
        request = self.request("GET", "/v1/health", correlation_id=cid, idempotent=True)

        reply = yield from send_raw(request, self.policy)
        if reply.ok or (reply.status == 503 and b'"degraded"' in reply.content):
            return parse(Health, reply, request)  # degraded is an answer, not an error
        raise error_from(reply, request)

    # -- runs -------------------------------------------------------------------------------

    def trigger(
        self,
        workflow: str,
        args: Sequence[Any],
        *,
        deployment_id: str | None,
        idempotency_key: str | None,
        execution_context: Mapping[str, Any] | None,
        cid: str | None,
    ) -> Plan[TriggeredRun]:
        key = idempotency_key or f"cw-{uuid.uuid4()}"
        body: dict[str, Any] = {"workflowName": workflow, "input": list(args)}
        if deployment_id is not None:
            body["deploymentId"] = deployment_id
        if execution_context is not None:
            body["executionContext"] = dict(execution_context)
        request = self.request(
            "POST", "/v1/runs", correlation_id=cid, idempotent=True,  # the key makes it so
            json_body=body, headers={"Idempotency-Key": key},
        )  # fmt: skip

        def read(reply: Reply) -> TriggeredRun:
            replayed = reply.headers.get("idempotency-replayed") == "true"
            return parse(TriggeredRun, reply, request).model_copy(
                update={"idempotency_key": key, "replayed": replayed}
            )

        return call(request, read, self.policy)

    def trigger_and_wait(
        self, trigger: Plan[TriggeredRun], timeout: float | None, cid: str | None
    ) -> Plan[TriggeredRun]:
        started = yield from trigger
        ended = yield from self.wait(started.run_id, timeout, cid or started.correlation_id)
        return TriggeredRun.model_validate(ended.model_dump()).model_copy(
            update={
                "idempotency_key": started.idempotency_key,
                "replayed": started.replayed,
                "correlation_id": ended.correlation_id,
            }
        )

    def get_run(self, run_id: str, resolve_data: str = "all", cid: str | None = None) -> Plan[Run]:
        resolve = None if resolve_data == "all" else resolve_data
        return self._get(f"/v1/runs/{_q(run_id)}", Run, cid, resolveData=resolve)

    def wait(self, run_id: str, timeout: float | None, cid: str | None) -> Plan[Run]:
        """Long-poll the run (``?wait=``, without payloads; never past ``timeout``) until
        it is over; then read it whole. A server that answers well before the wait it
        was asked for (one older than ``wait``) is polled instead, with growing pauses."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = WAIT_FIRST
        while True:
            hold = LONG_POLL if deadline is None else min(LONG_POLL, deadline - time.monotonic())
            asked = time.monotonic()
            run = yield from self._run_once_over(run_id, hold, cid)
            if run.is_terminal:
                return (yield from self.get_run(run_id, "all", cid))
            delay = sleep_until(deadline, pause)
            if delay is None:
                raise RunTimeoutError(
                    f"run {run_id} is still {run.status} after {timeout} s",
                    run=run, correlation_id=run.correlation_id,
                )  # fmt: skip
            if time.monotonic() - asked < hold / 2:
                yield Sleep(delay)
                pause = min(pause * WAIT_GROWTH, WAIT_MAX)

    def _run_once_over(self, run_id: str, seconds: float, cid: str | None) -> Plan[Run]:
        """The run without payloads, once it is over or ``seconds`` passed (under a
        millisecond: at once)."""
        waits = seconds >= 0.001
        request = self.request(
            "GET", f"/v1/runs/{_q(run_id)}", correlation_id=cid, idempotent=True,
            params={"resolveData": "none", "wait": f"{seconds:.3f}" if waits else None},
            read_timeout=seconds + LONG_POLL_SLACK if waits else None,
        )  # fmt: skip
        return call(request, lambda reply: parse(Run, reply, request), self.policy)

    def cancel(self, run_id: str, cid: str | None) -> Plan[Run]:
        # cancelling a cancelled run answers the run again: safe to retry
        return self._post(f"/v1/runs/{_q(run_id)}/cancel", Run, cid, idempotent=True)

    def list_runs(
        self,
        *,
        status: str | Sequence[str] | None,
        workflow: str | None,
        deployment_id: str | None,
        created_after: datetime | str | None,
        created_before: datetime | str | None,
        stuck: bool | None,
        page_size: int | None,
        resolve_data: str,
        cid: str | None,
    ) -> Plan[None]:
        statuses = status if isinstance(status, str) or status is None else ",".join(status)
        return self._items(
            "/v1/runs", Run, cid,
            status=statuses or None, workflowName=workflow, deploymentId=deployment_id,
            createdAfter=_when(created_after), createdBefore=_when(created_before),
            stuck=None if stuck is None else str(stuck).lower(),
            limit=None if page_size is None else str(page_size),
            resolveData=None if resolve_data == "all" else resolve_data,
        )  # fmt: skip

    def steps(self, run_id: str, cid: str | None) -> Plan[list[Step]]:
        return self._all(f"/v1/runs/{_q(run_id)}/steps", Step, cid, limit="1000")

    def events(self, run_id: str, cid: str | None) -> Plan[list[Event]]:
        return self._all(f"/v1/runs/{_q(run_id)}/events", Event, cid, limit="1000")

    def events_page(
        self, run_id: str, cursor: str | None, limit: int | None, cid: str | None
    ) -> Plan[Page[Event]]:
        return self._get(
            f"/v1/runs/{_q(run_id)}/events", Page[Event], cid,
            cursor=cursor, limit=None if limit is None else str(limit),
        )  # fmt: skip

    def hooks(self, run_id: str, cid: str | None) -> Plan[list[Hook]]:
        return self._all(f"/v1/runs/{_q(run_id)}/hooks", Hook, cid, limit="1000")

    def streams(self, run_id: str, cid: str | None) -> Plan[list[StreamInfo]]:
        listed = yield from self._get(f"/v1/runs/{_q(run_id)}/streams", Page[StreamInfo], cid)
        return listed.data

    def stream(self, run_id: str, name: str, start_index: int, cid: str | None) -> Plan[None]:
        """Emit the stream's chunks live until it ends. A stream the run has not written
        yet is waited for while the run lives; a broken connection is resumed after the
        last chunk received (``retries`` times in a row at most)."""
        path = f"/v1/runs/{_q(run_id)}/streams/{_q(name)}"
        next_index, failures, pause = start_index, 0, WAIT_FIRST
        while True:
            request = self.request(
                "GET", path, correlation_id=cid, idempotent=True, accept=SSE,
                params={"startIndex": str(next_index), "format": "sse"},
                read_timeout=STREAM_READ_TIMEOUT,
            )  # fmt: skip
            cid = request.correlation_id  # one id for every reconnection
            try:
                reply: Reply = yield Open(request)
            except httpx.TransportError as error:
                failures = yield from self._broken(request, error, failures)
                continue
            if not reply.ok:
                refusal = error_from(reply, request)
                if isinstance(refusal, StreamNotFoundError):
                    run = yield from self.get_run(run_id, "none", cid)
                    if run.is_terminal:
                        raise refusal
                    yield Sleep(pause)
                    pause = min(pause * WAIT_GROWTH, WAIT_MAX)
                    continue
                delay = self.policy.after_reply(request, reply, failures)
                if delay is None:
                    raise refusal
                failures += 1
                yield Sleep(delay)
                continue
            while True:
                try:
                    event: ServerSentEvent | None = yield NextEvent()
                except httpx.TransportError as error:
                    failures = yield from self._broken(request, error, failures)
                    break
                if event is None:  # closed without its end event: the connection broke
                    cut = httpx.RemoteProtocolError("the stream ended without its end event")
                    failures = yield from self._broken(request, cut, failures)
                    break
                if event.event == "end":
                    return
                if event.event in ("", "message"):
                    chunk = decode_chunk(event)
                    next_index = int(event.id) + 1 if event.id.isdigit() else next_index + 1
                    failures = 0
                    yield Emit(chunk)

    def _broken(self, request: Request, error: Exception, failures: int) -> Plan[int]:
        if failures >= self.policy.retries:
            raise connection_error(error, request) from error
        delay = self.policy.pause(failures)
        log_reconnect(request, error, delay)
        yield Sleep(delay)
        return failures + 1

    # -- hooks ------------------------------------------------------------------------------

    def resume(self, token: str, payload: Any, cid: str | None) -> Plan[Resumed]:
        # not idempotent: a second delivery would be a second payload
        body = {"token": token, "payload": payload}
        return self._post("/v1/runs/resume", Resumed, cid, idempotent=False, json_body=body)

    # -- deployments ------------------------------------------------------------------------

    def create_deployment(
        self,
        bundle: Bundle,
        *,
        kind: str,
        entrypoint: str | None,
        metadata: Mapping[str, Any] | None,
        activate: bool,
        progress: Progress | None,
        cid: str | None,
    ) -> Plan[Deployment]:
        params = {"kind": kind, "entrypoint": entrypoint,
                  "metadata": None if metadata is None else json.dumps(dict(metadata))}  # fmt: skip
        request = self.request(
            "POST", "/v1/deployments", correlation_id=cid, idempotent=False, params=params,
            body=bundle.content, content_type=bundle.content_type, progress=progress,
        )  # fmt: skip
        created = yield from call(request, lambda r: parse(Deployment, r, request), self.policy)
        if not activate:
            return created
        return (yield from self.activate(created.deployment_id, request.correlation_id))

    def register_app(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None,
        delivery_secret: str | None,
        metadata: Mapping[str, Any] | None,
        activate: bool,
        cid: str | None,
    ) -> Plan[Deployment]:
        endpoint: dict[str, Any] = {"url": url}
        if headers:
            endpoint["headers"] = dict(headers)
        if delivery_secret is not None:
            endpoint["deliverySecret"] = delivery_secret
        body: dict[str, Any] = {"kind": "wdk", "endpoint": endpoint}
        if metadata is not None:
            body["metadata"] = dict(metadata)
        request = self.request("POST", "/v1/deployments", correlation_id=cid, idempotent=False,
                               json_body=body)  # fmt: skip
        created = yield from call(request, lambda r: parse(Deployment, r, request), self.policy)
        if not activate:
            return created
        return (yield from self.activate(created.deployment_id, request.correlation_id))

    def activate(self, deployment_id: str, cid: str | None) -> Plan[Deployment]:
        path = f"/v1/deployments/{_q(deployment_id)}/activate"
        return self._post(path, Deployment, cid, idempotent=True)

    def get_deployment(self, deployment_id: str, cid: str | None) -> Plan[Deployment]:
        return self._get(f"/v1/deployments/{_q(deployment_id)}", Deployment, cid)

    def list_deployments(self, page_size: int | None, cid: str | None) -> Plan[None]:
        limit = None if page_size is None else str(page_size)
        return self._items("/v1/deployments", Deployment, cid, limit=limit)

    # -- webhooks ---------------------------------------------------------------------------

    def send_webhook(
        self, provider: str, body: bytes, headers: Mapping[str, str], cid: str | None
    ) -> Plan[WebhookDelivery]:
        # a delivery id seen before is answered {duplicate: true}: safe to send again
        request = self.request(
            "POST", f"/v1/webhooks/{_q(provider)}", correlation_id=cid, idempotent=True,
            body=body, headers=headers,
        )  # fmt: skip
        return call(request, lambda r: parse(WebhookDelivery, r, request), self.policy)


def log_reconnect(request: Request, error: Exception, delay: float) -> None:
    log.warning(
        "stream %s broke (%s: %s); reconnecting in %.2f s",
        request.path, type(error).__name__, error, delay,
        extra={"correlationId": request.correlation_id},
    )  # fmt: skip
