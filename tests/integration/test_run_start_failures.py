"""A run whose code cannot start is retried a bounded number of times, visibly, then fails
with ``RUNTIME_ERROR`` and a message naming the user's file — on both backends. Also: a
run's streams are closed when it ends, and child processes leave no keys behind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from compute_worker import start_compute_worker_server

from .engine_fixtures import ENGINE_SEED_KEYS, EngineApi, eventually

# Accepted at upload (the marker does not exist yet), broken at run time.
FLAKY_IMPORT = """
import os
from compute_worker import workflow

if os.path.exists({marker!r}):
    import a_module_that_is_not_installed  # noqa

@workflow
async def greet(name):
    return "hi " + name
"""

STREAMS = """
import asyncio
from compute_worker import workflow, step, get_writable, create_hook

@step
async def chatter(text):
    await get_writable("log").write(text)   # never closed by the workflow
    return text

@workflow
async def chatty(text):
    return await chatter(text)

@workflow
async def chatty_then_waits(text):
    await chatter(text)
    await create_hook(token="never-" + text)
"""


@pytest.fixture(params=["process", "local"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EngineApi]:
    handle = await start_compute_worker_server(
        port=0,
        data_dir=tmp_path / "data",
        seed_api_keys=ENGINE_SEED_KEYS,
        worldcompute=request.param,
        sandbox="off",  # the bundle's import looks for a marker file of the test's folder
        max_start_attempts=3,
        start_retry_seconds=0.2,
    )
    try:
        async with EngineApi(handle.url) as api:
            yield api
    finally:
        await handle.close()


async def test_a_bundle_that_no_longer_imports_fails_the_run_after_bounded_visible_retries(
    engine: EngineApi, tmp_path: Path
) -> None:
    marker = tmp_path / "break-the-bundle"
    await engine.deploy(FLAKY_IMPORT.format(marker=str(marker)))
    marker.write_text("now the import fails")
    run = await engine.trigger("greet", "you")

    async def retrying() -> dict[str, Any] | None:
        found = await engine.run(run["runId"])
        return found if "execution" in found else None

    seen = await eventually(retrying, 20, "the run to report its failed starts")
    execution = seen["execution"]
    assert seen["status"] == "pending"
    assert execution["maxStartAttempts"] == 3
    assert 1 <= execution["startAttempts"] < 3
    assert "a_module_that_is_not_installed" in execution["lastError"]
    assert "workflows.py, line 6" in execution["lastError"]
    assert execution["lastErrorAt"].endswith("Z")

    failed = await engine.finished(run["runId"], within=30)
    assert failed["status"] == "failed"
    assert "execution" not in failed
    error = failed["error"]
    assert error["code"] == "RUNTIME_ERROR"
    assert error["message"].startswith("the run could not start after 3 attempts: ")
    assert "ModuleNotFoundError" in error["message"]
    assert 'File "workflows.py", line 6' in error["stack"]
    for leak in ("site-packages", "adapters", "importlib", str(tmp_path)):
        assert leak not in error["stack"], error["stack"]
        assert leak not in error["message"], error["message"]


async def test_a_run_that_ends_closes_its_streams_so_readers_finish(engine: EngineApi) -> None:
    await engine.deploy(STREAMS)
    run = await engine.trigger("chatty", "hello")
    assert (await engine.finished(run["runId"]))["status"] == "completed"
    names, info = await _only_stream(engine, run["runId"])
    assert len(names) == 1
    assert info == {"tailIndex": 0, "done": True}
    read = await engine.http.get("/v1/world/streams/read", params={"name": names[0]})
    assert read.content == b"hello"


async def test_cancelling_a_run_closes_its_streams(engine: EngineApi) -> None:
    await engine.deploy(STREAMS)
    run = await engine.trigger("chatty_then_waits", "bye")
    await engine.wait_event(run["runId"], "hook_created")
    assert engine.ok(await engine.cancel(run["runId"]))["status"] == "cancelled"
    _, info = await _only_stream(engine, run["runId"])
    assert info["done"] is True


async def _only_stream(engine: EngineApi, run_id: str) -> tuple[list[str], dict[str, Any]]:
    listed = await engine.http.get("/v1/world/streams/list", params={"runId": run_id})
    names: list[str] = engine.ok(listed)["streams"]
    query = {"name": names[0], "runId": run_id}
    info = engine.ok(await engine.http.get("/v1/world/streams/info", params=query))
    return names, info
