"""Break-out attempts: each is rejected at load, or fails fast at evaluation, small and quick.

Modelled on simpleeval's ``test_security.py``: the attacker writes the config, so every
expression here is hostile. "Fails fast" means an ExpressionError within the timeout and
without a big allocation (measured with tracemalloc).
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys
import time
import tracemalloc
import typing as t

import pytest

from tap_rhttp import errors, expr
from tap_rhttp.expr import compile_expression

MAX_PEAK_BYTES = 64 * 1024 * 1024  # a little over what one MAX_STRING_LENGTH string may take


def load(source: str) -> expr.Expression:
    return compile_expression(source, path="streams[0].page")


def evaluate(source: str, body: t.Any = None) -> t.Any:
    return load(source).evaluate({"info": {"params": {}, "header": {}, "body": body}})


def peak_bytes_of(action: t.Callable[[], t.Any]) -> int:
    tracemalloc.start()
    try:
        action()
    except errors.RHTTPError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


REJECTED_AT_LOAD = [
    "import os",
    "__import__('os')",
    "__import__('os').system('id')",
    "().__class__.__bases__[0].__subclasses__()",
    "[].__class__.__base__.__subclasses__()",
    "info.__class__",
    "info['body'].__class__",
    "info.__class__.__mro__",
    "r.__dict__",
    "r.expr.__globals__",
    "r.expr(1).__class__",
    "r.branch.__code__",
    "r",
    "r.row",
    "r.js('1')",
    "r.http('http://example.com')",
    "open('/etc/passwd')",
    "open('/etc/passwd').read()",
    "getattr(info, '__class__')",
    "eval('1')",
    "exec('1')",
    "compile('1', '', 'eval')",
    "globals()",
    "locals()",
    "vars()",
    "__builtins__",
    "breakpoint()",
    "input()",
    "type(info)",
    "lambda: 1",
    "lambda info: lambda info: 1",
    "lambda info, x: 1",
    "lambda info=open: info",
    "lambda *info: 1",
    "(lambda: 1)()",
    "[x for x in info]",
    "{x: 1 for x in info}",
    "(x for x in info)",
    "9**9**9",
    "10**10000",
    "'a' * 10**10",
    "[1] * 10**9",
    "'a' * 2 ** 40",
    "info['body'] * 10**9",
    "info['body'].format(1)",
    "'{0.__class__}'.format(info)",
    "f'{info.__class__}'",
    "f'{info!r:>1000000000}'",
    "(x := info)",
    "info['a'].default(x := 1)",
    "[*info]",
    "r.expr(*info)",
    "r.expr(**info)",
    "{**info}",
    "info['a'].coerce_to(type='string')",
    "b'bytes'",
    "1j",
    "...",
    "{1, 2}",
    "(1, 2)",
    "info[1:2]",
    "await info",
    "yield info",
    "\U0001d5c8\U0001d5c9\U0001d5be\U0001d5c7('/etc/passwd')",  # sans-serif "open": NFKC makes it open
    "info['a'].__getitem__('b')",
    "info['a']._private()",
    "info\n.body",
    "\\\ninfo.body",
    "info['x'] # comment\n.__class__",
    # through a time: it is a value of the language, never an object with attributes
    "r.now().__class__",
    "r.now().ms",
    "r.now().tz",
    "r.now()._replace(ms=0)",
    "r.epoch_time(0).__reduce__()",
    "r.now().strftime('%Y')",
    "r.now().isoformat()",
    "r.now().timestamp()",
    "r.now().replace(year=1)",
    "r.iso8601('2024-01-01T00:00Z').astimezone()",
    "r.now().civil()",
    "r.now().to_iso8601.__self__",
    "r.datetime(2024, 1, 1)",
    "r.now(tz='Z')",
    "r.epoch_time(seconds=0)",
    "r.time(2024, 1, 1, 0, 0, 'Z')",
]


@pytest.mark.timeout(30)  # wall clock, for a loaded machine; the bound is CPU time
@pytest.mark.parametrize("source", REJECTED_AT_LOAD)
def test_rejected_at_load(source: str) -> None:
    with pytest.raises(errors.ExpressionSyntaxError) as caught:
        load(source)
    assert caught.value.path == "streams[0].page"
    assert "^" in str(caught.value)


FAIL_FAST_AT_EVALUATION = [
    ("'a' * 10000000000", None),
    ("'a' * 1099511627776", None),
    ("[1] * 1000000000", None),
    ("[[1] * 100000] * 100000 + [1]", None),
    ("info['body'] * 1000000000", "some text"),
    ("info['body'] * 1000000000", [1, 2, 3]),
    ("info['body'] * 1000000000", {"a": 1}),
    ("'ab'.mul(" + ", ".join(["2"] * 40) + ")", None),  # doubling, 40 times, in one call
    ("r.expr('a' * 600000).add('a' * 600000)", None),
    ("('a' * 999999) + ('a' * 999999)", None),
    ("('a' * 999999).coerce_to('string').add('bb')", None),
    ("([[1] * 100000] * 100000).coerce_to('string')", None),
    ("([[1] * 100000] * 100000).to_json_string()", None),
    ("[[1] * 100000] * 100000 == [[1] * 100000] * 100000", None),
    ("([[1] * 100000] * 100000).contains([1] * 99999 + [2])", None),
    ("([[1] * 100000] * 100000).count([1] * 99999 + [2])", None),
    ("r.json('[' * 500000 + ']' * 500000)", None),
    ("('a ' * 499999).split()", None),
    ("('a' * 999999).split('')", None),
    ("('a' * 100001).match('a')", None),
    ("'a'.match('a' * 1001)", None),
    ("'a'.match('a{1000000}')", None),
    ("'a'.match('(' * 100 + 'a' + ')' * 100)", None),
    ("('a' * 99999).match('.{0,900}x')", None),
    ("('%s' * 1000) % info['body']", [1]),
    ("(1e308 * 10)", None),
    ("9007199254740992 * 9007199254740992", None),
    ("info['body'] * info['body']", 10**4000),
    ("info['body'] / 3", 10**4000),
    ("r.error('stop')", None),
    ("r.now()['ms']", None),
    ("r.now()['__class__']", None),
    ("r.now()[0]", None),
    ("r.now().keys()", None),
    ("r.now().merge({'ms': 0})", None),
    ("r.now().in_timezone('+00:00' * 100000)", None),
    ("r.iso8601('2024-01-01T00:00:00.' + '1' * 999900 + 'x')", None),
    ("r.epoch_time(1e300)", None),
    ("r.time(2024, 1, 1, 1000000000000000, 0, 0, 'Z')", None),
]


@pytest.mark.timeout(30)  # wall clock, for a loaded machine; the bound is CPU time
@pytest.mark.parametrize(("source", "body"), FAIL_FAST_AT_EVALUATION)
def test_fails_fast_at_evaluation(source: str, body: t.Any) -> None:
    expression = load(source)
    started = time.process_time()
    with pytest.raises(errors.ExpressionError):
        expression.evaluate({"info": {"params": {}, "header": {}, "body": body}})
    assert time.process_time() - started < 4


@pytest.mark.timeout(30)  # wall clock, for a loaded machine; the bound is CPU time
@pytest.mark.parametrize(
    "pattern",
    [
        "(a+)+$",
        "(a|a)*b",
        "(a*)*b",
        "(a|aa)+$",
        ".*.*.*x",
        "a*a*a*a*a*b",
        "^(\\\\w+\\\\s?)*$",
        "^(([a-z])+.)+[A-Z]([a-z])+$",
    ],
)
def test_catastrophic_patterns_run_in_linear_time(pattern: str) -> None:
    started = time.process_time()
    result = evaluate(f"info['body'].match('{pattern}')", "a" * 20_000 + "!")
    assert result is None
    assert time.process_time() - started < 4


@pytest.mark.timeout(30)  # wall clock, for a loaded machine; the bound is CPU time
@pytest.mark.parametrize(
    "source",
    [
        "'a' * 10000000000",
        "[1] * 1000000000",
        "'abc' * 400000",
        "info['body'] * 1000000000",
        "'ab'.mul(" + ", ".join(["2"] * 40) + ")",
    ],
)
def test_size_is_checked_before_anything_is_built(source: str) -> None:
    peak = peak_bytes_of(lambda: evaluate(source, [1, 2, 3]))
    assert peak < MAX_PEAK_BYTES


@pytest.mark.timeout(30)  # wall clock, for a loaded machine; the bound is CPU time
@pytest.mark.parametrize(
    "source",
    [
        "(" * 10_000 + "1" + ")" * 10_000,
        "[" * 10_000 + "]" * 10_000,
        "{'a': " * 10_000 + "1" + "}" * 10_000,
        "x" * 10**6,
        "info['a']" + "['b']" * 1000,
        "-" * 4000 + "1",
        "~" * 4000 + "1",
        "not " * 1000 + "1",
        "(" * 1000 + "1" + ")" * 1000,
        "[" * 1000 + "]" * 1000,
        "+".join(["1"] * 2000),
        "1" + " if 1 else 1" * 300,
        "info" + ".default(1)" * 300,
        "r.expr(" * 500 + "1" + ")" * 500,
        "lambda info: " * 400 + "1",
        "'a'" + " + 'a'" * 40,
    ],
    ids=lambda source: f"{source[:20]}...({len(source)} chars)",
)
def test_pathological_nesting_and_length(source: str) -> None:
    with pytest.raises(errors.ExpressionSyntaxError) as caught:
        load(source)
    message = str(caught.value)
    assert any(word in message for word in ("MAX_EXPRESSION_LENGTH", "nests", "MAX_AST_DEPTH"))
    assert len(message) < 2 * expr.MAX_EXPRESSION_LENGTH


def test_a_million_character_expression_is_not_printed_whole() -> None:
    with pytest.raises(errors.ExpressionSyntaxError) as caught:
        load("x" * 10**6)
    assert len(str(caught.value)) < 500
    assert "1000000 characters long" in str(caught.value)


@pytest.mark.timeout(30)  # wall clock, for a loaded machine; the bound is CPU time
def test_parsing_from_deep_in_the_stack_is_still_safe() -> None:
    def nested(depth: int) -> t.Any:
        if depth:
            return nested(depth - 1)
        return load("+".join(["1"] * 100))  # passes the raw-text bound, then the depth check

    with pytest.raises(errors.ExpressionSyntaxError, match="MAX_AST_DEPTH"):
        nested(800)


@pytest.mark.timeout(30)  # wall clock, for a loaded machine; the bound is CPU time
def test_depth_limit_accepts_just_under_the_limit() -> None:
    depth = expr.MAX_AST_DEPTH - 1
    source = "[" * depth + "1" + "]" * depth
    value: t.Any = 1
    for _ in range(depth):
        value = [value]
    assert evaluate(source) == value
    with pytest.raises(errors.ExpressionSyntaxError, match="MAX_AST_DEPTH"):
        load("[" * (depth + 1) + "1" + "]" * (depth + 1))


@pytest.mark.timeout(30)  # wall clock, for a loaded machine; the bound is CPU time
def test_many_matches_share_one_step_budget() -> None:
    one = "(info['body'].match('(\\\\w+)=(\\\\d+)$') == None)"
    expression = load(" and ".join([one] * 20))
    started = time.process_time()
    with pytest.raises(errors.ExpressionError, match="MAX_REGEX_STEPS"):
        expression.evaluate({"info": {"body": "a" * 90_000}})
    assert time.process_time() - started < 4


@pytest.mark.timeout(30)  # wall clock, for a loaded machine; the bound is CPU time
def test_percent_is_never_string_formatting() -> None:
    with pytest.raises(errors.ExpressionError, match="Expected type NUMBER but found STRING"):
        evaluate("'%s' % info['body']", "secret")


def test_no_python_object_is_reachable_from_a_result() -> None:
    for source in ("info", "r.expr(info)", "info['body']", "[info, {'a': info}]"):
        result = evaluate(source, {"x": [1, "a", None, True, 1.5]})
        stack = [result]
        while stack:
            item = stack.pop()
            assert item is None or isinstance(item, (bool, int, float, str, list, dict))
            if isinstance(item, list):
                stack.extend(item)
            elif isinstance(item, dict):
                assert all(isinstance(key, str) for key in item)
                stack.extend(item.values())


TIME_RESULTS = [
    "r.now()",
    "[r.now(), {'at': r.epoch_time(0)}, [[r.iso8601('2024-01-01T00:00Z')]]]",
    "r.branch(True, r.now(), None)",
    "info['body'].default(r.now())",
    "r.expr(r.now()).in_timezone('+01:00')",
    "{'since': r.now() - 86400, 'until': r.now()}",
    "[r.now()] * 3",
    "r.now().coerce_to('object')",
    "[r.now()].append(r.now().date())",
    "{'a': r.now()}.merge({'b': {'c': r.now()}})",
    "[r.now(), r.now()].slice(1)",
    "r.now() if True else 1",
    "r.now().to_json_string()",
]


@pytest.mark.parametrize("source", TIME_RESULTS)
def test_no_time_object_leaves_an_evaluation(source: str) -> None:
    result = evaluate(source, None)
    stack = [result]
    while stack:
        item = stack.pop()
        assert type(item) in (type(None), bool, int, float, str, list, dict), type(item)
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            assert all(type(key) is str for key in item)
            stack.extend(item.values())


def test_times_are_made_without_pythons_datetime() -> None:
    package = pathlib.Path(expr.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                assert all("datetime" not in alias.name for alias in node.names), path
            if isinstance(node, ast.ImportFrom):
                assert "datetime" not in (node.module or ""), path
    script = (
        "import sys\n"
        "from tap_rhttp.expr import compile_expression\n"
        f"for source in {TIME_RESULTS!r}:\n"
        "    compile_expression(source, path='p').evaluate({'info': {'body': None}})\n"
        "assert 'datetime' not in sys.modules and '_datetime' not in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=False,
        cwd=package.parent.parent,
    )
    assert done.returncode == 0, done.stderr


def test_dunder_keys_are_just_missing_fields() -> None:
    with pytest.raises(errors.NonExistenceError, match="No attribute `__class__`"):
        evaluate("info['body']['__class__']", {})
    assert evaluate("info['body']['__class__'].default('safe')", {}) == "safe"
