"""``AsyncClient``: the same plans as ``Client`` (``plans.py``), run by an asyncio
driver over ``httpx.AsyncClient``. Folders are zipped in a worker thread, so the
event loop never blocks on the disk."""

from __future__ import annotations

import asyncio
import builtins
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
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
from compute_worker.adapters.client.sync import UPLOAD_PIECE
from compute_worker.adapters.client.webhooks import signed_headers, webhook_body

T = TypeVar("T")


class _Stream:
    def __init__(self) -> None:
        self.response: httpx.Response | None = None
        self.events: AsyncIterator[ServerSentEvent] | None = None

    async def close(self) -> None:
        if self.response is not None:
            await self.response.aclose()
        self.response = self.events = None


class AsyncDriver:
    def __init__(self, http: httpx.AsyncClient, timeout: float) -> None:
        self._http = http
        self._timeout = timeout

    async def run(self, plan: Plan[T]) -> T:
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
                value, error = await self._step(instruction, stream)
        finally:
            await stream.close()
            plan.close()

    async def iterate(self, plan: Plan[None]) -> AsyncIterator[Any]:
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
                    value, error = await self._step(instruction, stream)
        finally:
            await stream.close()
            plan.close()

    async def _step(
        self, instruction: Send | Sleep | Open | NextEvent, stream: _Stream
    ) -> tuple[Any, BaseException | None]:
        """Perform one instruction: its outcome, or the transport error to throw in."""
        if isinstance(instruction, Sleep):
            await asyncio.sleep(instruction.seconds)
            return None, None
        try:
            return await self._io(instruction, stream), None
        except httpx.TransportError as failed:
            return None, failed

    async def _io(self, instruction: Send | Open | NextEvent, stream: _Stream) -> Any:
        if isinstance(instruction, Send):
            response = await self._http.send(self._build(instruction.request))
            return Reply(response.status_code, response.headers, response.content)
        if isinstance(instruction, Open):
            await stream.close()
            response = await self._http.send(self._build(instruction.request), stream=True)
            if not 200 <= response.status_code < 300:
                try:
                    content = await response.aread()
                finally:
                    await response.aclose()
                return Reply(response.status_code, response.headers, content)
            stream.response, stream.events = response, EventSource(response).aiter_sse()
            return Reply(response.status_code, response.headers, b"")
        if stream.events is None:
            return None
        return await anext(stream.events, None)

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


async def _pieces(body: bytes, progress: Progress) -> AsyncIterator[bytes]:
    total = len(body)
    progress(0, total)
    for start in range(0, total, UPLOAD_PIECE):
        piece = body[start : start + UPLOAD_PIECE]
        yield piece
        progress(min(start + len(piece), total), total)


class AsyncChunkStream:
    """The chunks of a live stream read; ``async for`` over it, and ``aclose()`` it (or
    ``async with`` it) to stop early."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        return await anext(self._chunks)

    async def aclose(self) -> None:
        close = getattr(self._chunks, "aclose", None)
        if close is not None:
            await close()

    async def __aenter__(self) -> AsyncChunkStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _Part:
    def __init__(self, client: AsyncClient) -> None:
        self._api = client._api
        self._driver = client._driver

    async def _run(self, plan: Plan[T]) -> T:
        return await self._driver.run(plan)


class AsyncRuns(_Part):
    async def trigger(
        self,
        workflow: str,
        *input: Any,
        deployment_id: str | None = None,
        idempotency_key: str | None = None,
        execution_context: Mapping[str, Any] | None = None,
        wait: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 - the API names it so, as the sync one
        correlation_id: str | None = None,
    ) -> TriggeredRun:
        plan = self._api.trigger(
            workflow, input, deployment_id=deployment_id, idempotency_key=idempotency_key,
            execution_context=execution_context, cid=correlation_id,
        )  # fmt: skip
        if wait:
            plan = self._api.trigger_and_wait(plan, timeout, correlation_id)
        return await self._run(plan)

    async def get(
        self, run_id: str, *, resolve_data: str = "all", correlation_id: str | None = None
    ) -> Run:
        return await self._run(self._api.get_run(run_id, resolve_data, correlation_id))

    async def wait(
        self,
        run_id: str,
        timeout: float | None = None,  # noqa: ASYNC109 - the API names it so, as the sync one
        *,
        correlation_id: str | None = None,
    ) -> Run:
        return await self._run(self._api.wait(run_id, timeout, correlation_id))

    async def cancel(self, run_id: str, *, correlation_id: str | None = None) -> Run:
        return await self._run(self._api.cancel(run_id, correlation_id))

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
    ) -> AsyncIterator[Run]:
        return self._driver.iterate(self._api.list_runs(
            status=status, workflow=workflow, deployment_id=deployment_id,
            created_after=created_after, created_before=created_before, stuck=stuck,
            page_size=page_size, resolve_data=resolve_data, cid=correlation_id,
        ))  # fmt: skip

    async def steps(self, run_id: str, *, correlation_id: str | None = None) -> builtins.list[Step]:
        return await self._run(self._api.steps(run_id, correlation_id))

    async def events(
        self, run_id: str, *, correlation_id: str | None = None
    ) -> builtins.list[Event]:
        return await self._run(self._api.events(run_id, correlation_id))

    async def events_page(
        self, run_id: str, cursor: str | None = None, *, limit: int | None = None,
        correlation_id: str | None = None,
    ) -> Page[Event]:  # fmt: skip
        return await self._run(self._api.events_page(run_id, cursor, limit, correlation_id))

    async def hooks(self, run_id: str, *, correlation_id: str | None = None) -> builtins.list[Hook]:
        return await self._run(self._api.hooks(run_id, correlation_id))

    async def streams(
        self, run_id: str, *, correlation_id: str | None = None
    ) -> builtins.list[StreamInfo]:
        return await self._run(self._api.streams(run_id, correlation_id))

    def stream(
        self, run_id: str, name: str = "default", start_index: int = 0, *,
        correlation_id: str | None = None,
    ) -> AsyncChunkStream:  # fmt: skip
        plan = self._api.stream(run_id, name, start_index, correlation_id)
        return AsyncChunkStream(self._driver.iterate(plan))


class AsyncDeployments(_Part):
    async def create(
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
        bundle = await asyncio.to_thread(bundle_from, path_or_files)
        return await self._run(self._api.create_deployment(
            bundle, kind=kind, entrypoint=entrypoint, metadata=metadata, activate=activate,
            progress=progress, cid=correlation_id,
        ))  # fmt: skip

    async def register_app(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        delivery_secret: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        activate: bool = False,
        correlation_id: str | None = None,
    ) -> Deployment:
        """Register a Workflow DevKit app (kind ``wdk``) the worker delivers to."""
        return await self._run(self._api.register_app(
            url, headers=headers, delivery_secret=delivery_secret, metadata=metadata,
            activate=activate, cid=correlation_id,
        ))  # fmt: skip

    async def activate(
        self, deployment_id: str, *, correlation_id: str | None = None
    ) -> Deployment:
        return await self._run(self._api.activate(deployment_id, correlation_id))

    async def get(self, deployment_id: str, *, correlation_id: str | None = None) -> Deployment:
        return await self._run(self._api.get_deployment(deployment_id, correlation_id))

    async def active(self, *, correlation_id: str | None = None) -> Deployment:
        return await self._run(self._api.get_deployment("active", correlation_id))

    def list(
        self, *, page_size: int | None = None, correlation_id: str | None = None
    ) -> AsyncIterator[Deployment]:
        return self._driver.iterate(self._api.list_deployments(page_size, correlation_id))


class AsyncHooks(_Part):
    async def resume(
        self, token: str, payload: Any = None, *, correlation_id: str | None = None
    ) -> Resumed:
        return await self._run(self._api.resume(token, payload, correlation_id))


class AsyncWebhooks(_Part):
    async def send(
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
        delivery = delivery_id or f"msg_{uuid.uuid4().hex}"
        body = webhook_body(scheme, payload, delivery)
        headers = signed_headers(scheme, secret, body, delivery_id=delivery, timestamp=timestamp)
        return await self._run(self._api.send_webhook(provider, body, headers, correlation_id))


class AsyncClient:
    """The compute-worker API for asyncio::

    async with AsyncClient() as cw:
        run = await cw.runs.trigger("hello", "you", wait=True)
        async for chunk in cw.runs.stream(run.run_id, "default"):
            ...
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: bool | str = True,
    ) -> None:
        self.config = ClientConfig.resolve(url, api_key, timeout, retries)
        self._http = httpx.AsyncClient(
            base_url=self.config.url, timeout=timeout, transport=transport, verify=verify
        )
        self._api = Api(self.config.api_key, self.config.policy, user_agent())
        self._driver = AsyncDriver(self._http, timeout)
        self.runs = AsyncRuns(self)
        self.deployments = AsyncDeployments(self)
        self.hooks = AsyncHooks(self)
        self.webhooks = AsyncWebhooks(self)

    @property
    def url(self) -> str:
        return self.config.url

    async def health(self, *, correlation_id: str | None = None) -> Health:
        return await self._driver.run(self._api.health(correlation_id))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
