"""A 200 MB gzip'd CSV, JSON Lines or XML export, synced by a tap process whose memory is capped.

The tap runs as a user runs it (``python -m tap_rhttp --config ...``) under an
``RLIMIT_AS`` far below what the body would take parsed whole, against a loopback server
that generates the body on the fly. Every record must arrive, once, in order.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import typing as t
import zlib

import pytest

if t.TYPE_CHECKING:
    from pathlib import Path

    from server import LocalServer, Request

#: Uncompressed size of the export.
BODY_BYTES = 200 << 20
#: Address space the tap process may use: measured here, a streamed sync of this export
#: runs in under 200 MB, while the same sync reading the body whole (streaming turned
#: off) fails with MemoryError at 400 MB: the body alone is 200 MB before it is parsed.
ADDRESS_SPACE = 300 << 20
FILLER = "".join(chr(ord("a") + (i * 7) % 26) for i in range(960))


def csv_rows(count: int) -> t.Iterator[bytes]:
    yield b"id,kind,payload\n"
    for i in range(count):
        yield f'{i},"row, {i % 7}",{FILLER}\n'.encode()


def jsonl_rows(count: int) -> t.Iterator[bytes]:
    for i in range(count):
        yield f'{{"id": {i}, "kind": "row, {i % 7}", "payload": "{FILLER}"}}\n'.encode()


def xml_rows(count: int) -> t.Iterator[bytes]:
    yield b'<?xml version="1.0" encoding="UTF-8"?>\n<export><meta>one</meta><rows>\n'
    for i in range(count):
        yield f'<row id="{i}"><kind>row, {i % 7}</kind><payload>{FILLER}</payload></row>\n'.encode()
    yield b"</rows></export>\n"


ROW_COUNT = BODY_BYTES // 1000


def _serve_gzip(
    server: LocalServer, path: str, rows: t.Callable[[int], t.Iterator[bytes]], content_type: str
) -> None:
    @server.route(path)
    def export(request: Request) -> None:
        handler = request.handler
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Encoding", "gzip")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip framing
        batch: list[bytes] = []

        def send(data: bytes) -> None:
            if data:
                handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

        try:
            for row in rows(ROW_COUNT):
                batch.append(row)
                if len(batch) >= 512:
                    send(compressor.compress(b"".join(batch)))
                    batch.clear()
            send(compressor.compress(b"".join(batch)) + compressor.flush())
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
        except OSError:
            pass


def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def run_capped(config: dict[str, t.Any], tmp_path: Path) -> tuple[int, int, int, str]:
    """Run the tap under the cap; (exit code, RECORD count, last id, stderr tail)."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["MALLOC_ARENA_MAX"] = "2"  # each thread's malloc arena would reserve 64 MB
    process = subprocess.Popen(
        [sys.executable, "-m", "tap_rhttp", "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=_limit_address_space,
    )
    stderr: list[bytes] = []
    reader = threading.Thread(target=lambda: stderr.append(process.stderr.read()))  # type: ignore[union-attr]
    reader.start()
    count, last, in_order = 0, -1, True
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(b'{"type":"RECORD"'):
            record = json.loads(line)["record"]
            number = int(record.get("id", record.get("@id", -2)))
            in_order = in_order and number == last + 1
            last = number
            count += 1
    process.stdout.close()
    code = process.wait(timeout=100)
    reader.join()
    process.stderr.close()  # type: ignore[union-attr]
    assert in_order
    return code, count, last, b"".join(stderr).decode(errors="replace")[-2000:]


@pytest.mark.timeout(150)
@pytest.mark.parametrize(
    ("rows", "content_type"),
    [(csv_rows, "text/csv"), (jsonl_rows, "application/x-ndjson"), (xml_rows, "application/xml")],
    ids=["csv", "jsonl", "xml"],
)
def test_a_200_mb_gzip_export_syncs_in_flat_memory(
    server: LocalServer,
    tmp_path: Path,
    rows: t.Callable[[int], t.Iterator[bytes]],
    content_type: str,
) -> None:
    _serve_gzip(server, "/export", rows, content_type)
    config = {
        "streams": [
            {
                "name": "export",
                "url": server.url + "/export",
                "schema": {"properties": {"id": {}, "kind": {}, "payload": {}}},
                "timeout": 120,
                "xml": {"records": "rows/row"},
            }
        ]
    }
    code, count, last, stderr = run_capped(config, tmp_path)
    assert code == 0, stderr
    assert (count, last) == (ROW_COUNT, ROW_COUNT - 1)
    assert len(server.log) == 1
