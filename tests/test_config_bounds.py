"""Config that no request could honour is rejected at load, naming its path.

Every numeric option has an upper bound (a timeout of 1e10 s killed the deadline
watcher, a `backoff_base` of 1e10 waited centuries, `rate_limit: 1e-300` was a
traceback); numbers that JSON or the output cannot carry (NaN, infinities, integers past
64 bits) are rejected anywhere; header and credential values HTTP cannot carry are
config errors, also once templates render; a `--config` file singer-sdk cannot read is
one clear line.
"""

from __future__ import annotations

import base64
import typing as t

import pytest

from tap_rhttp.config.jsonschema import config_schema
from tap_rhttp.config.load import load_specs
from tap_rhttp.config.options import OPTIONS
from tap_rhttp.errors import ConfigErrors

if t.TYPE_CHECKING:
    from pathlib import Path

    from server import LocalServer

URL = "http://127.0.0.1:9/x"


def one(**spec: t.Any) -> dict[str, t.Any]:
    return {"streams": [{"name": "s", "url": URL, **spec}]}


def errors_of(config: dict[str, t.Any]) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        load_specs(config)
    return [str(e) for e in info.value.errors]


#: option -> (largest accepted value, the smallest rejected one just past it, companions)
BOUNDS: dict[str, tuple[float, float, dict[str, t.Any]]] = {
    "timeout": (86400, 86400.5, {}),
    "reattempts": (100, 101, {}),
    "redirects": (100, 101, {}),
    "page_limit": (1_000_000_000, 1_000_000_001, {"page": "link-next"}),
    "backoff_base": (3600, 3600.5, {"backoff_max": 86400}),
    "backoff_max": (86400, 86400.5, {}),
    "retry_after_max": (86400, 86400.5, {}),
    "max_retry_seconds": (604800, 604800.5, {}),
    "max_concurrency": (64, 65, {}),
    "rate_limit": (10000, 10000.5, {}),
    "max_body_bytes": (1 << 40, (1 << 40) + 1, {}),
}


def numeric_options() -> list[str]:
    return [
        name
        for name, option in OPTIONS.items()
        if option.jsonschema.get("type") in ("number", "integer")
    ]


def test_every_numeric_option_has_a_bound_here() -> None:
    assert sorted(BOUNDS) == sorted(numeric_options())


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_numeric_options_have_an_upper_bound_named_in_the_message(name: str) -> None:
    largest, too_big, companions = BOUNDS[name]
    (spec,) = load_specs(one(**{name: largest}, **companions))
    assert getattr(spec, name) == largest
    (message,) = errors_of(one(**{name: too_big}, **companions))
    assert message.startswith(f"streams[0].{name}: `{name}` should be "), message
    assert str(too_big) in message
    assert f"{largest}" in message  # the allowed range
    messages = errors_of(
        {"defaults": {name: too_big, **companions}, "streams": [{"name": "s", "url": URL}]}
    )
    assert any(m.startswith(f"defaults.{name}: `{name}` should be ") for m in messages), messages


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_the_json_schema_states_the_same_maximum(name: str) -> None:
    largest, _, _ = BOUNDS[name]
    for where in ("streams", "defaults"):
        schema = config_schema()["properties"][where]
        props = schema["items"]["properties"] if where == "streams" else schema["properties"]
        assert props[name]["maximum"] == largest, (where, props[name])


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        ({"timeout": 1e10}, "streams[0].timeout", "at most 86400 seconds (got 10000000000.0)"),
        ({"backoff_base": 1e10}, "streams[0].backoff_base", "at most 3600 seconds"),
        ({"backoff_max": 1e10}, "streams[0].backoff_max", "at most 86400 seconds"),
        ({"retry_after_max": 1e10}, "streams[0].retry_after_max", "at most 86400 seconds"),
        ({"rate_limit": 1e-300}, "streams[0].rate_limit", "from 0.0001 (one request every"),
        ({"rate_limit": 1e300}, "streams[0].rate_limit", "to 10000 (got 1e+300)"),
        ({"reattempts": 2**64 + 1}, "streams[0].reattempts", "at most 100"),
        ({"attempts": 10**30}, "streams[0].reattempts", "at most 100"),
        (
            {"page": "link-next", "page_limit": 2**64 + 1},
            "streams[0].page_limit",
            "at most 1000000000",
        ),
        ({"max_concurrency": 10**6}, "streams[0].max_concurrency", "at most 64"),
    ],
)
def test_the_reported_cases(spec: dict[str, t.Any], path: str, fragment: str) -> None:
    (message,) = errors_of(one(**spec))
    assert message.startswith(path + ": "), message
    assert fragment in message, message


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        (
            {"params": {"n": 18446744073709551617}},
            "streams[0].params.n",
            "integers must fit in 64 bits (got 18446744073709551617)",
        ),
        ({"params": {"n": -(2**63) - 1}}, "streams[0].params.n", "integers must fit in 64 bits"),
        ({"for_each": [1, 2**64]}, "streams[0].for_each[1]", "integers must fit in 64 bits"),
        (
            {"for_each": [{"a": [10**5000]}]},
            "streams[0].for_each[0].a[0]",
            "an integer of 16610 bits",
        ),
        (
            {"method": "PUT", "data": {"a": [1, float("nan")]}},
            "streams[0].data.a[1]",
            "numbers must be finite (got NaN)",
        ),
        ({"params": {"n": float("inf")}}, "streams[0].params.n", "must be finite"),
        (
            {"start_value": float("nan"), "replication_key": "id"},
            "streams[0].start_value",
            "numbers must be finite",
        ),
        (
            {"schema": {"properties": {"a": {"maximum": float("inf")}}}},
            "streams[0].schema.properties.a.maximum",
            "numbers must be finite (got Infinity)",
        ),
    ],
)
def test_numbers_json_cannot_carry_are_rejected_anywhere(
    spec: dict[str, t.Any], path: str, fragment: str
) -> None:
    (message,) = errors_of(one(**spec))
    assert message.startswith(path + ": "), message
    assert fragment in message, message


def test_the_64_bit_edges_are_accepted() -> None:
    (spec,) = load_specs(one(params={"a": 2**64 - 1, "b": -(2**63)}, for_each=[2**64 - 1]))
    assert dict(spec.params) == {"a": 2**64 - 1, "b": -(2**63)}


def test_top_level_settings_are_checked_too() -> None:
    (message,) = errors_of({**one(), "region": float("nan")})
    assert message.startswith("region: numbers must be finite"), message


ZWSP = "\u200b"


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        (
            {"header": {"X-A": " leading"}},
            "streams[0].header.X-A",
            "may not start or end with a space",
        ),
        (
            {"header": {"X-A": "trailing\t"}},
            "streams[0].header.X-A",
            "may not start or end with a space",
        ),
        ({"header": {"X-A": f"a{ZWSP}b"}}, "streams[0].header.X-A", "U+200B ZERO WIDTH SPACE"),
        (
            {"header": {"X-A": "\u201cquoted\u201d"}},
            "streams[0].header.X-A",
            "U+201C LEFT DOUBLE QUOTATION MARK",
        ),
        ({"header": {"X-A": "a\x00b"}}, "streams[0].header.X-A", "control characters"),
        ({"header": [f"X-A: b{ZWSP}"]}, "streams[0].header[0]", "U+200B"),
        (
            {"auth": {"type": "bearer", "token": f"s3cr3t{ZWSP}"}},
            "streams[0].auth.token",
            "`bearer` tokens can only hold Latin-1",
        ),
        (
            {"auth": {"type": "bearer", "token": " s3cr3t"}},
            "streams[0].auth.token",
            "start or end with a space",
        ),
        (
            {"auth": {"type": "api_key", "name": "X-Key", "value": "k\u2019ey"}},
            "streams[0].auth.value",
            "header API keys can only hold Latin-1",
        ),
        (
            {"auth": {"type": "digest", "user": "fr\u0113d", "pass": "p"}},
            "streams[0].auth.user",
            "`digest` user names can only hold Latin-1",
        ),
        (
            {"auth": {"type": "digest", "user": 'fr"ed', "pass": "p"}},
            "streams[0].auth.user",
            'may not contain `"`',
        ),
        (
            {"auth": {"type": "basic", "user": "u", "pass": "p\x07"}},
            "streams[0].auth.pass",
            "control characters",
        ),
        (
            {"params": {"q": "{{ item"}, "for_each": [1]},
            "streams[0].params.q",
            "unbalanced `{{` / `}}`",
        ),
        ({"url": URL + "/{{ item", "for_each": [1]}, "streams[0].url", "unbalanced `{{` / `}}`"),
    ],
)
def test_values_http_cannot_carry_are_config_errors(
    spec: dict[str, t.Any], path: str, fragment: str
) -> None:
    (message,) = errors_of(one(**spec))
    assert message.startswith(path + ": "), message
    assert fragment in message, message
    for secret in ("s3cr3t", "k\u2019ey", "p\x07"):
        assert secret not in message


def test_a_lined_header_keeps_its_value_without_the_space_after_the_colon() -> None:
    (spec,) = load_specs(one(header=["X-A:   b c", "X-B:\tv"]))
    assert spec.header == (("X-A", "b c"), ("X-B", "v"))


def test_a_non_latin1_basic_password_is_sent_as_utf8(server: LocalServer, sync: t.Any) -> None:
    """RFC 7617 §2.1 (and curl, so r.http): requests alone failed with UnicodeEncodeError."""
    config = {
        "streams": [
            {
                "name": "s",
                "url": server.url + "/echo",
                "auth": {"type": "basic", "user": "fr\u0113d", "pass": "p\u00e4ss\u2603"},
            }
        ]
    }
    sync(config)
    (hit,) = server.log
    header = hit.headers["Authorization"]
    assert (
        base64.b64decode(header.removeprefix("Basic ")).decode("utf-8")
        == "fr\u0113d:p\u00e4ss\u2603"
    )


def test_a_rendered_token_http_cannot_carry_fails_before_any_request(
    server: LocalServer, cli: t.Any
) -> None:
    config = {
        "secrets": {"token": f"abc{ZWSP}def"},
        "streams": [
            {
                "name": "s",
                "url": server.url + "/records?n=1",
                "auth": {"type": "bearer", "token": "{{ secrets['token'] }}"},
            },
        ],
    }
    done = cli(config)
    assert done.code == 1
    assert "streams[0].auth.token: `bearer` tokens can only hold Latin-1 characters" in done.stderr
    assert "U+200B ZERO WIDTH SPACE" in done.stderr
    assert "Traceback" not in done.stderr
    assert "abc" not in done.stderr
    assert server.log == []


def test_a_rendered_header_with_a_leading_space_fails_before_any_request(
    server: LocalServer, cli: t.Any
) -> None:
    config = {
        "streams": [
            {
                "name": "s",
                "url": server.url + "/records?n=1",
                "for_each": [" x"],
                "header": {"X-Item": "{{ item }}"},
            },
        ],
    }
    done = cli(config)
    assert done.code == 1
    assert "streams[0].header.X-Item: `header` values may not start or end" in done.stderr
    assert "Traceback" not in done.stderr
    assert server.log == []


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (None, "no such file."),
        ('{"streams": [', "is not valid JSON: Expecting value"),
        ('{"streams": [{"name": "s", "url": "http://h/x", "timeout": NaN}]}', "is not valid JSON"),
        ("[1, 2]", "should hold a JSON object (got array)."),
        ('"streams"', "should hold a JSON object (got string)."),
        (b"\xff\xfe{}", "cannot be read"),
    ],
)
def test_a_config_file_singer_sdk_cannot_read_is_one_clear_line(
    tmp_path: Path, cli: t.Any, text: str | bytes | None, fragment: str
) -> None:
    path = tmp_path / "given.json"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    for args in ((), ("--discover",), ("--explain",)):
        done = cli(None, "--config", str(path), *args)
        assert done.code == 1, done
        assert f"--config {path}: {fragment}" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        assert done.stdout == ""


@pytest.mark.parametrize(
    ("windows", "path"),
    [
        ({"start": "2024-01-01", "step": 10**15}, "streams[0].windows.step"),
        ({"start": "2024-01-01", "step": "P99999999999D"}, "streams[0].windows.step"),
        ({"start": "2024-01-01", "step": "P1D", "lookback": 10**15}, "streams[0].windows.lookback"),
        ({"start": 10**15, "step": 1}, "streams[0].windows.start"),
    ],
)
def test_window_durations_have_an_upper_bound(windows: dict[str, t.Any], path: str) -> None:
    """A datetime overflowed on them (a traceback at load or at the first window)."""
    config = one(windows=windows)
    config["streams"][0]["url"] = URL + "?since={{ window['start'] }}"
    (message,) = errors_of(config)
    assert message.startswith(path + ": a duration may be at most 3153600000 seconds"), message


@pytest.mark.parametrize(
    ("sample", "path", "largest"),
    [({"pages": 101}, "pages", 100), ({"records": 1_000_001}, "records", 1_000_000)],
)
def test_schema_sample_has_an_upper_bound(sample: dict[str, int], path: str, largest: int) -> None:
    (message,) = errors_of(one(schema_sample=sample))
    assert message.startswith(
        f"streams[0].schema_sample.{path}: `schema_sample.{path}` should be at most {largest}"
    ), message
    (spec,) = load_specs(one(schema_sample={path: largest}))
    assert getattr(spec.schema_sample, path) == largest
    schema = config_schema()["properties"]["streams"]["items"]["properties"]["schema_sample"]
    assert schema["properties"][path]["maximum"] == largest
