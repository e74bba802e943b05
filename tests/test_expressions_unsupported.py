"""Features deliberately left out of the expression language.

Each is rejected when the config is loaded; the message names the feature, says what to
write instead where there is an equivalent, and puts the caret under the right column.
"""

from __future__ import annotations

import pytest

from tap_rhttp import errors
from tap_rhttp.expr import compile_expression

UNSUPPORTED = [
    # (expression, column of the caret, words the message must contain)
    ("info['items'][1:2]", 14, "slices `x[a:b]` are not supported", "use .slice(a, b)"),
    ("info['items'][::2]", 14, "slices `x[a:b]` are not supported", ""),
    ("f'page-{info}'", 0, "f-strings are not supported", "use + and .coerce_to('string')"),
    ("{1, 2}", 0, "set literals are not supported", "use a list"),
    ("(1, 2)", 0, "tuples are not supported", "use a list"),
    ("info['a'], 1", 0, "tuples are not supported", ""),
    ("(page := 1)", 6, "the walrus operator `:=` is not supported", ""),
    ("r.expr(*info['a'])", 7, "star-args `*x` are not supported", ""),
    ("[1, *info['a']]", 4, "star-args `*x` are not supported", ""),
    ("r.expr(**info)", 7, "`**kwargs` is not supported", ""),
    ("{**info, 'a': 1}", 1, "dict unpacking `**x` is not supported", "use .merge(x)"),
    ("info['a'].count(value=1)", 16, "`.count()` takes no keyword arguments", ""),
    ("r.branch(True, 1, 2, test=3)", 21, "`r.branch()` takes no keyword arguments", ""),
    ("[x for x in info]", 0, "list comprehensions are not supported", ""),
    ("{x: 1 for x in info}", 0, "dict comprehensions are not supported", ""),
    ("{x for x in info}", 0, "set comprehensions are not supported", ""),
    ("r.expr(x for x in info)", 6, "generator expressions are not supported", ""),
    ("info.body", 4, "attribute access `.body` is not allowed", "use info['body']"),
    (
        "info['body'].meta.next",
        12,
        "attribute access `.meta` is not allowed",
        "use info['body']['meta']",
    ),
    ("r.branch", 1, "`r.branch` must be called", "r.branch(...)"),
    ("info['a'].lower()", 9, "method `.lower()` is not supported", "supported methods: .add"),
    ("info['a'].__class__", 9, "`.__class__` is not allowed", "names that start with `_`"),
    ("r.row['a']", 1, "`r.row` must be called", ""),
    ("info['a'] ** 2", 10, "the `**` operator is not supported", ""),
    ("info['a'] // 2", 10, "the `//` operator is not supported", "use (a / b).floor()"),
    ("info['a'] << 1", 10, "the `<<` operator is not supported", ""),
    ("info['a'] >> 1", 10, "the `>>` operator is not supported", ""),
    ("info['a'] ^ 1", 10, "the `^` operator is not supported", ""),
    ("info['a'] @ 1", 10, "the `@` operator is not supported", ""),
    ("'x' in info['a']", 4, "the `in` operator is not supported", "use .contains(x)"),
    ("'x' not in info['a']", 4, "the `not in` operator is not supported", ".contains(x).not_()"),
    ("info['a'] is None", 10, "the `is` operator is not supported", "use =="),
    ("info['a'] is not None", 10, "the `is not` operator is not supported", "use !="),
    ("lambda: 1", 0, "a `lambda` prefix takes exactly one parameter", ""),
    ("lambda info: lambda info: 1", 13, "a `lambda` is only allowed as the one prefix", ""),
    ("r.expr(lambda x: x)", 7, "a `lambda` is only allowed as the one prefix", ""),
    ("lambda page: page['a']", 7, "the lambda's parameter must be one of: info", ""),
    ("b'abc'", 0, "bytes literals are not JSON values", ""),
    ("2j", 0, "complex numbers are not JSON values", ""),
    ("...", 0, "`...` (Ellipsis) are not JSON values", ""),
    ("null", 0, "`null` is not allowed in an expression (names: info, r)", "write None"),
    ("true", 0, "`true` is not allowed in an expression (names: info, r)", "write True"),
    ("info['a'] + row", 12, "`row` is not allowed in an expression (names: info, r)", ""),
    (
        "info['a']()",
        0,
        "only r.<function>(...) and .<method>(...) from the table can be called",
        "",
    ),
    ("info()", 0, "only r.<function>(...) and .<method>(...) from the table can be called", ""),
    ("len(info)", 0, "`len` is not allowed in an expression (names: info, r)", ""),
    ("r", 0, "`r` is only usable as r.<function>(...)", ""),
    ("{1: 'a'}", 1, "object keys must be strings", ""),
    ("{'a': 1, 'a': 2}", 9, "duplicate key `a` in object literal", ""),
    ("info['a'].default(1, 2)", 9, "`.default()` takes 1 argument (got 2)", ""),
    ("r.expr()", 1, "`r.expr()` takes 1 argument (got 0)", ""),
    ("info['a'].slice()", 9, "`.slice()` takes 1 to 2 arguments (got 0)", ""),
    ("info['a'].add()", 9, "`.add()` takes at least 1 argument (got 0)", ""),
    ("r.branch(1, 2, 3, 4)", 1, "`r.branch()` takes an odd number of arguments (got 4)", ""),
    ("info['a'].split(sep=',', sep=',')", 25, "`.split()` got two values for `sep`", ""),
    ("info['a'] +", 11, "invalid syntax: the expression ends too early", ""),
]


@pytest.mark.parametrize(
    ("source", "column", "feature", "hint"), UNSUPPORTED, ids=[case[0] for case in UNSUPPORTED]
)
def test_unsupported(source: str, column: int, feature: str, hint: str) -> None:
    with pytest.raises(errors.ExpressionSyntaxError) as caught:
        compile_expression(source, path="streams[1].page")
    error = caught.value
    message = str(error)
    assert message.startswith("streams[1].page: ")
    assert feature in message
    assert hint in message
    assert error.column == column, message
    lines = message.split("\n")
    assert lines[1] == "    " + source
    assert lines[2].startswith(" " * (4 + column) + "^")
    assert error.expression == source
    assert isinstance(error, errors.ConfigError)


def test_every_rejection_says_what_is_allowed() -> None:
    for source, *_ in UNSUPPORTED:
        with pytest.raises(errors.ExpressionSyntaxError) as caught:
            compile_expression(source, path="p")
        if not caught.value.detail.split("\n")[0].startswith("invalid syntax"):
            assert caught.value.allowed, source
