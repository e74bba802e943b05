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
import unicodedata

import pytest

from tap_rhttp import expr
from tap_rhttp.expr.functions import _MARK_PLANES, _split
from tap_rhttp.expr.regex import _compile_regex, _RegexError
from tap_rhttp.expr.values import _BUDGET, _SCAN_CHARACTERS_PER_STEP, _Budget

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


def many(call: str, total: int = 3000) -> str:
    """A list literal repeating ``call`` up to about ``total`` characters of source."""
    return "[" + ", ".join([call] * (total // (len(call) + 2))) + "]"


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


# -- .match(): running ---------------------------------------------------------------------


SLOW_PATTERNS = [
    "(?:\\\\B){99}$",  # assertions only: no thread survives a position
    "(?:\\\\B){1990}$",
    "(){99}$",
    "(){990}$",
    "()" * 450 + "$",  # many groups: each SAVE copies every capture
    "(?:(?:\\\\b|\\\\B){0,9}){20}$",  # nested quantifiers over an alternation
    "(?:((\\\\b){0,3})+?)+$",
    "(?:(?:(?:(a?|\\\\B)){0,3}){0,3}){0,3}$",
    "(?:a?){990}b",  # a thousand threads alive at every position
    "(?:(a)?|(\\\\B)){200}b",
]


@pytest.mark.parametrize("pattern", SLOW_PATTERNS, ids=lambda p: p[:40])
def test_one_match_stays_within_the_time_bound(pattern: str) -> None:
    report = run_child(f"info['body'].match('{pattern}')", "'a' * 99999")
    assert "Error in regexp" not in str(report["error"]), report  # it compiled and ran
    assert report["seconds"] < BOUND_SECONDS, report


def test_many_matches_share_the_time_bound() -> None:
    calls = [f"info['body'].match('(?:\\\\B){{{n}}}$')" for n in range(90, 110)]
    report = run_child("[" + ", ".join(calls) + "]", "'a' * 99999")
    assert report["error"] is not None
    assert "MAX_REGEX_STEPS" in report["error"]
    assert report["seconds"] < BOUND_SECONDS, report


def test_compiling_many_big_patterns_shares_the_time_bound() -> None:
    calls = [f"'a'.match('[a-z]{{{n}}}x')" for n in range(1700, 1700 + 140)]
    report = run_child("[" + ", ".join(calls) + "]")
    assert report["seconds"] < BOUND_SECONDS, report


# -- split('') -----------------------------------------------------------------------------


def test_splitting_combining_marks_stays_within_the_time_bound() -> None:
    report = run_child(many("info['body'].split('')"), "'a' + '\\u0301' * 999999")
    assert report["seconds"] < BOUND_SECONDS, report


def test_split_into_characters_is_charged_for_every_character_it_scans() -> None:
    long = "a" + "\u0301" * 999_999
    budget = _Budget()
    token = _BUDGET.set(budget)
    try:
        assert _split(long, "") == [long]
    finally:
        _BUDGET.reset(token)
    assert expr.MAX_EVALUATION_STEPS - budget.steps >= len(long) // _SCAN_CHARACTERS_PER_STEP
    assert expr.MAX_EVALUATION_BYTES - budget.bytes >= len(long)


def test_combining_marks_are_where_split_looks_for_them() -> None:
    outside = [
        code
        for code in range(sys.maxunicode + 1)
        if unicodedata.category(chr(code)).startswith("M")
        and not any(low <= code <= high for low, high in _MARK_PLANES)
    ]
    assert outside == []


def test_split_into_characters_keeps_marks_with_their_base() -> None:
    text = "e\u0301a\u0308\u0323x"
    result = expr.compile_expression("info.split('')", path="p").evaluate({"info": text})
    assert result == ["e\u0301", "a\u0308\u0323", "x"]
    limited = expr.compile_expression("info.split('', 1)", path="p").evaluate({"info": text})
    assert limited == ["e\u0301", "a\u0308\u0323x"]
    marks = expr.compile_expression("info.split('')", path="p").evaluate({"info": "\u0301\u0301a"})
    assert marks == ["\u0301\u0301", "a"]


# -- everything one evaluation builds, together ---------------------------------------------

BUILDERS = [
    ("'\\U0001f600' * 999999", "None"),
    ("(info['body'] + 'x')", "'\\U0001f600' * 999998"),
    ("info['body'].add('x', 'y')", "'\\U0001f600' * 999990"),
    ("r.add(info['body'], [1])", "[0] * 99999"),
    ("info['body'].append(1)", "[0] * 99999"),
    ("(info['body'] * 1)", "[0] * 99999"),
    ("info['body'].merge({'x': 1})", "{str(i): i for i in range(99999)}"),
    ("info['body'].coerce_to('string')", "['\\U0001f600' * 96] * 10000"),
    ("info['body'].to_json_string()", "['\\U0001f600' * 96] * 10000"),
    ("info['body'].coerce_to('array')", "{str(i): i for i in range(99999)}"),
    ("info['body'].upcase()", "'\\U0001f600' * 999999"),
    ("info['body'].slice(1)", "'\\U0001f600' * 999999"),
    ("info['body'].skip(1)", "[0] * 99999"),
    ("info['body'].split('a')", "'\\U0001f600a' * 99990"),
    ("info['body'].keys()", "{str(i): i for i in range(99999)}"),
    ("r.json(info['body'])", "'[' + '1,' * 499990 + '1]'"),
]


@pytest.mark.parametrize(("call", "body"), BUILDERS, ids=[call for call, _ in BUILDERS])
def test_everything_an_evaluation_builds_is_capped(call: str, body: str) -> None:
    report = run_child(many(call), body, trace=True)
    assert report["error"] is not None, report
    assert "MAX_EVALUATION_BYTES" in report["error"], report
    assert report["peak"] < MAX_PEAK_BYTES, report
    assert report["seconds"] < BOUND_SECONDS, report


def test_ordinary_big_results_are_within_the_cap() -> None:
    expression = expr.compile_expression(
        "[info['body'].coerce_to('string'), info['body'].count(), 'x' * 900000]", path="p"
    )
    body = [{"id": i, "name": f"item {i}"} for i in range(20_000)]
    result = expression.evaluate({"info": {"body": body}})
    assert result[1] == 20_000
    assert len(result[0]) > 400_000
