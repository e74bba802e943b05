"""Pages written from their own bytes write exactly what the general path writes.

``tap_rhttp.schema.exact`` vouches for a page when its records' bytes are what msgspec
writes for their dicts and they fit the schema; the stream then splices those bytes into
RECORD lines. These tests hold it to being only ever stricter than the general path:

- at random, every page it vouches for fits the drift check, is left unchanged by
  singer-sdk's conformance, and each span is byte for byte the record's encoding;
- each way a body can differ from msgspec's bytes (whitespace, escapes, number forms,
  key order, duplicate keys) or from the schema makes it decline;
- whole syncs against a loopback server write the same lines with splicing and without.
"""

from __future__ import annotations

import copy
import datetime
import json
import math
import random
import typing as t

import orjson
import pytest
from server import Reply, Request
from singer_sdk.contrib.msgspec import encoder

from tap_rhttp import writer as writer_module
from tap_rhttp.run import context as context_module
from tap_rhttp.schema.drift import SchemaCheck
from tap_rhttp.schema.exact import GIVE_UP_AFTER, ExactCheck, records_array
from tap_rhttp.tap import TapRHTTP
from tap_rhttp.writer import BufferedMsgSpecWriter, ConformPlan, RecordFastPath

if t.TYPE_CHECKING:
    import msgspec

FROZEN = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.timezone.utc)

SCHEMA: dict[str, t.Any] = {
    "type": "object",
    "additionalProperties": True,
    "properties": {
        "id": {"type": ["integer", "null"]},
        "name": {"type": ["string", "null"]},
        "active": {"type": ["boolean", "null"]},
        "score": {"type": ["number", "null"]},
        "at": {"type": ["string", "null"], "format": "date-time"},
        "tags": {"type": ["array", "null"], "items": {"type": ["string", "null"]}},
        "address": {
            "type": ["object", "null"],
            "additionalProperties": True,
            "properties": {"city": {"type": ["string", "null"]}, "zip": {"type": "string"}},
        },
    },
}
RECORD = {
    "id": 1,
    "name": "a",
    "active": True,
    "score": 2.5,
    "at": "2024-01-02T03:04:05Z",
    "tags": ["x"],
    "address": {"city": "c", "zip": "1"},
}


def _compact(value: t.Any) -> bytes:
    return encoder.encode(value)


def _fits_everywhere(schema: dict[str, t.Any], text: bytes) -> tuple[bool, list[t.Any] | None]:
    """What the general path makes of a page: (fits and unchanged, records)."""
    try:
        records = json.loads(text)
    except ValueError:
        return False, None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        return False, records
    fits = SchemaCheck(schema).fits(records) and ConformPlan(schema).all_unchanged(records)
    return fits, records


def _assert_sound(schema: dict[str, t.Any], text: bytes) -> bool:
    """Checks one page; True when the exact check vouched for it."""
    check = ExactCheck.compile(schema)
    if check is None:
        return False
    spans = check.spans(text)
    if spans is None:
        return False
    fits, records = _fits_everywhere(schema, text)
    assert fits, (schema, text)
    assert records is not None
    assert len(spans) == len(records)
    for span, record in zip(spans, records, strict=True):
        assert bytes(span) == _compact(record), (schema, text)
    return True


# ------------------------------------------------------------------ cases


def test_a_canonical_page_is_vouched_for() -> None:
    page = [RECORD, {**RECORD, "id": 2, "score": 3, "tags": [], "address": None}]
    assert _assert_sound(SCHEMA, _compact(page))
    assert _assert_sound(SCHEMA, b"[]")


@pytest.mark.parametrize(
    ("why", "text"),
    [
        ("whitespace", b'[{"id": 1}]'),
        ("a newline between records", b'[{"id":1},\n{"id":2}]'),
        ("an escaped slash", b'[{"name":"a\\/b"}]'),
        ("a needless unicode escape", b'[{"name":"\\u0041"}]'),
        ("an upper-case hex escape", b'[{"name":"\\u001F"}]'),
        ("a number with a trailing zero", b'[{"score":1.50}]'),
        ("an exponent", b'[{"score":1e2}]'),
        ("minus zero as an integer", b'[{"id":-0}]'),
        ("a key twice", b'[{"id":1,"id":2}]'),
        ("another key order", b'[{"id":1,"name":"a"},{"name":"b","id":2}]'),
        (
            "a nested key order",
            b'[{"address":{"city":"a","zip":"1"}},{"address":{"zip":"2","city":"b"}}]',
        ),
        ("a new field", b'[{"id":1,"new":2}]'),
        ("a new nested field", b'[{"address":{"zip":"1","more":1}}]'),
        ("an integer in a boolean field", b'[{"active":1}]'),
        ("a float in an integer field", b'[{"id":1.0}]'),
        ("a string in an integer field", b'[{"id":"1"}]'),
        ("an integer past bigint", b'[{"id":9223372036854775808}]'),
        ("a date-time a target cannot parse", b'[{"at":"soon"}]'),
        ("a null where none is allowed", b'[{"address":{"zip":null}}]'),
        ("a missing required field", b'[{"address":{"city":"x"}}]'),
        ("not an object", b"[1]"),
        ("not an array", b'{"id":1}'),
        ("a lone surrogate", b'[{"name":"\\ud800"}]'),
        ("not UTF-8", b'[{"name":"\xff"}]'),
        ("malformed", b'[{"id":1}'),
    ],
)
def test_what_the_bytes_or_the_schema_do_not_vouch_for_is_declined(why: str, text: bytes) -> None:
    schema = copy.deepcopy(SCHEMA)
    schema["properties"]["address"]["required"] = ["zip"]
    check = ExactCheck.compile(schema)
    assert check is not None
    assert check.spans(text) is None, why


@pytest.mark.parametrize(
    "node",
    [
        {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        {},
        {"type": "object"},
        {"type": "array"},
        {"type": "widget"},
        {"type": ["array", "string"]},
    ],
)
def test_a_schema_without_an_exact_type_is_never_spliced(node: dict[str, t.Any]) -> None:
    assert ExactCheck.compile({"type": "object", "properties": {"x": node}}) is None


def test_records_array_follows_plain_keys() -> None:
    body = b' {"meta":{"n":2},"data":{"items":[{"id":1}]},"data2":1}\n'
    assert records_array(body, ("data", "items")) == b'[{"id":1}]'
    assert records_array(b' [{"id":1}] ', ()) == b'[{"id":1}]'
    assert records_array(body, ("meta",)) is None  # an object: one record, not an array
    assert records_array(body, ("missing",)) is None
    assert records_array(b"[1,", ()) == b"[1,"  # not JSON: the check declines it
    assert records_array(b'{"a":[1],"a":[{"id":2}]}', ("a",)) == b'[{"id":2}]'  # as json.loads


# ------------------------------------------------------------------ at random


def _schema(rng: random.Random, depth: int) -> dict[str, t.Any]:
    leaves: list[dict[str, t.Any]] = [
        {"type": "boolean"},
        {"type": ["boolean", "null"]},
        {"type": "integer"},
        {"type": ["integer", "null"]},
        {"type": ["number", "null"]},
        {"type": "number"},
        {"type": ["string", "null"]},
        {"type": ["string", "null"], "format": "date-time"},
        {"type": "string", "format": "date"},
        {"type": ["integer", "string", "null"]},
    ]
    if depth <= 0 or rng.random() < 0.45:
        return copy.deepcopy(rng.choice(leaves))
    if rng.random() < 0.35:
        return {"type": rng.choice(["array", ["array", "null"]]), "items": _schema(rng, depth - 1)}
    keys = rng.sample("abcd", rng.randint(0, 4))
    node: dict[str, t.Any] = {
        "type": rng.choice(["object", ["object", "null"]]),
        "properties": {k: _schema(rng, depth - 1) for k in keys},
    }
    if rng.random() < 0.5:
        node["additionalProperties"] = rng.choice([True, False])
    if keys and rng.random() < 0.3:
        node["required"] = rng.sample(keys, 1)
    return node


SCALARS: list[t.Any] = [
    None,
    True,
    False,
    0,
    1,
    -3,
    2**63,
    2.5,
    1e16,
    -0.0,
    "x",
    "",
    'q"\\\n\x01é',
    "2024-01-02T03:04:05Z",
    "2024-01-02",
    "2024-13-02",
]


def _value(rng: random.Random, depth: int) -> t.Any:
    roll = rng.random()
    if depth <= 0 or roll < 0.5:
        return rng.choice(SCALARS)
    if roll < 0.75:
        return [_value(rng, depth - 1) for _ in range(rng.randint(0, 3))]
    return _record(rng, depth - 1)


def _record(rng: random.Random, depth: int) -> dict[str, t.Any]:
    return {k: _value(rng, depth) for k in rng.sample("abcde", rng.randint(0, 5))}


def _text(rng: random.Random, records: list[dict[str, t.Any]]) -> bytes:
    """The page as some server might write it: mostly msgspec's bytes, sometimes not."""
    roll = rng.random()
    if roll < 0.6:
        return _compact(records)
    if roll < 0.75:
        return json.dumps(records).encode()  # spaces, \\u escapes
    if roll < 0.85:
        return orjson.dumps(records, default=str)
    return json.dumps(records, ensure_ascii=False, separators=(",", ":")).encode()


def test_every_page_it_vouches_for_is_what_the_general_path_writes() -> None:
    rng = random.Random(20261202)
    vouched = declined = 0
    for _ in range(600):
        schema = _schema(rng, 3)
        schema.setdefault("properties", {})
        schema["type"] = "object"
        for _ in range(25):
            record = _record(rng, 3)
            page = [record, *(_record(rng, 3) for _ in range(rng.randint(0, 2)))]
            if rng.random() < 0.5:
                page = [copy.deepcopy(record) for _ in range(rng.randint(1, 3))]
            if any(isinstance(v, float) and not math.isfinite(v) for r in page for v in r.values()):
                continue
            try:
                text = _text(rng, page)
            except (TypeError, ValueError, orjson.JSONEncodeError):
                continue
            if _assert_sound(schema, text):
                vouched += 1
            else:
                declined += 1
    # both outcomes are exercised, so the soundness checks above are not vacuous
    assert vouched > 300, vouched
    assert declined > 3000, declined


# ------------------------------------------------------------------ whole syncs


class Capture(BufferedMsgSpecWriter):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()

    def flush(self) -> None:
        self.out += self.buffer
        self.buffer.clear()


def _serve(server: t.Any) -> None:
    def page_body(page: int) -> bytes:
        records = [{**RECORD, "id": page * 10 + i, "score": page + i / 4} for i in range(4)]
        if page == 3:
            return json.dumps(records).encode()  # spaces: the general path
        if page == 4:
            records[2]["extra"] = "new"  # drift: a new field, a new SCHEMA first
        if page == 5:
            records[0]["score"] = 1  # an integer in a number field: exact as well
        return _compact(records)

    @server.route("/x/items")
    def items(request: Request) -> Reply:
        page = int(request.args.get("page", "1"))
        headers = []
        if page < 6:
            headers.append(("Link", f'<{server.url}/x/items?page={page + 1}>; rel="next"'))
        return Reply(200, page_body(page), headers)

    @server.route("/x/wrapped")
    def wrapped(request: Request) -> Reply:
        page = int(request.args.get("page", "1"))
        records = [{**RECORD, "id": page * 10 + i} for i in range(3)]
        body = b'{"meta":{"page":%d},"data":{"rows":%s}}' % (page, _compact(records))
        nxt = {"url": f"{server.url}/x/wrapped?page={page + 1}"} if page < 3 else {}
        return Reply(200, body, [("Link", f'<{nxt["url"]}>; rel="next"')] if nxt else [])


def _sync(config: dict[str, t.Any]) -> bytes:
    capture = Capture()
    TapRHTTP(config=config, parse_env_config=False, message_writer=capture).sync_all()
    capture.flush()
    return bytes(capture.out)


def test_whole_syncs_write_the_same_lines_with_and_without_splicing(
    server: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("singer_sdk.streams.core.utc_now", lambda: FROZEN)
    monkeypatch.setattr(writer_module, "utc_now", lambda: FROZEN)
    _serve(server)
    config = {
        "streams": [
            {
                "name": "items",
                "url": server.url + "/x/items",
                "page": "link-next",
                "page_limit": -1,
                "primary_keys": ["id"],
            },
            {
                "name": "declared",
                "url": server.url + "/x/items",
                "page": "link-next",
                "page_limit": -1,
                "schema": SCHEMA,
            },
            {
                "name": "wrapped",
                "url": server.url + "/x/wrapped",
                "records_path": "$.data.rows",
                "page": "link-next",
                "page_limit": -1,
            },
        ],
        "defaults": {"schema_sample": {"pages": 1}},
    }
    spliced: list[tuple[str, int]] = []
    write_spans = RecordFastPath.write_spans

    def counting(self: RecordFastPath, spans: t.Sequence[bytes | msgspec.Raw]) -> bool:
        written = write_spans(self, spans)
        if written:
            spliced.append((self.alias, len(spans)))
        return written

    monkeypatch.setattr(RecordFastPath, "write_spans", counting)
    fast = _sync(config)
    # items: pages 2, 5 and 6 are exact (page 1 is discovery's sample, parsed already;
    # page 3 has spaces; page 4 drifts, and the pages after it are checked against the
    # evolved schema); declared: the same but page 1 too; wrapped: pages 2 and 3
    streams = [name for name, _ in spliced]
    assert streams.count("items") == 3
    assert streams.count("declared") == 4
    assert streams.count("wrapped") == 2
    monkeypatch.setattr(context_module.ExactCheck, "compile", classmethod(lambda cls, s: None))
    spliced.clear()
    slow = _sync(config)
    assert not spliced
    assert fast == slow
    records = [json.loads(line) for line in fast.splitlines() if b'"type":"RECORD"' in line]
    ids = [r["record"]["id"] for r in records if r["stream"] == "items"]
    assert sorted(ids) == sorted({p * 10 + i for p in range(1, 7) for i in range(4)})
    assert len(ids) == len(set(ids))


def test_a_page_that_echoes_a_secret_is_masked_not_spliced(
    server: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "s3cr3t-T0ken-value"

    @server.route("/x/echo")
    def echo(request: Request) -> Reply:
        records = [
            {"id": 1, "seen": request.headers.get("Authorization", "")},
            {"id": 2, "seen": ""},
        ]
        return Reply(200, _compact(records))

    spec = {
        "name": "echo",
        "url": server.url + "/x/echo",
        "auth": {"type": "bearer", "token": token},
        "schema": {"properties": {"id": {"type": "integer"}, "seen": {"type": "string"}}},
    }
    spliced: list[str] = []
    write_spans = RecordFastPath.write_spans

    def counting(self: RecordFastPath, spans: t.Sequence[bytes | msgspec.Raw]) -> bool:
        spliced.append(self.alias)
        return write_spans(self, spans)

    monkeypatch.setattr(RecordFastPath, "write_spans", counting)
    out = _sync({"streams": [spec]})
    assert not spliced
    assert token.encode() not in out
    records = [json.loads(line)["record"] for line in out.splitlines() if b'"RECORD"' in line]
    assert [r["id"] for r in records] == [1, 2]


def test_streamed_pages_write_the_same_lines_with_and_without_splicing(
    server: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spilled body's spooled records are spliced only when every one is exact."""
    from tap_rhttp.http import body as http_body

    monkeypatch.setattr(http_body, "SPOOL_THRESHOLD", 256)
    monkeypatch.setattr("singer_sdk.streams.core.utc_now", lambda: FROZEN)
    monkeypatch.setattr(writer_module, "utc_now", lambda: FROZEN)
    monkeypatch.setattr("tap_rhttp.streams.PAGE_BATCH", 3)  # several batches per page

    @server.route("/x/big")
    def big(request: Request) -> Reply:
        page = int(request.args.get("page", "1"))
        records = [{**RECORD, "id": page * 100 + i, "score": i / 8} for i in range(10)]
        if page == 2:
            records[7]["active"] = 1  # one record in the last batch but one: general path
        headers = []
        if page < 3:
            headers.append(("Link", f'<{server.url}/x/big?page={page + 1}>; rel="next"'))
        return Reply(200, _compact(records), headers)

    config = {
        "streams": [
            {
                "name": "big",
                "url": server.url + "/x/big",
                "page": "link-next",
                "page_limit": -1,
                "schema": SCHEMA,
                "schema_drift": "evolve",
            }
        ]
    }
    spliced: list[int] = []
    write_spans = RecordFastPath.write_spans

    def counting(self: RecordFastPath, spans: t.Sequence[bytes | msgspec.Raw]) -> bool:
        spliced.append(len(spans))
        return write_spans(self, spans)

    monkeypatch.setattr(RecordFastPath, "write_spans", counting)
    fast = _sync(config)
    assert spliced == [3, 3, 3, 1, 3, 3, 3, 1]  # pages 1 and 3, in batches; page 2 whole
    monkeypatch.setattr(context_module.ExactCheck, "compile", classmethod(lambda cls, s: None))
    slow = _sync(config)
    assert fast == slow
    ids = [json.loads(line)["record"]["id"] for line in fast.splitlines() if b'"RECORD"' in line]
    assert ids == [p * 100 + i for p in (1, 2, 3) for i in range(10)]


def test_a_stream_stops_checking_after_pages_declined_in_a_row(
    server: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An API that never writes msgspec's bytes does not pay a typed parse per page."""
    check = ExactCheck.compile(SCHEMA)
    assert check is not None
    for _ in range(GIVE_UP_AFTER - 1):
        assert check.spans(b'[{"id": 1}]') is None
    assert check.worth_trying
    assert check.spans(b'[{"id":1}]') is not None  # one vouched for: the count starts again
    for _ in range(GIVE_UP_AFTER):
        check.spans(b'[{"id": 1}]')
    assert not check.worth_trying

    @server.route("/x/pretty")
    def pretty(request: Request) -> Reply:
        page = int(request.args.get("page", "1"))
        body = json.dumps([{**RECORD, "id": page}]).encode()  # spaces: never exact
        headers = []
        if page < GIVE_UP_AFTER + 6:
            headers.append(("Link", f'<{server.url}/x/pretty?page={page + 1}>; rel="next"'))
        return Reply(200, body, headers)

    calls: list[int] = []
    spans = ExactCheck.spans

    def counting(self: ExactCheck, array: bytes) -> list[msgspec.Raw] | None:
        calls.append(1)
        return spans(self, array)

    monkeypatch.setattr(ExactCheck, "spans", counting)
    spec = {
        "name": "pretty",
        "url": server.url + "/x/pretty",
        "page": "link-next",
        "page_limit": -1,
        "schema": SCHEMA,
    }
    out = _sync({"streams": [spec]})
    assert len(calls) == GIVE_UP_AFTER
    ids = [json.loads(line)["record"]["id"] for line in out.splitlines() if b'"RECORD"' in line]
    assert ids == list(range(1, GIVE_UP_AFTER + 7))
