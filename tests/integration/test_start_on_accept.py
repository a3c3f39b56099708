"""Start on accept at its crash points: a process that accepted a run (its lease written in
the run's own commit, no queue message) and died before executing it loses nothing — once
the lease runs out, a real server started afterwards finds the run and finishes it; a run
whose creation committed too late to trust its lease is not executed without taking it."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from compute_worker.app.runtime import Runtime
from compute_worker.app.settings import Settings
from compute_worker.domain.audit import RequestContext
from compute_worker.domain.use_cases.deployments import NewDeployment
from compute_worker.domain.use_cases.trigger_run import Trigger

from .conftest import Backend
from .public_fixtures import PublicServers, row_counts, wait_for_run

CONTEXT = RequestContext("POST", "/v1/runs", "start-on-accept")
DOUBLED = b"""
from compute_worker import step, workflow

@step
async def double(x):
    return 2 * x

@workflow
async def doubled(x):
    return await double(x)
"""

ACCEPT_AND_DIE = """
import asyncio, json, os, sys
from compute_worker.app.runtime import Runtime
from compute_worker.app.settings import Settings
from compute_worker.domain.audit import RequestContext
from compute_worker.domain.use_cases.deployments import NewDeployment
from compute_worker.domain.use_cases.trigger_run import Trigger

async def main():
    context = RequestContext("POST", "/v1/runs", "accept-and-die")
    settings = Settings.load(json.loads(sys.argv[1]), env={})
    async with Runtime(settings, execute=True) as container:
        created = await container.create_deployment().execute(
            NewDeployment("python", {"workflows.py": sys.argv[2].encode()}), context
        )
        await container.activate_deployment().execute(created.deployment_id, context)
        run = (await container.trigger_run().execute(Trigger("doubled", "k", "key_a", [21]),
                                                     context)).run
        print(run.run_id, flush=True)
        os._exit(0)  # committed and handed to the engine, which never got to run it

asyncio.run(main())
"""


async def test_a_run_accepted_by_a_process_that_died_is_finished_by_the_next(
    servers: PublicServers, backend: Backend, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data-0"  # the folder (and secret) the first server below uses
    options = {"data_dir": str(data_dir), "schedule_poll_seconds": 0}
    options.update({key: str(value) for key, value in backend.options.items()})
    accepted = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ACCEPT_AND_DIE, json.dumps(options), DOUBLED.decode(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(accepted.communicate(), 60)
    assert accepted.returncode == 0, err.decode()
    run_id = out.decode().split()[-1]

    server = await servers.start()
    leased = await row_counts(server, ("run_leases", "queue_messages"))
    assert leased == {"run_leases": 1, "queue_messages": 0}  # only its lease says it exists
    async with server.client() as client:
        run = await wait_for_run(client, run_id, within=40)  # lease 10 s, scan every 2 s
    assert (run["status"], run["output"]) == ("completed", 42)
    assert await row_counts(server, ("run_leases",)) == {"run_leases": 0}


async def test_a_run_whose_creation_committed_late_is_not_started_without_its_lease(
    tmp_path: Path,
) -> None:
    """The creation of a run accepted here committed after more than half its lease: the
    lease may have run out, and another worker may have recovered the run meanwhile — so
    it is not executed from memory, its lease is taken as for any wake-up."""
    settings = Settings.load({"data_dir": tmp_path, "schedule_poll_seconds": 0}, env={})
    runtime = Runtime(settings, execute=True)
    async with runtime as container:
        created = await container.create_deployment().execute(
            NewDeployment("python", {"workflows.py": DOUBLED}), CONTEXT
        )
        await container.activate_deployment().execute(created.deployment_id, CONTEXT)
        engine = container.workflow_engine()
        await engine.stop()  # nothing takes what is triggered now: it waits in the queue
        taken = (await container.trigger_run().execute(Trigger("doubled", "a", "k", [1]),
                                                       CONTEXT)).run  # fmt: skip
        free = (await container.trigger_run().execute(Trigger("doubled", "b", "k", [2]),
                                                      CONTEXT)).run  # fmt: skip
        leases = container.run_leases()
        assert await leases.acquire(taken.run_id, "another-worker", 60) is not None
        await engine.start()
        late = timedelta(seconds=engine.settings.lease_seconds)
        for run in (taken, free):
            log = await container.run_world().events(run.run_id)
            engine.start_new_run(replace(run, created_at=run.created_at - late), log)
        reader = container.world_reader()
        for _ in range(200):
            done = await reader.get_run(free.run_id)
            if done is not None and done.status == "completed":
                break
            await asyncio.sleep(0.02)
        assert done is not None and done.output == 4  # its lease was free: taken, executed
        still = await reader.get_run(taken.run_id)
        assert still is not None and still.status == "pending"  # another worker holds it
        assert taken.run_id not in engine.live_runs
