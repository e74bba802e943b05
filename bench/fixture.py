"""The benchmark's fixture API: a fast loopback server with pre-rendered bodies.

Run as a child process by ``bench/run.py`` (``python bench/fixture.py <sizes as JSON>``);
it prints ``READY <port>`` on stdout once it listens on 127.0.0.1, and stops when its
stdin closes (so it never outlives the benchmark).

Every body is rendered once at start-up, so the server's own cost per request is a
dictionary lookup and a ``sendall``: what is measured is the client. Each run of each
client uses its own ``run`` path segment, so per-run state (which pages already failed
once, request counts) never leaks from one client into the next.

Routes (all JSON arrays of records, ``Link: <...>; rel="next"`` with absolute URLs):

- ``/s1/<run>?page=N``: S1, ``s1_pages`` pages of ``s1_per_page`` records.
- ``/s2/<run>/<v>?page=N``: S2, one chain per ``v``, each request delayed ``s2_delay_ms``.
- ``/s3/<run>?page=N``: S3, like S1 but every 10th page (N % 10 == 3) answers ``503``
  with ``Retry-After: 1`` the first time it is asked for in that run.
- ``/s4/<run>``: S4, one body of ``s4_records`` records.
- ``/s5/<run>?page=N``: S5's parent, ``s5_pages`` pages of ``s5_rows`` rows ``{"id": r}``;
  ``/s5/<run>/<r>``: the child page of row ``r``, ``s5_child_records`` records (ids
  ``r * 100 + i``); each request delayed ``s5_delay_ms``.
- ``/stats/<run>``: ``{"requests": n, "faults": n}`` for a run.
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


class Fixture:
    """Pre-rendered bodies and per-run counters."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self.sizes = sizes
        per, pages = sizes["s1_per_page"], sizes["s1_pages"]
        self.s1 = [render(range(p * per, (p + 1) * per)) for p in range(pages)]
        per3, pages3 = sizes["s3_per_page"], sizes["s3_pages"]
        self.s3 = [render(range(p * per3, (p + 1) * per3)) for p in range(pages3)]
        per2, pages2 = sizes["s2_per_page"], sizes["s2_pages"]
        self.s2 = {
            v: [
                render(range(v * 1_000_000 + p * per2, v * 1_000_000 + (p + 1) * per2))
                for p in range(pages2)
            ]
            for v in range(sizes["s2_values"])
        }
        self.s4 = render(range(sizes["s4_records"]))
        rows, kids = sizes["s5_rows"], sizes["s5_child_records"]
        self.s5 = [
            orjson.dumps([{"id": p * rows + r} for r in range(rows)])
            for p in range(sizes["s5_pages"])
        ]
        self.s5_kids = [
            render(range(r * 100, r * 100 + kids)) for r in range(sizes["s5_pages"] * rows)
        ]
        self.lock = threading.Lock()
        self.failed: set[tuple[str, int]] = set()
        self.stats: dict[str, dict[str, float]] = {}

    def count(self, run: str, key: str) -> None:
        now = time.time()
        with self.lock:
            entry = self.stats.setdefault(run, {"requests": 0, "faults": 0, "first_at": now})
            entry[key] += 1

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

        def pages(self, base: str, bodies: list[bytes], page: int) -> None:
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
            if kind == "s1":
                self.pages(parts.path, fixture.s1, page)
            elif kind == "s2":
                time.sleep(fixture.sizes["s2_delay_ms"] / 1000)
                self.pages(parts.path, fixture.s2[int(segments[2])], page)
            elif kind == "s3":
                if page % 10 == 3 and fixture.fail_once(run, page):
                    fixture.count(run, "faults")
                    self.reply(503, b'{"error": "busy"}', [("Retry-After", "1")])
                    return
                self.pages(parts.path, fixture.s3, page)
            elif kind == "s4":
                self.reply(200, fixture.s4)
            elif kind == "s5":
                time.sleep(fixture.sizes["s5_delay_ms"] / 1000)
                if len(segments) > 2:
                    self.reply(200, fixture.s5_kids[int(segments[2])])
                else:
                    self.pages(parts.path, fixture.s5, page)
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
    sizes = json.loads(sys.argv[1])
    server = make_server(Fixture(sizes))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"READY {server.server_address[1]}", flush=True)
    sys.stdin.read()  # the benchmark closes our stdin when it is done
    server.shutdown()


if __name__ == "__main__":
    main()
