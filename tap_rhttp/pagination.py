"""Depagination: one expression paginator, with `link-next` as a preset of it.

r.http's ``page`` is ``'link-next'`` or a function of ``info = {params, header, body}``
returning the next URL, params to merge, both, or null. RethinkDB itself defines
``'link-next'`` as ``info['header']['link']['rel="next"'].default(None)``, so there is
exactly one paginator here: it evaluates a compiled expression (see ``expressions``),
and ``'link-next'`` is that expression. The robustness real Link headers need (``rel=next``
unquoted, any case, ``rel="next last"``) lives in :func:`parse_link_header`, which adds
the canonical ``rel="next"`` key, so the seed page's own expression gains it too.

The paginator is a small state machine: :meth:`Paginator.first` sets up the first
request, :meth:`Paginator.next` reads a response and returns the next request or None.
It proves it terminates: ``page_limit`` counts requests, and a request equal to any
earlier one of the same chain (A→B→A included) is an error naming both pages.

Rejected: singer-sdk's paginators. Its ``HeaderLinkPaginator`` neither resolves relative
links nor finds unquoted rels, its loop guard only compares two consecutive tokens, and
it stops at the first empty page, which r.http does not.
"""

from __future__ import annotations

import re
import typing as t

import orjson

from tap_rhttp.errors import ExpressionError, PaginationError
from tap_rhttp.expressions import reql_type_name
from tap_rhttp.request import PageRequest, resolve

if t.TYPE_CHECKING:
    from tap_rhttp.redact import Redactor
    from tap_rhttp.request import Response
    from tap_rhttp.spec import RequestSpec

JSON = t.Any
#: How much of `info.body` an error message shows.
INFO_BODY_CHARS = 500

_LINK_VALUE_RE = re.compile(r"\s*<([^>]*)>\s*(.*)", re.S)


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    """Split on `sep` outside double quotes and angle brackets."""
    parts: list[str] = []
    current: list[str] = []
    quoted = bracketed = False
    for char in text:
        if char == '"' and not bracketed:
            quoted = not quoted
        elif char == "<" and not quoted:
            bracketed = True
        elif char == ">" and not quoted:
            bracketed = False
        if char == sep and not quoted and not bracketed:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def parse_link_header(value: str) -> dict[str, str]:
    """Parse a Link header (RFC 8288) the way r.http exposes it to `page`.

    Each link parameter's raw text (``rel="next"``, quotes included) maps to the link's
    URL, as RethinkDB does. Every ``rel`` token is also filed under its canonical
    ``rel="<token>"`` key, lower-cased, so ``rel=next``, ``REL="Next"`` and
    ``rel="next last"`` all answer ``info['header']['link']['rel="next"']``.

    Raises:
        ValueError: a link-value is not ``<URI>; params``.
    """
    links: dict[str, str] = {}
    canonical: dict[str, str] = {}
    for part in _split_outside_quotes(value, ","):
        if not part.strip():
            continue
        match = _LINK_VALUE_RE.match(part)
        if not match:
            raise ValueError(f"malformed Link header near {part.strip()[:80]!r}")
        url, rest = match.groups()
        for param in _split_outside_quotes(rest, ";"):
            param = param.strip()
            if not param:
                continue
            links.setdefault(param, url)
            name, eq, raw = param.partition("=")
            if eq and name.strip().lower() == "rel":
                for token in raw.strip().strip('"').split():
                    canonical.setdefault(f'rel="{token.lower()}"', url)
    for key, url in canonical.items():
        links.setdefault(key, url)
    return links


def header_info(headers: t.Iterable[tuple[str, str]], *, parse_link: bool) -> dict[str, JSON]:
    """`info['header']`: names lower-cased, last value wins, `link` parsed.

    Repeated Link headers are one list of links (RFC 8288 §3), so they are joined.
    """
    out: dict[str, JSON] = {}
    links: list[str] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == "link":
            links.append(value)
        else:
            out[lowered] = value
    if links:
        joined = ", ".join(links)
        if parse_link:
            try:
                out["link"] = parse_link_header(joined)
            except ValueError as exc:
                raise PaginationError(f"cannot read the Link header for `page`: {exc}") from None
        else:
            out["link"] = joined
    return out


class Paginator:
    """Drives one request chain: first request, then one `page` evaluation per page.

    Args:
        spec: the stream's spec (its `page`, `page_limit`, `url`, `params`).
        redactor: for error messages.
    """

    def __init__(self, spec: RequestSpec, redactor: Redactor) -> None:
        self.spec = spec
        self.redactor = redactor
        self.expression = spec.page
        self.limit: int = spec.page_limit if spec.page_limit is not None else 1
        self._needs_link = bool(self.expression and self.expression.reads("info", "header", "link"))
        self.requests = 0
        self._seen: dict[str, int] = {}

    def __str__(self) -> str:
        return (
            f"Paginator(page={self.spec.page_source!r}, page_limit={self.limit}, "
            f"requests={self.requests})"
        )

    def _admit(self, request: PageRequest) -> PageRequest:
        target = request.target
        earlier = self._seen.get(target)
        if earlier is not None:
            raise PaginationError(
                f"`page` of stream `{self.spec.name}` led page {self.requests + 1} back to "
                f"`{self.redactor.url(target)}`, the same request as page {earlier}; "
                "stopping instead of looping forever."
            )
        self.requests += 1
        self._seen[target] = self.requests
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
            )
        )

    def resume(self, request: PageRequest, requests_made: int) -> PageRequest:
        """Continue a chain at a saved request (after `requests_made` earlier ones)."""
        self.requests = requests_made
        return self._admit(request)

    @property
    def exhausted(self) -> bool:
        """True when `page_limit` allows no further request."""
        return self.expression is None or (self.limit != -1 and self.requests >= self.limit)

    def info(self, current: PageRequest, response: Response, body: JSON) -> dict[str, JSON]:
        """The `info` object the page expression sees."""
        return {
            "params": dict(current.params),
            "header": header_info(response.headers, parse_link=self._needs_link),
            "body": body,
        }

    def next(self, current: PageRequest, response: Response, body: JSON) -> PageRequest | None:
        """The next request after a page, or None when pagination is over."""
        if self.exhausted or self.expression is None:
            return None
        info = self.info(current, response, body)
        try:
            result = self.expression.evaluate({"info": info})
        except ExpressionError as exc:
            raise type(exc)(self._describe(current, str(exc), info)) from None
        return self._interpret(result, current, response, info)

    def _interpret(
        self, result: JSON, current: PageRequest, response: Response, info: dict[str, JSON]
    ) -> PageRequest | None:
        if result is None:
            return None
        if isinstance(result, str):
            return self._admit(
                PageRequest(
                    url=resolve(response.url, result), params=current.params, override=frozenset()
                )
            )
        if not isinstance(result, dict):
            raise PaginationError(
                self._describe(
                    current,
                    f"Expected `page` to return an OBJECT, but found {reql_type_name(result)}.",
                    info,
                )
            )
        if "url" not in result and "params" not in result:
            raise PaginationError(
                self._describe(
                    current,
                    "OBJECT returned by `page` must contain `url` and/or `params` fields.",
                    info,
                )
            )
        new_params = result.get("params") or {}
        if not isinstance(new_params, dict) or not all(
            v is None or (isinstance(v, (str, int, float)) and not isinstance(v, bool))
            for v in new_params.values()
        ):
            raise PaginationError(
                self._describe(
                    current,
                    "`params` returned by `page` must be an OBJECT of numbers, strings or "
                    f"null (got {reql_type_name(new_params)}).",
                    info,
                )
            )
        params = {**current.params, **new_params}
        if "url" in result:
            url = result["url"]
            if url is None:
                return None
            if not isinstance(url, str):
                raise PaginationError(
                    self._describe(
                        current,
                        f"`url` returned by `page` must be a STRING or null "
                        f"(got {reql_type_name(url)}).",
                        info,
                    )
                )
            return self._admit(
                PageRequest(
                    url=resolve(response.url, url),
                    params=params,
                    override=frozenset(new_params),
                )
            )
        return self._admit(
            PageRequest(url=current.url, params=params, override=current.override | set(new_params))
        )

    def _describe(self, current: PageRequest, message: str, info: dict[str, JSON]) -> str:
        shown = dict(info)
        body_text = orjson.dumps(shown.pop("body", None), default=str).decode()
        if len(body_text) > INFO_BODY_CHARS:
            body_text = body_text[:INFO_BODY_CHARS] + " ..."
        rest = orjson.dumps(self.redactor.value(shown), default=str).decode()
        return (
            f"Error in HTTP {self.spec.method} of `{self.redactor.url(current.target)}`: "
            f"in `page` ({self.spec.page_source}): {message}\n"
            f'info: {rest[:-1]}, "body": {self.redactor.text(body_text)}}}'
        )
