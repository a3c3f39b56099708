"""The graph interpreter: Workflow Studio graphs run as durable workflows.

A graph (read and checked by ``graph.format``) is walked from its trigger in topological
order. Each action node is a durable step named after its node id (``wait``,
``wait_for_hook`` and ``run_workflow`` use the workflow's own ``sleep``, ``create_hook``
and ``start_workflow``); its result
is the node's output, which later nodes read through ``{{@nodeId:Label.path}}``
templates (looked up, never evaluated) or through sandboxed expressions (``{{= … }}``
templates and the ``expression`` of conditions and transforms, see ``graph.expressions``).
Expressions are evaluated in the workflow from recorded values within deterministic
bounds, so a replay computes what the first run did; one that fails becomes the failure
of its node's step (a ``FatalError`` naming the node), not a crash of the interpreter.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from compute_worker.adapters.guarded_http import guarded_client, read_limited
from compute_worker.adapters.worldcompute.graph import expressions
from compute_worker.adapters.worldcompute.graph.format import (
    EXPRESSION_TEMPLATE,
    Graph,
    Node,
    parse_graphs,
)
from compute_worker.domain.authoring import (
    DEFAULT_MAX_RETRIES,
    FatalError,
    RetryableError,
    create_hook,
    sleep,
    start_workflow,
    step,
    workflow,
)
from compute_worker.domain.outbound import OutboundPolicy, OutboundRefused

log = logging.getLogger(__name__)

DEFAULT_HTTP_TIMEOUT = 30.0
MAX_HTTP_TIMEOUT = 300.0
DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024
MAX_REDIRECTS = 5
DEFAULT_ALLOW = ("*",)  # any public host; loopback, private and metadata addresses refused
ENV_ALLOW, ENV_DENY, ENV_MAX_BYTES = (
    "CW_GRAPH_HTTP_ALLOW",
    "CW_GRAPH_HTTP_DENY",
    "CW_GRAPH_HTTP_MAX",
)


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Where ``http_request`` nodes may go (the outbound policy: every URL, every address
    it resolves to and every redirect hop is checked) and how big an answer may be."""

    allow: tuple[str, ...] = DEFAULT_ALLOW
    deny: tuple[str, ...] = ()  # the worker's own addresses
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    @property
    def policy(self) -> OutboundPolicy:
        return OutboundPolicy(self.allow, self.deny, what="http_request")

    def env(self) -> dict[str, str]:
        """For a process backend child (``from_env`` reads it back)."""
        return {ENV_ALLOW: json.dumps(list(self.allow)), ENV_DENY: json.dumps(list(self.deny)),
                ENV_MAX_BYTES: str(self.max_response_bytes)}  # fmt: skip

    @classmethod
    def from_env(cls, config: dict[str, str]) -> HttpLimits:
        if ENV_ALLOW not in config:
            return cls()
        return cls(tuple(json.loads(config[ENV_ALLOW])), tuple(json.loads(config[ENV_DENY])),
                   int(config[ENV_MAX_BYTES]))  # fmt: skip


HttpSettings = Callable[[], HttpLimits]


def _default_transport() -> httpx.AsyncBaseTransport | None:
    return None


# Tests swap this to route HTTP actions through ``httpx.MockTransport`` (the policy still
# checks each request's URL, but nothing is resolved).
transport_factory: Callable[[], httpx.AsyncBaseTransport | None] = _default_transport


# -- templates ---------------------------------------------------------------------------

_TEMPLATE = re.compile(r"\{\{\s*@(?P<node>[^:.}\s]+)(?::[^.}]*)?(?P<path>\.[^}]*)?\}\}")


def render(value: Any, outputs: dict[str, Any], names: dict[str, Any] | None = None) -> Any:
    """Render every string in ``value``; a string that is one template keeps its type.

    ``{{@node.path}}`` looks ``outputs`` up; ``{{= expression }}`` is evaluated over
    ``names`` (an ``expressions.ExpressionError`` when it fails)."""
    if names is None:
        names = expressions.scope(outputs.get("trigger", {}).get("input", []), outputs)
    if isinstance(value, str):
        return _render_text(value, outputs, names)
    if isinstance(value, dict):
        return {key: render(item, outputs, names) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, outputs, names) for item in value]
    return value


def _render_text(text: str, outputs: dict[str, Any], names: dict[str, Any]) -> Any:
    whole = _TEMPLATE.fullmatch(text.strip())
    if whole is not None:
        return _lookup(whole, outputs)
    whole = EXPRESSION_TEMPLATE.fullmatch(text.strip())
    if whole is not None and "}}" not in whole["expr"]:
        return expressions.evaluate(whole["expr"], names)
    text = EXPRESSION_TEMPLATE.sub(
        lambda match: _as_text(expressions.evaluate(match["expr"], names)), text
    )
    if len(text) > expressions.MAX_TEXT:
        raise expressions.ExpressionError(
            f"the rendered text is longer than {expressions.MAX_TEXT} characters"
        )
    return _TEMPLATE.sub(lambda match: _as_text(_lookup(match, outputs)), text)


def _lookup(match: re.Match[str], outputs: dict[str, Any]) -> Any:
    value = outputs.get(match["node"])
    for key in (match["path"] or "").strip().strip(".").split("."):
        key = key.strip()
        if not key:
            continue
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


# -- conditions --------------------------------------------------------------------------


def compare(left: Any, operator: str, right: Any) -> bool:
    """``== != > >= < <= contains exists``; a number and a numeric string compare as numbers."""
    if operator == "exists":
        return left is not None and left != ""
    if operator == "contains":
        if isinstance(left, str):
            return _as_text(right) in left
        return isinstance(left, list | dict) and right in left
    left, right = _numbers(left, right)
    if operator == "==":
        return bool(left == right)
    if operator == "!=":
        return bool(left != right)
    comparisons: dict[str, Callable[[Any, Any], bool]] = {
        ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
        "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    }  # fmt: skip
    if operator not in comparisons:
        raise FatalError(f"unknown condition operator {operator!r}")
    try:
        return comparisons[operator](left, right)
    except TypeError as error:
        raise FatalError(f"cannot compare {left!r} {operator} {right!r}") from error


def _numbers(left: Any, right: Any) -> tuple[Any, Any]:
    def number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    if number(left) and isinstance(right, str):
        return left, _to_number(right, right)
    if number(right) and isinstance(left, str):
        return _to_number(left, left), right
    return left, right


def _to_number(text: str, default: Any) -> Any:
    try:
        return float(text)
    except ValueError:
        return default


# -- actions (each one runs inside its step) -----------------------------------------------


async def execute_action(
    node_id: str, config: dict[str, Any], http: HttpLimits | None = None
) -> Any:
    """The body of every action step: ``config`` is the node's data, already rendered."""
    action = config.get("actionType")
    if action == "http_request":
        return await _http_request(config, http or HttpLimits())
    if EXPRESSION_FAILURE in config:
        raise FatalError(f"node {node_id}: {config[EXPRESSION_FAILURE]}")
    if action == "condition":
        if "expression" in config:
            return {"result": bool(config.get("value"))}
        operator = str(config.get("operator", "=="))
        return {"result": compare(config.get("left"), operator, config.get("right"))}
    if action == "log":
        message = config.get("message")
        log.info("graph node %s: %s", node_id, _as_text(message))
        return {"message": message}
    if action == "transform":
        if "expression" in config:
            return config.get("value")
        return config.get("template")
    raise FatalError(f"node {node_id}: unknown actionType {action!r}")


async def _http_request(config: dict[str, Any], http: HttpLimits) -> dict[str, Any]:
    url = config.get("url")
    if not isinstance(url, str) or not url.strip():
        raise FatalError("http_request needs a url")
    timeout = config.get("timeoutSeconds", DEFAULT_HTTP_TIMEOUT)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        timeout = DEFAULT_HTTP_TIMEOUT
    headers = config.get("headers") or {}
    if not isinstance(headers, dict):
        raise FatalError("http_request headers must be an object")
    body = config.get("body")
    content = body.encode() if isinstance(body, str) else None
    payload = body if body is not None and not isinstance(body, str) else None
    method = str(config.get("method") or "GET").upper()
    policy = http.policy
    try:
        async with _client(policy, min(float(timeout), MAX_HTTP_TIMEOUT)) as client:
            request = client.build_request(
                method, url.strip(), content=content, json=payload,
                headers={str(key): _as_text(value) for key, value in headers.items()},
            )  # fmt: skip
            response = await client.send(request, stream=True)
            try:
                raw = await read_limited(response, http.max_response_bytes)
            finally:
                await response.aclose()
    except OutboundRefused as refused:
        raise FatalError(refused.message) from refused
    except httpx.TooManyRedirects as error:
        raise FatalError(f"{method} {url}: more than {MAX_REDIRECTS} redirects") from error
    if response.status_code >= 500:
        raise RetryableError(f"{method} {url} answered {response.status_code}")
    try:
        parsed: Any = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(response.encoding or "utf-8", "replace")
    return {"status": response.status_code, "headers": dict(response.headers), "body": parsed}


def _client(policy: OutboundPolicy, timeout: float) -> httpx.AsyncClient:
    """The guarded client (redirects followed, each hop checked again); a test transport
    gets the same URL check on every request, redirects included."""

    async def check(request: httpx.Request) -> None:
        policy.check_literal(str(request.url))

    options: dict[str, Any] = {"follow_redirects": True, "max_redirects": MAX_REDIRECTS,
                               "event_hooks": {"request": [check]}}  # fmt: skip
    transport = transport_factory()
    if transport is not None:
        return httpx.AsyncClient(transport=transport, timeout=timeout, **options)
    return guarded_client(policy, timeout=timeout, **options)


# -- the interpreter ---------------------------------------------------------------------


def graph_workflows(
    raw: bytes, http: HttpSettings = HttpLimits
) -> dict[str, Callable[..., Awaitable[Any]]]:
    """A ``@workflow`` per graph of the bundle file ``raw``, by name; ``InvalidDeployment``
    when the file cannot be walked at all (the upload-only checks are skipped, so a graph
    deployed before they existed still runs). ``http`` gives the HTTP limits in force."""
    graphs = parse_graphs(raw, strict=False)
    return {name: graph_workflow(graph, http) for name, graph in graphs.items()}


def graph_workflow(graph: Graph, http: HttpSettings = HttpLimits) -> Callable[..., Awaitable[Any]]:
    """The ``@workflow`` that interprets ``graph``."""
    steps = {node_id: _node_step(graph.nodes[node_id], http) for node_id in graph.order}

    @workflow(name=graph.name)
    async def run(*args: Any) -> Any:
        outputs: dict[str, Any] = {graph.trigger: {"input": list(args)}}
        for node_id in graph.order:
            if _activated(graph, node_id, outputs):
                scope = {"trigger": outputs[graph.trigger], **outputs}  # `@trigger` works too
                node = graph.nodes[node_id]
                names = expressions.scope(list(args), outputs)
                try:
                    config = _configure(node, scope, names)
                except expressions.ExpressionError as error:
                    # the node's step records the failure: a node error, never retried
                    failure = {"actionType": node.action, EXPRESSION_FAILURE: str(error)}
                    await steps[node_id](node.id, failure)
                    raise FatalError(f"node {node.id}: {error}") from error
                outputs[node_id] = await _run_node(node, steps[node_id], config)
        return _result(graph, outputs)

    return run


# the key of the config that carries a failed expression into its node's step
EXPRESSION_FAILURE = "$expressionError"


def _configure(node: Node, scope: dict[str, Any], names: dict[str, Any]) -> dict[str, Any]:
    """The node's data rendered; a condition's or transform's ``expression`` evaluated into
    ``value`` (the source itself is never rendered: outputs cannot become code)."""
    data = {key: value for key, value in node.data.items() if key != "expression"}
    config: dict[str, Any] = render(data, scope, names)
    source = node.data.get("expression")
    if node.action in ("condition", "transform") and isinstance(source, str):
        config["expression"] = source
        config["value"] = expressions.evaluate(source, names)
    return config


def _node_step(node: Node, http: HttpSettings) -> Callable[..., Awaitable[Any]]:
    retries = node.data.get("maxRetries", DEFAULT_MAX_RETRIES)
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        retries = DEFAULT_MAX_RETRIES

    async def act(node_id: str, config: dict[str, Any]) -> Any:
        return await execute_action(node_id, config, http())

    return step(name=node.id, max_retries=retries)(act)


def _activated(graph: Graph, node_id: str, outputs: dict[str, Any]) -> bool:
    """Some executed predecessor leads here (a condition only along its result's branch)."""
    for edge in graph.edges:
        if edge.target != node_id or edge.source not in outputs:
            continue
        source = graph.nodes[edge.source]
        if edge.branch is None or source.action != "condition":
            return True
        result = outputs[edge.source]
        if isinstance(result, dict) and bool(result.get("result")) == edge.branch:
            return True
    return False


async def _run_node(
    node: Node, node_step: Callable[..., Awaitable[Any]], config: dict[str, Any]
) -> Any:
    """``wait`` and ``wait_for_hook`` are the workflow's own durable calls; the rest are steps."""
    if node.action == "wait":
        duration = config.get("duration", config.get("seconds", 0))
        await sleep(_duration(duration))
        return {"duration": duration}
    if node.action == "wait_for_hook":
        token = config.get("token")
        hook = create_hook(token=_as_text(token) or None, metadata={"node": node.id})
        return await hook
    if node.action == "run_workflow":
        return await _run_workflow(config)
    return await node_step(node.id, config)


async def _run_workflow(config: dict[str, Any]) -> dict[str, Any]:
    """Child runs of the workflow ``config["workflow"]`` of this deployment: one with
    ``input`` (a list, default none), or one per item of ``forEach`` (each gets the item
    as its one argument), started together, then awaited unless ``wait`` is false."""
    name = _as_text(config.get("workflow")).strip()
    items = config.get("forEach")
    if "forEach" in config and not isinstance(items, list):
        raise FatalError("run_workflow forEach must be a list")
    run_input = config.get("input", [])
    if not isinstance(run_input, list):
        run_input = [run_input]
    inputs = [[item] for item in items] if isinstance(items, list) else [run_input]
    children = [await start_workflow(name, *args) for args in inputs]
    runs = [child.run_id for child in children]
    waited = config.get("wait", True) is not False
    if not isinstance(items, list):
        found: dict[str, Any] = {"runId": runs[0]}
        if waited:
            found["output"] = await children[0].result()
        return found
    if not waited:
        return {"runIds": runs}
    return {"runIds": runs, "outputs": [await child.result() for child in children]}


def _duration(value: Any) -> str | float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = _as_text(value).strip()
    try:
        return float(text)
    except ValueError:
        return text or 0.0


def _result(graph: Graph, outputs: dict[str, Any]) -> Any:
    marked = [node_id for node_id in graph.order
              if node_id in outputs and graph.nodes[node_id].data.get("isResult")]  # fmt: skip
    if marked:
        return outputs[marked[-1]]
    return {"outputs": outputs}
