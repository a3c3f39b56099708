"""``PrometheusMetrics``: the worker's metrics in the Prometheus text format.

Counters and histograms are fed as things happen in this process — committed run and
step events and execution trouble (``RunObserver``), HTTP requests (``observe_request``);
gauges of the World's state (runs by status, the queue's backlog, hooks and sleeps
pending) are read from the database at each scrape, so every server sharing a database
reports the same totals. One registry per server (not the process-wide default), so
several servers in one process keep their counts apart.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from compute_worker.domain.ports.metrics import (
    ProcessObserver,
    RunObserver,
    WorldStats,
    WorldStatsReader,
    WriterObserver,
)
from compute_worker.domain.stuck import STUCK_REASONS
from compute_worker.domain.world import Event, EventType, Run, Step

PREFIX = "compute_worker"
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
                     900, 3600, 6 * 3600, 24 * 3600)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_RUN_ENDS = {
    EventType.RUN_COMPLETED: "completed",
    EventType.RUN_FAILED: "failed",
    EventType.RUN_CANCELLED: "cancelled",
}
_STEP_ENDS = {EventType.STEP_COMPLETED: "completed", EventType.STEP_FAILED: "failed"}
# the series this process counts: name -> (help, labels)
_COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "runs_started": ("Runs started, by workflow", ("workflow",)),
    "runs_finished": ("Runs that ended, by workflow and status (completed, failed, "
                      "cancelled)", ("workflow", "status")),
    "step_attempts": ("Step attempts started, by step", ("step",)),
    "step_retries": ("Step attempts that failed and will be retried", ("step",)),
    "execution_retries": ("Run executions retried after a failed start or a lost "
                          "executor, by kind", ("kind",)),
    "execution_give_ups": ("Runs failed because the retry policy gave up on starting "
                           "them, by kind", ("kind",)),
    "http_requests": ("HTTP requests by method, route template and status",
                      ("method", "route", "status")),
    "child_processes_started": ("Workflow child processes started, by why: new (a free "
                                "slot) or restart (replacing one that died or was killed)",
                                ("why",)),
    "child_processes_killed": ("Workflow child processes killed, by why (step_timeout, "
                               "step_cpu, workflow_turn, cancelled, start_timeout, stop)",
                               ("why",)),
}  # fmt: skip
# name -> (help, labels, buckets)
_HISTOGRAMS: dict[str, tuple[str, tuple[str, ...], tuple[float, ...]]] = {
    "run_duration_seconds": ("Run duration from start (or creation, if never started) to "
                             "its end", ("workflow", "status"), _DURATION_BUCKETS),
    "step_duration_seconds": ("Step duration from its first start to its end, by step and "
                              "status", ("step", "status"), _DURATION_BUCKETS),
    "http_request_duration_seconds": ("HTTP request latency (to the end of the response) by "
                                      "method and route template", ("method", "route"),
                                      _HTTP_BUCKETS),
    "db_commit_batch_units": ("Units of work committed together in one database "
                              "transaction (group commit)", (), _BATCH_BUCKETS),
    "db_commit_duration_seconds": ("Time to run and commit one batch of units of work", (),
                                   _HTTP_BUCKETS),
}  # fmt: skip
# the classic text format every Prometheus reads (our names need no escaping)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


class _WorldCollector(Collector):
    """Yields the gauges of the last snapshot read (``PrometheusMetrics.exposition``)."""

    def __init__(self) -> None:
        self.stats: WorldStats | None = None

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        if stats is None:
            return
        runs = GaugeMetricFamily(
            f"{PREFIX}_runs", "Runs in the database, by workflow and status",
            labels=["workflow", "status"],
        )  # fmt: skip
        for (workflow, status), count in sorted(stats.runs.items()):
            runs.add_metric([workflow, status], count)
        yield runs
        depth = GaugeMetricFamily(
            f"{PREFIX}_queue_messages",
            "Queue messages by queue and state (ready: due and unclaimed; delayed: due "
            "later; leased: claimed by a worker)",
            labels=["queue", "state"],
        )
        age = GaugeMetricFamily(
            f"{PREFIX}_queue_oldest_ready_age_seconds",
            "How long the oldest due, unclaimed message of the queue has waited",
            labels=["queue"],
        )
        for name, backlog in sorted(stats.queues.items()):
            depth.add_metric([name, "ready"], backlog.ready)
            depth.add_metric([name, "delayed"], backlog.delayed)
            depth.add_metric([name, "leased"], backlog.leased)
            age.add_metric([name], backlog.oldest_ready_age_seconds)
        yield depth
        yield age
        yield GaugeMetricFamily(
            f"{PREFIX}_hooks_pending", "Hooks waiting to be resumed", value=stats.hooks_pending
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_sleeps_pending", "Sleeps not yet over", value=stats.sleeps_pending
        )
        stuck = GaugeMetricFamily(
            f"{PREFIX}_runs_stuck",
            "Live runs the stuck-run detector found stuck, by reason",
            labels=["reason"],
        )
        for reason in STUCK_REASONS:
            stuck.add_metric([reason], stats.stuck.get(reason, 0))
        yield stuck


class PrometheusMetrics(RunObserver, WriterObserver, ProcessObserver):
    def __init__(self, stats: WorldStatsReader) -> None:
        self._stats = stats
        self.registry = CollectorRegistry(auto_describe=True)
        self._world = _WorldCollector()
        self.registry.register(self._world)
        self.children_alive = Gauge(
            f"{PREFIX}_child_processes", "Workflow child processes alive (process backend)",
            registry=self.registry,
        )  # fmt: skip
        self._counters = {
            name: Counter(f"{PREFIX}_{name}", about, labels, registry=self.registry)
            for name, (about, labels) in _COUNTERS.items()
        }
        self._histograms = {
            name: Histogram(
                f"{PREFIX}_{name}", about, labels, buckets=buckets, registry=self.registry
            )
            for name, (about, labels, buckets) in _HISTOGRAMS.items()
        }

    def _count(self, name: str, *labels: str) -> None:
        self._counters[name].labels(*labels).inc()

    def _observe(self, name: str, value: float, *labels: str) -> None:
        series = self._histograms[name]
        (series.labels(*labels) if labels else series).observe(value)

    # -- WriterObserver, ProcessObserver --------------------------------------------------

    def batch_committed(self, units: int, seconds: float) -> None:
        self._observe("db_commit_batch_units", units)
        self._observe("db_commit_duration_seconds", seconds)

    def child_started(self, restart: bool) -> None:
        self.children_alive.inc()
        self._count("child_processes_started", "restart" if restart else "new")

    def child_killed(self, why: str) -> None:
        self._count("child_processes_killed", why)

    def child_exited(self) -> None:
        self.children_alive.dec()

    # -- RunObserver ----------------------------------------------------------------------

    def events_committed(self, run: Run | None, step: Step | None, events: Sequence[Event]) -> None:
        for event in events:
            kind = event.event_type
            if kind is EventType.RUN_STARTED and run is not None:
                self._count("runs_started", run.workflow_name)
            elif kind in _RUN_ENDS and run is not None:
                status = _RUN_ENDS[kind]
                self._count("runs_finished", run.workflow_name, status)
                took = _seconds(run.started_at or run.created_at, run.completed_at)
                if took is not None:
                    self._observe("run_duration_seconds", took, run.workflow_name, status)
            elif kind is EventType.STEP_STARTED and step is not None:
                self._count("step_attempts", step.step_name)
            elif kind is EventType.STEP_RETRYING and step is not None:
                self._count("step_retries", step.step_name)
            elif kind in _STEP_ENDS and step is not None:
                took = _seconds(step.started_at or step.created_at, step.completed_at)
                if took is not None:
                    self._observe("step_duration_seconds", took, step.step_name, _STEP_ENDS[kind])

    def trouble_counted(self, kind: str, gave_up: bool) -> None:
        self._count("execution_give_ups" if gave_up else "execution_retries", kind)

    # -- HTTP -----------------------------------------------------------------------------

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self._count("http_requests", method, route, str(status))
        self._observe("http_request_duration_seconds", seconds, method, route)

    async def exposition(self) -> tuple[bytes, str]:
        """The text exposition (after reading the World's state) and its content type."""
        self._world.stats = await self._stats.world_stats()
        return generate_latest(self.registry), CONTENT_TYPE
