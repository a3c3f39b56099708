"""Child workflows on real servers: ``start_workflow`` / ``child.result()`` in Python and
the graph ``run_workflow`` node (one child, and a ``forEach`` fan-out); each child is a
run of its own linked both ways (``parentRunId`` / ``children``), the parent's steps show
its outcome, a failed child is the parent's step failure, cancelling the parent cancels
its children, and a parent killed (-9) mid-child finishes after a restart with the child
it started — started once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from ._helpers import assert_ok
from .engine_fixtures import EngineApi, ServerProcess
from .public_fixtures import PublicServers, deploy, started_run, wait_for_run

FAMILY = """
from compute_worker import FatalError, StepFailedError, create_hook, start_workflow, step, workflow


@step
async def double_it(x):
    return x * 2


@workflow
async def double(x):
    return await double_it(x)


@step
async def explode(why):
    raise FatalError(why)


@workflow
async def broken(why):
    return await explode(why)


@workflow
async def waits(token):
    return await create_hook(token=token)


@workflow
async def parent(x):
    child = await start_workflow("double", x)
    first = await child.result()
    again = await child.result()  # the same outcome, recorded once
    return {"child": child.run_id, "result": first, "again": again}


@workflow
async def survives(why):
    child = await start_workflow("broken", why)
    try:
        await child.result()
    except StepFailedError as failure:
        return {"caught": failure.error_message}
    return {"caught": None}


@workflow
async def holds(token):
    child = await start_workflow("waits", token)
    return {"child": child.run_id, "got": await child.result()}


@workflow
async def missing():
    await start_workflow("no_such_workflow")
"""


@pytest.fixture(params=["local", "process"])
def worldcompute(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_a_child_runs_on_its_own_linked_to_its_parent(
    servers: PublicServers, worldcompute: str
) -> None:
    server = await servers.start(worldcompute=worldcompute)
    async with server.client() as api:
        await deploy(api, FAMILY)
        parent_id = await started_run(api, "parent", 21)
        parent = await wait_for_run(api, parent_id)
        child_id = parent["output"]["child"]
        assert parent["output"] == {"child": child_id, "result": 42, "again": 42}
        assert parent["children"] == [{"runId": child_id, "workflowName": "double"}]
        assert "parentRunId" not in parent
        child = await wait_for_run(api, child_id)
        assert child["parentRunId"] == parent_id and child["children"] == []
        assert child["deploymentId"] == parent["deploymentId"] and child["input"] == [21]
        steps = assert_ok(await api.get(f"/v1/runs/{parent_id}/steps"))["data"]
        by_name = {step["stepName"]: step for step in steps}
        assert by_name["start_workflow:double"]["output"] == {
            "runId": child_id, "workflowName": "double"}  # fmt: skip
        assert by_name["workflow_result:double"]["output"] == 42
        assert (
            len(assert_ok(await api.get("/v1/runs", params={"workflowName": "double"}))["data"])
            == 1
        )


async def test_a_failed_child_fails_the_parent_s_result_step(servers: PublicServers) -> None:
    server = await servers.start(worldcompute="local")
    async with server.client() as api:
        await deploy(api, FAMILY)
        run = await wait_for_run(api, await started_run(api, "survives", "no luck"))
        assert "failed" in run["output"]["caught"] and "no luck" in run["output"]["caught"]
        steps = assert_ok(await api.get(f"/v1/runs/{run['runId']}/steps"))["data"]
        result = next(s for s in steps if s["stepName"] == "workflow_result:broken")
        assert result["status"] == "failed"

        refused = await wait_for_run(api, await started_run(api, "missing"), "failed")
        assert "no_such_workflow" in refused["error"]["message"]


async def test_cancelling_the_parent_cancels_its_children(servers: PublicServers) -> None:
    server = await servers.start(worldcompute="local")
    async with server.client() as api:
        await deploy(api, FAMILY)
        parent_id = await started_run(api, "holds", "never-resumed")
        for _ in range(200):
            children = assert_ok(await api.get(f"/v1/runs/{parent_id}"))["children"]
            if children:
                break
            await asyncio.sleep(0.05)
        (child,) = children
        await wait_for_run(api, child["runId"], "running")
        assert assert_ok(await api.post(f"/v1/runs/{parent_id}/cancel"))["status"] == "cancelled"
        await wait_for_run(api, child["runId"], "cancelled")


FAN_OUT = {
    "workflows": [
        {"name": "square", "nodes": [
            {"id": "start", "type": "trigger", "data": {}},
            {"id": "sq", "type": "action", "data": {
                "actionType": "transform", "isResult": True, "expression": "input[0] * input[0]"}},
        ], "edges": [{"source": "start", "target": "sq"}]},
        {"name": "fan-out", "nodes": [
            {"id": "start", "type": "trigger", "data": {}},
            {"id": "each", "type": "action", "data": {
                "actionType": "run_workflow", "workflow": "square", "forEach": "{{= input[0] }}"}},
            {"id": "one", "type": "action", "data": {
                "actionType": "run_workflow", "workflow": "square", "input": [10]}},
            {"id": "sum", "type": "action", "data": {
                "actionType": "transform", "isResult": True,
                "expression": "{'squares': each['outputs'], 'total': sum(each['outputs']), "
                              "'ten': one['output']}"}},
        ], "edges": [{"source": "start", "target": "each"}, {"source": "each", "target": "one"},
                     {"source": "one", "target": "sum"}]},
    ]
}  # fmt: skip


async def test_a_graph_fans_out_to_child_runs(servers: PublicServers) -> None:
    server = await servers.start(worldcompute="local")
    async with server.client() as api:
        body = {"kind": "graph", "files": {"workflow.json": json.dumps(FAN_OUT)}}
        created = assert_ok(await api.post("/v1/deployments", json=body), 201)
        assert_ok(await api.post(f"/v1/deployments/{created['deploymentId']}/activate"))
        run = await wait_for_run(api, await started_run(api, "fan-out", [1, 2, 3]))
        assert run["output"] == {"squares": [1, 4, 9], "total": 14, "ten": 100}
        assert [c["workflowName"] for c in run["children"]] == ["square"] * 4


async def test_a_parent_killed_mid_child_finishes_with_the_same_child(tmp_path: Path) -> None:
    args = ["--data-dir", str(tmp_path / "data"), "--sqlite-path", str(tmp_path / "kids.db")]
    first = ServerProcess(args, tmp_path, "first")
    second = ServerProcess(args, tmp_path, "second")
    try:
        first.start()
        async with EngineApi(await first.ready()) as api:
            await api.deploy(FAMILY)
            parent = await api.trigger("holds", "after-the-crash")
            await api.wait_event(parent["runId"], "step_completed")  # the child has started
            first.kill9()
        second.start()
        async with EngineApi(await second.ready()) as api:
            await api.resume("after-the-crash", {"ok": True}, within=60)
            done: dict[str, Any] = await api.finished(parent["runId"], within=60)
            assert done["status"] == "completed", done
            assert done["output"]["got"] == {"ok": True}
            listed = api.ok(await api.http.get("/v1/runs", params={"workflowName": "waits"}))
            assert [r["runId"] for r in listed["data"]] == [done["output"]["child"]]
            starts = [s for s in await api.steps(parent["runId"])
                      if s["stepName"] == "start_workflow:waits"]  # fmt: skip
            assert len(starts) == 1 and starts[0]["attempt"] == 1
    finally:
        first.stop()
        second.stop()
