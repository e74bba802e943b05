"""The composition root of a run: everything a sync, discovery and explain mode share.

One :class:`RunContext` is built per run from the config. It owns the specs, the
redactor, the template context and one :class:`StreamRun` per stream, which in turn owns
that stream's rate limiter, counters, discovery's prefetched sample pages, the schema it
emitted and its drift check, and the one way to build a chain, list a sync's chains, shape
a page's records and fit them to the schema. The singer-sdk stream
(``tap_rhttp.streams``) and explain mode (``tap_rhttp.explain``) both drive these objects,
so explain runs exactly the code a sync runs. Nothing here imports singer-sdk.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import logging
import os
import time
import typing as t
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor

from tap_rhttp.config.load import check_files, load_specs
from tap_rhttp.config.shard import load_shard
from tap_rhttp.config.templates import template_context, templates_read
from tap_rhttp.config.windows import iso, parse_instant
from tap_rhttp.errors import ConfigError, ConfigErrors, RHTTPError, SchemaDriftError
from tap_rhttp.formats.readers import dump_json
from tap_rhttp.formats.streaming import SpooledRecords
from tap_rhttp.http.oauth2 import TokenRegistry
from tap_rhttp.http.ratelimit import RateLimiter, ServerRateLimit
from tap_rhttp.redact import build_redactor
from tap_rhttp.run import graph
from tap_rhttp.run.chain import Chain, ChainStats, Fetched, Prefetched, drop_fetched
from tap_rhttp.run.fanout import ChainPool, chain_tasks, run_chains
from tap_rhttp.run.resume import ROW_WINDOW, ChildResume, ResumeState, spec_hash
from tap_rhttp.schema.drift import (
    KeyDriftError,
    Mismatch,
    SchemaCheck,
    evolve,
    keep_columns,
    mismatches,
)
from tap_rhttp.schema.exact import ExactCheck
from tap_rhttp.schema.infer import (
    INFERRED,
    infer_schema,
    prepare_declared_schema,
    with_overrides,
)

if t.TYPE_CHECKING:
    import msgspec

    from tap_rhttp.config.spec import RequestSpec
    from tap_rhttp.http.client import Connections
    from tap_rhttp.run.chain import Page
    from tap_rhttp.run.fanout import Batch, ChainTask, Event
    from tap_rhttp.schema.drift import Change
    from tap_rhttp.schema.infer import SampleSize
    from tap_rhttp.types import JSON

#: Chains discovery's sample tries, with `on_error: skip`, before it infers nothing.
SAMPLE_TRIES = 3

#: Where a stream's STATE records the column type of each field its schema had (so a later
#: run, whose sample may type a field otherwise, keeps the table's column).
COLUMNS_KEY = "rhttp_columns"

#: Methods whose requests may be made before the run needs them (RFC 9110 §9.2.1): a
#: run that stops early may have made one it never uses.
SAFE_METHODS = ("GET", "HEAD")


@dataclasses.dataclass
class Started:
    """A child's chains for the first window of a parent page's rows, started before
    that page's turn (see :meth:`StreamRun.start_rows`).

    Attributes:
        tasks: the window's tasks, as the page's turn would plan them.
        batch: their chains, running on the stream's workers.
        whole: the window holds every row of the page.
    """

    tasks: list[ChainTask]
    batch: Batch
    whole: bool


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
        #: Discovery's sample pages, by chain; the sync uses each once, in order.
        self.prefetched = Prefetched()
        #: Chains skipped after an error (`on_error: skip`).
        self.skipped = 0
        #: What the stream's chains have warned about (each warning once per stream).
        self.notes: set[str] = set()
        #: The schema the stream emitted last, and its compiled check (see `set_schema`).
        self.schema: dict[str, JSON] = {"type": "object", "properties": {}}
        self.check = SchemaCheck(self.schema)
        self.coerce = False
        #: The same schema as the exact page check (None: no msgspec type expresses it).
        self.exact: ExactCheck | None = None
        #: The stream writes exact pages from their bytes (`spans`): chains then check
        #: each JSON page with `exact` and leave a proven one unparsed.
        self.splice = False
        #: This process's share of the stream (None: the whole of it).
        self.shard = context.shard
        self.shard_rule = graph.shard_rule(spec, context.by_name) if self.shard else "all"
        self._row_keys = context.by_name[spec.parent].primary_keys if spec.parent else ()
        #: A child's workers, kept across its parent's pages (`max_concurrency` > 1).
        self._pool: ChainPool | None = None
        #: The first pages of the sample's chains, started before it (`warm_sample`).
        self._warm: _Warmup | None = None
        self._reads_bookmark = templates_read(spec, "bookmark")

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

    def set_schema(self, schema: dict[str, JSON], *, inferred: bool) -> None:
        """The schema the stream emits; every page is checked against it (`conform`).

        Args:
            schema: the schema as emitted in the SCHEMA message.
            inferred: the tap inferred it (a catalog may hand it back): its records are
                never coerced to it. A declared schema, or a user's catalog, is
                conformed as singer-sdk does (booleans coerced), which is not drift.
        """
        self.schema = schema
        self.coerce = not inferred
        self.check = SchemaCheck(schema, coerce=self.coerce)
        self.exact = ExactCheck.compile(schema)

    def conform(self, records: list[dict[str, JSON]], where: str) -> dict[str, JSON] | None:
        """Make a page's records fit the stream's schema, as `schema_drift` says.

        Called with every page (or batch of a large page) before any of it is emitted.
        Records whose values go to variant columns are changed in place.

        Args:
            records: the page's records, shaped as they are emitted.
            where: the page, for messages (``stream s, page 3``).

        Returns:
            The new schema, to emit before these records; None when it did not change.

        Raises:
            SchemaDriftError: `schema_drift: fail`, or a key's value that cannot be kept.
        """
        if self.check.fits(records):
            return None
        spec = self.spec
        if spec.schema_drift == "fail":
            found = mismatches(self.schema, records, coerce=self.coerce)
            raise self._drift_error(found[0] if found else None, where, key=False)
        keys = {*spec.primary_keys, *([spec.replication_key] if spec.replication_key else [])}
        try:
            evolution = evolve(self.schema, records, keys=keys, coerce=self.coerce)
        except KeyDriftError as exc:
            raise self._drift_error(exc.mismatch, where, key=True) from None
        changed = bool(evolution.changes)
        if changed:
            self.set_schema(evolution.schema, inferred=not self.coerce)
            for change in evolution.changes:
                self._warn_change(change)
        if not self.check.fits(records):  # evolve's contract: a bug, never a silent pass
            raise RuntimeError(f"stream {spec.name}: the evolved schema does not fit {where}")
        return self.schema if changed else None

    def _warn_change(self, change: Change) -> None:
        """One WARNING per drifted field and kind of change, per run."""
        note = f"drift:{change.field}:{change.kind}:{change.column}"
        if note in self.notes:
            return
        self.notes.add(note)
        name = self.spec.name
        field = change.field
        messages = {
            "new": f"new field `{field}` ({change.detail}) is not in the schema: added "
            "(a new column)",
            "nullable": f"field `{field}` has a null the schema did not allow: now nullable",
            "optional": f"field `{field}` is required by the schema but {change.detail}: "
            "no longer required",
            "widened": f"field `{field}` has a value its schema did not allow "
            f"({change.detail}); its column keeps any JSON value, so its schema widens to "
            "fit it",
            "variant": f"field `{field}` is {change.detail}: such values go to a new "
            f"column `{change.column}` (the column `{field}` cannot change its type; "
            "the record leaves it null)",
        }
        self.logger.warning("stream %s: %s (schema_drift: evolve).", name, messages[change.kind])

    def _drift_error(self, found: Mismatch | None, where: str, *, key: bool) -> SchemaDriftError:
        spec = self.spec
        if found is None:  # cannot happen: a page that does not fit has a misfit
            found = Mismatch("?", "?", "?")
        value = self.redactor.text(_excerpt(found.value)) if found.value is not None else ""
        shown = f" ({value})" if value else ""
        has = "null" if found.found == "null" else _a(found.found)
        if found.expected == "absent":
            what = f"field `{found.field}` is not in the schema, but a record has {has}"
        elif found.found == "missing":
            what = f"field `{found.field}` is {found.expected}, but a record lacks it"
        else:
            what = (
                f"field `{found.field}` is {found.expected} in the schema, but a record has {has}"
            )
        if key:
            fix = (
                "It is a key (`primary_keys`/`replication_key`): its values cannot move to "
                "a variant column. Give it a type every value fits with `schema_overrides` "
                "(its table column must have that type too)."
            )
        else:
            fix = (
                "Nothing of this page was emitted (`schema_drift: fail`). Use "
                "`schema_drift: evolve` (the default) to keep every value, or give the "
                "field its type with `schema_overrides`."
            )
        return SchemaDriftError(
            f"Schema drift [{where}]: {what}{shown}. {fix}",
            stream=spec.name,
            field=found.field,
            expected=found.expected,
            found=found.found,
        )

    def make_chain(
        self,
        spec: RequestSpec,
        read_ahead: bool,
        *,
        label: str = "",
        counted: bool = True,
        connections: Connections | None = None,
        prefetched: Prefetched | None = None,
    ) -> Chain:
        """A new request chain for a rendered spec of this stream.

        Args:
            spec: the rendered spec (a task's).
            read_ahead: fetch the next page while the caller handles this one.
            label: the task's label (``for_each[2]``), for the place errors name.
            counted: count its pages in the stream's progress (not for discovery's sample,
                whose page the sync counts when it uses it).
            connections: the pools of the chains run before it on the same thread
                (default: its own).
            prefetched: where it takes pages already fetched (default: the stream's
                :attr:`prefetched`).
        """
        return Chain(
            spec,
            self.redactor,
            self.logger,
            sleep=self.context.sleep,
            limiter=self.limiter,
            prefetched=self.prefetched if prefetched is None else prefetched,
            stats=self.stats if counted else ChainStats(),
            read_ahead=read_ahead,
            stream_bodies=True,
            now=self.context.now_epoch,
            tokens=self.context.tokens,
            server_limit=self.server_limit,
            label=label,
            notes=self.notes,
            exact=self._exact_check if counted else None,
            connections=connections,
        )

    def _exact_check(self) -> ExactCheck | None:
        exact = self.exact
        return exact if self.splice and exact is not None and exact.worth_trying else None

    def spans(
        self, page: Page, task: ChainTask, bookmark: JSON, *, skip: int = 0
    ) -> list[msgspec.Raw] | None:
        """A page's records as the exact bytes of its body, when the page is emitted as
        it came: proven exact against the current schema (so it fits it: no drift), no
        bookmark filter, no parent columns, nothing skipped. Counted as emitted.

        None: the page takes the general path (`shape`, `conform`).
        """
        exact = page.exact
        if exact is None or exact.check is not self.exact or page.unparsed is None:
            return None
        if page.unparsed.parsed or not self._emitted_as_read(task, bookmark, skip):
            return None
        self.stats.add(records=len(exact.spans))
        return exact.spans

    def spooled_lines(
        self, page: Page, task: ChainTask, bookmark: JSON, *, skip: int = 0, batch: int
    ) -> t.Iterator[list[bytes]] | None:
        """A streamed page's records as their spooled JSON lines, `batch` at a time, when
        every one of them is exact (checked before any is handed on, as `conform` checks
        such a page) and the page is emitted as it came. Counted as they are handed on.

        None: the page takes the general path.
        """
        records = page.records
        check = self._exact_check()
        if check is None or not isinstance(records, SpooledRecords):
            return None
        if not self._emitted_as_read(task, bookmark, skip):
            return None
        for lines in records.lines(batch):
            if check.spans(b"[" + b",".join(lines) + b"]") is None:
                return None

        def counted() -> t.Iterator[list[bytes]]:
            for lines in records.lines(batch):
                self.stats.add(records=len(lines))
                yield lines

        return counted()

    def _emitted_as_read(self, task: ChainTask, bookmark: JSON, skip: int) -> bool:
        """Whether `shape` would hand on a page's records unchanged and all of them."""
        if skip or task.row is not None:
            return False
        spec = self.spec
        return not (spec.replication_key and spec.filter_bookmark and bookmark is not None)

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

    @property
    def pooled(self) -> bool:
        """Whether the stream's chains run on workers kept across runs: a child stream
        with `max_concurrency` > 1, whose rows come a parent page at a time."""
        return self.spec.parent is not None and self.spec.max_concurrency > 1

    def run(
        self,
        tasks: t.Sequence[ChainTask],
        *,
        read_ahead: bool = True,
        started: Batch | None = None,
    ) -> t.Iterator[Event]:
        """Every task's chain, run as the spec says (`max_concurrency`): one ordered feed.

        Args:
            tasks: the chains to run.
            read_ahead: a chain running on the caller's thread may fetch its next page
                while the caller handles the current one.
            started: the batch these tasks already run in (:meth:`start_rows`).
        """
        if started is not None:
            return started.events()
        if self.pooled:
            return self._workers().submit(tasks).events()

        def make(task: ChainTask, inline: bool, connections: Connections) -> Chain:
            assert task.spec is not None
            return self.make_chain(
                task.spec, read_ahead and inline, label=task.label, connections=connections
            )

        return run_chains(tasks, make, self.spec.max_concurrency)

    def _workers(self) -> ChainPool:
        if self._pool is None:

            def make(task: ChainTask, inline: bool, connections: Connections) -> Chain:
                assert task.spec is not None
                return self.make_chain(task.spec, False, label=task.label, connections=connections)

            self._pool = ChainPool(make, self.spec.max_concurrency)
        return self._pool

    def start_rows(
        self,
        resume: ChildResume,
        chain: str,
        number: int,
        rows: t.Iterable[dict[str, JSON]],
    ) -> Started | None:
        """Start a child's chains for a parent page's rows before that page's turn.

        The parent hands over its next page while the current page's children run, so
        the workers go on to the next page's rows as soon as they are free, as a pool fed
        page by page does. Only the first window (:data:`ROW_WINDOW` rows) is started,
        and only for a page whose rows all run from their start
        (:meth:`ChildResume.untouched`): its turn would plan exactly these tasks. Nothing
        of them is emitted before its turn, so STATE is what it would be without this.

        Returns:
            What was started; None when nothing may be: the chains do not run on kept
            workers, their requests are not safe to make early (a method other than GET
            or HEAD), their templates read the bookmark (the page's sync decides it), or
            the page is not untouched.
        """
        if not self.pooled or self.spec.method not in SAFE_METHODS or self._reads_bookmark:
            return None
        if not resume.untouched(chain, number):
            return None
        numbered = enumerate(rows)
        window = list(itertools.islice(numbered, ROW_WINDOW))
        whole = next(numbered, None) is None
        tasks = self.tasks(rows=window)
        return Started(tasks, self._workers().submit(tasks), whole)

    def window_tasks(
        self,
        rows: t.Sequence[tuple[int, dict[str, JSON]]],
        resume: ChildResume,
        bookmark: JSON,
        started: Started | None = None,
    ) -> tuple[list[ChainTask], Batch | None]:
        """A child's tasks for a window of a parent page's rows, and the batch they
        already run in, if they were started before the page's turn."""
        if started is not None:
            return started.tasks, started.batch
        return self.pending(self.tasks(bookmark=bookmark, rows=rows), resume), None

    def close_workers(self) -> None:
        """End the child's kept workers (its parent's pages are over); unread batches
        are cancelled."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

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

    def shape(
        self,
        page: Page,
        task: ChainTask,
        bookmark: JSON,
        *,
        counted: bool = True,
        skip: int = 0,
    ) -> t.Iterator[dict[str, JSON]]:
        """A page's records as a run emits them: bookmark filter, then parent columns.

        Args:
            counted: count them as emitted (not for a pass that only checks them).
            skip: leave out the first `skip` of them (a resumed page whose first records
                a batch file already holds), uncounted.
        """
        spec = self.spec
        key = spec.replication_key or ""
        drop = bool(key) and spec.filter_bookmark and bookmark is not None
        columns = self.columns if task.row is not None else ()
        row = task.row or {}
        emitted = 0
        try:
            for record in page.records:
                if drop and graph.at_or_before(record.get(key), bookmark):
                    continue
                for field, column in columns:
                    record.setdefault(column, row.get(field))
                if skip:
                    skip -= 1
                    continue
                emitted += 1
                yield record
        finally:  # the progress line counts what was emitted, not what was fetched
            if counted:
                self.stats.add(records=emitted)

    def sample(
        self,
        *,
        bookmark: JSON,
        parent_rows: list[dict[str, JSON]],
        saved: JSON = None,
        first_rows: t.Callable[[list[dict[str, JSON]]], None] | None = None,
    ) -> list[dict[str, JSON]]:
        """Discovery's sample: the first pages a sync fetches, kept for the sync.

        Up to `schema_sample` pages and records, whichever ends first, following each
        chain's pagination (then the next `for_each` value, or the next parent row for a
        child stream, with its parent's sampled rows). Chains that may run at once
        (`max_concurrency` above 1, a safe method) give their first page each: fetched
        together (:class:`_Warmup`), the pages a concurrent sync starts with. A run
        resuming from `saved` (the stream's resume position in STATE) samples from the
        pages it resumes at, so a resumed run fetches nothing twice. The pages are kept
        in :attr:`prefetched`: the sync takes them instead of fetching them again, each
        once and in order. A failure before the first page is sampled fails discovery (a
        template that does not render, a request error), as the sync would, unless
        `on_error: skip`: then the chain is passed over for the next one, up to
        :data:`SAMPLE_TRIES` failures, and when all fail nothing is inferred (a WARNING)
        and the run goes on. A failure after a page was sampled ends the sample, with a
        WARNING (the sync meets the error itself). `first_rows` is given the sample once
        its first records are in (children may start theirs: :meth:`warm_sample`).
        """
        spec = self.spec
        if spec.page_limit == 0:  # no request at all
            return []
        if spec.parent is not None and not parent_rows:
            self.logger.warning(
                "stream %s: its parent %s had no record to sample, so no fields could be "
                "inferred; declare `schema` to type them (every field is still emitted).",
                spec.name,
                spec.parent,
            )
            return []
        skipping = spec.on_error == "skip"
        budget = spec.schema_sample
        tasks = self._sample_tasks(bookmark, parent_rows, saved)
        warm, self._warm = self._warm or _Warmup(self), None
        warm.cover(tasks[: max(budget.pages, SAMPLE_TRIES)])
        if not tasks:
            warm.close()
            if spec.for_each is not None and not spec.for_each:
                self.logger.warning(
                    "stream %s: `for_each` is empty, so no request is made and no fields "
                    "could be inferred (the stream is empty).",
                    spec.name,
                )
            return []
        sample: list[dict[str, JSON]] = []
        pages = failures = 0
        # Chains that run at once are sampled by their first pages, fetched together: the
        # pages a concurrent sync starts with, in one round trip instead of one per page.
        breadth = warm.on and len(tasks) > 1

        tell = [first_rows] if first_rows is not None else []

        def sampled_page() -> None:
            if tell and sample:  # once, with the first records
                tell.pop()(list(sample))

        try:
            for task in tasks:
                if pages >= budget.pages or len(sample) >= budget.records:
                    break
                sampled, error = self._sample_chain(
                    task, 1 if breadth else budget.pages - pages, budget, sample, warm, sampled_page
                )
                pages += sampled
                if error is None:
                    continue
                if pages:
                    self.logger.warning(
                        "stream %s: sampling for the schema stopped after %d page(s): %s",
                        spec.name,
                        pages,
                        self.redactor.text(str(error)).split("\n", 1)[0],
                    )
                    break
                if not skipping:
                    raise error
                self.logger.warning(
                    "stream %s%s: the schema sample failed (on_error: skip; the sync tries "
                    "this chain again): %s",
                    spec.name,
                    f" {task.label}" if task.label else "",
                    self.redactor.text(str(error)),
                )
                failures += 1
                if failures >= SAMPLE_TRIES:
                    break
        finally:
            warm.close()
        if not pages and failures:
            self.logger.warning(
                "stream %s: no sampled chain gave a first page, so no fields could be "
                "inferred; declare `schema` to type them (every field is still emitted).",
                spec.name,
            )
        if not sample:
            self.logger.warning(
                "stream %s: the sampled pages have no records, so no fields could be "
                "inferred; declare `schema` to type them (every field is still emitted).",
                spec.name,
            )
        return sample

    def _sample_tasks(
        self, bookmark: JSON, parent_rows: list[dict[str, JSON]], saved: JSON
    ) -> list[ChainTask]:
        """The chains a sample goes through, in order (see :meth:`sample`)."""
        budget = self.spec.schema_sample
        rows = list(enumerate(parent_rows[: max(budget.pages, SAMPLE_TRIES)]))
        if self.shard is not None:  # every shard samples the same pages: one table schema
            return self.tasks(bookmark=bookmark, rows=rows, whole=True)
        if self.spec.parent is None:
            resume = self.resume_state(saved, quiet=True)
            return self.pending(self.tasks(bookmark=bookmark, resume=resume), resume)
        return self.tasks(bookmark=bookmark, rows=rows)

    def warm_sample(self, *, bookmark: JSON, parent_rows: list[dict[str, JSON]]) -> None:
        """A child's sample may start now, from the rows its parent sampled so far: the
        first pages of its first chains are fetched while the parent samples on (with
        `max_concurrency` > 1 and a safe method); :meth:`sample` takes them."""
        spec = self.spec
        if spec.parent is None or spec.page_limit == 0 or not parent_rows:
            return
        warm = self._warm = self._warm or _Warmup(self)
        tasks = self._sample_tasks(bookmark, parent_rows, None)
        warm.cover(tasks[: max(spec.schema_sample.pages, SAMPLE_TRIES)])

    def _sample_chain(
        self,
        task: ChainTask,
        max_pages: int,
        budget: SampleSize,
        sample: list[dict[str, JSON]],
        warm: _Warmup,
        sampled_page: t.Callable[[], None],
    ) -> tuple[int, RHTTPError | None]:
        """Sample one chain's first pages into `sample`, keeping them for the sync.

        Returns:
            How many pages were sampled, and the error that ended the chain early.
        """
        if task.error is not None:
            return 0, t.cast("RHTTPError", task.error)
        assert task.spec is not None
        first = warm.take(task)
        if isinstance(first, RHTTPError):
            return 0, first
        chain = self.make_chain(
            task.spec, read_ahead=False, label=task.label, counted=False, prefetched=first
        )
        kept: list[tuple[str, Fetched]] = []
        pages = t.cast("t.Generator[Page, None, None]", chain.pages(task.start, task.done))
        try:
            # A chain yields a page before it fetches the next: stopping here makes no
            # request beyond the sample.
            for page in pages:
                kept.append(
                    (chain.key(page.request), Fetched(page.response, page.body, page.records))
                )
                wanted = budget.records - len(sample)
                records = page.records
                sample += (
                    records[:wanted]
                    if isinstance(records, list)
                    else itertools.islice(records, wanted)
                )
                sampled_page()
                if page.failure is not None or len(kept) >= max_pages:
                    break
                if len(sample) >= budget.records:
                    break
        except RHTTPError as exc:
            return len(kept), exc
        finally:
            pages.close()
            chain.close()
            if self._owns(task):
                self.prefetched.add(kept)
            else:  # another shard's chain: its pages were only the shared schema sample
                drop_fetched(kept)
        return len(kept), None


#: What fetching a chain's first page ahead gave: its key and page, its error, or None.
_First = tuple[str, Fetched] | RHTTPError | None


class _Warmup:
    """The first pages of a sample's first chains, fetched at once (on up to
    `max_concurrency` threads) while the sample goes through the chains one by one.

    The sample still takes them in its order and decides what follows each one, so it is
    the sample it would be one chain after another; a first page it does not use is kept
    for the sync, as sampled pages are (each is a request the sync makes anyway). Only
    for a stream whose chains may run at once, with a safe method (GET or HEAD).
    """

    def __init__(self, run: StreamRun) -> None:
        self.run = run
        spec = run.spec
        self._width = min(spec.max_concurrency, max(spec.schema_sample.pages, SAMPLE_TRIES))
        #: Whether first pages are fetched ahead (chains may run at once, safe method).
        self.on = self._width > 1 and spec.method in SAFE_METHODS
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: dict[int, tuple[ChainTask, Future[_First]]] = {}

    def cover(self, tasks: t.Sequence[ChainTask]) -> None:
        """Fetch these tasks' first pages, but those already fetched for equal tasks."""
        if not self.on:
            return
        for task in tasks:
            if task.spec is None or id(task) in self._ahead:
                continue
            same = next(
                (
                    key
                    for key, (other, _) in self._ahead.items()
                    if (other.key, other.spec, other.start, other.done)
                    == (task.key, task.spec, task.start, task.done)
                ),
                None,
            )
            if same is not None:
                self._ahead[id(task)] = (task, self._ahead.pop(same)[1])
                continue
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._width, thread_name_prefix="rhttp-sample")
            self._ahead[id(task)] = (task, self._pool.submit(self._fetch, task))

    def _fetch(self, task: ChainTask) -> _First:
        assert task.spec is not None
        chain = self.run.make_chain(task.spec, read_ahead=False, label=task.label, counted=False)
        try:
            return chain.first_page(task.start, task.done)
        except RHTTPError as exc:
            return exc
        finally:
            chain.close()

    def take(self, task: ChainTask) -> Prefetched | RHTTPError | None:
        """The task's first page, in a store its chain takes it from (None: not fetched
        ahead), or the error its request ended with."""
        entry = self._ahead.pop(id(task), None)
        if entry is None:
            return None
        first = entry[1].result()
        if isinstance(first, RHTTPError):
            return first
        store = Prefetched()
        if first is not None:
            store.add([first])
        return store

    def close(self) -> None:
        """Keep the first pages the sample did not take for the sync (when this shard
        runs their chains)."""
        if self._pool is None:
            return
        self._pool.shutdown(wait=True)
        for task, future in self._ahead.values():
            first = future.result()
            if not isinstance(first, tuple):
                continue
            if self.run._owns(task):
                self.run.prefetched.add([first])
            else:
                drop_fetched([first])
        self._ahead.clear()


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

    def warm_children(
        self, spec: RequestSpec, sampled: t.Collection[str], state: t.Mapping[str, JSON] | None
    ) -> t.Callable[[list[dict[str, JSON]]], None] | None:
        """What `spec`'s sample tells its first rows to: each child that samples
        (`sampled` names them) starts its own sample's first pages from them."""
        children = [c for c in self.specs if c.parent == spec.name and c.name in sampled]
        if not children:
            return None

        def first_rows(rows: list[dict[str, JSON]]) -> None:
            for child in children:
                self.stream(child.name).warm_sample(
                    bookmark=self.bookmark(child, state), parent_rows=rows
                )

        return first_rows

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
        schema = with_overrides(schema, spec.schema_overrides)
        schema = graph.with_parent_columns(schema, self.stream(spec.name).columns, parent_schema)
        graph.check_replication_key(spec, schema)
        return schema

    def keep_columns(
        self, spec: RequestSpec, schema: dict[str, JSON], state: t.Mapping[str, JSON] | None
    ) -> dict[str, JSON]:
        """The tap's inferred schema, with the column types earlier runs gave the table.

        Earlier runs recorded them in STATE (:data:`COLUMNS_KEY`, written by the stream);
        a declared schema, a user's catalog and `schema_overrides` are used as given.
        """
        if schema.get("description") != INFERRED or not state:
            return schema
        bookmarks = state.get("bookmarks")
        entry = bookmarks.get(spec.name) if isinstance(bookmarks, dict) else None
        committed = entry.get(COLUMNS_KEY) if isinstance(entry, dict) else None
        if not isinstance(committed, dict):
            return schema
        overridden = spec.schema_overrides
        kept, replaced = keep_columns(
            schema, {k: v for k, v in committed.items() if k not in overridden}
        )
        for field in replaced:
            self.logger.info(
                "stream %s: field `%s` keeps the column type `%s` an earlier run gave it "
                "(STATE), though this run's sample types it otherwise; values of another "
                "type go to variant columns.",
                spec.name,
                field,
                committed[field],
            )
        return kept

    def check_replication_key(self, spec: RequestSpec, schema: dict[str, JSON]) -> None:
        """The replication key must be a field of `schema` (a catalog's, say).

        Raises:
            ConfigErrors: it is not.
        """
        graph.check_replication_key(spec, schema)


def _excerpt(value: JSON, limit: int = 80) -> str:
    text = dump_json(value, default=str).decode()  # an integer past 64 bits too
    return text if len(text) <= limit else text[:limit] + " ..."


def _a(word: str) -> str:
    """``a number``, ``an object``."""
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"
