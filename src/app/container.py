"""The dependency-injector container: the one place that names concrete adapters.

Reading it tells which adapter stands behind each port. Tests override providers
or build use cases from fakes.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import urlsplit

from dependency_injector import containers, providers

from compute_worker.adapters.cron import CronsimCalendar
from compute_worker.adapters.fs.artifact_store import FsArtifactStore
from compute_worker.adapters.http.rate_limit import RateLimiter
from compute_worker.adapters.http.services import HttpServices
from compute_worker.adapters.observability.otel import build_tracer
from compute_worker.adapters.observability.prometheus import PrometheusMetrics
from compute_worker.adapters.outbound.app_delivery import AppDispatcher, DispatchSettings
from compute_worker.adapters.security.api_key_cache import CachedApiKeyStore
from compute_worker.adapters.security.run_keys import AesGcmPayloads, HkdfRunKeyDeriver
from compute_worker.adapters.sql.api_keys import SqlApiKeyStore
from compute_worker.adapters.sql.app_queue import SqlAppQueue
from compute_worker.adapters.sql.audit import SqlAuditLog
from compute_worker.adapters.sql.database import Database, DatabaseConfig
from compute_worker.adapters.sql.deployments import SqlDeployments
from compute_worker.adapters.sql.housekeeping import SqlHousekeeping
from compute_worker.adapters.sql.pg_signal import PostgresSignal
from compute_worker.adapters.sql.queue import SqlQueue
from compute_worker.adapters.sql.reads import SqlStreamReader, SqlWorldReader
from compute_worker.adapters.sql.run_leases import SqlRunLeases
from compute_worker.adapters.sql.schedules import SqlSchedules
from compute_worker.adapters.sql.stats import SqlWorldStats
from compute_worker.adapters.sql.stuck import SqlStuckRuns
from compute_worker.adapters.system import LocalSignal, SystemClock, resolve_event_loop
from compute_worker.adapters.webhooks.verifiers import VERIFIERS
from compute_worker.adapters.worldcompute.bundles.code import BundleCode
from compute_worker.adapters.worldcompute.bundles.loader import SubprocessBundleLoader
from compute_worker.adapters.worldcompute.bundles.sandbox import Sandbox, sandbox_unavailable
from compute_worker.adapters.worldcompute.engine import (
    EngineSettings,
    StartOnAccept,
    WorkflowEngine,
)
from compute_worker.adapters.worldcompute.graph.interpreter import HttpLimits, HttpSettings
from compute_worker.adapters.worldcompute.local.executor import LocalExecutor
from compute_worker.adapters.worldcompute.local.world import LocalRunWorld
from compute_worker.adapters.worldcompute.process.backend import (
    ChildPool,
    ProcessExecutor,
    ProcessLimits,
)
from compute_worker.adapters.worldcompute.runtime.runner import RunExecutor
from compute_worker.app.errors import StartupError
from compute_worker.app.settings import Settings
from compute_worker.domain.execution import RetryPolicy
from compute_worker.domain.ids import IdFactory
from compute_worker.domain.outbound import OutboundPolicy
from compute_worker.domain.ports.streams import Signal
from compute_worker.domain.ports.tracing import Tracer
from compute_worker.domain.stream_tail import StreamTail
from compute_worker.domain.use_cases.api_keys import ManageApiKeys, QueryAudit
from compute_worker.domain.use_cases.authenticate import Authenticate, SeedApiKeys
from compute_worker.domain.use_cases.cancel_run import CancelRun
from compute_worker.domain.use_cases.check_health import CheckHealth
from compute_worker.domain.use_cases.deployments import (
    ActivateDeployment,
    CreateDeployment,
    GetDeployment,
)
from compute_worker.domain.use_cases.detect_stuck_runs import DetectStuckRuns
from compute_worker.domain.use_cases.get_encryption_key import GetDeploymentId, GetEncryptionKey
from compute_worker.domain.use_cases.inspect_run import InspectRun
from compute_worker.domain.use_cases.list_deployments import ListDeployments
from compute_worker.domain.use_cases.list_runs import ListRuns
from compute_worker.domain.use_cases.proxy_world_event import ProxyWorldEvent
from compute_worker.domain.use_cases.publish_message import PublishMessage
from compute_worker.domain.use_cases.query_world import QueryWorld
from compute_worker.domain.use_cases.receive_webhook import ReceiveWebhook
from compute_worker.domain.use_cases.record_execution_trouble import RecordExecutionTrouble
from compute_worker.domain.use_cases.record_refusal import RecordRefusal
from compute_worker.domain.use_cases.record_run_events import RecordRunEvents
from compute_worker.domain.use_cases.resume_hook import ResumeHook
from compute_worker.domain.use_cases.run_streams import RunStreams
from compute_worker.domain.use_cases.schedules import (
    ListSchedules,
    PauseSchedule,
    RunSchedules,
    TriggerSchedule,
)
from compute_worker.domain.use_cases.start_child_run import StartChildRun
from compute_worker.domain.use_cases.streams import InspectStream, ReadStream, WriteStream
from compute_worker.domain.use_cases.trigger_run import TriggerRun
from compute_worker.domain.wdk import AppAnnouncements, AppValues, DeliveryPolicy
from compute_worker.domain.world_writes import WorldWrites

log = logging.getLogger(__name__)


def _database_config(settings: Settings) -> DatabaseConfig:
    return DatabaseConfig(sqlite_path=settings.sqlite_path, database_url=settings.database_url)


def _signal(settings: Settings) -> Signal:
    """Across processes on PostgreSQL; SQLite workers rely on polling."""
    if settings.database_url is not None:
        return PostgresSignal(settings.database_url)
    return LocalSignal()


def _graph_http(settings: Settings, own_url: Callable[[], str | None]) -> HttpSettings:
    """The limits of graph HTTP nodes, with the worker's own addresses denied (known once
    it listens, so computed when asked)."""

    def limits() -> HttpLimits:
        urls = [own_url(), settings.internal_url, f"http://{settings.host}:{settings.port}"]
        return HttpLimits(settings.graph_http_allow, _own_addresses(urls),
                          settings.graph_http_max_bytes)  # fmt: skip

    return limits


def _own_addresses(urls: list[str | None]) -> tuple[str, ...]:
    """Outbound patterns for the addresses the worker serves on (its admin and world lanes)."""
    found: list[str] = []
    for url in urls:
        parts = urlsplit(url or "")
        host, port = (parts.hostname or "").lower(), parts.port
        if not host or not port:
            continue
        if host in ("0.0.0.0", "::"):  # every interface: every address on that port
            patterns = [f"localhost:{port}", f"0.0.0.0/0:{port}"]
        elif host == "localhost" or host == "::1" or host.startswith("127."):
            patterns = [f"localhost:{port}"]
        elif ":" not in host:  # (a pattern cannot give an IPv6 address a port)
            patterns = [f"{host}:{port}"]
        else:
            patterns = []
        found += [pattern for pattern in patterns if pattern not in found]
    return tuple(found)


def _rate_limiter(settings: Settings) -> RateLimiter | None:
    per_minute = settings.rate_limit_per_minute
    return RateLimiter(per_minute) if per_minute > 0 else None


def _executor(
    settings: Settings,
    world: LocalRunWorld,
    code: BundleCode,
    signal: Signal,
    metrics: PrometheusMetrics,
    tracer: Tracer,
    sandbox: Sandbox | None,
) -> RunExecutor:
    engine_settings = EngineSettings()
    if settings.worldcompute == "local":
        return LocalExecutor(world, code, engine_settings.poll_interval, tracer)
    limits = ProcessLimits(
        memory_bytes=settings.process_memory_mb * 1024 * 1024,
        step_timeout_seconds=settings.step_timeout_seconds,
        step_cpu_seconds=settings.step_timeout_seconds,
        workflow_turn_seconds=settings.workflow_turn_seconds,
        children_per_deployment=settings.process_children,
        body_bytes=settings.max_body_bytes,
    )
    loop = resolve_event_loop(settings.event_loop)
    pool = ChildPool(code, limits, metrics, loop, sandbox, tracer)
    return ProcessExecutor(pool, world, signal)


def _sandbox(settings: Settings) -> Sandbox | None:
    """The box of workflow children, said at start-up; ``StartupError`` when it is
    required and the host cannot give it. None with the local backend (workflow code runs
    in the server's process there: nothing to box)."""
    if settings.worldcompute != "process":
        return None
    if settings.sandbox == "off":
        log.warning("workflow children run WITHOUT a sandbox (sandbox=off): their code can "
                    "read and write what the server can")  # fmt: skip
        return None
    bwrap = shutil.which("bwrap")
    sandbox = None if bwrap is None else Sandbox(
        bwrap, settings.sandbox_network, settings.sandbox_uid, settings.sandbox_uid,
        allow=settings.sandbox_allow,
    )  # fmt: skip
    reason = sandbox_unavailable(sandbox, bwrap)
    if reason is None:
        log.info("workflow children run in a bubblewrap sandbox (network: %s)",
                 settings.sandbox_network)  # fmt: skip
        return sandbox
    if settings.sandbox == "required":
        raise StartupError(
            f"workflow children cannot be sandboxed: {reason}. Install bubblewrap "
            "(apt-get install bubblewrap), or set sandbox=off to accept the risk."
        )
    log.warning("workflow children run WITHOUT a sandbox: %s; their code can read and write "
                "what the server can (install bubblewrap)", reason)  # fmt: skip
    return None


def _metrics(stats: SqlWorldStats, database: Database) -> PrometheusMetrics:
    """The metrics, also told of every batch the database's writer commits."""
    metrics = PrometheusMetrics(stats)
    database.writer.observe(metrics)
    return metrics


def _dispatch_settings(settings: Settings) -> DispatchSettings:
    return DispatchSettings(
        concurrency=settings.delivery_concurrency,
        timeout_seconds=settings.delivery_timeout_seconds,
        lease_seconds=settings.delivery_lease_seconds,
        policy=DeliveryPolicy(max_failures=settings.delivery_max_failures),
    )


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)
    run_key_secret: providers.Dependency[bytes | None] = providers.Dependency()  # from runtime
    own_url: providers.Dependency[Callable[[], str | None]] = providers.Dependency()

    # infrastructure
    clock = providers.Singleton(SystemClock)
    ids = providers.Singleton(IdFactory)
    signal = providers.Singleton(_signal, settings)
    database = providers.Singleton(Database, providers.Callable(_database_config, settings))
    reads = providers.Callable(lambda db: db.reads, database)
    writer = providers.Callable(lambda db: db.writer, database)
    rate_limiter = providers.Singleton(_rate_limiter, settings)

    # ports → adapters
    world_reader = providers.Singleton(SqlWorldReader, reads)
    stream_reader = providers.Singleton(SqlStreamReader, reads)
    queue = providers.Singleton(SqlQueue, writer)
    deployments = providers.Singleton(SqlDeployments, reads)
    schedules = providers.Singleton(SqlSchedules, reads)
    cron_calendar = providers.Singleton(CronsimCalendar)
    api_keys = providers.Singleton(
        CachedApiKeyStore,
        providers.Singleton(SqlApiKeyStore, reads, writer),
        clock,
        settings.provided.api_key_cache_seconds,
        signal,
    )
    audit_log = providers.Singleton(SqlAuditLog, reads, writer)
    run_keys = providers.Singleton(HkdfRunKeyDeriver, run_key_secret)
    housekeeping = providers.Singleton(SqlHousekeeping, writer)
    artifacts = providers.Singleton(
        FsArtifactStore, providers.Callable(lambda s: s.artifact_dir, settings)
    )
    graph_http = providers.Callable(_graph_http, settings, own_url)
    sandbox = providers.Singleton(_sandbox, settings)
    bundle_loader = providers.Singleton(
        SubprocessBundleLoader, graph_http=graph_http, sandbox=sandbox
    )
    webhook_verifiers = providers.Singleton(
        lambda: {scheme: verifier() for scheme, verifier in VERIFIERS.items()}
    )

    # domain services: the World's writes inside a transaction, the live read of a stream
    world_stats = providers.Singleton(SqlWorldStats, reads)
    metrics = providers.Singleton(_metrics, world_stats, database)  # also the observers
    tracer = providers.Singleton(
        lambda s: build_tracer(s.trace_exporter), settings
    )  # OpenTelemetry when asked for, else NoTracer
    # new runs start on the node that accepts them, once its engine runs (engine.py)
    start_on_accept = providers.Singleton(StartOnAccept)
    world_writes = providers.Singleton(
        WorldWrites, ids, clock, signal, observer=metrics, starts=start_on_accept
    )
    delivery_policy = providers.Singleton(
        lambda s: OutboundPolicy(s.delivery_allow, what="queue delivery"), settings
    )
    app_announcements = providers.Singleton(AppAnnouncements, delivery_policy)
    stream_tail = providers.Singleton(
        StreamTail,
        stream_reader,
        signal,
        providers.Callable(lambda s: s.stream_poll_interval, settings),
    )

    # use cases: the World
    authenticate = providers.Singleton(Authenticate, api_keys, clock)
    seed_api_keys = providers.Singleton(SeedApiKeys, api_keys, ids, clock)
    proxy_world_event = providers.Singleton(
        ProxyWorldEvent, writer, ids, clock, world_writes, settings.provided.max_events_per_run
    )
    query_world = providers.Singleton(QueryWorld, world_reader, signal)
    write_stream = providers.Singleton(WriteStream, writer, clock, world_writes)
    read_stream = providers.Singleton(ReadStream, stream_tail)
    inspect_stream = providers.Singleton(InspectStream, stream_reader)
    record_run_events = providers.Singleton(RecordRunEvents, writer, clock, world_writes)
    publish_message = providers.Singleton(
        PublishMessage, writer, clock, world_writes, app_announcements
    )
    get_encryption_key = providers.Singleton(GetEncryptionKey, world_reader, run_keys, deployments)
    get_deployment_id = providers.Singleton(GetDeploymentId, deployments, writer, app_announcements)

    # use cases: the public lane
    idempotency_retention = providers.Callable(
        lambda s: timedelta(hours=s.idempotency_retention_hours), settings
    )
    trigger_run = providers.Singleton(
        TriggerRun, writer, clock, world_writes, idempotency_retention
    )
    cancel_run = providers.Singleton(CancelRun, writer, clock, world_writes)
    resume_hook = providers.Singleton(ResumeHook, writer, clock, world_writes)
    create_deployment = providers.Singleton(
        CreateDeployment, writer, ids, clock, artifacts, bundle_loader, delivery_policy
    )
    activate_deployment = providers.Singleton(ActivateDeployment, writer, clock)
    get_deployment = providers.Singleton(GetDeployment, deployments)
    list_deployments = providers.Singleton(ListDeployments, deployments)
    list_schedules = providers.Singleton(
        ListSchedules, schedules, cron_calendar, clock, settings.provided.schedule_catch_up
    )
    pause_schedule = providers.Singleton(PauseSchedule, writer, clock)
    trigger_schedule = providers.Singleton(
        TriggerSchedule, writer, clock, ids, world_writes, idempotency_retention
    )
    run_schedules = providers.Singleton(
        RunSchedules,
        writer,
        schedules,
        cron_calendar,
        clock,
        world_writes,
        settings.provided.schedule_catch_up,
        providers.Callable(lambda s: timedelta(seconds=s.schedule_late_seconds), settings),
        idempotency_retention,
    )
    list_runs = providers.Singleton(ListRuns, world_reader)
    app_values = providers.Singleton(
        AppValues, deployments, run_keys, providers.Singleton(AesGcmPayloads)
    )
    inspect_run = providers.Singleton(InspectRun, world_reader)
    run_streams = providers.Singleton(RunStreams, world_reader, stream_reader, stream_tail)
    receive_webhook = providers.Singleton(
        ReceiveWebhook,
        writer,
        clock,
        providers.Callable(lambda s: {p.name: p for p in s.webhook_providers}, settings),
        webhook_verifiers,
        world_writes,
        providers.Callable(lambda s: s.on_webhook, settings),
    )
    manage_api_keys = providers.Singleton(ManageApiKeys, api_keys, ids, clock)
    check_health = providers.Singleton(
        CheckHealth,
        providers.Callable(
            lambda db, store: {"database": db.ping, "artifactStore": store.check},
            database,
            artifacts,
        ),
        deployments,
    )
    query_audit = providers.Singleton(QueryAudit, audit_log)
    record_refusal = providers.Singleton(RecordRefusal, audit_log, clock)

    # the workflow engine (worldcompute)
    run_leases = providers.Singleton(SqlRunLeases, reads, writer)
    start_child_run = providers.Singleton(
        StartChildRun, writer, clock, world_writes, idempotency_retention
    )
    run_world = providers.Singleton(
        LocalRunWorld, record_run_events, world_reader, write_stream, signal, start_child_run
    )
    deployment_code = providers.Singleton(
        BundleCode,
        deployments,
        artifacts,
        providers.Callable(lambda s: s.code_dir, settings),
        graph_http,
    )
    engine_settings = providers.Singleton(EngineSettings)
    retry_policy = providers.Singleton(
        lambda s: RetryPolicy(
            max_start_attempts=max(1, s.max_start_attempts),
            max_lost_executors=s.max_executor_losses,
            first_delay_seconds=s.start_retry_seconds,
        ),
        settings,
    )
    stuck_runs = providers.Singleton(SqlStuckRuns, reads, writer)
    detect_stuck_runs = providers.Singleton(
        DetectStuckRuns,
        stuck_runs,
        clock,
        providers.Callable(lambda s: timedelta(seconds=s.stuck_after_seconds), settings),
    )
    record_execution_trouble = providers.Singleton(
        RecordExecutionTrouble, writer, clock, world_writes, retry_policy
    )
    executor = providers.Singleton(
        _executor, settings, run_world, deployment_code, signal, metrics, tracer, sandbox,
    )  # fmt: skip
    workflow_engine = providers.Singleton(
        WorkflowEngine,
        queue,
        run_leases,
        run_world,
        deployment_code,
        signal,
        executor,
        record_execution_trouble,
        engine_settings,
        tracer,
        start_on_accept,
    )

    # deliveries to WDK apps (kind wdk)
    app_queue = providers.Singleton(SqlAppQueue, reads, writer)
    app_dispatcher = providers.Singleton(
        AppDispatcher,
        app_queue,
        delivery_policy,
        signal,
        providers.Callable(lambda engine: engine.worker_id, workflow_engine),
        providers.Callable(_dispatch_settings, settings),
    )

    # what the HTTP adapter serves (adapters/http/services.py): exactly these
    http_services = providers.Singleton(
        HttpServices,
        authenticate=authenticate,
        record_refusal=record_refusal,
        rate_limiter=rate_limiter,
        proxy_world_event=proxy_world_event,
        record_run_events=record_run_events,
        query_world=query_world,
        write_stream=write_stream,
        read_stream=read_stream,
        inspect_stream=inspect_stream,
        publish_message=publish_message,
        start_child_run=start_child_run,
        get_deployment_id=get_deployment_id,
        get_encryption_key=get_encryption_key,
        check_health=check_health,
        trigger_run=trigger_run,
        cancel_run=cancel_run,
        resume_hook=resume_hook,
        list_runs=list_runs,
        app_values=app_values,
        inspect_run=inspect_run,
        run_streams=run_streams,
        create_deployment=create_deployment,
        activate_deployment=activate_deployment,
        get_deployment=get_deployment,
        list_deployments=list_deployments,
        list_schedules=list_schedules,
        pause_schedule=pause_schedule,
        trigger_schedule=trigger_schedule,
        receive_webhook=receive_webhook,
        metrics=metrics,
        metrics_access=providers.Callable(lambda s: s.metrics_access, settings),
        tracer=tracer,
        max_body_bytes=providers.Callable(lambda s: s.max_body_bytes, settings),
        retry_policy=retry_policy,
        version=providers.Callable(lambda s: s.version, settings),
        world=providers.Callable(lambda s: s.target_world, settings),
    )
