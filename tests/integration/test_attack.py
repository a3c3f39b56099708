"""The attack suite (``make attack``; its short version runs in ``make test``): hostile
workflow code against a worker started as a user starts it (``compute-worker serve --dev``,
the process backend, the sandbox on where the host allows it). For every case the server
lives (health ``ok``), the run gets a clear outcome, and no secret is read.

The cases of issue 11: workflow code that loops or blocks; steps that segfault, allocate
10 GiB, busy-loop past their timeout, ``os._exit``, hang; a step that tries to read the
dev key, the encryption key, the database, the server's ``/proc``, to find a World
credential, to reach another deployment's run over its pipe to the parent, to write
outside its folder, to reach the worker's port. Other files test each mechanism on its
own (test_sandbox.py, test_workflow_watchdog.py, test_process_backend.py,
test_child_credentials.py); this one is the attacker's view.
``COMPUTE_WORKER_ATTACK_ROUNDS`` repeats the saturation case (``make attack``: 5)."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compute_worker.adapters.worldcompute.bundles.sandbox import sandbox_unavailable

from .engine_fixtures import EngineApi, ServerProcess

UNAVAILABLE = sandbox_unavailable(None, shutil.which("bwrap"))
ROUNDS = int(os.environ.get("COMPUTE_WORKER_ATTACK_ROUNDS", "1"))
TURN = 2.0  # --workflow-turn-seconds
STEP_TIMEOUT = 3.0  # --step-timeout-seconds
SLOTS = 2  # --process-children

FAULTS = {  # step body -> what the run's outcome must say
    "segfault": ("import ctypes\n    ctypes.string_at(0)", "sigsegv"),
    "allocate": ("return len(bytearray(10 * 1024**3))", "memory"),
    "busy": ("while True:\n        pass", "exceeded its timeout"),
    "exits": ("os._exit(3)", "exit"),
    "hangs": ("time.sleep(1e5)", "exceeded its timeout"),
}

HOSTILE = """
import os
import socket
import time

from compute_worker import StepFailedError, step, workflow


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
async def blocks():
    time.sleep(1e5)


def _outcome(action):
    try:
        found = action()
    except Exception as error:
        return type(error).__name__
    return "ok" if found is None else "ok: " + repr(found)[:80]


def _read(path):
    with open(path, "rb") as f:
        return f.read(64)


def _append(path):
    with open(path, "a") as f:
        f.write("#")


def _world_credential():
    # the runtime drops its settings from os.environ; the process's first environment keeps them
    with open("/proc/self/environ", "rb") as f:
        found = [item for item in f.read().split(b"\\0") if item.startswith(b"CW_WORLD")]
    if not found:
        raise LookupError("none")
    return found


async def _over_the_pipe(call):
    try:
        await call
    except Exception as error:
        return type(error).__name__
    return "ok"


def _pipe_world():
    import gc

    from compute_worker.adapters.worldcompute.process.pipe import PipeRunWorld

    return next(o for o in gc.get_objects() if isinstance(o, PipeRunWorld))


@step
async def pry(files, server_pid, port, data_dir, other_run):
    found = {"read " + name: _outcome(lambda p=path: _read(p)) for name, path in files.items()}
    for what in ("environ", "cmdline"):
        path = "/proc/%d/%s" % (server_pid, what)
        found["read server " + what] = _outcome(lambda p=path: _read(p))
    found["write data dir"] = _outcome(lambda: _append(os.path.join(data_dir, "planted")))
    found["write own bundle"] = _outcome(lambda: _append(__file__))
    found["connect worker port"] = _outcome(
        lambda: socket.create_connection(("127.0.0.1", port), timeout=3).close()
    )
    found["a World credential"] = _outcome(_world_credential)
    world = _pipe_world()
    found["another deployment's run"] = await _over_the_pipe(world.run(other_run))
    found["another deployment's events"] = await _over_the_pipe(world.events(other_run))
    found["list every run"] = await _over_the_pipe(world._call("list_runs"))
    return found


@workflow
async def prying(files, server_pid, port, data_dir, other_run):
    return await pry(files, server_pid, port, data_dir, other_run)
""" + "".join(
    f"""

@step(max_retries=0)
async def {name}():
    {body}


@workflow
async def {name}_run():
    try:
        return await {name}()
    except StepFailedError as failure:
        return "caught: " + failure.error_message
"""
    for name, (body, _) in FAULTS.items()
)

OTHER = """
from compute_worker import workflow


@workflow
async def bystander():
    return "mine"
"""


class Target:
    def __init__(self, server: ServerProcess, data_dir: Path, database: Path) -> None:
        self.server = server
        self.data_dir = data_dir
        self.database = database
        self.deployment = ""
        self.other_run = ""

    async def check_alive(self, api: EngineApi) -> None:
        assert self.server.process is not None and self.server.process.poll() is None
        health = api.ok(await api.http.get("/v1/health"))
        assert health["status"] == "ok", health


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    root = tmp_path_factory.mktemp("attack")
    data_dir, database = root / "data", root / "attack.db"
    server = ServerProcess(
        ["--dev", "--worldcompute", "process", "--data-dir", str(data_dir),
         "--sqlite-path", str(database), "--workflow-turn-seconds", str(TURN),
         "--step-timeout-seconds", str(STEP_TIMEOUT), "--process-children", str(SLOTS),
         "--process-memory-mb", "512"],
        root,
        "attacked",
    )  # fmt: skip
    found = Target(server, data_dir, database)

    async def prepare() -> None:
        async with EngineApi(await server.ready()) as api:
            other = await api.deploy(OTHER)
            bystander = await api.trigger("bystander", deployment_id=other)
            found.other_run = bystander["runId"]
            await api.finished(found.other_run, 30)
            found.deployment = await api.deploy(HOSTILE)

    try:
        server.start()
        asyncio.run(prepare())
        yield found
    except BaseException:
        print("server:\n", server.logs()[-5000:])
        raise
    finally:
        server.stop()


async def run_to_end(api: EngineApi, workflow: str, *args: Any, within: float = 60) -> Any:
    run = await api.trigger(workflow, *args)
    return await api.finished(run["runId"], within)


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_a_faulty_step_fails_clearly_and_the_server_lives(target: Target, fault: str) -> None:
    async with EngineApi(target.server.url) as api:
        done = await run_to_end(api, f"{fault}_run")
        assert done["status"] == "completed", done
        assert done["output"].startswith("caught: "), done["output"]
        assert FAULTS[fault][1] in done["output"].lower(), done["output"]
        await target.check_alive(api)


@pytest.mark.parametrize("workflow", ["spins", "blocks"])
async def test_workflow_code_that_never_yields_fails_clearly(target: Target, workflow: str) -> None:
    async with EngineApi(target.server.url) as api:
        done = await run_to_end(api, workflow)
        assert done["status"] == "failed", done
        assert done["error"]["code"] == "RUNTIME_ERROR", done["error"]
        assert "yield" in done["error"]["message"], done["error"]
        await target.check_alive(api)


async def test_runs_that_take_every_slot_do_not_starve_the_next(target: Target) -> None:
    """Five spinning runs on two slots, then a trivial run: it completes once the watchdog
    has killed the spinners (3 turns each), and a cancelled spinner frees its slot at once."""
    async with EngineApi(target.server.url) as api:
        for round_ in range(ROUNDS):
            spinners = [(await api.trigger("spins"))["runId"] for _ in range(5)]
            began = time.monotonic()
            trivial = await run_to_end(api, "trivial", 21, within=120)
            waited = time.monotonic() - began
            assert trivial["status"] == "completed" and trivial["output"] == 42, trivial
            for run_id in spinners:
                failed = await api.finished(run_id, 120)
                assert failed["status"] == "failed", failed
            blocker = (await api.trigger("blocks"))["runId"]
            await asyncio.sleep(TURN / 2)  # its child is blocked in time.sleep now
            assert (await api.cancel(blocker)).status_code == 200
            began = time.monotonic()
            again = await run_to_end(api, "trivial", 4, within=30)
            after_cancel = time.monotonic() - began
            assert again["status"] == "completed", again
            assert (await api.run(blocker))["status"] == "cancelled"
            assert after_cancel < 3 * TURN, "the cancelled run's child kept its slot"
            print(
                f"round {round_}: trivial run waited {waited:.1f}s behind 5 spinners on "
                f"{SLOTS} slots; {after_cancel:.1f}s after a cancel"
            )
            await target.check_alive(api)


@pytest.mark.skipif(UNAVAILABLE is not None, reason=f"no sandbox on this host: {UNAVAILABLE}")
async def test_a_prying_step_reads_no_secret_and_reaches_nothing(target: Target) -> None:
    files = {
        "dev-api-key": target.data_dir / "dev-api-key",
        "encryption.key": target.data_dir / "encryption.key",
        "database": target.database,
    }
    secrets = {name: path.read_bytes() for name, path in files.items()}
    assert all(secrets.values()), "the worker did not write its secrets"
    async with EngineApi(target.server.url) as api:
        url = target.server.url
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        done = await run_to_end(
            api,
            "prying",
            {name: str(path) for name, path in files.items()},
            target.server.pid,
            port,
            str(target.data_dir),
            target.other_run,
        )
        assert done["status"] == "completed", done
        outcomes: dict[str, Any] = done["output"]
        print("\n".join(f"{what}: {result}" for what, result in sorted(outcomes.items())))
        leaked = {what: result for what, result in outcomes.items() if str(result).startswith("ok")}
        assert not leaked, leaked
        assert outcomes["a World credential"] == "LookupError", outcomes
        for what in ("another deployment's run", "another deployment's events"):
            assert outcomes[what] == "Forbidden", (what, outcomes[what])
        assert outcomes["list every run"] == "InvalidRequest", outcomes
        assert not (target.data_dir / "planted").exists()
        key_text = secrets["dev-api-key"].decode().strip()
        for event in await api.events(done["runId"]):
            assert key_text not in str(event), event
        await target.check_alive(api)
