"""The buffered writer and the record fast path write exactly what singer-sdk would.

Every case runs the same records (parsed from JSON, as the tap gets them) through the
SDK's own ``Stream._write_record_message`` and through the fast path, under one frozen
clock, and compares the output bytes. Where a record's output would differ (an int in a
boolean field, a key a closed schema drops), the fast path must decline it; where a whole
stream's would (deselected fields, stream maps), the fast path must not exist.
"""

from __future__ import annotations

import copy
import datetime
import json
import logging
import math
import random
import subprocess
import sys
import typing as t

import orjson
import pytest
from server import Reply, Request, json_reply
from singer_sdk.contrib.msgspec import MsgSpecWriter, encoder
from singer_sdk.helpers._state import StateWriter
from singer_sdk.helpers._typing import conform_record_data_types
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.singerlib import RecordMessage, SchemaMessage, StateMessage
from singer_sdk.streams.core import Stream

from tap_rhttp import writer as writer_module
from tap_rhttp.tap import TapRHTTP
from tap_rhttp.writer import (
    BufferedMsgSpecWriter,
    ChangedStateWriter,
    ConformPlan,
    RecordFastPath,
)

FROZEN = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.timezone.utc)


class Capture(BufferedMsgSpecWriter):
    """The tap's writer, flushing into memory instead of stdout."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()

    def flush(self) -> None:
        self.out += self.buffer
        self.buffer.clear()
        self.settled = 0

    def take(self) -> list[bytes]:
        self.flush()
        lines = bytes(self.out).splitlines()
        self.out.clear()
        return lines


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("singer_sdk.streams.core.utc_now", lambda: FROZEN)
    monkeypatch.setattr(writer_module, "utc_now", lambda: FROZEN)


def make_stream(
    schema: dict[str, t.Any],
    *,
    catalog: dict[str, t.Any] | None = None,
    **config: t.Any,
) -> tuple[Stream, Capture]:
    spec = {"name": "s", "url": "http://127.0.0.1:9/never", "schema": schema}
    capture = Capture()
    tap = TapRHTTP(
        config={"streams": [spec], **config},
        catalog=catalog,
        parse_env_config=False,
        message_writer=capture,
    )
    return tap.streams["s"], capture


def sdk_lines(stream: Stream, capture: Capture, records: list[dict[str, t.Any]]) -> list[bytes]:
    for record in copy.deepcopy(records):
        Stream._write_record_message(stream, record)
    return capture.take()


def fast_lines(
    stream: Stream, capture: Capture, records: list[dict[str, t.Any]]
) -> tuple[list[bytes], list[bool]]:
    fast, reason = RecordFastPath.for_stream(stream, capture)
    assert fast is not None, reason
    taken = []
    for record in copy.deepcopy(records):
        ok = fast.write(record)
        taken.append(ok)
        if not ok:
            Stream._write_record_message(stream, record)
    return capture.take(), taken


def parsed(text: str) -> list[dict[str, t.Any]]:
    return t.cast("list[dict[str, t.Any]]", orjson.loads(text))


OPEN_FLAT = {
    "type": "object",
    "additionalProperties": True,
    "properties": {
        "id": {"type": "integer"},
        "active": {"type": "boolean"},
        "maybe": {"type": ["boolean", "null"]},
        "score": {"type": ["number", "null"]},
        "at": {"type": "string", "format": "date-time"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
}

# id, schema, records as JSON text, whether the fast path takes each record
CASES = [
    (
        "json-values-and-unknown-fields",
        OPEN_FLAT,
        '[{"id": 1, "active": true, "maybe": null, "score": 1.5, "tags": ["a"], "new": {"x": [1]}},'
        ' {"id": 2, "active": false, "score": null, "big": 123456789012345678901234567890,'
        '  "text": "é\\u2028<>&\\"", "neg0": -0.0, "exp": 1e300}]',
        [True, True],
    ),
    (
        "booleans-given-as-ints-strings-objects",
        OPEN_FLAT,
        '[{"id": 1, "active": 1}, {"id": 2, "active": 0}, {"id": 3, "maybe": "no"},'
        ' {"id": 4, "active": {"a": 1}}, {"id": 5, "active": [true]}, {"id": 6, "active": true}]',
        [False, False, False, False, False, True],
    ),
    (
        "date-times-stay-text",
        OPEN_FLAT,
        '[{"at": "2024-01-02T03:04:05Z"}, {"at": "not a date"}, {"at": 12}, {"at": null}]',
        [True, True, True, True],
    ),
    (
        "nested-open-object",
        {
            "type": "object",
            "properties": {
                "address": {
                    "type": "object",
                    "additionalProperties": True,
                    "properties": {"city": {"type": "string"}, "ok": {"type": "boolean"}},
                }
            },
        },
        '[{"address": {"city": "x", "ok": true, "zip": "1"}}, {"address": {"ok": 1}},'
        ' {"address": "not an object"}, {"address": null}]',
        [True, False, True, True],
    ),
    (
        "nested-closed-object-drops-unknown-keys",
        {
            "type": "object",
            "additionalProperties": True,
            "properties": {
                "address": {"type": "object", "properties": {"city": {"type": "string"}}}
            },
        },
        '[{"address": {"city": "x"}}, {"address": {"city": "x", "zip": "1"}}, {"other": 1}]',
        [True, False, True],
    ),
    (
        "closed-top-level-drops-unknown-fields",
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {"id": {"type": "integer"}},
        },
        '[{"id": 1}, {"id": 2, "extra": true}, {}]',
        [True, False, True],
    ),
    (
        "arrays-of-objects-with-boolean-items",
        {
            "type": "object",
            "additionalProperties": True,
            "properties": {
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": True,
                        "properties": {"on": {"type": "boolean"}},
                    },
                },
                "flags": {"type": "array", "items": {"type": "boolean"}},
            },
        },
        '[{"items": [{"on": true}, {"on": null}], "flags": [true, false, null]},'
        ' {"items": [{"on": 1}]}, {"flags": [1]}, {"items": [1, "x"]}, {"items": "x"}]',
        [True, False, False, True, True],
    ),
    (
        "shapes-where-the-sdk-itself-raises",
        {
            "type": "object",
            "additionalProperties": True,
            "properties": {
                "anything": {},
                "objects": {"type": "array", "items": {"type": "object"}},
            },
        },
        '[{"anything": 1}, {"anything": [1]}, {"objects": [{"a": 1}]}, {"objects": [1]}]',
        [True, False, False, True],
    ),
]


@pytest.mark.parametrize(("name", "schema", "text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_fast_path_writes_the_sdk_bytes_or_declines(
    name: str, schema: dict[str, t.Any], text: str, expected: list[bool]
) -> None:
    records = parsed(text)
    stream, capture = make_stream(schema)
    raises = {i for i, r in enumerate(records) if _sdk_raises(stream, r)}
    safe = [r for i, r in enumerate(records) if i not in raises]
    want = sdk_lines(stream, capture, safe)
    got, taken = fast_lines(stream, capture, safe)
    assert got == want
    assert taken == [e for i, e in enumerate(expected) if i not in raises]
    for index in raises:  # the fast path must leave those to the SDK, which raises
        fast, _ = RecordFastPath.for_stream(stream, capture)
        assert fast is not None
        assert not fast.write(copy.deepcopy(records[index]))
    assert all(b'"time_extracted":"2024-05-06T07:08:09.123456Z"' in line for line in got)


def _sdk_raises(stream: Stream, record: dict[str, t.Any]) -> bool:
    try:
        conform_record_data_types(
            "s", copy.deepcopy(record), stream.effective_schema, TypeConformanceLevel.RECURSIVE,
            logging.getLogger("t"),
        )  # fmt: skip
    except Exception:
        return True
    return False


def test_a_whole_page_is_written_or_none_of_it() -> None:
    stream, capture = make_stream(OPEN_FLAT)
    fast, _ = RecordFastPath.for_stream(stream, capture)
    assert fast is not None
    good = parsed('[{"id": 1, "active": true}, {"id": 2, "active": null}, {"id": 3}]')
    bad = parsed('[{"id": 4, "active": true}, {"id": 5, "active": 1}]')
    assert not fast.write_page(copy.deepcopy(bad))
    assert capture.take() == []
    assert fast.write_page(copy.deepcopy(good))
    assert capture.take() == sdk_lines(stream, capture, good)


def test_no_fractional_seconds_are_written_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    whole = FROZEN.replace(microsecond=0)
    monkeypatch.setattr("singer_sdk.streams.core.utc_now", lambda: whole)
    monkeypatch.setattr(writer_module, "utc_now", lambda: whole)
    stream, capture = make_stream(OPEN_FLAT)
    records = parsed('[{"id": 1}]')
    want = sdk_lines(stream, capture, records)
    got, _ = fast_lines(stream, capture, records)
    assert got == want
    assert b'"time_extracted":"2024-05-06T07:08:09Z"' in got[0]


def test_deselected_fields_mean_no_fast_path() -> None:
    stream, capture = make_stream(OPEN_FLAT)
    catalog = stream._tap.catalog_dict
    for entry in catalog["streams"][0]["metadata"]:
        if entry["breadcrumb"] == ["properties", "score"]:
            entry["metadata"]["selected"] = False
    stream, capture = make_stream(OPEN_FLAT, catalog=catalog)
    fast, reason = RecordFastPath.for_stream(stream, capture)
    assert fast is None
    assert "deselected" in reason
    lines = sdk_lines(stream, capture, parsed('[{"id": 1, "score": 2.5}]'))
    assert b"score" not in lines[0]


def test_stream_maps_mean_no_fast_path() -> None:
    stream, capture = make_stream(OPEN_FLAT, stream_maps={"s": {"double": "id * 2"}})
    fast, reason = RecordFastPath.for_stream(stream, capture)
    assert fast is None
    assert "stream maps" in reason


def test_flattening_means_no_fast_path() -> None:
    stream, capture = make_stream(OPEN_FLAT, flattening_enabled=True, flattening_max_depth=1)
    fast, reason = RecordFastPath.for_stream(stream, capture)
    assert fast is None
    assert "flattening" in reason


def test_another_message_writer_means_no_fast_path() -> None:
    stream, _ = make_stream(OPEN_FLAT)
    fast, reason = RecordFastPath.for_stream(stream, MsgSpecWriter())
    assert fast is None
    assert "writer" in reason


# ------------------------------------------------------------------ the plan, at random


def _schema(rng: random.Random, depth: int) -> dict[str, t.Any]:
    leaves: list[dict[str, t.Any]] = [
        {"type": "boolean"},
        {"type": ["boolean", "null"]},
        {"type": ["null", "boolean"]},
        {"type": "integer"},
        {"type": ["number", "null"]},
        {"type": "string", "format": "date-time"},
        {"anyOf": [{"type": "boolean"}, {"type": "string"}]},
        {},
        {"type": "object"},
        {"type": "array"},
    ]
    if depth <= 0 or rng.random() < 0.4:
        return copy.deepcopy(rng.choice(leaves))
    if rng.random() < 0.4:
        node: dict[str, t.Any] = {"type": rng.choice(["array", ["array", "null"]])}
        node["items"] = _schema(rng, depth - 1)
        return node
    node = {
        "type": rng.choice(["object", ["object", "null"]]),
        "properties": {k: _schema(rng, depth - 1) for k in rng.sample("abcd", rng.randint(0, 4))},
    }
    if rng.random() < 0.6:
        node["additionalProperties"] = rng.choice([True, False, {"type": "string"}])
    return node


def _value(rng: random.Random, depth: int) -> t.Any:
    scalars = [None, True, False, 0, 1, -3, 2.5, 0.0, math.inf, "x", "", "0"]
    roll = rng.random()
    if depth <= 0 or roll < 0.5:
        return rng.choice(scalars)
    if roll < 0.75:
        return [_value(rng, depth - 1) for _ in range(rng.randint(0, 3))]
    return _record(rng, depth - 1)


def _record(rng: random.Random, depth: int) -> dict[str, t.Any]:
    return {k: _value(rng, depth) for k in rng.sample("abcde", rng.randint(0, 5))}


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_the_plan_never_vouches_for_a_record_conformance_would_change() -> None:
    """Soundness: `unchanged` means same bytes, no exception and no warning from the SDK."""
    rng = random.Random(7)
    logger = logging.getLogger("tap_rhttp.test_writer")
    vouched = declined = 0
    for _ in range(400):
        schema = _schema(rng, 3)
        schema.setdefault("properties", {})
        schema["type"] = "object"
        plan = ConformPlan(schema)
        for _ in range(40):
            record = _record(rng, 3)
            if not plan.unchanged(record):
                declined += 1
                continue
            vouched += 1
            handler = _Collect()
            logger.addHandler(handler)
            try:
                conformed = conform_record_data_types(
                    "s", copy.deepcopy(record), schema, TypeConformanceLevel.RECURSIVE, logger
                )
            finally:
                logger.removeHandler(handler)
            assert encoder.encode(conformed) == encoder.encode(record), (schema, record)
            assert not handler.messages, (schema, record)
        assert plan.all_unchanged([]) is True
    assert vouched > 1000
    assert declined > 1000


def test_all_unchanged_agrees_with_unchanged_record_by_record() -> None:
    rng = random.Random(11)
    for _ in range(300):
        schema = _schema(rng, 2)
        schema.setdefault("properties", {})
        schema["type"] = "object"
        plan = ConformPlan(schema)
        page = [_record(rng, 2) for _ in range(rng.randint(0, 6))]
        assert plan.all_unchanged(page) == all(plan.unchanged(r) for r in page)


# ------------------------------------------------------------------ the buffered writer


def test_buffered_writer_writes_msgspec_writer_bytes() -> None:
    capture = Capture()
    plain = MsgSpecWriter()
    messages = [
        SchemaMessage("s", {"properties": {"id": {"type": "integer"}}}, ["id"], None),
        RecordMessage("s", {"id": 1, "x": [1.5, None, "é"]}, time_extracted=FROZEN),
        RecordMessage("s", {"id": 2}, version=7),
        StateMessage({"bookmarks": {"s": {"rhttp": {"chains": {"-": {"url": "u"}}}}}}),
        StateMessage({"bookmarks": {"s": {"a": None, "b": [1, None, {"c": None}], "é": 2.5}}}),
        StateMessage(
            {
                "bookmarks": {
                    "s": {"replication_key_value": None, "n": [1, 2.5, 2**70, "é\u2028", True]},
                    "t": {"progress_markers": {"Note": "x"}, "rhttp": {"done": []}},
                },
                "currently_syncing": None,
            }
        ),
        StateMessage({}),
    ]
    for message in messages:
        capture.write_message(message)
    assert capture.take() == [bytes(plain.format_message(m)).rstrip(b"\n") for m in messages]


def test_changed_state_writer_writes_what_the_sdk_state_writer_writes() -> None:
    """The same STATE lines as singer-sdk's StateWriter for the same calls: a state equal
    to the last one written is dropped, one changed in place (as streams change theirs)
    is written, also when only a nested value changed."""
    ours, theirs = Capture(), Capture()
    changed, sdk = ChangedStateWriter(ours), StateWriter(theirs)
    state: dict[str, t.Any] = {"bookmarks": {"s": {"rhttp": {"page": {"done": ["1"]}}}}}
    calls = [
        lambda: None,
        lambda: None,  # unchanged: dropped
        lambda: state["bookmarks"]["s"]["rhttp"]["page"]["done"].append("2"),
        lambda: None,
        lambda: state["bookmarks"].update(t={"n": 2**70, "x": "é\u2028", "f": 2.5}),
        lambda: state["bookmarks"]["t"].pop("f"),
        lambda: state["bookmarks"]["t"].update(f=2.5),
        lambda: state.update(currently_syncing=None),
        lambda: None,
    ]
    for change in calls:
        change()
        changed.write_state(state)
        sdk.write_state(t.cast("t.Any", state))
    written = ours.take()
    assert written == theirs.take()
    assert len(written) == 6  # three of the nine calls changed nothing


def test_the_tap_writes_state_through_the_changed_state_writer() -> None:
    stream, capture = make_stream(OPEN_FLAT)
    writer = stream._tap.state_writer
    assert isinstance(writer, ChangedStateWriter)
    assert writer.writer is capture
    spec = {"name": "s", "url": "http://127.0.0.1:9/never", "schema": OPEN_FLAT}
    other = TapRHTTP(
        config={"streams": [spec]}, parse_env_config=False, message_writer=MsgSpecWriter()
    )
    assert type(other.state_writer) is StateWriter  # another writer: the SDK's, as it was


def test_records_wait_in_the_buffer_until_a_state_comes() -> None:
    capture = Capture()
    capture.write_message(RecordMessage("s", {"id": 1}))
    capture.write_record({"type": "RECORD", "stream": "s", "record": {"id": 2}})
    assert capture.out == b""
    capture.write_message(StateMessage({"bookmarks": {}}))
    lines = bytes(capture.out).splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["RECORD", "RECORD", "STATE"]


def test_held_states_wait_with_their_records_and_go_out_together() -> None:
    """While holding, STATE messages wait too (each after its records): the same bytes, in
    fewer writes; the outermost hold writes them when it ends."""
    capture = Capture()
    plain = MsgSpecWriter()
    messages = [
        RecordMessage("s", {"id": 1}, time_extracted=FROZEN),
        StateMessage({"bookmarks": {"s": {"n": 1}}}),
        RecordMessage("s", {"id": 2}, time_extracted=FROZEN),
        StateMessage({"bookmarks": {"s": {"n": 2}}}),
    ]
    with capture.holding():
        with capture.holding():
            for message in messages:
                capture.write_message(message)
        assert capture.out == b""
    assert capture.take() == [bytes(plain.format_message(m)).rstrip(b"\n") for m in messages]
    with capture.holding():
        capture.write_message(messages[1])
        capture.write_message(SchemaMessage("s", {"properties": {}}, [], None))
        assert capture.buffer == b""  # any other message goes out at once, after them
    assert [json.loads(line)["type"] for line in capture.take()] == ["STATE", "SCHEMA"]


def test_a_stop_writes_the_held_pages_and_drops_an_incomplete_one() -> None:
    capture = Capture()
    with capture.holding():
        capture.write_message(RecordMessage("s", {"id": 1}))
        capture.write_message(StateMessage({"bookmarks": {"s": {"n": 1}}}))
        capture.write_record({"type": "RECORD", "stream": "s", "record": {"id": 2}})
        capture.write_settled()
        assert capture.buffer == b""
    lines = [json.loads(line) for line in capture.take()]
    assert [(m["type"], m.get("record")) for m in lines] == [("RECORD", {"id": 1}), ("STATE", None)]
    capture.write_record({"type": "RECORD", "stream": "s", "record": {"id": 3}})
    capture.write_settled()  # nothing held: a page in part is all there is
    assert capture.take() == []


def test_a_large_buffer_is_written_without_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_module, "FLUSH_BYTES", 100)
    capture = Capture()
    capture.write_record({"type": "RECORD", "stream": "s", "record": {"x": "y" * 200}})
    assert capture.out != b""
    assert capture.buffer == b""


@pytest.mark.parametrize("ending", ["raise RuntimeError('boom')", "sys.exit(3)", "pass"])
def test_everything_buffered_is_written_at_exit(ending: str) -> None:
    program = (
        "import sys\n"
        "from tap_rhttp.writer import BufferedMsgSpecWriter\n"
        "w = BufferedMsgSpecWriter()\n"
        "for i in range(3):\n"
        "    w.write_record({'type': 'RECORD', 'stream': 's', 'record': {'id': i}})\n"
        f"{ending}\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=60)
    assert [json.loads(line)["record"]["id"] for line in done.stdout.splitlines()] == [0, 1, 2]


# ------------------------------------------------------------------ whole syncs


def _serve(server: t.Any) -> None:
    @server.route("/w/items")
    def items(request: Request) -> Reply:
        page = int(request.args.get("page", "1"))
        records = [
            {"id": page * 10 + i, "active": True, "n": 1.5, "tags": ["a"], "nested": {"x": 1}}
            for i in range(3)
        ]
        if page == 2:
            records[1]["active"] = 1  # this page goes the SDK's way: conformance changes it
        headers = []
        if page < 4:
            headers.append(("Link", f'<{server.url}/w/items?page={page + 1}>; rel="next"'))
        return json_reply(records, headers=headers)

    @server.route("/w/detail")
    def detail(request: Request) -> Reply:
        return json_reply([{"detail": request.args.get("id"), "flag": 0}])


def _sync(config: dict[str, t.Any], capture: Capture) -> list[bytes]:
    TapRHTTP(config=config, parse_env_config=False, message_writer=capture).sync_all()
    return capture.take()


def test_whole_syncs_write_the_same_lines_with_and_without_the_fast_path(
    server: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve(server)
    schema = {
        "properties": {
            "id": {"type": "integer"},
            "active": {"type": "boolean"},
            "n": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "nested": {"type": "object", "properties": {"x": {"type": "integer"}}},
        }
    }
    config = {
        "streams": [
            {
                "name": "items",
                "url": server.url + "/w/items",
                "page": "link-next",
                "page_limit": -1,
                "primary_keys": ["id"],
                "schema": schema,
            },
            {
                "name": "fanned",
                "url": server.url + "/w/items",
                "for_each": [1, 3],
                "params": {"page": "{{ item }}"},
                "schema": schema,
            },
            {
                "name": "details",
                "url": server.url + "/w/detail",
                "parent": "items",
                "params": {"id": "{{ row['id'] }}"},
                "schema": {
                    "properties": {"detail": {"type": "string"}, "flag": {"type": "boolean"}}
                },
            },
        ]
    }
    pages: list[tuple[str, bool]] = []
    write_page = RecordFastPath.write_page

    def counting(self: RecordFastPath, records: t.Sequence[dict[str, t.Any]]) -> bool:
        pages.append((self.alias, written := write_page(self, records)))
        return written

    singles: list[tuple[str, bool]] = []
    write = RecordFastPath.write

    def counting_one(self: RecordFastPath, record: dict[str, t.Any]) -> bool:
        singles.append((self.alias, written := write(self, record)))
        return written

    monkeypatch.setattr(RecordFastPath, "write_page", counting)
    monkeypatch.setattr(RecordFastPath, "write", counting_one)
    fast = _sync(config, Capture())
    # items has a child stream, so its records go through the SDK loop, each one through
    # the fast path but the one with an int in a boolean field; details' flag is 0
    assert pages.count(("fanned", True)) == 2
    assert pages.count(("details", False)) == 12
    assert len(pages) == 14
    assert singles.count(("items", True)) == 11
    assert singles.count(("items", False)) == 1
    assert singles.count(("details", False)) == 12
    monkeypatch.setattr(RecordFastPath, "for_stream", classmethod(lambda cls, s, w: (None, "off")))
    slow = _sync(config, Capture())
    assert fast == slow
    records = [json.loads(line) for line in fast if line.startswith(b'{"type":"RECORD"')]
    assert len([r for r in records if r["stream"] == "items"]) == 12
    assert {r["record"]["flag"] for r in records if r["stream"] == "details"} == {False}


def test_stream_maps_and_deselection_still_apply_in_a_whole_sync(server: t.Any) -> None:
    _serve(server)
    spec = {
        "name": "items",
        "url": server.url + "/w/items",
        "page": "link-next",
        "page_limit": 2,
        "schema": {"properties": {"id": {"type": "integer"}, "n": {"type": "number"}}},
    }
    mapped = _sync({"streams": [spec], "stream_maps": {"items": {"double": "id * 2"}}}, Capture())
    records = [json.loads(line)["record"] for line in mapped if b'"RECORD"' in line]
    assert [r["double"] for r in records] == [r["id"] * 2 for r in records]

    tap = TapRHTTP(config={"streams": [spec]}, parse_env_config=False, message_writer=Capture())
    catalog = tap.catalog_dict
    for entry in catalog["streams"][0]["metadata"]:
        if entry["breadcrumb"] == ["properties", "n"]:
            entry["metadata"]["selected"] = False
    capture = Capture()
    TapRHTTP(
        config={"streams": [spec]}, catalog=catalog, parse_env_config=False, message_writer=capture
    ).sync_all()
    records = [json.loads(line)["record"] for line in capture.take() if b'"RECORD"' in line]
    assert records
    assert all("n" not in r and "id" in r for r in records)
