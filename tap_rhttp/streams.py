"""RHTTPStream: thin glue from singer-sdk's stream hooks to the run layer.

Everything HTTP (requests, retries, formats, pagination, fan-out) happens in
``tap_rhttp.run`` and below; which chains a sync runs, how records are shaped (bookmark
filter, parent columns) and how a failed chain is skipped are the stream's
:class:`~tap_rhttp.run.context.StreamRun`'s, shared with explain mode. This class keeps
the resume position in STATE after every completely emitted page, and writes records
through the fast path where it provably writes what the SDK would. The SDK keeps doing
what it is good at: catalog and selection, bookmarks, stream maps, type conformance and
message writing.
"""

from __future__ import annotations

import itertools
import logging
import sys
import time
import typing as t

from tap_rhttp.errors import RHTTPError
from tap_rhttp.run import graph
from tap_rhttp.run.context import COLUMNS_KEY
from tap_rhttp.run.resume import ResumeState
from tap_rhttp.schema.drift import columns
from tap_rhttp.schema.infer import INFERRED
from tap_rhttp.sdk_compat import (
    StreamHooks,
    message_writer,
    replace_schema,
    write_state_message,
)
from tap_rhttp.writer import RecordFastPath, page_blocker

if t.TYPE_CHECKING:
    from singer_sdk import Tap, metrics

    from tap_rhttp.run.chain import Page
    from tap_rhttp.run.context import StreamRun
    from tap_rhttp.run.fanout import ChainTask
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
        self._fast_path_known = False  # RecordFastPath.for_stream has been asked
        self._writing = False  # inside a sync that writes RECORD messages
        self._record_counter: metrics.Counter | None = None
        self._writer: RecordFastPath | None = None  # the page writer of this sync

    @override
    def log(self, message: str, *args: t.Any, level: int = logging.INFO, **kwargs: t.Any) -> None:
        """Log through the SDK, but never a second ERROR line for an r.http error.

        singer-sdk logs "An unhandled error occurred while syncing" at ERROR before it
        re-raises; for an :class:`RHTTPError` the tap then reports the error itself, as
        one ERROR line with r.http's envelope. The SDK's line is kept, at INFO.
        """
        if level >= logging.ERROR and isinstance(sys.exc_info()[1], RHTTPError):
            level = logging.INFO
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
        """No child streams, no child contexts (the SDK would copy every record for none)."""
        if not self.child_streams:
            return ()
        return super().generate_child_contexts(record, context)

    @override
    def get_child_context(
        self, record: dict[str, JSON], context: t.Mapping[str, JSON] | None
    ) -> dict[str, JSON] | None:
        """Children receive the whole parent record as `row`."""
        return {"row": dict(record)}

    @override
    def get_records(self, context: t.Mapping[str, t.Any] | None) -> t.Iterable[dict[str, t.Any]]:
        """Every record of every chain, each page once it is complete, in chain order."""
        spec, run = self.spec, self.run
        bookmark = self.bookmark(context)
        resumable = spec.parent is None
        resume = ResumeState(spec, self.redactor, track_done=spec.for_each is not None)
        if resumable:
            resume.load(self.stream_state.get(ResumeState.KEY), self.logger)
        row = (context or {}).get("row") if spec.parent is not None else None
        tasks = [
            task for task in run.tasks(bookmark=bookmark, row=row) if task.key not in resume.done
        ]
        for task in tasks:
            if task.spec is not None:
                task.start, task.done = resume.start_of(task.key, task.spec)
                if task.start is not None:
                    self.logger.info(
                        "stream %s%s: resuming at page %d: %s",
                        spec.name,
                        f" {task.label}" if task.label else "",
                        task.done + 1,
                        self.redactor.url(task.start.target),
                    )
        self._writer = self._page_writer(context)
        if not self._started:
            self._started = self._last_progress = time.monotonic()
        read_ahead = self.ABORT_AT_RECORD_COUNT is None  # a dry run stops early
        for event in run.run(tasks, read_ahead=read_ahead):
            task = event.task
            if event.error is not None:
                run.skip(task, event.error)
                resume.finish(task.key)
            elif event.page is None:
                resume.finish(task.key)
            else:
                assert task.spec is not None
                try:
                    yield from self._emit(event.page, task, bookmark, context)
                finally:
                    event.page.close()
                resume.advance(task.key, event.page, task.spec)
            if resumable:
                self._save_resume(resume.to_state())
            self._progress()
        if resumable:
            self._save_resume(None)
        if spec.parent is None:  # a child reports once, after all its parent rows
            run.prefetched.clear()  # sampled pages no chain asked for (a resumed run's)
            self._progress(final=True)

    def _emit(
        self,
        page: Page,
        task: ChainTask,
        bookmark: JSON,
        context: t.Mapping[str, JSON] | None,
    ) -> t.Iterator[dict[str, JSON]]:
        """A page's records, fitted to the schema first (`schema_drift`), then written
        whole by the fast path or yielded to the SDK's loop."""
        if self._fast_path is not None:
            self._fast_path.new_page()
        run = self.run
        label = f", {task.label}" if task.label else ""
        where = f"stream {self.spec.name}{label}, page {page.number}"
        if isinstance(page.records, list):
            shaped = list(run.shape(page, task, bookmark))
            self._adopt(run.conform(shaped, where), context)
            records: t.Iterator[dict[str, JSON]] = iter(shaped)
        else:  # a streamed page, never all in memory: every batch is checked before any
            checking = run.shape(page, task, bookmark, counted=False)  # is written
            while batch := list(itertools.islice(checking, PAGE_BATCH)):
                self._adopt(run.conform(batch, where), context)
            records = run.shape(page, task, bookmark)
        page_writer = self._writer
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
        self._writer = self._page_writer(context)

    @override
    def log_sync_costs(self) -> None:
        if self.spec.parent is not None and self._started:
            self._progress(final=True)
        super().log_sync_costs()

    def _save_resume(self, entry: dict[str, JSON] | None) -> None:
        """Put the resume position into STATE and write a STATE message."""
        state = self.stream_state
        if entry is None:
            if ResumeState.KEY not in state:
                return
            state.pop(ResumeState.KEY, None)
        else:
            state[ResumeState.KEY] = entry
        self.state_manager.is_flushed = False
        write_state_message(self)

    def _progress(self, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last_progress < PROGRESS_INTERVAL:
            return
        self._last_progress = now
        elapsed = max(now - self._started, 1e-9)
        stats = self.run.stats
        self.logger.info(
            "stream %s %s: %d pages, %d records, %d retries, %d skipped, %.0f records/s, %.1f s",
            self.spec.name,
            "done" if final else "progress",
            stats.pages,
            stats.records,
            stats.retries,
            self.run.skipped,
            stats.records / elapsed,
            elapsed,
        )
