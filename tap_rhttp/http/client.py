"""One HTTP exchange the way r.http makes it: redirects one hop at a time, one deadline.

:class:`HttpClient` sends in layers, as httpx does (``_send_handling_auth`` ->
``_send_handling_redirects`` -> ``_send_single_request``):

- :meth:`HttpClient.fetch` arms the attempt's deadline (see ``deadline``) and maps the
  watchdog's cut to r.http's "timed out" text;
- :meth:`HttpClient._follow` follows redirects one hop at a time, so ``redirects`` is an
  exact hop count and a redirect to anything but http/https is refused;
- :meth:`HttpClient._send` makes one send and reads the whole body (into a
  :class:`~tap_rhttp.http.body.BodySpool` when the caller gives one);
- every foreign exception is mapped to r.http's envelope in one table,
  :data:`_EXCEPTION_MAP`, by one context manager, split into transient (retried) and
  permanent. The foreign exception is not chained: its text carries the unredacted URL.

Headers: defaults ``User-Agent: tap-rhttp/<version>`` and ``Accept-Encoding``; a user
value wins, null removes. Auth goes through ``requests.auth`` objects kept per client.

Credentials are decided per hop (see ``origins``): :meth:`HttpClient.prepare` builds every
request, the first and each redirect hop, and gives one whose URL is not on a trusted
origin no auth, no sensitive or secret header, no cookie and no secret query value. A
redirect hop is rebuilt from scratch (requests' ``resolve_redirects`` only decides its
URL, method and whether the body is kept), so nothing of the previous hop's credentials,
nor a digest auth's hook that would answer the other origin's 401 challenge, carries over.

Rejected: singer-sdk's ``RESTStream`` request path and authenticators. They rewrite the
query string (``%20`` becomes ``+``, empty values vanish), ignore ``REQUESTS_CA_BUNDLE``,
treat ``timeout`` as a per-read limit of 300 s, and follow redirects without a hop count.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import time
import typing as t
from urllib.parse import urlsplit

import requests
import requests.adapters
import requests.auth
import requests.cookies
import requests.structures
import requests.utils
import urllib3.exceptions
from urllib3.util import SKIP_HEADER

from tap_rhttp import __version__
from tap_rhttp.errors import PermanentRequestError, RequestError, TransientRequestError
from tap_rhttp.http import rules
from tap_rhttp.http.auth import TokenAuth, make_auth
from tap_rhttp.http.body import encode_body
from tap_rhttp.http.deadline import (
    BodyTooLarge,
    DeadlineAdapter,
    DeadlineExceeded,
    SinkError,
    Watchdog,
    drop_body,
    read_body,
)
from tap_rhttp.http.origins import OriginPolicy, origin_of, origin_text, without_credentials
from tap_rhttp.http.ratelimit import parse_rate_limit
from tap_rhttp.http.retry import RETRIABLE_STATUSES, parse_retry_after
from tap_rhttp.http.urls import SCHEMES, url_scheme

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from tap_rhttp.http.auth import Credentials
    from tap_rhttp.http.body import BodySpool
    from tap_rhttp.http.rules import ResponseRule
    from tap_rhttp.redact import Redactor
    from tap_rhttp.types import JSON, HeaderPairs


class CONFIGURED:
    """A marker: send the configured `data` (no request of the chain moved the body)."""


_E = t.TypeVar("_E", bound=RequestError)

USER_AGENT = f"tap-rhttp/{__version__}"
DEFAULT_HEADERS = (("User-Agent", USER_AGENT), ("Accept-Encoding", "gzip, deflate"))
#: How much of an error body goes into the envelope.
ERROR_BODY_CHARS = 1024
#: How much of an error body is decoded for the envelope: ``Redactor.excerpt`` redacts
#: a window past ERROR_BODY_CHARS (so no secret straddles the cut), never the whole body.
#: No more of it is read either (one byte more, to know it goes on): an endless or
#: inflating error body costs no more than this.
ERROR_BODY_DECODE_BYTES = 1 << 16
#: The default of `max_body_bytes`: the most decoded bytes one success body may have.
MAX_BODY_BYTES = 256 << 20
_SKIPPABLE = frozenset({"user-agent", "accept-encoding"})
#: Exceptions whose text says something about the exchange (see ``HttpClient._reason``).
_TRANSPORT_ERRORS = (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError)


@dataclasses.dataclass(frozen=True)
class RequestOptions:
    """What the transport needs to know about a request, besides its URL.

    The run layer builds it from a spec (``RequestSpec.request_options``); the transport
    never sees the config.
    """

    method: str = "GET"
    header: HeaderPairs = ()
    data: JSON = None
    #: `data` goes out as JSON whatever its type (the `json` option, or a JSON Content-Type).
    json_body: bool = False
    credentials: Credentials | None = None
    timeout: float = 30.0
    redirects: int = 1
    verify: bool | str = True
    #: The configured URL, whose origin receives the credentials (default: the first
    #: URL fetched).
    home: str = ""
    #: Other origins that receive them (``scheme://host[:port]``).
    trusted_origins: tuple[str, ...] = ()
    #: Mutual TLS: the client certificate (PEM path), its key, the key's password.
    client_cert: str | None = None
    client_key: str | None = None
    client_key_password: str | None = dataclasses.field(default=None, repr=False)
    #: The proxy for every request (else the environment's ``HTTP(S)_PROXY``/``NO_PROXY``).
    proxy: str | None = dataclasses.field(default=None, repr=False)
    #: `response_rules`, checked and compiled.
    rules: tuple[ResponseRule, ...] = ()
    #: `max_body_bytes`: the most decoded bytes a success body may have (None: no limit).
    max_body_bytes: int | None = MAX_BODY_BYTES


@dataclasses.dataclass
class Response:
    """One complete HTTP response: what pagination and formats need, nothing more.

    A body that was written to a spool that spilled to disk is in ``spool`` (and
    ``body`` is empty); the reader of the spool closes it.
    """

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    url: str
    elapsed: float
    #: The auth object that made the request; a chain that reuses this response (the
    #: discovery sample) adopts it, so a digest nonce carries over to the next page.
    auth: requests.auth.AuthBase | None = dataclasses.field(default=None, repr=False, compare=False)
    spool: BodySpool | None = dataclasses.field(default=None, repr=False, compare=False)
    #: The response rule that made this response an empty page ending its chain (`skip`).
    skipped_by: str | None = None

    def header(self, name: str) -> str | None:
        """The last value of a header (names compared case-insensitively)."""
        lowered = name.lower()
        found = None
        for key, value in self.headers:
            if key.lower() == lowered:
                found = value
        return found


class _Enough(Exception):
    """A prefix read has what it needs."""


def _read_prefix(
    response: requests.Response, deadline: float | None, limit: int
) -> tuple[bytes, bool]:
    """Up to about `limit` bytes of an error body: (bytes, whether that is all of it).

    A body that breaks off is what was read, complete: the status is the error.
    """
    chunks: list[bytes] = []
    size = 0

    def keep(chunk: bytes) -> None:
        nonlocal size
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise _Enough

    try:
        read_body(response.raw, deadline, keep)
    except _Enough:
        return b"".join(chunks), False
    except Exception:  # noqa: S110  (the status is the error)
        pass
    return b"".join(chunks), True


def _retry_hint(status: int, headers: list[tuple[str, str]]) -> tuple[bool, float | None]:
    """Whether a failed status is worth another try, and how long the server asks to wait.

    408/425/429/5xx are retried. So is a 403 that is a rate limit (GitHub's): with
    ``Retry-After``, or with an announced remaining quota of 0. A 403 or 429 without
    ``Retry-After`` whose quota is used up waits for the announced reset.
    """
    retry_after = parse_retry_after(
        next((v for k, v in headers if k.lower() == "retry-after"), None)
    )
    announced = parse_rate_limit(headers) if status in (403, 429) else None
    used_up = announced is not None and announced.remaining == 0
    if used_up and retry_after is None and announced is not None and announced.reset:
        retry_after = announced.reset if announced.reset > 0 else None
    transient = status in RETRIABLE_STATUSES or (
        status == 403 and (used_up or retry_after is not None)
    )
    return transient, retry_after


def _declared_length(headers: t.Any) -> int:
    """The Content-Length of an uncompressed body (-1: unknown or compressed)."""
    encoding = (headers.get("Content-Encoding") or "identity").strip().lower()
    length = (headers.get("Content-Length") or "").strip()
    if encoding != "identity" or not length.isdigit():
        return -1
    return int(length) if len(length) <= 20 else 1 << 64


def _header_block(headers: t.Iterable[tuple[str, str]]) -> str:
    return "\n".join(f"{k}: {v}" for k, v in headers)


_Mapped = tuple[
    tuple[type[BaseException], ...], type[RequestError], str
]  # foreign exceptions, the r.http error to raise, the reason ({reason}: their text)

#: Foreign exceptions -> r.http errors, first match wins (SSLError is a ConnectionError).
_EXCEPTION_MAP: tuple[_Mapped, ...] = (
    ((requests.exceptions.SSLError,), PermanentRequestError, "TLS error: {reason}."),
    ((requests.exceptions.InvalidSchema,), PermanentRequestError, "Unsupported protocol."),
    (
        (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema),
        PermanentRequestError,
        "invalid URL: {reason}.",
    ),
    (
        (requests.exceptions.TooManyRedirects,),
        PermanentRequestError,
        "Number of redirects hit maximum amount.",
    ),
    (
        (
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
            urllib3.exceptions.ProtocolError,
            urllib3.exceptions.DecodeError,
        ),
        TransientRequestError,
        "the response body was cut short or corrupt: {reason}.",
    ),
    (
        (requests.exceptions.ConnectionError, OSError),
        TransientRequestError,
        "connection failed: {reason}.",
    ),
)
_TIMEOUTS = (DeadlineExceeded, requests.exceptions.Timeout, urllib3.exceptions.TimeoutError)


class _Session(requests.Session):
    """requests' session, reading a redirect's body only as far as a bound.

    ``Session.send`` (even with ``allow_redirects=False``, to set ``response.next``) and
    ``resolve_redirects`` read a 3xx response's ``content`` whole: an endless or
    inflating redirect body would fill memory. Here the body is read up to
    ``DROP_BODY_MAX`` decoded bytes first, and the connection dropped when more
    is left, so ``content`` finds nothing to read (see ``deadline.drop_body``).
    """

    #: The deadline of the attempt in progress (the client sets it).
    deadline: float | None = None

    def resolve_redirects(
        self, resp: requests.Response, req: requests.PreparedRequest, *args: t.Any, **kwargs: t.Any
    ) -> t.Any:
        if self.get_redirect_target(resp) and not getattr(resp, "_rhttp_dropped", False):
            resp._rhttp_dropped = True  # type: ignore[attr-defined]
            drop_body(resp.raw, self.deadline)
        return super().resolve_redirects(resp, req, *args, **kwargs)


class Connections:
    """The connection pools (and the deadline watcher) of clients used one after another.

    A fan-out worker runs many chains in turn (a child stream: one per parent row). Each
    chain keeps a client of its own (session, cookie jar, auth object, the origins that
    receive its credentials), but the clients can send through the same pools, as the
    pages of one chain do: no new connection (TCP, TLS) per chain, and one watchdog
    thread instead of one per chain. urllib3 keys a pool by scheme, host, port and TLS
    settings (verify, CA bundle, client certificate; the key password too, see
    :class:`DeadlineAdapter`), so a kept connection only carries a request it could have
    been opened for. What a request says (credentials, cookies) is the client's own and
    is prepared per request and per redirect hop, as ever.

    Not thread-safe: the clients sharing it make one request at a time (the watchdog
    shuts down every socket of its pools when an attempt's deadline passes).
    """

    def __init__(self) -> None:
        self.watchdog = Watchdog()
        self._adapters: dict[str | None, DeadlineAdapter] = {}
        #: What the environment says for a request (proxies, CA bundle), by origin and
        #: options: requests reads the whole environment twice per request for it.
        self.environment: dict[tuple[t.Any, ...], dict[str, t.Any]] = {}

    def adapter(self, key_password: str | None) -> DeadlineAdapter:
        """The adapter for clients whose client key has this password (or none)."""
        adapter = self._adapters.get(key_password)
        if adapter is None:
            adapter = DeadlineAdapter(self.watchdog, key_password=key_password)
            self._adapters[key_password] = adapter
        return adapter

    def close(self) -> None:
        """Close every kept connection and end the watchdog thread."""
        for adapter in self._adapters.values():
            adapter.close()
        self._adapters.clear()
        self.watchdog.close()


class HttpClient:
    """Makes the requests of one chain: one session, one auth object, one cookie jar.

    Thread-safety: one client per request chain; fan-out gives each worker its own.

    Args:
        options: method, headers, body, credentials, timeout, redirects, verify.
        redactor: masks secrets in every error.
        auth: the auth object, when the caller owns it (an OAuth2 token shared by the
            run); default: one made from ``options.credentials``.
        connections: the pools to send through, shared with clients used before and
            after this one on the same thread (see :class:`Connections`); default: its
            own, closed with it.
    """

    def __init__(
        self,
        options: RequestOptions,
        redactor: Redactor,
        *,
        auth: requests.auth.AuthBase | None = None,
        connections: Connections | None = None,
    ) -> None:
        self.options = options
        self.redactor = redactor
        self.session = _Session()
        self.session.max_redirects = max(options.redirects, 0) + 1
        self.session.headers.clear()
        self.session.headers["Accept"] = "*/*"
        self._shared = connections is not None
        self._connections = connections if connections is not None else Connections()
        self._watchdog = self._connections.watchdog
        adapter = self._connections.adapter(options.client_key_password)
        for prefix in ("http://", "https://"):
            self.session.mount(prefix, adapter)
        self.auth = auth if auth is not None else make_auth(options.credentials)
        self._token_sent = False  # the last hop carried a TokenAuth's token
        self._headers = self._build_headers()
        self._body, self._content_type = self.encode(options.data)
        self._origin = ""  # the URL asked for: the one every error message names
        self._url = ""  # the URL of the hop in progress (after a redirect, the hop's)
        self._proxies_learned: set[str] = set()
        self.origins: OriginPolicy | None = (
            OriginPolicy(options.home, options.trusted_origins) if options.home else None
        )
        #: Origins that were sent a request without the credentials (texts), in order.
        self.withheld: list[str] = []
        #: Shown every response's status and headers (the stream's ServerRateLimit).
        self.observer: t.Callable[[int, list[tuple[str, str]]], None] | None = None

    def _build_headers(self) -> dict[str, str | None]:
        """Defaults, then the user's; a null value means "do not send this header"."""
        headers: dict[str, str | None] = {}
        names: dict[str, str] = {}
        for name, value in (*DEFAULT_HEADERS, *self.options.header):
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
        """Release pooled connections and the deadline watcher (unless shared)."""
        if self._shared:
            self.session.adapters.clear()  # the shared pools outlive this client
        else:
            self._connections.close()
        self.session.close()

    def trusts(self, url: str) -> bool:
        """Whether `url` is on an origin that receives the credentials (see ``origins``)."""
        if self.origins is None:
            self.origins = OriginPolicy(url, self.options.trusted_origins)
        return self.origins.trusts(url)

    def encode(self, data: JSON) -> tuple[bytes | None, str | None]:
        """A request body for `data`, and its automatic Content-Type."""
        return encode_body(self.options.method, data, as_json=self.options.json_body)

    def prepare(
        self,
        url: str,
        *,
        auth: bool = True,
        method: str | None = None,
        body: bool = True,
        data: JSON | type[CONFIGURED] = CONFIGURED,
    ) -> requests.PreparedRequest:
        """The request as it goes out to `url` (explain mode prints it as curl).

        A URL on an origin that is not trusted gets no credential of any kind (see the
        module docstring).

        Args:
            url: the target.
            auth: apply the auth object (explain passes False for digest auth, whose
                nonce counter preparing would step).
            method: the method, when a redirect changed it (default: the spec's).
            body: send the body (a redirect other than 307/308 drops it).
            data: this request's body data, when pagination moved it (default: the
                configured `data`).
        """
        trusted = self.trusts(url)
        if not trusted:
            url = without_credentials(url, self.redactor.is_secret)
        headers: dict[str, str | None] = (
            dict(self._headers)
            if trusted
            else {k: v for k, v in self._headers.items() if not self._credential_header(k, v)}
        )
        encoded, content_type = (
            (self._body, self._content_type) if data is CONFIGURED else self.encode(data)
        )
        sent = encoded if body else None
        has_type = any(k.lower() == "content-type" for k in headers)
        if sent is not None and content_type and not has_type:
            headers["Content-Type"] = content_type
        prepared = self._prepared(
            method or self.options.method,
            url,
            headers,
            sent,
            self.auth if auth and trusted else None,
        )
        self._token_sent = trusted and auth and isinstance(self.auth, TokenAuth)
        if not trusted:
            # requests adds the jar's cookies (scoped by host, not by port) and any netrc
            # credentials for the host; neither goes to an origin that is not trusted.
            prepared.headers.pop("Cookie", None)
            prepared.headers.pop("Authorization", None)
            shown = origin_of(url)
            text = origin_text(shown) if shown is not None else url
            if text not in self.withheld:
                self.withheld.append(text)
        return prepared

    def _prepared(
        self,
        method: str,
        url: str,
        headers: dict[str, str | None],
        body: bytes | None,
        auth: requests.auth.AuthBase | None,
    ) -> requests.PreparedRequest:
        """What ``Session.prepare_request`` makes of the request, without its generic merging.

        The same steps with the same values: the session's headers (``Accept``) under the
        request's, a null value removing the header; a copy of the session's cookie jar;
        the netrc credentials for the host when there is no auth (``trust_env``); no
        params (``""``: the URL carries them) and no hooks of the session. requests 2.34
        spends about 80 µs a request in that merging, mostly in ``isinstance`` checks
        against runtime protocols and in reading the netrc path: here the netrc answer is
        looked up once per host, with the environment (see :class:`Connections`).
        ``tests/test_http_client.py`` compares the two on the same requests.
        """
        session = self.session
        merged = requests.structures.CaseInsensitiveDict(session.headers)
        for name, value in headers.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        if auth is None and session.trust_env and not session.auth:
            host = urlsplit(url).hostname
            key = ("netrc", host)
            environment = self._connections.environment
            if key not in environment:
                environment[key] = {"auth": requests.utils.get_netrc_auth(url)}
            auth = environment[key]["auth"]
        prepared = requests.PreparedRequest()
        prepared.prepare(
            method=method.upper(),
            url=url,
            headers=merged,
            data=body,
            params="",
            auth=auth,
            cookies=requests.cookies.merge_cookies(
                requests.cookies.RequestsCookieJar(), session.cookies
            ),
            hooks=None,
        )
        return prepared

    def _credential_header(self, name: str, value: str | None) -> bool:
        """A header that carries a credential: sensitive by name, or holding a secret."""
        if self.redactor.is_sensitive_header(name):
            return True
        return value not in (None, SKIP_HEADER) and self.redactor.mentions_secret(value or "")

    def _settings(self, url: str) -> dict[str, t.Any]:
        """verify, proxies and cert for one send: the options, then the environment's.

        An explicit `proxy` is used for every request (the environment's ``NO_PROXY``
        does not apply to it); without one, requests reads ``HTTP(S)_PROXY``,
        ``NO_PROXY`` and ``REQUESTS_CA_BUNDLE`` as usual, once per origin for the
        clients sharing :class:`Connections` (the environment does not change in a run).
        """
        options = self.options
        cert: str | tuple[str, str] | None = (
            (options.client_cert, options.client_key)
            if options.client_cert and options.client_key
            else options.client_cert
        )
        key = (urlsplit(url)[:2], options.proxy, options.verify, cert)
        known = self._connections.environment.get(key)
        if known is None:
            proxies = {"http": options.proxy, "https": options.proxy} if options.proxy else {}
            known = self._connections.environment[key] = dict(
                self.session.merge_environment_settings(url, proxies, True, options.verify, cert)
            )
        merged = known
        for proxy in merged["proxies"].values():
            if proxy not in self._proxies_learned:  # its credentials are secrets
                self._proxies_learned.add(proxy)
                self.redactor.add_url_secrets(proxy)
        return {
            "verify": merged["verify"],
            "proxies": dict(merged["proxies"]),
            "cert": merged["cert"],
        }

    # ------------------------------------------------------------------ the layers

    def fetch(
        self,
        url: str,
        sink: BodySpool | None = None,
        *,
        data: JSON | type[CONFIGURED] = CONFIGURED,
    ) -> Response:
        """Make one attempt at a request, following redirects, within `timeout`.

        With a token auth (OAuth2), a 401 to a request that carried the token refreshes
        the token once and makes the request once more.

        Args:
            url: the complete target URL (params already merged).
            sink: where a successful body goes (else it is read into memory); the
                returned response holds it in ``spool`` when it spilled to disk.
            data: the request's body data when pagination moved it (default: the
                configured `data`).

        Returns:
            The complete final response, status 2xx.

        Raises:
            TransientRequestError: worth another try.
            PermanentRequestError: not worth another try.
        """
        token_auth = self.auth if isinstance(self.auth, TokenAuth) else None
        if token_auth is not None and self.trusts(url):
            token_auth.fresh()  # outside the deadline: it may request a token
        try:
            return self._attempt(url, sink, data)
        except PermanentRequestError as exc:
            if exc.status != 401 or token_auth is None or not self._token_sent:
                raise
            if not token_auth.rejected():
                raise
        return self._attempt(url, sink, data)  # once more, with the new token

    def _attempt(self, url: str, sink: BodySpool | None, data: JSON | type[CONFIGURED]) -> Response:
        """One attempt at a request, within `timeout` (see :meth:`fetch`)."""
        timeout = self.options.timeout
        started = time.monotonic()
        deadline = started + timeout if timeout > 0 else None
        self._origin = self._url = url
        self.session.deadline = deadline
        if deadline is None:
            return self._follow(url, started, None, sink, data)
        self._watchdog.arm(timeout)
        try:
            response = self._follow(url, started, deadline, sink, data)
        except TransientRequestError as exc:
            # The watchdog cut the exchange: whatever broke was the deadline.
            if self._watchdog.fired and exc.status is None:
                raise self._timed_out() from None
            raise
        finally:
            self._watchdog.disarm()
        if self._watchdog.fired:
            # A body delimited by the connection's close looks complete when the
            # watchdog shuts the socket: never hand on what may be half a body.
            raise self._timed_out()
        return response

    def _follow(
        self,
        url: str,
        started: float,
        deadline: float | None,
        sink: BodySpool | None,
        data: JSON | type[CONFIGURED],
    ) -> Response:
        """Send, following redirects one hop at a time (``redirects`` hops at most)."""
        with self._mapped():
            self._check_scheme(url, url)
            prepared = self.prepare(url, data=data)
            hops = 0
            while True:
                response = self._send(prepared, deadline)
                if not response.is_redirect or self.options.redirects == 0:
                    break  # with redirects 0, a 3xx is reported as `status code 3xx`
                if hops >= self.options.redirects:
                    response.close()
                    raise self._error(
                        PermanentRequestError,
                        "Number of redirects hit maximum amount.",
                        status=response.status_code,
                    )
                hops += 1
                # requests decides the hop's URL, method and whether the body stays;
                # the hop itself is rebuilt, with the credentials its origin may have.
                following = next(
                    self.session.resolve_redirects(
                        response, prepared, yield_requests=True, **self._settings(self._url)
                    )
                )
                self._url = t.cast("str", following.url)
                self._check_scheme(self._url, url)
                prepared = self.prepare(
                    self._url,
                    method=following.method,
                    body=following.body is not None,
                    data=data,
                )
            if self.options.rules:
                return self._apply_rules(response, started, deadline, sink)
            if not 200 <= response.status_code < 300:
                raise self._status_error(response, deadline)
            return self._read(response, started, deadline, sink)

    def _apply_rules(
        self,
        response: requests.Response,
        started: float,
        deadline: float | None,
        sink: BodySpool | None,
    ) -> Response:
        """The final response as the stream's `response_rules` read it (see ``rules``)."""
        status = response.status_code
        success = 200 <= status < 300
        found = rules.candidates(self.options.rules, status)
        if not found:
            if not success:
                raise self._status_error(response, deadline)
            return self._read(response, started, deadline, sink)
        page: Response | None = None
        prefix, complete = b"", True
        seen: bytes | None = None
        if rules.needs_body(found):
            if success:
                page = self._read(response, started, deadline, sink)
                seen = page.body if page.spool is None else None
            else:
                prefix, complete = _read_prefix(response, deadline, rules.RULE_BODY_BYTES)
                seen = prefix if complete else None
        headers = list(response.raw.headers.items())
        rule = rules.first_match(found, status, headers, rules.body_view(seen))
        action = rule.action if rule is not None else None
        if action is None and not success:
            raise self._status_error(response, deadline, prefix=prefix, complete=complete)
        if action is None or action == "ok":
            if page is not None:
                return page
            return self._read(response, started, deadline, sink, prefix=prefix)
        assert rule is not None
        if page is not None and page.spool is not None:
            page.spool.close()
        body = page.body if page is not None else prefix
        if action == "skip":
            response.close()
            return Response(
                status=status,
                headers=headers,
                body=b"",
                url=self._url,
                elapsed=time.monotonic() - started,
                auth=self.auth,
                skipped_by=rule.describe(),
            )
        if page is None and not complete:
            body += b" ..."
        response.close()
        what = rule.message or f"status code {status}"
        kind: type[RequestError] = (
            TransientRequestError if action == "retry" else PermanentRequestError
        )
        error = self._error(
            kind,
            f"{what.rstrip('.')} (status code {status}; {rule.label}: {action}).",
            status=status,
            header=_header_block(self.redactor.headers(headers).items()),
            body=self._body_excerpt(body),
            retry_after=_retry_hint(status, headers)[1],
        )
        raise error

    def _send(self, prepared: requests.PreparedRequest, deadline: float | None) -> t.Any:
        """One send, headers read, body not yet."""
        per_op = max(deadline - time.monotonic(), 0.001) if deadline is not None else None
        response = self.session.send(
            prepared,
            allow_redirects=False,
            stream=True,
            timeout=per_op,
            **self._settings(self._url),
        )
        if self.observer is not None:
            self.observer(response.status_code, list(response.raw.headers.items()))
        return response

    def _read(
        self,
        response: requests.Response,
        started: float,
        deadline: float | None,
        sink: BodySpool | None,
        *,
        prefix: bytes = b"",
    ) -> Response:
        """The complete response: its body read into memory, or into `sink`.

        Args:
            prefix: the start of the body, already read (by a response rule).
        """
        headers = response.raw.headers
        limit = self.options.max_body_bytes
        if limit is not None and _declared_length(headers) > limit:
            response.close()  # known too large: not a byte of it is read
            raise BodyTooLarge(limit)
        rest = None if limit is None else limit - len(prefix)  # the prefix counts too
        spool = None
        if sink is None or sink.fits(
            headers.get("Content-Length"), headers.get("Content-Encoding")
        ):
            chunks: list[bytes] = [prefix] if prefix else []
            read_body(response.raw, deadline, chunks.append, limit=rest)
            body = b"".join(chunks)
        else:
            if prefix:
                sink.write(prefix)
            read_body(response.raw, deadline, sink.write, limit=rest)
            if sink.spilled:
                body, spool = b"", sink
            else:
                body = sink.read_all()
                sink.close()
        return Response(
            status=response.status_code,
            headers=list(headers.items()),  # one pair per header line
            body=body,
            url=self._url,
            elapsed=time.monotonic() - started,
            auth=self.auth,
            spool=spool,
        )

    # ------------------------------------------------------------------ errors

    @contextlib.contextmanager
    def _mapped(self) -> Iterator[None]:
        """Every foreign exception inside, as r.http's envelope (see ``_EXCEPTION_MAP``)."""
        try:
            yield
        except RequestError:
            raise
        except _TIMEOUTS:
            raise self._timed_out() from None
        except BodyTooLarge as exc:
            raise PermanentRequestError(
                self.options.method,
                self.redactor.url(self._url),
                f"the response body is larger than `max_body_bytes` ({exc.limit} bytes, "
                "after decompression); raise `max_body_bytes` if pages this large are expected.",
            ) from None
        except SinkError as exc:
            raise PermanentRequestError(
                self.options.method,
                self.redactor.url(self._url),
                "could not write the response body to a temporary file: "
                f"{self.redactor.text(str(exc.error))} (free disk space, or point TMPDIR "
                "at a larger disk).",
            ) from None
        except Exception as exc:
            for kinds, error, reason in _EXCEPTION_MAP:
                if isinstance(exc, kinds):
                    raise self._error(error, reason.format(reason=self._reason(exc))) from None
            raise

    def _error(self, kind: type[_E], reason: str, **details: t.Any) -> _E:
        """An r.http error naming the URL asked for, and the redirect hop that failed, if any."""
        hop = self.redactor.url(self._url) if self._url != self._origin else None
        return kind(
            self.options.method, self.redactor.url(self._origin), reason, hop=hop, **details
        )

    def _check_scheme(self, current: str, original: str) -> None:
        if url_scheme(current) not in SCHEMES:
            where = "" if current == original else " (redirect target)"
            raise self._error(PermanentRequestError, f"Unsupported protocol{where}.")

    def _timed_out(self) -> TransientRequestError:
        return self._error(
            TransientRequestError, f"timed out after {self.options.timeout:.3f} seconds."
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

    def _body_excerpt(self, raw: bytes) -> str:
        """The start of an error body for the envelope, redacted, then cut."""
        # Redact, then cut (cutting first could keep the head of a secret that straddles
        # the cut); only a bounded window is redacted, however long the body.
        body_text, cut = self.redactor.excerpt(
            raw[:ERROR_BODY_DECODE_BYTES].decode("utf-8", errors="replace"), ERROR_BODY_CHARS
        )
        if cut or len(raw) > ERROR_BODY_DECODE_BYTES:
            body_text += " ..."
        return body_text

    def _status_error(
        self,
        response: requests.Response,
        deadline: float | None,
        *,
        prefix: bytes = b"",
        complete: bool = False,
    ) -> RequestError:
        status = response.status_code
        chunks: list[bytes] = [prefix]
        wanted = ERROR_BODY_DECODE_BYTES + 1 - len(prefix)  # one more: "it goes on"
        if not complete and wanted > 0:
            # The status is the error; a broken body only shortens the message.
            with contextlib.suppress(Exception):
                read_body(response.raw, deadline, chunks.append, at_most=wanted)
        response.close()  # the rest of the body, if any, is never read
        body_text = self._body_excerpt(b"".join(chunks))
        headers = self.redactor.headers(list(response.headers.items()))
        transient, retry_after = _retry_hint(status, list(response.raw.headers.items()))
        kind: type[RequestError] = TransientRequestError if transient else PermanentRequestError
        return self._error(
            kind,
            f"status code {status}.",
            status=status,
            header=_header_block(headers.items()),
            body=body_text,
            retry_after=retry_after,
        )
