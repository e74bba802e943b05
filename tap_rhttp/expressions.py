r"""Page and template expressions: the Python spelling of ReQL, parsed and checked, never run.

Why this module exists
======================

RethinkDB's ``r.http`` takes ``page=lambda info: info['body']['meta']['next'].default(None)``:
a ReQL function that the server evaluates after each page. A tap's config is JSON, so the
same function reaches us as text. This module turns that text into an :class:`Expression`
once, when the config is loaded, and evaluates it against JSON values after each page
(``info = {params, header, body}``) and, later, in ``{{ expr }}`` templates that see other
names (``item``, ``row``, ``bookmark``, ``config``, ``env``).

It works in three stages, each with one job (jmespath's lexer/parser/visitor split):

1. **Parse**: after cheap guards on the raw text (length, and an upper bound on the nesting
   that the parser would have to recurse through), ``ast.parse(source, mode="eval")``.
2. **Check**: an explicit, iterative walk over the tree against an allowlist. Every node
   type has an entry in a table; anything without one is rejected, with the expression
   printed and a caret under the offending column
   (:class:`~tap_rhttp.errors.ExpressionSyntaxError`).
   Method names are static, so an unknown method is a load-time error too.
3. **Evaluate**: a dispatch table from node type to handler, over JSON values only (dict
   with str keys, list, str, int, float, bool, None). The depth check in stage 2 bounds the
   recursion; JSON values of any depth are walked iteratively (equality, ``merge``,
   ``coerce_to('string')``, message excerpts).

What was rejected, and why
==========================

- ``eval``/``exec``/``compile``: config text would run as Python; every sandbox built on a
  real interpreter has been escaped (``().__class__.__bases__[0].__subclasses__()``).
- simpleeval: it calls Python's operators and methods on real objects behind a denylist,
  and has Python's semantics, not ReQL's: ``0`` and ``''`` are falsy, a missing key is a
  ``KeyError``, there is no ``.default()``, and ``'a' * 10**10`` is only caught by its own
  heuristics. Pasting a line from the RethinkDB docs must mean what it means there.
- jmespath / JSONPath: a different language from the one the seed page documents, and no
  arithmetic (``info['params']['page'] + 1``).
- Python's ``re`` for ``.match()``: it backtracks. Measured on this project's limits,
  ``(\w+)=(\d+)$`` takes 0.7 s on 10 kB of text and ``a*a*a*b`` nearly 1 s on 300 characters;
  nested-quantifier heuristics do not catch the polynomial cases. ``.match()`` therefore
  runs on a small linear-time matcher (a Pike VM, like RE2, which RethinkDB itself uses)
  over ``re``'s own parser output, with a step budget. Features RE2 lacks are rejected
  (backreferences, lookaround, conditionals, atomic groups, possessive quantifiers).

The language
============

- An optional ``lambda info:`` prefix (one lambda, at the top, whose single parameter is one
  of the allowed names), so lines can be pasted from the RethinkDB docs.
- Names: the allowed names (``info`` for ``page``), and ``r`` only as ``r.<function>(...)``.
  Literals: numbers, strings, ``None``/``True``/``False``, lists, dicts with string keys.
- ``x['key']`` and ``x[0]`` (negative indexes count from the end), constant or computed.
  ReQL's missing-field rules: a missing key, an index out of bounds, or a subscript of
  ``null`` is a :class:`~tap_rhttp.errors.NonExistenceError` (``No attribute `next` in
  object: ...``), which ``.default(x)`` absorbs. A string key on an array reads that field of
  each object in it, skipping those without it (ReQL's ``bracket`` on a sequence).
  Subscripting a number, string or bool is an :class:`~tap_rhttp.errors.ExpressionError`.
- As in ReQL, any type error whose culprit is ``null`` is a non-existence error, so
  ``(info['body']['total'] + 1).default(0)`` works when ``total`` is null.
- ``+ - * / %`` and unary ``-``/``+`` on numbers (bool is not a number); ``+`` also joins
  two strings or two arrays; ``*`` repeats a string or array by an integer, checked against
  the size limits *before* anything is built. ``%`` takes integers and truncates toward
  zero, as ReQL does. Integral results are ints; integer results beyond ``MAX_INT`` and
  non-finite floats are errors. ``**`` and ``//`` are rejected at load: ReQL has neither,
  and ``**`` is the shortest road to a huge number.
- ``== != < <= > >=`` (chains too); ``==`` is JSON equality (``True != 1``); ordering only
  between two numbers or two strings.
- ``and``, ``or``, ``not``, ``a if c else b``, and ReQL's Python operators ``&``, ``|``,
  ``~`` with the same meaning, all short-circuiting, with ReQL truthiness: only ``False``
  and ``None`` are falsy (``0`` and ``''`` are true). ``and``/``or`` return an operand.
- f-strings, slices ``a[1:2]`` (use ``.slice(1, 2)``), comprehensions, tuples, sets,
  walrus, star-args, ``**kwargs``, attribute access and any other name are rejected at load.

Methods and functions
=====================

Arity is checked at load. "seq" means array; "str" string; "obj" object. Every method
``.m(a, ...)`` listed with (r) is also callable as ``r.m(x, a, ...)``.

==================================  ================  ============================================
call                                receiver          result
==================================  ================  ============================================
``.default(x)``                     any               the receiver, or ``x`` (evaluated only then)
                                                      if the receiver is null or raised a
                                                      non-existence error; other errors pass
``.count()`` / ``.count(x)``        seq, str, obj     length / number of elements equal to ``x``
``.is_empty()``                     seq, str, obj     ``count() == 0``
``.coerce_to(type)``                any               ``'string'`` (JSON text; numbers shortest,
                                                      ints without ``.0``), ``'number'`` (a JSON
                                                      number in a string), ``'array'`` (obj to
                                                      ``[[k, v], ...]``), ``'object'`` (from
                                                      pairs), ``'bool'``, identity; any case
``.type_of()``                      any               ``'NUMBER'``, ``'OBJECT'``, ... (ReQL's)
``.keys()`` / ``.values()``         obj               sorted by key, as ReQL orders objects
``.has_fields(k, ...)``             obj, seq          obj: every key present and not null; seq:
                                                      the objects that have them
``.get_field(k)``                   obj, seq          same as ``x[k]``
``.nth(i)``                         seq               same as ``x[i]``
``.contains(x, ...)``               seq, str          every ``x`` is an element / a substring
``.append(x)``                      seq               a new array
``.merge(obj, ...)``                obj, seq          a new object, merged deeply (ReQL); on an
                                                      array, each element is merged
``.slice(start, end=None)``         seq, str          Python slice bounds (negative from the end)
``.limit(n)`` / ``.skip(n)``        seq               first ``n`` / all but the first ``n``
``.sum()``                          seq               sum of numbers
``.split(sep, max_splits)``         str               ReQL split: ``None`` splits on whitespace
                                                      dropping empties; ``''`` into characters;
                                                      ``max_splits`` -1 or ``None``: no limit
``.match(regex)``                   str               null, or ``{str, start, end, groups}``;
                                                      each group ``{str, start, end}`` or null;
                                                      offsets in characters
``.upcase()`` / ``.downcase()``     str               ASCII letters only, as in ReQL
``.to_json_string()``               any               compact JSON text, keys sorted; alias
                                                      ``.to_json()``
``.add(x, ...)`` (r)                num, str, seq     ``+``
``.sub/.mul/.div(x, ...)`` (r)      num               ``- * /`` (``.mul`` also repeats)
``.mod(x)`` (r)                     num               ``%``
``.floor/.ceil/.round()``           num               ``.round()``: half away from zero
``.eq/.ne/.lt/.le/.gt/.ge(x)`` (r)  any               comparison chain; any number of ``x``
``.not_()`` (r)                     any               ReQL ``not``
``.and_/.or_(x, ...)`` (r)          any               short-circuit; ``r.and_()`` is True,
                                                      ``r.or_()`` is False
``r.branch(c, a, b)``               \-                ``a`` if ``c`` is truthy else ``b``; also
                                                      ``r.branch(c1, a1, c2, a2, ..., else)``
``r.expr(x)``                       \-                ``x``
``r.error(message)``                \-                raises ExpressionError(message)
``r.json(text)``                    \-                parses JSON text
==================================  ================  ============================================

Only ``.split`` takes keyword arguments: ``sep=None, max_splits=None``. Where ReQL's behaviour
is kept on purpose: objects are ordered by key (``keys``, ``values``, ``coerce_to``, JSON
text); ``has_fields`` treats a null field as absent; ``.default`` also replaces null. Small
departures: ``.count``/``.is_empty`` also take strings and objects, and ``.contains``
strings (substring); ``split()`` uses Python's whitespace (``str.isspace``), where ReQL uses
Unicode White_Space (they differ on four ASCII separator controls); ``.match`` offsets count
characters, not UTF-8 bytes, and a group that matches empty inside a loop after a longer
iteration, as in ``(a*)*b`` on ``ab``, may capture differently from Python's ``re``.

Limits
======

At load: ``MAX_EXPRESSION_LENGTH`` characters of source (a longer one is shown cut short in
the message); ``MAX_AST_DEPTH`` levels of nesting; and, before the parser runs, an upper
bound on its nesting read from the tokens, so ``ast.parse`` never recurses deeply.

At evaluation: ``MAX_STRING_LENGTH`` / ``MAX_ARRAY_LENGTH`` for every string / array an
evaluation builds, checked *before* building (``'a' * 10000000000`` allocates nothing);
``MAX_INT`` for integer results; ``MAX_EVALUATION_STEPS`` for the Python-level loops over
values (equality, ``contains``, ``merge``, JSON text, ...), so that shared references such
as ``[[1] * 100000] * 100000`` cannot turn one ``==`` into 10**10 steps. ``.match()``:
patterns up to ``MAX_REGEX_LENGTH`` characters compiling to at most ``MAX_REGEX_PROGRAM``
instructions, inputs up to ``MAX_MATCH_INPUT`` characters, and ``MAX_REGEX_STEPS`` matcher
steps shared by all matches of one evaluation. Each node is evaluated at most once (there
are no loops or functions), so these bound the time of one evaluation to about a second.
"""

from __future__ import annotations

import ast
import contextvars
import dataclasses
import functools
import importlib
import io
import json
import keyword
import math
import operator
import re
import sys
import tokenize
import typing as t
import unicodedata

from tap_rhttp import errors

if t.TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator, Mapping

__all__ = [
    "MAX_ARRAY_LENGTH",
    "MAX_AST_DEPTH",
    "MAX_EVALUATION_STEPS",
    "MAX_EXPRESSION_LENGTH",
    "MAX_INT",
    "MAX_MATCH_INPUT",
    "MAX_REGEX_LENGTH",
    "MAX_REGEX_PROGRAM",
    "MAX_REGEX_STEPS",
    "MAX_STRING_LENGTH",
    "Expression",
    "compile_expression",
    "reql_type_name",
]

MAX_EXPRESSION_LENGTH: t.Final[int] = 4096
"""Longest expression source, in characters."""

MAX_AST_DEPTH: t.Final[int] = 32
"""Deepest nesting of expression nodes (``a + b + c`` is two levels under the root)."""

MAX_STRING_LENGTH: t.Final[int] = 1_000_000
"""Longest string an evaluation may build, in characters."""

MAX_ARRAY_LENGTH: t.Final[int] = 100_000
"""Longest array an evaluation may build."""

MAX_INT: t.Final[int] = 2**53
"""Largest integer result (in absolute value): beyond it JSON numbers lose precision."""

MAX_MATCH_INPUT: t.Final[int] = 100_000
"""Longest string ``.match()`` accepts, in characters."""

MAX_REGEX_LENGTH: t.Final[int] = 1_000
"""Longest pattern ``.match()`` accepts, in characters."""

MAX_REGEX_PROGRAM: t.Final[int] = 2_000
"""Most matcher instructions a pattern may compile to (``a{1000}`` is 1000 of them)."""

MAX_REGEX_STEPS: t.Final[int] = 1_000_000
"""Most matcher steps the ``.match()`` calls of one evaluation may take together."""

MAX_EVALUATION_STEPS: t.Final[int] = 5_000_000
"""Most element-level steps (comparisons, encodings, copies in Python loops) per evaluation."""

_MAX_PARSE_NESTING = 4 * MAX_AST_DEPTH  # raw-text bound checked before ast.parse runs
_MAX_REGEX_NESTING = 32
_EXCERPT_LENGTH = 200
_KEY_EXCERPT_LENGTH = 100


# --------------------------------------------------------------------------------------
# The work budget of one evaluation
# --------------------------------------------------------------------------------------


class _Budget:
    """Steps left to one evaluation; the Python loops over values spend from it."""

    __slots__ = ("left",)

    def __init__(self, steps: int) -> None:
        self.left = steps


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "tap_rhttp_expression_budget", default=None
)


def _spend(steps: int) -> None:
    """Charge ``steps`` to the running evaluation (no-op outside one)."""
    budget = _BUDGET.get()
    if budget is None:
        return
    budget.left -= steps
    if budget.left < 0:
        raise errors.ExpressionError(
            f"The expression needs more than {MAX_EVALUATION_STEPS} steps "
            "(MAX_EVALUATION_STEPS) on these values."
        )


# --------------------------------------------------------------------------------------
# JSON values: type names, equality, bounded text
# --------------------------------------------------------------------------------------


def reql_type_name(value: t.Any) -> str:
    """Name the type of a JSON value as RethinkDB does.

    Callers use it in messages such as ``Expected `page` to return an OBJECT, but found
    NUMBER.``

    Args:
        value: a JSON value.

    Returns:
        ``'NULL'``, ``'BOOL'``, ``'NUMBER'``, ``'STRING'``, ``'ARRAY'`` or ``'OBJECT'``.

    Raises:
        ExpressionError: the value is not a JSON value.
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, (int, float)):
        return "NUMBER"
    if isinstance(value, str):
        return "STRING"
    if isinstance(value, list):
        return "ARRAY"
    if isinstance(value, dict):
        return "OBJECT"
    raise errors.ExpressionError(f"Not a JSON value: a Python {type(value).__name__}.")


def _is_number(value: t.Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _truthy(value: t.Any) -> bool:
    """ReQL truthiness: only ``False`` and ``None`` are false."""
    return value is not None and value is not False


def _json_equal(left: t.Any, right: t.Any) -> bool:
    """JSON equality, iteratively: ``True != 1``, ``1 == 1.0``, objects by key."""
    stack = [(left, right)]
    while stack:
        a, b = stack.pop()
        if a is b:
            continue
        kind = reql_type_name(a)
        if kind != reql_type_name(b):
            return False
        if kind == "ARRAY":
            if len(a) != len(b):
                return False
            _spend(len(a) + 1)
            stack.extend(zip(a, b, strict=True))
        elif kind == "OBJECT":
            if a.keys() != b.keys():
                return False
            _spend(len(a) + 1)
            stack.extend((a[key], b[key]) for key in a)
        elif a != b:
            return False
    return True


class _Text(str):
    """A piece of JSON punctuation inside :func:`_json_pieces` (not a value)."""

    __slots__ = ()


def _number_text(value: int | float, *, strict: bool) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            if strict:
                raise errors.ExpressionError(f"Cannot convert the number {value!r} to JSON.")
            return repr(value)
        if value.is_integer() and abs(value) <= MAX_INT:
            return str(int(value))
        return repr(value)
    try:
        return str(value)
    except ValueError:  # more digits than sys.get_int_max_str_digits()
        if strict:
            raise errors.ExpressionError("Number too large to convert to text.") from None
        return f"<an integer of {value.bit_length()} bits>"


def _json_pieces(value: t.Any, *, sort_keys: bool, strict: bool, cut: int) -> Iterator[str]:
    """Yield JSON text for ``value`` piece by piece, without recursion.

    Strings longer than ``cut`` are cut to ``cut`` characters (the caller stops reading
    before that matters).
    """
    stack: list[Iterator[t.Any]] = [iter((value,))]
    while stack:
        try:
            item = next(stack[-1])
        except StopIteration:
            stack.pop()
            continue
        if isinstance(item, _Text):
            yield item
        elif isinstance(item, str):
            yield json.dumps(item[:cut], ensure_ascii=False)
        elif item is None:
            yield "null"
        elif item is True:
            yield "true"
        elif item is False:
            yield "false"
        elif isinstance(item, (int, float)):
            yield _number_text(item, strict=strict)
        elif isinstance(item, list):
            _spend(len(item) + 1)
            stack.append(_array_pieces(item))
        elif isinstance(item, dict):
            _spend(len(item) + 1)
            stack.append(_object_pieces(item, sort_keys=sort_keys, cut=cut))
        elif strict:
            reql_type_name(item)  # raises: not a JSON value
        else:
            yield f"<{type(item).__name__}>"


def _array_pieces(items: list[t.Any]) -> Iterator[t.Any]:
    yield _Text("[")
    for index, item in enumerate(items):
        if index:
            yield _Text(",")
        yield item
    yield _Text("]")


def _object_pieces(obj: dict[t.Any, t.Any], *, sort_keys: bool, cut: int) -> Iterator[t.Any]:
    yield _Text("{")
    keys: t.Iterable[t.Any] = sorted(obj) if sort_keys else obj
    for index, key in enumerate(keys):
        yield _Text(("," if index else "") + json.dumps(str(key)[:cut], ensure_ascii=False) + ":")
        yield obj[key]
    yield _Text("}")


def _json_text(value: t.Any, limit: int, *, sort_keys: bool, strict: bool) -> str | None:
    """Compact JSON text of ``value``, or None when it would be longer than ``limit``."""
    parts: list[str] = []
    size = 0
    for piece in _json_pieces(value, sort_keys=sort_keys, strict=strict, cut=limit + 1):
        size += len(piece)
        if size > limit:
            return None
        parts.append(piece)
    return "".join(parts)


def _excerpt(value: t.Any, limit: int = _EXCERPT_LENGTH) -> str:
    """JSON text of ``value`` for a message, cut short to about ``limit`` characters."""
    parts: list[str] = []
    size = 0
    for piece in _json_pieces(value, sort_keys=False, strict=False, cut=limit + 1):
        parts.append(piece)
        size += len(piece)
        if size > limit:
            return "".join(parts)[:limit] + "..."
    return "".join(parts)


def _key_text(key: str) -> str:
    return key if len(key) <= _KEY_EXCERPT_LENGTH else key[:_KEY_EXCERPT_LENGTH] + "..."


# --------------------------------------------------------------------------------------
# Errors raised while evaluating
# --------------------------------------------------------------------------------------


def _fail(message: str, culprit: t.Any = False) -> errors.ExpressionError:
    """An evaluation error; ReQL makes it a non-existence error when the culprit is null."""
    if culprit is None:
        return errors.NonExistenceError(message)
    return errors.ExpressionError(message)


def _expected(type_name: str, value: t.Any) -> errors.ExpressionError:
    return _fail(f"Expected type {type_name} but found {reql_type_name(value)}.", value)


def _not_a_sequence(value: t.Any) -> errors.ExpressionError:
    return _fail(f"Cannot convert {reql_type_name(value)} to SEQUENCE.", value)


def _non_object_non_sequence(op: str, value: t.Any) -> errors.ExpressionError:
    return _fail(f"Cannot perform {op} on a non-object non-sequence `{_excerpt(value)}`.", value)


def _check_string(text: str, what: str = "a string") -> str:
    if len(text) > MAX_STRING_LENGTH:
        raise errors.ExpressionError(
            f"Cannot build {what} of {len(text)} characters: "
            f"the limit is {MAX_STRING_LENGTH} (MAX_STRING_LENGTH)."
        )
    return text


def _check_string_size(size: int, what: str) -> None:
    if size > MAX_STRING_LENGTH:
        raise errors.ExpressionError(
            f"{what} would build a string of {size} characters: "
            f"the limit is {MAX_STRING_LENGTH} (MAX_STRING_LENGTH)."
        )


def _check_array_size(size: int, what: str) -> None:
    if size > MAX_ARRAY_LENGTH:
        raise errors.ExpressionError(
            f"{what} would build an array of {size} elements: "
            f"the limit is {MAX_ARRAY_LENGTH} (MAX_ARRAY_LENGTH)."
        )


def _check_array(items: list[t.Any], what: str) -> list[t.Any]:
    _check_array_size(len(items), what)
    return items


# --------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------


def _number_result(value: int | float) -> int | float:
    """Check an arithmetic result: finite, JSON-safe; integral floats become ints."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise errors.ExpressionError(f"Number result is not finite ({value!r}).")
        if value.is_integer() and -MAX_INT <= value <= MAX_INT:
            return int(value)
        return value
    if -MAX_INT <= value <= MAX_INT:
        return value
    raise errors.ExpressionError(
        "Integer result is outside the JSON-safe range -2**53..2**53 (MAX_INT)."
    )


def _as_number(value: t.Any) -> int | float:
    if not _is_number(value):
        raise _expected("NUMBER", value)
    return t.cast("int | float", value)


def _as_int(value: t.Any) -> int:
    """ReQL's ``as_int``: a number with no fractional part."""
    number = _as_number(value)
    if isinstance(number, float):
        if not number.is_integer():
            raise errors.ExpressionError(
                f"Number not an integer: {_number_text(number, strict=False)}."
            )
        return int(number)
    return number


def _arith(op: Callable[[t.Any, t.Any], t.Any], left: t.Any, right: t.Any) -> int | float:
    try:
        return _number_result(op(left, right))
    except OverflowError:
        raise errors.ExpressionError("Number result is too large.") from None


def _add(left: t.Any, right: t.Any) -> t.Any:
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


def _sub(left: t.Any, right: t.Any) -> t.Any:
    return _arith(operator.sub, _as_number(left), _as_number(right))


def _repeat(sequence: str | list[t.Any], times: t.Any) -> t.Any:
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


def _mul(left: t.Any, right: t.Any) -> t.Any:
    if _is_number(left) and _is_number(right):
        return _arith(operator.mul, left, right)
    if isinstance(left, (str, list)) and _is_number(right):
        return _repeat(left, right)
    if _is_number(left) and isinstance(right, (str, list)):
        return _repeat(right, left)
    raise _expected("NUMBER", right if _is_number(left) else left)


def _div(left: t.Any, right: t.Any) -> t.Any:
    numerator, denominator = _as_number(left), _as_number(right)
    if denominator == 0:
        raise errors.ExpressionError("Cannot divide by zero.")
    return _arith(operator.truediv, numerator, denominator)


def _mod(left: t.Any, right: t.Any) -> t.Any:
    dividend, divisor = _as_int(left), _as_int(right)
    if divisor == 0:
        raise errors.ExpressionError("Cannot take a number modulo 0.")
    remainder = abs(dividend) % abs(divisor)  # C's %: the sign follows the dividend
    return _number_result(-remainder if dividend < 0 else remainder)


def _neg(value: t.Any) -> t.Any:
    return _number_result(-_as_number(value))


def _pos(value: t.Any) -> t.Any:
    return _as_number(value)


def _floor(value: t.Any) -> t.Any:
    number = _as_number(value)
    return number if isinstance(number, int) else _number_result(float(math.floor(number)))


def _ceil(value: t.Any) -> t.Any:
    number = _as_number(value)
    return number if isinstance(number, int) else _number_result(float(math.ceil(number)))


def _round(value: t.Any) -> t.Any:
    number = _as_number(value)
    if isinstance(number, int):
        return number
    magnitude = abs(number)
    whole = math.floor(magnitude)
    if magnitude - whole >= 0.5:
        whole += 1
    return _number_result(float(-whole if number < 0 else whole))


# --------------------------------------------------------------------------------------
# Comparisons
# --------------------------------------------------------------------------------------

_ORDERINGS: dict[str, Callable[[t.Any, t.Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _compare(op: str, left: t.Any, right: t.Any) -> bool:
    if op == "==":
        return _json_equal(left, right)
    if op == "!=":
        return not _json_equal(left, right)
    if (_is_number(left) and _is_number(right)) or (
        isinstance(left, str) and isinstance(right, str)
    ):
        return _ORDERINGS[op](left, right)
    culprit = None if left is None or right is None else left
    raise _fail(
        f"Cannot compare {reql_type_name(left)} with {reql_type_name(right)} using `{op}`: "
        "ordering needs two numbers or two strings.",
        culprit,
    )


# --------------------------------------------------------------------------------------
# Fields and indexes
# --------------------------------------------------------------------------------------


def _get_field(value: t.Any, key: str, op: str = "bracket") -> t.Any:
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


def _nth(value: t.Any, index: t.Any, op: str = "bracket") -> t.Any:
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


def _bracket(value: t.Any, key: t.Any) -> t.Any:
    if isinstance(key, str):
        return _get_field(value, key)
    if _is_number(key):
        return _nth(value, key)
    raise _fail(
        "Expected NUMBER or STRING as second argument to `bracket` but found "
        f"{reql_type_name(key)}.",
        key,
    )


# --------------------------------------------------------------------------------------
# coerce_to and JSON
# --------------------------------------------------------------------------------------

_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_COERCE_TYPES = ("ARRAY", "BOOL", "NULL", "NUMBER", "OBJECT", "STRING")


def _parse_number(text: str) -> int | float:
    stripped = text.strip()
    if len(stripped) <= 400 and _JSON_NUMBER.fullmatch(stripped):
        try:
            if len(stripped) <= 16 and "." not in stripped and "e" not in stripped.lower():
                return int(stripped)
            return _number_result(float(stripped))
        except (ValueError, OverflowError, errors.ExpressionError):
            pass
    raise errors.ExpressionError(f"Could not coerce `{_key_text(text)}` to NUMBER.")


def _to_json_string(value: t.Any) -> str:
    text = _json_text(value, MAX_STRING_LENGTH, sort_keys=True, strict=True)
    if text is None:
        raise errors.ExpressionError(
            "Cannot build a string of more than "
            f"{MAX_STRING_LENGTH} characters (MAX_STRING_LENGTH) from this value."
        )
    return text


def _pairs_to_object(value: list[t.Any]) -> dict[str, t.Any]:
    result: dict[str, t.Any] = {}
    _spend(len(value))
    for pair in value:
        if not isinstance(pair, list):
            raise _expected("ARRAY", pair)
        if len(pair) != 2:
            raise errors.ExpressionError(f"Expected array of size 2, but got size {len(pair)}.")
        key, item = pair
        if not isinstance(key, str):
            raise _expected("STRING", key)
        if key in result:
            raise errors.ExpressionError(
                f"Duplicate key {json.dumps(_key_text(key))} in coerced object.  "
                f"(got {_excerpt(result[key])} and {_excerpt(item)} as values)"
            )
        result[key] = item
    return result


def _coerce_to(value: t.Any, type_name: t.Any) -> t.Any:
    if not isinstance(type_name, str):
        raise _expected("STRING", type_name)
    target = type_name.upper()
    if target not in _COERCE_TYPES:
        raise errors.ExpressionError(
            f"Unknown Type: {_key_text(type_name)} (expected one of {', '.join(_COERCE_TYPES)})."
        )
    source = reql_type_name(value)
    if source == target:
        return value
    if target == "BOOL":
        return value is not None
    if target == "STRING":
        if isinstance(value, str):
            return value
        return _to_json_string(value)
    if source == "OBJECT" and target == "ARRAY":
        _check_array_size(len(value), "`coerce_to('array')`")
        _spend(len(value))
        return [[key, value[key]] for key in sorted(value)]
    if source == "ARRAY" and target == "OBJECT":
        return _pairs_to_object(value)
    if source == "STRING" and target == "NUMBER":
        return _parse_number(value)
    raise _fail(f"Cannot coerce {source} to {target}.", value)


def _no_constant(text: str) -> t.NoReturn:
    raise ValueError(f"{text} is not valid JSON")


def _parse_json(text: t.Any) -> t.Any:
    if not isinstance(text, str):
        raise _expected("STRING", text)
    if len(text) > MAX_STRING_LENGTH:
        raise errors.ExpressionError(
            f"Cannot parse {len(text)} characters as JSON: "
            f"the limit is {MAX_STRING_LENGTH} (MAX_STRING_LENGTH)."
        )
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        reason = "nested too deeply"
    except ValueError as exc:
        reason = str(exc)
    raise errors.ExpressionError(f"Failed to parse {_excerpt(text, 80)} as JSON: {reason}.")


# --------------------------------------------------------------------------------------
# Strings
# --------------------------------------------------------------------------------------

_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _as_string(value: t.Any) -> str:
    if not isinstance(value, str):
        raise _expected("STRING", value)
    return value


def _upcase(value: t.Any) -> str:
    return _check_string(_as_string(value)).translate(_ASCII_UPPER)


def _downcase(value: t.Any) -> str:
    return _check_string(_as_string(value)).translate(_ASCII_LOWER)


def _split_characters(text: str, limit: int) -> list[str]:
    """ReQL's ``split('')``: characters, each with the combining marks that follow it."""
    _spend(min(len(text), MAX_ARRAY_LENGTH))
    pieces: list[str] = []
    start = 0
    index = 0
    while index < len(text):
        if 0 <= limit == len(pieces):
            pieces.append(text[start:])
            return pieces
        index = start + 1
        while index < len(text) and unicodedata.category(text[index]).startswith("M"):
            index += 1
        pieces.append(text[start:index])
        start = index
        if len(pieces) > MAX_ARRAY_LENGTH:
            break
    return pieces


def _split(value: t.Any, sep: t.Any = None, max_splits: t.Any = None) -> list[str]:
    text = _as_string(value)
    if sep is not None and not isinstance(sep, str):
        raise _expected("STRING", sep)
    limit = -1
    if max_splits is not None:
        limit = _as_int(max_splits)
        if not -1 <= limit <= MAX_ARRAY_LENGTH - 1:
            raise errors.ExpressionError(
                f"Error: `split` size argument must be in range [-1, {MAX_ARRAY_LENGTH - 1}]."
            )
    bounded = MAX_ARRAY_LENGTH if limit < 0 else limit  # never more than one piece too many
    pieces = _split_characters(text, limit) if sep == "" else text.split(sep, bounded)
    return _check_array(pieces, "`split`")


# --------------------------------------------------------------------------------------
# .match(): a linear-time regex matcher (Pike VM) over re's own parser output
# --------------------------------------------------------------------------------------

_sre: t.Any = importlib.import_module("re._parser" if sys.version_info >= (3, 11) else "sre_parse")
_MISSING_OPCODE = object()


def _opcode(name: str) -> t.Any:
    return getattr(_sre, name, _MISSING_OPCODE)


_OP_CHAR, _OP_SPLIT, _OP_JMP, _OP_SAVE, _OP_ASSERT, _OP_MATCH = range(6)
_REGEX_UNSUPPORTED = {
    "GROUPREF": "backreferences",
    "GROUPREF_EXISTS": "conditional groups",
    "ASSERT": "lookaround assertions",
    "ASSERT_NOT": "lookaround assertions",
    "ATOMIC_GROUP": "atomic groups",
    "POSSESSIVE_REPEAT": "possessive quantifiers",
}


class _RegexError(Exception):
    """A pattern that cannot be used; turned into ReQL's ``Error in regexp`` message."""


@dataclasses.dataclass(frozen=True)
class _Program:
    code: tuple[tuple[t.Any, ...], ...]
    groups: int  # capturing groups, not counting the whole match
    first: str | None  # a literal every match starts with, to skip ahead quickly


def _is_word(char: str, ascii_only: bool) -> bool:
    if ascii_only:
        return char.isascii() and (char.isalnum() or char == "_")
    return char.isalnum() or char == "_"


def _category_test(category: t.Any, ascii_only: bool) -> Callable[[str], bool]:
    name = str(category)
    negate = "_NOT_" in name
    if name.endswith("DIGIT"):

        def base(c: str) -> bool:
            return ("0" <= c <= "9") if ascii_only else c.isdecimal()

    elif name.endswith("SPACE"):

        def base(c: str) -> bool:
            return (c in " \t\n\r\f\v") if ascii_only else c.isspace()

    elif name.endswith("WORD"):

        def base(c: str) -> bool:
            return _is_word(c, ascii_only)

    else:
        raise _RegexError(f"unsupported character category {name}")
    if negate:
        return lambda c: not base(c)
    return base


def _case_variants(char: str, ignore_case: bool) -> tuple[str, ...]:
    if not ignore_case:
        return (char,)
    return tuple({char, char.lower(), char.upper()})


def _class_test(items: list[t.Any], flags: int) -> Callable[[str], bool]:
    ignore_case = bool(flags & re.IGNORECASE)
    ascii_only = bool(flags & re.ASCII)
    negate = False
    literals: set[str] = set()
    ranges: list[tuple[str, str]] = []
    categories: list[Callable[[str], bool]] = []
    for op, arg in items:
        if op is _opcode("NEGATE"):
            negate = True
        elif op is _opcode("LITERAL"):
            literals.add(chr(arg))
        elif op is _opcode("RANGE"):
            ranges.append((chr(arg[0]), chr(arg[1])))
        elif op is _opcode("CATEGORY"):
            categories.append(_category_test(arg, ascii_only))
        else:
            raise _RegexError(f"unsupported character class item {op}")

    def test(char: str) -> bool:
        for variant in _case_variants(char, ignore_case):
            if variant in literals:
                return True
            for low, high in ranges:
                if low <= variant <= high:
                    return True
        return any(category(char) for category in categories)

    if negate:
        return lambda c: not test(c)
    return test


class _RegexCompiler:
    def __init__(self) -> None:
        self.code: list[tuple[t.Any, ...]] = []
        self.groups = 0

    def emit(self, instruction: tuple[t.Any, ...]) -> int:
        if len(self.code) >= MAX_REGEX_PROGRAM:
            raise _RegexError(
                f"the pattern compiles to more than {MAX_REGEX_PROGRAM} instructions "
                "(MAX_REGEX_PROGRAM); use smaller repeat counts"
            )
        self.code.append(instruction)
        return len(self.code) - 1

    def char(self, test: Callable[[str], bool], literal: str | None = None) -> None:
        self.emit((_OP_CHAR, test, literal))

    def sequence(self, items: t.Any, flags: int) -> None:
        for op, arg in items:
            self.item(op, arg, flags)

    def item(self, op: t.Any, arg: t.Any, flags: int) -> None:
        ignore_case = bool(flags & re.IGNORECASE)
        if op is _opcode("LITERAL") or op is _opcode("NOT_LITERAL"):
            variants = frozenset(_case_variants(chr(arg), ignore_case))
            if op is _opcode("LITERAL"):
                literal = chr(arg) if not ignore_case else None
                self.char(lambda c: c in variants, literal)
            else:
                self.char(lambda c: c not in variants)
        elif op is _opcode("ANY"):
            if flags & re.DOTALL:
                self.char(lambda c: True)
            else:
                self.char(lambda c: c != "\n")
        elif op is _opcode("IN"):
            self.char(_class_test(arg, flags))
        elif op is _opcode("AT"):
            self.emit((_OP_ASSERT, str(arg), flags))
        elif op is _opcode("BRANCH"):
            self.branch(arg[1], flags)
        elif op is _opcode("SUBPATTERN"):
            group, add_flags, del_flags, pattern = arg
            inner = (flags | add_flags) & ~del_flags
            if group is None:
                self.sequence(pattern, inner)
            else:
                self.groups = max(self.groups, group)
                self.emit((_OP_SAVE, 2 * group))
                self.sequence(pattern, inner)
                self.emit((_OP_SAVE, 2 * group + 1))
        elif op is _opcode("MAX_REPEAT") or op is _opcode("MIN_REPEAT"):
            low, high, pattern = arg
            self.repeat(low, high, pattern, flags, greedy=op is _opcode("MAX_REPEAT"))
        else:
            feature = next(
                (text for name, text in _REGEX_UNSUPPORTED.items() if op is _opcode(name)),
                str(op),
            )
            raise _RegexError(f"{feature} are not supported (as in RE2, which ReQL uses)")

    def branch(self, alternatives: list[t.Any], flags: int) -> None:
        jumps = []
        for index, alternative in enumerate(alternatives):
            if index < len(alternatives) - 1:
                split = self.emit((_OP_SPLIT, None, None))
                self.sequence(alternative, flags)
                jumps.append(self.emit((_OP_JMP, None)))
                self.code[split] = (_OP_SPLIT, split + 1, len(self.code))
            else:
                self.sequence(alternative, flags)
        for jump in jumps:
            self.code[jump] = (_OP_JMP, len(self.code))

    def repeat(self, low: int, high: int, pattern: t.Any, flags: int, *, greedy: bool) -> None:
        for _ in range(low):
            self.sequence(pattern, flags)
        if high == _sre.MAXREPEAT:
            # The loop ends in SPLIT(loop, exit) rather than JMP(loop): when an iteration
            # matched nothing, `loop` is already visited at this position, and the thread
            # still leaves with its captures (Python gives `(a*)*b` on "b" group 1 = "").
            split = self.emit((_OP_SPLIT, None, None))
            self.sequence(pattern, flags)
            back = self.emit((_OP_SPLIT, None, None))
            after = len(self.code)
            self.code[back] = (_OP_SPLIT, split, after) if greedy else (_OP_SPLIT, after, split)
            self.code[split] = (
                (_OP_SPLIT, split + 1, after) if greedy else (_OP_SPLIT, after, split + 1)
            )
            return
        holes = []
        for _ in range(high - low):
            holes.append(self.emit((_OP_SPLIT, None, None)))
            self.sequence(pattern, flags)
        after = len(self.code)
        for hole in holes:
            self.code[hole] = (
                (_OP_SPLIT, hole + 1, after) if greedy else (_OP_SPLIT, after, hole + 1)
            )


def _regex_nesting(pattern: str) -> int:
    """Bracket depth of a pattern, roughly (escapes and classes skipped): guards re's parser."""
    depth = deepest = 0
    index = 0
    in_class = False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            if pattern[index + 1 : index + 2] == "]":
                index += 1
        elif char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
        index += 1
    return deepest


@functools.lru_cache(maxsize=128)
def _compile_regex(pattern: str) -> _Program:
    if _regex_nesting(pattern) > _MAX_REGEX_NESTING:
        raise _RegexError(f"groups nest more than {_MAX_REGEX_NESTING} deep")
    try:
        parsed = _sre.parse(pattern, 0)
    except re.error as exc:
        raise _RegexError(str(exc)) from None
    except (OverflowError, RecursionError, ValueError) as exc:
        raise _RegexError(str(exc) or type(exc).__name__) from None
    flags = parsed.state.flags
    if flags & (re.LOCALE | re.DEBUG):
        raise _RegexError("the LOCALE and DEBUG flags are not supported")
    compiler = _RegexCompiler()
    compiler.emit((_OP_SAVE, 0))
    compiler.sequence(parsed, flags)
    compiler.emit((_OP_SAVE, 1))
    compiler.emit((_OP_MATCH,))
    first = None
    for instruction in compiler.code:
        if instruction[0] == _OP_SAVE:
            continue
        if instruction[0] == _OP_CHAR:
            first = instruction[2]
        break
    return _Program(tuple(compiler.code), compiler.groups, first)


def _assertion_holds(kind: str, flags: int, text: str, pos: int) -> bool:
    size = len(text)
    multiline = bool(flags & re.MULTILINE)
    if kind == "AT_BEGINNING":
        return pos == 0 or (multiline and text[pos - 1] == "\n")
    if kind == "AT_BEGINNING_STRING":
        return pos == 0
    if kind == "AT_END":
        if pos == size or (pos == size - 1 and text[pos] == "\n"):
            return True
        return multiline and pos < size and text[pos] == "\n"
    if kind == "AT_END_STRING":
        return pos == size
    if kind in ("AT_BOUNDARY", "AT_NON_BOUNDARY"):
        ascii_only = bool(flags & re.ASCII)
        before = pos > 0 and _is_word(text[pos - 1], ascii_only)
        after = pos < size and _is_word(text[pos], ascii_only)
        return (before != after) == (kind == "AT_BOUNDARY")
    raise _RegexError(f"unsupported assertion {kind}")


def _run_regex(
    program: _Program, text: str, budget: int
) -> tuple[tuple[int | None, ...] | None, int]:
    """Leftmost-first search, in time linear in ``len(text)`` (Pike VM with captures).

    Returns the captures of the match (or None) and the steps taken; raises once the
    steps pass ``budget``.
    """
    code = program.code
    marks = [-1] * len(code)
    steps = 0
    size = len(text)
    no_captures: tuple[int | None, ...] = (None,) * (2 * program.groups + 2)
    matched: tuple[int | None, ...] | None = None

    def add(
        threads: list[tuple[int, tuple[int | None, ...]]],
        pc: int,
        pos: int,
        captures: tuple[int | None, ...],
    ) -> int:
        visited = 0
        stack = [(pc, captures)]
        while stack:
            pc, captures = stack.pop()
            if marks[pc] == pos:
                continue
            marks[pc] = pos
            visited += 1
            instruction = code[pc]
            kind = instruction[0]
            if kind == _OP_JMP:
                stack.append((instruction[1], captures))
            elif kind == _OP_SPLIT:
                stack.append((instruction[2], captures))
                stack.append((instruction[1], captures))
            elif kind == _OP_SAVE:
                slot = instruction[1]
                stack.append((pc + 1, (*captures[:slot], pos, *captures[slot + 1 :])))
            elif kind == _OP_ASSERT:
                if _assertion_holds(instruction[1], instruction[2], text, pos):
                    stack.append((pc + 1, captures))
            else:
                threads.append((pc, captures))
        return visited

    threads: list[tuple[int, tuple[int | None, ...]]] = []
    pos = 0
    while pos <= size:
        if matched is None:
            if not threads and program.first is not None:
                pos = text.find(program.first, pos)
                if pos < 0:
                    break
            steps += add(threads, 0, pos, no_captures)
        if not threads:
            if matched is not None:
                break
            pos += 1
            continue
        char = text[pos] if pos < size else ""
        following: list[tuple[int, tuple[int | None, ...]]] = []
        for pc, captures in threads:
            instruction = code[pc]
            if instruction[0] == _OP_MATCH:
                matched = captures
                break  # lower-priority threads lose
            if char and instruction[1](char):
                steps += add(following, pc + 1, pos + 1, captures)
        steps += len(threads)
        if steps > budget:
            raise errors.ExpressionError(
                f"`match` gave up: the expression's matches need more than {MAX_REGEX_STEPS} "
                "steps (MAX_REGEX_STEPS) on this input."
            )
        threads = following
        pos += 1
    return matched, steps


def _lazy_match(ev: _Evaluator, receiver: ast.expr | None, args: list[ast.expr]) -> t.Any:
    value = ev.eval(receiver)
    text = _as_string(value)
    regex = _as_string(ev.eval(args[0]))
    if len(regex) > MAX_REGEX_LENGTH:
        raise errors.ExpressionError(
            f"Error in regexp `{_key_text(regex)}`: the pattern is {len(regex)} characters long; "
            f"the limit is {MAX_REGEX_LENGTH} (MAX_REGEX_LENGTH)."
        )
    if len(text) > MAX_MATCH_INPUT:
        raise errors.ExpressionError(
            f"Cannot match against a string of {len(text)} characters: "
            f"the limit is {MAX_MATCH_INPUT} (MAX_MATCH_INPUT)."
        )
    try:
        program = _compile_regex(regex)
    except _RegexError as exc:
        raise errors.ExpressionError(f"Error in regexp `{_key_text(regex)}`: {exc}.") from None
    found, steps = _run_regex(program, text, ev.regex_steps)
    ev.regex_steps -= steps
    if found is None:
        return None
    start, end = t.cast("tuple[int, int]", found[:2])
    groups: list[t.Any] = []
    for group in range(1, program.groups + 1):
        low, high = found[2 * group], found[2 * group + 1]
        if low is None or high is None:
            groups.append(None)
        else:
            groups.append({"str": text[low:high], "start": low, "end": high})
    return {"str": text[start:end], "start": start, "end": end, "groups": groups}


# --------------------------------------------------------------------------------------
# Arrays and objects
# --------------------------------------------------------------------------------------


def _as_array(value: t.Any) -> list[t.Any]:
    if not isinstance(value, list):
        raise _not_a_sequence(value)
    return value


def _as_object(value: t.Any) -> dict[str, t.Any]:
    if not isinstance(value, dict):
        raise _expected("OBJECT", value)
    return value


def _count(value: t.Any, *needle: t.Any) -> int:
    if needle:
        items = _as_array(value)
        _spend(len(items))
        return sum(1 for item in items if _json_equal(item, needle[0]))
    if isinstance(value, (list, str, dict)):
        return len(value)
    raise _not_a_sequence(value)


def _is_empty(value: t.Any) -> bool:
    return _count(value) == 0


def _keys(value: t.Any) -> list[str]:
    obj = _as_object(value)
    _check_array_size(len(obj), "`keys`")
    _spend(len(obj))
    return sorted(obj)


def _values(value: t.Any) -> list[t.Any]:
    obj = _as_object(value)
    _check_array_size(len(obj), "`values`")
    _spend(len(obj))
    return [obj[key] for key in sorted(obj)]


def _contains(value: t.Any, *needles: t.Any) -> bool:
    if isinstance(value, str):
        return all(_as_string(needle) in value for needle in needles)
    items = _as_array(value)
    _spend(len(items) * len(needles))
    return all(any(_json_equal(item, needle) for item in items) for needle in needles)


def _has_all(obj: dict[str, t.Any], keys: tuple[str, ...]) -> bool:
    return all(obj.get(key) is not None for key in keys)


def _has_fields(value: t.Any, *fields: t.Any) -> t.Any:
    keys = tuple(_as_string(field) for field in fields)
    if isinstance(value, dict):
        return _has_all(value, keys)
    if isinstance(value, list):
        _spend(len(value) * (len(keys) + 1))
        kept = []
        for item in value:
            if isinstance(item, dict):
                if _has_all(item, keys):
                    kept.append(item)
            elif item is not None:
                raise _non_object_non_sequence("has_fields", item)
        return kept
    raise _non_object_non_sequence("has_fields", value)


def _get_field_method(value: t.Any, key: t.Any) -> t.Any:
    return _get_field(value, _as_string(key), "get_field")


def _nth_method(value: t.Any, index: t.Any) -> t.Any:
    return _nth(value, index, "nth")


def _append(value: t.Any, item: t.Any) -> list[t.Any]:
    items = _as_array(value)
    _check_array_size(len(items) + 1, "`append`")
    return [*items, item]


def _deep_merge(base: dict[str, t.Any], update: dict[str, t.Any]) -> dict[str, t.Any]:
    """ReQL's merge: nested objects merge key by key; copies only what it changes."""
    result = dict(base)
    stack = [(result, update)]
    while stack:
        target, source = stack.pop()
        _spend(len(source) + 1)
        for key, item in source.items():
            current = target.get(key)
            if isinstance(item, dict) and isinstance(current, dict):
                copy = dict(current)
                target[key] = copy
                stack.append((copy, item))
            else:
                target[key] = item
    return result


def _merge(value: t.Any, *updates: t.Any) -> t.Any:
    objects = [_as_object(update) for update in updates]
    if isinstance(value, list):
        _spend(len(value))
        return [_merge(item, *objects) for item in value]
    if not isinstance(value, dict):
        raise _non_object_non_sequence("merge", value)
    result = value
    for update in objects:
        result = _deep_merge(result, update)
    return result


def _slice(value: t.Any, start: t.Any, end: t.Any = None) -> t.Any:
    if not isinstance(value, (list, str)):
        raise _not_a_sequence(value)
    low = _as_int(start)
    high = None if end is None else _as_int(end)
    part = value[low:high]
    if isinstance(part, str):
        return _check_string(part)
    return _check_array(part, "`slice`")


def _limit(value: t.Any, count: t.Any) -> list[t.Any]:
    items = _as_array(value)
    n = _as_int(count)
    if n < 0:
        raise errors.ExpressionError(f"LIMIT takes a non-negative argument (got {n})")
    return _check_array(items[:n], "`limit`")


def _skip(value: t.Any, count: t.Any) -> list[t.Any]:
    items = _as_array(value)
    n = _as_int(count)
    if n < 0:
        raise errors.ExpressionError(f"SKIP takes a non-negative argument (got {n})")
    return _check_array(items[n:], "`skip`")


def _sum(value: t.Any) -> t.Any:
    total: int | float = 0
    items = _as_array(value)
    _spend(len(items))
    for item in items:
        total = total + _as_number(item)
    return _arith(operator.add, total, 0)


def _fold(op: Callable[[t.Any, t.Any], t.Any]) -> Callable[..., t.Any]:
    def folded(value: t.Any, *others: t.Any) -> t.Any:
        result = value
        for other in others:
            result = op(result, other)
        return result

    return folded


def _error(message: t.Any) -> t.NoReturn:
    raise errors.ExpressionError(_as_string(message))


# --------------------------------------------------------------------------------------
# The method and function tables
# --------------------------------------------------------------------------------------

_LazyFn = t.Callable[["_Evaluator", "ast.expr | None", "list[ast.expr]"], t.Any]


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One callable: ``fn(receiver, *args)``, or lazily ``fn(evaluator, receiver, args)``."""

    min_args: int
    max_args: int | None  # None: any number
    fn: Callable[..., t.Any]
    lazy: bool = False
    keywords: tuple[str, ...] = ()  # positional parameters that may be given by keyword

    def call(self, ev: _Evaluator, receiver: ast.expr | None, args: list[ast.expr]) -> t.Any:
        if self.lazy:
            return self.fn(ev, receiver, args)
        values = [ev.eval(arg) for arg in args]
        if receiver is None:
            return self.fn(*values)
        return self.fn(ev.eval(receiver), *values)


def _lazy_default(ev: _Evaluator, receiver: ast.expr | None, args: list[ast.expr]) -> t.Any:
    assert receiver is not None
    try:
        value = ev.eval(receiver)
    except errors.NonExistenceError:
        return ev.eval(args[0])
    return ev.eval(args[0]) if value is None else value


def _lazy_and(ev: _Evaluator, receiver: ast.expr | None, args: list[ast.expr]) -> t.Any:
    value: t.Any = True
    for node in [receiver, *args] if receiver is not None else args:
        value = ev.eval(node)
        if not _truthy(value):
            return value
    return value


def _lazy_or(ev: _Evaluator, receiver: ast.expr | None, args: list[ast.expr]) -> t.Any:
    value: t.Any = False
    for node in [receiver, *args] if receiver is not None else args:
        value = ev.eval(node)
        if _truthy(value):
            return value
    return value


def _lazy_branch(ev: _Evaluator, receiver: ast.expr | None, args: list[ast.expr]) -> t.Any:
    for index in range(0, len(args) - 1, 2):
        if _truthy(ev.eval(args[index])):
            return ev.eval(args[index + 1])
    return ev.eval(args[-1])


def _lazy_comparison(op: str) -> _LazyFn:
    def compare(ev: _Evaluator, receiver: ast.expr | None, args: list[ast.expr]) -> t.Any:
        nodes = [receiver, *args] if receiver is not None else args
        left = ev.eval(nodes[0])
        for node in nodes[1:]:
            right = ev.eval(node)
            if not _compare("==" if op == "!=" else op, left, right):
                return op == "!="
            left = right
        return op != "!="

    return compare


def _to_r(entry: _Entry) -> _Entry:
    """The ``r.m(x, ...)`` spelling of a method ``x.m(...)``."""
    if entry.lazy:
        method = entry.fn

        def fn(ev: _Evaluator, receiver: ast.expr | None, args: list[ast.expr]) -> t.Any:
            return method(ev, args[0], args[1:])

        return _Entry(entry.min_args + 1, _plus_one(entry.max_args), fn, lazy=True)
    return _Entry(entry.min_args + 1, _plus_one(entry.max_args), entry.fn)


def _plus_one(count: int | None) -> int | None:
    return None if count is None else count + 1


_METHODS: dict[str, _Entry] = {
    "add": _Entry(1, None, _fold(_add)),
    "and_": _Entry(0, None, _lazy_and, lazy=True),
    "append": _Entry(1, 1, _append),
    "ceil": _Entry(0, 0, _ceil),
    "coerce_to": _Entry(1, 1, _coerce_to),
    "contains": _Entry(1, None, _contains),
    "count": _Entry(0, 1, _count),
    "default": _Entry(1, 1, _lazy_default, lazy=True),
    "div": _Entry(1, None, _fold(_div)),
    "downcase": _Entry(0, 0, _downcase),
    "eq": _Entry(1, None, _lazy_comparison("=="), lazy=True),
    "floor": _Entry(0, 0, _floor),
    "ge": _Entry(1, None, _lazy_comparison(">="), lazy=True),
    "get_field": _Entry(1, 1, _get_field_method),
    "gt": _Entry(1, None, _lazy_comparison(">"), lazy=True),
    "has_fields": _Entry(1, None, _has_fields),
    "is_empty": _Entry(0, 0, _is_empty),
    "keys": _Entry(0, 0, _keys),
    "le": _Entry(1, None, _lazy_comparison("<="), lazy=True),
    "limit": _Entry(1, 1, _limit),
    "lt": _Entry(1, None, _lazy_comparison("<"), lazy=True),
    "match": _Entry(1, 1, _lazy_match, lazy=True),
    "merge": _Entry(1, None, _merge),
    "mod": _Entry(1, 1, _mod),
    "mul": _Entry(1, None, _fold(_mul)),
    "ne": _Entry(1, None, _lazy_comparison("!="), lazy=True),
    "not_": _Entry(0, 0, lambda value: not _truthy(value)),
    "nth": _Entry(1, 1, _nth_method),
    "or_": _Entry(0, None, _lazy_or, lazy=True),
    "round": _Entry(0, 0, _round),
    "skip": _Entry(1, 1, _skip),
    "slice": _Entry(1, 2, _slice),
    "split": _Entry(0, 2, _split, keywords=("sep", "max_splits")),
    "sub": _Entry(1, None, _fold(_sub)),
    "sum": _Entry(0, 0, _sum),
    "to_json": _Entry(0, 0, _to_json_string),
    "to_json_string": _Entry(0, 0, _to_json_string),
    "type_of": _Entry(0, 0, reql_type_name),
    "upcase": _Entry(0, 0, _upcase),
    "values": _Entry(0, 0, _values),
}

_R_FUNCTIONS: dict[str, _Entry] = {
    **{
        name: _to_r(_METHODS[name])
        for name in ("add", "sub", "mul", "div", "mod", "eq", "ne", "lt", "le", "gt", "ge", "not_")
    },
    "and_": _Entry(0, None, _lazy_and, lazy=True),
    "or_": _Entry(0, None, _lazy_or, lazy=True),
    "branch": _Entry(3, None, _lazy_branch, lazy=True),
    "error": _Entry(1, 1, _error),
    "expr": _Entry(1, 1, lambda value: value),
    "json": _Entry(1, 1, _parse_json),
}


# --------------------------------------------------------------------------------------
# Evaluation: a dispatch table from node type to handler
# --------------------------------------------------------------------------------------


class _Evaluator:
    """Evaluates one checked tree against one environment."""

    __slots__ = ("env", "regex_steps")

    def __init__(self, env: Mapping[str, t.Any]) -> None:
        self.env = env
        self.regex_steps = MAX_REGEX_STEPS  # shared by every .match() of one evaluation

    def eval(self, node: ast.expr | None) -> t.Any:
        handler = _HANDLERS.get(type(node))
        if handler is None:  # unreachable after the check; fail closed all the same
            raise errors.ExpressionError(f"Cannot evaluate a {type(node).__name__} node.")
        return handler(self, node)


def _eval_constant(ev: _Evaluator, node: ast.Constant) -> t.Any:
    return node.value


def _eval_name(ev: _Evaluator, node: ast.Name) -> t.Any:
    try:
        return ev.env[node.id]
    except KeyError:
        raise errors.ExpressionError(f"`{node.id}` is not available here.") from None


def _eval_list(ev: _Evaluator, node: ast.List) -> t.Any:
    return [ev.eval(item) for item in node.elts]


def _eval_dict(ev: _Evaluator, node: ast.Dict) -> t.Any:
    result: dict[str, t.Any] = {}
    for key_node, value_node in zip(node.keys, node.values, strict=True):
        key = ev.eval(key_node)
        if not isinstance(key, str):
            raise _fail(f"Object keys must be strings, not {reql_type_name(key)}.", key)
        if key in result:
            raise errors.ExpressionError(f"Duplicate key `{_key_text(key)}` in object literal.")
        result[key] = ev.eval(value_node)
    return result


def _eval_subscript(ev: _Evaluator, node: ast.Subscript) -> t.Any:
    return _bracket(ev.eval(node.value), ev.eval(node.slice))


_BINARY: dict[type[ast.operator], Callable[[t.Any, t.Any], t.Any]] = {
    ast.Add: _add,
    ast.Sub: _sub,
    ast.Mult: _mul,
    ast.Div: _div,
    ast.Mod: _mod,
}


def _eval_binop(ev: _Evaluator, node: ast.BinOp) -> t.Any:
    if isinstance(node.op, (ast.BitAnd, ast.BitOr)):  # ReQL's & and |: and_/or_
        lazy = _lazy_and if isinstance(node.op, ast.BitAnd) else _lazy_or
        return lazy(ev, None, [node.left, node.right])
    return _BINARY[type(node.op)](ev.eval(node.left), ev.eval(node.right))


def _eval_unaryop(ev: _Evaluator, node: ast.UnaryOp) -> t.Any:
    value = ev.eval(node.operand)
    if isinstance(node.op, ast.USub):
        return _neg(value)
    if isinstance(node.op, ast.UAdd):
        return _pos(value)
    return not _truthy(value)  # `not` and ReQL's `~`


def _eval_boolop(ev: _Evaluator, node: ast.BoolOp) -> t.Any:
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


def _eval_compare(ev: _Evaluator, node: ast.Compare) -> t.Any:
    left = ev.eval(node.left)
    for op, comparator in zip(node.ops, node.comparators, strict=True):
        right = ev.eval(comparator)
        if not _compare(_COMPARISONS[type(op)], left, right):
            return False
        left = right
    return True


def _eval_ifexp(ev: _Evaluator, node: ast.IfExp) -> t.Any:
    return ev.eval(node.body) if _truthy(ev.eval(node.test)) else ev.eval(node.orelse)


def _eval_call(ev: _Evaluator, node: ast.Call) -> t.Any:
    func = t.cast("ast.Attribute", node.func)
    if _is_r(func.value):
        entry = _R_FUNCTIONS[func.attr]
        return entry.call(ev, None, _bind_arguments(node, entry))
    entry = _METHODS[func.attr]
    return entry.call(ev, func.value, _bind_arguments(node, entry))


_HANDLERS: dict[type[t.Any], Callable[[_Evaluator, t.Any], t.Any]] = {
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


def _is_r(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "r"


def _bind_arguments(node: ast.Call, entry: _Entry) -> list[ast.expr]:
    """Positional arguments, then keywords in their slots; a skipped slot is ``None``."""
    args = list(node.args)
    if node.keywords:
        by_name = {kw.arg: kw.value for kw in node.keywords}
        last = max(entry.keywords.index(str(name)) for name in by_name)
        for index in range(len(args), last + 1):
            args.append(by_name.get(entry.keywords[index], ast.Constant(value=None)))
    return args


# --------------------------------------------------------------------------------------
# Loading: guards on the raw text, parse, and the allowlist check
# --------------------------------------------------------------------------------------

_KEYWORD_OPERATORS = frozenset(keyword.kwlist) - {"None", "True", "False"}
_OPENING = frozenset("([{")
_CLOSING = frozenset(")]}")

_FEATURES: dict[type[ast.AST], str] = {
    ast.ListComp: "list comprehensions are",
    ast.SetComp: "set comprehensions are",
    ast.DictComp: "dict comprehensions are",
    ast.GeneratorExp: "generator expressions are",
    ast.Set: "set literals are",
    ast.Tuple: "tuples are",
    ast.NamedExpr: "the walrus operator `:=` is",
    ast.JoinedStr: "f-strings are",
    ast.FormattedValue: "f-strings are",
    ast.Await: "`await` is",
    ast.Yield: "`yield` is",
    ast.YieldFrom: "`yield from` is",
    ast.Starred: "star-args `*x` are",
    ast.Slice: "slices `x[a:b]` are",
    ast.Lambda: "a `lambda` is",
}

_FEATURE_HINTS: dict[type[ast.AST], str] = {
    ast.Tuple: "; use a list [...]",
    ast.JoinedStr: "; use + and .coerce_to('string')",
    ast.Slice: "; use .slice(a, b)",
    ast.Set: "; use a list [...]",
}

_REJECTED_OPERATORS: dict[type[ast.AST], tuple[str, str]] = {
    ast.Pow: ("**", "the `**` operator is not supported (ReQL has no power operator)"),
    ast.FloorDiv: ("//", "the `//` operator is not supported; use (a / b).floor()"),
    ast.LShift: ("<<", "the `<<` operator is not supported"),
    ast.RShift: (">>", "the `>>` operator is not supported"),
    ast.BitXor: ("^", "the `^` operator is not supported"),
    ast.MatMult: ("@", "the `@` operator is not supported"),
    ast.In: ("in", "the `in` operator is not supported; use .contains(x)"),
    ast.NotIn: ("not", "the `not in` operator is not supported; use .contains(x).not_()"),
    ast.Is: ("is", "the `is` operator is not supported; use =="),
    ast.IsNot: ("is", "the `is not` operator is not supported; use !="),
}

_ALLOWED_SYNTAX = (
    "JSON literals; the names {names}; x['key'] and x[0]; + - * / %; comparisons; "
    "and, or, not; a if c else b; r.<function>(...) and .<method>(...) from the method table"
)


def _method_list() -> str:
    return ", ".join(f".{name}" for name in sorted(_METHODS))


def _r_function_list() -> str:
    return ", ".join(f"r.{name}" for name in sorted(_R_FUNCTIONS))


class _Source:
    """Maps ast positions (line, UTF-8 byte column) to columns of the one-line display."""

    def __init__(self, text: str, offset: int) -> None:
        self.text = text
        self.offset = offset  # characters stripped from the front before parsing
        self.lines: list[str] = []
        self.starts: list[int] = []
        position = 0
        for match in re.finditer(r"[^\r\n]*(?:\r\n|\r|\n|$)", text):
            if match.start() == len(text) and self.lines:
                break
            self.lines.append(match.group())
            self.starts.append(position)
            position = match.end()

    def column(self, lineno: int | None, col_offset: int | None, *, chars: bool = False) -> int:
        if lineno is None or col_offset is None or not self.lines:
            return self.offset
        line_index = min(max(lineno, 1), len(self.lines)) - 1
        line = self.lines[line_index]
        if chars:
            within = max(col_offset, 0)
        else:
            within = len(line.encode("utf-8")[: max(col_offset, 0)].decode("utf-8", "replace"))
        return self.offset + self.starts[line_index] + within

    def start(self, node: ast.AST) -> int:
        return self.column(getattr(node, "lineno", None), getattr(node, "col_offset", None))

    def end(self, node: ast.AST) -> int:
        return self.column(getattr(node, "end_lineno", None), getattr(node, "end_col_offset", None))

    def find(self, token: str, low: int, high: int) -> int | None:
        """Column of ``token`` in the display between two columns, if it is there."""
        segment = self.text[max(low - self.offset, 0) : max(high - self.offset, 0)]
        pattern = rf"\b{re.escape(token)}\b" if token.isalpha() else re.escape(token)
        found = re.search(pattern, segment)
        return None if found is None else max(low, self.offset) + found.start()


class _Rejected(Exception):
    def __init__(self, column: int, message: str, allowed: str | None) -> None:
        super().__init__(message)
        self.column = column
        self.message = message
        self.allowed = allowed


class _Checker:
    """The allowlist: one handler per node type; anything else is rejected."""

    def __init__(self, source: _Source, names: frozenset[str]) -> None:
        self.source = source
        self.names = names
        self.name_list = ", ".join([*sorted(names), "r"])
        self.allowed = _ALLOWED_SYNTAX.format(names=", ".join(sorted(names)) or "(none)")
        self.parents: dict[int, ast.AST] = {}
        self.occurrences: list[ast.Name] = []

    def rejection(self, column: int, message: str, allowed: str | None = None) -> _Rejected:
        return _Rejected(column, message, self.allowed if allowed is None else allowed)

    def check(self, root: ast.expr) -> ast.expr:
        body = self.lambda_prefix(root)
        stack: list[tuple[ast.AST, int]] = [(body, 1)]
        while stack:
            node, depth = stack.pop()
            if depth > MAX_AST_DEPTH:
                raise self.rejection(
                    self.source.start(node),
                    f"the expression nests more than {MAX_AST_DEPTH} levels deep (MAX_AST_DEPTH)",
                    "simpler expressions; split long chains of + into .add(a, b, c)",
                )
            handler = _CHECKERS.get(type(node))
            if handler is None:
                self.reject_feature(node)
            children = handler(self, node)
            for child in reversed(children):  # report the leftmost problem first
                self.parents[id(child)] = node
                stack.append((child, depth + 1))
        return body

    def lambda_prefix(self, root: ast.expr) -> ast.expr:
        if not isinstance(root, ast.Lambda):
            return root
        args = root.args
        params = [*args.posonlyargs, *args.args]
        column = self.source.start(root)
        choices = ", ".join(sorted(self.names)) or "(none)"
        allowed = f"lambda <name>: ... with <name> one of: {choices}"
        if (
            len(params) != 1
            or args.vararg
            or args.kwarg
            or args.kwonlyargs
            or args.defaults
            or args.posonlyargs
        ):
            raise self.rejection(column, "a `lambda` prefix takes exactly one parameter", allowed)
        param = params[0]
        if param.arg not in self.names:
            raise self.rejection(
                self.source.start(param),
                f"the lambda's parameter must be one of: {choices}",
                allowed,
            )
        return root.body

    def reject_feature(self, node: ast.AST) -> t.NoReturn:
        feature = _FEATURES.get(type(node), f"`{type(node).__name__}` nodes are")
        hint = _FEATURE_HINTS.get(type(node), "")
        if isinstance(node, ast.Lambda):
            raise self.rejection(
                self.source.start(node),
                "a `lambda` is only allowed as the one prefix `lambda info: ...`",
            )
        raise self.rejection(
            self.source.start(node), f"{feature} not supported in an expression{hint}"
        )

    # -- handlers: each returns the children to check next ----------------------------

    def constant(self, node: ast.Constant) -> list[ast.AST]:
        value = node.value
        column = self.source.start(node)
        if isinstance(value, bool) or value is None or isinstance(value, str):
            return []
        if isinstance(value, int):
            if abs(value) > MAX_INT:
                raise self.rejection(column, f"the integer {value} is larger than 2**53 (MAX_INT)")
            return []
        if isinstance(value, float):
            if not math.isfinite(value):
                raise self.rejection(column, f"the number {value!r} is not finite")
            return []
        kinds = {bytes: "bytes literals", complex: "complex numbers", type(...): "`...` (Ellipsis)"}
        kind = kinds.get(type(value), f"{type(value).__name__} literals")
        raise self.rejection(column, f"{kind} are not JSON values")

    def name(self, node: ast.Name) -> list[ast.AST]:
        column = self.source.start(node)
        if node.id in self.names:
            self.occurrences.append(node)
            return []
        if node.id == "r":
            raise self.rejection(
                column,
                "`r` is only usable as r.<function>(...)",
                f"r functions: {_r_function_list()}",
            )
        hints = {"null": "None", "true": "True", "false": "False"}
        if node.id in hints:
            raise self.rejection(
                column,
                f"`{node.id}` is not allowed in an expression (names: {self.name_list}); "
                f"write {hints[node.id]}",
                f"names: {self.name_list}",
            )
        raise self.rejection(
            column,
            f"`{node.id}` is not allowed in an expression (names: {self.name_list})",
            f"names: {self.name_list}",
        )

    def attribute_column(self, node: ast.Attribute) -> int:
        name_start = self.source.end(node) - len(node.attr)
        index = name_start - 1 - self.source.offset
        while index >= 0 and self.source.text[index] in " \t\r\n\\":
            index -= 1
        if index >= 0 and self.source.text[index] == ".":
            return index + self.source.offset
        return name_start

    def attribute(self, node: ast.Attribute) -> list[ast.AST]:
        while isinstance(node.value, ast.Attribute):  # report the leftmost `.x` of a chain
            node = node.value
        column = self.attribute_column(node)
        self.check_attribute_name(node, column)
        if _is_r(node.value):
            raise self.rejection(
                column,
                f"`r.{node.attr}` must be called: r.{node.attr}(...)",
                f"r functions: {_r_function_list()}",
            )
        segment = ast.get_source_segment(self.source.text, node.value) or "x"
        target = segment if len(segment) <= 40 and "\n" not in segment else "x"
        raise self.rejection(
            column,
            f"attribute access `.{node.attr}` is not allowed; use {target}['{node.attr}']",
            "x['field'] to read a field, and .method(...) calls from the method table",
        )

    def check_attribute_name(self, node: ast.Attribute, column: int) -> None:
        if node.attr.startswith("_"):
            raise self.rejection(
                column,
                f"`.{node.attr}` is not allowed: names that start with `_` are never accessible",
                "x['field'] to read a field, and .method(...) calls from the method table",
            )

    def subscript(self, node: ast.Subscript) -> list[ast.AST]:
        return [node.value, node.slice]

    def list_(self, node: ast.List) -> list[ast.AST]:
        return list(node.elts)

    def dict_(self, node: ast.Dict) -> list[ast.AST]:
        children: list[ast.AST] = []
        seen: set[str] = set()
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None:
                value_start = self.source.start(value) - self.source.offset
                stars = self.source.text.rfind("**", 0, max(value_start, 0))
                raise self.rejection(
                    self.source.offset + max(stars, 0),
                    "dict unpacking `**x` is not supported; use .merge(x)",
                )
            if isinstance(key, ast.Constant):
                if not isinstance(key.value, str):
                    raise self.rejection(self.source.start(key), "object keys must be strings")
                if key.value in seen:
                    raise self.rejection(
                        self.source.start(key), f"duplicate key `{key.value}` in object literal"
                    )
                seen.add(key.value)
            children.extend((key, value))
        return children

    def operator(self, node: ast.AST, op: ast.AST, left: ast.AST, right: ast.AST) -> None:
        rejected = _REJECTED_OPERATORS.get(type(op))
        if rejected is None:
            return
        token, message = rejected
        column = self.source.find(token, self.source.end(left), self.source.start(right))
        raise self.rejection(self.source.start(node) if column is None else column, message)

    def binop(self, node: ast.BinOp) -> list[ast.AST]:
        self.operator(node, node.op, node.left, node.right)
        return [node.left, node.right]

    def unaryop(self, node: ast.UnaryOp) -> list[ast.AST]:
        return [node.operand]

    def boolop(self, node: ast.BoolOp) -> list[ast.AST]:
        return list(node.values)

    def compare(self, node: ast.Compare) -> list[ast.AST]:
        left: ast.AST = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            self.operator(node, op, left, right)
            left = right
        return [node.left, *node.comparators]

    def ifexp(self, node: ast.IfExp) -> list[ast.AST]:
        return [node.body, node.test, node.orelse]

    def namedexpr(self, node: ast.NamedExpr) -> list[ast.AST]:
        column = self.source.find(":=", self.source.end(node.target), self.source.start(node.value))
        raise self.rejection(
            self.source.start(node) if column is None else column,
            "the walrus operator `:=` is not supported in an expression",
        )

    def call(self, node: ast.Call) -> list[ast.AST]:
        func = node.func
        if not isinstance(func, ast.Attribute):
            self.call_target(func)
        column = self.attribute_column(func)
        self.check_attribute_name(func, column)
        if _is_r(func.value):
            entry = _R_FUNCTIONS.get(func.attr)
            label = f"r.{func.attr}()"
            if entry is None:
                listing = f"supported r functions: {_r_function_list()}"
                raise self.rejection(
                    column, f"`r.{func.attr}` is not supported; {listing}", listing
                )
            children: list[ast.AST] = []
        else:
            entry = _METHODS.get(func.attr)
            label = f".{func.attr}()"
            if entry is None:
                listing = f"supported methods: {_method_list()}"
                raise self.rejection(
                    column, f"method `.{func.attr}()` is not supported; {listing}", listing
                )
            children = [func.value]
        self.check_arguments(node, entry, label, column)
        children.extend(node.args)
        children.extend(kw.value for kw in node.keywords)
        return children

    def call_target(self, func: ast.expr) -> t.NoReturn:
        column = self.source.start(func)
        if isinstance(func, ast.Name) and func.id not in self.names and func.id != "r":
            self.name(func)  # raises: not an allowed name
        raise self.rejection(
            column,
            "only r.<function>(...) and .<method>(...) from the table can be called",
            f"r functions: {_r_function_list()}; methods: {_method_list()}",
        )

    def check_arguments(self, node: ast.Call, entry: _Entry, label: str, column: int) -> None:
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.rejection(self.source.start(arg), "star-args `*x` are not supported")
        given = set()
        for kw in node.keywords:
            kw_column = self.source.start(kw)
            if kw.arg is None:
                raise self.rejection(kw_column, "`**kwargs` is not supported")
            if not entry.keywords:
                raise self.rejection(kw_column, f"`{label}` takes no keyword arguments")
            if kw.arg not in entry.keywords:
                raise self.rejection(
                    kw_column,
                    f"`{label}` has no keyword `{kw.arg}` (keywords: {', '.join(entry.keywords)})",
                )
            if entry.keywords.index(kw.arg) < len(node.args) or kw.arg in given:
                raise self.rejection(kw_column, f"`{label}` got two values for `{kw.arg}`")
            given.add(kw.arg)
        count = len(_bind_arguments(node, entry)) if node.keywords else len(node.args)
        low, high = entry.min_args, entry.max_args
        if low <= count and (high is None or count <= high):
            if label == "r.branch()" and count % 2 == 0:
                raise self.rejection(
                    column, f"`r.branch()` takes an odd number of arguments (got {count})"
                )
            return
        if high is None:
            expected = f"at least {low}"
        elif low == high:
            expected = str(low)
        else:
            expected = f"{low} to {high}"
        plural = "" if expected in ("1", "at least 1") else "s"
        raise self.rejection(column, f"`{label}` takes {expected} argument{plural} (got {count})")


_CHECKERS: dict[type[ast.AST], Callable[[_Checker, t.Any], list[ast.AST]]] = {
    ast.Constant: _Checker.constant,
    ast.Name: _Checker.name,
    ast.Attribute: _Checker.attribute,
    ast.Subscript: _Checker.subscript,
    ast.List: _Checker.list_,
    ast.Dict: _Checker.dict_,
    ast.BinOp: _Checker.binop,
    ast.UnaryOp: _Checker.unaryop,
    ast.BoolOp: _Checker.boolop,
    ast.Compare: _Checker.compare,
    ast.IfExp: _Checker.ifexp,
    ast.Call: _Checker.call,
    ast.NamedExpr: _Checker.namedexpr,
}


def _nesting_bound(text: str) -> tuple[int, tuple[int, int]] | None:
    """An upper bound on how deep the parser would nest, read from tokens, without parsing.

    Every node on a path from the root to a leaf owns an operator, keyword or bracket
    token; the bound adds, for each open bracket, the tokens of the current comma-separated
    segment plus the deepest bracket closed inside it. Returns (bound, (line, column)) as
    soon as the bound passes the limit, or None when it stays under (or the text does not
    tokenize: the parser will then report it, cheaply).
    """
    frames: list[list[int]] = [[0, 0, 0]]  # [tokens in segment, deepest inner, best segment]
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.OP:
                if token.string in _OPENING:
                    frames[-1][0] += 1
                    frames.append([0, 0, 0])
                elif token.string in _CLOSING:
                    if len(frames) == 1:
                        return None
                    ops, inner, best = frames.pop()
                    frames[-1][1] = max(frames[-1][1], max(best, ops + inner) + 1)
                elif token.string == ",":
                    frame = frames[-1]
                    frame[2] = max(frame[2], frame[0] + frame[1])
                    frame[0] = frame[1] = 0
                else:
                    frames[-1][0] += 1
            elif token.type == tokenize.NAME and token.string in _KEYWORD_OPERATORS:
                frames[-1][0] += 1
            else:
                continue
            bound = sum(max(best, ops + inner) for ops, inner, best in frames) + len(frames)
            if bound > _MAX_PARSE_NESTING:
                return bound, token.start
    except (tokenize.TokenError, SyntaxError):
        return None
    return None


def _syntax_error(
    path: str, source: str, column: int, message: str, allowed: str | None = None
) -> errors.ExpressionSyntaxError:
    return errors.ExpressionSyntaxError(
        path, message, expression=source, column=column, allowed=allowed
    )


def compile_expression(source: str, *, path: str, names: Collection[str] = ("info",)) -> Expression:
    """Parse and check an expression once, when the config is loaded.

    Args:
        source: the expression text, e.g. ``info['body']['meta']['next'].default(None)``;
            an optional ``lambda info:`` prefix is accepted.
        path: where the expression sits in the config, e.g. ``streams[0].page``; it starts
            every error message.
        names: the names the expression may read (besides ``r``); evaluation maps each to a
            JSON value.

    Returns:
        The checked :class:`Expression`.

    Raises:
        ExpressionSyntaxError: the expression is not in the language; the message prints it
            with a caret under ``column`` and says what is allowed.
    """
    allowed_names = frozenset((names,) if isinstance(names, str) else names)
    for name in allowed_names:
        if not name.isidentifier() or keyword.iskeyword(name) or name == "r":
            raise ValueError(f"{name!r} cannot be an expression name")
    if not isinstance(source, str):
        raise _syntax_error(
            path,
            _excerpt(source, 60),
            0,
            f"an expression must be a string, not {type(source).__name__}",
        )
    if len(source) > MAX_EXPRESSION_LENGTH:
        shown = source[:60] + "..."
        raise _syntax_error(
            path,
            shown,
            60,
            f"the expression is {len(source)} characters long; "
            f"the limit is {MAX_EXPRESSION_LENGTH} (MAX_EXPRESSION_LENGTH)",
        )
    stripped = source.lstrip()
    info = _Source(stripped, len(source) - len(stripped))
    if not stripped.strip():
        raise _syntax_error(path, source, len(source), "the expression is empty")
    too_deep = _nesting_bound(stripped)
    if too_deep is not None:
        (line, col) = too_deep[1]
        raise _syntax_error(
            path,
            source,
            info.column(line, col, chars=True),
            f"the expression nests too deeply to parse (more than {_MAX_PARSE_NESTING} "
            "operators and brackets inside one another)",
        )
    try:
        tree = ast.parse(stripped, mode="eval")
    except SyntaxError as exc:
        reason = exc.msg
        if exc.lineno is None:
            column = 0
        elif not exc.offset:  # the parser ran out of text
            column = len(source.rstrip())
            if reason == "invalid syntax":
                reason = "the expression ends too early"
        else:
            column = info.column(exc.lineno, exc.offset - 1, chars=True)
        raise _syntax_error(path, source, column, f"invalid syntax: {reason}") from None
    except (RecursionError, MemoryError, ValueError) as exc:
        raise _syntax_error(
            path, source, 0, f"the expression cannot be parsed ({type(exc).__name__})"
        ) from None
    checker = _Checker(info, allowed_names)
    try:
        body = checker.check(tree.body)
    except _Rejected as rejected:
        raise _syntax_error(
            path, source, rejected.column, rejected.message, rejected.allowed
        ) from None
    reads = _read_paths(checker)
    return Expression(source=source, names=allowed_names, body=body, reads=reads)


_PathKey: t.TypeAlias = "str | int"


def _constant_key(node: ast.AST) -> _PathKey | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int)):
        return None if isinstance(node.value, bool) else node.value
    return None


def _read_paths(checker: _Checker) -> dict[str, tuple[tuple[_PathKey, ...], ...]]:
    """For each name, the constant paths the expression reads under it (see ``reads``)."""
    found: dict[str, list[tuple[_PathKey, ...]]] = {}
    for occurrence in checker.occurrences:
        path: list[_PathKey] = []
        node: ast.AST = occurrence
        while True:
            parent = checker.parents.get(id(node))
            if isinstance(parent, ast.Subscript) and parent.value is node:
                key = _constant_key(parent.slice)
            elif (
                isinstance(parent, ast.Call)
                and isinstance(parent.func, ast.Attribute)
                and parent.func.value is node
                and parent.func.attr in ("get_field", "nth")
                and len(parent.args) == 1
            ):
                key = _constant_key(parent.args[0])
            else:
                key = None
            if parent is None or key is None:
                break
            path.append(key)
            node = parent
        found.setdefault(occurrence.id, []).append(tuple(path))
    return {name: tuple(paths) for name, paths in found.items()}


def _keys_may_meet(read: _PathKey, asked: _PathKey) -> bool:
    if isinstance(read, str) != isinstance(asked, str):
        return True  # a string key on an array reads into every element: keep it possible
    return read == asked


class Expression:
    """A checked expression, ready to evaluate any number of times (thread-safe).

    Build it with :func:`compile_expression`.

    Attributes:
        source: the expression text as written in the config.
        names: the names it may read (besides ``r``).
    """

    __slots__ = ("_body", "_reads", "names", "source")

    def __init__(
        self,
        *,
        source: str,
        names: frozenset[str],
        body: ast.expr,
        reads: dict[str, tuple[tuple[_PathKey, ...], ...]],
    ) -> None:
        self.source = source
        self.names = names
        self._body = body
        self._reads = reads

    def evaluate(self, env: Mapping[str, t.Any]) -> t.Any:
        """Evaluate against JSON values; the values are never modified.

        Args:
            env: each name the expression reads, mapped to a JSON value, e.g.
                ``{"info": {"params": {...}, "header": {...}, "body": ...}}``.

        Returns:
            A JSON value (it may share parts with ``env``: copy before changing it).

        Raises:
            NonExistenceError: a missing field, an index out of bounds, or null where a
                value was needed, not absorbed by ``.default()``.
            ExpressionError: any other failure; the message is RethinkDB's where it has
                one. Callers add the request and the ``info`` it saw.
        """
        token = _BUDGET.set(_Budget(MAX_EVALUATION_STEPS))
        try:
            return _Evaluator(env).eval(self._body)
        except (RecursionError, MemoryError) as exc:
            raise errors.ExpressionError(
                f"The expression could not be evaluated ({type(exc).__name__})."
            ) from None
        finally:
            _BUDGET.reset(token)

    def reads(self, name: str, *prefix: _PathKey) -> bool:
        """Could evaluation read ``env[name][prefix[0]][prefix[1]]...`` (or part of it)?

        Static and conservative: ``info['header']['link']['rel="next"']`` reads
        ``('header', 'link')`` but not ``('header', 'date')`` nor ``('body',)``; a computed
        subscript, or any use of a value other than a constant subscript (a method,
        ``r.expr(info)``, returning it), counts as reading everything under it.

        Args:
            name: one of the expression's names.
            *prefix: keys under it; none asks whether the name is used at all.

        Returns:
            False only when evaluation certainly does not touch that part of ``env``.
        """
        for path in self._reads.get(name, ()):
            common = min(len(path), len(prefix))
            if all(_keys_may_meet(path[i], prefix[i]) for i in range(common)):
                return True
        return False

    def __str__(self) -> str:
        return self.source

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Expression):
            return NotImplemented
        return (self.source, self.names) == (other.source, other.names)

    def __hash__(self) -> int:
        return hash((self.source, self.names))
