"""Credentials stay with their origin: which URLs may receive a stream's credentials.

An origin is ``(scheme, host, port)`` (RFC 6454), the port filled in from the scheme
when the URL has none. A stream's *home* origin is that of its configured URL (after its
templates render); the user may add origins in ``trusted_origins``. Every other origin,
reached through a redirect or a next-page URL, is sent no credential of any kind: no
auth (basic, digest: not even an answer to that origin's 401 challenge, bearer, OAuth2,
an API key in a header or the query), no sensitive or secret header, no cookie, no URL
userinfo, and no query value that is a known secret.

Modelled on requests' ``Session.should_strip_auth`` / ``rebuild_auth`` and urllib3's
``Retry.remove_headers_on_redirect``, and stricter than both: requests strips only
``Authorization`` (so ``X-API-Key`` follows a redirect, and a next-page URL on another
host gets everything), lets an ``http`` to ``https`` upgrade keep it, and scopes cookies
by host but not by port. Here a change of scheme, host or port is another origin, with
no exception: list an origin in ``trusted_origins`` to send it credentials.

Rejected: deciding by registrable domain (``*.example.com``). Public-suffix rules change
over time and one compromised subdomain would receive everything; an explicit list is a
promise a user can read.
"""

from __future__ import annotations

import re
import typing as t
from urllib.parse import unquote, urlsplit

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterable

#: An origin: scheme, lower-cased host (IPv6 without brackets), port.
Origin = tuple[str, str, int]

DEFAULT_PORTS = {"http": 80, "https": 443}
_ORIGIN_TEXT_RE = re.compile(r"^(https?)://([^/?#@\s]+)/?$", re.IGNORECASE)


def origin_of(url: str) -> Origin | None:
    """The origin of an absolute http(s) URL, or None when it has none (or is malformed)."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:  # a port that is not a number, a bad IPv6 literal
        return None
    if scheme not in DEFAULT_PORTS or not host:
        return None
    return scheme, host, port if port is not None else DEFAULT_PORTS[scheme]


def parse_origin(text: str) -> Origin | None:
    """An origin written as ``scheme://host[:port]`` (an optional trailing ``/``), or None.

    Anything after the authority (a path, a query, a fragment) or userinfo makes it
    None: an origin is not a URL prefix.
    """
    if not isinstance(text, str) or not _ORIGIN_TEXT_RE.match(text.strip()):
        return None
    return origin_of(text.strip())


def origin_text(origin: Origin) -> str:
    """``scheme://host[:port]``, the port shown only when it is not the scheme's default."""
    scheme, host, port = origin
    shown = f"[{host}]" if ":" in host else host
    return (
        f"{scheme}://{shown}" if DEFAULT_PORTS.get(scheme) == port else f"{scheme}://{shown}:{port}"
    )


class OriginPolicy:
    """Which origins receive a stream's credentials: its home and the trusted ones.

    Args:
        home: the configured URL (rendered); its origin is the stream's own.
        trusted: extra origins, as ``scheme://host[:port]`` texts (``trusted_origins``).
    """

    def __init__(self, home: str, trusted: Iterable[str] = ()) -> None:
        own = origin_of(home)
        self.home = own
        self.trusted: frozenset[Origin] = frozenset(
            o for o in (parse_origin(text) for text in trusted) if o is not None
        )
        self._allowed = self.trusted | ({own} if own is not None else set())

    def __repr__(self) -> str:
        """Show the origins."""
        home = origin_text(self.home) if self.home else None
        return f"OriginPolicy(home={home!r}, trusted={sorted(map(origin_text, self.trusted))})"

    def trusts(self, url: str) -> bool:
        """Whether `url` may receive the stream's credentials."""
        origin = origin_of(url)
        return origin is not None and origin in self._allowed


_USERINFO_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://)[^/?#]*@")


def without_credentials(url: str, is_secret: Callable[[str], bool]) -> str:
    """`url` with its userinfo removed and every query pair whose value is a secret.

    Only secret *values* go: a server-made parameter (a presigned URL's signature) is
    not ours to remove because of its name. Every other byte is kept.

    Args:
        url: an absolute URL.
        is_secret: whether a value (as written, and percent-decoded) is a known secret.
    """
    out = _USERINFO_RE.sub(r"\1", url, count=1)
    base, hash_, fragment = out.partition("#")
    path, sep, query = base.partition("?")
    if not sep:
        return out
    kept = [part for part in query.split("&") if not _secret_pair(part, is_secret)]
    rebuilt = f"{path}?{'&'.join(kept)}" if kept else path
    return f"{rebuilt}{hash_}{fragment}"


def _secret_pair(part: str, is_secret: Callable[[str], bool]) -> bool:
    _key, eq, value = part.partition("=")
    if not eq or not value:
        return False
    return (
        is_secret(value) or is_secret(unquote(value.replace("+", " "))) or is_secret(unquote(value))
    )
