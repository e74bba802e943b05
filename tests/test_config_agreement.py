"""Every config `load_specs` accepts also passes singer-sdk's JSON Schema validation.

The tap validates config twice: first with its own checks (`load_specs`, whose messages
name the option the way r.http does), then singer-sdk validates the same config against
the tap's JSON Schema (plus the SDK's built-in settings). A user should meet one set of
errors, worded one way: the second check must never reject what the first one accepted,
and the first must fail only with config errors. These tests check that over a corpus
generated from the option table: every option with probe values of every JSON type (and the `Decimal` numbers
singer-sdk parses config files into), in a stream and in `defaults`, with the companion
options some need, plus odd `streams`, `secrets`, `defaults` and unknown top-level keys.
"""

from __future__ import annotations

import copy
import decimal
import functools
import json
import reprlib
import typing as t

from singer_sdk.typing import DEFAULT_JSONSCHEMA_VALIDATOR, extend_validator_with_defaults

from tap_rhttp.config.jsonschema import config_schema
from tap_rhttp.config.load import load_specs
from tap_rhttp.config.options import ALIASES, NOT_IN_DEFAULTS, OPTIONS
from tap_rhttp.errors import ConfigErrors
from tap_rhttp.tap import TapRHTTP

URL = "http://127.0.0.1:9/x"
D = decimal.Decimal

#: Values of every JSON type and their edges, tried at every option.
PROBES: tuple[t.Any, ...] = (
    None,
    True,
    False,
    0,
    1,
    -1,
    -2,
    3,
    2.5,
    0.0,
    -0.5,
    1e300,
    2**64,
    10**30,
    10**400,  # a JSON integer literal too large for a float
    # singer-sdk reads config files with parse_float=Decimal: `2.5` and `3e0` arrive so
    D("2.5"),
    D("0.0"),
    D("-0.5"),
    D("3"),
    D("1"),
    D("1E+400"),
    "",
    " ",
    "x",
    "s",
    "users",
    "GET",
    "get",
    "Get",
    "post",
    "POST",
    "Post",
    "json",
    "auto",
    "text",
    "skip",
    "fail",
    "header",
    "link-next",
    "info['body']['next'].default(None)",
    "info[",
    "$.items[*]",
    "$[",
    "http://127.0.0.1:9/y",
    "https://127.0.0.1:9/y",
    "127.0.0.1:9/y",
    "ftp://127.0.0.1/y",
    "http://127.0.0.1:9/{{ config.x }}",
    "{{ config.x }}",
    "X-A: b",
    "s\n",
    [],
    [1],
    [D("1.5")],
    ["a"],
    ["a", "b"],
    ["a", "a"],
    [""],
    ["X-A: b"],
    [{"a": 1}],
    [None],
    [[1]],
    {},
    {"a": 1},
    {"a": D("2.5")},
    {"a": 2.5},
    {"a": "b"},
    {"a": None},
    {"a": True},
    {"a": []},
    {"a": {}},
    {"a": {"b": 1}},
    {"a": {"b": {"c": [1, "x", None]}}},
    {"X-A": "b"},
    {"X-A": 1},
    {"X-A": D("1.5")},
    {"id": "user_id"},
    {"properties": {}},
    {"properties": {"id": {"type": "integer"}}},
    {"properties": None},
    {"type": "basic", "user": "u", "pass": "p"},
    {"user": "u", "pass": ""},
    {"type": "digest", "user": "u", "pass": "p"},
    {"type": "bearer", "token": "t"},
    {"type": "api_key", "name": "X-Key", "value": "v"},
    {"type": "api_key", "name": "key", "value": "v", "in": "query"},
    {"type": "api_key", "name": "X-Key", "value": "v", "in": "cookie"},
    {"type": "oauth"},
    {
        "type": "oauth2",
        "token_url": "https://127.0.0.1:9/t",
        "client_id": "c",
        "client_secret": "s",
    },
    {
        "type": "oauth2",
        "grant": "refresh_token",
        "token_url": "https://127.0.0.1:9/t",
        "client_id": "c",
        "refresh_token": "r",
        "scopes": "a b",
        "extra": {"k": 1, "j": D("2.5")},
        "client_auth": "body",
        "token_cache": "/tmp/t.json",
    },
    {"type": "oauth2", "token_url": "https://127.0.0.1:9/t", "client_id": "c", "scopes": [1]},
)

#: Options that need others to be accepted: the companions go next to them.
COMPANIONS: dict[str, tuple[dict[str, t.Any], ...]] = {
    "page": ({"page_limit": 5}, {"page_limit": -1}),
    "page_limit": ({"page": "link-next"},),
    "start_value": ({"replication_key": "updated_at"},),
    "parent_keys": ({"parent": "users"},),
    "data": (
        {"method": "POST"},
        {"method": "PUT"},
        {"method": "delete"},
        {"method": "POST", "header": {"Content-Type": "application/json"}},
    ),
    "json": ({"method": "POST"}, {"method": "PATCH"}),
    "replication_key": ({"schema": {"properties": {"x": {}, "updated_at": {}}}},),
    "primary_keys": ({"schema": {"properties": {"a": {}, "b": {}, "id": {}}}},),
    "schema": ({"primary_keys": ["id"]},),
    "backoff_base": ({"backoff_max": 1e300},),
    "backoff_max": ({"backoff_base": D("0.001")},),
    "method": ({"data": "body"}, {"data": {"a": 1}}),
    "client_key": ({"client_cert": "/etc/c.pem"},),
    "client_key_password": ({"client_cert": "/etc/c.pem"},),
}

#: A second stream, so that `parent` can name one.
USERS = {"name": "users", "url": "http://127.0.0.1:9/users"}


@functools.cache
def _examples() -> dict[str, list[t.Any]]:
    """Each option's README example value, as plain JSON and as singer-sdk reads it."""
    out: dict[str, list[t.Any]] = {}
    for name, option in OPTIONS.items():
        if not option.example:
            continue
        text = "{" + option.example + "}"
        out[name] = [json.loads(text)[name], json.loads(text, parse_float=decimal.Decimal)[name]]
    return out


def _values(option: str) -> list[t.Any]:
    values = list(PROBES)
    values += _examples().get(ALIASES.get(option, option), [])
    return values


Config = dict[str, t.Any]


class Case(t.NamedTuple):
    where: str  # "stream", "defaults" or "top"
    key: str  # the option (or top-level key) probed
    value: t.Any  # the probe value
    config: Config


def _stream_cases(option: str, value: t.Any) -> t.Iterator[Case]:
    extras: tuple[dict[str, t.Any], ...] = ({}, *COMPANIONS.get(option, ()))
    for extra in extras:
        stream = {"name": "s", "url": URL, **extra, option: value}
        yield Case("stream", option, value, {"streams": [stream, USERS]})
        if option not in ("name", "url"):
            yield Case("stream", option, value, {"streams": [stream]})
        if option in NOT_IN_DEFAULTS:
            continue
        plain = {"name": "s", "url": URL}
        for streams, defaults in (
            ([plain], {**extra, option: value}),
            ([plain, USERS], {**extra, option: value}),
            # the companions in the stream, the probed option in `defaults`
            ([{**plain, **extra}], {option: value}),
            ([{**plain, **extra}, USERS], {option: value}),
        ):
            yield Case("defaults", option, value, {"streams": streams, "defaults": defaults})


def _top_level_cases() -> t.Iterator[Case]:
    base = [{"name": "s", "url": URL}]
    templated = [{"name": "s", "url": "http://127.0.0.1:9/{{ config.x }}"}]
    for value in PROBES:
        yield Case("top", "secrets", value, {"streams": base, "secrets": value})
        yield Case("top", "secrets", value, {"streams": base, "secrets": {"a": value}})
        yield Case("top", "defaults", value, {"streams": base, "defaults": value})
        yield Case("top", "streams", value, {"streams": value})
        yield Case("top", "streams", value, {"streams": [value]})
        yield Case("top", "streams", value, {"streams": [*base, value]})
        yield Case("top", "unknown", value, {"streams": base, "x": value})
        yield Case("top", "unknown", value, {"streams": templated, "x": value})
    odd: list[tuple[str, Config]] = [
        ("secrets", {"streams": base, "secrets": {"a": "b", "c": ""}}),
        ("streams", {"streams": [*base, {"name": "t", "url": URL}]}),
        ("streams", {"streams": [*base, *base]}),
        ("streams", {"streams": [{"name": "s"}]}),
        ("streams", {"streams": [{"url": URL}]}),
        ("streams", {"streams": [{}]}),
        ("streams", {"streams": [{**base[0], "bogus": 1}]}),
        ("streams", {"streams": [{**base[0], "attempts": 2, "reattempts": 2}]}),
        ("unknown", {"streams": base, "api_host": "127.0.0.1", "n": D("2.5"), "m": None}),
        ("defaults", {"streams": base, "defaults": {"name": "s"}}),
        ("defaults", {"streams": base, "defaults": {"bogus": 1}}),
        ("defaults", {"streams": base, "defaults": {"attempts": 2, "reattempts": 2}}),
    ]
    for key, config in odd:
        yield Case("top", key, config.get(key, "api_host"), config)


@functools.cache
def corpus() -> tuple[Case, ...]:
    """Every generated config once (first occurrence wins)."""
    seen: set[str] = set()
    cases: list[Case] = []

    def gen() -> t.Iterator[Case]:
        for option in [*OPTIONS, *ALIASES]:
            for value in _values(option):
                yield from _stream_cases(option, value)
        yield from _top_level_cases()

    for case in gen():
        key = repr(case.config)  # repr keeps Decimal apart from float, 1 apart from True
        if key not in seen:
            seen.add(key)
            cases.append(case)
    return tuple(cases)


def fresh(value: t.Any) -> t.Any:
    """A copy of a JSON value (faster than `copy.deepcopy`): neither validator may see
    what the other did to a config, nor change the shared corpus."""
    if isinstance(value, dict):
        return {k: fresh(v) for k, v in value.items()}
    if isinstance(value, list):
        return [fresh(v) for v in value]
    return value


@functools.cache
def sdk_validator() -> t.Any:
    """The validator singer-sdk uses, on the tap's schema plus its built-in settings."""
    schema = copy.deepcopy(TapRHTTP.config_jsonschema)
    TapRHTTP.append_builtin_config(schema)
    return extend_validator_with_defaults(DEFAULT_JSONSCHEMA_VALIDATOR)(schema)


def sdk_errors(config: Config) -> list[str]:
    """singer-sdk's complaints about `config`, as `PluginBase._validate_config` finds them."""
    instance = fresh(config)  # the validator fills in `default`s in place
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in sdk_validator().iter_errors(instance)
    ]


_SHORT = reprlib.Repr()
_SHORT.maxlevel = _SHORT.maxdict = _SHORT.maxlist = 50
_SHORT.maxstring = _SHORT.maxother = 200
_SHORT.maxlong = 40


def show(config: Config) -> str:
    """`repr` of a config (Decimals stay visible), with huge integers cut short."""
    return _SHORT.repr(config)


Outcome = t.Literal["accepted", "rejected", "crashed"]


@functools.cache
def outcomes() -> tuple[tuple[Case, Outcome, str], ...]:
    """`load_specs` on every corpus config: accepted, rejected (ConfigErrors) or crashed."""
    out: list[tuple[Case, Outcome, str]] = []
    for case in corpus():
        try:
            load_specs(fresh(case.config))
        except ConfigErrors as exc:
            out.append((case, "rejected", str(exc.errors[0])))
        except Exception as exc:
            out.append((case, "crashed", f"{type(exc).__name__}: {exc}"))
        else:
            out.append((case, "accepted", ""))
    return tuple(out)


#: In `defaults` these apply to every stream, so a non-null value is always rejected:
#: some stream must lack a parent, or the parent links form a cycle.
NEVER_IN_DEFAULTS = frozenset({"parent", "parent_keys"})
#: singer-sdk's built-in top-level settings (the SDK checks them itself, after load_specs);
#: the last test keeps this list equal to what the SDK appends to the tap's schema.
SDK_SETTINGS = frozenset(
    {
        "batch_config",
        "faker_config",
        "flattening_enabled",
        "flattening_max_depth",
        "flattening_max_key_length",
        "flattening_separator",
        "stream_map_config",
        "stream_maps",
    }
)


def test_sdk_accepts_every_config_load_specs_accepts() -> None:
    accepted = [case for case, outcome, _ in outcomes() if outcome == "accepted"]
    rejected = [case for case, outcome, _ in outcomes() if outcome == "rejected"]

    # The property is vacuous unless load_specs accepts plenty: a non-null value of every
    # option (and the alias) in a stream and in `defaults`, and of each top-level key.
    assert len(accepted) > 2000, (len(accepted), len(rejected))
    assert len(rejected) > 10000, (len(accepted), len(rejected))
    probed = {(case.where, case.key) for case in accepted if case.value is not None}
    for option in [*OPTIONS, *ALIASES]:
        assert ("stream", option) in probed, f"no stream config with `{option}` was accepted"
        if option not in NOT_IN_DEFAULTS | NEVER_IN_DEFAULTS:
            assert ("defaults", option) in probed, f"no `defaults.{option}` was accepted"
    for key in ("secrets", "defaults", "streams", "unknown"):
        assert ("top", key) in probed, f"no config probing top-level `{key}` was accepted"

    disagreements = []
    for case in accepted:
        assert not set(case.config) & SDK_SETTINGS  # load_specs ignores them; the SDK checks
        errors = sdk_errors(case.config)
        if errors:
            disagreements.append(
                f"[{case.where} {case.key}] {show(case.config)}\n    " + "\n    ".join(errors)
            )
    assert not disagreements, (
        f"{len(disagreements)} of {len(accepted)} configs accepted by load_specs are "
        "rejected by singer-sdk's JSON Schema validation:\n" + "\n".join(disagreements)
    )


def test_load_specs_fails_only_with_config_errors() -> None:
    """Any other exception escapes the tap's error reporting (and the early start)."""
    crashes = [
        f"[{case.where} {case.key}] {show(case.config)}\n    {message}"
        for case, outcome, message in outcomes()
        if outcome == "crashed"
    ]
    assert not crashes, f"{len(crashes)} configs crash load_specs:\n" + "\n".join(crashes)


def test_sdk_settings_are_the_builtin_settings_singer_sdk_appends() -> None:
    schema = copy.deepcopy(TapRHTTP.config_jsonschema)
    TapRHTTP.append_builtin_config(schema)
    appended = set(schema["properties"]) - set(config_schema()["properties"])
    assert appended == SDK_SETTINGS
    assert set(TapRHTTP.config_jsonschema["properties"]) - SDK_SETTINGS == set(
        config_schema()["properties"]
    )
