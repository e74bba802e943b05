r"""``.match()``: a linear-time regex matcher (a Pike VM) over ``re``'s own parser output.

Why not Python's ``re``: it backtracks. Measured on this project's limits,
``(\w+)=(\d+)$`` takes 0.7 s on 10 kB of text and ``a*a*a*b`` nearly 1 s on 300
characters; nested-quantifier heuristics do not catch the polynomial cases. So the pattern
is parsed by ``re``'s parser (one grammar, one set of error messages), compiled here into
a small program, and run by a Pike VM, like RE2, which RethinkDB itself uses: every
thread advances one character at a time, at most one thread per instruction, so the time
is linear in the input. A step budget bounds it in absolute terms. Features RE2 lacks are
rejected (backreferences, lookaround, conditionals, atomic groups, possessive
quantifiers).

Why not the third-party ``re2``/``regex`` modules: a compiled dependency for one method,
and ``regex`` backtracks too.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import re
import sys
import typing as t

from tap_rhttp import errors
from tap_rhttp.expr.values import (
    JSON,
    MAX_MATCH_INPUT,
    MAX_REGEX_LENGTH,
    MAX_REGEX_PROGRAM,
    MAX_REGEX_STEPS,
    _build_array,
    _build_object,
    _build_strings,
    _key_text,
    _regex_steps_left,
    _spend_regex,
)

if t.TYPE_CHECKING:
    from collections.abc import Callable

_MAX_REGEX_NESTING = 32

_sre: t.Any = importlib.import_module("re._parser" if sys.version_info >= (3, 11) else "sre_parse")
_MISSING_OPCODE = object()


def _opcode(name: str) -> t.Any:
    return getattr(_sre, name, _MISSING_OPCODE)


_OP_CHAR, _OP_SPLIT, _OP_JMP, _OP_SAVE, _OP_ASSERT, _OP_MATCH = range(6)
_REGEX_UNSUPPORTED = {
    "GROUPREF": "backreferences",
    "GROUPREF_EXISTS": "conditional groups",
    "ASSERT": "lookaround assertions",
    "ASSERT_NOT": "lookaround assertions",
    "ATOMIC_GROUP": "atomic groups",
    "POSSESSIVE_REPEAT": "possessive quantifiers",
}


class _RegexError(Exception):
    """A pattern that cannot be used; turned into ReQL's ``Error in regexp`` message."""


# What the matcher charges to MAX_REGEX_STEPS, in steps, so that a step stays about the
# same amount of work whatever the pattern (measured: well under a microsecond each).
_COMPILE_STEPS = 4  # per instruction and per pattern character, on every call (the same
#                     whether or not the program came from the cache: budgets are exact)
_ASSERT_STEPS = 2  # `^ $ \b \B`: a call that looks at one or two characters
_SAVE_SLOTS_PER_STEP = 8  # a capture copies every slot: a step per 8 slots, at least one


@dataclasses.dataclass(frozen=True)
class _Program:
    code: tuple[tuple[t.Any, ...], ...]
    groups: int  # capturing groups, not counting the whole match
    first: str | None  # a literal every match starts with, to skip ahead quickly

    @property
    def save_steps(self) -> int:
        """Steps one capture costs: it copies all ``2 * groups + 2`` slots."""
        return 1 + (2 * self.groups + 2) // _SAVE_SLOTS_PER_STEP


def _is_word(char: str, ascii_only: bool) -> bool:
    if ascii_only:
        return char.isascii() and (char.isalnum() or char == "_")
    return char.isalnum() or char == "_"


_ASCII_WORD = frozenset("0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _category_test(category: t.Any, ascii_only: bool) -> Callable[[str], bool]:
    """A test for ``\\d \\s \\w`` (or their negations), in C where Python has one."""
    name = str(category)
    negate = "_NOT_" in name
    base: Callable[[str], bool]
    if name.endswith("DIGIT"):
        base = "0123456789".__contains__ if ascii_only else str.isdecimal
    elif name.endswith("SPACE"):
        base = " \t\n\r\f\v".__contains__ if ascii_only else str.isspace
    elif name.endswith("WORD"):
        base = _ASCII_WORD.__contains__ if ascii_only else _is_unicode_word
    else:
        raise _RegexError(f"unsupported character category {name}")
    if negate:
        return lambda c: not base(c)
    return base


def _is_unicode_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _case_variants(char: str, ignore_case: bool) -> tuple[str, ...]:
    if not ignore_case:
        return (char,)
    return tuple({char, char.lower(), char.upper()})


def _class_test(items: list[t.Any], flags: int) -> tuple[Callable[[str], bool], int]:
    """A test for ``[...]``, and the steps one call costs (it loops over ranges)."""
    ignore_case = bool(flags & re.IGNORECASE)
    ascii_only = bool(flags & re.ASCII)
    negate = False
    literals: set[str] = set()
    ranges: list[tuple[str, str]] = []
    categories: list[Callable[[str], bool]] = []
    for op, arg in items:
        if op is _opcode("NEGATE"):
            negate = True
        elif op is _opcode("LITERAL"):
            literals.add(chr(arg))
        elif op is _opcode("RANGE"):
            ranges.append((chr(arg[0]), chr(arg[1])))
        elif op is _opcode("CATEGORY"):
            categories.append(_category_test(arg, ascii_only))
        else:
            raise _RegexError(f"unsupported character class item {op}")

    # Plain loops, not any(...): this runs per character per thread, and a generator
    # costs more than the few comparisons it would replace.
    def in_ranges(char: str) -> bool:
        for low, high in ranges:  # noqa: SIM110
            if low <= char <= high:
                return True
        return False

    def general(char: str) -> bool:
        if ignore_case:
            for variant in _case_variants(char, ignore_case):
                if variant in literals or in_ranges(variant):
                    return True
        elif char in literals or in_ranges(char):
            return True
        for category in categories:  # noqa: SIM110
            if category(char):
                return True
        return False

    steps = 1 + (len(ranges) * (3 if ignore_case else 1) + len(categories)) // 4
    test: Callable[[str], bool] = general
    if not ignore_case and not ranges and not (literals and categories):
        # the common shapes, [abc] and \\w, tested in one call
        if not categories:
            test = literals.__contains__
        elif len(categories) == 1:
            test = categories[0]
    if negate:
        positive = test
        return (lambda c: not positive(c)), steps
    return test, steps


class _RegexCompiler:
    def __init__(self) -> None:
        self.code: list[tuple[t.Any, ...]] = []
        self.groups = 0
        self.classes: dict[tuple[int, int], tuple[Callable[[str], bool], int]] = {}

    def emit(self, instruction: tuple[t.Any, ...]) -> int:
        if len(self.code) >= MAX_REGEX_PROGRAM:
            raise _too_big()
        self.code.append(instruction)
        return len(self.code) - 1

    def char(self, test: Callable[[str], bool], literal: str | None = None, steps: int = 1) -> None:
        self.emit((_OP_CHAR, test, literal, steps))

    def sequence(self, items: t.Any, flags: int) -> None:
        for op, arg in items:
            self.item(op, arg, flags)

    def item(self, op: t.Any, arg: t.Any, flags: int) -> None:
        ignore_case = bool(flags & re.IGNORECASE)
        if op is _opcode("LITERAL") or op is _opcode("NOT_LITERAL"):
            variants = frozenset(_case_variants(chr(arg), ignore_case))
            if op is _opcode("LITERAL"):
                literal = chr(arg) if not ignore_case else None
                self.char(lambda c: c in variants, literal)
            else:
                self.char(lambda c: c not in variants)
        elif op is _opcode("ANY"):
            if flags & re.DOTALL:
                self.char(lambda c: True)
            else:
                self.char(lambda c: c != "\n")
        elif op is _opcode("IN"):
            key = (id(arg), flags)  # a repeat compiles the same class many times: build it once
            if key not in self.classes:
                self.classes[key] = _class_test(arg, flags)
            test, steps = self.classes[key]
            self.char(test, None, steps)
        elif op is _opcode("AT"):
            self.emit((_OP_ASSERT, _assertion(str(arg), flags)))
        elif op is _opcode("BRANCH"):
            self.branch(arg[1], flags)
        elif op is _opcode("SUBPATTERN"):
            group, add_flags, del_flags, pattern = arg
            inner = (flags | add_flags) & ~del_flags
            if group is None:
                self.sequence(pattern, inner)
            else:
                self.groups = max(self.groups, group)
                self.emit((_OP_SAVE, 2 * group))
                self.sequence(pattern, inner)
                self.emit((_OP_SAVE, 2 * group + 1))
        elif op is _opcode("MAX_REPEAT") or op is _opcode("MIN_REPEAT"):
            low, high, pattern = arg
            self.repeat(low, high, pattern, flags, greedy=op is _opcode("MAX_REPEAT"))
        else:
            feature = next(
                (text for name, text in _REGEX_UNSUPPORTED.items() if op is _opcode(name)),
                str(op),
            )
            raise _RegexError(f"{feature} are not supported (as in RE2, which ReQL uses)")

    def branch(self, alternatives: list[t.Any], flags: int) -> None:
        jumps = []
        for index, alternative in enumerate(alternatives):
            if index < len(alternatives) - 1:
                split = self.emit((_OP_SPLIT, None, None))
                self.sequence(alternative, flags)
                jumps.append(self.emit((_OP_JMP, None)))
                self.code[split] = (_OP_SPLIT, split + 1, len(self.code))
            else:
                self.sequence(alternative, flags)
        for jump in jumps:
            self.code[jump] = (_OP_JMP, len(self.code))

    def repeat(self, low: int, high: int, pattern: t.Any, flags: int, *, greedy: bool) -> None:
        for _ in range(low):
            self.sequence(pattern, flags)
        if high == _sre.MAXREPEAT:
            # The loop ends in SPLIT(loop, exit) rather than JMP(loop): when an iteration
            # matched nothing, `loop` is already visited at this position, and the thread
            # still leaves with its captures (Python gives `(a*)*b` on "b" group 1 = "").
            split = self.emit((_OP_SPLIT, None, None))
            self.sequence(pattern, flags)
            back = self.emit((_OP_SPLIT, None, None))
            after = len(self.code)
            self.code[back] = (_OP_SPLIT, split, after) if greedy else (_OP_SPLIT, after, split)
            self.code[split] = (
                (_OP_SPLIT, split + 1, after) if greedy else (_OP_SPLIT, after, split + 1)
            )
            return
        holes = []
        for _ in range(high - low):
            holes.append(self.emit((_OP_SPLIT, None, None)))
            self.sequence(pattern, flags)
        after = len(self.code)
        for hole in holes:
            self.code[hole] = (
                (_OP_SPLIT, hole + 1, after) if greedy else (_OP_SPLIT, after, hole + 1)
            )


def _program_size(items: t.Any) -> int:
    """How many instructions ``items`` compiles to, counted before anything is expanded.

    A repeat multiplies its body, and nested repeats multiply again, so a short pattern
    can ask for billions (``(?:(?:a{1000}){1000}){1000}``); counting first refuses it at
    once. Every iteration counts at least one instruction, even of an empty group, so
    ``(?:){4294967294}`` is refused rather than looped over for nothing. Saturates just
    above ``MAX_REGEX_PROGRAM``.
    """
    total = 0
    for op, arg in items:
        if op is _opcode("BRANCH"):
            alternatives = arg[1]
            total += sum(_program_size(part) for part in alternatives)
            total += 2 * (len(alternatives) - 1)  # SPLIT and JMP around all but the last
        elif op is _opcode("SUBPATTERN"):
            total += _program_size(arg[3]) + (0 if arg[0] is None else 2)  # two SAVEs
        elif op is _opcode("MAX_REPEAT") or op is _opcode("MIN_REPEAT"):
            low, high, pattern = arg
            body = max(_program_size(pattern), 1)
            if high == _sre.MAXREPEAT:
                total += (low + 1) * body + 2
            else:
                total += low * body + (high - low) * (body + 1)
        else:
            total += 1
        if total > MAX_REGEX_PROGRAM:
            return MAX_REGEX_PROGRAM + 1
    return total


def _too_big() -> _RegexError:
    return _RegexError(
        f"the pattern compiles to more than {MAX_REGEX_PROGRAM} instructions "
        "(MAX_REGEX_PROGRAM); use smaller repeat counts"
    )


def _regex_nesting(pattern: str) -> int:
    """Bracket depth of a pattern, roughly (escapes and classes skipped): guards re's parser."""
    depth = deepest = 0
    index = 0
    in_class = False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            if pattern[index + 1 : index + 2] == "]":
                index += 1
        elif char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
        index += 1
    return deepest


@functools.lru_cache(maxsize=128)
def _compile_regex(pattern: str) -> _Program:
    if _regex_nesting(pattern) > _MAX_REGEX_NESTING:
        raise _RegexError(f"groups nest more than {_MAX_REGEX_NESTING} deep")
    try:
        parsed = _sre.parse(pattern, 0)
    except re.error as exc:
        raise _RegexError(str(exc)) from None
    except (OverflowError, RecursionError, ValueError) as exc:
        raise _RegexError(str(exc) or type(exc).__name__) from None
    flags = parsed.state.flags
    if flags & (re.LOCALE | re.DEBUG):
        raise _RegexError("the LOCALE and DEBUG flags are not supported")
    if _program_size(parsed) + 3 > MAX_REGEX_PROGRAM:  # with SAVE 0, SAVE 1 and MATCH
        raise _too_big()
    compiler = _RegexCompiler()
    compiler.emit((_OP_SAVE, 0))
    compiler.sequence(parsed, flags)
    compiler.emit((_OP_SAVE, 1))
    compiler.emit((_OP_MATCH,))
    first = None
    for instruction in compiler.code:
        if instruction[0] == _OP_SAVE:
            continue
        if instruction[0] == _OP_CHAR:
            first = instruction[2]
        break
    return _Program(tuple(compiler.code), compiler.groups, first)


def _assertion(kind: str, flags: int) -> Callable[[str, int], bool]:
    """A test of ``^ $ \\A \\Z \\b \\B`` at a position, chosen once when compiling."""
    multiline = bool(flags & re.MULTILINE)
    ascii_only = bool(flags & re.ASCII)
    if kind == "AT_BEGINNING":
        if multiline:
            return lambda text, pos: pos == 0 or text[pos - 1] == "\n"
        return lambda text, pos: pos == 0
    if kind == "AT_BEGINNING_STRING":
        return lambda text, pos: pos == 0
    if kind == "AT_END":
        if multiline:
            return lambda text, pos: pos == len(text) or text[pos] == "\n"
        return lambda text, pos: pos == len(text) or (pos == len(text) - 1 and text[pos] == "\n")
    if kind == "AT_END_STRING":
        return lambda text, pos: pos == len(text)
    if kind in ("AT_BOUNDARY", "AT_NON_BOUNDARY"):
        boundary = kind == "AT_BOUNDARY"

        def test(text: str, pos: int) -> bool:
            before = pos > 0 and _is_word(text[pos - 1], ascii_only)
            after = pos < len(text) and _is_word(text[pos], ascii_only)
            return (before != after) == boundary

        return test
    raise _RegexError(f"unsupported assertion {kind}")


def _gave_up() -> errors.ExpressionError:
    return errors.ExpressionError(
        f"`match` gave up: the expression's matches need more than {MAX_REGEX_STEPS} "
        "steps (MAX_REGEX_STEPS) on this input."
    )


def _run_regex(
    program: _Program, text: str, budget: int
) -> tuple[tuple[int | None, ...] | None, int]:
    """Leftmost-first search, in time linear in ``len(text)`` (Pike VM with captures).

    Returns the captures of the match (or None) and the steps taken; raises once the
    steps pass ``budget``. Steps count the real work: every instruction visited while
    following a thread (a capture by the slots it copies, an assertion twice), and every
    thread tested against every character; the count is checked at every position, also
    those where no thread survives, so a pattern of assertions and empty groups that
    never consumes a character cannot run on unchecked.
    """
    code = program.code
    marks = [-1] * len(code)
    steps = len(code)
    save_steps = program.save_steps
    size = len(text)
    no_captures: tuple[int | None, ...] = (None,) * (2 * program.groups + 2)
    matched: tuple[int | None, ...] | None = None

    def add(
        threads: list[tuple[int, tuple[int | None, ...]]],
        pc: int,
        pos: int,
        captures: tuple[int | None, ...],
    ) -> int:
        cost = 0
        stack = [(pc, captures)]
        while stack:
            pc, captures = stack.pop()
            if marks[pc] == pos:
                continue
            marks[pc] = pos
            instruction = code[pc]
            kind = instruction[0]
            if kind == _OP_JMP:
                cost += 1
                stack.append((instruction[1], captures))
            elif kind == _OP_SPLIT:
                cost += 1
                stack.append((instruction[2], captures))
                stack.append((instruction[1], captures))
            elif kind == _OP_SAVE:
                cost += save_steps
                slot = instruction[1]
                stack.append((pc + 1, (*captures[:slot], pos, *captures[slot + 1 :])))
            elif kind == _OP_ASSERT:
                cost += _ASSERT_STEPS
                if instruction[1](text, pos):
                    stack.append((pc + 1, captures))
            else:
                cost += 1
                threads.append((pc, captures))
        return cost

    threads: list[tuple[int, tuple[int | None, ...]]] = []
    pos = 0
    while pos <= size:
        if matched is None:
            if not threads and program.first is not None:
                pos = text.find(program.first, pos)
                if pos < 0:
                    break
            steps += add(threads, 0, pos, no_captures)
            if steps > budget:
                raise _gave_up()
        if not threads:
            if matched is not None:
                break
            pos += 1
            continue
        char = text[pos] if pos < size else ""
        following: list[tuple[int, tuple[int | None, ...]]] = []
        for pc, captures in threads:
            instruction = code[pc]
            if instruction[0] == _OP_MATCH:
                matched = captures
                break  # lower-priority threads lose
            if char:
                steps += instruction[3]
                if instruction[1](char):
                    steps += add(following, pc + 1, pos + 1, captures)
        if steps > budget:
            raise _gave_up()
        threads = following
        pos += 1
    return matched, steps


def _match(text: str, regex: str) -> JSON:
    """ReQL's ``match``: null, or ``{str, start, end, groups}`` (offsets in characters).

    Spends from the evaluation's ``MAX_REGEX_STEPS``: compiling (charged on every call,
    cached or not, so that whether an evaluation fits never depends on what ran before)
    and matching; and builds the result within ``MAX_EVALUATION_BYTES``.
    """
    if len(regex) > MAX_REGEX_LENGTH:
        raise errors.ExpressionError(
            f"Error in regexp `{_key_text(regex)}`: the pattern is {len(regex)} characters long; "
            f"the limit is {MAX_REGEX_LENGTH} (MAX_REGEX_LENGTH)."
        )
    if len(text) > MAX_MATCH_INPUT:
        raise errors.ExpressionError(
            f"Cannot match against a string of {len(text)} characters: "
            f"the limit is {MAX_MATCH_INPUT} (MAX_MATCH_INPUT)."
        )
    _spend_regex(_COMPILE_STEPS * len(regex))
    try:
        program = _compile_regex(regex)
    except _RegexError as exc:
        raise errors.ExpressionError(f"Error in regexp `{_key_text(regex)}`: {exc}.") from None
    _spend_regex(_COMPILE_STEPS * len(program.code))
    found, steps = _run_regex(program, text, _regex_steps_left())
    _spend_regex(steps)
    if found is None:
        return None
    spans = [(found[2 * group], found[2 * group + 1]) for group in range(program.groups + 1)]
    matched = [(low, high) for low, high in spans if low is not None and high is not None]
    _build_strings(sum(high - low for low, high in matched), len(matched), "`match`")
    _build_object(4 + 3 * len(matched), "`match`")
    _build_array(program.groups, "`match`")
    (start, end), groups = matched[0], spans[1:]
    return {
        "str": text[start:end],
        "start": start,
        "end": end,
        "groups": [
            None
            if low is None or high is None
            else {"str": text[low:high], "start": low, "end": high}
            for low, high in groups
        ],
    }
