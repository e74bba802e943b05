"""Schema drift: records that do not fit the schema their stream emitted, and what then.

A stream emits its SCHEMA once, at the start of the sync, from discovery's sample or the
config. Real APIs drift: an integral price turns into ``2.5``, a field null for a
thousand rows gets a value, an id becomes a string, an object gains a key. singer-sdk
passes such a record on and the target rejects it (``2.5 is not of type 'integer'``), or
drops the field silently. Here every page is checked against the schema before any of
its records is emitted, and `schema_drift` decides:

``evolve`` (default)
    change the schema only in ways the target can follow, emit the new SCHEMA before the
    page, and keep every value:

    - a new field (not in ``properties``, with a non-null value): a new property, typed
      from the page's values (a new column);
    - a null where the schema has none: the field becomes nullable (same column);
    - inside an object or an array of objects (a ``jsonb`` or ``jsonb[]`` column), any
      other value: the nested schema widens (``["integer", "string", "null"]``); the
      column, which holds any JSON value exactly, does not change;
    - a top-level value whose kind the column cannot hold (an integer column given
      ``2.5``, a text column given an object, a timestamp column given ``"soon"``): the
      value goes to a variant column ``<field>__v_<kind>`` (``number``, ``string``,
      ``boolean``, ``object`` as ``jsonb``, ``array`` as ``jsonb[]``), as dlt does, and
      the record's own field is left out (null in the table). A variant column accepts
      every value of its kind, so it never drifts itself.

    target-postgres adds columns but cannot alter a column's type, so a column's type
    never changes here. A primary or replication key cannot move to a variant column:
    such a drift fails the run, naming the field.

``fail``
    stop at the first page with a record that does not fit, naming the stream, the
    field, the schema's type and the value's, before anything of that page is emitted.

What "fits" means is what a target checks: the JSON type (a boolean is not an integer,
a float never fits ``integer``, integers fit ``number``), nullability, ``required``,
top-level ``date``/``date-time``/``time`` strings (target-postgres parses them), integers
within ``bigint``, and, for a schema whose ``additionalProperties`` is true, new
top-level fields (a target ignores a field its table has no column for). Other
keywords of a declared schema (``enum``, ``pattern``, ``minimum`` ...) are the user's and
are not checked. A declared schema or a user's catalog is conformed as singer-sdk does:
a value of an exclusively boolean field becomes a boolean (``1`` is ``true``), and a
closed object drops the keys it does not list; neither is drift. The tap's own inferred
schema is never coerced so: an integer in an inferred boolean field is drift.

:class:`SchemaCheck` is compiled from a schema once and checks a whole page column by
column, with set operations over the page's values (the cost per record is a few
dictionary lookups per field), so a sync whose records fit pays little; only a page that
does not fit takes the slow path of :func:`evolve`.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import datetime
import itertools
import operator
import sys
import typing as t

from tap_rhttp.schema.infer import ORDER, infer_column, infer_value, is_date_time, kind_of

if t.TYPE_CHECKING:
    from tap_rhttp.types import JSON

POLICIES = ("evolve", "fail")
#: The range of target-postgres's ``bigint``, which holds an ``integer`` column.
BIGINT = (-(2**63), 2**63 - 1)
_NONE = type(None)
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "null": (_NONE,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
    "string": (str,),
    "object": (dict,),
    "array": (list,),
}
#: The schema of each variant column: every value of its kind fits it.
VARIANTS: dict[str, dict[str, JSON]] = {
    "number": {"type": ["number", "null"]},
    "string": {"type": ["string", "null"]},
    "boolean": {"type": ["boolean", "null"]},
    "object": {"type": ["object", "null"], "properties": {}, "additionalProperties": True},
    "array": {"type": ["array", "null"], "items": {}},
}


def variant_kind(value: JSON) -> str:
    """The variant column a value goes to: integers and floats share ``number``."""
    kind = kind_of(value)
    return "number" if kind == "integer" else kind


def variant_name(field: str, value: JSON) -> str:
    """``<field>__v_<kind>``."""
    return f"{field}__v_{variant_kind(value)}"


# --------------------------------------------------------------------------- types


def _types(node: dict[str, JSON]) -> list[str] | None:
    """The JSON types a node allows (None: any value)."""
    kind = node.get("type")
    if kind is None:
        options = node.get("anyOf")
        if not isinstance(options, list):
            return None
        found: list[str] = []
        for option in options:
            inner = _types(option) if isinstance(option, dict) else None
            if inner is None:
                return None
            found += [k for k in inner if k not in found]
        return found
    if isinstance(kind, str):
        return [kind]
    return [k for k in kind if isinstance(k, str)] if isinstance(kind, list) else None


def type_text(node: dict[str, JSON]) -> str:
    """A node's types in words: ``integer or null``, ``string (date-time)``, ``any``."""
    kinds = _types(node)
    if kinds is None:
        return "any"
    words = []
    for kind in sorted(kinds, key=lambda k: ORDER.index(k) if k in ORDER else len(ORDER)):
        if kind == "string" and node.get("format"):
            kind = f"string ({node['format']})"
        words.append(kind)
    return " or ".join(words) or "nothing"


def _branch(node: dict[str, JSON], kind: str) -> dict[str, JSON] | None:
    """The part of a node that describes values of one kind (its anyOf branch, or itself)."""
    options = node.get("anyOf")
    if node.get("type") is None and isinstance(options, list):
        found = [o for o in options if isinstance(o, dict) and kind in (_types(o) or ())]
        return found[0] if len(found) == 1 else None
    return node


_SQL_ORDER = ("array", "jsonb", "uuid", "text", "timestamp", "date", "time", "numeric", "bigint")
_FORMATS = {"date-time": "timestamp", "date": "date", "time": "time", "uuid": "uuid"}


def column_type(node: dict[str, JSON]) -> str:
    """The column target-postgres makes for a top-level field's schema (its type mapping).

    ``bigint``, ``numeric``, ``boolean``, ``text``, ``timestamp``, ``jsonb``, an array of
    one of those (``text[]``; ``jsonb[]`` for untyped items), ``text`` when untyped.
    Nullability never changes it.
    """
    kinds = [k for k in (_types(node) or []) if k != "null"]
    if not kinds:
        return "text"
    picked = []
    for kind in kinds:
        if kind == "array":
            items = node.get("items")
            if isinstance(items, dict) and items.get("type") is not None:
                inner = column_type({"type": items["type"]})
            else:
                inner = "jsonb"
            picked.append(("array", f"{inner}[]"))
        elif kind == "object":
            picked.append(("jsonb", "jsonb"))
        elif kind == "string":
            sql = _FORMATS.get(str(node.get("format")), "text")
            picked.append((sql, sql))
        elif kind == "number":
            picked.append(("numeric", "numeric"))
        elif kind == "integer":
            picked.append(("bigint", "bigint"))
        elif kind == "boolean":
            picked.append(("boolean", "boolean"))
    if not picked:
        return "text"
    rank = {name: i for i, name in enumerate((*_SQL_ORDER, "boolean"))}
    return min(picked, key=lambda p: rank.get(p[0], len(rank)))[1]


def temporal_check(kind: str) -> t.Callable[[list[str]], bool]:
    """Whether top-level strings of a ``format`` all parse as target-postgres parses them."""
    parse: t.Callable[[str], object] = {
        "date-time": datetime.datetime.fromisoformat,
        "date": datetime.date.fromisoformat,
        "time": datetime.time.fromisoformat,
    }[kind]
    if kind == "date-time" and sys.version_info < (3, 11):  # no `Z` before 3.11
        parse = _strict_date_time

    def ok(texts: list[str]) -> bool:
        try:
            collections.deque(map(parse, texts), maxlen=0)  # parsed in C, nothing kept
        except ValueError:
            return False
        return True

    return ok


def _strict_date_time(text: str) -> None:
    if not is_date_time(text):
        raise ValueError(text)


# --------------------------------------------------------------------------- the check


class _Field:
    """One property's check: allowed Python types, plus what a type alone cannot say."""

    def __init__(
        self, key: str, node: dict[str, JSON], *, top: bool, coerce: bool, depth: int
    ) -> None:
        self.key = key
        self.node = node
        kinds = _types(node)
        exclusive_boolean = kinds is not None and set(kinds) - {"null"} == {"boolean"}
        if kinds is None or (coerce and exclusive_boolean):
            # untyped, or a boolean singer-sdk coerces any value to: everything fits
            self.allowed: frozenset[type] | None = None
        else:
            self.allowed = frozenset(p for k in kinds for p in _PY_TYPES.get(k, ()))
        fmt = node.get("format")
        self.temporal = (
            temporal_check(str(fmt))
            if top and fmt in ("date-time", "date", "time") and "string" in (kinds or ())
            else None
        )
        self.bigint = top and kinds is not None and "integer" in kinds
        self.fields: SchemaCheck | None = None
        self.items: _Field | None = None
        if depth >= 32:
            return
        obj = _branch(node, "object") if kinds is None or "object" in kinds else None
        if obj is not None and isinstance(obj.get("properties"), dict):
            check = SchemaCheck(obj, top=False, coerce=coerce, depth=depth + 1)
            self.fields = check if not check.trivial else None
        arr = _branch(node, "array") if kinds is None or "array" in kinds else None
        items = arr.get("items") if arr is not None else None
        if isinstance(items, dict):
            item = _Field("", items, top=False, coerce=coerce, depth=depth + 1)
            self.items = item if not item.trivial else None

    @property
    def trivial(self) -> bool:
        """Every value fits."""
        return self.allowed is None and self.fields is None and self.items is None

    def fits_column(self, values: t.Sequence[JSON]) -> bool:
        """Whether every value of a page's column fits (the fast path)."""
        kinds = set(map(type, values))
        if self.allowed is not None and not kinds <= self.allowed:
            return False
        # (a column of one kind is used as it is: no filtered copy)
        if self.temporal is not None and str in kinds:
            texts = values if len(kinds) == 1 else [v for v in values if type(v) is str]
            if not self.temporal(t.cast("list[str]", texts)):
                return False
        if self.bigint and int in kinds:
            ints = values if len(kinds) == 1 else [v for v in values if type(v) is int]
            if min(ints) < BIGINT[0] or max(ints) > BIGINT[1]:
                return False
        if self.fields is not None and dict in kinds:
            objects = values if len(kinds) == 1 else [v for v in values if type(v) is dict]
            if not self.fields.fits(t.cast("list[dict[str, JSON]]", objects)):
                return False
        if self.items is not None and list in kinds:
            arrays = values if len(kinds) == 1 else [v for v in values if type(v) is list]
            items = list(itertools.chain.from_iterable(t.cast("list[list[JSON]]", arrays)))
            return self.items.fits_column(items)
        return True

    def fits(self, value: JSON) -> bool:
        """Whether one value fits."""
        return self.fits_column([value])


class SchemaCheck:
    """A schema compiled once into a page check (see the module docstring).

    Args:
        schema: an object schema (the stream's, or a nested object's).
        top: the stream's schema (new fields, formats and ``bigint`` are checked there).
        coerce: the schema is the user's, conformed as singer-sdk does (booleans coerced).
    """

    def __init__(
        self, schema: dict[str, JSON], *, top: bool = True, coerce: bool = False, depth: int = 0
    ) -> None:
        properties = schema.get("properties")
        props: dict[str, JSON] = properties if isinstance(properties, dict) else {}
        self.known = frozenset(props)
        self.top = top
        # a key the schema does not list: singer-sdk drops it from a closed object, a
        # target ignores it at the top of an open one (drift); nested, jsonb keeps it
        self.new_fields = top and bool(schema.get("additionalProperties"))
        required = schema.get("required")
        self.required = tuple(
            k for k in (required if isinstance(required, list) else []) if isinstance(k, str)
        )
        fields = [
            _Field(key, node if isinstance(node, dict) else {}, top=top, coerce=coerce, depth=depth)
            for key, node in props.items()
        ]
        self.fields = tuple(f for f in fields if not f.trivial)
        self.trivial = not self.fields and not self.required and not self.new_fields
        # The common page, where every record has every key: its columns come out of
        # one itemgetter per record and one zip, in C. With every listed key present, a
        # record with as many keys as listed has no other key: no key union is needed.
        self._keys = tuple(props) if self.new_fields else tuple(f.key for f in self.fields)
        self._index = tuple(self._keys.index(f.key) for f in self.fields)
        self._getter = operator.itemgetter(*self._keys) if len(self._keys) > 1 else None

    def fits(self, records: t.Sequence[dict[str, JSON]]) -> bool:
        """Whether every record of a page fits the schema."""
        if not records or self.trivial:
            return True
        for key in self.required:
            if not all(key in record for record in records):
                return False
        columns = self._columns(records)
        if columns is None:  # some record lacks a listed key: one lookup per key
            # An absent key fits (only `required` asks for it, checked above), as
            # `mismatches` and `evolve` read it: counting it as null failed a page whose
            # non-nullable field was merely absent, which nothing could evolve away.
            columns = [[r[f.key] for r in records if f.key in r] for f in self.fields]
            complete = False
        else:
            columns = [columns[i] for i in self._index]
            complete = self.new_fields and set(map(len, records)) == {len(self._keys)}
        if self.new_fields and not complete:
            extra = set().union(*records) - self.known
            for key in extra:
                if any(record.get(key) is not None for record in records):
                    return False
        for field, column in zip(self.fields, columns, strict=True):
            if not field.fits_column(column):
                return False
        return True

    def _columns(self, records: t.Sequence[dict[str, JSON]]) -> list[t.Sequence[JSON]] | None:
        """The page's values of every listed key, column by column (None: a key is absent)."""
        getter = self._getter
        if getter is None:
            return None
        try:
            rows = list(map(getter, records))
        except KeyError:
            return None
        return list(zip(*rows, strict=True))

    def field(self, key: str) -> _Field | None:
        """The check of one top-level field (None: every value fits)."""
        for field in self.fields:
            if field.key == key:
                return field
        return None


# --------------------------------------------------------------------------- evolving


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """A field a page's records do not fit.

    Attributes:
        field: the top-level field.
        expected: the schema's type of it, in words (``integer or null``; ``absent``
            for a new field).
        found: the kind of the first value that does not fit (``number``, ``null``,
            ``missing`` for an absent required field), and the path inside it, if nested
            (``number at customer.tier``).
        value: that value.
    """

    field: str
    expected: str
    found: str
    value: JSON = None


@dataclasses.dataclass(frozen=True)
class Change:
    """One change `evolve` made to a schema, for the WARNING that reports it."""

    field: str
    kind: str  # new | nullable | optional | widened | variant
    detail: str
    column: str = ""  # the variant column


class KeyDriftError(Exception):
    """A primary or replication key's value does not fit and cannot move to a variant."""

    def __init__(self, mismatch: Mismatch) -> None:
        self.mismatch = mismatch
        super().__init__(mismatch.field)


def misfit(node: dict[str, JSON], value: JSON, path: str) -> tuple[str, JSON]:
    """Where inside a value it stops fitting a node (``customer.tier``), and what is there."""
    obj = _branch(node, "object")
    if isinstance(value, dict) and obj is not None:
        props = obj.get("properties")
        if isinstance(props, dict):
            for key, inner in props.items():
                if key in value and isinstance(inner, dict):
                    field = _Field(key, inner, top=False, coerce=False, depth=1)
                    if not field.fits(value[key]):
                        return misfit(inner, value[key], f"{path}.{key}")
    arr = _branch(node, "array")
    if isinstance(value, list) and arr is not None and isinstance(arr.get("items"), dict):
        items = t.cast("dict[str, JSON]", arr["items"])
        for item in value:
            if not _Field("", items, top=False, coerce=False, depth=1).fits(item):
                return misfit(items, item, f"{path}[]")
    return path, value


def mismatches(
    schema: dict[str, JSON], records: t.Sequence[dict[str, JSON]], *, coerce: bool = False
) -> list[Mismatch]:
    """Every top-level field a page does not fit, with its first misfit, sorted by field."""
    check = SchemaCheck(schema, coerce=coerce)
    found: list[Mismatch] = []
    for key in check.required:
        if not all(key in record for record in records):
            node = t.cast("dict[str, JSON]", (schema.get("properties") or {}).get(key) or {})
            found.append(Mismatch(key, type_text(node) + " (required)", "missing"))
    if check.new_fields:
        for key in sorted(set().union(*records) - check.known):
            values = [r[key] for r in records if r.get(key) is not None]
            if values:
                found.append(Mismatch(key, "absent", kind_of(values[0]), values[0]))
    for field in check.fields:
        for record in records:
            if field.key in record and not field.fits(record[field.key]):
                where, inner = misfit(field.node, record[field.key], field.key)
                at = "" if where == field.key else f" at {where}"
                found.append(Mismatch(field.key, type_text(field.node), kind_of(inner) + at, inner))
                break
    return sorted(found, key=lambda m: m.field)


def merge(a: dict[str, JSON], b: dict[str, JSON]) -> dict[str, JSON]:
    """The union of two nested schemas: every value of either fits the result."""
    kinds_a, kinds_b = _types(a), _types(b)
    if kinds_a is None or kinds_b is None or "anyOf" in a or "anyOf" in b:
        return {}
    kinds = sorted(set(kinds_a) | set(kinds_b), key=lambda k: ORDER.index(k) if k in ORDER else 99)
    if "integer" in kinds and "number" in kinds:
        kinds.remove("integer")
    out: dict[str, JSON] = {"type": kinds}
    if a.get("format") is not None and a.get("format") == b.get("format"):
        out["format"] = a["format"]
    elif "string" in kinds and ("string" not in kinds_a or "string" not in kinds_b):
        fmt = a.get("format") if "string" in kinds_a else b.get("format")
        if fmt is not None:
            out["format"] = fmt
    pa, pb = a.get("properties"), b.get("properties")
    if isinstance(pa, dict) or isinstance(pb, dict):
        pa = pa if isinstance(pa, dict) else {}
        pb = pb if isinstance(pb, dict) else {}
        out["properties"] = {
            key: merge(pa[key], pb[key]) if key in pa and key in pb else (pa.get(key) or pb[key])
            for key in sorted(set(pa) | set(pb))
        }
        out["additionalProperties"] = True
    if "items" in a or "items" in b:
        ia = a.get("items") if "array" in kinds_a else None
        ib = b.get("items") if "array" in kinds_b else None
        if isinstance(ia, dict) and isinstance(ib, dict):
            out["items"] = merge(ia, ib)
        else:
            out["items"] = ia if isinstance(ia, dict) else ib if isinstance(ib, dict) else {}
    return out


def _nullable(node: dict[str, JSON]) -> dict[str, JSON]:
    kinds = _types(node)
    if kinds is None or "null" in kinds:
        return node
    out = dict(node)
    if "type" in node:
        out["type"] = [*kinds, "null"]
    else:
        out["anyOf"] = [*t.cast("list[JSON]", node["anyOf"]), {"type": "null"}]
    return out


@dataclasses.dataclass
class Evolution:
    """What :func:`evolve` made of a page: the schema it now fits, and what changed."""

    schema: dict[str, JSON]
    changes: list[Change]
    routed: frozenset[str]  # fields whose misfit values moved to variant columns


def evolve(
    schema: dict[str, JSON],
    records: t.Sequence[dict[str, JSON]],
    *,
    keys: t.Collection[str] = (),
    coerce: bool = False,
) -> Evolution:
    """Change a schema so a page fits, as the ``evolve`` policy says (module docstring).

    Records whose values go to variant columns are changed in place (:func:`route`).

    Raises:
        KeyDriftError: a key field's value would have to move to a variant column.
    """
    properties = dict(t.cast("dict[str, JSON]", schema.get("properties") or {}))
    required = [k for k in t.cast("list[str]", schema.get("required") or []) if k in properties]
    check = SchemaCheck(schema, coerce=coerce)
    changes: list[Change] = []
    routed: set[str] = set()
    if check.new_fields:
        for key in sorted(set().union(*records) - check.known):
            values = [r[key] for r in records if r.get(key) is not None]
            if values:
                properties[key] = infer_column(values)
                changes.append(Change(key, "new", type_text(properties[key])))
    for key in list(required):
        if not all(key in record for record in records):
            required.remove(key)
            changes.append(Change(key, "optional", "not in every record"))
    if changes:  # new fields are checked too: values of another kind go to variants
        check = SchemaCheck({**schema, "properties": properties}, coerce=coerce)
    for field in check.fields:
        key = field.key
        misfits = [r[key] for r in records if key in r and not field.fits(r[key])]
        if not misfits:
            continue
        node = field.node
        if any(v is None for v in misfits):
            node = _nullable(node)
            changes.append(Change(key, "nullable", "a record has null"))
        values = [v for v in misfits if v is not None]
        if values:
            column = column_type(node)
            # from every value of the page: nested keys the schema lacks get their types
            # from all of them, not from the misfits alone
            present = [r[key] for r in records if r.get(key) is not None]
            widened = merge(node, infer_value(present))
            # a jsonb column holds any JSON value, a jsonb[] column any array of them
            if (
                (
                    column == "jsonb"
                    or (column == "jsonb[]" and all(type(v) is list for v in values))
                )
                and column_type(widened) == column
                and _Field(key, widened, top=True, coerce=coerce, depth=0).fits_column(present)
            ):
                where, inner = misfit(node, values[0], key)
                changes.append(Change(key, "widened", f"{where} has a {kind_of(inner)}"))
                node = widened
            else:
                if key in keys:
                    raise KeyDriftError(
                        Mismatch(key, type_text(node), kind_of(values[0]), values[0])
                    )
                for kind in sorted({variant_kind(v) for v in values}):
                    name = f"{key}__v_{kind}"
                    if name not in properties:
                        properties[name] = copy.deepcopy(VARIANTS[kind])
                        changes.append(
                            Change(key, "variant", f"{type_text(node)}, got {kind}", name)
                        )
                routed.add(key)
        properties[key] = node
    out = {**schema, "properties": properties}
    if "required" in schema:
        out["required"] = required
    route(records, SchemaCheck(out, coerce=coerce), routed)
    return Evolution(out, changes, frozenset(routed))


def route(
    records: t.Iterable[dict[str, JSON]], check: SchemaCheck, fields: t.Collection[str]
) -> None:
    """Move each value of `fields` that does not fit `check` to its variant column."""
    checks = [f for f in (check.field(key) for key in fields) if f is not None]
    for record in records:
        for field in checks:
            key = field.key
            if key in record:
                value = record[key]
                if value is not None and not field.fits(value):
                    record[variant_name(key, record.pop(key))] = value


# --------------------------------------------------------------------------- across runs

#: A schema for each column type, one that target-postgres maps back to that type.
_COLUMN_SCHEMAS: dict[str, dict[str, JSON]] = {
    "bigint": {"type": ["integer", "null"]},
    "numeric": {"type": ["number", "null"]},
    "boolean": {"type": ["boolean", "null"]},
    "text": {"type": ["string", "null"]},
    "timestamp": {"type": ["string", "null"], "format": "date-time"},
    "date": {"type": ["string", "null"], "format": "date"},
    "time": {"type": ["string", "null"], "format": "time"},
    "uuid": {"type": ["string", "null"], "format": "uuid"},
    "jsonb": {"type": ["object", "null"], "properties": {}, "additionalProperties": True},
}


def columns(schema: dict[str, JSON]) -> dict[str, str]:
    """The column type target-postgres has for each top-level field of a schema."""
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return {}
    return {
        key: column_type(node if isinstance(node, dict) else {})
        for key, node in sorted(properties.items())
    }


def column_schema(column: str) -> dict[str, JSON] | None:
    """A schema whose column is `column` (``bigint``, ``text[]`` ...); None if unknown."""
    if column.endswith("[]"):
        inner = column[:-2]
        if inner == "jsonb":
            return {"type": ["array", "null"], "items": {}}
        item = _COLUMN_SCHEMAS.get(inner)
        if item is None:
            return None
        return {"type": ["array", "null"], "items": {"type": item["type"]}}
    found = _COLUMN_SCHEMAS.get(column)
    return copy.deepcopy(found) if found is not None else None


def keep_columns(
    schema: dict[str, JSON], committed: t.Mapping[str, JSON]
) -> tuple[dict[str, JSON], list[str]]:
    """A run's inferred schema, with the column types earlier runs already gave the table.

    Each run infers from its own sample, so a field may come out of a later run typed
    differently from the column an earlier run made (a float now on the first page).
    target-postgres cannot alter that column, so the earlier type is kept and values of
    another type go to variant columns, as within a run. Fields earlier runs added (drift)
    are listed too, so a value of another type finds its variant column again.

    Args:
        schema: the inferred schema.
        committed: field -> column type, as :func:`columns` gave it (from STATE).

    Returns:
        The schema, and the fields whose inferred type was replaced.
    """
    properties = dict(t.cast("dict[str, JSON]", schema.get("properties") or {}))
    replaced = []
    for field, column in committed.items():
        if not isinstance(column, str):
            continue
        node = properties.get(field)
        if isinstance(node, dict) and column_type(node) == column:
            continue
        kept = column_schema(column)
        if kept is None:
            continue
        if node is not None:
            replaced.append(field)
        properties[field] = kept
    return {**schema, "properties": dict(sorted(properties.items()))}, sorted(replaced)
