"""A raw-socket HTTP/1.1 server on 127.0.0.1 for fault injection.

`server.LocalServer` is built on `http.server`, which always finishes a response cleanly;
the faults under test here are the ones it cannot produce: a connection reset in the
middle of a body, a chunked body that stops before its last chunk, a Content-Length
longer than the body, a body (or a status line) that drips one byte at a time, and a TLS
handshake the client must refuse. Each route returns an *action* that writes whatever
bytes it likes to the socket and then the connection is closed (every reply says
``Connection: close``, so one connection carries exactly one request).

Every request is logged with the server's own monotonic and wall-clock arrival times,
so tests measure the waits a client honoured on the server side, and with ``nth``, the
number of requests so far to the same target, so a route can fail the first tries and
then succeed.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import socket
import ssl
import struct
import threading
import time
import typing as t
from urllib.parse import parse_qsl, urlsplit

Action = t.Callable[[socket.socket], None]


class Hit(t.NamedTuple):
    """One request as the server received it."""

    method: str
    target: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when the request head was complete
    wall: float  # time.time() at the same moment
    nth: int  # 1 for the first request to this target, 2 for the next...

    @property
    def args(self) -> dict[str, str]:
        return dict(parse_qsl(self.query, keep_blank_values=True))

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)


Handler = t.Callable[[Hit], Action]

# --------------------------------------------------------------------------- actions


def _head(status: int, headers: t.Iterable[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
    lines += [f"{k}: {v}" for k, v in headers]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


_REASONS = {
    200: "OK",
    302: "Found",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def reply(
    status: int = 200,
    body: bytes | str = b"",
    headers: t.Sequence[tuple[str, str]] = (),
    content_type: str | None = "application/json",
) -> Action:
    """A complete, well-formed response."""
    data = body.encode() if isinstance(body, str) else body
    head = list(headers)
    if content_type:
        head.append(("Content-Type", content_type))
    head.append(("Content-Length", str(len(data))))

    def act(sock: socket.socket) -> None:
        sock.sendall(_head(status, head) + data)

    return act


def json_reply(
    value: t.Any, status: int = 200, headers: t.Sequence[tuple[str, str]] = ()
) -> Action:
    return reply(status, json.dumps(value), headers)


def reset_after(prefix: bytes) -> Action:
    """Send `prefix` (a status line, headers, part of a body), then a TCP reset."""

    def act(sock: socket.socket) -> None:
        sock.sendall(prefix)
        time.sleep(0.05)  # let the client read the prefix before the RST arrives
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    return act


def head_bytes(status: int, headers: t.Sequence[tuple[str, str]]) -> bytes:
    """A status line and headers, for actions that write the body themselves."""
    return _head(status, headers)


def chunked(chunks: t.Sequence[bytes], *, finish: bool = True) -> Action:
    """A chunked body; without `finish` the connection closes before the last chunk."""

    def act(sock: socket.socket) -> None:
        data = _head(200, [("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")])
        for chunk in chunks:
            data += f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        if finish:
            data += b"0\r\n\r\n"
        sock.sendall(data)

    return act


def short_body(body: bytes, declared: int) -> Action:
    """Declare `declared` bytes of Content-Length, send fewer, close."""

    def act(sock: socket.socket) -> None:
        head = _head(200, [("Content-Type", "application/json"), ("Content-Length", str(declared))])
        sock.sendall(head + body)

    return act


def drip(body: bytes, every: float, *, head_too: bool = False) -> Action:
    """Send the body (and with `head_too`, the status line and headers) a byte at a time."""

    def act(sock: socket.socket) -> None:
        head = _head(
            200, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        data = head + body if head_too else body
        if not head_too:
            sock.sendall(head)
        for i in range(len(data)):
            sock.sendall(data[i : i + 1])
            time.sleep(every)

    return act


def http_date(seconds_from_now: float) -> tuple[str, float]:
    """An IMF-fixdate `seconds_from_now` ahead, and the POSIX time it stands for."""
    when = int(time.time() + seconds_from_now)
    return email.utils.formatdate(when, usegmt=True), float(when)


# --------------------------------------------------------------------------- server


class FaultServer:
    """Listen on 127.0.0.1:0; serve each connection's one request with its route's action.

    Args:
        tls: a server-side SSL context; the TLS handshake happens on accept.
    """

    def __init__(self, *, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.log: list[Hit] = []
        self.routes: dict[str, Handler] = {}
        self.connections = 0
        self.errors: list[BaseException] = []
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> FaultServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        self._sock.close()
        with self._lock:
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.close()

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def route(self, path: str) -> t.Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self.routes[path] = fn
            return fn

        return register

    def hits(self, path: str | None = None) -> list[Hit]:
        with self._lock:
            return [h for h in self.log if path is None or h.path == path]

    # -- internals --------------------------------------------------------------------

    def _serve(self) -> None:
        self._sock.settimeout(0.05)
        while not self._stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._open.add(conn)
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        sock = conn
        try:
            conn.settimeout(10)
            if self.tls is not None:
                sock = self.tls.wrap_socket(conn, server_side=True)
            hit = self._read_request(sock)
            if hit is None:
                return
            handler = self.routes.get(hit.path)
            action = handler(hit) if handler else reply(404, b"no such route", (), "text/plain")
            action(sock)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self.errors.append(exc)
        finally:
            with self._lock:
                self._open.discard(conn)
            for s in (sock, conn):
                with contextlib.suppress(OSError):
                    s.close()

    def _read_request(self, sock: socket.socket) -> Hit | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
            if len(data) > 1 << 20:
                raise ValueError("request head too long")
        head, _, rest = data.partition(b"\r\n\r\n")
        at, wall = time.monotonic(), time.time()
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip()] = value.strip()
        length = int(next((v for k, v in headers.items() if k.lower() == "content-length"), 0))
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        parts = urlsplit(target)
        with self._lock:
            nth = self._counts[target] = self._counts.get(target, 0) + 1
            hit = Hit(method, target, parts.path, parts.query, headers, rest, at, wall, nth)
            self.log.append(hit)
        return hit


@contextlib.contextmanager
def refused_port() -> t.Iterator[int]:
    """A port on 127.0.0.1 that refuses connections while the generator is suspended.

    The socket is bound (so nobody else can take the port) but never listens, so a
    connect is answered with RST: ECONNREFUSED.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()
