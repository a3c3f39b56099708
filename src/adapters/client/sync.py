"""``Client``: the synchronous client. Its methods run the shared plans (``plans.py``)
with a blocking driver over ``httpx.Client``; ``AsyncClient`` (``aio.py``) runs the
same plans over ``httpx.AsyncClient``."""

from __future__ import annotations

import builtins
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx
from httpx_sse import EventSource, ServerSentEvent

from compute_worker.adapters.client.bundle import Source, bundle_from
from compute_worker.adapters.client.config import ClientConfig, user_agent
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
from compute_worker.adapters.client.plans import Api
from compute_worker.adapters.client.protocol import (
    Emit,
    NextEvent,
    Open,
    Plan,
    Progress,
    Reply,
    Request,
    Send,
    Sleep,
)
from compute_worker.adapters.client.webhooks import signed_headers, webhook_body

T = TypeVar("T")
UPLOAD_PIECE = 64 * 1024


class _Stream:
    """The one live response a plan may hold open."""

    def __init__(self) -> None:
        self.response: httpx.Response | None = None
        self.events: Iterator[ServerSentEvent] | None = None

    def close(self) -> None:
        if self.response is not None:
            self.response.close()
        self.response = self.events = None


class SyncDriver:
    def __init__(self, http: httpx.Client, timeout: float) -> None:
        self._http = http
        self._timeout = timeout

    def run(self, plan: Plan[T]) -> T:
        stream = _Stream()
        value: Any = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    instruction = plan.throw(error) if error is not None else plan.send(value)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                if isinstance(instruction, Emit):
                    raise TypeError("this plan emits values: iterate it")
                value, error = self._step(instruction, stream)
        finally:
            stream.close()
            plan.close()

    def iterate(self, plan: Plan[None]) -> Iterator[Any]:
        stream = _Stream()
        value: Any = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    instruction = plan.throw(error) if error is not None else plan.send(value)
                except StopIteration:
                    return
                if isinstance(instruction, Emit):
                    value, error = None, None
                    yield instruction.value
                else:
                    value, error = self._step(instruction, stream)
        finally:
            stream.close()
            plan.close()

    def _step(
        self, instruction: Send | Sleep | Open | NextEvent, stream: _Stream
    ) -> tuple[Any, BaseException | None]:
        """Perform one instruction: its outcome, or the transport error to throw in."""
        if isinstance(instruction, Sleep):
            time.sleep(instruction.seconds)
            return None, None
        try:
            return self._io(instruction, stream), None
        except httpx.TransportError as failed:
            return None, failed

    def _io(self, instruction: Send | Open | NextEvent, stream: _Stream) -> Any:
        if isinstance(instruction, Send):
            response = self._http.send(self._build(instruction.request))
            return Reply(response.status_code, response.headers, response.content)
        if isinstance(instruction, Open):
            stream.close()
            response = self._http.send(self._build(instruction.request), stream=True)
            if not 200 <= response.status_code < 300:
                try:
                    content = response.read()
                finally:
                    response.close()
                return Reply(response.status_code, response.headers, content)
            stream.response, stream.events = response, EventSource(response).iter_sse()
            return Reply(response.status_code, response.headers, b"")
        if stream.events is None:
            return None
        return next(stream.events, None)

    def _build(self, request: Request) -> httpx.Request:
        timeout = httpx.Timeout(self._timeout, read=request.read_timeout or self._timeout)
        content: Any = request.body
        if request.progress is not None and request.body is not None:
            content = _pieces(request.body, request.progress)
        headers = dict(request.headers)
        if request.body is not None:
            headers["Content-Length"] = str(len(request.body))
        return self._http.build_request(
            request.method, request.path, params=dict(request.params), headers=headers,
            content=content, timeout=timeout,
        )  # fmt: skip


def _pieces(body: bytes, progress: Progress) -> Iterator[bytes]:
    total = len(body)
    progress(0, total)
    for start in range(0, total, UPLOAD_PIECE):
        piece = body[start : start + UPLOAD_PIECE]
        yield piece
        progress(min(start + len(piece), total), total)


class ChunkStream:
    """The chunks of a live stream read, as they are written; iterate it, and close it
    (or use it as a context manager) to stop early."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> ChunkStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Part:
    def __init__(self, client: Client) -> None:
        self._api = client._api
        self._driver = client._driver


class Runs(_Part):
    def trigger(
        self,
        workflow: str,
        *input: Any,
        deployment_id: str | None = None,
        idempotency_key: str | None = None,
        execution_context: Mapping[str, Any] | None = None,
        wait: bool = False,
        timeout: float | None = None,
        correlation_id: str | None = None,
    ) -> TriggeredRun:
        """Start ``workflow(*input)``; with ``wait`` return it once it is over."""
        plan = self._api.trigger(
            workflow, input, deployment_id=deployment_id, idempotency_key=idempotency_key,
            execution_context=execution_context, cid=correlation_id,
        )  # fmt: skip
        if wait:
            plan = self._api.trigger_and_wait(plan, timeout, correlation_id)
        return self._driver.run(plan)

    def get(
        self, run_id: str, *, resolve_data: str = "all", correlation_id: str | None = None
    ) -> Run:
        return self._driver.run(self._api.get_run(run_id, resolve_data, correlation_id))

    def wait(
        self, run_id: str, timeout: float | None = None, *, correlation_id: str | None = None
    ) -> Run:
        return self._driver.run(self._api.wait(run_id, timeout, correlation_id))

    def cancel(self, run_id: str, *, correlation_id: str | None = None) -> Run:
        return self._driver.run(self._api.cancel(run_id, correlation_id))

    def list(
        self,
        *,
        status: str | Sequence[str] | None = None,
        workflow: str | None = None,
        deployment_id: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        stuck: bool | None = None,
        page_size: int | None = None,
        resolve_data: str = "all",
        correlation_id: str | None = None,
    ) -> Iterator[Run]:
        """Every matching run, newest first, fetched a page at a time as you iterate."""
        return self._driver.iterate(self._api.list_runs(
            status=status, workflow=workflow, deployment_id=deployment_id,
            created_after=created_after, created_before=created_before, stuck=stuck,
            page_size=page_size, resolve_data=resolve_data, cid=correlation_id,
        ))  # fmt: skip

    def steps(self, run_id: str, *, correlation_id: str | None = None) -> builtins.list[Step]:
        return self._driver.run(self._api.steps(run_id, correlation_id))

    def events(self, run_id: str, *, correlation_id: str | None = None) -> builtins.list[Event]:
        return self._driver.run(self._api.events(run_id, correlation_id))

    def events_page(
        self, run_id: str, cursor: str | None = None, *, limit: int | None = None,
        correlation_id: str | None = None,
    ) -> Page[Event]:  # fmt: skip
        """One page of the run's events after ``cursor``; its cursor resumes later."""
        return self._driver.run(self._api.events_page(run_id, cursor, limit, correlation_id))

    def hooks(self, run_id: str, *, correlation_id: str | None = None) -> builtins.list[Hook]:
        return self._driver.run(self._api.hooks(run_id, correlation_id))

    def streams(
        self, run_id: str, *, correlation_id: str | None = None
    ) -> builtins.list[StreamInfo]:
        return self._driver.run(self._api.streams(run_id, correlation_id))

    def stream(
        self, run_id: str, name: str = "default", start_index: int = 0, *,
        correlation_id: str | None = None,
    ) -> ChunkStream:  # fmt: skip
        plan = self._api.stream(run_id, name, start_index, correlation_id)
        return ChunkStream(self._driver.iterate(plan))


class Deployments(_Part):
    def create(
        self,
        path_or_files: Source,
        kind: str = "python",
        entrypoint: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        activate: bool = False,
        *,
        progress: Progress | None = None,
        correlation_id: str | None = None,
    ) -> Deployment:
        """Upload a folder (zipped here, without ``__pycache__``, ``.git``, ``.venv``),
        a ``.zip``/``.tar.gz`` file or a ``{path: content}`` dict; ``progress(sent,
        total)`` is called as the bytes go."""
        bundle = bundle_from(path_or_files)
        return self._driver.run(self._api.create_deployment(
            bundle, kind=kind, entrypoint=entrypoint, metadata=metadata, activate=activate,
            progress=progress, cid=correlation_id,
        ))  # fmt: skip

    def register_app(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        delivery_secret: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        activate: bool = False,
        correlation_id: str | None = None,
    ) -> Deployment:
        """Register a Workflow DevKit app (kind ``wdk``) the worker delivers to: ``url``
        must be allowed by the worker's ``delivery_allow``; a ``delivery_secret`` signs
        every delivery (the app checks it)."""
        return self._driver.run(self._api.register_app(
            url, headers=headers, delivery_secret=delivery_secret, metadata=metadata,
            activate=activate, cid=correlation_id,
        ))  # fmt: skip

    def activate(self, deployment_id: str, *, correlation_id: str | None = None) -> Deployment:
        return self._driver.run(self._api.activate(deployment_id, correlation_id))

    def get(self, deployment_id: str, *, correlation_id: str | None = None) -> Deployment:
        return self._driver.run(self._api.get_deployment(deployment_id, correlation_id))

    def active(self, *, correlation_id: str | None = None) -> Deployment:
        return self._driver.run(self._api.get_deployment("active", correlation_id))

    def list(
        self, *, page_size: int | None = None, correlation_id: str | None = None
    ) -> Iterator[Deployment]:
        return self._driver.iterate(self._api.list_deployments(page_size, correlation_id))


class Hooks(_Part):
    def resume(
        self, token: str, payload: Any = None, *, correlation_id: str | None = None
    ) -> Resumed:
        return self._driver.run(self._api.resume(token, payload, correlation_id))


class Webhooks(_Part):
    def send(
        self,
        provider: str,
        payload: Any,
        *,
        scheme: str,
        secret: str,
        delivery_id: str | None = None,
        timestamp: int | None = None,
        correlation_id: str | None = None,
    ) -> WebhookDelivery:
        """POST a delivery to ``/v1/webhooks/<provider>``, signed as ``scheme`` signs."""
        delivery = delivery_id or f"msg_{uuid.uuid4().hex}"
        body = webhook_body(scheme, payload, delivery)
        headers = signed_headers(scheme, secret, body, delivery_id=delivery, timestamp=timestamp)
        return self._driver.run(self._api.send_webhook(provider, body, headers, correlation_id))


class Client:
    """The compute-worker API, synchronously::

        with Client("http://127.0.0.1:8080", api_key) as cw:
            run = cw.runs.trigger("hello", "you", wait=True)

    ``url`` and ``api_key`` default to ``COMPUTE_WORKER_URL`` and
    ``COMPUTE_WORKER_API_KEY``. ``retries`` bounds the retries of each request (see
    the README for which requests are retried)."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
        verify: bool | str = True,
    ) -> None:
        self.config = ClientConfig.resolve(url, api_key, timeout, retries)
        self._http = httpx.Client(
            base_url=self.config.url, timeout=timeout, transport=transport, verify=verify
        )
        self._api = Api(self.config.api_key, self.config.policy, user_agent())
        self._driver = SyncDriver(self._http, timeout)
        self.runs = Runs(self)
        self.deployments = Deployments(self)
        self.hooks = Hooks(self)
        self.webhooks = Webhooks(self)

    @property
    def url(self) -> str:
        return self.config.url

    def health(self, *, correlation_id: str | None = None) -> Health:
        return self._driver.run(self._api.health(correlation_id))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
