"""A run that fails on anything unexpected ends with one clear ERROR line and exit 1.

Faults the transport cannot map (a full disk while spooling a body, memory running out,
a bug) used to end on a traceback as the main message. Each case runs the tap's own
process; where the fault is injected, a small launcher replaces one function at the OS
or library boundary before the tap's command line starts.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
import time
import typing as t

import pytest
from conftest import PROXY_VARS, CliResult
from fault_server import FaultServer, reply

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

MIB = 1 << 20

#: Launchers: Python run before the tap's command line, each injecting one fault.
FULL_DISK = """
import errno, tempfile
_real = tempfile.TemporaryFile

class _Full:
    def __init__(self, file):
        self._file = file
    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    def __getattr__(self, name):
        return getattr(self._file, name)

tempfile.TemporaryFile = lambda *a, **k: _Full(_real(*a, **k))
"""
FULL_DISK_FOR_RECORDS = """
import errno, tempfile
_real = tempfile.TemporaryFile
_made = []

class _Full:
    def __init__(self, file):
        self._file = file
    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    def __getattr__(self, name):
        return getattr(self._file, name)

def _second_is_full(*a, **k):
    _made.append(1)
    file = _real(*a, **k)
    return _Full(file) if len(_made) == 2 else file  # the body's spool fits, its records do not

tempfile.TemporaryFile = _second_is_full
"""
OUT_OF_MEMORY = """
import tap_rhttp.formats.readers as readers
def _parse(body):
    raise MemoryError()
readers.parse_json = _parse
"""
A_BUG = """
import tap_rhttp.formats.records as records
def _records(body, path):
    raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")
records.body_to_records = _records
import tap_rhttp.run.chain as chain
chain.body_to_records = _records
"""


@pytest.fixture
def fault() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


def run_tap(
    config: dict[str, t.Any],
    tmp_path: Path,
    *args: str,
    inject: str = "",
    address_space: int | None = None,
    env_vars: dict[str, str] | None = None,
) -> tuple[CliResult, float]:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    launcher = inject + "\nfrom tap_rhttp.main import main\nmain()\n"
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    env["TMPDIR"] = str(tmp_path)
    env.update(env_vars or {})

    def cap() -> None:
        if address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(launcher), "--config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        preexec_fn=cap,
    )
    return CliResult(done.returncode, done.stdout, done.stderr), time.monotonic() - started


def the_error_line(done: CliResult) -> str:
    errors = [line for line in done.stderr.splitlines() if "| ERROR" in line]
    assert len(errors) == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return errors[0]


def stream(url: str, **options: t.Any) -> dict[str, t.Any]:
    return {"streams": [{"name": "s", "url": url, **options}]}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("args", [(), ("--discover",)])
def test_a_full_disk_while_spooling_is_one_clear_line(
    fault: FaultServer, tmp_path: Path, args: tuple[str, ...]
) -> None:
    body = json.dumps([{"id": i, "pad": "x" * 200} for i in range(50_000)]).encode()
    assert len(body) > 9 * MIB  # past the spool's memory threshold
    fault.routes["/big"] = lambda hit: reply(200, body)
    config = stream(fault.url + "/big", schema={"properties": {"id": {"type": "integer"}}})
    if args:
        del config["streams"][0]["schema"]  # discovery samples the first page
    done, took = run_tap(config, tmp_path, *args, inject=FULL_DISK)
    assert done.code == 1
    line = the_error_line(done)
    if not args:
        assert (
            f"Error in HTTP GET of `{fault.url}/big` [stream s, page 1]: could not write the "
            "response body to a "
            "temporary file: [Errno 28] No space left on device"
        ) in line
        assert len(fault.hits("/big")) == 1  # not retried
    else:
        assert "No space left on device" in line
    assert '"type":"RECORD"' not in done.stdout
    assert took < 30


@pytest.mark.timeout(60)
def test_a_full_disk_while_spooling_records_is_one_clear_line(
    fault: FaultServer, tmp_path: Path
) -> None:
    """The records of a spilled body go to a second file; it fails the page, not memory."""
    body = json.dumps([{"id": i, "pad": "x" * 200} for i in range(50_000)]).encode()
    fault.routes["/big"] = lambda hit: reply(200, body)
    config = stream(fault.url + "/big", schema={"properties": {"id": {"type": "integer"}}})
    done, _ = run_tap(config, tmp_path, inject=FULL_DISK_FOR_RECORDS)
    assert done.code == 1
    line = the_error_line(done)
    assert (
        "could not write the page's records to a temporary file: [Errno 28] No space left on "
        "device (free disk space, or point TMPDIR at a larger disk)."
    ) in line
    assert '"type":"RECORD"' not in done.stdout


@pytest.mark.timeout(60)
@pytest.mark.parametrize("args", [(), ("--discover",), ("--explain",)])
def test_memory_running_out_is_one_clear_line(
    fault: FaultServer, tmp_path: Path, args: tuple[str, ...]
) -> None:
    fault.routes["/r"] = lambda hit: reply(200, b'[{"id": 1}]')
    done, _ = run_tap(
        stream(fault.url + "/r", result_format="json"), tmp_path, *args, inject=OUT_OF_MEMORY
    )
    assert done.code == 1
    line = the_error_line(done)
    assert "tap-rhttp stopped on an unexpected error: out of memory (MemoryError)" in line
    assert "`max_body_bytes`" in line


@pytest.mark.timeout(90)
def test_a_real_out_of_memory_is_one_clear_line(fault: FaultServer, tmp_path: Path) -> None:
    """A 200 MB text page in a 512 MiB address space: reading it whole needs more."""
    body = b"t" * (200 * MIB)
    fault.routes["/text"] = lambda hit: reply(200, body, content_type="text/plain")
    config = stream(fault.url + "/text", schema={"properties": {}}, reattempts=1)
    done, took = run_tap(config, tmp_path, address_space=512 * MIB)
    assert done.code == 1
    line = the_error_line(done)
    assert "out of memory (MemoryError)" in line
    assert took < 60


@pytest.mark.timeout(60)
def test_a_bug_is_one_clear_line_with_the_traceback_at_debug(
    fault: FaultServer, tmp_path: Path
) -> None:
    fault.routes["/r"] = lambda hit: reply(200, b'[{"id": 1}]')
    config = stream(fault.url + "/r", schema={"properties": {}})
    done, _ = run_tap(config, tmp_path, inject=A_BUG)
    assert done.code == 1
    line = the_error_line(done)
    assert (
        "tap-rhttp stopped on an unexpected error: TypeError: unsupported operand type(s)"
    ) in line
    assert "TAP_RHTTP_LOGLEVEL=debug" in line
    done, _ = run_tap(config, tmp_path, inject=A_BUG, env_vars={"TAP_RHTTP_LOGLEVEL": "debug"})
    assert done.code == 1
    errors = [line for line in done.stderr.splitlines() if "| ERROR" in line]
    assert len(errors) == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "in _records" in done.stderr  # the injected function, where it raised
