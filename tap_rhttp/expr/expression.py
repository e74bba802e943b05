"""The public face of the package: :func:`compile_expression` and :class:`Expression`.

Compiling runs :mod:`~tap_rhttp.expr.checker` once, when the config is loaded; the
:class:`Expression` it returns evaluates with :mod:`~tap_rhttp.expr.evaluator` as often as
needed, from any thread (each evaluation has its own budget, in a context variable).
"""

from __future__ import annotations

import typing as t

from tap_rhttp import errors
from tap_rhttp.expr import times
from tap_rhttp.expr.checker import _check_source, _PathKey
from tap_rhttp.expr.evaluator import _evaluate

if t.TYPE_CHECKING:
    import ast
    from collections.abc import Collection, Mapping

    from tap_rhttp.expr.times import Time
    from tap_rhttp.expr.values import JSON


def compile_expression(source: str, *, path: str, names: Collection[str] = ("info",)) -> Expression:
    """Parse and check an expression once, when the config is loaded.

    Args:
        source: the expression text, e.g. ``info['body']['meta']['next'].default(None)``;
            an optional ``lambda info:`` prefix is accepted.
        path: where the expression sits in the config, e.g. ``streams[0].page``; it starts
            every error message.
        names: the names the expression may read (besides ``r``); evaluation maps each to a
            JSON value.

    Returns:
        The checked :class:`Expression`.

    Raises:
        ExpressionSyntaxError: the expression is not in the language; the message prints it
            with a caret under ``column`` and says what is allowed.
    """
    checked = _check_source(source, path=path, names=names)
    return Expression(
        source=source,
        names=checked.names,
        body=checked.body,
        reads=checked.reads,
        calls_now=checked.calls_now,
    )


class _Timestamped(t.Protocol):
    """An aware ``datetime.datetime``, or anything else that says when it is."""

    def timestamp(self) -> float: ...

    def utcoffset(self) -> t.Any: ...


Instant: t.TypeAlias = "float | str | _Timestamped"
"""What ``Expression.evaluate(now=...)`` takes: epoch seconds, ISO 8601 text with a time
zone, or an aware ``datetime``."""


def _instant(now: Instant) -> Time:
    """The ``r.now()`` of an evaluation, in UTC as in ReQL, from the caller's instant."""
    if isinstance(now, bool):
        raise TypeError("now must be epoch seconds, ISO 8601 text or an aware datetime")
    try:
        if isinstance(now, (int, float)):
            return times.epoch_time(now)
        if isinstance(now, str):
            return times.in_timezone(times.parse_iso8601(now), "+00:00")
    except errors.ExpressionError as exc:
        raise ValueError(f"now={now!r}: {exc}") from None
    timestamp = getattr(now, "timestamp", None)
    utcoffset = getattr(now, "utcoffset", None)
    if callable(timestamp) and callable(utcoffset):
        if utcoffset() is None:
            raise ValueError("now must be an aware datetime: a naive one names no instant")
        return times.epoch_time(float(timestamp()))
    raise TypeError("now must be epoch seconds, ISO 8601 text or an aware datetime")


def _keys_may_meet(read: _PathKey, asked: _PathKey) -> bool:
    if isinstance(read, str) != isinstance(asked, str):
        return True  # a string key on an array reads into every element: keep it possible
    return read == asked


class Expression:
    """A checked expression, ready to evaluate any number of times (thread-safe).

    Build it with :func:`compile_expression`.

    Attributes:
        source: the expression text as written in the config.
        names: the names it may read (besides ``r``).
        calls_now: whether it calls ``r.now()``, so that its result depends on the
            ``now`` it is evaluated at.
    """

    __slots__ = ("_body", "_reads", "calls_now", "names", "source")

    def __init__(
        self,
        *,
        source: str,
        names: frozenset[str],
        body: ast.expr,
        reads: dict[str, tuple[tuple[_PathKey, ...], ...]],
        calls_now: bool = False,
    ) -> None:
        self.source = source
        self.names = names
        self.calls_now = calls_now
        self._body = body
        self._reads = reads

    def evaluate(self, env: Mapping[str, JSON], *, now: Instant | None = None) -> JSON:
        """Evaluate against JSON values; the values are never modified.

        Args:
            env: each name the expression reads, mapped to a JSON value, e.g.
                ``{"info": {"params": {...}, "header": {...}, "body": ...}}``.
            now: the instant ``r.now()`` returns: epoch seconds (``time.time()``), ISO
                8601 text with a time zone, or an aware ``datetime``. Pass the run's
                start to every evaluation of a run, so that a run is reproducible and a
                resumed run asks for the same window. None: the clock, read once per
                evaluation (every ``r.now()`` of one evaluation is the same instant).

        Returns:
            A JSON value (it may share parts with ``env``: copy before changing it).
            Times never leave the evaluator: a time in the result is its ISO 8601 text,
            as ``.to_iso8601()`` writes it.

        Raises:
            NonExistenceError: a missing field, an index out of bounds, or null where a
                value was needed, not absorbed by ``.default()``.
            ExpressionError: any other failure; the message is RethinkDB's where it has
                one. Callers add the request and the ``info`` it saw.
            TypeError, ValueError: ``now`` names no instant.
        """
        return _evaluate(self._body, env, None if now is None else _instant(now))

    def reads(self, name: str, *prefix: _PathKey) -> bool:
        """Could evaluation read ``env[name][prefix[0]][prefix[1]]...`` (or part of it)?

        Static and conservative: ``info['header']['link']['rel="next"']`` reads
        ``('header', 'link')`` but not ``('header', 'date')`` nor ``('body',)``; a computed
        subscript, or any use of a value other than a constant subscript (a method,
        ``r.expr(info)``, returning it), counts as reading everything under it.

        Args:
            name: one of the expression's names.
            *prefix: keys under it; none asks whether the name is used at all.

        Returns:
            False only when evaluation certainly does not touch that part of ``env``.
        """
        for path in self._reads.get(name, ()):
            common = min(len(path), len(prefix))
            if all(_keys_may_meet(path[i], prefix[i]) for i in range(common)):
                return True
        return False

    def __str__(self) -> str:
        return self.source

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Expression):
            return NotImplemented
        return (self.source, self.names) == (other.source, other.names)

    def __hash__(self) -> int:
        return hash((self.source, self.names))
