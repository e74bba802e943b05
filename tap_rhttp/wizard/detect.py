"""What one page says about an API: where its records are, how it might page, its keys.

Pure functions over a page's body, headers and records; nothing here makes a request.
:mod:`tap_rhttp.wizard.probe` turns the pagination :class:`Candidate` s proposed here into
requests and keeps only those that a real next page confirms.

Every walk of a body is bounded (:data:`MAX_DEPTH` levels of objects, :data:`MAX_FIELDS`
fields in all): a page is the server's data, and the server may be hostile.

The page expressions are the recipes of ``docs/cookbook.md``, with the API's own field and
param names put in (``<records>`` is the records array, ``info['body']`` or
``info['body']['items']``):

- a ``Link`` header with rel=next: ``link-next``;
- a next URL in the body: ``info['body']['next'].default(None)``;
- a cursor in the body: ``r.branch(info['body']['c'].default(None) == None, None,
  {'params': {'p': info['body']['c']}})``, the param name tried from the field's name;
- ``has_more`` with record ids: ``r.branch(info['body']['has_more'], {'params':
  {'starting_after': <records>[-1]['id']}}, None)``;
- a next page number in the body: the cursor recipe, sent as ``page``;
- offset with a total: ``r.branch(info['params']['offset'] + info['params']['limit'] >=
  info['body']['total'], None, {'params': {'offset': info['params']['offset'] +
  info['params']['limit']}})``;
- offset, or page numbers, that end with an empty page: ``r.branch(<records>.count() == 0,
  None, {'params': {'page': info['params']['page'] + 1}})``; with a page size param they
  stop at the first short page instead (``<records>.count() < info['params']['per_page']``).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import typing as t

from tap_rhttp.run.graph import at_or_before

if t.TYPE_CHECKING:
    from tap_rhttp.types import JSON

#: Levels of nested objects searched for records and paging fields.
MAX_DEPTH = 4
#: Fields looked at in one body, in all.
MAX_FIELDS = 2000

Keys = tuple[str, ...]

_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_URL_RE = re.compile(r"(?:https?://|/|\?)\S*", re.I)

# Field names, compared lower-case with `-` and `_` removed.
_NEXT_URL_NAMES = ("next", "nexturl", "nextlink", "nextpage", "nextpageurl", "odatanextlink")
_CURSOR_NAMES = (
    "next",  # when it holds a token, not a URL
    "nextcursor",
    "cursor",
    "nexttoken",
    "nextpagetoken",
    "pagetoken",
    "continuationtoken",
    "continuation",
    "endcursor",
    "after",
    "scrollid",
)
_HAS_MORE_NAMES = ("hasmore", "hasnextpage", "more")
_NEXT_PAGE_NAMES = ("nextpage", "nextpagenumber")
_TOTAL_NAMES = ("total", "totalcount", "totalresults", "totalitems", "count")
_OFFSET_PARAMS = ("offset", "skip", "start")
_PAGE_PARAMS = ("page", "pagenumber", "pageno", "p")
_SIZE_PARAMS = ("limit", "perpage", "pagesize", "size", "count", "maxresults", "top")
_BODY_SIZE_NAMES = ("limit", "perpage", "pagesize")  # a body's `count` is mostly a total
_REPLICATION_NAMES = (
    "updatedat",
    "modifiedat",
    "lastmodified",
    "updated",
    "modified",
    "datemodified",
    "lastupdated",
    "createdat",
    "created",
)


def collapse(name: str) -> str:
    """A field or param name compared loosely: lower case, no `-`, `_`, `@` or `.`."""
    return re.sub(r"[-_@.]", "", name.lower())


def path_text(keys: Keys) -> str:
    """A JSONPath for `records_path`: ``$``, ``$.items[*]``, ``$['a b'][*]``."""
    if not keys:
        return "$"
    parts = []
    for key in keys:
        if _IDENT_RE.fullmatch(key):
            parts.append(f".{key}")
        elif "'" not in key:
            parts.append(f"['{key}']")
        else:
            parts.append(f'["{key}"]')
    return "$" + "".join(parts) + "[*]"


def path_ok(keys: Keys) -> bool:
    """Whether `path_text` can spell these keys (no key holds both quote characters)."""
    return all(not ("'" in key and '"' in key) for key in keys)


def subscripts(root: str, keys: Keys) -> str:
    """An expression reading `keys` under `root`: ``info['body']['meta']['next']``."""
    return root + "".join(f"[{key!r}]" for key in keys)


# ---------------------------------------------------------------------- records


@dataclasses.dataclass(frozen=True)
class RecordsChoice:
    """Where a page's records are.

    Attributes:
        keys: the object keys down to the records array; None: the body itself.
        count: how many items it held on the page.
        reason: one line saying why.
    """

    keys: Keys | None
    count: int
    reason: str

    @property
    def records_path(self) -> str | None:
        """The `records_path` option (None: the body itself, no option needed)."""
        return path_text(self.keys) if self.keys else None

    def expression(self) -> str:
        """The records as the page expression reads them, e.g. ``info['body']['items']``."""
        return subscripts("info['body']", self.keys or ())


def _walk(body: JSON) -> t.Iterator[tuple[Keys, JSON]]:
    """Every (keys, value) under the body's objects, breadth first, bounded."""
    queue: list[tuple[Keys, JSON]] = [((), body)]
    seen = 0
    while queue:
        keys, node = queue.pop(0)
        if not isinstance(node, dict) or len(keys) >= MAX_DEPTH:
            continue
        for name, value in node.items():
            seen += 1
            if seen > MAX_FIELDS:
                return
            yield (*keys, name), value
            if isinstance(value, dict):
                queue.append(((*keys, name), value))


def _objects(value: JSON) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) for item in value)


def find_records(body: JSON) -> RecordsChoice:
    """The largest array of objects in a body (or the body itself)."""
    if isinstance(body, list):
        if _objects(body):
            return RecordsChoice(None, len(body), f"the body is an array of {len(body)} objects")
        return RecordsChoice(
            None, len(body), 'the body is an array of values: each becomes {"value": ...}'
        )
    if not isinstance(body, dict):
        return RecordsChoice(None, 1, "the body is not a JSON object or array: one record a page")
    arrays = [(keys, value) for keys, value in _walk(body) if _objects(value) and path_ok(keys)]
    if arrays:
        keys, value = max(arrays, key=lambda kv: (len(t.cast("list[JSON]", kv[1])), -len(kv[0])))
        items = t.cast("list[JSON]", value)
        if items or len(arrays) == 1:
            where = ".".join(keys)
            note = "" if items else " (empty on this page)"
            return RecordsChoice(
                keys,
                len(items),
                f"the largest array of objects in the body: `{where}`, {len(items)} on the "
                f"first page{note}",
            )
    return RecordsChoice(None, 1, "no array of objects in the body: each page is one record")


# ---------------------------------------------------------------------- pagination


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One way the API might page, to be verified by following one more page.

    Attributes:
        kind: ``link``, ``next-url``, ``cursor``, ``has-more``, ``next-page``, ``offset``
            or ``page``.
        page: the page expression.
        params: params the first request needs for it (``{'page': 1}``), merged over
            the user's.
        reason: what on the first page suggested it.
    """

    kind: str
    page: str
    params: t.Mapping[str, JSON]
    reason: str


def _named(keys: Keys, names: t.Sequence[str]) -> bool:
    return collapse(keys[-1]) in names


def _is_url(value: JSON) -> bool:
    return isinstance(value, str) and bool(_URL_RE.fullmatch(value))


def _param(params: t.Mapping[str, JSON], names: t.Sequence[str]) -> str | None:
    return next((name for name in params if collapse(name) in names), None)


def _ints(body: JSON, names: t.Sequence[str], skip: Keys | None) -> list[tuple[Keys, int]]:
    return [
        (keys, value)
        for keys, value in _walk(body)
        if keys != skip
        and _named(keys, names)
        and isinstance(value, int)
        and not isinstance(value, bool)
    ]


def _cursor_params(keys: Keys) -> list[str]:
    """Query param names to try for a cursor field: derived from its name, then common ones."""
    name = keys[-1]
    derived = re.sub(r"^(next[_-]?|Next)", "", name)
    if derived and derived != name:
        derived = derived[0].lower() + derived[1:]
    guesses = [derived, name, "cursor", "page_token", "pageToken", "after", "continuation"]
    out: list[str] = []
    for guess in guesses:
        if guess and guess not in out:
            out.append(guess)
    return out


def candidates(
    *,
    header: t.Mapping[str, JSON],
    body: JSON,
    records: RecordsChoice,
    record_list: t.Sequence[dict[str, JSON]],
    params: t.Mapping[str, JSON],
) -> list[Candidate]:
    """Ways to page, strongest evidence first; blind page-number and offset probes last.

    Args:
        header: the first page's ``info['header']`` (``link`` parsed).
        body: its body.
        records: where its records are.
        record_list: its records.
        params: the params the first request was made with.
    """
    found: list[Candidate] = []
    link = header.get("link")
    if isinstance(link, dict) and link.get('rel="next"'):
        found.append(
            Candidate("link", "link-next", {}, 'the response has a Link header with rel="next"')
        )
    skip = records.keys
    rows = records.expression()
    fields = [(keys, value) for keys, value in _walk(body) if keys != skip]
    for keys, value in fields:
        target = keys
        if isinstance(value, dict) and _named(keys, _NEXT_URL_NAMES):
            href = next((k for k in ("href", "url") if _is_url(value.get(k))), None)
            if href is None:
                continue
            target, value = (*keys, href), value[href]
        if _named(keys, _NEXT_URL_NAMES) and _is_url(value):
            where = ".".join(target)
            field = subscripts("info['body']", target)
            found.append(
                Candidate(
                    "next-url",
                    f"{field}.default(None)",
                    {},
                    f"the body's `{where}` holds a URL",
                )
            )
    for keys, value in fields:
        if _named(keys, _CURSOR_NAMES) and isinstance(value, str) and value and not _is_url(value):
            field = subscripts("info['body']", keys)
            for param in _cursor_params(keys):
                found.append(
                    Candidate(
                        "cursor",
                        f"r.branch({field}.default(None) == None, None, "
                        f"{{'params': {{{param!r}: {field}}}}})",
                        {},
                        f"the body's `{'.'.join(keys)}` looks like a cursor; sent back as "
                        f"`{param}`",
                    )
                )
    ids = [r.get("id") for r in record_list]
    if record_list and all(isinstance(i, (str, int)) and not isinstance(i, bool) for i in ids):
        for keys, value in fields:
            if _named(keys, _HAS_MORE_NAMES) and value is True:
                flag = subscripts("info['body']", keys)
                for param in ("starting_after", "after"):
                    found.append(
                        Candidate(
                            "has-more",
                            f"r.branch({flag}, {{'params': {{{param!r}: "
                            f"{rows}[-1]['id']}}}}, None)",
                            {},
                            f"the body's `{'.'.join(keys)}` is true; the last record's `id` "
                            f"sent as `{param}`",
                        )
                    )
    page_param = _param(params, _PAGE_PARAMS)
    for keys, _value in _ints(body, _NEXT_PAGE_NAMES, skip):
        field = subscripts("info['body']", keys)
        param = page_param or "page"
        found.append(
            Candidate(
                "next-page",
                f"r.branch({field}.default(None) == None, None, "
                f"{{'params': {{{param!r}: {field}}}}})",
                {},
                f"the body's `{'.'.join(keys)}` holds the next page number, sent as `{param}`",
            )
        )
    size_param = _param(params, _SIZE_PARAMS)
    extra: dict[str, JSON] = {}
    if size_param is None:  # the body may say which size it used: ask for it by name
        for keys, value in _ints(body, _BODY_SIZE_NAMES, skip):
            if len(keys) <= 2 and value > 0:
                size_param = keys[-1]
                extra[size_param] = value
                break
    offsets, hinted = _offset(body, params, rows, skip, size_param, extra)
    pages = _page_number(params, rows, page_param, size_param, extra)
    # Offsets the first page hints at come before page numbers; blind ones after them.
    found += offsets + pages if hinted else pages + offsets
    return found


def _offset(
    body: JSON,
    params: t.Mapping[str, JSON],
    rows: str,
    skip: Keys | None,
    size_param: str | None,
    extra: dict[str, JSON],
) -> tuple[list[Candidate], bool]:
    """Offset candidates, and whether the request or the first page hinted at offsets."""
    given = _param(params, _OFFSET_PARAMS)
    param = given or "offset"
    start = params.get(param, 0)
    if not isinstance(start, int) or isinstance(start, bool):
        return [], False
    at = f"info['params'][{param!r}]"
    totals = _ints(body, _TOTAL_NAMES, skip)
    hinted = (
        given is not None or bool(totals) or any(_named(k, _OFFSET_PARAMS) for k, _ in _walk(body))
    )
    first = {**extra, param: start}
    if size_param is not None:
        size = f"info['params'][{size_param!r}]"
        step = f"{{'params': {{{param!r}: {at} + {size}}}}}"
        out = []
        if totals:
            total_keys = totals[0][0]
            total = subscripts("info['body']", total_keys)
            out.append(
                Candidate(
                    "offset",
                    f"r.branch({at} + {size} >= {total}, None, {step})",
                    first,
                    f"`{param}` moved by `{size_param}` until it reaches the body's "
                    f"`{'.'.join(total_keys)}`",
                )
            )
        out.append(
            Candidate(
                "offset",
                f"r.branch({rows}.count() < {size}, None, {step})",
                first,
                f"`{param}` moved by `{size_param}`; a page shorter than `{size_param}` is "
                "the last" + ("" if hinted else " (nothing on the first page hinted at offsets)"),
            )
        )
        return out, hinted
    step = f"{{'params': {{{param!r}: {at} + {rows}.count()}}}}"
    return [
        Candidate(
            "offset",
            f"r.branch({rows}.count() == 0, None, {step})",
            first,
            f"`{param}` moved by the records of each page; an empty page ends it"
            + ("" if hinted else " (nothing on the first page hinted at offsets)"),
        )
    ], hinted


def _page_number(
    params: t.Mapping[str, JSON],
    rows: str,
    page_param: str | None,
    size_param: str | None,
    extra: dict[str, JSON],
) -> list[Candidate]:
    param = page_param or "page"
    start = params.get(param, 1)
    if not isinstance(start, int) or isinstance(start, bool):
        return []
    at = f"info['params'][{param!r}]"
    step = f"{{'params': {{{param!r}: {at} + 1}}}}"
    if size_param is not None:
        return [
            Candidate(
                "page",
                f"r.branch({rows}.count() < info['params'][{size_param!r}], None, {step})",
                {**extra, param: start},
                f"`{param}` counts up from {start}; a page shorter than `{size_param}` is the last",
            )
        ]
    return [
        Candidate(
            "page",
            f"r.branch({rows}.count() == 0, None, {step})",
            {param: start},
            f"`{param}` counts up from {start}; an empty page ends it",
        )
    ]


# ---------------------------------------------------------------------- keys


def primary_key(records: t.Sequence[dict[str, JSON]]) -> tuple[str | None, str]:
    """A field that is present, non-null, scalar and unique in every record; and why."""
    if not records:
        return None, "no records seen"
    names = [name for name in records[0] if _id_like(name)]
    names.sort(key=lambda n: (n != "id", collapse(n) != "id", len(n)))
    for name in names:
        values = [r.get(name) for r in records]
        if all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values) and len(
            {(type(v).__name__, v) for v in values}
        ) == len(values):
            return name, f"`{name}` is non-null and unique in all {len(records)} records seen"
    return None, (
        "no id-like field is non-null and unique in every record: without primary keys "
        "each run appends every record again"
    )


def _id_like(name: str) -> bool:
    """Whether a field name reads as an identifier: ``id``, ``uuid``, ``order_id``, ``orderId``."""
    if collapse(name) in ("id", "uuid", "guid", "key"):
        return True
    return bool(re.search(r"(?:[-_](?:id|uuid|guid|key)|[a-z0-9](?:Id|ID|Uuid|Guid|Key))$", name))


def replication_key(
    records: t.Sequence[dict[str, JSON]], schema: t.Mapping[str, JSON]
) -> tuple[str | None, str]:
    """A date-time field set in every record and in order on the pages seen; and why."""
    props = t.cast("dict[str, dict[str, JSON]]", schema.get("properties") or {})
    dated = [
        name
        for name, prop in props.items()
        if prop.get("format") == "date-time"
        and records
        and all(isinstance(r.get(name), str) for r in records)
    ]
    if not dated:
        return None, "no date-time field is set in every record: every run reads everything"
    ordered = [name for name in dated if _monotone(records, name) is not None]
    if not ordered:
        return None, (
            f"no date-time field ({', '.join(f'`{n}`' for n in dated)}) is in order on the "
            "pages seen: every run reads everything"
        )

    def rank(name: str) -> int:
        c = collapse(name)
        return _REPLICATION_NAMES.index(c) if c in _REPLICATION_NAMES else len(_REPLICATION_NAMES)

    name = min(ordered, key=rank)
    direction = _monotone(records, name)
    why = f"`{name}` is a date-time in all {len(records)} records, {direction} on the pages seen"
    if direction == "ascending":
        why += "; add `is_sorted: true` if the API guarantees that order"
    if collapse(name).startswith("created"):
        why += "; a creation time: changes to older records are not read again"
    return name, why


def _monotone(records: t.Sequence[dict[str, JSON]], name: str) -> str | None:
    pairs = list(itertools.pairwise(r[name] for r in records))
    if all(at_or_before(a, b) for a, b in pairs):
        return "ascending"
    if all(at_or_before(b, a) for a, b in pairs):
        return "descending"
    return None
