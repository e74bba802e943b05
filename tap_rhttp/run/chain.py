"""One request chain: the pages of one spec, each fetched with retries and read whole.

A chain is what r.http does for one call: the first request, then one request per
`page` result, until the page expression says stop or `page_limit` is reached. Each
page is yielded only after it has been completely received and parsed, together with
what pagination decided after it, so a caller can emit the page's records and then
record its position: a retry replays the request, never the records.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
import typing as t
from concurrent.futures import ThreadPoolExecutor

from tap_rhttp.errors import ResponseFormatError, RHTTPError
from tap_rhttp.formats import streaming
from tap_rhttp.formats.readers import auto_format, looks_like_json
from tap_rhttp.formats.records import Unparsed, compile_records_path
from tap_rhttp.http.body import BodySpool
from tap_rhttp.http.client import Connections, HttpClient, Response
from tap_rhttp.http.oauth2 import TokenRegistry
from tap_rhttp.http.retry import RetryPolicy, call_with_retries
from tap_rhttp.http.urls import merge_query
from tap_rhttp.paging.paginator import Paginator, Step
from tap_rhttp.schema.exact import records_array

if t.TYPE_CHECKING:
    import logging
    from concurrent.futures import Future

    import msgspec

    from tap_rhttp.config.spec import RequestSpec
    from tap_rhttp.errors import RequestError
    from tap_rhttp.http.ratelimit import RateLimiter, ServerRateLimit
    from tap_rhttp.paging.paginator import PageRequest
    from tap_rhttp.redact import Redactor
    from tap_rhttp.schema.exact import ExactCheck
    from tap_rhttp.types import JSON

#: A page's records: a list, or for a streamed body a :class:`~streaming.SpooledRecords`
#: (sized, and iterable more than once).
Records = list[dict[str, "JSON"]] | streaming.SpooledRecords


@dataclasses.dataclass(frozen=True)
class Fetched:
    """A response and what reading it gave: its body and its records.

    With `exact`, the records are the body's own bytes, proven to be what a RECORD line
    holds (``tap_rhttp.schema.exact``); `body` and `records` are then parsed only when
    asked for (`unparsed`).
    """

    response: Response
    body: JSON
    records: Records
    exact: Exact | None = None
    unparsed: Unparsed[Records] | None = None


class Prefetched:
    """Pages fetched before the sync asked for them (discovery's sample), by chain.

    Discovery samples a chain's first pages, following its pagination; the sync's chain
    for the same first request then takes them instead of asking again. Each sampled
    chain is claimed once, by the first chain whose first request is its first page,
    and its pages are used in order, each once: as soon as a request differs from the
    next sampled page, the rest of the sample is dropped (it can no longer be used in
    order). Thread-safe: fan-out chains claim from worker threads.
    """

    def __init__(self) -> None:
        self._chains: dict[str, collections.deque[tuple[str, Fetched]]] = {}
        self._lock = threading.Lock()

    def add(self, pages: t.Sequence[tuple[str, Fetched]]) -> None:
        """Keep a chain's first pages, as (target URL, fetched page), in order."""
        if not pages:
            return
        with self._lock:
            if pages[0][0] in self._chains:  # the same requests: one sample is enough
                drop_fetched(pages)
                return
            self._chains[pages[0][0]] = collections.deque(pages)

    def claim(self, first: str) -> collections.deque[tuple[str, Fetched]] | None:
        """The pages sampled for a chain whose first request goes to `first` (once)."""
        with self._lock:
            return self._chains.pop(first, None)

    def __len__(self) -> int:
        with self._lock:
            return sum(len(pages) for pages in self._chains.values())

    def clear(self) -> None:
        """Drop every page no chain claimed (their spooled records' temporary files too)."""
        with self._lock:
            chains, self._chains = self._chains, {}
        for pages in chains.values():
            drop_fetched(pages)


def drop_fetched(pages: t.Iterable[tuple[str, Fetched]]) -> None:
    """Free the spooled records of fetched pages nobody will emit."""
    for _, fetched in pages:
        if isinstance(fetched.records, streaming.SpooledRecords):
            fetched.records.close()


@dataclasses.dataclass(frozen=True)
class Exact:
    """A page's records as the spans of the body that hold them, and the check that
    proved them exact (a page checked against a schema the stream has since replaced
    is not written from its spans)."""

    spans: list[msgspec.Raw]
    check: ExactCheck


class Page:
    """One completely read page, and what pagination decided after it.

    Attributes:
        number: the page's request number in its chain (1 for the first).
        request: the request that fetched it.
        response: the complete response (a streamed body is not in ``response.body``).
        body: the body as `result_format` read it (None for a streamed body).
        records: the page's records, in order.
        step: the next request, and what `page` saw and returned.
        tries: how many tries the request took.
        failure: `page` failed after this page; the chain raises it once the page is
            handed over (the page's records are still emitted).
        exact: the records as proven-exact spans of the body (see :class:`Fetched`);
            `body` and `records` are then parsed from `unparsed` when first read.
    """

    __slots__ = (
        "_body",
        "_records",
        "exact",
        "failure",
        "number",
        "request",
        "response",
        "step",
        "tries",
        "unparsed",
    )

    def __init__(
        self,
        *,
        number: int,
        request: PageRequest,
        response: Response,
        body: JSON,
        records: Records,
        step: Step,
        tries: int,
        failure: Exception | None = None,
        exact: Exact | None = None,
        unparsed: Unparsed[Records] | None = None,
    ) -> None:
        self.number = number
        self.request = request
        self.response = response
        self._body = body
        self._records = records
        self.step = step
        self.tries = tries
        self.failure = failure
        self.exact = exact
        self.unparsed = unparsed

    @property
    def body(self) -> JSON:
        """The body as `result_format` read it (None for a streamed body)."""
        if self.unparsed is not None:
            self._body, self._records = self.unparsed.get()
        return self._body

    @property
    def records(self) -> Records:
        """The page's records, in order."""
        if self.unparsed is not None:
            self._body, self._records = self.unparsed.get()
        return self._records

    @property
    def next(self) -> PageRequest | None:
        """The request that comes next, or None when the chain is over."""
        return self.step.next

    def close(self) -> None:
        """Free the records' temporary file, if they are spooled (once they are emitted)."""
        if isinstance(self._records, streaming.SpooledRecords):
            self._records.close()


@dataclasses.dataclass
class ChainStats:
    """Counters a stream reports in its progress lines.

    ``pages`` and ``retries`` count what the chains fetched; ``records`` counts what the
    stream emitted (``StreamRun.shape``: a record the bookmark filter drops is not
    counted). Shared by a stream's chains, which fan-out runs on several threads: every
    update goes through :meth:`add`, under a lock, so no count is lost.
    """

    pages: int = 0
    records: int = 0
    retries: int = 0
    #: Chains that a `skip` response rule ended.
    rule_skips: int = 0
    _lock: threading.Lock = dataclasses.field(
        default_factory=threading.Lock, repr=False, compare=False
    )

    def add(
        self, *, pages: int = 0, records: int = 0, retries: int = 0, rule_skips: int = 0
    ) -> None:
        """Count pages, records, retries and chains ended by a `skip` rule."""
        with self._lock:
            self.pages += pages
            self.records += records
            self.retries += retries
            self.rule_skips += rule_skips


def retry_policy(spec: RequestSpec) -> RetryPolicy:
    """The spec's reattempt options as a policy."""
    return RetryPolicy(
        tries=spec.reattempts,
        backoff_base=spec.backoff_base,
        backoff_max=spec.backoff_max,
        retry_after_max=spec.retry_after_max,
        max_seconds=spec.max_retry_seconds,
    )


class Chain:
    """Fetches the pages of one spec.

    Args:
        spec: the (rendered) request spec.
        redactor: masks secrets in every message.
        logger: where retries are reported (one WARNING line each).
        sleep: the wait between tries (tests inject a fake).
        limiter: an optional client-side rate limit shared by the stream's chains.
        prefetched: pages already fetched and read for this run (discovery's sample):
            the chain takes the sampled pages of its first request, then uses each in
            order (matched by :attr:`PageRequest.key`: target URL and body) instead of a
            second identical request.
        stats: the stream's counters.
        read_ahead: fetch and read the next page on a helper thread while the caller
            handles the current one, so waiting for the server overlaps the caller's
            work. Only for GET and HEAD (safe methods, RFC 9110 §9.2.1): a caller that
            stops early may leave one request made whose page it never sees. Records
            are still handed over page by page, in order, each page complete. All of
            the chain's requests are then made on that one thread.
        stream_bodies: read large bodies in flat memory when their records are an
            array (see ``tap_rhttp.formats.streaming``).
        now: the run's instant (epoch seconds), which ``r.now()`` returns in `page`.
        tokens: the run's OAuth2 tokens (a chain made on its own gets a registry of its
            own).
        server_limit: the quota the server announces, shared by the stream's chains.
        label: which chain of the stream this is (``for_each[2]``, ``parent row``), for
            the place an error names.
        notes: what the stream's chains have already warned about (shared by them, so
            a warning comes once per stream, not once per page or chain).
        exact: the stream's current exact page check, if its pages may be written from
            their bytes (``tap_rhttp.schema.exact``); a page it proves is then not parsed
            unless something asks for its body or records.
        connections: the connection pools of the chains run before and after this one
            on the same thread (see :class:`~tap_rhttp.http.client.Connections`); the
            chain makes one request at a time, so it may share them. Default: its own.
    """

    def __init__(
        self,
        spec: RequestSpec,
        redactor: Redactor,
        logger: logging.Logger,
        *,
        sleep: t.Callable[[float], None] = time.sleep,
        limiter: RateLimiter | None = None,
        prefetched: Prefetched | None = None,
        stats: ChainStats | None = None,
        read_ahead: bool = False,
        stream_bodies: bool = False,
        now: float | None = None,
        tokens: TokenRegistry | None = None,
        server_limit: ServerRateLimit | None = None,
        label: str = "",
        notes: set[str] | None = None,
        exact: t.Callable[[], ExactCheck | None] | None = None,
        connections: Connections | None = None,
    ) -> None:
        self.spec = spec
        self.now = now
        self.label = label
        self.notes = notes if notes is not None else set()
        self.redactor = redactor
        self.logger = logger
        self.sleep = sleep
        self.limiter = limiter
        self.prefetched = prefetched
        self._sampled: collections.deque[tuple[str, Fetched]] | None = None
        self._claimed = False
        self.stats = stats or ChainStats()
        options = spec.request_options()
        auth = None
        if spec.auth is not None and spec.auth.type == "oauth2":
            registry = tokens if tokens is not None else TokenRegistry(redactor, logger=logger)
            auth = registry.auth(spec.auth, options)
        self.client = HttpClient(options, redactor, auth=auth, connections=connections)
        self.server_limit = server_limit
        if server_limit is not None:
            self.client.observer = server_limit.observe
        self.policy = retry_policy(spec)
        self.records_path = compile_records_path(spec.records_path) if spec.records_path else None
        self._query_auth = spec.auth.query_params() if spec.auth is not None else {}
        self.read_ahead = read_ahead and spec.method in ("GET", "HEAD")
        self.decoder = spec.decoder
        self._streams = stream_bodies and streaming.may_stream(
            method=spec.method,
            body_read=spec.page is not None and spec.page.reads("info", "body"),
        )
        self._helper: ThreadPoolExecutor | None = None
        self._withheld_seen: list[str] = []
        keys = self.records_path.keys if self.records_path is not None else ()
        self._exact = (
            exact
            if exact is not None
            and keys is not None
            and spec.method != "HEAD"
            and spec.result_format in ("json", "auto")
            and not (spec.page is not None and spec.page.reads("info", "body"))
            else None
        )
        self._exact_keys: tuple[str, ...] = keys or ()

    def close(self) -> None:
        """Release the chain's connections (after a request read ahead, if any, ends)."""
        if self._helper is not None:
            self._helper.shutdown(wait=True, cancel_futures=True)
        if self._sampled:  # sampled pages this chain never reached
            drop_fetched(self._sampled)
            self._sampled.clear()
        self.client.close()

    def target(self, request: PageRequest) -> str:
        """The URL to send: the page's target plus a query-string API key, if any.

        The API key goes only to a trusted origin (see ``tap_rhttp.http.origins``).
        """
        target = request.target
        if self._query_auth and self.client.trusts(target):
            target = merge_query(target, self._query_auth, set(self._query_auth))
        return target

    def key(self, request: PageRequest) -> str:
        """What identifies a request's page in `prefetched`: its target and its body."""
        return request.key

    def _report_skip(self, response: Response, number: int) -> None:
        """One INFO line, and one count, for a chain that a `skip` rule ended."""
        self.stats.add(rule_skips=1)
        self.logger.info(
            "stream %s: page %d answered status %d, which %s: an empty page, and the "
            "chain ends: %s %s",
            self.spec.name,
            number,
            response.status,
            response.skipped_by,
            self.spec.method,
            self.redactor.url(response.url),
        )

    def _report_withheld(self) -> None:
        """One INFO line per origin that was sent a request without the credentials."""
        while len(self._withheld_seen) < len(self.client.withheld):
            origin = self.client.withheld[len(self._withheld_seen)]
            self._withheld_seen.append(origin)
            self.logger.info(
                "stream %s: a request went to %s, another origin than the stream's, without "
                "its credentials (list the origin in `trusted_origins` to send them)",
                self.spec.name,
                origin,
            )

    def fetch(self, request: PageRequest) -> tuple[Response, int]:
        """Fetch one page, retrying transient failures; returns the response and tries."""
        target = self.target(request)
        tries = 0
        retried_until: float | None = None  # when the last retry's wait ends

        def attempt(number: int) -> Response:
            nonlocal tries
            tries = number
            sink = BodySpool() if self._streams else None
            if self.server_limit is not None:
                self.server_limit.acquire(not_before=retried_until)
            try:
                if self.limiter is None:
                    return self.client.fetch(target, sink, data=request.data)
                with self.limiter:
                    return self.client.fetch(target, sink, data=request.data)
            except BaseException:
                if sink is not None:  # a failed try's body never reaches the next one
                    sink.close()
                raise
            finally:
                if self.server_limit is not None:
                    self.server_limit.release()
                self._report_withheld()

        def on_retry(failed: int, wait: float, error: RequestError) -> None:
            nonlocal retried_until
            retried_until = time.monotonic() + wait
            self.stats.add(retries=1)
            self.logger.warning(
                "stream %s: try %d of %d failed (%s); retrying in %.2f s: %s %s",
                self.spec.name,
                failed,
                self.policy.tries,
                error.reason.rstrip("."),
                wait,
                self.spec.method,
                error.url,
            )

        response = call_with_retries(attempt, self.policy, on_retry=on_retry, sleep=self.sleep)
        return response, tries

    def read(self, response: Response) -> tuple[JSON, Records]:
        """A page's body as `result_format` reads it, and its records.

        The records have every secret of the config masked (a server may echo our URL
        or headers back); nothing is masked by field name, since a record is the API's
        data. The body, which only the page expression sees, is kept whole so that a
        next link carrying a token still works.
        """
        spool = response.spool
        if spool is not None:  # a spilled body: streamed into spooled records, or whole
            try:
                spooled = (
                    streaming.stream_records(
                        response, self.decoder, self.records_path, self.redactor
                    )
                    if self._streams
                    else None
                )
                if spooled is not None:
                    return None, spooled
                response = streaming.whole(response)
            finally:
                spool.close()
        if self.spec.method == "HEAD" or not response.body:
            return None, []
        content_type = response.header("Content-Type")
        body, records = self.decoder.read(response.body, content_type, self.records_path)
        if self.spec.result_format == "auto":
            self._note_json_labelled_otherwise(body, content_type)
        if self.redactor.mentions_secret(response.body):
            records = [self.redactor.literals(record) for record in records]
        return body, records

    def read_exact(self, response: Response) -> Fetched | None:
        """The page written from its own bytes, when its records are proven exact.

        Only for a JSON body read whole, with no secret in it (nothing to mask), a
        `records_path` of plain keys and a `page` that does not read the body; the body
        is then parsed only if something asks for it (:class:`Page`).
        """
        check = self._exact() if self._exact is not None else None
        body = response.body
        if check is None or response.spool is not None or not body:
            return None
        if self.decoder.format_for(response.header("Content-Type")) != "json":
            return None
        array = records_array(body, self._exact_keys)
        spans = check.spans(array) if array is not None else None
        # (the secret scan last: a declined page's `read` makes its own, one scan either way)
        if spans is None or self.redactor.mentions_secret(body):
            return None
        return Fetched(
            response,
            None,
            [],
            exact=Exact(spans, check),
            unparsed=Unparsed(lambda: self.read(response)),
        )

    def _note_json_labelled_otherwise(self, body: JSON, content_type: str | None) -> None:
        """Say once per stream when `auto` met JSON under a Content-Type that is not JSON."""
        fmt = auto_format(content_type)
        if fmt != "text" or "json-labelled-otherwise" in self.notes:
            return  # (`auto` parses JSON under a javascript-ish type itself; CSV, JSON
            # Lines and XML types are read as those)
        label = f"`{content_type}`" if content_type else "no Content-Type"
        if self.records_path is not None:
            self.notes.add("json-labelled-otherwise")
            self.logger.warning(
                "stream %s: the body has %s, which `result_format: auto` reads as %s, but "
                "`records_path` selects from JSON and the body is JSON: read as JSON. Set "
                "`result_format: json` to say so.",
                self.spec.name,
                label,
                fmt,
            )
        elif looks_like_json(body):
            self.notes.add("json-labelled-otherwise")
            self.logger.warning(
                "stream %s: the body has %s but is JSON; `result_format: auto` reads it as "
                'text, as r.http does, so each page is one record {"value": "<the text>"}. '
                "Set `result_format: json` (and `records_path`) to read its records.",
                self.spec.name,
                label,
            )

    def get(self, request: PageRequest) -> tuple[Fetched, int]:
        """Fetch and read one page (or take it from `prefetched`); with its tries."""
        cached = self._take_prefetched(self.key(request))
        if cached is not None:
            if cached.response.auth is not None:  # keep the sample's digest nonce going
                self.client.auth = cached.response.auth
            return cached, 1
        response, tries = self.fetch(request)
        exact = self.read_exact(response)
        if exact is not None:
            return exact, tries
        try:
            body, records = self.read(response)
        except ResponseFormatError as exc:  # in r.http's envelope, as every request error
            target = self.target(request)
            raise exc.enveloped(
                self.spec.method, self.redactor.url(target), self.redactor.url(response.url)
            ) from None
        return Fetched(response, body, records), tries

    def _take_prefetched(self, target: str) -> Fetched | None:
        """The next sampled page, if it is the one asked for; else the sample is dropped."""
        if not self._claimed:
            self._claimed = True
            if self.prefetched is not None:
                self._sampled = self.prefetched.claim(target)
        sampled = self._sampled
        if not sampled:
            return None
        next_target, fetched = sampled[0]
        if next_target != target:  # the chain went elsewhere: the rest is out of order
            drop_fetched(sampled)
            sampled.clear()
            return None
        sampled.popleft()
        return fetched

    def where(self, number: int) -> str:
        """The place an error of page `number` names: ``stream s, for_each[1], page 3``."""
        label = f", {self.label}" if self.label else ""
        return f"stream {self.spec.name}{label}, page {number}"

    def _fetch_ahead(self, request: PageRequest) -> Future[tuple[Fetched, int]] | None:
        if not self.read_ahead:
            return None
        if self._helper is None:
            self._helper = ThreadPoolExecutor(1, thread_name_prefix="rhttp-read-ahead")
        return self._helper.submit(self.get, request)

    def first_page(
        self, start: PageRequest | None = None, done: int = 0
    ) -> tuple[str, Fetched] | None:
        """Fetch and read the page :meth:`pages` would start with, deciding nothing
        about what follows: its `prefetched` key and what was fetched; None when the
        chain makes no request.

        Raises:
            RHTTPError: the request failed, located as :meth:`pages` locates it.
        """
        paginator = Paginator(self.spec, self.redactor, now=self.now)
        request = paginator.resume(start, done) if start is not None else paginator.first()
        if request is None:
            return None
        try:
            fetched, _ = self.get(request)
        except RHTTPError as exc:
            exc.locate(self.where(paginator.requests))
            raise
        return self.key(request), fetched

    def pages(self, start: PageRequest | None = None, done: int = 0) -> t.Iterator[Page]:
        """Yield every page of the chain, in order.

        Args:
            start: resume at this request (it was not yet fetched).
            done: how many requests the chain had made before `start`.
        """
        paginator = Paginator(self.spec, self.redactor, now=self.now)
        request = paginator.resume(start, done) if start is not None else paginator.first()
        # With read-ahead, every request of the chain is made on the helper thread: auth
        # state that requests keeps per thread (a digest nonce) then carries over.
        ahead = self._fetch_ahead(request) if request is not None else None
        while request is not None:
            number = paginator.requests  # this request's number (it was admitted)
            try:
                fetched, tries = ahead.result() if ahead is not None else self.get(request)
            except RHTTPError as exc:
                exc.locate(self.where(number))
                raise
            failure: Exception | None = None
            if fetched.response.skipped_by is not None:  # a `skip` rule ends the chain
                step = Step(next=None)
                self._report_skip(fetched.response, number)
            else:
                try:
                    body = fetched.unparsed if fetched.unparsed is not None else fetched.body
                    step = paginator.step(request, fetched.response, body)
                except Exception as exc:  # emit this complete page first, then fail
                    step, failure = Step(next=None), exc
                    if isinstance(exc, RHTTPError):
                        exc.locate(self.where(number))
            self.stats.add(pages=1)  # records are counted as the stream emits them
            ahead = self._fetch_ahead(step.next) if step.next is not None else None
            yield Page(
                number=number,
                request=request,
                response=fetched.response,
                body=fetched.body,
                records=fetched.records,
                step=step,
                tries=tries,
                failure=failure,
                exact=fetched.exact,
                unparsed=fetched.unparsed,
            )
            if failure is not None:
                raise failure
            request = step.next
