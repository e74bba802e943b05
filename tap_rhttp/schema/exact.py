"""A page whose bytes are already the records' RECORD bytes: checked in one typed parse.

A RECORD line holds a record as msgspec writes the dict parsed from the API's JSON. When
the API wrote each record exactly that way (no whitespace, the same escapes, numbers in
their shortest form, keys once each) and every record fits the stream's schema, the
record's bytes in the body *are* those bytes, and a writer can copy them into the RECORD
line instead of building a dict per record and encoding it again.

:class:`ExactCheck` is compiled from a stream's schema into msgspec types (a ``Struct``
per object, fields in the order the page's first record has its keys), and answers for a
page's array of records, without creating a dict per record:

1. the typed parse succeeds: every record fits at least as strictly as
   ``drift.SchemaCheck.fits`` asks (JSON types, nullability, ``required``, integers of
   the top level within ``bigint``, no key the schema does not list, anywhere), and
   singer-sdk's type conformance would change nothing (a boolean field holds booleans;
   no key is dropped);
2. the typed records encoded again are byte for byte the array in the body: so each
   record's span is what msgspec writes for its dict (key order, escapes, numbers);
3. the top-level ``date``/``date-time``/``time`` strings parse as target-postgres parses
   them (as ``drift`` checks them).

Anything it cannot vouch for (a schema with ``anyOf`` or an untyped node, a record of
another key order, ``1.50``, ``"\\/"``, a new field) returns None, and the page takes the
general path, where the drift policy and the SDK see it as before. The check is only ever
stricter than the general path, never looser; ``tests/test_exact.py`` runs both on the
same bodies.
"""

from __future__ import annotations

import operator
import typing as t

import msgspec

from tap_rhttp.schema.drift import BIGINT, temporal_check

if t.TYPE_CHECKING:
    from tap_rhttp.types import JSON

#: Distinct key orders compiled per schema; a page of yet another order is not spliced.
MAX_ORDERS = 16
#: Deepest object nesting compiled (a deeper schema is not spliced).
MAX_DEPTH = 16
#: Pages declined in a row after which a stream stops checking (`ExactCheck.worth_trying`):
#: an API that pretty-prints, or escapes differently, would pay a typed parse per page
#: for nothing.
GIVE_UP_AFTER = 8

_RAWS = msgspec.json.Decoder(list[msgspec.Raw])
_DECODE = msgspec.json.Decoder()
_ENCODE = msgspec.json.Encoder()
_BIGINT = t.Annotated[int, msgspec.Meta(ge=BIGINT[0], le=BIGINT[1])]
_TEMPORAL = ("date-time", "date", "time")


class Unsupported(Exception):
    """The schema (or the page's key order) has no exact msgspec type."""


#: A node's key order, from a sample record: ``(key, order of its value), ...``.
Order = tuple[tuple[str, "Order | None"], ...]


def _kinds(node: JSON) -> list[str]:
    if not isinstance(node, dict) or "anyOf" in node or "oneOf" in node or "allOf" in node:
        raise Unsupported
    kind = node.get("type")
    kinds = [kind] if isinstance(kind, str) else kind
    if not isinstance(kinds, list) or not kinds or not all(isinstance(k, str) for k in kinds):
        raise Unsupported
    return kinds


class _Compiler:
    """Builds the msgspec type of a schema node, for one key order."""

    def __init__(self) -> None:
        self.count = 0

    def value(self, node: JSON, order: Order | None, *, top: bool, depth: int) -> t.Any:
        if depth > MAX_DEPTH:
            raise Unsupported
        options: list[t.Any] = []
        for kind in _kinds(node):
            if kind == "null":
                options.append(None)
            elif kind == "boolean":
                options.append(bool)
            elif kind == "integer":
                options.append(_BIGINT if top else int)
            elif kind == "number":
                options += [_BIGINT if top else int, float]
            elif kind == "string":
                options.append(str)
            elif kind == "object":
                options.append(self.struct(t.cast("dict[str, JSON]", node), order, depth))
            elif kind == "array":
                items = t.cast("dict[str, JSON]", node).get("items")
                if not isinstance(items, dict):
                    raise Unsupported
                options.append(list[self.value(items, order, top=False, depth=depth + 1)])  # type: ignore[misc]
            else:
                raise Unsupported
        unique = list(dict.fromkeys(options))
        return unique[0] if len(unique) == 1 else t.Union[tuple(unique)]  # noqa: UP007

    def struct(self, node: dict[str, JSON], order: Order | None, depth: int) -> type:
        properties = node.get("properties")
        if not isinstance(properties, dict):
            raise Unsupported
        required = node.get("required", [])
        if not isinstance(required, list):
            raise Unsupported
        inner = dict(order or ())
        keys = [k for k in inner if k in properties]
        keys += [k for k in properties if k not in inner]
        fields: list[tuple[str, t.Any] | tuple[str, t.Any, t.Any]] = []
        rename: dict[str, str] = {}
        for index, key in enumerate(keys):
            name = f"f{index}"
            rename[name] = key
            kind = self.value(properties[key], inner.get(key), top=depth == 0, depth=depth + 1)
            if key in required:
                fields.append((name, kind))
            else:
                fields.append((name, t.Union[kind, msgspec.UnsetType], msgspec.UNSET))  # noqa: UP007
        self.count += 1
        try:
            return msgspec.defstruct(
                f"Record{self.count}",
                fields,
                rename=rename,
                kw_only=True,
                forbid_unknown_fields=True,
                omit_defaults=True,
                # values parsed from JSON never form a reference cycle: not tracking
                # them spares the cyclic collector a pass per few hundred records
                gc=False,
            )
        except TypeError:  # a union msgspec cannot decode unambiguously
            raise Unsupported from None


def _order(value: JSON, depth: int = 0) -> Order | None:
    """The key order of a sample value (its first array item's, for an array)."""
    if depth > MAX_DEPTH:
        return None
    if isinstance(value, list):
        return _order(value[0], depth + 1) if value else None
    if not isinstance(value, dict):
        return None
    return tuple((key, _order(item, depth + 1)) for key, item in value.items())


class ExactCheck:
    """A stream schema compiled into the exact page check (see the module docstring).

    Build it with :meth:`compile`, which returns None for a schema it cannot express.
    Thread-safe: chains check pages with it on their own threads.
    """

    def __init__(self, schema: dict[str, JSON]) -> None:
        self.schema = schema
        properties = t.cast("dict[str, JSON]", schema.get("properties"))
        self._temporal = tuple(
            (key, temporal_check(str(node["format"])))
            for key, node in properties.items()
            if isinstance(node, dict)
            and node.get("format") in _TEMPORAL
            and "string" in _kinds(node)
        )
        self._decoders: dict[Order, msgspec.json.Decoder[t.Any] | None] = {}
        #: Pages declined since the last one vouched for (threads race on it harmlessly:
        #: it only decides whether checking is still worth it).
        self.declined = 0

    @property
    def worth_trying(self) -> bool:
        """False once :data:`GIVE_UP_AFTER` pages in a row were declined."""
        return self.declined < GIVE_UP_AFTER

    @classmethod
    def compile(cls, schema: dict[str, JSON]) -> ExactCheck | None:
        """The check for a stream's schema, or None when no msgspec type expresses it."""
        try:
            _Compiler().struct(schema, None, 0)
        except (Unsupported, RecursionError):
            return None
        return cls(schema)

    def _decoder(self, order: Order) -> msgspec.json.Decoder[t.Any] | None:
        found = self._decoders.get(order, False)
        if found is not False:
            return t.cast("msgspec.json.Decoder[t.Any] | None", found)
        decoder: msgspec.json.Decoder[t.Any] | None = None
        if len(self._decoders) < MAX_ORDERS:
            try:
                record = _Compiler().struct(self.schema, order, 0)
                decoder = msgspec.json.Decoder(list[record])  # type: ignore[valid-type]
            except (Unsupported, RecursionError):
                decoder = None
            self._decoders = {**self._decoders, order: decoder}  # readers see old or new
        return decoder

    def spans(self, array: bytes) -> list[msgspec.Raw] | None:
        """Each record's bytes in a page's array of records, when they are exact; else None.

        Args:
            array: the bytes of the JSON array that holds the page's records, exactly as
                the body has them (no whitespace around it).
        """
        spans = self._spans(array)
        self.declined = 0 if spans is not None else self.declined + 1
        return spans

    def _spans(self, array: bytes) -> list[msgspec.Raw] | None:
        try:
            spans = _RAWS.decode(array)
            if not spans:
                return spans
            order = _order(_DECODE.decode(spans[0]))
            if order is None:
                return None  # not an object
            decoder = self._decoder(order)
            if decoder is None:
                return None
            records = decoder.decode(array)
        except (msgspec.MsgspecError, RecursionError):
            return None
        if _ENCODE.encode(records) != array:
            return None
        for key, parses in self._temporal:
            name = _field_name(records[0], key)
            texts = [v for v in map(operator.attrgetter(name), records) if type(v) is str]
            if texts and not parses(texts):
                return None
        return spans


def _field_name(record: msgspec.Struct, key: str) -> str:
    """The attribute that holds a key of the schema in a compiled record."""
    config = type(record).__struct_encode_fields__
    return type(record).__struct_fields__[config.index(key)]


def records_array(body: bytes, keys: tuple[str, ...]) -> bytes | None:
    """The bytes of the array of records a simple `records_path` (its keys) selects.

    None when the path does not land on an array in this body, or the body is not JSON:
    the general path then decides what the page's records are, or what the error is.
    """
    node = body.strip(b" \t\r\n")
    try:
        for key in keys:
            if node[:1] != b"{":
                return None
            found = msgspec.json.decode(node, type=dict[str, msgspec.Raw]).get(key)
            if found is None:
                return None
            node = bytes(found)
    except (msgspec.MsgspecError, RecursionError):
        return None
    return node if node[:1] == b"[" else None
