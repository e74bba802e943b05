"""Every private name of singer-sdk that tap-rhttp relies on, in one place.

singer-sdk offers no public hook for how a RECORD is written or how the config is
validated, and the fast record path (``tap_rhttp.writer``) must mirror the SDK's own
type conformance predicate by predicate to be provably equivalent. Those ties are
unavoidable; they live here and nowhere else, so an SDK upgrade that moves one fails
``tests/test_sdk_compat.py`` loudly (it checks each name, its signature and what it does)
instead of changing output silently. ``pyproject.toml`` pins ``singer-sdk~=0.54.9`` for
the same reason: a minor upgrade is tested before it is allowed.

- :class:`StreamHooks` (a ``Stream`` mixin) replaces ``Stream._sync_records`` and
  ``Stream._write_record_message`` and hands over to two public-named methods the stream
  implements: :meth:`StreamHooks.on_sync` (is this sync writing messages?) and
  :meth:`StreamHooks.write_record_fast` (write one record, or decline).
- :class:`TapHooks` (a ``Tap`` mixin) runs :meth:`TapHooks.check_config` before the SDK's
  JSON Schema check, so the tap's own messages (which name the option as r.http does)
  come first.
- Functions wrap the private attributes read or written: the stream version, the state
  partition context, writing a STATE message, the tap's message writer and STATE
  writer (``Tap._state_writer``, see ``writer.ChangedStateWriter``), whether a
  stream class generates its own record messages, and replacing a stream's schema
  mid-sync (schema drift).
- The types of ``Stream.get_batches`` (``BatchConfig``, ``BaseBatchFileEncoding``), which
  singer-sdk defines in a private module.
- The conformance predicates of ``singer_sdk.helpers._typing`` and the clock of
  ``singer_sdk.helpers._util`` that ``RecordMessage`` timestamps come from.
- ``load_json`` of ``singer_sdk.helpers._util``, the parser singer-sdk reads ``--config``
  files with, so the tap can say what is wrong with a file before the SDK's traceback.
- The text of a log line: ``PluginBase.__init__`` says "Skipping parse of env var
  settings..." at INFO on every start (under Meltano, on every run), which tells a user
  nothing; :func:`quiet_startup_notice` lowers it to DEBUG.
"""

from __future__ import annotations

import importlib.metadata
import logging
import pathlib
import typing as t

import singer_sdk
from singer_sdk.helpers._batch import BaseBatchFileEncoding, BatchConfig
from singer_sdk.helpers._typing import _is_exclusive_boolean_type as is_exclusive_boolean_type
from singer_sdk.helpers._typing import is_object_type, is_uniform_list
from singer_sdk.helpers._util import load_json, utc_now
from singer_sdk.streams.core import Stream

if t.TYPE_CHECKING:
    from singer_sdk.tap_base import Tap

    from tap_rhttp.types import JSON

__all__ = [
    "STARTUP_NOTICE",
    "BaseBatchFileEncoding",
    "BatchConfig",
    "StartupNoticeFilter",
    "StreamHooks",
    "TapHooks",
    "generates_own_record_messages",
    "is_exclusive_boolean_type",
    "is_object_type",
    "is_uniform_list",
    "load_json",
    "message_writer",
    "quiet_startup_notice",
    "replace_schema",
    "replace_state_writer",
    "state_partition_context",
    "stream_version",
    "utc_now",
    "write_state_message",
]


class StreamHooks(Stream):
    """The stream's two private hooks, handed to public-named methods."""

    def on_sync(self, writing: bool) -> None:
        """A sync starts (``writing``: it writes RECORD messages) or ends (False)."""

    def write_record_fast(self, record: dict[str, JSON]) -> bool:
        """Write one record's RECORD line; False: the SDK writes it its own way."""
        return False

    def _sync_records(
        self, context: t.Mapping[str, JSON] | None = None, *, write_messages: bool = True
    ) -> t.Generator[dict[str, JSON], t.Any, t.Any]:
        self.on_sync(write_messages)
        try:
            yield from super()._sync_records(context, write_messages=write_messages)
        finally:
            self.on_sync(False)

    def _write_record_message(self, record: dict[str, JSON]) -> None:
        if self.write_record_fast(record):
            self.state_manager.is_flushed = False
            return
        super()._write_record_message(record)


class TapHooks:
    """The tap's config check, before singer-sdk's own (mix in before ``Tap``)."""

    def check_config(self, *, raise_errors: bool) -> list[str]:
        """The tap's own config errors (empty: none); raises them when `raise_errors`."""
        return []

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        errors = self.check_config(raise_errors=raise_errors)
        if errors:
            return errors
        return t.cast("list[str]", super()._validate_config(raise_errors=raise_errors))  # type: ignore[misc]


def stream_version(stream: Stream) -> int | None:
    """The stream's ACTIVATE_VERSION version, which RECORD messages carry."""
    return stream._stream_version


def state_partition_context(
    stream: Stream, context: t.Mapping[str, JSON] | None
) -> t.Mapping[str, JSON] | None:
    """The keys the SDK adds to records and STATE for a context (None: none)."""
    return stream._get_state_partition_context(context)


def write_state_message(stream: Stream) -> None:
    """Write the stream's STATE message now (the SDK writes only when it changed)."""
    stream._write_state_message()


def replace_schema(stream: Stream, schema: dict[str, JSON]) -> None:
    """Give a stream a new schema mid-sync and write its SCHEMA message (schema drift).

    The schema is what the stream conforms records to (its own, and the catalog's input
    schema when there is one) and what its stream maps are built from: the tap's mapper
    registers it again, so aliases and transforms follow.
    """
    stream._schema = schema
    if stream._input_schema is not None:
        stream._input_schema = schema
    stream._tap.mapper.register_raw_stream_schema(stream.name, schema, stream.primary_keys)
    stream._stream_maps = stream._tap.mapper.stream_maps[stream.name]
    stream._write_schema_message()


def replace_state_writer(tap: Tap, writer: object) -> None:
    """Have the tap (and its streams, through ``Tap.state_writer``) write STATE messages
    with `writer`, an object with ``StateWriter.write_state``."""
    tap._state_writer = writer  # type: ignore[assignment]


def message_writer(stream: Stream) -> object:
    """The writer the stream's tap writes messages with."""
    return stream._tap.message_writer


def generates_own_record_messages(stream: Stream) -> bool:
    """Whether the stream's class replaces how the SDK builds RECORD messages."""
    return type(stream)._generate_record_messages is not Stream._generate_record_messages


#: What ``PluginBase.__init__`` logs at INFO on every start when env vars are not read.
STARTUP_NOTICE = "Skipping parse of env var settings..."


class StartupNoticeFilter(logging.Filter):
    """Lowers :data:`STARTUP_NOTICE` from INFO to DEBUG (shown only when DEBUG is on).

    A logger's own filter, so it sees exactly the records that logger creates.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record; demote the notice, and drop it unless DEBUG is enabled."""
        if record.levelno == logging.INFO and record.msg == STARTUP_NOTICE:
            record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def quiet_startup_notice(logger: logging.Logger) -> None:
    """Install :class:`StartupNoticeFilter` on the plugin's logger (once)."""
    if not any(isinstance(f, StartupNoticeFilter) for f in logger.filters):
        logger.addFilter(StartupNoticeFilter())


def sdk_version() -> str:
    """singer-sdk's installed version, read from its own ``*.dist-info`` next to it.

    ``importlib.metadata.version`` finds it too, but scans every distribution on the
    path first (about 30 ms of every start, for a line in the log); it is the fallback.
    """
    site = pathlib.Path(singer_sdk.__file__).resolve().parent.parent
    found = list(site.glob("singer_sdk-*.dist-info"))
    if len(found) == 1:  # (more than one: a stale install; let importlib decide)
        version = importlib.metadata.PathDistribution(found[0]).version
        if version:
            return str(version)
    return importlib.metadata.version("singer-sdk")
