"""Reattempts as data: what is retried, how long to wait, and the one loop that sleeps.

r.http's ``reattempts`` option is the *total* number of tries. RethinkDB retries a failed
request at once, with no delay; a data pipeline hammering a struggling server must not,
so tap-rhttp waits between tries: exponential backoff with full jitter (the ``backoff``
package's ``expo`` and ``full_jitter``), each wait capped, and a server's ``Retry-After``
(RFC 9110 §10.2.3) honoured exactly, up to a cap.

The policy is a frozen dataclass and the wait schedule a pure generator, so both can be
tested without time passing; :func:`call_with_retries` is the only place that sleeps, and
its ``sleep`` is injected (tests pass a recorder). Nothing sleeps in a response
validator.

Retried (the request raises :class:`~tap_rhttp.errors.TransientRequestError`):
connection refused/reset, DNS hiccups, timeouts, a body cut short, and HTTP statuses in
:data:`RETRIABLE_STATUSES` (408, 425, 429, 500, 502, 503, 504; RethinkDB retries the
same set minus 425 and 429).

Never retried, failing at once: other 4xx, TLS verification failures, unsupported
protocols, too many redirects (:class:`~tap_rhttp.errors.PermanentRequestError`), bodies
that cannot be read (:class:`~tap_rhttp.errors.ResponseFormatError`), config and
expression errors, and anything else that is not a ``TransientRequestError``.

A ``Retry-After`` of ``0``, an unparsable one, or a date in the past falls back to the
backoff schedule (never an instant retry storm); one over ``retry_after_max`` fails fast
with :class:`RetryAfterTooLong` rather than stalling the pipeline for an hour.
"""

from __future__ import annotations

import dataclasses
import email.utils
import math
import re
import time
import typing as t
from datetime import timezone

import backoff

from tap_rhttp import errors

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = [
    "RETRIABLE_STATUSES",
    "RetryAfterTooLong",
    "RetryBudgetExhausted",
    "RetryPolicy",
    "call_with_retries",
    "parse_retry_after",
]

T = t.TypeVar("T")

RETRIABLE_STATUSES: frozenset[int] = frozenset({408, 425, 429, 500, 502, 503, 504})
"""HTTP statuses worth another try; every other 4xx/5xx fails at once."""

_DELAY_SECONDS_RE = re.compile(r"\d+(?:\.\d+)?")


class RetryAfterTooLong(errors.PermanentRequestError):
    """The server asked us to wait longer than ``retry_after_max``; we give up.

    It keeps the method, URL, status, header and body of the error that carried the
    ``Retry-After``, which is also its ``__cause__``.

    Attributes:
        requested: seconds the server asked for.
        limit: the policy's ``retry_after_max``.
    """

    def __init__(
        self,
        error: errors.RequestError | None,
        requested: float,
        limit: float,
    ) -> None:
        self.requested = requested
        self.limit = limit
        reason = (
            f"server asked to wait {requested:g} s (Retry-After), over "
            f"retry_after_max={limit:g} s; giving up"
        )
        if error is not None:
            reason = f"{error.reason.rstrip()} {reason}"
        super().__init__(
            error.method if error is not None else "?",
            error.url if error is not None else "?",
            reason,
            status=error.status if error is not None else None,
            header=error.header if error is not None else None,
            body=error.body if error is not None else None,
            retry_after=requested,
        )


class RetryBudgetExhausted(errors.PermanentRequestError):
    """Another try would pass ``max_retry_seconds``: the request fails with its last error.

    It keeps the method, URL, status, header and body of the last try's error, which is
    also its ``__cause__``.

    Attributes:
        spent: seconds since the first try started.
        budget: the policy's ``max_seconds``.
    """

    def __init__(
        self, error: errors.RequestError, spent: float, wait: float, budget: float
    ) -> None:
        self.spent = spent
        self.budget = budget
        reason = (
            f"{error.reason.rstrip()} Gave up after {spent:.1f} s: waiting {wait:.1f} s for "
            f"another try would pass max_retry_seconds={budget:g} s."
        )
        super().__init__(
            error.method,
            error.url,
            reason,
            status=error.status,
            header=error.header,
            body=error.body,
            retry_after=error.retry_after,
        )


def _check_number(name: str, value: float, *, minimum: float, strict: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"RetryPolicy.{name} must be a number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        op = ">" if strict else ">="
        raise ValueError(f"RetryPolicy.{name} must be {op} {minimum:g}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How often to try one request and how long to wait in between.

    Attributes:
        tries: r.http's ``reattempts``: the total number of tries, at least 1
            (1 means no retry).
        backoff_base: seconds; the upper bound of the first jittered wait. Wait ``n``
            (0-based) is drawn from ``[0, min(backoff_max, backoff_base * 2**n)]``.
        backoff_max: cap on any one backoff wait, seconds.
        retry_after_max: cap on an honoured ``Retry-After``, seconds; a longer request
            fails fast with :class:`RetryAfterTooLong`.
        jitter: maps the un-jittered wait to the actual wait; ``backoff.full_jitter``
            (uniform in ``[0, value]``). Tests pass ``lambda v: v`` for a fixed schedule.
        max_seconds: ``max_retry_seconds``: the longest one request may take, all its
            tries and waits included; a retry whose wait would pass it is not made
            (:class:`RetryBudgetExhausted`). None for no budget.
    """

    tries: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    retry_after_max: float = 300.0
    max_seconds: float | None = None
    jitter: Callable[[float], float] = dataclasses.field(
        default=backoff.full_jitter, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        """Reject values that would make no sense (a bug upstream: spec.py validates).

        Raises:
            ValueError: a field is out of range.
        """
        if isinstance(self.tries, bool) or not isinstance(self.tries, int) or self.tries < 1:
            raise ValueError(f"RetryPolicy.tries must be an integer >= 1, got {self.tries!r}")
        _check_number("backoff_base", self.backoff_base, minimum=0, strict=True)
        _check_number("backoff_max", self.backoff_max, minimum=0, strict=False)
        _check_number("retry_after_max", self.retry_after_max, minimum=0, strict=False)
        if self.max_seconds is not None:
            _check_number("max_seconds", self.max_seconds, minimum=0, strict=True)

    def backoff_waits(self) -> Iterator[float]:
        """Yield the backoff waits, one per retry, forever; sleeps nowhere.

        Exponential (``backoff.expo``, base 2, factor ``backoff_base``, capped at
        ``backoff_max``) with full jitter. Take a fresh generator per request.

        Yields:
            Seconds to wait before the next try.
        """
        schedule = backoff.expo(base=2, factor=self.backoff_base, max_value=self.backoff_max)
        next(schedule)  # expo first yields 0 to prime .send(); it is not a wait
        for ceiling in schedule:
            yield max(0.0, min(self.jitter(ceiling), self.backoff_max))

    def wait_before(
        self,
        next_try: int,
        retry_after: float | None,
        waits: Iterator[float],
        *,
        error: errors.RequestError | None = None,
    ) -> float:
        """Return how long to wait before try number ``next_try``.

        A ``Retry-After`` above zero wins exactly, with no jitter added (RFC 9110
        §10.2.3: the server said when it can take us again); otherwise the next value
        of ``waits`` (from :meth:`backoff_waits`) is used.

        Args:
            next_try: the try about to be made (2 for the first retry).
            retry_after: seconds from the server's ``Retry-After``, or None.
            waits: this request's backoff schedule.
            error: the error that carried ``retry_after``; pass it so a
                :class:`RetryAfterTooLong` keeps its method, URL and status.

        Returns:
            Seconds to wait.

        Raises:
            RetryAfterTooLong: ``retry_after`` is over ``retry_after_max``.
            ValueError: ``next_try`` is not a retry of this policy (outside 2..tries).
        """
        if not 2 <= next_try <= self.tries:
            raise ValueError(f"next_try must be in 2..{self.tries}, got {next_try}")
        if retry_after is not None and retry_after > 0:
            if retry_after > self.retry_after_max:
                raise RetryAfterTooLong(error, retry_after, self.retry_after_max) from error
            return float(retry_after)
        return next(waits)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Read a ``Retry-After`` header value (RFC 9110 §10.2.3) as seconds to wait.

    The value is either ``delay-seconds`` (a non-negative integer; a decimal fraction is
    tolerated) or an ``HTTP-date`` in any of the three forms RFC 9110 §5.6.7 asks a
    recipient to accept (IMF-fixdate, RFC 850, asctime), read with
    ``email.utils.parsedate_to_datetime``; a date without a zone (asctime) is taken as
    GMT, as HTTP-dates always are.

    Args:
        value: the header value, or None when the header is absent.
        now: the current POSIX time, for a date; defaults to ``time.time()``.

    Returns:
        Seconds to wait, above zero; or None when the header is absent, unparsable,
        zero, negative, or a date not in the future. None means "use the backoff
        schedule", never "retry at once".
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELAY_SECONDS_RE.fullmatch(text):
        seconds = float(text)
        return seconds if seconds > 0 and math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    seconds = when.timestamp() - (time.time() if now is None else now)
    return seconds if seconds > 0 else None


def call_with_retries(
    attempt: Callable[[int], T],
    policy: RetryPolicy,
    *,
    on_retry: Callable[[int, float, errors.RequestError], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call ``attempt`` until it succeeds, it fails for good, or the tries run out.

    Args:
        attempt: makes one try; receives the try number (1 for the first). It returns
            the result, or raises :class:`~tap_rhttp.errors.TransientRequestError` to
            ask for another try (its ``retry_after`` is honoured). Any other exception
            propagates at once. Each try must start clean: nothing from a failed try
            may carry over.
        policy: how many tries and how long to wait.
        on_retry: called once per retry, before sleeping, with the number of the try
            that failed, the seconds about to be waited, and the error; log one WARNING
            line there.
        sleep: the sleep function (tests inject a recorder).
        clock: a monotonic clock, for ``policy.max_seconds`` (tests inject one).

    Returns:
        What ``attempt`` returned.

    Raises:
        TransientRequestError: the last try's error, unchanged, once ``policy.tries``
            tries have failed.
        RetryAfterTooLong: the server asked to wait longer than
            ``policy.retry_after_max``.
        RetryBudgetExhausted: the next wait would pass ``policy.max_seconds``.
    """
    waits = policy.backoff_waits()
    try_number = 1
    started = clock()
    while True:
        try:
            return attempt(try_number)
        except errors.TransientRequestError as error:
            if try_number >= policy.tries:
                raise
            wait = policy.wait_before(try_number + 1, error.retry_after, waits, error=error)
            spent = clock() - started
            if policy.max_seconds is not None and spent + wait > policy.max_seconds:
                raise RetryBudgetExhausted(error, spent, wait, policy.max_seconds) from error
            if on_retry is not None:
                on_retry(try_number, wait, error)
        sleep(wait)
        try_number += 1
