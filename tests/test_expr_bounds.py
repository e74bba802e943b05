"""The time and memory one evaluation may take, against hostile expressions.

Each case runs in a child process (so a broken bound costs this suite seconds, not
minutes, and cannot exhaust the machine's memory: the child's address space is capped) and
reports how long the evaluation took, what it raised, and, for the size cases, the peak
of Python's allocations (tracemalloc).

The bound documented in docs/expressions.md is about a second per evaluation;
``BOUND_SECONDS`` leaves room for a slower machine. Time is the child's CPU time, so a
busy machine does not make a bounded evaluation look slow.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import textwrap
import typing as t

import pytest

from tap_rhttp import expr
from tap_rhttp.expr.regex import _compile_regex, _RegexError

BOUND_SECONDS = 2.0
MAX_PEAK_BYTES = 64 * 1024 * 1024
CHILD_TIMEOUT = 20
ROOT = pathlib.Path(__file__).resolve().parent.parent

_CHILD = textwrap.dedent(
    """
    import json, resource, sys, time, tracemalloc
    resource.setrlimit(resource.RLIMIT_AS, (3 * 1024**3, 3 * 1024**3))
    from tap_rhttp import errors
    from tap_rhttp.expr import compile_expression
    source, body, trace = json.loads(sys.stdin.read())
    expression = compile_expression(source, path="p")
    if trace:
        tracemalloc.start()
    started = time.process_time()
    try:
        expression.evaluate({"info": {"params": {}, "header": {}, "body": eval(body)}})
        error = None
    except errors.ExpressionError as exc:
        error = f"{type(exc).__name__}: {exc}"
    seconds = time.process_time() - started
    peak = tracemalloc.get_traced_memory()[1] if trace else 0
    print(json.dumps({"seconds": seconds, "error": error, "peak": peak}))
    """
)


def run_child(source: str, body: str = "None", *, trace: bool = False) -> dict[str, t.Any]:
    """Evaluate ``source`` with ``info['body'] = eval(body)`` in a fresh interpreter."""
    assert len(source) <= expr.MAX_EXPRESSION_LENGTH
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD],
            input=json.dumps([source, body, trace]),
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
            cwd=ROOT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the evaluation ran for more than {CHILD_TIMEOUT} s")
    assert done.returncode == 0, done.stderr[-2000:]
    return t.cast("dict[str, t.Any]", json.loads(done.stdout.splitlines()[-1]))


# -- .match(): compiling --------------------------------------------------------------------


HUGE_REPEATS = [
    "(?:){4294967294}",
    "(?:a{0}){4294967294}",
    "(?:(?:(?:){1000}){1000}){1000}",
    "((?:){65535}){65535}",
    "(?:(?:|){2000}){2000}",
    "(?:(?:\\b){0,1000}){1000}",
    "(?:a{2}){1001}",
    "(?:(?:a{0,3}){10}){100}",
]


@pytest.mark.timeout(5)
@pytest.mark.parametrize("pattern", HUGE_REPEATS)
def test_huge_repeat_counts_are_refused_before_expanding(pattern: str) -> None:
    _compile_regex.cache_clear()
    with pytest.raises(_RegexError, match="MAX_REGEX_PROGRAM"):
        _compile_regex(pattern)


@pytest.mark.parametrize("pattern", HUGE_REPEATS[:3])
def test_huge_repeat_counts_fail_fast_in_an_evaluation(pattern: str) -> None:
    report = run_child(f"'a'.match('{pattern}')")
    assert report["error"] is not None
    assert "MAX_REGEX_PROGRAM" in report["error"]
    assert report["seconds"] < BOUND_SECONDS


@pytest.mark.parametrize(
    "pattern",
    ["a{1000}", "(?:ab){998}", "(?:(?:a{0,3}){10}){10}", "(?:){1000}", "x{0,990}"],
)
def test_repeats_within_the_program_limit_still_compile(pattern: str) -> None:
    _compile_regex(pattern)
