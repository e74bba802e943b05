"""Schema inference: stable, target-friendly, nothing silently dropped."""

from __future__ import annotations

import dataclasses
import json
import typing as t

import pytest
from server import Reply, json_reply

from tap_rhttp.config.load import load_specs
from tap_rhttp.errors import ConfigErrors
from tap_rhttp.paging.paginator import Paginator
from tap_rhttp.run.context import RunContext
from tap_rhttp.schema.infer import infer_schema, null_only_fields, prepare_declared_schema
from tap_rhttp.tap import TapRHTTP


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


def test_a_null_only_field_is_left_open_not_typed() -> None:
    """No column for it yet (never a null-only type, never a guessed string): the drift
    policy types it when a value arrives; `additionalProperties` keeps it emitted."""
    schema = infer_schema([{"a": None, "b": 1}, {"a": None, "b": 2}])
    assert schema["properties"] == {"b": {"type": ["integer", "null"]}}
    assert schema["additionalProperties"] is True
    assert null_only_fields([{"a": None, "b": 1}, {"b": None}, {"b": 3}]) == ["a"]
    nested = infer_schema([{"o": {"x": None, "y": 1}}])["properties"]["o"]
    assert nested["properties"] == {"y": {"type": ["integer", "null"]}}


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


# ------------------------------------------------------------------ discovery's sample


def _paged(server: t.Any, path: str, pages: list[list[dict[str, t.Any]]]) -> None:
    """`path?page=N` serves pages[N-1], with a Link rel="next" while there are more."""

    @server.route(path)
    def handler(request: t.Any) -> t.Any:
        page = int(request.args.get("page", "1"))
        headers = []
        if page < len(pages):
            headers.append(("Link", f'<{path}?page={page + 1}>; rel="next"'))
        return json_reply(pages[page - 1], headers=headers)


def _linked(server: t.Any, path: str, **spec: t.Any) -> dict[str, t.Any]:
    return {
        "streams": [
            {"name": "s", "url": server.url + path, "page": "link-next", "page_limit": -1, **spec}
        ]
    }


def test_discovery_samples_three_pages_and_the_sync_reuses_them(server: t.Any, sync: t.Any) -> None:
    pages: list[list[dict[str, t.Any]]] = [
        [{"id": 1, "amount": 10}],
        [{"id": 2, "amount": 2.5}],
        [{"id": 3}],
        [{"id": 4}],
    ]
    _paged(server, "/sampled", pages)
    result = sync(_linked(server, "/sampled"))
    # page 2's float is in the default sample (3 pages): the column is a number from the start
    assert result.schema("s")["properties"]["amount"] == {"type": ["number", "null"]}
    assert [r["id"] for r in result.records("s")] == [1, 2, 3, 4]
    # every page requested exactly once: the sync took the sampled pages, in order
    assert [r.target for r in server.log] == ["/sampled"] + [
        f"/sampled?page={n}" for n in (2, 3, 4)
    ]


def test_schema_sample_pages_and_records_bound_the_sample(server: t.Any, sync: t.Any) -> None:
    pages: list[list[dict[str, t.Any]]] = [
        [{"id": i, "a": 1}, {"id": i + 10, "a": 1}] for i in range(1, 6)
    ]
    pages[2][0]["a"] = 1.5  # page 3
    _paged(server, "/bounded", pages)

    one = sync(_linked(server, "/bounded", schema_sample={"pages": 1}))
    assert one.schema("s")["properties"]["a"] == {"type": ["integer", "null"]}
    server.log.clear()
    few = sync(_linked(server, "/bounded", schema_sample={"records": 3}))
    assert few.schema("s")["properties"]["a"] == {"type": ["integer", "null"]}  # 2 pages
    server.log.clear()
    many = sync(_linked(server, "/bounded", schema_sample={"pages": 10, "records": 5}))
    assert many.schema("s")["properties"]["a"] == {"type": ["number", "null"]}  # 3 pages
    assert len(server.log) == 5  # still each page once
    assert len(many.records("s")) == 10


def test_a_fan_out_samples_its_first_chains(server: t.Any, sync: t.Any) -> None:
    server.route("/item/")(
        lambda request: json_reply([{"item": request.path, "v": 1 if "1" in request.path else "x"}])
    )
    config = {
        "streams": [{"name": "s", "url": server.url + "/item/{{ item }}", "for_each": [1, 2, 3, 4]}]
    }
    result = sync(config)
    assert len(result.records("s")) == 4
    assert sorted(r.target for r in server.log) == ["/item/1", "/item/2", "/item/3", "/item/4"]
    assert result.schema("s")["properties"]["v"]["type"] in (
        ["integer", "null"],
        ["string", "null"],
    )


@pytest.mark.parametrize("concurrency", [1, 4])
def test_concurrent_chains_are_sampled_by_their_first_pages(
    server: t.Any, sync: t.Any, concurrency: int
) -> None:
    """One chain after another, the sample follows the first chain's pages; chains that
    run at once give their first pages, fetched together. Either way the sync then takes
    every sampled page instead of fetching it again."""
    for value in (1, 2, 3, 4):
        _paged(
            server, f"/v{value}", [[{"id": value * 10 + n, f"c{value}p{n}": n}] for n in (1, 2, 3)]
        )
    config = {
        "streams": [
            {
                "name": "s",
                "url": server.url + "/v{{ item }}",
                "for_each": [1, 2, 3, 4],
                "page": "link-next",
                "page_limit": -1,
                "max_concurrency": concurrency,
            }
        ]
    }
    stream = RunContext(config).stream("s")
    sampled = stream.sample(bookmark=None, parent_rows=[])
    fields = sorted(key for record in sampled for key in record if key != "id")
    if concurrency == 1:
        assert fields == ["c1p1", "c1p2", "c1p3"]
        assert [r.target for r in server.log] == ["/v1", "/v1?page=2", "/v1?page=3"]
    else:
        assert fields == ["c1p1", "c2p1", "c3p1"]
        assert sorted(r.target for r in server.log) == ["/v1", "/v2", "/v3"]
    assert len(stream.prefetched) == 3
    server.log.clear()
    result = sync(config)  # discovery samples anew, and the sync takes those pages
    assert sorted(r["id"] for r in result.records("s")) == [
        value * 10 + n for value in (1, 2, 3, 4) for n in (1, 2, 3)
    ]
    targets = [r.target for r in server.log]
    assert len(targets) == len(set(targets)) == 12  # every page once
    assert set(fields) <= set(result.schema("s")["properties"])


def test_a_failure_after_the_first_sampled_page_ends_the_sample_not_discovery(
    server: t.Any, cli: t.Any
) -> None:
    @server.route("/flaky-later")
    def flaky(request: t.Any) -> t.Any:
        page = int(request.args.get("page", "1"))
        if page == 2:
            return Reply(500, "later", (), "text/plain")
        return json_reply([{"id": page}], headers=[("Link", '</flaky-later?page=2>; rel="next"')])

    config = _linked(server, "/flaky-later", reattempts=1)
    done = cli(config, "--discover")
    assert done.code == 0, done.stderr
    assert "sampling for the schema stopped after 1 page(s)" in done.stderr
    assert json.loads(done.stdout)["streams"][0]["schema"]["properties"]["id"]


def test_a_sampled_page_is_used_once_and_in_order(server: t.Any) -> None:
    """A chain takes the sample of its first request; once it goes elsewhere, the rest is
    dropped (a later sampled page is never used out of order)."""
    _paged(server, "/ordered", [[{"id": n}] for n in range(1, 5)])
    config = _linked(server, "/ordered")
    context = RunContext(config)
    stream = context.stream("s")
    assert [r["id"] for r in stream.sample(bookmark=None, parent_rows=[])] == [1, 2, 3]
    assert len(stream.prefetched) == 3
    assert len(server.log) == 3
    (task,) = stream.tasks()
    assert task.spec is not None
    chain = stream.make_chain(task.spec, read_ahead=False)
    first = Paginator(task.spec, context.redactor).first()
    assert first is not None
    try:
        fetched, _ = chain.get(first)
        assert fetched.records == [{"id": 1}]
        assert len(server.log) == 3  # from the sample
        elsewhere = dataclasses.replace(first, url=server.url + "/ordered?page=4")
        assert chain.get(elsewhere)[0].records == [{"id": 4}]  # fetched
        third = dataclasses.replace(first, url=server.url + "/ordered?page=3")
        assert chain.get(third)[0].records == [{"id": 3}]
        assert len(server.log) == 5  # page 3 fetched again: the sample was dropped
        assert chain.get(first)[0].records == [{"id": 1}]
        assert len(server.log) == 6  # and page 1 is not served twice from it
    finally:
        chain.close()
    assert len(stream.prefetched) == 0


def test_sampled_pages_a_resumed_sync_never_asks_for_are_dropped(server: t.Any) -> None:
    _paged(server, "/unclaimed", [[{"id": n}] for n in range(1, 5)])
    context = RunContext(_linked(server, "/unclaimed"))
    stream = context.stream("s")
    stream.sample(bookmark=None, parent_rows=[])
    assert len(stream.prefetched) == 3
    stream.prefetched.clear()
    assert len(stream.prefetched) == 0
    (task,) = stream.tasks()
    assert task.spec is not None
    chain = stream.make_chain(task.spec, read_ahead=False)
    try:
        first = Paginator(task.spec, context.redactor).first()
        assert first is not None
        chain.get(first)
    finally:
        chain.close()
    assert len(server.log) == 4  # fetched again: nothing was left to take


# ------------------------------------------------------------------ schema_overrides


def test_overrides_fix_some_fields_and_inference_types_the_rest(server: t.Any, sync: t.Any) -> None:
    @server.route("/overridden")
    def rows(request: t.Any) -> t.Any:
        return json_reply(
            [
                {"id": 1, "parent_id": None, "name": "a", "score": 1, "extra": [1], "u": "1"},
                {"id": 2, "parent_id": None, "name": "b", "score": 2, "extra": [], "u": "2"},
            ]
        )

    config = {
        "streams": [
            {
                "name": "s",
                "url": server.url + "/overridden",
                "primary_keys": ["id"],
                "replication_key": "u",
                "schema_overrides": {
                    "parent_id": {"type": ["integer", "null"]},
                    "score": {"type": ["number", "null"]},
                    "u": {"type": ["string", "null"], "maxLength": 10},
                },
            }
        ]
    }
    result = sync(config)
    props = result.schema("s")["properties"]
    assert props["parent_id"] == {"type": ["integer", "null"]}  # null-only: typed by the user
    assert props["score"] == {"type": ["number", "null"]}  # instead of the inferred integer
    assert props["u"] == {"type": ["string", "null"], "maxLength": 10}
    assert props["id"] == {"type": ["integer", "null"]}  # the rest is inferred
    assert props["name"] == {"type": ["string", "null"]}
    assert props["extra"] == {"type": ["array", "null"], "items": {"type": ["integer", "null"]}}
    assert len(result.records("s")) == 2


def test_a_declared_schema_may_take_its_keys_from_the_overrides(sync: t.Any) -> None:
    spec = {
        "name": "s",
        "url": "http://127.0.0.1:9/never",
        "primary_keys": ["id"],
        "schema": {"properties": {"name": {"type": "string"}}},
        "schema_overrides": {"id": {"type": "integer"}},
    }
    tap_streams = TapRHTTP(config={"streams": [spec]}, parse_env_config=False).streams
    assert tap_streams["s"].schema["properties"] == {
        "id": {"type": "integer"},
        "name": {"type": "string"},
    }


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([1], "`schema_overrides` should be an object of field -> JSON Schema (got [1])."),
        ({"a": 1}, "`schema_overrides.a` should be a JSON Schema object (got 1)."),
    ],
)
def test_overrides_are_checked(value: t.Any, message: str) -> None:
    with pytest.raises(ConfigErrors) as info:
        load_specs({"streams": [{"name": "s", "url": "http://h/x", "schema_overrides": value}]})
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"pages": 0}, "`schema_sample.pages` should be an integer of at least 1 (got 0)."),
        ({"rows": 5}, "`rows` is not an option of `schema_sample`."),
        ("3", '`schema_sample` should be an object (got "3").'),
    ],
)
def test_schema_sample_is_checked(value: t.Any, message: str) -> None:
    with pytest.raises(ConfigErrors) as info:
        load_specs({"streams": [{"name": "s", "url": "http://h/x", "schema_sample": value}]})
    assert message in str(info.value)


def test_schema_drift_is_checked() -> None:
    with pytest.raises(ConfigErrors) as info:
        load_specs({"streams": [{"name": "s", "url": "http://h/x", "schema_drift": "ignore"}]})
    assert '`schema_drift` "ignore" is not recognized. Allowed: `evolve`, `fail`.' in str(
        info.value
    )
