"""Page and template expressions: the Python spelling of ReQL, parsed and checked, never run.

RethinkDB's ``r.http`` takes ``page=lambda info: info['body']['meta']['next'].default(None)``:
a ReQL function that the server evaluates after each page. A tap's config is JSON, so the
same function reaches us as text. This package turns that text into an :class:`Expression`
once, when the config is loaded, and evaluates it against JSON values after each page
(``info = {params, header, body}``) and in ``{{ expr }}`` templates that see other names
(``item``, ``row``, ``bookmark``, ``config``, ``env``). No Python code from the config is
ever run: the text is parsed by ``ast``, checked against an allowlist and interpreted over
JSON values.

The language, its method table and its limits are documented in ``docs/expressions.md``.
Why ReQL's Python spelling and not jmespath or JSONPath: those are other languages than
the one the RethinkDB docs use, and have no arithmetic (``info['params']['page'] + 1``).

The modules split the work as jmespath splits its lexer, parser and visitor:

- :mod:`~tap_rhttp.expr.times`: ReQL's TIME pseudotype and its calendar;
- :mod:`~tap_rhttp.expr.values`: JSON values, ReQL type names, the limits, the budget;
- :mod:`~tap_rhttp.expr.operators`: ``+ - * / %``, comparisons, ``x[k]``;
- :mod:`~tap_rhttp.expr.regex`: the linear-time matcher behind ``.match()``;
- :mod:`~tap_rhttp.expr.functions`: the one table of methods and ``r.`` functions;
- :mod:`~tap_rhttp.expr.checker`: guards, ``ast.parse`` and the allowlist;
- :mod:`~tap_rhttp.expr.evaluator`: the dispatch table from node type to handler;
- :mod:`~tap_rhttp.expr.expression`: :func:`compile_expression` and :class:`Expression`.
"""

from __future__ import annotations

from tap_rhttp.expr.expression import Expression, compile_expression
from tap_rhttp.expr.values import (
    MAX_ARRAY_LENGTH,
    MAX_AST_DEPTH,
    MAX_EVALUATION_BYTES,
    MAX_EVALUATION_STEPS,
    MAX_EXPRESSION_LENGTH,
    MAX_INT,
    MAX_MATCH_INPUT,
    MAX_REGEX_LENGTH,
    MAX_REGEX_PROGRAM,
    MAX_REGEX_STEPS,
    MAX_STRING_LENGTH,
    reql_type_name,
)

__all__ = [
    "MAX_ARRAY_LENGTH",
    "MAX_AST_DEPTH",
    "MAX_EVALUATION_BYTES",
    "MAX_EVALUATION_STEPS",
    "MAX_EXPRESSION_LENGTH",
    "MAX_INT",
    "MAX_MATCH_INPUT",
    "MAX_REGEX_LENGTH",
    "MAX_REGEX_PROGRAM",
    "MAX_REGEX_STEPS",
    "MAX_STRING_LENGTH",
    "Expression",
    "compile_expression",
    "reql_type_name",
]
