"""JSON values inside the expression evaluator: limits, the work budget, types, text.

Every other module of :mod:`tap_rhttp.expr` works on the values defined here: JSON as
``json.loads`` returns it (dict with str keys, list, str, int, float, bool, None). This
module names their ReQL types, decides truthiness and equality, writes them as bounded
JSON text for results and messages, and holds the named limits and the per-evaluation
work budget that the loops over values spend from.

Values of any depth are walked iteratively (equality, JSON text, excerpts): a body nested
50 000 levels deep is a legal input, and recursion would overflow the C stack.
"""

from __future__ import annotations

import contextvars
import json
import math
import typing as t

from tap_rhttp import errors
from tap_rhttp.expr.times import Time

if t.TYPE_CHECKING:
    from collections.abc import Iterator

JSON: t.TypeAlias = t.Any
"""A JSON value: dict with str keys, list, str, int, float, bool or None.

Inside an evaluation a value may also be, or contain, a :class:`~tap_rhttp.expr.times.Time`
(ReQL's TIME pseudotype); results leave the evaluator as JSON (see ``_without_times``).
"""

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
"""Most matcher instructions a pattern may compile to (``a{1000}`` is 1000 of them).

Counted on the parsed pattern before any repeat is expanded; every repetition counts at
least one, even of an empty group (``(?:){4294967294}`` is refused at once).
"""

MAX_REGEX_STEPS: t.Final[int] = 1_000_000
"""Most matcher steps the ``.match()`` calls of one evaluation may take together.

A step is about the same work whatever the pattern: captures and assertions count more
than one, and compiling is charged on every call (see :mod:`tap_rhttp.expr.regex`).
"""

MAX_EVALUATION_STEPS: t.Final[int] = 5_000_000
"""Most element-level steps (comparisons, encodings, copies in Python loops) per evaluation."""

MAX_EVALUATION_BYTES: t.Final[int] = 32 * 1024 * 1024
"""Most memory all the strings, arrays and objects one evaluation builds may take together.

Estimated before each is built, erring high: 4 bytes a character (the widest ``str``
storage), 8 an array element, 64 an object entry or a new small string, array or object
inside a result (its header). Each string stays under ``MAX_STRING_LENGTH`` and each
array under ``MAX_ARRAY_LENGTH``; this bounds their sum, so a list literal of many
near-limit strings cannot take gigabytes.
"""

_EXCERPT_LENGTH = 200
_KEY_EXCERPT_LENGTH = 100


# --------------------------------------------------------------------------------------
# The work budget of one evaluation
# --------------------------------------------------------------------------------------


_CHAR_BYTES: t.Final = 4  # a str stores up to 4 bytes per character
_SLOT_BYTES: t.Final = 8  # an array element: one pointer
_ENTRY_BYTES: t.Final = 64  # an object entry, or the header of a new small value
_SCAN_CHARACTERS_PER_STEP: t.Final = 32  # a scan in C (str.split, str.count) per step


class _Budget:
    """What one evaluation has left to spend: steps, matcher steps and bytes to build.

    The Python loops over values spend ``steps``; the matcher spends ``regex_steps``;
    every constructor of a string, array or object spends ``bytes`` *before* building.
    """

    __slots__ = ("bytes", "regex_steps", "steps")

    def __init__(self) -> None:
        self.steps = MAX_EVALUATION_STEPS
        self.regex_steps = MAX_REGEX_STEPS
        self.bytes = MAX_EVALUATION_BYTES


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "tap_rhttp_expression_budget", default=None
)


def _spend(steps: int) -> None:
    """Charge ``steps`` to the running evaluation (no-op outside one)."""
    budget = _BUDGET.get()
    if budget is None:
        return
    budget.steps -= steps
    if budget.steps < 0:
        raise errors.ExpressionError(
            f"The expression needs more than {MAX_EVALUATION_STEPS} steps "
            "(MAX_EVALUATION_STEPS) on these values."
        )


def _regex_steps_left() -> int:
    """Matcher steps the running evaluation has left (``MAX_REGEX_STEPS`` outside one)."""
    budget = _BUDGET.get()
    return MAX_REGEX_STEPS if budget is None else budget.regex_steps


def _spend_regex(steps: int) -> None:
    """Charge matcher ``steps`` to the running evaluation (no-op outside one)."""
    budget = _BUDGET.get()
    if budget is None:
        return
    budget.regex_steps -= steps
    if budget.regex_steps < 0:
        raise errors.ExpressionError(
            f"`match` gave up: the expression's matches need more than {MAX_REGEX_STEPS} "
            "steps (MAX_REGEX_STEPS) on this input."
        )


def _bytes_left() -> int:
    """Bytes the running evaluation may still build (``MAX_EVALUATION_BYTES`` outside one)."""
    budget = _BUDGET.get()
    return MAX_EVALUATION_BYTES if budget is None else max(budget.bytes, 0)


def _build(size: int, what: str) -> None:
    """Charge ``size`` estimated bytes that ``what`` is about to build (no-op outside one)."""
    budget = _BUDGET.get()
    if budget is None:
        return
    budget.bytes -= size
    if budget.bytes < 0:
        raise errors.ExpressionError(
            f"{what} would take what this evaluation builds past {MAX_EVALUATION_BYTES} "
            "bytes (MAX_EVALUATION_BYTES): build fewer or smaller strings and arrays."
        )


def _build_strings(characters: int, strings: int, what: str) -> None:
    """Charge ``strings`` new strings of ``characters`` in all (see ``_build``)."""
    _build(_CHAR_BYTES * characters + _ENTRY_BYTES * strings, what)


def _build_array(elements: int, what: str) -> None:
    """Charge a new array of ``elements`` elements (see ``_build``)."""
    _build(_SLOT_BYTES * elements + _ENTRY_BYTES, what)


def _build_object(entries: int, what: str) -> None:
    """Charge a new object of ``entries`` entries (see ``_build``)."""
    _build(_ENTRY_BYTES * (entries + 1), what)


# --------------------------------------------------------------------------------------
# JSON values: type names, equality, bounded text
# --------------------------------------------------------------------------------------


def reql_type_name(value: JSON) -> str:
    """Name the type of a JSON value as RethinkDB does.

    Callers use it in messages such as ``Expected `page` to return an OBJECT, but found
    NUMBER.``

    Args:
        value: a JSON value.

    Returns:
        ``'NULL'``, ``'BOOL'``, ``'NUMBER'``, ``'STRING'``, ``'ARRAY'`` or ``'OBJECT'``
        (inside an evaluation also ``'PTYPE<TIME>'``, ReQL's name for a time).

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
    if isinstance(value, Time):
        return "PTYPE<TIME>"
    raise errors.ExpressionError(f"Not a JSON value: a Python {type(value).__name__}.")


def _is_number(value: JSON) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _truthy(value: JSON) -> bool:
    """ReQL truthiness: only ``False`` and ``None`` are false."""
    return value is not None and value is not False


def _json_equal(left: JSON, right: JSON) -> bool:
    """JSON equality, iteratively: ``True != 1``, ``1 == 1.0``, objects by key.

    Two times are equal when they are the same instant, whatever their offsets (ReQL).
    """
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
        elif kind == "PTYPE<TIME>":
            if a.ms != b.ms:
                return False
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


def _json_pieces(value: JSON, *, sort_keys: bool, strict: bool, cut: int) -> Iterator[str]:
    """Yield JSON text for ``value`` piece by piece, without recursion.

    Strings longer than ``cut`` are cut to ``cut`` characters (the caller stops reading
    before that matters).
    """
    stack: list[Iterator[JSON]] = [iter((value,))]
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
        elif isinstance(item, Time):  # its ISO 8601 text, as when it leaves the evaluator
            yield json.dumps(item.iso8601() if strict else item.text())
        elif strict:
            reql_type_name(item)  # raises: not a JSON value
        else:
            yield f"<{type(item).__name__}>"


def _array_pieces(items: list[JSON]) -> Iterator[JSON]:
    yield _Text("[")
    for index, item in enumerate(items):
        if index:
            yield _Text(",")
        yield item
    yield _Text("]")


def _object_pieces(obj: dict[JSON, JSON], *, sort_keys: bool, cut: int) -> Iterator[JSON]:
    yield _Text("{")
    keys: t.Iterable[JSON] = sorted(obj) if sort_keys else obj
    for index, key in enumerate(keys):
        yield _Text(("," if index else "") + json.dumps(str(key)[:cut], ensure_ascii=False) + ":")
        yield obj[key]
    yield _Text("}")


def _json_text(value: JSON, limit: int, *, sort_keys: bool, strict: bool) -> str | None:
    """Compact JSON text of ``value``, or None when it would be longer than ``limit``.

    The pieces are joined a thousand at a time, so the text under construction takes
    about its own size, not a small string object per comma.
    """
    chunks: list[str] = []
    parts: list[str] = []
    size = 0
    for piece in _json_pieces(value, sort_keys=sort_keys, strict=strict, cut=limit + 1):
        size += len(piece)
        if size > limit:
            return None
        parts.append(piece)
        if len(parts) == 1024:
            chunks.append("".join(parts))
            parts.clear()
    chunks.append("".join(parts))
    return "".join(chunks)


def _excerpt(value: JSON, limit: int = _EXCERPT_LENGTH) -> str:
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


def _without_times(value: JSON) -> JSON:
    """``value`` with every time in it replaced by its ISO 8601 text: results are JSON.

    Iterative, and copy-on-write: a container is copied only when something inside it
    changed, so a result that shares a large input shares it still (each container is
    visited once, however often it is referenced, and the visits are charged as steps).
    """
    if isinstance(value, Time):
        return _iso_text(value)
    if not isinstance(value, (list, dict)):
        return value
    done: dict[int, JSON] = {}
    stack: list[tuple[JSON, bool]] = [(value, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in done:
            continue
        items = list(node.values()) if isinstance(node, dict) else node
        if not children_done:
            _spend(len(items) + 1)
            stack.append((node, True))
            stack.extend(
                (item, False)
                for item in items
                if isinstance(item, (list, dict)) and id(item) not in done
            )
            continue
        converted = [
            _iso_text(item)
            if isinstance(item, Time)
            else done.get(id(item), item)
            if isinstance(item, (list, dict))
            else item
            for item in items
        ]
        if all(new is old for new, old in zip(converted, items, strict=True)):
            done[id(node)] = node
        elif isinstance(node, dict):
            _build_object(len(node), "a result with times")
            done[id(node)] = dict(zip(node, converted, strict=True))
        else:
            _build_array(len(node), "a result with times")
            done[id(node)] = converted
    return done[id(value)]


def _iso_text(time: Time) -> str:
    text = time.iso8601()
    _build_strings(len(text), 1, "a time's ISO 8601 text")
    return text


# --------------------------------------------------------------------------------------
# Errors raised while evaluating
# --------------------------------------------------------------------------------------


def _fail(message: str, culprit: JSON = False) -> errors.ExpressionError:
    """An evaluation error; ReQL makes it a non-existence error when the culprit is null."""
    if culprit is None:
        return errors.NonExistenceError(message)
    return errors.ExpressionError(message)


def _expected(type_name: str, value: JSON) -> errors.ExpressionError:
    return _fail(f"Expected type {type_name} but found {reql_type_name(value)}.", value)


def _not_a_sequence(value: JSON) -> errors.ExpressionError:
    return _fail(f"Cannot convert {reql_type_name(value)} to SEQUENCE.", value)


def _non_object_non_sequence(op: str, value: JSON) -> errors.ExpressionError:
    return _fail(f"Cannot perform {op} on a non-object non-sequence `{_excerpt(value)}`.", value)


def _check_string_size(size: int, what: str) -> None:
    """Before ``what`` builds a string of ``size`` characters: check and charge it."""
    if size > MAX_STRING_LENGTH:
        raise errors.ExpressionError(
            f"{what} would build a string of {size} characters: "
            f"the limit is {MAX_STRING_LENGTH} (MAX_STRING_LENGTH)."
        )
    _build_strings(size, 1, what)


def _check_array_size(size: int, what: str) -> None:
    """Before ``what`` builds an array of ``size`` elements: check and charge it."""
    if size > MAX_ARRAY_LENGTH:
        raise errors.ExpressionError(
            f"{what} would build an array of {size} elements: "
            f"the limit is {MAX_ARRAY_LENGTH} (MAX_ARRAY_LENGTH)."
        )
    _build_array(size, what)


def _check_array(items: list[JSON], what: str) -> list[JSON]:
    """After ``what`` built a filtered array (never longer than its input): check it."""
    _check_array_size(len(items), what)
    return items


# --------------------------------------------------------------------------------------
# Numbers and argument types
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


def _as_number(value: JSON) -> int | float:
    if not _is_number(value):
        raise _expected("NUMBER", value)
    return t.cast("int | float", value)


def _as_int(value: JSON) -> int:
    """ReQL's ``as_int``: a number with no fractional part."""
    number = _as_number(value)
    if isinstance(number, float):
        if not number.is_integer():
            raise errors.ExpressionError(
                f"Number not an integer: {_number_text(number, strict=False)}."
            )
        return int(number)
    return number


def _as_string(value: JSON) -> str:
    if not isinstance(value, str):
        raise _expected("STRING", value)
    return value


def _as_array(value: JSON) -> list[JSON]:
    if not isinstance(value, list):
        raise _not_a_sequence(value)
    return value


def _as_object(value: JSON) -> dict[str, JSON]:
    if not isinstance(value, dict):
        raise _expected("OBJECT", value)
    return value
