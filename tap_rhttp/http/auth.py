"""Credentials, and the ``requests`` auth objects that send them.

``requests.auth`` objects are used rather than singer-sdk's authenticators, which rewrite
the query string (``q=`` dropped, ``%20`` turned into ``+``) on every request. One object
is kept per request chain, so a digest nonce is reused across its pages.
"""

from __future__ import annotations

import dataclasses
import types
import typing as t

import requests
import requests.auth

from tap_rhttp.http.deadline import drop_body

#: The kinds of `auth` a spec may give.
AUTH_TYPES = ("basic", "digest", "bearer", "api_key", "oauth2")
#: OAuth2 grants (RFC 6749 §4.3, §4.4, §6) and where the client authenticates (§2.3.1).
OAUTH2_GRANTS = ("client_credentials", "refresh_token", "password")
OAUTH2_CLIENT_AUTH = ("basic", "body")


@dataclasses.dataclass(frozen=True)
class Credentials:
    """Credentials for one spec. Every value but `type`, `user` and `name` is secret.

    Attributes:
        type: one of :data:`AUTH_TYPES`.
        user: basic/digest user name; the OAuth2 password grant's `username`.
        password: basic/digest password; the OAuth2 password grant's `password`.
        token: bearer token.
        name: API key header or query parameter name.
        value: API key value.
        location: where an API key goes: ``header`` or ``query``.
        grant: OAuth2: one of :data:`OAUTH2_GRANTS`.
        token_url: OAuth2: the token endpoint.
        client_id: OAuth2: the client's id (not secret).
        client_secret: OAuth2: the client's secret.
        refresh_token: OAuth2: the refresh token to start from.
        scopes: OAuth2: the scopes asked for.
        audience: OAuth2: the `audience` parameter some servers (Auth0) want.
        extra: OAuth2: more token request parameters, as pairs.
        client_auth: OAuth2: ``basic`` (an Authorization header) or ``body``.
        token_cache: OAuth2: the file that keeps a rotated refresh token between runs.
    """

    type: str
    user: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    token: str | None = dataclasses.field(default=None, repr=False)
    name: str | None = None
    value: str | None = dataclasses.field(default=None, repr=False)
    location: str = "header"
    grant: str | None = None
    token_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = dataclasses.field(default=None, repr=False)
    refresh_token: str | None = dataclasses.field(default=None, repr=False)
    scopes: tuple[str, ...] = ()
    audience: str | None = None
    extra: tuple[tuple[str, str], ...] = dataclasses.field(default=(), repr=False)
    client_auth: str = "basic"
    token_cache: str | None = None

    def secrets(self) -> tuple[str, ...]:
        """The secret strings these credentials carry, for the redactor."""
        values = (self.password, self.token, self.value, self.client_secret, self.refresh_token)
        return tuple(s for s in values if s)

    def query_params(self) -> dict[str, str]:
        """An API key that travels in the query string, as a param (else empty)."""
        if self.type == "api_key" and self.location == "query":
            return {self.name or "": self.value or ""}
        return {}


class TokenAuth(requests.auth.AuthBase):
    """An auth whose token can go stale: the client refreshes it once on a 401.

    The client calls :meth:`fresh` before an attempt (outside its deadline, since it may
    make a token request) and, when a response to a request that carried the token is a
    401, :meth:`rejected`; if that returns True the request is made once more.
    """

    def fresh(self) -> None:
        """Make sure a valid token is at hand (may request one)."""
        raise NotImplementedError

    def rejected(self) -> bool:
        """The last token sent was refused: drop it and get another; False if pointless."""
        raise NotImplementedError


class HeaderAuth(requests.auth.AuthBase):
    """Set one header (bearer tokens, API keys) without touching the URL."""

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self.value = value

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers[self.name] = self.value
        return request


class ChainDigestAuth(requests.auth.HTTPDigestAuth):
    """Digest auth (RFC 7616) whose nonce state belongs to one chain, not to a thread.

    requests keeps the nonce and its count per thread. A chain makes its requests one
    at a time, but read-ahead makes them on a helper thread and the discovery sample on
    the main one; with per-thread state each new thread would pay one more 401
    challenge. One chain's object is never used by two requests at once.
    """

    def __init__(self, username: str, password: str) -> None:
        super().__init__(username, password)
        self._thread_local = types.SimpleNamespace()

    def handle_401(self, r: requests.Response, **kwargs: t.Any) -> requests.Response:
        """requests' challenge handling, the challenge's body read only so far.

        requests reads the 401's ``content`` whole before it answers the challenge: an
        endless body would hold the request and fill memory (see ``deadline.drop_body``).
        """
        if r.status_code == 401 and "digest" in r.headers.get("www-authenticate", "").lower():
            drop_body(r.raw, None)  # the attempt's watchdog still bounds the time
        return t.cast("requests.Response", super().handle_401(r, **kwargs))


def make_auth(credentials: Credentials | None) -> requests.auth.AuthBase | None:
    """A `requests` auth object for credentials (query API keys go in the URL instead)."""
    if credentials is None:
        return None
    if credentials.type == "basic":
        # UTF-8, as RFC 7617 §2.1 recommends and curl (so r.http) sends: requests would
        # encode a str as Latin-1 and fail on anything beyond it.
        return requests.auth.HTTPBasicAuth(
            (credentials.user or "").encode("utf-8"), (credentials.password or "").encode("utf-8")
        )
    if credentials.type == "digest":
        return ChainDigestAuth(credentials.user or "", credentials.password or "")
    if credentials.type == "bearer":
        return HeaderAuth("Authorization", f"Bearer {credentials.token}")
    if credentials.type == "oauth2":  # the run owns the token: ``tap_rhttp.http.oauth2``
        raise ValueError("OAuth2 credentials need a token source (oauth2.TokenRegistry)")
    if credentials.location == "header":
        return HeaderAuth(credentials.name or "", credentials.value or "")
    return None
