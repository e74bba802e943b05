"""XML bodies as JSON values, read incrementally, with entities and external references refused.

The parser is the standard library's ``iterparse`` (expat) through ``defusedxml``, which
refuses any entity declaration (so no billion-laughs expansion and no external entity,
XXE) and any external reference; expat never fetches an external DTD. Such a body is a
:class:`~tap_rhttp.errors.ResponseFormatError`, never a partial read.

How an element becomes a JSON value (also in the README's Bodies section):

- a name is written as in the document: ``prefix:local`` for a namespaced name, the bare
  local name in the default namespace (a namespace URI keeps the first prefix it was
  bound to);
- an element with neither attributes nor child elements is its text, exactly as written
  (whitespace kept, CDATA as text, entities such as ``&amp;`` decoded), or null when
  it has none (``<a/>``, ``<a></a>``);
- any other element is an object: its attributes as ``"@name"`` (string values), then its
  child elements under their names, in the order a name first appears, then ``"#text"``:
  its own text (the text before, between and after its children, joined as written)
  when that is not only whitespace;
- a name that occurs more than once among an element's children is an array of their
  values, in document order; ``xml.arrays`` lists names that are always arrays (even
  once), so a record's shape does not depend on a count;
- comments and processing instructions are dropped.

The body as a whole is ``{"<root name>": <root value>}``. ``xml.records`` is a path of
element names from the root, ``channel/item`` for RSS: every element at that path is one
record (a non-object value is wrapped ``{"value": ...}`` as usual). Elements may nest
:data:`MAX_DEPTH` deep. Records are read one at a time: an element outside a record is
freed once its text has been read, so a large body needs memory for one record and the
open elements above it, not for the body.
"""

from __future__ import annotations

import dataclasses
import typing as t

import defusedxml
from defusedxml.ElementTree import iterparse

from tap_rhttp.errors import ResponseFormatError

if t.TYPE_CHECKING:
    from xml.etree.ElementTree import Element

    from tap_rhttp.types import JSON

_XML_NS = "http://www.w3.org/XML/1998/namespace"
#: Elements open at once (nesting depth) an XML body may have; a server may send any.
MAX_DEPTH = 512


@dataclasses.dataclass(frozen=True)
class XmlOptions:
    """The `xml` option.

    Attributes:
        records: the element path of the records, from the root (``("channel", "item")``),
            or None: the whole body is one record.
        arrays: element names whose values are always arrays.
    """

    records: tuple[str, ...] | None = None
    arrays: frozenset[str] = frozenset()

    def describe(self) -> dict[str, JSON]:
        """The options, as explain prints them."""
        return {
            "records": "/".join(self.records) if self.records is not None else None,
            "arrays": sorted(self.arrays),
        }


def _error(message: str) -> ResponseFormatError:
    return ResponseFormatError(f"failed to parse XML response: {message}")


class _Frame:
    """An open element: its name, text pieces and child values.

    ``inside``: the element is a record or inside one (its children's values are kept
    even when the document is not).
    """

    __slots__ = ("children", "element", "inside", "name", "record", "repeated", "texts")

    def __init__(self, name: str, element: Element, record: bool, inside: bool) -> None:
        self.name = name
        self.element = element
        self.record = record
        self.inside = inside
        self.texts: list[str] = []
        self.children: dict[str, JSON] = {}
        self.repeated: set[str] = set()

    def add(self, name: str, value: JSON, arrays: frozenset[str]) -> None:
        """A child's value: a repeated name (or one in `arrays`) collects in a list."""
        children = self.children
        if name in arrays or name in self.repeated:
            t.cast("list[JSON]", children.setdefault(name, [])).append(value)
        elif name in children:
            children[name] = [children[name], value]
            self.repeated.add(name)
        else:
            children[name] = value

    def value(self, names: _Names) -> JSON:
        """The element's JSON value (see the module docstring)."""
        attributes = self.element.attrib
        text = "".join(self.texts)
        if not attributes and not self.children:
            return text if text else None
        value: dict[str, JSON] = {f"@{names.of(key)}": item for key, item in attributes.items()}
        value.update(self.children)
        if text.strip():
            value["#text"] = text
        return value


class _Names:
    """Element and attribute names as written: ``prefix:local``, or ``local``."""

    def __init__(self) -> None:
        self.prefixes: dict[str, str] = {_XML_NS: "xml"}

    def bind(self, prefix: str, uri: str) -> None:
        self.prefixes.setdefault(uri, prefix)

    def of(self, tag: str) -> str:
        if not tag.startswith("{"):
            return tag
        uri, _, local = tag[1:].partition("}")
        prefix = self.prefixes.get(uri, "")
        return f"{prefix}:{local}" if prefix else local


def iter_xml(
    stream: t.BinaryIO, options: XmlOptions, *, keep_document: bool
) -> t.Iterator[tuple[str, JSON]]:
    """Parse an XML body, yielding ``("record", value)`` per record element as it ends.

    With `keep_document`, the last item is ``("document", {"<root>": value})``: the whole
    body (records included). Without it, record elements are freed once yielded.

    Raises:
        ResponseFormatError: not well-formed XML (with expat's line and column), or an
            entity declaration or external reference (refused).
    """
    names = _Names()
    arrays = options.arrays
    path = options.records
    depth = len(path) + 1 if path is not None else -1
    stack: list[_Frame] = []
    document: JSON = None
    # The event after an element's start completes its text; the one after its end, its
    # tail (the parent's text that follows it). Each is read then, and the element freed.
    started: _Frame | None = None
    ended: Element | None = None
    try:
        for event, item in iterparse(stream, events=("start", "end", "start-ns")):
            if started is not None:
                if started.element.text and (keep_document or started.inside):
                    started.texts.append(started.element.text)
                started.element.text = None
                started = None
            if ended is not None:
                parent = stack[-1]
                if ended.tail and (keep_document or parent.inside):
                    parent.texts.append(ended.tail)
                # Earlier siblings are gone: it is the first child, found at once.
                parent.element.remove(ended)
                ended = None
            if event == "start-ns":
                prefix, uri = t.cast("tuple[str, str]", item)
                names.bind(prefix, uri)
                continue
            element = t.cast("Element", item)
            if event == "start":
                name = names.of(element.tag)
                record = (
                    path is not None
                    and len(stack) + 1 == depth
                    and name == path[-1]
                    and all(f.name == step for f, step in zip(stack[1:], path[:-1], strict=True))
                )
                inside = record or bool(stack and stack[-1].inside)
                if len(stack) >= MAX_DEPTH:
                    raise _error(f"elements nested deeper than {MAX_DEPTH} levels.")
                started = _Frame(name, element, record, inside)
                stack.append(started)
                continue
            frame = stack.pop()
            # Outside the records, a streamed body keeps nothing (not even text): flat memory.
            value = frame.value(names) if keep_document or frame.inside else None
            if frame.record:
                yield "record", value
            if not stack:
                document = {frame.name: value}
                continue
            if keep_document or stack[-1].inside:
                stack[-1].add(frame.name, value, arrays)
            element.attrib.clear()
            ended = element
    except defusedxml.EntitiesForbidden as exc:
        raise _error(
            f"the body declares the entity `{exc.name}`; entity declarations are refused "
            "(they allow entity expansion bombs and external entities)."
        ) from None
    except defusedxml.DefusedXmlException as exc:
        raise _error(f"the body refers to an external resource, which is refused: {exc}") from None
    except SyntaxError as exc:  # xml.etree.ElementTree.ParseError
        raise _error(str(exc)) from None
    if keep_document:
        yield "document", document
