"""A workflow child's key, as hostile workflow code would use it: code that digs the key
out of its own process acts on its own deployment's runs (events, run, streams, its
runs' encryption key) and on nothing else — not another deployment's runs, not a run
listing, not the public API. Real server, real child processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from compute_worker import start_compute_worker_server

from .engine_fixtures import ENGINE_SEED_KEYS, EngineApi

OTHER = """
from compute_worker import workflow

@workflow
async def other(x):
    return x
"""

HOSTILE = """
import os
import httpx
from compute_worker import run_metadata, step, workflow


def _lane():
    raw = open("/proc/self/environ", "rb").read().split(b"\\0")
    env = dict(item.decode().split("=", 1) for item in raw if b"=" in item)
    socket = env.get("CW_WORLD_SOCKET")
    transport = httpx.AsyncHTTPTransport(uds=socket) if socket else None
    return httpx.AsyncClient(base_url=env["CW_WORLD_URL"], transport=transport,
                             headers={"authorization": "Bearer " + env["CW_WORLD_KEY"]})


@step
async def probe(other_run, other_deployment):
    own = run_metadata()["run_id"]
    async with _lane() as lane:
        async def code(method, path, body=None):
            return (await lane.request(method, path, json=body)).status_code

        return {
            "listRuns": await code("POST", "/v1/world/runs/list", {}),
            "otherRun": await code("GET", f"/v1/world/runs/{other_run}"),
            "otherEvents": await code("POST", "/v1/world/events/list", {"runId": other_run}),
            "otherKey": await code("POST", "/v1/world/encryption-key", {"runId": other_run}),
            "otherStream": await code("POST", "/v1/world/streams/write",
                                      {"name": "x", "runId": other_run, "chunk": "hi"}),
            "otherCancel": await code("POST", "/v1/world/events/create",
                                      {"runId": other_run, "data": {"eventType": "run_cancelled"}}),
            "unknownRun": await code("GET", "/v1/world/runs/wrun_01J00000000000000000000000"),
            "byCorrelation": await code("POST", "/v1/world/events/list-by-correlation",
                                        {"correlationId": "x"}),
            "publish": await code("POST", "/v1/queue/publish",
                                  {"queueName": "__wkf_workflow_other", "message": {}}),
            "publicRuns": await code("GET", "/v1/runs"),
            "ownRun": await code("GET", f"/v1/world/runs/{own}"),
            "ownEvents": await code("POST", "/v1/world/events/list", {"runId": own}),
            "ownKey": await code("POST", "/v1/world/encryption-key",
                                 {"runId": own, "deploymentId": other_deployment}),
        }


@workflow
async def hostile(other_run, other_deployment):
    return await probe(other_run, other_deployment)
"""


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[EngineApi]:
    handle = await asyncio.wait_for(
        start_compute_worker_server(
            data_dir=tmp_path / "data",
            port=0,
            seed_api_keys=ENGINE_SEED_KEYS,
            worldcompute="process",
            process_memory_mb=512,
        ),
        30,
    )
    try:
        async with EngineApi(handle.url) as client:
            yield client
    finally:
        await asyncio.wait_for(handle.close(), 30)


async def test_a_childs_key_acts_only_on_runs_of_its_own_deployment(api: EngineApi) -> None:
    other_deployment = await api.deploy(OTHER)
    other = await api.finished((await api.trigger("other", 1))["runId"], 40)
    assert other["status"] == "completed"
    await api.deploy(HOSTILE)

    run = await api.trigger("hostile", other["runId"], other_deployment)
    done = await api.finished(run["runId"], 40)

    assert done["status"] == "completed", done
    assert done["output"] == {
        "listRuns": 403,
        "otherRun": 403,
        "otherEvents": 403,
        "otherKey": 403,
        "otherStream": 403,
        "otherCancel": 403,
        "unknownRun": 403,
        "byCorrelation": 403,
        "publish": 403,
        "publicRuns": 403,
        "ownRun": 200,
        "ownEvents": 200,
        "ownKey": 200,
    }
    assert (await api.run(other["runId"]))["status"] == "completed"
    assert (await api.http.get("/v1/health")).status_code == 200
