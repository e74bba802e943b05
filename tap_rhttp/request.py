"""From a spec and a page position to one HTTP exchange, the way r.http makes it.

This module owns everything between "the paginator wants this URL with these params"
and "here are the complete status, headers and body bytes":

- the query string: params are encoded like RethinkDB (keys sorted, each part escaped,
  space as ``%20``, null as ``k=``) and merged into the URL's own query so no key is
  sent twice; the rest of the URL goes out byte for byte;
- headers (defaults ``User-Agent: tap-rhttp/<version>`` and ``Accept-Encoding``; a user
  value wins, null removes), the body by method, and auth through ``requests.auth``
  objects kept per stream so a digest nonce is reused across pages;
- redirects followed one hop at a time, so ``redirects`` is an exact hop count and a
  redirect to anything but http/https is refused;
- ``timeout`` as one deadline per attempt, from connect to the last body byte: the
  body is read with ``read1`` and the socket timeout shrinks to what is left, so a
  slow-drip body cannot hang past it; and a watchdog shuts the attempt's sockets down
  when the deadline passes, because ``requests`` timeouts bound each socket read, not
  the whole exchange (a status line dripped a byte at a time would otherwise hang for
  as long as the server likes);
- mapping every failure to r.http's envelope, split into transient and permanent.

Rejected: singer-sdk's ``RESTStream`` request path and authenticators. They rewrite the
query string (``%20`` becomes ``+``, empty values vanish), ignore ``REQUESTS_CA_BUNDLE``,
treat ``timeout`` as a per-read limit of 300 s, and follow redirects without a hop count.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import socket
import threading
import time
import types
import typing as t
import weakref
from urllib.parse import quote, unquote, urljoin

import orjson
import requests
import requests.adapters
import requests.auth
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions
from urllib3.util import SKIP_HEADER

from tap_rhttp import __version__
from tap_rhttp.errors import (
    PermanentRequestError,
    RequestError,
    TransientRequestError,
)
from tap_rhttp.retry import RETRIABLE_STATUSES, parse_retry_after
from tap_rhttp.spec import SCHEMES, url_scheme

if t.TYPE_CHECKING:
    from tap_rhttp.redact import Redactor
    from tap_rhttp.spec import Auth, RequestSpec

JSON = t.Any
USER_AGENT = f"tap-rhttp/{__version__}"
DEFAULT_HEADERS = (("User-Agent", USER_AGENT), ("Accept-Encoding", "gzip, deflate"))
FORM = "application/x-www-form-urlencoded"
#: How much of an error body goes into the envelope.
ERROR_BODY_CHARS = 1024
#: How much of an error body is decoded and redacted before it is cut to ERROR_BODY_CHARS
#: (masking can shorten the text; the window keeps the cut away from unredacted text).
ERROR_BODY_REDACT_WINDOW = 1 << 16
READ_CHUNK = 1 << 16
_SKIPPABLE = frozenset({"user-agent", "accept-encoding"})
#: Exceptions whose text says something about the exchange (see ``HttpClient._reason``).
_TRANSPORT_ERRORS = (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError)


# --------------------------------------------------------------------------- URLs


def format_param(value: JSON) -> str:
    """One param value as text: strings as is, numbers in their shortest form, null empty."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return repr(value)
    return repr(value) if isinstance(value, float) else str(value)


def encode_pairs(params: t.Mapping[str, JSON]) -> list[str]:
    """Encode params like RethinkDB: sorted keys, every reserved byte escaped, `%20`."""
    return [
        f"{quote(str(key), safe='')}={quote(format_param(params[key]), safe='')}"
        for key in sorted(params)
    ]


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


@dataclasses.dataclass(frozen=True)
class PageRequest:
    """Where one page request goes: a URL, the merged params, and which params win.

    ``params`` is what the page expression sees as ``info['params']``.
    """

    url: str
    params: t.Mapping[str, JSON]
    override: frozenset[str]

    @property
    def target(self) -> str:
        """The URL actually requested."""
        return merge_query(self.url, self.params, self.override)


# --------------------------------------------------------------------------- auth


class _HeaderAuth(requests.auth.AuthBase):
    """Set one header (bearer tokens, API keys) without touching the URL."""

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self.value = value

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers[self.name] = self.value
        return request


class _ChainDigestAuth(requests.auth.HTTPDigestAuth):
    """Digest auth (RFC 7616) whose nonce state belongs to one chain, not to a thread.

    requests keeps the nonce and its count per thread. A chain makes its requests one
    at a time, but read-ahead makes them on a helper thread and the discovery sample on
    the main one; with per-thread state each new thread would pay one more 401
    challenge. One chain's object is never used by two requests at once.
    """

    def __init__(self, username: str, password: str) -> None:
        super().__init__(username, password)
        self._thread_local = types.SimpleNamespace()


def make_auth(auth: Auth | None) -> requests.auth.AuthBase | None:
    """A `requests` auth object for a spec's `auth` (query API keys go in the URL)."""
    if auth is None:
        return None
    if auth.type == "basic":
        return requests.auth.HTTPBasicAuth(auth.user or "", auth.password or "")
    if auth.type == "digest":
        return _ChainDigestAuth(auth.user or "", auth.password or "")
    if auth.type == "bearer":
        return _HeaderAuth("Authorization", f"Bearer {auth.token}")
    if auth.location == "header":
        return _HeaderAuth(auth.name or "", auth.value or "")
    return None


# --------------------------------------------------------------------------- bodies


def encode_body(method: str, data: JSON) -> tuple[bytes | None, str | None]:
    """The request body and its automatic Content-Type, by r.http's rules.

    POST: a string as is, an object form-encoded. PUT/PATCH/DELETE: a string as is,
    anything else as compact JSON. A string body gets the form type curl gives it.
    """
    if data is None or method in ("GET", "HEAD"):
        return None, None
    if isinstance(data, str):
        return data.encode("utf-8"), FORM
    if method == "POST":
        return "&".join(encode_pairs(data)).encode("ascii"), FORM
    return orjson.dumps(data), "application/json"


# --------------------------------------------------------------------------- responses


@dataclasses.dataclass
class Response:
    """One complete HTTP response: what pagination and formats need, nothing more."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    url: str
    elapsed: float
    #: The auth object that made the request; a chain that reuses this response (the
    #: discovery sample) adopts it, so a digest nonce carries over to the next page.
    auth: requests.auth.AuthBase | None = dataclasses.field(default=None, repr=False, compare=False)

    def header(self, name: str) -> str | None:
        """The last value of a header (names compared case-insensitively)."""
        lowered = name.lower()
        found = None
        for key, value in self.headers:
            if key.lower() == lowered:
                found = value
        return found


class _DeadlineExceeded(Exception):
    pass


def _socket_of(raw: t.Any) -> socket.socket | None:
    connection = getattr(raw, "_connection", None) or getattr(raw, "connection", None)
    sock = getattr(connection, "sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _read_with_deadline(raw: t.Any, deadline: float | None) -> bytes:
    """Read a whole (decoded) body, never past the deadline."""
    chunks: list[bytes] = []
    sock = _socket_of(raw) if deadline is not None else None
    while True:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _DeadlineExceeded
            if sock is not None:
                try:
                    sock.settimeout(remaining)
                except OSError:
                    sock = None
        try:
            chunk = raw.read1(READ_CHUNK, decode_content=True)
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
            if deadline is not None and deadline - time.monotonic() <= 0.05:
                raise _DeadlineExceeded from None
            raise
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


class _Watchdog:
    """Shuts down a client's sockets when an attempt's deadline passes.

    ``requests`` and urllib3 apply a timeout to each socket operation, so a server that
    drips its status line or headers one byte per second never trips it. The client's
    connection classes register every socket they open here; :meth:`arm` sets the
    attempt's deadline and, if it passes before :meth:`disarm`, every registered socket
    is shut down, which wakes the blocked read. One client makes one request at a time,
    so the sockets alive at the deadline belong to this attempt or are idle in the pool
    (urllib3 notices a dead idle connection and opens a new one).

    One long-lived thread per client waits on a condition for the current deadline (a
    new timer thread per request cost up to a few milliseconds each). ``disarm`` clears
    the deadline under the lock, so a deadline can never fire into the next attempt.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._deadline: float | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self.fired = False

    def add(self, sock: socket.socket | None) -> None:
        if sock is not None:
            with self._cond:
                self._sockets.add(sock)

    def arm(self, seconds: float) -> None:
        with self._cond:
            self.fired = False
            self._deadline = time.monotonic() + seconds
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="rhttp-watchdog", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._deadline = None
            self._cond.notify()

    def close(self) -> None:
        """End the watching thread (the client is done)."""
        with self._cond:
            self._closed = True
            self._deadline = None
            self._cond.notify()

    def _watch(self) -> None:
        with self._cond:
            while not self._closed:
                if self._deadline is None:
                    self._cond.wait()
                    continue
                remaining = self._deadline - time.monotonic()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                self._deadline = None
                self.fired = True
                for sock in list(self._sockets):
                    with contextlib.suppress(OSError):  # already closed
                        sock.shutdown(socket.SHUT_RDWR)


def _pool_classes(watchdog: _Watchdog) -> dict[str, type[urllib3.HTTPConnectionPool]]:
    """Connection pools whose connections register their sockets with ``watchdog``."""

    class Connection(urllib3.connection.HTTPConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            watchdog.add(sock)
            return sock

    class HTTPSConnection(urllib3.connection.HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            watchdog.add(sock)  # covers the TLS handshake
            return sock

        def connect(self) -> None:
            super().connect()
            watchdog.add(self.sock)  # the TLS socket replaces the raw one

    class Pool(urllib3.connectionpool.HTTPConnectionPool):
        ConnectionCls = Connection

    class HTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
        ConnectionCls = HTTPSConnection

    return {"http": Pool, "https": HTTPSPool}


class _DeadlineAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter, with connections the :class:`_Watchdog` can interrupt."""

    def __init__(self, watchdog: _Watchdog) -> None:
        self._pools = _pool_classes(watchdog)
        super().__init__()

    def init_poolmanager(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: t.Any) -> t.Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS pools keep per-read timeouts
            manager.pool_classes_by_scheme = self._pools
        return manager


def _header_block(headers: t.Iterable[tuple[str, str]]) -> str:
    return "\n".join(f"{k}: {v}" for k, v in headers)


class HttpClient:
    """Makes the requests of one stream: one session, one auth object, one cookie jar.

    Thread-safety: one client per request chain; fan-out gives each worker its own.
    """

    def __init__(self, spec: RequestSpec, redactor: Redactor) -> None:
        self.spec = spec
        self.redactor = redactor
        self.session = requests.Session()
        self.session.max_redirects = max(spec.redirects, 0) + 1
        self.session.headers.clear()
        self.session.headers["Accept"] = "*/*"
        self._watchdog = _Watchdog()
        for prefix in ("http://", "https://"):
            self.session.mount(prefix, _DeadlineAdapter(self._watchdog))
        self.auth = make_auth(spec.auth)
        self._headers = self._build_headers()
        self._body, self._content_type = encode_body(spec.method, spec.data)

    def _build_headers(self) -> dict[str, str | None]:
        """Defaults, then the user's; a null value means "do not send this header"."""
        headers: dict[str, str | None] = {}
        names: dict[str, str] = {}
        for name, value in (*DEFAULT_HEADERS, *self.spec.header):
            lowered = name.lower()
            if lowered in names:
                headers.pop(names[lowered], None)
            names[lowered] = name
            headers[name] = value
        for name, value in headers.items():
            if value is None and name.lower() in _SKIPPABLE:
                headers[name] = SKIP_HEADER  # urllib3 would add its own otherwise
        return headers

    def close(self) -> None:
        """Release pooled connections and the deadline watcher."""
        self._watchdog.close()
        self.session.close()

    def query_auth(self) -> dict[str, str]:
        """An API key that travels in the query string, as a param."""
        auth = self.spec.auth
        if auth is not None and auth.type == "api_key" and auth.location == "query":
            return {auth.name or "": auth.value or ""}
        return {}

    def redacted(self, url: str) -> str:
        """A URL safe to print."""
        return self.redactor.url(url)

    def _prepare(self, url: str) -> requests.PreparedRequest:
        headers: dict[str, str | None] = dict(self._headers)
        if self._content_type and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = self._content_type
        request = requests.Request(
            method=self.spec.method,
            url=url,
            headers=headers,
            data=self._body,
            auth=self.auth,
        )
        return self.session.prepare_request(request)

    def _settings(self, url: str) -> dict[str, t.Any]:
        verify = self.spec.verify
        merged = self.session.merge_environment_settings(url, {}, True, verify, None)
        return {"verify": merged["verify"], "proxies": merged["proxies"], "cert": merged["cert"]}

    def fetch(self, url: str) -> Response:
        """Make one attempt at a request, following redirects, within `timeout`.

        Args:
            url: the complete target URL (params already merged).

        Returns:
            The complete final response, status 2xx.

        Raises:
            TransientRequestError: worth another try.
            PermanentRequestError: not worth another try.
        """
        timeout = self.spec.timeout
        started = time.monotonic()
        deadline = started + timeout if timeout > 0 else None
        if deadline is None:
            return self._attempt(url, started, None)
        self._watchdog.arm(timeout)
        try:
            response = self._attempt(url, started, deadline)
        except TransientRequestError as exc:
            # The watchdog cut the exchange: whatever broke was the deadline.
            if self._watchdog.fired and exc.status is None:
                raise TransientRequestError(
                    exc.method, exc.url, f"timed out after {timeout:.3f} seconds."
                ) from None
            raise
        finally:
            self._watchdog.disarm()
        if self._watchdog.fired:
            # A body delimited by the connection's close looks complete when the
            # watchdog shuts the socket: never hand on what may be half a body.
            raise self._timed_out(response.url, timeout)
        return response

    def _attempt(self, url: str, started: float, deadline: float | None) -> Response:
        """One attempt (see :meth:`fetch`), every failure mapped to r.http's envelope."""
        method = self.spec.method
        timeout = self.spec.timeout
        current = url
        self.redactor.add_url_secrets(current)
        try:
            self._check_scheme(current, url)
            prepared = self._prepare(current)
            settings = self._settings(current)
            hops = 0
            while True:
                per_op = None
                if deadline is not None:
                    per_op = max(deadline - time.monotonic(), 0.001)
                response = self.session.send(
                    prepared, allow_redirects=False, stream=True, timeout=per_op, **settings
                )
                if not response.is_redirect:
                    break
                if self.spec.redirects == 0:
                    break  # reported below as `status code 3xx`
                if hops >= self.spec.redirects:
                    response.close()
                    raise PermanentRequestError(
                        method,
                        self.redacted(current),
                        "Number of redirects hit maximum amount.",
                        status=response.status_code,
                    )
                hops += 1
                next_prepared = next(
                    self.session.resolve_redirects(
                        response, prepared, yield_requests=True, **settings
                    )
                )
                current = t.cast("str", next_prepared.url)
                self.redactor.add_url_secrets(current)
                self._check_scheme(current, url)
                prepared = t.cast("requests.PreparedRequest", next_prepared)
                settings = self._settings(current)
            if response.status_code >= 300 or response.status_code < 200:
                raise self._status_error(response, current, deadline)
            body = _read_with_deadline(response.raw, deadline)
            return Response(
                status=response.status_code,
                headers=list(response.raw.headers.items()),  # one pair per header line
                body=body,
                url=current,
                elapsed=time.monotonic() - started,
                auth=self.auth,
            )
        except RequestError:
            raise
        except _DeadlineExceeded:
            raise self._timed_out(current, timeout) from None
        except requests.exceptions.SSLError as exc:
            raise PermanentRequestError(
                method, self.redacted(current), f"TLS error: {self._reason(exc)}."
            ) from None
        except (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError):
            raise self._timed_out(current, timeout) from None
        except requests.exceptions.InvalidSchema:
            raise PermanentRequestError(
                method, self.redacted(current), "Unsupported protocol."
            ) from None
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema) as exc:
            raise PermanentRequestError(
                method, self.redacted(current), f"invalid URL: {self._reason(exc)}."
            ) from None
        except requests.exceptions.TooManyRedirects:
            raise PermanentRequestError(
                method, self.redacted(current), "Number of redirects hit maximum amount."
            ) from None
        except (
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
            urllib3.exceptions.ProtocolError,
            urllib3.exceptions.DecodeError,
        ) as exc:
            raise TransientRequestError(
                method,
                self.redacted(current),
                f"the response body was cut short or corrupt: {self._reason(exc)}.",
            ) from None
        except (requests.exceptions.ConnectionError, OSError) as exc:
            raise TransientRequestError(
                method, self.redacted(current), f"connection failed: {self._reason(exc)}."
            ) from None

    def _check_scheme(self, current: str, original: str) -> None:
        if url_scheme(current) not in SCHEMES:
            where = "" if current == original else " (redirect target)"
            raise PermanentRequestError(
                self.spec.method, self.redacted(current), f"Unsupported protocol{where}."
            )

    def _timed_out(self, url: str, timeout: float) -> TransientRequestError:
        return TransientRequestError(
            self.spec.method, self.redacted(url), f"timed out after {timeout:.3f} seconds."
        )

    def _reason(self, exc: BaseException) -> str:
        """The innermost useful text of an exception, redacted and on one line."""
        text = str(exc)
        inner: BaseException = exc
        for _ in range(6):
            deeper = inner.__context__ or getattr(inner, "reason", None)
            # Stop above parsing internals: a truncated chunk's innermost error is
            # "invalid literal for int() with base 16: b''", which explains nothing.
            if not isinstance(deeper, _TRANSPORT_ERRORS):
                break
            inner = deeper
            text = str(inner) or text
        text = " ".join(text.split())
        return self.redactor.text(text)[:300]

    def _status_error(
        self, response: requests.Response, url: str, deadline: float | None
    ) -> RequestError:
        status = response.status_code
        try:
            raw = _read_with_deadline(response.raw, deadline)
        except Exception:
            raw = b""
        finally:
            response.close()
        # Redact first, then cut: cutting first could keep the head of a secret that
        # straddles the cut, which literal masking would no longer recognise.
        body_text = self.redactor.text(
            raw[:ERROR_BODY_REDACT_WINDOW].decode("utf-8", errors="replace")
        )
        if len(body_text) > ERROR_BODY_CHARS:
            body_text = body_text[:ERROR_BODY_CHARS] + " ..."
        headers = self.redactor.headers(list(response.headers.items()))
        kind: type[RequestError] = (
            TransientRequestError if status in RETRIABLE_STATUSES else PermanentRequestError
        )
        return kind(
            self.spec.method,
            self.redacted(url),
            f"status code {status}.",
            status=status,
            header=_header_block(headers.items()),
            body=body_text,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )


def resolve(base: str, link: str) -> str:
    """Resolve a possibly relative next-page URL against the current one (RFC 3986)."""
    return urljoin(base, link)
