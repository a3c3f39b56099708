"""schemathesis (the CLI, from PyPI) over ``GET /v1/openapi.json`` of a real server on
a real socket, with a key holding every scope: every phase (examples, coverage,
fuzzing, stateful) and every check, so a response >= 500, an answer that breaks the
document, a request the document allows but the server refuses (or the reverse) fails
the test. ``COMPUTE_WORKER_FUZZ_EXAMPLES`` raises the examples per operation (``make
attack`` runs it long); the short default keeps ``make test`` quick."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from .engine_fixtures import ENGINE_KEY, REPO, EngineApi, ServerProcess

EXAMPLES = int(os.environ.get("COMPUTE_WORKER_FUZZ_EXAMPLES", "5"))
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
WITHIN = 60.0 + EXAMPLES * 12.0

WORKFLOWS = """
from compute_worker import step, workflow


@step
async def add(a, b):
    return a + b


@workflow
async def adder(a, b):
    return await add(a, b)
"""


async def test_schemathesis_finds_no_server_error_and_no_disagreement(tmp_path: Path) -> None:
    server = ServerProcess(
        ["--data-dir", str(tmp_path / "data"), "--sqlite-path", str(tmp_path / "fuzz.db")],
        tmp_path,
        "fuzzed",
    )
    try:
        server.start()
        url = await server.ready()
        async with EngineApi(url) as api:  # something to find: a deployment and a run
            await api.deploy(WORKFLOWS)
            await api.finished((await api.trigger("adder", 1, 2))["runId"])
        process = await asyncio.create_subprocess_exec(
            str(SCHEMATHESIS),
            "run",
            f"{url}/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {ENGINE_KEY}",
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",  # schemathesis_hooks.py's own version of it
            # a live read waits for the stream to close: nothing to fuzz but a timeout
            "--exclude-path",
            "/v1/world/streams/read",
            "--exclude-path",
            "/v1/runs/{runId}/streams/{name}",
            "--max-examples",
            str(EXAMPLES),
            "--workers",
            "1",
            "--seed",
            os.environ.get("COMPUTE_WORKER_FUZZ_SEED", "1"),
            "--no-color",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=tmp_path,
            env={**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS), "PYTHONPATH": str(REPO)},
        )
        out, _ = await asyncio.wait_for(process.communicate(), WITHIN)
        report = out.decode(errors="replace")
        (tmp_path / "schemathesis.txt").write_text(report)
        summary = report[report.rfind("SUMMARY") :]
        print(summary)
        assert process.returncode == 0, report[-20000:]
        assert server.process is not None and server.process.poll() is None, "the server died"
    except BaseException:
        print("server:\n", server.logs()[-5000:])
        raise
    finally:
        server.stop()
