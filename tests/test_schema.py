"""Schema inference: stable, target-friendly, nothing silently dropped."""

from __future__ import annotations

import typing as t

from server import json_reply

from tap_rhttp.schema.infer import infer_schema, prepare_declared_schema


def test_inference_widens_and_types_everything() -> None:
    schema = infer_schema(
        [
            {
                "id": 1,
                "price": 1,
                "ok": True,
                "at": "2024-01-02T03:04:05Z",
                "tags": ["a"],
                "nested": {"x": 1},
                "maybe": None,
                "rows": [{"a": 1}],
            },
            {
                "id": 2,
                "price": 2.5,
                "ok": False,
                "at": "2024-01-02 03:04:05+02:00",
                "tags": [],
                "nested": {"x": 2, "y": "b"},
                "maybe": 3,
                "rows": [],
            },
            {"id": 3, "price": None, "ok": True, "at": "2024-02-01T00:00:00.123456+00:00"},
        ]
    )
    props = schema["properties"]
    # every field nullable: a later page may carry a null the first page did not
    assert props["id"] == {"type": ["integer", "null"]}
    assert props["price"] == {"type": ["number", "null"]}
    assert props["ok"] == {"type": ["boolean", "null"]}
    assert props["at"] == {"type": ["string", "null"], "format": "date-time"}
    assert props["tags"] == {"type": ["array", "null"], "items": {"type": ["string", "null"]}}
    assert props["nested"]["type"] == ["object", "null"]
    assert props["nested"]["additionalProperties"] is True
    assert set(props["nested"]["properties"]) == {"x", "y"}
    assert props["maybe"] == {"type": ["integer", "null"]}
    assert props["rows"]["items"]["type"] == ["object", "null"]
    assert schema["additionalProperties"] is True
    assert "required" not in schema


def test_null_only_field_is_never_null_typed() -> None:
    assert infer_schema([{"a": None}])["properties"]["a"] == {"type": ["string", "null"]}


def test_mixed_strings_are_not_date_times() -> None:
    props = infer_schema([{"a": "2024-01-01T00:00:00Z"}, {"a": "soon"}])["properties"]
    assert props["a"] == {"type": ["string", "null"]}


def test_a_date_time_with_a_trailing_newline_is_just_a_string() -> None:
    props = infer_schema([{"a": "2024-01-01T00:00:00Z\n"}])["properties"]
    assert props["a"] == {"type": ["string", "null"]}


def test_same_data_same_schema_regardless_of_order() -> None:
    rows: list[dict[str, t.Any]] = [{"b": 1, "a": "x"}, {"a": "y", "c": [1.5]}]
    assert infer_schema(rows) == infer_schema(list(reversed(rows)))
    assert list(infer_schema(rows)["properties"]) == ["a", "b", "c"]


def test_declared_schema_keeps_unknown_fields_unless_told() -> None:
    assert prepare_declared_schema({"properties": {}})["additionalProperties"] is True
    declared = {"properties": {}, "additionalProperties": False}
    assert prepare_declared_schema(declared)["additionalProperties"] is False


def test_fields_beyond_the_sample_still_reach_the_target(server: t.Any, sync: t.Any) -> None:
    @server.route("/growing")
    def growing(request: t.Any) -> t.Any:
        page = int(request.args.get("page", "1"))
        row: dict[str, t.Any] = {"id": page}
        if page == 2:
            row["late_field"] = "here"
        return json_reply([row])

    config = {
        "streams": [
            {
                "name": "s",
                "url": server.url + "/growing",
                "params": {"page": 1},
                "page": "{'params': {'page': info['params']['page'] + 1}}",
                "page_limit": 2,
            }
        ]
    }
    result = sync(config)
    assert result.records("s") == [{"id": 1}, {"id": 2, "late_field": "here"}]


def test_declared_schema_is_used_without_sampling(server: t.Any, sync: t.Any) -> None:
    config = {
        "streams": [
            {
                "name": "s",
                "url": server.url + "/records?n=2",
                "schema": {"properties": {"id": {"type": "integer"}, "name": {"type": "string"}}},
            }
        ]
    }
    result = sync(config)
    assert result.schema("s")["properties"] == {
        "id": {"type": "integer"},
        "name": {"type": "string"},
    }
    assert len(server.log) == 1  # no discovery request: the schema was declared


def test_discovery_sample_is_reused_by_the_sync(server: t.Any, sync: t.Any) -> None:
    result = sync({"streams": [{"name": "s", "url": server.url + "/records?n=2"}]})
    assert len(result.records("s")) == 2
    assert len(server.log) == 1


def test_catalog_override_wins(server: t.Any, sync: t.Any) -> None:
    config = {"streams": [{"name": "s", "url": server.url + "/records?n=2"}]}
    schema = {
        "type": "object",
        "properties": {"id": {"type": "number"}, "name": {"type": "string"}},
    }
    catalog = {
        "streams": [
            {
                "tap_stream_id": "s",
                "stream": "s",
                "schema": schema,
                "metadata": [{"breadcrumb": [], "metadata": {"selected": True}}],
            }
        ]
    }
    result = sync(config, catalog=catalog)
    assert result.schema("s")["properties"]["id"] == {"type": "number"}
    assert len(result.records("s")) == 2
