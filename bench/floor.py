"""The raw floor: the least a Python program can do to turn the API into RECORD lines.

``requests`` + ``orjson``, no Singer machinery: fetch a page, parse it, write one
``{"type": "RECORD", "stream": ..., "record": ..., "time_extracted": ...}`` line per
record (the line a Singer tap writes), follow ``Link: rel="next"``, and on a 429/5xx wait
what ``Retry-After`` says and try again. With ``width`` > 1 the chains run on a thread
pool of that width, one session (so one kept-alive connection) per thread, and each page
is written whole.

Usage (run by ``bench/run.py``): ``python bench/floor.py '<job as JSON>'`` with keys
``stream``, ``starts`` (the first URL of each chain) and ``width``; lines go to stdout.
With ``children`` (S6), ``starts`` is the parent's one chain (its records go out as
stream ``parent``), and every parent row's child page ``<children>/<id>`` is fetched on
the pool as soon as its parent page has arrived.
"""

from __future__ import annotations

import datetime
import json
import sys
import threading
import time
import typing as t
from concurrent.futures import ThreadPoolExecutor

import orjson
import requests


def run_chain(
    url: str | None,
    stream: str,
    emit: t.Callable[[bytes], None],
    session: requests.Session | None = None,
) -> None:
    session = session or requests.Session()
    while url:
        while True:
            response = session.get(url, timeout=60)
            if response.status_code in (429, 500, 502, 503, 504):
                time.sleep(float(response.headers.get("Retry-After") or 1))
                continue
            response.raise_for_status()
            break
        stamp = datetime.datetime.now(datetime.timezone.utc).isoformat()
        emit(
            b"".join(
                orjson.dumps(
                    {"type": "RECORD", "stream": stream, "record": record, "time_extracted": stamp},
                    option=orjson.OPT_APPEND_NEWLINE,
                )
                for record in orjson.loads(response.content)
            )
        )
        url = response.links.get("next", {}).get("url")


class ThreadSessions:
    """One ``requests.Session`` per thread of a pool."""

    def __init__(self) -> None:
        self.local = threading.local()

    def get(self) -> requests.Session:
        session: requests.Session | None = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = requests.Session()
        return session


def run_family(job: dict[str, t.Any], emit: t.Callable[[bytes], None]) -> None:
    """A parent chain, and each of its rows' child page on a pool of ``width`` threads."""
    sessions = ThreadSessions()

    def child(row_id: int) -> None:
        url: str | None = f"{job['children']}/{row_id}"
        run_chain(url, job["stream"], emit, sessions.get())

    session = requests.Session()
    with ThreadPoolExecutor(job["width"]) as pool:
        futures = []
        url: str | None = job["starts"][0]
        while url:
            response = session.get(url, timeout=60)
            response.raise_for_status()
            rows = orjson.loads(response.content)
            stamp = datetime.datetime.now(datetime.timezone.utc).isoformat()
            emit(
                b"".join(
                    orjson.dumps(
                        {
                            "type": "RECORD",
                            "stream": "parent",
                            "record": r,
                            "time_extracted": stamp,
                        },
                        option=orjson.OPT_APPEND_NEWLINE,
                    )
                    for r in rows
                )
            )
            futures += [pool.submit(child, r["id"]) for r in rows]
            url = response.links.get("next", {}).get("url")
        for future in futures:
            future.result()


def main() -> None:
    job = json.loads(sys.argv[1])
    out = sys.stdout.buffer
    lock = threading.Lock()

    def emit(lines: bytes) -> None:
        with lock:
            out.write(lines)

    if job.get("children"):
        run_family(job, emit)
    elif job["width"] <= 1:
        for start in job["starts"]:
            run_chain(start, job["stream"], emit)
    else:
        sessions = ThreadSessions()

        def chain(start: str) -> None:
            run_chain(start, job["stream"], emit, sessions.get())

        with ThreadPoolExecutor(job["width"]) as pool:
            for future in [pool.submit(chain, s) for s in job["starts"]]:
                future.result()
    out.flush()


if __name__ == "__main__":
    main()
