"""Nothing lost, nothing fetched twice, on every resume path.

Discovery's sample under `on_error: skip`, a resumed run's sample, BATCH messages and
the STATE that follows them, and child (`parent`) streams killed mid-way: each resumes
exactly, against the loopback server, and the kills are real SIGKILLs of a
``python -m tap_rhttp`` process.
"""

from __future__ import annotations

import gzip
import json
import logging
import signal
import threading
import time
import typing as t
from collections import Counter
from urllib.parse import urlsplit

import pytest
from server import Reply, Request, json_reply
from tap_process import kill_when, popen_tap

from tap_rhttp.run.context import RunContext
from tap_rhttp.run.resume import ROW_WINDOW, ChildResume

if t.TYPE_CHECKING:
    from pathlib import Path


def stream(name: str, url: str, **spec: t.Any) -> dict[str, t.Any]:
    spec.setdefault("reattempts", 1)
    return {"name": name, "url": url, **spec}


def _maybe_route(server: t.Any, failing: set[int]) -> None:
    @server.route("/maybe/")
    def maybe(request: Request) -> Reply:
        n = int(request.path.rsplit("/", 1)[1])
        if n in failing:
            return Reply(404, "<html>no such item</html>", (), "text/html")
        return json_reply([{"item": n, "label": f"n{n}"}])


# ------------------------------------------------------------------ the schema sample


@pytest.mark.parametrize("concurrency", [1, 3])
def test_skip_covers_the_schema_sample(
    server: t.Any, sync: t.Any, caplog: pytest.LogCaptureFixture, concurrency: int
) -> None:
    """A failing first `for_each` item no longer fails the run when a schema is inferred
    (also when the sampled chains' first pages are fetched at once)."""
    _maybe_route(server, failing={1})
    config = {
        "streams": [
            stream(
                "s",
                server.url + "/maybe/{{ item }}",
                for_each=[1, 2, 3],
                on_error="skip",
                max_concurrency=concurrency,
            )
        ]
    }
    caplog.set_level(logging.INFO)
    result = sync(config)
    assert sorted(r["item"] for r in result.records("s")) == [2, 3]
    assert set(result.schema("s")["properties"]) == {"item", "label"}
    # the sample's page of item 2 served the sync: each URL once, but the failing one,
    # which the sync tries again (its skip is counted once, by the sync)
    assert Counter(r.path for r in server.log) == {"/maybe/1": 2, "/maybe/2": 1, "/maybe/3": 1}
    assert "the schema sample failed (on_error: skip" in caplog.text
    done = [r.getMessage() for r in caplog.records if "stream s done" in r.getMessage()]
    assert "1 skipped" in done[-1]


@pytest.mark.parametrize("concurrency", [1, 3])
def test_skip_with_every_sampled_chain_failing_infers_nothing(
    server: t.Any, sync: t.Any, caplog: pytest.LogCaptureFixture, concurrency: int
) -> None:
    _maybe_route(server, failing={1, 2, 3, 4})
    config = {
        "streams": [
            stream(
                "s",
                server.url + "/maybe/{{ item }}",
                for_each=[1, 2, 3, 4],
                on_error="skip",
                max_concurrency=concurrency,
            )
        ]
    }
    result = sync(config)
    assert result.records("s") == []
    assert result.schema("s")["properties"] == {}
    assert "no sampled chain gave a first page" in caplog.text
    # the sample tries a bounded number of chains (3), the sync all four
    assert Counter(r.path for r in server.log) == {
        "/maybe/1": 2,
        "/maybe/2": 2,
        "/maybe/3": 2,
        "/maybe/4": 1,
    }


def test_skip_covers_a_childs_sample(server: t.Any, sync: t.Any) -> None:
    _maybe_route(server, failing={1})
    config = {
        "streams": [
            stream("data", server.url + "/records?n=3", primary_keys=["id"]),
            stream("detail", server.url + "/maybe/{{ row['id'] }}", parent="data", on_error="skip"),
        ]
    }
    result = sync(config)
    assert [r["item"] for r in result.records("detail")] == [2, 3]
    assert {"item", "label", "data_id"} <= set(result.schema("detail")["properties"])


@pytest.mark.parametrize("concurrency", [1, 3])
def test_fail_still_fails_on_the_sample(server: t.Any, sync: t.Any, concurrency: int) -> None:
    _maybe_route(server, failing={1})
    spec = stream("s", server.url + "/maybe/{{ item }}", for_each=[1, 2])
    config = {"streams": [{**spec, "max_concurrency": concurrency}]}
    with pytest.raises(Exception, match="status code 404"):
        sync(config)


def test_a_childs_sample_starts_while_its_parent_samples_on(server: t.Any, sync: t.Any) -> None:
    """The child's first sampled rows come from the parent's first sampled page: their
    pages are fetched while the parent samples its next pages (the parent's second page
    waits for the child's first request here); each request is made once."""
    arrived = threading.Event()
    server.state["overlapped"] = False

    @server.route("/sampled-parents")
    def parents(request: Request) -> Reply:
        page = int(request.args.get("page", "1"))
        if page == 2:
            server.state["overlapped"] = arrived.wait(timeout=10)
        items = [{"id": (page - 1) * 4 + i} for i in range(1, 5)]
        return json_reply({"items": items, "next": page + 1 if page < 3 else None})

    @server.route("/sampled-kids/")
    def kids(request: Request) -> Reply:
        arrived.set()
        return json_reply([{"kid": request.path.rsplit("/", 1)[1]}])

    config = {
        "streams": [
            stream(
                "parents",
                server.url + "/sampled-parents",
                params={"page": 1},
                records_path="$.items[*]",
                page=NEXT_PAGE,
                page_limit=-1,
                primary_keys=["id"],
            ),
            stream(
                "kids",
                server.url + "/sampled-kids/{{ row['id'] }}",
                parent="parents",
                max_concurrency=3,
            ),
        ]
    }
    result = sync(config)
    assert server.state["overlapped"]
    assert sorted(int(r["kid"]) for r in result.records("kids")) == list(range(1, 13))
    assert set(result.schema("kids")["properties"]) == {"kid", "parents_id"}
    counts = Counter(r.target for r in server.log)
    assert set(counts.values()) == {1}, counts
    assert len(counts) == 3 + 12


def test_a_childs_sampled_rows_are_fetched_at_once_and_used_once(
    server: t.Any, sync: t.Any
) -> None:
    """With max_concurrency, the first pages of the sampled rows are fetched at once (the
    first row's answer waits for the second row's request); the sample, and the schema,
    are those of one row after another, and the sync takes those pages."""
    arrived = threading.Event()
    server.state["overlapped"] = False

    @server.route("/sampled/")
    def sampled(request: Request) -> Reply:
        n = int(request.path.rsplit("/", 1)[1])
        if n == 2:
            arrived.set()
        if n == 1 and not server.state.get("one_seen"):
            server.state["one_seen"] = True
            server.state["overlapped"] = arrived.wait(timeout=10)
        value: t.Any = n if n != 3 else "three"  # the sample's types: int, then a string
        return json_reply({"items": [{"n": n, "value": value, f"only_{n}": True}]})

    def config(concurrency: int) -> dict[str, t.Any]:
        return {
            "streams": [
                stream("data", server.url + "/records?n=6", primary_keys=["id"]),
                stream(
                    "detail",
                    server.url + "/sampled/{{ row['id'] }}",
                    parent="data",
                    records_path="$.items[*]",
                    max_concurrency=concurrency,
                ),
            ]
        }

    server.state["one_seen"] = True  # (one row after another: the first one is not held)
    one_by_one = sync(config(1))
    server.log.clear()
    server.state.pop("one_seen")
    at_once = sync(config(3))
    assert server.state["overlapped"]
    assert at_once.schema("detail") == one_by_one.schema("detail")
    assert sorted(r["n"] for r in at_once.records("detail")) == [1, 2, 3, 4, 5, 6]
    assert Counter(r.path for r in server.log if r.path.startswith("/sampled/")) == {
        f"/sampled/{n}": 1 for n in range(1, 7)
    }


# ------------------------------------------------------------------ a resumed run's sample


def _paged_route(server: t.Any, *, pages: int, per_page: int, delay: float = 0.0) -> None:
    @server.route("/paged")
    def paged(request: Request) -> Reply:
        time.sleep(delay)
        page = int(request.args.get("page", "1"))
        items = [{"id": (page - 1) * per_page + i} for i in range(1, per_page + 1)]
        return json_reply({"items": items, "next": page + 1 if page < pages else None})


NEXT_PAGE = (
    "r.branch(info['body']['next'] == None, None, {'params': {'page': info['body']['next']}})"
)


def _paged_stream(server: t.Any, **extra: t.Any) -> dict[str, t.Any]:
    return stream(
        "paged",
        server.url + "/paged",
        params={"page": 1},
        records_path="$.items[*]",
        page=NEXT_PAGE,
        page_limit=-1,
        primary_keys=["id"],
        **extra,
    )


def _position_at(server: t.Any, sync: t.Any, config: dict[str, t.Any], page: int) -> t.Any:
    """A real STATE of `config`, taken when its next request is `page`."""
    first = sync(config)
    for message in first.of_type("STATE"):
        entry = message["value"]["bookmarks"].get("paged", {}).get("rhttp")
        if entry and entry["chains"].get("-", {}).get("params", {}).get("page") == page:
            return message["value"]
    raise AssertionError(f"no STATE at page {page}")


def test_resumed_run_samples_the_resumed_page(server: t.Any, sync: t.Any) -> None:
    _paged_route(server, pages=6, per_page=3)
    config = {"streams": [_paged_stream(server)]}
    state = _position_at(server, sync, config, 4)
    server.log.clear()
    resumed = sync(config, state=state)
    assert [r["id"] for r in resumed.records("paged")] == list(range(10, 19))
    assert [r.args["page"] for r in server.log] == ["4", "5", "6"]  # no page 1, page 4 once
    assert "id" in resumed.schema("paged")["properties"]


def test_resumed_for_each_samples_its_first_pending_value(server: t.Any, sync: t.Any) -> None:
    config = {"streams": [stream("s", server.url + "/echo?v={{ item }}", for_each=["a", "b", "c"])]}
    first = sync(config)
    spec_hash = next(
        m["value"]["bookmarks"]["s"]["rhttp"]["spec"]
        for m in first.of_type("STATE")
        if "rhttp" in m["value"]["bookmarks"].get("s", {})
    )
    state = {"bookmarks": {"s": {"rhttp": {"spec": spec_hash, "chains": {}, "done": ["0", "1"]}}}}
    server.log.clear()
    records = sync(config, state=state).records("s")
    assert [r["target"] for r in records] == ["/echo?v=c"]
    assert [r.target for r in server.log] == ["/echo?v=c"]


@pytest.mark.parametrize("where", ["declared", "catalog"])
def test_resumed_run_with_a_known_schema_samples_nothing(
    server: t.Any, sync: t.Any, where: str
) -> None:
    _paged_route(server, pages=5, per_page=2)
    schema = {"type": "object", "properties": {"id": {"type": ["integer", "null"]}}}
    declared = {"schema": schema} if where == "declared" else {}
    config = {"streams": [_paged_stream(server, **declared)]}
    catalog = None
    if where == "catalog":
        catalog = {
            "streams": [
                {
                    "tap_stream_id": "paged",
                    "stream": "paged",
                    "schema": schema,
                    "metadata": [{"breadcrumb": [], "metadata": {"selected": True}}],
                }
            ]
        }
    state = _position_at(server, sync, config, 3)
    server.log.clear()
    resumed = sync(config, state=state, catalog=catalog)
    assert [r["id"] for r in resumed.records("paged")] == [5, 6, 7, 8, 9, 10]
    assert [r.args["page"] for r in server.log] == ["3", "4", "5"]


# ------------------------------------------------------------------ BATCH messages


def _batch_config(tmp_path: Path, size: int) -> dict[str, t.Any]:
    root = tmp_path / "batches"
    root.mkdir(exist_ok=True)
    return {
        "encoding": {"format": "jsonl", "compression": "gzip"},
        "storage": {"root": f"file://{root}", "prefix": "b-"},
        "batch_size": size,
    }


def _batch_records(message: dict[str, t.Any]) -> list[dict[str, t.Any]]:
    records = []
    for url in message["manifest"]:
        with gzip.open(urlsplit(url).path, "rt") as handle:
            records += [json.loads(line) for line in handle]
    return records


def _delivered(messages: list[dict[str, t.Any]], stream_name: str) -> list[t.Any]:
    """The ids a target got: RECORD messages and the records of BATCH files it was told of."""
    ids: list[t.Any] = []
    for message in messages:
        if message.get("stream") != stream_name:
            continue
        if message["type"] == "RECORD":
            ids.append(message["record"]["id"])
        elif message["type"] == "BATCH":
            ids += [r["id"] for r in _batch_records(message)]
    return ids


def test_batch_state_follows_its_batch_at_every_cut(
    server: t.Any, sync: t.Any, tmp_path: Path
) -> None:
    """Killed right after any STATE message, the resumed run completes the set exactly.

    Batches of 7 records over pages of 5 end in the middle of pages, so the position
    must say how much of a page a batch already holds.
    """
    _paged_route(server, pages=6, per_page=5)
    config = {"batch_config": _batch_config(tmp_path, 7), "streams": [_paged_stream(server)]}
    full = sync(config).messages
    everything = list(range(1, 31))
    assert sorted(_delivered(full, "paged")) == everything
    assert not [m for m in full if m["type"] == "RECORD"]
    cuts = [i for i, m in enumerate(full) if m["type"] == "STATE"]
    skips = set()
    for cut in cuts:
        before = full[: cut + 1]
        state = full[cut]["value"]
        entry = state["bookmarks"].get("paged", {}).get("rhttp")
        if entry:
            skips |= {c.get("skip", 0) for c in entry["chains"].values()}
        if sorted(_delivered(before, "paged")) == everything:
            assert entry is None  # the run is complete: a next run starts over
            continue
        resumed = sync(config, state=state).messages
        got = _delivered(before, "paged") + _delivered(resumed, "paged")
        assert sorted(got) == everything, (cut, state)  # none lost, none twice
    assert skips - {0}, "no batch ended mid-page: the test would not cover `skip`"


def test_batch_state_is_never_ahead_of_its_batch(
    server: t.Any, sync: t.Any, tmp_path: Path
) -> None:
    _paged_route(server, pages=4, per_page=5)
    config = {"batch_config": _batch_config(tmp_path, 10), "streams": [_paged_stream(server)]}
    messages = sync(config).messages
    kinds = [m["type"] for m in messages if m["type"] in ("BATCH", "STATE")]
    # each STATE that carries a position comes right after the BATCH it describes
    for i, message in enumerate(messages):
        if message["type"] == "STATE" and "rhttp" in json.dumps(message):
            assert messages[i - 1]["type"] == "BATCH"
    assert kinds.count("BATCH") == 2


def _last_state(messages: list[dict[str, t.Any]]) -> dict[str, t.Any]:
    return t.cast(
        "dict[str, t.Any]", next(m["value"] for m in reversed(messages) if m["type"] == "STATE")
    )


def test_sigkill_in_batch_mode_then_resume(server: t.Any, sync: t.Any, tmp_path: Path) -> None:
    _paged_route(server, pages=10, per_page=5, delay=0.1)
    config = {"batch_config": _batch_config(tmp_path, 8), "streams": [_paged_stream(server)]}
    killed = kill_when(config, tmp_path, lambda ms: sum(m["type"] == "BATCH" for m in ms) >= 3)
    state = _last_state(killed)
    assert "rhttp" in state["bookmarks"]["paged"]
    server.log.clear()
    resumed = sync(config, state=state).messages
    got = _delivered(killed, "paged") + _delivered(resumed, "paged")
    assert set(got) == set(range(1, 51))  # none lost
    # killed after a BATCH message and before its STATE: only that batch comes again
    last_state = max(i for i, m in enumerate(killed) if m["type"] == "STATE")
    unconfirmed = _delivered(killed[last_state:], "paged")
    assert len(unconfirmed) == 8
    assert sorted(got) == sorted([*range(1, 51), *unconfirmed])
    assert server.log[0].args["page"] != "1"


# ------------------------------------------------------------------ child streams


def _family_routes(
    server: t.Any, *, parent_pages: int, rows: int, child_pages: int, delay: float
) -> None:
    @server.route("/parents")
    def parents(request: Request) -> Reply:
        page = int(request.args.get("page", "1"))
        items = [{"id": (page - 1) * rows + i} for i in range(1, rows + 1)]
        return json_reply({"items": items, "next": page + 1 if page < parent_pages else None})

    @server.route("/kids/")
    def kids(request: Request) -> Reply:
        time.sleep(delay)
        parent = int(request.path.rsplit("/", 1)[1])
        page = int(request.args.get("page", "1"))
        items = [{"kid": f"{parent}-{page}-{i}", "n": i} for i in range(2)]
        return json_reply({"items": items, "next": page + 1 if page < child_pages else None})


def _family_config(server: t.Any, **child: t.Any) -> dict[str, t.Any]:
    return {
        "streams": [
            stream(
                "parents",
                server.url + "/parents",
                params={"page": 1},
                records_path="$.items[*]",
                page=NEXT_PAGE,
                page_limit=-1,
                primary_keys=["id"],
                schema={"properties": {"id": {"type": "integer"}}},
            ),
            stream(
                "kids",
                server.url + "/kids/{{ row['id'] }}",
                parent="parents",
                params={"page": 1},
                records_path="$.items[*]",
                page=NEXT_PAGE,
                page_limit=-1,
                primary_keys=["kid"],
                schema={"properties": {"kid": {"type": "string"}, "n": {"type": "integer"}}},
                **child,
            ),
        ]
    }


def _kid_requests(server: t.Any) -> list[tuple[int, int]]:
    return [
        (int(r.path.rsplit("/", 1)[1]), int(r.args.get("page", "1")))
        for r in server.log
        if r.path.startswith("/kids/")
    ]


def _ids(messages: list[dict[str, t.Any]], name: str, key: str) -> list[t.Any]:
    return [m["record"][key] for m in messages if m["type"] == "RECORD" and m["stream"] == name]


@pytest.mark.parametrize("concurrency", [1, 3])
def test_sigkill_mid_child_then_resume(
    server: t.Any, sync: t.Any, tmp_path: Path, concurrency: int
) -> None:
    """A child killed mid-way resumes: finished rows are not fetched again, nothing is lost,
    nothing doubled beyond the one child page in flight per chain."""
    _family_routes(server, parent_pages=3, rows=4, child_pages=3, delay=0.05)
    config = _family_config(server, max_concurrency=concurrency)
    all_kids = {f"{p}-{page}-{i}" for p in range(1, 13) for page in (1, 2, 3) for i in range(2)}

    def mid_second_parent_page(messages: list[dict[str, t.Any]]) -> bool:
        kids = _ids(messages, "kids", "kid")
        return len(kids) >= 2 * 3 * 4 + 7  # the first page's rows, and part of the second

    killed = kill_when(config, tmp_path, mid_second_parent_page)
    state = _last_state(killed)
    kids_state = state["bookmarks"]["kids"]["rhttp"]
    assert kids_state["page"]["number"] == 2  # the parent page whose rows are in progress
    assert state["bookmarks"]["parents"]["rhttp"]["chains"]["-"]["params"]["page"] == 2
    first_kids = _ids(killed, "kids", "kid")
    # what the kill left finished: (parent row, child page) pairs whose records were emitted
    emitted = {(int(k.split("-")[0]), int(k.split("-")[1])) for k in first_kids}

    server.log.clear()
    resumed = sync(config, state=state)
    second_kids = [r["kid"] for r in resumed.records("kids")]
    assert set(first_kids) | set(second_kids) == all_kids  # nothing lost
    doubled = len(first_kids) + len(second_kids) - len(all_kids)
    assert 0 <= doubled <= 2 * concurrency  # at most the page in flight of each chain
    again = [pair for pair in _kid_requests(server) if pair in emitted]
    assert len(again) <= concurrency, again  # finished rows and pages are not fetched again
    parents = _ids(killed, "parents", "id") + [r["id"] for r in resumed.records("parents")]
    assert sorted(parents) == list(range(1, 13))  # each parent record exactly once
    final = resumed.of_type("STATE")[-1]["value"]["bookmarks"]
    assert "rhttp" not in final["kids"]
    assert "rhttp" not in final["parents"]


def test_child_state_stays_bounded_for_many_parent_rows(server: t.Any, sync: t.Any) -> None:
    rows = ROW_WINDOW * 2 + 50
    _family_routes(server, parent_pages=1, rows=rows, child_pages=1, delay=0)
    result = sync(_family_config(server, max_concurrency=4))
    assert len(result.records("kids")) == rows * 2
    sizes = [
        len(json.dumps(m["value"]["bookmarks"].get("kids", {}).get("rhttp", {})))
        for m in result.of_type("STATE")
    ]
    # one entry per finished row would pass 6 kB here; the window keeps it far below
    assert max(sizes) < 4000, max(sizes)
    assert len(result.of_type("SCHEMA")) < 10  # one sync per window of rows, not per row


def test_child_state_lists_no_row_its_count_covers(server: t.Any, sync: t.Any) -> None:
    """A row finished in order is counted in `rows` only, never listed in `done` too (a
    row's last page and its chain's end both finish it)."""
    _family_routes(server, parent_pages=2, rows=5, child_pages=2, delay=0)
    result = sync(_family_config(server, max_concurrency=1))
    assert len(result.records("kids")) == 10 * 2 * 2
    pages = [
        m["value"]["bookmarks"]["kids"]["rhttp"]["page"]
        for m in result.of_type("STATE")
        if "page" in m["value"]["bookmarks"].get("kids", {}).get("rhttp", {})
    ]
    assert pages
    for page in pages:
        assert all(int(done) >= page["rows"] for done in page["done"]), page
    assert not any(page["done"] for page in pages)  # one row at a time: always in order


def test_resume_of_a_child_whose_parent_page_changed_runs_its_rows_again(
    server: t.Any, sync: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    _family_routes(server, parent_pages=1, rows=3, child_pages=1, delay=0)
    config = _family_config(server)
    first = sync(config)
    saved = next(
        m["value"]
        for m in first.of_type("STATE")
        if m["value"]["bookmarks"].get("kids", {}).get("rhttp", {}).get("page", {}).get("rows")
    )
    saved = json.loads(json.dumps(saved))
    saved["bookmarks"]["kids"]["rhttp"]["page"]["digest"] = "0" * 16
    server.log.clear()
    kids = [r["kid"] for r in sync(config, state=saved).records("kids")]
    assert sorted(kids) == sorted(f"{p}-1-{i}" for p in (1, 2, 3) for i in range(2))
    assert "has other rows now" in caplog.text


# ------------------------------------------------------------------ concurrent children


def test_child_max_concurrency_runs_rows_at_once(server: t.Any, sync: t.Any) -> None:
    server.state["active"] = 0
    server.state["peak"] = 0

    @server.route("/slow-kid/")
    def slow_kid(request: Request) -> Reply:
        with server._lock:
            server.state["active"] += 1
            server.state["peak"] = max(server.state["peak"], server.state["active"])
        time.sleep(0.08)
        with server._lock:
            server.state["active"] -= 1
        parent = int(request.path.rsplit("/", 1)[1])
        page = int(request.args.get("page", "1"))
        return json_reply(
            {"items": [{"kid": f"{parent}-{page}"}], "next": page + 1 if page < 2 else None}
        )

    config = {
        "streams": [
            stream("data", server.url + "/records?n=8", primary_keys=["id"]),
            stream(
                "kids",
                server.url + "/slow-kid/{{ row['id'] }}",
                parent="data",
                params={"page": 1},
                records_path="$.items[*]",
                page=NEXT_PAGE,
                page_limit=-1,
                max_concurrency=4,
            ),
        ]
    }
    started = time.monotonic()
    result = sync(config)
    elapsed = time.monotonic() - started
    kids = [r["kid"] for r in result.records("kids")]
    assert sorted(kids) == sorted(f"{p}-{page}" for p in range(1, 9) for page in (1, 2))
    for p in range(1, 9):  # each chain's records in order
        assert [k for k in kids if k.startswith(f"{p}-")] == [f"{p}-1", f"{p}-2"]
    assert [r["data_id"] for r in result.records("kids")].count(1) == 2
    assert server.state["peak"] == 4
    assert elapsed < 16 * 0.08  # overlapped, not one request after another


ROWS = 4  # parent rows per page in the pipelined family below


def _pipelined_family(
    server: t.Any, *, pages: int = 3, method: str = "GET", release: bool = True
) -> dict[str, t.Any]:
    """A parent of `pages` pages of ROWS rows; a child page of two records per row whose
    first row (parent id 1) is held until every row of the second parent page was asked
    for (`server.state["overlapped"]`): only a child that starts the next parent page's
    rows before the current page's are done gets past it (else it waits 20 s). Without
    `release`, it stays held until `server.state["gate"]` is set."""
    gate = threading.Event()
    server.state.update(gate=gate, overlapped=False, kid_requests=[])

    @server.route("/pp")
    def parents(request: Request) -> Reply:
        page = int(request.args.get("page", "1"))
        items = [{"id": (page - 1) * ROWS + i} for i in range(1, ROWS + 1)]
        return json_reply({"items": items, "next": page + 1 if page < pages else None})

    @server.route("/pk/")
    def kids(request: Request) -> Reply:
        parent = int(request.path.rsplit("/", 1)[1])
        with server._lock:
            server.state["kid_requests"].append(parent)
            asked = set(server.state["kid_requests"])
        if set(range(ROWS + 1, 2 * ROWS + 1)) <= asked and not server.state["overlapped"]:
            server.state["overlapped"] = not gate.is_set()
            if release:
                gate.set()
        if parent == 1:
            gate.wait(timeout=20)
        return json_reply({"items": [{"kid": f"{parent}-{i}", "n": i} for i in range(2)]})

    return {
        "streams": [
            stream(
                "parents",
                server.url + "/pp",
                params={"page": 1},
                records_path="$.items[*]",
                page=NEXT_PAGE,
                page_limit=-1,
                primary_keys=["id"],
                schema={"properties": {"id": {"type": "integer"}}},
            ),
            stream(
                "kids",
                server.url + "/pk/{{ row['id'] }}",
                parent="parents",
                method=method,
                records_path="$.items[*]",
                primary_keys=["kid"],
                max_concurrency=3,
                schema={"properties": {"kid": {"type": "string"}, "n": {"type": "integer"}}},
            ),
        ]
    }


def _check_family_order(messages: list[dict[str, t.Any]], pages: int) -> None:
    """Each parent page's child records come after the previous parent page's records and
    before its own; each child chain's records in order."""
    records = [(m["stream"], m["record"]) for m in messages if m["type"] == "RECORD"]
    parent_at = {r["id"]: i for i, (name, r) in enumerate(records) if name == "parents"}
    for i, (name, record) in enumerate(records):
        if name != "kids":
            continue
        parent = int(record["kid"].split("-")[0])
        page = (parent - 1) // ROWS
        assert i < min(parent_at[page * ROWS + r] for r in range(1, ROWS + 1)), record
        if page:
            assert i > max(parent_at[(page - 1) * ROWS + r] for r in range(1, ROWS + 1)), record
    kids = [r["kid"] for name, r in records if name == "kids"]
    for parent in range(1, pages * ROWS + 1):  # (a resumed run has only some chains)
        assert [k for k in kids if k.startswith(f"{parent}-")] in (
            [],
            [f"{parent}-0", f"{parent}-1"],
        )


def test_a_childs_next_parent_page_starts_before_the_current_one_is_done(
    server: t.Any, sync: t.Any
) -> None:
    """The rows of the next parent page run while the current page's last rows do, and
    the output keeps its order: a parent page's child records, then its own records."""
    config = _pipelined_family(server)
    result = sync(config)
    assert server.state["overlapped"], "the next parent page's rows waited for this page's"
    kids = [r["kid"] for r in result.records("kids")]
    assert sorted(kids) == sorted(f"{p}-{i}" for p in range(1, 3 * ROWS + 1) for i in range(2))
    assert sorted(r["id"] for r in result.records("parents")) == list(range(1, 3 * ROWS + 1))
    _check_family_order(result.messages, pages=3)
    assert sorted(server.state["kid_requests"]) == list(range(1, 3 * ROWS + 1))  # each once
    final = result.of_type("STATE")[-1]["value"]["bookmarks"]
    assert "rhttp" not in final["kids"]
    assert "rhttp" not in final["parents"]


def test_a_parent_page_without_rows_between_pages_with_rows(server: t.Any, sync: t.Any) -> None:
    """A parent page whose rows are all filtered out (or that has none) starts nothing."""

    @server.route("/gappy")
    def gappy(request: Request) -> Reply:
        page = int(request.args.get("page", "1"))
        items = [] if page in (2, 4) else [{"id": page * 10 + i} for i in range(3)]
        return json_reply({"items": items, "next": page + 1 if page < 5 else None})

    @server.route("/gappy-kids/")
    def gappy_kids(request: Request) -> Reply:
        return json_reply([{"kid": int(request.path.rsplit("/", 1)[1])}])

    config = {
        "streams": [
            stream(
                "parents",
                server.url + "/gappy",
                params={"page": 1},
                records_path="$.items[*]",
                page=NEXT_PAGE,
                page_limit=-1,
                primary_keys=["id"],
                schema={"properties": {"id": {"type": "integer"}}},
            ),
            stream(
                "kids",
                server.url + "/gappy-kids/{{ row['id'] }}",
                parent="parents",
                max_concurrency=3,
                schema={"properties": {"kid": {"type": "integer"}}},
            ),
        ]
    }
    result = sync(config)
    expected = [p * 10 + i for p in (1, 3, 5) for i in range(3)]
    assert sorted(r["kid"] for r in result.records("kids")) == expected
    assert sorted(r["id"] for r in result.records("parents")) == expected


def test_a_child_with_an_unsafe_method_waits_for_its_parent_page(
    server: t.Any, sync: t.Any
) -> None:
    """A POST is never made before its turn: the next parent page's rows wait for the
    current page's (the held row is let go by hand, once the others were asked for)."""
    config = _pipelined_family(server, pages=2, method="POST")
    gate: threading.Event = server.state["gate"]

    def open_gate() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(server.state["kid_requests"]) < ROWS:
            time.sleep(0.01)
        time.sleep(0.2)  # the row's chains had their chance to run ahead
        gate.set()

    opener = threading.Thread(target=open_gate)
    opener.start()
    result = sync(config)
    opener.join()
    assert not server.state["overlapped"]
    assert sorted(server.state["kid_requests"][:ROWS]) == list(range(1, ROWS + 1))
    assert len(result.records("kids")) == 2 * ROWS * 2
    _check_family_order(result.messages, pages=2)


def _bookmarked_family(server: t.Any, concurrency: int) -> dict[str, t.Any]:
    """The pipelined family, its child incremental and reading its bookmark in its URL."""

    @server.route("/inc-kids/")
    def inc_kids(request: Request) -> Reply:
        parent = int(request.path.rsplit("/", 1)[1])
        return json_reply([{"kid": str(parent), "n": parent, "since": request.args["since"]}])

    config = _pipelined_family(server)
    server.state["gate"].set()  # (no row is held here)
    kids = config["streams"][1]
    del kids["records_path"]
    kids.update(
        url=server.url + "/inc-kids/{{ row['id'] }}?since={{ bookmark }}",
        replication_key="n",
        max_concurrency=concurrency,
        schema={
            "properties": {
                "kid": {"type": "string"},
                "n": {"type": "integer"},
                "since": {"type": "string"},
            }
        },
    )
    return config


def test_a_child_reading_its_bookmark_renders_the_bookmark_of_its_sync(
    server: t.Any, sync: t.Any
) -> None:
    """A child whose URL reads its bookmark gets the same requests and records with
    max_concurrency 3 as one row at a time, in a first run and in an incremental one."""
    runs = {}
    for concurrency in (1, 3):
        config = _bookmarked_family(server, concurrency)
        first = sync(config)
        state = first.of_type("STATE")[-1]["value"]
        server.log.clear()
        second = sync(config, state=state)
        asked = {r.args["since"] for r in server.log if r.path.startswith("/inc-kids/")}
        assert asked == {str(3 * ROWS)}  # the second run's requests carry its bookmark
        runs[concurrency] = [
            sorted((r["kid"], r["since"]) for r in result.records("kids"))
            for result in (first, second)
        ]
    assert runs[3] == runs[1]
    assert {since for _, since in runs[1][0]} == {""}
    assert runs[1][1] == []  # every record is at or before the bookmark now


def test_a_child_reading_its_bookmark_starts_no_row_ahead(server: t.Any) -> None:
    """A child whose templates read the bookmark waits for each parent page's turn: its
    sync decides the bookmark."""
    run = RunContext(_bookmarked_family(server, 3)).stream("kids")
    resume = run.resume_state(None)
    assert isinstance(resume, ChildResume)
    try:
        assert run.start_rows(resume, "-", 1, iter([{"id": 1}])) is None
    finally:
        run.close_workers()
    plain = RunContext(_pipelined_family(server)).stream("kids")
    server.state["gate"].set()  # (no row is held here)
    try:
        started = plain.start_rows(resume, "-", 1, iter([{"id": 1}, {"id": 2}]))
        assert started is not None
        assert started.whole
        assert [task.key for task in started.tasks] == ["0", "1"]
        assert sorted(e.task.key for e in started.batch.events() if e.page is None) == ["0", "1"]
    finally:
        plain.close_workers()


def test_sigkill_while_the_next_parent_pages_children_run_ahead(
    server: t.Any, sync: t.Any, tmp_path: Path
) -> None:
    """Killed while the next parent page's child records are fetched but not yet written
    (the current page still waits for a row): the resumed run loses and repeats nothing."""
    config = _pipelined_family(server, release=False)
    process = popen_tap(config, tmp_path)
    try:
        deadline = time.monotonic() + 20
        while not server.state["overlapped"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.state["overlapped"]
        process.send_signal(signal.SIGKILL)
        out, _ = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    killed = [json.loads(line) for line in out.splitlines()]
    first_kids = _ids(killed, "kids", "kid")
    assert not any(int(k.split("-")[0]) > ROWS for k in first_kids)  # not written yet
    assert first_kids  # the first page's other rows were written, each with its STATE
    state = _last_state(killed)
    assert state["bookmarks"]["kids"]["rhttp"]["page"]["number"] == 1
    server.state["gate"].set()
    server.log.clear()
    resumed = sync(config, state=state)
    kids = first_kids + [r["kid"] for r in resumed.records("kids")]
    assert sorted(kids) == sorted(f"{p}-{i}" for p in range(1, 3 * ROWS + 1) for i in range(2))
    parents = _ids(killed, "parents", "id") + [r["id"] for r in resumed.records("parents")]
    assert sorted(parents) == list(range(1, 3 * ROWS + 1))
    _check_family_order(resumed.messages, pages=3)


def test_child_concurrency_shares_the_rate_limit(server: t.Any, sync: t.Any) -> None:
    config = {
        "streams": [
            stream("data", server.url + "/records?n=6", primary_keys=["id"]),
            stream(
                "kids",
                server.url + "/echo/{{ row['id'] }}",
                parent="data",
                max_concurrency=6,
                rate_limit=10,
            ),
        ]
    }
    started = time.monotonic()
    result = sync(config)
    elapsed = time.monotonic() - started
    assert len(result.records("kids")) == 6
    assert elapsed >= 5 / 10 * 0.9  # 6 requests at 10/s, whatever the concurrency


def test_batch_with_children_at_every_cut(server: t.Any, sync: t.Any, tmp_path: Path) -> None:
    """Parent and child in BATCH mode: killed after any STATE, the union is exact."""
    _family_routes(server, parent_pages=3, rows=3, child_pages=2, delay=0)
    config = {"batch_config": _batch_config(tmp_path, 5), **_family_config(server)}
    config["streams"][1]["max_concurrency"] = 2
    full = sync(config).messages
    parents = list(range(1, 10))
    kids = sorted(f"{p}-{page}-{i}" for p in parents for page in (1, 2) for i in range(2))

    def delivered(messages: list[dict[str, t.Any]], name: str, key: str) -> list[t.Any]:
        out = []
        for m in messages:
            if m["type"] == "BATCH" and m["stream"] == name:
                out += [r[key] for r in _batch_records(m)]
        return out

    assert sorted(delivered(full, "parents", "id")) == parents
    assert sorted(delivered(full, "kids", "kid")) == kids
    cuts = [i for i, m in enumerate(full) if m["type"] == "STATE"]
    for cut in cuts[:-1]:
        before, state = full[: cut + 1], full[cut]["value"]
        if sorted(delivered(before, "parents", "id")) == parents:
            continue  # the parent is complete: a next run starts over
        resumed = sync(config, state=state).messages
        got_parents = delivered(before, "parents", "id") + delivered(resumed, "parents", "id")
        got_kids = delivered(before, "kids", "kid") + delivered(resumed, "kids", "kid")
        assert sorted(got_parents) == parents, (cut, state)
        assert sorted(got_kids) == kids, (cut, state)


def test_grandchildren_resume(server: t.Any, sync: t.Any) -> None:
    """A child's own children are driven by it, a child page at a time, and resume too."""
    _family_routes(server, parent_pages=2, rows=2, child_pages=2, delay=0)

    @server.route("/toys/")
    def toys(request: Request) -> Reply:
        kid = request.path.rsplit("/", 1)[1]
        return json_reply([{"toy": f"{kid}/t"}])

    config = _family_config(server)
    config["streams"].append(
        stream(
            "toys",
            server.url + "/toys/{{ row['kid'] }}",
            parent="kids",
            primary_keys=["toy"],
            parent_keys={"kid": "kid"},
        )
    )
    full = sync(config)
    kids = [r["kid"] for r in full.records("kids")]
    toys_seen = [r["toy"] for r in full.records("toys")]
    assert sorted(toys_seen) == sorted(f"{k}/t" for k in kids)
    assert len(kids) == 4 * 2 * 2
    cuts = [
        m["value"]
        for m in full.of_type("STATE")
        if "rhttp" in m["value"]["bookmarks"].get("toys", {})
    ]
    assert cuts
    for state in cuts[:: max(1, len(cuts) // 6)]:
        index = full.messages.index({"type": "STATE", "value": state})
        before = full.messages[: index + 1]
        server.log.clear()
        resumed = sync(config, state=state)
        got = _ids(before, "toys", "toy") + [r["toy"] for r in resumed.records("toys")]
        assert sorted(got) == sorted(toys_seen), state


def test_child_and_batch_positions_hold_no_secret(
    server: t.Any, sync: t.Any, tmp_path: Path
) -> None:
    _family_routes(server, parent_pages=2, rows=3, child_pages=3, delay=0)
    config = _family_config(server, max_concurrency=2)
    config["streams"][1]["params"] = {"page": 1, "api_key": "k-child-SECRET-7"}
    config["batch_config"] = _batch_config(tmp_path, 4)
    messages = sync(config).messages
    states = [m for m in messages if m["type"] == "STATE"]
    positions = [
        m["value"]["bookmarks"]["kids"]["rhttp"]
        for m in states
        if m["value"]["bookmarks"].get("kids", {}).get("rhttp", {}).get("chains")
    ]
    assert positions  # the test saw child positions in flight
    assert "k-child-SECRET-7" not in json.dumps(states)
    assert all("api_key" not in json.dumps(p["chains"]) for p in positions)
