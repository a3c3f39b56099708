"""``AppDispatcher``: delivers the queue messages of WDK apps (``wdk`` deployments) to
them over HTTP (interop/world-compute/LANE.md §4).

Each poll (or queue signal) it claims, per app, up to the free share of its
concurrency limit, and delivers each message with ``POST <url>/.well-known/workflow/
v1/flow|step`` through the guarded client (the outbound policy checks every URL and
every resolved address; redirects are not followed). The reply decides
(``DeliveryPolicy.judge``): acknowledged, delivered again after ``timeoutSeconds`` or
a backoff, or dropped with an error log. Leases are renewed while a delivery is in
flight, so a slow step is never delivered twice at once; a worker killed mid-delivery
lets its leases run out and another (or the restarted one) delivers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from compute_worker.adapters.outbound import guarded_client, read_limited
from compute_worker.domain import errors
from compute_worker.domain.deployments import Deployment
from compute_worker.domain.outbound import OutboundPolicy, OutboundRefused
from compute_worker.domain.ports.queue import AppQueue
from compute_worker.domain.ports.streams import Signal
from compute_worker.domain.wdk import (
    RESERVED_HEADERS,
    RESERVED_PREFIXES,
    AppMessage,
    DeliveryPolicy,
    Reply,
    Verdict,
    delivery_url,
    signature,
)
from compute_worker.domain.world import QUEUE_TOPIC

log = logging.getLogger(__name__)
MAX_REPLY_BYTES = 1024 * 1024  # a reply is a small JSON object


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    concurrency: int = 16  # deliveries in flight per app, in this process
    timeout_seconds: float = 300.0
    lease_seconds: float = 30.0
    poll_interval: float = 0.5
    claim_batch: int = 64  # messages claimed at most per poll, over every app
    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)


class AppDispatcher:
    def __init__(
        self,
        queue: AppQueue,
        outbound: OutboundPolicy,
        signal: Signal,
        worker_id: str,
        settings: DispatchSettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._queue = queue
        self._outbound = outbound
        self._signal = signal
        self.worker_id = worker_id
        self.settings = settings or DispatchSettings()
        self._clock = clock
        self._client: httpx.AsyncClient | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight: dict[str, dict[str, asyncio.Task[None]]] = {}  # app → message → task

    async def start(self) -> None:
        timeout = httpx.Timeout(self.settings.timeout_seconds, connect=10.0)
        self._client = guarded_client(self._outbound, timeout=timeout)
        self._tasks = [
            asyncio.create_task(self._dispatch(), name="app-dispatch"),
            asyncio.create_task(self._heartbeat(), name="app-dispatch-heartbeat"),
        ]

    async def stop(self) -> None:
        """Stop claiming; deliveries in flight are abandoned to their leases (the
        app may have received them: they are delivered again, at least once)."""
        tasks = [*self._tasks, *(t for app in self._in_flight.values() for t in app.values())]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def in_flight(self) -> int:
        return sum(len(app) for app in self._in_flight.values())

    # -- loops --------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        subscription = self._signal.subscribe(QUEUE_TOPIC)
        try:
            while True:
                try:
                    await self.dispatch_once()
                except errors.StorageUnavailable:
                    log.warning("app queue unavailable; retrying")
                await subscription.wait(self.settings.poll_interval)
        finally:
            subscription.close()

    async def dispatch_once(self) -> int:
        """Claim what the apps have room for and start delivering it; how many."""
        per_app = self.settings.concurrency
        room = {app: per_app - len(busy) for app, busy in self._in_flight.items() if busy}
        claimed = await self._queue.claim(
            self.worker_id, room=room, per_app=per_app, limit=self.settings.claim_batch,
            lease_seconds=self.settings.lease_seconds,
        )  # fmt: skip
        if not claimed:
            return 0
        apps = {app.deployment_id: app for app in await self._queue.apps()}
        for message in claimed:
            busy = self._in_flight.setdefault(message.deployment_id, {})
            task = asyncio.create_task(self._deliver(apps[message.deployment_id], message))
            busy[message.message_id] = task
            task.add_done_callback(_forget(busy, message.message_id))
        return len(claimed)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            held = [m for app in self._in_flight.values() for m in app]
            with contextlib.suppress(errors.StorageUnavailable):
                await self._queue.renew(held, self.worker_id, self.settings.lease_seconds)

    # -- one delivery -------------------------------------------------------------------

    async def _deliver(self, app: Deployment, message: AppMessage) -> None:
        fields = {
            "messageId": message.message_id, "deploymentId": app.deployment_id,
            "queueName": message.queue_name, "attempt": message.attempt,
            "runId": message.run_id,
        }  # fmt: skip
        try:
            reply = await self._post(app, message)
            verdict = self.settings.policy.judge(reply, message.attempt, message.failures)
            await self._settle(message, verdict, reply, fields)
        except asyncio.CancelledError:
            raise
        except errors.StorageUnavailable:
            log.warning("could not record a delivery's outcome; its lease runs out and it is "
                        "delivered again", extra=fields)  # fmt: skip
        except Exception:
            log.exception("app delivery crashed; its lease runs out and it is delivered again",
                          extra=fields)  # fmt: skip

    async def _post(self, app: Deployment, message: AppMessage) -> Reply:
        assert app.endpoint is not None and self._client is not None
        endpoint = app.endpoint
        headers = {name: value for name, value in message.headers.items() if _free(name)}
        headers.update(endpoint.headers)
        headers.update({
            "content-type": "application/json",
            "x-vqs-queue-name": message.queue_name,
            "x-vqs-message-id": message.message_id,
            "x-vqs-message-attempt": str(message.attempt),
        })  # fmt: skip
        if endpoint.delivery_secret is not None:
            timestamp = int(self._clock())
            headers["x-compute-timestamp"] = str(timestamp)
            headers["x-compute-signature"] = signature(
                endpoint.delivery_secret, timestamp, message.message_id, message.attempt,
                message.body,
            )  # fmt: skip
        url = delivery_url(endpoint.url, message.queue_name)
        try:
            request = self._client.build_request("POST", url, content=message.body, headers=headers)
        except (ValueError, TypeError, UnicodeError) as error:
            return Reply(None, reached=False, error=f"the request cannot be made: {error}")
        try:
            response = await self._client.send(request, stream=True)
            try:
                body = await read_limited(response, MAX_REPLY_BYTES)
            except OutboundRefused:
                body = b""  # too large to be a timeoutSeconds reply
            finally:
                await response.aclose()
        except OutboundRefused as refused:
            return Reply(None, reached=False, error=refused.message)
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            return Reply(None, reached=False, error=f"cannot connect: {error}")
        except httpx.TimeoutException:
            return Reply(None, error=f"no answer within {self.settings.timeout_seconds} s")
        except httpx.HTTPError as error:
            return Reply(None, error=f"{type(error).__name__}: {error}")
        return Reply(response.status_code, body)

    async def _settle(
        self, message: AppMessage, verdict: Verdict, reply: Reply, fields: dict[str, object]
    ) -> None:
        if verdict.action == "again":
            held = await self._queue.reschedule(
                message.message_id, self.worker_id, verdict.delay_seconds, verdict.attempt,
                verdict.failures,
            )  # fmt: skip
        else:
            held = await self._queue.finish(message.message_id, self.worker_id)
        if not held:
            log.warning("a delivery's lease was lost; another worker delivers it", extra=fields)
            return
        if message.run_id is not None or verdict.delay_seconds == 0:
            self._signal.notify(QUEUE_TOPIC)  # the run's next workflow message may go now
        if verdict.action == "drop":
            log.error("app message dropped: %s", verdict.reason, extra=fields)
        elif verdict.failures:
            level = logging.WARNING if reply.status in (401, 403) else logging.INFO
            log.log(level, "app delivery failed (%s); again in %.1f s", verdict.reason,
                    verdict.delay_seconds, extra=fields)  # fmt: skip
        else:
            log.debug("app delivery %s", verdict.action, extra=fields)


def _forget(busy: dict[str, asyncio.Task[None]], message_id: str) -> Callable[[object], None]:
    def forget(_: object) -> None:
        busy.pop(message_id, None)

    return forget


def _free(name: str) -> bool:
    """Publisher headers never replace what the worker sets on a delivery."""
    lower = name.lower()
    return lower not in RESERVED_HEADERS and not lower.startswith(RESERVED_PREFIXES)
