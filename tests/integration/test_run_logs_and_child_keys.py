"""What an operator sees of runs: one structured log line per run start and end (with run
id, workflow and duration), workflow code's own log records (a graph ``log`` node) in the
server's log, and no API key made for workflow children (they hold none: their World is
their pipe to the server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .engine_fixtures import EngineApi, ServerProcess, eventually
from .public_fixtures import run_cli

PYTHON = """
import logging
from compute_worker import workflow, step

@step
async def add(a, b):
    logging.getLogger("orders").warning("adding %s and %s", a, b)
    return a + b

@workflow
async def adder(a, b):
    return await add(a, b)

@workflow
async def breaks():
    raise ValueError("no luck")
"""

GRAPH = {
    "name": "shout",
    "nodes": [
        {"id": "start", "type": "trigger", "data": {}},
        {"id": "say", "type": "action",
         "data": {"actionType": "log", "message": "graph says {{@start.input.0}}"}},
    ],
    "edges": [{"source": "start", "target": "say"}],
}  # fmt: skip


def _log_records(server: ServerProcess) -> list[dict[str, Any]]:
    records = []
    for line in server.stderr_path.read_text(errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


async def test_each_run_start_and_end_is_one_log_line_and_workflow_logs_reach_the_server(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    server = ServerProcess(["--worldcompute", "process", "--data-dir", str(data)], tmp_path, "s")
    server.start()
    try:
        async with EngineApi(await server.ready()) as api:
            await api.deploy(PYTHON)
            done = await api.finished((await api.trigger("adder", 2, 3))["runId"], 40)
            failed = await api.finished((await api.trigger("breaks"))["runId"], 40)
            graph_files = {"workflow.json": json.dumps(GRAPH)}
            created = api.ok(await api.http.post(
                "/v1/deployments", json={"kind": "graph", "files": graph_files}), 201)  # fmt: skip
            shout = await api.trigger("shout", "hello", deployment_id=created["deploymentId"])
            await api.finished(shout["runId"], 40)

            def lines_for(run_id: str) -> list[dict[str, Any]]:
                return [r for r in _log_records(server) if r.get("runId") == run_id]

            async def logged() -> bool:
                return any(r.get("message") == "run completed" for r in lines_for(done["runId"]))

            await eventually(logged, 10, "the run's completion in the server log")
    finally:
        server.stop()

    started = [r for r in lines_for(done["runId"]) if r["message"] == "run started"]
    ended = [r for r in lines_for(done["runId"]) if r["message"] == "run completed"]
    assert len(started) == 1 and len(ended) == 1
    assert ended[0]["workflowName"] == "adder"
    assert ended[0]["level"] == "info"
    assert isinstance(ended[0]["durationMs"], int) and ended[0]["durationMs"] >= 0
    failure = [r for r in lines_for(failed["runId"]) if r["message"] == "run failed"]
    assert failure and failure[0]["errorCode"] == "USER_ERROR"
    assert failure[0]["error"] == "no luck"

    from_code = [r for r in lines_for(done["runId"]) if r.get("source") == "orders"]
    assert [r["message"] for r in from_code] == ["adding 2 and 3"]
    assert from_code[0]["level"] == "warning"
    said = [r for r in lines_for(shout["runId"]) if "graph says hello" in r.get("message", "")]
    assert said, _log_records(server)[-20:]


async def test_workflow_children_get_no_api_keys(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = ServerProcess(["--worldcompute", "process", "--data-dir", str(data)], tmp_path, "s")
    server.start()
    try:
        async with EngineApi(await server.ready()) as api:
            await api.deploy(PYTHON)
            for _ in range(3):
                await api.finished((await api.trigger("adder", 1, 1))["runId"], 40)
    finally:
        server.stop()
    listed = await run_cli("keys", "list", "--data-dir", str(data))
    assert listed.returncode == 0, listed
    assert "child:" not in listed.stdout, listed.stdout
    assert "engine-tests" in listed.stdout
