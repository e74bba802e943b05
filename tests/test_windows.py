"""Date windows: one chain per time window, bound to `window` in templates.

Against a loopback API shaped like the usual "events between since and until" endpoint:
the windows it is asked for, incremental runs with `lookback`, a resumed run after a
SIGKILL (finished windows are not fetched again, and the killed run's windows are kept),
the checks at load, and what `--explain` shows.
"""

from __future__ import annotations

import datetime
import itertools
import json
import time
import typing as t

import pytest
from server import Reply, Request, json_reply
from singer_sdk.exceptions import ConfigValidationError
from tap_process import kill_when, records

from tap_rhttp.config.load import load_specs
from tap_rhttp.config.windows import MAX_WINDOWS, parse_duration
from tap_rhttp.errors import ConfigErrors
from tap_rhttp.explain import Explainer
from tap_rhttp.run.context import RunContext

if t.TYPE_CHECKING:
    from pathlib import Path

UTC = datetime.timezone.utc
NEXT_PAGE = (
    "r.branch(info['body']['next'] == None, None, {'params': {'page': info['body']['next']}})"
)


def _parse(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _events_route(
    server: t.Any, events: list[dict[str, t.Any]], *, per_page: int = 2, delay: float = 0
) -> None:
    """/events?since=&until=&page=: the events with since <= ts < until, `per_page` a page."""

    @server.route("/events")
    def events_route(request: Request) -> Reply:
        time.sleep(delay)
        since, until = _parse(request.args["since"]), _parse(request.args["until"])
        hits = [e for e in events if since <= _parse(e["ts"]) < until]
        page = int(request.args.get("page", "1"))
        chunk = hits[(page - 1) * per_page : page * per_page]
        more = page * per_page < len(hits)
        return json_reply({"items": chunk, "next": page + 1 if more else None})


def _hourly(start: datetime.datetime, hours: int) -> list[dict[str, t.Any]]:
    return [
        {
            "id": i,
            "ts": (start + datetime.timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        for i in range(hours)
    ]


def _stream(server: t.Any, windows: dict[str, t.Any], **extra: t.Any) -> dict[str, t.Any]:
    return {
        "name": "events",
        "url": server.url + "/events",
        "params": {"since": "{{ window['start'] }}", "until": "{{ window['end'] }}", "page": 1},
        "records_path": "$.items[*]",
        "page": NEXT_PAGE,
        "page_limit": -1,
        "primary_keys": ["id"],
        "reattempts": 1,
        "windows": windows,
        **extra,
    }


JAN1 = datetime.datetime(2024, 1, 1, tzinfo=UTC)


def test_one_chain_per_window(server: t.Any, sync: t.Any) -> None:
    events = _hourly(JAN1, 24 * 5)
    _events_route(server, events, per_page=10)
    config = {
        "streams": [
            _stream(server, {"start": "2024-01-01", "end": "2024-01-04T12:00:00Z", "step": "P1D"})
        ]
    }
    result = sync(config)
    ids = [r["id"] for r in result.records("events")]
    assert ids == list(range(24 * 3 + 12))  # every event of the span once, in order
    asked = sorted({(r.args["since"], r.args["until"]) for r in server.log})
    assert asked == [
        ("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"),
        ("2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z"),
        ("2024-01-03T00:00:00Z", "2024-01-04T00:00:00Z"),
        ("2024-01-04T00:00:00Z", "2024-01-04T12:00:00Z"),  # the last one ends at `end`
    ]
    assert "rhttp" not in result.of_type("STATE")[-1]["value"]["bookmarks"]["events"]


def test_epoch_bindings(server: t.Any, sync: t.Any) -> None:
    config = {
        "streams": [
            {
                "name": "e",
                "url": server.url + "/echo",
                "params": {
                    "from": "{{ window['start_epoch'] }}",
                    "to": "{{ window['end_epoch'] }}",
                },
                "windows": {
                    "start": "2024-01-01T00:00:00Z",
                    "end": "2024-01-01T02:00:00Z",
                    "step": 3600,
                },
            }
        ]
    }
    targets = [r["target"] for r in sync(config).records("e")]
    assert targets == ["/echo?from=1704067200&to=1704070800", "/echo?from=1704070800&to=1704074400"]


def test_end_defaults_to_the_runs_one_now(server: t.Any, sync: t.Any) -> None:
    config = {
        "streams": [
            {
                "name": "e",
                "url": server.url + "/echo",
                "params": {"s": "{{ window['start'] }}", "u": "{{ window['end'] }}"},
                "windows": {"start": "PT3H", "step": "PT1H"},
                "max_concurrency": 3,
            }
        ]
    }
    before = datetime.datetime.now(UTC).replace(microsecond=0)
    sync(config)
    after = datetime.datetime.now(UTC)
    spans = sorted((_parse(r.args["s"]), _parse(r.args["u"])) for r in server.log)
    assert len(spans) == 3
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))  # contiguous
    now = spans[-1][1]
    assert before <= now <= after
    assert spans[0][0] == now - datetime.timedelta(hours=3)


def test_incremental_starts_at_the_bookmark_minus_lookback(server: t.Any, sync: t.Any) -> None:
    events = [{**e, "updated_at": e["ts"]} for e in _hourly(JAN1, 24 * 4)]
    _events_route(server, events, per_page=50)
    windows = {"start": "2024-01-01", "end": "2024-01-03", "step": "P1D", "lookback": "PT6H"}
    config = {"streams": [_stream(server, windows, replication_key="updated_at", is_sorted=True)]}
    first = sync(config)
    assert [r["id"] for r in first.records("events")] == list(range(48))
    state = first.of_type("STATE")[-1]["value"]
    assert state["bookmarks"]["events"]["replication_key_value"] == "2024-01-02T23:00:00Z"

    config["streams"][0]["windows"] = {**windows, "end": "2024-01-04"}
    server.log.clear()
    second = sync(config, state=state)
    first_asked = server.log[0].args
    assert first_asked["since"] == "2024-01-02T17:00:00Z"  # 23:00 minus 6 hours
    # what the lookback brings again is at or before the bookmark: dropped client-side
    assert [r["id"] for r in second.records("events")] == list(range(48, 72))


def test_sigkill_mid_windows_then_resume(server: t.Any, sync: t.Any, tmp_path: Path) -> None:
    """Finished windows are not fetched again; the window in progress resumes at its page;
    the resumed run keeps the killed run's windows although its own now is later."""
    now = datetime.datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = now - datetime.timedelta(hours=12)
    events: list[dict[str, t.Any]] = [
        {"id": i, "ts": (start + datetime.timedelta(minutes=20 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")}
        for i in range(36 + 6)
    ]
    _events_route(server, events, per_page=1, delay=0.05)
    config = {"streams": [_stream(server, {"start": "PT11H30M", "step": "PT2H"})]}
    messages = kill_when(config, tmp_path, records(14))  # in the third window
    state = next(m["value"] for m in reversed(messages) if m["type"] == "STATE")
    saved = state["bookmarks"]["events"]["rhttp"]
    assert saved["done_through"]  # the finished windows, as one key
    (in_progress,) = saved["chains"]  # the resume position names the window in progress
    assert in_progress > saved["done_through"]
    killed_ids = [m["record"]["id"] for m in messages if m["type"] == "RECORD"]

    time.sleep(1.1)  # the resumed run's own now is later: it must keep the saved windows
    server.log.clear()
    resumed = sync(config, state=state)
    resumed_ids = [r["id"] for r in resumed.records("events")]
    windows_again = {(r.args["since"], r.args["until"]) for r in server.log}
    assert all(since >= in_progress for since, _ in windows_again)  # none finished again
    plan_start, plan_end = _parse(saved["windows"]["start"]), _parse(saved["windows"]["end"])
    expected = [e["id"] for e in events if plan_start <= _parse(e["ts"]) < plan_end]
    assert set(killed_ids) | set(resumed_ids) == set(expected)  # nothing lost
    assert len(killed_ids) + len(resumed_ids) - len(expected) <= 1  # the page in flight
    assert max(u for _, u in windows_again) == saved["windows"]["end"]


# ------------------------------------------------------------------ checks at load


@pytest.mark.parametrize(
    ("windows", "fragment"),
    [
        ({"start": "yesterday", "step": "P1D"}, "windows.start: not an instant"),
        ({"start": "2024-01-01T00:00:00", "step": "P1D"}, "windows.start: not an instant"),
        ({"start": "2024-01-01T00:00:00.5Z", "step": "P1D"}, "whole seconds"),
        ({"start": "2024-01-01", "step": 0}, "`step` should be greater than 0"),
        ({"start": "2024-01-01", "step": "P1M"}, "Years and months are not allowed"),
        ({"start": "2024-01-01", "step": "P1D", "lookback": -5}, "may not be negative"),
        ({"start": "2024-01-01", "step": 1.5}, "windows.step: not a duration"),
        ({"start": "1970-01-01", "step": 1}, f"at most {MAX_WINDOWS} are allowed"),
        ({"start": "2024-01-05", "end": "2024-01-01", "step": "P1D"}, "should be before `end`"),
        ({"start": "2024-01-01", "step": "P1D", "until": "x"}, "unknown key `until`"),
        ({"step": "P1D"}, "`windows` needs `start`"),
        ("P1D", "`windows` should be an object"),
    ],
)
def test_windows_are_checked_at_load(windows: t.Any, fragment: str) -> None:
    config = {"streams": [{"name": "s", "url": "http://127.0.0.1:9/x", "windows": windows}]}
    with pytest.raises(ConfigErrors) as info:
        load_specs(config)
    text = str(info.value)
    assert "streams[0].windows" in text
    assert fragment in text, text


def test_windows_exclude_for_each_and_parent() -> None:
    config = {
        "streams": [
            {"name": "p", "url": "http://127.0.0.1:9/p"},
            {
                "name": "s",
                "url": "http://127.0.0.1:9/x",
                "windows": {"start": "2024-01-01", "step": "P1D"},
                "for_each": [1],
            },
            {
                "name": "c",
                "url": "http://127.0.0.1:9/x",
                "windows": {"start": "2024-01-01", "step": "P1D"},
                "parent": "p",
            },
        ]
    }
    with pytest.raises(ConfigErrors) as info:
        load_specs(config)
    assert "give either `windows` or `for_each`" in str(info.value)
    assert "give either `windows` or `parent`" in str(info.value)


def test_window_is_a_template_name_only_with_windows(sync: t.Any) -> None:
    with pytest.raises(ConfigValidationError) as info:
        sync({"streams": [{"name": "s", "url": "http://h/{{ window['start'] }}"}]})
    assert any("`window`" in e for e in info.value.errors)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("P1D", 86400), ("PT6H", 21600), ("P1DT12H", 129600), ("PT90S", 90), ("P2W", 1209600)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["P", "PT", "P1DT", "1D", "P1.5D", "P1Y", "-P1D"])
def test_not_durations(text: str) -> None:
    assert parse_duration(text) is None


def test_explain_shows_the_windows(server: t.Any) -> None:
    config = {
        "streams": [
            {
                "name": "e",
                "url": server.url + "/echo",
                "params": {"s": "{{ window['start'] }}"},
                "windows": {"start": "2024-01-01", "end": "2024-01-08", "step": "P1D"},
            }
        ]
    }
    lines: list[str] = []
    run = RunContext(config)
    assert Explainer(run, 2, out=lines.append).run() == 0
    text = "\n".join(lines)
    assert "windows: 7 of 86400 s, 2024-01-01T00:00:00Z .. 2024-01-08T00:00:00Z" in text
    assert '"start_epoch":1704067200' in text
    assert "... 3 more" in text
    assert "-- chain window 2024-01-01T00:00:00Z..2024-01-02T00:00:00Z" in text
    assert len(server.log) == 2


def test_window_state_stays_small(server: t.Any, sync: t.Any) -> None:
    config = {
        "streams": [
            {
                "name": "e",
                "url": server.url + "/echo",
                "params": {"s": "{{ window['start'] }}"},
                "windows": {"start": "2024-01-01", "end": "2024-01-26", "step": "PT1H"},
                "max_concurrency": 4,
            }
        ]
    }
    result = sync(config)
    assert len(result.records("e")) == 600
    sizes = [
        len(json.dumps(m["value"]["bookmarks"]["e"].get("rhttp", {})))
        for m in result.of_type("STATE")
        if "e" in m["value"]["bookmarks"]
    ]
    # a list of the 600 finished windows would take about 14 kB
    assert max(sizes) < 1500, max(sizes)
