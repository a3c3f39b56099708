"""The graph interpreter: templates, conditions, branches, order and each action type,
run under a fake workflow runtime (HTTP through ``httpx.MockTransport``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Generator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from compute_worker.adapters.worldcompute.graph import interpreter as graph_module
from compute_worker.adapters.worldcompute.graph.format import parse_graphs
from compute_worker.adapters.worldcompute.graph.interpreter import (
    HttpLimits,
    compare,
    execute_action,
    graph_workflows,
    render,
)
from compute_worker.domain import errors
from compute_worker.domain.authoring import (
    WORKFLOW_ATTR,
    FatalError,
    RetryableError,
    StepSpec,
    current_dispatcher,
)

# -- helpers -------------------------------------------------------------------------------


class FakeHook:
    def __init__(self, token: str, payload: Any) -> None:
        self.token = token
        self._payload = payload

    async def _get(self) -> Any:
        return self._payload

    def __await__(self) -> Generator[Any, None, Any]:
        return self._get().__await__()


class FakeRuntime:
    """Records what the workflow asks of the engine; steps run plainly."""

    def __init__(self, hook_payload: Any = None) -> None:
        self.steps: list[tuple[str, int, tuple[Any, ...]]] = []
        self.sleeps: list[datetime] = []
        self.hooks: list[tuple[str | None, Any]] = []
        self.order: list[str] = []
        self._hook_payload = hook_payload

    async def call_step(
        self,
        spec: StepSpec,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        self.steps.append((spec.name, spec.max_retries, args))
        self.order.append(spec.name)
        return await fn(*args, **kwargs)

    async def sleep(self, until: datetime) -> None:
        self.sleeps.append(until)
        self.order.append("sleep")

    def create_hook(self, token: str | None, metadata: Any) -> FakeHook:
        self.hooks.append((token, metadata))
        self.order.append("hook")
        return FakeHook(token or "generated", self._hook_payload)

    def metadata(self) -> dict[str, Any]:
        return {}


async def run_graph(document: dict[str, Any], *args: Any, runtime: FakeRuntime) -> Any:
    name = document["name"]
    flow = graph_workflows(json.dumps(document).encode())[name]
    token = current_dispatcher.set(runtime)
    try:
        return await flow(*args)
    finally:
        current_dispatcher.reset(token)


def action(node_id: str, action_type: str, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "action", "data": {"actionType": action_type, **data}}


TRIGGER = {"id": "start", "type": "trigger", "data": {"label": "Start"}}


def edge(source: str, target: str, **extra: Any) -> dict[str, Any]:
    return {"source": source, "target": target, **extra}


Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def http(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Handler]]:
    """Install a handler (append one) that answers every HTTP action; requests are kept."""
    handlers: list[Handler] = []

    def handle(request: httpx.Request) -> httpx.Response:
        return handlers[-1](request)

    monkeypatch.setattr(graph_module, "transport_factory", lambda: httpx.MockTransport(handle))
    yield handlers


# -- templates -----------------------------------------------------------------------------

OUTPUTS: dict[str, Any] = {
    "start": {"input": [7, "ada"]},
    "http": {"status": 200, "body": {"items": [{"name": "a"}, {"name": "b"}], "ok": True}},
    "none": None,
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{@http:HTTP Request.status}}", 200),
        ("{{@http.body.ok}}", True),
        ("{{@http:HTTP.body.items}}", [{"name": "a"}, {"name": "b"}]),
        ("{{@http:HTTP.body.items.1.name}}", "b"),
        ("{{@start.input.0}}", 7),
        ("  {{ @start:Start.input }}  ", [7, "ada"]),
        ("{{@http:HTTP}}", OUTPUTS["http"]),
    ],
)
def test_a_single_template_keeps_the_value_type(template: str, expected: Any) -> None:
    assert render(template, OUTPUTS) == expected


def test_templates_inside_text_are_interpolated() -> None:
    text = (
        "hi {{@start:Start.input.1}}, got {{@http.status}} {{@http.body.ok}} {{@http.body.items.0}}"
    )
    assert render(text, OUTPUTS) == 'hi ada, got 200 true {"name": "a"}'


def test_missing_paths_render_as_none_or_empty_text() -> None:
    assert render("{{@http.body.nope.deeper}}", OUTPUTS) is None
    assert render("{{@ghost:Ghost.x}}", OUTPUTS) is None
    assert render("{{@http.body.items.9}}", OUTPUTS) is None
    assert render("{{@http.status.sub}}", OUTPUTS) is None
    assert render("{{@none.x}}", OUTPUTS) is None
    assert render("[{{@ghost.x}}]", OUTPUTS) == "[]"


def test_render_walks_nested_values_and_never_evaluates() -> None:
    value = {
        "list": ["{{@http.status}}", 3, None, {"deep": "{{@start.input.1}}!"}],
        "flag": False,
        "code": "{{ 1 + 1 }} {{@http.__class__}} {{@http.body.__len__}}",
    }
    assert render(value, OUTPUTS) == {
        "list": [200, 3, None, {"deep": "ada!"}],
        "flag": False,
        "code": "{{ 1 + 1 }}  ",
    }


# -- conditions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "operator", "right", "expected"),
    [
        (200, "==", 200, True),
        (200, "==", "200", True),
        ("a", "==", "b", False),
        ("a", "!=", "b", True),
        (3, ">", 2, True),
        ("10", ">", 9, True),
        (2, ">=", 2, True),
        (1, "<", 2.5, True),
        (3, "<=", 2, False),
        ("hello world", "contains", "world", True),
        (["x", "y"], "contains", "y", True),
        ({"k": 1}, "contains", "k", True),
        (None, "contains", "k", False),
        ("value", "exists", None, True),
        (0, "exists", None, True),
        ("", "exists", None, False),
        (None, "exists", None, False),
    ],
)
def test_condition_operators(left: Any, operator: str, right: Any, expected: bool) -> None:
    assert compare(left, operator, right) is expected


def test_bad_conditions_fail_without_retries() -> None:
    with pytest.raises(FatalError, match="unknown condition operator"):
        compare(1, "=~", 1)
    with pytest.raises(FatalError, match="cannot compare"):
        compare("a", ">", 1)


async def test_condition_action_result() -> None:
    config = {"actionType": "condition", "left": 5, "operator": ">", "right": 3}
    assert await execute_action("check", config) == {"result": True}


# -- parsing -------------------------------------------------------------------------------


def test_parse_graphs_reads_one_graph_or_many() -> None:
    one = {
        "name": "flow",
        "nodes": [action("b", "log"), TRIGGER, action("a", "log")],
        "edges": [edge("start", "a"), edge("a", "b", sourceHandle="false")],
    }
    graphs = parse_graphs(json.dumps(one).encode())
    assert list(graphs) == ["flow"]
    parsed = graphs["flow"]
    assert parsed.trigger == "start"
    assert parsed.order == ("a", "b")
    assert [(e.source, e.target, e.branch) for e in parsed.edges] == [
        ("start", "a", None),
        ("a", "b", False),
    ]
    many = {"workflows": [one, {**one, "name": "other"}]}
    assert list(parse_graphs(json.dumps(many).encode())) == ["flow", "other"]


@pytest.mark.parametrize(
    "document",
    [
        {"name": "x", "nodes": [action("a", "log")], "edges": []},  # no trigger
        {"name": "x", "nodes": [TRIGGER, action("a", "log")], "edges": [edge("a", "a")]},
        {"name": "x", "nodes": [TRIGGER], "edges": [edge("start", "ghost")]},
    ],
)
def test_invalid_graphs_are_refused(document: dict[str, Any]) -> None:
    with pytest.raises(errors.InvalidDeployment):
        parse_graphs(json.dumps(document).encode())


def test_each_graph_is_a_workflow_of_its_own_name() -> None:
    one = {"name": "flow", "nodes": [TRIGGER], "edges": []}
    flows = graph_workflows(json.dumps({"workflows": [one, {**one, "name": "other"}]}).encode())
    assert list(flows) == ["flow", "other"]
    assert getattr(flows["other"], WORKFLOW_ATTR).name == "other"


# -- walking the graph ---------------------------------------------------------------------


def branching(left: Any) -> dict[str, Any]:
    return {
        "name": "branching",
        "nodes": [
            TRIGGER,
            action(
                "join", "transform", template={"yes": "{{@yes.message}}", "no": "{{@no.message}}"}
            ),
            action("yes", "log", message="yes {{@start.input.0}}"),
            action("no", "log", message="no {{@start.input.0}}"),
            action("check", "condition", left=left, operator=">", right=10),
        ],
        "edges": [
            edge("start", "check"),
            edge("check", "yes", condition=True),
            edge("check", "no", sourceHandle="false"),
            edge("yes", "join"),
            edge("no", "join"),
            edge("check", "join"),
        ],
    }


async def test_only_the_matching_branch_runs_and_a_join_runs_once_after_it() -> None:
    runtime = FakeRuntime()
    result = await run_graph(branching("{{@trigger.input.0}}"), 42, runtime=runtime)
    assert runtime.order == ["check", "yes", "join"]
    assert result == {
        "outputs": {
            "start": {"input": [42]},
            "check": {"result": True},
            "yes": {"message": "yes 42"},
            "join": {"yes": "yes 42", "no": None},
        }
    }

    runtime = FakeRuntime()
    result = await run_graph(branching("{{@start:Start.input.0}}"), 3, runtime=runtime)
    assert runtime.order == ["check", "no", "join"]
    assert result["outputs"]["join"] == {"yes": None, "no": "no 3"}


async def test_steps_are_named_after_nodes_with_rendered_configs_and_retries() -> None:
    document = {
        "name": "flow",
        "nodes": [
            TRIGGER,
            action("shape", "transform", maxRetries=0, template=["{{@start.input.1}}", 1]),
            action("say", "log", message="{{@shape.0}}", isResult=True),
        ],
        "edges": [edge("start", "shape"), edge("shape", "say")],
    }
    runtime = FakeRuntime()
    result = await run_graph(document, "a", "b", runtime=runtime)
    assert result == {"message": "b"}  # the isResult node's output
    assert runtime.steps == [
        ("shape", 0, ("shape", {"actionType": "transform", "maxRetries": 0, "template": ["b", 1]})),
        ("say", 3, ("say", {"actionType": "log", "message": "b", "isResult": True})),
    ]


async def test_topological_order_is_followed_whatever_the_declaration_order() -> None:
    document = {
        "name": "diamond",
        "nodes": [
            action("d", "transform", template="{{@b}}+{{@c}}"),
            action("c", "transform", template="c({{@a}})"),
            action("b", "transform", template="b({{@a}})"),
            action("a", "transform", template="a"),
            TRIGGER,
        ],
        "edges": [
            edge("start", "a"),
            edge("a", "b"),
            edge("a", "c"),
            edge("b", "d"),
            edge("c", "d"),
        ],
    }
    runtime = FakeRuntime()
    result = await run_graph(document, runtime=runtime)
    assert runtime.order == ["a", "c", "b", "d"]  # ties keep declaration order
    assert result["outputs"]["d"] == "b(a)+c(a)"


async def test_wait_sleeps_durably_in_the_workflow_not_in_a_step() -> None:
    document = {
        "name": "pause",
        "nodes": [
            TRIGGER,
            action("w1", "wait", duration="5m"),
            action("w2", "wait", duration="{{@start.input.0}}"),
        ],
        "edges": [edge("start", "w1"), edge("w1", "w2")],
    }
    runtime = FakeRuntime()
    before = datetime.now(UTC)
    result = await run_graph(document, 2, runtime=runtime)
    assert runtime.steps == []
    assert runtime.order == ["sleep", "sleep"]
    first, second = ((when - before).total_seconds() for when in runtime.sleeps)
    assert 299 <= first <= 301
    assert 1.5 <= second <= 3
    assert result["outputs"]["w1"] == {"duration": "5m"}
    assert result["outputs"]["w2"] == {"duration": 2}


async def test_wait_for_hook_outputs_the_payload() -> None:
    document = {
        "name": "approval",
        "nodes": [
            TRIGGER,
            action("ask", "wait_for_hook", token="approve:{{@start.input.0}}"),
            action("anon", "wait_for_hook"),
            action("done", "transform", template="{{@ask.by}}", isResult=True),
        ],
        "edges": [edge("start", "ask"), edge("ask", "anon"), edge("anon", "done")],
    }
    runtime = FakeRuntime(hook_payload={"by": "ops"})
    assert await run_graph(document, 17, runtime=runtime) == "ops"
    assert runtime.hooks == [("approve:17", {"node": "ask"}), (None, {"node": "anon"})]
    assert runtime.order == ["hook", "hook", "done"]


async def test_log_action_logs_its_message(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=graph_module.__name__):
        out = await execute_action("note", {"actionType": "log", "message": {"n": 1}})
    assert out == {"message": {"n": 1}}
    assert 'graph node note: {"n": 1}' in caplog.text


async def test_unknown_action_types_fail_without_retries() -> None:
    with pytest.raises(FatalError, match="unknown actionType"):
        await execute_action("x", {"actionType": "shell"})


# -- http_request --------------------------------------------------------------------------


async def test_http_get_parses_a_json_body(http: list[Handler]) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"items": [1, 2]}, headers={"X-Id": "9"})

    http.append(answer)
    out = await execute_action(
        "get",
        {
            "actionType": "http_request",
            "url": "https://api.test/items?q=1",
            "headers": {"Accept": "application/json", "X-Count": 3},
        },
    )
    assert out["status"] == 200
    assert out["body"] == {"items": [1, 2]}
    assert out["headers"]["x-id"] == "9"
    assert seen[0].method == "GET"
    assert str(seen[0].url) == "https://api.test/items?q=1"
    assert seen[0].headers["x-count"] == "3"


async def test_http_post_sends_json_or_text_bodies(http: list[Handler]) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, text="created, not json")

    http.append(answer)
    out = await execute_action(
        "post",
        {
            "actionType": "http_request",
            "method": "post",
            "url": "https://api.test/x",
            "body": {"name": "ada"},
        },
    )
    assert out["status"] == 201
    assert out["body"] == "created, not json"
    assert seen[0].method == "POST"
    assert json.loads(seen[0].content) == {"name": "ada"}
    assert seen[0].headers["content-type"] == "application/json"

    await execute_action(
        "put",
        {
            "actionType": "http_request",
            "method": "PUT",
            "url": "https://api.test/x",
            "body": "raw text",
        },
    )
    assert seen[1].content == b"raw text"


async def test_http_4xx_is_a_result_and_5xx_is_retried(http: list[Handler]) -> None:
    http.append(lambda request: httpx.Response(404, json={"error": "nope"}))
    config = {"actionType": "http_request", "url": "https://api.test/missing"}
    out = await execute_action("get", config)
    assert out["status"] == 404
    assert out["body"] == {"error": "nope"}

    http.append(lambda request: httpx.Response(503))
    with pytest.raises(RetryableError, match="503"):
        await execute_action("get", config)


async def test_http_timeout_comes_from_the_node(http: list[Handler]) -> None:
    timeouts: list[Any] = []

    def answer(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"])
        return httpx.Response(204)

    http.append(answer)
    base = {"actionType": "http_request", "url": "https://api.test/"}
    assert (await execute_action("a", base))["body"] is None
    await execute_action("b", {**base, "timeoutSeconds": 2.5})
    assert timeouts[0]["read"] == 30.0
    assert timeouts[1]["read"] == 2.5


async def test_http_needs_a_url() -> None:
    with pytest.raises(FatalError, match="url"):
        await execute_action("a", {"actionType": "http_request", "url": ""})


async def test_an_http_node_feeds_a_condition_in_a_graph(http: list[Handler]) -> None:
    http.append(lambda request: httpx.Response(200, json={"count": 12}))
    document = {
        "name": "flow",
        "nodes": [
            TRIGGER,
            action("fetch", "http_request", url="https://api.test/{{@start.input.0}}"),
            action(
                "big",
                "condition",
                left="{{@fetch:Fetch.body.count}}",
                operator=">=",
                right="{{@start.input.1}}",
            ),
            action("yes", "transform", template="count {{@fetch.body.count}}", isResult=True),
        ],
        "edges": [
            edge("start", "fetch"),
            edge("fetch", "big"),
            edge("big", "yes", sourceHandle="true"),
        ],
    }
    runtime = FakeRuntime()
    assert await run_graph(document, "n", 10, runtime=runtime) == "count 12"
    assert [name for name, _, _ in runtime.steps] == ["fetch", "big", "yes"]


# -- http_request under the outbound policy ---------------------------------------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://127.0.0.1:8080/v1/runs", "loopback"),
        ("http://localhost/admin", "loopback"),
        ("file:///etc/passwd", "only http and https"),
        ("http://10.0.0.7/", "private"),
    ],
)
async def test_http_refuses_internal_addresses_as_a_node_error(
    http: list[Handler], url: str, words: str
) -> None:
    http.append(lambda request: httpx.Response(200, json={}))
    with pytest.raises(FatalError, match=words):
        await execute_action("get", {"actionType": "http_request", "url": url})


async def test_http_follows_redirects_and_checks_every_hop(http: list[Handler]) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/go":
            return httpx.Response(302, headers={"Location": "http://169.254.169.254/creds"})
        if request.url.path == "/next":
            return httpx.Response(302, headers={"Location": "https://api.test/done"})
        return httpx.Response(200, json={"at": request.url.path})

    http.append(answer)
    done = await execute_action("a", {"actionType": "http_request", "url": "https://api.test/next"})
    assert done["body"] == {"at": "/done"}
    with pytest.raises(FatalError, match="metadata"):
        await execute_action("a", {"actionType": "http_request", "url": "https://api.test/go"})


async def test_http_answers_are_size_limited_and_hosts_allow_listed(http: list[Handler]) -> None:
    http.append(lambda request: httpx.Response(200, content=b"x" * 2000))
    small = HttpLimits(max_response_bytes=1000)
    with pytest.raises(FatalError, match="larger than 1000"):
        await execute_action("a", {"actionType": "http_request", "url": "https://api.test/"}, small)
    only = HttpLimits(allow=("api.test",))
    with pytest.raises(FatalError, match="allow-list"):
        await execute_action(
            "a", {"actionType": "http_request", "url": "https://other.test/"}, only
        )
    denied = HttpLimits(allow=("localhost",), deny=("localhost:8080",))
    with pytest.raises(FatalError, match="own addresses"):
        await execute_action("a", {"actionType": "http_request",
                                   "url": "http://127.0.0.1:8080/"}, denied)  # fmt: skip
    assert HttpLimits.from_env(denied.env()) == denied
