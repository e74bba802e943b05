"""RHTTPStream: thin glue from singer-sdk's stream hooks to the request chains.

Everything HTTP (requests, retries, formats, pagination, fan-out) happens in ``chain``,
``fanout`` and the modules below them. This class decides which chains a sync runs
(one; one per ``for_each`` value; one per parent row), drops records at or before the
bookmark, copies parent keys into child records, and keeps the resume position in
STATE after every completely emitted page. The SDK keeps doing what it is good at:
catalog and selection, bookmarks, stream maps, type conformance and message writing.
"""

from __future__ import annotations

import datetime
import functools
import itertools
import logging
import sys
import time
import typing as t

from singer_sdk.streams import Stream

from tap_rhttp import headstart
from tap_rhttp.chain import Chain, ChainStats
from tap_rhttp.errors import RHTTPError
from tap_rhttp.fanout import (
    ChainTask,
    Event,
    ResumeState,
    chain_tasks,
    run_chains,
    runs_inline,
)
from tap_rhttp.ratelimit import RateLimiter
from tap_rhttp.writer import RecordFastPath, page_blocker

if t.TYPE_CHECKING:
    from singer_sdk import Tap, metrics

    from tap_rhttp.chain import Page
    from tap_rhttp.redact import Redactor
    from tap_rhttp.request import Response
    from tap_rhttp.spec import RequestSpec

try:
    from typing import override  # type: ignore[attr-defined]
except ImportError:  # Python < 3.12
    from typing_extensions import override

JSON = t.Any
#: Seconds between two progress lines of one stream.
PROGRESS_INTERVAL = 30.0
#: Records the fast path writes at once (a page larger than this goes in batches).
PAGE_BATCH = 2000


def _as_datetime(value: JSON) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)


def at_or_before(value: JSON, bookmark: JSON) -> bool:
    """Whether a replication-key value is at or before the bookmark.

    Date-times compare as instants (offsets honoured), numbers as numbers, anything
    else as text; values of different kinds are never dropped.
    """
    when, mark = _as_datetime(value), _as_datetime(bookmark)
    if when is not None and mark is not None:
        return when <= mark
    numbers = (int, float)
    if isinstance(value, numbers) and isinstance(bookmark, numbers):
        return bool(value <= bookmark)
    if isinstance(value, str) and isinstance(bookmark, str):
        return value <= bookmark
    return False


class RHTTPStream(Stream):
    """One configured r.http spec as a Singer stream."""

    def __init__(
        self,
        tap: Tap,
        spec: RequestSpec,
        schema: dict[str, t.Any],
        redactor: Redactor,
        *,
        template_context: dict[str, JSON] | None = None,
        parent_columns: tuple[tuple[str, str], ...] = (),
        prefetched: dict[str, Response] | None = None,
    ) -> None:
        """Create the stream of one spec.

        Args:
            tap: the tap.
            spec: the validated spec.
            schema: the declared, inferred or catalog schema.
            redactor: masks secrets in messages.
            template_context: `config` and `secrets` for `{{ }}` templates.
            parent_columns: (parent field, child column) pairs copied into child records.
            prefetched: discovery's sample responses, reused once by the sync.
        """
        self.spec = spec
        self.redactor = redactor
        self.template_context = template_context or {}
        self.parent_columns = parent_columns
        self.prefetched = prefetched if prefetched is not None else {}
        self.stats = ChainStats()
        self.skipped = 0
        self.limiter = (
            RateLimiter(rate=spec.rate_limit, max_concurrency=None) if spec.rate_limit else None
        )
        super().__init__(tap=tap, schema=schema, name=spec.name)
        self.primary_keys = list(spec.primary_keys)
        if spec.replication_key:
            self.replication_key = spec.replication_key
        self._started = 0.0
        self._last_progress = 0.0
        self._fast_path: RecordFastPath | None = None
        self._fast_path_known = False  # RecordFastPath.for_stream has been asked
        self._writing = False  # inside a sync that writes RECORD messages
        self._record_counter: metrics.Counter | None = None

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

    # ------------------------------------------------------------------ building chains

    def make_chain(self, spec: RequestSpec, *, read_ahead: bool = True) -> Chain:
        """A new request chain for a (rendered) spec.

        `read_ahead` is for chains the caller runs one after another: on fan-out workers
        the next page is already fetched while the stream writes the last one, and a
        helper thread per chain only adds a hand-over per page. A dry run stops early,
        so it never reads ahead.
        """
        return Chain(
            spec,
            self.redactor,
            self.logger,
            limiter=self.limiter,
            prefetched=self.prefetched,
            stats=self.stats,
            read_ahead=read_ahead and self.ABORT_AT_RECORD_COUNT is None,
            stream_bodies=True,
        )

    def bookmark(self, context: t.Mapping[str, JSON] | None) -> JSON:
        """The current bookmark, or the spec's `start_value`."""
        if not self.spec.replication_key:
            return None
        value = self.get_starting_replication_key_value(context)
        return value if value is not None else self.spec.start_value

    def tasks(self, context: t.Mapping[str, JSON] | None, bookmark: JSON) -> list[ChainTask]:
        """The chains this sync runs."""
        row = (context or {}).get("row") if self.spec.parent is not None else None
        return chain_tasks(
            self.spec, self.template_context, self.redactor, bookmark=bookmark, row=row
        )

    # ------------------------------------------------------------------ records

    def _records_of(
        self, page: Page, task: ChainTask, bookmark: JSON, columns: tuple[tuple[str, str], ...]
    ) -> t.Iterator[dict[str, JSON]]:
        key = self.spec.replication_key or ""
        drop = bool(key) and self.spec.filter_bookmark and bookmark is not None
        for record in page.iter_records():
            if drop and at_or_before(record.get(key), bookmark):
                continue
            if columns and task.row is not None:
                for field, column in columns:
                    record.setdefault(column, task.row.get(field))
            yield record

    # ------------------------------------------------------------------ output (see writer.py)

    def _record_fast_path(self) -> RecordFastPath | None:
        if not self._fast_path_known:
            self._fast_path, reason = RecordFastPath.for_stream(self, self._tap.message_writer)
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
    def _sync_records(
        self, context: t.Mapping[str, JSON] | None = None, *, write_messages: bool = True
    ) -> t.Generator[dict[str, JSON], t.Any, t.Any]:
        self._writing = write_messages
        try:
            yield from super()._sync_records(context, write_messages=write_messages)
        finally:
            self._writing = False

    @override
    def _write_record_message(self, record: dict[str, JSON]) -> None:
        """The SDK's RECORD output, through the fast path where it is provably the same."""
        fast = self._record_fast_path()
        if fast is not None and fast.write(record):
            self.state_manager.is_flushed = False
            return
        super()._write_record_message(record)

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
        spec = self.spec
        bookmark = self.bookmark(context)
        resumable = spec.parent is None
        resume = ResumeState(spec, self.redactor, track_done=spec.for_each is not None)
        if resumable:
            resume.load(self.stream_state.get(ResumeState.KEY), self.logger)
        tasks = [task for task in self.tasks(context, bookmark) if task.key not in resume.done]
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
        columns = self.parent_columns
        page_writer = self._page_writer(context)
        if not self._started:
            self._started = self._last_progress = time.monotonic()
        events = self._head_start(tasks) if resumable else None
        if events is None:
            inline = runs_inline(tasks, spec.max_concurrency)
            make_chain = functools.partial(self.make_chain, read_ahead=inline)
            events = run_chains(tasks, make_chain, spec.max_concurrency)
        for event in events:
            task = event.task
            if event.error is not None:
                if spec.on_error != "skip":
                    raise event.error
                self.skipped += 1
                self.logger.warning(
                    "stream %s%s: skipped after an error (on_error: skip): %s",
                    spec.name,
                    f" {task.label}" if task.label else "",
                    self.redactor.text(str(event.error)),
                )
                resume.finish(task.key)
            elif event.page is None:
                resume.finish(task.key)
            else:
                assert task.spec is not None
                if self._fast_path is not None:
                    self._fast_path.new_page()
                records = self._records_of(event.page, task, bookmark, columns)
                if page_writer is None:
                    yield from records
                else:  # in batches: a streamed page is never all in memory at once
                    while batch := list(itertools.islice(records, PAGE_BATCH)):
                        if page_writer.write_page(batch):
                            assert self._record_counter is not None
                            self._record_counter.increment(len(batch))
                            self.state_manager.is_flushed = False
                        else:
                            yield from batch
                resume.advance(task.key, event.page, task.spec)
            if resumable:
                self._save_resume(resume.to_state())
            self._progress()
        if resumable:
            self._save_resume(None)
        if spec.parent is None:  # a child reports once, after all its parent rows
            self._progress(final=True)

    def _head_start(self, tasks: list[ChainTask]) -> t.Iterator[Event] | None:
        """The events of chains started before the tap (see ``tap_rhttp.headstart``)."""
        taken = headstart.take(self.name, tasks, self.logger)
        if taken is None:
            return None
        head, events = taken
        self.stats, self.limiter = head.stats, head.limiter
        self.logger.info(
            "stream %s: taking over %d chain(s) started while the tap loaded (%d page(s) "
            "already fetched)",
            self.name,
            len(tasks),
            head.stats.pages,
        )
        return events

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
        self._write_state_message()

    def _progress(self, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last_progress < PROGRESS_INTERVAL:
            return
        self._last_progress = now
        elapsed = max(now - self._started, 1e-9)
        stats = self.stats
        self.logger.info(
            "stream %s %s: %d pages, %d records, %d retries, %d skipped, %.0f records/s, %.1f s",
            self.spec.name,
            "done" if final else "progress",
            stats.pages,
            stats.records,
            stats.retries,
            self.skipped,
            stats.records / elapsed,
            elapsed,
        )
