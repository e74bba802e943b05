"""Shared fixtures: no proxies, one session-wide loopback server, and tap runners."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing as t

import pytest
from server import LocalServer
from singer_sdk.contrib.msgspec import MsgSpecWriter

from tap_rhttp.tap import TapRHTTP

if t.TYPE_CHECKING:
    from pathlib import Path

pytest_plugins = ["pg"]

PROXY_VARS = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests talk to 127.0.0.1 only: never through a proxy from the environment."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def _local_server() -> t.Iterator[LocalServer]:
    server = LocalServer().start()
    yield server
    server.stop()


@pytest.fixture
def server(_local_server: LocalServer) -> t.Iterator[LocalServer]:
    """The loopback server, its request log and state cleared for this test."""
    _local_server.reset()
    added = set(_local_server.routes)
    yield _local_server
    for extra in set(_local_server.routes) - added:
        del _local_server.routes[extra]


class SyncResult(t.NamedTuple):
    messages: list[dict[str, t.Any]]

    def records(self, stream: str | None = None) -> list[dict[str, t.Any]]:
        return [
            m["record"]
            for m in self.messages
            if m["type"] == "RECORD" and (stream is None or m["stream"] == stream)
        ]

    def of_type(self, kind: str) -> list[dict[str, t.Any]]:
        return [m for m in self.messages if m["type"] == kind]

    def schema(self, stream: str) -> dict[str, t.Any]:
        return next(m["schema"] for m in self.of_type("SCHEMA") if m["stream"] == stream)


class CaptureWriter(MsgSpecWriter):
    """Collects the serialised Singer lines instead of writing them to stdout."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[bytes] = []

    def write_message(self, message: t.Any) -> None:
        self.lines.append(bytes(self.format_message(message)))


def run_sync(
    config: dict[str, t.Any],
    *,
    catalog: dict[str, t.Any] | None = None,
    state: dict[str, t.Any] | None = None,
) -> SyncResult:
    """Run a whole sync in this process and parse every Singer message it wrote."""
    writer = CaptureWriter()
    tap = TapRHTTP(
        config=config, catalog=catalog, state=state, parse_env_config=False, message_writer=writer
    )
    tap.sync_all()
    return SyncResult([json.loads(line) for line in writer.lines])


@pytest.fixture
def sync() -> t.Callable[..., SyncResult]:
    return run_sync


class CliResult(t.NamedTuple):
    code: int
    stdout: str
    stderr: str

    def messages(self) -> list[dict[str, t.Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]


def run_cli(
    config: dict[str, t.Any] | None, *args: str, tmp_path: Path, timeout: float = 60
) -> CliResult:
    """Run `python -m tap_rhttp` as a user would, with a config file."""
    argv = [sys.executable, "-m", "tap_rhttp", *args]
    if config is not None:
        path = tmp_path / "config.json"
        path.write_text(json.dumps(config))
        argv += ["--config", str(path)]
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    env.pop("TAP_RHTTP_STREAMS", None)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    return CliResult(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def cli(tmp_path: Path) -> t.Callable[..., CliResult]:
    def call(config: dict[str, t.Any] | None, *args: str, timeout: float = 60) -> CliResult:
        return run_cli(config, *args, tmp_path=tmp_path, timeout=timeout)

    return call
