"""Response rules: what a response means when its status alone does not say.

APIs signal errors in ways status codes do not: a 200 with ``{"error": "rate limited"}``,
a 404 that means "no data for this child", a 403 that means "slow down", a 400 with
"page token expired". A stream's ``response_rules`` is a list; each rule matches by
``status`` (codes, or a class such as ``"4xx"``) and/or ``when``, an expression of the
page-expression language over ``response = {status, header, body}``, and says what to do:

- ``retry``: a transient failure: retried with the backoff and ``Retry-After`` rules,
  counted against ``reattempts`` (and ``max_retry_seconds``);
- ``skip``: the response is an empty page and its chain ends there (counted, logged);
- ``fail``: the request fails with the rule's ``message``, in r.http's envelope;
- ``ok``: a success: the body is read as a page (a 404 read as an empty list, say).

The first rule that matches wins; when none matches, the response is handled as it
would be without rules (2xx a page, 408/425/429/5xx retried, other statuses fail).

``when`` sees ``response['status']`` (a number), ``response['header']`` (names lower-cased,
a repeated header keeps its last value, as ``info['header']`` but without parsing
``Link``) and ``response['body']``: the body parsed as JSON when it is JSON, else its text,
null when empty or larger than :data:`RULE_BODY_BYTES`. An expression that fails while it
is evaluated (a missing field, a body of another shape) does not match: ``response['body']
['error'] == 'rate limited'`` is enough, no ``.default()`` needed. Only the bytes a rule
needs are read: an error body at most :data:`RULE_BODY_BYTES` (plus one read), and a
success body only as the page itself is read.

Rejected: one rule per status in an object (``{"404": "skip"}``). Rules need an order
(a specific ``when`` before a catch-all ``status``) and more than a status to match on.
"""

from __future__ import annotations

import dataclasses
import logging
import typing as t

import orjson

from tap_rhttp.errors import ExpressionError

if t.TYPE_CHECKING:
    from tap_rhttp.expr import Expression
    from tap_rhttp.types import JSON

#: The actions a rule may take.
ACTIONS = ("retry", "skip", "fail", "ok")
#: The most bytes of a body that `when` sees (a larger body is null to it).
RULE_BODY_BYTES = 1 << 20

_LOGGER = logging.getLogger("tap-rhttp")


@dataclasses.dataclass(frozen=True)
class ResponseRule:
    """One checked rule of a stream's ``response_rules``.

    Attributes:
        path: where it is in the config (``streams[0].response_rules[1]``).
        statuses: the status codes it matches, or None for any.
        status_text: ``status`` as configured, for messages.
        when: the compiled ``when``, or None.
        action: one of :data:`ACTIONS`.
        message: the rule's ``message``, or None.
    """

    path: str
    action: str
    statuses: frozenset[int] | None = None
    status_text: str = ""
    when: Expression | None = dataclasses.field(default=None, compare=False)
    when_source: str | None = None
    message: str | None = None

    @property
    def label(self) -> str:
        """``response_rules[1]``, the rule's name in messages."""
        return self.path.rsplit(".", 1)[-1]

    def matches_status(self, status: int) -> bool:
        """Whether the rule's `status` admits this status (no `status`: any)."""
        return self.statuses is None or status in self.statuses

    @property
    def reads_body(self) -> bool:
        """Whether `when` could read ``response['body']``."""
        return self.when is not None and self.when.reads("response", "body")

    def describe(self) -> str:
        """The rule in a few words, for explain mode and logs."""
        parts = []
        if self.statuses is not None:
            parts.append(f"status {self.status_text}")
        if self.when_source is not None:
            parts.append(f"when {self.when_source}")
        head = " and ".join(parts) or "any response"
        tail = f" ({self.message})" if self.message else ""
        return f"{self.label}: {head} -> {self.action}{tail}"


def candidates(rules: t.Sequence[ResponseRule], status: int) -> list[ResponseRule]:
    """The rules that may match a response with this status, in order.

    A rule without `when` matches every such response, so the rules after it can never
    be reached and are left out.
    """
    found: list[ResponseRule] = []
    for rule in rules:
        if rule.matches_status(status):
            found.append(rule)
            if rule.when is None:
                break
    return found


def needs_body(rules: t.Sequence[ResponseRule]) -> bool:
    """Whether deciding among these candidates may need the body."""
    return any(rule.reads_body for rule in rules)


def header_view(headers: t.Iterable[tuple[str, str]]) -> dict[str, str]:
    """``response['header']``: names lower-cased, a repeated header keeps its last value."""
    return {name.lower(): value for name, value in headers}


def body_view(body: bytes | None) -> JSON:
    """``response['body']``: JSON when it parses, else text; null when empty or unknown."""
    if not body or len(body) > RULE_BODY_BYTES:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", errors="replace")


def first_match(
    rules: t.Sequence[ResponseRule],
    status: int,
    headers: t.Iterable[tuple[str, str]],
    body: JSON,
) -> ResponseRule | None:
    """The first rule that matches the response, or None."""
    response = {"status": status, "header": header_view(headers), "body": body}
    for rule in rules:
        if not rule.matches_status(status):
            continue
        if rule.when is None:
            return rule
        try:
            matched = rule.when.evaluate({"response": response})
        except ExpressionError as exc:
            _LOGGER.debug("%s.when did not match (it failed: %s)", rule.path, exc)
            continue
        if matched is not None and matched is not False:
            return rule
    return None
