"""CSV, JSON Lines and XML bodies: readers, config, whole syncs (gzip too) and refusals."""

from __future__ import annotations

import gzip
import io
import typing as t

import pytest
from server import Reply, Request

from tap_rhttp.config.load import load_specs
from tap_rhttp.errors import ConfigErrors, ResponseFormatError
from tap_rhttp.formats import delimited, streaming
from tap_rhttp.formats.decoder import Decoder
from tap_rhttp.formats.delimited import CsvOptions
from tap_rhttp.formats.records import compile_records_path
from tap_rhttp.formats.xmldoc import XmlOptions
from tap_rhttp.http import body as http_body

if t.TYPE_CHECKING:
    from server import LocalServer


def read(body: bytes, content_type: str | None, **options: t.Any) -> tuple[t.Any, list[t.Any]]:
    spec = load_specs({"streams": [{"name": "s", "url": "http://127.0.0.1:1/", **options}]})[0]
    path = compile_records_path(spec.records_path) if spec.records_path else None
    return spec.decoder.read(body, content_type, path)


def records(body: bytes, content_type: str | None, **options: t.Any) -> list[t.Any]:
    return read(body, content_type, **options)[1]


def error(body: bytes, content_type: str | None, **options: t.Any) -> str:
    with pytest.raises(ResponseFormatError) as info:
        read(body, content_type, **options)
    return str(info.value)


# ------------------------------------------------------------------ CSV


def test_csv_rows_become_records_of_strings() -> None:
    body = b'id,name,note\r\n1,"Smith, Jo","said ""hi"""\r\n\r\n2,,"two\nlines"\r\n'
    assert records(body, "text/csv") == [
        {"id": "1", "name": "Smith, Jo", "note": 'said "hi"'},
        {"id": "2", "name": "", "note": "two\nlines"},
    ]


def test_csv_body_is_the_list_of_rows_and_records_path_selects_from_it() -> None:
    body, found = read(b"a,b\n1,2\n3,4\n", "text/csv", records_path="$[?(@.a == '3')]")
    assert body == [{"a": "1", "b": "2"}, {"a": "3", "b": "4"}]
    assert found == [{"a": "3", "b": "4"}]


def test_tsv_by_content_type_and_any_delimiter_by_option() -> None:
    assert records(b"a\tb\nx y\tz\n", "text/tab-separated-values") == [{"a": "x y", "b": "z"}]
    assert records(b"a;b\n1;2\n", None, result_format="csv", csv={"delimiter": ";"}) == [
        {"a": "1", "b": "2"}
    ]
    tsv = {"delimiter": "\t"}
    assert records(b"a\tb\n1\t2\n", "text/plain", result_format="csv", csv=tsv) == [
        {"a": "1", "b": "2"}
    ]


def test_csv_field_names_given_or_replacing_the_header() -> None:
    headless = {"header": False, "fieldnames": ["x", "y"]}
    assert records(b"1,2\n3,4\n", "text/csv", csv=headless) == [
        {"x": "1", "y": "2"},
        {"x": "3", "y": "4"},
    ]
    renamed = {"fieldnames": ["x", "y"]}
    assert records(b"A,B\n1,2\n", "text/csv", csv=renamed) == [{"x": "1", "y": "2"}]


def test_csv_quoting_options() -> None:
    unquoted = {"quotechar": None, "escapechar": "\\"}
    assert records(b'a,b\n"1",x\\,y\n', "text/csv", csv=unquoted) == [{"a": '"1"', "b": "x,y"}]
    spaced = {"skipinitialspace": True}
    assert records(b'a, b\n1, "2"\n', "text/csv", csv=spaced) == [{"a": "1", "b": "2"}]


def test_csv_charset_and_byte_order_mark() -> None:
    assert records("é\nü\n".encode("latin-1"), "text/csv; charset=latin-1") == [{"é": "ü"}]
    assert records(b"\xef\xbb\xbfid\n7\n", "text/csv") == [{"id": "7"}]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"a,b\n1,2\n3\n", "line 3: a row of 1 field(s), but there are 2 field names."),
        (b"a,b\n1,2,3\n", "line 2: a row of 3 field(s), but there are 2 field names."),
        (b'a,b\n1,"2"x\n', "line 2: ',' expected after '\"'"),
        (b"a,a\n1,2\n", "line 1: the header names `a` twice."),
        (b'a\n"never closed\n', "line 2: unexpected end of data"),
        (b"a\n\xff\n", "the body is not valid utf-8 text (invalid start byte)."),
    ],
)
def test_csv_errors_name_the_line(body: bytes, fragment: str) -> None:
    message = error(body, "text/csv")
    assert message.startswith("failed to parse CSV response: ")
    assert fragment in message


def test_a_csv_row_past_the_bound_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delimited, "MAX_ROW_CHARS", 20)
    assert records(b"a\n" + b"x" * 18 + b"\n", "text/csv") == [{"a": "x" * 18}]
    message = error(b"a\n" + b"x" * 30 + b"\n", "text/csv")
    assert "line 2: a row longer than 20 characters" in message
    message = error(b'a\n"' + b"x\n" * 12 + b'"\n', "text/csv")  # one row over many lines
    assert "a row longer than 20 characters" in message


def test_text_keeps_a_csv_body_as_one_value() -> None:
    assert records(b"a,b\n1,2\n", "text/csv", result_format="text") == [{"value": "a,b\n1,2\n"}]


# ------------------------------------------------------------------ JSON Lines


def test_jsonl_one_record_per_non_blank_line() -> None:
    body = b'{"id": 1}\n\n  \r\n[1, 2]\r\n"s"\n{"id": 4}'
    body_value, found = read(body, "application/x-ndjson")
    assert body_value == [{"id": 1}, [1, 2], "s", {"id": 4}]
    assert found == [{"id": 1}, {"value": [1, 2]}, {"value": "s"}, {"id": 4}]
    assert records(b'{"a": 1}\n', "text/plain", result_format="jsonl") == [{"a": 1}]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"a": 1}\n{"a": \n', "line 2: "),
        (b'{"a": 1}\n\n{"a": 1} {"b": 2}\n', "line 3: "),
        (b"[NaN]\n", "line 1: "),
    ],
)
def test_a_bad_jsonl_line_is_an_error_naming_it(body: bytes, fragment: str) -> None:
    message = error(body, "application/jsonl")
    assert message.startswith("failed to parse JSONL response: " + fragment)


def test_a_jsonl_line_past_the_bound_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delimited, "MAX_LINE_BYTES", 16)
    assert "line 2 is longer than 16 bytes" in error(
        b"1\n" + b" " * 40 + b"2\n", "application/jsonl"
    )


# ------------------------------------------------------------------ XML

RSS = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">
  <channel>
    <title>News</title>
    <item id="1"><title>A &amp; B</title><dc:creator>Jo</dc:creator>
      <category>x</category><category>y</category></item>
    <item><title><![CDATA[<b>raw</b>]]></title><description/><p>mixed <b>bold</b> text</p></item>
  </channel>
</rss>"""


def test_xml_records_at_an_element_path() -> None:
    assert records(RSS, "application/rss+xml", xml={"records": "channel/item"}) == [
        {"@id": "1", "title": "A & B", "dc:creator": "Jo", "category": ["x", "y"]},
        {
            "title": "<b>raw</b>",
            "description": None,
            "p": {"b": "bold", "#text": "mixed  text"},
        },
    ]


def test_xml_body_is_the_document_and_one_record_without_a_path() -> None:
    body, found = read(b'<a x="1"><b>t</b></a>', "text/xml")
    assert body == {"a": {"@x": "1", "b": "t"}}
    assert found == [{"a": {"@x": "1", "b": "t"}}]
    assert read(b"<a>text</a>", "application/xml")[1] == [{"a": "text"}]
    # records_path selects from the document when `xml.records` is not given
    assert records(RSS, "text/xml", records_path="$.rss.channel.item[*].title") == [
        {"value": "A & B"},
        {"value": "<b>raw</b>"},
    ]


def test_xml_arrays_option_and_leaf_records_are_wrapped() -> None:
    body = b"<r><i><tag>a</tag></i><i><tag>a</tag><tag>b</tag></i><i/></r>"
    assert records(body, "text/xml", xml={"records": "i", "arrays": ["tag"]}) == [
        {"tag": ["a"]},
        {"tag": ["a", "b"]},
        {"value": None},
    ]
    assert records(body, "text/xml", xml={"records": "i/tag"}) == [
        {"value": "a"},
        {"value": "a"},
        {"value": "b"},
    ]


def test_xml_names_keep_their_prefixes_and_the_default_namespace_is_dropped() -> None:
    atom = (
        b'<feed xmlns="http://www.w3.org/2005/Atom" xmlns:m="urn:m">'
        b'<entry m:rank="2" xml:lang="en"><id>1</id><m:score>9</m:score></entry></feed>'
    )
    assert records(atom, "application/atom+xml", xml={"records": "entry"}) == [
        {"@m:rank": "2", "@xml:lang": "en", "id": "1", "m:score": "9"}
    ]


def test_xml_text_is_kept_exactly() -> None:
    assert records(b"<r><i> a  b </i><i>&#233;&lt;</i></r>", "text/xml", xml={"records": "i"}) == [
        {"value": " a  b "},
        {"value": "é<"},
    ]


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<lolz><i>&lol3;</i></lolz>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<r><i>&xxe;</i></r>"""

PARAMETER_XXE = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd"> %remote;]>
<r><i>x</i></r>"""


@pytest.mark.parametrize(
    ("body", "name"),
    [(BILLION_LAUGHS, "lol"), (XXE, "xxe"), (PARAMETER_XXE, "remote")],
    ids=["billion-laughs", "external-entity", "external-parameter-entity"],
)
def test_entity_declarations_are_refused(body: bytes, name: str) -> None:
    message = error(body, "application/xml", xml={"records": "i"})
    assert message == (
        f"failed to parse XML response: the body declares the entity `{name}`; entity "
        "declarations are refused (they allow entity expansion bombs and external entities)."
    )
    assert "root:" not in message  # nothing of /etc/passwd was read


def test_xml_nested_past_the_bound_is_an_error() -> None:
    assert records(b"<a>" * 512 + b"</a>" * 512, "text/xml")
    message = error(b"<a>" * 513 + b"</a>" * 513, "text/xml")
    assert message == "failed to parse XML response: elements nested deeper than 512 levels."


def test_malformed_xml_is_an_error_with_its_position() -> None:
    assert error(b"<r><i>x</r>", "text/xml").startswith(
        "failed to parse XML response: mismatched tag: line 1, column 9"
    )
    assert "junk after document element" in error(b"<r/><r/>", "text/xml")


# ------------------------------------------------------------------ config


def config_errors(**options: t.Any) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        load_specs({"streams": [{"name": "s", "url": "http://127.0.0.1:1/", **options}]})
    return [str(e) for e in info.value.errors]


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"csv": {"delimiter": ",,"}}, "streams[0].csv.delimiter: `csv.delimiter` should be one"),
        ({"csv": {"quotechar": "\n"}}, "streams[0].csv.quotechar: `csv.quotechar` should be one"),
        ({"csv": {"header": False}}, "streams[0].csv.header: `csv.header: false` needs"),
        ({"csv": {"delimiter": '"'}}, "must differ"),
        ({"csv": {"fieldnames": ["a", "a"]}}, "lists a name twice"),
        ({"csv": {"sep": ";"}}, "streams[0].csv.sep: `sep` is not an option of `csv`"),
        ({"csv": ";"}, "streams[0].csv: `csv` should be an object"),
        ({"xml": {"records": ""}}, "streams[0].xml.records: `xml.records` should be a path"),
        ({"xml": {"records": "a//b"}}, "`xml.records` should be a path"),
        ({"xml": {"arrays": "tag"}}, "streams[0].xml.arrays"),
        ({"result_format": "json", "csv": {}}, "streams[0].csv: `csv` applies to"),
        ({"result_format": "csv", "xml": {}}, "streams[0].xml: `xml` applies to"),
        (
            {"result_format": "xml", "xml": {"records": "a"}, "records_path": "$.a"},
            "give either `xml.records` or `records_path`",
        ),
    ],
)
def test_format_options_are_checked(options: dict[str, t.Any], fragment: str) -> None:
    (message,) = config_errors(**options)
    assert fragment in message


def test_format_options_build_the_decoder() -> None:
    spec = load_specs(
        {
            "streams": [
                {
                    "name": "s",
                    "url": "http://127.0.0.1:1/",
                    "csv": {"delimiter": "|", "quotechar": None, "fieldnames": ["a"]},
                    "xml": {"records": "/x/y/", "arrays": ["z"]},
                    "records_path": "$[*]",
                }
            ]
        }
    )[0]
    assert spec.decoder == Decoder(
        "auto",
        CsvOptions(delimiter="|", quotechar=None, fieldnames=("a",)),
        XmlOptions(records=("x", "y"), arrays=frozenset({"z"})),
    )


# ------------------------------------------------------------------ whole syncs


def _route(server: LocalServer, path: str, body: bytes, content_type: str) -> None:
    @server.route(path)
    def serve(request: Request) -> Reply:
        if request.args.get("gzip"):
            return Reply(200, gzip.compress(body), (("Content-Encoding", "gzip"),), content_type)
        return Reply(200, body, (), content_type)


CSV_BODY = b"id,name\n" + b"".join(f"{i},name {i}\n".encode() for i in range(1, 201))
JSONL_BODY = b"".join(f'{{"id": {i}, "name": "name {i}"}}\n'.encode() for i in range(1, 201))
XML_BODY = (
    b"<export><meta>m</meta><rows>"
    + b"".join(f'<row id="{i}"><name>name {i}</name></row>'.encode() for i in range(1, 201))
    + b"</rows></export>"
)


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize(
    ("body", "content_type", "options", "first"),
    [
        (CSV_BODY, "text/csv", {}, {"id": "1", "name": "name 1"}),
        (JSONL_BODY, "application/x-ndjson", {}, {"id": 1, "name": "name 1"}),
        (
            XML_BODY,
            "application/xml",
            {"xml": {"records": "rows/row"}},
            {"@id": "1", "name": "name 1"},
        ),
    ],
    ids=["csv", "jsonl", "xml"],
)
def test_a_sync_reads_each_format_by_content_type(
    server: LocalServer,
    sync: t.Any,
    body: bytes,
    content_type: str,
    options: dict[str, t.Any],
    first: dict[str, t.Any],
    compressed: bool,
) -> None:
    _route(server, "/export", body, content_type)
    url = server.url + "/export" + ("?gzip=1" if compressed else "")
    result = sync({"streams": [{"name": "s", "url": url, **options}]})
    found = result.records("s")
    assert len(found) == 200
    assert found[0] == first
    assert len(server.log) == 1  # discovery's sample page is reused by the sync


def test_csv_types_are_strings_in_the_inferred_schema(server: LocalServer, sync: t.Any) -> None:
    _route(server, "/export", CSV_BODY, "text/csv")
    result = sync({"streams": [{"name": "s", "url": server.url + "/export"}]})
    assert result.schema("s")["properties"]["id"]["type"] == ["string", "null"]


def test_a_page_expression_reads_a_csv_body(server: LocalServer, sync: t.Any) -> None:
    @server.route("/csv-pages")
    def pages(request: Request) -> Reply:
        page = int(request.args.get("page", "1"))
        rows = "".join(f"{page * 10 + i},{page}\n" for i in range(3))
        return Reply(200, "id,page\n" + rows if page <= 2 else "id,page\n", (), "text/csv")

    config = {
        "streams": [
            {
                "name": "s",
                "url": server.url + "/csv-pages",
                "params": {"page": 1},
                "page": "r.branch(info['body'].count() == 0, None, "
                "{'params': {'page': info['params']['page'] + 1}})",
                "page_limit": 10,
            }
        ]
    }
    found = sync(config).records("s")
    assert [r["id"] for r in found] == ["10", "11", "12", "20", "21", "22"]


def test_xml_entities_fail_a_sync_before_any_record(server: LocalServer, sync: t.Any) -> None:
    _route(server, "/evil", XXE, "application/xml")
    with pytest.raises(ResponseFormatError, match="entity declarations are refused"):
        sync({"streams": [{"name": "s", "url": server.url + "/evil", "xml": {"records": "i"}}]})


def test_readers_take_any_binary_stream() -> None:
    """The same readers read bytes in memory and spooled files (see test_streaming)."""
    stream = io.BytesIO(b"a\n1\n")
    assert list(delimited.iter_csv(stream, None, CsvOptions())) == [{"a": "1"}]
    assert not stream.closed  # the body's file is left to its owner


@pytest.mark.parametrize(
    ("body", "content_type", "options"),
    [
        (CSV_BODY, "text/csv", {}),
        (JSONL_BODY, "application/x-ndjson", {}),
        (XML_BODY, "application/xml", {"xml": {"records": "rows/row"}}),
    ],
    ids=["csv", "jsonl", "xml"],
)
def test_a_large_gzip_body_of_each_format_is_streamed_with_the_same_records(
    server: LocalServer,
    sync: t.Any,
    monkeypatch: pytest.MonkeyPatch,
    body: bytes,
    content_type: str,
    options: dict[str, t.Any],
) -> None:
    _route(server, "/export", body, content_type)
    config = {"streams": [{"name": "s", "url": server.url + "/export?gzip=1", **options}]}
    whole = sync(config).records("s")
    monkeypatch.setattr(http_body, "SPOOL_THRESHOLD", 64)
    streamed_pages: list[bool] = []
    real = streaming.stream_records

    def spy(*args: t.Any) -> t.Any:
        found = real(*args)
        streamed_pages.append(found is not None)
        return found

    monkeypatch.setattr(streaming, "stream_records", spy)
    assert sync(config).records("s") == whole
    assert streamed_pages == [True]
    assert len(whole) == 200
