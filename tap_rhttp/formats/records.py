"""From a read body to records: `records_path`, and r.http's splicing of arrays.

r.http splices an array body into its stream element by element, and a non-array body
is one element. A Singer RECORD must be an object, so any other item is wrapped as
``{"value": item}``.
"""

from __future__ import annotations

import functools
import re
import typing as t

from jsonpath_ng.ext import parse as jsonpath_parse

if t.TYPE_CHECKING:
    from tap_rhttp.types import JSON


_SIMPLE_PATH_RE = re.compile(
    r"^\$((?:\.[A-Za-z_][A-Za-z0-9_]*|\[(?:'[^']*'|\"[^\"]*\")\])*)(\[\*\])?$"
)
_SEGMENT_RE = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(?:'([^']*)'|\"([^\"]*)\")\]")


class RecordsPath:
    """A compiled `records_path`.

    Simple paths (``$``, ``$.a.b``, ``$.a['b-c'][*]``) are walked directly, which is
    several times faster than jsonpath-ng on large pages; anything else goes through
    jsonpath-ng. A path that selects a single value (no wildcard, slice, filter or
    recursive descent) and lands on an array yields that array's elements, so
    ``$.items`` and ``$.items[*]`` mean the same.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        match = _SIMPLE_PATH_RE.match(text.strip())
        self._keys: tuple[str, ...] | None = None
        self._expr: t.Any = None
        if match:
            self._keys = tuple(a or b or c for a, b, c in _SEGMENT_RE.findall(match.group(1) or ""))
            self.singular = True
        else:
            self._expr = jsonpath_parse(text)
            self.singular = not any(ch in text for ch in "*?:,") and ".." not in text

    @property
    def keys(self) -> tuple[str, ...] | None:
        """The keys of a simple path (``()`` for ``$``), or None for a jsonpath-ng one."""
        return self._keys

    def find(self, body: JSON) -> list[JSON]:
        """The items the path selects in a body (empty when nothing matches)."""
        if self._keys is not None:
            node = body
            for key in self._keys:
                if not isinstance(node, dict) or key not in node:
                    return []
                node = node[key]
            return node if isinstance(node, list) else [node]
        matches = [m.value for m in self._expr.find(body)]
        if self.singular and len(matches) == 1 and isinstance(matches[0], list):
            return matches[0]
        return matches

    def __str__(self) -> str:
        return self.text


@functools.lru_cache(maxsize=256)
def compile_records_path(text: str) -> RecordsPath:
    """Compile a `records_path` once (raises on bad syntax)."""
    return RecordsPath(text)


def body_to_records(body: JSON, records_path: RecordsPath | None) -> list[dict[str, JSON]]:
    """Turn one page's body into records, r.http style.

    An array is spliced (one record per element), any other value is one record, and a
    record that is not an object is wrapped as ``{"value": item}``.
    """
    if records_path is not None:
        items = records_path.find(body)
    elif isinstance(body, list):
        items = body
    else:
        items = [body]
    return [item if isinstance(item, dict) else {"value": item} for item in items]


_R = t.TypeVar("_R")


class Unparsed(t.Generic[_R]):
    """A page body kept as bytes, parsed (once) only when something asks for it.

    A page whose records were proven exact (``tap_rhttp.schema.exact``) is written from
    its bytes; its body and records as Python values are only made if another reader
    (a page error's message, a fallback to the general path) asks for them.

    Args:
        parse: gives the body as `result_format` reads it, and its records.
    """

    __slots__ = ("_parse", "_parsed")

    def __init__(self, parse: t.Callable[[], tuple[JSON, _R]]) -> None:
        self._parse: t.Callable[[], tuple[JSON, _R]] | None = parse
        self._parsed: tuple[JSON, _R] | None = None

    @property
    def parsed(self) -> bool:
        """Whether the body has been parsed."""
        return self._parse is None

    def get(self) -> tuple[JSON, _R]:
        """The body and its records (parsed now if they were not yet)."""
        parse = self._parse
        if parse is not None:
            self._parsed = parse()
            self._parse = None
        assert self._parsed is not None
        return self._parsed
