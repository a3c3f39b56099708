"""Traces, as the adapters make them: a span per HTTP request, per run execution and per
step attempt, linked by W3C ``traceparent`` strings. OpenTelemetry stands behind this
when tracing is on (``adapters.observability.otel``); ``NoTracer`` when it is off, so the
callers never ask whether it is."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Final, Protocol

AttributeValue = str | int | float | bool
Attributes = Mapping[str, AttributeValue]

# span attributes
RUN_ID: Final = "workflow.run_id"
WORKFLOW_NAME: Final = "workflow.name"
DEPLOYMENT_ID: Final = "workflow.deployment_id"
STEP_NAME: Final = "workflow.step.name"
STEP_ATTEMPT: Final = "workflow.step.attempt"
CORRELATION_ID: Final = "workflow.correlation_id"
TRACEPARENT: Final = "traceparent"  # the W3C header, and the run's executionContext key


class TraceSpan(Protocol):
    @property
    def traceparent(self) -> str | None:
        """This span as a W3C ``traceparent``, for children made elsewhere."""
        ...

    def set(self, name: str, value: AttributeValue) -> None: ...
    def rename(self, name: str) -> None: ...
    def fail(self, message: str) -> None: ...
    def end(self) -> None: ...


class Tracer(Protocol):
    enabled: bool

    def start(
        self, name: str, attributes: Attributes, parent: str | None = None, server: bool = False
    ) -> TraceSpan:
        """A span, child of ``parent`` (a ``traceparent``) or else of the current span."""
        ...

    def active(self, span: TraceSpan) -> contextlib.AbstractContextManager[None]:
        """Make ``span`` the current one within the block (it is not ended on exit)."""
        ...

    def current(self) -> str | None:
        """The current span as a ``traceparent``, if there is one."""
        ...

    def shutdown(self) -> None:
        """Export what is buffered; called once, when the server stops."""
        ...


class _NoSpan:
    traceparent: str | None = None

    def set(self, name: str, value: AttributeValue) -> None:
        return None

    def rename(self, name: str) -> None:
        return None

    def fail(self, message: str) -> None:
        return None

    def end(self) -> None:
        return None


class NoTracer:
    """Tracing off: spans that record nothing."""

    enabled = False

    def start(
        self, name: str, attributes: Attributes, parent: str | None = None, server: bool = False
    ) -> TraceSpan:
        return _NoSpan()

    @contextlib.contextmanager
    def active(self, span: TraceSpan) -> Iterator[None]:
        yield

    def current(self) -> str | None:
        return None

    def shutdown(self) -> None:
        return None
