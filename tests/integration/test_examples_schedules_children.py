"""The examples of the README's Schedules and Child workflows sections, deployed and run:
``examples/graphs/scheduled-report.json`` (a Schedule trigger, triggered now, fanning out
to child runs), ``examples/graphs/fan-out.json`` and the Python bundle
``examples/scheduled/workflows.py`` (a scheduled workflow starting ``invoice`` children)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._helpers import assert_ok
from .public_fixtures import PublicServers, deploy, started_run, wait_for_run

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def graphs(*names: str) -> str:
    found: list[Any] = []
    for name in names:
        found += json.loads((EXAMPLES / "graphs" / f"{name}.json").read_text())["workflows"]
    return json.dumps({"workflows": found})


async def test_the_scheduled_report_and_fan_out_graphs_run(servers: PublicServers) -> None:
    server = await servers.start(worldcompute="local")
    async with server.client() as api:
        body = {"kind": "graph", "files": {"workflow.json": graphs("scheduled-report", "fan-out")}}
        created = assert_ok(await api.post("/v1/deployments", json=body), 201)
        assert_ok(await api.post(f"/v1/deployments/{created['deploymentId']}/activate"))
        (schedule,) = assert_ok(await api.get("/v1/schedules"))["data"]
        assert (schedule["name"], schedule["cron"], schedule["timezone"]) == (
            "daily-report", "0 8 * * 1-5", "Europe/Paris")  # fmt: skip

        report = assert_ok(await api.post("/v1/schedules/daily-report/trigger"), 202)
        done = await wait_for_run(api, report["runId"])
        assert done["output"]["manual"] is True
        assert done["output"]["figures"] == {"orders": 6, "signups": 7, "refunds": 7}
        assert done["output"]["total"] == 20 and len(done["children"]) == 3

        fan = await wait_for_run(api, await started_run(api, "fan-out", ["a-1", "b-22", "c-333"]))
        assert fan["output"]["orders"] == 3 and fan["output"]["total"] == 30 + 40 + 50
        assert [c["runId"] for c in fan["children"]] == fan["output"]["children"]


async def test_the_scheduled_python_bundle_fans_out_invoices(servers: PublicServers) -> None:
    server = await servers.start(worldcompute="local")
    async with server.client() as api:
        source = (EXAMPLES / "scheduled" / "workflows.py").read_text()
        deployment = await deploy(api, source)
        scheduled = {w["name"]: w.get("schedule") for w in deployment["workflows"]}
        assert scheduled["nightly_invoices"] == {
            "cron": "30 2 * * *", "timezone": "Europe/Berlin", "catchUp": "one"}  # fmt: skip
        run = assert_ok(await api.post("/v1/schedules/nightly_invoices/trigger"), 202)
        done = await wait_for_run(api, run["runId"])
        assert done["output"]["invoices"] == 3 and done["output"]["total"] == 1700
        assert [c["workflowName"] for c in done["children"]] == ["invoice"] * 3
