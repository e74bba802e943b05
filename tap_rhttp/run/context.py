"""The composition root of a run: everything a sync, discovery and explain mode share.

One :class:`RunContext` is built per run from the config. It owns the specs, the
redactor, the template context and one :class:`StreamRun` per stream, which in turn owns
that stream's rate limiter, counters, discovery's prefetched first page, and the one way
to build a chain, list a sync's chains and shape a page's records. The singer-sdk stream
(``tap_rhttp.streams``) and explain mode (``tap_rhttp.explain``) both drive these objects,
so explain runs exactly the code a sync runs. Nothing here imports singer-sdk.
"""

from __future__ import annotations

import itertools
import logging
import time
import typing as t

from tap_rhttp.config.load import load_specs
from tap_rhttp.config.templates import template_context
from tap_rhttp.errors import RHTTPError
from tap_rhttp.http.ratelimit import RateLimiter
from tap_rhttp.paging.paginator import Paginator
from tap_rhttp.redact import build_redactor
from tap_rhttp.run import graph
from tap_rhttp.run.chain import Chain, ChainStats, Fetched
from tap_rhttp.run.fanout import chain_tasks, run_chains
from tap_rhttp.schema.infer import infer_schema, prepare_declared_schema

if t.TYPE_CHECKING:
    from tap_rhttp.config.spec import RequestSpec
    from tap_rhttp.run.chain import Page
    from tap_rhttp.run.fanout import ChainTask, Event
    from tap_rhttp.types import JSON

#: Records of a streamed first page (a body too large to parse whole) that inference reads.
SAMPLE_RECORDS = 5000


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
        self.stats = ChainStats()
        #: Discovery's sample pages, by target URL; the sync uses each once.
        self.prefetched: dict[str, Fetched] = {}
        #: Chains skipped after an error (`on_error: skip`).
        self.skipped = 0
        #: What the stream's chains have warned about (each warning once per stream).
        self.notes: set[str] = set()

    def make_chain(
        self, spec: RequestSpec, read_ahead: bool, *, label: str = "", counted: bool = True
    ) -> Chain:
        """A new request chain for a rendered spec of this stream.

        Args:
            spec: the rendered spec (a task's).
            read_ahead: fetch the next page while the caller handles this one.
            label: the task's label (``for_each[2]``), for the place errors name.
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
            label=label,
            notes=self.notes,
        )

    def tasks(
        self, *, bookmark: JSON = None, row: dict[str, JSON] | None = None
    ) -> list[ChainTask]:
        """The chains a sync runs: one, one per `for_each` value, or one for a parent row."""
        return chain_tasks(
            self.spec, self.context.template_context, self.redactor, bookmark=bookmark, row=row
        )

    def run(self, tasks: t.Sequence[ChainTask], *, read_ahead: bool = True) -> t.Iterator[Event]:
        """Every task's chain, run as the spec says (`max_concurrency`): one ordered feed."""

        def make(task: ChainTask, inline: bool) -> Chain:
            assert task.spec is not None
            return self.make_chain(task.spec, read_ahead and inline, label=task.label)

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
        emitted = 0
        try:
            for record in page.records:
                if drop and graph.at_or_before(record.get(key), bookmark):
                    continue
                for field, column in columns:
                    record.setdefault(column, row.get(field))
                emitted += 1
                yield record
        finally:  # the progress line counts what was emitted, not what was fetched
            self.stats.add(records=emitted)

    def sample(
        self, *, bookmark: JSON, parent_rows: list[dict[str, JSON]]
    ) -> list[dict[str, JSON]]:
        """Discovery's sample: the first page of the first chain, kept for the sync.

        A child samples with its parent's first sampled row. A chain whose templates fail
        to render fails discovery with that error, as its sync would.
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
        tasks = self.tasks(bookmark=bookmark, row=parent_rows[0] if parent_rows else None)
        if not tasks:
            self.logger.warning(
                "stream %s: `for_each` is empty, so no request is made and no fields could "
                "be inferred (the stream is empty).",
                spec.name,
            )
            return []
        task = tasks[0]
        if task.error is not None:
            raise task.error
        assert task.spec is not None
        first = Paginator(task.spec, self.redactor).first()
        if first is None:  # page_limit 0
            return []
        chain = self.make_chain(task.spec, read_ahead=False, label=task.label, counted=False)
        try:
            fetched, _ = chain.get(first)
        except RHTTPError as exc:
            exc.locate(chain.where(1))
            raise
        finally:
            chain.close()
        self.prefetched[chain.target(first)] = fetched
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
    ) -> None:
        self.specs = load_specs(config) if specs is None else specs
        self.by_name = {spec.name: spec for spec in self.specs}
        self.redactor = build_redactor(self.specs, config.get("secrets"))
        self.template_context = template_context(config)
        self.logger = logger or logging.getLogger("tap-rhttp")
        self.sleep = sleep
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
