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
AUTH_TYPES = ("basic", "digest", "bearer", "api_key")


@dataclasses.dataclass(frozen=True)
class Credentials:
    """Credentials for one spec. Every value but `type`, `user` and `name` is secret.

    Attributes:
        type: one of :data:`AUTH_TYPES`.
        user: basic/digest user name.
        password: basic/digest password.
        token: bearer token.
        name: API key header or query parameter name.
        value: API key value.
        location: where an API key goes: ``header`` or ``query``.
    """

    type: str
    user: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    token: str | None = dataclasses.field(default=None, repr=False)
    name: str | None = None
    value: str | None = dataclasses.field(default=None, repr=False)
    location: str = "header"

    def secrets(self) -> tuple[str, ...]:
        """The secret strings these credentials carry, for the redactor."""
        return tuple(s for s in (self.password, self.token, self.value) if s)

    def query_params(self) -> dict[str, str]:
        """An API key that travels in the query string, as a param (else empty)."""
        if self.type == "api_key" and self.location == "query":
            return {self.name or "": self.value or ""}
        return {}


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
    if credentials.location == "header":
        return HeaderAuth(credentials.name or "", credentials.value or "")
    return None
