"""The graph bundle format: Workflow Studio graphs, read and checked in one pass.

A bundle's graph file holds one graph or ``{"workflows": [graph, …]}``. A graph has a
``name``, ``nodes`` (exactly one ``trigger``; ``action`` nodes whose
``data.actionType`` the interpreter runs) and ``edges`` between them, without cycles.
``parse_graphs`` turns the file into :class:`Graph` objects or refuses it with an
``InvalidDeployment`` naming the first problem; the upload check and the interpreter
both call it, so what was accepted at upload is what runs. Every expression (a
condition's or transform's ``data.expression``, every ``{{= … }}`` template in a node's
data) is compiled here and its names checked against the graph's node ids; the refusal
lists every bad expression in ``details.problems`` (node, field, message).
"""

from __future__ import annotations

import heapq
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from compute_worker.adapters.worldcompute.graph import expressions
from compute_worker.domain import errors
from compute_worker.domain.deployments import DEFAULT_ENTRYPOINTS, WorkflowInfo, check_workflows

NODE_TYPES = ("trigger", "action")
# what the interpreter executes; anything else is refused at upload
ACTION_TYPES = ("http_request", "condition", "log", "transform", "wait", "wait_for_hook")
DEFAULT_SOURCE = DEFAULT_ENTRYPOINTS["graph"]
# ``{{= expression }}`` inside any string of a node's data (the expression holds no ``}}``)
EXPRESSION_TEMPLATE = re.compile(r"\{\{=(?P<expr>.*?)\}\}", re.DOTALL)
# the actions whose ``data.expression`` is evaluated
EXPRESSION_ACTIONS = ("condition", "transform")


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    type: str
    data: dict[str, Any]

    @property
    def action(self) -> str:
        return str(self.data.get("actionType", ""))


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    branch: bool | None = None  # a condition's outgoing edge: taken on this result only


@dataclass(frozen=True, slots=True)
class Graph:
    name: str
    trigger: str
    nodes: dict[str, Node]
    edges: tuple[Edge, ...]
    order: tuple[str, ...]  # action node ids, topologically sorted

    @property
    def info(self) -> WorkflowInfo:
        """The workflow as a deployment lists it: each action node is a step."""
        return WorkflowInfo(self.name, self.order)


def parse_graphs(raw: bytes, source: str = DEFAULT_SOURCE) -> dict[str, Graph]:
    """The graphs of the file ``source`` by name, in file order."""
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise errors.InvalidDeployment(f"{source} is not valid JSON: {exc}") from exc
    if isinstance(document, dict) and "workflows" in document:
        items = document["workflows"]
        if not isinstance(items, list):
            raise errors.InvalidDeployment(f"{source}: workflows must be a list of graphs")
    else:
        items = [document]
    graphs = [_graph(item, index) for index, item in enumerate(items)]
    check_workflows(tuple(graph.info for graph in graphs), "the bundle defines no workflow graph")
    return {graph.name: graph for graph in graphs}


def _graph(item: Any, index: int) -> Graph:
    where = f"workflows[{index}]"
    if not isinstance(item, dict):
        raise errors.InvalidDeployment(f"{where} must be an object")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise errors.InvalidDeployment(f"{where}.name must be a non-empty string")
    where = f"workflow {name!r}"
    nodes = _nodes(item.get("nodes"), where)
    edges = _edges(item.get("edges", []), nodes, where)
    order = _topological(list(nodes), edges, where)
    _check_expressions(nodes, where)
    trigger = next(node.id for node in nodes.values() if node.type == "trigger")
    actions = tuple(node_id for node_id in order if nodes[node_id].type == "action")
    return Graph(name, trigger, nodes, edges, actions)


def _nodes(nodes: Any, where: str) -> dict[str, Node]:
    """Node id → node, in declaration order."""
    if not isinstance(nodes, list):
        raise errors.InvalidDeployment(f"{where}: nodes must be a list")
    found: dict[str, Node] = {}
    for position, node in enumerate(nodes):
        at = f"{where}: nodes[{position}]"
        if not isinstance(node, dict):
            raise errors.InvalidDeployment(f"{at} must be an object")
        node_id, node_type, data = node.get("id"), node.get("type"), node.get("data", {})
        if not isinstance(node_id, str) or not node_id:
            raise errors.InvalidDeployment(f"{at}.id must be a non-empty string")
        if node_id in found:
            raise errors.InvalidDeployment(f"{where}: duplicate node id {node_id!r}")
        if node_type not in NODE_TYPES:
            raise errors.InvalidDeployment(f"{at} ({node_id!r}): type must be trigger or action")
        if not isinstance(data, dict):
            raise errors.InvalidDeployment(f"{at} ({node_id!r}): data must be an object")
        if node_type == "action" and data.get("actionType") not in ACTION_TYPES:
            raise errors.InvalidDeployment(
                f"{at} ({node_id!r}): data.actionType must be one of {', '.join(ACTION_TYPES)}, "
                f"not {data.get('actionType')!r}",
                {"node": node_id, "field": "data.actionType", "allowed": list(ACTION_TYPES)},
            )
        found[node_id] = Node(node_id, node_type, dict(data))
    triggers = [node.id for node in found.values() if node.type == "trigger"]
    if len(triggers) != 1:
        raise errors.InvalidDeployment(
            f"{where}: needs exactly one trigger node, found {len(triggers)}"
        )
    return found


def _check_expressions(nodes: Mapping[str, Node], where: str) -> None:
    """Refuse the graph if any expression does not compile or reads an unknown name."""
    problems: list[dict[str, str]] = []
    for node in nodes.values():
        for field, source in _expressions(node):
            try:
                expressions.check(source, nodes)
            except expressions.ExpressionError as exc:
                problems.append({"node": node.id, "field": field, "message": str(exc)})
    if problems:
        first = problems[0]
        raise errors.InvalidDeployment(
            f"{where}: node {first['node']!r} {first['field']}: invalid expression: "
            f"{first['message']}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
            {"problems": problems},
        )


def _expressions(node: Node) -> list[tuple[str, str]]:
    """(field path, source) of every expression in the node's data."""
    found: list[tuple[str, str]] = []
    source = node.data.get("expression")
    if node.action in EXPRESSION_ACTIONS and "expression" in node.data:
        found.append(("data.expression", source if isinstance(source, str) else ""))

    def walk(value: Any, path: str) -> None:
        if isinstance(value, str):
            found.extend((path, match["expr"]) for match in EXPRESSION_TEMPLATE.finditer(value))
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]")

    for key, value in node.data.items():
        if key != "expression" or node.action not in EXPRESSION_ACTIONS:
            walk(value, f"data.{key}")
    return found


def _edges(edges: Any, nodes: Mapping[str, Node], where: str) -> tuple[Edge, ...]:
    if not isinstance(edges, list):
        raise errors.InvalidDeployment(f"{where}: edges must be a list")
    found: list[Edge] = []
    for position, edge in enumerate(edges):
        at = f"{where}: edges[{position}]"
        if not isinstance(edge, dict):
            raise errors.InvalidDeployment(f"{at} must be an object")
        source, target = _end(edge, "source", nodes, at), _end(edge, "target", nodes, at)
        found.append(Edge(source, target, _branch(edge)))
    return tuple(found)


def _end(edge: Mapping[str, Any], end: str, nodes: Mapping[str, Node], at: str) -> str:
    value = edge.get(end)
    if not isinstance(value, str) or value not in nodes:
        raise errors.InvalidDeployment(f"{at}.{end} {value!r} is not a node of the graph")
    return value


def _branch(edge: Mapping[str, Any]) -> bool | None:
    """The result of a condition this edge is taken on (``condition`` or the Studio's
    ``sourceHandle``: true/false), or None for an unconditional edge."""
    value = edge.get("condition", edge.get("sourceHandle"))
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _topological(nodes: list[str], edges: tuple[Edge, ...], where: str) -> list[str]:
    """Kahn's algorithm, ties broken by declaration order so the result is stable."""
    position = {node: index for index, node in enumerate(nodes)}
    successors: dict[str, list[str]] = {node: [] for node in nodes}
    incoming = dict.fromkeys(nodes, 0)
    for edge in edges:
        successors[edge.source].append(edge.target)
        incoming[edge.target] += 1
    ready = [position[node] for node in nodes if incoming[node] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        node = nodes[heapq.heappop(ready)]
        order.append(node)
        for target in successors[node]:
            incoming[target] -= 1
            if incoming[target] == 0:
                heapq.heappush(ready, position[target])
    if len(order) != len(nodes):
        stuck = sorted((node for node in nodes if incoming[node] > 0), key=position.__getitem__)
        raise errors.InvalidDeployment(
            f"{where}: the graph has a cycle through {', '.join(stuck[:10])}",
            {"nodes": stuck[:50]},
        )
    return order
