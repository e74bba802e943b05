"""Bodies from a hostile server cost bounded memory and time.

Each run here is the tap's own process (``python -m tap_rhttp``) with its address space
capped (``RLIMIT_AS``), against the raw-socket :class:`~fault_server.FaultServer`: an
error body that inflates to a GiB, an error body that never ends, a success body past
``max_body_bytes`` (in memory, spooled to disk, compressed or not), a redirect whose
body never ends. Before these bounds the tap took 2.1 GB for the first, 1.3-2.2 GB for
the second and 4.1 GB for a compressed success body.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import resource
import subprocess
import sys
import time
import typing as t
import zlib

import pytest
from conftest import PROXY_VARS, CliResult
from fault_server import FaultServer, Hit, head_bytes, reply

if t.TYPE_CHECKING:
    import socket
    from collections.abc import Iterator
    from pathlib import Path

#: The tap's address space in these tests: a plain run needs under 300 MiB here.
AS_LIMIT = 640 << 20
MIB = 1 << 20


@pytest.fixture
def fault() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


def run_capped(config: dict[str, t.Any], tmp_path: Path, *args: str) -> tuple[CliResult, float]:
    """Run the tap as a user would, its address space capped at :data:`AS_LIMIT`."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    env["TMPDIR"] = str(tmp_path)

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))

    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "tap_rhttp", "--config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        preexec_fn=cap,
    )
    return CliResult(done.returncode, done.stdout, done.stderr), time.monotonic() - started


@functools.cache
def gzip_of_zeros(size: int) -> bytes:
    """`size` zero bytes as a gzip stream of 16 MiB members (RFC 1952 allows several)."""
    member = gzip.compress(bytes(16 * MIB), compresslevel=9)
    assert size % (16 * MIB) == 0
    return member * (size // (16 * MIB))


def compressed(status: int, body: bytes, content_type: str = "application/json") -> t.Any:
    return reply(status, body, [("Content-Encoding", "gzip")], content_type)


def endless(status: int, *, seconds: float = 20.0) -> t.Any:
    """A response whose body (delimited by the connection's close) never ends."""

    def act(sock: socket.socket) -> None:
        sock.sendall(head_bytes(status, [("Content-Type", "text/plain")]))
        block = b"x" * 65536
        stop = time.monotonic() + seconds
        try:
            while time.monotonic() < stop:
                sock.sendall(block)
        except OSError:
            pass  # the client hung up: what it should do

    return act


def spec(fault: FaultServer, path: str, **options: t.Any) -> dict[str, t.Any]:
    return {
        "streams": [
            {
                "name": "s",
                "url": fault.url + path,
                "reattempts": 1,
                # every field the routes serve, so no page changes the schema
                "schema": {
                    "properties": {
                        "id": {"type": "integer"},
                        "pad": {"type": "string"},
                        "value": {"type": "string"},
                    }
                },
                **options,
            }
        ]
    }


def one_error_line(done: CliResult) -> str:
    errors = [line for line in done.stderr.splitlines() if "| ERROR" in line]
    assert len(errors) == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    return errors[0]


# --------------------------------------------------------------------------- error bodies


@pytest.mark.timeout(90)
def test_an_error_body_inflating_to_a_gib_is_read_no_further_than_the_envelope(
    fault: FaultServer, tmp_path: Path
) -> None:
    bomb = gzip_of_zeros(1024 * MIB)
    assert len(bomb) < 2 * MIB
    fault.routes["/bomb"] = lambda hit: compressed(500, bomb, "text/plain")
    done, took = run_capped(spec(fault, "/bomb"), tmp_path)
    assert done.code == 1
    line = one_error_line(done)
    assert f"Error in HTTP GET of `{fault.url}/bomb` [stream s, page 1]: status code 500." in line
    assert took < 30
    assert "body:" in done.stderr


@pytest.mark.timeout(90)
def test_an_endless_error_body_is_cut_and_the_run_ends_promptly(
    fault: FaultServer, tmp_path: Path
) -> None:
    fault.routes["/endless"] = lambda hit: endless(503)
    done, took = run_capped(spec(fault, "/endless", timeout=15), tmp_path)
    assert done.code == 1
    line = one_error_line(done)
    assert "status code 503." in line
    assert took < 10  # well inside the 15 s deadline the whole body would take
    assert "xxxx ..." in done.stderr  # the envelope shows the start of the body


@pytest.mark.timeout(90)
def test_a_redirect_with_an_endless_body_is_followed_at_once(
    fault: FaultServer, tmp_path: Path
) -> None:
    def redirect(hit: Hit) -> t.Any:
        def act(sock: socket.socket) -> None:
            sock.sendall(head_bytes(302, [("Location", "/records")]))
            try:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    sock.sendall(b"y" * 65536)
            except OSError:
                pass

        return act

    fault.routes["/moved"] = redirect
    fault.routes["/records"] = lambda hit: reply(200, b'[{"id": 1}, {"id": 2}]')
    done, took = run_capped(spec(fault, "/moved", timeout=15), tmp_path)
    assert done.code == 0, done.stderr[-3000:]
    assert [m["record"] for m in done.messages() if m["type"] == "RECORD"] == [
        {"id": 1},
        {"id": 2},
    ]
    assert took < 10


@pytest.mark.timeout(90)
def test_a_digest_challenge_with_an_endless_body_is_answered_at_once(
    fault: FaultServer, tmp_path: Path
) -> None:
    challenge = 'Digest realm="r", nonce="abc", qop="auth", algorithm=MD5'

    def guarded(hit: Hit) -> t.Any:
        if hit.header("Authorization"):
            return reply(200, b'[{"id": 1}]')

        def act(sock: socket.socket) -> None:
            sock.sendall(
                head_bytes(401, [("WWW-Authenticate", challenge), ("Content-Type", "text/plain")])
            )
            try:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    sock.sendall(b"z" * 65536)
            except OSError:
                pass

        return act

    fault.routes["/guarded"] = guarded
    config = spec(fault, "/guarded", timeout=15, auth={"type": "digest", "user": "u", "pass": "p"})
    done, took = run_capped(config, tmp_path)
    assert done.code == 0, done.stderr[-3000:]
    assert [m["record"] for m in done.messages() if m["type"] == "RECORD"] == [{"id": 1}]
    assert took < 10
    assert (fault.hits("/guarded")[-1].header("Authorization") or "").startswith("Digest ")


# --------------------------------------------------------------------------- max_body_bytes


@pytest.mark.timeout(120)
@pytest.mark.parametrize("result_format", ["json", "text"])  # spooled to disk / in memory
def test_a_compressed_success_body_past_the_default_limit_fails_its_page(
    fault: FaultServer, tmp_path: Path, result_format: str
) -> None:
    bomb = gzip_of_zeros(1024 * MIB)
    fault.routes["/bomb"] = lambda hit: compressed(200, bomb)
    done, took = run_capped(spec(fault, "/bomb", result_format=result_format), tmp_path)
    assert done.code == 1
    line = one_error_line(done)
    assert (
        f"Error in HTTP GET of `{fault.url}/bomb` [stream s, page 1]: the response body is "
        "larger than "
        "`max_body_bytes` (268435456 bytes, after decompression); raise `max_body_bytes`"
    ) in line
    assert len(fault.hits("/bomb")) == 1  # not retried
    assert took < 60
    assert done.stdout.count('"type":"RECORD"') == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("encoding", ["identity", "gzip", "deflate", "chunked"])
@pytest.mark.parametrize("result_format", ["json", "text"])
def test_max_body_bytes_is_exact_and_checked_as_the_bytes_arrive(
    fault: FaultServer, tmp_path: Path, encoding: str, result_format: str
) -> None:
    limit = 1 * MIB
    records = [{"id": i, "pad": "p" * 100} for i in range(20000)]
    body = json.dumps(records).encode()
    fitting = json.dumps(records[: len(records) * limit // len(body) - 50]).encode()
    fitting += b" " * (limit - len(fitting))  # exactly the limit
    assert len(fitting) == limit < len(body)

    def serve(data: bytes) -> t.Any:
        if encoding == "gzip":
            return compressed(200, gzip.compress(data))
        if encoding == "deflate":
            return reply(200, zlib.compress(data), [("Content-Encoding", "deflate")])
        if encoding == "chunked":

            def act(sock: socket.socket) -> None:
                head = head_bytes(
                    200, [("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")]
                )
                sock.sendall(head)
                for start in range(0, len(data), 65536):
                    piece = data[start : start + 65536]
                    sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                sock.sendall(b"0\r\n\r\n")

            return act
        return reply(200, data)

    fault.routes["/fits"] = lambda hit: serve(fitting)
    fault.routes["/big"] = lambda hit: serve(body)
    options = {"result_format": result_format, "max_body_bytes": limit}
    done, _ = run_capped(spec(fault, "/fits", **options), tmp_path)
    assert done.code == 0, done.stderr[-3000:]
    if result_format == "json":
        assert done.stdout.count('"type":"RECORD"') == len(json.loads(fitting))
    done, _ = run_capped(spec(fault, "/big", **options), tmp_path)
    assert done.code == 1
    line = one_error_line(done)
    assert f"larger than `max_body_bytes` ({limit} bytes, after decompression)" in line
    assert len(fault.hits("/big")) == 1


def test_a_declared_length_past_the_limit_fails_before_the_body_is_read(
    fault: FaultServer, tmp_path: Path
) -> None:
    def huge(hit: Hit) -> t.Any:
        def act(sock: socket.socket) -> None:
            sock.sendall(
                head_bytes(
                    200, [("Content-Type", "application/json"), ("Content-Length", str(1 << 40))]
                )
            )
            try:
                for _ in range(2000):
                    sock.sendall(b" " * 65536)
            except OSError:
                pass

        return act

    fault.routes["/huge"] = huge
    done, took = run_capped(spec(fault, "/huge", max_body_bytes=4096), tmp_path)
    assert done.code == 1
    assert "larger than `max_body_bytes` (4096 bytes" in one_error_line(done)
    assert took < 20
