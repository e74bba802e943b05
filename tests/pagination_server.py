"""Paginating endpoints for the shared loopback server, named by the shape they page in.

Every endpoint pages server side over the same small data set (``TOTAL`` records, ids
1..TOTAL, ``PER_PAGE`` to a page unless the request says otherwise), the way a real API
does, so a test asserts the records a sync emitted against ``expected_ids()`` and the
requests the server saw against ``server.log``.

:func:`install` registers them onto a :class:`server.LocalServer`; the ``server`` fixture
removes them again after each test. Two groups:

- shapes the paginator must cope with (``/link/<style>``, ``/meta-next``, ``/numbered``,
  ``/numbered-strict``, ``/gappy``, ``/tokens``, ``/loop/...``);
- the cookbook's APIs (``docs/cookbook.md``), each imitating a well-known one: GitHub's
  Link headers, a body ``next`` URL (Django REST framework), cursor tokens, page numbers
  that end in an empty page, offset/limit with a ``total``, Stripe's ``has_more``.
"""

from __future__ import annotations

import base64
import typing as t
from urllib.parse import quote

from server import Reply, Request, json_reply

if t.TYPE_CHECKING:
    from server import LocalServer

TOTAL = 5
PER_PAGE = 2


def expected_ids(total: int = TOTAL) -> list[int]:
    return list(range(1, total + 1))


def _int(request: Request, name: str, default: int) -> int:
    return int(request.args.get(name, str(default)))


def _slice(start: int, size: int, total: int = TOTAL) -> list[dict[str, t.Any]]:
    """Records `start+1 .. start+size` of the data set (fewer, or none, past its end)."""
    return [{"id": i} for i in range(start + 1, min(start + size, total) + 1)]


def _query(args: dict[str, str], **changes: t.Any) -> str:
    """The request's own query with some keys changed, in the order received."""
    merged = {**args, **{k: str(v) for k, v in changes.items()}}
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in merged.items())


def _links(style: str, nxt: str, base: str, query: str, page: int, last: int) -> list[str]:
    """The Link header line(s) of `/link/<style>`; `nxt` is the absolute next URL."""
    first = f'<{base}?page=1>; rel="first"'
    last_link = f'<{base}?page={last}>; rel="last"'
    if style == "quoted":
        return [f'<{nxt}>; rel="next", {last_link}']
    if style == "bare":
        return [f"<{nxt}>; rel=next, <{base}?page={last}>; rel=last"]
    if style == "upper":
        return [f'<{nxt}>; REL="NEXT", <{base}?page={last}>; REL="LAST"']
    if style == "multi":  # GitLab/RFC 8288: several relation types in one rel
        rel = "next last" if page + 1 == last else "next"
        return [f'{first}, <{nxt}>; rel="{rel}"']
    if style == "relative":  # a path relative to the current URL
        return [f'<relative?{query}>; rel="next"']
    if style == "root":  # a path relative to the host
        return [f'</link/root?{query}>; rel="next"']
    if style == "query":  # only a query: same path
        return [f'<?{query}>; rel="next"']
    if style == "several":  # one Link header line per link (RFC 8288 §3 allows it)
        return [first, f'<{nxt}>; rel="next"', last_link]
    if style == "title":  # extra params, a comma and a semicolon inside quotes, any order
        return [
            f'<{nxt}>; title="next, then; more"; rel="next"; type="application/json", '
            f'<{base}?page={last}>; title="x"; rel="last"'
        ]
    raise AssertionError(f"no Link style {style!r}")


def install(server: LocalServer) -> None:
    """Register every paginating endpoint on `server`."""
    route = server.route

    @route("/link/")
    def link(request: Request) -> Reply:
        """`/link/<style>?page=N`: a bare array and a Link header in `style`.

        `malformed` sends an unparseable Link header and the next URL in `X-Next`.
        """
        style = request.path.rsplit("/", 1)[1]
        page = _int(request, "page", 1)
        per = _int(request, "per_page", PER_PAGE)
        last = -(-TOTAL // per)
        base = f"{server.url}{request.path}"
        headers: list[tuple[str, str]] = []
        if page < last:
            query = _query(request.args, page=page + 1)
            nxt = f"{base}?{query}"
            if style == "malformed":
                headers += [("Link", f'{nxt}>; rel="next", <oops'), ("X-Next", nxt)]
            else:
                headers += [("Link", v) for v in _links(style, nxt, base, query, page, last)]
        return json_reply(_slice((page - 1) * per, per), headers=headers)

    @route("/meta-next")
    def meta_next(request: Request) -> Reply:
        """The seed page's shape: `{items, meta: {page, next}}`; no `next` on the last page."""
        page = _int(request, "page", 1)
        last = -(-TOTAL // PER_PAGE)
        meta: dict[str, t.Any] = {"page": page}
        if page < last:
            meta["next"] = f"{server.url}/meta-next?{_query(request.args, page=page + 1)}"
        return json_reply({"items": _slice((page - 1) * PER_PAGE, PER_PAGE), "meta": meta})

    @route("/numbered")
    def numbered(request: Request) -> Reply:
        """`?page=N&per_page=K`: a bare array; past the end, an empty one, forever."""
        page = _int(request, "page", 1)
        per = _int(request, "per_page", PER_PAGE)
        return json_reply(_slice((page - 1) * per, per))

    @route("/numbered-strict")
    def numbered_strict(request: Request) -> Reply:
        """`?page=N`: a bare array; past the last page, 404 (as many APIs answer)."""
        page = _int(request, "page", 1)
        if page < 1 or (page - 1) * PER_PAGE >= TOTAL:
            return Reply(404, f"page {page} does not exist", (), "text/plain")
        return json_reply(_slice((page - 1) * PER_PAGE, PER_PAGE))

    @route("/gappy")
    def gappy(request: Request) -> Reply:
        """`?page=N`: pages of 2, 0, 0, 3 records, `{items, next_page}`; null at the end."""
        sizes = [2, 0, 0, 3]
        page = _int(request, "page", 1)
        start = sum(sizes[: page - 1])
        items = _slice(start, sizes[page - 1]) if page <= len(sizes) else []
        next_page = page + 1 if page < len(sizes) else None
        return json_reply({"items": items, "next_page": next_page})

    @route("/tokens")
    def tokens(request: Request) -> Reply:
        """The next page's token in a response header, `X-Page-Token`, sent twice.

        The first line is stale, the second is right: `info.header` keeps the last value.
        """
        page = int(request.args.get("token", "t1")[1:])
        headers = []
        if page * PER_PAGE < TOTAL:
            headers = [("X-Page-Token", "stale"), ("x-page-token", f"t{page + 1}")]
        return json_reply(_slice((page - 1) * PER_PAGE, PER_PAGE), headers=headers)

    @route("/loop/")
    def loop(request: Request) -> Reply:
        """`/loop/<name>` returns `{items, next}` where `next` is the path in `?next=`.

        `/loop/a?next=/loop/a` points to itself; `a` -> `b` -> `a` with two routes.
        """
        name = request.path.rsplit("/", 1)[1]
        nxt = {"self": "/loop/self", "a": "/loop/b", "b": "/loop/a"}[name]
        return json_reply({"items": [{"id": name}], "next": nxt})

    _install_cookbook(server)


def _cursor(n: int) -> str:
    return base64.urlsafe_b64encode(f"after:{n}".encode()).decode().rstrip("=")


def _after(cursor: str) -> int:
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    return int(raw.split(":", 1)[1])


def _install_cookbook(server: LocalServer) -> None:
    route = server.route

    def github(request: Request) -> Reply:
        """GitHub: a bare array; `Link` with prev/next/last/first, absolute URLs."""
        page = _int(request, "page", 1)
        per = _int(request, "per_page", 30)
        last = -(-TOTAL // per)
        items = [
            {"id": 1000 + r["id"], "number": r["id"], "title": f"issue {r['id']}"}
            for r in _slice((page - 1) * per, per)
        ]
        # GitHub answers on /repos/<owner>/<repo>/... and links to /repositories/<id>/...
        base = f"{server.url}/repositories/1296269/issues"
        links = []
        if page > 1:
            links.append(f'<{base}?{_query(request.args, page=page - 1)}>; rel="prev"')
        if page < last:
            links.append(f'<{base}?{_query(request.args, page=page + 1)}>; rel="next"')
            links.append(f'<{base}?{_query(request.args, page=last)}>; rel="last"')
        if page > 1:
            links.append(f'<{base}?{_query(request.args, page=1)}>; rel="first"')
        headers = [("Link", ", ".join(links))] if links else []
        return json_reply(items, headers=headers)

    route("/repos/octocat/hello-world/issues")(github)
    route("/repositories/1296269/issues")(github)

    @route("/api/orders/")
    def orders(request: Request) -> Reply:
        """Django REST framework: `{count, next, previous, results}`, absolute URLs."""
        page = _int(request, "page", 1)
        per = _int(request, "page_size", 2)
        last = -(-TOTAL // per)
        if page > last:
            return json_reply({"detail": "Invalid page."}, status=404)

        def at(n: int) -> str | None:
            return f"{server.url}/api/orders/?{_query(request.args, page=n)}" if n else None

        return json_reply(
            {
                "count": TOTAL,
                "next": at(page + 1) if page < last else None,
                "previous": at(page - 1) if page > 1 else None,
                "results": [
                    {"id": r["id"], "total": r["id"] * 10} for r in _slice((page - 1) * per, per)
                ],
            }
        )

    @route("/v1/events")
    def events(request: Request) -> Reply:
        """Opaque cursors: `{data, next_cursor}`; `next_cursor` is null on the last page."""
        cursor = request.args.get("cursor")
        after = _after(cursor) if cursor else 0
        limit = _int(request, "limit", 2)
        data = [{"id": f"evt_{r['id']}", "n": r["id"]} for r in _slice(after, limit)]
        end = after + len(data)
        return json_reply({"data": data, "next_cursor": _cursor(end) if end < TOTAL else None})

    @route("/api/v2/tickets")
    def tickets(request: Request) -> Reply:
        """Page numbers, a bare array, no hint of the end but an empty page."""
        page = _int(request, "page", 1)
        per = _int(request, "per_page", 2)
        return json_reply(_slice((page - 1) * per, per))

    @route("/v3/contacts")
    def contacts(request: Request) -> Reply:
        """offset/limit with a `total`: `{total, offset, limit, items}`."""
        offset = _int(request, "offset", 0)
        limit = _int(request, "limit", 2)
        return json_reply(
            {"total": TOTAL, "offset": offset, "limit": limit, "items": _slice(offset, limit)}
        )

    @route("/v1/customers")
    def customers(request: Request) -> Reply:
        """Stripe: `{object: list, data, has_more}`, next page `?starting_after=<last id>`."""
        after = request.args.get("starting_after")
        start = int(after.removeprefix("cus_")) if after else 0
        limit = _int(request, "limit", 10)
        data = [{"id": f"cus_{r['id']}", "object": "customer"} for r in _slice(start, limit)]
        return json_reply(
            {
                "object": "list",
                "url": "/v1/customers",
                "has_more": start + limit < TOTAL,
                "data": data,
            }
        )
