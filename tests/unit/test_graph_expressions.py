"""The graphs' sandboxed expression language: what it evaluates, what it refuses at
upload, and escape attempts that must end as a clean error (a node error in a run)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from compute_worker.adapters.worldcompute.graph.expressions import (
    ExpressionError,
    check,
    compile_expression,
    evaluate,
    scope,
)
from compute_worker.adapters.worldcompute.graph.format import parse_graphs
from compute_worker.adapters.worldcompute.graph.interpreter import render
from compute_worker.domain import errors
from compute_worker.domain.authoring import FatalError

from .test_graph import TRIGGER, FakeRuntime, action, edge, run_graph

OUTPUTS = {"fetch": {"status": 200, "body": {"items": [1, 2, 3], "name": "Ada"}}}
NAMES = scope(["alice", 5], OUTPUTS)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("fetch.status == 200 and len(fetch.body['items']) > 2", True),
        ("nodes['fetch'].body.name.upper()", "ADA"),
        ("input[1] * 2 + 1", 11),
        ("trigger.input[0]", "alice"),
        ("[x * 10 for x in fetch.body['items'] if x > 1]", [20, 30]),
        ("{'who': input[0], 'n': sum(fetch.body['items'])}", {"who": "alice", "n": 6}),
        ("'big' if input[1] > 3 else 'small'", "big"),
        ("fetch.body.get('missing', null) is null", True),
        ("round(7 / 2) + abs(-1) + max(1, 2) + min([4, 3])", 10),
        ("2 ** 10", 1024),
        ("'a,b'.split(',')", ["a", "b"]),
        ("sorted(fetch.body['items'], reverse=true)", [3, 2, 1]),
        ("str(fetch.status) + '!'", "200!"),
    ],
)
def test_expressions_read_the_input_and_earlier_outputs(source: str, expected: Any) -> None:
    assert evaluate(source, NAMES) == expected


ESCAPES = [
    "().__class__.__bases__[0].__subclasses__()",  # dunder walk to object
    "fetch.__class__",
    "input.__len__()",
    "'x'.__class__.__mro__",
    "getattr(input, '__class__')",
    "__import__('os').system('true')",
    "open('/etc/passwd').read()",
    "eval('1')",
    "exec('x = 1')",
    "type(input)",
    "(lambda: 1)()",
    "'{0.__class__}'.format(input)",
    "fetch.body.items.__self__",
    "[y := 1]",
    "input.append(1)",
    "9 ** 9 ** 9",  # huge exponent
    "2 ** 100000",
    "10 ** 5000 * 10 ** 5000",
    "1 << 100000",
    "'x' * 10 ** 7",  # long strings
    "'x' * 60000 + 'y' * 60000",
    "[0] * 100000",
    "str(9 ** 1000) * 1000",
    "'-'.join(['a'] * 1000)",
    "'a'.center(10 ** 6)",
    "[[x for x in range(10)]]",
    "[x for x in 'a' * 60000 for y in 'b' * 60000]",  # time: far past the step budget
    "[[a, b] for a in fetch.body['items'] * 3000 for b in fetch.body['items'] * 3000]",
    "-" * 1500 + "1",  # deep recursion
    "(" * 250 + "1" + ")" * 250,
    "[" * 60 + "]" * 60,
    "not " * 300 + "true",
    "x" + " + x" * 700,
    "unknown_name + 1",
    "1 / 0",
    "nodes['missing']",
    "int('9' * 5000)",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_escape_attempts_fail_cleanly_and_quickly(source: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ExpressionError):
        evaluate(source, NAMES)
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("", "empty"),
        ("1 +", "invalid syntax"),
        ("x = 1", "invalid syntax"),
        ("a.__class__", "'__class__' is not available"),
        ("_secret", "not available"),
        ("lambda: 1", "Lambda is not available"),
        ("(y := 2)", "NamedExpr is not available"),
        ("1" + " + 1" * 600, "longer than 2000"),
        ("-" * 100 + "1", "nested deeper than 40"),
        ("ghost.status", "unknown name ghost"),
    ],
)
def test_bad_expressions_are_refused_before_running(source: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        check(source, ["fetch"])


def test_comprehension_variables_and_functions_are_not_unknown_names() -> None:
    check("[len(item) for item in fetch.body['items']] + input", ["fetch"])
    assert compile_expression("1 + 1") is compile_expression("1 + 1")  # cached


def test_templates_evaluate_expressions_and_keep_a_single_ones_type() -> None:
    outputs = {"trigger": {"input": ["alice", 5]}, **OUTPUTS}
    assert render("{{= input[1] * 2 }}", outputs) == 10
    assert render("{{=fetch.body.name}} has {{= len(fetch.body['items']) }}", outputs) == (
        "Ada has 3"
    )
    assert render({"list": ["{{= fetch.status > 100 }}"]}, outputs) == {"list": [True]}
    with pytest.raises(ExpressionError):
        render("{{= fetch.__class__ }}", outputs)


def graph(*nodes: dict[str, Any]) -> dict[str, Any]:
    ids = [node["id"] for node in nodes]
    return {
        "name": "expr",
        "nodes": [TRIGGER, *nodes],
        "edges": [
            edge(source, target) for source, target in zip(["start", *ids[:-1]], ids, strict=True)
        ],
    }


def test_every_invalid_expression_of_a_graph_is_listed_at_upload() -> None:
    document = graph(
        action("check", "condition", expression="input[0] ==="),
        action("shape", "transform", expression="nothere + 1"),
        action("say", "log", message="hi {{= __import__('os') }} and {{= check.result }}"),
    )
    with pytest.raises(errors.InvalidDeployment) as refused:
        parse_graphs(json.dumps(document).encode())
    assert refused.value.code == "invalid_deployment"
    problems = refused.value.details["problems"]
    assert [(p["node"], p["field"]) for p in problems] == [
        ("check", "data.expression"),
        ("shape", "data.expression"),
        ("say", "data.message"),
    ]
    assert "unknown name nothere" in problems[1]["message"]
    assert "'check'" in str(refused.value) and "and 2 more" in str(refused.value)


def test_a_condition_or_transform_without_a_string_expression_is_refused() -> None:
    with pytest.raises(errors.InvalidDeployment, match="empty"):
        parse_graphs(json.dumps(graph(action("c", "condition", expression=3))).encode())


async def test_expression_conditions_branch_and_transforms_shape_the_result() -> None:
    document = {
        "name": "expr",
        "nodes": [
            TRIGGER,
            action("big", "condition", expression="input[0] > 10"),
            action("yes", "transform", isResult=True,
                   expression="{'n': input[0], 'twice': input[0] * 2, 'was': big.result}"),
            action("no", "transform", isResult=True, template="small {{= input[0] }}"),
        ],
        "edges": [edge("start", "big"), edge("big", "yes", condition=True),
                  edge("big", "no", condition=False)],
    }  # fmt: skip
    runtime = FakeRuntime()
    assert await run_graph(document, 12, runtime=runtime) == {"n": 12, "twice": 24, "was": True}
    assert runtime.steps[0][2][1]["expression"] == "input[0] > 10"  # the step records it
    assert await run_graph(document, 3, runtime=FakeRuntime()) == "small 3"


async def test_a_failing_expression_is_a_fatal_error_of_its_node_step() -> None:
    document = graph(action("shape", "transform", expression="input[0] ** input[1]"))
    runtime = FakeRuntime()
    with pytest.raises(FatalError, match=r"node shape: .*too large"):
        await run_graph(document, 10, 100000, runtime=runtime)
    assert [name for name, _, _ in runtime.steps] == ["shape"]  # failed as that node's step
