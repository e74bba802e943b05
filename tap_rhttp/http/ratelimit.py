"""Rate limits for one stream: the client-side `rate_limit`, and the limits a server announces.

:class:`ServerRateLimit` (always on) reads the limits servers announce in their response
headers and makes the stream's next requests, from all its concurrent chains, wait until
the announced reset once the remaining quota is used up; see its docstring for the
headers. :class:`RateLimiter` (below) is the optional client-side limit: requests per
second, and in flight.

Some APIs publish a quota and punish bursts with 429s; waiting on our side is cheaper
than being told to by ``Retry-After``. The limit is per stream; a stream's worker threads
share one :class:`RateLimiter`.

Spacing is smooth: with ``rate=R`` requests start at least ``1/R`` seconds apart, with a
burst of one (after an idle spell the first request starts at once, the next waits a full
interval). A token bucket allowing bursts was rejected: bursts are what trigger server
side throttling, and smooth spacing is the easier promise to reason about.

Each caller reserves its start time under a lock and then sleeps *outside* the lock, so
threads never sleep while holding it. The concurrency slot is taken before the start
time is reserved, so requests released together from a full pool still start ``1/R``
apart. The clock and the sleep are injected so tests need no real time.
"""

from __future__ import annotations

import dataclasses
import math
import re
import threading
import time
import typing as t

from tap_rhttp.http.retry import parse_retry_after

if t.TYPE_CHECKING:
    import logging
    from collections.abc import Callable, Iterable
    from types import TracebackType

__all__ = ["Announcement", "RateLimiter", "ServerRateLimit", "parse_rate_limit"]


class RateLimiter:
    """Space requests to ``rate`` per second and cap the requests in flight.

    Use it around each request::

        with limiter:
            response = session.send(request)

    Args:
        rate: requests per second; None for no limit.
        max_concurrency: requests in flight at once; None for no limit.
        clock: a monotonic clock in seconds (injected by tests).
        sleep: the sleep function (injected by tests).

    Raises:
        ValueError: ``rate`` is not a finite number above zero, or ``max_concurrency``
            is not an integer of at least 1.
    """

    def __init__(
        self,
        rate: float | None = None,
        max_concurrency: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate is not None and (
            isinstance(rate, bool)
            or not isinstance(rate, (int, float))
            or not math.isfinite(rate)
            or rate <= 0
        ):
            raise ValueError(f"rate must be a finite number > 0 (requests/s), got {rate!r}")
        if max_concurrency is not None and (
            isinstance(max_concurrency, bool)
            or not isinstance(max_concurrency, int)
            or max_concurrency < 1
        ):
            raise ValueError(f"max_concurrency must be an integer >= 1, got {max_concurrency!r}")
        self.rate = rate
        self.max_concurrency = max_concurrency
        self._interval = 1.0 / rate if rate is not None else 0.0
        self._clock = clock
        self._sleep = sleep
        self._cond = threading.Condition(threading.Lock())
        self._next_start = -math.inf
        self._in_flight = 0

    def __repr__(self) -> str:
        """Show the limits."""
        return f"RateLimiter(rate={self.rate!r}, max_concurrency={self.max_concurrency!r})"

    @property
    def in_flight(self) -> int:
        """Requests acquired and not yet released."""
        with self._cond:
            return self._in_flight

    def acquire(self) -> float:
        """Block until a request may start, and count it as in flight.

        Thread-safe. Every ``acquire`` must be matched by one :meth:`release`.

        Returns:
            Seconds waited (by ``clock``), 0.0 when the request could start at once.
        """
        started = self._clock()
        with self._cond:
            if self.max_concurrency is not None:
                while self._in_flight >= self.max_concurrency:
                    self._cond.wait()  # releases the lock while waiting
            self._in_flight += 1
        try:
            if self._interval:
                with self._cond:
                    now = self._clock()
                    slot = max(now, self._next_start)
                    self._next_start = slot + self._interval
                delay = slot - now
                if delay > 0:
                    self._sleep(delay)
        except BaseException:
            self.release()
            raise
        return max(0.0, self._clock() - started)

    def release(self) -> None:
        """Mark one request as finished, letting a waiting one start.

        Raises:
            RuntimeError: more releases than acquisitions.
        """
        with self._cond:
            if self._in_flight <= 0:
                raise RuntimeError("RateLimiter.release() called without a matching acquire()")
            self._in_flight -= 1
            self._cond.notify()

    def __enter__(self) -> float:
        """Acquire; ``with limiter as waited:`` binds the seconds waited."""
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Release, whether the request succeeded or not."""
        self.release()


# --------------------------------------------------------------------------- announced limits

#: A reset at or above this is an epoch time in seconds; below it, seconds from now
#: (1e9 s is 2001-09-09; no window is 31 years long).
EPOCH_SECONDS = 1e9
#: A reset at or above this is an epoch time in milliseconds.
EPOCH_MILLISECONDS = 1e12
#: Statuses whose `Retry-After` holds the whole stream back, not just the failed request.
HOLDING_STATUSES = frozenset({403, 429, 503})
_NUMBER_RE = re.compile(r"^\s*-?\d+(?:\.\d+)?\s*$")


@dataclasses.dataclass(frozen=True)
class Announcement:
    """What one response said about the stream's quota.

    Attributes:
        remaining: requests left in the current window, or None when not said.
        reset: seconds from now until the window resets, or None.
        window: the policy's window in seconds (``RateLimit-Policy``'s ``w``), or None.
        source: the header that said so, for the log line.
    """

    remaining: int | None = None
    reset: float | None = None
    window: float | None = None
    source: str = ""


def _number(text: str | None) -> float | None:
    if text is None or not _NUMBER_RE.match(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _reset_seconds(value: float | None, wall: float) -> float | None:
    """A reset as seconds from now: epoch seconds, epoch milliseconds or a delta, by size."""
    if value is None or value < 0:
        return None
    if value >= EPOCH_MILLISECONDS:
        return value / 1000 - wall
    if value >= EPOCH_SECONDS:
        return value - wall
    return value


def _members(text: str) -> list[dict[str, str]]:
    """A structured field (RFC 8941) read loosely: each list member's key=value pairs.

    ``limit=100, remaining=0, reset=30`` gives one pair per member; ``"default";r=0;t=30``
    gives its parameters, under the member's name as ``""``.
    """
    members = []
    for part in text.split(","):
        pairs: dict[str, str] = {}
        for index, token in enumerate(part.split(";")):
            key, eq, value = token.strip().partition("=")
            if eq:
                pairs[key.strip().lower()] = value.strip().strip('"')
            elif index == 0:
                pairs[""] = key.strip().strip('"')
        members.append(pairs)
    return members


def parse_rate_limit(
    headers: Iterable[tuple[str, str]], *, wall: float | None = None
) -> Announcement | None:
    """Read the quota a response announces, or None when it announces none.

    Understood, case-insensitively:

    - ``X-RateLimit-Remaining`` / ``X-RateLimit-Reset`` (GitHub, GitLab, Shopify's
      GraphQL siblings), also spelt ``X-Rate-Limit-*`` (Twitter/X). The reset is an epoch
      time or seconds from now, told apart by size: at least 1e12 is epoch milliseconds,
      at least 1e9 epoch seconds, anything smaller seconds from now.
    - The IETF fields (draft-ietf-httpapi-ratelimit-headers): ``RateLimit-Remaining`` and
      ``RateLimit-Reset`` (seconds from now); ``RateLimit`` as a dictionary
      (``limit=100, remaining=0, reset=30``) or as a list of policies
      (``"default";r=0;t=30``: the one with the fewest remaining counts); and
      ``RateLimit-Policy`` (``100;w=60``), whose window ``w`` bounds the wait when no
      reset is given.

    Args:
        headers: the response's header pairs.
        wall: the current POSIX time (default: ``time.time()``), for epoch resets.
    """
    now = time.time() if wall is None else wall
    fields: dict[str, str] = {}
    for name, value in headers:
        fields[name.strip().lower()] = value
    remaining: float | None = None
    reset: float | None = None
    window: float | None = None
    source = ""
    for prefix in ("x-ratelimit-", "x-rate-limit-", "ratelimit-"):
        left = _number(fields.get(prefix + "remaining"))
        if left is not None:
            remaining, source = left, _shown_name(prefix + "remaining")
            reset = _number(fields.get(prefix + "reset"))
            if prefix == "ratelimit-":  # the IETF fields are always seconds from now
                reset = reset if reset is not None and reset >= 0 else None
            else:
                reset = _reset_seconds(reset, now)
            break
    combined = fields.get("ratelimit")
    if remaining is None and combined:
        best: tuple[float, float | None] | None = None
        dictionary: dict[str, str] = {}
        for member in _members(combined):
            if "r" in member:
                left = _number(member.get("r"))
                if left is not None and (best is None or left < best[0]):
                    best = (left, _number(member.get("t")))
            else:
                dictionary.update(member)
        left = _number(dictionary.get("remaining"))
        if best is None and left is not None:
            best = (left, _number(dictionary.get("reset")))
        if best is not None:
            remaining, reset, source = best[0], best[1], "RateLimit"
    policy = fields.get("ratelimit-policy")
    if policy:
        windows = [_number(m.get("w")) for m in _members(policy)]
        known = [w for w in windows if w is not None and w > 0]
        window = min(known) if known else None
    if remaining is None:
        return None
    return Announcement(max(int(remaining), 0), reset, window, source)


def _shown_name(lowered: str) -> str:
    """A header name as shown in a log line (``x-ratelimit-remaining`` ->
    ``X-RateLimit-Remaining``)."""
    return (
        lowered.replace("x-ratelimit-", "X-RateLimit-")
        .replace("x-rate-limit-", "X-Rate-Limit-")
        .replace("ratelimit-", "RateLimit-")
        .replace("remaining", "Remaining")
    )


class ServerRateLimit:
    """The quota a server announces, shared by a stream's chains. Thread-safe.

    Every request of the stream is made between :meth:`acquire` and :meth:`release`, and
    every response it gets is shown to :meth:`observe`. Once the announced remaining
    quota is used up (``X-RateLimit-Remaining: 0``, ``RateLimit: remaining=0``...), or a
    403, 429 or 503 carries ``Retry-After``, the stream's next requests wait until the
    announced reset, at most `max_wait` (the stream's ``retry_after_max``), with one INFO
    line per wait (not one per waiting chain).

    Concurrent chains are kept under the quota: each request started is taken off the
    remaining count, and a response's count is lowered by the requests still in flight
    (the server may not have counted them yet), so a count of 1 lets one request go, not
    one per chain. Windows are told apart by their reset time; once a reset has passed
    the count is unknown until the next response says it.

    Args:
        name: the stream's name, for the log line.
        logger: where waits are logged.
        max_wait: the longest wait, seconds (``retry_after_max``).
        clock: a monotonic clock (tests inject one).
        sleep: the sleep function (tests inject one).
        wall: the POSIX clock, for epoch resets.
    """

    def __init__(
        self,
        name: str,
        logger: logging.Logger,
        *,
        max_wait: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.logger = logger
        self.max_wait = max_wait
        self._clock = clock
        self._sleep = sleep
        self._wall = wall
        self._lock = threading.Lock()
        self.remaining: int | None = None
        self.reset_at: float | None = None
        self.in_flight = 0
        self._why = ""
        self._logged = False
        #: Waits made (tests and the stream's summary read it).
        self.waits = 0

    def __repr__(self) -> str:
        """Show the state."""
        return f"ServerRateLimit(remaining={self.remaining!r}, in_flight={self.in_flight})"

    def acquire(self, *, not_before: float | None = None) -> float:
        """Wait while the quota is used up, then count one request as started.

        Args:
            not_before: a time (on ``clock``) the caller has already waited until, e.g.
                the end of a retry's ``Retry-After`` wait: a reset at or before it has
                passed, so the same wait is never made twice.

        Returns:
            Seconds waited.
        """
        waited = 0.0
        until = not_before
        while True:
            with self._lock:
                now = self._clock()
                logical = now if until is None else max(now, until)
                if self.reset_at is not None and logical >= self.reset_at:
                    self.remaining, self.reset_at = None, None  # a new window
                    self._logged = False
                blocked = (
                    self.remaining is not None and self.remaining <= 0 and self.reset_at is not None
                )
                if not blocked or waited >= self.max_wait:
                    if self.remaining is not None:
                        self.remaining -= 1
                    self.in_flight += 1
                    return waited
                assert self.reset_at is not None
                wait = max(min(self.reset_at - logical, self.max_wait - waited), 0.0)
                if not self._logged:  # one line per wait, whoever waits
                    self._logged = True
                    self.waits += 1
                    left = self.reset_at - logical
                    self.logger.info(
                        "stream %s: the server's rate limit is used up (%s); waiting %.1f s "
                        "until it resets%s",
                        self.name,
                        self._why,
                        wait,
                        f" (capped by retry_after_max; it resets in {left:.0f} s)"
                        if left > wait + 0.001
                        else "",
                    )
            self._sleep(wait)
            waited += wait
            until = logical + wait

    def release(self) -> None:
        """A request started with :meth:`acquire` is over."""
        with self._lock:
            self.in_flight = max(self.in_flight - 1, 0)

    def observe(self, status: int, headers: list[tuple[str, str]]) -> None:
        """Learn from one response what the server says about the quota."""
        announcement = parse_rate_limit(headers, wall=self._wall())
        retry_after = None
        if status in HOLDING_STATUSES:
            retry_after = parse_retry_after(
                next((v for k, v in headers if k.lower() == "retry-after"), None)
            )
        if announcement is None and retry_after is None:
            return
        with self._lock:
            now = self._clock()
            if retry_after is not None:
                self.remaining = 0
                self.reset_at = max(self.reset_at or now, now + retry_after)
                self._why = f"status {status} with Retry-After"
                return
            assert announcement is not None
            assert announcement.remaining is not None
            if announcement.reset is not None:
                reset_at: float | None = now + announcement.reset
            elif announcement.window is not None:
                reset_at = now + announcement.window
            else:
                reset_at = None
            if reset_at is not None and reset_at <= now:
                return  # a window that is already over
            estimate = announcement.remaining - max(self.in_flight - 1, 0)
            newer = (
                self.remaining is None
                or self.reset_at is None
                or (reset_at is not None and reset_at >= self.reset_at + 1.0)
            )
            if newer:
                self.remaining, self.reset_at = estimate, reset_at
            else:
                self.remaining = min(t.cast("int", self.remaining), estimate)
                if reset_at is not None:
                    self.reset_at = max(t.cast("float", self.reset_at), reset_at)
            if self.remaining <= 0:
                shown = f"{announcement.source}: {announcement.remaining}"
                if announcement.remaining > 0:
                    shown += ", the rest taken by requests in flight"
                self._why = shown
            else:
                self._logged = False
