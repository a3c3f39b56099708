"""Workflow code that never yields (a loop or a blocking call in the ``@workflow`` body,
not in a step) is killed by the process backend's watchdog: the run fails with
``RUNTIME_ERROR`` naming the cause and the child's slot is freed. Cancelling a run kills
the child working on it at once — real servers, real child processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from compute_worker import start_compute_worker_server

from .engine_fixtures import ENGINE_SEED_KEYS, EngineApi, eventually

WORKFLOWS = """
import asyncio
import os
import time
from compute_worker import RetryableError, sleep, workflow, step


@step
async def double(x):
    return x * 2


@workflow
async def trivial(x):
    return await double(x)


@workflow
async def spins():
    while True:
        pass


@workflow
async def blocks(path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    time.sleep(1e5)


@workflow
async def awaits_forever():
    await double(1)
    await asyncio.sleep(1e5)


@step
async def flaky(marker):
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RetryableError("not yet", retry_after=2.5)
    return "done"


@workflow
async def patient(marker):
    await sleep("2500ms")
    return await flaky(marker)


@step
async def nap(seconds):
    time.sleep(seconds)
    return seconds


@workflow
async def blocking_step(seconds):
    return await nap(seconds)
"""

TURN = 1.0


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, turn: float) -> AsyncIterator[EngineApi]:
    handle = await asyncio.wait_for(
        start_compute_worker_server(
            data_dir=tmp_path / "data",
            port=0,
            seed_api_keys=ENGINE_SEED_KEYS,
            worldcompute="process",
            sandbox="off",  # the workflows report their pid through the test's folder
            process_memory_mb=512,
            process_children=1,  # one slot: a stuck run would starve every other
            workflow_turn_seconds=turn,
        ),
        30,
    )
    try:
        async with EngineApi(handle.url) as client:
            await client.deploy(WORKFLOWS)
            yield client
    finally:
        await asyncio.wait_for(handle.close(), 30)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[EngineApi]:
    async with serving(tmp_path, TURN) as client:
        yield client


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie counts as gone: it runs nothing and holds nothing
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def pid_in(path: Path) -> int | None:
    text = path.read_text() if path.exists() else ""
    return int(text) if text else None


async def read_pid(path: Path, within: float = 20.0) -> int:
    async def probe() -> int | None:
        return pid_in(path)

    return await eventually(probe, within, "the workflow to write its pid")


async def trivial_completes_promptly(api: EngineApi, within: float = 10.0) -> None:
    began = time.monotonic()
    run = await api.trigger("trivial", 21)
    done = await api.finished(run["runId"], within)
    assert done["status"] == "completed"
    assert done["output"] == 42
    assert time.monotonic() - began < within


@pytest.mark.parametrize("workflow", ["spins", "blocks"])
async def test_workflow_code_that_never_yields_fails_the_run_and_frees_the_slot(
    api: EngineApi, workflow: str, tmp_path: Path
) -> None:
    args = [str(tmp_path / "pid")] if workflow == "blocks" else []
    run = await api.trigger(workflow, *args)
    failed = await api.finished(run["runId"], within=30)
    assert failed["status"] == "failed"
    error = failed["error"]
    assert error["code"] == "RUNTIME_ERROR"
    assert "failed 3 times" in error["message"]
    assert f"did not yield for {TURN:g} s" in error["message"]
    assert "@workflow body" in error["message"]
    if workflow == "blocks":
        assert not alive(await read_pid(tmp_path / "pid"))
    await trivial_completes_promptly(api)
    health = await api.http.get("/v1/health")
    assert health.status_code == 200


async def test_a_step_may_block_longer_than_the_workflow_turn_limit(api: EngineApi) -> None:
    run = await api.trigger("blocking_step", TURN * 2.5)
    done = await api.finished(run["runId"], within=20)
    assert done["status"] == "completed"
    assert done["output"] == TURN * 2.5


async def test_cancel_kills_the_child_at_once_and_frees_its_slot(tmp_path: Path) -> None:
    async with serving(tmp_path, 60.0) as api:  # the watchdog stays out of it
        await cancel_kills(api, tmp_path / "pid")


async def cancel_kills(api: EngineApi, pid_file: Path) -> None:
    run = await api.trigger("blocks", str(pid_file))
    pid = await read_pid(pid_file)
    assert alive(pid)
    began = time.monotonic()
    response = await api.cancel(run["runId"])
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"

    async def gone() -> bool:
        return not alive(pid)

    await eventually(gone, 5, f"the cancelled run's child {pid} to be killed")
    assert time.monotonic() - began < 5
    await trivial_completes_promptly(api)
    assert (await api.run(run["runId"]))["status"] == "cancelled"


async def test_workflow_code_awaiting_nothing_durable_fails_the_run_and_frees_the_slot(
    api: EngineApi,
) -> None:
    began = time.monotonic()
    run = await api.trigger("awaits_forever")
    failed = await api.finished(run["runId"], within=30)
    assert failed["status"] == "failed"
    error = failed["error"]
    assert error["code"] == "RUNTIME_ERROR"
    assert f"awaited nothing durable for {TURN:g} s" in error["message"]
    assert "asyncio.sleep" in error["message"]
    assert time.monotonic() - began < 20
    steps = await api.steps(run["runId"])
    assert [step["status"] for step in steps] == ["completed"]  # what it did before counts
    await trivial_completes_promptly(api)


async def test_durable_sleeps_and_retry_delays_longer_than_the_turn_limit_are_not_stalls(
    api: EngineApi, tmp_path: Path
) -> None:
    run = await api.trigger("patient", str(tmp_path / "flaky"))
    done = await api.finished(run["runId"], within=30)
    assert done["status"] == "completed", done
    assert done["output"] == "done"
