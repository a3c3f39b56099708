"""The execution engine end to end (``worldcompute="local"``): a real server on a real
socket over SQLite and PostgreSQL, workflows deployed as bundles, driven through the
public API and inspected through the World lane."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from compute_worker import start_compute_worker_server

from .engine_fixtures import ENGINE_SEED_KEYS, EngineApi, eventually, read_lines

WORKFLOWS = """
import asyncio
import os

from compute_worker import (
    FatalError,
    HookConflictError,
    RetryableError,
    StepFailedError,
    create_hook,
    get_writable,
    run_metadata,
    sleep,
    step,
    workflow,
)


def _append(path, line):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\\n").encode())
    finally:
        os.close(fd)


@step
async def double(x):
    return x * 2


@step
async def add(a, b):
    return a + b


@step(name="greet")
async def say_hello(name):
    return {"greeting": f"hello {name}", "step": run_metadata()["step_name"]}


@workflow
async def pipeline(x, name):
    a = await double(x)
    b = await add(a, 10)
    c = await say_hello(name)
    return {"a": a, "b": b, "c": c, "run": run_metadata()["run_id"]}


@step(max_retries=3)
async def flaky(counter, fail_times):
    attempt = run_metadata()["attempt"]
    _append(counter, f"attempt {attempt}")
    if attempt <= fail_times:
        raise RetryableError(f"not yet ({attempt})", retry_after=0.05)
    return attempt


@workflow
async def retrying(counter, fail_times):
    return {"attempt": await flaky(counter, fail_times)}


@step(max_retries=2)
async def always_busy(counter):
    _append(counter, f"attempt {run_metadata()['attempt']}")
    raise RetryableError("still busy", retry_after=0.05)


@workflow
async def exhausts(counter):
    return await always_busy(counter)


@workflow
async def holds(token):
    try:
        return {"payload": await create_hook(token=token)}
    except HookConflictError:
        return {"conflict": token}


@step(max_retries=5)
async def refuse(counter):
    _append(counter, "attempt")
    raise FatalError("refused for good")


@workflow
async def catches_fatal(counter):
    try:
        await refuse(counter)
    except StepFailedError as error:
        return {"caught": error.step_name, "message": error.error_message,
                "after": await double(21)}
    return {"caught": None}


@step(max_retries=0)
async def explode(what):
    raise ValueError(f"kaboom: {what}")


@workflow
async def uncaught(what):
    await explode(what)
    return "unreachable"


@workflow
async def sleeper(duration):
    await sleep(duration)
    return "awake"


@workflow
async def approval(token):
    decision = await create_hook(token=token)
    return {"decision": decision}


@workflow
async def collect(token, count):
    got = []
    async for payload in create_hook(token=token):
        got.append(payload)
        if len(got) == count:
            break
    return got


@step
async def square(i):
    await asyncio.sleep(0.002 * (10 - i))  # later calls finish first
    return i * i


@workflow
async def fan_out(count):
    return list(await asyncio.gather(*(square(i) for i in range(count))))


@step
async def produce(count, delay):
    out = get_writable("out")
    for i in range(count):
        await out.write(f"chunk-{i};")
        await asyncio.sleep(delay)
    await out.close()
    return count


@workflow
async def streaming(count, delay):
    return await produce(count, delay)


@step(max_retries=0)
async def slow_effect(path):
    _append(path, "started")
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        _append(path, "stopped")
        raise
    _append(path, "finished")
    return "done"


@workflow
async def slow(path):
    return await slow_effect(path)
"""

VERSIONED = """
from compute_worker import create_hook, workflow


@workflow
async def versioned(token):
    payload = await create_hook(token=token)
    return {"version": VERSION, "payload": payload}
"""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine_db(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if request.param == "sqlite":
        return {"sqlite_path": tmp_path / "engine.db"}
    return {"database_url": request.getfixturevalue("postgres_url")}


@pytest.fixture
async def api(engine_db: dict[str, Any], tmp_path: Path) -> AsyncIterator[EngineApi]:
    handle = await asyncio.wait_for(
        start_compute_worker_server(
            data_dir=tmp_path / "data",
            port=0,
            seed_api_keys=ENGINE_SEED_KEYS,
            worldcompute="local",
            **engine_db,
        ),
        30,
    )
    try:
        async with EngineApi(handle.url) as client:
            yield client
    finally:
        await asyncio.wait_for(handle.close(), 30)


@pytest.fixture
async def deployed(api: EngineApi) -> str:
    return await api.deploy(WORKFLOWS)


def event_types(events: list[dict[str, Any]]) -> list[str]:
    return [event["eventType"] for event in events]


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- steps ----------------------------------------------------------------------------------


async def test_multi_step_workflow_completes_with_its_output(api: EngineApi, deployed: str) -> None:
    run = await api.trigger("pipeline", 4, "ada")
    assert run["status"] == "pending"
    assert run["deploymentId"] == deployed

    done = await api.finished(run["runId"])
    assert done["status"] == "completed", done
    assert done["output"] == {
        "a": 8,
        "b": 18,
        "c": {"greeting": "hello ada", "step": "greet"},
        "run": run["runId"],
    }
    assert done["startedAt"] and done["completedAt"]

    steps = await api.steps_in_order(run["runId"])
    assert [s["stepName"] for s in steps] == ["double", "add", "greet"]
    assert [s["status"] for s in steps] == ["completed"] * 3
    assert [s["attempt"] for s in steps] == [1, 1, 1]
    assert [s["output"] for s in steps] == [8, 18, {"greeting": "hello ada", "step": "greet"}]
    assert [s["input"] for s in steps] == [[4], [8, 10], ["ada"]]

    types = event_types(await api.events(run["runId"]))
    assert types[:2] == ["run_created", "run_started"]
    assert types[-1] == "run_completed"
    assert types.count("step_created") == types.count("step_completed") == 3
    assert types.count("step_started") == 3


async def test_retryable_error_retries_with_counted_attempts(
    api: EngineApi, deployed: str, tmp_path: Path
) -> None:
    counter = tmp_path / "flaky.txt"
    run = await api.trigger("retrying", str(counter), 2)
    done = await api.finished(run["runId"])
    assert done["status"] == "completed", done
    assert done["output"] == {"attempt": 3}
    assert read_lines(counter) == ["attempt 1", "attempt 2", "attempt 3"]

    (step_row,) = await api.steps(run["runId"])
    assert step_row["status"] == "completed"
    assert step_row["attempt"] == 3
    assert step_row["output"] == 3

    events = await api.events(run["runId"])
    retries = [e for e in events if e["eventType"] == "step_retrying"]
    assert len(retries) == 2
    for retry in retries:
        assert "not yet" in retry["eventData"]["error"]["message"]
        delay = (when(retry["eventData"]["retryAfter"]) - when(retry["createdAt"])).total_seconds()
        assert delay < 0.5, f"retry_after=0.05 was not honoured: {delay}s"
    assert event_types(events).count("step_started") == 3


async def test_retries_exhausted_fail_the_run_after_max_retries_plus_one_attempts(
    api: EngineApi, deployed: str, tmp_path: Path
) -> None:
    counter = tmp_path / "busy.txt"
    run = await api.trigger("exhausts", str(counter))
    done = await api.finished(run["runId"])
    assert done["status"] == "failed", done
    assert done["error"]["code"] == "USER_ERROR"
    assert "still busy" in done["error"]["message"]
    assert read_lines(counter) == ["attempt 1", "attempt 2", "attempt 3"]
    (step_row,) = await api.steps(run["runId"])
    assert (step_row["status"], step_row["attempt"]) == ("failed", 3)
    types = event_types(await api.events(run["runId"]))
    assert types.count("step_retrying") == 2 and types.count("step_failed") == 1


async def test_fatal_error_fails_at_once_and_the_workflow_catches_it(
    api: EngineApi, deployed: str, tmp_path: Path
) -> None:
    counter = tmp_path / "fatal.txt"
    run = await api.trigger("catches_fatal", str(counter))
    done = await api.finished(run["runId"])
    assert done["status"] == "completed", done
    assert done["output"] == {"caught": "refuse", "message": "refused for good", "after": 42}
    assert read_lines(counter) == ["attempt"]  # one attempt despite max_retries=5

    steps = await api.steps(run["runId"])
    refused = next(s for s in steps if s["stepName"] == "refuse")
    assert refused["status"] == "failed"
    assert refused["attempt"] == 1
    assert refused["error"]["message"] == "refused for good"
    types = event_types(await api.events(run["runId"]))
    assert "step_retrying" not in types
    assert types.count("step_failed") == 1


async def test_uncaught_step_failure_fails_the_run(api: EngineApi, deployed: str) -> None:
    run = await api.trigger("uncaught", "tick")
    done = await api.finished(run["runId"])
    assert done["status"] == "failed", done
    error = done["error"]
    assert error["code"] == "USER_ERROR"
    assert "kaboom: tick" in error["message"]
    assert error.get("stack"), error
    assert "ValueError" in error["stack"] or "kaboom" in error["stack"]
    assert "output" not in done or done["output"] is None


# -- sleep and hooks ------------------------------------------------------------------------


async def test_sleep_completes_after_its_duration(api: EngineApi, deployed: str) -> None:
    started = time.monotonic()
    run = await api.trigger("sleeper", "300ms")
    done = await api.finished(run["runId"])
    elapsed = time.monotonic() - started
    assert done["status"] == "completed", done
    assert done["output"] == "awake"
    assert elapsed >= 0.3
    assert (when(done["completedAt"]) - when(done["createdAt"])).total_seconds() >= 0.3
    types = event_types(await api.events(run["runId"]))
    assert types.count("wait_created") == 1 and types.count("wait_completed") == 1


async def test_hook_resume_delivers_the_payload(api: EngineApi, deployed: str) -> None:
    token = f"approve:{uuid.uuid4().hex}"
    run = await api.trigger("approval", token)
    await api.wait_status(run["runId"], {"running"})
    accepted = await api.resume(token, {"approved": True, "by": "ops"})
    assert accepted["runId"] == run["runId"]
    assert accepted["token"] == token
    assert accepted["hookId"].startswith("hook_")

    done = await api.finished(run["runId"])
    assert done["status"] == "completed", done
    assert done["output"] == {"decision": {"approved": True, "by": "ops"}}
    # the run's hooks are gone with it: the token is free again
    assert await api.hooks(run["runId"]) == []
    again = await api.http.post("/v1/runs/resume", json={"token": token, "payload": 1})
    assert again.status_code == 404, again.text
    assert again.json()["code"] == "hook_not_found"


async def test_a_token_held_by_a_live_hook_conflicts(api: EngineApi, deployed: str) -> None:
    token = f"shared:{uuid.uuid4().hex}"
    holder = await api.trigger("holds", token)

    async def hook_live() -> bool:
        return len(await api.hooks(holder["runId"])) == 1

    await eventually(hook_live, 10, "the first run's hook")
    rival = await api.trigger("holds", token)
    rival_done = await api.finished(rival["runId"])
    assert rival_done["status"] == "completed", rival_done
    assert rival_done["output"] == {"conflict": token}
    assert "hook_conflict" in event_types(await api.events(rival["runId"]))

    accepted = await api.resume(token, "mine")
    assert accepted["runId"] == holder["runId"]
    holder_done = await api.finished(holder["runId"])
    assert holder_done["output"] == {"payload": "mine"}


async def test_async_for_over_a_hook_receives_payloads_in_order(
    api: EngineApi, deployed: str
) -> None:
    token = f"collect:{uuid.uuid4().hex}"
    run = await api.trigger("collect", token, 3)
    for payload in ({"n": 1}, "two", [3]):
        await api.resume(token, payload)
    done = await api.finished(run["runId"])
    assert done["status"] == "completed", done
    assert done["output"] == [{"n": 1}, "two", [3]]
    types = event_types(await api.events(run["runId"]))
    assert types.count("hook_received") == 3


# -- parallel steps and streams -------------------------------------------------------------


async def test_parallel_steps_with_gather_keep_their_order(api: EngineApi, deployed: str) -> None:
    run = await api.trigger("fan_out", 10)
    done = await api.finished(run["runId"])
    assert done["status"] == "completed", done
    assert done["output"] == [i * i for i in range(10)]
    steps = await api.steps(run["runId"])
    assert len(steps) == 10
    assert all(s["status"] == "completed" and s["attempt"] == 1 for s in steps)
    assert sorted(s["input"][0] for s in steps) == list(range(10))
    assert len({s["stepId"] for s in steps}) == 10


async def test_stream_chunks_are_read_live_while_the_run_is_in_progress(
    api: EngineApi, deployed: str
) -> None:
    count = 6
    run = await api.trigger("streaming", count, 0.25)
    run_id = run["runId"]

    async def stream_name() -> str | None:
        response = await api.http.get("/v1/world/streams/list", params={"runId": run_id})
        names = api.ok(response)["streams"]
        return names[0] if names else None

    name = await eventually(stream_name, 10, "the step to open its stream")
    assert name.startswith("strm_")

    received = bytearray()
    statuses_while_reading: list[str] = []
    ended = False

    async def read() -> None:
        nonlocal ended
        async with api.http.stream(
            "GET", "/v1/world/streams/read", params={"name": name}
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("application/octet-stream")
            async for piece in response.aiter_raw():
                if piece and not statuses_while_reading:
                    statuses_while_reading.append((await api.run(run_id))["status"])
                received.extend(piece)
        ended = True

    await asyncio.wait_for(read(), 20)
    expected = b"".join(f"chunk-{i};".encode() for i in range(count))
    assert bytes(received) == expected
    assert ended
    assert statuses_while_reading == ["running"], "the first bytes arrived after the run ended"

    done = await api.finished(run_id)
    assert done["status"] == "completed" and done["output"] == count


# -- cancellation ---------------------------------------------------------------------------


async def test_cancel_a_sleeping_run(api: EngineApi, deployed: str) -> None:
    run = await api.trigger("sleeper", "1h")
    run_id = run["runId"]
    await api.wait_event(run_id, "wait_created")

    started = time.monotonic()
    response = await api.cancel(run_id)
    assert time.monotonic() - started < 15  # answered, not held until the sleep ends
    body = api.ok(response, 200)
    assert body["status"] == "cancelled"
    assert body["runId"] == run_id

    await asyncio.sleep(1.5)  # the engine notices; nothing may move the run again
    after = await api.run(run_id)
    assert after["status"] == "cancelled"
    assert after.get("completedAt")
    types = event_types(await api.events(run_id))
    assert "run_cancelled" in types
    assert "wait_completed" not in types
    assert "run_completed" not in types and "run_failed" not in types

    again = await api.cancel(run_id)  # idempotent
    assert api.ok(again, 200)["status"] == "cancelled"


async def test_cancel_disposes_the_hooks_of_a_waiting_run(api: EngineApi, deployed: str) -> None:
    token = f"cancelled:{uuid.uuid4().hex}"
    run = await api.trigger("approval", token)
    run_id = run["runId"]

    async def hook_live() -> bool:
        return len(await api.hooks(run_id)) == 1

    await eventually(hook_live, 10, "the run's hook")
    assert api.ok(await api.cancel(run_id), 200)["status"] == "cancelled"
    assert await api.hooks(run_id) == []
    late = await api.http.post("/v1/runs/resume", json={"token": token, "payload": "late"})
    assert late.status_code == 404, late.text
    assert late.json()["code"] == "hook_not_found"
    await asyncio.sleep(1.0)
    after = await api.run(run_id)
    assert after["status"] == "cancelled"
    assert "hook_received" not in event_types(await api.events(run_id))


async def test_cancel_stops_a_running_step(api: EngineApi, deployed: str, tmp_path: Path) -> None:
    effects = tmp_path / "effects.txt"
    run = await api.trigger("slow", str(effects))
    run_id = run["runId"]

    async def step_started() -> bool:
        return "started" in read_lines(effects)

    await eventually(step_started, 10, "the slow step to start")
    cancelled_at = time.monotonic()
    body = api.ok(await api.cancel(run_id), 200)
    assert body["status"] == "cancelled"

    async def step_stopped() -> bool:
        return "stopped" in read_lines(effects)

    await eventually(step_stopped, 15, "the step's code to be cancelled")
    assert time.monotonic() - cancelled_at < 15  # stopped, not left to finish its 30 s

    await asyncio.sleep(1.0)
    assert read_lines(effects) == ["started", "stopped"]  # never "finished"
    after = await api.run(run_id)
    assert after["status"] == "cancelled"
    types = event_types(await api.events(run_id))
    assert "step_completed" not in types
    assert "run_completed" not in types and "run_failed" not in types


# -- versioning -----------------------------------------------------------------------------


async def test_runs_stay_pinned_to_their_deployment(api: EngineApi) -> None:
    v1 = await api.deploy(VERSIONED.replace("VERSION", "1"))
    old_token = f"v1:{uuid.uuid4().hex}"
    old = await api.trigger("versioned", old_token)
    assert old["deploymentId"] == v1
    await api.wait_status(old["runId"], {"running"})

    async def hook_live() -> bool:
        return len(await api.hooks(old["runId"])) == 1

    await eventually(hook_live, 10, "the v1 run's hook")

    v2 = await api.deploy(VERSIONED.replace("VERSION", "2"))
    assert v2 != v1
    active = api.ok(await api.http.get("/v1/deployments/active"))
    assert active["deploymentId"] == v2

    await api.resume(old_token, "for v1")
    old_done = await api.finished(old["runId"])
    assert old_done["status"] == "completed", old_done
    assert old_done["output"] == {"version": 1, "payload": "for v1"}
    assert old_done["deploymentId"] == v1

    new_token = f"v2:{uuid.uuid4().hex}"
    new = await api.trigger("versioned", new_token)
    assert new["deploymentId"] == v2
    await api.resume(new_token, "for v2")
    new_done = await api.finished(new["runId"])
    assert new_done["status"] == "completed", new_done
    assert new_done["output"] == {"version": 2, "payload": "for v2"}

    pinned = await api.trigger("versioned", f"pin:{uuid.uuid4().hex}", deployment_id=v1)
    assert pinned["deploymentId"] == v1
    with contextlib.suppress(httpx.HTTPError):
        await api.cancel(pinned["runId"])
