"""Every private singer-sdk name tap-rhttp relies on still exists and does what it did.

`tap_rhttp/sdk_compat.py` is the only module that touches them. An SDK upgrade that
renames, re-signs or changes one fails here, naming it, instead of changing the tap's
output silently.
"""

from __future__ import annotations

import datetime
import decimal
import importlib.metadata
import inspect
import logging
import typing as t

import pytest
from singer_sdk import Tap, batch
from singer_sdk.helpers import _typing, _util
from singer_sdk.plugin_base import PluginBase
from singer_sdk.streams.core import Stream

from tap_rhttp import sdk_compat
from tap_rhttp.tap import TapRHTTP

if t.TYPE_CHECKING:
    from server import LocalServer


def parameters(function: t.Callable[..., t.Any]) -> list[tuple[str, t.Any]]:
    return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]


KW = inspect.Parameter.KEYWORD_ONLY
POS = inspect.Parameter.POSITIONAL_OR_KEYWORD


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        (Tap._validate_config, [("self", POS), ("raise_errors", KW)]),
        (Stream._sync_records, [("self", POS), ("context", POS), ("write_messages", KW)]),
        (Stream._write_record_message, [("self", POS), ("record", POS)]),
        (Stream._write_state_message, [("self", POS)]),
        (Stream._get_state_partition_context, [("self", POS), ("context", POS)]),
        (Stream._generate_record_messages, [("self", POS), ("record", POS)]),
    ],
    ids=lambda f: getattr(f, "__qualname__", ""),
)
def test_the_private_hooks_keep_their_signatures(
    function: t.Callable[..., t.Any], expected: list[tuple[str, t.Any]]
) -> None:
    assert parameters(function) == expected


def test_the_record_loop_writes_through_write_record_message() -> None:
    """StreamHooks replaces _write_record_message: the SDK's loop must still call it."""
    assert "self._write_record_message(record)" in inspect.getsource(Stream._sync_records)
    assert "self._generate_record_messages(record)" in inspect.getsource(
        Stream._write_record_message
    )


def test_conformance_uses_the_predicates_the_fast_path_mirrors() -> None:
    """The stream conforms with _typing's function, whose rules ConformPlan mirrors."""
    assert "from singer_sdk.helpers._typing import conform_record_data_types" in (
        inspect.getsource(inspect.getmodule(Stream))  # type: ignore[arg-type]
    )
    source = inspect.getsource(_typing)
    for name in ("_is_exclusive_boolean_type", "is_object_type", "is_uniform_list"):
        assert f"def {name}(" in source
    assert sdk_compat.is_exclusive_boolean_type({"type": ["boolean", "null"]}) is True
    assert sdk_compat.is_exclusive_boolean_type({"type": ["integer", "boolean"]}) is False
    assert sdk_compat.is_object_type({"type": ["object", "null"]}) is True
    assert sdk_compat.is_uniform_list({"type": "array", "items": {"type": "string"}}) is True
    record = _typing.conform_record_data_types(
        stream_name="s",
        record={"flag": 1, "gone": 2},
        schema={"properties": {"flag": {"type": ["boolean", "null"]}}},
        level=Stream.TYPE_CONFORMANCE_LEVEL,
        logger=logging.getLogger("test"),
    )
    assert record == {"flag": True}  # the two changes the fast path checks for
    assert "utc_now" in inspect.getsource(Stream._generate_record_messages)


def test_utc_now_is_an_aware_utc_clock() -> None:
    now = sdk_compat.utc_now()
    assert now.tzinfo is not None
    assert now.utcoffset() == datetime.timedelta(0)


def test_stream_attributes_read_through_the_adapter(server: LocalServer) -> None:
    config = {
        "streams": [
            {
                "name": "s",
                "url": server.url + "/records?n=1",
                "schema": {"properties": {"id": {"type": "integer"}}},
            }
        ]
    }
    tap = TapRHTTP(config=config, parse_env_config=False)
    stream = tap.streams["s"]
    assert sdk_compat.stream_version(stream) is None
    assert sdk_compat.state_partition_context(stream, None) is None
    assert sdk_compat.message_writer(stream) is tap.message_writer
    assert sdk_compat.generates_own_record_messages(stream) is False
    sdk_compat.write_state_message(stream)  # exists and runs


def test_load_json_is_the_parser_of_config_files(tmp_path: t.Any) -> None:
    """The tap checks a --config file with the parser singer-sdk then reads it with."""
    path = tmp_path / "c.json"
    path.write_text('{"a": 2.5, "b": [1]}')
    assert sdk_compat.load_json is _util.load_json
    assert _util.read_json_file(path) == sdk_compat.load_json(path.read_text())
    assert sdk_compat.load_json('{"a": 2.5}') == {"a": decimal.Decimal("2.5")}
    for bad in ("{", "NaN", '{"a": NaN}'):
        with pytest.raises(ValueError):
            sdk_compat.load_json(bad)


def test_the_sdk_still_logs_the_startup_notice_at_info() -> None:
    """The text quiet_startup_notice matches is the one PluginBase.__init__ logs."""
    source = inspect.getsource(PluginBase.__init__)
    assert f'self.logger.info("{sdk_compat.STARTUP_NOTICE}")' in source


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_the_startup_notice_is_debug_not_info() -> None:
    config = {
        "streams": [{"name": "s", "url": "http://127.0.0.1:9/x", "schema": {"properties": {}}}]
    }
    logger = logging.getLogger("tap-rhttp")
    handler, level = _Collect(), logger.level
    logger.addHandler(handler)
    try:
        logger.setLevel(logging.INFO)
        TapRHTTP(config=config, parse_env_config=False)
        assert sdk_compat.STARTUP_NOTICE not in [r.getMessage() for r in handler.records]

        handler.records.clear()
        logger.setLevel(logging.DEBUG)
        TapRHTTP(config=config, parse_env_config=False)
        (notice,) = [r for r in handler.records if r.getMessage() == sdk_compat.STARTUP_NOTICE]
        assert notice.levelname == "DEBUG"  # still there for whoever debugs
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_batches_are_followed_by_their_state() -> None:
    """BATCH-mode resume (streams.get_batches) publishes the position when a batch file is
    handed over; that is exact only while the SDK writes each BATCH message, then a STATE
    message, and its batcher takes records one by one (no read past a file's end)."""
    source = inspect.getsource(Stream._sync_batches)
    assert source.index("self._write_batch_message(") < source.index("self._write_state_message()")
    assert "for encoding, manifest in self.get_batches(" in source
    assert parameters(Stream.get_batches) == [
        ("self", POS),
        ("batch_config", POS),
        ("context", POS),
    ]
    assert "itertools.islice(iterator, chunk_size)" in inspect.getsource(
        batch.lazy_chunked_generator
    )
    config = sdk_compat.BatchConfig.from_dict(
        {"encoding": {"format": "jsonl"}, "storage": {"root": "file:///tmp"}, "batch_size": 3}
    )
    assert isinstance(config.encoding, sdk_compat.BaseBatchFileEncoding)
    assert config.batch_size == 3


def test_replace_schema_reaches_conformance_stream_maps_and_the_schema_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stream's schema replaced mid-sync: the private attributes it writes still decide
    what the SDK conforms to, which maps it builds and what its SCHEMA message says."""
    old = {"type": "object", "properties": {"id": {"type": "integer"}}}
    new = {"type": "object", "properties": {"id": {"type": "integer"}, "on": {"type": "boolean"}}}
    spec = {"name": "s", "url": "http://127.0.0.1:9/never", "schema": old}
    catalog = TapRHTTP(config={"streams": [spec]}, parse_env_config=False).catalog_dict
    written: list[t.Any] = []
    for with_catalog in (False, True):
        tap = TapRHTTP(
            config={"streams": [spec], "stream_maps": {"s": {"double": "id * 2"}}},
            catalog=catalog if with_catalog else None,
            parse_env_config=False,
        )
        stream = tap.streams["s"]
        assert (stream._input_schema is not None) is with_catalog
        monkeypatch.setattr(tap, "write_message", written.append)
        sdk_compat.replace_schema(stream, new)
        assert stream.schema == new
        assert stream.effective_schema == new
        assert "on" in stream.stream_maps[0].transformed_schema["properties"]
        assert "double" in stream.stream_maps[0].transformed_schema["properties"]
        (message,) = [m for m in written if getattr(m, "stream", None) == "s"][-1:]
        assert "on" in message.schema["properties"]
        record = stream.stream_maps[0].transform({"id": 2, "on": True})
        assert record == {"id": 2, "on": True, "double": 4}


def test_versions_are_read_without_scanning_every_distribution() -> None:
    assert sdk_compat.sdk_version() == importlib.metadata.version("singer-sdk")
    assert TapRHTTP.get_sdk_version() == importlib.metadata.version("singer-sdk")
    assert TapRHTTP.get_plugin_version() == importlib.metadata.version("tap-rhttp")


def test_every_state_message_goes_through_the_tap_state_writer() -> None:
    """replace_state_writer swaps Tap._state_writer: the streams and the tap must still
    write STATE through it (and only through its write_state)."""
    assert "self._state_writer: StateWriter = StateWriter(" in inspect.getsource(Tap.__init__)
    assert "return self._state_writer" in inspect.getsource(t.cast("t.Any", Tap.state_writer).fget)
    assert "self._tap.state_writer.write_state(self.tap_state)" in inspect.getsource(
        Stream._write_state_message
    )
    tap_source = inspect.getsource(inspect.getmodule(Tap))  # type: ignore[arg-type]
    uses = tap_source.count("self._state_writer.")
    assert uses >= 1
    assert uses == tap_source.count("self._state_writer.write_state(self.state)")
    written: list[t.Any] = []

    class Recorder:
        def write_state(self, state: t.Any) -> None:
            written.append(state)

    tap = TapRHTTP(
        config={
            "streams": [{"name": "s", "url": "http://127.0.0.1:9/x", "schema": {"properties": {}}}]
        },
        parse_env_config=False,
    )
    sdk_compat.replace_state_writer(tap, Recorder())
    stream = tap.streams["s"]
    stream.state_manager.is_flushed = False  # as a stream marks a changed state
    sdk_compat.write_state_message(stream)
    assert written == [tap.state]
