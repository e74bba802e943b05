"""Fetch a few pages of an API through the run layer and propose a stream spec for it.

Every request goes through what a run uses: a :class:`~tap_rhttp.run.context.RunContext`
built from a generated config (so the config checks, the redactor and the templates apply),
and a :class:`~tap_rhttp.run.chain.Chain` per attempt at paging (timeouts, reattempts with
backoff, redirects, cookies, the loop guard, `page_limit`). A response is fetched once: a
later chain that starts at the same URL is handed the page through the chain's
``prefetched`` pages, re-read with its own `records_path`. The number of requests is capped
(``max_requests``), retries of one request counting as one.

How a proposal is made:

1. the first page, as the user gave the URL: where its records are
   (:func:`~tap_rhttp.wizard.detect.find_records`);
2. the ways it might page (:func:`~tap_rhttp.wizard.detect.candidates`), each tried as
   the spec a run would use with ``page_limit: 2``: it is kept only when the second page
   arrives and brings records the first did not have. The first that passes wins;
3. the chosen spec read on to ``pages`` pages; every record of every page feeds the
   primary key, the replication key and the inferred schema.

Rejected: guessing pagination from the first page alone. An API that ignores an unknown
``page`` param answers page 1 again, and a cursor field may want a differently named param:
only a real next page tells.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import typing as t
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import orjson

from tap_rhttp.errors import PaginationError, RHTTPError
from tap_rhttp.paging.link import header_info
from tap_rhttp.redact import Redactor
from tap_rhttp.run.chain import Chain, Fetched
from tap_rhttp.run.context import RunContext
from tap_rhttp.schema.infer import infer_schema
from tap_rhttp.wizard import detect

if t.TYPE_CHECKING:
    from tap_rhttp.http.client import Response
    from tap_rhttp.paging.paginator import PageRequest
    from tap_rhttp.run.chain import Page
    from tap_rhttp.types import JSON

#: Pages read for the proposal when not told otherwise: the first, the one that verifies
#: the pagination, and one more.
DEFAULT_PAGES = 3
#: Requests made in all (each candidate costs one or two) when not told otherwise.
DEFAULT_MAX_REQUESTS = 12

_OPTION_ORDER = (
    "name",
    "url",
    "method",
    "params",
    "header",
    "auth",
    "timeout",
    "page",
    "page_limit",
    "records_path",
    "primary_keys",
    "replication_key",
    "schema",
)


class BudgetSpent(Exception):
    """No request is left of ``max_requests``."""


def secret_name(name: str, taken: t.Container[str]) -> str:
    """A `secrets` key for a value given under `name` (``X-Api-Key`` -> ``x_api_key``)."""
    base = "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_") or "secret"
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}_{n}", n + 1
    return candidate


def _value(text: str) -> JSON:
    """A param value from the command line: an integer when it reads back the same."""
    try:
        number = int(text)
    except ValueError:
        return text
    return number if str(number) == text else text


@dataclasses.dataclass(frozen=True)
class Start:
    """The spec to start from, secrets as ``{{ secrets['name'] }}`` references.

    Attributes:
        spec: the stream spec (``name``, ``url`` and what the user gave), secret-free.
        secrets: the secret values by name; used for requests, never printed.
        given: for each secret, what it was given as (``--bearer``), for the note
            that says where to put it.
    """

    spec: dict[str, JSON]
    secrets: dict[str, str]
    given: dict[str, str]

    @classmethod
    def build(
        cls,
        url: str,
        *,
        name: str,
        params: t.Sequence[tuple[str, str]] = (),
        headers: t.Sequence[tuple[str, str]] = (),
        bearer: str | None = None,
        basic: tuple[str, str] | None = None,
        digest: tuple[str, str] | None = None,
        timeout: float | None = None,
    ) -> Start:
        """The start spec from what the command line gave; secrets moved into `secrets`.

        Sensitive query keys (in the URL or given as params) and sensitive headers, by
        the redactor's rules, become secret references, and so do auth values and a
        password in the URL's userinfo.
        """
        rules = Redactor()
        secrets: dict[str, str] = {}
        given: dict[str, str] = {}

        def secret(key: str, value: str, source: str) -> str:
            key = secret_name(key, secrets)
            secrets[key], given[key] = value, source
            return f"{{{{ secrets[{key!r}] }}}}"

        parts = urlsplit(url if "://" in url else f"http://{url}")
        auth: dict[str, JSON] | None = None
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, netloc = netloc.rsplit("@", 1)
            user, _, password = userinfo.partition(":")
            basic = basic or (user, password)
        query: dict[str, JSON] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if rules.is_sensitive_param(key):
                query[key] = secret(key, value, f"`{key}` in the URL")
        # the URL's own query stays as written, less the secret keys moved to params
        keep_query = "&".join(
            piece
            for piece in parts.query.split("&")
            if piece and not rules.is_sensitive_param(piece.split("=", 1)[0])
        )
        spec: dict[str, JSON] = {
            "name": name,
            "url": urlunsplit(parts._replace(netloc=netloc, query=keep_query)),
        }
        for key, value in params:
            if rules.is_sensitive_param(key):
                query[key] = secret(key, value, f"--param {key}=...")
            else:
                query[key] = _value(value)
        if query:
            spec["params"] = query
        header: dict[str, JSON] = {}
        for key, value in headers:
            if rules.is_sensitive_header(key):
                header[key] = secret(key, value, f"--header '{key}: ...'")
            else:
                header[key] = value
        if header:
            spec["header"] = header
        if bearer is not None:
            auth = {"type": "bearer", "token": secret("token", bearer, "--bearer")}
        elif digest is not None:
            user, password = digest
            auth = {"type": "digest", "user": user}
            auth["pass"] = secret("password", password, "--digest")
        elif basic is not None:
            user, password = basic
            auth = {"type": "basic", "user": user}
            auth["pass"] = secret("password", password, "--basic")
        if auth is not None:
            spec["auth"] = auth
        if timeout is not None:
            spec["timeout"] = timeout
        return cls(spec, secrets, given)


class _Budget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sent = 0

    @property
    def left(self) -> int:
        return self.limit - self.sent


class _BudgetedChain(Chain):
    """A chain that counts its requests against the probe's budget, and answers a
    request the probe already made (for another candidate spec) from `seen`."""

    budget: _Budget
    seen: dict[str, Response]

    def get(self, request: PageRequest) -> tuple[Fetched, int]:
        response = self.seen.get(self.target(request))
        if response is not None:
            return Fetched(response, *self.read(response)), 1
        return super().get(request)

    def fetch(self, request: PageRequest) -> tuple[Response, int]:
        if self.budget.left <= 0:
            raise BudgetSpent(f"the request budget ({self.budget.limit}) is spent")
        self.budget.sent += 1
        return super().fetch(request)


@dataclasses.dataclass
class Attempt:
    """What following a spec gave: the pages read, and the error that ended it, if any."""

    pages: list[Page]
    error: Exception | None = None

    @property
    def ended(self) -> bool:
        """The chain ended by itself: `page` returned null on the last page read."""
        return (
            self.error is None
            and bool(self.pages)
            and self.pages[-1].next is None
            and self.pages[-1].step.evaluated
        )


class Probe:
    """Makes the requests of a proposal, each through a chain of the run layer.

    Args:
        start: the spec to start from.
        max_requests: requests allowed in all.
        logger: where retries are logged (its handlers should redact: see ``redactor``).
        sleep: the wait between tries (tests inject a fake).

    Raises:
        ConfigErrors: the start spec is not a valid spec (a bad URL, say).
    """

    def __init__(
        self,
        start: Start,
        *,
        max_requests: int = DEFAULT_MAX_REQUESTS,
        logger: logging.Logger | None = None,
        sleep: t.Callable[[float], None] = time.sleep,
    ) -> None:
        self.start = start
        self.budget = _Budget(max_requests)
        self.sleep = sleep
        self.logger = logger or logging.getLogger("tap-rhttp")
        self.context = self._context(start.spec)
        self.responses: dict[str, Response] = {}

    @property
    def redactor(self) -> Redactor:
        """Masks every secret of the start spec."""
        return self.context.redactor

    @property
    def sent(self) -> int:
        """Requests made so far."""
        return self.budget.sent

    @property
    def left(self) -> int:
        """Requests still allowed."""
        return self.budget.left

    def _context(self, spec: dict[str, JSON]) -> RunContext:
        return RunContext(
            {"secrets": dict(self.start.secrets), "streams": [spec]},
            logger=self.logger,
            sleep=self.sleep,
        )

    def spec(self, options: t.Mapping[str, JSON]) -> dict[str, JSON]:
        """The start spec with `options` over it (``params`` merged key by key)."""
        spec = {**self.start.spec, **options}
        if "params" in options:
            base = t.cast("dict[str, JSON]", self.start.spec.get("params") or {})
            spec["params"] = {**base, **t.cast("dict[str, JSON]", options["params"])}
        if not spec.get("params"):
            spec.pop("params", None)
        return {key: spec[key] for key in sorted(spec, key=_option_rank)}

    def follow(self, options: t.Mapping[str, JSON], pages: int) -> Attempt:
        """Read up to `pages` pages of the start spec with `options` (``page`` among them).

        Returns:
            The pages read and the error that stopped the chain early (a failed
            request, a `page` error, the request budget), if any.

        Raises:
            ConfigErrors: the options make an invalid spec (a bug of the caller).
        """
        spec = self.spec(options)
        if "page" in spec:
            spec["page_limit"] = pages
        context = self._context(spec)
        (task,) = context.stream(str(spec["name"])).tasks()
        if task.error is not None:
            return Attempt([], task.error)
        assert task.spec is not None
        chain = _BudgetedChain(task.spec, context.redactor, self.logger, sleep=self.sleep)
        chain.budget = self.budget
        chain.seen = self.responses
        attempt = Attempt([])
        feed = t.cast("t.Generator[Page, None, None]", chain.pages())
        try:
            for page in feed:
                attempt.pages.append(page)
                self.responses.setdefault(chain.target(page.request), page.response)
                if len(attempt.pages) >= pages:
                    break
        except (RHTTPError, BudgetSpent) as exc:
            attempt.error = exc
        finally:
            feed.close()
            chain.close()
        return attempt

    def first_line(self, error: Exception) -> str:
        """An error's first line, redacted."""
        return self.redactor.text(str(error)).split("\n", 1)[0]


def _option_rank(name: str) -> int:
    return _OPTION_ORDER.index(name) if name in _OPTION_ORDER else _OPTION_ORDER.index("page")


def _fingerprint(record: dict[str, JSON]) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


@dataclasses.dataclass
class Tried:
    """A pagination candidate and how its verification went."""

    candidate: detect.Candidate
    verified: bool
    outcome: str


@dataclasses.dataclass
class Proposal:
    """A stream spec for the API, with a reason for each choice.

    Attributes:
        spec: the stream spec (secret references only).
        reasons: (option, why) in the order the options appear.
        tried: every pagination candidate tried, in order.
        paged: whether a way to page was verified.
        pages: pages read for the proposal.
        records: records seen on them.
        requests: requests made in all.
        notes: anything else worth saying (a malformed Link header, the budget).
    """

    spec: dict[str, JSON]
    reasons: list[tuple[str, str]]
    tried: list[Tried]
    paged: bool
    pages: int
    records: int
    requests: int
    notes: list[str]


def _verify(probe: Probe, attempt: Attempt) -> tuple[bool, str]:
    """Whether a candidate's chain reached a second page with new records; in words."""
    if not attempt.pages:
        error = attempt.error or RuntimeError("no page")
        return False, f"the first request failed: {probe.first_line(error)}"
    first = attempt.pages[0]
    if first.failure is not None:
        return False, f"`page` failed on the first page: {probe.first_line(first.failure)}"
    if len(attempt.pages) == 1:
        if attempt.error is not None:
            return False, f"page 2 failed: {probe.first_line(attempt.error)}"
        return False, "`page` returned null after the first page: nothing to follow"
    second = attempt.pages[1]
    if not second.records:
        return False, "page 2 came back without records"
    seen = {_fingerprint(r) for r in first.records}
    repeated = sum(1 for r in second.records if _fingerprint(r) in seen)
    if repeated:
        return False, f"page 2 repeated {repeated} record(s) of page 1: the API ignores it"
    return True, f"page 2 brought {len(second.records)} new record(s)"


def propose(probe: Probe, *, pages: int = DEFAULT_PAGES) -> Proposal:
    """Read the API and propose a spec.

    Raises:
        RHTTPError: the first request failed (with r.http's envelope), or the body
            could not be read; there is nothing to propose from.
    """
    notes: list[str] = []
    first = probe.follow({}, 1)
    if first.error is not None:
        raise first.error
    page = first.pages[0]
    records = detect.find_records(page.body)
    base: dict[str, JSON] = {}
    reasons: list[tuple[str, str]] = []
    if records.records_path is not None:
        base["records_path"] = records.records_path
    reasons.append(("records_path", records.reason))
    rows = probe.follow(base, 1).pages[0].records  # the first page again, from memory
    try:
        header = header_info(page.response.headers, parse_link=True)
    except PaginationError as exc:
        header = header_info(page.response.headers, parse_link=False)
        notes.append(f"the Link header cannot be read ({exc}); `link-next` was not tried")
    params = t.cast("dict[str, JSON]", probe.start.spec.get("params") or {})
    options = detect.candidates(
        header=header, body=page.body, records=records, record_list=list(rows), params=params
    )
    tried: list[Tried] = []
    chosen: tuple[detect.Candidate, dict[str, JSON]] | None = None
    for candidate in options:
        if probe.left <= 0:
            notes.append(
                f"stopped trying after {probe.sent} requests (--max-requests); "
                f"{len(options) - len(tried)} way(s) to page were not tried"
            )
            break
        trial = {**base, "page": candidate.page}
        if candidate.params:
            trial["params"] = dict(candidate.params)
        verified, outcome = _verify(probe, probe.follow(trial, 2))
        tried.append(Tried(candidate, verified, outcome))
        if verified:
            chosen = (candidate, trial)
            break
    final = dict(base)
    if chosen is not None:
        candidate, trial = chosen
        final = trial
        read = probe.follow(trial, max(pages, 2))
        where = f"{len(read.pages)} page(s) read"
        if read.ended:
            where = f"`page` returned null after page {len(read.pages)}: the stop works"
        elif read.error is not None:
            notes.append(
                f"reading on stopped at page {len(read.pages) + 1}: {probe.first_line(read.error)}"
            )
        reasons.append(("page", f"{candidate.reason}; verified: {tried[-1].outcome}; {where}"))
        reasons.append(("page_limit", "-1: every page, until `page` returns null"))
        final["page_limit"] = -1
        all_pages = read.pages
    else:
        all_pages = probe.follow(base, 1).pages
        why = "no way to page was confirmed, so one request per run"
        if not options:
            why = "nothing on the first page suggests pagination, so one request per run"
        reasons.append(("page", why))
    seen = [record for p in all_pages for record in p.records]
    key, why = detect.primary_key(seen)
    if key is not None:
        final["primary_keys"] = [key]
    reasons.append(("primary_keys", why))
    schema = infer_schema(seen)
    rkey, why = detect.replication_key(seen, schema)
    if rkey is not None:
        final["replication_key"] = rkey
    reasons.append(("replication_key", why))
    final["schema"] = schema
    reasons.append(
        (
            "schema",
            f"inferred from the {len(seen)} record(s) of {len(all_pages)} page(s); declared, "
            "the column types stay the same from run to run",
        )
    )
    spec = probe.spec(final)
    RunContext({"secrets": dict(probe.start.secrets), "streams": [spec]})  # valid as given
    return Proposal(
        spec=spec,
        reasons=reasons,
        tried=tried,
        paged=chosen is not None,
        pages=len(all_pages),
        records=len(seen),
        requests=probe.sent,
        notes=notes,
    )
