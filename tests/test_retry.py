"""Reattempts as data: Retry-After parsing, the wait schedule, and the retry loop."""

from __future__ import annotations

import itertools
import typing as t
from datetime import datetime, timezone
from email.utils import format_datetime

import pytest

from tap_rhttp import errors
from tap_rhttp.http.retry import (
    RETRIABLE_STATUSES,
    RetryAfterTooLong,
    RetryPolicy,
    call_with_retries,
    parse_retry_after,
)

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc).timestamp()


def _http_date(offset: float) -> str:
    return format_datetime(datetime.fromtimestamp(NOW + offset, tz=timezone.utc), usegmt=True)


def transient(n: int = 0, *, retry_after: float | None = None) -> errors.TransientRequestError:
    return errors.TransientRequestError(
        "GET",
        "https://h/x?token=***REDACTED***",
        f"status code 503. (try {n})",
        status=503,
        header='{"Retry-After": "x"}',
        body="busy",
        retry_after=retry_after,
    )


def no_jitter(value: float) -> float:
    return value


# -- parse_retry_after -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("  7 ", 7.0),
        ("1.5", 1.5),
        ("0", None),
        ("-5", None),
        ("", None),
        (None, None),
        ("soon", None),
        ("12 seconds", None),
        ("Fri, 99 Foo 2025 25:61:00 GMT", None),
        (_http_date(90), 90.0),
        (_http_date(-90), None),
        (_http_date(0), None),
        ("Sat, 01 Mar 2025 12:00:30 GMT", 30.0),  # IMF-fixdate
        ("Saturday, 01-Mar-25 12:00:30 GMT", 30.0),  # obsolete RFC 850 form
        ("Sat Mar  1 12:00:30 2025", 30.0),  # asctime: no zone, taken as GMT
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    got = parse_retry_after(value, now=NOW)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


def test_parse_retry_after_defaults_now_to_wall_clock() -> None:
    import time
    from email.utils import formatdate

    got = parse_retry_after(formatdate(time.time() + 60, usegmt=True))
    assert got is not None
    assert 55 < got <= 60


# -- the schedule ----------------------------------------------------------------------


def test_retriable_statuses() -> None:
    assert frozenset({408, 425, 429, 500, 502, 503, 504}) == RETRIABLE_STATUSES
    assert 404 not in RETRIABLE_STATUSES
    assert 501 not in RETRIABLE_STATUSES


def test_backoff_waits_are_full_jitter_within_exponential_bounds() -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_max=6.0)
    samples = [list(itertools.islice(policy.backoff_waits(), 8)) for _ in range(2000)]
    for n in range(8):
        bound = min(6.0, 0.5 * 2**n)
        column = [s[n] for s in samples]
        assert all(0 <= w <= bound for w in column)
        mean = sum(column) / len(column)
        assert mean == pytest.approx(bound / 2, rel=0.1)  # uniform over [0, bound]
    means = [sum(s[n] for s in samples) / len(samples) for n in range(5)]
    assert means == sorted(means)  # waits grow until the cap


def test_backoff_waits_without_jitter_are_the_ceilings() -> None:
    policy = RetryPolicy(backoff_base=1.0, backoff_max=10.0, jitter=no_jitter)
    assert list(itertools.islice(policy.backoff_waits(), 7)) == [1, 2, 4, 8, 10, 10, 10]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tries": 0},
        {"tries": 1.5},
        {"tries": True},
        {"backoff_base": 0},
        {"backoff_base": float("nan")},
        {"backoff_max": -1},
        {"retry_after_max": -1},
    ],
)
def test_policy_rejects_bad_values(kwargs: dict[str, t.Any]) -> None:
    with pytest.raises(ValueError, match="RetryPolicy"):
        RetryPolicy(**kwargs)


def test_retry_after_wins_exactly() -> None:
    policy = RetryPolicy(backoff_max=1.0, retry_after_max=300)
    waits = iter([0.25, 0.5])
    assert policy.wait_before(2, 120.0, waits) == 120.0  # no jitter, no backoff cap
    assert policy.wait_before(3, None, waits) == 0.25  # the schedule was not consumed
    assert policy.wait_before(4, 0.0, waits) == 0.5  # 0 falls back to the schedule


def test_retry_after_over_cap_fails_fast_keeping_the_request() -> None:
    policy = RetryPolicy(retry_after_max=300)
    original = transient(retry_after=3600)
    with pytest.raises(RetryAfterTooLong) as info:
        policy.wait_before(2, 3600.0, iter([]), error=original)
    err = info.value
    assert isinstance(err, errors.PermanentRequestError)
    assert (err.method, err.url, err.status) == ("GET", original.url, 503)
    assert (err.requested, err.limit) == (3600.0, 300)
    assert err.__cause__ is original
    assert (
        "server asked to wait 3600 s (Retry-After), over retry_after_max=300 s; giving up"
        in str(err)
    )
    assert str(err).startswith("Error in HTTP GET of `https://h/x?token=***REDACTED***`:")


def test_wait_before_rejects_a_try_outside_the_policy() -> None:
    with pytest.raises(ValueError, match="next_try"):
        RetryPolicy(tries=3).wait_before(4, None, iter([1.0]))


# -- call_with_retries -----------------------------------------------------------------


class Script:
    """An attempt function that plays a list of outcomes and records try numbers."""

    def __init__(self, *outcomes: t.Any) -> None:
        self.outcomes = list(outcomes)
        self.tries: list[int] = []

    def __call__(self, try_number: int) -> t.Any:
        self.tries.append(try_number)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def run(
    script: Script, policy: RetryPolicy
) -> tuple[t.Any, list[float], list[tuple[int, float, t.Any]]]:
    slept: list[float] = []
    retries: list[tuple[int, float, t.Any]] = []
    result = call_with_retries(
        script,
        policy,
        on_retry=lambda n, wait, err: retries.append((n, wait, err)),
        sleep=slept.append,
    )
    return result, slept, retries


POLICY = RetryPolicy(tries=4, backoff_base=1.0, backoff_max=5.0, jitter=no_jitter)


def test_success_first_time() -> None:
    script = Script("ok")
    assert run(script, POLICY) == ("ok", [], [])
    assert script.tries == [1]


def test_transient_then_success() -> None:
    e1, e2 = transient(1), transient(2)
    script = Script(e1, e2, "ok")
    result, slept, retries = run(script, POLICY)
    assert result == "ok"
    assert script.tries == [1, 2, 3]
    assert slept == [1.0, 2.0]
    assert retries == [(1, 1.0, e1), (2, 2.0, e2)]


def test_exhausted_budget_raises_the_last_error_unchanged() -> None:
    errs = [transient(n) for n in range(1, 5)]
    script = Script(*errs)
    slept: list[float] = []
    calls: list[int] = []
    with pytest.raises(errors.TransientRequestError) as info:
        call_with_retries(
            script, POLICY, on_retry=lambda n, w, e: calls.append(n), sleep=slept.append
        )
    assert info.value is errs[-1]
    assert script.tries == [1, 2, 3, 4]
    assert calls == [1, 2, 3]  # once per retry, never after the last try
    assert slept == [1.0, 2.0, 4.0]


@pytest.mark.parametrize(
    "error",
    [
        errors.PermanentRequestError("GET", "https://h/", "status code 404.", status=404),
        errors.ResponseFormatError("not JSON"),
        errors.ConfigError("streams[0].url", "bad"),
        errors.ExpressionError("boom"),
        ValueError("a bug"),
    ],
)
def test_anything_but_transient_is_not_retried(error: Exception) -> None:
    script = Script(error, "never")
    slept: list[float] = []
    with pytest.raises(type(error)) as info:
        call_with_retries(script, POLICY, sleep=slept.append)
    assert info.value is error
    assert script.tries == [1]
    assert slept == []


def test_tries_one_means_no_retry() -> None:
    err = transient()
    script = Script(err, "never")
    slept: list[float] = []
    with pytest.raises(errors.TransientRequestError) as info:
        call_with_retries(script, RetryPolicy(tries=1), sleep=slept.append)
    assert info.value is err
    assert script.tries == [1]
    assert slept == []


def test_retry_after_is_honoured_in_the_loop_and_the_schedule_resumes() -> None:
    e1, e2, e3 = transient(1, retry_after=7.5), transient(2), transient(3, retry_after=0.0)
    script = Script(e1, e2, e3, "ok")
    result, slept, retries = run(script, POLICY)
    assert result == "ok"
    assert slept == [7.5, 1.0, 2.0]
    assert [(n, w) for n, w, _ in retries] == [(1, 7.5), (2, 1.0), (3, 2.0)]


def test_retry_after_over_cap_in_the_loop_stops_at_once() -> None:
    err = transient(1, retry_after=3600)
    script = Script(err, "never")
    slept: list[float] = []
    calls: list[int] = []
    with pytest.raises(RetryAfterTooLong) as info:
        call_with_retries(
            script, POLICY, on_retry=lambda n, w, e: calls.append(n), sleep=slept.append
        )
    assert info.value.__cause__ is err
    assert script.tries == [1]
    assert slept == []
    assert calls == []


def test_retry_after_on_the_last_try_still_raises_the_last_error() -> None:
    errs = [transient(1), transient(2, retry_after=3600)]
    script = Script(*errs)
    with pytest.raises(errors.TransientRequestError) as info:
        call_with_retries(script, RetryPolicy(tries=2, jitter=no_jitter), sleep=lambda s: None)
    assert info.value is errs[-1]


def test_default_jitter_waits_stay_in_bounds_in_the_loop() -> None:
    policy = RetryPolicy(tries=6, backoff_base=0.5, backoff_max=3.0)
    script = Script(*[transient(n) for n in range(5)], "ok")
    _, slept, _ = run(script, policy)
    assert len(slept) == 5
    for n, wait in enumerate(slept):
        assert 0 <= wait <= min(3.0, 0.5 * 2**n)
