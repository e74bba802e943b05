"""Fault injection against a real loopback server: retries, waits, exactly-once records.

Every test talks to :class:`fault_server.FaultServer` on 127.0.0.1 (raw sockets, so a
body can be cut, reset, truncated or dripped) and asserts what the server saw: how many
requests, and when. Nothing patches the transport.

In-process runs (the ``sync`` fixture) record the waits instead of sleeping them (the
``naps`` fixture); the whole-run tests (the ``cli`` fixture) sleep for real and measure
the waits on the server side. Every URL carries :data:`PLANTED` as an ``api_key``: it
must never be printed.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import re
import socket
import ssl
import time
import typing as t

import pytest
import trustme
from fault_server import (
    FaultServer,
    Hit,
    chunked,
    drip,
    head_bytes,
    http_date,
    json_reply,
    refused_port,
    reply,
    reset_after,
    short_body,
)

from tap_rhttp.errors import PermanentRequestError, TransientRequestError
from tap_rhttp.http.client import ERROR_BODY_CHARS
from tap_rhttp.http.deadline import Watchdog
from tap_rhttp.http.retry import RetryAfterTooLong
from tap_rhttp.redact import MASK
from tap_rhttp.run import chain as chain_module
from tap_rhttp.run.chain import Chain
from tap_rhttp.run.context import RunContext

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from fault_server import Action

PLANTED = "k3y-planted-in-every-url-0042"
SCHEMA = {"properties": {"id": {"type": "integer"}}}
#: Small waits where the wait itself is not under test.
FAST = {"reattempts": 3, "backoff_base": 0.01, "backoff_max": 0.05}
#: What `serve_pages` returns over pages 1..3, in order.
ALL_IDS = [10, 11, 20, 21, 30, 31]

ERROR_LINE = re.compile(r"\| ERROR +\|")
WARNING_LINE = re.compile(r"\| WARNING +\|")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def fault() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


@pytest.fixture
def naps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the waits between tries of in-process runs instead of sleeping them.

    ``RunContext(sleep=time.sleep)`` binds its default when context.py is imported, and
    the tap builds its run context without a ``sleep``; patching ``time.sleep`` in a
    module would not reach it. The default itself is the seam (direct ``Chain`` users
    get the same through ``Chain``'s own default).
    """
    waits: list[float] = []
    for init in (RunContext.__init__, Chain.__init__):
        assert init.__kwdefaults__ is not None
        monkeypatch.setitem(init.__kwdefaults__, "sleep", waits.append)
    return waits


@pytest.fixture
def no_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the backoff schedule its ceilings (base * 2**n, capped), so waits are exact."""
    original = chain_module.retry_policy

    def policy(spec: t.Any) -> t.Any:
        return dataclasses.replace(original(spec), jitter=lambda ceiling: ceiling)

    monkeypatch.setattr(chain_module, "retry_policy", policy)


# --------------------------------------------------------------------------- helpers


def config(url: str, **options: t.Any) -> dict[str, t.Any]:
    stream = {"name": "s", "url": url, "schema": SCHEMA, **FAST}
    stream.update(options)
    return {"streams": [stream]}


def paged(fault: FaultServer, **options: t.Any) -> dict[str, t.Any]:
    """A stream over `serve_pages`: the body's `next` is the next page, null stops."""
    return config(
        fault.url + "/pages",
        params={"page": 1, "api_key": PLANTED},
        page="info['body']['next']",
        page_limit=-1,
        records_path="$.items[*]",
        **options,
    )


def serve_pages(
    fault: FaultServer, last: int = 3, fail: Callable[[int, int], Action | None] | None = None
) -> collections.Counter[int]:
    """/pages?page=N: two records and a relative `next` link; counts the tries per page.

    ``fail(page, try_number)`` may return an action to send instead of the page.
    """
    tries: collections.Counter[int] = collections.Counter()

    @fault.route("/pages")
    def pages(hit: Hit) -> Action:
        page = int(hit.args["page"])
        tries[page] += 1
        if fail is not None and (action := fail(page, tries[page])) is not None:
            return action
        following = f"/pages?page={page + 1}" if page < last else None
        return json_reply({"items": [{"id": page * 10 + i} for i in range(2)], "next": following})

    return tries


def ids(records: t.Iterable[dict[str, t.Any]]) -> list[int]:
    return [r["id"] for r in records]


def retry_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def page_body(page: int) -> bytes:
    return json.dumps({"items": [{"id": page * 10 + i} for i in range(2)], "next": None}).encode()


def lines_matching(pattern: re.Pattern[str], text: str) -> list[str]:
    return [line for line in text.splitlines() if pattern.search(line)]


def assert_quiet_about_secrets(*texts: str) -> None:
    for text in texts:
        assert PLANTED not in text
        assert PLANTED[:12] not in text  # not even the head of it


# --------------------------------------------------------------------------- body faults

JSON_HEAD = [("Content-Type", "application/json")]

#: A fault sent on page 2's first try, and what the retry WARNING says about it.
BODY_FAULTS: dict[str, tuple[Action, str]] = {
    "connection reset mid-body": (
        reset_after(head_bytes(200, [*JSON_HEAD, ("Content-Length", "200")]) + page_body(2)[:20]),
        "cut short or corrupt: [Errno 104] Connection reset by peer",
    ),
    "truncated chunked body": (
        chunked([page_body(2)[:20], page_body(2)[20:30]], finish=False),
        "cut short or corrupt: IncompleteRead(0 bytes read)",
    ),
    "Content-Length longer than the body": (
        short_body(page_body(2)[:25], 200),
        "cut short or corrupt: IncompleteRead(25 bytes read, 175 more expected)",
    ),
    "connection closed before a status line": (
        reset_after(b""),
        "connection failed",
    ),
    "503 Service Unavailable": (
        reply(503, "<html>busy</html>", (), "text/html"),
        "status code 503",
    ),
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("name", list(BODY_FAULTS))
def test_a_failed_page_is_retried_and_its_records_emitted_once(
    name: str,
    fault: FaultServer,
    sync: t.Any,
    naps: list[float],
    caplog: pytest.LogCaptureFixture,
) -> None:
    action, reason = BODY_FAULTS[name]
    tries = serve_pages(fault, fail=lambda page, n: action if (page, n) == (2, 1) else None)

    result = sync(paged(fault))

    assert ids(result.records("s")) == ALL_IDS  # no loss, no duplicates, in order
    assert tries == {1: 1, 2: 2, 3: 1}
    assert len(naps) == 1
    assert 0 <= naps[0] <= FAST["backoff_max"]
    (line,) = retry_lines(caplog)  # one line per retry, not two
    assert line.startswith("stream s: try 1 of 3 failed (")
    assert reason in line
    assert f"retrying in {naps[0]:.2f} s: GET {fault.url}/pages?page=2&api_key={MASK}" in line
    assert_quiet_about_secrets(caplog.text)


@pytest.mark.timeout(20)
def test_page_two_fails_twice_then_succeeds_each_record_once(
    fault: FaultServer, sync: t.Any, naps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    faults = {
        1: reply(503, "busy", (), "text/plain"),
        2: reset_after(head_bytes(200, [*JSON_HEAD, ("Content-Length", "99")]) + b'{"items": [{'),
    }
    tries = serve_pages(fault, fail=lambda page, n: faults.get(n) if page == 2 else None)

    result = sync(paged(fault))

    assert ids(result.records("s")) == ALL_IDS
    assert tries == {1: 1, 2: 3, 3: 1}
    assert len(naps) == 2
    lines = retry_lines(caplog)
    assert len(lines) == 2
    assert "try 1 of 3 failed (status code 503)" in lines[0]
    assert "try 2 of 3 failed (the response body was cut short" in lines[1]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("head_too", [False, True], ids=["body", "status line and headers"])
def test_slow_drip_is_cut_at_the_attempt_deadline(
    head_too: bool,
    fault: FaultServer,
    sync: t.Any,
    naps: list[float],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`timeout` bounds the whole attempt, even when every byte beats the socket timeout."""
    slow = drip(page_body(2), every=0.05, head_too=head_too)  # ~3 s (body) to ~7 s (head too)
    tries = serve_pages(fault, fail=lambda page, n: slow if (page, n) == (2, 1) else None)

    started = time.monotonic()
    result = sync(paged(fault, timeout=0.4))
    elapsed = time.monotonic() - started

    assert ids(result.records("s")) == ALL_IDS
    assert tries == {1: 1, 2: 2, 3: 1}
    page_two = [h for h in fault.hits("/pages") if h.args["page"] == "2"]
    assert 0.35 <= page_two[1].at - page_two[0].at < 1.0  # the first try ended at the deadline
    assert elapsed < 2.0
    (line,) = retry_lines(caplog)
    assert "try 1 of 3 failed (timed out after 0.400 seconds)" in line


@pytest.mark.timeout(20)
def test_the_watchdog_cuts_at_the_deadline_of_the_attempt_in_progress() -> None:
    """Attempts one after another leave the watching thread asleep until the deadline it
    knows; an earlier one wakes it, and a disarmed one never fires into the next."""
    dog = Watchdog()
    ours, theirs = socket.socketpair()
    try:
        dog.add(ours)
        dog.arm(30)
        dog.disarm()
        dog.arm(60)  # later than what it sleeps until: it is not woken for it
        dog.disarm()
        dog.arm(0.2)  # earlier: it must watch this one
        ours.settimeout(10)
        assert ours.recv(1) == b""  # shut down at the deadline
        assert dog.fired
        dog.arm(0.05)
        dog.disarm()
        time.sleep(0.3)
        assert not dog.fired
    finally:
        dog.close()
        ours.close()
        theirs.close()


# --------------------------------------------------------------------------- statuses


@pytest.mark.timeout(20)
def test_503_burst_waits_exponentially_up_to_the_cap(
    fault: FaultServer,
    sync: t.Any,
    naps: list[float],
    no_jitter: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    busy = reply(503, "busy", (), "text/plain")
    tries = serve_pages(fault, fail=lambda page, n: busy if page == 2 and n <= 4 else None)

    result = sync(paged(fault, reattempts=5, backoff_base=0.01, backoff_max=0.03))

    assert ids(result.records("s")) == ALL_IDS
    assert tries == {1: 1, 2: 5, 3: 1}
    assert naps == [0.01, 0.02, 0.03, 0.03]
    lines = retry_lines(caplog)
    assert [re.search(r"try (\d) of 5", line).group(1) for line in lines] == ["1", "2", "3", "4"]  # type: ignore[union-attr]
    assert [re.search(r"retrying in (\S+) s", line).group(1) for line in lines] == [  # type: ignore[union-attr]
        "0.01",
        "0.02",
        "0.03",
        "0.03",
    ]


@pytest.mark.timeout(20)
def test_retry_after_seconds_is_waited_exactly(
    fault: FaultServer, sync: t.Any, naps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    slow_down = reply(429, "slow down", [("Retry-After", "1")], "text/plain")
    tries = serve_pages(fault, fail=lambda page, n: slow_down if (page, n) == (2, 1) else None)

    result = sync(paged(fault))

    assert ids(result.records("s")) == ALL_IDS
    assert tries == {1: 1, 2: 2, 3: 1}
    assert naps == [1.0]  # exactly, no jitter on top of what the server asked for
    (line,) = retry_lines(caplog)
    assert "try 1 of 3 failed (status code 429); retrying in 1.00 s" in line


@pytest.mark.timeout(20)
def test_retry_after_http_date_is_honoured_measured_at_the_server(
    fault: FaultServer, sync: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Real sleep: the retry must not arrive before the date the server gave."""
    dates: list[float] = []

    def fail(page: int, n: int) -> Action | None:
        if (page, n) != (2, 1):
            return None
        text, when = http_date(2)
        dates.append(when)
        return reply(429, "later", [("Retry-After", text)], "text/plain")

    tries = serve_pages(fault, fail=fail)

    result = sync(paged(fault))

    assert ids(result.records("s")) == ALL_IDS
    assert tries == {1: 1, 2: 2, 3: 1}
    first, second = [h for h in fault.hits("/pages") if h.args["page"] == "2"]
    assert second.wall >= dates[0] - 0.02  # not before the date (2 ms clock slack)
    assert second.at - first.at < 2.5  # and not much after
    (line,) = retry_lines(caplog)
    assert re.search(r"status code 429\); retrying in [12]\.\d\d s", line)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("value", ["0", "Wed, 21 Oct 2015 07:28:00 GMT"], ids=["zero", "past"])
def test_retry_after_zero_or_past_falls_back_to_backoff(
    value: str,
    fault: FaultServer,
    sync: t.Any,
    naps: list[float],
    no_jitter: None,
) -> None:
    busy = reply(503, "busy", [("Retry-After", value)], "text/plain")
    tries = serve_pages(fault, fail=lambda page, n: busy if (page, n) == (2, 1) else None)

    result = sync(paged(fault, backoff_base=0.04))

    assert ids(result.records("s")) == ALL_IDS
    assert tries == {1: 1, 2: 2, 3: 1}
    assert naps == [0.04]  # the backoff schedule, never an instant retry


@pytest.mark.timeout(20)
def test_retry_after_over_the_cap_fails_fast_and_says_so(
    fault: FaultServer, sync: t.Any, naps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    hours = reply(429, "come back tomorrow", [("Retry-After", "3600")], "text/plain")
    tries = serve_pages(fault, fail=lambda page, n: hours if page == 2 else None)

    with pytest.raises(RetryAfterTooLong) as caught:
        sync(paged(fault, retry_after_max=30))

    assert tries == {1: 1, 2: 1}
    assert naps == []
    assert retry_lines(caplog) == []
    message = str(caught.value)
    assert message.startswith(
        f"Error in HTTP GET of `{fault.url}/pages?page=2&api_key={MASK}` [stream s, page 2]: "
    )
    assert "status code 429. server asked to wait 3600 s (Retry-After)" in message
    assert "over retry_after_max=30 s; giving up" in message
    assert_quiet_about_secrets(message, caplog.text)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_retriable_statuses_are_retried(
    status: int, fault: FaultServer, sync: t.Any, naps: list[float]
) -> None:
    fault.route("/x")(lambda hit: reply(status, "no", (), "text/plain"))

    with pytest.raises(TransientRequestError) as caught:
        sync(config(fault.url + "/x", reattempts=2))

    assert caught.value.status == status
    assert len(fault.hits("/x")) == 2
    assert len(naps) == 1


@pytest.mark.timeout(20)
@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_other_4xx_fail_at_once(
    status: int,
    fault: FaultServer,
    sync: t.Any,
    naps: list[float],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fault.route("/x")(lambda hit: reply(status, "no", (), "text/plain"))

    with pytest.raises(PermanentRequestError) as caught:
        sync(config(fault.url + "/x", reattempts=5))

    assert str(caught.value).startswith(
        f"Error in HTTP GET of `{fault.url}/x` [stream s, page 1]: status code {status}."
    )
    assert len(fault.hits("/x")) == 1
    assert naps == []
    assert retry_lines(caplog) == []


@pytest.mark.timeout(20)
def test_500_html_body_envelope_shows_the_start_of_the_body_redacted(
    fault: FaultServer, sync: t.Any, naps: list[float]
) -> None:
    """The server echoes our URL in its error page, and a secret straddles the cut."""

    @fault.route("/x")
    def error_page(hit: Hit) -> Action:
        head = f"<!DOCTYPE html>\n<html><body><h1>Internal Server Error</h1>\n<p>GET {hit.target}</p>\n"
        filler = "x" * (ERROR_BODY_CHARS - len(head) - 6)
        body = head + filler + PLANTED + "</body></html>" + "y" * 5000
        return reply(500, body, [("X-Request-Id", "abc123")], "text/html; charset=utf-8")

    with pytest.raises(TransientRequestError) as caught:
        sync(config(fault.url + f"/x?api_key={PLANTED}", reattempts=2))

    error = caught.value
    assert len(fault.hits("/x")) == 2
    assert error.status == 500
    message = str(error)
    url = f"{fault.url}/x?api_key={MASK}"
    assert message.startswith(
        f"Error in HTTP GET of `{url}` [stream s, page 1]: status code 500.\nheader:\n"
    )
    assert "X-Request-Id: abc123" in message
    assert error.body is not None
    assert error.body.startswith(
        f"<!DOCTYPE html>\n<html><body><h1>Internal Server Error</h1>\n<p>GET /x?api_key={MASK}</p>"
    )
    assert error.body.endswith(" ...")
    assert len(error.body) == ERROR_BODY_CHARS + len(" ...")
    assert_quiet_about_secrets(message)
    assert "k3y-pl" not in message  # the straddling secret was masked before the cut


@pytest.mark.timeout(20)
def test_retry_budget_exhausted_makes_exactly_reattempts_requests(
    fault: FaultServer, sync: t.Any, naps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    fault.route("/x")(lambda hit: reply(503, "busy", (), "text/plain"))

    with pytest.raises(TransientRequestError) as caught:
        sync(config(fault.url + "/x", reattempts=4))

    assert caught.value.status == 503
    assert len(fault.hits("/x")) == 4
    assert len(naps) == 3
    lines = retry_lines(caplog)
    assert [line.split(" failed")[0] for line in lines] == [
        "stream s: try 1 of 4",
        "stream s: try 2 of 4",
        "stream s: try 3 of 4",
    ]


# --------------------------------------------------------------------------- connections


@pytest.mark.timeout(20)
def test_refused_connection_is_retried_then_fails(
    sync: t.Any, naps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    with refused_port() as port, pytest.raises(TransientRequestError) as caught:
        sync(config(f"http://127.0.0.1:{port}/x?api_key={PLANTED}", reattempts=3))

    message = str(caught.value)
    url = f"http://127.0.0.1:{port}/x?api_key={MASK}"
    assert message.startswith(
        f"Error in HTTP GET of `{url}` [stream s, page 1]: connection failed: "
    )
    assert "Connection refused" in message
    assert len(naps) == 2
    lines = retry_lines(caplog)
    assert len(lines) == 2
    assert all("(connection failed: [Errno 111] Connection refused)" in line for line in lines)
    assert all(line.endswith(f"GET {url}") for line in lines)
    assert_quiet_about_secrets(message, caplog.text)


@pytest.fixture(scope="module")
def untrusted_tls() -> ssl.SSLContext:
    """A server context whose certificate no client trusts (a fresh trustme CA)."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.mark.timeout(20)
def test_tls_verification_failure_is_not_retried(
    untrusted_tls: ssl.SSLContext,
    sync: t.Any,
    naps: list[float],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with FaultServer(tls=untrusted_tls) as server:
        server.route("/x")(lambda hit: json_reply([{"id": 1}]))
        with pytest.raises(PermanentRequestError) as caught:
            sync(config(server.url + "/x", reattempts=5))
        connections = server.connections

    assert connections == 1
    assert "TLS error" in str(caught.value)
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert naps == []
    assert retry_lines(caplog) == []


# --------------------------------------------------------------------------- discovery


@pytest.mark.timeout(20)
def test_discovery_sample_is_fetched_with_retries_and_not_fetched_again(
    fault: FaultServer, sync: t.Any, naps: list[float]
) -> None:
    """Without `schema`, discovery reads page 1; the sync reuses it, records once."""
    busy = reply(503, "busy", (), "text/plain")
    tries = serve_pages(fault, fail=lambda page, n: busy if (page, n) == (1, 1) else None)
    cfg = paged(fault)
    del cfg["streams"][0]["schema"]

    result = sync(cfg)

    assert ids(result.records("s")) == ALL_IDS
    assert tries == {1: 2, 2: 1, 3: 1}
    assert len(naps) == 1


# --------------------------------------------------------------------------- rate limit


@pytest.mark.timeout(20)
def test_rate_limit_spaces_requests_at_the_server(fault: FaultServer, sync: t.Any) -> None:
    serve_pages(fault, last=6)

    started = time.monotonic()
    result = sync(paged(fault, rate_limit=5))
    elapsed = time.monotonic() - started

    assert len(result.records("s")) == 12
    arrivals = [h.at for h in fault.hits("/pages")]
    assert len(arrivals) == 6
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert min(gaps) >= 0.18, gaps  # 1/5 s, less scheduling slack
    assert arrivals[-1] - arrivals[0] >= 0.98
    assert elapsed < 3.0


# --------------------------------------------------------------------------- whole runs
# Whole runs sleep for real, so their waits are short (a config file's fractions arrive
# as Decimal and are read as numbers: see the last test).

CLI = {"reattempts": 3, "backoff_base": 0.05, "backoff_max": 0.1}


def cli_paged(fault: FaultServer, **options: t.Any) -> dict[str, t.Any]:
    return paged(fault, **{**CLI, **options})


def singer(stdout: str) -> list[dict[str, t.Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def records_of(stdout: str) -> list[dict[str, t.Any]]:
    return [m["record"] for m in singer(stdout) if m["type"] == "RECORD"]


@pytest.mark.timeout(30)
def test_cli_retry_after_is_honoured_and_every_record_emitted_once(
    fault: FaultServer, cli: t.Any
) -> None:
    faults = {
        1: reply(429, "slow down", [("Retry-After", "1")], "text/plain"),
        2: reply(503, "busy", [("Retry-After", "1")], "text/plain"),
    }
    tries = serve_pages(fault, fail=lambda page, n: faults.get(n) if page == 2 else None)

    done = cli(cli_paged(fault), timeout=25)

    assert done.code == 0, done.stderr
    assert ids(records_of(done.stdout)) == ALL_IDS
    assert tries == {1: 1, 2: 3, 3: 1}
    page_two = [h.at for h in fault.hits("/pages") if h.args["page"] == "2"]
    assert page_two[1] - page_two[0] >= 1.0
    assert page_two[2] - page_two[1] >= 1.0
    warnings = lines_matching(WARNING_LINE, done.stderr)
    assert len(warnings) == 2
    assert "try 1 of 3 failed (status code 429); retrying in 1.00 s: GET" in warnings[0]
    assert "try 2 of 3 failed (status code 503); retrying in 1.00 s: GET" in warnings[1]
    assert all(w.endswith(f"{fault.url}/pages?page=2&api_key={MASK}") for w in warnings)
    assert lines_matching(ERROR_LINE, done.stderr) == []
    assert "Traceback" not in done.stderr
    assert_quiet_about_secrets(done.stdout, done.stderr)


@pytest.mark.timeout(30)
def test_cli_budget_exhausted_exits_nonzero_after_the_complete_pages(
    fault: FaultServer, cli: t.Any
) -> None:
    @fault.route("/pages")
    def pages(hit: Hit) -> Action:
        page = int(hit.args["page"])
        if page == 3:
            body = f"<html><body><h1>500</h1><p>GET {hit.target}</p></body></html>"
            return reply(500, body, (), "text/html")
        following = f"/pages?page={page + 1}"
        return json_reply({"items": [{"id": page * 10 + i} for i in range(2)], "next": following})

    done = cli(cli_paged(fault), timeout=25)

    assert done.code == 1
    assert ids(records_of(done.stdout)) == [10, 11, 20, 21]  # pages 1 and 2, once each
    assert [h.args["page"] for h in fault.hits("/pages")] == ["1", "2", "3", "3", "3"]
    warnings = lines_matching(WARNING_LINE, done.stderr)
    assert [w.split("stream s: ")[1].split(" failed")[0] for w in warnings] == [
        "try 1 of 3",
        "try 2 of 3",
    ]
    url = f"{fault.url}/pages?page=3&api_key={MASK}"
    (envelope,) = [e for e in lines_matching(ERROR_LINE, done.stderr) if "Error in HTTP" in e]
    assert envelope.endswith(f"Error in HTTP GET of `{url}` [stream s, page 3]: status code 500.")
    assert f"body:\n<html><body><h1>500</h1><p>GET /pages?page=3&api_key={MASK}</p>" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr
    assert_quiet_about_secrets(done.stdout, done.stderr)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("status", "headers", "reason"),
    [
        (404, [], "status code 404."),
        (
            429,
            [("Retry-After", "3600")],
            "status code 429. server asked to wait 3600 s (Retry-After), over "
            "retry_after_max=30 s; giving up",
        ),
    ],
    ids=["404", "retry-after-over-cap"],
)
def test_cli_fails_fast_with_one_request(
    status: int, headers: list[tuple[str, str]], reason: str, fault: FaultServer, cli: t.Any
) -> None:
    fault.route("/x")(lambda hit: reply(status, "nope", headers, "text/plain"))

    started = time.monotonic()
    done = cli(config(fault.url + f"/x?api_key={PLANTED}", **CLI, retry_after_max=30), timeout=25)

    assert time.monotonic() - started < 15
    assert done.code == 1
    assert len(fault.hits("/x")) == 1
    assert lines_matching(WARNING_LINE, done.stderr) == []
    (envelope,) = [e for e in lines_matching(ERROR_LINE, done.stderr) if "Error in HTTP" in e]
    assert envelope.endswith(
        f"Error in HTTP GET of `{fault.url}/x?api_key={MASK}` [stream s, page 1]: {reason}"
    )
    assert "Traceback" not in done.stderr
    assert_quiet_about_secrets(done.stdout, done.stderr)


@pytest.mark.timeout(30)
def test_cli_final_failure_is_one_error_line(fault: FaultServer, cli: t.Any) -> None:
    """singer-sdk adds "An unhandled error occurred while syncing 's'" at ERROR."""
    fault.route("/x")(lambda hit: reply(404, "nope", (), "text/plain"))

    done = cli(config(fault.url + "/x", **CLI), timeout=25)

    assert done.code == 1
    errors = lines_matching(ERROR_LINE, done.stderr)
    assert len(errors) == 1, errors
    assert "Error in HTTP GET of" in errors[0]


@pytest.mark.timeout(30)
def test_cli_accepts_fractional_seconds_from_a_config_file(fault: FaultServer, cli: t.Any) -> None:
    """singer-sdk reads config files with parse_float=Decimal; 0.5 must still be seconds."""
    serve_pages(fault)

    done = cli(paged(fault, timeout=2.5, rate_limit=50.0), timeout=25)

    assert done.code == 0, done.stderr
    assert ids(records_of(done.stdout)) == ALL_IDS
