"""Graph validation at upload: one refusal lists every problem (workflow, node, field)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from compute_worker.adapters.worldcompute.graph.format import parse_graphs
from compute_worker.domain import errors

from .test_graph import TRIGGER, FakeRuntime, action, edge, run_graph


def problems_of(document: Any) -> list[dict[str, Any]]:
    with pytest.raises(errors.InvalidDeployment) as refused:
        parse_graphs(json.dumps(document).encode())
    assert refused.value.code == "invalid_deployment"
    found: list[dict[str, Any]] = refused.value.details["problems"]
    assert refused.value.message.startswith(found[0]["message"])
    return found


def test_every_problem_of_a_graph_is_listed_with_its_node_and_field() -> None:
    document = {
        "name": "bad",
        "nodes": [
            TRIGGER,
            action("fetch", "http_request"),  # no url
            action("typo", "http_requets"),
            {"id": "weird", "type": "banana", "data": {}},
            action("check", "condition", left="{{@later.status}}", operator="=="),
            action("later", "log", message="{{@ghost.x}} {{= fetch.status + nope }}"),
            action("alone", "log"),
            action("shape", "transform"),  # no expression or template
        ],
        "edges": [
            edge("start", "fetch"), edge("fetch", "check"), edge("check", "later"),
            edge("start", "typo"), edge("start", "missing"), edge("start", "shape"),
        ],
    }  # fmt: skip
    found = problems_of(document)
    where = [(p.get("node"), p.get("field")) for p in found]
    assert where == [
        ("fetch", "data.url"),
        ("typo", "data.actionType"),
        ("weird", "type"),
        ("shape", "data.expression"),
        (None, "edges[4].target"),
        ("alone", "edges"),  # unreachable
        ("check", "data.left"),  # a later node
        ("later", "data.message"),  # an unknown node
        ("later", "data.message"),  # an unknown name in the expression
    ]
    assert all(p["workflow"] == "bad" for p in found if "node" in p)
    messages = [p["message"] for p in found]
    assert "http_request needs data.url" in messages[0]
    assert "not reachable from the trigger" in messages[5]
    assert "names a later node 'later'" in messages[6]
    assert "names an unknown node 'ghost'" in messages[7]
    assert "unknown name nope" in messages[8]


def test_trigger_count_and_cycles_are_problems_too() -> None:
    two = {"name": "two", "nodes": [TRIGGER, {**TRIGGER, "id": "again"}], "edges": []}
    none = {"name": "none", "nodes": [action("a", "log")], "edges": []}
    loop = {"name": "loop", "nodes": [TRIGGER, action("a", "log"), action("b", "log")],
            "edges": [edge("start", "a"), edge("a", "b"), edge("b", "a")]}  # fmt: skip
    found = problems_of({"workflows": [two, none, loop, "nope", {"nodes": []}]})
    messages = [p["message"] for p in found]
    assert "needs exactly one trigger node, found 2" in messages[0]
    assert found[0]["triggers"] == ["start", "again"]
    assert "needs exactly one trigger node, found 0" in messages[1]
    assert "cycle through a, b" in messages[2] and found[2]["nodes"] == ["a", "b"]
    assert messages[3] == "workflows[3] must be an object"
    assert messages[4] == "workflows[4].name must be a non-empty string"
    assert len(found) == 6  # the last graph also has no trigger
    with pytest.raises(errors.InvalidDeployment, match=r"\(and 5 more problems\)$"):
        parse_graphs(json.dumps({"workflows": [two, none, loop, "nope", {"nodes": []}]}).encode())


def test_references_to_the_trigger_and_to_every_ancestor_are_accepted() -> None:
    document = {
        "name": "fine",
        "nodes": [
            TRIGGER,
            action("a", "log", message="{{@trigger.input.0}} {{@start:Start.input.1}}"),
            action("b", "condition", expression="a.message != '' and start.input[0] > 1"),
            action("c", "transform", template="{{@a.message}} {{= b.result }}", isResult=True),
        ],
        "edges": [edge("start", "a"), edge("a", "b"), edge("b", "c", condition=True)],
    }
    assert list(parse_graphs(json.dumps(document).encode())) == ["fine"]


async def test_a_graph_deployed_before_the_stricter_checks_still_runs() -> None:
    document = {
        "name": "old",
        "nodes": [TRIGGER, action("a", "log", message="hi {{@b.x}}"), action("b", "log")],
        "edges": [edge("start", "a")],  # b is unreachable, a names it
    }
    raw = json.dumps(document).encode()
    assert len(problems_of(document)) == 2  # refused at upload today
    runtime = FakeRuntime()
    assert await run_graph(document, runtime=runtime) == {
        "outputs": {"start": {"input": []}, "a": {"message": "hi "}}
    }
    assert list(parse_graphs(raw, strict=False)) == ["old"]


def test_literal_urls_the_outbound_policy_refuses_are_problems_at_upload() -> None:
    from compute_worker.domain.outbound import OutboundPolicy

    def fetch(node_id: str, url: str) -> dict[str, Any]:
        return action(node_id, "http_request", url=url)

    document = {"name": "calls", "nodes": [
        TRIGGER, fetch("meta", "http://169.254.169.254/"), fetch("self", "http://127.0.0.1:8080/x"),
        fetch("fine", "https://api.example.com/"), fetch("later", "{{@start.input.0}}"),
        fetch("other", "https://elsewhere.test/"),
    ], "edges": [edge("start", n) for n in ("meta", "self", "fine", "later", "other")]}  # fmt: skip
    policy = OutboundPolicy(("*.example.com", "localhost"), ("localhost:8080",))
    with pytest.raises(errors.InvalidDeployment) as refused:
        parse_graphs(json.dumps(document).encode(), outbound=policy)
    found = [(p["node"], p["field"]) for p in refused.value.details["problems"]]
    assert found == [("meta", "data.url"), ("self", "data.url"), ("other", "data.url")]
    assert parse_graphs(json.dumps(document).encode())  # no policy given: not checked


def test_run_workflow_must_name_a_workflow_of_the_bundle() -> None:
    child = {"name": "child", "nodes": [TRIGGER], "edges": []}
    parent = {"name": "parent", "nodes": [
        TRIGGER,
        action("ok", "run_workflow", workflow="child"),
        action("typo", "run_workflow", workflow="chlid"),
        action("later", "run_workflow", workflow="{{@start.input.0}}"),
    ], "edges": [edge("start", "ok"), edge("ok", "typo"), edge("typo", "later")]}  # fmt: skip
    found = problems_of({"workflows": [parent, child]})
    assert [(p["node"], p["field"]) for p in found] == [("typo", "data.workflow")]
    assert "not a workflow of this bundle" in found[0]["message"]
