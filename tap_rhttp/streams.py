"""RHTTPStream: thin glue from singer-sdk's stream hooks to the run layer.

Everything HTTP (requests, retries, formats, pagination, fan-out) happens in
``tap_rhttp.run`` and below; which chains a sync runs, how records are shaped (bookmark
filter, parent columns) and how a failed chain is skipped are the stream's
:class:`~tap_rhttp.run.context.StreamRun`'s, shared with explain mode. This class keeps
the resume position in STATE after every completely emitted page (under BATCH messages:
each time a batch file is handed over), drives its child streams a parent page at a time
(so a child can run many parent rows at once and resume relative to its parent), and
writes records through the fast path where it provably writes what the SDK would. The
SDK keeps doing what it is good at: catalog and selection, bookmarks, stream maps, type
conformance and message writing.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import sys
import time
import typing as t

from singer_sdk.exceptions import AbortedSyncFailedException, AbortedSyncPausedException

from tap_rhttp.run import graph
from tap_rhttp.run.context import COLUMNS_KEY, SAFE_METHODS
from tap_rhttp.run.fanout import Lookahead
from tap_rhttp.run.resume import ROW_WINDOW, ChildResume, ResumeState, rows_digest
from tap_rhttp.schema.drift import columns
from tap_rhttp.schema.infer import INFERRED
from tap_rhttp.sdk_compat import (
    StreamHooks,
    message_writer,
    replace_schema,
    write_state_message,
)
from tap_rhttp.writer import STOP, BufferedMsgSpecWriter, RecordFastPath, page_blocker

if t.TYPE_CHECKING:
    from singer_sdk import Tap, metrics

    from tap_rhttp.run.chain import Page
    from tap_rhttp.run.context import Started, StreamRun
    from tap_rhttp.run.fanout import Batch, ChainTask, Event
    from tap_rhttp.sdk_compat import BaseBatchFileEncoding, BatchConfig
    from tap_rhttp.types import JSON

try:
    from typing import override  # type: ignore[attr-defined]
except ImportError:  # Python < 3.12
    from typing_extensions import override

#: Seconds between two progress lines of one stream.
PROGRESS_INTERVAL = 30.0
#: Records the fast path writes at once (a page larger than this goes in batches).
PAGE_BATCH = 2000


class RHTTPStream(StreamHooks):
    """One configured r.http spec as a Singer stream.

    Args:
        tap: the tap.
        run: the stream's part of the run (its spec, chains, limiter, counters).
        schema: the declared, inferred or catalog schema.
    """

    def __init__(self, tap: Tap, run: StreamRun, schema: dict[str, t.Any]) -> None:
        self.run = run
        self.spec = run.spec
        self.redactor = run.redactor
        super().__init__(tap=tap, schema=schema, name=run.spec.name)
        run.set_schema(schema, inferred=schema.get("description") == INFERRED)
        self.primary_keys = list(self.spec.primary_keys)
        if self.spec.replication_key:
            self.replication_key = self.spec.replication_key
        self._started = 0.0
        self._last_progress = 0.0
        self._fast_path: RecordFastPath | None = None
        self._writer: RecordFastPath | None = None  # the page writer of this sync
        self._fast_path_known = False  # RecordFastPath.for_stream has been asked
        self._writing = False  # inside a sync that writes RECORD messages
        self._record_counter: metrics.Counter | None = None
        self._batch = False  # records go to BATCH files (see get_batches)
        self._live: ResumeState | None = None  # the position of the sync in progress
        self._live_final = False  # that sync has finished every chain
        self._finished_chains: list[str] = []  # finished since the last publish
        self._resume: ChildResume | None = None  # a child's position, across parent pages
        self._rows: list[tuple[int, dict[str, JSON]]] = []  # a child's window of rows
        self._window: Started | None = None  # that window's chains, if started ahead
        self._ahead: dict[tuple[str, int], Started] = {}  # started for later parent pages

    @override
    def log(self, message: str, *args: t.Any, level: int = logging.INFO, **kwargs: t.Any) -> None:
        """Log through the SDK, but never a second ERROR line for an r.http error.

        singer-sdk logs "An unhandled error occurred while syncing" at ERROR before it
        re-raises; the tap then reports the error itself, as one ERROR line (r.http's
        envelope for an :class:`RHTTPError`). The SDK's line is kept, at INFO.
        """
        if level >= logging.ERROR and isinstance(sys.exc_info()[1], Exception):
            level = logging.INFO  # the tap reports every error that ends a run, once
        super().log(message, *args, level=level, **kwargs)

    @property
    def is_sorted(self) -> bool:
        """The spec's `is_sorted`: the bookmark may advance as records arrive."""
        return self.spec.is_sorted

    def bookmark(self, context: t.Mapping[str, JSON] | None) -> JSON:
        """The current bookmark, or the spec's `start_value`."""
        if not self.spec.replication_key:
            return None
        return graph.bookmark(self.spec, self.get_starting_replication_key_value(context))

    # ------------------------------------------------------------------ output (see writer.py)

    def _record_fast_path(self) -> RecordFastPath | None:
        if not self._fast_path_known:
            self._fast_path, reason = RecordFastPath.for_stream(self, message_writer(self))
            self._fast_path_known = True
            self.logger.debug(
                "stream %s: records are written %s",
                self.name,
                "by the fast path" if self._fast_path else f"the SDK's way: {reason}",
            )
        return self._fast_path

    def _page_writer(self, context: t.Mapping[str, JSON] | None) -> RecordFastPath | None:
        """The fast path, when whole pages may also skip the SDK's per-record loop."""
        if not self._writing or self._record_counter is None:
            return None
        fast = self._record_fast_path()
        if fast is None:
            return None
        reason = page_blocker(self, context)
        if reason:
            self.logger.debug("stream %s: records go through the SDK loop: %s", self.name, reason)
        return None if reason else fast

    @override
    def get_record_counter(self, **kwargs: t.Any) -> metrics.Counter:
        self._record_counter = super().get_record_counter(**kwargs)
        return self._record_counter

    @override
    def on_sync(self, writing: bool) -> None:
        self._writing = writing
        if writing:
            self._record_columns()

    def _record_columns(self) -> None:
        """Keep in STATE the column type of every field of the schema this sync emitted:
        a later run keeps them (target-postgres cannot alter a column's type)."""
        self.stream_state[COLUMNS_KEY] = columns(self.run.schema)
        self.state_manager.is_flushed = False

    @override
    def write_record_fast(self, record: dict[str, JSON]) -> bool:
        """The SDK's RECORD output, through the fast path where it is provably the same."""
        fast = self._record_fast_path()
        return fast is not None and fast.write(record)

    @override
    def generate_child_contexts(
        self, record: dict[str, JSON], context: t.Mapping[str, JSON] | None
    ) -> t.Iterable[t.Mapping[str, JSON] | None]:
        """None: the SDK syncs no child per record; this stream drives its children itself,
        a parent page at a time (:meth:`_drive_children`)."""
        return ()

    @override
    def get_batches(
        self, batch_config: BatchConfig, context: t.Mapping[str, JSON] | None = None
    ) -> t.Iterable[tuple[BaseBatchFileEncoding, list[str]]]:
        """The SDK's batches, with the resume position moved in step with them.

        The SDK writes each BATCH message, then a STATE message. When the batcher hands
        over a batch file, the record generator stands just after that file's last
        record: the position published now (into the stream's state, which that STATE
        message carries) covers exactly the records in the files written so far.
        """
        self._batch = True
        try:
            for encoding, manifest in super().get_batches(batch_config, context):
                self._publish()
                yield encoding, manifest
            self._publish()
        finally:
            self._batch = False

    @override
    def get_records(self, context: t.Mapping[str, t.Any] | None) -> t.Iterable[dict[str, t.Any]]:
        """Every record of every chain, each page once it is complete, in chain order."""
        run = self.run
        bookmark = self.bookmark(context)
        if self.spec.parent is not None:  # a window of parent rows (see _drive_children)
            rows, self._rows = self._rows, []
            ahead, self._window = self._window, None
            progress = self._child_resume()
            tasks, started = run.window_tasks(rows, progress, bookmark, ahead)
            yield from self._run_tasks(tasks, progress, bookmark, context, started)
            return
        resume = run.resume_state(self.stream_state.get(ResumeState.KEY))
        tasks = run.pending(run.tasks(bookmark=bookmark, resume=resume), resume)
        yield from self._run_tasks(tasks, resume, bookmark, context)
        resume.clear()
        self._live_final = True
        if not self._batch:
            self._save_resume()
        run.prefetched.clear()  # sampled pages no chain asked for (a resumed run's)
        self._progress(final=True)

    def _run_tasks(
        self,
        tasks: list[ChainTask],
        resume: ResumeState,
        bookmark: JSON,
        context: t.Mapping[str, JSON] | None,
        started: Batch | None = None,
    ) -> t.Iterator[dict[str, JSON]]:
        spec, run = self.spec, self.run
        self._live, self._live_final = resume, False
        for task in tasks:
            if task.start is not None:
                self.logger.info(
                    "stream %s%s: resuming at page %d: %s",
                    spec.name,
                    f" {task.label}" if task.label else "",
                    task.done + 1,
                    self.redactor.url(task.start.target),
                )
        batch = self._batch
        self._set_writer(None if batch else self._page_writer(context))
        if not self._started:
            self._started = self._last_progress = time.monotonic()
        read_ahead = self.ABORT_AT_RECORD_COUNT is None  # a dry run stops early
        children = self._children()
        events = Lookahead(run.run(tasks, read_ahead=read_ahead, started=started))
        # The next parent page may start its children's chains while this one's run: not
        # in a dry run, nor when fetching the parent's next page early is not safe.
        upcoming = events if read_ahead and spec.method in SAFE_METHODS else None
        # Pages of concurrent chains that are ready together go out in one write: the
        # output waits while the next event is already there (`more`), never longer.
        writer = message_writer(self)
        holding = isinstance(writer, BufferedMsgSpecWriter) and read_ahead and not batch
        held = t.cast("BufferedMsgSpecWriter", writer) if holding else None
        for event in self._closing(events, children, held):
            task = event.task
            page = event.page if event.error is None else None
            if page is not None and children:
                if held is not None:
                    held.flush()  # before waiting for children
                assert task.spec is not None
                try:  # children write their own pages (and stop between them on a signal)
                    self._drive_children(children, page, task, bookmark, upcoming)
                except BaseException:
                    page.close()
                    raise
            # A page's records and the STATE after them: a stop signal lets them finish.
            with STOP.section():
                if event.error is not None:
                    run.skip(task, event.error)
                    self._chain_over(resume, task.key)
                elif page is None:
                    self._chain_over(resume, task.key)
                else:
                    assert task.spec is not None
                    try:
                        skip, task.skip = task.skip, 0
                        if not run.emits:
                            pass  # a shard reading this parent for its children's rows only
                        elif batch:
                            position = resume.begin(task.key, page, task.spec, skip)
                            for record in self._emit(page, task, bookmark, context, skip):
                                if position is not None:
                                    position["skip"] = t.cast("int", position["skip"]) + 1
                                yield record
                        else:
                            yield from self._emit(page, task, bookmark, context, skip)
                    finally:
                        page.close()
                    resume.advance(task.key, page, task.spec)
                if not batch:
                    self._save_resume()
            if held is not None and not event.more:
                held.flush()
            self._progress()

    def _closing(
        self,
        events: Lookahead[Event],
        children: list[RHTTPStream],
        writer: BufferedMsgSpecWriter | None,
    ) -> t.Iterator[Event]:
        """The events, the writer holding their pages (if any); when they end or are left,
        their feed closes, and so do the kept workers of the children they drove."""
        try:
            with writer.holding() if writer is not None else contextlib.nullcontext():
                yield from events
        finally:
            events.close()
            for child in children:
                child.end_rows()

    def _chain_over(self, resume: ResumeState, key: str) -> None:
        resume.finish(key)
        self._finished_chains.append(key)

    # ------------------------------------------------------------------ child streams

    def _children(self) -> list[RHTTPStream]:
        return [
            child
            for child in self.child_streams
            if isinstance(child, RHTTPStream) and (child.selected or child.has_selected_descendents)
        ]

    def _drive_children(
        self,
        children: list[RHTTPStream],
        page: Page,
        task: ChainTask,
        bookmark: JSON,
        upcoming: Lookahead[Event] | None,
    ) -> None:
        """Sync the children of a page's rows, before the page's records are emitted.

        So the parent's position names this page until its children are done: after a
        kill, the resumed parent fetches it again and its children resume (see
        ``tap_rhttp.run.resume``). Rows are what the page emits (bookmark filter, the
        stream map's filter); children run in windows of ROW_WINDOW rows.

        Before waiting for them, the children of the parent's next page (`upcoming`, its
        next event) are started, when every chain of this page already is: their records
        are still emitted in their page's turn, so output order and STATE stay as they
        were; only the waiting overlaps.
        """
        keep = self.stream_maps[0].get_filter_result

        def rows_of(page: Page, task: ChainTask) -> t.Callable[[], t.Iterator[dict[str, JSON]]]:
            def rows() -> t.Iterator[dict[str, JSON]]:
                shaped = self.run.shape(page, task, bookmark, counted=False)
                return (r for r in shaped if keep(r))

            return rows

        rows = rows_of(page, task)
        digest = rows_digest(rows(), self.spec.primary_keys)
        ready = [child.start_rows(task.key, page.number, rows) for child in children]
        following = upcoming.peek() if upcoming is not None and any(ready) else None
        if following is not None and following.page is not None and following.error is None:
            later = rows_of(following.page, following.task)
            for child, whole in zip(children, ready, strict=True):
                if whole:
                    child.start_rows(following.task.key, following.page.number, later)
        for child in children:
            child.sync_rows(task.key, page.number, digest, rows)

    def start_rows(
        self, chain: str, number: int, rows: t.Callable[[], t.Iterator[dict[str, JSON]]]
    ) -> bool:
        """Start this child's chains for a parent page's rows before its turn (see
        :meth:`StreamRun.start_rows`); `sync_rows` reads them when that page comes.

        Returns:
            Whether every chain of that page has started (or it has none to run), so the
            chains of a later page may start after them.
        """
        key = (chain, number)
        if key not in self._ahead:
            resume = self._child_resume()
            if resume.page_finished(chain, number):
                return True
            started = self.run.start_rows(resume, chain, number, rows())
            if started is None:
                return False
            self._ahead[key] = started
        return self._ahead[key].whole

    def sync_rows(
        self,
        chain: str,
        number: int,
        digest: str,
        rows: t.Callable[[], t.Iterator[dict[str, JSON]]],
    ) -> None:
        """Run this child for the rows of one parent page (chain `chain`, page `number`)."""
        resume = self._child_resume()
        started = self._ahead.pop((chain, number), None)
        if started is not None and started.batch.over:
            started = None  # cancelled (see below): planned again
        if resume.page_finished(chain, number):  # (never started: see start_rows)
            return
        resume.enter_page(chain, number, digest, self.logger)
        numbered = enumerate(rows())
        while window := list(itertools.islice(numbered, ROW_WINDOW)):
            self._rows = [(i, row) for i, row in window if not resume.is_done(str(i))]
            if started is not None and len(self._rows) < len(window):
                # (an untouched page starts afresh, so this cannot happen) Planned again,
                # with what was started after it: the workers' batches are read in order.
                for later in (started, *self._ahead.values()):
                    later.batch.cancel()
                started = None
            self._window, started = started, None  # the first window's, if started
            try:
                if self._rows:
                    self.sync(context={"parent_page": f"{chain}:{number}"})
            except (AbortedSyncFailedException, AbortedSyncPausedException):
                return  # a dry run's record limit: the SDK goes on with other streams
            finally:
                if self._window is not None:  # not read (the sync stopped before it)
                    self._window.batch.cancel()
                    self._window = None
            self._put_resume(resume.to_state())
        if started is not None:  # the page has no row: nothing to read
            started.batch.cancel()
        resume.leave_page()
        self._put_resume(resume.to_state())

    def end_rows(self) -> None:
        """The parent's pages are over: end this child's kept workers, cancelling what
        was started for pages that never came."""
        for started in self._ahead.values():
            started.batch.cancel()
        self._ahead.clear()
        self.run.close_workers()

    def _child_resume(self) -> ChildResume:
        if self._resume is None:
            resume = self.run.resume_state(self.stream_state.get(ResumeState.KEY))
            assert isinstance(resume, ChildResume)
            self._resume = resume
        return self._resume

    def parent_chain_finished(self, chain: str) -> None:
        """The parent's chain `chain` is over, in what the parent publishes now."""
        if self._resume is not None:
            self._resume.parent_chain_finished(chain)
            self._put_resume(self._resume.to_state())

    def clear_progress(self) -> None:
        """The parent's sync is over: nothing of this child is left to resume."""
        if self._resume is not None:
            self._resume.clear()
        self._put_resume(None)
        for child in self._children():
            child.clear_progress()

    # ------------------------------------------------------------------ STATE

    def _publish(self) -> None:
        """Put the live resume position into the stream's state (no message written)."""
        resume = self._live
        if resume is None:
            return
        children = self._children()
        for key in self._finished_chains:
            for child in children:
                child.parent_chain_finished(key)
        self._finished_chains.clear()
        if self._live_final:
            for child in children:
                child.clear_progress()
            self._put_resume(None)
            self._live = None
        else:
            self._put_resume(resume.to_state())

    def _save_resume(self) -> None:
        """Publish the resume position and write a STATE message, unless nothing changed
        since the last one (records written since then count as a change)."""
        self._publish()
        write_state_message(self)

    def _put_resume(self, entry: dict[str, JSON] | None) -> None:
        state = self.stream_state
        if entry is None:
            if state.pop(ResumeState.KEY, None) is None:
                return
        elif state.get(ResumeState.KEY) == entry:
            return
        else:
            state[ResumeState.KEY] = entry
        self.state_manager.is_flushed = False

    def _emit(
        self,
        page: Page,
        task: ChainTask,
        bookmark: JSON,
        context: t.Mapping[str, JSON] | None,
        skip: int = 0,
    ) -> t.Iterator[dict[str, JSON]]:
        """A page's records, fitted to the schema first (`schema_drift`), then written
        whole by the fast path or yielded to the SDK's loop.

        `skip`: how many of its records a batch file already holds (a resumed page).
        """
        if self._fast_path is not None:
            self._fast_path.new_page()
        run = self.run
        page_writer = self._writer
        if page_writer is not None and page_writer.spans_ok:  # (spans counts them emitted)
            spans = run.spans(page, task, bookmark, skip=skip)
            if spans is not None and page_writer.write_spans(spans):
                assert self._record_counter is not None
                self._record_counter.increment(len(spans))
                self.state_manager.is_flushed = False
                return
        label = f", {task.label}" if task.label else ""
        where = f"stream {self.spec.name}{label}, page {page.number}"
        if isinstance(page.records, list):
            shaped = list(run.shape(page, task, bookmark, skip=skip))
            self._adopt(run.conform(shaped, where), context)
            records: t.Iterator[dict[str, JSON]] = iter(shaped)
        elif (
            page_writer is not None
            and page_writer.spans_ok
            and (spooled := run.spooled_lines(page, task, bookmark, skip=skip, batch=PAGE_BATCH))
        ):
            assert self._record_counter is not None
            for lines in spooled:
                page_writer.write_spans(lines)
                self._record_counter.increment(len(lines))
            self.state_manager.is_flushed = False
            return
        else:  # a streamed page, never all in memory: every batch is checked before any
            checking = run.shape(page, task, bookmark, counted=False, skip=skip)  # is written
            while batch := list(itertools.islice(checking, PAGE_BATCH)):
                self._adopt(run.conform(batch, where), context)
            records = run.shape(page, task, bookmark, skip=skip)
        while batch := list(itertools.islice(records, PAGE_BATCH)):
            if not isinstance(page.records, list):
                run.conform(batch, where)  # routes values to variant columns, as checked
            if page_writer is not None and page_writer.write_page(batch):
                assert self._record_counter is not None
                self._record_counter.increment(len(batch))
                self.state_manager.is_flushed = False
            else:
                yield from batch

    def _adopt(self, schema: dict[str, JSON] | None, context: t.Mapping[str, JSON] | None) -> None:
        """A new schema (drift): the SDK conforms to it, a SCHEMA message announces it
        before the records that need it, and the fast path is rebuilt for it."""
        if schema is None:
            return
        replace_schema(self, schema)
        self._record_columns()
        self._fast_path, self._fast_path_known = None, False
        if self._writer is not None:
            self._set_writer(self._page_writer(context))

    def _set_writer(self, writer: RecordFastPath | None) -> None:
        """Pages are written whole by `writer` (None: the SDK's loop), and from their own
        bytes when it conforms to the schema the run checks pages against."""
        self._writer = writer
        self.run.splice = (
            writer is not None and writer.spans_ok and writer.schema == self.run.schema
        )

    @override
    def log_sync_costs(self) -> None:
        if self.spec.parent is not None and self._started:
            self._progress(final=True)
        super().log_sync_costs()

    def _progress(self, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last_progress < PROGRESS_INTERVAL:
            return
        self._last_progress = now
        elapsed = max(now - self._started, 1e-9)
        stats = self.run.stats
        ended = f", {stats.rule_skips} ended by a skip rule" if stats.rule_skips else ""
        self.logger.info(
            "stream %s %s: %d pages, %d records, %d retries, %d skipped, %.0f records/s, %.1f s%s",
            self.spec.name,
            "done" if final else "progress",
            stats.pages,
            stats.records,
            stats.retries,
            self.run.skipped,
            stats.records / elapsed,
            elapsed,
            ended,
        )
