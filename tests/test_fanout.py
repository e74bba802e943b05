"""Fan-out (for_each, parent), templates, on_error, incremental runs, and resuming."""

from __future__ import annotations

import json
import logging
import time
import typing as t

import pytest
from server import Reply, Request, json_reply
from singer_sdk.exceptions import ConfigValidationError
from tap_process import kill_when, states_with

from tap_rhttp.errors import ConfigError, ConfigErrors, PermanentRequestError
from tap_rhttp.run.fanout import ChainPool, ChainTask, Lookahead


def stream(name: str, url: str, **spec: t.Any) -> dict[str, t.Any]:
    spec.setdefault("reattempts", 1)
    return {"name": name, "url": url, **spec}


# ------------------------------------------------------------------ the seed's examples


def test_seed_map_over_a_list(server: t.Any, sync: t.Any) -> None:
    """r.expr([1, 2, 3]).map(lambda i: r.http('httpbin.org/get', params={'user': i}))"""
    config = {
        "streams": [
            stream("users", server.url + "/echo", for_each=[1, 2, 3], params={"user": "{{ item }}"})
        ]
    }
    records = sync(config).records("users")
    assert [r["target"] for r in records] == ["/echo?user=1", "/echo?user=2", "/echo?user=3"]
    assert len(server.log) == 3


def test_seed_put_each_row_of_a_table(server: t.Any, sync: t.Any) -> None:
    """r.table('data').map(lambda row: r.http('httpbin.org/put', method='PUT', data=row))"""
    config = {
        "streams": [
            stream("data", server.url + "/records?n=3", primary_keys=["id"]),
            stream("puts", server.url + "/echo", parent="data", method="PUT", data="{{ row }}"),
        ]
    }
    result = sync(config)
    puts = result.records("puts")
    assert [json.loads(r["body"]) for r in puts] == [
        {"id": 1, "name": "r1"},
        {"id": 2, "name": "r2"},
        {"id": 3, "name": "r3"},
    ]
    assert all(r["method"] == "PUT" for r in puts)
    assert [r["data_id"] for r in puts] == [1, 2, 3]  # the parent's primary key, copied
    assert "data_id" in result.schema("puts")["properties"]
    assert len(result.records("data")) == 3
    # one stream-level STATE entry for the child, never one per parent record
    final = result.of_type("STATE")[-1]["value"]
    assert "partitions" not in final["bookmarks"].get("puts", {})


def test_whole_placeholder_keeps_json_type(server: t.Any, sync: t.Any) -> None:
    config = {
        "streams": [
            stream(
                "s",
                server.url + "/echo",
                for_each=[{"n": 1, "tags": ["a"]}, 7],
                method="PATCH",
                data={"value": "{{ item }}", "text": "item={{ item }}"},
            )
        ]
    }
    bodies = [json.loads(r["body"]) for r in sync(config).records("s")]
    assert bodies == [
        {"value": {"n": 1, "tags": ["a"]}, "text": 'item={"n":1,"tags":["a"]}'},
        {"value": 7, "text": "item=7"},
    ]


def test_placeholders_in_a_url_path_are_encoded(server: t.Any, sync: t.Any) -> None:
    config = {"streams": [stream("s", server.url + "/echo/{{ item }}", for_each=["a b/c?d", 5])]}
    records = sync(config).records("s")
    assert [r["target"] for r in records] == ["/echo/a%20b%2Fc%3Fd", "/echo/5"]


def test_parent_keys_object_and_list(server: t.Any, sync: t.Any) -> None:
    config = {
        "streams": [
            stream("data", server.url + "/records?n=2"),
            stream(
                "a",
                server.url + "/echo?id={{ row['id'] }}",
                parent="data",
                parent_keys={"name": "parent_name"},
            ),
            stream("b", server.url + "/echo?id={{ row['id'] }}", parent="data", parent_keys=["id"]),
        ]
    }
    result = sync(config)
    assert [r["parent_name"] for r in result.records("a")] == ["r1", "r2"]
    assert [r["target"] for r in result.records("b")] == ["/echo?id=1", "/echo?id=2"]
    assert [r["id"] for r in result.records("b")] == [1, 2]


# ------------------------------------------------------------------ on_error


def _child_404_config(server: t.Any, on_error: str) -> dict[str, t.Any]:
    @server.route("/maybe/")
    def maybe(request: Request) -> Reply:
        n = int(request.path.rsplit("/", 1)[1])
        if n == 2:
            return Reply(404, "<html>no such row</html>", (), "text/html")
        return json_reply({"row": n})

    return {
        "streams": [
            stream("data", server.url + "/records?n=3"),
            stream(
                "detail", server.url + "/maybe/{{ row['id'] }}", parent="data", on_error=on_error
            ),
        ]
    }


def test_child_404_with_skip_goes_on(
    server: t.Any, sync: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    result = sync(_child_404_config(server, "skip"))
    assert [r["row"] for r in result.records("detail")] == [1, 3]
    warnings = [
        r.getMessage() for r in caplog.records if "skipped after an error" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert "status code 404." in warnings[0]
    done = [r.getMessage() for r in caplog.records if "stream detail done" in r.getMessage()]
    assert "1 skipped" in done[-1]


def test_child_404_with_fail_stops(server: t.Any, sync: t.Any) -> None:
    with pytest.raises(PermanentRequestError, match="status code 404"):
        sync(_child_404_config(server, "fail"))


def test_for_each_skip_counts_a_template_error(server: t.Any, sync: t.Any) -> None:
    config = {
        "streams": [
            stream(
                "s",
                server.url + "/echo?x={{ item['x'] }}",
                for_each=[{"x": 1}, {"y": 2}, {"x": 3}],
                on_error="skip",
            )
        ]
    }
    records = sync(config).records("s")
    assert [r["target"] for r in records] == ["/echo?x=1", "/echo?x=3"]
    assert len(server.log) == 2


# ------------------------------------------------------------------ templates


def test_template_names_are_checked_at_load(sync: t.Any) -> None:
    bad = [
        ({"url": "http://h/{{ item }}"}, "`item`"),
        ({"url": "http://h/{{ row['id'] }}"}, "`row`"),
        ({"url": "http://h/{{ env['HOME'] }}"}, "`env`"),
        ({"url": "http://h/{{ bookmark }}"}, "`bookmark`"),
        ({"url": "http://h/{{ }}"}, "empty placeholder"),
        ({"url": "http://h/{{ open('x') }}"}, "`open`"),
    ]
    for spec, fragment in bad:
        with pytest.raises(ConfigValidationError) as info:
            sync({"streams": [{"name": "s", **spec}]})
        assert any(fragment in e for e in info.value.errors), (spec, info.value.errors)


def test_env_and_secrets_in_templates(
    server: t.Any, sync: t.Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("RHTTP_TEST_REGION", "eu-1")
    config = {
        "secrets": {"token": "s3cr3t-T0KEN-value"},
        "region_default": "us",
        "streams": [
            stream(
                "s",
                server.url
                + "/echo?region={{ env['RHTTP_TEST_REGION'] }}&d={{ config['region_default'] }}",
                template_env=True,
                header={"Authorization": "Bearer {{ secrets['token'] }}"},
            )
        ],
    }
    (record,) = sync(config).records("s")
    assert record["target"] == "/echo?region=eu-1&d=us"
    assert server.requests_to("/echo")[-1].headers["Authorization"] == "Bearer s3cr3t-T0KEN-value"
    assert "s3cr3t-T0KEN-value" not in repr(record)  # a secret never reaches a record
    assert "s3cr3t-T0KEN-value" not in caplog.text


def test_rendered_values_are_checked(server: t.Any, sync: t.Any) -> None:
    config = {"streams": [stream("s", "{{ item }}", for_each=["ftp://127.0.0.1/x"])]}
    with pytest.raises(ConfigError, match=r"streams\[0\]\.url: Unsupported protocol `ftp`"):
        sync(config)


# ------------------------------------------------------------------ concurrency


def test_for_each_concurrent_keeps_each_chain_in_order(server: t.Any, sync: t.Any) -> None:
    @server.route("/slow-pages")
    def slow_pages(request: Request) -> Reply:
        time.sleep(0.05)
        page = int(request.args.get("page", "1"))
        who = request.args["who"]
        return json_reply([{"who": who, "page": page, "i": i} for i in range(2)])

    config = {
        "streams": [
            stream(
                "s",
                server.url + "/slow-pages",
                for_each=["a", "b", "c", "d"],
                params={"who": "{{ item }}", "page": 1},
                page="{'params': {'page': info['params']['page'] + 1}}",
                page_limit=4,
                max_concurrency=4,
            )
        ]
    }
    started = time.monotonic()
    records = sync(config).records("s")
    elapsed = time.monotonic() - started
    assert len(records) == 4 * 4 * 2
    for who in "abcd":
        mine = [(r["page"], r["i"]) for r in records if r["who"] == who]
        assert mine == [(p, i) for p in range(1, 5) for i in range(2)]
    assert len(server.log) == 16
    assert elapsed < 16 * 0.05  # overlapped, not one after another


@pytest.mark.parametrize("concurrency", [1, 3])
def test_a_childs_chains_reuse_their_workers_connections(
    server: t.Any, sync: t.Any, concurrency: int
) -> None:
    """One connection per worker, not one per parent row: each row's chain sends through
    the connection pools of the chains its worker ran before it."""
    config = {
        "streams": [
            stream("data", server.url + "/records?n=12", primary_keys=["id"]),
            stream(
                "kids",
                server.url + "/echo/{{ row['id'] }}",
                parent="data",
                max_concurrency=concurrency,
                schema={"properties": {"target": {"type": "string"}}},
            ),
        ]
    }
    records = sync(config).records("kids")
    assert sorted(r["target"] for r in records) == sorted(f"/echo/{i}" for i in range(1, 13))
    kids = [r for r in server.log if r.path.startswith("/echo/")]
    assert len(kids) == 12
    assert len({r.handler.client_address for r in kids}) <= concurrency


def test_for_each_chains_one_after_another_reuse_one_connection(server: t.Any, sync: t.Any) -> None:
    spec = stream("s", server.url + "/echo/{{ item }}", for_each=[1, 2, 3, 4])
    config = {"streams": [{**spec, "schema": {"properties": {"target": {"type": "string"}}}}]}
    assert len(sync(config).records("s")) == 4
    assert len({r.handler.client_address for r in server.log}) == 1


def test_a_chain_pool_starts_and_reads_batches_in_order() -> None:
    """A batch is read after the batches submitted before it; its events are its own."""
    failed = PermanentRequestError("GET", "http://x", "no", status=404)

    def make_chain(task: ChainTask, inline: bool, connections: t.Any) -> t.Any:
        raise AssertionError("tasks whose rendering failed make no chain")

    pool = ChainPool(make_chain, 2)
    try:
        first = pool.submit([ChainTask("0", "a", error=failed), ChainTask("1", "b", error=failed)])
        second = pool.submit([ChainTask("0", "c", error=failed)])
        with pytest.raises(RuntimeError, match="in the order they were submitted"):
            next(second.events())
        assert sorted(e.task.label for e in first.events()) == ["a", "b"]
        assert [e.task.label for e in second.events()] == ["c"]
        with pytest.raises(RuntimeError, match="read once"):
            next(second.events())
        assert [e.task.label for e in pool.submit([]).events()] == []
    finally:
        pool.close()
    third = ChainPool(make_chain, 1)
    try:
        batch = third.submit([ChainTask("0", "d", error=failed)])
        assert [(e.task.label, e.error) for e in batch.events()] == [("d", failed)]
    finally:
        third.close()


def test_lookahead_raises_a_failure_where_it_was_met() -> None:
    def items() -> t.Iterator[int]:
        yield 1
        yield 2
        raise ValueError("third")

    ahead = Lookahead(items())
    assert next(ahead) == 1
    assert ahead.peek() == 2
    assert ahead.peek() == 2
    assert next(ahead) == 2
    assert ahead.peek() is None  # the failure waits for the item it stands for
    with pytest.raises(ValueError, match="third"):
        next(ahead)
    ends = Lookahead(iter([7]))
    assert [ends.peek(), next(ends), ends.peek()] == [7, 7, None]
    with pytest.raises(StopIteration):
        next(ends)


# ------------------------------------------------------------------ incremental


def _incremental_server(server: t.Any) -> None:
    server.state["rows"] = [{"id": i, "updated_at": f"2024-01-0{i}T00:00:00Z"} for i in range(1, 4)]

    @server.route("/changes")
    def changes(request: Request) -> Reply:
        # a server that ignores `since`: the client-side bookmark filter must hold
        return json_reply(server.state["rows"])


def test_two_incremental_runs(server: t.Any, sync: t.Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    _incremental_server(server)
    config = {
        "streams": [
            stream(
                "changes",
                server.url + "/changes",
                params={"since": "{{ bookmark }}"},
                replication_key="updated_at",
                start_value="2024-01-01T00:00:00Z",
                primary_keys=["id"],
            )
        ]
    }
    first = sync(config)
    # at or before the start value is dropped: id 1 sits exactly on it
    assert [r["id"] for r in first.records("changes")] == [2, 3]
    assert server.log[0].args["since"] == "2024-01-01T00:00:00Z"
    state = first.of_type("STATE")[-1]["value"]
    assert state["bookmarks"]["changes"]["replication_key_value"] == "2024-01-03T00:00:00Z"

    server.state["rows"].append({"id": 4, "updated_at": "2024-01-04T00:00:00Z"})
    server.log.clear()
    second = sync(config, state=state)
    assert [r["id"] for r in second.records("changes")] == [4]
    # the summary counts the records emitted, not the 4 fetched (3 at or before the bookmark)
    done = [r.getMessage() for r in caplog.records if "stream changes done" in r.getMessage()]
    assert done[-1].startswith("stream changes done: 1 pages, 1 records, 0 retries, 0 skipped")
    assert server.log[0].args["since"] == "2024-01-03T00:00:00Z"
    final = second.of_type("STATE")[-1]["value"]
    assert final["bookmarks"]["changes"]["replication_key_value"] == "2024-01-04T00:00:00Z"


def test_filter_bookmark_off_keeps_everything(server: t.Any, sync: t.Any) -> None:
    _incremental_server(server)
    config = {
        "streams": [
            stream(
                "changes",
                server.url + "/changes",
                replication_key="updated_at",
                start_value="2024-01-02T00:00:00Z",
                filter_bookmark=False,
            )
        ]
    }
    assert [r["id"] for r in sync(config).records("changes")] == [1, 2, 3]


def test_replication_key_must_be_in_the_schema(server: t.Any, sync: t.Any) -> None:
    _incremental_server(server)
    config = {"streams": [stream("changes", server.url + "/changes", replication_key="modified")]}
    with pytest.raises(ConfigErrors, match="replication key `modified` is not a field"):
        sync(config)


# ------------------------------------------------------------------ resume after SIGKILL


def _paged_server(server: t.Any, pages: int = 12, per_page: int = 5, delay: float = 0.15) -> None:
    @server.route("/paged")
    def paged(request: Request) -> Reply:
        time.sleep(delay)
        page = int(request.args.get("page", "1"))
        items = [{"id": (page - 1) * per_page + i} for i in range(1, per_page + 1)]
        return json_reply({"items": items, "next": page + 1 if page < pages else None})


def _resume_config(server: t.Any, **extra: t.Any) -> dict[str, t.Any]:
    return {
        "streams": [
            stream(
                "paged",
                server.url + "/paged",
                params={"page": 1, "api_key": "k-resume-SECRET-1"},
                records_path="$.items[*]",
                page="r.branch(info['body']['next'] == None, None, {'params': {'page': info['body']['next']}})",
                page_limit=-1,
                primary_keys=["id"],
                schema={"properties": {"id": {"type": "integer"}}},
                **extra,
            )
        ]
    }


def test_sigkill_mid_pagination_then_resume(server: t.Any, sync: t.Any, tmp_path: t.Any) -> None:
    _paged_server(server)
    config = _resume_config(server)
    killed = kill_when(config, tmp_path, states_with("rhttp", 4))
    first_ids = [m["record"]["id"] for m in killed if m["type"] == "RECORD"]
    state = next(m["value"] for m in reversed(killed) if m["type"] == "STATE")
    saved = state["bookmarks"]["paged"]["rhttp"]
    (position,) = saved["chains"].values()
    assert "k-resume-SECRET-1" not in json.dumps(state)
    assert "api_key" not in json.dumps(position)

    server.log.clear()
    resumed = sync(config, state=state)
    second_ids = [r["id"] for r in resumed.records("paged")]
    everything = list(range(1, 12 * 5 + 1))
    assert sorted(set(first_ids) | set(second_ids)) == everything
    duplicates = len(first_ids) + len(second_ids) - len(everything)
    assert 0 <= duplicates <= 5  # at most the page in flight
    # it continued where STATE said, with the secret param restored from config
    assert server.log[0].args["page"] == str(position["params"]["page"])
    assert server.log[0].args["api_key"] == "k-resume-SECRET-1"
    assert "rhttp" not in resumed.of_type("STATE")[-1]["value"]["bookmarks"]["paged"]


def test_resume_ignored_when_the_spec_changed(
    server: t.Any, sync: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    _paged_server(server, pages=3, delay=0)
    config = _resume_config(server)
    state = {
        "bookmarks": {
            "paged": {
                "rhttp": {
                    "spec": "0000000000000000",
                    "chains": {
                        "-": {
                            "url": server.url + "/paged",
                            "params": {"page": 3},
                            "override": ["page"],
                            "requests": 2,
                        }
                    },
                    "done": [],
                }
            }
        }
    }
    records = sync(config, state=state).records("paged")
    assert len(records) == 15
    assert server.log[0].args["page"] == "1"
    assert "different version of this spec" in caplog.text


def test_for_each_resume_skips_finished_values(server: t.Any, sync: t.Any) -> None:
    config = {"streams": [stream("s", server.url + "/echo?v={{ item }}", for_each=["a", "b", "c"])]}
    first = sync(config)
    hashes = [
        m["value"]["bookmarks"]["s"]["rhttp"]["spec"]
        for m in first.of_type("STATE")
        if "rhttp" in m["value"]["bookmarks"].get("s", {})
    ]
    assert hashes
    state = {"bookmarks": {"s": {"rhttp": {"spec": hashes[0], "chains": {}, "done": ["0", "1"]}}}}
    server.log.clear()
    records = sync(config, state=state).records("s")
    assert [r["target"] for r in records] == ["/echo?v=c"]


def test_r_now_is_one_instant_for_the_whole_run(server: t.Any, sync: t.Any) -> None:
    """Templates and page expressions of every chain see the run's instant, however long
    the run takes (each request here waits 50 ms), so a run is reproducible."""

    @server.route("/now-pages")
    def pages(request: t.Any) -> t.Any:
        time.sleep(0.05)
        return json_reply([{"id": f"{request.args['item']}-{request.args.get('page', '1')}"}])

    config = {
        "streams": [
            {
                "name": "clock",
                "url": server.url + "/now-pages",
                "for_each": ["a", "b", "c"],
                "params": {"item": "{{ item }}", "t": "{{ r.now().to_epoch_time() }}"},
                "page": "{'params': {'page': 2, 'seen': r.now().to_epoch_time()}}",
                "page_limit": 2,
            }
        ]
    }
    result = sync(config)
    assert len(result.records("clock")) == 6
    sent = [r.args for r in server.requests_to("/now-pages")]
    assert len(sent) == 6
    instants = {a["t"] for a in sent} | {a["seen"] for a in sent if "seen" in a}
    assert len(instants) == 1, instants  # one instant across 6 requests spanning >= 0.3 s
    assert abs(float(instants.pop()) - time.time()) < 60


# ------------------------------------------------------------------ empty fan-outs


def test_an_empty_for_each_is_an_empty_stream(
    server: t.Any, sync: t.Any, cli: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    """r.expr([]).map(lambda i: r.http(...)) is an empty array: no request, no record."""
    config = {
        "streams": [stream("users", server.url + "/echo", for_each=[], params={"u": "{{ item }}"})]
    }
    result = sync(config)
    assert result.records("users") == []
    assert result.schema("users")["properties"] == {}
    assert server.log == []
    done = cli(config)
    assert done.code == 0, done.stderr
    assert '"type":"SCHEMA"' in done.stdout.replace(" ", "")
    assert not [m for m in done.messages() if m["type"] == "RECORD"]
    explained = cli(config, "--explain")
    assert explained.code == 0, explained.stderr
    assert "no request: `for_each` is empty" in explained.stdout
    assert server.log == []


def test_a_parent_with_no_rows_is_an_empty_child(server: t.Any, cli: t.Any) -> None:
    server.route("/nothing")(lambda request: json_reply([]))
    config = {
        "streams": [
            stream("data", server.url + "/nothing"),
            stream("detail", server.url + "/echo/{{ row['id'] }}", parent="data"),
        ]
    }
    done = cli(config)
    assert done.code == 0, done.stderr
    assert not [m for m in done.messages() if m["type"] == "RECORD"]
    assert [r.path for r in server.log] == ["/nothing"]  # sampled once, reused by the sync
