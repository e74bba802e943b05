"""The operators of the language: ``+ - * / %``, unary ``-``/``+``, comparisons, ``x[k]``.

Each is a plain function over JSON values, shared by the evaluator (for the Python syntax)
and by the method table (for ``.add()``, ``.get_field()``, ``r.lt()``, ...), so the two
spellings cannot drift apart.

Sizes are checked *before* anything is built: ``'a' * 10000000000`` computes the length it
would have, refuses it, and allocates nothing. Integer results beyond ``MAX_INT`` and
non-finite floats are errors, never silently rounded JSON.
"""

from __future__ import annotations

import operator
import typing as t

from tap_rhttp import errors
from tap_rhttp.expr import times
from tap_rhttp.expr.times import Time
from tap_rhttp.expr.values import (
    JSON,
    _as_int,
    _as_number,
    _build_object,
    _check_array,
    _check_array_size,
    _check_string_size,
    _excerpt,
    _expected,
    _fail,
    _is_number,
    _json_equal,
    _key_text,
    _non_object_non_sequence,
    _number_result,
    _spend,
    reql_type_name,
)

if t.TYPE_CHECKING:
    from collections.abc import Callable

# --------------------------------------------------------------------------------------
# Arithmetic
# --------------------------------------------------------------------------------------


def _arith(op: Callable[[JSON, JSON], JSON], left: JSON, right: JSON) -> int | float:
    try:
        return _number_result(op(left, right))
    except OverflowError:
        raise errors.ExpressionError("Number result is too large.") from None


def _add(left: JSON, right: JSON) -> JSON:
    if isinstance(left, Time):  # a time plus seconds, either way round, as in ReQL
        return _time_plus(left, _as_number(right))
    if _is_number(left) and isinstance(right, Time):
        return _time_plus(right, left)
    if _is_number(left):
        return _arith(operator.add, left, _as_number(right))
    if isinstance(left, str):
        if not isinstance(right, str):
            raise _expected("STRING", right)
        _check_string_size(len(left) + len(right), "`+`")
        return left + right
    if isinstance(left, list):
        if not isinstance(right, list):
            raise _expected("ARRAY", right)
        _check_array_size(len(left) + len(right), "`+`")
        return left + right
    raise _expected("NUMBER", left)


def _sub(left: JSON, right: JSON) -> JSON:
    if isinstance(left, Time):
        if isinstance(right, Time):  # seconds between them, to the millisecond
            return _number_result((left.ms - right.ms) / 1000)
        return _time_plus(left, -_as_number(right))
    return _arith(operator.sub, _as_number(left), _as_number(right))


def _time_plus(time: Time, seconds: int | float) -> Time:
    _build_object(2, "time arithmetic")
    return times.plus_seconds(time, seconds)


def _repeat(sequence: str | list[JSON], times: JSON) -> JSON:
    count = _as_int(times)
    kind = reql_type_name(sequence)
    if count < 0:
        raise errors.ExpressionError(
            f"Cannot repeat a {kind} a negative number of times ({count})."
        )
    size = len(sequence) * count  # checked before anything is built
    if isinstance(sequence, str):
        _check_string_size(size, "`*`")
    else:
        _check_array_size(size, "`*`")
    return sequence * count


def _mul(left: JSON, right: JSON) -> JSON:
    if _is_number(left) and _is_number(right):
        return _arith(operator.mul, left, right)
    if isinstance(left, (str, list)) and _is_number(right):
        return _repeat(left, right)
    if _is_number(left) and isinstance(right, (str, list)):
        return _repeat(right, left)
    raise _expected("NUMBER", right if _is_number(left) else left)


def _div(left: JSON, right: JSON) -> JSON:
    numerator, denominator = _as_number(left), _as_number(right)
    if denominator == 0:
        raise errors.ExpressionError("Cannot divide by zero.")
    return _arith(operator.truediv, numerator, denominator)


def _mod(left: JSON, right: JSON) -> JSON:
    dividend, divisor = _as_int(left), _as_int(right)
    if divisor == 0:
        raise errors.ExpressionError("Cannot take a number modulo 0.")
    remainder = abs(dividend) % abs(divisor)  # C's %: the sign follows the dividend
    return _number_result(-remainder if dividend < 0 else remainder)


def _neg(value: JSON) -> JSON:
    return _number_result(-_as_number(value))


def _pos(value: JSON) -> JSON:
    return _as_number(value)


# --------------------------------------------------------------------------------------
# Comparisons
# --------------------------------------------------------------------------------------

_ORDERINGS: dict[str, Callable[[JSON, JSON], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _compare(op: str, left: JSON, right: JSON) -> bool:
    if op == "==":
        return _json_equal(left, right)
    if op == "!=":
        return not _json_equal(left, right)
    if (_is_number(left) and _is_number(right)) or (
        isinstance(left, str) and isinstance(right, str)
    ):
        return _ORDERINGS[op](left, right)
    if isinstance(left, Time) and isinstance(right, Time):
        return _ORDERINGS[op](left.ms, right.ms)
    culprit = None if left is None or right is None else left
    raise _fail(
        f"Cannot compare {reql_type_name(left)} with {reql_type_name(right)} using `{op}`: "
        "ordering needs two numbers or two strings (or two times).",
        culprit,
    )


# --------------------------------------------------------------------------------------
# Fields and indexes
# --------------------------------------------------------------------------------------


def _get_field(value: JSON, key: str, op: str = "bracket") -> JSON:
    if isinstance(value, dict):
        if key in value:
            return value[key]
        raise errors.NonExistenceError(
            f"No attribute `{_key_text(key)}` in object:\n{_excerpt(value)}"
        )
    if isinstance(value, list):
        # ReQL maps the lookup over the array and skips elements without the field.
        _spend(len(value))
        found = []
        for item in value:
            if isinstance(item, dict):
                if key in item:
                    found.append(item[key])
            elif isinstance(item, list):
                raise errors.ExpressionError(f"Cannot perform {op} on a sequence of sequences.")
            elif item is not None:
                raise _non_object_non_sequence(op, item)
        return _check_array(found, f"`{op}`")
    raise _non_object_non_sequence(op, value)


def _nth(value: JSON, index: JSON, op: str = "bracket") -> JSON:
    position = _as_int(index)
    if isinstance(value, list):
        if -len(value) <= position < len(value):
            return value[position]
        raise errors.NonExistenceError(f"Index out of bounds: {position}")
    if isinstance(value, dict):
        raise errors.ExpressionError(
            f"Cannot use the NUMBER `{position}` as a key of an OBJECT (object keys are strings)."
        )
    raise _non_object_non_sequence(op, value)


def _bracket(value: JSON, key: JSON) -> JSON:
    if isinstance(key, str):
        return _get_field(value, key)
    if _is_number(key):
        return _nth(value, key)
    raise _fail(
        "Expected NUMBER or STRING as second argument to `bracket` but found "
        f"{reql_type_name(key)}.",
        key,
    )
