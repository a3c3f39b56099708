"""What the HTTP adapter serves: the use cases its routes call and the few settings they
read, in one frozen object built once at start-up (``app.container``) and handed to
Starlette through lifespan state. Routes reach nothing else of the server — not the
container, the clock, the database or the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from starlette.requests import Request

from compute_worker.adapters.http.rate_limit import RateLimiter
from compute_worker.domain.execution import RetryPolicy
from compute_worker.domain.ports.tracing import Tracer
from compute_worker.domain.use_cases.authenticate import Authenticate
from compute_worker.domain.use_cases.cancel_run import CancelRun
from compute_worker.domain.use_cases.check_health import CheckHealth
from compute_worker.domain.use_cases.deployments import (
    ActivateDeployment,
    CreateDeployment,
    GetDeployment,
)
from compute_worker.domain.use_cases.get_encryption_key import GetDeploymentId, GetEncryptionKey
from compute_worker.domain.use_cases.inspect_run import InspectRun
from compute_worker.domain.use_cases.list_deployments import ListDeployments
from compute_worker.domain.use_cases.list_runs import ListRuns
from compute_worker.domain.use_cases.proxy_world_event import ProxyWorldEvent
from compute_worker.domain.use_cases.publish_message import PublishMessage
from compute_worker.domain.use_cases.query_world import QueryWorld
from compute_worker.domain.use_cases.receive_webhook import ReceiveWebhook
from compute_worker.domain.use_cases.record_refusal import RecordRefusal
from compute_worker.domain.use_cases.record_run_events import RecordRunEvents
from compute_worker.domain.use_cases.resume_hook import ResumeHook
from compute_worker.domain.use_cases.run_streams import RunStreams
from compute_worker.domain.use_cases.schedules import ListSchedules, PauseSchedule, TriggerSchedule
from compute_worker.domain.use_cases.start_child_run import StartChildRun
from compute_worker.domain.use_cases.streams import InspectStream, ReadStream, WriteStream
from compute_worker.domain.use_cases.trigger_run import TriggerRun
from compute_worker.domain.wdk import AppValues

MetricsAccess = Literal["loopback", "key", "open"]


class Metrics(Protocol):
    """What the HTTP adapter needs of the metrics (``adapters.observability``)."""

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None: ...

    async def exposition(self) -> tuple[bytes, str]: ...


@dataclass(frozen=True, slots=True)
class HttpServices:
    # every route: who calls, how often, and the audit row of a refusal
    authenticate: Authenticate
    record_refusal: RecordRefusal
    rate_limiter: RateLimiter | None
    # the world-proxy lane (/v1/world, /v1/queue)
    proxy_world_event: ProxyWorldEvent
    record_run_events: RecordRunEvents
    query_world: QueryWorld
    write_stream: WriteStream
    read_stream: ReadStream
    inspect_stream: InspectStream
    publish_message: PublishMessage
    start_child_run: StartChildRun
    get_deployment_id: GetDeploymentId
    get_encryption_key: GetEncryptionKey
    # the public lane
    check_health: CheckHealth
    trigger_run: TriggerRun
    cancel_run: CancelRun
    resume_hook: ResumeHook
    list_runs: ListRuns
    app_values: AppValues  # WDK apps' run values, decoded for the public lane
    inspect_run: InspectRun
    run_streams: RunStreams
    create_deployment: CreateDeployment
    activate_deployment: ActivateDeployment
    get_deployment: GetDeployment
    list_deployments: ListDeployments
    list_schedules: ListSchedules
    pause_schedule: PauseSchedule
    trigger_schedule: TriggerSchedule
    receive_webhook: ReceiveWebhook
    # GET /metrics and the request counts it shows
    metrics: Metrics
    metrics_access: MetricsAccess
    tracer: Tracer  # a span per request (and the trace a triggered run joins)
    # settings the routes read
    max_body_bytes: int
    retry_policy: RetryPolicy  # shown beside a run's execution record
    version: str
    world: str  # the World this server is (WORKFLOW_TARGET_WORLD)


def services(request: Request) -> HttpServices:
    """The services of the app serving ``request`` (lifespan state)."""
    found = request.state.services
    if not isinstance(found, HttpServices):
        raise RuntimeError("the app was not started with its HttpServices")
    return found
