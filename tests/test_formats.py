"""result_format readers and body -> records, against the local server's content types."""

from __future__ import annotations

import base64
import typing as t
from urllib.parse import quote

import pytest
from server import PNG

from tap_rhttp.errors import ResponseFormatError
from tap_rhttp.formats.readers import auto_format, parse_jsonp, read_body
from tap_rhttp.formats.records import body_to_records, compile_records_path


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/json", "json"),
        ("Application/JSON; charset=utf-8", "json"),
        ("application/vnd.api+json", "json"),
        ("application/problem+json", "json"),
        ("application/json-p", "jsonp"),
        ("text/json-p", "jsonp"),
        ("text/javascript", "jsonp"),
        ("image/png", "binary"),
        ("audio/mpeg", "binary"),
        ("video/mp4", "binary"),
        ("application/octet-stream", "binary"),
        ("text/plain", "text"),
        ("text/html; charset=latin-1", "text"),
        ("application/xml", "xml"),
        ("text/xml; charset=utf-8", "xml"),
        ("application/atom+xml", "xml"),
        ("application/rss+xml", "xml"),
        ("image/svg+xml", "binary"),
        ("text/csv", "csv"),
        ("text/csv; header=present", "csv"),
        ("application/csv", "csv"),
        ("text/tab-separated-values", "csv"),
        ("application/x-ndjson", "jsonl"),
        ("application/jsonl", "jsonl"),
        ("application/json-seq", "text"),
        (None, "text"),
        ("", "text"),
    ],
)
def test_auto_content_type_table(content_type: str | None, expected: str) -> None:
    assert auto_format(content_type) == expected


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('cb({"a": 1})', {"a": 1}),
        ('cb({"a": 1});', {"a": 1}),
        ("  obj.fn ( [1, 2] ) ; \n", [1, 2]),
        ('obj["fn"]({"x": "y"})', {"x": "y"}),
        ("obj['fn'](3)", 3),
        ('/**/ jQuery123_456({"ok": true});', {"ok": True}),
        ('$cb("string (with parens)")', "string (with parens)"),
    ],
)
def test_jsonp_shapes(text: str, value: t.Any) -> None:
    assert parse_jsonp(text) == value


@pytest.mark.parametrize(
    "text", ["{}", "cb(", "cb({)", "1cb({})", "cb() extra", "alert('x'); cb({})"]
)
def test_jsonp_failures(text: str) -> None:
    with pytest.raises(ResponseFormatError, match=r"^failed to parse JSONP response$"):
        parse_jsonp(text)


def test_json_strict_and_error_text() -> None:
    with pytest.raises(ResponseFormatError, match=r"^failed to parse JSON response: "):
        read_body(b"{'single': 'quotes'}", "application/json", "auto")
    with pytest.raises(ResponseFormatError):
        read_body(b"[NaN]", "application/json", "json")
    assert read_body(b"[18446744073709551616]", None, "json") == [2**64]


def test_text_uses_charset_and_never_fails() -> None:
    assert read_body("café".encode("latin-1"), "text/plain; charset=latin-1", "auto") == "café"
    assert read_body(b"\xff\xfe", "text/plain", "text") == "\ufffd\ufffd"
    assert read_body(b"x", "text/plain; charset=nonsense", "text") == "x"


def test_javascript_type_tries_json_then_jsonp_then_text() -> None:
    assert read_body(b'{"a": 1}', "text/javascript", "auto") == {"a": 1}
    assert read_body(b'cb({"a": 1})', "text/javascript", "auto") == {"a": 1}
    assert read_body(b"var x = 1;", "text/javascript", "auto") == "var x = 1;"


def test_binary_is_base64() -> None:
    assert read_body(PNG, "image/png", "auto") == base64.b64encode(PNG).decode()
    assert read_body(b"{}", "application/json", "binary") == "e30="


def test_explicit_format_ignores_content_type() -> None:
    assert read_body(b'{"a": 1}', "text/plain", "json") == {"a": 1}
    assert read_body(b'{"a": 1}', "application/json", "text") == '{"a": 1}'


@pytest.mark.parametrize(
    ("body", "path", "records"),
    [
        ([{"a": 1}, {"a": 2}], None, [{"a": 1}, {"a": 2}]),
        ({"a": 1}, None, [{"a": 1}]),
        (
            [1, "x", None, [2], True],
            None,
            [{"value": 1}, {"value": "x"}, {"value": None}, {"value": [2]}, {"value": True}],
        ),
        ("text", None, [{"value": "text"}]),
        ({"items": [{"a": 1}]}, "$.items[*]", [{"a": 1}]),
        ({"items": [{"a": 1}]}, "$.items", [{"a": 1}]),
        ({"data": {"items": [1, 2]}}, "$.data.items", [{"value": 1}, {"value": 2}]),
        ({"data": {"weird-key": [{"b": 2}]}}, "$.data['weird-key'][*]", [{"b": 2}]),
        ({"items": []}, "$.items[*]", []),
        ({"other": 1}, "$.items[*]", []),
        ({"a": 1}, "$", [{"a": 1}]),
        (
            {"items": [{"t": "x", "v": 1}, {"t": "y", "v": 2}]},
            "$.items[?(@.t == 'y')]",
            [{"t": "y", "v": 2}],
        ),
        (
            {"groups": [{"rows": [{"i": 1}]}, {"rows": [{"i": 2}]}]},
            "$.groups[*].rows[*]",
            [{"i": 1}, {"i": 2}],
        ),
        ({"items": [[1, 2], [3]]}, "$.items[*]", [{"value": [1, 2]}, {"value": [3]}]),
    ],
)
def test_body_to_records(body: t.Any, path: str | None, records: list[t.Any]) -> None:
    compiled = compile_records_path(path) if path else None
    assert body_to_records(body, compiled) == records


@pytest.mark.parametrize(
    ("ct", "body", "fmt", "expected"),
    [
        ("application/json", '[{"id": 1}]', "auto", [{"id": 1}]),
        ("text/javascript", 'cb([{"id": 1}])', "auto", [{"id": 1}]),
        ("text/plain", "hello", "auto", [{"value": "hello"}]),
        ("-", "no type", "auto", [{"value": "no type"}]),
        ("text/plain", "cb([1])", "jsonp", [{"value": 1}]),
    ],
)
def test_formats_through_the_tap(
    server: t.Any, sync: t.Any, ct: str, body: str, fmt: str, expected: list[t.Any]
) -> None:
    url = f"{server.url}/body?ct={quote(ct, safe='')}&b={quote(body, safe='')}"
    result = sync({"streams": [{"name": "s", "url": url, "result_format": fmt}]})
    assert result.records("s") == expected


def test_png_through_the_tap(server: t.Any, sync: t.Any) -> None:
    result = sync({"streams": [{"name": "s", "url": server.url + "/png"}]})
    assert result.records("s") == [{"value": base64.b64encode(PNG).decode()}]
    assert result.schema("s")["properties"]["value"]["type"] == ["string", "null"]


# ------------------------------------------------------------------ JSON under another label


def _body_stream(server: t.Any, content_type: str, body: str, **spec: t.Any) -> dict[str, t.Any]:
    url = f"{server.url}/body?ct={quote(content_type)}&b={quote(body)}"
    return {"streams": [{"name": "s", "url": url, "reattempts": 1, **spec}]}


COUCH = '{"docs": [{"_id": "a", "n": 1}, {"_id": "b", "n": 2}], "bookmark": "g1"}'


@pytest.mark.parametrize("content_type", ["text/plain; charset=utf-8", "-", "text/html"])
def test_records_path_reads_json_labelled_as_text(
    server: t.Any, sync: t.Any, caplog: pytest.LogCaptureFixture, content_type: str
) -> None:
    """A CouchDB-style `_find` answered as text/plain: the records are read, and it is said."""
    result = sync(_body_stream(server, content_type, COUCH, records_path="$.docs[*]"))
    assert result.records("s") == [{"_id": "a", "n": 1}, {"_id": "b", "n": 2}]
    warnings = [r.getMessage() for r in caplog.records if "reads as text" in r.getMessage()]
    assert len(warnings) == 1
    assert "read as JSON. Set `result_format: json` to say so." in warnings[0]


def test_records_path_on_text_that_is_not_json_fails_naming_the_type(
    server: t.Any, sync: t.Any
) -> None:
    with pytest.raises(ResponseFormatError) as info:
        sync(_body_stream(server, "text/plain", "id,name\n1,a\n", records_path="$.docs[*]"))
    assert str(info.value).startswith(
        f"Error in HTTP GET of `{server.url}/body?ct=text/plain&b=id%2Cname%0A1%2Ca%0A` "
        "[stream s, page 1]: the body has Content-Type `text/plain`, which "
        "`result_format: auto` reads as text, but `records_path` selects records from JSON "
        "and the body is not JSON (Expecting value: line 1 column 1 (char 0)). Set "
        "`result_format: json` if the API sends JSON under that Content-Type; drop "
        "`records_path` to take the body as text."
    )


def test_json_text_without_records_path_stays_text_and_it_is_said(
    server: t.Any, sync: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    """r.http's auto reads text/plain as text; the run says once that it is JSON."""
    result = sync(_body_stream(server, "text/plain", COUCH))
    assert result.records("s") == [{"value": COUCH}]
    warnings = [r.getMessage() for r in caplog.records if "but is JSON" in r.getMessage()]
    assert len(warnings) == 1
    assert "Set `result_format: json` (and `records_path`) to read its records." in warnings[0]


def test_plain_text_is_not_warned_about(
    server: t.Any, sync: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    result = sync(_body_stream(server, "text/plain", "[not json"))
    assert result.records("s") == [{"value": "[not json"}]
    assert "JSON" not in caplog.text
