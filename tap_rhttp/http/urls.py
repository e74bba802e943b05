"""URLs as r.http builds them: the scheme rule, query encoding, merging, resolving.

The query string is encoded like RethinkDB's (keys sorted, every reserved byte escaped,
space as ``%20``, null as ``k=``) and merged into the URL's own query so that no key is
ever sent twice; every other byte of the URL goes out as written. Rejected:
``urllib.parse.urlencode`` and re-serialising parsed URLs, which turn ``%20`` into ``+``
and re-encode ``,`` and ``:``.
"""

from __future__ import annotations

import re
import typing as t
from urllib.parse import quote, unquote, urljoin

if t.TYPE_CHECKING:
    from tap_rhttp.types import JSON

#: The only schemes r.http requests (and follows redirects to).
SCHEMES = ("http", "https")
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def normalise_url(value: str) -> str:
    """Give a scheme-less URL the ``http://`` that r.http assumes."""
    return value if _SCHEME_RE.match(value) else "http://" + value


def url_scheme(url: str) -> str:
    """The lower-cased scheme of a normalised URL (empty when there is none)."""
    match = _SCHEME_RE.match(url)
    return match.group(1).lower() if match else ""


def format_param(value: JSON) -> str:
    """One param value as text: strings as is, numbers in their shortest form, null empty.

    Floats print as Python's shortest repr (RethinkDB's ``%.20g`` turns 0.1 into
    0.10000000000000000555, a bug not copied).
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return repr(value) if isinstance(value, float) else str(value)


def encode_pairs(params: t.Mapping[str, JSON]) -> list[str]:
    """Encode params like RethinkDB: sorted keys, every reserved byte escaped, `%20`.

    A list value sends its key once per element, in the list's order (an empty list
    sends nothing), as APIs that take ``fields=a&fields=b`` expect.
    """
    pairs = []
    for key in sorted(params):
        name = quote(str(key), safe="")
        value = params[key]
        for item in value if isinstance(value, list) else (value,):
            pairs.append(f"{name}={quote(format_param(item), safe='')}")
    return pairs


def merge_query(url: str, params: t.Mapping[str, JSON], override: t.Collection[str]) -> str:
    """Merge params into a URL's query without ever sending a key twice.

    Args:
        url: the URL, whose own query is kept byte for byte where not overridden.
        params: the params to add.
        override: keys for which `params` wins over the URL; for every other key the URL
            wins (a `next` link already carries the right `page`).

    Returns:
        The URL with the merged query (the fragment, never sent, is dropped).
    """
    base, _, _fragment = url.partition("#")
    path, sep, query = base.partition("?")
    kept: list[str] = []
    url_keys: set[str] = set()
    for part in query.split("&") if sep else []:
        if not part:
            continue
        key = unquote(part.split("=", 1)[0].replace("+", " "))
        if key in params and key in override:
            continue
        url_keys.add(key)
        kept.append(part)
    extra = {k: v for k, v in params.items() if k not in url_keys}
    parts = kept + encode_pairs(extra)
    return f"{path}?{'&'.join(parts)}" if parts else path


def resolve(base: str, link: str) -> str:
    """Resolve a possibly relative next-page URL against the current one (RFC 3986 §5)."""
    return urljoin(base, link)
