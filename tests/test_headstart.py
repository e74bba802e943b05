"""The head start: a plain sync's first stream starts fetching before singer-sdk loads.

What must hold: it only runs when the command line, config, catalog and STATE make its
use certain; it never makes a request for a config with errors; the stream takes its
chains over only when they are exactly its own; pages in waiting are bounded; and the
output is the same, every record once, with no page fetched twice.
"""

from __future__ import annotations

import decimal
import json
import logging
import subprocess
import sys
import textwrap
import time
import typing as t

import pytest
from server import Request, json_reply

from tap_rhttp import headstart
from tap_rhttp.errors import PermanentRequestError
from tap_rhttp.fanout import chain_tasks
from tap_rhttp.redact import build_redactor
from tap_rhttp.spec import load_specs
from tap_rhttp.templates import render_spec, template_context, template_env

if t.TYPE_CHECKING:
    from pathlib import Path


def stream(name: str, url: str, **spec: t.Any) -> dict[str, t.Any]:
    spec.setdefault("reattempts", 1)
    return {"name": name, "url": url, **spec}


def write(path: Path, value: t.Any) -> str:
    path.write_text(json.dumps(value))
    return str(path)


def linked(server: t.Any, total: int, per: int = 2, **spec: t.Any) -> dict[str, t.Any]:
    url = f"{server.url}/pages/link?per_page={per}&total={total}"
    return stream("items", url, page="link-next", page_limit=-1, **spec)


def catalog_of(*entries: tuple[str, bool | None]) -> dict[str, t.Any]:
    streams = []
    for name, selected in entries:
        meta: dict[str, t.Any] = {"inclusion": "available"}
        if selected is not None:
            meta["selected"] = selected
        streams.append(
            {
                "tap_stream_id": name,
                "stream": name,
                "schema": {"type": "object", "properties": {}},
                "metadata": [{"breadcrumb": [], "metadata": meta}],
            }
        )
    return {"streams": streams}


@pytest.fixture
def stopped() -> t.Iterator[list[headstart.HeadStart]]:
    """Head starts a test makes; each is stopped at the end whatever happens."""
    made: list[headstart.HeadStart] = []
    yield made
    for head in made:
        head.stop()
    headstart._current = None


# ------------------------------------------------------------------ when it runs


def test_a_plain_sync_gets_one_for_its_first_stream(tmp_path: Path) -> None:
    config = {"streams": [stream("a", "http://127.0.0.1:9/a"), stream("b", "http://127.0.0.1:9/b")]}
    found = headstart.plan(["--config", write(tmp_path / "c.json", config)])
    assert isinstance(found, headstart.Plan)
    assert found.spec.name == "a"
    assert [s.name for s in found.specs] == ["a", "b"]


def test_config_files_merge_in_order_and_equals_forms_are_read(tmp_path: Path) -> None:
    first = write(tmp_path / "1.json", {"streams": [stream("a", "http://127.0.0.1:9/a")]})
    second = write(tmp_path / "2.json", {"streams": [stream("z", "http://127.0.0.1:9/z")]})
    found = headstart.plan([f"--config={first}", "--config", second])
    assert isinstance(found, headstart.Plan)
    assert found.spec.name == "z"


def test_a_child_listed_first_is_not_the_first_stream(tmp_path: Path) -> None:
    config = {
        "streams": [
            stream("kid", "http://127.0.0.1:9/k", parent="mum"),
            stream("mum", "http://127.0.0.1:9/m", primary_keys=["id"]),
        ]
    }
    found = headstart.plan(["--config", write(tmp_path / "c.json", config)])
    assert isinstance(found, headstart.Plan)
    assert found.spec.name == "mum"


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (["--discover"], "'--discover' is not an option of a plain sync"),
        (["--test"], "'--test' is not an option of a plain sync"),
        (["--about"], "'--about' is not an option of a plain sync"),
        (["--explain"], "'--explain' is not an option of a plain sync"),
        (["--help"], "'--help' is not an option of a plain sync"),
        (["--config", "ENV"], "settings come from the environment (--config ENV)"),
        (["--state"], "--state has no value"),
        (["--catalog", "x", "--catalog", "y"], "--state or --catalog given twice"),
    ],
)
def test_other_command_lines_get_none(tmp_path: Path, extra: list[str], reason: str) -> None:
    config = write(tmp_path / "c.json", {"streams": [stream("a", "http://127.0.0.1:9/a")]})
    assert headstart.plan(["--config", config, *extra]) == reason


def test_no_config_gets_none() -> None:
    assert headstart.plan([]) == "no --config"


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"streams": [stream("a", "http://127.0.0.1:9/a", method="POST")]}, "not a safe method"),
        ({"streams": [stream("a", "http://127.0.0.1:9/a", timeout=-1)]}, "the config has errors"),
        ({"streams": [stream("a", "ftp://127.0.0.1:9/a")]}, "the config has errors"),
        (
            {"streams": [stream("a", "http://127.0.0.1:9/a")], "stream_maps": {"a": {}}},
            "singer-sdk settings are set (stream_maps)",
        ),
        (
            {"streams": [stream("a", "http://127.0.0.1:9/a")], "flattening_max_depth": "x"},
            "singer-sdk settings are set (flattening_max_depth)",
        ),
        (
            {
                "streams": [
                    stream(
                        "a",
                        "http://127.0.0.1:9/a",
                        replication_key="t",
                        params={"since": "{{ bookmark }}"},
                    )
                ]
            },
            "templates read the bookmark",
        ),
        ([1, 2], "is not a JSON object"),
    ],
)
def test_configs_that_get_none(tmp_path: Path, config: t.Any, reason: str) -> None:
    found = headstart.plan(["--config", write(tmp_path / "c.json", config)])
    assert isinstance(found, str)
    assert reason in found


def test_a_head_request_or_an_unread_bookmark_still_gets_one(tmp_path: Path) -> None:
    config = {
        "streams": [
            stream("a", "http://127.0.0.1:9/a", method="HEAD"),
            stream(
                "b", "http://127.0.0.1:9/b", replication_key="t", params={"x": "{{ config['k'] }}"}
            ),
        ],
        "k": 1,
    }
    path = write(tmp_path / "c.json", config)
    assert isinstance(headstart.plan(["--config", path]), headstart.Plan)
    catalog = write(tmp_path / "cat.json", catalog_of(("a", False), ("b", True)))
    found = headstart.plan(["--config", path, "--catalog", catalog])
    assert isinstance(found, headstart.Plan)
    assert found.spec.name == "b"


def test_unreadable_files_get_none(tmp_path: Path) -> None:
    assert headstart.plan(["--config", str(tmp_path / "missing.json")]) == (
        "a file could not be read (FileNotFoundError)"
    )
    (tmp_path / "bad.json").write_text("{not json")
    assert headstart.plan(["--config", str(tmp_path / "bad.json")]) == (
        "a file could not be read (JSONDecodeError)"
    )


def test_state_with_a_resume_position_gets_none(tmp_path: Path) -> None:
    config = write(tmp_path / "c.json", {"streams": [stream("a", "http://127.0.0.1:9/a")]})
    bookmark = write(tmp_path / "s1.json", {"bookmarks": {"a": {"replication_key_value": 3}}})
    assert isinstance(headstart.plan(["--config", config, "--state", bookmark]), headstart.Plan)
    resume = write(tmp_path / "s2.json", {"bookmarks": {"a": {"rhttp": {"spec": "x"}}}})
    assert headstart.plan(["--config", config, "--state", resume]) == (
        "STATE holds a resume position for stream a"
    )


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([("a", True), ("b", True)], "a"),
        ([("a", False), ("b", True)], "b"),
        ([("a", None), ("b", True)], "the catalog does not say whether stream a runs"),
        ([("b", True)], "the catalog does not say whether stream a runs"),
        ([("a", False), ("b", False)], "no stream is selected"),
    ],
)
def test_the_catalog_decides_which_stream_is_first(
    tmp_path: Path, entries: list[tuple[str, bool | None]], expected: str
) -> None:
    config = {"streams": [stream("a", "http://127.0.0.1:9/a"), stream("b", "http://127.0.0.1:9/b")]}
    found = headstart.plan(
        [
            "--config",
            write(tmp_path / "c.json", config),
            "--catalog",
            write(tmp_path / "cat.json", catalog_of(*entries)),
        ]
    )
    assert (found.spec.name if isinstance(found, headstart.Plan) else found) == expected


def test_a_parent_that_runs_only_for_its_selected_child_gets_none(tmp_path: Path) -> None:
    config = {
        "streams": [
            stream("mum", "http://127.0.0.1:9/m", primary_keys=["id"]),
            stream("kid", "http://127.0.0.1:9/k", parent="mum"),
        ]
    }
    found = headstart.plan(
        [
            "--config",
            write(tmp_path / "c.json", config),
            "--catalog",
            write(tmp_path / "cat.json", catalog_of(("mum", False), ("kid", True))),
        ]
    )
    assert found == "stream mum runs only for its children"


# ------------------------------------------------------------------ running and taking over


def start(config: dict[str, t.Any], tmp_path: Path, **bounds: int) -> headstart.HeadStart:
    found = headstart.plan(["--config", write(tmp_path / "c.json", config)])
    assert isinstance(found, headstart.Plan), found
    head = headstart.HeadStart(found, **bounds)
    head.start()
    return head


def wait_for(condition: t.Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def own_tasks(head: headstart.HeadStart, config: dict[str, t.Any]) -> list[t.Any]:
    """The tasks the stream would build itself, from its own load of the config."""
    specs = load_specs(config)
    spec = next(s for s in specs if s.name == head.spec.name)
    return chain_tasks(spec, template_context(config), build_redactor(specs))


def ids(events: t.Iterable[t.Any]) -> list[int]:
    return [r["id"] for e in events if e.page is not None for r in e.page.iter_records()]


def test_pages_in_waiting_are_bounded_until_the_stream_takes_over(
    server: t.Any, tmp_path: Path, stopped: list[headstart.HeadStart]
) -> None:
    config = {"streams": [linked(server, total=40)]}
    head = start(config, tmp_path, max_pages=3)
    stopped.append(head)
    wait_for(lambda: len(server.log) >= 4)
    time.sleep(0.5)  # time enough for 20 pages, were they not held back
    # three held, one in the pump's hand, one read ahead by the chain
    assert len(server.log) <= 5
    headstart._current = head
    taken = headstart.take("items", own_tasks(head, config), logging.getLogger("test"))
    assert taken is not None
    assert ids(taken[1]) == list(range(1, 41))
    assert len(server.log) == 20  # every page once
    head._thread.join(timeout=5)  # the pump handed the rest to this thread and ended
    assert not head._thread.is_alive()


def test_discovery_reads_the_first_page_and_the_sync_still_gets_it(
    server: t.Any, tmp_path: Path, stopped: list[headstart.HeadStart]
) -> None:
    config = {
        "streams": [
            stream(
                "items",
                server.url + "/pages/link?per_page=1&total=30&c={{ item }}",
                page="link-next",
                page_limit=-1,
                for_each=["x", "y", "z"],
                max_concurrency=3,
            )
        ]
    }
    head = start(config, tmp_path, max_pages=1)
    stopped.append(head)
    wait_for(lambda: len(server.log) >= 3)
    time.sleep(0.2)
    spec = load_specs(config)[0]
    rendered = render_spec(spec, template_env(spec, template_context(config), item="x"))
    page = head.first_page(rendered)
    assert page is not None
    assert page.request.target.endswith("c=x")
    assert [r["id"] for r in page.iter_records()] == [1]
    other = render_spec(spec, template_env(spec, template_context(config), item="y"))
    assert head.first_page(other) is None  # not the chain discovery samples
    headstart._current = head
    taken = headstart.take("items", own_tasks(head, config), logging.getLogger("test"))
    assert taken is not None
    events = list(taken[1])
    for key in ("0", "1", "2"):  # each chain in order, complete, once
        assert ids(e for e in events if e.task.key == key) == list(range(1, 31))
    assert len(server.log) == 90


def test_a_failed_first_request_fails_discovery_with_its_error(
    server: t.Any, tmp_path: Path, stopped: list[headstart.HeadStart]
) -> None:
    config = {"streams": [stream("items", server.url + "/status/404")]}
    head = start(config, tmp_path)
    stopped.append(head)
    with pytest.raises(PermanentRequestError, match="404"):
        head.first_page(load_specs(config)[0])


def test_chains_that_differ_are_not_taken_and_the_head_start_stops(
    server: t.Any, tmp_path: Path, stopped: list[headstart.HeadStart], caplog: t.Any
) -> None:
    @server.route("/slow-pages")
    def slow(request: Request) -> t.Any:
        time.sleep(0.05)
        page = int(request.args.get("p", "1"))
        return json_reply(
            [{"id": page}], headers=[("Link", f"</slow-pages?p={page + 1}>; rel=next")]
        )

    config = {
        "streams": [stream("items", server.url + "/slow-pages", page="link-next", page_limit=-1)]
    }
    head = start(config, tmp_path)
    stopped.append(head)
    headstart._current = head
    wait_for(lambda: len(server.log) >= 2)
    changed = {
        "streams": [
            stream("items", server.url + "/slow-pages?v=2", page="link-next", page_limit=-1)
        ]
    }
    with caplog.at_level(logging.INFO):
        assert headstart.take("items", own_tasks(head, changed), logging.getLogger("test")) is None
    assert headstart.current() is None
    assert "the head start was not used (the stream's chains differ" in caplog.text
    time.sleep(0.3)  # a request in flight may finish; then nothing more
    settled = len(server.log)
    time.sleep(0.5)
    assert len(server.log) == settled


def test_its_log_lines_wait_for_the_stream_and_are_redacted(
    server: t.Any, tmp_path: Path, stopped: list[headstart.HeadStart], caplog: t.Any
) -> None:
    @server.route("/flaky")
    def flaky(request: Request) -> t.Any:
        server.state["n"] = server.state.get("n", 0) + 1
        if server.state["n"] == 1:
            return json_reply({"error": "busy"}, status=503, headers=[("Retry-After", "0")])
        return json_reply([{"id": 1}])

    config = {
        "streams": [
            stream(
                "items",
                server.url + "/flaky",
                reattempts=2,
                auth={"type": "api_key", "name": "key", "value": "s3cr3t-v4lue", "in": "query"},
            )
        ]
    }
    head = start(config, tmp_path)
    stopped.append(head)
    wait_for(lambda: len(server.log) >= 2)
    wait_for(lambda: head.stats.pages == 1)
    assert len(head.relay.held) == 1  # the retry warning, held
    target = logging.getLogger("tap-rhttp.test-headstart")
    with caplog.at_level(logging.WARNING, logger=target.name):
        headstart._current = head
        taken = headstart.take("items", own_tasks(head, config), target)
        assert taken is not None
        assert ids(taken[1]) == [1]
    lines = [r for r in caplog.records if r.name == target.name]
    assert len(lines) == 1
    assert "try 1 of 2 failed" in lines[0].getMessage()
    assert "s3cr3t-v4lue" not in caplog.text
    assert "key=" in caplog.text  # the URL is there, its secret masked


# ------------------------------------------------------------------ the command


def test_requests_go_out_before_singer_sdk_is_imported(server: t.Any, tmp_path: Path) -> None:
    config = write(tmp_path / "c.json", {"streams": [linked(server, total=6)]})
    script = textwrap.dedent(
        f"""
        import sys, time
        from tap_rhttp import headstart
        head = headstart.begin(["--config", {config!r}])
        assert head is not None
        deadline = time.monotonic() + 10
        while head.stats.pages < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        print(head.stats.pages, "singer_sdk" in sys.modules)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "False"]
    assert len(server.log) == 3


def test_a_sync_with_a_head_start_fetches_each_page_once(server: t.Any, cli: t.Any) -> None:
    result = cli({"streams": [linked(server, total=9, primary_keys=["id"])]})
    assert result.code == 0, result.stderr
    records = [m["record"]["id"] for m in result.messages() if m["type"] == "RECORD"]
    assert records == list(range(1, 10))
    assert len(server.log) == 5  # the schema sample is the head start's first page
    assert "taking over 1 chain(s) started while the tap loaded" in result.stderr
    kinds = [m["type"] for m in result.messages()]
    assert kinds.index("SCHEMA") < kinds.index("RECORD")


def test_a_config_error_makes_no_request(server: t.Any, cli: t.Any) -> None:
    bad = {"streams": [linked(server, total=9)], "flattening_max_depth": "deep"}
    result = cli(bad)
    assert result.code != 0
    assert "flattening_max_depth" in result.stderr
    assert server.log == []


def test_a_deselected_first_stream_is_not_fetched(
    server: t.Any, tmp_path: Path, cli: t.Any
) -> None:
    config = {
        "streams": [
            linked(server, total=4),
            stream("other", server.url + "/records?n=2"),
        ]
    }
    catalog = catalog_of(("items", False), ("other", True))
    catalog["streams"][1]["schema"] = {
        "type": "object",
        "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
    }
    result = cli(config, "--catalog", write(tmp_path / "cat.json", catalog))
    assert result.code == 0, result.stderr
    assert [r.path for r in server.log] == ["/records"]
    assert [m["record"]["id"] for m in result.messages() if m["type"] == "RECORD"] == [1, 2]


def test_log_lines_of_requests_made_before_logging_was_set_up_come_out_once(
    server: t.Any, cli: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "k3y-0f-the-h3ad-start"
    config = {
        "streams": [
            linked(
                server,
                total=6,
                auth={"type": "api_key", "name": "api_key", "value": secret, "in": "query"},
            )
        ]
    }
    quiet = cli(config)  # INFO: urllib3's DEBUG lines are not written
    assert quiet.code == 0, quiet.stderr
    assert "urllib3" not in quiet.stderr
    server.reset()
    monkeypatch.setenv("TAP_RHTTP_LOGLEVEL", "DEBUG")
    loud = cli(config)
    assert loud.code == 0, loud.stderr
    assert len(server.log) == 3
    request_lines = [line for line in loud.stderr.splitlines() if '"GET /pages/link?' in line]
    assert len(request_lines) == 3  # one per request: held, then written once
    assert all("api_key=***REDACTED***" in line for line in request_lines)
    assert secret not in loud.stderr
    assert secret not in loud.stdout


def test_a_tap_config_that_differs_discards_it_and_one_that_matches_keeps_it(
    server: t.Any, tmp_path: Path, stopped: list[headstart.HeadStart], caplog: t.Any
) -> None:
    config = {"streams": [linked(server, total=4)], "region": "eu", "ratio": 0.5}
    head = start(config, tmp_path)
    stopped.append(head)
    logger = logging.getLogger("tap-rhttp.test-confirm")
    headstart._current = head
    # as singer-sdk hands it over: floats as Decimal, its own defaults added
    same = {**config, "ratio": decimal.Decimal("0.5"), "flattening_enabled": None}
    assert headstart.confirm(same, logger) is head
    assert headstart.current() is head
    with caplog.at_level(logging.INFO, logger=logger.name):
        assert headstart.confirm({**config, "region": "us"}, logger) is None
    assert headstart.current() is None
    assert "the tap's config differs from the one it was started with" in caplog.text


def test_stopping_under_a_reader_raises_instead_of_ending_short(
    server: t.Any, tmp_path: Path, stopped: list[headstart.HeadStart]
) -> None:
    @server.route("/endless")
    def endless(request: Request) -> t.Any:
        time.sleep(0.05)
        page = int(request.args.get("p", "1"))
        return json_reply([{"id": page}], headers=[("Link", f"</endless?p={page + 1}>; rel=next")])

    config = {
        "streams": [stream("items", server.url + "/endless", page="link-next", page_limit=-1)]
    }
    head = start(config, tmp_path)
    stopped.append(head)
    wait_for(lambda: head.stats.pages >= 2)
    head.stop()  # as at exit: what was held is dropped, so a reader must not see an end
    with pytest.raises(RuntimeError, match="stopped while its pages were read"):
        next(head.claim())
