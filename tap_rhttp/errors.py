"""The one exception tree of tap-rhttp, split by what the caller should do.

::

    RHTTPError                       base; ``str(e)`` is always safe to print (redacted)
    ├── ConfigError                  fix the config; raised before any request
    │   ├── ConfigErrors             several ConfigErrors reported together
    │   └── ExpressionSyntaxError    a page/template expression was rejected at load
    ├── RequestError                 one HTTP request failed (r.http's envelope)
    │   ├── TransientRequestError    worth another try: connection, timeout, 408/425/429/5xx
    │   └── PermanentRequestError    give up: other 4xx, TLS, protocol, redirects
    ├── ResponseFormatError          the body cannot be read as `result_format`; give up
    ├── SchemaDriftError             a record does not fit the schema and `schema_drift`
    │                                cannot keep it; fix the schema or the policy
    ├── ExpressionError              an expression failed while evaluating; give up
    │   └── NonExistenceError        missing field / subscript of null; `.default()` absorbs it
    └── PaginationError              `page` returned a bad value, or a request loop

Context travels as attributes (config path, value, response status, expression and
column), so tests and callers never parse message text. Messages keep RethinkDB's
wording where r.http has one.
"""

from __future__ import annotations

import re
import typing as t

#: r.http's envelope head, ``Error in HTTP GET of `<url>``` and the redirect hop if any.
_ENVELOPE_HEAD = re.compile(
    r"Error in HTTP [A-Z]+ of `[^`\n]*`(?: \(after redirect to `[^`\n]*`\))?"
)


class RHTTPError(Exception):
    """Base of every error tap-rhttp raises on purpose.

    Attributes:
        where: the stream and page the error happened on (``stream posts, page 3``), once
            the run layer has located it; it ends the message's first line in brackets.
    """

    where: str | None = None

    def locate(self, where: str) -> None:
        """Say where the error happened (once), in brackets after r.http's envelope head.

        ``Error in HTTP GET of `<url>` [stream posts, page 3]: status code 503.``: the
        reason after the colon stays exactly r.http's, in one piece even when it spans
        lines (a page expression's error and the `info` it saw). A message without the
        envelope gets it at the end of its first line.
        """
        if self.where is not None:
            return
        self.where = where
        text = str(self)
        head = _ENVELOPE_HEAD.match(text)
        if head is not None:
            self.args = (f"{text[: head.end()]} [{where}]{text[head.end() :]}",)
            return
        first, sep, rest = text.partition("\n")
        self.args = (f"{first} [{where}]{sep}{rest}",)


class ConfigError(RHTTPError):
    """The config is wrong; nothing was requested.

    Attributes:
        path: where in the config, e.g. ``streams[2].page_limit``.
        value: the offending value (already redacted when it is a secret).
        allowed: what would have been accepted, in words.
    """

    def __init__(
        self,
        path: str,
        message: str,
        *,
        value: t.Any = None,
        allowed: str | None = None,
    ) -> None:
        self.path = path
        self.value = value
        self.allowed = allowed
        self.detail = message
        text = f"{path}: {message}" if path else message
        if allowed and allowed not in message:
            glue = "\n" if "\n" in text else " "
            text = f"{text}{glue}Allowed: {allowed}."
        super().__init__(text)


class ExpressionSyntaxError(ConfigError):
    """An expression was rejected when the config was loaded.

    The message prints the expression with a caret under ``column`` (0-based).
    """

    def __init__(
        self,
        path: str,
        message: str,
        *,
        expression: str,
        column: int,
        allowed: str | None = None,
    ) -> None:
        self.expression = expression
        self.column = column
        one_line = expression.replace("\r", " ").replace("\n", " ")
        caret = " " * max(column, 0) + "^"
        body = f"{message}\n    {one_line}\n    {caret}"
        super().__init__(path, body, value=expression, allowed=allowed)


class RequestError(RHTTPError):
    """One HTTP request failed, reported in r.http's envelope.

    ``Error in HTTP GET of `<url>`: status code 404.`` followed by the response header
    and the start of the body. ``<url>`` is the URL the request was made to (the page's);
    when the failure came after a redirect, the hop follows it:
    ``Error in HTTP GET of `<url>` (after redirect to `<hop>`): status code 404.``
    Every part is redacted before it gets here.

    Attributes:
        method: the HTTP method.
        url: the redacted URL the request was made to.
        hop: the redacted URL of the redirect hop that failed (None: no redirect).
        status: the HTTP status, or None when no response arrived.
        retry_after: seconds the server asked us to wait (``Retry-After``), if any.
    """

    retriable: t.ClassVar[bool] = False

    def __init__(
        self,
        method: str,
        url: str,
        reason: str,
        *,
        status: int | None = None,
        header: str | None = None,
        body: str | None = None,
        retry_after: float | None = None,
        hop: str | None = None,
    ) -> None:
        self.method = method
        self.url = url
        self.hop = hop
        self.reason = reason
        self.status = status
        self.header = header
        self.body = body
        self.retry_after = retry_after
        text = f"{envelope(method, url, hop)}: {reason}"
        if header is not None:
            text += f"\nheader:\n{header}"
        if body is not None:
            text += f"\nbody:\n{body}"
        super().__init__(text)


class TransientRequestError(RequestError):
    """A failure that another try may cure (connection, timeout, 408/425/429/5xx)."""

    retriable = True


class PermanentRequestError(RequestError):
    """A failure that no retry cures (4xx, TLS verification, protocol, redirects)."""


class ResponseFormatError(RHTTPError):
    """The body could not be read as the configured `result_format`.

    Raised by the readers with the bare reason (``failed to parse JSON response: ...``);
    the chain re-raises it in r.http's envelope (:meth:`enveloped`).
    """

    def enveloped(self, method: str, url: str, hop: str | None = None) -> ResponseFormatError:
        """The same error, in r.http's envelope for the request that got the body."""
        return type(self)(f"{envelope(method, url, hop)}: {self}")


class SchemaDriftError(RHTTPError):
    """A page's record does not fit the stream's schema, and the drift policy stops there.

    Raised before anything of that page is emitted: with `schema_drift: fail`, or when a
    primary or replication key's value has a type its column cannot hold.

    Attributes:
        stream: the stream.
        field: the field that does not fit.
        expected: the schema's type of the field, in words.
        found: the value's type.
    """

    def __init__(self, message: str, *, stream: str, field: str, expected: str, found: str):
        self.stream = stream
        self.field = field
        self.expected = expected
        self.found = found
        super().__init__(message)


class ExpressionError(RHTTPError):
    """An expression failed while it was evaluated."""


class NonExistenceError(ExpressionError):
    """ReQL's non-existence error: a missing key, or a subscript of null.

    ``.default(x)`` absorbs exactly this error and nothing else.
    """


class PaginationError(RHTTPError):
    """`page` returned something unusable, or pagination would loop."""


class ConfigErrors(ConfigError):
    """Several config problems at once, so a user fixes them in one pass.

    Attributes:
        errors: each problem, in config order.
    """

    def __init__(self, errors: t.Sequence[ConfigError]) -> None:
        self.errors = list(errors)
        lines = [str(e) for e in self.errors]
        head = f"{len(lines)} problems in the config:" if len(lines) > 1 else ""
        message = "\n".join([head, *lines]) if head else lines[0]
        super().__init__("", message)


def envelope(method: str, url: str, hop: str | None = None) -> str:
    """r.http's envelope head: ``Error in HTTP GET of `<url>```, and the redirect hop if any."""
    text = f"Error in HTTP {method} of `{url}`"
    return f"{text} (after redirect to `{hop}`)" if hop is not None and hop != url else text
