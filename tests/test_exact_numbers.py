"""Numbers and strings from a body are exact, or the page fails with a clear error.

orjson reads an integer past 64 bits as a float: 18446744073709551617 became
1.8446744073709552e19 in the RECORD. ``1e999999`` became an infinity, written as null;
a lone surrogate escape ended the run on a UnicodeEncodeError traceback.
"""

from __future__ import annotations

import json
import typing as t

import pytest
from fault_server import FaultServer, reply

from tap_rhttp.errors import ResponseFormatError
from tap_rhttp.formats.readers import dump_json, parse_json

if t.TYPE_CHECKING:
    from collections.abc import Iterator

BIG = 18446744073709551617
NEG = -9223372036854775809


@pytest.fixture
def fault() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


def stream(url: str, **options: t.Any) -> dict[str, t.Any]:
    return {"streams": [{"name": "s", "url": url, "reattempts": 1, **options}]}


def record_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if '"type":"RECORD"' in line]


@pytest.mark.parametrize("declared", [False, True])
def test_integers_past_64_bits_keep_every_digit(
    fault: FaultServer, cli: t.Any, declared: bool
) -> None:
    body = f'[{{"id": {BIG}, "n": {NEG}, "small": 7, "s": "{BIG}"}}]'.encode()
    fault.routes["/big"] = lambda hit: reply(200, body)
    options = {"schema": {"properties": {"id": {"type": "integer"}}}} if declared else {}
    done = cli(stream(fault.url + "/big", **options))
    assert done.code == 0, done.stderr
    (line,) = record_lines(done.stdout)
    # Every digit, as a JSON number; beyond a bigint column the value may go to a variant
    # column (`id__v_number`, schema_drift: evolve), never to a float.
    assert f":{BIG}," in line or f":{BIG}}}" in line, line
    assert f":{NEG}," in line or f":{NEG}}}" in line, line
    assert f'"s":"{BIG}"' in line
    assert "e+19" not in line
    assert "e19" not in line
    assert BIG in json.loads(line)["record"].values()


def test_a_spooled_page_keeps_every_digit_too(fault: FaultServer, cli: t.Any) -> None:
    """A body past the spool threshold is streamed; its big integers fall back exactly."""
    rows = [{"id": i, "pad": "x" * 100} for i in range(90_000)]
    rows[45_000]["id"] = BIG
    body = json.dumps(rows).encode()
    assert len(body) > 9 << 20
    fault.routes["/big"] = lambda hit: reply(200, body)
    schema = {"properties": {"id": {"type": "number"}, "pad": {"type": "string"}}}
    done = cli(stream(fault.url + "/big", schema=schema))
    assert done.code == 0, done.stderr
    lines = record_lines(done.stdout)
    assert len(lines) == 90_000
    assert f'"id":{BIG},' in lines[45_000]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'[{"f": 1e999999}]', "the number 1e999999 is too large for a 64-bit float"),
        (b'[{"f": -1E400}]', "the number -1E400 is too large for a 64-bit float"),
        (b'[{"s": "a\\ud800b"}]', "a string holds a lone UTF-16 surrogate (\\ud800)"),
        (b'[{"a\\udfffb": 1}]', "a string holds a lone UTF-16 surrogate (\\udfff)"),
    ],
)
def test_what_a_record_cannot_carry_fails_the_page_clearly(
    fault: FaultServer, cli: t.Any, body: bytes, message: str
) -> None:
    fault.routes["/bad"] = lambda hit: reply(200, body)
    done = cli(stream(fault.url + "/bad", schema={"properties": {}}))
    assert done.code == 1
    errors = [line for line in done.stderr.splitlines() if "| ERROR" in line]
    assert len(errors) == 1, done.stderr
    assert f"failed to parse JSON response: {message}" in errors[0]
    assert "Traceback" not in done.stderr
    assert record_lines(done.stdout) == []


def test_surrogate_pairs_and_escaped_backslashes_are_fine() -> None:
    assert parse_json(b'["\\ud83d\\ude00", "\\\\ud800"]') == ["\U0001f600", "\\ud800"]


def test_long_digit_runs_in_strings_parse_the_same() -> None:
    body = b'{"ids": ["12345678901234567890123", "x: 12345678901234567890"], "n": 1}'
    assert parse_json(body) == json.loads(body)


@pytest.mark.parametrize("text", ["[1e309]", "[-1e309]", "[NaN]", "[Infinity]"])
def test_non_finite_numbers_are_errors(text: str) -> None:
    with pytest.raises(ResponseFormatError):
        parse_json(text)


def test_dump_json_writes_big_integers() -> None:
    assert dump_json({"a": [BIG, NEG, 1.5, "é"]}) == f'{{"a":[{BIG},{NEG},1.5,"é"]}}'.encode()


def test_a_page_error_quoting_a_big_integer_is_still_a_clear_error(
    fault: FaultServer, cli: t.Any
) -> None:
    """The `page` error message prints `info`; orjson could not write it."""
    fault.routes["/p"] = lambda hit: reply(200, f'{{"items": [], "id": {BIG}}}'.encode())
    config = stream(
        fault.url + "/p",
        page="info['body']['nope']",
        page_limit=-1,
        records_path="$.items[*]",
        schema={"properties": {}},
    )
    done = cli(config)
    assert done.code == 1
    assert "No attribute `nope` in object:" in done.stderr
    assert f'"id":{BIG}' in done.stderr
    assert "Traceback" not in done.stderr


def test_a_big_integer_from_a_parent_row_renders_in_a_child_url(
    fault: FaultServer, cli: t.Any
) -> None:
    fault.routes["/users"] = lambda hit: reply(200, f'[{{"id": {BIG}}}]'.encode())
    fault.routes["/posts"] = lambda hit: reply(200, f'[{{"uid": "{hit.args["u"]}"}}]'.encode())
    config = {
        "streams": [
            {
                "name": "users",
                "url": fault.url + "/users",
                "primary_keys": ["id"],
                # a key past a bigint column's range needs a numeric column (schema drift)
                "schema_overrides": {"id": {"type": ["number", "null"]}},
            },
            {
                "name": "posts",
                "url": fault.url + "/posts?u={{ row['id'] }}&r={{ row }}",
                "parent": "users",
            },
        ]
    }
    done = cli(config)
    assert done.code == 0, done.stderr
    assert f'"uid":"{BIG}"' in done.stdout
    (hit,) = fault.hits("/posts")
    assert hit.args["r"] == f'{{"id":{BIG}}}'


def test_a_big_integer_from_a_parent_row_goes_out_in_a_json_body(
    fault: FaultServer, cli: t.Any
) -> None:
    """The `json` option sends the row as JSON; orjson could not write the integer."""
    fault.routes["/users"] = lambda hit: reply(200, f'[{{"id": {BIG}}}]'.encode())
    fault.routes["/lookup"] = lambda hit: reply(200, b'[{"ok": true}]')
    config = {
        "streams": [
            {
                "name": "users",
                "url": fault.url + "/users",
                "primary_keys": ["id"],
                # a key past a bigint column's range needs a numeric column (schema drift)
                "schema_overrides": {"id": {"type": ["number", "null"]}},
            },
            {
                "name": "lookup",
                "url": fault.url + "/lookup",
                "method": "POST",
                "json": {"user": "{{ row['id'] }}"},
                "parent": "users",
            },
        ]
    }
    done = cli(config)
    assert done.code == 0, done.stderr[-2000:]
    (hit,) = fault.hits("/lookup")
    assert hit.body == f'{{"user":{BIG}}}'.encode()
