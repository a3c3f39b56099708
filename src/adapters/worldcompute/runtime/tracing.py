"""``TracedSteps``: a span per step attempt, child of the run's span. The local backend
hands it to the run's ``WorkflowContext`` as its step observer; the process backend
feeds it from what the child reports (``step`` / ``step_done``), so the spans are made in
the server, where the exporter is, whichever process runs the step."""

from __future__ import annotations

from compute_worker.domain.authoring import StepSpec
from compute_worker.domain.ports.tracing import (
    CORRELATION_ID,
    DEPLOYMENT_ID,
    RUN_ID,
    STEP_ATTEMPT,
    STEP_NAME,
    AttributeValue,
    Tracer,
    TraceSpan,
)
from compute_worker.domain.world import Run


class TracedSteps:
    def __init__(self, tracer: Tracer, parent: str | None, run: Run) -> None:
        self._tracer = tracer
        self._parent = parent  # the run's span
        self._run = run
        self._open: dict[str, TraceSpan] = {}

    def begin(self, step_id: str, name: str, attempt: int) -> None:
        run = self._run
        attributes: dict[str, AttributeValue] = {
            RUN_ID: run.run_id, DEPLOYMENT_ID: run.deployment_id, STEP_NAME: name,
            STEP_ATTEMPT: attempt, CORRELATION_ID: step_id,
        }  # fmt: skip
        self._open[step_id] = self._tracer.start(f"step {name}", attributes, self._parent)

    def end(self, step_id: str, error: str | None = None) -> None:
        span = self._open.pop(step_id, None)
        if span is not None:
            if error is not None:
                span.fail(error)
            span.end()

    def close(self, reason: str) -> None:
        """End the attempts still open (their process died, or the run stopped)."""
        for span in self._open.values():
            span.fail(reason)
            span.end()
        self._open.clear()

    # -- StepObserver (runtime.context) -------------------------------------------------

    def step_began(self, step_id: str, spec: StepSpec, attempt: int) -> None:
        self.begin(step_id, spec.name, attempt)

    def step_ended(self, step_id: str, error: str | None = None) -> None:
        self.end(step_id, error)
