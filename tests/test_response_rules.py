"""Response rules and the retry budget, against a loopback server that signals the way APIs do.

A 200 with ``{"error": "rate limited"}`` until it clears, a 404 that means "no data for this
child", a 400 with "page token expired", a 404 whose body is a page, a 403 that says slow
down in a header; and ``max_retry_seconds``, a time budget over one request's tries.
"""

from __future__ import annotations

import json
import logging
import time
import typing as t

import pytest
from server import LocalServer, Reply, Request, json_reply

from tap_rhttp.errors import ConfigErrors, PermanentRequestError, TransientRequestError
from tap_rhttp.http.retry import RetryBudgetExhausted, RetryPolicy, call_with_retries
from tap_rhttp.http.rules import RULE_BODY_BYTES
from tap_rhttp.run.chain import Chain
from tap_rhttp.run.context import RunContext

RATE_LIMITED = "response['body']['error'] == 'rate limited'"


@pytest.fixture
def naps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits between tries, recorded instead of slept (see tests/test_faults.py)."""
    waits: list[float] = []
    for init in (RunContext.__init__, Chain.__init__):
        assert init.__kwdefaults__ is not None
        monkeypatch.setitem(init.__kwdefaults__, "sleep", waits.append)
    return waits


def spec(server: LocalServer, path: str, rules: t.Any, **extra: t.Any) -> dict[str, t.Any]:
    return {
        "name": "s",
        "url": server.url + path,
        "response_rules": rules,
        "schema": {"properties": {"id": {"type": "integer"}}},
        **extra,
    }


def test_a_200_error_body_is_retried_until_it_clears(
    server: LocalServer, sync: t.Any, naps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    @server.route("/busy")
    def busy(request: Request) -> Reply:
        if len(server.requests_to("/busy")) <= 2:
            return json_reply({"error": "rate limited"})
        return json_reply([{"id": 1}, {"id": 2}])

    rules = [{"when": RATE_LIMITED, "action": "retry", "message": "rate limited"}]
    result = sync({"streams": [spec(server, "/busy", rules, reattempts=5)]})

    assert [r["id"] for r in result.records("s")] == [1, 2]
    assert len(server.requests_to("/busy")) == 3
    assert len(naps) == 2
    lines = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(lines) == 2
    assert "(rate limited (status code 200; response_rules[0]: retry))" in lines[0]


def test_retry_counts_against_reattempts_and_honours_retry_after(
    server: LocalServer, sync: t.Any, naps: list[float]
) -> None:
    @server.route("/slow-down")
    def slow_down(request: Request) -> Reply:
        return json_reply({"message": "slow down"}, 403, headers=[("Retry-After", "7")])

    rules = [
        {"status": 403, "when": "response['body']['message'] == 'slow down'", "action": "retry"}
    ]
    with pytest.raises(TransientRequestError) as caught:
        sync({"streams": [spec(server, "/slow-down", rules, reattempts=3)]})

    assert len(server.requests_to("/slow-down")) == 3
    assert naps == [7.0, 7.0]
    assert str(caught.value).startswith(
        f"Error in HTTP GET of `{server.url}/slow-down` [stream s, page 1]: status code 403 "
        "(status code 403; response_rules[0]: retry)."
    )
    assert '"slow down"' in str(caught.value)  # the envelope keeps the body


def test_a_header_can_decide(server: LocalServer, sync: t.Any, naps: list[float]) -> None:
    @server.route("/quota")
    def quota(request: Request) -> Reply:
        if len(server.requests_to("/quota")) == 1:
            return Reply(403, "forbidden", [("X-Quota-Left", "0")], "text/plain")
        return json_reply([{"id": 1}])

    rules = [
        {"status": "4xx", "when": "response['header']['x-quota-left'] == '0'", "action": "retry"}
    ]
    assert len(sync({"streams": [spec(server, "/quota", rules)]}).records("s")) == 1


def _children(server: LocalServer) -> None:
    @server.route("/users")
    def users(request: Request) -> Reply:
        return json_reply([{"id": 1}, {"id": 2}, {"id": 3}])

    @server.route("/users/")
    def repos(request: Request) -> Reply:
        user = int(request.path.split("/")[2])
        if user == 2:
            return json_reply({"message": "Not Found"}, 404)
        page = int(request.args.get("page", "1"))
        headers = [("Link", f'</users/{user}/repos?page=2>; rel="next"')] if page == 1 else []
        return json_reply([{"id": user * 10 + page}], headers=headers)


def test_a_404_child_is_skipped_while_its_siblings_load(
    server: LocalServer, sync: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    _children(server)
    caplog.set_level(logging.INFO)
    config = {
        "streams": [
            {"name": "users", "url": server.url + "/users", "primary_keys": ["id"]},
            {
                "name": "repos",
                "url": server.url + "/users/{{ row['id'] }}/repos",
                "parent": "users",
                "page": "link-next",
                "page_limit": -1,
                "response_rules": [{"status": 404, "action": "skip"}],
                "schema": {"properties": {"id": {"type": "integer"}}},
            },
        ]
    }
    result = sync(config)

    assert sorted(r["id"] for r in result.records("repos")) == [11, 12, 31, 32]
    assert len(server.requests_to("/users/2/repos")) == 1  # that chain ended there
    skips = [
        r.getMessage()
        for r in caplog.records
        if "an empty page, and the chain ends" in r.getMessage()
    ]
    assert len(skips) == 1
    assert "status 404" in skips[0]
    assert "response_rules[0]: status 404 -> skip" in skips[0]
    done = [r.getMessage() for r in caplog.records if "stream repos done" in r.getMessage()]
    assert done
    assert "1 ended by a skip rule" in done[-1]


def test_without_the_rule_the_404_fails_the_run(server: LocalServer, sync: t.Any) -> None:
    _children(server)
    config = {
        "streams": [
            {"name": "users", "url": server.url + "/users", "primary_keys": ["id"]},
            {
                "name": "repos",
                "url": server.url + "/users/{{ row['id'] }}/repos",
                "parent": "users",
            },
        ]
    }
    with pytest.raises(PermanentRequestError, match="status code 404"):
        sync(config)


def test_a_skip_rule_ends_a_for_each_chain_as_done(server: LocalServer, sync: t.Any) -> None:
    _children(server)
    config = {
        "streams": [
            spec(
                server,
                "/users/{{ item }}/repos",
                [{"status": 404, "action": "skip"}],
                for_each=[2, 3],
            )
        ]
    }
    result = sync(config)
    assert sorted(r["id"] for r in result.records("s")) == [31]
    last = result.of_type("STATE")[-1]["value"]
    assert "rhttp" not in last["bookmarks"].get("s", {})  # every chain finished


def test_fail_carries_the_rules_message_in_the_envelope(server: LocalServer, sync: t.Any) -> None:
    @server.route("/cursor")
    def cursor(request: Request) -> Reply:
        return json_reply({"error": "page token expired", "code": 17}, 400)

    rules = [
        {
            "status": 400,
            "when": "response['body']['error'] == 'page token expired'",
            "action": "fail",
            "message": "the page token expired: run again from the start",
        },
        {"status": 400, "action": "retry"},
    ]
    with pytest.raises(PermanentRequestError) as caught:
        sync({"streams": [spec(server, "/cursor", rules, reattempts=3)]})
    text = str(caught.value)
    assert text.startswith(
        f"Error in HTTP GET of `{server.url}/cursor` [stream s, page 1]: the page token expired: "
        "run again from "
        "the start (status code 400; response_rules[0]: fail)."
    )
    assert "\nheader:\n" in text
    assert '"page token expired"' in text
    assert len(server.requests_to("/cursor")) == 1  # first match wins: not retried


def test_fail_on_a_200(server: LocalServer, sync: t.Any) -> None:
    @server.route("/soft-error")
    def soft(request: Request) -> Reply:
        return json_reply({"status": "error", "detail": "account suspended"})

    rules = [{"when": "response['body']['status'] == 'error'", "action": "fail"}]
    with pytest.raises(
        PermanentRequestError,
        match=r"status code 200 \(status code 200; response_rules\[0\]: fail\)",
    ):
        sync({"streams": [spec(server, "/soft-error", rules)]})


def test_ok_reads_a_404_as_a_page(server: LocalServer, sync: t.Any) -> None:
    @server.route("/empty")
    def empty(request: Request) -> Reply:
        return json_reply({"items": [{"id": 7}], "note": "nothing new"}, 404)

    rules = [{"status": 404, "action": "ok"}]
    result = sync({"streams": [spec(server, "/empty", rules, records_path="$.items[*]")]})
    assert [r["id"] for r in result.records("s")] == [7]


def test_ok_after_reading_part_of_a_large_error_body_reads_all_of_it(
    server: LocalServer, sync: t.Any
) -> None:
    items = [{"id": i, "pad": "x" * 100} for i in range(15000)]  # about 1.7 MB
    body = json.dumps(items).encode()
    assert len(body) > RULE_BODY_BYTES

    @server.route("/big-404")
    def big(request: Request) -> Reply:
        return Reply(404, body, (), "application/json")

    rules = [{"status": 404, "when": "response['body'] == None", "action": "ok"}]  # too big to see
    records = sync({"streams": [spec(server, "/big-404", rules)]}).records("s")
    assert len(records) == 15000
    assert records[-1]["id"] == 14999


def test_a_rule_that_matches_nothing_keeps_the_usual_handling(
    server: LocalServer, sync: t.Any, naps: list[float]
) -> None:
    @server.route("/list")
    def listing(request: Request) -> Reply:
        return json_reply([{"id": 1}])

    rules = [{"when": RATE_LIMITED, "action": "retry"}, {"status": 404, "action": "ok"}]
    assert len(sync({"streams": [spec(server, "/list", rules)]}).records("s")) == 1  # list body
    with pytest.raises(PermanentRequestError, match="status code 410"):
        sync({"streams": [spec(server, "/status/410", rules)]})
    assert naps == []


@pytest.mark.parametrize(
    ("rules", "path", "words"),
    [
        ("x", "response_rules", "should be a list of rules"),
        ([3], "response_rules[0]", "should be an object"),
        ([{"status": 404}], "response_rules[0].action", "is not recognized"),
        ([{"action": "skip"}], "response_rules[0]", "needs `status`, `when` or both"),
        ([{"status": "4XX ", "action": "skip"}], "response_rules[0].status", "not a status code"),
        ([{"status": 99, "action": "skip"}], "response_rules[0].status", "not a status code"),
        ([{"status": [], "action": "skip"}], "response_rules[0].status", "empty list"),
        ([{"when": "response[", "action": "skip"}], "response_rules[0].when", ""),
        ([{"when": "info['body']", "action": "skip"}], "response_rules[0].when", "info"),
        ([{"status": 1, "action": "ok", "why": 1}], "response_rules[0].why", "not an option"),
        ([{"status": 404, "action": "fail", "message": 3}], "response_rules[0].message", "string"),
    ],
)
def test_rules_are_checked_at_load(rules: t.Any, path: str, words: str) -> None:
    with pytest.raises(ConfigErrors) as caught:
        RunContext(
            {"streams": [{"name": "s", "url": "https://a.example", "response_rules": rules}]}
        )
    message = str(caught.value)
    assert f"streams[0].{path}" in message
    assert words in message


# --------------------------------------------------------------------------- max_retry_seconds


def test_the_retry_budget_stops_retries_that_would_pass_it() -> None:
    now = [0.0]
    waits: list[float] = []

    def attempt(number: int) -> None:
        now[0] += 2.0  # each try takes 2 s
        raise TransientRequestError("GET", "http://x", "status code 503.", status=503)

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    policy = RetryPolicy(
        tries=10, backoff_base=3, backoff_max=3, jitter=lambda v: v, max_seconds=12
    )
    with pytest.raises(RetryBudgetExhausted) as caught:
        call_with_retries(attempt, policy, sleep=sleep, clock=lambda: now[0])
    # tries end at 2, 7, 12 s: after the third, 12 + 3 would pass 12
    assert waits == [3, 3]
    assert caught.value.spent == 12
    assert "Gave up after 12.0 s" in str(caught.value)
    assert "max_retry_seconds=12 s" in str(caught.value)
    assert caught.value.status == 503


@pytest.mark.timeout(20)
def test_max_retry_seconds_bounds_a_request_in_real_time(server: LocalServer, sync: t.Any) -> None:
    config = {
        "streams": [
            {
                "name": "s",
                "url": server.url + "/status/503?retry_after=1",
                "reattempts": 10,
                "max_retry_seconds": 2.5,
            }
        ]
    }
    started = time.monotonic()
    with pytest.raises(RetryBudgetExhausted) as caught:
        sync(config)
    elapsed = time.monotonic() - started
    assert len(server.requests_to("/status/503")) == 3  # at 0, 1 and 2 s
    assert 1.9 < elapsed < 4
    assert "max_retry_seconds=2.5 s" in str(caught.value)


def test_max_retry_seconds_is_checked() -> None:
    with pytest.raises(ConfigErrors, match=r"streams\[0\]\.max_retry_seconds: .*greater than 0"):
        RunContext({"streams": [{"name": "s", "url": "https://a", "max_retry_seconds": 0}]})
