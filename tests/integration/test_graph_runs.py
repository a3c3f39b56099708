"""Graph deployments end to end (both backends): a Workflow Studio graph is
uploaded, activated and run; its HTTP action calls the server's own health URL, a
condition picks a branch, a hook is resumed through the public API, a wait sleeps
durably, a transform shapes the result — and a restarted server replays it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from compute_worker import start_compute_worker_server

from .engine_fixtures import ENGINE_SEED_KEYS, EngineApi


def action(node_id: str, action_type: str, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "action", "data": {"actionType": action_type, **data}}


GRAPH: dict[str, Any] = {
    "name": "health-check",
    "nodes": [
        {"id": "start", "type": "trigger", "data": {"label": "Start"}},
        action("health", "http_request", label="Health", method="GET",
               url="{{@start:Start.input.0}}", timeoutSeconds=5, maxRetries=1),
        action("healthy", "condition", left="{{@health:Health.status}}", operator="==",
               right="200"),
        action("approve", "wait_for_hook", token="graph-approve:{{@start:Start.input.1}}"),
        action("alarm", "log", message="unhealthy: {{@health:Health.status}}"),
        action("pause", "wait", duration="200ms"),
        action("summary", "transform", isResult=True, template={
            "status": "{{@health:Health.status}}",
            "health": "{{@health:Health.body.status}}",
            "approvedBy": "{{@approve:Approve.by}}",
            "text": "checked {{@start.input.1}}: {{@health:Health.status}}",
        }),
    ],
    "edges": [
        {"source": "start", "target": "health"},
        {"source": "health", "target": "healthy"},
        {"source": "healthy", "target": "approve", "sourceHandle": "true"},
        {"source": "healthy", "target": "alarm", "condition": False},
        {"source": "approve", "target": "pause"},
        {"source": "pause", "target": "summary"},
        {"source": "alarm", "target": "summary"},
    ],
}  # fmt: skip


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine_db(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if request.param == "sqlite":
        return {"sqlite_path": tmp_path / "engine.db"}
    return {"database_url": request.getfixturevalue("postgres_url")}


class Servers:
    """Servers over one database and data folder; each started one is closed at teardown."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self.handles: list[Any] = []

    async def start(self) -> Any:
        handle = await asyncio.wait_for(start_compute_worker_server(**self.options), 30)
        self.handles.append(handle)
        return handle

    async def close(self, handle: Any) -> None:
        if handle in self.handles:
            self.handles.remove(handle)
            await asyncio.wait_for(handle.close(), 30)


@pytest.fixture(params=["local", "process"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def servers(
    engine_db: dict[str, Any], backend: str, tmp_path: Path
) -> AsyncIterator[Servers]:
    options = {"data_dir": tmp_path / "data", "port": 0, "seed_api_keys": ENGINE_SEED_KEYS,
               "worldcompute": backend, "graph_http_allow": "localhost", **engine_db}  # fmt: skip
    group = Servers(options)
    try:
        yield group
    finally:
        for handle in list(reversed(group.handles)):
            await group.close(handle)


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[Any]:
    """Another worker, with a database of its own, for the HTTP nodes to call: a graph may
    not call the worker that runs it."""
    handle = await start_compute_worker_server(
        data_dir=tmp_path / "target", port=0, seed_api_keys=ENGINE_SEED_KEYS
    )
    yield handle
    await handle.close()


async def deploy_graph(api: EngineApi, document: dict[str, Any]) -> str:
    body = {"kind": "graph", "files": {"workflow.json": json.dumps(document)}}
    created = api.ok(await api.http.post("/v1/deployments", json=body), 201)
    deployment_id: str = created["deploymentId"]
    active = api.ok(await api.http.post(f"/v1/deployments/{deployment_id}/activate"))
    assert active["active"] is True
    return deployment_id


def count(events: list[dict[str, Any]], event_type: str) -> int:
    return sum(1 for event in events if event["eventType"] == event_type)


async def test_a_graph_runs_http_condition_hook_wait_and_transform(
    servers: Servers, target: Any
) -> None:
    handle = await servers.start()
    async with EngineApi(handle.url) as api:
        await deploy_graph(api, GRAPH)
        key = uuid.uuid4().hex[:8]
        run = await api.trigger("health-check", f"{target.url}/v1/health", key)
        await api.wait_status(run["runId"], {"running"})
        accepted = await api.resume(f"graph-approve:{key}", {"by": "ops"})
        assert accepted["runId"] == run["runId"]

        done = await api.finished(run["runId"])
        assert done["status"] == "completed", done
        assert done["output"] == {
            "status": 200,
            "health": "ok",
            "approvedBy": "ops",
            "text": f"checked {key}: 200",
        }
        steps = await api.steps_in_order(run["runId"])
        assert [s["stepName"] for s in steps] == ["health", "healthy", "summary"]
        assert [s["status"] for s in steps] == ["completed"] * 3
        assert steps[0]["input"][1]["url"] == f"{target.url}/v1/health"  # rendered config
        assert steps[1]["output"] == {"result": True}
        events = await api.events(run["runId"])
        assert count(events, "hook_created") == 1
        assert count(events, "wait_created") == count(events, "wait_completed") == 1


async def test_the_false_branch_runs_when_the_condition_fails(
    servers: Servers, target: Any
) -> None:
    handle = await servers.start()
    async with EngineApi(handle.url) as api:
        await deploy_graph(api, GRAPH)
        # a 4xx answer is the HTTP action's result, not an error
        run = await api.trigger("health-check", f"{target.url}/v1/runs", "unused")
        done = await api.finished(run["runId"])
        assert done["status"] == "completed", done
        status = done["output"]["status"]
        assert 400 <= status < 500
        assert done["output"]["approvedBy"] is None
        steps = await api.steps_in_order(run["runId"])
        assert [s["stepName"] for s in steps] == ["health", "healthy", "alarm", "summary"]
        assert steps[2]["output"] == {"message": f"unhealthy: {status}"}
        assert await api.hooks(run["runId"]) == []


async def test_a_restarted_server_replays_a_waiting_graph_run(
    servers: Servers, target: Any
) -> None:
    first = await servers.start()
    key = uuid.uuid4().hex[:8]
    async with EngineApi(first.url) as api:
        await deploy_graph(api, GRAPH)
        run = await api.trigger("health-check", f"{target.url}/v1/health", key)
        await api.wait_event(run["runId"], "hook_created")
    await servers.close(first)

    second = await servers.start()
    async with EngineApi(second.url) as api:
        await api.resume(f"graph-approve:{key}", {"by": "night shift"}, within=20)
        done = await api.finished(run["runId"], within=30)
        assert done["status"] == "completed", done
        assert done["output"]["approvedBy"] == "night shift"
        assert done["output"]["text"] == f"checked {key}: 200"  # the first server's answer
        events = await api.events(run["runId"])
        assert count(events, "step_started") == 3  # health was not called again
        assert count(events, "hook_created") == 1


EXPRESSIONS: dict[str, Any] = {
    "name": "expressions",
    "nodes": [
        {"id": "start", "type": "trigger", "data": {}},
        action("big", "condition", expression="input[0] > 10"),
        action("shape", "transform", isResult=True,
               expression="{'n': input[0], 'power': input[0] ** input[1], 'big': big.result}"),
    ],
    "edges": [{"source": "start", "target": "big"}, {"source": "big", "target": "shape"}],
}  # fmt: skip


async def test_expressions_run_and_an_escaping_one_fails_its_node(servers: Servers) -> None:
    handle = await servers.start()
    async with EngineApi(handle.url) as api:
        await deploy_graph(api, EXPRESSIONS)
        run = await api.trigger("expressions", 12, 2)
        done = await api.finished(run["runId"])
        assert done["status"] == "completed", done
        assert done["output"] == {"n": 12, "power": 144, "big": True}

        run = await api.trigger("expressions", 12, 10**6)  # a huge exponent
        done = await api.finished(run["runId"])
        assert done["status"] == "failed", done
        steps = await api.steps_in_order(run["runId"])
        assert [(s["stepName"], s["status"]) for s in steps] == [
            ("big", "completed"),
            ("shape", "failed"),
        ]
        assert "node shape" in json.dumps(steps[1]) and "too large" in json.dumps(steps[1])


async def test_a_graph_with_bad_expressions_is_refused_at_upload(servers: Servers) -> None:
    handle = await servers.start()
    document = json.loads(json.dumps(EXPRESSIONS))
    document["nodes"][1]["data"]["expression"] = "input.__class__"
    document["nodes"][2]["data"]["expression"] = "ghost + 1"
    async with EngineApi(handle.url) as api:
        body = {"kind": "graph", "files": {"workflow.json": json.dumps(document)}}
        response = await api.http.post("/v1/deployments", json=body)
        assert response.status_code == 422, response.text
        error = response.json()
        assert error["code"] == "invalid_deployment"
        assert [(p["node"], p["field"]) for p in error["details"]["problems"]] == [
            ("big", "data.expression"),
            ("shape", "data.expression"),
        ]


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "graphs"


def example(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return document


async def test_the_example_graphs_deploy_and_run(servers: Servers, target: Any) -> None:
    handle = await servers.start()
    health = f"{target.url}/v1/health"
    async with EngineApi(handle.url) as api:
        await deploy_graph(api, {"workflows": [example("http-pipeline"), example("approval")]})
        pipeline = await api.trigger("http-pipeline", health, health)
        key = uuid.uuid4().hex[:8]
        approval = await api.trigger("approval", key, 200)
        await api.resume(f"approval:{key}", {"approved": True, "by": "ops"})

        done = await api.finished(pipeline["runId"])
        assert done["status"] == "completed", done
        assert done["output"] == {"url": health, "status": 200, "healthy": True}
        steps = await api.steps_in_order(pipeline["runId"])
        assert [s["stepName"] for s in steps] == ["fetch", "healthy", "notify", "report"]

        done = await api.finished(approval["runId"])
        assert done["status"] == "completed", done
        assert done["output"] == {"request": key, "decision": "granted", "by": "ops"}


def fetcher(url: str) -> dict[str, Any]:
    return {
        "name": "fetcher",
        "nodes": [
            {"id": "start", "type": "trigger", "data": {}},
            action("get", "http_request", url=url, maxRetries=0, isResult=True),
        ],
        "edges": [{"source": "start", "target": "get"}],
    }


async def test_http_nodes_cannot_reach_the_worker_itself_or_metadata(
    servers: Servers, target: Any
) -> None:
    """The outbound policy: the worker's own address (and a redirect to it) fails the node;
    a literal metadata or loopback URL is refused at upload; other hosts are reached."""
    handle = await servers.start()
    async with EngineApi(handle.url) as api:
        refused = await api.http.post("/v1/deployments", json={"kind": "graph", "files": {
            "workflow.json": json.dumps({"workflows": [
                {**fetcher("http://169.254.169.254/latest/meta-data/"), "name": "metadata"},
                {**fetcher(f"{handle.url}/v1/health"), "name": "itself"},
                {**fetcher("http://10.1.2.3/admin"), "name": "private"},
            ]})}})  # fmt: skip
        assert refused.status_code == 422, refused.text
        problems = refused.json()["details"]["problems"]
        assert [(p["workflow"], p["field"]) for p in problems] == [
            ("metadata", "data.url"), ("itself", "data.url"), ("private", "data.url")]  # fmt: skip
        assert "metadata" in problems[0]["message"] and "own" in problems[1]["message"]

        await deploy_graph(api, fetcher("{{@start.input.0}}"))
        reached = await api.finished(
            (await api.trigger("fetcher", f"{target.url}/v1/health"))["runId"]
        )
        assert reached["status"] == "completed" and reached["output"]["status"] == 200

        own = await api.finished((await api.trigger("fetcher", f"{handle.url}/v1/health"))["runId"])
        assert own["status"] == "failed", own
        steps = await api.steps_in_order(own["runId"])
        assert steps[0]["status"] == "failed" and "worker's own" in json.dumps(steps[0]["error"])


async def test_redirects_are_checked_and_large_answers_refused(
    engine_db: dict[str, Any], tmp_path: Path
) -> None:
    """A tiny HTTP server that redirects to the worker's own address and sends a body
    larger than graph_http_max_bytes."""
    worker_port: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        if b"/redirect" in request.split(b"\r\n", 1)[0]:
            head = (f"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{worker_port[0]}"
                    "/v1/health\r\nContent-Length: 0\r\n\r\n")  # fmt: skip
            writer.write(head.encode())
        else:
            body = b"x" * 5000
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    tiny = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = tiny.sockets[0].getsockname()[1]
    handle = await start_compute_worker_server(
        data_dir=tmp_path / "data", port=0, seed_api_keys=ENGINE_SEED_KEYS, worldcompute="local",
        graph_http_allow="localhost", graph_http_max_bytes=1000, **engine_db,
    )  # fmt: skip
    worker_port.append(int(handle.url.rsplit(":", 1)[1]))
    try:
        async with EngineApi(handle.url) as api:
            await deploy_graph(api, fetcher("{{@start.input.0}}"))
            for path, words in (("/redirect", "worker's own"), ("/big", "larger than 1000")):
                run = await api.trigger("fetcher", f"http://127.0.0.1:{port}{path}")
                done = await api.finished(run["runId"])
                assert done["status"] == "failed", done
                (step,) = await api.steps_in_order(run["runId"])
                assert words in json.dumps(step["error"]), step
    finally:
        await handle.close()
        tiny.close()
        await tiny.wait_closed()
