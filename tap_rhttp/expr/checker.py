"""Loading: guards on the raw text, ``ast.parse``, and the allowlist check.

1. **Guards**, before the parser runs: the length, and an upper bound on the nesting the
   parser would recurse through, read from the tokens, so ``ast.parse`` never recurses
   deeply (CPython's parser can crash the interpreter on a few thousand brackets).
2. **Parse**: ``ast.parse(source, mode="eval")``: Python's own grammar, so a line pasted
   from the RethinkDB Python docs parses as it does there.
3. **Check**: an explicit, iterative walk over the tree against an allowlist. Every node
   type has a handler in ``_CHECKERS``; anything without one is rejected, with the
   expression printed and a caret under the offending column
   (:class:`~tap_rhttp.errors.ExpressionSyntaxError`). Method names are static, so an
   unknown method or a wrong argument count is a load-time error too (the arity comes
   from the one table in :mod:`tap_rhttp.expr.functions`).

Rejected alternatives:

- ``eval``/``exec``/``compile`` of the text: config text would run as Python; every
  sandbox built on a real interpreter has been escaped
  (``().__class__.__bases__[0].__subclasses__()``).
- simpleeval: it calls Python's operators and methods on real objects behind a denylist,
  and has Python's semantics, not ReQL's: ``0`` and ``''`` are falsy, a missing key is a
  ``KeyError``, there is no ``.default()``, and ``'a' * 10**10`` is only caught by its
  own heuristics. An allowlist over the AST has nothing to deny: nothing here ever
  touches a Python object's attributes, and a node type a later Python adds is rejected
  until someone allows it.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import keyword
import math
import re
import tokenize
import typing as t

from tap_rhttp import errors
from tap_rhttp.expr.functions import _METHODS, _R_FUNCTIONS, _bind_arguments, _Entry, _is_r
from tap_rhttp.expr.values import MAX_AST_DEPTH, MAX_EXPRESSION_LENGTH, MAX_INT, _excerpt

if t.TYPE_CHECKING:
    from collections.abc import Callable, Collection

_MAX_PARSE_NESTING = 4 * MAX_AST_DEPTH  # raw-text bound checked before ast.parse runs

_KEYWORD_OPERATORS = frozenset(keyword.kwlist) - {"None", "True", "False"}
_OPENING = frozenset("([{")
_CLOSING = frozenset(")]}")

_FEATURES: dict[type[ast.AST], str] = {
    ast.ListComp: "list comprehensions are",
    ast.SetComp: "set comprehensions are",
    ast.DictComp: "dict comprehensions are",
    ast.GeneratorExp: "generator expressions are",
    ast.Set: "set literals are",
    ast.Tuple: "tuples are",
    ast.NamedExpr: "the walrus operator `:=` is",
    ast.JoinedStr: "f-strings are",
    ast.FormattedValue: "f-strings are",
    ast.Await: "`await` is",
    ast.Yield: "`yield` is",
    ast.YieldFrom: "`yield from` is",
    ast.Starred: "star-args `*x` are",
    ast.Slice: "slices `x[a:b]` are",
    ast.Lambda: "a `lambda` is",
}

_FEATURE_HINTS: dict[type[ast.AST], str] = {
    ast.Tuple: "; use a list [...]",
    ast.JoinedStr: "; use + and .coerce_to('string')",
    ast.Slice: "; use .slice(a, b)",
    ast.Set: "; use a list [...]",
}

_REJECTED_OPERATORS: dict[type[ast.AST], tuple[str, str]] = {
    ast.Pow: ("**", "the `**` operator is not supported (ReQL has no power operator)"),
    ast.FloorDiv: ("//", "the `//` operator is not supported; use (a / b).floor()"),
    ast.LShift: ("<<", "the `<<` operator is not supported"),
    ast.RShift: (">>", "the `>>` operator is not supported"),
    ast.BitXor: ("^", "the `^` operator is not supported"),
    ast.MatMult: ("@", "the `@` operator is not supported"),
    ast.In: ("in", "the `in` operator is not supported; use .contains(x)"),
    ast.NotIn: ("not", "the `not in` operator is not supported; use .contains(x).not_()"),
    ast.Is: ("is", "the `is` operator is not supported; use =="),
    ast.IsNot: ("is", "the `is not` operator is not supported; use !="),
}

_ALLOWED_SYNTAX = (
    "JSON literals; the names {names}; x['key'] and x[0]; + - * / %; comparisons; "
    "and, or, not; a if c else b; r.<function>(...) and .<method>(...) from the method table"
)


def _method_list() -> str:
    return ", ".join(f".{name}" for name in sorted(_METHODS))


def _r_function_list() -> str:
    return ", ".join(f"r.{name}" for name in sorted(_R_FUNCTIONS))


class _Source:
    """Maps ast positions (line, UTF-8 byte column) to columns of the one-line display."""

    def __init__(self, text: str, offset: int) -> None:
        self.text = text
        self.offset = offset  # characters stripped from the front before parsing
        self.lines: list[str] = []
        self.starts: list[int] = []
        position = 0
        for match in re.finditer(r"[^\r\n]*(?:\r\n|\r|\n|$)", text):
            if match.start() == len(text) and self.lines:
                break
            self.lines.append(match.group())
            self.starts.append(position)
            position = match.end()

    def column(self, lineno: int | None, col_offset: int | None, *, chars: bool = False) -> int:
        if lineno is None or col_offset is None or not self.lines:
            return self.offset
        line_index = min(max(lineno, 1), len(self.lines)) - 1
        line = self.lines[line_index]
        if chars:
            within = max(col_offset, 0)
        else:
            within = len(line.encode("utf-8")[: max(col_offset, 0)].decode("utf-8", "replace"))
        return self.offset + self.starts[line_index] + within

    def start(self, node: ast.AST) -> int:
        return self.column(getattr(node, "lineno", None), getattr(node, "col_offset", None))

    def end(self, node: ast.AST) -> int:
        return self.column(getattr(node, "end_lineno", None), getattr(node, "end_col_offset", None))

    def find(self, token: str, low: int, high: int) -> int | None:
        """Column of ``token`` in the display between two columns, if it is there."""
        segment = self.text[max(low - self.offset, 0) : max(high - self.offset, 0)]
        pattern = rf"\b{re.escape(token)}\b" if token.isalpha() else re.escape(token)
        found = re.search(pattern, segment)
        return None if found is None else max(low, self.offset) + found.start()


class _Rejected(Exception):
    def __init__(self, column: int, message: str, allowed: str | None) -> None:
        super().__init__(message)
        self.column = column
        self.message = message
        self.allowed = allowed


class _Checker:
    """The allowlist: one handler per node type; anything else is rejected."""

    def __init__(self, source: _Source, names: frozenset[str]) -> None:
        self.source = source
        self.names = names
        self.name_list = ", ".join([*sorted(names), "r"])
        self.allowed = _ALLOWED_SYNTAX.format(names=", ".join(sorted(names)) or "(none)")
        self.parents: dict[int, ast.AST] = {}
        self.occurrences: list[ast.Name] = []
        self.calls_now = False

    def rejection(self, column: int, message: str, allowed: str | None = None) -> _Rejected:
        return _Rejected(column, message, self.allowed if allowed is None else allowed)

    def check(self, root: ast.expr) -> ast.expr:
        body = self.lambda_prefix(root)
        stack: list[tuple[ast.AST, int]] = [(body, 1)]
        while stack:
            node, depth = stack.pop()
            if depth > MAX_AST_DEPTH:
                raise self.rejection(
                    self.source.start(node),
                    f"the expression nests more than {MAX_AST_DEPTH} levels deep (MAX_AST_DEPTH)",
                    "simpler expressions; split long chains of + into .add(a, b, c)",
                )
            handler = _CHECKERS.get(type(node))
            if handler is None:
                self.reject_feature(node)
            children = handler(self, node)
            for child in reversed(children):  # report the leftmost problem first
                self.parents[id(child)] = node
                stack.append((child, depth + 1))
        return body

    def lambda_prefix(self, root: ast.expr) -> ast.expr:
        if not isinstance(root, ast.Lambda):
            return root
        args = root.args
        params = [*args.posonlyargs, *args.args]
        column = self.source.start(root)
        choices = ", ".join(sorted(self.names)) or "(none)"
        allowed = f"lambda <name>: ... with <name> one of: {choices}"
        if (
            len(params) != 1
            or args.vararg
            or args.kwarg
            or args.kwonlyargs
            or args.defaults
            or args.posonlyargs
        ):
            raise self.rejection(column, "a `lambda` prefix takes exactly one parameter", allowed)
        param = params[0]
        if param.arg not in self.names:
            raise self.rejection(
                self.source.start(param),
                f"the lambda's parameter must be one of: {choices}",
                allowed,
            )
        return root.body

    def reject_feature(self, node: ast.AST) -> t.NoReturn:
        feature = _FEATURES.get(type(node), f"`{type(node).__name__}` nodes are")
        hint = _FEATURE_HINTS.get(type(node), "")
        if isinstance(node, ast.Lambda):
            raise self.rejection(
                self.source.start(node),
                "a `lambda` is only allowed as the one prefix `lambda info: ...`",
            )
        raise self.rejection(
            self.source.start(node), f"{feature} not supported in an expression{hint}"
        )

    # -- handlers: each returns the children to check next ----------------------------

    def constant(self, node: ast.Constant) -> list[ast.AST]:
        value = node.value
        column = self.source.start(node)
        if isinstance(value, bool) or value is None or isinstance(value, str):
            return []
        if isinstance(value, int):
            if abs(value) > MAX_INT:
                raise self.rejection(column, f"the integer {value} is larger than 2**53 (MAX_INT)")
            return []
        if isinstance(value, float):
            if not math.isfinite(value):
                raise self.rejection(column, f"the number {value!r} is not finite")
            return []
        kinds = {bytes: "bytes literals", complex: "complex numbers", type(...): "`...` (Ellipsis)"}
        kind = kinds.get(type(value), f"{type(value).__name__} literals")
        raise self.rejection(column, f"{kind} are not JSON values")

    def name(self, node: ast.Name) -> list[ast.AST]:
        column = self.source.start(node)
        if node.id in self.names:
            self.occurrences.append(node)
            return []
        if node.id == "r":
            raise self.rejection(
                column,
                "`r` is only usable as r.<function>(...)",
                f"r functions: {_r_function_list()}",
            )
        hints = {"null": "None", "true": "True", "false": "False"}
        if node.id in hints:
            raise self.rejection(
                column,
                f"`{node.id}` is not allowed in an expression (names: {self.name_list}); "
                f"write {hints[node.id]}",
                f"names: {self.name_list}",
            )
        raise self.rejection(
            column,
            f"`{node.id}` is not allowed in an expression (names: {self.name_list})",
            f"names: {self.name_list}",
        )

    def attribute_column(self, node: ast.Attribute) -> int:
        name_start = self.source.end(node) - len(node.attr)
        index = name_start - 1 - self.source.offset
        while index >= 0 and self.source.text[index] in " \t\r\n\\":
            index -= 1
        if index >= 0 and self.source.text[index] == ".":
            return index + self.source.offset
        return name_start

    def attribute(self, node: ast.Attribute) -> list[ast.AST]:
        while isinstance(node.value, ast.Attribute):  # report the leftmost `.x` of a chain
            node = node.value
        column = self.attribute_column(node)
        self.check_attribute_name(node, column)
        if _is_r(node.value):
            raise self.rejection(
                column,
                f"`r.{node.attr}` must be called: r.{node.attr}(...)",
                f"r functions: {_r_function_list()}",
            )
        segment = ast.get_source_segment(self.source.text, node.value) or "x"
        target = segment if len(segment) <= 40 and "\n" not in segment else "x"
        raise self.rejection(
            column,
            f"attribute access `.{node.attr}` is not allowed; use {target}['{node.attr}']",
            "x['field'] to read a field, and .method(...) calls from the method table",
        )

    def check_attribute_name(self, node: ast.Attribute, column: int) -> None:
        if node.attr.startswith("_"):
            raise self.rejection(
                column,
                f"`.{node.attr}` is not allowed: names that start with `_` are never accessible",
                "x['field'] to read a field, and .method(...) calls from the method table",
            )

    def subscript(self, node: ast.Subscript) -> list[ast.AST]:
        return [node.value, node.slice]

    def list_(self, node: ast.List) -> list[ast.AST]:
        return list(node.elts)

    def dict_(self, node: ast.Dict) -> list[ast.AST]:
        children: list[ast.AST] = []
        seen: set[str] = set()
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None:
                value_start = self.source.start(value) - self.source.offset
                stars = self.source.text.rfind("**", 0, max(value_start, 0))
                raise self.rejection(
                    self.source.offset + max(stars, 0),
                    "dict unpacking `**x` is not supported; use .merge(x)",
                )
            if isinstance(key, ast.Constant):
                if not isinstance(key.value, str):
                    raise self.rejection(self.source.start(key), "object keys must be strings")
                if key.value in seen:
                    raise self.rejection(
                        self.source.start(key), f"duplicate key `{key.value}` in object literal"
                    )
                seen.add(key.value)
            children.extend((key, value))
        return children

    def operator(self, node: ast.AST, op: ast.AST, left: ast.AST, right: ast.AST) -> None:
        rejected = _REJECTED_OPERATORS.get(type(op))
        if rejected is None:
            return
        token, message = rejected
        column = self.source.find(token, self.source.end(left), self.source.start(right))
        raise self.rejection(self.source.start(node) if column is None else column, message)

    def binop(self, node: ast.BinOp) -> list[ast.AST]:
        self.operator(node, node.op, node.left, node.right)
        return [node.left, node.right]

    def unaryop(self, node: ast.UnaryOp) -> list[ast.AST]:
        return [node.operand]

    def boolop(self, node: ast.BoolOp) -> list[ast.AST]:
        return list(node.values)

    def compare(self, node: ast.Compare) -> list[ast.AST]:
        left: ast.AST = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            self.operator(node, op, left, right)
            left = right
        return [node.left, *node.comparators]

    def ifexp(self, node: ast.IfExp) -> list[ast.AST]:
        return [node.body, node.test, node.orelse]

    def namedexpr(self, node: ast.NamedExpr) -> list[ast.AST]:
        column = self.source.find(":=", self.source.end(node.target), self.source.start(node.value))
        raise self.rejection(
            self.source.start(node) if column is None else column,
            "the walrus operator `:=` is not supported in an expression",
        )

    def call(self, node: ast.Call) -> list[ast.AST]:
        func = node.func
        if not isinstance(func, ast.Attribute):
            self.call_target(func)
        column = self.attribute_column(func)
        self.check_attribute_name(func, column)
        if _is_r(func.value):
            entry = _R_FUNCTIONS.get(func.attr)
            label = f"r.{func.attr}()"
            if entry is None:
                listing = f"supported r functions: {_r_function_list()}"
                raise self.rejection(
                    column, f"`r.{func.attr}` is not supported; {listing}", listing
                )
            children: list[ast.AST] = []
            self.calls_now = self.calls_now or func.attr == "now"
        else:
            entry = _METHODS.get(func.attr)
            label = f".{func.attr}()"
            if entry is None:
                listing = f"supported methods: {_method_list()}"
                raise self.rejection(
                    column, f"method `.{func.attr}()` is not supported; {listing}", listing
                )
            children = [func.value]
        self.check_arguments(node, entry, label, column)
        children.extend(node.args)
        children.extend(kw.value for kw in node.keywords)
        return children

    def call_target(self, func: ast.expr) -> t.NoReturn:
        column = self.source.start(func)
        if isinstance(func, ast.Name) and func.id not in self.names and func.id != "r":
            self.name(func)  # raises: not an allowed name
        raise self.rejection(
            column,
            "only r.<function>(...) and .<method>(...) from the table can be called",
            f"r functions: {_r_function_list()}; methods: {_method_list()}",
        )

    def check_arguments(self, node: ast.Call, entry: _Entry, label: str, column: int) -> None:
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.rejection(self.source.start(arg), "star-args `*x` are not supported")
        given = set()
        for kw in node.keywords:
            kw_column = self.source.start(kw)
            if kw.arg is None:
                raise self.rejection(kw_column, "`**kwargs` is not supported")
            if not entry.keywords:
                raise self.rejection(kw_column, f"`{label}` takes no keyword arguments")
            if kw.arg not in entry.keywords:
                raise self.rejection(
                    kw_column,
                    f"`{label}` has no keyword `{kw.arg}` (keywords: {', '.join(entry.keywords)})",
                )
            if entry.keywords.index(kw.arg) < len(node.args) or kw.arg in given:
                raise self.rejection(kw_column, f"`{label}` got two values for `{kw.arg}`")
            given.add(kw.arg)
        count = len(_bind_arguments(node, entry)) if node.keywords else len(node.args)
        low, high = entry.min_args, entry.max_args
        if low <= count and (high is None or count <= high):
            if label == "r.branch()" and count % 2 == 0:
                raise self.rejection(
                    column, f"`r.branch()` takes an odd number of arguments (got {count})"
                )
            if entry.counts and count not in entry.counts:
                choices = " or ".join(str(n) for n in entry.counts)
                raise self.rejection(column, f"`{label}` takes {choices} arguments (got {count})")
            return
        if high is None:
            expected = f"at least {low}"
        elif low == high:
            expected = str(low)
        else:
            expected = f"{low} to {high}"
        plural = "" if expected in ("1", "at least 1") else "s"
        raise self.rejection(column, f"`{label}` takes {expected} argument{plural} (got {count})")


_CHECKERS: dict[type[ast.AST], Callable[[_Checker, t.Any], list[ast.AST]]] = {
    ast.Constant: _Checker.constant,
    ast.Name: _Checker.name,
    ast.Attribute: _Checker.attribute,
    ast.Subscript: _Checker.subscript,
    ast.List: _Checker.list_,
    ast.Dict: _Checker.dict_,
    ast.BinOp: _Checker.binop,
    ast.UnaryOp: _Checker.unaryop,
    ast.BoolOp: _Checker.boolop,
    ast.Compare: _Checker.compare,
    ast.IfExp: _Checker.ifexp,
    ast.Call: _Checker.call,
    ast.NamedExpr: _Checker.namedexpr,
}


def _nesting_bound(text: str) -> tuple[int, tuple[int, int]] | None:
    """An upper bound on how deep the parser would nest, read from tokens, without parsing.

    Every node on a path from the root to a leaf owns an operator, keyword or bracket
    token; the bound adds, for each open bracket, the tokens of the current comma-separated
    segment plus the deepest bracket closed inside it. Returns (bound, (line, column)) as
    soon as the bound passes the limit, or None when it stays under (or the text does not
    tokenize: the parser will then report it, cheaply).
    """
    frames: list[list[int]] = [[0, 0, 0]]  # [tokens in segment, deepest inner, best segment]
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.OP:
                if token.string in _OPENING:
                    frames[-1][0] += 1
                    frames.append([0, 0, 0])
                elif token.string in _CLOSING:
                    if len(frames) == 1:
                        return None
                    ops, inner, best = frames.pop()
                    frames[-1][1] = max(frames[-1][1], max(best, ops + inner) + 1)
                elif token.string == ",":
                    frame = frames[-1]
                    frame[2] = max(frame[2], frame[0] + frame[1])
                    frame[0] = frame[1] = 0
                else:
                    frames[-1][0] += 1
            elif token.type == tokenize.NAME and token.string in _KEYWORD_OPERATORS:
                frames[-1][0] += 1
            else:
                continue
            bound = sum(max(best, ops + inner) for ops, inner, best in frames) + len(frames)
            if bound > _MAX_PARSE_NESTING:
                return bound, token.start
    except (tokenize.TokenError, SyntaxError):
        return None
    return None


def _syntax_error(
    path: str, source: str, column: int, message: str, allowed: str | None = None
) -> errors.ExpressionSyntaxError:
    return errors.ExpressionSyntaxError(
        path, message, expression=source, column=column, allowed=allowed
    )


_PathKey: t.TypeAlias = "str | int"


def _constant_key(node: ast.AST) -> _PathKey | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int)):
        return None if isinstance(node.value, bool) else node.value
    return None


def _read_paths(checker: _Checker) -> dict[str, tuple[tuple[_PathKey, ...], ...]]:
    """For each name, the constant paths the expression reads under it (see ``reads``)."""
    found: dict[str, list[tuple[_PathKey, ...]]] = {}
    for occurrence in checker.occurrences:
        path: list[_PathKey] = []
        node: ast.AST = occurrence
        while True:
            parent = checker.parents.get(id(node))
            if isinstance(parent, ast.Subscript) and parent.value is node:
                key = _constant_key(parent.slice)
            elif (
                isinstance(parent, ast.Call)
                and isinstance(parent.func, ast.Attribute)
                and parent.func.value is node
                and parent.func.attr in ("get_field", "nth")
                and len(parent.args) == 1
            ):
                key = _constant_key(parent.args[0])
            else:
                key = None
            if parent is None or key is None:
                break
            path.append(key)
            node = parent
        found.setdefault(occurrence.id, []).append(tuple(path))
    return {name: tuple(paths) for name, paths in found.items()}


@dataclasses.dataclass(frozen=True)
class _Checked:
    """A tree that passed every check, with what it reads (see ``Expression.reads``)."""

    names: frozenset[str]
    body: ast.expr
    reads: dict[str, tuple[tuple[_PathKey, ...], ...]]
    calls_now: bool


def _check_source(source: str, *, path: str, names: Collection[str]) -> _Checked:
    """Guard, parse and check ``source`` (see :func:`tap_rhttp.expr.compile_expression`).

    Raises:
        ExpressionSyntaxError: the expression is not in the language.
        ValueError: one of ``names`` cannot be a name in an expression.
    """
    allowed_names = frozenset((names,) if isinstance(names, str) else names)
    for name in allowed_names:
        if not name.isidentifier() or keyword.iskeyword(name) or name == "r":
            raise ValueError(f"{name!r} cannot be an expression name")
    if not isinstance(source, str):
        raise _syntax_error(
            path,
            _excerpt(source, 60),
            0,
            f"an expression must be a string, not {type(source).__name__}",
        )
    if len(source) > MAX_EXPRESSION_LENGTH:
        shown = source[:60] + "..."
        raise _syntax_error(
            path,
            shown,
            60,
            f"the expression is {len(source)} characters long; "
            f"the limit is {MAX_EXPRESSION_LENGTH} (MAX_EXPRESSION_LENGTH)",
        )
    stripped = source.lstrip()
    info = _Source(stripped, len(source) - len(stripped))
    if not stripped.strip():
        raise _syntax_error(path, source, len(source), "the expression is empty")
    too_deep = _nesting_bound(stripped)
    if too_deep is not None:
        (line, col) = too_deep[1]
        raise _syntax_error(
            path,
            source,
            info.column(line, col, chars=True),
            f"the expression nests too deeply to parse (more than {_MAX_PARSE_NESTING} "
            "operators and brackets inside one another)",
        )
    try:
        tree = ast.parse(stripped, mode="eval")
    except SyntaxError as exc:
        reason = exc.msg
        if exc.lineno is None:
            column = 0
        elif not exc.offset:  # the parser ran out of text
            column = len(source.rstrip())
            if reason == "invalid syntax":
                reason = "the expression ends too early"
        else:
            column = info.column(exc.lineno, exc.offset - 1, chars=True)
        raise _syntax_error(path, source, column, f"invalid syntax: {reason}") from None
    except (RecursionError, MemoryError, ValueError) as exc:
        raise _syntax_error(
            path, source, 0, f"the expression cannot be parsed ({type(exc).__name__})"
        ) from None
    checker = _Checker(info, allowed_names)
    try:
        body = checker.check(tree.body)
    except _Rejected as rejected:
        raise _syntax_error(
            path, source, rejected.column, rejected.message, rejected.allowed
        ) from None
    return _Checked(
        names=allowed_names, body=body, reads=_read_paths(checker), calls_now=checker.calls_now
    )
