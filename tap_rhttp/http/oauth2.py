"""OAuth2 access tokens: requested once per run, shared, refreshed, and kept secret.

``auth: {"type": "oauth2", ...}`` makes the tap its own OAuth2 client (RFC 6749): it asks
the token endpoint for an access token with the configured grant (``client_credentials``
§4.4, ``refresh_token`` §6, ``password`` §4.3) and sends it as ``Authorization: Bearer``
(RFC 6750). One :class:`TokenSource` per distinct OAuth2 config serves a whole run: the
:class:`TokenRegistry` that the run context owns hands the same source to every stream
and chain using that config, and the source's lock makes concurrent chains share one
token request (one refresh) instead of each making its own.

A token is refreshed before it expires (``expires_in`` minus a margin: a minute, or half
the token's lifetime if that is shorter), and once when the API answers 401 to a request
that carried it (the request is then made once more). A server that rotates refresh tokens
(each refresh returns a new one and invalidates the old) is followed: the newest refresh
token is written to ``token_cache``, a file created with mode 0600 and replaced
atomically (a temporary file in the same directory, then ``os.replace``), holding only
what the next run needs; the next run reads it. Tokens never go to STATE, logs or records:
every token value is registered with the redactor the moment it is received.

The token request honours the stream's ``timeout``, ``verify``, ``proxy`` and client
certificate, follows no redirect, reads at most :data:`MAX_TOKEN_RESPONSE` bytes, and its
failures read like r.http's errors (``Error in HTTP POST of `<token_url>`: OAuth2 token
request (client_credentials grant) failed: status code 401.``), every secret masked. The
token endpoint receives only the client credentials (and the grant's own values), never
the API's headers, cookies or other auth.

Rejected: the ``requests-oauthlib``/``authlib`` clients. They bring a dependency for a
few form posts, refresh on their own threads or not at all, keep no rotated token
between runs, and raise errors that print the token response.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import tempfile
import threading
import time
import typing as t
from pathlib import Path
from urllib.parse import quote

import orjson

from tap_rhttp.errors import PermanentRequestError, RequestError
from tap_rhttp.http.auth import Credentials, TokenAuth
from tap_rhttp.http.body import BodySpool
from tap_rhttp.http.client import HttpClient, RequestOptions

if t.TYPE_CHECKING:
    import requests

    from tap_rhttp.redact import Redactor

#: Seconds before `expires_in` runs out at which a token is refreshed (at most half its
#: lifetime, for short-lived tokens).
EXPIRY_MARGIN = 60.0
#: The largest token response read, in bytes; a longer one fails the token request.
MAX_TOKEN_RESPONSE = 1 << 16
#: The token cache file's format version.
CACHE_VERSION = 1

_LOGGER = logging.getLogger("tap-rhttp")


class _TooLarge(Exception):
    """The token response passed :data:`MAX_TOKEN_RESPONSE`."""


class _CappedSpool(BodySpool):
    """A body sink that refuses more than :data:`MAX_TOKEN_RESPONSE` bytes."""

    def fits(self, content_length: str | None, content_encoding: str | None) -> bool:
        return False  # always through write(), which counts

    def write(self, chunk: bytes) -> None:
        if self.size + len(chunk) > MAX_TOKEN_RESPONSE:
            raise _TooLarge
        super().write(chunk)


@dataclasses.dataclass
class _Token:
    access: str
    expires_at: float  # monotonic; math.inf when the server gave no `expires_in`


def _fingerprint(value: str | None) -> str | None:
    """A short digest of a configured refresh token: tells whether the cache is for it."""
    if not value:
        return None
    return hashlib.sha256(value.encode()).hexdigest()[:16]


class TokenSource:
    """The access token of one OAuth2 config, for the whole run. Thread-safe.

    Args:
        credentials: the OAuth2 credentials (``type`` ``oauth2``).
        redactor: learns every token received; masks every error.
        transport: timeout, verify, proxy and client certificate of the token request.
        logger: where cache problems are reported.
        clock: a monotonic clock (tests inject one).
    """

    def __init__(
        self,
        credentials: Credentials,
        redactor: Redactor,
        transport: RequestOptions,
        *,
        logger: logging.Logger | None = None,
        clock: t.Callable[[], float] = time.monotonic,
    ) -> None:
        self.credentials = credentials
        self.redactor = redactor
        self.transport = transport
        self.logger = logger or _LOGGER
        self.clock = clock
        self._lock = threading.Lock()
        self._token: _Token | None = None
        self._failure: RequestError | None = None
        #: Token requests made (tests and explain read it).
        self.requests = 0
        self.refresh_token = credentials.refresh_token
        if credentials.client_secret and credentials.client_auth == "basic":
            redactor.add_basic_credentials(
                quote(credentials.client_id or "", safe=""),
                quote(credentials.client_secret, safe=""),
            )
        cached = self._read_cache()
        if cached:
            redactor.add_secret(cached)
            self.refresh_token = cached

    # ------------------------------------------------------------------ tokens

    def token(self) -> str:
        """A valid access token: the current one, or a new one (one request at a time).

        Raises:
            RequestError: the token request failed (a permanent failure is kept and
                raised again without another request: the config must change).
        """
        with self._lock:
            if self._failure is not None:
                raise self._failure
            current = self._token
            if current is not None and self.clock() < current.expires_at:
                return current.access
            try:
                return self._obtain().access
            except PermanentRequestError as exc:
                self._failure = exc
                raise

    def invalidate(self, stale: str) -> None:
        """The API refused `stale`: the next :meth:`token` gets a new one (unless another
        chain already did)."""
        with self._lock:
            if self._token is not None and self._token.access == stale:
                self._token = None

    def _obtain(self) -> _Token:
        """Request a token (the lock is held): refresh when a refresh token is at hand."""
        creds = self.credentials
        if creds.grant == "refresh_token" or (
            creds.grant == "password" and self.refresh_token and self._token is not None
        ):
            try:
                return self._request(self._refresh_form(), "refresh_token")
            except PermanentRequestError as exc:
                if creds.grant != "password" or exc.status not in (400, 401):
                    raise
                # the refresh token of a password grant expired: log in again
        grant = creds.grant or "client_credentials"
        return self._request(self._grant_form(grant), grant)

    def _grant_form(self, grant: str) -> dict[str, str]:
        creds = self.credentials
        form = {"grant_type": grant}
        if grant == "password":
            form["username"] = creds.user or ""
            form["password"] = creds.password or ""
        return self._with_common(form, scopes=True)

    def _refresh_form(self) -> dict[str, str]:
        form = {"grant_type": "refresh_token", "refresh_token": self.refresh_token or ""}
        return self._with_common(form, scopes=bool(self.credentials.scopes))

    def _with_common(self, form: dict[str, str], *, scopes: bool) -> dict[str, str]:
        creds = self.credentials
        if scopes and creds.scopes:
            form["scope"] = " ".join(creds.scopes)
        if creds.audience:
            form["audience"] = creds.audience
        for key, value in creds.extra:
            form.setdefault(key, value)
        if creds.client_auth == "body" or not creds.client_secret:
            form["client_id"] = creds.client_id or ""
            if creds.client_secret:
                form["client_secret"] = creds.client_secret
        return form

    def _request(self, form: dict[str, str], grant: str) -> _Token:
        creds = self.credentials
        basic = creds.client_auth == "basic" and bool(creds.client_secret)
        options = RequestOptions(
            method="POST",
            header=(("Accept", "application/json"),),
            data=form,
            credentials=(
                Credentials(
                    type="basic",
                    user=quote(creds.client_id or "", safe=""),
                    password=quote(creds.client_secret or "", safe=""),
                )
                if basic
                else None
            ),
            timeout=self.transport.timeout,
            redirects=0,
            verify=self.transport.verify,
            home=creds.token_url or "",
            client_cert=self.transport.client_cert,
            client_key=self.transport.client_key,
            client_key_password=self.transport.client_key_password,
            proxy=self.transport.proxy,
        )
        url = creds.token_url or ""
        what = f"OAuth2 token request ({grant} grant) failed"
        client = HttpClient(options, self.redactor)
        sink = _CappedSpool()
        self.requests += 1
        try:
            body = client.fetch(url, sink).body
        except _TooLarge:
            raise PermanentRequestError(
                "POST",
                self.redactor.url(url),
                f"{what}: the response is larger than {MAX_TOKEN_RESPONSE} bytes.",
            ) from None
        except RequestError as exc:
            raise type(exc)(
                exc.method,
                exc.url,
                f"{what}: {exc.reason}",
                status=exc.status,
                header=exc.header,
                body=exc.body,
                retry_after=exc.retry_after,
            ) from None
        finally:
            sink.close()
            client.close()
        return self._accept(body, url, what)

    def _accept(self, body: bytes, url: str, what: str) -> _Token:
        """Read a token response (RFC 6749 §5.1); every token is a secret from here on."""
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            for key in ("access_token", "refresh_token", "id_token"):
                value = data.get(key)
                if isinstance(value, str):
                    self.redactor.add_secret(value)
        access = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(access, str) or not access:
            shown = sorted(data) if isinstance(data, dict) else "not a JSON object"
            raise PermanentRequestError(
                "POST",
                self.redactor.url(url),
                f"{what}: the response has no `access_token` (its fields: {shown}).",
            )
        assert isinstance(data, dict)
        lifetime = _seconds(data.get("expires_in"))
        now = self.clock()
        expires_at = (
            now + lifetime - min(EXPIRY_MARGIN, lifetime / 2) if lifetime is not None else math.inf
        )
        rotated = data.get("refresh_token")
        if isinstance(rotated, str) and rotated and rotated != self.refresh_token:
            self.refresh_token = rotated
            if self.credentials.grant == "refresh_token":
                self._write_cache(rotated)
        self._token = _Token(access, expires_at)
        return self._token

    # ------------------------------------------------------------------ the cache file

    def _cache_key(self) -> dict[str, t.Any]:
        creds = self.credentials
        return {
            "token_url": creds.token_url,
            "client_id": creds.client_id,
            "seed": _fingerprint(creds.refresh_token),
        }

    def _read_cache(self) -> str | None:
        path = self.credentials.token_cache
        if not path or self.credentials.grant != "refresh_token":
            return None
        try:
            text = Path(path).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.logger.warning("OAuth2 token_cache %s cannot be read (%s); not used.", path, exc)
            return None
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
            self.logger.warning("OAuth2 token_cache %s is not a token cache; not used.", path)
            return None
        key = self._cache_key()
        if any(data.get(k) != v for k, v in key.items()):
            self.logger.info(
                "OAuth2 token_cache %s is for another token endpoint, client or configured "
                "refresh token; the configured refresh token is used.",
                path,
            )
            return None
        token = data.get("refresh_token")
        return token if isinstance(token, str) and token else None

    def _write_cache(self, refresh_token: str) -> None:
        """Replace the cache file atomically, mode 0600, with the newest refresh token."""
        path = self.credentials.token_cache
        if not path:
            return
        target = Path(path)
        content = json.dumps(
            {"version": CACHE_VERSION, **self._cache_key(), "refresh_token": refresh_token}
        ).encode()
        temporary = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(prefix=".tap-rhttp-token-", dir=target.parent)
            with os.fdopen(fd, "wb") as handle:  # mkstemp creates it with mode 0600
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
            temporary = None
        except OSError as exc:
            self.logger.error(
                "OAuth2 token_cache %s could not be written (%s): the server rotated the "
                "refresh token, so the next run cannot refresh with the old one.",
                path,
                exc,
            )
        finally:
            if temporary is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)


def _seconds(value: t.Any) -> float | None:
    """`expires_in` as seconds (a number, or a number in a string); None when unusable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
        return float(value)
    return None


class TokenRegistry:
    """The run's OAuth2 token sources, one per distinct OAuth2 config. Thread-safe.

    Owned by the run context; every chain of every stream asks it for its auth.

    Args:
        redactor: the run's redactor.
        logger: where token cache problems are reported.
    """

    def __init__(self, redactor: Redactor, *, logger: logging.Logger | None = None) -> None:
        self.redactor = redactor
        self.logger = logger
        self._lock = threading.Lock()
        self._sources: dict[Credentials, TokenSource] = {}

    def source(self, credentials: Credentials, transport: RequestOptions) -> TokenSource:
        """The one source for these credentials (made on first use, with `transport`)."""
        with self._lock:
            found = self._sources.get(credentials)
            if found is None:
                found = self._sources[credentials] = TokenSource(
                    credentials, self.redactor, transport, logger=self.logger
                )
            return found

    def auth(self, credentials: Credentials, transport: RequestOptions) -> OAuth2Auth:
        """A chain's auth object, backed by the shared source."""
        return OAuth2Auth(self.source(credentials, transport))

    @property
    def sources(self) -> list[TokenSource]:
        """Every source made so far."""
        with self._lock:
            return list(self._sources.values())


class OAuth2Auth(TokenAuth):
    """``Authorization: Bearer <token>`` from a :class:`TokenSource` (one per chain)."""

    def __init__(self, source: TokenSource) -> None:
        self.source = source
        self._token: str | None = None
        #: The token the last prepared request carried.
        self.sent: str | None = None

    def fresh(self) -> None:
        self._token = self.source.token()

    def rejected(self) -> bool:
        if self.sent is None:
            return False
        self.source.invalidate(self.sent)
        self.sent = None
        self._token = self.source.token()
        return True

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self._token or self.source.token()
        request.headers["Authorization"] = f"Bearer {token}"
        self.sent = token
        return request
