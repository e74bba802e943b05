"""The YAML `tap-rhttp init` and the cookbook print reads back as exactly the JSON it shows.

Parsed with PyYAML, the YAML 1.1 reader Meltano uses: page expressions, JSONPaths,
strings YAML would take for booleans or numbers, control characters, line breaks and the
code points a YAML reader refuses raw, and random JSON values built from all of them.
"""

from __future__ import annotations

import json
import random
import typing as t

import pytest
import yaml

from tap_rhttp.wizard.render import mentions_env_var, to_json, to_yaml

TRICKY = [
    "link-next",
    "info['body']['next'].default(None)",
    "r.branch(info['body'].count() == 0, None, {'params': {'page': info['params']['page'] + 1}})",
    "$.items[*]",
    "$['a b'][*]",
    '$["it\'s"][*]',
    "key: value",
    "- item",
    "# not a comment",
    "&anchor",
    "*alias",
    "!tag",
    "%directive",
    "@at",
    "`tick",
    "{flow}",
    "[flow]",
    "a, b",
    "?",
    "|",
    ">",
    "",
    " ",
    " leading and trailing ",
    "yes",
    "No",
    "ON",
    "off",
    "y",
    "n",
    "~",
    "null",
    "Null",
    "true",
    "False",
    "1",
    "-1",
    "0o17",
    "0x1F",
    "1_000",
    "1e3",
    "1.5",
    ".inf",
    ".NaN",
    "12:30:00",
    "2024-01-01",
    "2024-01-01T00:00:00Z",
    "line\nbreak",
    "tab\there",
    "cr\rhere",
    "nul\x00here",
    "bell\x07",
    "del\x7f",
    "nel\x85",
    "ls\u2028ps\u2029",
    "bom\ufeff",
    "nonchar\ufffe\uffff",
    'quote " double',
    "quote ' single",
    "both ' and \"",
    "back\\slash",
    "back\\slash and 'single'",
    "{{ secrets['token'] }}",
    "${DEMO_API_URL}/customers",
    "émoji 😀 中文",
]
NUMBERS = [0, -0.0, 1, -17, 2**53, 0.1, 1e-05, -2.5e-300, 1e20, 1.5e300, 123456789.125]


@pytest.mark.parametrize("text", TRICKY)
def test_strings_read_back_as_written(text: str) -> None:
    for value in (text, {"k": text}, [text], {text: 1} if text else {"": 1}):
        assert yaml.safe_load(to_yaml(value)) == value, to_yaml(value)


@pytest.mark.parametrize("number", NUMBERS)
def test_numbers_keep_their_type(number: float) -> None:
    loaded = yaml.safe_load(to_yaml({"n": number}))["n"]
    assert loaded == number
    assert type(loaded) is type(number)


def test_booleans_null_and_empty_containers() -> None:
    value: dict[str, t.Any] = {
        "t": True,
        "f": False,
        "z": None,
        "d": {},
        "l": [],
        "nested": [[], {}, [[1]]],
    }
    assert yaml.safe_load(to_yaml(value)) == value


def _random_json(rng: random.Random, depth: int) -> t.Any:
    kind = rng.randrange(7 if depth < 4 else 5)
    if kind == 0:
        return rng.choice(TRICKY)
    if kind == 1:
        return rng.choice(NUMBERS)
    if kind == 2:
        return rng.choice([True, False, None])
    if kind == 3:
        return "".join(
            rng.choice(["a", "'", '"', "\\", ":", " ", "\n", "#", "-", "é"])
            for _ in range(rng.randrange(6))
        )
    if kind == 4:
        return rng.randrange(-1000, 1000)
    if kind == 5:
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {
        rng.choice(TRICKY) + str(i): _random_json(rng, depth + 1) for i in range(rng.randrange(4))
    }


def test_random_json_values_read_back_as_written() -> None:
    rng = random.Random(20261202)
    for _ in range(400):
        value = _random_json(rng, 0)
        text = to_yaml(value)
        assert yaml.safe_load(text) == value, text
        assert json.loads(to_json(value)) == value


def test_every_string_is_quoted() -> None:
    """No plain scalar: a value pasted into meltano.yml is never read as syntax."""
    text = to_yaml({"page": "info['body']['next']", "rp": "$.items[*]", "name": "posts"})
    assert text == ("page: \"info['body']['next']\"\nrp: '$.items[*]'\nname: 'posts'\n")


def test_meltano_env_vars_are_noticed() -> None:
    assert mentions_env_var({"url": "${DEMO_API_URL}/x"})
    assert mentions_env_var(["$HOME"])
    assert not mentions_env_var({"records_path": "$.items[*]", "p": "$['a'][*]"})
