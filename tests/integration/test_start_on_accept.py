"""Start on accept, at its crash point: a process that accepted a run (its lease written in
the run's own commit, no queue message) and died before executing it loses nothing — once
the lease runs out, a real server started afterwards finds the run and finishes it."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from .conftest import Backend
from .public_fixtures import PublicServers, row_counts, wait_for_run

ACCEPT_AND_DIE = """
import asyncio, json, os, sys
from compute_worker.app.runtime import Runtime
from compute_worker.app.settings import Settings
from compute_worker.domain.audit import RequestContext
from compute_worker.domain.use_cases.deployments import NewDeployment
from compute_worker.domain.use_cases.trigger_run import Trigger

WORKFLOWS = b'''
from compute_worker import step, workflow

@step
async def double(x):
    return 2 * x

@workflow
async def doubled(x):
    return await double(x)
'''

async def main():
    context = RequestContext("POST", "/v1/runs", "accept-and-die")
    settings = Settings.load(json.loads(sys.argv[1]), env={})
    async with Runtime(settings, execute=True) as container:
        created = await container.create_deployment().execute(
            NewDeployment("python", {"workflows.py": WORKFLOWS}), context
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
        sys.executable, "-c", ACCEPT_AND_DIE, json.dumps(options),
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
