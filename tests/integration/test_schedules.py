"""Schedules end to end on real servers: a graph's ``Schedule`` trigger and a Python
``@workflow(schedule=…)`` start runs on seconds-level cron calendars; the slot time is in
each run's input; pause, resume and trigger-now through the public API; catch-up after a
restart; two workers on one PostgreSQL database start each slot once; activating another
deployment switches the schedules; invalid cron and timezones are refused at upload."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest

from ._helpers import assert_ok
from .public_fixtures import PublicServers, deploy, run_cli, wait_for_run

EVERY_SECOND = "* * * * * *"
FAST = {"schedule_poll_seconds": 0.1}


def scheduled_graph(name: str, cron: str, **trigger: Any) -> dict[str, Any]:
    data = {"label": "Every tick", "triggerType": "Schedule", "scheduleCron": cron, **trigger}
    return {
        "name": name,
        "nodes": [
            {"id": "tick", "type": "trigger", "data": data},
            {"id": "report", "type": "action", "data": {
                "actionType": "transform", "isResult": True,
                "expression": "{'slot': input[0]['scheduledAt'], 'manual': "
                              "input[0].get('manual', false)}"}},
        ],
        "edges": [{"source": "tick", "target": "report"}],
    }  # fmt: skip


async def deploy_graph(api: httpx.AsyncClient, *graphs: dict[str, Any]) -> dict[str, Any]:
    body = {"kind": "graph", "files": {"workflow.json": json.dumps({"workflows": list(graphs)})}}
    deployment: dict[str, Any] = assert_ok(await api.post("/v1/deployments", json=body), 201)
    path = f"/v1/deployments/{deployment['deploymentId']}/activate"
    return dict(assert_ok(await api.post(path)))


async def runs_of(api: httpx.AsyncClient, workflow: str) -> list[dict[str, Any]]:
    page = assert_ok(await api.get("/v1/runs", params={"workflowName": workflow, "limit": 1000}))
    return list(page["data"])


async def until_runs(api: httpx.AsyncClient, workflow: str, count: int,
                     within: float = 20.0) -> list[dict[str, Any]]:  # fmt: skip
    deadline = time.monotonic() + within
    while True:
        found = await runs_of(api, workflow)
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{len(found)} runs of {workflow}, wanted {count}"
        await asyncio.sleep(0.1)


def slots(runs: list[dict[str, Any]]) -> list[datetime]:
    return sorted(datetime.fromisoformat(run["input"][0]["scheduledAt"]) for run in runs)


async def test_a_graph_schedule_fires_with_its_slot_and_is_paused_resumed_and_triggered(
    servers: PublicServers,
) -> None:
    server = await servers.start(**FAST)
    async with server.client() as api:
        deployment = await deploy_graph(api, scheduled_graph("ticker", EVERY_SECOND))
        assert deployment["workflows"][0]["schedule"] == {"cron": EVERY_SECOND, "timezone": "UTC"}
        runs = await until_runs(api, "ticker", 2)
        done = await wait_for_run(api, runs[-1]["runId"])
        assert done["output"]["manual"] is False
        assert datetime.fromisoformat(done["output"]["slot"]).microsecond == 0
        assert done["executionContext"]["schedule"]["schedule"] == "ticker"

        listed = assert_ok(await api.get("/v1/schedules"))["data"]
        assert [s["name"] for s in listed] == ["ticker"]
        (schedule,) = listed
        assert schedule["deploymentId"] == deployment["deploymentId"]
        assert schedule["catchUp"] == "one" and schedule["paused"] is False
        assert schedule["nextFireAt"] > schedule["lastSlot"]

        paused = assert_ok(await api.post("/v1/schedules/ticker/pause"))
        assert paused["paused"] is True and paused["nextFireAt"] is None
        await asyncio.sleep(0.3)  # a pass that was under way when the pause came ends
        before = len(await runs_of(api, "ticker"))
        await asyncio.sleep(1.5)
        assert len(await runs_of(api, "ticker")) == before, "a paused schedule started a run"

        now = await api.post("/v1/schedules/ticker/trigger", headers={"Idempotency-Key": "t-1"})
        manual = assert_ok(now, 202)
        again = await api.post("/v1/schedules/ticker/trigger", headers={"Idempotency-Key": "t-1"})
        assert assert_ok(again, 202)["runId"] == manual["runId"]
        assert again.headers["Idempotency-Replayed"] == "true"
        finished = await wait_for_run(api, manual["runId"])
        assert finished["output"]["manual"] is True

        resumed = assert_ok(await api.post("/v1/schedules/ticker/resume"))
        assert resumed["paused"] is False and resumed["nextFireAt"] is not None
        await until_runs(api, "ticker", before + 2)

        missing = await api.post("/v1/schedules/nope/pause")
        assert missing.status_code == 404 and missing.json()["code"] == "schedule_not_found"
        assert (await api.get("/v1/schedules/nope")).json()["code"] == "schedule_not_found"

        scheduled = [run for run in await runs_of(api, "ticker")
                     if not run["input"][0].get("manual")]  # fmt: skip
        assert len(set(slots(scheduled))) == len(scheduled), "a slot started twice"


async def test_activating_another_deployment_switches_the_schedules(
    servers: PublicServers,
) -> None:
    server = await servers.start(**FAST)
    async with server.client() as api:
        await deploy_graph(api, scheduled_graph("old-ticker", EVERY_SECOND))
        await until_runs(api, "old-ticker", 1)
        paris = scheduled_graph("new-ticker", EVERY_SECOND, scheduleTimezone="Europe/Paris")
        newer = await deploy_graph(api, paris)
        listed = assert_ok(await api.get("/v1/schedules"))["data"]
        assert [(s["name"], s["deploymentId"], s["timezone"]) for s in listed] == [
            ("new-ticker", newer["deploymentId"], "Europe/Paris")
        ]
        await asyncio.sleep(0.3)
        old = len(await runs_of(api, "old-ticker"))
        await until_runs(api, "new-ticker", 2)
        assert len(await runs_of(api, "old-ticker")) == old
        for run in await runs_of(api, "new-ticker"):
            assert run["deploymentId"] == newer["deploymentId"]

        await deploy(api)  # a Python bundle with no schedule: none is left
        assert assert_ok(await api.get("/v1/schedules"))["data"] == []


PYTHON_SCHEDULED = """\
from compute_worker import workflow


@workflow(schedule="*/2 * * * * *", timezone="UTC", catch_up="all")
async def every_two(tick):
    return tick["scheduledAt"]
"""


async def test_missed_slots_are_caught_up_after_a_restart(
    servers: PublicServers, tmp_path: Path
) -> None:
    """``catch_up="all"``: every slot that came due while no worker ran starts once."""
    options = {**FAST, "schedule_late_seconds": 1.0, "artifact_dir": tmp_path / "artifacts"}
    first = await servers.start(**options)
    async with first.client() as api:
        deployment = await deploy(api, PYTHON_SCHEDULED)
        assert deployment["workflows"][0]["schedule"]["catchUp"] == "all"
        await until_runs(api, "every_two", 1)
    await first.handle.close()
    await asyncio.sleep(5)  # two or three slots come due with no worker
    second = await servers.start(**options)
    async with second.client() as api:
        found = await until_runs(api, "every_two", 4)
        await asyncio.sleep(0.5)
        found = await runs_of(api, "every_two")
        started = slots(found)
        assert len(set(started)) == len(started), "a slot started twice"
        gaps = {(later - earlier).total_seconds() for earlier, later in pairwise(started)}
        assert gaps == {2.0}, f"a slot was skipped: {started}"
        await wait_for_run(api, found[0]["runId"])


async def test_catch_up_one_starts_a_single_run_for_an_outage(
    servers: PublicServers, tmp_path: Path
) -> None:
    options = {**FAST, "schedule_late_seconds": 1.0, "schedule_catch_up": "one",
               "artifact_dir": tmp_path / "artifacts"}  # fmt: skip
    first = await servers.start(**options)
    async with first.client() as api:
        await deploy_graph(api, scheduled_graph("hourly-ish", "*/2 * * * * *"))
        await until_runs(api, "hourly-ish", 1)
        assert_ok(await api.post("/v1/schedules/hourly-ish/pause"))
        await asyncio.sleep(0.3)
        before = slots(await runs_of(api, "hourly-ish"))
    await first.handle.close()
    second = await servers.start(**options)
    async with second.client() as api:
        resumed = assert_ok(await api.post("/v1/schedules/hourly-ish/resume"))
        mark = datetime.fromisoformat(resumed["lastSlot"].replace("Z", "+00:00"))
        await asyncio.sleep(0.3)
        during = [slot for slot in slots(await runs_of(api, "hourly-ish")) if slot > before[-1]]
        assert all(slot > mark for slot in during), f"paused slots were started: {during}"
        assert_ok(await api.post("/v1/schedules/hourly-ish/pause"))
        await asyncio.sleep(0.3)
        assert_ok(await api.post("/v1/schedules/hourly-ish/resume"))
        done = slots(await runs_of(api, "hourly-ish"))
    await second.handle.close()
    await asyncio.sleep(6)  # three slots missed
    third = await servers.start(**options)
    async with third.client() as api:
        await until_runs(api, "hourly-ish", len(done) + 1)  # however slow the first tick
        after = slots(await runs_of(api, "hourly-ish"))
    caught = [slot for slot in after if slot > done[-1]]
    # the latest missed slot only (it is at least three slots after the last one started),
    # then the slots on time, each once
    assert (caught[0] - done[-1]).total_seconds() >= 6, f"catch-up one started {caught}"
    gaps = {(later - earlier).total_seconds() for earlier, later in pairwise(caught)}
    assert gaps <= {2.0}, f"catch-up one started {caught}"


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_two_workers_on_postgres_start_each_slot_once(servers: PublicServers) -> None:
    one = await servers.start(**FAST, schedule_catch_up="all", schedule_late_seconds=1.0)
    two = await servers.start(**FAST, schedule_catch_up="all", schedule_late_seconds=1.0)
    async with one.client() as api:
        await deploy_graph(api, scheduled_graph("shared", EVERY_SECOND))
        await until_runs(api, "shared", 5)
    await one.handle.close()
    await two.handle.close()
    third = await servers.start(schedule_poll_seconds=0)  # reads, schedules nothing
    async with third.client() as api:
        started = slots(await runs_of(api, "shared"))
    counts = Counter(started)
    assert started and max(counts.values()) == 1, f"slots started twice: {counts}"


INVALID = {
    "workflows": [
        {"name": "bad-cron", "nodes": [{"id": "t", "type": "trigger", "data": {
            "triggerType": "Schedule", "scheduleCron": "61 * * * *"}}], "edges": []},
        {"name": "bad-zone", "nodes": [{"id": "t", "type": "trigger", "data": {
            "triggerType": "Schedule", "scheduleCron": "0 9 * * *",
            "scheduleTimezone": "Mars/Olympus"}}], "edges": []},
        {"name": "no-cron", "nodes": [{"id": "t", "type": "trigger", "data": {
            "triggerType": "schedule", "scheduleCatchUp": "sometimes"}}], "edges": []},
    ]
}  # fmt: skip


async def test_invalid_schedules_are_refused_with_every_problem(servers: PublicServers) -> None:
    server = await servers.start(schedule_poll_seconds=0)
    async with server.client() as api:
        body = {"kind": "graph", "files": {"workflow.json": json.dumps(INVALID)}}
        refused = await api.post("/v1/deployments", json=body)
        assert refused.status_code == 422 and refused.json()["code"] == "invalid_deployment"
        problems = refused.json()["details"]["problems"]
        found = {(p["workflow"], p["field"]) for p in problems}
        assert found == {
            ("bad-cron", "data.scheduleCron"),
            ("bad-zone", "data.scheduleTimezone"),
            ("no-cron", "data.scheduleCron"),
            ("no-cron", "data.scheduleCatchUp"),
        }, problems

        source = PYTHON_SCHEDULED.replace('"*/2 * * * * *", timezone="UTC"',
                                          '"*/2 * * *", timezone="Nowhere/City"')  # fmt: skip
        python = {"kind": "python", "files": {"workflows.py": source}}
        bad = await api.post("/v1/deployments", json=python)
        assert bad.status_code == 422, bad.text
        assert bad.json()["details"]["problems"][0]["workflow"] == "every_two"
        assert "timezone" in bad.json()["message"]

        wrong = PYTHON_SCHEDULED.replace('catch_up="all"', 'catch_up="twice"')
        python = {"kind": "python", "files": {"workflows.py": wrong}}
        bad = await api.post("/v1/deployments", json=python)
        assert bad.status_code == 422 and "catch_up" in bad.json()["message"]


async def test_the_cli_lists_pauses_resumes_and_triggers_schedules(
    servers: PublicServers,
) -> None:
    server = await servers.start(**FAST)
    async with server.client() as api:
        await deploy_graph(
            api, scheduled_graph("nightly", "0 2 * * *", scheduleTimezone="Asia/Tokyo")
        )
        listed = await run_cli("schedules", "list", "--json", *server.cli_args)
        assert listed.returncode == 0, listed.stderr
        (row,) = listed.json_lines()
        assert (row["name"], row["cron"], row["timezone"]) == ("nightly", "0 2 * * *", "Asia/Tokyo")
        assert datetime.fromisoformat(row["nextFireAt"]).utcoffset() is not None

        paused = await run_cli("schedules", "pause", "nightly", *server.cli_args)
        assert paused.returncode == 0 and "\tpaused\t" in paused.stdout, paused.stderr
        assert assert_ok(await api.get("/v1/schedules/nightly"))["paused"] is True
        resumed = await run_cli("schedules", "resume", "nightly", *server.cli_args)
        assert resumed.returncode == 0 and "paused" not in resumed.stdout

        triggered = await run_cli("schedules", "trigger", "nightly", *server.cli_args)
        assert triggered.returncode == 0, triggered.stderr
        run = await wait_for_run(api, triggered.stdout.strip())
        assert run["output"]["manual"] is True

        missing = await run_cli("schedules", "pause", "nope", *server.cli_args)
        assert missing.returncode == 1 and "No schedule named 'nope'" in missing.stderr
