"""``OtelTracer``: the ``Tracer`` port over the OpenTelemetry SDK (the optional extra
``workflow-compute-worker[otel]``).

Tracing is on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_TRACES_EXPORTER`` is set
(the standard OpenTelemetry variables; ``OTEL_TRACES_EXPORTER=none`` turns it off), or
when a Python caller hands the server a ``SpanExporter`` (the ``trace_exporter`` option).
Exporters: ``otlp`` (OTLP over HTTP/protobuf, configured by the usual ``OTEL_EXPORTER_OTLP_*``
variables) and ``console``. Spans are batched and exported in the background; the server
flushes them when it stops. The provider belongs to the server (not the process-wide
default), so several servers in one process keep their traces apart.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from compute_worker.domain.ports.tracing import (
    TRACEPARENT,
    Attributes,
    AttributeValue,
    NoTracer,
    Tracer,
    TraceSpan,
)

ENABLING = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER")
EXTRA_HINT = "install the extra: pip install 'workflow-compute-worker[otel]'"


class TracingUnavailable(RuntimeError):
    """Tracing was asked for but cannot be set up (the SDK is missing, an unknown exporter)."""


def wanted(environ: Mapping[str, str]) -> bool:
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return any(environ.get(name, "").strip() for name in ENABLING)


def build_tracer(exporter: Any = None, environ: Mapping[str, str] | None = None) -> Tracer:
    """``NoTracer`` unless tracing is wanted; else an ``OtelTracer`` exporting to
    ``exporter`` or to what the environment names. Raises ``TracingUnavailable``."""
    environ = os.environ if environ is None else environ
    if exporter is None and not wanted(environ):
        return NoTracer()
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise TracingUnavailable(
            f"tracing is asked for ({', '.join(n for n in ENABLING if environ.get(n))}) but "
            f"OpenTelemetry is not installed: {EXTRA_HINT}"
        ) from None
    service = environ.get("OTEL_SERVICE_NAME") or "compute-worker"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter or _exporter(environ)))
    return OtelTracer(provider)


def _exporter(environ: Mapping[str, str]) -> Any:
    name = (environ.get("OTEL_TRACES_EXPORTER") or "otlp").split(",")[0].strip().lower()
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise TracingUnavailable(f"the OTLP exporter is not installed: {EXTRA_HINT}") from None
        return OTLPSpanExporter()
    raise TracingUnavailable(
        f"OTEL_TRACES_EXPORTER={name!r} is not supported here: use otlp, console or none"
    )


class _Span(TraceSpan):
    def __init__(self, span: Any, propagator: Any) -> None:
        self.span = span
        self._propagator = propagator

    @property
    def traceparent(self) -> str | None:
        from opentelemetry import trace

        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, context=trace.set_span_in_context(self.span))
        return carrier.get(TRACEPARENT)

    def set(self, name: str, value: AttributeValue) -> None:
        self.span.set_attribute(name, value)

    def rename(self, name: str) -> None:
        self.span.update_name(name)

    def fail(self, message: str) -> None:
        from opentelemetry.trace import Status, StatusCode

        self.span.set_status(Status(StatusCode.ERROR, message))

    def end(self) -> None:
        self.span.end()


class OtelTracer(Tracer):
    enabled = True

    def __init__(self, provider: Any) -> None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._provider = provider
        self._tracer = provider.get_tracer("compute_worker")
        self._propagator = TraceContextTextMapPropagator()

    def start(
        self, name: str, attributes: Attributes, parent: str | None = None, server: bool = False
    ) -> TraceSpan:
        from opentelemetry.trace import SpanKind

        context = self._propagator.extract({TRACEPARENT: parent}) if parent else None
        kind = SpanKind.SERVER if server else SpanKind.INTERNAL
        span = self._tracer.start_span(name, context=context, kind=kind, attributes=attributes)
        return _Span(span, self._propagator)

    @contextlib.contextmanager
    def active(self, span: TraceSpan) -> Iterator[None]:
        from opentelemetry import trace

        if not isinstance(span, _Span):
            yield
            return
        with trace.use_span(span.span, end_on_exit=False):
            yield

    def current(self) -> str | None:
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier)
        return carrier.get(TRACEPARENT)

    def shutdown(self) -> None:
        self._provider.shutdown()
