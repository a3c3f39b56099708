"""A wake-up that reaches a run while it parks is not lost.

The engine acks a workflow message for a run it is executing and only pokes the
live run. When that run is just stopping to park (its workflow waited
``park_after`` on a hook, and the hook was resumed in that instant), the poke
reaches nobody; the run must run again rather than stay parked with its hook
payload unread. The executor here parks once while a wake-up comes in, exactly as
the queue consumer would deliver it, then finishes. And when another worker took the
wake-up (it saw this worker's lease and acked the message), the park itself refuses:
a hook payload the run had not read is in the log."""

from __future__ import annotations

import asyncio
from pathlib import Path

from dependency_injector import providers

from compute_worker.adapters.worldcompute.runtime.runner import Outcome
from compute_worker.app.runtime import Runtime
from compute_worker.app.settings import Settings
from compute_worker.domain.audit import RequestContext
from compute_worker.domain.deployments import Deployment
from compute_worker.domain.use_cases.deployments import NewDeployment
from compute_worker.domain.use_cases.trigger_run import Trigger
from compute_worker.domain.world import Event, EventRequest, EventType, Run

CONTEXT = RequestContext("POST", "/v1/runs", "wake-race")
WORKFLOWS = b"from compute_worker import workflow\n@workflow\nasync def waits():\n    return 1\n"


class ParksWhileWoken:
    """First execution: a wake-up arrives, then the run parks; later ones finish."""

    def __init__(self, runtime: Runtime, woken_while: str) -> None:
        self.runtime = runtime
        # "stopping" (before the park), "parking" (during it) or "elsewhere" (a payload
        # written and its wake-up spent by another worker)
        self.woken_while = woken_while
        self.executions = 0
        self.finished = asyncio.Event()

    async def execute(self, run: Run, deployment: Deployment, events: list[Event]) -> Outcome:
        self.executions += 1
        if self.executions > 1:
            self.finished.set()
            return Outcome("finished")
        engine = self.runtime.container.workflow_engine()
        if self.woken_while == "elsewhere":
            record = self.runtime.container.record_run_events()
            token = {"token": f"tok-{run.run_id}"}
            await record.execute(run.run_id, [
                EventRequest(EventType.RUN_STARTED),
                EventRequest(EventType.HOOK_CREATED, "hook_1", None, token),
            ])  # fmt: skip
            payload = EventRequest(EventType.HOOK_RECEIVED, "hook_1", None, {"payload": 1})
            await record.execute(run.run_id, [payload])  # no wake-up reaches this worker
            return Outcome("parked", None, events[-1].event_id)  # it read up to run_created
        if self.woken_while == "stopping":
            await engine.ensure_running(run.run_id)  # what a queued wake-up does
        else:
            leases = self.runtime.container.run_leases()
            park = leases.park

            async def park_then_wake(*args: object) -> bool:
                leases.park = park  # type: ignore[method-assign]
                parked = await park(*args)  # type: ignore[arg-type]
                await engine.ensure_running(run.run_id)  # after the commit, before it returns
                return parked

            leases.park = park_then_wake  # type: ignore[method-assign]
        return Outcome("parked")

    async def close(self) -> None:
        return None


async def _run_with(tmp_path: Path, woken_while: str) -> int:
    runtime = Runtime(Settings.load({"data_dir": tmp_path, "worldcompute": "local"}, env={}),
                      execute=True)  # fmt: skip
    executor = ParksWhileWoken(runtime, woken_while)
    runtime.container.executor.override(providers.Object(executor))
    async with runtime as container:
        created = await container.create_deployment().execute(
            NewDeployment("python", {"workflows.py": WORKFLOWS}), CONTEXT
        )
        await container.activate_deployment().execute(created.deployment_id, CONTEXT)
        await container.trigger_run().execute(Trigger("waits", "k", "key_a"), CONTEXT)
        await asyncio.wait_for(executor.finished.wait(), 10)
        await container.workflow_engine().stop()
    return executor.executions


async def test_a_run_woken_as_it_stops_to_park_runs_again(tmp_path: Path) -> None:
    assert await _run_with(tmp_path, "stopping") == 2


async def test_a_run_woken_while_its_park_commits_runs_again(tmp_path: Path) -> None:
    assert await _run_with(tmp_path, "parking") == 2


async def test_a_run_whose_wake_up_another_worker_spent_does_not_park(tmp_path: Path) -> None:
    assert await _run_with(tmp_path, "elsewhere") == 2
