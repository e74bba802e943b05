"""Singer output without the per-record tax: a buffered writer and a proven-equivalent fast path.

singer-sdk's writers flush stdout after every message, and for every record the stream
drops deselected fields, conforms every value to the schema, runs the stream maps and
builds a ``RecordMessage``: about 70 µs a record here, most of it doing nothing for
records parsed from JSON. Two things change that, and neither changes a byte of output:

:class:`BufferedMsgSpecWriter`
    singer-sdk's own ``MsgSpecWriter`` encoding, but RECORD lines collect in a buffer
    that goes out in one write when any other message is written (SCHEMA, STATE,
    ACTIVATE_VERSION, BATCH), when it passes :data:`FLUSH_BYTES`, and at exit. Every
    message still goes through the one buffer, in order, so a STATE always follows the
    records it covers, and whatever is unwritten when a run is killed outright comes
    after the last STATE: a resumed run fetches those records again. While a stream
    :meth:`~BufferedMsgSpecWriter.holding` its pages, STATE messages wait in the buffer
    too, so pages that are ready together (concurrent chains) go out in one write.

:class:`RecordFastPath`
    Writes a record as the bytes singer-sdk would write for it, skipping the work that
    cannot change them. It is only built for a stream where that is provable:

    - this writer is the tap's writer, and the stream keeps the SDK's message generation;
    - one stream map, the identity (``SameRecordTransform``), no flattening;
    - nothing deselected: every entry of the selection mask is true, so
      ``pop_deselected_record_properties`` removes nothing;
    - recursive type conformance (the SDK default), compiled from the effective schema
      into a :class:`ConformPlan` that mirrors ``conform_record_data_types`` rule by rule.

    For values parsed from JSON, conformance changes a record in exactly two ways: it
    drops keys a schema node does not list when that node has no truthy
    ``additionalProperties`` (and logs them), and it turns a non-null value of an
    exclusively boolean field into ``value != 0`` (``1`` becomes ``true``, ``"no"``
    becomes ``true``). It also maps NaN and infinities to null, which changes no byte:
    msgspec writes those floats as ``null`` anyway. The plan checks a record for exactly
    those cases (and for the shapes where the SDK itself would raise); any record it
    cannot vouch for goes the SDK's way, whole, so its output and its warnings are the
    SDK's own. ``tests/test_writer.py`` runs both paths on the same records and compares
    the lines byte for byte.

    ``time_extracted`` is taken once per page instead of once per record: the time the
    page's records were extracted.

    A page whose records' bytes ``tap_rhttp.schema.exact`` proved to be the very bytes
    msgspec writes for them, fitting the schema the SDK conforms to, is written around
    those bytes (:meth:`RecordFastPath.write_spans`): no dict per record is made.
    ``tests/test_exact.py`` runs whole syncs with and without it and compares the output.

:data:`STOP` (:class:`StopSignals`)
    SIGTERM and SIGINT end a command-line run at a page boundary with exit status
    128 + the signal's number (singer-sdk's own handler exits 0, so a scheduler took an
    interrupted run for a success). A signal that arrives while a page's records and
    its STATE are being written lets that page finish first; the output then ends with
    that STATE, and a partial page is never written. A second signal stops at once.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import logging
import os
import signal
import sys
import threading
import typing as t
import weakref

from singer_sdk.contrib.msgspec import MsgSpecWriter, encoder
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.singerlib import RecordMessage, StateMessage
from singer_sdk.singerlib.catalog import REPLICATION_FULL_TABLE
from singer_sdk.streams.core import Stream

from tap_rhttp.sdk_compat import (
    generates_own_record_messages,
    is_exclusive_boolean_type,
    is_object_type,
    is_uniform_list,
    state_partition_context,
    stream_version,
    utc_now,
)

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType

    import msgspec
    from singer_sdk.singerlib.encoding.simple import Message

    from tap_rhttp.types import JSON
#: Buffered RECORD bytes that trigger a write even before the next STATE.
FLUSH_BYTES = 1 << 20

_writers: weakref.WeakSet[BufferedMsgSpecWriter] = weakref.WeakSet()


@atexit.register
def _flush_all() -> None:
    """Nothing stays in a buffer at exit, also when the run ends with an error."""
    for writer in list(_writers):
        writer.flush()


def state_line(value: t.Mapping[str, JSON]) -> bytes:
    """The STATE line ``MsgSpecWriter`` writes for a (non-null) state value.

    Encoded straight from the value, without ``asdict``'s deep copy of the whole state
    (``StateMessage.to_dict`` leaves out only a null value, which goes the SDK's way).
    """
    return encoder.encode({"type": "STATE", "value": value}) + b"\n"


class ChangedStateWriter:
    """singer-sdk's ``StateWriter`` (a STATE message only when the state changed since
    the last one), remembering the last line written instead of a deep copy of the
    whole state.

    The SDK deep-copies the tap's state after every STATE message to compare the next
    one with: with a row of a child stream per STATE, that copy was the largest single
    cost of a parent/child run. The encoded line is the copy here (the state cannot
    change under it), made once and also written. Equal states give equal lines, so no
    STATE the SDK would drop is written; a state whose keys merely moved (equal as a
    dict) is written again, which repeats a position and loses nothing.
    """

    def __init__(self, writer: BufferedMsgSpecWriter) -> None:
        self.writer = writer
        self.last: bytes | None = None

    def write_state(self, state: t.Mapping[str, JSON]) -> None:
        """Write a STATE message for `state`, unless it is the last one written."""
        line = state_line(state)
        if line != self.last:
            self.writer.write_state_line(line)
            self.last = line


class BufferedMsgSpecWriter(MsgSpecWriter):
    """``MsgSpecWriter`` output, byte for byte, written in large blocks.

    Call :meth:`flush` to push out buffered records; it also happens on every non-RECORD
    message, past :data:`FLUSH_BYTES`, and at interpreter exit.
    """

    def __init__(self) -> None:
        super().__init__()
        self.buffer = bytearray()
        #: While above 0, STATE messages wait in the buffer too (see :meth:`holding`).
        self.holds = 0
        #: Where the buffer's last STATE ends: what a stop signal still writes.
        self.settled = 0
        _writers.add(self)

    def write_message(self, message: Message) -> None:
        """Buffer a message; anything but a RECORD (or a held STATE) is written out at
        once, after the buffer."""
        if isinstance(message, StateMessage) and message.value is not None:
            self.write_state_line(state_line(message.value))
            return
        self.buffer += self.format_message(message)
        if len(self.buffer) < FLUSH_BYTES:
            if isinstance(message, RecordMessage):
                return
            if isinstance(message, StateMessage):
                self.settled = len(self.buffer)
                if self.holds:
                    return
        self.flush()

    def write_state_line(self, line: bytes) -> None:
        """Buffer one STATE line (see :func:`state_line`), written out at once unless
        :meth:`holding`."""
        self.buffer += line
        self.settled = len(self.buffer)
        if self.holds and len(self.buffer) < FLUSH_BYTES:
            return
        self.flush()

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """STATE messages wait in the buffer too, each after the records it covers, until
        :meth:`flush` (or :data:`FLUSH_BYTES`): pages of concurrent chains that are ready
        together go out in one write. The bytes are the same; a stop signal still writes
        every complete page and its STATE (see :class:`StopSignals`). Flushed at the end.
        """
        self.holds += 1
        try:
            yield
        finally:
            self.holds -= 1
            if not self.holds:
                self.flush()

    def write_lines(self, lines: bytes) -> None:
        """Buffer complete, newline-terminated message lines."""
        self.buffer += lines
        if len(self.buffer) >= FLUSH_BYTES:
            self.flush()

    def write_record(self, message: dict[str, JSON]) -> None:
        """Buffer one RECORD message given as the dict ``RecordMessage.to_dict`` returns."""
        buffer = self.buffer
        encoder.encode_into(message, buffer, -1)
        buffer += b"\n"
        if len(buffer) >= FLUSH_BYTES:
            self.flush()

    def write_settled(self) -> None:
        """Write out what is buffered up to the last STATE (complete pages held with
        their STATE) and drop the rest (records of a page not yet complete)."""
        del self.buffer[self.settled :]
        self.flush()

    def flush(self) -> None:
        """Write out everything buffered (a stop signal waits for the write to end)."""
        if not self.buffer:
            return
        with STOP.section():
            _write_out(self.buffer)
            self.buffer.clear()
            self.settled = 0


def _write_out(data: bytearray) -> None:
    """Write bytes to stdout whole, a signal or a slow reader notwithstanding.

    ``sys.stdout.buffer.write`` of a large block can drop the rest of the block when a
    signal handler runs during a partial write to a pipe (CPython's BufferedWriter, seen
    on 3.11): the output then held half a line. ``os.write`` in a loop resumes after
    every partial write. Where stdout has no file descriptor (a test's capture), its
    buffer is written as before.
    """
    out = sys.stdout.buffer
    out.flush()  # whatever the text layer holds goes first
    try:
        fd = out.fileno()
    except (AttributeError, OSError, ValueError):
        out.write(data)
        out.flush()
        return
    with memoryview(data) as view:
        done = 0
        while done < len(view):
            done += os.write(fd, view[done:])


class StopSignals:
    """SIGTERM and SIGINT stop a run between pages, with exit status 128 + signal.

    Sections (:meth:`section`) are the spans that must not be cut: one page's records
    and its STATE, one write to stdout. A signal outside them stops the run at once; one
    inside stops it when the outermost section ends. Stopping writes what is buffered up
    to the last STATE (complete pages a writer held), drops the rest (records after the
    last STATE: a page not yet complete), logs one ERROR line and
    leaves with ``os._exit``: a request in flight on another thread is not waited for,
    and a resumed run starts from the last STATE, as after any kill.

    Only the command line installs it (:meth:`enable`); a tap built in a program keeps
    the handlers it finds.
    """

    def __init__(self) -> None:
        self.enabled = False
        self.depth = 0
        self.pending: int | None = None
        self.logger = logging.getLogger("tap-rhttp")

    def enable(self) -> None:
        """Stop on SIGTERM and SIGINT from now on (``install`` puts the handlers in place)."""
        self.enabled = True

    def install(self, logger: logging.Logger) -> None:
        """Replace singer-sdk's handlers (which exit 0) with this one, on the command line."""
        if not self.enabled or threading.current_thread() is not threading.main_thread():
            return
        self.logger = logger
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    @contextlib.contextmanager
    def section(self) -> Iterator[None]:
        """A span a stop signal lets finish (sections nest)."""
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if self.depth == 0 and self.pending is not None:
                self._stop(self.pending)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.depth and self.pending is None:
            self.pending = signum
            self.logger.warning(
                "%s received: finishing the page being written, then stopping "
                "(send it again to stop at once).",
                signal.Signals(signum).name,
            )
            return
        self._stop(signum)

    def _stop(self, signum: int) -> t.NoReturn:
        for writer in list(_writers):
            with contextlib.suppress(Exception):
                writer.write_settled()
            writer.buffer.clear()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        self.logger.error(
            "stopped by %s: the output ends after the last complete page and its STATE; "
            "a new run with that STATE resumes from there.",
            signal.Signals(signum).name,
        )
        for handler in (*logging.getLogger().handlers, *self.logger.handlers):
            with contextlib.suppress(Exception):
                handler.flush()
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(128 + signum)


#: The run's stop signals (one process, one run).
STOP = StopSignals()


# --------------------------------------------------------------------------- conformance

_RAISES = "raises"
#: The types a JSON value of an exclusively boolean field may have to stay as it is.
_BOOL_OR_NULL = frozenset({bool, type(None)})


class _Property(t.NamedTuple):
    """What conformance does to one listed property, by the value's kind."""

    key: str
    items: _Items | str | None  # a list value: its item plan, _RAISES, or None (primitive)
    fields: ConformPlan | None  # a dict value: its object plan, or None (primitive)
    boolean: bool | str  # a primitive value: exclusive boolean (True), _RAISES, or False


class _Items(t.NamedTuple):
    fields: ConformPlan | str | None  # dict items: object plan, _RAISES, or None (primitive)
    boolean: bool | str


def _safe(predicate: t.Callable[[dict[str, JSON]], JSON], schema: dict[str, JSON]) -> JSON:
    try:
        return predicate(schema)
    except Exception:
        return _RAISES


class ConformPlan:
    """``conform_record_data_types`` (recursive level) compiled for one schema node.

    :meth:`unchanged` answers, for one JSON-parsed object, whether conformance would give
    back an object that serialises to the same bytes. Only the properties where that can
    fail are looked at; a node whose schema lets every value through costs nothing.

    Args:
        schema: an object schema node (the stream's schema, or a nested one).
    """

    def __init__(self, schema: dict[str, JSON]) -> None:
        properties = schema.get("properties")
        self.has_properties = isinstance(properties, dict)
        props: dict[str, JSON] = properties if isinstance(properties, dict) else {}
        self.keys = frozenset(props)
        self.open = bool(schema.get("additionalProperties"))
        checks: list[_Property] = []
        for key, prop in props.items():
            check = self._compile(key, prop if isinstance(prop, dict) else {})
            if check.items is not None or check.fields is not None or check.boolean:
                checks.append(check)
        self.checks = tuple(checks)
        self.trivial = self.has_properties and self.open and not self.checks
        # The common case, boolean fields only: a page is checked key by key.
        self.flag_keys = tuple(
            c.key for c in checks if c.items is None and c.fields is None and c.boolean is True
        )
        self.flags_only = (
            self.has_properties and self.open and len(self.flag_keys) == len(self.checks)
        )

    @staticmethod
    def _compile(key: str, prop: dict[str, JSON]) -> _Property:
        uniform = _safe(is_uniform_list, prop)
        items: _Items | str | None = None
        if uniform == _RAISES:
            items = _RAISES
        elif uniform:
            item_schema = prop["items"]
            item_object = _safe(is_object_type, item_schema)
            item_fields: ConformPlan | str | None = None
            if item_object == _RAISES:
                item_fields = _RAISES
            elif item_object:
                item_fields = ConformPlan(item_schema)
                if not item_fields.has_properties:
                    item_fields = _RAISES  # the SDK reads item_schema["properties"]
            items = _Items(item_fields, _safe(is_exclusive_boolean_type, item_schema))
        is_object = _safe(is_object_type, prop)
        fields = None
        if is_object is not _RAISES and is_object and "properties" in prop:
            fields = ConformPlan(prop)
        boolean = _safe(is_exclusive_boolean_type, prop)
        if not boolean:
            # With a non-boolean field, a value that a plan below always lets through
            # would also pass as a primitive: drop the plan, skip the lookup.
            if fields is not None and fields.trivial:
                fields = None
            if (
                isinstance(items, _Items)
                and not items.boolean
                and (
                    items.fields is None
                    or (isinstance(items.fields, ConformPlan) and items.fields.trivial)
                )
            ):
                items = None
        return _Property(key, items, fields, boolean)

    def all_unchanged(self, records: t.Iterable[dict[str, JSON]]) -> bool:
        """:meth:`unchanged` for every record of a page."""
        if self.trivial:
            return True
        if self.flags_only:
            records = records if isinstance(records, (list, tuple)) else list(records)
            for key in self.flag_keys:
                if not {type(record.get(key)) for record in records} <= _BOOL_OR_NULL:
                    return False
            return True
        unchanged = self.unchanged
        return all(unchanged(record) for record in records)

    def unchanged(self, record: dict[str, JSON]) -> bool:
        """True when conforming `record` changes no byte of its JSON and raises nothing."""
        if self.trivial:
            return True
        if not self.has_properties:
            return not record  # the SDK reads schema["properties"] for the first key
        if not self.open and not record.keys() <= self.keys:
            return False  # the SDK drops (and reports) keys the schema does not list
        for check in self.checks:
            if check.key not in record:
                continue
            value = record[check.key]
            if isinstance(value, list) and check.items is not None:
                if check.items == _RAISES or not _items_unchanged(value, check.items):
                    return False
            elif isinstance(value, dict) and check.fields is not None:
                if not check.fields.unchanged(value):
                    return False
            elif not _primitive_unchanged(value, check.boolean):
                return False
        return True


def _primitive_unchanged(value: JSON, boolean: bool | str) -> bool:
    if boolean == _RAISES:
        return False
    return not boolean or value is None or value is True or value is False


def _items_unchanged(values: list[JSON], items: _Items | str) -> bool:
    assert isinstance(items, _Items)
    for value in values:
        if isinstance(value, dict) and items.fields is not None:
            if items.fields == _RAISES:
                return False
            assert isinstance(items.fields, ConformPlan)
            if not items.fields.unchanged(value):
                return False
        elif not _primitive_unchanged(value, items.boolean):
            return False
    return True


# --------------------------------------------------------------------------- fast path


def _why_not(stream: Stream, writer: object) -> str | None:
    """Why a stream's records cannot take the fast path (None: they can)."""
    if not isinstance(writer, BufferedMsgSpecWriter):
        return "the tap writes with another message writer"
    if generates_own_record_messages(stream):
        return "the stream generates its own record messages"
    maps = stream.stream_maps
    if len(maps) != 1 or type(maps[0]) is not SameRecordTransform:
        return "stream maps are configured"
    if maps[0].flattening_enabled:
        return "flattening is enabled"
    if not all(stream.mask.values()):
        return "some properties are deselected"
    if stream.TYPE_CONFORMANCE_LEVEL != TypeConformanceLevel.RECURSIVE:
        return "the stream uses a non-default type conformance level"
    return None


def page_blocker(stream: Stream, context: t.Mapping[str, JSON] | None) -> str | None:
    """Why a page's records cannot skip the SDK's per-record loop (None: they can).

    For each record, the SDK's record loop checks the dry-run record limit, calls
    ``post_process``, adds state partition keys, syncs child streams, writes the RECORD,
    advances the bookmark, writes a STATE every ``STATE_MSG_FREQUENCY`` records and counts
    it. Under the conditions below all of that but the writing and the counting is a
    no-op: a full-table stream's state only changes when tap-rhttp itself saves the
    resume position (after the page, with a STATE message), so the periodic STATE would
    equal the last one and the SDK's ``StateWriter`` would not write it. The caller writes
    the page with :meth:`RecordFastPath.write_page` and adds the page to the record counter.
    """
    if stream.replication_method != REPLICATION_FULL_TABLE:
        return "the SDK advances the bookmark record by record"
    if stream.ABORT_AT_RECORD_COUNT is not None:
        return "a record limit is set (a dry run)"
    if type(stream).post_process is not Stream.post_process:
        return "the stream post-processes records"
    if stream.child_streams:
        return "the stream has child streams"
    if not stream.selected:
        return "the stream is not selected"
    if state_partition_context(stream, context):
        return "the SDK adds state partition keys to records"
    return None


class RecordFastPath:
    """Writes a stream's records as singer-sdk would, minus the work that changes nothing.

    Build it with :meth:`for_stream`, which returns None (with the reason) when the
    stream's output could differ. :meth:`write` returns False for a record it cannot
    vouch for; the caller then sends that record the SDK's way.
    """

    def __init__(self, stream: Stream, writer: BufferedMsgSpecWriter) -> None:
        self.stream = stream
        self.writer = writer
        self.alias = stream.stream_maps[0].stream_alias
        self.plan = ConformPlan(stream.effective_schema)
        self.stamp: datetime.datetime | None = None
        self._framed: tuple[datetime.datetime, bytes, bytes] | None = None
        #: Spans proven against `schema` may be written (`write_spans`) when the SDK
        #: conforms records to that very schema.
        self.schema = stream.effective_schema
        self.spans_ok = self.schema == stream.schema

    @classmethod
    def for_stream(cls, stream: Stream, writer: object) -> tuple[RecordFastPath | None, str]:
        """The fast path for a stream, or None and the reason it would not be equivalent."""
        reason = _why_not(stream, writer)
        if reason is not None:
            return None, reason
        assert isinstance(writer, BufferedMsgSpecWriter)
        return cls(stream, writer), ""

    def write_spans(self, spans: t.Sequence[bytes | msgspec.Raw]) -> bool:
        """Write a page's RECORD lines around its records' own bytes; False when the
        stream's conformance is not what the spans were proven against.

        Each span must be exactly what msgspec writes for the record's dict, and the
        record must be one conformance leaves unchanged (``tap_rhttp.schema.exact``
        proves both against the stream's schema, which must be the effective schema the
        SDK conforms to). The line is then byte for byte what :meth:`write_page` writes.
        """
        if not self.spans_ok:
            return False
        if spans:
            head, tail = self._frame()
            self.writer.write_lines(head + (tail + head).join(spans) + tail)
        return True

    def _frame(self) -> tuple[bytes, bytes]:
        """The bytes of a RECORD line before and after its record."""
        stamp = self._stamp()
        frame = self._framed
        if frame is None or frame[0] is not stamp:
            version = stream_version(self.stream)
            after: dict[str, JSON] = {} if version is None else {"version": version}
            after["time_extracted"] = stamp
            head = encoder.encode({"type": "RECORD", "stream": self.alias})[:-1] + b',"record":'
            tail = b"," + encoder.encode(after)[1:] + b"\n"
            frame = self._framed = (stamp, head, tail)
        return frame[1], frame[2]

    def write_page(self, records: t.Sequence[dict[str, JSON]]) -> bool:
        """Write a whole page's RECORD lines, or nothing (False) when one record needs the SDK."""
        if not self.plan.all_unchanged(records):
            return False
        self.writer.write_lines(encoder.encode_lines(self._messages(records)))
        return True

    def _messages(self, records: t.Iterable[dict[str, JSON]]) -> list[dict[str, JSON]]:
        stamp = self._stamp()
        alias = self.alias
        version = stream_version(self.stream)
        if version is None:
            return [
                {"type": "RECORD", "stream": alias, "record": r, "time_extracted": stamp}
                for r in records
            ]
        return [
            {
                "type": "RECORD",
                "stream": alias,
                "record": r,
                "version": version,
                "time_extracted": stamp,
            }
            for r in records
        ]

    def _stamp(self) -> datetime.datetime:
        stamp = self.stamp
        if stamp is None:  # as RecordMessage gets it (msgspec encodes it natively)
            stamp = self.stamp = utc_now().astimezone(datetime.timezone.utc)
        return stamp

    def new_page(self) -> None:
        """Records from here on get a fresh ``time_extracted``."""
        self.stamp = None

    def write(self, record: dict[str, JSON]) -> bool:
        """Write one record's RECORD line; False when it must go the SDK's way instead."""
        if not self.plan.unchanged(record):
            return False
        self.writer.write_record(self._messages((record,))[0])
        return True
