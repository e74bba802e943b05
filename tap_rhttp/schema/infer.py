"""JSON Schemas for streams: declared by the user, or inferred from real records.

Inference reads discovery's sample (``schema_sample``: several pages) and types every
field for what a Singer target can load and keep loading. target-postgres cannot alter
a column's type once it exists, so the same data must always give the same schema, and
a schema must never promise less than the sample showed:

- a top-level field (a column) gets one kind of value: integer and number seen together
  widen to number (a float in an integer column makes target-postgres fail); when the
  sample shows other kinds too (an id that is sometimes a string), the column takes the
  kind most values have (ties: object, array, string, number, integer, boolean) and the
  drift policy (``tap_rhttp.schema.drift``) puts the others in variant columns;
- inside an object or an array of objects (a ``jsonb`` value), a field may be typed
  with several kinds at once (``["integer", "string", "null"]``): the column stays
  ``jsonb``, which holds any JSON value exactly;
- every field is nullable: a later page may carry a null the sample did not;
- a field seen only as null gets no type at all: it is left out of ``properties`` (the
  object stays open, ``additionalProperties: true``), so no column is made for it until
  a value shows its type; the drift policy types it then. Never a null-only type, and
  never ``string`` for a field that may turn out to be a number;
- strings that are all RFC 3339 date-times a target can parse get
  ``format: date-time`` (``2024-13-01T00:00:00Z`` does not: month 13);
- arrays type their items; an array whose items are of several kinds (``[1, "a"]``)
  gets untyped items (``items: {}``), which target-postgres stores as ``jsonb[]``, every
  item exactly;
- objects keep ``additionalProperties: true``, so a field the sample missed is still
  emitted; no ``required`` lists (a later page may omit a field);
- properties are sorted and nothing depends on record order, so the output is stable.

Rejected: genson. It merges kinds into unions and cannot count them, so a column's type
could not follow the majority of the values, and a null-only field became a type.
"""

from __future__ import annotations

import collections
import datetime
import re
import typing as t

if t.TYPE_CHECKING:
    from tap_rhttp.types import JSON

#: Nesting below which inference stops typing (the value is kept, untyped): a hostile
#: body cannot make inference recurse without bound.
MAX_DEPTH = 32
#: A description that marks a schema the tap inferred itself. It survives a catalog's
#: round trip (Meltano passes the discovered catalog back), so a sync knows the schema is
#: the tap's own: its records are never silently coerced to it (see ``drift``).
INFERRED = "Inferred by tap-rhttp"


class SampleSize(t.NamedTuple):
    """How much discovery samples to infer a schema (`schema_sample`): whichever ends first.

    Attributes:
        pages: pages to fetch, following the stream's pagination (across its first
            chains for a fan-out).
        records: records to infer from.
    """

    pages: int = 3
    records: int = 1000

    def __str__(self) -> str:
        return f'{{"pages": {self.pages}, "records": {self.records}}}'

    def __repr__(self) -> str:
        return str(self)


# RFC 3339 date-times as targets parse them (Python's datetime.fromisoformat): `T` or a
# space between date and time, `Z` or an offset. Lower-case `t`/`z` are RFC 3339 too, but
# target-postgres's parser refuses them: such strings stay plain strings.
_DATE_TIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:Z|([+-])(\d{2}):?(\d{2}))?"
)


def is_date_time(text: str) -> bool:
    """Whether a string is a date-time a target parses as a timestamp.

    The RFC 3339 shape above, with a real date, time and offset (no month 13, no 25:00).
    The same answer on every Python version (3.10's ``fromisoformat`` knows no ``Z``).
    """
    match = _DATE_TIME_RE.fullmatch(text)
    if match is None:
        return False
    year, month, day, hour, minute, second, sign, off_h, off_m = match.groups()
    try:
        datetime.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    except ValueError:
        return False
    return sign is None or (int(off_h) < 24 and int(off_m) < 60)


#: The kind of a JSON value (as parsed: bool before int, it is a subclass).
KINDS: dict[type, str] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    dict: "object",
    list: "array",
}
#: Tie-break and display order of kinds.
ORDER = ("object", "array", "string", "number", "integer", "boolean", "null")


def kind_of(value: JSON) -> str:
    """``null``, ``boolean``, ``integer``, ``number``, ``string``, ``object`` or ``array``."""
    return "null" if value is None else KINDS.get(type(value), "string")


def _kinds(values: t.Iterable[JSON]) -> collections.Counter[str]:
    """How many values of each kind (integer counted as number when both occur)."""
    counts = collections.Counter(kind_of(v) for v in values)
    counts.pop("null", None)
    if "integer" in counts and "number" in counts:
        counts["number"] += counts.pop("integer")
    return counts


def _order(kind: str) -> int:
    return ORDER.index(kind) if kind in ORDER else len(ORDER)


def _of_kind(values: t.Iterable[JSON], kind: str) -> list[JSON]:
    if kind == "number":
        return [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return [v for v in values if kind_of(v) == kind]


def infer_schema(records: t.Iterable[dict[str, JSON]]) -> dict[str, JSON]:
    """Infer a stream schema from sample records (see the module docstring).

    Args:
        records: the sample (objects).

    Returns:
        A JSON Schema object with ``properties`` (empty when the sample is, or holds only
        nulls: every field is then still emitted, through ``additionalProperties``).
    """
    values: dict[str, list[JSON]] = {}
    for record in records:
        for key, value in record.items():
            if value is not None:
                values.setdefault(key, []).append(value)
    return {
        "type": "object",
        "description": INFERRED,
        "properties": {key: infer_column(values[key]) for key in sorted(values)},
        "additionalProperties": True,
    }


def null_only_fields(records: t.Iterable[dict[str, JSON]]) -> list[str]:
    """The top-level fields the records carry only as null (inference leaves them untyped)."""
    seen: set[str] = set()
    valued: set[str] = set()
    for record in records:
        for key, value in record.items():
            seen.add(key)
            if value is not None:
                valued.add(key)
    return sorted(seen - valued)


def infer_column(values: t.Sequence[JSON]) -> dict[str, JSON]:
    """The schema of a top-level field from its non-null values: one kind, the majority's."""
    counts = _kinds(values)
    if not counts:
        return {}
    kind = min(counts, key=lambda k: (-counts[k], _order(k)))
    return _typed(kind, _of_kind(values, kind), 1)


def infer_value(values: t.Sequence[JSON], depth: int = 1) -> dict[str, JSON]:
    """The schema of nested values (inside an object or array): every kind they have."""
    counts = _kinds(values)
    if not counts or depth > MAX_DEPTH:
        return {}
    if len(counts) == 1:
        (kind,) = counts
        return _typed(kind, values, depth)
    kinds = sorted(counts, key=_order)
    node: dict[str, JSON] = {"type": [*kinds, "null"]}
    if "object" in counts:
        node.update(_object_parts(_of_kind(values, "object"), depth))
    if "array" in counts:
        node["items"] = _items(_of_kind(values, "array"), depth)
    return node


def _typed(kind: str, values: t.Sequence[JSON], depth: int) -> dict[str, JSON]:
    node: dict[str, JSON] = {"type": [kind, "null"]}
    if kind == "string":
        if all(is_date_time(t.cast("str", v)) for v in values if v is not None):
            node["format"] = "date-time"
    elif kind == "object":
        node.update(_object_parts([v for v in values if isinstance(v, dict)], depth))
    elif kind == "array":
        node["items"] = _items([v for v in values if isinstance(v, list)], depth)
    return node


def _object_parts(objects: t.Sequence[dict[str, JSON]], depth: int) -> dict[str, JSON]:
    if depth >= MAX_DEPTH:
        return {"properties": {}, "additionalProperties": True}
    values: dict[str, list[JSON]] = {}
    for obj in objects:
        for key, value in obj.items():
            if value is not None:
                values.setdefault(key, []).append(value)
    return {
        "properties": {key: infer_value(values[key], depth + 1) for key in sorted(values)},
        "additionalProperties": True,
    }


def _items(arrays: t.Sequence[list[JSON]], depth: int) -> dict[str, JSON]:
    """Items of one kind are typed; of several kinds, left untyped (``jsonb[]``)."""
    items = [item for array in arrays for item in array]
    if len(_kinds(items)) != 1 or depth >= MAX_DEPTH:
        return {}
    return infer_value(items, depth + 1)


def prepare_declared_schema(schema: dict[str, JSON]) -> dict[str, JSON]:
    """A user's declared schema, completed: an object type, and unknown fields kept.

    ``additionalProperties`` defaults to true so that fields the schema does not list
    still reach the target; an explicit ``false`` is respected.
    """
    out = dict(schema)
    out.setdefault("type", "object")
    out.setdefault("additionalProperties", True)
    return out


def with_overrides(schema: dict[str, JSON], overrides: t.Mapping[str, JSON]) -> dict[str, JSON]:
    """A schema with some top-level fields' schemas replaced (`schema_overrides`)."""
    if not overrides:
        return schema
    properties = dict(t.cast("dict[str, JSON]", schema.get("properties") or {}))
    properties.update(overrides)
    return {**schema, "properties": dict(sorted(properties.items()))}
