"""Large bodies read in flat memory give the records (or the error) a whole-body parse gives.

Bodies are made to spill to disk by lowering ``http.body.SPOOL_THRESHOLD``; then every
case compares the streamed reading with the plain ``Chain.read`` of the same bytes, and
whole syncs against loopback servers check exactly-once delivery when a large body is
cut short, retried or malformed.
"""

from __future__ import annotations

import json
import logging
import typing as t

import pytest
from fault_server import FaultServer, Hit, drip, json_reply, reply, short_body
from server import Reply, Request

from tap_rhttp.config.load import load_specs
from tap_rhttp.errors import ResponseFormatError, TransientRequestError
from tap_rhttp.formats import streaming
from tap_rhttp.http import body as http_body
from tap_rhttp.http.client import Response
from tap_rhttp.paging.paginator import PageRequest
from tap_rhttp.redact import MASK, Redactor
from tap_rhttp.run.chain import Chain
from tap_rhttp.tap import TapRHTTP
from tap_rhttp.writer import BufferedMsgSpecWriter

if t.TYPE_CHECKING:
    from collections.abc import Iterator

SECRET = "s3cret-token-for-streaming-tests"


@pytest.fixture
def spill(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every body over 64 bytes goes to disk and is streamed."""
    monkeypatch.setattr(http_body, "SPOOL_THRESHOLD", 64)


@pytest.fixture
def fault() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


def make_chain(stream_bodies: bool, **options: t.Any) -> Chain:
    spec = load_specs({"streams": [{"name": "s", "url": "http://127.0.0.1:9/x", **options}]})[0]
    redactor = Redactor()
    redactor.add_secret(SECRET)
    return Chain(spec, redactor, logging.getLogger("test"), stream_bodies=stream_bodies)


def spooled(body: bytes, content_type: str = "application/json") -> Response:
    spool = http_body.BodySpool(threshold=0)
    spool.write(body)
    return Response(
        status=200,
        headers=[("Content-Type", content_type)],
        body=b"",
        url="u",
        elapsed=0.0,
        spool=spool,
    )


def plain(body: bytes, content_type: str = "application/json") -> Response:
    return Response(200, [("Content-Type", content_type)], body, "u", 0.0)


def read_list(chain: Chain, response: Response) -> tuple[bool, list[dict[str, t.Any]]]:
    """Whether the records came spooled, and the records (a spool's file is closed)."""
    _, records = chain.read(response)
    if isinstance(records, streaming.SpooledRecords):
        try:
            return True, list(records)
        finally:
            records.close()
    return False, records


def outcome(chain: Chain, response: Response) -> tuple[str, t.Any]:
    try:
        _, records = read_list(chain, response)
    except Exception as exc:
        return "error", (type(exc), str(exc))
    return "records", records


def was_streamed(chain: Chain, body: bytes, content_type: str) -> bool:
    try:
        streamed, _ = read_list(chain, spooled(body, content_type))
    except Exception:
        return False
    return streamed


BIG = json.dumps([{"id": i, "name": f"n{i}", "v": [i, None, 1.5]} for i in range(300)]).encode()

BIG_CSV = b"id,name,v\n" + b"".join(f'{i},"n, {i}",\n'.encode() for i in range(300))
BIG_JSONL = b"".join(f'{{"id": {i}, "v": [1.5, null]}}\n'.encode() for i in range(300))
BIG_XML = b"<x>" + b"".join(f'<r i="{i}"><n>{i}</n></r>'.encode() for i in range(300)) + b"</x>"

# id, body, options, content type, streamed?
CASES: list[tuple[str, bytes, dict[str, t.Any], str, bool]] = [
    ("array-of-objects", BIG, {}, "application/json", True),
    (
        "scalars-are-wrapped",
        b' \n[1, "a", null, true, [1], {"x": 1}]',
        {},
        "application/json",
        True,
    ),
    ("empty-array", b"[]", {}, "application/json", True),
    ("duplicate-keys-in-a-record", b'[{"a": 1, "a": 2}]', {}, "application/json", True),
    (
        "floats-and-ints",
        b"[1.0, -0.0, 1e2, 0.1, -0, 9223372036854775807, 5e-324]",
        {},
        "application/json",
        True,
    ),
    (
        "key-path",
        b'{"meta": {"n": 2}, "data": {"items": [{"id": 1}, {"id": 2}]}}',
        {"records_path": "$.data.items[*]"},
        "application/json",
        True,
    ),
    (
        "key-path-without-star",
        b'{"items": [{"id": 1}]}',
        {"records_path": "$.items"},
        "application/json",
        True,
    ),
    (
        "key-path-to-an-object",
        b'{"items": {"id": 1}}',
        {"records_path": "$.items"},
        "application/json",
        False,
    ),
    ("key-path-missing", b'{"other": [1]}', {"records_path": "$.items"}, "application/json", False),
    (
        "key-path-under-a-list",
        b'{"a": [{"b": [1]}]}',
        {"records_path": "$.a.b"},
        "application/json",
        False,
    ),
    (
        "object-body-without-path",
        b'{"id": 1, "name": "one object, one record"}',
        {},
        "application/json",
        False,
    ),
    (
        "jsonpath-filter",
        b'[{"id": 1}, {"id": 2}]',
        {"records_path": "$[?(@.id > 1)]"},
        "application/json",
        False,
    ),
    (
        "integer-past-64-bits",
        b"[123456789012345678901234567890, 18446744073709551615]",
        {},
        "application/json",
        False,
    ),
    ("float-overflow", b"[1e400]", {}, "application/json", False),
    (
        "lone-surrogate",
        b'["a\\ud800b", "padding padding padding padding padding"]',
        {},
        "application/json",
        False,
    ),
    (
        "paired-surrogates",
        b'["\\ud83d\\ude00 and more text to pass the threshold"]',
        {},
        "application/json",
        True,
    ),
    (
        "byte-order-mark",
        b'\xef\xbb\xbf[{"id": 1}, {"id": 2}, {"id": 3}, {"id": 4}]',
        {},
        "application/json",
        False,
    ),
    ("text-content-type-under-auto", BIG, {}, "text/plain", False),
    ("explicit-json-format", BIG, {"result_format": "json"}, "text/plain", True),
    ("text-format", BIG, {"result_format": "text"}, "application/json", False),
    (
        "page-expression-reads-the-body",
        BIG,
        {"page": "info['body'][0]['next'].default(None)", "page_limit": 2},
        "application/json",
        False,
    ),
    ("truncated", BIG[:-40], {}, "application/json", False),
    ("trailing-garbage", BIG + b" x", {}, "application/json", False),
    ("two-documents", BIG + b" []", {}, "application/json", False),
    (
        "invalid-utf8",
        b'["\xff\xfe padding padding padding padding padding"]',
        {},
        "application/json",
        False,
    ),
    (
        "nan-literal",
        b"[NaN, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]",
        {},
        "application/json",
        False,
    ),
    (
        "deeper-than-orjson-writes",
        b"[" + b"[" * 300 + b"]" * 300 + b"]",
        {},
        "application/json",
        False,
    ),
    ("csv", BIG_CSV, {}, "text/csv", True),
    ("csv-explicit-format", BIG_CSV, {"result_format": "csv"}, "text/plain", True),
    ("tsv", BIG_CSV.replace(b",", b"\t"), {}, "text/tab-separated-values", True),
    ("csv-records-path-dollar", BIG_CSV, {"records_path": "$"}, "text/csv", True),
    ("csv-records-path-filter", BIG_CSV, {"records_path": "$[?(@.id == '3')]"}, "text/csv", False),
    ("csv-bad-row-late", BIG_CSV + b"1,2,3,4\n", {}, "text/csv", False),
    ("csv-as-text", BIG_CSV, {"result_format": "text"}, "text/csv", False),
    ("jsonl", BIG_JSONL, {}, "application/x-ndjson", True),
    ("jsonl-bad-line-late", BIG_JSONL + b"{oops\n", {}, "application/jsonl", False),
    (
        "jsonl-nesting-deeper-than-orjson-writes",
        BIG_JSONL + b"[" * 300 + b"]" * 300 + b"\n",
        {},
        "application/jsonl",
        False,
    ),
    ("xml-records", BIG_XML, {"xml": {"records": "r"}}, "application/xml", True),
    ("xml-without-records", BIG_XML, {}, "application/xml", False),
    ("xml-truncated", BIG_XML[:-10], {"xml": {"records": "r"}}, "text/xml", False),
    (
        "xml-entities",
        b'<!DOCTYPE x [<!ENTITY e "e">]>' + BIG_XML,
        {"xml": {"records": "r"}},
        "text/xml",
        False,
    ),
    (
        "csv-secret-echoed-back",
        BIG_CSV + f'https://x/?token={SECRET},"n",\n'.encode(),
        {},
        "text/csv",
        True,
    ),
    (
        "secret-echoed-back",
        json.dumps([{"url": f"https://x/?token={SECRET}"}, {"n": 1}]).encode(),
        {},
        "application/json",
        True,
    ),
]


@pytest.mark.parametrize(
    ("name", "body", "options", "content_type", "streamed"), CASES, ids=[c[0] for c in CASES]
)
def test_a_streamed_body_reads_as_a_whole_one(
    name: str, body: bytes, options: dict[str, t.Any], content_type: str, streamed: bool
) -> None:
    whole = outcome(make_chain(False, **options), plain(body, content_type))
    chain = make_chain(True, **options)
    assert outcome(chain, spooled(body, content_type)) == whole
    assert was_streamed(chain, body, content_type) is streamed


def test_secrets_echoed_back_are_masked_when_streamed() -> None:
    body = json.dumps([{"url": f"https://x/?token={SECRET}"}, {"n": 1}]).encode()
    streamed, records = read_list(make_chain(True), spooled(body))
    assert streamed
    assert records == [{"url": f"https://x/?token={MASK}"}, {"n": 1}]


def test_a_key_repeated_on_the_records_path_streams_every_occurrence() -> None:
    """The one documented difference: RFC 8259 leaves duplicate names undefined."""
    body = b'{"items": [{"id": 1}], "items": [{"id": 2}]}'
    _, whole = make_chain(False, records_path="$.items").read(plain(body))
    was, streamed = read_list(make_chain(True, records_path="$.items"), spooled(body))
    assert whole == [{"id": 2}]
    assert was
    assert streamed == [{"id": 1}, {"id": 2}]


def test_spooled_records_can_be_read_twice_and_interleaved() -> None:
    _, records = make_chain(True).read(spooled(BIG))
    assert isinstance(records, streaming.SpooledRecords)
    first, second = iter(records), iter(records)
    assert next(first) == next(second) == {"id": 0, "name": "n0", "v": [0, None, 1.5]}
    assert len(list(first)) == len(records) - 1
    assert list(records) == json.loads(BIG)
    records.close()


def test_a_small_body_stays_in_memory(server: t.Any) -> None:
    """A gzip body of unknown decoded size goes to the sink, which keeps it in memory."""
    spec = load_specs({"streams": [{"name": "s", "url": server.url + "/gzip"}]})[0]
    chain = Chain(spec, Redactor(), logging.getLogger("test"), stream_bodies=True)
    spool = http_body.BodySpool(threshold=1 << 20)
    try:
        response = chain.client.fetch(spec.url, spool)
    finally:
        chain.close()
    assert not spool.spilled
    assert response.spool is None
    assert json.loads(response.body)[0] == {"gzipped": True, "n": 0}


# ------------------------------------------------------------------ whole syncs


def _records(result: t.Any, stream: str = "s") -> list[dict[str, t.Any]]:
    return t.cast("list[dict[str, t.Any]]", result.records(stream))


@pytest.mark.usefixtures("spill")
def test_a_sync_of_large_pages_gives_the_same_records_and_state(
    server: t.Any, sync: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    @server.route("/big")
    def big(request: Request) -> Reply:
        page = int(request.args.get("page", "1"))
        items = [{"id": page * 1000 + i, "tags": ["a"], "ok": True} for i in range(200)]
        body: dict[str, t.Any] = {"data": {"items": items}}
        headers = []
        if page < 3:
            headers.append(("Link", f'<{server.url}/big?page={page + 1}>; rel="next"'))
        return Reply(200, json.dumps(body).encode(), headers, "application/json")

    config = {
        "streams": [
            {
                "name": "s",
                "url": server.url + "/big",
                "page": "link-next",
                "page_limit": -1,
                "records_path": "$.data.items[*]",
                "primary_keys": ["id"],
            }
        ]
    }
    streamed = sync(config)
    assert len(server.log) == 3  # the discovery sample's page is read (and parsed) once
    monkeypatch.setattr(streaming, "ijson_prefix", lambda **kw: None)
    whole = sync(config)
    assert _records(streamed) == _records(whole)
    assert len(_records(streamed)) == 600
    assert streamed.of_type("STATE") == whole.of_type("STATE")
    assert streamed.schema("s") == whole.schema("s")


def _fault_config(url: str, **options: t.Any) -> dict[str, t.Any]:
    stream = {
        "name": "s",
        "url": url,
        "schema": {"properties": {"id": {"type": "integer"}}},
        "reattempts": 3,
        "backoff_base": 0.01,
        "backoff_max": 0.02,
    }
    stream.update(options)
    return {"streams": [stream]}


@pytest.mark.usefixtures("spill")
def test_a_body_cut_short_is_retried_and_its_records_arrive_once(
    fault: FaultServer, sync: t.Any
) -> None:
    body = json.dumps([{"id": i} for i in range(500)]).encode()
    tries: list[int] = []

    @fault.route("/cut")
    def cut(hit: Hit) -> t.Any:
        tries.append(1)
        if len(tries) == 1:
            return short_body(body[: len(body) // 2], len(body))
        return reply(200, body)

    result = sync(_fault_config(fault.url + "/cut"))
    assert len(tries) == 2
    assert [r["id"] for r in _records(result)] == list(range(500))


@pytest.mark.usefixtures("spill")
def test_a_body_that_never_completes_fails_without_a_record(
    fault: FaultServer, sync: t.Any
) -> None:
    body = json.dumps([{"id": i} for i in range(500)]).encode()

    @fault.route("/cut")
    def cut(hit: Hit) -> t.Any:
        return short_body(body[: len(body) // 2], len(body))

    with pytest.raises(TransientRequestError, match="cut short"):
        sync(_fault_config(fault.url + "/cut"))


@pytest.mark.usefixtures("spill")
def test_a_syntax_error_late_in_a_large_body_emits_none_of_the_page(
    fault: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = [{"id": i} for i in range(300)]

    @fault.route("/pages")
    def pages(hit: Hit) -> t.Any:
        if hit.args.get("page") == "2":  # the page's records are fine, then it breaks
            return reply(200, json.dumps(good).encode()[:-1] + b", oops]")
        return json_reply(good[:2], headers=[("Link", f'<{fault.url}/pages?page=2>; rel="next"')])

    lines: list[bytes] = []

    class Keep(BufferedMsgSpecWriter):
        def flush(self) -> None:
            lines.extend(bytes(self.buffer).splitlines())
            self.buffer.clear()

    config = _fault_config(
        fault.url + "/pages", page="link-next", page_limit=-1, result_format="json"
    )
    tap = TapRHTTP(config=config, parse_env_config=False, message_writer=Keep())
    with pytest.raises(ResponseFormatError):
        tap.sync_all()
    assert isinstance(tap.message_writer, Keep)
    tap.message_writer.flush()
    ids = [json.loads(line)["record"]["id"] for line in lines if b'"RECORD"' in line]
    assert ids == [0, 1]  # page 1 only: nothing of the broken page went out


@pytest.mark.usefixtures("spill")
def test_a_slow_large_body_times_out_as_any_body_does(fault: FaultServer, sync: t.Any) -> None:
    body = json.dumps([{"id": i} for i in range(40)]).encode()

    @fault.route("/slow")
    def slow(hit: Hit) -> t.Any:
        return drip(body, 0.02)

    with pytest.raises(TransientRequestError, match=r"timed out after 0\.300 seconds"):
        sync(_fault_config(fault.url + "/slow", timeout=0.3, reattempts=1))


@pytest.mark.usefixtures("spill")
def test_a_compressed_body_is_spooled_decoded(server: t.Any, sync: t.Any) -> None:
    """Content-Length counts compressed bytes: a gzip body is always spooled, then decoded."""
    config = {"streams": [{"name": "s", "url": server.url + "/gzip", "result_format": "json"}]}
    records = _records(sync(config))
    assert records == [{"gzipped": True, "n": i} for i in range(50)]


def test_a_body_known_to_be_small_is_left_to_the_client(
    server: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = load_specs({"streams": [{"name": "s", "url": server.url + "/records?n=3"}]})[0]
    chain = Chain(spec, Redactor(), logging.getLogger("test"), stream_bodies=True)
    spooled: list[bytes] = []
    monkeypatch.setattr(http_body.BodySpool, "write", lambda self, chunk: spooled.append(chunk))
    try:
        response, _ = chain.fetch(PageRequest(url=spec.url, params={}, override=frozenset()))
    finally:
        chain.close()
    assert spooled == []  # a Content-Length under the threshold: the client reads it
    assert json.loads(response.body) == [{"id": i, "name": f"r{i}"} for i in (1, 2, 3)]
