"""The tap as a user's scheduler runs it: a `python -m tap_rhttp` process, and a SIGKILL.

Resume tests run the real process, read its Singer messages as they come, and kill it
outright (no handler runs, nothing is flushed) at a chosen point; the next run resumes
from the last STATE that was written.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import typing as t

if t.TYPE_CHECKING:
    from pathlib import Path

Messages = list[dict[str, t.Any]]


def popen_tap(config: dict[str, t.Any], tmp_path: Path) -> subprocess.Popen[str]:
    """Start the tap on `config` (written to `tmp_path`), its stdout piped."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return subprocess.Popen(
        [sys.executable, "-m", "tap_rhttp", "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={k: v for k, v in os.environ.items() if "PROXY" not in k.upper()},
    )


def kill_when(
    config: dict[str, t.Any],
    tmp_path: Path,
    done: t.Callable[[Messages], bool],
    timeout: float = 40,
) -> Messages:
    """Run the tap and SIGKILL it as soon as `done(messages so far)`; the messages.

    Raises:
        AssertionError: the tap ended, or `timeout` passed, before `done` held.
    """
    proc = popen_tap(config, tmp_path)
    messages: Messages = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            messages.append(json.loads(line))
            if done(messages):
                proc.send_signal(signal.SIGKILL)
                return messages
        raise AssertionError(f"the tap was not killed: {len(messages)} messages, then it ended")
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()


def states_with(text: str, count: int) -> t.Callable[[Messages], bool]:
    """`done` for :func:`kill_when`: `count` STATE messages whose JSON contains `text`."""

    def done(messages: Messages) -> bool:
        return sum(m["type"] == "STATE" and text in json.dumps(m) for m in messages) >= count

    return done


def records(count: int) -> t.Callable[[Messages], bool]:
    """`done` for :func:`kill_when`: `count` RECORD messages."""

    def done(messages: Messages) -> bool:
        return sum(m["type"] == "RECORD" for m in messages) >= count

    return done
