"""The ``process`` backend end to end: workflow code in child processes that crash,
run out of memory, hang, park while suspended, and never see the server's secrets."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from compute_worker import start_compute_worker_server
from compute_worker.adapters.worldcompute.process.backend import Child

from .engine_fixtures import ENGINE_SEED_KEYS, EngineApi, eventually, read_lines

WORKFLOWS = """
import asyncio
import os
from compute_worker import (workflow, step, sleep, create_hook, get_writable,
                            StepFailedError, run_metadata)


def _append(path, line):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(fd, (line + "\\n").encode())
    os.close(fd)


@step
async def double(x):
    return x * 2


@workflow
async def fan_out(count):
    return await asyncio.gather(*(double(i) for i in range(count)))


@step(max_retries=2)
async def crash_once(path):
    _append(path, "attempt")
    if len(open(path).read().splitlines()) == 1:
        os._exit(3)
    return run_metadata()["attempt"]


@workflow
async def crashes(path):
    return await crash_once(path)


@step(max_retries=0)
async def abort():
    os.abort()


@workflow
async def aborts():
    try:
        return await abort()
    except StepFailedError as failure:
        return "caught: " + failure.error_message


@step(max_retries=0)
async def hog():
    blob = bytearray(8 * 1024 * 1024 * 1024)
    return len(blob)


@workflow
async def out_of_memory():
    try:
        return await hog()
    except StepFailedError as failure:
        return "caught: " + failure.error_message


@step(max_retries=1, timeout=1)
async def spin(path):
    _append(path, "spin")
    while True:
        pass


@workflow
async def hangs(path):
    try:
        return await spin(path)
    except StepFailedError as failure:
        return "caught: " + failure.error_message


@workflow
async def parks(token):
    first = await create_hook(token=token)
    await sleep("200ms")
    return {"first": first, "pid_free": True}


@step
async def environment():
    return sorted(name for name in os.environ if "COMPUTE_WORKER" in name or "DATABASE" in name
                  or name.startswith("CW_"))


@workflow
async def secrets():
    return await environment()


@step
async def slow_write(path):
    _append(path, "started")
    await asyncio.sleep(30)
    _append(path, "finished")


@workflow
async def slow(path):
    await slow_write(path)


@step
async def produce(count):
    out = get_writable("numbers")
    for i in range(count):
        await out.write(f"{i};")
    await out.close()
    return count


@workflow
async def streams(count):
    return await produce(count)
"""


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[EngineApi]:
    handle = await asyncio.wait_for(
        start_compute_worker_server(
            data_dir=tmp_path / "data",
            port=0,
            seed_api_keys=ENGINE_SEED_KEYS,
            worldcompute="process",
            sandbox="off",  # the workflows report through files of the test's folder
            process_memory_mb=512,
            step_timeout_seconds=20,
        ),
        30,
    )
    try:
        async with EngineApi(handle.url) as client:
            await client.deploy(WORKFLOWS)
            yield client
    finally:
        await asyncio.wait_for(handle.close(), 30)


async def run_to_end(api: EngineApi, workflow: str, *args: Any, within: float = 40) -> Any:
    run = await api.trigger(workflow, *args)
    return await api.finished(run["runId"], within)


async def test_parallel_steps_run_in_a_child(api: EngineApi) -> None:
    run = await run_to_end(api, "fan_out", 8)
    assert run["status"] == "completed"
    assert run["output"] == [0, 2, 4, 6, 8, 10, 12, 14]


async def test_a_child_that_exits_mid_step_costs_that_step_one_attempt(
    api: EngineApi, tmp_path: Path
) -> None:
    attempts = tmp_path / "attempts"
    run = await run_to_end(api, "crashes", str(attempts))
    assert run["status"] == "completed"
    assert run["output"] == 2  # the second attempt, after the child died in the first
    assert read_lines(attempts) == ["attempt", "attempt"]


async def test_a_crashing_step_without_retries_fails_and_the_workflow_sees_it(
    api: EngineApi,
) -> None:
    run = await run_to_end(api, "aborts")
    assert run["status"] == "completed"
    assert run["output"].startswith("caught: ")
    assert "SIGABRT" in run["output"]


async def test_a_step_out_of_memory_fails_and_the_server_lives_on(api: EngineApi) -> None:
    run = await run_to_end(api, "out_of_memory")
    assert run["status"] == "completed"
    assert run["output"].startswith("caught: ")
    assert "MemoryError" in run["output"] or "memory" in run["output"].lower()
    health = await api.http.get("/v1/health")
    assert health.status_code == 200
    assert (await run_to_end(api, "fan_out", 2))["output"] == [0, 2]


async def test_a_step_past_its_timeout_is_killed_and_retried(
    api: EngineApi, tmp_path: Path
) -> None:
    spins = tmp_path / "spins"
    started = time.monotonic()
    run = await run_to_end(api, "hangs", str(spins))
    assert run["status"] == "completed"
    assert run["output"] == "caught: step spin exceeded its timeout of 1 s"
    assert read_lines(spins) == ["spin", "spin"]  # max_retries=1: two attempts
    assert time.monotonic() - started < 20


async def test_a_suspended_run_parks_and_is_replayed_when_resumed(
    api: EngineApi, tmp_path: Path
) -> None:
    run = await api.trigger("parks", "park-token")
    await api.wait_event(run["runId"], "hook_created", within=30)

    def lease_owner() -> str | None:
        with contextlib.closing(sqlite3.connect(tmp_path / "data" / "compute-worker.db")) as db:
            row = db.execute(
                "SELECT owner FROM run_leases WHERE run_id = ?", (run["runId"],)
            ).fetchone()
        return None if row is None else str(row[0])

    async def parked() -> bool:
        return await asyncio.to_thread(lease_owner) == "parked"

    await eventually(parked, 30, "the suspended run to be parked (no process holds it)")
    assert (await api.run(run["runId"]))["status"] == "running"
    await api.resume("park-token", {"value": 7})
    done = await api.finished(run["runId"], 20)
    assert done["status"] == "completed"
    assert done["output"] == {"first": {"value": 7}, "pid_free": True}


async def test_children_do_not_see_the_servers_settings_or_their_own_key(
    api: EngineApi,
) -> None:
    run = await run_to_end(api, "secrets")
    assert run["status"] == "completed"
    assert run["output"] == []


async def test_cancel_stops_a_step_running_in_a_child(api: EngineApi, tmp_path: Path) -> None:
    effects = tmp_path / "effects"
    run = await api.trigger("slow", str(effects))
    await eventually(lambda: _has_line(effects, "started"), 20, "the step to start")
    cancelled = await api.cancel(run["runId"])
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    await asyncio.sleep(1.0)
    assert (await api.run(run["runId"]))["status"] == "cancelled"
    assert "finished" not in read_lines(effects)


async def test_a_child_writes_streams_that_clients_read(api: EngineApi) -> None:
    run = await run_to_end(api, "streams", 5)
    assert run["status"] == "completed"
    names = (await api.http.get("/v1/world/streams/list", params={"runId": run["runId"]})).json()
    assert len(names["streams"]) == 1
    body = await api.http.get("/v1/world/streams/read", params={"name": names["streams"][0]})
    assert body.content == b"0;1;2;3;4;"


async def _has_line(path: Path, line: str) -> bool:
    return line in read_lines(path)


async def test_a_child_is_dead_from_its_kill_on_not_from_its_reaping() -> None:
    """A killed child that the event loop has not reaped yet is not lent to the next run
    (whose run would die of the earlier kill, told as a signal of unknown cause)."""
    process = await asyncio.create_subprocess_exec("sleep", "30", start_new_session=True)
    child = Child("dpl_test", process)
    assert child.alive
    child.kill("the reason it was killed for", "protocol")
    assert process.returncode is None  # not reaped yet
    assert not child.alive and child.kill_reason == "the reason it was killed for"
    child.kill("a later reason", "stop")  # once dead, a kill changes nothing
    assert child.kill_reason == "the reason it was killed for"
    await process.wait()
