"""Client-side rate limit: smooth spacing on a fake clock, a concurrency cap on real threads."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from tap_rhttp.http.ratelimit import RateLimiter


class FakeTime:
    """A clock that only moves when someone sleeps (or the test advances it)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


@pytest.mark.parametrize(("n", "rate"), [(1, 2.0), (5, 2.0), (10, 4.0), (7, 0.5)])
def test_back_to_back_acquisitions_wait_one_interval_each(n: int, rate: float) -> None:
    fake = FakeTime()
    limiter = RateLimiter(rate, clock=fake.clock, sleep=fake.sleep)
    waited = []
    for _ in range(n):
        with limiter as w:
            waited.append(w)
    assert waited[0] == 0.0  # burst of one
    assert waited[1:] == pytest.approx([1 / rate] * (n - 1))
    assert sum(waited) == pytest.approx((n - 1) / rate)
    assert fake.now == pytest.approx(1000.0 + (n - 1) / rate)


def test_idle_time_counts_towards_the_interval() -> None:
    fake = FakeTime()
    limiter = RateLimiter(1.0, clock=fake.clock, sleep=fake.sleep)
    assert limiter.acquire() == 0.0
    limiter.release()
    fake.now += 0.25  # the request took 0.25 s
    assert limiter.acquire() == pytest.approx(0.75)
    limiter.release()
    fake.now += 10  # long idle: no credit is banked, the next one simply goes
    assert limiter.acquire() == 0.0
    limiter.release()
    assert limiter.acquire() == pytest.approx(1.0)
    limiter.release()


def test_threads_reserve_distinct_slots_without_sleeping_under_the_lock() -> None:
    # The clock stands still and sleep only records: each thread must have reserved its
    # own start time, so the waits are exactly 0, 1/R, 2/R, ... in some order.
    fake = FakeTime()
    sleeps: list[float] = []
    lock = threading.Lock()

    def record(seconds: float) -> None:
        with lock:
            sleeps.append(seconds)

    limiter = RateLimiter(10.0, clock=fake.clock, sleep=record)
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        limiter.acquire()
        limiter.release()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=5)
    assert sorted(sleeps) == pytest.approx([k / 10 for k in range(1, 8)])


def test_max_concurrency_is_never_exceeded_with_real_threads() -> None:
    limiter = RateLimiter(max_concurrency=2)
    lock = threading.Lock()
    in_flight = 0
    peak = 0
    done = 0

    def worker() -> None:
        nonlocal in_flight, peak, done
        for _ in range(3):
            with limiter:
                with lock:
                    in_flight += 1
                    peak = max(peak, in_flight)
                time.sleep(0.01)
                with lock:
                    in_flight -= 1
        with lock:
            done += 1

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=10)
    assert done == 6
    assert peak == 2  # reached, never exceeded
    assert limiter.in_flight == 0


def test_concurrency_and_rate_together_keep_the_spacing() -> None:
    fake = FakeTime()
    limiter = RateLimiter(2.0, max_concurrency=1, clock=fake.clock, sleep=fake.sleep)
    starts = []
    for _ in range(4):
        with limiter:
            starts.append(fake.now)
    assert [b - a for a, b in itertools.pairwise(starts)] == pytest.approx([0.5, 0.5, 0.5])


def test_unlimited_never_waits() -> None:
    fake = FakeTime()
    limiter = RateLimiter(clock=fake.clock, sleep=fake.sleep)
    for _ in range(100):
        with limiter as waited:
            assert waited == 0.0
    assert fake.sleeps == []


def test_an_interrupted_acquire_gives_its_slot_back() -> None:
    def boom(seconds: float) -> None:
        raise KeyboardInterrupt

    fake = FakeTime()
    limiter = RateLimiter(1.0, max_concurrency=1, clock=fake.clock, sleep=boom)
    limiter.acquire()
    limiter.release()
    with pytest.raises(KeyboardInterrupt):
        limiter.acquire()  # has to wait, and the sleep is interrupted
    assert limiter.in_flight == 0


def test_release_without_acquire_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="without a matching acquire"):
        RateLimiter(1.0).release()


@pytest.mark.parametrize(
    ("rate", "max_concurrency"),
    [
        (0, None),
        (-1, None),
        (float("inf"), None),
        (float("nan"), None),
        (None, 0),
        (None, 1.5),
        (True, None),
    ],
)
def test_rejects_bad_limits(rate: float | None, max_concurrency: int | None) -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate, max_concurrency)
