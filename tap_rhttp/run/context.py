"""The composition root of a run: everything a sync, discovery and explain mode share.

One :class:`RunContext` is built per run from the config. It owns the specs, the
redactor, the template context and one :class:`StreamRun` per stream, which in turn owns
that stream's rate limiter, counters, discovery's prefetched first page, and the one way
to build a chain, list a sync's chains and shape a page's records. The singer-sdk stream
(``tap_rhttp.streams``) and explain mode (``tap_rhttp.explain``) both drive these objects,
so explain runs exactly the code a sync runs. Nothing here imports singer-sdk.
"""

from __future__ import annotations

import datetime
import itertools
import logging
import os
import time
import typing as t
import urllib.request

from tap_rhttp.config.load import check_files, load_specs
from tap_rhttp.config.shard import load_shard
from tap_rhttp.config.templates import template_context
from tap_rhttp.config.windows import iso, parse_instant
from tap_rhttp.errors import ConfigError, ConfigErrors, RHTTPError
from tap_rhttp.http.oauth2 import TokenRegistry
from tap_rhttp.http.ratelimit import RateLimiter, ServerRateLimit
from tap_rhttp.paging.paginator import Paginator
from tap_rhttp.redact import build_redactor
from tap_rhttp.run import graph
from tap_rhttp.run.chain import Chain, ChainStats, Fetched
from tap_rhttp.run.fanout import chain_tasks, run_chains
from tap_rhttp.run.resume import ChildResume, ResumeState, spec_hash
from tap_rhttp.schema.infer import infer_schema, prepare_declared_schema

if t.TYPE_CHECKING:
    from tap_rhttp.config.spec import RequestSpec
    from tap_rhttp.run.chain import Page
    from tap_rhttp.run.fanout import ChainTask, Event
    from tap_rhttp.types import JSON

#: Records of a streamed first page (a body too large to parse whole) that inference reads.
SAMPLE_RECORDS = 5000
#: Chains discovery's sample tries, with `on_error: skip`, before it infers nothing.
SAMPLE_TRIES = 3


class StreamRun:
    """One stream's part of a run: its limiter, counters, chains and record shaping.

    Build it through :meth:`RunContext.stream`.
    """

    def __init__(self, context: RunContext, spec: RequestSpec) -> None:
        self.context = context
        self.spec = spec
        self.redactor = context.redactor
        self.logger = context.logger
        self.columns = graph.parent_columns(spec, context.by_name)
        self.limiter = (
            RateLimiter(rate=spec.rate_limit, max_concurrency=None) if spec.rate_limit else None
        )
        #: The quota the server announces (X-RateLimit-*, RateLimit, Retry-After).
        self.server_limit = ServerRateLimit(
            spec.name, self.logger, max_wait=spec.retry_after_max, sleep=context.sleep
        )
        self.stats = ChainStats()
        #: Discovery's sample pages, by request key (target URL and body); the sync uses
        #: each once.
        self.prefetched: dict[str, Fetched] = {}
        #: Chains skipped after an error (`on_error: skip`).
        self.skipped = 0
        #: This process's share of the stream (None: the whole of it).
        self.shard = context.shard
        self.shard_rule = graph.shard_rule(spec, context.by_name) if self.shard else "all"
        self._row_keys = context.by_name[spec.parent].primary_keys if spec.parent else ()

    @property
    def emits(self) -> bool:
        """Whether this process emits the stream's records (not: a shard other than 0
        reading a parent only for its children's rows)."""
        return self.shard is None or self.shard_rule != "source" or self.shard.index == 0

    def owns_row(self, row: dict[str, JSON]) -> bool:
        """Whether this shard runs a parent row's chains."""
        if self.shard is None or self.shard_rule != "rows":
            return True
        return self.shard.owns(graph.row_identity(row, self._row_keys))

    def _owns(self, task: ChainTask) -> bool:
        rows_ok = task.row is None or self.owns_row(task.row)
        return rows_ok and bool(self._shard_tasks([task]))

    def _shard_tasks(self, tasks: list[ChainTask]) -> list[ChainTask]:
        shard, rule = self.shard, self.shard_rule
        if shard is None:
            return tasks
        if rule == "zero":
            return tasks if shard.index == 0 else []
        if rule == "values" and self.spec.for_each is not None:
            values = self.spec.for_each
            return [task for task in tasks if shard.owns(values[int(task.key)])]
        if rule == "values":  # windows: by their start
            return [task for task in tasks if shard.owns(task.key)]
        return tasks

    def make_chain(self, spec: RequestSpec, read_ahead: bool, *, counted: bool = True) -> Chain:
        """A new request chain for a rendered spec of this stream.

        Args:
            spec: the rendered spec (a task's).
            read_ahead: fetch the next page while the caller handles this one.
            counted: count its pages in the stream's progress (not for discovery's sample,
                whose page the sync counts when it uses it).
        """
        return Chain(
            spec,
            self.redactor,
            self.logger,
            sleep=self.context.sleep,
            limiter=self.limiter,
            prefetched=self.prefetched,
            stats=self.stats if counted else ChainStats(),
            read_ahead=read_ahead,
            stream_bodies=True,
            now=self.context.now_epoch,
            tokens=self.context.tokens,
            server_limit=self.server_limit,
        )

    def tasks(
        self,
        *,
        bookmark: JSON = None,
        rows: t.Sequence[tuple[int, dict[str, JSON]]] = (),
        resume: ResumeState | None = None,
        whole: bool = False,
    ) -> list[ChainTask]:
        """The chains a sync runs: one, one per `for_each` value, one per time window, or
        one per parent row (given with its index in the parent page).

        A resumed run's windows are the killed run's (its `resume` holds their span), so
        a window that finished is never fetched again; a new run plans them from its now
        and bookmark, and `resume` records that plan. Only this shard's share, unless
        `whole`.
        """
        if not whole:
            rows = [(index, row) for index, row in rows if self.owns_row(row)]
        tasks = chain_tasks(
            self.spec,
            self.context.template_context,
            self.redactor,
            bookmark=bookmark,
            rows=rows,
            windows=self.windows(bookmark, resume),
            now=self.context.now_epoch,
        )
        if not whole:
            tasks = self._shard_tasks(tasks)
        if resume is not None and self.spec.windows is not None:
            resume.order = [task.key for task in tasks]
        return tasks

    def windows(
        self, bookmark: JSON, resume: ResumeState | None = None
    ) -> list[tuple[datetime.datetime, datetime.datetime]]:
        """The run's time windows (none without `windows`)."""
        windows = self.spec.windows
        if windows is None:
            return []
        saved = resume.plan if resume is not None else None
        span = None
        if saved is not None:
            start, end = parse_instant(saved["start"]), parse_instant(saved["end"])
            span = (start, end) if start is not None and end is not None else None
        if span is None:
            span = windows.plan(self.context.now, bookmark)
        if resume is not None:
            resume.plan = {"start": iso(span[0]), "end": iso(span[1])}
        return windows.between(*span)

    def resume_state(self, saved: JSON, *, quiet: bool = False) -> ResumeState:
        """The stream's resume position, adopted from a saved STATE entry when it fits."""
        spec = self.spec
        resume: ResumeState
        shard = str(self.shard) if self.shard is not None else ""
        if spec.parent is not None:
            parent = self.context.by_name[spec.parent]
            parent_hash = spec_hash(parent, self.redactor, shard)
            resume = ChildResume(spec, self.redactor, parent_hash, shard)
        else:
            fanned = spec.for_each is not None or spec.windows is not None
            resume = ResumeState(spec, self.redactor, track_done=fanned, shard=shard)
        resume.load(saved, None if quiet else self.logger)
        return resume

    def pending(self, tasks: t.Sequence[ChainTask], resume: ResumeState) -> list[ChainTask]:
        """The tasks still to run, each starting where `resume` says (finished ones go)."""
        left = []
        for task in tasks:
            if resume.is_done(task.key):
                continue
            if task.spec is not None:
                task.start, task.done, task.skip = resume.start_of(task.key, task.spec)
            left.append(task)
        return left

    def run(self, tasks: t.Sequence[ChainTask], *, read_ahead: bool = True) -> t.Iterator[Event]:
        """Every task's chain, run as the spec says (`max_concurrency`): one ordered feed."""

        def make(spec: RequestSpec, inline: bool) -> Chain:
            return self.make_chain(spec, read_ahead and inline)

        return run_chains(tasks, make, self.spec.max_concurrency)

    def skip(self, task: ChainTask, error: Exception) -> None:
        """A chain failed: re-raise, or with `on_error: skip` count and log it."""
        if self.spec.on_error != "skip":
            raise error
        self.skipped += 1
        self.logger.warning(
            "stream %s%s: skipped after an error (on_error: skip): %s",
            self.spec.name,
            f" {task.label}" if task.label else "",
            self.redactor.text(str(error)),
        )

    def kept(self, record: dict[str, JSON], bookmark: JSON) -> bool:
        """Whether a record is emitted: not at or before the bookmark (`filter_bookmark`)."""
        key = self.spec.replication_key
        if not key or not self.spec.filter_bookmark or bookmark is None:
            return True
        return not graph.at_or_before(record.get(key), bookmark)

    def shape(self, page: Page, task: ChainTask, bookmark: JSON) -> t.Iterator[dict[str, JSON]]:
        """A page's records as a run emits them: bookmark filter, then parent columns."""
        spec = self.spec
        key = spec.replication_key or ""
        drop = bool(key) and spec.filter_bookmark and bookmark is not None
        columns = self.columns if task.row is not None else ()
        row = task.row or {}
        for record in page.records:
            if drop and graph.at_or_before(record.get(key), bookmark):
                continue
            for field, column in columns:
                record.setdefault(column, row.get(field))
            yield record

    def sample(
        self,
        *,
        bookmark: JSON,
        parent_rows: list[dict[str, JSON]],
        saved: JSON = None,
    ) -> list[dict[str, JSON]]:
        """Discovery's sample: the first page a sync fetches, kept for the sync.

        That is the first chain's first page, or, for a run resuming from `saved` (the
        stream's resume position in STATE), the first pending chain's saved page, so a
        resumed run fetches nothing twice. A child samples with its parent's first
        sampled row. With `on_error: skip` a failing chain (or one whose templates fail
        to render) is passed over for the next one, up to :data:`SAMPLE_TRIES` chains,
        and when all fail nothing is inferred (a WARNING) and the run goes on; otherwise
        the chain's error fails discovery, as its sync would.
        """
        spec = self.spec
        if spec.parent is not None and not parent_rows:
            self.logger.warning(
                "stream %s: its parent %s had no record to sample, so no fields could be "
                "inferred; declare `schema` to type them (every field is still emitted).",
                spec.name,
                spec.parent,
            )
            return []
        skipping = spec.on_error == "skip"
        rows = list(enumerate(parent_rows[: SAMPLE_TRIES if skipping else 1]))
        if self.shard is not None:  # every shard samples the same page: one table schema
            tasks = self.tasks(bookmark=bookmark, rows=rows, whole=True)
        elif spec.parent is None:
            resume = self.resume_state(saved, quiet=True)
            tasks = self.pending(self.tasks(bookmark=bookmark, resume=resume), resume)
        else:
            tasks = self.tasks(bookmark=bookmark, rows=rows)
        if not tasks:
            return []
        for task in tasks[: SAMPLE_TRIES if skipping else 1]:
            try:
                return self._sample_one(task)
            except RHTTPError as exc:
                if not skipping:
                    raise
                self.logger.warning(
                    "stream %s%s: the schema sample failed (on_error: skip; the sync tries "
                    "this chain again): %s",
                    spec.name,
                    f" {task.label}" if task.label else "",
                    self.redactor.text(str(exc)),
                )
        self.logger.warning(
            "stream %s: no sampled chain gave a first page, so no fields could be inferred; "
            "declare `schema` to type them (every field is still emitted).",
            spec.name,
        )
        return []

    def _sample_one(self, task: ChainTask) -> list[dict[str, JSON]]:
        spec = self.spec
        if task.error is not None:
            raise task.error
        assert task.spec is not None
        paginator = Paginator(task.spec, self.redactor)
        first = (
            paginator.resume(task.start, task.done) if task.start is not None else paginator.first()
        )
        if first is None:  # page_limit 0, or used up before the saved position
            return []
        chain = self.make_chain(task.spec, read_ahead=False, counted=False)
        try:
            fetched, _ = chain.get(first)
        finally:
            chain.close()
        if self._owns(task):  # else this page is only the shared schema sample
            self.prefetched[chain.key(first)] = fetched
        records = fetched.records
        sample = (
            records
            if isinstance(records, list)
            else list(itertools.islice(records, SAMPLE_RECORDS))
        )
        if not sample:
            self.logger.warning(
                "stream %s: the first page has no records, so no fields could be inferred; "
                "declare `schema` to type them (every field is still emitted).",
                spec.name,
            )
        return sample


class RunContext:
    """Everything one run shares, built once from the config.

    Args:
        config: the tap config (``streams``, ``defaults``, ``secrets``, settings).
        logger: where the run logs.
        specs: the config's specs, when already loaded (else :func:`load_specs` runs).
        sleep: the wait between tries (tests inject a fake).
        now: the run's instant (default: when the context is built, in whole seconds): what
            ``r.now()`` returns in every template and page expression of the run, and
            where default windows end.
        environ: where ``TAP_RHTTP_SHARD`` is read (default: the process environment).

    Raises:
        ConfigErrors: the config is invalid.
    """

    def __init__(
        self,
        config: t.Mapping[str, JSON],
        *,
        logger: logging.Logger | None = None,
        specs: list[RequestSpec] | None = None,
        sleep: t.Callable[[float], None] = time.sleep,
        now: datetime.datetime | None = None,
        environ: t.Mapping[str, str] | None = None,
    ) -> None:
        errors: list[ConfigError] = []
        try:
            self.specs = load_specs(config) if specs is None else specs
        except ConfigErrors as exc:
            errors += exc.errors
        try:
            #: This process's shard of the job (None: not sharded).
            self.shard = load_shard(config, os.environ if environ is None else environ)
        except ConfigError as exc:
            errors.append(exc)
        if not errors:
            errors += check_files(self.specs)
        if errors:
            raise ConfigErrors(errors)
        self.by_name = {spec.name: spec for spec in self.specs}
        self.redactor = build_redactor(
            self.specs, config.get("secrets"), proxies=urllib.request.getproxies().values()
        )
        self.template_context = template_context(config)
        self.logger = logger or logging.getLogger("tap-rhttp")
        #: OAuth2 tokens, one per distinct OAuth2 config, shared by every stream and chain.
        self.tokens = TokenRegistry(self.redactor, logger=self.logger)
        self.sleep = sleep
        #: The run's one "now" (whole seconds, UTC): where default windows end.
        self.now = now or datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        #: The same instant in epoch seconds, as templates and page expressions take it.
        self.now_epoch = self.now.timestamp()
        self._streams: dict[str, StreamRun] = {}

    def ordered_specs(self) -> list[RequestSpec]:
        """The specs, parents before their children."""
        return graph.ordered(self.specs)

    def stream(self, name: str) -> StreamRun:
        """The run of one stream (made on first use, then the same object)."""
        run = self._streams.get(name)
        if run is None:
            run = self._streams[name] = StreamRun(self, self.by_name[name])
        return run

    def bookmark(self, spec: RequestSpec, state: t.Mapping[str, JSON] | None) -> JSON:
        """The bookmark a run of `spec` starts from, given a Singer STATE."""
        return graph.bookmark(spec, graph.saved_bookmark(spec, state))

    def saved_resume(self, spec: RequestSpec, state: t.Mapping[str, JSON] | None) -> JSON:
        """The resume position a Singer STATE holds for a stream (None if none)."""
        entry = ((state or {}).get("bookmarks") or {}).get(spec.name)
        return entry.get(ResumeState.KEY) if isinstance(entry, dict) else None

    def schema(
        self,
        spec: RequestSpec,
        sample: t.Iterable[dict[str, JSON]],
        parent_schema: dict[str, JSON] | None,
    ) -> dict[str, JSON]:
        """The stream's schema: declared, or inferred from `sample`; with parent columns.

        Raises:
            ConfigErrors: the replication key is not in it.
        """
        schema = (
            prepare_declared_schema(spec.schema)
            if spec.schema is not None
            else infer_schema(sample)
        )
        schema = graph.with_parent_columns(schema, self.stream(spec.name).columns, parent_schema)
        graph.check_replication_key(spec, schema)
        return schema

    def check_replication_key(self, spec: RequestSpec, schema: dict[str, JSON]) -> None:
        """The replication key must be a field of `schema` (a catalog's, say).

        Raises:
            ConfigErrors: it is not.
        """
        graph.check_replication_key(spec, schema)
