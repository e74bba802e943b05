"""JSON request bodies given as objects, templates inside them, literal `}}`, repeated params."""

from __future__ import annotations

import json
import typing as t

import pytest

from tap_rhttp.config.load import load_specs
from tap_rhttp.config.templates import compile_string
from tap_rhttp.errors import ConfigError, ConfigErrors, PaginationError
from tap_rhttp.http.urls import encode_pairs, merge_query

if t.TYPE_CHECKING:
    from server import LocalServer


def echoes(sync: t.Any, server: LocalServer, **spec: t.Any) -> list[dict[str, t.Any]]:
    spec.setdefault("reattempts", 1)
    config = {"streams": [{"name": "s", "url": server.url + "/echo", **spec}]}
    return t.cast("list[dict[str, t.Any]]", sync(config).records("s"))


def config_errors(**spec: t.Any) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        load_specs({"streams": [{"name": "s", "url": "http://127.0.0.1:1/", **spec}]})
    return [str(e) for e in info.value.errors]


# ------------------------------------------------------------------ JSON bodies


def test_json_option_sends_any_value_as_compact_json_on_post(
    server: LocalServer, sync: t.Any
) -> None:
    body = {"query": "{ items { id } }", "variables": {"first": 2, "tags": ["a"], "x": None}}
    (record,) = echoes(sync, server, method="POST", json=body)
    assert record["method"] == "POST"
    assert record["headers"]["Content-Type"] == "application/json"
    assert record["body"] == json.dumps(body, separators=(",", ":"))


def test_data_object_under_a_json_content_type_is_sent_as_json(
    server: LocalServer, sync: t.Any
) -> None:
    data = {"selector": {"type": {"$eq": "order"}}, "limit": 2}
    (record,) = echoes(
        sync,
        server,
        method="POST",
        data=data,
        header={"Content-Type": "application/json; charset=utf-8"},
    )
    assert json.loads(record["body"]) == data
    assert record["headers"]["Content-Type"] == "application/json; charset=utf-8"
    # without the header, a POST object stays r.http's form body (flat values only)
    (form,) = echoes(sync, server, method="POST", data={"a": 1, "b": "x y"})
    assert form["body"] == "a=1&b=x%20y"


def test_templates_inside_a_json_body_keep_their_types(server: LocalServer, sync: t.Any) -> None:
    found = echoes(
        sync,
        server,
        method="POST",
        for_each=[{"id": 7, "tags": ["a", "b"]}, {"id": 8, "tags": []}],
        json={
            "id": "{{ item['id'] }}",
            "tags": "{{ item['tags'] }}",
            "label": "item {{ item['id'] }}",
            "nested": {"first": "{{ item['id'] * 10 }}", "null": "{{ None }}"},
        },
    )
    assert [json.loads(r["body"]) for r in found] == [
        {"id": 7, "tags": ["a", "b"], "label": "item 7", "nested": {"first": 70, "null": None}},
        {"id": 8, "tags": [], "label": "item 8", "nested": {"first": 80, "null": None}},
    ]


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        (
            {"method": "POST", "data": "x", "json": {"a": 1}},
            "streams[0].json: give either `data` or `json`, not both",
        ),
        ({"json": {"a": 1}}, "streams[0].json: `json` should only be specified on a PUT, POST"),
        (
            {"method": "POST", "data": {"a": {"b": 1}}},
            "for a JSON body give `json`, or a `Content-Type: application/json` header",
        ),
    ],
)
def test_json_body_config_errors(spec: dict[str, t.Any], fragment: str) -> None:
    assert any(fragment in message for message in config_errors(**spec))


# ------------------------------------------------------------------ literal `}}`


def test_a_json_string_body_with_nested_objects_and_a_placeholder(
    server: LocalServer, sync: t.Any
) -> None:
    data = '{"query": {"term": {"user": "{{ item }}"}}, "size": {"max": {"n": 2}}}'
    found = echoes(sync, server, method="PUT", for_each=["kim"], data=data)
    assert json.loads(found[0]["body"]) == {
        "query": {"term": {"user": "kim"}},
        "size": {"max": {"n": 2}},
    }


@pytest.mark.parametrize(
    ("source", "rendered"),
    [
        ('{"a": {"b": "{{ item }}"}}', '{"a": {"b": "x"}}'),
        ("}} {{ item }} }}", "}} x }}"),
        ("{{ {'k': {'n': 1}}['k']['n'] }}", 1),
        ("{{ '}}' }}", "}}"),
        ("{{ '{{' }} literal", "{{ literal"),
        ("a{{ item }}{{ item }}b", "axxb"),
    ],
)
def test_placeholders_close_at_the_first_balanced_double_brace(
    source: str, rendered: t.Any
) -> None:
    compiled = compile_string(source, path="p", names=("item",))
    assert not isinstance(compiled, str)
    assert compiled.render({"item": "x"}) == rendered


def test_an_unclosed_placeholder_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"a `\{\{` at character 3 is never closed"):
        compile_string("x {{ item }", path="p", names=("item",))


# ------------------------------------------------------------------ repeated params


def test_a_list_sends_a_key_once_per_value_in_order() -> None:
    assert encode_pairs({"fields": ["b", "a b", 3], "z": None, "e": []}) == [
        "fields=b",
        "fields=a%20b",
        "fields=3",
        "z=",
    ]
    assert merge_query("http://h/p?fields=x&k=1", {"fields": ["a", "b"]}, ("fields",)) == (
        "http://h/p?k=1&fields=a&fields=b"
    )


def test_list_params_go_out_repeated(server: LocalServer, sync: t.Any) -> None:
    (record,) = echoes(sync, server, params={"fields": ["id", "name", "a&b"], "n": 2})
    assert record["query"] == "fields=id&fields=name&fields=a%26b&n=2"
    assert record["args"] == {"fields": ["id", "name", "a&b"], "n": ["2"]}


def test_list_params_take_templates(server: LocalServer, sync: t.Any) -> None:
    found = echoes(sync, server, for_each=["x"], params={"f": ["{{ item }}", "{{ 2 }}"]})
    assert found[0]["query"] == "f=x&f=2"


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"f": [["a"]]}, "streams[0].params.f[0]: `params` values should be numbers, strings"),
        ({"f": [{"a": 1}]}, "streams[0].params.f[0]"),
        (
            {"f": {"a": 1}},
            "A list of them sends the key once per value.",
        ),
    ],
)
def test_list_params_hold_scalars_only(params: dict[str, t.Any], fragment: str) -> None:
    assert any(fragment in message for message in config_errors(params=params))


def test_page_sees_and_returns_list_params(server: LocalServer, sync: t.Any) -> None:
    config = {
        "streams": [
            {
                "name": "s",
                "url": server.url + "/echo",
                "params": {"ids": [1, 2]},
                "page": "r.branch(info['params']['ids'].count() < 4, "
                "{'params': {'ids': info['params']['ids'].append(info['params']['ids'].count() + 1)}}"
                ", None)",
                "page_limit": 5,
            }
        ]
    }
    found = sync(config).records("s")
    assert [r["query"] for r in found] == [
        "ids=1&ids=2",
        "ids=1&ids=2&ids=3",
        "ids=1&ids=2&ids=3&ids=4",
    ]


def test_page_returning_a_nested_list_param_is_an_error(server: LocalServer, sync: t.Any) -> None:
    config = {
        "streams": [
            {
                "name": "s",
                "url": server.url + "/echo",
                "page": "{'params': {'ids': [[1]]}}",
                "page_limit": 5,
            }
        ]
    }
    with pytest.raises(
        PaginationError,
        match=r"Expected `params.ids\[0\]` to be a NUMBER, STRING or NULL, but found ARRAY",
    ):
        sync(config)
