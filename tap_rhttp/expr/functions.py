"""The methods and ``r.`` functions: one table, read by the checker and the evaluator.

Each implementation is registered with its signature right above it (as jmespath's
``@signature`` does): the names it answers to, how many arguments it takes, whether it
evaluates them itself (``lazy``: ``.default``, ``r.branch``, ``and_``, the comparison
chains, which must not evaluate what they skip, and ``r.now``, which asks the evaluator
for its instant), and which of its parameters may be given by keyword. The checker
rejects an unknown name or a wrong argument count at load; the evaluator calls the very
same entry, so what was checked is what runs.

A method ``x.m(a, ...)`` registered with ``r_too=True`` is also ``r.m(x, a, ...)``.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import itertools
import json
import math
import operator
import re
import typing as t
import unicodedata

from tap_rhttp import errors
from tap_rhttp.expr import times
from tap_rhttp.expr.operators import (
    _add,
    _arith,
    _compare,
    _div,
    _get_field,
    _mod,
    _mul,
    _nth,
    _sub,
)
from tap_rhttp.expr.regex import _match
from tap_rhttp.expr.times import Time
from tap_rhttp.expr.values import (
    _CHAR_BYTES,
    _ENTRY_BYTES,
    _SCAN_CHARACTERS_PER_STEP,
    _SLOT_BYTES,
    JSON,
    MAX_ARRAY_LENGTH,
    MAX_STRING_LENGTH,
    _as_array,
    _as_int,
    _as_number,
    _as_object,
    _as_string,
    _build,
    _build_array,
    _build_object,
    _build_strings,
    _bytes_left,
    _check_array,
    _check_array_size,
    _check_string_size,
    _excerpt,
    _expected,
    _fail,
    _iso_text,
    _json_equal,
    _json_text,
    _key_text,
    _non_object_non_sequence,
    _not_a_sequence,
    _number_result,
    _spend,
    _truthy,
    reql_type_name,
)

if t.TYPE_CHECKING:
    from collections.abc import Callable

_F = t.TypeVar("_F", bound="Callable[..., t.Any]")


class _Evaluates(t.Protocol):
    """What a lazy entry needs from the evaluator (see :mod:`tap_rhttp.expr.evaluator`)."""

    def eval(self, node: ast.expr | None) -> JSON: ...

    def now(self) -> Time:
        """The evaluation's one ``r.now()``."""
        ...


_LazyFn: t.TypeAlias = "Callable[[_Evaluates, ast.expr | None, list[ast.expr]], JSON]"


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One callable: ``fn(receiver, *args)``, or lazily ``fn(evaluator, receiver, args)``."""

    min_args: int
    max_args: int | None  # None: any number
    fn: Callable[..., JSON]
    lazy: bool = False
    keywords: tuple[str, ...] = ()  # positional parameters that may be given by keyword
    counts: tuple[int, ...] = ()  # when set, the only argument counts allowed

    def call(self, ev: _Evaluates, receiver: ast.expr | None, args: list[ast.expr]) -> JSON:
        if self.lazy:
            return self.fn(ev, receiver, args)
        values = [ev.eval(arg) for arg in args]
        if receiver is None:
            return self.fn(*values)
        return self.fn(ev.eval(receiver), *values)


_METHODS: dict[str, _Entry] = {}
"""``x.name(...)``: the receiver is the first argument of ``fn``."""

_R_FUNCTIONS: dict[str, _Entry] = {}
"""``r.name(...)``: no receiver."""


def _plus_one(count: int | None) -> int | None:
    return None if count is None else count + 1


def _to_r(entry: _Entry) -> _Entry:
    """The ``r.m(x, ...)`` spelling of a method ``x.m(...)``."""
    if entry.lazy:
        method = entry.fn

        def fn(ev: _Evaluates, receiver: ast.expr | None, args: list[ast.expr]) -> JSON:
            return method(ev, args[0], args[1:])

        return _Entry(entry.min_args + 1, _plus_one(entry.max_args), fn, lazy=True)
    return _Entry(entry.min_args + 1, _plus_one(entry.max_args), entry.fn)


def _register(
    table: dict[str, _Entry],
    names: tuple[str, ...],
    arity: tuple[int, int | None],
    *,
    lazy: bool,
    keywords: tuple[str, ...],
    r_too: bool = False,
    counts: tuple[int, ...] = (),
) -> Callable[[_F], _F]:
    def register(fn: _F) -> _F:
        entry = _Entry(arity[0], arity[1], fn, lazy=lazy, keywords=keywords, counts=counts)
        for name in names:
            if name in table:
                raise ValueError(f"{name} is registered twice")
            table[name] = entry
            if r_too:
                if name in _R_FUNCTIONS:
                    raise ValueError(f"r.{name} is registered twice")
                _R_FUNCTIONS[name] = _to_r(entry)
        return fn

    return register


def _method(
    *names: str,
    arity: tuple[int, int | None],
    lazy: bool = False,
    keywords: tuple[str, ...] = (),
    r_too: bool = False,
) -> Callable[[_F], _F]:
    """Register ``x.name(...)`` taking ``arity[0]`` to ``arity[1]`` (None: any) arguments."""
    return _register(_METHODS, names, arity, lazy=lazy, keywords=keywords, r_too=r_too)


def _function(
    *names: str,
    arity: tuple[int, int | None],
    lazy: bool = False,
    keywords: tuple[str, ...] = (),
    counts: tuple[int, ...] = (),
) -> Callable[[_F], _F]:
    """Register ``r.name(...)``; ``counts``, when given, are the only arities allowed."""
    return _register(_R_FUNCTIONS, names, arity, lazy=lazy, keywords=keywords, counts=counts)


# --------------------------------------------------------------------------------------
# Lazy entries: they evaluate their own arguments
# --------------------------------------------------------------------------------------


@_method("default", arity=(1, 1), lazy=True)
def _lazy_default(ev: _Evaluates, receiver: ast.expr | None, args: list[ast.expr]) -> JSON:
    assert receiver is not None
    try:
        value = ev.eval(receiver)
    except errors.NonExistenceError:
        return ev.eval(args[0])
    return ev.eval(args[0]) if value is None else value


@_method("and_", arity=(0, None), lazy=True)
@_function("and_", arity=(0, None), lazy=True)
def _lazy_and(ev: _Evaluates, receiver: ast.expr | None, args: list[ast.expr]) -> JSON:
    value: JSON = True
    for node in [receiver, *args] if receiver is not None else args:
        value = ev.eval(node)
        if not _truthy(value):
            return value
    return value


@_method("or_", arity=(0, None), lazy=True)
@_function("or_", arity=(0, None), lazy=True)
def _lazy_or(ev: _Evaluates, receiver: ast.expr | None, args: list[ast.expr]) -> JSON:
    value: JSON = False
    for node in [receiver, *args] if receiver is not None else args:
        value = ev.eval(node)
        if _truthy(value):
            return value
    return value


@_function("branch", arity=(3, None), lazy=True)
def _lazy_branch(ev: _Evaluates, receiver: ast.expr | None, args: list[ast.expr]) -> JSON:
    for index in range(0, len(args) - 1, 2):
        if _truthy(ev.eval(args[index])):
            return ev.eval(args[index + 1])
    return ev.eval(args[-1])


def _lazy_comparison(op: str) -> _LazyFn:
    def compare(ev: _Evaluates, receiver: ast.expr | None, args: list[ast.expr]) -> JSON:
        nodes = [receiver, *args] if receiver is not None else args
        left = ev.eval(nodes[0])
        for node in nodes[1:]:
            right = ev.eval(node)
            if not _compare("==" if op == "!=" else op, left, right):
                return op == "!="
            left = right
        return op != "!="

    return compare


_method("eq", arity=(1, None), lazy=True, r_too=True)(_lazy_comparison("=="))
_method("ne", arity=(1, None), lazy=True, r_too=True)(_lazy_comparison("!="))
_method("lt", arity=(1, None), lazy=True, r_too=True)(_lazy_comparison("<"))
_method("le", arity=(1, None), lazy=True, r_too=True)(_lazy_comparison("<="))
_method("gt", arity=(1, None), lazy=True, r_too=True)(_lazy_comparison(">"))
_method("ge", arity=(1, None), lazy=True, r_too=True)(_lazy_comparison(">="))


# --------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------


def _fold(op: Callable[[JSON, JSON], JSON]) -> Callable[..., JSON]:
    def folded(value: JSON, *others: JSON) -> JSON:
        result = value
        for other in others:
            result = op(result, other)
        return result

    return folded


_method("add", arity=(1, None), r_too=True)(_fold(_add))
_method("sub", arity=(1, None), r_too=True)(_fold(_sub))
_method("mul", arity=(1, None), r_too=True)(_fold(_mul))
_method("div", arity=(1, None), r_too=True)(_fold(_div))
_method("mod", arity=(1, 1), r_too=True)(_mod)


@_method("floor", arity=(0, 0))
def _floor(value: JSON) -> JSON:
    number = _as_number(value)
    return number if isinstance(number, int) else _number_result(float(math.floor(number)))


@_method("ceil", arity=(0, 0))
def _ceil(value: JSON) -> JSON:
    number = _as_number(value)
    return number if isinstance(number, int) else _number_result(float(math.ceil(number)))


@_method("round", arity=(0, 0))
def _round(value: JSON) -> JSON:
    number = _as_number(value)
    if isinstance(number, int):
        return number
    magnitude = abs(number)
    whole = math.floor(magnitude)
    if magnitude - whole >= 0.5:
        whole += 1
    return _number_result(float(-whole if number < 0 else whole))


@_method("sum", arity=(0, 0))
def _sum(value: JSON) -> JSON:
    total: int | float = 0
    items = _as_array(value)
    _spend(len(items))
    for item in items:
        total = total + _as_number(item)
    return _arith(operator.add, total, 0)


# --------------------------------------------------------------------------------------
# Any value: truthiness, types, coerce_to and JSON
# --------------------------------------------------------------------------------------


@_method("not_", arity=(0, 0), r_too=True)
def _not(value: JSON) -> bool:
    return not _truthy(value)


@_function("expr", arity=(1, 1))
def _expr(value: JSON) -> JSON:
    return value


@_function("error", arity=(1, 1))
def _error(message: JSON) -> t.NoReturn:
    raise errors.ExpressionError(_as_string(message))


_method("type_of", arity=(0, 0))(reql_type_name)

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


@_method("to_json_string", "to_json", arity=(0, 0))
def _to_json_string(value: JSON) -> str:
    room = min(MAX_STRING_LENGTH, _bytes_left() // _CHAR_BYTES)  # stop writing at the limit
    text = _json_text(value, room, sort_keys=True, strict=True)
    if text is None and room == MAX_STRING_LENGTH:
        raise errors.ExpressionError(
            "Cannot build a string of more than "
            f"{MAX_STRING_LENGTH} characters (MAX_STRING_LENGTH) from this value."
        )
    _build_strings(room + 1 if text is None else len(text), 1, "`to_json_string`")
    return t.cast("str", text)


def _pairs_to_object(value: list[JSON]) -> dict[str, JSON]:
    result: dict[str, JSON] = {}
    _spend(len(value))
    _build_object(len(value), "`coerce_to('object')`")
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


@_method("coerce_to", arity=(1, 1))
def _coerce_to(value: JSON, type_name: JSON) -> JSON:
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
        if isinstance(value, Time):
            return _iso_text(value)
        return _to_json_string(value)
    if source == "PTYPE<TIME>" and target == "OBJECT":  # ReQL's own form of a time
        _build_object(3, "`coerce_to('object')`")
        return {
            "$reql_type$": "TIME",
            "epoch_time": _number_result(value.ms / 1000),
            "timezone": value.tz,
        }
    if source == "OBJECT" and target == "ARRAY":
        _check_array_size(len(value), "`coerce_to('array')`")
        _build(len(value) * (2 * _SLOT_BYTES + _ENTRY_BYTES), "`coerce_to('array')`")
        _spend(len(value))
        return [[key, value[key]] for key in sorted(value)]
    if source == "ARRAY" and target == "OBJECT":
        return _pairs_to_object(value)
    if source == "STRING" and target == "NUMBER":
        return _parse_number(value)
    raise _fail(f"Cannot coerce {source} to {target}.", value)


_JSON_PARSE_BYTES = 24  # the most json.loads builds per character of text: `[{},{},...]`


def _no_constant(text: str) -> t.NoReturn:
    raise ValueError(f"{text} is not valid JSON")


@_function("json", arity=(1, 1))
def _parse_json(text: JSON) -> JSON:
    if not isinstance(text, str):
        raise _expected("STRING", text)
    if len(text) > MAX_STRING_LENGTH:
        raise errors.ExpressionError(
            f"Cannot parse {len(text)} characters as JSON: "
            f"the limit is {MAX_STRING_LENGTH} (MAX_STRING_LENGTH)."
        )
    _build(_JSON_PARSE_BYTES * len(text), "`r.json`")
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


def _ascii_case(text: str, *, upper: bool) -> str:
    """ReQL's ``upcase``/``downcase``: ASCII letters only, in one pass in C.

    UTF-8 keeps every non-ASCII character in bytes of 0x80 and above, which ``bytes``
    case mapping leaves alone (``str.translate`` would look each one up in a dict).
    """
    _spend(len(text) // _SCAN_CHARACTERS_PER_STEP)
    if text.isascii():
        return text.upper() if upper else text.lower()
    data = text.encode("utf-8", "surrogatepass")
    data = data.upper() if upper else data.lower()  # the first copy is freed here
    return data.decode("utf-8", "surrogatepass")


@_method("upcase", arity=(0, 0))
def _upcase(value: JSON) -> str:
    text = _as_string(value)
    _check_string_size(len(text), "`upcase`")
    return _ascii_case(text, upper=True)


@_method("downcase", arity=(0, 0))
def _downcase(value: JSON) -> str:
    text = _as_string(value)
    _check_string_size(len(text), "`downcase`")
    return _ascii_case(text, upper=False)


@_method("match", arity=(1, 1))
def _match_method(value: JSON, regex: JSON) -> JSON:
    return _match(_as_string(value), _as_string(regex))


@functools.cache
def _character_pattern() -> re.Pattern[str]:
    """One character and the combining marks after it: a piece of ReQL's ``split('')``.

    ``re`` cannot name a Unicode category, so the class of marks (Mn, Mc, Me) is read
    from ``unicodedata`` once per process (about 40 ms). Marks exist only in
    U+0300..U+1FFFF and U+E0000..U+E0FFF (a test checks the whole database). The
    pattern has no nested quantifier, so even ``re`` runs it in linear time.
    """
    category = unicodedata.category
    ranges: list[str] = []
    for low, high in _MARK_PLANES:
        start: int | None = None
        for code in range(low, high + 1):
            if category(chr(code))[0] == "M":
                start = code if start is None else start
            elif start is not None:
                ranges.append(f"\\U{start:08x}-\\U{code - 1:08x}")
                start = None
        if start is not None:
            ranges.append(f"\\U{start:08x}-\\U{high:08x}")
    return re.compile(f"(?s).[{''.join(ranges)}]*")


_MARK_PLANES = ((0x0300, 0x1FFFF), (0xE0000, 0xE0FFF))


def _split_characters(text: str, limit: int) -> list[str]:
    """ReQL's ``split('')``: characters, each with the combining marks that follow it.

    Linear, and charged as such: a step per piece, and one per 32 characters scanned.
    """
    size = len(text)
    if text.isascii():  # no combining marks: one character a piece
        count = size if limit < 0 or limit >= size else limit + 1
        _check_array_size(count, "`split`")
        _spend(count)
        _build_strings(size, count, "`split`")
        return list(text) if count == size else [*text[:limit], text[limit:]]
    _spend(size // _SCAN_CHARACTERS_PER_STEP)
    most = MAX_ARRAY_LENGTH + 1 if limit < 0 else limit  # one more than allowed: an error
    found = itertools.islice(_character_pattern().finditer(text), most)
    pieces = [match.group() for match in found]
    _spend(len(pieces))
    end = sum(map(len, pieces))
    if end < size and limit >= 0:  # the limit was reached: the rest is the last piece
        pieces.append(text[end:])
    _check_array_size(len(pieces), "`split`")
    _build_strings(size, len(pieces), "`split`")
    return pieces


@_method("split", arity=(0, 2), keywords=("sep", "max_splits"))
def _split(value: JSON, sep: JSON = None, max_splits: JSON = None) -> list[str]:
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
    if sep == "":
        return _split_characters(text, limit)
    bounded = MAX_ARRAY_LENGTH if limit < 0 else limit  # never more than one piece too many
    _spend(len(text) // _SCAN_CHARACTERS_PER_STEP)
    if sep is None:  # whitespace runs: the pieces are counted once built (never too many)
        pieces = _check_array(text.split(None, bounded), "`split`")
    else:
        _check_array_size(min(text.count(sep), bounded) + 1, "`split`")
        pieces = text.split(sep, bounded)
    _build_strings(len(text), len(pieces), "`split`")
    return pieces


# --------------------------------------------------------------------------------------
# Arrays and objects
# --------------------------------------------------------------------------------------


@_method("count", arity=(0, 1))
def _count(value: JSON, *needle: JSON) -> int:
    if needle:
        items = _as_array(value)
        _spend(len(items))
        return sum(1 for item in items if _json_equal(item, needle[0]))
    if isinstance(value, (list, str, dict)):
        return len(value)
    raise _not_a_sequence(value)


@_method("is_empty", arity=(0, 0))
def _is_empty(value: JSON) -> bool:
    return _count(value) == 0


@_method("keys", arity=(0, 0))
def _keys(value: JSON) -> list[str]:
    obj = _as_object(value)
    _check_array_size(len(obj), "`keys`")
    _spend(len(obj))
    return sorted(obj)


@_method("values", arity=(0, 0))
def _values(value: JSON) -> list[JSON]:
    obj = _as_object(value)
    _check_array_size(len(obj), "`values`")
    _spend(len(obj))
    return [obj[key] for key in sorted(obj)]


@_method("contains", arity=(1, None))
def _contains(value: JSON, *needles: JSON) -> bool:
    if isinstance(value, str):
        return all(_as_string(needle) in value for needle in needles)
    items = _as_array(value)
    _spend(len(items) * len(needles))
    return all(any(_json_equal(item, needle) for item in items) for needle in needles)


def _has_all(obj: dict[str, JSON], keys: tuple[str, ...]) -> bool:
    return all(obj.get(key) is not None for key in keys)


@_method("has_fields", arity=(1, None))
def _has_fields(value: JSON, *fields: JSON) -> JSON:
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


@_method("get_field", arity=(1, 1))
def _get_field_method(value: JSON, key: JSON) -> JSON:
    return _get_field(value, _as_string(key), "get_field")


@_method("nth", arity=(1, 1))
def _nth_method(value: JSON, index: JSON) -> JSON:
    return _nth(value, index, "nth")


@_method("append", arity=(1, 1))
def _append(value: JSON, item: JSON) -> list[JSON]:
    items = _as_array(value)
    _check_array_size(len(items) + 1, "`append`")
    return [*items, item]


def _deep_merge(base: dict[str, JSON], update: dict[str, JSON]) -> dict[str, JSON]:
    """ReQL's merge: nested objects merge key by key; copies only what it changes."""
    _build_object(len(base) + len(update), "`merge`")
    result = dict(base)
    stack = [(result, update)]
    while stack:
        target, source = stack.pop()
        _spend(len(source) + 1)
        for key, item in source.items():
            current = target.get(key)
            if isinstance(item, dict) and isinstance(current, dict):
                _build_object(len(current) + len(item), "`merge`")
                copy = dict(current)
                target[key] = copy
                stack.append((copy, item))
            else:
                target[key] = item
    return result


@_method("merge", arity=(1, None))
def _merge(value: JSON, *updates: JSON) -> JSON:
    objects = [_as_object(update) for update in updates]
    if isinstance(value, list):
        _spend(len(value))
        _build_array(len(value), "`merge`")
        return [_merge(item, *objects) for item in value]
    if not isinstance(value, dict):
        raise _non_object_non_sequence("merge", value)
    result = value
    for update in objects:
        result = _deep_merge(result, update)
    return result


@_method("slice", arity=(1, 2))
def _slice(value: JSON, start: JSON, end: JSON = None) -> JSON:
    if not isinstance(value, (list, str)):
        raise _not_a_sequence(value)
    low = _as_int(start)
    high = None if end is None else _as_int(end)
    size = len(range(*slice(low, high).indices(len(value))))
    if isinstance(value, str):
        _check_string_size(size, "`slice`")
    else:
        _check_array_size(size, "`slice`")
    return value[low:high]


@_method("limit", arity=(1, 1))
def _limit(value: JSON, count: JSON) -> list[JSON]:
    items = _as_array(value)
    n = _as_int(count)
    if n < 0:
        raise errors.ExpressionError(f"LIMIT takes a non-negative argument (got {n})")
    _check_array_size(min(n, len(items)), "`limit`")
    return items[:n]


@_method("skip", arity=(1, 1))
def _skip(value: JSON, count: JSON) -> list[JSON]:
    items = _as_array(value)
    n = _as_int(count)
    if n < 0:
        raise errors.ExpressionError(f"SKIP takes a non-negative argument (got {n})")
    _check_array_size(max(len(items) - n, 0), "`skip`")
    return items[n:]


# --------------------------------------------------------------------------------------
# Times (ReQL's TIME pseudotype; see tap_rhttp.expr.times)
# --------------------------------------------------------------------------------------


def _as_time(value: JSON) -> Time:
    if not isinstance(value, Time):
        raise _fail(f"Not a TIME pseudotype: `{_excerpt(value)}`.", value)
    return value


def _new_time(make: Callable[[], Time], what: str) -> Time:
    _build_object(2, what)
    return make()


@_function("now", arity=(0, 0), lazy=True)
def _lazy_now(ev: _Evaluates, receiver: ast.expr | None, args: list[ast.expr]) -> Time:
    return ev.now()


@_function("epoch_time", arity=(1, 1))
def _epoch_time(seconds: JSON) -> Time:
    number = _as_number(seconds)
    return _new_time(lambda: times.epoch_time(number), "`r.epoch_time`")


@_function("iso8601", arity=(1, 2), keywords=("text", "default_timezone"))
def _iso8601(text: JSON, default_timezone: JSON = None) -> Time:
    source = _as_string(text)
    zone = None if default_timezone is None else _as_string(default_timezone)
    _spend(len(source))  # read a character at a time
    return _new_time(lambda: times.parse_iso8601(source, zone), "`r.iso8601`")


@_function("time", arity=(4, 7), counts=(4, 7))
def _time(year: JSON, month: JSON, day: JSON, *rest: JSON) -> Time:
    """``r.time(year, month, day[, hours, minutes, seconds], timezone)``."""
    clock: tuple[JSON, ...] = (0, 0, 0) if len(rest) == 1 else rest[:3]
    hours, minutes = _as_int(clock[0]), _as_int(clock[1])
    seconds, zone = _as_number(clock[2]), _as_string(rest[-1])
    date = _as_int(year), _as_int(month), _as_int(day)
    return _new_time(lambda: times.from_civil(*date, hours, minutes, seconds, zone), "`r.time`")


@_method("to_iso8601", arity=(0, 0))
def _to_iso8601(value: JSON) -> str:
    return _iso_text(_as_time(value))


@_method("to_epoch_time", arity=(0, 0))
def _to_epoch_time(value: JSON) -> JSON:
    return _number_result(_as_time(value).ms / 1000)


@_method("in_timezone", arity=(1, 1))
def _in_timezone(value: JSON, timezone: JSON) -> Time:
    time, zone = _as_time(value), _as_string(timezone)
    return _new_time(lambda: times.in_timezone(time, zone), "`in_timezone`")


@_method("timezone", arity=(0, 0))
def _timezone(value: JSON) -> str:
    return _as_time(value).tz


@_method("date", arity=(0, 0))
def _date(value: JSON) -> Time:
    time = _as_time(value)
    return _new_time(lambda: times.date(time), "`date`")


@_method("time_of_day", arity=(0, 0))
def _time_of_day(value: JSON) -> JSON:
    return _number_result(_as_time(value).civil()[3] / 1000)


@_method("year", arity=(0, 0))
def _year(value: JSON) -> int:
    return _as_time(value).civil()[0]


@_method("month", arity=(0, 0))
def _month(value: JSON) -> int:
    return _as_time(value).civil()[1]


@_method("day", arity=(0, 0))
def _day(value: JSON) -> int:
    return _as_time(value).civil()[2]


@_method("hours", arity=(0, 0))
def _hours(value: JSON) -> int:
    return _as_time(value).civil()[3] // 3_600_000


@_method("minutes", arity=(0, 0))
def _minutes(value: JSON) -> int:
    return _as_time(value).civil()[3] // 60_000 % 60


@_method("seconds", arity=(0, 0))
def _seconds(value: JSON) -> JSON:
    return _number_result(_as_time(value).civil()[3] % 60_000 / 1000)


@_method("day_of_week", arity=(0, 0))
def _day_of_week(value: JSON) -> int:
    return times.day_of_week(_as_time(value))


@_method("day_of_year", arity=(0, 0))
def _day_of_year(value: JSON) -> int:
    return times.day_of_year(_as_time(value))


def _bound(value: JSON, name: str) -> bool:
    """Whether a ``during`` bound is closed: ``'open'`` or ``'closed'``, as in ReQL."""
    if value in ("open", "closed"):
        return value == "closed"
    raise errors.ExpressionError(
        f"Expected `open` or `closed` for optarg `{name}` (got `{_excerpt(value)}`)."
    )


@_method("during", arity=(2, 4), keywords=("start", "end", "left_bound", "right_bound"))
def _during(
    value: JSON, start: JSON, end: JSON, left_bound: JSON = None, right_bound: JSON = None
) -> bool:
    """``start <= time < end`` by default; either bound may be ``'open'`` or ``'closed'``."""
    time, low, high = _as_time(value), _as_time(start), _as_time(end)
    closed_low = True if left_bound is None else _bound(left_bound, "left_bound")
    closed_high = False if right_bound is None else _bound(right_bound, "right_bound")
    above = low.ms <= time.ms if closed_low else low.ms < time.ms
    below = time.ms <= high.ms if closed_high else time.ms < high.ms
    return above and below


# --------------------------------------------------------------------------------------
# Used by the checker and the evaluator
# --------------------------------------------------------------------------------------


def _is_r(node: ast.expr) -> bool:
    """Is ``node`` the name ``r``, as in ``r.branch(...)``?"""
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
