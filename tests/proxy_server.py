"""A small threaded HTTP forward proxy on 127.0.0.1 that logs what passes through it.

It speaks the two forms a client uses (RFC 9110 §9.3.6, RFC 9112 §3.2.2): ``CONNECT
host:port`` for https (it answers ``200`` and then relays bytes both ways, seeing only
TLS), and an absolute-form request line (``GET http://host:port/path``) for http, which
it forwards in origin form without the ``Proxy-*`` headers. With ``credentials`` it asks
for ``Proxy-Authorization: Basic`` and answers ``407`` without it. Every request is logged
with the headers the proxy received, so tests can check what the proxy (and only the
proxy) was told.
"""

from __future__ import annotations

import base64
import contextlib
import select
import socket
import threading
import typing as t
from urllib.parse import urlsplit


class ProxyHit(t.NamedTuple):
    """One request as the proxy received it."""

    method: str
    target: str  # host:port for CONNECT, the absolute URL otherwise
    headers: dict[str, str]
    allowed: bool  # the proxy credentials were right (or none were asked for)

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)


class ForwardProxy:
    """Listen on 127.0.0.1:0; forward http in absolute form, tunnel https with CONNECT.

    Args:
        credentials: (user, password) the proxy asks for, or None for an open proxy.
    """

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        self.log: list[ProxyHit] = []
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._stopped = threading.Event()
        self._open: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def url(self, user: str | None = None, password: str | None = None) -> str:
        """The proxy's URL, with user info when given."""
        auth = f"{user}:{password}@" if user is not None else ""
        return f"http://{auth}127.0.0.1:{self.port}"

    def __enter__(self) -> ForwardProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        self._sock.close()
        with self._lock:
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.close()

    def hits(self) -> list[ProxyHit]:
        with self._lock:
            return list(self.log)

    # -- internals ----------------------------------------------------------------------

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
                self._open.add(conn)
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _allowed(self, headers: dict[str, str]) -> bool:
        if self.credentials is None:
            return True
        expected = base64.b64encode(":".join(self.credentials).encode()).decode()
        given = next((v for k, v in headers.items() if k.lower() == "proxy-authorization"), "")
        return given == f"Basic {expected}"

    def _client(self, conn: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            conn.settimeout(10)
            head, rest = _read_head(conn)
            if head is None:
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, _version = lines[0].split(" ", 2)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip()] = value.strip()
            allowed = self._allowed(headers)
            with self._lock:
                self.log.append(ProxyHit(method, target, headers, allowed))
            if not allowed:
                conn.sendall(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'Proxy-Authenticate: Basic realm="proxy"\r\n'
                    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
                )
                return
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                upstream = socket.create_connection((host, int(port)), timeout=10)
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if rest:
                    upstream.sendall(rest)
                _relay(conn, upstream)
                return
            # The body may come in a later segment than the head (urllib3 sends them
            # apart): forward it whole, or the upstream waits for it while the proxy
            # waits for the upstream's answer.
            length = int(next((v for k, v in headers.items() if k.lower() == "content-length"), 0))
            while len(rest) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                rest += chunk
            parts = urlsplit(target)
            upstream = socket.create_connection((parts.hostname, parts.port or 80), timeout=10)
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            kept = [
                f"{k}: {v}"
                for k, v in headers.items()
                if not k.lower().startswith("proxy-") and k.lower() != "connection"
            ]
            forwarded = "\r\n".join([f"{method} {path} HTTP/1.1", *kept, "Connection: close"])
            upstream.sendall(forwarded.encode("latin-1") + b"\r\n\r\n" + rest)
            # Tell the client this connection ends with the response (it closes when the
            # upstream does), so it never sends a second request into a closing socket.
            answer, body = _read_head(upstream)
            if answer is None:
                return
            status, _, fields = answer.partition(b"\r\n")
            fields = b"\r\n".join(
                line
                for line in fields.split(b"\r\n")
                if not line.lower().startswith(b"connection:")
            )
            conn.sendall(status + b"\r\nConnection: close\r\n" + fields + b"\r\n\r\n" + body)
            _relay(conn, upstream)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(conn)
            for sock in (conn, upstream):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()


def _read_head(sock: socket.socket) -> tuple[bytes | None, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None, b""
        data += chunk
        if len(data) > 1 << 20:
            return None, b""
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _relay(client: socket.socket, upstream: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    sockets = [client, upstream]
    while True:
        readable, _, _ = select.select(sockets, [], [], 10)
        if not readable:
            return
        for sock in readable:
            data = sock.recv(65536)
            if not data:
                return
            (upstream if sock is client else client).sendall(data)
