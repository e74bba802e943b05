"""The benchmark's fixture API: a fast loopback server with pre-rendered bodies.

Run as a child process by ``bench/run.py`` (``python bench/fixture.py '<job as JSON>'``,
the job holding ``sizes`` and the ``scenarios`` to serve); it prints ``READY <port>`` on
stdout once it listens on 127.0.0.1, and stops when its stdin closes (so it never outlives
the benchmark).

Every body of the scenarios asked for is rendered once at start-up, so the server's own
cost per request is a dictionary lookup and a ``sendall``: what is measured is the client.
S1-1M's million records are the exception: 316 MB of bodies would make the fixture the
largest process on the machine, so its pages are built per request from a few templates
(each record's JSON after its ``id`` rendered once), about 0.1 ms a page. Each run of
each client uses its own ``run`` path segment, so per-run state (which pages already
failed once, request counts) never leaks from one client into the next.

Routes (all JSON arrays of records, ``Link: <...>; rel="next"`` with absolute URLs):

- ``/s1/<run>?page=N``: S1, ``s1_pages`` pages of ``s1_per_page`` records.
- ``/s1m/<run>?page=N``: S1-1M, ``s1m_pages`` pages of ``s1_per_page`` records; record
  ``i`` is template record ``i % (s1m_templates * s1_per_page)`` with ``id`` ``i``.
- ``/s2/<run>/<v>?page=N``: S2, one chain per ``v``, each request delayed ``s2_delay_ms``.
- ``/s3/<run>?page=N``: S3, like S1 but every 10th page (N % 10 == 3) answers ``503``
  with ``Retry-After: 1`` the first time it is asked for in that run.
- ``/s4/<run>``: S4, one body of ``s4_records`` records.
- ``/s5/<run>/<v>?page=N``: S5, like S2 at scale (``s5_values`` chains of ``s5_pages``
  pages of ``s5_per_page`` records, ids ``v * 1000 + n``), each request delayed
  ``s5_delay_ms``.
- ``/s6/<run>?page=N``: S6's parent, ``s6_pages`` pages of ``s6_rows`` rows ``{"id": r}``;
  ``/s6/<run>/<r>``: the child page of row ``r``, ``s6_child_records`` records (ids
  ``r * 100 + i``); each request delayed ``s6_delay_ms``.
- ``/stats/<run>``: ``{"requests": n, "faults": n, "first_at": t, "last_at": t}`` for a run.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import typing as t
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import orjson

#: Padding so S4's 200,000 records make a body of about 63 MB.
BIO = (
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
    "incididunt ut labore et dolore."
)


def record(i: int) -> dict[str, t.Any]:
    """Record number ``i``: the shape every scenario serves (about 316 bytes as JSON)."""
    return {
        "id": i,
        "name": f"user {i}",
        "email": f"user{i}@example.com",
        "active": i % 3 != 0,
        "score": (i * 7919 % 10000) / 100,
        "created_at": (
            f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{i * 7 % 60:02d}Z"
        ),
        "tags": ["alpha", "beta", "gamma"][: 1 + i % 3],
        "address": {"city": f"City {i % 97}", "zip": f"{10000 + i % 89999}"},
        "bio": BIO,
    }


def render(ids: t.Iterable[int]) -> bytes:
    return orjson.dumps([record(i) for i in ids])


def chains(values: int, pages: int, per: int, stride: int) -> list[list[bytes]]:
    """``values`` chains of ``pages`` pages of ``per`` records, chain ``v``'s ids from
    ``v * stride``."""
    assert pages * per <= stride
    return [
        [render(range(v * stride + p * per, v * stride + (p + 1) * per)) for p in range(pages)]
        for v in range(values)
    ]


class Bodies(t.Protocol):
    """A scenario's page bodies, by page number."""

    def __len__(self) -> int: ...

    def __getitem__(self, page: int) -> bytes: ...


class Templated:
    """Pages of records built on demand: each template record's JSON after its ``id``
    is kept, and a page is the ids and those tails joined (no JSON encoding per request).
    """

    def __init__(self, pages: int, per: int, templates: int) -> None:
        self.pages, self.per = pages, per
        self.tails = [
            [
                orjson.dumps({k: v for k, v in record(i).items() if k != "id"})[1:]
                for i in range(p * per, (p + 1) * per)
            ]
            for p in range(templates)
        ]

    def __len__(self) -> int:
        return self.pages

    def __getitem__(self, page: int) -> bytes:
        start = page * self.per
        tails = self.tails[page % len(self.tails)]
        return (
            b"["
            + b",".join([b'{"id":%d,%s' % (start + k, tail) for k, tail in enumerate(tails)])
            + b"]"
        )


class Fixture:
    """Pre-rendered bodies (for the scenarios asked for) and per-run counters."""

    def __init__(self, sizes: dict[str, int], scenarios: t.Collection[str]) -> None:
        self.sizes = sizes
        per = sizes["s1_per_page"]
        self.s1: list[bytes] = []
        if "s1" in scenarios:
            self.s1 = [render(range(p * per, (p + 1) * per)) for p in range(sizes["s1_pages"])]
        self.s1m: Bodies = []
        if "s1m" in scenarios:
            self.s1m = Templated(sizes["s1m_pages"], per, sizes["s1m_templates"])
        self.s2: list[list[bytes]] = []
        if "s2" in scenarios:
            self.s2 = chains(sizes["s2_values"], sizes["s2_pages"], sizes["s2_per_page"], 1_000_000)
        self.s3: list[bytes] = []
        if "s3" in scenarios:
            per3 = sizes["s3_per_page"]
            self.s3 = [render(range(p * per3, (p + 1) * per3)) for p in range(sizes["s3_pages"])]
        self.s4 = render(range(sizes["s4_records"])) if "s4" in scenarios else b"[]"
        self.s5: list[list[bytes]] = []
        if "s5" in scenarios:
            self.s5 = chains(sizes["s5_values"], sizes["s5_pages"], sizes["s5_per_page"], 1000)
        self.s6: list[bytes] = []
        self.s6_kids: list[bytes] = []
        if "s6" in scenarios:
            rows, kids = sizes["s6_rows"], sizes["s6_child_records"]
            self.s6 = [
                orjson.dumps([{"id": p * rows + r} for r in range(rows)])
                for p in range(sizes["s6_pages"])
            ]
            self.s6_kids = [
                render(range(r * 100, r * 100 + kids)) for r in range(sizes["s6_pages"] * rows)
            ]
        self.lock = threading.Lock()
        self.failed: set[tuple[str, int]] = set()
        self.stats: dict[str, dict[str, float]] = {}

    def count(self, run: str, key: str) -> None:
        now = time.time()
        with self.lock:
            entry = self.stats.setdefault(run, {"requests": 0, "faults": 0, "first_at": now})
            entry[key] += 1
            entry["last_at"] = now

    def fail_once(self, run: str, page: int) -> bool:
        with self.lock:
            if (run, page) in self.failed:
                return False
            self.failed.add((run, page))
            return True


def make_server(fixture: Fixture) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body leave in two writes: without TCP_NODELAY, Nagle's algorithm
            # holds the body until the client's delayed ACK (~40 ms) of the headers.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *args: t.Any) -> None:
            pass

        def reply(
            self, status: int, body: bytes, headers: t.Sequence[tuple[str, str]] = ()
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def pages(self, base: str, bodies: Bodies, page: int) -> None:
            if not 0 <= page < len(bodies):
                self.reply(404, b'{"error": "no such page"}')
                return
            headers = []
            if page + 1 < len(bodies):
                port = t.cast("tuple[str, int]", self.server.server_address)[1]
                host = f"http://127.0.0.1:{port}"
                headers.append(("Link", f'<{host}{base}?page={page + 1}>; rel="next"'))
            self.reply(200, bodies[page], headers)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            args = dict(parse_qsl(parts.query))
            page = int(args.get("page", "0"))
            segments = parts.path.strip("/").split("/")
            kind, run = segments[0], segments[1] if len(segments) > 1 else "-"
            if kind == "stats":
                stats = {**fixture.stats.get(run, {}), "s4_bytes": len(fixture.s4)}
                self.reply(200, orjson.dumps(stats))
                return
            fixture.count(run, "requests")
            try:
                self.route(kind, run, segments, parts.path, page)
            except (IndexError, ValueError):
                self.reply(404, b'{"error": "no such route"}')

        def route(self, kind: str, run: str, segments: list[str], path: str, page: int) -> None:
            if kind == "s1":
                self.pages(path, fixture.s1, page)
            elif kind == "s1m":
                self.pages(path, fixture.s1m, page)
            elif kind == "s2":
                time.sleep(fixture.sizes["s2_delay_ms"] / 1000)
                self.pages(path, fixture.s2[int(segments[2])], page)
            elif kind == "s3":
                if page % 10 == 3 and fixture.fail_once(run, page):
                    fixture.count(run, "faults")
                    self.reply(503, b'{"error": "busy"}', [("Retry-After", "1")])
                    return
                self.pages(path, fixture.s3, page)
            elif kind == "s4":
                self.reply(200, fixture.s4)
            elif kind == "s5":
                time.sleep(fixture.sizes["s5_delay_ms"] / 1000)
                self.pages(path, fixture.s5[int(segments[2])], page)
            elif kind == "s6":
                time.sleep(fixture.sizes["s6_delay_ms"] / 1000)
                if len(segments) > 2:
                    self.reply(200, fixture.s6_kids[int(segments[2])])
                else:
                    self.pages(path, fixture.s6, page)
            else:
                self.reply(404, b'{"error": "no such route"}')

    # socketserver listens with a backlog of 5: with more clients connecting at once than
    # that, SYNs are dropped and retried a second later, which no real server does to a
    # 16-wide client (Linux allows 4096, nginx 511).
    ThreadingHTTPServer.request_queue_size = 128
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    return server


def main() -> None:
    job = json.loads(sys.argv[1])
    server = make_server(Fixture(job["sizes"], job["scenarios"]))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"READY {server.server_address[1]}", flush=True)
    sys.stdin.read()  # the benchmark closes our stdin when it is done
    server.shutdown()


if __name__ == "__main__":
    main()
