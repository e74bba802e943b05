"""A threaded loopback HTTP server whose endpoints are named by behaviour.

Every request is logged (method, raw target, headers, body) so tests assert exact
request counts and the query strings the server received. Pagination is done server
side, as a real API does it. Tests add routes of their own with :meth:`LocalServer.route`.
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
import time
import typing as t
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, parse_qsl, quote, urlsplit

Handler = t.Callable[["Request"], "Reply | None"]

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


class Request(t.NamedTuple):
    method: str
    target: str  # raw path + query, as received
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    handler: BaseHTTPRequestHandler

    @property
    def args(self) -> dict[str, str]:
        return dict(parse_qsl(self.query, keep_blank_values=True))


class Reply(t.NamedTuple):
    status: int = 200
    body: bytes | str | t.Any = b""
    headers: t.Sequence[tuple[str, str]] = ()
    content_type: str | None = "application/json"


def json_reply(value: t.Any, status: int = 200, headers: t.Sequence[tuple[str, str]] = ()) -> Reply:
    return Reply(status, json.dumps(value).encode(), headers, "application/json")


class LocalServer:
    """The server: start once per session, `reset()` per test."""

    def __init__(self) -> None:
        self.log: list[Request] = []
        self.routes: dict[str, Handler] = {}
        self.state: dict[str, t.Any] = {}
        self._lock = threading.Lock()
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: t.Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Request(
                    self.command,
                    self.path,
                    parts.path,
                    parts.query,
                    dict(self.headers.items()),
                    body,
                    self,
                )
                with server._lock:
                    server.log.append(request)
                handler = server.find(parts.path)
                if handler is None:
                    reply: Reply | None = Reply(404, b"no such endpoint", (), "text/plain")
                else:
                    reply = handler(request)
                if reply is not None:
                    server.send(self, reply)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        _install_default_routes(self)

    def start(self) -> LocalServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def reset(self) -> None:
        with self._lock:
            self.log.clear()
            self.state.clear()

    def route(self, path: str) -> t.Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self.routes[path] = fn
            return fn

        return register

    def find(self, path: str) -> Handler | None:
        if path in self.routes:
            return self.routes[path]
        best = None
        for prefix, fn in self.routes.items():
            longer = best is None or len(prefix) > len(best[0])
            if prefix.endswith("/") and path.startswith(prefix) and longer:
                best = (prefix, fn)
        return best[1] if best else None

    def requests_to(self, path: str) -> list[Request]:
        return [r for r in self.log if r.path == path]

    @staticmethod
    def send(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        body = reply.body
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        handler.send_response(reply.status)
        names = {k.lower() for k, _ in reply.headers}
        if reply.content_type and "content-type" not in names:
            handler.send_header("Content-Type", reply.content_type)
        if "content-length" not in names:
            handler.send_header("Content-Length", str(len(body)))
        for key, value in reply.headers:
            handler.send_header(key, value)
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    def raw(self, handler: BaseHTTPRequestHandler, data: bytes) -> None:
        """Write raw bytes (status line and all) for protocol-level faults."""
        handler.wfile.write(data)
        handler.wfile.flush()


def _echo(request: Request) -> Reply:
    return json_reply(
        {
            "method": request.method,
            "target": request.target,
            "path": request.path,
            "query": request.query,
            "args": parse_qs(request.query, keep_blank_values=True),
            "headers": request.headers,
            "body": request.body.decode("utf-8", "replace"),
        }
    )


def _install_default_routes(server: LocalServer) -> None:
    route = server.route
    route("/echo")(_echo)
    route("/echo/")(_echo)

    @route("/records")
    def records(request: Request) -> Reply:
        n = int(request.args.get("n", "3"))
        return json_reply([{"id": i, "name": f"r{i}"} for i in range(1, n + 1)])

    @route("/body")
    def body(request: Request) -> Reply:
        """Any body with any Content-Type: ?ct=<type>&b=<text> (ct=- sends none)."""
        ct = request.args.get("ct", "application/json")
        return Reply(200, request.args.get("b", ""), (), None if ct == "-" else ct)

    @route("/png")
    def png(request: Request) -> Reply:
        return Reply(200, PNG, (), "image/png")

    @route("/gzip")
    def gzipped(request: Request) -> Reply:
        data = gzip.compress(json.dumps([{"gzipped": True, "n": i} for i in range(50)]).encode())
        return Reply(200, data, (("Content-Encoding", "gzip"),), "application/json")

    @route("/status/")
    def status(request: Request) -> Reply:
        code = int(request.path.rsplit("/", 1)[1])
        headers = []
        if "retry_after" in request.args:
            headers.append(("Retry-After", request.args["retry_after"]))
        text = request.args.get("body", f"status {code}")
        return Reply(code, text, headers, "text/html")

    @route("/redirect/")
    def redirect(request: Request) -> Reply:
        n = int(request.path.rsplit("/", 1)[1])
        location = f"/redirect/{n - 1}" if n > 1 else "/echo"
        return Reply(302, b"", (("Location", location),), None)

    @route("/redirect-to")
    def redirect_to(request: Request) -> Reply:
        status = int(request.args.get("status", "302"))
        return Reply(status, b"", (("Location", request.args["url"]),), None)

    @route("/delay/")
    def delay(request: Request) -> Reply:
        time.sleep(float(request.path.rsplit("/", 1)[1]))
        return json_reply({"delayed": True})

    @route("/drip")
    def drip(request: Request) -> None:
        """Send `n` bytes of a JSON string, one every `every` seconds."""
        n = int(request.args.get("n", "10"))
        every = float(request.args.get("every", "0.2"))
        payload = json.dumps({"v": "x" * max(n - 8, 0)}).encode()
        handler = request.handler
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        try:
            for i in range(len(payload)):
                handler.wfile.write(payload[i : i + 1])
                handler.wfile.flush()
                time.sleep(every)
        except OSError:
            pass

    @route("/cookies/set")
    def set_cookie(request: Request) -> Reply:
        headers = [
            ("Set-Cookie", f"{k}={v}; Path=/") for k, v in request.args.items() if k != "next"
        ]
        if "next" in request.args:
            headers.append(("Location", request.args["next"]))
            return Reply(302, b"", headers, None)
        return json_reply({"set": True}, headers=headers)

    @route("/pages/link")
    def link_pages(request: Request) -> Reply:
        """Link-header pagination: ?page=N&per_page=K over `total` records."""
        page = int(request.args.get("page", "1"))
        per = int(request.args.get("per_page", "2"))
        total = int(request.args.get("total", "5"))
        start = (page - 1) * per
        items = [{"id": i} for i in range(start + 1, min(start + per, total) + 1)]
        links = []
        style = request.args.get("style", "quoted")
        if start + per < total:
            q = f"page={page + 1}&per_page={per}&total={total}&style={style}"
            rel = {
                "quoted": 'rel="next"',
                "bare": "rel=next",
                "upper": 'REL="NEXT"',
                "multi": 'rel="next last"',
                "relative": 'rel="next"',
            }[style]
            target = f"/pages/link?{q}" if style != "relative" else f"link?{q}"
            links.append(
                f"<{target if style != 'bare' else server.url + '/pages/link?' + q}>; {rel}"
            )
        links.append(f'</pages/link?page=1&per_page={per}&total={total}>; rel="first"')
        return json_reply(items, headers=[("Link", ", ".join(links))])

    @route("/pages/number")
    def number_pages(request: Request) -> Reply:
        """?page=N: `size` records per page over `total`; past the end an empty list."""
        page = int(request.args.get("page", "1"))
        size = int(request.args.get("size", "2"))
        total = int(request.args.get("total", "5"))
        start = (page - 1) * size
        return json_reply([{"id": i} for i in range(start + 1, min(start + size, total) + 1)])

    @route("/pages/meta")
    def meta_pages(request: Request) -> Reply:
        """The seed page's shape: {"items": [...], "meta": {"next": url}}; last page has no next."""
        page = int(request.args.get("page", "1"))
        last = int(request.args.get("last", "3"))
        meta: dict[str, t.Any] = {"page": page}
        if page < last:
            meta["next"] = f"{server.url}/pages/meta?page={page + 1}&last={last}"
        return json_reply({"items": [{"id": page * 10 + i} for i in range(2)], "meta": meta})


def quote_all(text: str) -> str:
    return quote(text, safe="")
