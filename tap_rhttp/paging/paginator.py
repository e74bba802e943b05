"""Depagination: one expression paginator, with `link-next` as a preset of it.

r.http's ``page`` is ``'link-next'`` or a function of ``info = {params, header, body}``
returning the next URL, params to merge, both, or null. Beyond r.http, ``info['data']`` is
the request's body data and ``page`` may return ``data`` to merge into it (deeply, as
ReQL's ``merge``), which is how POST search APIs and GraphQL cursors page. RethinkDB itself defines
``'link-next'`` as ``info['header']['link']['rel="next"'].default(None)``, so there is
exactly one paginator here: it evaluates a compiled expression (see ``tap_rhttp.expr``),
and ``'link-next'`` is that expression. The robustness real Link headers need (``rel=next``
unquoted, any case, ``rel="next last"``) lives in :func:`parse_link_header`, which adds
the canonical ``rel="next"`` key, so the seed page's own expression gains it too. The Link
header is parsed only when the expression can read it, so a malformed one fails only an
expression that needs it.

The paginator is a small state machine: :meth:`Paginator.first` sets up the first
request, :meth:`Paginator.step` reads a response and returns a :class:`Step` (the next
request or None, and what ``page`` saw and returned, which the page keeps), and
:meth:`Paginator.resume` continues a saved chain. It proves it terminates: ``page_limit``
counts requests (``page`` is not even evaluated once it is reached), and a request equal to
any earlier one of the same chain (A→B→A included; same URL and same body) is an error
naming both pages. An empty
page does not stop it: only null or ``page_limit`` does, as in r.http.

What ``page`` returns is checked with RethinkDB's own messages (``Expected `page` to return
an OBJECT, but found NUMBER.``, ``Expected `params.a` to be a NUMBER, STRING or NULL ...``).
Every error raised while evaluating or interpreting ``page`` is worded as r.http words it:
``Error in HTTP GET of `<url>`: <what went wrong>`` (the chain adds the stream and page
after the URL), then ``Error occurred during `page` called with:`` and the ``info``,
redacted, with the body cut short. The inner message may
quote ``info`` with excerpts cut short: :meth:`~tap_rhttp.redact.Redactor.text_quoting`
masks what it quotes.

Rejected: singer-sdk's paginators. Its ``HeaderLinkPaginator`` neither resolves relative
links nor finds unquoted rels, its loop guard only compares two consecutive tokens, and
it stops at the first empty page, which r.http does not.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import typing as t

import orjson

from tap_rhttp.errors import ExpressionError, PaginationError
from tap_rhttp.expr import reql_type_name
from tap_rhttp.formats.readers import dump_json
from tap_rhttp.formats.records import Unparsed
from tap_rhttp.http.urls import merge_query, resolve
from tap_rhttp.paging.link import header_info

if t.TYPE_CHECKING:
    from tap_rhttp.config.spec import RequestSpec
    from tap_rhttp.http.client import Response
    from tap_rhttp.redact import Redactor
    from tap_rhttp.types import JSON

#: How much of `info.body` an error message shows.
INFO_BODY_CHARS = 500
#: How much of the repeated request's URL the loop guard's message shows.
LOOP_URL_CHARS = 1000
#: The fields an OBJECT returned by `page` may carry; any other is an error naming it
#: (never silently ignored: a dropped field would re-send the same request).
PAGE_RESULT_FIELDS = ("url", "params", "data")


def canonical(data: JSON) -> bytes:
    """A request body's data as canonical JSON bytes (keys sorted): equal data, equal bytes."""
    try:
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # an integer past 64 bits
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


@dataclasses.dataclass(frozen=True)
class PageRequest:
    """Where one page request goes: a URL, the merged params, which params win, the body.

    ``params`` is what the page expression sees as ``info['params']``, ``data`` what it
    sees as ``info['data']``: the body's data (the spec's `json` or `data`, as `page`
    moved it; None without a body).
    """

    url: str
    params: t.Mapping[str, JSON]
    override: frozenset[str]
    data: JSON = None

    @functools.cached_property
    def target(self) -> str:
        """The URL actually requested (worked out once: a page asks for it several times)."""
        return merge_query(self.url, self.params, self.override)

    @property
    def key(self) -> str:
        """What makes two requests the same: the target URL and the body."""
        if self.data is None:
            return self.target
        return f"{self.target}\n{canonical(self.data).decode()}"


@dataclasses.dataclass(frozen=True)
class Step:
    """What pagination decided after one page, kept with the page (explain prints it).

    Attributes:
        next: the next request, or None when the chain is over.
        evaluated: whether `page` ran (not without `page`, nor once `page_limit` is reached).
        info: the `info` that `page` saw (None when it did not run).
        returned: what `page` returned (None when it did not run).
    """

    next: PageRequest | None
    evaluated: bool = False
    info: dict[str, JSON] | None = None
    returned: JSON = None


class Paginator:
    """Drives one request chain: first request, then one `page` evaluation per page.

    Args:
        spec: the stream's spec (its `page`, `page_limit`, `url`, `params`, `method`).
        redactor: for error messages.
        now: the run's instant (epoch seconds), which ``r.now()`` returns in `page`.
    """

    def __init__(self, spec: RequestSpec, redactor: Redactor, *, now: float | None = None) -> None:
        self.spec = spec
        self.redactor = redactor
        self.now = now
        self.expression = spec.page
        self.limit: int = spec.page_limit if spec.page_limit is not None else 1
        self._needs_link = bool(self.expression and self.expression.reads("info", "header", "link"))
        self.requests = 0
        # request digest -> page number: a fixed 16 bytes per request, however long the
        # URL or body (a chain of 60 kB next links kept 58 MB per 1000 pages as whole URLs).
        self._seen: dict[bytes, int] = {}

    def __str__(self) -> str:
        return (
            f"Paginator(page={self.spec.page_source!r}, page_limit={self.limit}, "
            f"requests={self.requests})"
        )

    def _admit(self, request: PageRequest) -> PageRequest:
        key = request.key
        digest = _digest(key)
        earlier = self._seen.get(digest)
        if earlier is not None:
            same = "the same request" if request.data is None else "the same URL and body"
            shown = self.redactor.url(request.target)  # redacted whole, then cut
            if len(shown) > LOOP_URL_CHARS:  # so both page numbers survive any cut
                shown = shown[:LOOP_URL_CHARS] + " ..."
            raise PaginationError(
                f"`page` of stream `{self.spec.name}` led page {self.requests + 1} back to "
                f"`{shown}`, {same} as page {earlier}; stopping instead of looping forever."
            )
        self.requests += 1
        self._seen[digest] = self.requests
        return request

    def first(
        self, url: str | None = None, params: t.Mapping[str, JSON] | None = None
    ) -> PageRequest | None:
        """The first request, or None when `page_limit` is 0.

        Args:
            url: the start URL (default: the spec's); fan-out passes a rendered one.
            params: the start params (default: the spec's).
        """
        if self.limit == 0:
            return None
        start_params = dict(self.spec.params if params is None else params)
        return self._admit(
            PageRequest(
                url=url or self.spec.url,
                params=start_params,
                override=frozenset(start_params),
                data=self.spec.body,
            )
        )

    def resume(self, request: PageRequest, requests_made: int) -> PageRequest | None:
        """Continue a chain at a saved request, made after `requests_made` earlier ones.

        Returns None when those requests already used up `page_limit`. The loop guard
        starts afresh: the earlier requests are not known.
        """
        self.requests = requests_made
        if self.limit != -1 and requests_made >= self.limit:
            return None
        return self._admit(request)

    @property
    def exhausted(self) -> bool:
        """True when `page_limit` allows no further request."""
        return self.expression is None or (self.limit != -1 and self.requests >= self.limit)

    def info(self, current: PageRequest, response: Response, body: JSON) -> dict[str, JSON]:
        """The `info` object the page expression sees.

        Raises:
            PaginationError: the expression reads the Link header and it is malformed.
        """
        return {
            "params": dict(current.params),
            "header": header_info(response.headers, parse_link=self._needs_link),
            "body": body,
            "data": current.data,
        }

    def next(self, current: PageRequest, response: Response, body: JSON) -> PageRequest | None:
        """The next request after a page, or None when pagination is over (see :meth:`step`)."""
        return self.step(current, response, body).next

    def step(self, current: PageRequest, response: Response, body: JSON | Unparsed[t.Any]) -> Step:
        """Evaluate `page` after a page: the next request, and what `page` saw and returned.

        `page` is not evaluated at all once `page_limit` requests have been made. A body
        not parsed yet (`Unparsed`: only for a `page` that does not read it) is null in
        `info`, and parsed for an error's message, which shows it.

        Raises:
            ExpressionError: `page` failed (its own type, e.g. NonExistenceError, kept).
            PaginationError: `page` returned an unusable value, the next request repeats
                an earlier one, or the Link header `page` reads is malformed.
        """
        if self.exhausted or self.expression is None:
            return Step(next=None)
        unparsed = body if isinstance(body, Unparsed) else None
        value: JSON = None if isinstance(body, Unparsed) else body

        def shown(info: dict[str, JSON]) -> dict[str, JSON]:
            return info if unparsed is None else {**info, "body": unparsed.get()[0]}

        try:
            info = self.info(current, response, value)
        except PaginationError as exc:
            raw = {
                "params": dict(current.params),
                "header": header_info(response.headers, parse_link=False),
                "body": value,
                "data": current.data,
            }
            raise PaginationError(self._describe(current, str(exc), shown(raw))) from None
        try:
            result = self.expression.evaluate({"info": info}, now=self.now)
        except ExpressionError as exc:
            raise type(exc)(self._describe(current, str(exc), shown(info))) from None
        try:
            following = self._interpret(result, current, response)
        except PaginationError as exc:
            raise PaginationError(self._describe(current, str(exc), shown(info))) from None
        return Step(next=following, evaluated=True, info=info, returned=result)

    def _interpret(
        self, result: JSON, current: PageRequest, response: Response
    ) -> PageRequest | None:
        """Turn what `page` returned into the next request (RethinkDB's texts on errors)."""
        if result is None:
            return None
        if isinstance(result, str):
            return self._admit(
                PageRequest(
                    url=resolve(response.url, result),
                    params=current.params,
                    override=frozenset(),
                    data=current.data,
                )
            )
        if not isinstance(result, dict):
            raise PaginationError(
                f"Expected `page` to return an OBJECT, but found {reql_type_name(result)}."
            )
        # r.http's own case in r.http's words; `data` is named where the spec sends a body
        named = PAGE_RESULT_FIELDS if current.data is not None else ("url", "params")
        allowed = _fields(list(named), "and/or")
        unknown = sorted(key for key in result if key not in PAGE_RESULT_FIELDS)
        if not any(key in result for key in PAGE_RESULT_FIELDS):
            found = f" It has the {_fields(unknown)}." if unknown else ""
            raise PaginationError(f"OBJECT returned by `page` must contain {allowed}.{found}")
        if unknown:
            raise PaginationError(
                f"OBJECT returned by `page` has the {_fields(unknown)}, which `page` cannot "
                f"return: it may contain {allowed} only."
            )
        new_params = result.get("params", {})
        _check_params(new_params)
        params = {**current.params, **new_params}
        data = self._merge_data(current.data, result["data"]) if "data" in result else current.data
        if "url" in result:
            url = result["url"]
            if url is None:
                return None
            if not isinstance(url, str):
                raise PaginationError(
                    "Expected `url` in OBJECT returned by `page` to be a STRING or NULL, "
                    f"but found {reql_type_name(url)}."
                )
            return self._admit(
                PageRequest(
                    url=resolve(response.url, url),
                    params=params,
                    override=frozenset(new_params),
                    data=data,
                )
            )
        return self._admit(
            PageRequest(
                url=current.url,
                params=params,
                override=current.override | set(new_params),
                data=data,
            )
        )

    def _merge_data(self, current: JSON, new: JSON) -> JSON:
        """The next body: `data` returned by `page`, merged into the current body.

        An object body takes the returned object deeply, as ReQL's ``merge`` does: nested
        objects merge key by key, anything else (arrays too) replaces, null sets null. A
        string body is replaced by a returned string; any other JSON body is replaced.
        A POST object that is form-encoded must stay flat (values scalars or lists).
        """
        if current is None:
            raise PaginationError(
                "`page` returned `data`, but this request has no body to merge it into "
                "(give the spec `data` or `json`)."
            )
        if isinstance(current, dict):
            if not isinstance(new, dict):
                raise PaginationError(
                    "Expected `data` to be an OBJECT (the request body is an OBJECT), but "
                    f"found {reql_type_name(new)}:\n{dump_json(new, default=str).decode()}"
                )
            merged = merge_deep(current, new)
            if self.spec.method == "POST" and not self.spec.json_body:
                _check_params(merged, field="data")
            return merged
        if isinstance(current, str):
            if not isinstance(new, str):
                raise PaginationError(
                    "Expected `data` to be a STRING (the request body is a STRING), but "
                    f"found {reql_type_name(new)}:\n{dump_json(new, default=str).decode()}"
                )
            return new
        return new

    def _describe(self, current: PageRequest, message: str, info: dict[str, JSON]) -> str:
        """An error in `page`, worded as r.http words it, with every secret masked.

        The inner message may quote values from `info` (an excerpt cut short, so a
        pattern-based redactor could miss a secret cut in half): the values of credential
        fields found in `info`, and the known secrets, are masked in it, whole or cut.
        """
        data = info.get("data")
        data_text = (
            ""
            if data is None
            else f',"data":{dump_json(self.redactor.value(data), default=str).decode()}'
        )
        params_text = dump_json(self.redactor.value(info.get("params")), default=str)
        header_text = dump_json(self.redactor.value(info.get("header")), default=str)
        # The body may be megabytes: only the excerpt shown is redacted (before the cut).
        body_text, cut = self.redactor.excerpt(
            dump_json(info.get("body"), default=str).decode(), INFO_BODY_CHARS
        )
        if cut:
            body_text += " ..."
        inner = self.redactor.text_quoting(message, info)
        return (
            f"Error in HTTP {self.spec.method} of `{self.redactor.url(current.target)}`: "
            f"{inner}\n"
            f"Error occurred during `page` ({self.redactor.text(self.spec.page_source or '')}) "
            "called with:\n"
            f'{{"params":{params_text.decode()},"header":{header_text.decode()},'
            f'"body":{body_text}{data_text}}}'
        )


def _digest(key: str) -> bytes:
    """A request's identity for the loop guard: BLAKE2b-128 of its key (RFC 7693).

    A collision would need 2**64 requests in one chain, so two different requests are
    never taken for one; ``surrogatepass`` keeps any string a URL may hold encodable.
    """
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _fields(names: list[str], conjunction: str = "and") -> str:
    """``"`a`, `b` and `c` fields"`` (``"`a` field"`` for one name)."""
    quoted = [f"`{name}`" for name in names]
    text = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} {conjunction} {quoted[-1]}"
    return f"{text} field" + ("s" if len(names) > 1 else "")


def merge_deep(base: dict[str, JSON], new: dict[str, JSON]) -> dict[str, JSON]:
    """ReQL's ``merge``: `new` over `base`, nested objects merged key by key (copies)."""
    merged = dict(base)
    for key, value in new.items():
        present = merged.get(key)
        if isinstance(value, dict) and isinstance(present, dict):
            merged[key] = merge_deep(present, value)
        else:
            merged[key] = value
    return merged


def _check_params(params: JSON, field: str = "params") -> None:
    """`params` returned by `page` (or a form body): an OBJECT of NUMBER, STRING or NULL
    values, or ARRAYs of them (r.http's messages)."""
    if not isinstance(params, dict):
        raise PaginationError(
            f"Expected `{field}` to be an OBJECT, but found {reql_type_name(params)}:\n"
            f"{dump_json(params, default=str).decode()}"
        )
    for key, value in params.items():
        for index, item in enumerate(value) if isinstance(value, list) else ((None, value),):
            if item is not None and (
                isinstance(item, bool) or not isinstance(item, (str, int, float))
            ):
                where = f"{field}.{key}" if index is None else f"{field}.{key}[{index}]"
                raise PaginationError(
                    f"Expected `{where}` to be a NUMBER, STRING or NULL, but found "
                    f"{reql_type_name(item)}:\n{dump_json(item, default=str).decode()}"
                )
