"""The ``local`` backend: workflows run in the server's own process (fastest; for
trusted code and embedding). A suspended run keeps its coroutine in memory."""

from __future__ import annotations

from compute_worker.adapters.worldcompute.bundles.code import BundleCode
from compute_worker.adapters.worldcompute.runtime.context import WorkflowContext
from compute_worker.adapters.worldcompute.runtime.runner import Outcome, run_workflow
from compute_worker.adapters.worldcompute.runtime.tracing import TracedSteps
from compute_worker.domain.deployments import Deployment
from compute_worker.domain.ports.engine import RunWorld
from compute_worker.domain.ports.tracing import NoTracer, Tracer
from compute_worker.domain.world import Event, Run


class LocalExecutor:
    def __init__(
        self, world: RunWorld, code: BundleCode, poll_interval: float, tracer: Tracer | None = None
    ) -> None:
        self._world = world
        self._code = code
        self._poll_interval = poll_interval
        self._tracer = tracer or NoTracer()

    async def execute(self, run: Run, deployment: Deployment, events: list[Event]) -> Outcome:
        workflow = await self._code.workflow(deployment, run.workflow_name)
        root = self._code.folder_of(deployment) if deployment.kind == "python" else None
        steps = TracedSteps(self._tracer, self._tracer.current(), run)
        observer = steps if self._tracer.enabled else None
        context = WorkflowContext(self._world, run, events, self._poll_interval,
                                  observer=observer, code_root=root)  # fmt: skip
        try:
            return await run_workflow(context, workflow)
        finally:
            steps.close("the run stopped executing here")

    async def close(self) -> None:
        return None
