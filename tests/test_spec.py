"""Config validation: every rule, every message naming path, value and what is allowed."""

from __future__ import annotations

import typing as t

import pytest

from tap_rhttp.config.load import load_specs
from tap_rhttp.errors import ConfigErrors


def one(**spec: t.Any) -> dict[str, t.Any]:
    return {"streams": [{"name": "s", "url": "http://127.0.0.1:1/x", **spec}]}


def errors_of(config: dict[str, t.Any]) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        load_specs(config)
    return [str(e) for e in info.value.errors]


def test_minimal_spec_gets_r_http_defaults() -> None:
    (spec,) = load_specs(one())
    assert spec.name == "s"
    assert spec.method == "GET"
    assert spec.timeout == 30.0
    assert spec.reattempts == 5
    assert spec.redirects == 1
    assert spec.verify is True
    assert spec.result_format == "auto"
    assert spec.page is None
    assert spec.page_limit is None
    assert spec.path == "streams[0]"


def test_scheme_less_url_means_http() -> None:
    (spec,) = load_specs({"streams": [{"name": "s", "url": "localhost:8080/get"}]})
    assert spec.url == "http://localhost:8080/get"


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "gopher://x"])
def test_other_protocols_are_rejected_at_load(url: str) -> None:
    (message,) = errors_of({"streams": [{"name": "s", "url": url}]})
    assert message.startswith("streams[0].url: Unsupported protocol")
    assert url in message
    assert "http:// or https://" in message


def test_defaults_merge_stream_wins_params_and_headers_by_key() -> None:
    config = {
        "defaults": {
            "timeout": 10,
            "params": {"per_page": 100, "q": "a"},
            "header": {"Accept": "application/json", "X-A": "1"},
        },
        "streams": [
            {"name": "s", "url": "http://h/x", "params": {"q": "b"}, "header": ["x-a: 2"]},
            {"name": "t", "url": "http://h/y", "timeout": 3},
        ],
    }
    s, t_ = load_specs(config)
    assert s.timeout == 10
    assert dict(s.params) == {"per_page": 100, "q": "b"}
    assert s.header == (("Accept", "application/json"), ("x-a", "2"))
    assert t_.timeout == 3


def test_attempts_is_an_alias_of_reattempts() -> None:
    (spec,) = load_specs(one(attempts=2))
    assert spec.reattempts == 2
    (message,) = errors_of(one(attempts=2, reattempts=3))
    assert "streams[0].attempts" in message
    assert "not both" in message


def test_unknown_key_suggests_the_option() -> None:
    (message,) = errors_of(one(paramz={"a": 1}))
    assert message.startswith("streams[0].paramz: unknown option `paramz`.")
    assert "Did you mean `params`?" in message


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        (
            {"page_limit": -5, "page": "link-next"},
            "streams[0].page_limit",
            "`page_limit` should be greater than or equal to -1 (got -5).",
        ),
        ({"page": "link-next"}, "streams[0].page", "needs `page_limit`"),
        ({"page_limit": 3}, "streams[0].page_limit", "needs `page`"),
        (
            {"data": {"a": 1}},
            "streams[0].data",
            "`data` should only be specified on a PUT, POST, PATCH, or DELETE request.",
        ),
        ({"method": "HEAD", "data": "x"}, "streams[0].data", "use `params` instead"),
        (
            {"method": "FETCH"},
            "streams[0].method",
            "`method` (FETCH) is not recognized (GET, HEAD, POST, PUT, PATCH and DELETE are allowed).",
        ),
        ({"timeout": -1}, "streams[0].timeout", "`timeout` may not be negative (got -1)."),
        ({"timeout": "10"}, "streams[0].timeout", 'should be a number of seconds (got "10")'),
        ({"reattempts": 0}, "streams[0].reattempts", "greater than or equal to 1 (got 0)"),
        ({"redirects": -1}, "streams[0].redirects", "greater than or equal to 0 (got -1)"),
        ({"redirects": 1.5}, "streams[0].redirects", "should be an integer (got 1.5)"),
        ({"verify": "yes" * 0}, "streams[0].verify", "true, false or a path"),
        ({"result_format": "yaml"}, "streams[0].result_format", '"yaml" is not recognized'),
        (
            {"params": {"flag": True}},
            "streams[0].params.flag",
            "numbers, strings or null (got boolean true)",
        ),
        ({"params": [1]}, "streams[0].params", "should be an object"),
        ({"header": {"X-A": "a\r\nX-Injected: 1"}}, "streams[0].header.X-A", "CR or LF"),
        ({"header": ["no colon here"]}, "streams[0].header[0]", "has no `:`"),
        ({"header": ["Bad Name: x"]}, "streams[0].header[0]", "not a valid HTTP header name"),
        ({"header": {"X-A\n": "x"}}, "streams[0].header.X-A\n", "not a valid HTTP header name"),
        ({"header": 5}, "streams[0].header", "object or an array of strings"),
        ({"method": "POST", "data": [1, 2]}, "streams[0].data", "object or a string (got array"),
        (
            {"method": "POST", "data": {"a": {"b": 1}}},
            "streams[0].data.a",
            "numbers, strings or null",
        ),
        ({"auth": {"type": "ntlm"}}, "streams[0].auth.type", '"ntlm" is not supported'),
        ({"auth": {"type": "basic", "user": "u"}}, "streams[0].auth.pass", "needs `pass`"),
        ({"auth": {"type": "bearer"}}, "streams[0].auth.token", "needs `token`"),
        (
            {"auth": {"user": "u", "pass": "p", "tokn": "x"}},
            "streams[0].auth.tokn",
            "not an option of `basic` auth",
        ),
        ({"records_path": "$.items[*"}, "streams[0].records_path", "not a valid JSONPath"),
        ({"primary_keys": "id"}, "streams[0].primary_keys", "list of field names"),
        ({"schema": {"type": "object"}}, "streams[0].schema", "`properties` object"),
        (
            {"schema": {"properties": {"a": {}}}, "primary_keys": ["id"]},
            "streams[0].primary_keys",
            "primary key `id` is not in `schema.properties`",
        ),
        ({"rate_limit": 0}, "streams[0].rate_limit", "greater than 0"),
        (
            {"backoff_base": 5, "backoff_max": 1},
            "streams[0].backoff_max",
            "at least `backoff_base`",
        ),
    ],
)
def test_each_bad_value_names_path_value_and_rule(
    spec: dict[str, t.Any], path: str, fragment: str
) -> None:
    (message,) = errors_of(one(**spec))
    assert message.startswith(path + ": "), message
    assert fragment in message


def test_method_in_lower_case_is_normalised_and_mixed_case_is_an_error() -> None:
    (spec,) = load_specs(one(method="post", data="x"))
    assert spec.method == "POST"
    (message,) = errors_of(one(method="Post", data="x"))
    assert "`method` (Post) is not recognized" in message


@pytest.mark.parametrize("name", ["bad-name", "1st", "", "a b", None, 5, "s\n"])
def test_stream_names_must_make_good_table_names(name: t.Any) -> None:
    (message,) = errors_of({"streams": [{"name": name, "url": "http://h/"}]})
    assert message.startswith("streams[0].name: ")
    assert "letters, digits and `_`" in message


def test_duplicate_names_are_an_error_naming_both() -> None:
    messages = errors_of(
        {"streams": [{"name": "a", "url": "http://h/1"}, {"name": "a", "url": "http://h/2"}]}
    )
    assert messages == [
        'streams[1].name: stream name "a" is already used by streams[0]; names must be unique.'
    ]


def test_missing_required_and_many_problems_reported_together() -> None:
    messages = errors_of(
        {"streams": [{"url": "http://h/"}, {"name": "b"}, {"name": "c", "url": "h", "timeout": -2}]}
    )
    assert messages[0].startswith("streams[0].name: `name` is required.")
    assert messages[1].startswith("streams[1].url: `url` is required.")
    assert messages[2].startswith("streams[2].timeout")


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({}, "`streams` should be a non-empty list"),
        ({"streams": []}, "`streams` should be a non-empty list"),
        ({"streams": [1]}, "streams[0]: a stream spec should be an object"),
        (
            {"streams": [{"name": "a", "url": "h"}], "defaults": {"name": "x"}},
            "defaults.name: `name` cannot be set in `defaults`.",
        ),
        (
            {"streams": [{"name": "a", "url": "h"}], "defaults": {"timout": 1}},
            "Did you mean `timeout`?",
        ),
    ],
)
def test_top_level_shape(config: dict[str, t.Any], fragment: str) -> None:
    messages = errors_of(config)
    assert any(fragment in m for m in messages), messages


def test_secret_values_are_not_quoted_in_auth_errors() -> None:
    (message,) = errors_of(one(auth={"type": "bearer", "token": 12345}))
    assert "12345" not in message


def test_secrets_must_be_an_object_of_strings() -> None:
    messages = errors_of({"secrets": {"a": 1}, "streams": [{"name": "s", "url": "http://h/"}]})
    assert messages == ["secrets: `secrets` should be an object of strings (name -> secret value)."]


def test_decimal_numbers_from_a_config_file_are_numbers() -> None:
    from decimal import Decimal

    (spec,) = load_specs(
        one(
            timeout=Decimal("2.5"),
            params={"f": Decimal("0.1"), "n": Decimal("3")},
            backoff_base=Decimal("0.5"),
        )
    )
    assert spec.timeout == 2.5
    assert dict(spec.params) == {"f": 0.1, "n": 3}
    assert spec.backoff_base == 0.5
    # `3e0` in a file arrives as Decimal("3"): a number, but not an integer, for the SDK's
    # schema check as for ours (a request is never made for a config the SDK rejects).
    with pytest.raises(ConfigErrors, match="`reattempts` should be an integer"):
        load_specs(one(reattempts=Decimal("3")))


def test_decimal_config_through_the_cli(server: t.Any, cli: t.Any) -> None:
    done = cli(
        {
            "streams": [
                {"name": "s", "url": server.url + "/records?n=1", "timeout": 2.5, "rate_limit": 0.5}
            ]
        }
    )
    assert done.code == 0, done.stderr
