"""Evaluation: a dispatch table from node type to handler, over JSON values only.

The tree was checked by :mod:`tap_rhttp.expr.checker`, so every node here has a handler;
a node without one fails closed all the same. Each node is evaluated at most once (the
language has no loops and no functions), and the checker bounded the depth, so the
recursion here is shallow; the loops over *values*, which may be deep and large, are
iterative and spend from the evaluation's budget (:mod:`tap_rhttp.expr.values`).
"""

from __future__ import annotations

import ast
import time
import typing as t

from tap_rhttp import errors
from tap_rhttp.expr import times
from tap_rhttp.expr.functions import (
    _METHODS,
    _R_FUNCTIONS,
    _bind_arguments,
    _is_r,
    _lazy_and,
    _lazy_or,
)
from tap_rhttp.expr.operators import _add, _bracket, _compare, _div, _mod, _mul, _neg, _pos, _sub
from tap_rhttp.expr.times import Time
from tap_rhttp.expr.values import (
    _BUDGET,
    JSON,
    _Budget,
    _build_array,
    _build_object,
    _fail,
    _key_text,
    _truthy,
    _without_times,
    reql_type_name,
)

if t.TYPE_CHECKING:
    from collections.abc import Callable, Mapping


class _Evaluator:
    """Evaluates one checked tree against one environment, at one ``r.now()``."""

    __slots__ = ("_now", "env", "made_time")

    def __init__(self, env: Mapping[str, JSON], now: Time | None) -> None:
        self.env = env
        self._now = now
        self.made_time = False  # some node evaluated to a time: the result may hold one

    def eval(self, node: ast.expr | None) -> JSON:
        handler = _HANDLERS.get(type(node))
        if handler is None:  # unreachable after the check; fail closed all the same
            raise errors.ExpressionError(f"Cannot evaluate a {type(node).__name__} node.")
        value = handler(self, node)
        if type(value) is Time:
            self.made_time = True
        return value

    def now(self) -> Time:
        """The instant of ``r.now()``: the caller's, or the clock's, read once."""
        if self._now is None:
            self._now = times.epoch_time(time.time())
        return self._now


def _eval_constant(ev: _Evaluator, node: ast.Constant) -> JSON:
    return node.value


def _eval_name(ev: _Evaluator, node: ast.Name) -> JSON:
    try:
        return ev.env[node.id]
    except KeyError:
        raise errors.ExpressionError(f"`{node.id}` is not available here.") from None


def _eval_list(ev: _Evaluator, node: ast.List) -> JSON:
    _build_array(len(node.elts), "a list literal")
    return [ev.eval(item) for item in node.elts]


def _eval_dict(ev: _Evaluator, node: ast.Dict) -> JSON:
    _build_object(len(node.keys), "a dict literal")
    result: dict[str, JSON] = {}
    for key_node, value_node in zip(node.keys, node.values, strict=True):
        key = ev.eval(key_node)
        if not isinstance(key, str):
            raise _fail(f"Object keys must be strings, not {reql_type_name(key)}.", key)
        if key in result:
            raise errors.ExpressionError(f"Duplicate key `{_key_text(key)}` in object literal.")
        result[key] = ev.eval(value_node)
    return result


def _eval_subscript(ev: _Evaluator, node: ast.Subscript) -> JSON:
    return _bracket(ev.eval(node.value), ev.eval(node.slice))


_BINARY: dict[type[ast.operator], Callable[[JSON, JSON], JSON]] = {
    ast.Add: _add,
    ast.Sub: _sub,
    ast.Mult: _mul,
    ast.Div: _div,
    ast.Mod: _mod,
}


def _eval_binop(ev: _Evaluator, node: ast.BinOp) -> JSON:
    if isinstance(node.op, (ast.BitAnd, ast.BitOr)):  # ReQL's & and |: and_/or_
        lazy = _lazy_and if isinstance(node.op, ast.BitAnd) else _lazy_or
        return lazy(ev, None, [node.left, node.right])
    return _BINARY[type(node.op)](ev.eval(node.left), ev.eval(node.right))


def _eval_unaryop(ev: _Evaluator, node: ast.UnaryOp) -> JSON:
    value = ev.eval(node.operand)
    if isinstance(node.op, ast.USub):
        return _neg(value)
    if isinstance(node.op, ast.UAdd):
        return _pos(value)
    return not _truthy(value)  # `not` and ReQL's `~`


def _eval_boolop(ev: _Evaluator, node: ast.BoolOp) -> JSON:
    lazy = _lazy_and if isinstance(node.op, ast.And) else _lazy_or
    return lazy(ev, None, node.values)


_COMPARISONS: dict[type[ast.cmpop], str] = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
}


def _eval_compare(ev: _Evaluator, node: ast.Compare) -> JSON:
    left = ev.eval(node.left)
    for op, comparator in zip(node.ops, node.comparators, strict=True):
        right = ev.eval(comparator)
        if not _compare(_COMPARISONS[type(op)], left, right):
            return False
        left = right
    return True


def _eval_ifexp(ev: _Evaluator, node: ast.IfExp) -> JSON:
    return ev.eval(node.body) if _truthy(ev.eval(node.test)) else ev.eval(node.orelse)


def _eval_call(ev: _Evaluator, node: ast.Call) -> JSON:
    func = t.cast("ast.Attribute", node.func)
    if _is_r(func.value):
        entry = _R_FUNCTIONS[func.attr]
        return entry.call(ev, None, _bind_arguments(node, entry))
    entry = _METHODS[func.attr]
    return entry.call(ev, func.value, _bind_arguments(node, entry))


_HANDLERS: dict[type[t.Any], Callable[[_Evaluator, t.Any], JSON]] = {
    ast.Constant: _eval_constant,
    ast.Name: _eval_name,
    ast.List: _eval_list,
    ast.Dict: _eval_dict,
    ast.Subscript: _eval_subscript,
    ast.BinOp: _eval_binop,
    ast.UnaryOp: _eval_unaryop,
    ast.BoolOp: _eval_boolop,
    ast.Compare: _eval_compare,
    ast.IfExp: _eval_ifexp,
    ast.Call: _eval_call,
}


def _evaluate(body: ast.expr, env: Mapping[str, JSON], now: Time | None) -> JSON:
    """Evaluate a checked tree with a fresh budget (see :meth:`Expression.evaluate`).

    Times do not leave the evaluator: in the result, each is its ISO 8601 text.
    """
    token = _BUDGET.set(_Budget())
    try:
        evaluator = _Evaluator(env, now)
        result = evaluator.eval(body)
        return _without_times(result) if evaluator.made_time else result
    except (RecursionError, MemoryError) as exc:
        raise errors.ExpressionError(
            f"The expression could not be evaluated ({type(exc).__name__})."
        ) from None
    finally:
        _BUDGET.reset(token)
