"""JSON Schemas for streams: declared by the user, or inferred from real records.

Inference uses genson over the sampled records, then normalises the result for what a
Singer target needs (target-postgres cannot alter a column type, so the same data must
always give the same schema):

- integer and number seen together widen to number (a float in an integer column
  makes target-postgres fail);
- every field is nullable: a later page may carry a null the sample did not (a null in a
  non-null column makes target-postgres reject the record); a field seen only as null
  is typed ``["string", "null"]`` (never a null-only type, which targets cannot map);
- strings that are all RFC 3339 date-times get ``format: date-time``;
- objects keep ``additionalProperties: true``, so a field the sample missed is still
  emitted, never silently dropped; no ``required`` lists (a later page may omit a field);
- properties are sorted, so the output is stable.
"""

from __future__ import annotations

import re
import typing as t

from genson import SchemaBuilder
from genson.schema.strategies import String

if t.TYPE_CHECKING:
    from tap_rhttp.types import JSON

_DATE_TIME_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:?\d{2})?$"
)


class _DateTimeString(String):
    """genson's string strategy, remembering whether every value was a date-time."""

    def __init__(self, node_class: t.Any) -> None:
        super().__init__(node_class)
        self.all_date_time = True
        self.seen = False

    def add_object(self, obj: str) -> None:
        self.seen = True
        if self.all_date_time and not _DATE_TIME_RE.fullmatch(obj):
            self.all_date_time = False

    def add_schema(self, schema: dict[str, JSON]) -> None:
        super().add_schema({k: v for k, v in schema.items() if k != "format"})
        if schema.get("format") != "date-time":
            self.all_date_time = False

    def to_schema(self) -> dict[str, JSON]:
        schema = t.cast("dict[str, JSON]", super().to_schema())
        if self.seen and self.all_date_time:
            schema["format"] = "date-time"
        return schema


class _Builder(SchemaBuilder):
    EXTRA_STRATEGIES = (_DateTimeString,)


def _types(node: dict[str, JSON]) -> list[str]:
    kind = node.get("type")
    if kind is None:
        return []
    return [kind] if isinstance(kind, str) else list(kind)


def _normalise(node: dict[str, JSON]) -> dict[str, JSON]:
    """Make one genson node target-friendly (see the module docstring)."""
    if "anyOf" in node:
        return _merge_any_of(node["anyOf"])
    out: dict[str, JSON] = {}
    types = _types(node)
    if "integer" in types and "number" in types:
        types.remove("integer")
    if types == ["null"]:
        types = ["string", "null"]
    if types and "null" not in types:
        types.append("null")
    if types:
        out["type"] = types[0] if len(types) == 1 else sorted(types, key=_type_order)
    if "format" in node:
        out["format"] = node["format"]
    if "properties" in node or "object" in types:
        out["properties"] = {
            key: _normalise(value) for key, value in sorted(node.get("properties", {}).items())
        }
        out["additionalProperties"] = True
    if "items" in node:
        out["items"] = _normalise(node["items"])
    elif "array" in types:
        out["items"] = {}
    return out


_ORDER = ("object", "array", "string", "number", "integer", "boolean", "null")


def _type_order(name: str) -> int:
    return _ORDER.index(name) if name in _ORDER else len(_ORDER)


def _merge_any_of(options: list[dict[str, JSON]]) -> dict[str, JSON]:
    """genson emits anyOf when an object/array meets other types; fold it into one node."""
    types: list[str] = []
    merged: dict[str, JSON] = {}
    for option in options:
        norm = _normalise(option)
        for kind in _types(norm):
            if kind not in types:
                types.append(kind)
        for key in ("properties", "items", "format", "additionalProperties"):
            if key in norm:
                merged.setdefault(key, norm[key])
    if "integer" in types and "number" in types:
        types.remove("integer")
    if "null" not in types:
        types.append("null")
    merged["type"] = sorted(types, key=_type_order) if len(types) > 1 else types[0]
    return merged


def infer_schema(records: t.Iterable[dict[str, JSON]]) -> dict[str, JSON]:
    """Infer a stream schema from sample records.

    Args:
        records: the sample (objects).

    Returns:
        A JSON Schema object with ``properties``; empty properties when the sample is
        empty (every field is then still emitted, through ``additionalProperties``).
    """
    builder = _Builder()
    builder.add_schema({"type": "object", "properties": {}})
    for record in records:
        builder.add_object(record)
    schema = _normalise(builder.to_schema())
    schema.pop("anyOf", None)
    schema["type"] = "object"
    schema.setdefault("properties", {})
    schema["additionalProperties"] = True
    return schema


def prepare_declared_schema(schema: dict[str, JSON]) -> dict[str, JSON]:
    """A user's declared schema, completed: an object type, and unknown fields kept.

    ``additionalProperties`` defaults to true so that fields the schema does not list
    still reach the target; an explicit ``false`` is respected.
    """
    out = dict(schema)
    out.setdefault("type", "object")
    out.setdefault("additionalProperties", True)
    return out
