"""Run one contender and report its wall time, peak RSS and CPU: ``bench/run.py``'s launcher.

    python -I -S bench/launch.py <timeout s> <stdout file> <stderr file> <argv...>

prints one JSON line: ``wall`` (seconds), ``maxrss_kb``, ``cpu`` (user + system seconds),
``code`` (exit code), ``started_at`` (epoch seconds just before the start) and
``timed_out``.

Why a launcher: on Linux a process's peak RSS starts at its parent's at the moment it was
started (``exec`` records the old address space's high-water mark), so a contender started
by the benchmark itself, which holds a million verified ids after S1-1M, would report at
least the benchmark's size. Started from this small stdlib-only process instead, each
contender's figure is its own. The contender gets its own process group, so a timeout
stops whatever it started too.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time


def main() -> None:
    timeout, out, err, *argv = sys.argv[1:]
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        started_at = time.time()
        started = time.perf_counter()
        child = subprocess.Popen(argv, stdout=stdout, stderr=stderr, start_new_session=True)
        timed_out = threading.Event()

        def stop() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)

        timer = threading.Timer(float(timeout), stop)
        timer.start()
        try:
            _, status, usage = os.wait4(child.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
    report = {
        "wall": wall,
        "maxrss_kb": usage.ru_maxrss,
        "cpu": usage.ru_utime + usage.ru_stime,
        "code": os.waitstatus_to_exitcode(status),
        "started_at": started_at,
        "timed_out": timed_out.is_set(),
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
