"""An optional client-side rate limit for one stream: requests per second, and in flight.

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

import math
import threading
import time
import typing as t

if t.TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

__all__ = ["RateLimiter"]


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
