"""The Link header (RFC 8288) as r.http exposes it to `page`, and `info['header']`.

RethinkDB keys each link by its parameter's raw text (``rel="next"``, quotes included),
so the seed page's ``info['header']['link']['rel="next"']`` works as written. Real Link
headers also say ``rel=next`` unquoted, ``REL="Next"`` or ``rel="next last"``: every
``rel`` token is filed under its canonical ``rel="<token>"`` key too.
"""

from __future__ import annotations

import re
import typing as t

from tap_rhttp.errors import PaginationError

if t.TYPE_CHECKING:
    from tap_rhttp.types import JSON

_LINK_VALUE_RE = re.compile(r"\s*<([^>]*)>\s*(.*)", re.S)


#: A Link header's text as runs: quoted, in angle brackets, plain, or a separator. An
#: unclosed quote or bracket runs to the end; every character is in exactly one run.
_RUNS = {sep: re.compile(rf'"[^"]*"?|<[^>]*>?|[^"<{sep}]+|{sep}') for sep in ",;"}


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    """Split on `sep` (``,`` or ``;``) outside double quotes and angle brackets."""
    parts: list[str] = []
    start = 0
    for run in _RUNS[sep].finditer(text):
        if run.group() == sep:
            parts.append(text[start : run.start()])
            start = run.end()
    parts.append(text[start:])
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
