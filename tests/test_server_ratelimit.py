"""Rate limits the server announces: waited for, shared by a stream's concurrent chains.

The loopback server counts requests per window of one second (aligned to the wall clock,
as GitHub's epoch resets are), announces what is left in the headers of one family, and
answers 429 to any request past zero. The tap must never get a 429, and take no longer than
the windows require.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import typing as t

import pytest
from server import LocalServer, Reply, Request, json_reply

from tap_rhttp.errors import TransientRequestError
from tap_rhttp.http.ratelimit import Announcement, ServerRateLimit, parse_rate_limit
from tap_rhttp.run.chain import Chain
from tap_rhttp.run.context import RunContext

LIMIT = 4  # requests per one-second window


class Windows:
    """Fixed one-second windows: LIMIT requests each, 429 past that."""

    def __init__(self, style: str) -> None:
        self.style = style
        self.lock = threading.Lock()
        self.counts: dict[int, int] = {}
        self.rejected = 0
        self.served = 0

    def headers(self, window: int, left: int) -> list[tuple[str, str]]:
        now = time.time()
        delta = max(math.ceil(window + 1 - now), 1)
        if self.style == "github":
            return [
                ("X-RateLimit-Limit", str(LIMIT)),
                ("X-RateLimit-Remaining", str(left)),
                ("X-RateLimit-Reset", str(window + 1)),  # epoch seconds
            ]
        if self.style == "seconds":
            return [("X-RateLimit-Remaining", str(left)), ("X-RateLimit-Reset", str(delta))]
        if self.style == "ietf":
            return [
                ("RateLimit", f"limit={LIMIT}, remaining={left}, reset={delta}"),
                ("RateLimit-Policy", f"{LIMIT};w=1"),
            ]
        raise AssertionError(self.style)

    def __call__(self, request: Request) -> Reply:
        with self.lock:
            window = int(time.time())
            count = self.counts[window] = self.counts.get(window, 0) + 1
            if count > LIMIT:
                self.rejected += 1
                return json_reply({"error": "rate limited"}, 429, self.headers(window, 0))
            self.served += 1
            headers = self.headers(window, LIMIT - count)
        page = int(request.args.get("page", "1"))
        group = request.args.get("g", "")
        if page < 4:
            headers.append(("Link", f'</limited?g={group}&page={page + 1}>; rel="next"'))
        return json_reply([{"id": f"{group}{page}"}], headers=headers)


@pytest.mark.timeout(40)
@pytest.mark.parametrize("style", ["github", "seconds", "ietf"])
def test_announced_limits_are_waited_for_by_every_chain(
    style: str, server: LocalServer, sync: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    windows = Windows(style)
    server.route("/limited")(windows)
    caplog.set_level(logging.INFO)
    config = {
        "streams": [
            {
                "name": "s",
                "url": server.url + "/limited?g={{ item }}",
                "for_each": ["a", "b", "c"],
                "max_concurrency": 3,
                "page": "link-next",
                "page_limit": -1,
                "reattempts": 1,  # a 429 would fail the run
                "schema": {"properties": {"id": {"type": "string"}}},
            }
        ]
    }
    started = time.monotonic()
    result = sync(config)
    elapsed = time.monotonic() - started

    assert len(result.records("s")) == 12
    assert windows.rejected == 0
    assert windows.served == 12
    # 12 requests at 4 a window need 3 windows: two resets passed, at most a little more
    assert 1.0 < elapsed < (5.0 if style == "github" else 7.0)
    waits = [r for r in caplog.records if "rate limit is used up" in r.getMessage()]
    assert 2 <= len(waits) <= 4  # one line per wait, not one per waiting chain
    assert all(r.levelno == logging.INFO for r in waits)


@pytest.mark.timeout(30)
def test_rate_limit_keeps_working_alongside(server: LocalServer, sync: t.Any) -> None:
    windows = Windows("github")
    server.route("/limited")(windows)
    config = {
        "streams": [
            {
                "name": "s",
                "url": server.url + "/limited",
                "page": "link-next",
                "page_limit": -1,
                "rate_limit": 20,
                "reattempts": 1,
            }
        ]
    }
    started = time.monotonic()
    assert len(sync(config).records("s")) == 4
    assert windows.rejected == 0
    assert time.monotonic() - started >= 3 / 20  # spaced 1/20 s apart


@pytest.fixture
def naps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits, recorded instead of slept (see tests/test_faults.py)."""
    waits: list[float] = []
    for init in (RunContext.__init__, Chain.__init__):
        assert init.__kwdefaults__ is not None
        monkeypatch.setitem(init.__kwdefaults__, "sleep", waits.append)
    return waits


def test_a_github_403_rate_limit_waits_for_the_reset(
    server: LocalServer, sync: t.Any, naps: list[float]
) -> None:
    @server.route("/gh")
    def gh(request: Request) -> Reply:
        if len(server.requests_to("/gh")) == 1:
            reset = str(int(time.time()) + 30)
            headers = [("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", reset)]
            return json_reply({"message": "API rate limit exceeded"}, 403, headers)
        return json_reply([{"id": 1}])

    result = sync({"streams": [{"name": "s", "url": server.url + "/gh"}]})

    assert len(result.records("s")) == 1
    assert len(naps) == 1  # the retry's wait; the stream's own hold is not waited twice
    assert 28 < naps[0] <= 31


def test_a_403_with_retry_after_is_a_rate_limit(
    server: LocalServer, sync: t.Any, naps: list[float]
) -> None:
    @server.route("/secondary")
    def secondary(request: Request) -> Reply:
        if len(server.requests_to("/secondary")) == 1:
            return json_reply({"message": "secondary rate limit"}, 403, [("Retry-After", "9")])
        return json_reply([{"id": 1}])

    assert (
        len(sync({"streams": [{"name": "s", "url": server.url + "/secondary"}]}).records("s")) == 1
    )
    assert naps == [9.0]


def test_a_plain_403_still_fails_at_once(
    server: LocalServer, sync: t.Any, naps: list[float]
) -> None:
    @server.route("/denied")
    def denied(request: Request) -> Reply:
        return json_reply({"message": "no"}, 403, [("X-RateLimit-Remaining", "4999")])

    with pytest.raises(Exception, match="status code 403") as caught:
        sync({"streams": [{"name": "s", "url": server.url + "/denied"}]})
    assert not isinstance(caught.value, TransientRequestError)
    assert naps == []


# --------------------------------------------------------------------------- parsing


WALL = 1_700_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", "1700000030")], (0, 30.0, None)),
        ([("x-ratelimit-remaining", "12"), ("x-ratelimit-reset", "45")], (12, 45.0, None)),
        ([("X-RateLimit-Remaining", "3"), ("X-RateLimit-Reset", "1700000002500")], (3, 2.5, None)),
        ([("X-Rate-Limit-Remaining", "1"), ("X-Rate-Limit-Reset", "1700000010")], (1, 10.0, None)),
        ([("RateLimit-Remaining", "0"), ("RateLimit-Reset", "7")], (0, 7.0, None)),
        ([("RateLimit", "limit=100, remaining=5, reset=30")], (5, 30.0, None)),
        ([("RateLimit", '"default";r=50;t=30, "burst";r=0;t=2')], (0, 2.0, None)),
        (
            [("RateLimit", "limit=10, remaining=0"), ("RateLimit-Policy", "10;w=60")],
            (0, None, 60.0),
        ),
        ([("X-RateLimit-Remaining", "0")], (0, None, None)),
        ([("X-RateLimit-Remaining", "many")], None),
        ([("Content-Type", "application/json")], None),
    ],
)
def test_announcements_are_read(
    headers: list[tuple[str, str]], expected: tuple[int, float | None, float | None] | None
) -> None:
    found = parse_rate_limit(headers, wall=WALL)
    if expected is None:
        assert found is None
        return
    assert isinstance(found, Announcement)
    assert (found.remaining, found.reset, found.window) == expected


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_requests_in_flight_are_taken_off_the_count() -> None:
    fake = FakeTime()
    limit = ServerRateLimit("s", logging.getLogger("t"), clock=fake.clock, sleep=fake.sleep)
    headers = [("RateLimit-Remaining", "2"), ("RateLimit-Reset", "10")]
    for _ in range(3):  # three chains in flight
        limit.acquire()
    limit.observe(200, headers)  # the server counted one of them: 2 left, 2 more in flight
    assert limit.remaining == 0
    limit.release()
    limit.acquire()  # must wait for the reset
    assert fake.slept == [10.0]


def test_a_wait_is_capped_by_retry_after_max(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeTime()
    limit = ServerRateLimit(
        "s", logging.getLogger("t"), max_wait=60, clock=fake.clock, sleep=fake.sleep
    )
    caplog.set_level(logging.INFO)
    limit.acquire()
    limit.observe(200, [("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", "3600")])
    limit.release()
    assert limit.acquire() == 60.0
    (line,) = [r.getMessage() for r in caplog.records]
    assert "waiting 60.0 s until it resets (capped by retry_after_max; it resets in 3600 s)" in line


def test_an_old_windows_count_is_forgotten_after_its_reset() -> None:
    fake = FakeTime()
    limit = ServerRateLimit("s", logging.getLogger("t"), clock=fake.clock, sleep=fake.sleep)
    limit.acquire()
    limit.observe(200, [("RateLimit-Remaining", "1"), ("RateLimit-Reset", "5")])
    limit.release()
    fake.now += 6
    limit.acquire()
    assert limit.remaining is None  # unknown until the next response says
    assert fake.slept == []
