"""Shards: each process of a job takes the stable-hash share of every stream's fan-out.

In process, against the loopback server: the shares of `for_each` values, windows and
parent rows are disjoint and add up to the whole; streams without fan-out run in shard 0
only; a parent read for its children's rows is emitted by shard 0 only; each shard's
STATE is its own; the setting and ``TAP_RHTTP_SHARD`` are checked; `--explain` says what
the shard takes. The four-process run into one PostgreSQL table is in
``tests/test_e2e_shards.py``.
"""

from __future__ import annotations

import logging
import typing as t

import pytest
from server import Reply, Request, json_reply

from tap_rhttp.config.shard import Shard, shard_of
from tap_rhttp.errors import ConfigErrors
from tap_rhttp.explain import Explainer
from tap_rhttp.run.context import RunContext

COUNT = 4


def stream(name: str, url: str, **spec: t.Any) -> dict[str, t.Any]:
    spec.setdefault("reattempts", 1)
    return {"name": name, "url": url, **spec}


def _sharded(config: dict[str, t.Any], index: int, count: int = COUNT) -> dict[str, t.Any]:
    return {**config, "shard": {"index": index, "count": count}}


def test_shard_of_is_a_stable_hash() -> None:
    # the documented rule, pinned: sha256 of the canonical JSON, first 8 bytes, mod count
    assert [shard_of(v, 8) for v in (1, "a", [1, 2], {"b": 1, "a": 2})] == [
        shard_of(1, 8),
        shard_of("a", 8),
        shard_of([1, 2], 8),
        shard_of({"a": 2, "b": 1}, 8),  # key order does not matter
    ]
    # pinned: a change here would move values between the shards of running jobs
    assert shard_of(1, 8) == 1
    assert shard_of("2024-01-01T00:00:00Z", 8) == 0
    assert Shard(0, 8).owns("2024-01-01T00:00:00Z") is True
    assert Shard(3, 8).owns("2024-01-01T00:00:00Z") is False


def test_for_each_values_are_split(server: t.Any, sync: t.Any) -> None:
    values = list(range(40))
    config = {
        "streams": [
            stream("s", server.url + "/echo?v={{ item }}", for_each=values, max_concurrency=3)
        ]
    }
    seen: list[int] = []
    for index in range(COUNT):
        server.log.clear()
        records = sync(_sharded(config, index)).records("s")
        mine = [int(r["target"].split("=")[1]) for r in records]
        assert sorted(mine) == [v for v in values if shard_of(v, COUNT) == index]
        # its own values, and the shared schema sample: the first `schema_sample.pages`
        # (default 3) chains' pages, the same in every shard, so one table schema
        assert len(server.log) <= len(mine) + 3
        seen += mine
    assert sorted(seen) == values  # disjoint, and together the whole


def test_windows_are_split_by_their_start(server: t.Any, sync: t.Any) -> None:
    config = {
        "streams": [
            stream(
                "w",
                server.url + "/echo",
                params={"s": "{{ window['start'] }}"},
                windows={"start": "2024-01-01", "end": "2024-01-21", "step": "P1D"},
            )
        ]
    }
    starts: list[str] = []
    for index in range(COUNT):
        records = sync(_sharded(config, index)).records("w")
        mine = [r["target"].split("=")[1].replace("%3A", ":") for r in records]
        assert all(shard_of(s, COUNT) == index for s in mine)
        starts += mine
    assert len(starts) == 20
    assert len(set(starts)) == 20


def test_a_stream_without_fan_out_runs_in_shard_0_only(server: t.Any, sync: t.Any) -> None:
    config = {"streams": [stream("one", server.url + "/records?n=3")]}
    assert len(sync(_sharded(config, 0)).records("one")) == 3
    for index in (1, 2, 3):
        server.log.clear()
        result = sync(_sharded(config, index))
        assert result.records("one") == []
        # only the schema sample, the same page in every shard (one table schema)
        assert [r.target for r in server.log] == ["/records?n=3"]
        assert result.schema("one")["properties"].keys() == {"id", "name"}


def test_children_of_a_plain_parent_split_its_rows(server: t.Any, sync: t.Any) -> None:
    config = {
        "streams": [
            stream("data", server.url + "/records?n=30", primary_keys=["id"]),
            stream("detail", server.url + "/echo/{{ row['id'] }}", parent="data"),
        ]
    }
    parents: list[int] = []
    children: list[int] = []
    for index in range(COUNT):
        result = sync(_sharded(config, index))
        parent_ids = [r["id"] for r in result.records("data")]
        assert parent_ids == (list(range(1, 31)) if index == 0 else [])
        parents += parent_ids
        mine = [r["data_id"] for r in result.records("detail")]
        assert all(shard_of([i], COUNT) == index for i in mine)  # by the parent's key
        children += mine
    assert sorted(parents) == list(range(1, 31))
    assert sorted(children) == list(range(1, 31))


def test_children_of_a_split_parent_take_all_its_rows(server: t.Any, sync: t.Any) -> None:
    @server.route("/team/")
    def team(request: Request) -> Reply:
        n = int(request.path.rsplit("/", 1)[1])
        return json_reply([{"id": n * 10 + i} for i in range(3)])

    config = {
        "streams": [
            stream("teams", server.url + "/team/{{ item }}", for_each=list(range(8))),
            stream("members", server.url + "/echo/{{ row['id'] }}", parent="teams"),
        ]
    }
    members: list[int] = []
    for index in range(COUNT):
        result = sync(_sharded(config, index))
        teams = {r["id"] // 10 for r in result.records("teams")}
        assert teams == {v for v in range(8) if shard_of(v, COUNT) == index}
        got = [int(r["target"].rsplit("/", 1)[1]) for r in result.records("members")]
        assert {g // 10 for g in got} == teams  # every row of its own teams
        members += got
    assert sorted(members) == sorted(n * 10 + i for n in range(8) for i in range(3))


def test_each_shard_has_its_own_state(
    server: t.Any, sync: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    config = {"streams": [stream("s", server.url + "/echo?v={{ item }}", for_each=list(range(12)))]}
    first = sync(_sharded(config, 1))
    state = next(
        m["value"]
        for m in first.of_type("STATE")
        if m["value"]["bookmarks"].get("s", {}).get("rhttp", {}).get("done")
    )
    caplog.set_level(logging.WARNING)
    other = sync(_sharded(config, 2), state=state).records("s")  # another shard's STATE
    assert "different version of this spec" in caplog.text
    mine = sorted(int(r["target"].split("=")[1]) for r in other)
    assert mine == [v for v in range(12) if shard_of(v, COUNT) == 2]  # nothing skipped


def test_the_shard_comes_from_the_environment(
    server: t.Any, sync: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {"streams": [stream("s", server.url + "/echo?v={{ item }}", for_each=list(range(16)))]}
    monkeypatch.setenv("TAP_RHTTP_SHARD", "3/4")
    mine = sorted(int(r["target"].split("=")[1]) for r in sync(config).records("s"))
    assert mine == [v for v in range(16) if shard_of(v, 4) == 3]
    # the config's own setting wins, also in its "index/count" form
    mine = sorted(
        int(r["target"].split("=")[1]) for r in sync({**config, "shard": "0/2"}).records("s")
    )
    assert mine == [v for v in range(16) if shard_of(v, 2) == 0]


@pytest.mark.parametrize(
    ("shard", "fragment"),
    [
        ({"index": 4, "count": 4}, "shard.index: `index` should be from 0 to 3"),
        ({"index": 0, "count": 0}, "shard.count: `count` should be from 1 to"),
        ({"index": "1", "count": 4}, "shard.index: `index` should be an integer"),
        ({"index": 1}, "shard.count: `count` should be an integer"),
        ({"index": 1, "count": 4, "of": 2}, "unknown key `of`"),
        ("2 of 8", "shard: not a shard"),
        (3, "shard: not a shard"),
    ],
)
def test_bad_shards_are_config_errors(shard: t.Any, fragment: str) -> None:
    config = {"shard": shard, "streams": [{"name": "s", "url": "http://127.0.0.1:9/x"}]}
    with pytest.raises(ConfigErrors) as info:
        RunContext(config, environ={})
    assert fragment in str(info.value)


def test_a_bad_environment_shard_names_the_variable() -> None:
    config = {"streams": [{"name": "s", "url": "http://127.0.0.1:9/x", "timeout": -1}]}
    with pytest.raises(ConfigErrors) as info:
        RunContext(config, environ={"TAP_RHTTP_SHARD": "9/8"})
    text = str(info.value)
    assert "TAP_RHTTP_SHARD.index" in text
    assert "streams[0].timeout" in text  # every problem at once


def test_explain_shows_the_shards_share(server: t.Any) -> None:
    config = {
        "shard": {"index": 1, "count": 4},
        "streams": [
            stream("s", server.url + "/echo?v={{ item }}", for_each=list(range(20))),
            stream("data", server.url + "/records?n=8", primary_keys=["id"]),
            stream("detail", server.url + "/echo/{{ row['id'] }}", parent="data"),
            stream("plain", server.url + "/records?n=1"),
        ],
    }
    lines: list[str] = []
    Explainer(RunContext(config), 2, out=lines.append).run()
    text = "\n".join(lines)
    share = sum(shard_of(v, 4) == 1 for v in range(20))
    assert (
        f"shard 1/4 (sha256 of each value's canonical JSON, mod 4): {share} of 20 `for_each` values"
        in text
    )
    assert "its records are emitted by shard 0 only (not this one)" in text
    rows = sum(shard_of([i], 4) == 1 for i in range(1, 9))
    assert f"{rows} of the 8 parent row(s) seen" in text
    assert "runs in shard 0 only (not this one: no request here)" in text


def test_the_environment_shard_may_be_json_as_meltano_needs_it(
    server: t.Any, sync: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {"streams": [stream("s", server.url + "/echo?v={{ item }}", for_each=list(range(16)))]}
    monkeypatch.setenv("TAP_RHTTP_SHARD", '{"index": 1, "count": 4}')
    mine = sorted(int(r["target"].split("=")[1]) for r in sync(config).records("s"))
    assert mine == [v for v in range(16) if shard_of(v, 4) == 1]
    monkeypatch.setenv("TAP_RHTTP_SHARD", '{"index": 1')
    with pytest.raises(ConfigErrors, match="TAP_RHTTP_SHARD: not a shard"):
        RunContext(config)
