"""The stuck-run detector on a real server: a deployment whose bundle no longer loads, a
step that keeps timing out and a run nobody starts are each reported — on the run, in
``GET /v1/runs?stuck=true``, in ``/metrics`` and in a warning log with the run id — while
a sleeping run and a run waiting on a hook never are."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from compute_worker import start_compute_worker_server
from compute_worker.client import AsyncClient

from ._helpers import create_event
from .engine_fixtures import ENGINE_KEY, ENGINE_SEED_KEYS, EngineApi, eventually
from .test_metrics import scrape, value
from .test_run_start_failures import FLAKY_IMPORT

THRESHOLD = 1.0
SLOW = """
import asyncio
from compute_worker import create_hook, sleep, step, workflow

@step(max_retries=1000, timeout=0.2)
async def hangs():
    await asyncio.sleep(60)

@workflow
async def keeps_timing_out():
    return await hangs()

@workflow
async def naps():
    await sleep("1h")

@workflow
async def waits(token):
    return await create_hook(token=token)
"""


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[EngineApi]:
    handle = await start_compute_worker_server(
        port=0,
        data_dir=tmp_path / "data",
        seed_api_keys=ENGINE_SEED_KEYS,
        worldcompute="local",
        max_start_attempts=1000,
        start_retry_seconds=0.2,
        stuck_after_seconds=THRESHOLD,
    )
    try:
        async with EngineApi(handle.url) as api:
            yield api
    finally:
        await handle.close()


async def stuck_ids(engine: EngineApi, stuck: str) -> dict[str, dict[str, Any]]:
    page = engine.ok(await engine.http.get("/v1/runs", params={"stuck": stuck, "limit": 100}))
    return {run["runId"]: run for run in page["data"]}


async def test_each_cause_is_reported_and_waiting_runs_are_not(
    engine: EngineApi, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="compute_worker.app.runtime")
    marker = tmp_path / "break-the-bundle"
    broken_deployment = await engine.deploy(FLAKY_IMPORT.format(marker=str(marker)))
    marker.write_text("now the import fails")
    await engine.deploy(SLOW)
    broken = (await engine.trigger("greet", "you", deployment_id=broken_deployment))["runId"]
    timing_out = (await engine.trigger("keeps_timing_out"))["runId"]
    napping = (await engine.trigger("naps"))["runId"]
    waiting = (await engine.trigger("waits", "stuck-test-token"))["runId"]
    created = await create_event(engine.http, None, "run_created", event_data={
        "deploymentId": "dpl_run_by_someone_else", "workflowName": "elsewhere", "input": [],
    })  # fmt: skip
    nobody = engine.ok(created)["run"]["runId"]
    await engine.wait_event(napping, "wait_created")
    await engine.wait_event(waiting, "hook_created")

    expected = {broken: "start_failing", timing_out: "step_retrying", nobody: "not_started"}

    async def all_found() -> dict[str, dict[str, Any]] | None:
        found = await stuck_ids(engine, "true")
        return found if set(found) >= set(expected) else None

    found = await eventually(all_found, 20, "the three stuck runs to be reported")
    assert {run_id: run["stuck"]["reason"] for run_id, run in found.items()} == expected
    assert "a_module_that_is_not_installed" in found[broken]["stuck"]["message"]
    assert "hangs" in found[timing_out]["stuck"]["message"]

    one = await engine.run(timing_out)
    assert one["status"] == "running"
    assert one["stuck"]["reason"] == "step_retrying"
    assert one["stuck"]["since"] <= one["stuck"]["detectedAt"]
    for healthy in (napping, waiting):
        assert "stuck" not in await engine.run(healthy)
    assert {napping, waiting} <= set(await stuck_ids(engine, "false"))

    samples = await scrape(engine.http)
    for reason in expected.values():
        assert value(samples, "compute_worker_runs_stuck", reason=reason) == 1
    assert value(samples, "compute_worker_runs_stuck", reason="no_progress") == 0

    warned = {r.__dict__.get("runId"): r.getMessage() for r in caplog.records
              if r.getMessage().startswith("run is stuck")}  # fmt: skip
    assert set(expected) <= set(warned)
    assert warned[timing_out].startswith("run is stuck (step_retrying)")

    async with AsyncClient(engine.url, api_key=ENGINE_KEY) as client:
        listed = {run.run_id: run async for run in client.runs.list(stuck=True)}
    assert listed[broken].stuck is not None
    assert listed[broken].stuck.reason == "start_failing"

    # a cancelled run is no longer stuck
    engine.ok(await engine.cancel(timing_out))
    assert "stuck" not in await engine.run(timing_out)
    assert timing_out not in await stuck_ids(engine, "true")


async def test_the_stuck_filter_takes_true_or_false(engine: EngineApi) -> None:
    response = await engine.http.get("/v1/runs", params={"stuck": "maybe"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"
    assert response.json()["details"]["field"] == "stuck"
