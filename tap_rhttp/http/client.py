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

import requests
import requests.adapters
import requests.auth
import urllib3.exceptions
from urllib3.util import SKIP_HEADER

from tap_rhttp import __version__
from tap_rhttp.errors import PermanentRequestError, RequestError, TransientRequestError
from tap_rhttp.http.auth import make_auth
from tap_rhttp.http.body import encode_body
from tap_rhttp.http.deadline import DeadlineAdapter, DeadlineExceeded, Watchdog, read_body
from tap_rhttp.http.retry import RETRIABLE_STATUSES, parse_retry_after
from tap_rhttp.http.urls import SCHEMES, url_scheme

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from tap_rhttp.http.auth import Credentials
    from tap_rhttp.http.body import BodySpool
    from tap_rhttp.redact import Redactor
    from tap_rhttp.types import JSON, HeaderPairs

_E = t.TypeVar("_E", bound=RequestError)

USER_AGENT = f"tap-rhttp/{__version__}"
DEFAULT_HEADERS = (("User-Agent", USER_AGENT), ("Accept-Encoding", "gzip, deflate"))
#: How much of an error body goes into the envelope.
ERROR_BODY_CHARS = 1024
#: How much of an error body is decoded and redacted before it is cut to ERROR_BODY_CHARS
#: (masking can shorten the text; the window keeps the cut away from unredacted text).
ERROR_BODY_REDACT_WINDOW = 1 << 16
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
    credentials: Credentials | None = None
    timeout: float = 30.0
    redirects: int = 1
    verify: bool | str = True


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

    def header(self, name: str) -> str | None:
        """The last value of a header (names compared case-insensitively)."""
        lowered = name.lower()
        found = None
        for key, value in self.headers:
            if key.lower() == lowered:
                found = value
        return found


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


class HttpClient:
    """Makes the requests of one chain: one session, one auth object, one cookie jar.

    Thread-safety: one client per request chain; fan-out gives each worker its own.

    Args:
        options: method, headers, body, credentials, timeout, redirects, verify.
        redactor: masks secrets in every error.
    """

    def __init__(self, options: RequestOptions, redactor: Redactor) -> None:
        self.options = options
        self.redactor = redactor
        self.session = requests.Session()
        self.session.max_redirects = max(options.redirects, 0) + 1
        self.session.headers.clear()
        self.session.headers["Accept"] = "*/*"
        self._watchdog = Watchdog()
        for prefix in ("http://", "https://"):
            self.session.mount(prefix, DeadlineAdapter(self._watchdog))
        self.auth = make_auth(options.credentials)
        self._headers = self._build_headers()
        self._body, self._content_type = encode_body(options.method, options.data)
        self._origin = ""  # the URL asked for: the one every error message names
        self._url = ""  # the URL of the hop in progress (after a redirect, the hop's)

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
        """Release pooled connections and the deadline watcher."""
        self._watchdog.close()
        self.session.close()

    def prepare(self, url: str, *, auth: bool = True) -> requests.PreparedRequest:
        """The request as it goes out to `url` (explain mode prints it as curl).

        Args:
            url: the target.
            auth: apply the auth object (explain passes False for digest auth, whose
                nonce counter preparing would step).
        """
        headers: dict[str, str | None] = dict(self._headers)
        if self._content_type and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = self._content_type
        request = requests.Request(
            method=self.options.method,
            url=url,
            headers=headers,
            data=self._body,
            auth=self.auth if auth else None,
        )
        return self.session.prepare_request(request)

    def _settings(self, url: str) -> dict[str, t.Any]:
        verify = self.options.verify
        merged = self.session.merge_environment_settings(url, {}, True, verify, None)
        return {"verify": merged["verify"], "proxies": merged["proxies"], "cert": merged["cert"]}

    # ------------------------------------------------------------------ the layers

    def fetch(self, url: str, sink: BodySpool | None = None) -> Response:
        """Make one attempt at a request, following redirects, within `timeout`.

        Args:
            url: the complete target URL (params already merged).
            sink: where a successful body goes (else it is read into memory); the
                returned response holds it in ``spool`` when it spilled to disk.

        Returns:
            The complete final response, status 2xx.

        Raises:
            TransientRequestError: worth another try.
            PermanentRequestError: not worth another try.
        """
        timeout = self.options.timeout
        started = time.monotonic()
        deadline = started + timeout if timeout > 0 else None
        self._origin = self._url = url
        if deadline is None:
            return self._follow(url, started, None, sink)
        self._watchdog.arm(timeout)
        try:
            response = self._follow(url, started, deadline, sink)
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
        self, url: str, started: float, deadline: float | None, sink: BodySpool | None
    ) -> Response:
        """Send, following redirects one hop at a time (``redirects`` hops at most)."""
        with self._mapped():
            self.redactor.add_url_secrets(url)
            self._check_scheme(url, url)
            prepared = self.prepare(url)
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
                following = next(
                    self.session.resolve_redirects(
                        response, prepared, yield_requests=True, **self._settings(self._url)
                    )
                )
                self._url = t.cast("str", following.url)
                self.redactor.add_url_secrets(self._url)
                self._check_scheme(self._url, url)
                prepared = t.cast("requests.PreparedRequest", following)
            if not 200 <= response.status_code < 300:
                raise self._status_error(response, deadline)
            return self._read(response, started, deadline, sink)

    def _send(self, prepared: requests.PreparedRequest, deadline: float | None) -> t.Any:
        """One send, headers read, body not yet."""
        per_op = max(deadline - time.monotonic(), 0.001) if deadline is not None else None
        return self.session.send(
            prepared,
            allow_redirects=False,
            stream=True,
            timeout=per_op,
            **self._settings(self._url),
        )

    def _read(
        self,
        response: requests.Response,
        started: float,
        deadline: float | None,
        sink: BodySpool | None,
    ) -> Response:
        """The complete response: its body read into memory, or into `sink`."""
        headers = response.raw.headers
        spool = None
        if sink is None or sink.fits(
            headers.get("Content-Length"), headers.get("Content-Encoding")
        ):
            chunks: list[bytes] = []
            read_body(response.raw, deadline, chunks.append)
            body = b"".join(chunks)
        else:
            read_body(response.raw, deadline, sink.write)
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

    def _status_error(self, response: requests.Response, deadline: float | None) -> RequestError:
        status = response.status_code
        chunks: list[bytes] = []
        # The status is the error; a broken body only shortens the message.
        with contextlib.suppress(Exception):
            read_body(response.raw, deadline, chunks.append)
        response.close()
        raw = b"".join(chunks)
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
        return self._error(
            kind,
            f"status code {status}.",
            status=status,
            header=_header_block(headers.items()),
            body=body_text,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
