"""The graphs' expression language: a sandboxed subset of Python expressions.

Conditions (``data.expression``), transforms (``data.expression``) and ``{{= … }}``
templates are evaluated by `simpleeval <https://pypi.org/project/simpleeval/>`_: it
walks the parsed syntax tree itself (no ``eval``/``compile``), refuses ``_``-prefixed
attributes, and its syntax is the Python expression syntax a workflow author already
knows. On top of it this module narrows what an expression can reach and spend:

- names: ``input`` (the run's input list), ``trigger`` (``{"input": [...]}``), ``nodes``
  (earlier nodes' outputs by id), each earlier node whose id is an identifier, the
  constants ``true false null`` (and ``True False None``), and :data:`FUNCTIONS`;
- attributes: ``x.key`` reads a dict key; a few methods of str/dict (:data:`METHODS`),
  nothing else;
- bounds, all deterministic so a replay evaluates exactly as the first run did:
  source ≤ :data:`MAX_SOURCE` characters, syntax tree depth ≤ :data:`MAX_DEPTH`,
  :data:`MAX_OPERATIONS` evaluation steps, strings ≤ :data:`MAX_TEXT` characters,
  collections ≤ :data:`MAX_ITEMS` items, integers ≤ :data:`MAX_INT_BITS` bits.

:func:`compile_expression` checks an expression at upload (syntax, bounds, names);
:func:`evaluate` runs one. Both raise :class:`ExpressionError`.
"""

from __future__ import annotations

import ast
import functools
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import simpleeval

MAX_SOURCE = 2000
MAX_DEPTH = 40
MAX_OPERATIONS = 20_000
MAX_TEXT = 100_000
MAX_ITEMS = 10_000
MAX_INT_BITS = 4096

CONSTANTS: dict[str, Any] = {
    "true": True, "false": False, "null": None, "True": True, "False": False, "None": None,
}  # fmt: skip
# the run's values an expression sees besides node ids
SCOPE_NAMES = ("input", "trigger", "nodes")


class ExpressionError(ValueError):
    """An expression that cannot be compiled or evaluated; the message says why."""


def _too_big(value: Any) -> str | None:
    if isinstance(value, str | bytes) and len(value) > MAX_TEXT:
        return f"a string longer than {MAX_TEXT} characters"
    if isinstance(value, list | tuple | dict | set) and len(value) > MAX_ITEMS:
        return f"a collection of more than {MAX_ITEMS} items"
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        return f"an integer of more than {MAX_INT_BITS} bits"
    return None


def _checked(value: Any) -> Any:
    problem = _too_big(value)
    if problem is not None:
        raise ExpressionError(f"the expression builds {problem}")
    return value


def _power(base: Any, exponent: Any) -> Any:
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and abs(base) > 1
        and exponent * base.bit_length() > MAX_INT_BITS
    ):
        raise ExpressionError(f"{base} ** {exponent} is too large")
    return base**exponent


def _times(left: Any, right: Any) -> Any:
    for sequence, count in ((left, right), (right, left)):
        limit = MAX_TEXT if isinstance(sequence, str) else MAX_ITEMS
        if (
            isinstance(sequence, str | list | tuple)
            and isinstance(count, int)
            and count * len(sequence) > limit
        ):
            raise ExpressionError("the expression repeats a sequence too many times")
    return _checked(left * right)


def _plus(left: Any, right: Any) -> Any:
    return _checked(left + right)


def _shift(shift: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def checked(left: Any, right: Any) -> Any:
        if isinstance(right, int) and abs(right) > MAX_INT_BITS:
            raise ExpressionError("the shift is too large")
        return _checked(shift(left, right))

    return checked


OPERATORS: dict[type, Callable[..., Any]] = {
    ast.Add: _plus, ast.Sub: operator.sub, ast.Mult: _times, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: _power,
    ast.LShift: _shift(operator.lshift), ast.RShift: _shift(operator.rshift),
    ast.BitAnd: operator.and_, ast.BitOr: operator.or_, ast.BitXor: operator.xor,
    ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_,
    ast.Invert: operator.invert,
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b, ast.Is: operator.is_, ast.IsNot: operator.is_not,
}  # fmt: skip


def _text(value: Any) -> str:
    text = str(value)
    _checked(text)
    return text


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": len, "str": _text, "int": int, "float": float, "bool": bool, "round": round,
    "abs": abs, "min": min, "max": max, "sum": sum, "sorted": sorted, "any": any, "all": all,
    "list": list, "dict": dict,
}  # fmt: skip

# the only methods an expression may call, by the type they belong to
METHODS: dict[type, frozenset[str]] = {
    str: frozenset({
        "lower", "upper", "strip", "lstrip", "rstrip", "startswith", "endswith", "split",
        "title", "capitalize", "count", "find", "isdigit", "isalpha", "isalnum",
    }),
    dict: frozenset({"get", "keys", "values", "items"}),
    list: frozenset({"count", "index"}),
}  # fmt: skip


class _Evaluator(simpleeval.EvalWithCompoundTypes):  # type: ignore[misc]
    """simpleeval, with an operation budget, size checks and dict-key-only attributes."""

    def __init__(self, names: dict[str, Any]) -> None:
        super().__init__(operators=dict(OPERATORS), functions=dict(FUNCTIONS), names=names)
        self.functions.pop("tuple", None)
        self.functions.pop("set", None)
        self.operations = 0

    def _eval(self, node: ast.AST) -> Any:
        self.operations += 1
        if self.operations > MAX_OPERATIONS:
            raise ExpressionError(f"the expression takes more than {MAX_OPERATIONS} steps")
        return _checked(super()._eval(node))

    def _eval_attribute(self, node: ast.Attribute) -> Any:
        if node.attr.startswith("_"):
            raise ExpressionError(f"attribute {node.attr!r} is not available")
        value = self._eval(node.value)
        if isinstance(value, dict) and node.attr in value:
            return value[node.attr]
        if node.attr in METHODS.get(type(value), frozenset()):
            return getattr(value, node.attr)
        if isinstance(value, dict):
            raise ExpressionError(f"no key {node.attr!r}")
        raise ExpressionError(f"{type(value).__name__} has no attribute {node.attr!r}")


def _depth(node: ast.AST) -> int:
    """The depth of the tree under ``node``, without recursion (deep trees are the point)."""
    deepest, pending = 0, [(node, 1)]
    while pending:
        current, level = pending.pop()
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            break
        pending.extend((child, level + 1) for child in ast.iter_child_nodes(current))
    return deepest


@functools.lru_cache(maxsize=2048)
def compile_expression(source: str) -> ast.expr:
    """The checked syntax tree of ``source``; :class:`ExpressionError` when it is not one
    expression of the language within the bounds."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("the expression is empty")
    if len(source) > MAX_SOURCE:
        raise ExpressionError(f"the expression is longer than {MAX_SOURCE} characters")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"invalid syntax: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        raise ExpressionError("the expression is nested too deeply") from None
    if _depth(tree) > MAX_DEPTH:
        raise ExpressionError(f"the expression is nested deeper than {MAX_DEPTH} levels")
    for node in ast.walk(tree):
        if isinstance(node, ast.Lambda | ast.NamedExpr | ast.Await | ast.Yield | ast.YieldFrom):
            raise ExpressionError(f"{type(node).__name__} is not available in expressions")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise ExpressionError(f"attribute {node.attr!r} is not available")
        if isinstance(node, ast.Name) and node.id.startswith("_"):
            raise ExpressionError(f"name {node.id!r} is not available")
    return tree.body


def free_names(tree: ast.expr) -> set[str]:
    """The names ``tree`` reads that neither a comprehension nor the language defines."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.comprehension):
            bound.update(
                target.id for target in ast.walk(node.target) if isinstance(target, ast.Name)
            )
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    return used - bound - set(CONSTANTS) - set(FUNCTIONS)


def check(source: str, known: Iterable[str]) -> None:
    """Compile ``source`` and refuse names other than the scope's and ``known`` node ids."""
    tree = compile_expression(source)
    unknown = sorted(free_names(tree) - set(SCOPE_NAMES) - set(known))
    if unknown:
        raise ExpressionError(f"unknown name{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")


def scope(run_input: list[Any], outputs: Mapping[str, Any]) -> dict[str, Any]:
    """The names an expression sees: the input, ``trigger``, ``nodes`` and each node id."""
    names: dict[str, Any] = {
        node_id: output for node_id, output in outputs.items() if node_id.isidentifier()
    }
    names.update(CONSTANTS)
    names.update(input=run_input, trigger={"input": run_input}, nodes=dict(outputs))
    return names


def evaluate(source: str, names: dict[str, Any]) -> Any:
    """The value of ``source`` over ``names``; :class:`ExpressionError` on any failure."""
    tree = compile_expression(source)
    try:
        return _Evaluator(names).eval(source, previously_parsed=tree)
    except ExpressionError:
        raise
    except simpleeval.NameNotDefined as exc:
        raise ExpressionError(f"unknown name {exc.name}") from None
    except simpleeval.FunctionNotDefined as exc:
        raise ExpressionError(f"unknown function {exc.func_name}") from None
    except simpleeval.InvalidExpression as exc:
        raise ExpressionError(str(exc)) from None
    except RecursionError:
        raise ExpressionError("the expression recurses too deeply") from None
    except (ArithmeticError, TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
        raise ExpressionError(f"{type(exc).__name__}: {exc}") from None
