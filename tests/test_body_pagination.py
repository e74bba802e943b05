"""Pagination that moves the request body: GraphQL cursors, POST search with search_after.

The loopback endpoints page the way the real APIs do: a GraphQL-like endpoint that reads
``variables.after`` from a POSTed JSON body and answers ``pageInfo {hasNextPage
endCursor}``, and an Elasticsearch-like ``_search`` that takes ``search_after``. Each is
synced whole, and the GraphQL one is killed with SIGKILL mid-way and resumed from STATE.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import typing as t
from urllib.parse import parse_qs

import pytest
from server import Reply, json_reply
from tap_process import kill_when, states_with

from tap_rhttp.errors import PaginationError
from tap_rhttp.redact import MASK

if t.TYPE_CHECKING:
    from pathlib import Path

    from conftest import CliResult
    from server import LocalServer, Request

ITEMS = [{"id": i, "name": f"item {i}"} for i in range(1, 12)]
QUERY = (
    "query Items($first: Int!, $after: String) { items(first: $first, after: $after) "
    "{ nodes { id name } pageInfo { hasNextPage endCursor } } }"
)


def _cursor(index: int) -> str:
    return base64.b64encode(f"cursor:{index}".encode()).decode()


def _graphql(server: LocalServer, delay: float = 0.0) -> None:
    """POST /graphql: the `items` connection, `first` per page after the cursor `after`."""

    @server.route("/graphql")
    def graphql(request: Request) -> Reply:
        time.sleep(delay)
        if request.method != "POST" or not request.headers["Content-Type"].startswith(
            "application/json"
        ):
            return json_reply({"errors": [{"message": "POST JSON only"}]}, status=400)
        body = json.loads(request.body)
        if body.get("query") != QUERY:
            return json_reply({"errors": [{"message": "unknown query"}]}, status=400)
        variables = body["variables"]
        after = variables.get("after")
        start = 0 if after is None else int(base64.b64decode(after).decode().split(":")[1])
        nodes = ITEMS[start : start + variables["first"]]
        end = start + len(nodes)
        page_info = {"hasNextPage": end < len(ITEMS), "endCursor": _cursor(end) if nodes else None}
        return json_reply({"data": {"items": {"nodes": nodes, "pageInfo": page_info}}})


PAGE_INFO = "info['body']['data']['items']['pageInfo']"
GRAPHQL_PAGE = (
    f"r.branch({PAGE_INFO}['hasNextPage'], "
    f"{{'data': {{'variables': {{'after': {PAGE_INFO}['endCursor']}}}}}}, None)"
)


def graphql_config(server: LocalServer, **extra: t.Any) -> dict[str, t.Any]:
    return {
        "streams": [
            {
                "name": "items",
                "url": server.url + "/graphql",
                "method": "POST",
                "json": {"query": QUERY, "variables": {"first": 3, "after": None}},
                "records_path": "$.data.items.nodes[*]",
                "page": GRAPHQL_PAGE,
                "page_limit": -1,
                "primary_keys": ["id"],
                "schema": {"properties": {"id": {"type": "integer"}, "name": {"type": "string"}}},
                **extra,
            }
        ]
    }


def sent_bodies(server: LocalServer, path: str) -> list[t.Any]:
    return [json.loads(r.body) for r in server.requests_to(path)]


def test_graphql_cursors_page_through_the_body(server: LocalServer, sync: t.Any) -> None:
    _graphql(server)
    result = sync(graphql_config(server))
    assert [r["id"] for r in result.records("items")] == [item["id"] for item in ITEMS]
    bodies = sent_bodies(server, "/graphql")
    # 11 items, 3 a page: 4 requests; each merges `after` into `variables`, keeping `first`
    assert [b["variables"] for b in bodies] == [
        {"first": 3, "after": None},
        {"first": 3, "after": _cursor(3)},
        {"first": 3, "after": _cursor(6)},
        {"first": 3, "after": _cursor(9)},
    ]
    assert all(b["query"] == QUERY for b in bodies)
    # after each page, STATE held the next request's body (the cursor), then nothing
    positions = [
        m["value"]["bookmarks"]["items"]["rhttp"]["chains"]["-"]["data"]["variables"]["after"]
        for m in result.of_type("STATE")
        if "rhttp" in m["value"]["bookmarks"].get("items", {})
    ]
    assert positions == [_cursor(3), _cursor(6), _cursor(9)]
    assert "rhttp" not in result.of_type("STATE")[-1]["value"]["bookmarks"]["items"]


def _search(server: LocalServer) -> None:
    """POST /orders/_search: hits sorted by (ts, id), `size` a page, after `search_after`."""
    docs = [{"id": i, "ts": 1000 + i // 2} for i in range(1, 10)]

    @server.route("/orders/_search")
    def search(request: Request) -> Reply:
        body = json.loads(request.body)
        key = body.get("search_after")
        ordered = sorted(docs, key=lambda d: (d["ts"], d["id"]))
        after = [d for d in ordered if key is None or [d["ts"], d["id"]] > key]
        hits = [
            {"_id": str(d["id"]), "_source": d, "sort": [d["ts"], d["id"]]}
            for d in after[: body["size"]]
        ]
        return json_reply({"hits": {"total": {"value": len(docs)}, "hits": hits}})


SEARCH_PAGE = (
    "r.branch(info['body']['hits']['hits'].count() < info['data']['size'], None, "
    "{'data': {'search_after': info['body']['hits']['hits'].nth(-1)['sort']}})"
)


def test_search_after_pages_through_a_post_search(server: LocalServer, sync: t.Any) -> None:
    _search(server)
    config = {
        "streams": [
            {
                "name": "orders",
                "url": server.url + "/orders/_search",
                "method": "POST",
                "json": {
                    "size": 4,
                    "query": {"match_all": {}},
                    "sort": [{"ts": "asc"}, {"id": "asc"}],
                },
                "records_path": "$.hits.hits[*]._source",
                "page": SEARCH_PAGE,
                "page_limit": -1,
                "primary_keys": ["id"],
            }
        ]
    }
    result = sync(config)
    assert [r["id"] for r in result.records("orders")] == list(range(1, 10))
    bodies = sent_bodies(server, "/orders/_search")
    assert [b.get("search_after") for b in bodies] == [None, [1002, 4], [1004, 8]]
    assert all(b["sort"] == [{"ts": "asc"}, {"id": "asc"}] and b["size"] == 4 for b in bodies)


def test_a_form_body_moves_key_by_key(server: LocalServer, sync: t.Any) -> None:
    @server.route("/form-pages")
    def pages(request: Request) -> Reply:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        page = int(form["page"])
        return json_reply({"items": [{"id": page}], "more": page < 3})

    config = {
        "streams": [
            {
                "name": "s",
                "url": server.url + "/form-pages",
                "method": "POST",
                "data": {"page": 1, "kind": "a b"},
                "records_path": "$.items[*]",
                "page": "r.branch(info['body']['more'], "
                "{'data': {'page': info['data']['page'] + 1}}, None)",
                "page_limit": 10,
            }
        ]
    }
    assert [r["id"] for r in sync(config).records("s")] == [1, 2, 3]
    assert [r.body for r in server.requests_to("/form-pages")] == [
        b"kind=a%20b&page=1",
        b"kind=a%20b&page=2",
        b"kind=a%20b&page=3",
    ]


def _one_page_config(server: LocalServer, page: str, **body: t.Any) -> dict[str, t.Any]:
    @server.route("/one")
    def one(request: Request) -> Reply:
        return json_reply([{"id": len(server.requests_to("/one"))}])

    return {
        "streams": [
            {
                "name": "s",
                "url": server.url + "/one",
                "page": page,
                "page_limit": 5,
                "schema": {"properties": {"id": {"type": "integer"}}},
                **body,
            }
        ]
    }


@pytest.mark.parametrize(
    ("page", "body", "message"),
    [
        (
            "{'data': {'q': 1}}",
            {"method": "POST", "json": {"q": 1}},
            "led page 2 back to `http://127.0.0.1:PORT/one`, the same URL and body as page 1",
        ),
        (
            "{'data': {'q': 2}}",
            {},
            "`page` returned `data`, but this request has no body to merge it into",
        ),
        (
            "{'data': 'raw'}",
            {"method": "POST", "json": {"q": 1}},
            "Expected `data` to be an OBJECT (the request body is an OBJECT), but found STRING",
        ),
        (
            "{'data': {'q': 1}}",
            {"method": "PUT", "data": "raw"},
            "Expected `data` to be a STRING (the request body is a STRING), but found OBJECT",
        ),
        (
            "{'data': {'filter': {'a': 1}}}",
            {"method": "POST", "data": {"q": 1}},
            "Expected `data.filter` to be a NUMBER, STRING or NULL, but found OBJECT",
        ),
        (
            "{'other': 1}",
            {"method": "POST", "json": {"q": 1}},
            "OBJECT returned by `page` must contain `url`, `params` and/or `data` fields.",
        ),
    ],
    ids=["same-body-is-a-loop", "no-body", "object-body", "string-body", "flat-form", "no-keys"],
)
def test_what_page_returns_for_the_body_is_checked(
    server: LocalServer, sync: t.Any, page: str, body: dict[str, t.Any], message: str
) -> None:
    with pytest.raises(PaginationError) as info:
        sync(_one_page_config(server, page, **body))
    assert message.replace("PORT", str(server.port)) in str(info.value)
    assert len(server.requests_to("/one")) == 1


def test_a_string_body_is_replaced_and_info_data_shows_it(server: LocalServer, sync: t.Any) -> None:
    config = _one_page_config(
        server,
        "r.branch(info['data'] == 'q=1', {'data': 'q=2'}, None)",
        method="POST",
        data="q=1",
    )
    sync(config)
    assert [r.body for r in server.requests_to("/one")] == [b"q=1", b"q=2"]


# ------------------------------------------------------------------ resume


def test_sigkill_mid_graphql_then_resume_from_the_saved_cursor(
    server: LocalServer, sync: t.Any, tmp_path: Path
) -> None:
    _graphql(server, delay=0.2)
    config = graphql_config(server)
    killed = kill_when(config, tmp_path, states_with('"data"', 2))
    first_ids = [m["record"]["id"] for m in killed if m["type"] == "RECORD"]
    state = next(m["value"] for m in reversed(killed) if m["type"] == "STATE")
    (position,) = state["bookmarks"]["items"]["rhttp"]["chains"].values()
    assert position["data"]["variables"]["first"] == 3
    cursor = position["data"]["variables"]["after"]
    assert first_ids
    assert first_ids == list(range(1, len(first_ids) + 1))

    server.log.clear()
    resumed = sync(config, state=state)
    assert sent_bodies(server, "/graphql")[0]["variables"] == {"first": 3, "after": cursor}
    second_ids = [r["id"] for r in resumed.records("items")]
    assert sorted(set(first_ids) | set(second_ids)) == [item["id"] for item in ITEMS]
    assert 0 <= len(first_ids) + len(second_ids) - len(ITEMS) <= 3  # the page in flight


def test_no_resume_position_when_the_moved_body_holds_a_secret(
    server: LocalServer, sync: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cret-body-key-7781"
    _graphql(server)
    config = graphql_config(server)
    config["secrets"] = {"key": secret}
    config["streams"][0]["json"]["variables"]["token"] = "{{ secrets['key'] }}"

    @server.route("/graphql-keyed")
    def keyed(request: Request) -> Reply | None:
        body = json.loads(request.body)
        assert body["variables"].pop("token") == secret  # sent as configured
        return server.routes["/graphql"](request._replace(body=json.dumps(body).encode()))

    config["streams"][0]["url"] = server.url + "/graphql-keyed"
    caplog.set_level(logging.WARNING)
    result = sync(config)
    assert [r["id"] for r in result.records("items")] == [item["id"] for item in ITEMS]
    states = result.of_type("STATE")
    assert secret not in json.dumps(states)
    positions = [
        m["value"]["bookmarks"]["items"]["rhttp"]["chains"]
        for m in states
        if "rhttp" in m["value"]["bookmarks"].get("items", {})
    ]
    assert positions == []  # no position was saved at any page
    warnings = [r.getMessage() for r in caplog.records if "holds a secret" in r.getMessage()]
    assert len(warnings) == 1
    assert "no resume position is saved in STATE" in warnings[0]
    assert secret not in caplog.text


# ------------------------------------------------------------------ explain


def test_explain_shows_the_body_the_next_page_sends(
    server: LocalServer, cli: t.Callable[..., CliResult]
) -> None:
    _graphql(server)
    config = graphql_config(server)
    config["secrets"] = {"key": "s3cret-explain-key-991"}
    config["streams"][0]["header"] = {"X-Api-Key": "{{ secrets['key'] }}"}
    result = cli(config, "--explain", "--pages", "2")
    assert result.code == 0, result.stderr
    out = result.stdout
    assert "s3cret-explain-key-991" not in out
    assert f"X-Api-Key: {MASK}" in out
    assert '  data:   {"query":' in out
    cursor = _cursor(3)
    assert f'with body data {{"query":"{QUERY}","variables":{{"first":3,"after":"{cursor}"}}}}' in (
        out
    )
    # the second request's curl sends the moved body
    assert f'"after":"{cursor}"' in out.split("-- request 2", 1)[1].split("status:", 1)[0]
