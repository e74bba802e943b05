"""Where each chain of a stream stands, as it goes into STATE: the resume position.

After each completely emitted page the stream saves, under its STATE key ``rhttp``, the
next request of every chain in progress and which chains are finished, and a hash of the
spec so a changed config never resumes from a stale position.

The position is exact: every param the next request carries is saved as it is, whatever
its name (``pagination_token``, ``$skiptoken``, ``syncToken``, ``resumptionToken``,
``start_key`` are cursors, and a resume without them would start over). Only secret
values are withheld: a param holding a known secret (in any spelling), or under one of
:data:`~tap_rhttp.redact.CREDENTIAL_KEYS`, or under a name the config marked secret
with the config's own value. Such a param is saved as ``key=***REDACTED***`` and named
in ``withheld``; a resumed run puts the config's value back (from the spec's ``params``,
its ``url`` or its query-string API key). A secret the config cannot give back (the
server put one of our secrets into a next link under another name, or into the path)
means the position cannot be saved: the chain restarts from its first page on resume,
and a warning says so. When pagination moved the request body (``page`` returned
``data``), the position holds that body too (``data``); a body holding a secret is never
saved. STATE files are edited and copied between environments, so a saved position on
another origin than the spec's (and not in its ``trusted_origins``) is ignored, with one
WARNING: the chain starts from its first page.

A stream without a parent (:class:`ResumeState`)::

    {"spec": "<hash>",
     "chains": {"<key>": {"url": ..., "params": {...}, "override": [...],
                          "requests": 3, "skip": 0, "withheld": [...], "data": {...}}},
     "done": ["<key>", ...]}

- ``<key>`` names a chain: ``-`` for a stream's one chain, the index of a `for_each`
  value (``done`` lists the finished ones, so a resumed run never fetches them again).
- ``requests`` is how many requests the chain had made before the saved one (so
  `page_limit` keeps counting), ``skip`` how many of the saved page's records were
  already emitted. ``skip`` is 0 except under BATCH messages, where a batch file can
  end in the middle of a page: the resumed run fetches that page again and drops the
  records the batch already holds.

A child stream (`parent`, :class:`ChildResume`) is driven by its parent, one parent
page at a time: before the parent emits a page it runs the children of that page's
rows (in windows of :data:`ROW_WINDOW` rows, `max_concurrency` at once). Its position
is therefore relative to the parent's, and stays bounded whatever the number of parent
rows::

    {"spec": "<child hash>", "parent_spec": "<parent hash>",
     "pages": {"<parent chain>": 7},
     "page": {"chain": "<parent chain>", "number": 8, "digest": "<hash of its rows>",
              "rows": 120, "done": ["123", "125"]},
     "chains": {"<row index>": {...a position as above...}},
     "done": []}

- ``pages``: for each parent chain in progress, the children of its pages up to this
  number are finished (a resumed parent that replays those pages does not run them
  again). An entry goes when the parent finishes that chain.
- ``page``: the parent page whose rows are in progress: rows ``0 .. rows-1`` are
  finished, and so are those listed in ``done`` (at most :data:`ROW_WINDOW`), each
  row being its index in the page. ``digest`` fingerprints the page's rows (the
  parent's primary keys, else the whole rows): when the resumed parent page differs,
  its rows all run again (records may repeat, none is lost).
- ``chains``: the position of each row of that page whose chain is in flight (at most
  :data:`ROW_WINDOW`).

The parent's own position names the page in progress until that page's records are
emitted, so after a kill the resumed parent fetches that page again, skips its finished
rows, resumes the rows in flight and runs the rest. A child may start the rows of the
parent's next page early (see ``StreamRun.start_rows``), but only of a page that is
:meth:`ChildResume.untouched`, and nothing of them is emitted, nor enters this position,
before that page's turn. Like every page position, this
assumes the API answers the same request with the same page within one resume.
"""

from __future__ import annotations

import hashlib
import typing as t
from urllib.parse import unquote_plus

import orjson

from tap_rhttp.formats.readers import dump_json
from tap_rhttp.http.origins import OriginPolicy, origin_of, origin_text
from tap_rhttp.http.urls import encode_pairs
from tap_rhttp.paging.paginator import PageRequest
from tap_rhttp.redact import MASK, is_credential_key

if t.TYPE_CHECKING:
    import logging

    from tap_rhttp.config.spec import RequestSpec
    from tap_rhttp.redact import Redactor
    from tap_rhttp.run.chain import Page
    from tap_rhttp.types import JSON

#: Parent rows whose child chains are started together (the bound on a child's STATE).
ROW_WINDOW = 256


def spec_hash(spec: RequestSpec, redactor: Redactor, shard: str = "") -> str:
    """A short, secret-free fingerprint of a spec (and of the run's shard, if any), to
    detect a changed config or a STATE of another shard.

    Masked with what the config alone teaches the redactor (``Redactor.config_view``), so
    it is the same in every run of the same config, whatever a run learns on the way.
    """
    shown = redactor.config_view().value(dict(spec.raw))
    shown.pop("auth", None)
    if shard:
        shown["__shard__"] = shard
    text = orjson.dumps(shown, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(text).hexdigest()[:16]


def rows_digest(rows: t.Iterable[dict[str, JSON]], keys: t.Sequence[str]) -> str:
    """A fingerprint of a parent page's rows: their primary keys, else the whole rows."""
    digest = hashlib.sha256()
    for row in rows:
        ident = [row.get(k) for k in keys] if keys else row
        digest.update(dump_json(ident, default=str, sort_keys=True))  # big integers too
        digest.update(b"\n")
    return digest.hexdigest()[:16]


class ResumeState:
    """Where each chain of a stream stands, as it goes into STATE (shape: module docs)."""

    KEY = "rhttp"

    def __init__(
        self,
        spec: RequestSpec,
        redactor: Redactor,
        *,
        track_done: bool,
        shard: str = "",
        logger: logging.Logger | None = None,
    ) -> None:
        self.spec = spec
        self.logger = logger
        self._unsaved_warned: set[str] = set()
        self._warned_origin = False
        self.redactor = redactor
        self.hash = spec_hash(spec, redactor, shard)
        self.track_done = track_done
        self.chains: dict[str, dict[str, JSON]] = {}
        self.done: list[str] = []
        #: Windows: the span the run's windows cover, and their keys in order.
        self.plan: dict[str, str] | None = None
        self.order: list[str] = []
        self.done_through: str | None = None
        self._front = 0

    def _matches(self, saved: JSON, logger: logging.Logger | None) -> bool:
        if not isinstance(saved, dict):
            return False
        if saved.get("spec") != self.hash:
            if logger is not None:
                logger.warning(
                    "stream %s: STATE holds a resume position for a different version of "
                    "this spec (the config changed); starting from the first page.",
                    self.spec.name,
                )
            return False
        return True

    def load(self, saved: JSON, logger: logging.Logger | None) -> None:
        """Adopt a saved position, unless the spec changed since it was saved."""
        self.logger = logger or self.logger
        if not self._matches(saved, logger):
            return
        assert isinstance(saved, dict)
        chains = saved.get("chains")
        self.chains = dict(chains) if isinstance(chains, dict) else {}
        done = saved.get("done")
        self.done = [str(d) for d in done] if isinstance(done, list) else []
        plan = saved.get("windows")
        if isinstance(plan, dict) and all(isinstance(plan.get(k), str) for k in ("start", "end")):
            self.plan = {"start": plan["start"], "end": plan["end"]}
        through = saved.get("done_through")
        self.done_through = through if isinstance(through, str) else None

    def is_done(self, key: str) -> bool:
        """Whether a chain finished in the run this position was saved by."""
        if self.done_through is not None and key <= self.done_through:
            return True  # window keys (ISO 8601 UTC, one format) sort as their instants
        return key in self.done

    def start_of(self, key: str, spec: RequestSpec) -> tuple[PageRequest | None, int, int]:
        """The saved next request of a chain, with the spec's own params merged back;
        with the requests made before it and the records of its page already emitted."""
        saved = self.chains.get(key)
        if not saved:
            return None, 0, 0
        url = str(saved.get("url", ""))
        if not OriginPolicy(spec.url, spec.trusted_origins).trusts(url):
            self._ignore_foreign(url, spec)
            return None, 0, 0
        params = {**dict(spec.params), **saved.get("params", {})}
        withheld = saved.get("withheld")
        if withheld:
            restored = _restore(url, {str(k) for k in withheld}, _config_parts(spec))
            if restored is None:
                return None, 0, 0
            url = restored
        request = PageRequest(
            url=url,
            params=params,
            override=frozenset(saved.get("override", ())),
            data=saved.get("data", spec.body),
        )
        skip = saved.get("skip", 0)
        return request, int(saved.get("requests", 0)), skip if isinstance(skip, int) else 0

    def _ignore_foreign(self, url: str, spec: RequestSpec) -> None:
        if self._warned_origin or self.logger is None:
            return
        self._warned_origin = True
        found = origin_of(url)
        own = origin_of(spec.url)
        self.logger.warning(
            "stream %s: STATE holds a resume position on %s, not on the stream's origin %s "
            "nor a trusted one; it is ignored and the chain starts from its first page.",
            spec.name,
            origin_text(found) if found is not None else "no valid origin",
            origin_text(own) if own is not None else spec.url,
        )

    def _secret_free(self, request: PageRequest, spec: RequestSpec) -> dict[str, JSON] | None:
        """The next request as STATE may hold it, or None when a secret cannot be withheld."""
        redactor = self.redactor
        base, sep, query = request.url.partition("?")
        if redactor.mentions_secret(base) or redactor.url(base) != base:
            return None  # a secret in the path or the userinfo: cannot be saved safely
        config = _config_parts(spec)
        parts: list[str] = []
        withheld: list[str] = []
        for part in query.split("&") if sep else []:
            raw_key, _, value = part.partition("=")
            key = unquote_plus(raw_key)
            secret = bool(value) and (
                redactor.mentions_secret(value)
                or is_credential_key(key)
                or (config.get(key) == part and redactor.is_credential_param(key))
            )
            if not secret:
                parts.append(part)
                continue
            if key not in config:
                return None
            parts.append(f"{raw_key}={MASK}")
            withheld.append(key)
        url = f"{base}?{'&'.join(parts)}" if sep else base
        own = dict(spec.params)
        params: dict[str, JSON] = {}
        for key, value in request.params.items():
            if own.get(key, object()) == value:
                continue  # the config's own value: merged back on resume
            for item in value if isinstance(value, list) else (value,):
                if isinstance(item, (str, int, float)) and not isinstance(item, bool):
                    text = str(item)
                    if text and (redactor.mentions_secret(text) or is_credential_key(key)):
                        return None
            params[key] = value
        # The names of the config's own secret params stay out too, as their values do.
        override = sorted(
            k
            for k in request.override
            if k in params or not (k in own and redactor.is_credential_param(k))
        )
        saved: dict[str, JSON] = {"url": url, "params": params, "override": override}
        if withheld:
            saved["withheld"] = sorted(set(withheld))
        if request.data != spec.body:
            if redactor.value(request.data) != request.data or redactor.mentions_secret(
                dump_json(request.data, default=str)
            ):
                self._warn_unsaved(
                    "body",
                    "the next request's body, as `page` moved it, holds a secret (a value of "
                    "the config's secrets, or a credential field), so no resume position is "
                    "saved in STATE for it",
                )
                return None  # the body holds a secret: no position at all, rather than that
            saved["data"] = request.data
        return saved

    def _warn_unsaved(self, key: str, why: str) -> None:
        """One WARNING per chain (or reason) that cannot keep a resume position."""
        if self.logger is None or key in self._unsaved_warned:
            return
        self._unsaved_warned.add(key)
        self.logger.warning(
            "stream %s: %s; a resumed run restarts this chain from its first page.",
            self.spec.name,
            why,
        )

    def begin(self, key: str, page: Page, spec: RequestSpec, skip: int) -> dict[str, JSON] | None:
        """A page's records are about to be emitted one by one (BATCH mode): its own
        request becomes the chain's position, ``skip`` counting its records emitted.

        Returns the position, whose ``skip`` the caller raises before each record it
        hands over; None when the request cannot be saved (a secret in its path).
        """
        saved = self._secret_free(page.request, spec)
        if saved is None:
            self.chains.pop(key, None)
            return None
        saved["requests"] = page.number - 1
        saved["skip"] = skip
        self.chains[key] = saved
        return saved

    def advance(self, key: str, page: Page, spec: RequestSpec) -> None:
        """Record a completely emitted page: the chain's next request, or its end."""
        if page.next is None:
            self.finish(key)
            return
        saved = self._secret_free(page.next, spec)
        if saved is None:
            self.chains.pop(key, None)
            self._warn_unsaved(
                key,
                "the next request carries a secret that the config cannot give back (in "
                "its path, or under a param the config does not set), so its position is "
                "not saved in STATE",
            )
            return
        saved["requests"] = page.number
        self.chains[key] = saved

    def finish(self, key: str) -> None:
        """A chain is over (or skipped)."""
        self.chains.pop(key, None)
        if self.track_done and key not in self.done:
            self.done.append(key)

    def clear(self) -> None:
        """Every chain is over: nothing to resume."""
        self.chains.clear()
        self.done.clear()
        self.done_through = None
        self._front = 0

    def _compress(self) -> None:
        """Windows: the finished ones at the front become one `done_through` key.

        `_front` remembers how far the front is known finished, so each call only looks
        at the windows finished since the last one.
        """
        if not self.order or not self.done:
            return
        finished = set(self.done)
        front = self._front
        while front < len(self.order) and self.is_done_key(self.order[front], finished):
            front += 1
        self._front = front
        if front:
            through = self.order[front - 1]
            self.done_through = through
            self.done = [key for key in self.done if key > through]

    def is_done_key(self, key: str, finished: set[str]) -> bool:
        """`is_done` with the finished keys given as a set."""
        if self.done_through is not None and key <= self.done_through:
            return True
        return key in finished

    def to_state(self) -> dict[str, JSON] | None:
        """The STATE entry, or None when nothing is in progress."""
        self._compress()
        if not self.chains and not self.done and self.done_through is None:
            return None
        entry: dict[str, JSON] = {
            "spec": self.hash,
            "chains": self._positions(),
            "done": list(self.done),
        }
        if self.plan is not None:
            entry["windows"] = dict(self.plan)
        if self.done_through is not None:
            entry["done_through"] = self.done_through
        return entry

    def _positions(self) -> dict[str, JSON]:
        # copies: a live position (see `begin`) goes on changing after it is published
        return {key: dict(position) for key, position in self.chains.items()}


class ChildResume(ResumeState):
    """A child stream's position, relative to its parent's (shape: module docs).

    Its chains are keyed by the row's index in the parent page in progress.
    """

    def __init__(
        self, spec: RequestSpec, redactor: Redactor, parent_hash: str, shard: str = ""
    ) -> None:
        super().__init__(spec, redactor, track_done=True, shard=shard)
        self.parent_hash = parent_hash
        self.pages: dict[str, int] = {}
        self.page: dict[str, JSON] | None = None
        self.rows = 0
        self.finished: set[int] = set()

    def load(self, saved: JSON, logger: logging.Logger | None) -> None:
        self.logger = logger or self.logger
        if not self._matches(saved, logger):
            return
        assert isinstance(saved, dict)
        if saved.get("parent_spec") != self.parent_hash:
            if logger is not None:
                logger.warning(
                    "stream %s: STATE holds a resume position under a different version of "
                    "its parent stream; its rows run again from the parent's first page.",
                    self.spec.name,
                )
            return
        pages = saved.get("pages")
        if isinstance(pages, dict):
            self.pages = {str(k): v for k, v in pages.items() if isinstance(v, int)}
        page = saved.get("page")
        if isinstance(page, dict):
            self.page = {k: page.get(k) for k in ("chain", "number", "digest")}
            rows = page.get("rows")
            self.rows = rows if isinstance(rows, int) else 0
            done = page.get("done")
            if isinstance(done, list):
                self.finished = {int(d) for d in done if str(d).isdigit()}
            chains = saved.get("chains")
            self.chains = dict(chains) if isinstance(chains, dict) else {}

    def page_finished(self, chain: str, number: int) -> bool:
        """Whether the children of this parent page all finished before."""
        return number <= self.pages.get(chain, 0)

    def untouched(self, chain: str, number: int) -> bool:
        """Whether every row of this parent page runs from its start: its children did
        not finish before, and it is not the page a saved position left in progress.

        Entering such a page (:meth:`enter_page`) starts it afresh whatever pages come
        in between, so its rows' chains may be planned and started before its turn.
        """
        if self.page_finished(chain, number):
            return False
        page = self.page
        return page is None or (page.get("chain"), page.get("number")) != (chain, number)

    def enter_page(self, chain: str, number: int, digest: str, logger: logging.Logger) -> None:
        """The parent starts the children of one of its pages.

        The saved row marks carry over when they are of this very page (same rows);
        otherwise its rows all start afresh.
        """
        mark = {"chain": chain, "number": number, "digest": digest}
        if self.page is not None and self.page != mark:
            if self.page.get("chain") == chain and self.page.get("number") == number:
                logger.warning(
                    "stream %s: the parent page in progress when STATE was saved has other "
                    "rows now; all its rows run again.",
                    self.spec.name,
                )
            self.chains.clear()
            self.rows, self.finished = 0, set()
        self.page = mark

    def is_done(self, key: str) -> bool:
        index = int(key)
        return index < self.rows or index in self.finished

    def finish(self, key: str) -> None:
        self.chains.pop(key, None)
        index = int(key)
        if index < self.rows:
            return
        self.finished.add(index)
        while self.rows in self.finished:
            self.finished.discard(self.rows)
            self.rows += 1

    def leave_page(self) -> None:
        """Every row of the page in progress is finished."""
        if self.page is not None:
            self.pages[str(self.page["chain"])] = t.cast("int", self.page["number"])
        self.page = None
        self.chains.clear()
        self.rows, self.finished = 0, set()

    def parent_chain_finished(self, chain: str) -> None:
        """The parent finished one of its chains: its page marks are no longer needed."""
        self.pages.pop(chain, None)
        if self.page is not None and self.page.get("chain") == chain:
            self.leave_page()
            self.pages.pop(chain, None)

    def clear(self) -> None:
        self.pages.clear()
        self.page = None
        self.chains.clear()
        self.rows, self.finished = 0, set()

    def to_state(self) -> dict[str, JSON] | None:
        if not self.pages and self.page is None:
            return None
        entry: dict[str, JSON] = {
            "spec": self.hash,
            "parent_spec": self.parent_hash,
            "pages": dict(self.pages),
            "chains": self._positions(),
            "done": [],
        }
        if self.page is not None:
            entry["page"] = {
                **self.page,
                "rows": self.rows,
                "done": [str(i) for i in sorted(self.finished)],
            }
        return entry


def _config_parts(spec: RequestSpec) -> dict[str, str]:
    """The query parts the config itself gives, by decoded key: ``key=value`` as sent."""
    parts: dict[str, str] = {}
    query = spec.url.partition("#")[0].partition("?")[2]
    for part in query.split("&"):
        if part:
            parts[unquote_plus(part.split("=", 1)[0])] = part
    for key, value in spec.params.items():
        if not isinstance(value, list):  # a repeated key cannot be restored part by part:
            parts[key] = encode_pairs({key: value})[0]  # a secret in one is never saved
    if spec.auth is not None:
        for key, value in spec.auth.query_params().items():
            parts[key] = encode_pairs({key: value})[0]
    return parts


def _restore(url: str, withheld: set[str], config: dict[str, str]) -> str | None:
    """Put the config's values back into the params a saved URL withheld."""
    base, sep, query = url.partition("?")
    if not sep:
        return url
    parts = []
    for part in query.split("&"):
        raw_key, _, value = part.partition("=")
        key = unquote_plus(raw_key)
        if key in withheld and value == MASK:
            if key not in config:
                return None
            part = config[key]
        parts.append(part)
    return f"{base}?{'&'.join(parts)}"
