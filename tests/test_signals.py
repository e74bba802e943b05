"""SIGTERM and SIGINT end a run with a non-zero exit, after the last complete page.

singer-sdk's handler exited 0, so a scheduler recorded an interrupted run as a success.
Each test runs the tap's own process against a slow loopback server and signals it:
stdout must end with complete lines, its last message a STATE that covers exactly the
records before it (a resumed run starts at the next page), and no page is ever written
in part.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import typing as t

import pytest
from conftest import PROXY_VARS
from fault_server import FaultServer, Hit, reply

if t.TYPE_CHECKING:
    import io
    from collections.abc import Iterator
    from pathlib import Path

PAGE = "{'params': {'page': info['params']['page'] + 1}}"


@pytest.fixture
def fault() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


def paged(per_page: int, delay: float, *, slow_page: int = 0, slow: float = 0.0) -> t.Any:
    def handler(hit: Hit) -> t.Any:
        n = int(hit.args["page"])
        time.sleep(slow if n == slow_page else delay)
        rows = [{"id": n * 1_000_000 + i, "page": n, "pad": "x" * 40} for i in range(per_page)]
        return reply(200, json.dumps(rows).encode())

    return handler


def config(url: str) -> dict[str, t.Any]:
    return {
        "streams": [
            {
                "name": "s",
                "url": url,
                "params": {"page": 1},
                "page": PAGE,
                "page_limit": 1000,
                "schema": {"properties": {"id": {"type": "integer"}, "page": {"type": "integer"}}},
            }
        ]
    }


class Run:
    """The tap as a process, its stdout read line by line as it comes."""

    def __init__(self, cfg: dict[str, t.Any], tmp_path: Path) -> None:
        path = tmp_path / "config.json"
        path.write_text(json.dumps(cfg))
        env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tap_rhttp", "--config", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.raw = bytearray()
        self.stderr = b""
        self._lock = threading.Lock()
        self._out = threading.Thread(target=self._read_out, daemon=True)
        self._err = threading.Thread(target=self._read_err, daemon=True)
        self._out.start()
        self._err.start()

    def _read_out(self) -> None:
        stdout = t.cast("io.BufferedReader", self.process.stdout)
        while chunk := stdout.read1(65536):
            with self._lock:
                self.raw += chunk

    def _read_err(self) -> None:
        assert self.process.stderr is not None
        self.stderr = self.process.stderr.read()

    def wait_for(self, needle: bytes, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if needle in self.raw:
                    return
            time.sleep(0.01)
        raise AssertionError(f"{needle!r} never appeared; stderr: {self.stderr[-2000:]!r}")

    def finish(self, timeout: float = 20) -> int:
        try:
            code = self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._out.join(timeout=5)
            self._err.join(timeout=5)
            for pipe in (self.process.stdout, self.process.stderr):
                if pipe is not None:
                    pipe.close()
        return code

    def messages(self) -> list[dict[str, t.Any]]:
        text = bytes(self.raw)
        assert text.endswith(b"\n"), text[-200:]
        return [json.loads(line) for line in text.splitlines()]


def check_output_ends_at_a_page_boundary(messages: list[dict[str, t.Any]], per_page: int) -> int:
    """The last message is a STATE whose position covers exactly the records before it."""
    assert messages[-1]["type"] == "STATE", messages[-1]
    records = [m["record"] for m in messages if m["type"] == "RECORD"]
    pages = len(records) // per_page
    assert len(records) == pages * per_page, "a page was written in part"
    assert [r["page"] for r in records] == [p for p in range(1, pages + 1) for _ in range(per_page)]
    position = messages[-1]["value"]["bookmarks"]["s"]["rhttp"]["chains"]["-"]
    assert position["requests"] == pages
    assert position["params"] == {"page": pages + 1}
    return pages


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_between_pages_stops_at_once_with_a_non_zero_exit(
    fault: FaultServer, tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    fault.routes["/p"] = paged(per_page=50, delay=0.15, slow_page=4, slow=30)
    run = Run(config(fault.url + "/p"), tmp_path)
    run.wait_for(b'"page":3,')
    run.wait_for(b'"requests":3')  # page 3's STATE: page 4 is in flight, for 30 s
    started = time.monotonic()
    run.process.send_signal(sig)
    assert run.finish() == code
    assert time.monotonic() - started < 5  # not waiting for the request in flight
    assert check_output_ends_at_a_page_boundary(run.messages(), 50) == 3
    stderr = run.stderr.decode()
    errors = [line for line in stderr.splitlines() if "| ERROR" in line]
    assert len(errors) == 1, stderr[-3000:]
    assert f"stopped by {sig.name}: the output ends after the last complete page" in errors[0]
    assert "Traceback" not in stderr


@pytest.mark.timeout(90)
def test_a_signal_while_a_page_is_written_lets_the_page_finish(
    fault: FaultServer, tmp_path: Path
) -> None:
    """A page of 60,000 records goes out in several 1 MiB writes; the signal comes in between."""
    per_page = 60_000
    fault.routes["/p"] = paged(per_page=per_page, delay=0.05)
    run = Run(config(fault.url + "/p"), tmp_path)
    run.wait_for(b'"id":2000000,')  # the first record of page 2 is out, the rest is not
    run.process.send_signal(signal.SIGTERM)
    assert run.finish() == 143
    messages = run.messages()
    assert check_output_ends_at_a_page_boundary(messages, per_page) >= 2
    assert "finishing the page being written, then stopping" in run.stderr.decode()


@pytest.mark.timeout(60)
def test_resuming_after_a_signal_loses_and_repeats_nothing(
    fault: FaultServer, tmp_path: Path
) -> None:
    fault.routes["/p"] = paged(per_page=20, delay=0.1)
    cfg = config(fault.url + "/p")
    cfg["streams"][0]["page_limit"] = 12
    run = Run(cfg, tmp_path)
    run.wait_for(b'"requests":4')
    run.process.send_signal(signal.SIGTERM)
    assert run.finish() == 143
    first = run.messages()
    pages = check_output_ends_at_a_page_boundary(first, 20)
    state = tmp_path / "state.json"
    state.write_text(json.dumps(first[-1]["value"]))
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tap_rhttp",
            "--config",
            str(tmp_path / "config.json"),
            "--state",
            str(state),
        ],
        capture_output=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    second = [json.loads(line) for line in done.stdout.splitlines()]
    ids = [m["record"]["id"] for m in first + second if m["type"] == "RECORD"]
    assert ids == [p * 1_000_000 + i for p in range(1, 13) for i in range(20)]
    assert pages < 12


@pytest.mark.timeout(90)
@pytest.mark.parametrize("concurrency", [1, 3])
def test_a_signal_during_a_childs_requests_resumes_exactly(
    fault: FaultServer, tmp_path: Path, concurrency: int
) -> None:
    """Parent rows' children are synced before the parent page is emitted; a signal while a
    child request is in flight stops at once, and the resumed run loses and repeats nothing
    (also with rows at once, whose pages that are ready together are written together)."""
    slow = threading.Event()

    def users(hit: Hit) -> t.Any:
        return reply(200, json.dumps([{"id": u} for u in range(1, 6)]).encode())

    def posts(hit: Hit) -> t.Any:
        user, page = int(hit.args["u"]), int(hit.args["page"])
        if user == 3 and page == 2 and not slow.is_set():
            slow.set()
            time.sleep(30)  # the first run is stopped during this request
        rows = [{"id": user * 100 + page * 10 + i, "u": user, "p": page} for i in range(4)]
        return reply(200, json.dumps(rows).encode())

    fault.routes["/users"] = users
    fault.routes["/posts"] = posts
    cfg = {
        "streams": [
            {
                "name": "users",
                "url": fault.url + "/users",
                "primary_keys": ["id"],
                "schema": {"properties": {"id": {"type": "integer"}}},
            },
            {
                "name": "posts",
                "url": fault.url + "/posts?u={{ row['id'] }}",
                "parent": "users",
                "params": {"page": 1},
                "page": PAGE,
                "page_limit": 3,
                "primary_keys": ["id"],
                "schema": {"properties": {"id": {"type": "integer"}, "u": {"type": "integer"}}},
                "max_concurrency": concurrency,
            },
        ]
    }
    run = Run(cfg, tmp_path)
    deadline = time.monotonic() + 30
    while not slow.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert slow.is_set()
    time.sleep(0.2)
    started = time.monotonic()
    run.process.send_signal(signal.SIGTERM)
    assert run.finish() == 143
    assert time.monotonic() - started < 5
    first = run.messages()
    assert first[-1]["type"] == "STATE"
    got = [(m["stream"], m["record"]["id"]) for m in first if m["type"] == "RECORD"]
    pages: dict[tuple[int, int], int] = {}
    for m in first:
        if m["type"] == "RECORD" and m["stream"] == "posts":
            key = (m["record"]["u"], m["record"]["p"])
            pages[key] = pages.get(key, 0) + 1
    assert all(count == 4 for count in pages.values()), pages  # no page in part
    assert {(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3), (3, 1)} <= set(pages)  # before the stop
    state = tmp_path / "state.json"
    state.write_text(json.dumps(first[-1]["value"]))
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    argv = [sys.executable, "-m", "tap_rhttp", "--config", str(tmp_path / "config.json")]
    done = subprocess.run(
        [*argv, "--state", str(state)],
        capture_output=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    second = [json.loads(line) for line in done.stdout.splitlines()]
    got += [(m["stream"], m["record"]["id"]) for m in second if m["type"] == "RECORD"]
    expected = [("users", u) for u in range(1, 6)] + [
        ("posts", u * 100 + p * 10 + i) for u in range(1, 6) for p in range(1, 4) for i in range(4)
    ]
    assert sorted(got) == sorted(expected)  # every record once: none lost, none repeated
