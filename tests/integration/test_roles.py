"""The ``role`` setting on real servers sharing one database: an ``api`` node accepts runs
and executes none, an ``executor`` node executes them and answers only health, metrics and
the internal lane; the command line checks the value and shows it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from ._helpers import assert_ok
from .public_fixtures import PublicServers, deploy, run_cli, trigger, wait_for_run


async def test_an_api_node_queues_runs_that_an_executor_node_executes(
    servers: PublicServers, tmp_path: Path
) -> None:
    # several nodes share the installation secret and the artifact store
    shared = {"encryption_secret": b"r" * 32, "artifact_dir": tmp_path / "artifacts"}
    api = await servers.start(role="api", **shared)
    async with api.client() as client:
        await deploy(client)
        run = assert_ok(await trigger(client, "adder", [2, 3]), 202)
        await asyncio.sleep(1.5)  # long enough for an engine to have taken it
        waiting = assert_ok(await client.get(f"/v1/runs/{run['runId']}"))
        assert waiting["status"] == "pending"
        executor = await servers.start(role="executor", **shared)
        done = await wait_for_run(client, run["runId"])
        assert done["output"] == 5
    async with executor.client() as direct:
        assert_ok(await direct.get("/v1/health"))
        for path in ("/v1/runs", f"/v1/runs/{run['runId']}", "/v1/deployments", "/ui/"):
            refused = await direct.get(path)
            assert refused.status_code == 404, (path, refused.text)
            assert refused.json()["code"] == "not_found"
        assert (await direct.get("/metrics")).status_code == 200


async def test_the_role_is_checked_and_shown_by_the_command_line() -> None:
    shown = await run_cli("settings", "--role", "Executor")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["role"] == "executor"
    refused = await run_cli("serve", "--role", "both-ways")
    assert refused.returncode == 2, refused
    assert "--role" in refused.stderr and "Traceback" not in refused.stderr
