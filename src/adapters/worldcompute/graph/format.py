"""The graph bundle format: Workflow Studio graphs, read and checked in one pass.

A bundle's graph file holds one graph or ``{"workflows": [graph, …]}``. A graph has a
``name``, ``nodes`` (exactly one ``trigger``; ``action`` nodes whose
``data.actionType`` the interpreter runs) and ``edges`` between them, without cycles.
``parse_graphs`` turns the file into :class:`Graph` objects or refuses it with one
``InvalidDeployment`` listing **every** problem in ``details.problems`` (``workflow``,
``node``, ``field``, ``message``; the message of the error is the first problem's);
the upload check and the interpreter both call it, so what was accepted at upload is
what runs. Checked: node and action types, each action's required config, one trigger,
edges between existing nodes, no cycles, no node unreachable from the trigger,
``{{@node…}}`` templates naming a node that runs before (an ancestor), and every
expression (``data.expression`` of conditions and transforms, ``{{= … }}`` templates):
syntax, bounds, and names of ancestor nodes only; a ``Schedule`` trigger's cron
expression, timezone and catch-up policy; the workflow a ``run_workflow`` node names.
"""

from __future__ import annotations

import heapq
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from compute_worker.adapters.cron import CronsimCalendar
from compute_worker.adapters.worldcompute.graph import expressions
from compute_worker.domain import errors
from compute_worker.domain.deployments import DEFAULT_ENTRYPOINTS, WorkflowInfo, check_workflows
from compute_worker.domain.outbound import OutboundPolicy, OutboundRefused
from compute_worker.domain.schedules import (
    CATCH_UP_POLICIES,
    DEFAULT_TIMEZONE,
    Schedule,
    catch_up_policy,
)

NODE_TYPES = ("trigger", "action")
# what the interpreter executes; anything else is refused at upload
ACTION_TYPES = (
    "http_request", "condition", "log", "transform", "wait", "wait_for_hook", "run_workflow",
)  # fmt: skip
DEFAULT_SOURCE = DEFAULT_ENTRYPOINTS["graph"]
# ``{{= expression }}`` inside any string of a node's data (the expression holds no ``}}``)
EXPRESSION_TEMPLATE = re.compile(r"\{\{=(?P<expr>.*?)\}\}", re.DOTALL)
# the actions whose ``data.expression`` is evaluated
EXPRESSION_ACTIONS = ("condition", "transform")
# an action's required config: each entry is a set of alternative fields, one is needed
REQUIRED: dict[str, tuple[tuple[str, ...], ...]] = {
    "http_request": (("url",),),
    "condition": (("expression", "left"),),
    "transform": (("expression", "template"),),
    "wait": (("duration", "seconds"),),
    "run_workflow": (("workflow",),),
}
# ``{{@node…}}`` as the interpreter reads it
LOOKUP_TEMPLATE = re.compile(r"\{\{\s*@(?P<node>[^:.}\s]+)")


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
    schedule: Schedule | None = None  # a ``Schedule`` trigger's calendar

    @property
    def info(self) -> WorkflowInfo:
        """The workflow as a deployment lists it: each action node is a step."""
        return WorkflowInfo(self.name, self.order, self.schedule)


class _Problems:
    """What is wrong with a bundle's graphs, in the order found."""

    def __init__(self, strict: bool, outbound: OutboundPolicy | None = None) -> None:
        self.items: list[dict[str, Any]] = []
        self.strict = strict
        self.outbound = outbound  # where http_request nodes may go (None: not checked)

    def add(self, message: str, *, workflow: str | None = None, node: str | None = None,
            field: str | None = None, **extra: Any) -> None:  # fmt: skip
        if extra.pop("upload_only", False) and not self.strict:
            return
        problem: dict[str, Any] = {"message": message}
        for key, value in (("workflow", workflow), ("node", node), ("field", field)):
            if value is not None:
                problem[key] = value
        self.items.append({**problem, **extra})

    def raise_any(self) -> None:
        if not self.items:
            return
        first = self.items[0]["message"]
        more = len(self.items) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise errors.InvalidDeployment(first + suffix, {"problems": self.items})


def parse_graphs(
    raw: bytes, source: str = DEFAULT_SOURCE, *, strict: bool = True,
    outbound: OutboundPolicy | None = None,
) -> dict[str, Graph]:  # fmt: skip
    """The graphs of the file ``source`` by name, in file order.

    ``strict=False`` (the interpreter, reading a deployment accepted earlier) skips the
    checks added after the first release — required config, reachability, references,
    expressions and literal URLs refused by ``outbound`` — so a graph deployed before
    them still runs; what it needs to be
    walked at all (types, one trigger, edges, no cycle) is always checked."""
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
    problems = _Problems(strict, outbound)
    graphs = [_graph(item, index, problems) for index, item in enumerate(items)]
    _check_children(items, graphs, problems)
    problems.raise_any()
    found = [graph for graph in graphs if graph is not None]
    check_workflows(tuple(graph.info for graph in found), "the bundle defines no workflow graph")
    return {graph.name: graph for graph in found}


def _graph(item: Any, index: int, problems: _Problems) -> Graph | None:
    where = f"workflows[{index}]"
    if not isinstance(item, dict):
        problems.add(f"{where} must be an object", field=where)
        return None
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.add(f"{where}.name must be a non-empty string", field=f"{where}.name")
        label = where
    else:
        label = name
        where = f"workflow {name!r}"
    before = len(problems.items)
    nodes = _nodes(item.get("nodes"), where, label, problems)
    edges = _edges(item.get("edges", []), nodes, where, label, problems)
    if nodes is None or edges is None:
        return None
    order = _topological(list(nodes), edges, where, label, problems)
    triggers = [node.id for node in nodes.values() if node.type == "trigger"]
    if order is not None and len(triggers) == 1:
        ancestors = _ancestors(order, edges)
        _check_reachable(nodes, triggers[0], ancestors, where, label, problems)
        _check_references(nodes, ancestors, where, label, problems)
    schedule = _schedule(nodes[triggers[0]], label, problems) if len(triggers) == 1 else None
    if len(problems.items) > before or order is None:
        return None
    actions = tuple(node_id for node_id in order if nodes[node_id].type == "action")
    return Graph(str(name), triggers[0], nodes, edges, actions, schedule)


def _check_children(items: list[Any], graphs: list[Graph | None], problems: _Problems) -> None:
    """A ``run_workflow`` node must name a workflow of the same bundle (unless templated)."""
    names = {item.get("name") for item in items if isinstance(item, dict)}
    for graph in (found for found in graphs if found is not None):
        for node in graph.nodes.values():
            wanted = node.data.get("workflow")
            if node.action != "run_workflow" or not isinstance(wanted, str) or "{{" in wanted:
                continue
            if wanted.strip() not in names:
                problems.add(
                    f"workflow {graph.name!r}: node {node.id!r}: run_workflow names "
                    f"{wanted!r}, which is not a workflow of this bundle",
                    workflow=graph.name, node=node.id, field="data.workflow", upload_only=True,
                )  # fmt: skip


def _schedule(trigger: Node, label: str, problems: _Problems) -> Schedule | None:
    """A trigger with ``triggerType: Schedule`` starts the graph on ``scheduleCron``
    (read in ``scheduleTimezone``, UTC by default; ``scheduleCatchUp``: skip|one|all)."""
    data = trigger.data
    if str(data.get("triggerType", "")).lower() != "schedule":
        return None
    cron, zone = data.get("scheduleCron"), data.get("scheduleTimezone") or DEFAULT_TIMEZONE
    catch_up = data.get("scheduleCatchUp")
    where = f"workflow {label!r}: trigger {trigger.id!r}"
    found = len(problems.items)
    if not isinstance(cron, str) or not cron.strip():
        problems.add(f"{where}: a Schedule trigger needs data.scheduleCron", workflow=label,
                     node=trigger.id, field="data.scheduleCron")  # fmt: skip
    elif not isinstance(zone, str):
        problems.add(f"{where}: data.scheduleTimezone must be a string", workflow=label,
                     node=trigger.id, field="data.scheduleTimezone")  # fmt: skip
    else:
        trouble = CronsimCalendar().problem(cron, zone)
        if trouble is not None:
            field = "data.scheduleTimezone" if "timezone" in trouble else "data.scheduleCron"
            problems.add(f"{where}: {trouble}", workflow=label, node=trigger.id, field=field)
    if catch_up is not None and catch_up_policy(catch_up) is None:
        problems.add(
            f"{where}: data.scheduleCatchUp must be one of {', '.join(CATCH_UP_POLICIES)}",
            workflow=label, node=trigger.id, field="data.scheduleCatchUp",
        )  # fmt: skip
    if len(problems.items) > found:
        return None
    return Schedule(str(cron).strip(), str(zone), catch_up_policy(catch_up))


def _nodes(nodes: Any, where: str, label: str, problems: _Problems) -> dict[str, Node] | None:
    """Node id → node, in declaration order (None when ``nodes`` is not a list)."""
    if not isinstance(nodes, list):
        problems.add(f"{where}: nodes must be a list", workflow=label, field="nodes")
        return None
    found: dict[str, Node] = {}
    for position, node in enumerate(nodes):
        at = f"{where}: nodes[{position}]"
        field = f"nodes[{position}]"
        if not isinstance(node, dict):
            problems.add(f"{at} must be an object", workflow=label, field=field)
            continue
        node_id, node_type, data = node.get("id"), node.get("type"), node.get("data", {})
        if not isinstance(node_id, str) or not node_id:
            problems.add(f"{at}.id must be a non-empty string", workflow=label, field=f"{field}.id")
            continue
        if node_id in found:
            problems.add(f"{where}: duplicate node id {node_id!r}", workflow=label,
                         node=node_id, field="id")  # fmt: skip
            continue
        if node_type not in NODE_TYPES:
            problems.add(f"{at} ({node_id!r}): type must be trigger or action", workflow=label,
                         node=node_id, field="type")  # fmt: skip
            continue
        if not isinstance(data, dict):
            problems.add(f"{at} ({node_id!r}): data must be an object", workflow=label,
                         node=node_id, field="data")  # fmt: skip
            continue
        found[node_id] = Node(node_id, node_type, dict(data))
        if node_type == "action":
            _check_action(found[node_id], at, label, problems)
    triggers = [node.id for node in found.values() if node.type == "trigger"]
    if len(triggers) != 1:
        problems.add(f"{where}: needs exactly one trigger node, found {len(triggers)}",
                     workflow=label, field="nodes", triggers=triggers)  # fmt: skip
    return found


def _check_action(node: Node, at: str, label: str, problems: _Problems) -> None:
    action = node.data.get("actionType")
    if action not in ACTION_TYPES:
        problems.add(
            f"{at} ({node.id!r}): data.actionType must be one of {', '.join(ACTION_TYPES)}, "
            f"not {action!r}",
            workflow=label, node=node.id, field="data.actionType", allowed=list(ACTION_TYPES),
        )  # fmt: skip
        return
    url = node.data.get("url")
    if action == "http_request" and problems.outbound is not None and isinstance(url, str) \
            and url.strip() and "{{" not in url:  # fmt: skip
        try:
            problems.outbound.check_literal(url)
        except OutboundRefused as refused:
            problems.add(f"{at} ({node.id!r}): {refused.message}", workflow=label, node=node.id,
                         field="data.url", upload_only=True)  # fmt: skip
    for alternatives in REQUIRED.get(str(action), ()):
        present = [key for key in alternatives if node.data.get(key) not in (None, "")]
        if not present:
            fields = " or ".join(f"data.{key}" for key in alternatives)
            problems.add(
                f"{at} ({node.id!r}): {action} needs {fields}",
                workflow=label, node=node.id, field=f"data.{alternatives[0]}", upload_only=True,
            )  # fmt: skip


def _edges(
    edges: Any, nodes: Mapping[str, Node] | None, where: str, label: str, problems: _Problems
) -> tuple[Edge, ...] | None:
    if not isinstance(edges, list):
        problems.add(f"{where}: edges must be a list", workflow=label, field="edges")
        return None
    found: list[Edge] = []
    for position, edge in enumerate(edges):
        at = f"{where}: edges[{position}]"
        if not isinstance(edge, dict):
            problems.add(f"{at} must be an object", workflow=label, field=f"edges[{position}]")
            continue
        ends: list[Any] = []
        for end in ("source", "target"):
            value = edge.get(end)
            if nodes is not None and (not isinstance(value, str) or value not in nodes):
                problems.add(f"{at}.{end} {value!r} is not a node of the graph",
                             workflow=label, field=f"edges[{position}].{end}")  # fmt: skip
            ends.append(value)
        if nodes is not None and all(isinstance(e, str) and e in nodes for e in ends):
            found.append(Edge(str(ends[0]), str(ends[1]), _branch(edge)))
    return tuple(found)


def _ancestors(order: list[str], edges: tuple[Edge, ...]) -> dict[str, set[str]]:
    """Each node's ancestors: the nodes that run before it whenever it runs."""
    parents: dict[str, list[str]] = {node: [] for node in order}
    for edge in edges:
        parents[edge.target].append(edge.source)
    found: dict[str, set[str]] = {}
    for node in order:  # topological: every parent is done before its children
        found[node] = set()
        for parent in parents[node]:
            found[node] |= found[parent] | {parent}
    return found


def _check_reachable(nodes: Mapping[str, Node], trigger: str, ancestors: dict[str, set[str]],
                     where: str, label: str, problems: _Problems) -> None:  # fmt: skip
    for node in nodes.values():
        if node.id != trigger and trigger not in ancestors[node.id]:
            problems.add(f"{where}: node {node.id!r} is not reachable from the trigger",
                         workflow=label, node=node.id, field="edges", upload_only=True)  # fmt: skip


def _check_references(nodes: Mapping[str, Node], ancestors: dict[str, set[str]],
                      where: str, label: str, problems: _Problems) -> None:  # fmt: skip
    """Templates and expressions may name only the trigger and the node's ancestors."""
    for node in nodes.values():
        earlier = ancestors[node.id]
        for field, text in _strings(node):
            for match in LOOKUP_TEMPLATE.finditer(text):
                ref = match["node"]
                if ref == "trigger" or ref in earlier:
                    continue
                why = "a later node" if ref in nodes else "an unknown node"
                problems.add(f"{where}: node {node.id!r} {field}: the template names {why} "
                             f"{ref!r}", workflow=label, node=node.id, field=field,
                             upload_only=True)  # fmt: skip
        for field, source in _expressions(node):
            try:
                expressions.check(source, earlier)
            except expressions.ExpressionError as exc:
                problems.add(
                    f"{where}: node {node.id!r} {field}: invalid expression: {exc}",
                    workflow=label, node=node.id, field=field, upload_only=True,
                )  # fmt: skip


def _strings(node: Node) -> list[tuple[str, str]]:
    """(field path, text) of every string in the node's data but a raw expression."""
    found: list[tuple[str, str]] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, str):
            found.append((path, value))
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


def _expressions(node: Node) -> list[tuple[str, str]]:
    """(field path, source) of every expression in the node's data."""
    found: list[tuple[str, str]] = []
    source = node.data.get("expression")
    if node.action in EXPRESSION_ACTIONS and "expression" in node.data:
        found.append(("data.expression", source if isinstance(source, str) else ""))
    for field, text in _strings(node):
        found.extend((field, match["expr"]) for match in EXPRESSION_TEMPLATE.finditer(text))
    return found


def _branch(edge: Mapping[str, Any]) -> bool | None:
    """The result of a condition this edge is taken on (``condition`` or the Studio's
    ``sourceHandle``: true/false), or None for an unconditional edge."""
    value = edge.get("condition", edge.get("sourceHandle"))
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _topological(nodes: list[str], edges: tuple[Edge, ...], where: str, label: str,
                 problems: _Problems) -> list[str] | None:  # fmt: skip
    """Kahn's algorithm, ties broken by declaration order so the result is stable; None
    (and a problem) when the graph has a cycle."""
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
        problems.add(f"{where}: the graph has a cycle through {', '.join(stuck[:10])}",
                     workflow=label, field="edges", nodes=stuck[:50])  # fmt: skip
        return None
    return order
