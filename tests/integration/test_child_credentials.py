"""A workflow child, as hostile workflow code would use it: it holds no credential (no
key, no world-lane address in its environment), and the World it reaches over its pipe
to the parent answers for the run it executes and for nothing else — not another run of
its deployment, not another deployment's run. Whatever it writes on the pipe (another
run's id, lines that are not JSON, members of the wrong type, a line over the limit, a
forged "done" with a malformed outcome) is refused or passed over, the server lives, and
the run gets a clear outcome. Real server, real child processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from compute_worker import start_compute_worker_server

from .engine_fixtures import ENGINE_SEED_KEYS, EngineApi

BODY_BYTES = 1_000_000  # max_body_bytes of the server below

OTHER = """
from compute_worker import workflow

@workflow
async def other(x):
    return x
"""

HOSTILE = """
import asyncio
import gc

from compute_worker import run_metadata, step, workflow
from compute_worker.adapters.worldcompute.process.pipe import PipeRunWorld
from compute_worker.domain.world import EventRequest, EventType


def _world():
    return next(o for o in gc.get_objects() if isinstance(o, PipeRunWorld))


async def _outcome(call):
    try:
        await call
    except Exception as error:
        return type(error).__name__
    return "ok"


def _environment():
    raw = open("/proc/self/environ", "rb").read().split(b"\\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@step
async def probe(other_run, sibling_run):
    own = run_metadata()["run_id"]
    world = _world()
    cancel = [EventRequest(EventType.RUN_CANCELLED, None, None, None)]
    found = {}
    for name, run_id in (("other", other_run), ("sibling", sibling_run)):
        found[name + "Run"] = await _outcome(world.run(run_id))
        found[name + "Events"] = await _outcome(world.events(run_id))
        found[name + "Cancel"] = await _outcome(world.record(run_id, cancel))
        found[name + "Stream"] = await _outcome(world.write_stream("x", run_id, [b"hi"]))
        found[name + "Close"] = await _outcome(world.close_stream("x", run_id))
        found[name + "Child"] = await _outcome(world.start_child(run_id, "other", [], "t"))
    found["unknownMethod"] = await _outcome(world._call("list_runs"))
    found["wrongType"] = await _outcome(world._call("events", runId=[own]))
    found["ownRun"] = await _outcome(world.run(own))
    found["ownEvents"] = await _outcome(world.events(own))
    found["credentials"] = sorted(n for n in _environment() if n.startswith("CW_WORLD"))
    return found


@step
async def scribble():
    world = _world()
    for line in (b"not json\\n", b"[1, 2]\\n", b"\\xff\\xfe\\n", b'{"op": "step"}\\n',
                 b'{"op": "step", "stepId": 1, "name": [], "attempt": "x"}\\n',
                 b'{"op": "step_done"}\\n', b'{"op": "call", "method": "run"}\\n',
                 b'{"op": "log", "level": 5, "message": {"a": 1}}\\n',
                 b'{"op": "call", "id": 99999, "method": "run", "runId": 7}\\n'):
        world._write(line)
    return "scribbled"


@workflow
async def hostile(other_run, sibling_run):
    return {"probe": await probe(other_run, sibling_run), "scribble": await scribble()}


@workflow
async def sibling():
    return "mine"


@workflow
async def oversized():
    _world()._write(b'{"op": "log", "message": "' + b"x" * TOO_LONG + b'"}\\n')
    return "never"


@workflow
async def false_outcome():
    own = run_metadata()["run_id"]
    _world()._write(b'{"op": "done", "runId": "' + own.encode() + b'", "wakesAt": "soon"}\\n')
    await asyncio.sleep(30)  # the parent has the child killed by then
    return "never"


@step
async def big(size):
    return b"\\x01" * size


@workflow
async def large(size):
    return len(await big(size))
""".replace("TOO_LONG", str(BODY_BYTES + 10_000))


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[EngineApi]:
    handle = await asyncio.wait_for(
        start_compute_worker_server(
            data_dir=tmp_path / "data",
            port=0,
            seed_api_keys=ENGINE_SEED_KEYS,
            worldcompute="process",
            process_memory_mb=512,
            max_body_bytes=BODY_BYTES,
        ),
        30,
    )
    try:
        async with EngineApi(handle.url) as client:
            yield client
    finally:
        await asyncio.wait_for(handle.close(), 30)


async def test_a_child_has_no_credential_and_acts_on_its_own_run_only(api: EngineApi) -> None:
    await api.deploy(OTHER)
    other = await api.finished((await api.trigger("other", 1))["runId"], 40)
    assert other["status"] == "completed"
    await api.deploy(HOSTILE)
    sibling = await api.finished((await api.trigger("sibling"))["runId"], 40)

    run = await api.trigger("hostile", other["runId"], sibling["runId"])
    done = await api.finished(run["runId"], 40)

    assert done["status"] == "completed", done
    refused = {f"{who}{what}": "Forbidden" for who in ("other", "sibling")
               for what in ("Run", "Events", "Cancel", "Stream", "Close", "Child")}  # fmt: skip
    assert done["output"] == {
        "probe": {
            **refused,
            "unknownMethod": "InvalidRequest",
            "wrongType": "InvalidRequest",
            "ownRun": "ok",
            "ownEvents": "ok",
            "credentials": [],
        },
        "scribble": "scribbled",
    }
    for bystander in (other, sibling):
        assert (await api.run(bystander["runId"]))["status"] == "completed"
        assert [e["eventType"] for e in await api.events(bystander["runId"])][-1] == (
            "run_completed"
        )
    assert (await api.http.get("/v1/health")).status_code == 200


async def test_a_line_over_the_limit_kills_the_child_and_the_run_fails_clearly(
    api: EngineApi,
) -> None:
    await api.deploy(HOSTILE)
    run = await api.trigger("oversized")
    done = await api.finished(run["runId"], 60)
    assert done["status"] == "failed", done
    assert "failed 3 times" in done["error"]["message"], done["error"]
    assert "sent a message over" in done["error"]["message"], done["error"]
    assert (await api.http.get("/v1/health")).status_code == 200
    # a forged "done" with an outcome that is no outcome: the child is killed, the run fails
    forged = await api.finished((await api.trigger("false_outcome"))["runId"], 60)
    assert forged["status"] == "failed", forged
    assert "malformed outcome" in forged["error"]["message"], forged["error"]
    # a large result within the limit passes (base64 makes 600 kB about 800 kB)
    large = await api.finished((await api.trigger("large", 600_000))["runId"], 40)
    assert large["status"] == "completed" and large["output"] == 600_000, large
