"""Secrets out of URLs, headers, free text, JSON, STATE and records, by value.

Every string that may carry a credential passes through a :class:`Redactor` before it is
logged, raised (``errors.RHTTPError`` messages are promised safe to print), written to
STATE or put in a record.

**What is a secret.** A secret is a *value* the tap holds from its config: every ``auth``
value (and, for basic/digest, ``base64(user:pass)`` as the header carries it), every value
of ``secrets``, the values of headers listed in ``secret_headers`` or sent as
``Authorization``/``Cookie``/``Proxy-Authorization``, the literal values the user wrote
under a secret-looking name (``params: {"api_key": "abc"}``, ``X-Api-Key``, a
``password`` field of ``data``, ``?access_token=`` in the ``url``; see
:meth:`Redactor.is_sensitive_param`), the password of a URL's userinfo, and proxy
credentials (the password in a proxy URL's userinfo and the ``Proxy-Authorization`` it
becomes). The name rules are a safety net for the config only: a value that comes from
the server (a next link's ``pagination_token``, a parent row's field) is never a secret
because of its name, so it stays in the STATE resume position and in records.

**Where it is masked, and how.** A secret is replaced by :data:`MASK` wherever it appears,
in any spelling that decodes to it:

* raw;
* percent-encoded, any subset of its characters, hex in either case, ``+`` for a space,
  and doubly encoded ``%25XX``;
* JSON-escaped, any subset of its characters: ``\\uXXXX`` in any hex case (.NET escapes
  ``+`` and ``'``), surrogate pairs, ``\\/`` (PHP), ``\\"`` and ``\\\\``, also inside
  JSON that is itself a JSON string (up to seven backslashes);
* HTML character references (``&#43;``, ``&#x2B;`` in any case, ``&amp;``, ``&quot;``...);
* any mix of these within one occurrence.

Since a server may escape any subset of characters, listing a few encoded forms of each
secret is not enough. Two ways were weighed: a pattern that allows each character of a
secret in each of its spellings, or normalising the text first. The per-character
pattern costs about a microsecond per character of text with ten secrets (Python's
``re`` tries every branch at every position), which is too slow for a whole page of
records. So the text is normalised: one compiled regex finds the escapes that spell a
character occurring in some secret (an escape of anything else cannot be part of a
secret, so a body full of ``\\u0416`` costs nothing), they are decoded into a canonical
text with an offset map back to the original, and one alternation of the canonical
secrets runs over it; a second alternation finds the raw secrets in the original. Both
are single passes (the escape regex has bounded repetitions, the alternations are
literal), so masking is linear in the length of the text.

**Masked by position** (in messages and logs, never in records, even when short or
unknown): the password of any ``scheme://user:password@``; the values of the
``Authorization``, ``Proxy-Authorization``, ``Cookie`` and ``Set-Cookie`` headers (a
known auth scheme such as ``Bearer`` is kept) and of headers the config marked secret;
and the values of query parameters, ``key=value`` pairs and JSON fields that the config
marked secret (a secret-looking name the config gave a literal, a name whose value is
read from ``secrets``, the name of a query-string API key) or that are credentials by
definition, whoever sent them: OAuth 2.0's ``access_token``, ``refresh_token``,
``id_token``, ``client_secret`` and ``password`` (RFC 6749; any case, ``-``, ``_`` or
camelCase) and signed-URL credentials (``X-Amz-Signature``, ``X-Amz-Credential``,
``X-Amz-Security-Token``, ``X-Goog-Signature``, ``X-Goog-Credential``). So a token endpoint's
answer or a server's ``Set-Cookie`` quoted in an error is masked, while an ordinary field
such as ``code=503``, ``token=<cursor>`` or ``key=PROJ-1`` is shown as the server sent it.

Choices, and what was rejected:

* Linear time against a hostile server. The structural rules search only for the few
  names above, and a value's end is found by scanning forward once (a quoted value that
  never closes is masked to the end of its line), never by a regex that could restart
  from every key. Long texts are only redacted as bounded excerpts
  (:meth:`Redactor.excerpt` redacts a window, then cuts, so no secret survives in part).
* Secrets shorter than :data:`MIN_LITERAL_LENGTH` characters are not searched for in free
  text (masking every ``"ab"`` would mangle innocent words and reveal the secret by where
  the holes are); they are masked where their position is known.
* URLs are not parsed and re-serialised (``urllib.parse`` would re-encode ``%20``, ``,``
  and ``:``); only the masked spans change.
* The redacted forms are for display. A value that must round-trip (a resume position in
  STATE) is not redacted: ``run.resume`` withholds a parameter that holds a secret and
  restores it from the config on resume.
* Logging: a record factory (:func:`install_log_redaction`) redacts every record when it
  is created, whatever logger, handler or ``SINGER_SDK_LOG_CONFIG`` file is in play.
  Filters on handlers were rejected: a handler added later, a logger with
  ``propagate: false`` and its own handler, or ``logging.lastResort`` would go around them.
"""

from __future__ import annotations

import base64
import bisect
import dataclasses
import functools
import html
import logging
import re
import threading
import typing as t
import weakref
from collections.abc import Mapping
from urllib.parse import unquote, unquote_plus

import orjson

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    from tap_rhttp.types import JSON, HeaderPairs


class _Credentials(t.Protocol):
    """What :meth:`Redactor.learn` reads of credentials (``http.auth.Credentials``)."""

    @property
    def type(self) -> str: ...
    @property
    def user(self) -> str | None: ...
    @property
    def password(self) -> str | None: ...
    @property
    def name(self) -> str | None: ...
    @property
    def location(self) -> str: ...
    def secrets(self) -> tuple[str, ...]: ...


class _Secretive(t.Protocol):
    """What :meth:`Redactor.learn` reads of a spec (the config layer's ``RequestSpec``)."""

    @property
    def url(self) -> str: ...
    @property
    def auth(self) -> _Credentials | None: ...
    @property
    def header(self) -> HeaderPairs: ...
    @property
    def params(self) -> t.Mapping[str, JSON]: ...
    @property
    def data(self) -> JSON: ...
    @property
    def proxy(self) -> str | None: ...
    @property
    def client_key_password(self) -> str | None: ...


__all__ = [
    "CREDENTIAL_HEADERS",
    "CREDENTIAL_KEYS",
    "MASK",
    "MIN_LITERAL_LENGTH",
    "SENSITIVE_HEADERS",
    "SENSITIVE_QUERY_KEYS",
    "RedactingFilter",
    "Redactor",
    "build_redactor",
    "install_log_redaction",
    "is_credential_key",
]

MASK: str = "***REDACTED***"
"""What every masked value becomes."""

MIN_LITERAL_LENGTH: int = 4
"""Secrets shorter than this are masked only where their position is known."""

CREDENTIAL_HEADERS: frozenset[str] = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie"}
)
"""Headers whose values are masked by position, whoever sent them; compared lower-case."""

CREDENTIAL_KEYS: frozenset[str] = frozenset(
    {
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "password",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
    }
)
"""Parameter and field names that carry a credential by definition, whoever sent them.

OAuth 2.0's token and client fields (RFC 6749 §4, §5.1) and signed-URL credentials.
Compared lower-case, ignoring ``-`` and ``_`` (``accessToken``, ``ACCESS-TOKEN``). Their
values are masked in messages and withheld from STATE, never masked in records.
"""

SENSITIVE_QUERY_KEYS: frozenset[str] = frozenset(
    {
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "auth_token",
        "api_token",
        "session_token",
        "security_token",
        "api_key",
        "apikey",
        "api-key",
        "key",
        "private_key",
        "access_key",
        "secret_key",
        "secret",
        "client_secret",
        "password",
        "passwd",
        "pwd",
        "pass",
        "passphrase",
        "signature",
        "sig",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
        "auth",
        "authorization",
        "session",
        "sessionid",
        "session_id",
        "jsessionid",
        "phpsessid",
        "credentials",
        "credential",
    }
)
"""Secret-looking names: a literal the config gives under one of them is a secret.

The rule for the config only (``params``, the ``url``'s query, ``data`` fields): the
value is learned as a secret and the name is then masked by position. Also secret-looking:
any key ending in one of ``_token``, ``_key``, ``_secret``, ``-token``, ``-key``,
``-secret``, ``_password``; camelCase spellings of the keys above (``accessToken``,
``clientSecret``: a second comparison ignores ``-`` and ``_``); and keys that, so
compared, end in ``token``, ``secret``, ``password``, ``passwd`` or ``apikey``
(``githubToken``). Exempt: pagination and ordering keys such as ``page_token``,
``pageToken``, ``next_token``, ``sort_key``. ``code`` is not in the list: a country, error
or product code is far more common in a config than an OAuth authorization code. A value
the server sends is never a secret because of its name.
"""

SENSITIVE_HEADERS: frozenset[str] = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "apikey",
        "x-auth-token",
        "x-access-token",
        "x-csrf-token",
        "x-xsrf-token",
        "x-amz-security-token",
        "x-goog-api-key",
        "private-token",
    }
)
"""Secret-looking header names: a value the config gives one of them is a secret.

Also secret-looking: any header name containing ``token``, ``secret``, ``api-key``,
``api_key``, ``apikey`` or ``password``. The config's value is learned and the header
name is then masked by position; response headers are masked by position only when they
are :data:`CREDENTIAL_HEADERS` or config-marked.
"""

_KEY_SUFFIXES = ("_token", "_key", "_secret", "-token", "-key", "-secret", "_password")
_HEADER_PARTS = ("token", "secret", "api-key", "api_key", "apikey", "password")
_NOT_SECRET_KEYS = frozenset(
    {
        "page_token",
        "next_page_token",
        "next_token",
        "continuation_token",
        "page_key",
        "sort_key",
        "primary_key",
        "partition_key",
        "idempotency_key",
        "continuation_key",
    }
)
# Authorization schemes shown in front of a masked credential: the scheme is not secret
# and tells you which auth was sent. An unknown first word is masked with the rest.
_AUTH_SCHEMES = frozenset(
    {"basic", "bearer", "digest", "token", "negotiate", "ntlm", "oauth", "hoba", "apikey"}
)


def _collapse(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def is_credential_key(name: str) -> bool:
    """Whether `name` is one of :data:`CREDENTIAL_KEYS` (any case, ``-``/``_``/camelCase)."""
    return _collapse(name.strip()) in _COLLAPSED_CREDENTIALS


_COLLAPSED_KEYS = frozenset(_collapse(k) for k in SENSITIVE_QUERY_KEYS)
_COLLAPSED_SUFFIXES = ("token", "secret", "password", "passwd", "apikey")
_NOT_SECRET_COLLAPSED = frozenset(_collapse(k) for k in _NOT_SECRET_KEYS)
_COLLAPSED_CREDENTIALS = frozenset(_collapse(k) for k in CREDENTIAL_KEYS)

_USERINFO_RE = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.\-]*:)?//)([^/?#]*)@")
# user:password@ of a URL inside free text ("proxy http://u:pw@proxy:3128 refused"). Both
# parts stop at "/", so each try scans to the next "/" at most: linear.
_TEXT_USERINFO_RE = re.compile(r"//[^/?#\s:@\"'<>]*:(?P<pw>[^/?#\s@\"'<>]+)(?:@|(?P<end>\Z))")
# The value of a key=value pair that is not quoted (a URL's query, a form, a cookie).
# It stops at a backtick, which never appears raw in a URL: r.http's envelope quotes
# the URL in backticks ("of `http://h/x?token=***`: status code 500.").
_BARE_KV_VALUE_RE = re.compile(r"[^&\s\"'<>#;,`]+")
# The value of a "key": value pair that is not a string (a number).
_BARE_PAIR_VALUE_RE = re.compile(r"[^\s,;:}\]\)&\"'<>{\[]+")


# --------------------------------------------------------------------------------------
# Literal secrets, in every spelling


def _hex(number: int, width: int = 1) -> str:
    """A regex for `number` in hex, at least `width` digits, each letter in either case."""
    return "".join(f"[{c}{c.upper()}]" if c.isalpha() else c for c in f"{number:0{width}x}")


#: Longest spelling of one character: a surrogate pair, each half behind 7 backslashes.
_MAX_SPELLING = 2 * (7 + 5)

_HTML_NAMES = {"&": "amp", "<": "lt", ">": "gt", '"': "quot", "'": "apos"}


def _escape_regex(chars: t.Collection[str]) -> re.Pattern[str] | None:
    """One regex for every escape that spells one of `chars` (see the module docstring).

    Every repetition is bounded, and each alternative starts with ``\\``, ``%`` or
    ``&``, so a text without those characters is skipped at C speed.
    """
    units, shorts, percents, decimals, hexes, names = [], [], [], [], [], []
    for char in sorted(chars):
        code = ord(char)
        if code < 0x10000:
            units.append(_hex(code, 4))
        else:
            value = code - 0x10000
            high, low = 0xD800 + (value >> 10), 0xDC00 + (value & 0x3FF)
            units.append(_hex(high, 4) + r"\\{1,7}u" + _hex(low, 4))
        if char in "/\"'":
            shorts.append(re.escape(char))
        elif char == "\\":
            shorts.append(r"\\")
        percents.append("%(?:25)?".join(_hex(byte, 2) for byte in char.encode("utf-8", "replace")))
        decimals.append(str(code))
        hexes.append(_hex(code))
        if char in _HTML_NAMES:
            names.append(_HTML_NAMES[char])
    if not units:
        return None
    if "'" in chars:
        decimals.append("39")
    backslashed = r"\\\\{0,6}(?:u(?:" + "|".join(units) + ")" + "".join("|" + s for s in shorts)
    percent = r"%(?:25)?(?:" + "|".join(percents) + ")"
    reference = (
        r"&(?:#(?:0{0,8}(?:"
        + "|".join(decimals)
        + r")|[xX]0{0,8}(?:"
        + "|".join(hexes)
        + "));"
        + "".join(f"|{n};" for n in names)
        + ")"
    )
    return re.compile(f"{backslashed})|{percent}|{reference}")


_PERCENT_BYTE_RE = re.compile(r"%(?:25)?([0-9a-fA-F]{2})")
_UNIT_RE = re.compile(r"u([0-9a-fA-F]{4})")


@functools.lru_cache(maxsize=4096)
def _decode_escape(escape: str) -> str:
    """The one character an escape found by :func:`_escape_regex` spells."""
    if escape[0] == "%":
        raw = bytes(int(h, 16) for h in _PERCENT_BYTE_RE.findall(escape))
        return raw.decode("utf-8", "replace")
    if escape[0] == "&":
        return html.unescape(escape)
    body = escape.lstrip("\\")
    if not body:
        return "\\"
    if body[0] != "u":
        return body
    units = [int(h, 16) for h in _UNIT_RE.findall(body)]
    if len(units) == 2:
        return chr(0x10000 + ((units[0] - 0xD800) << 10) + (units[1] - 0xDC00))
    return chr(units[0])


@dataclasses.dataclass(frozen=True)
class _Canonical:
    """A text with its escapes decoded, and the map back to the original's offsets."""

    text: str
    at: list[int]  # canonical index of each decoded escape, ascending
    start: list[int]  # the escape's span in the original
    end: list[int]

    def original(self, begin: int, stop: int) -> tuple[int, int]:
        """The original span of the canonical span ``[begin, stop)``."""
        k = bisect.bisect_right(self.at, begin) - 1
        if k < 0:
            first = begin
        elif self.at[k] == begin:
            first = self.start[k]
        else:
            first = self.end[k] + begin - self.at[k] - 1
        last = stop - 1
        k = bisect.bisect_right(self.at, last) - 1
        if k < 0:
            after = stop
        elif self.at[k] == last:
            after = self.end[k]
        else:
            after = self.end[k] + last - self.at[k]
        return first, after


def _canonical(text: str, escapes: re.Pattern[str] | None, plus: bool) -> _Canonical | None:
    """Decode the escapes of secret characters (and read a space as ``+``), or None."""
    at: list[int] = []
    start: list[int] = []
    end: list[int] = []
    if escapes is not None:
        found = [m.span() for m in escapes.finditer(text)]
        if found:
            pieces: list[str] = []
            last = shift = 0
            for begin, stop in found:
                pieces.append(text[last:begin])
                pieces.append(_decode_escape(text[begin:stop]))
                at.append(begin - shift)
                start.append(begin)
                end.append(stop)
                shift += stop - begin - 1
                last = stop
            pieces.append(text[last:])
            text = "".join(pieces)
    if not at and not (plus and " " in text):
        return None
    if plus:
        text = text.replace(" ", "+")
    return _Canonical(text, at, start, end)


def _canonical_secret(secret: str, escapes: re.Pattern[str] | None) -> str:
    found = _canonical(secret, escapes, plus=True)
    return found.text if found is not None else secret


def _alternation(words: t.Iterable[str]) -> re.Pattern[str] | None:
    ordered = sorted(set(words), key=lambda s: (-len(s), s))
    return re.compile("|".join(map(re.escape, ordered))) if ordered else None


@dataclasses.dataclass(frozen=True)
class _Literals:
    """What finds the known secrets: rebuilt as a whole when one is added."""

    raw: re.Pattern[str] | None = None
    escapes: re.Pattern[str] | None = None
    canonical: re.Pattern[str] | None = None
    plus: bool = False
    #: The most characters one spelling of a secret can take.
    longest: int = 0
    #: Common spellings, sorted, for secrets an excerpt cut in half (``text_quoting``).
    spellings: tuple[str, ...] = ()

    @classmethod
    def build(cls, secrets: t.Collection[str]) -> _Literals:
        if not secrets:
            return cls()
        escapes = _escape_regex({c for s in secrets for c in s})
        canonical = {_canonical_secret(s, escapes) for s in secrets}
        canonical = {c for c in canonical if len(c) >= MIN_LITERAL_LENGTH and c not in MASK}
        spellings: set[str] = set()
        for secret in secrets:
            spellings |= {
                secret,
                orjson.dumps(secret).decode()[1:-1],
                html.escape(secret),
            }
        return cls(
            raw=_alternation(secrets),
            escapes=escapes,
            canonical=_alternation(canonical),
            plus=any("+" in c for c in canonical),
            longest=max(len(s) for s in secrets) * _MAX_SPELLING,
            spellings=tuple(sorted(spellings)),
        )

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where the secrets are in `text`, in any spelling (may overlap)."""
        if self.raw is None:
            return []
        found = [m.span() for m in self.raw.finditer(text)]
        if self.canonical is not None:
            decoded = _canonical(text, self.escapes, self.plus)
            if decoded is not None:
                found += [
                    decoded.original(*m.span()) for m in self.canonical.finditer(decoded.text)
                ]
        return found

    def search(self, text: str) -> bool:
        if self.raw is None:
            return False
        if self.raw.search(text) is not None:
            return True
        if self.canonical is None:
            return False
        decoded = _canonical(text, self.escapes, self.plus)
        return decoded is not None and self.canonical.search(decoded.text) is not None


# --------------------------------------------------------------------------------------
# Structural masking: the few names whose values are masked by position


def _name_regex(name: str) -> str:
    """A name as a regex: ``-`` and ``_`` optional and interchangeable (``accessToken``)."""
    parts = [re.escape(p) for p in re.split(r"[-_]+", name) if p]
    return "[-_]?".join(parts) if parts else re.escape(name)


@dataclasses.dataclass(frozen=True)
class _Structure:
    """The names masked by position, compiled into two key-finding regexes.

    Both start with a literal character or a character class (no lookbehind, no
    ``IGNORECASE``), so ``re`` skips the positions where no key can start at C speed;
    they run over an ASCII-lower-cased copy of the text (same length, same offsets), and
    the checks a regex would need a lookbehind or a backreference for are made on each
    candidate in Python.
    """

    pairs: re.Pattern[str]
    names: re.Pattern[str]
    keys: frozenset[str]
    headers: frozenset[str]

    @classmethod
    def build(cls, keys: t.Collection[str], headers: t.Collection[str]) -> _Structure:
        every = {_name_regex(n.lower()) for n in (*keys, *headers) if n}
        alternation = "|".join(sorted(every, key=lambda n: (-len(n), n)))
        return cls(
            # "key": value, 'key': value, \"key\": value (JSON in a JSON string)
            pairs=re.compile(rf"[\"'](?P<k>{alternation})(?P<q>\\{{0,7}}[\"'])[ \t]*:[ \t]*"),
            # key=value, and Name: value (a header line)
            names=re.compile(rf"(?P<k>{alternation})(?:(?P<eq>=)|[ \t]*:[ \t]*)"),
            keys=frozenset(_collapse(k) for k in (*keys, *headers)),
            headers=frozenset(_collapse(h) for h in headers),
        )

    def spans(self, text: str, *, truncated: bool = False) -> list[tuple[int, int]]:
        found: list[tuple[int, int]] = []
        lowered = text.translate(_ASCII_LOWER)
        candidates = sorted(
            [(m.start(), 0, m) for m in self.pairs.finditer(lowered)]
            + [(m.start(), 1, m) for m in self.names.finditer(lowered)],
            key=lambda c: (c[0], c[1]),
        )
        scan = _Scanner(text)
        done = 0
        for start, kind, m in candidates:
            if start < done:
                continue  # inside a value already masked
            before = text[start - 1] if start else ""
            pos = m.end()
            span: tuple[int, int] | None
            if kind == 0:  # a quoted key: its quote and backslashes must match the opening
                opening = 0
                while start - opening - 1 >= 0 and text[start - opening - 1] == "\\":
                    opening += 1
                closing = m.group("q")
                if closing[-1] != text[start] or len(closing) - 1 != opening:
                    continue
                span = _value_span(text, pos, scan, bare=_BARE_PAIR_VALUE_RE, credential=True)
            elif m.group("eq") is not None:
                if before and (before.isalnum() or before in "_.-"):
                    continue  # part of a longer name
                span = _value_span(text, pos, scan, bare=_BARE_KV_VALUE_RE, credential=False)
            else:
                if (before and (before.isalnum() or before in "_-")) or _collapse(
                    m.group("k")
                ) not in self.headers:
                    continue
                span = _credential_span(text, pos, scan.line_end(pos))
            if span is not None:
                found.append(span)
                done = span[1]
        if "@" in text or truncated:
            for m in _TEXT_USERINFO_RE.finditer(text):
                if m.group("end") is None or truncated:
                    found.append(m.span("pw"))
        return found


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class _Scanner:
    """Forward searches over one text that never scan the same characters twice.

    Keys are visited left to right, so the next quote or newline found from one key is
    remembered and reused by the following keys: the whole structural pass stays linear
    even when many values never close.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self._next: dict[str, tuple[int, int]] = {}

    def find(self, char: str, pos: int) -> int:
        """The first `char` at or after `pos` (``len(text)`` when there is none)."""
        cached = self._next.get(char)
        if cached is not None and cached[0] <= pos <= cached[1]:
            return cached[1]
        found = self.text.find(char, pos)
        found = len(self.text) if found == -1 else found
        self._next[char] = (pos, found)
        return found

    def line_end(self, pos: int) -> int:
        return min(self.find("\n", pos), self.find("\r", pos))


def _credential_span(text: str, start: int, stop: int) -> tuple[int, int] | None:
    """The span of a credential in ``text[start:stop]``, a known auth scheme left out."""
    value = text[start:stop]
    stripped = value.rstrip()
    if not stripped:
        return None
    scheme, space, rest = stripped.partition(" ")
    if space and rest.strip() and scheme.lower() in _AUTH_SCHEMES:
        offset = len(scheme) + 1 + (len(rest) - len(rest.lstrip()))
        return start + offset, start + len(stripped)
    return start, start + len(stripped)


def _value_span(
    text: str, pos: int, scan: _Scanner, *, bare: re.Pattern[str], credential: bool
) -> tuple[int, int] | None:
    """The span of the value that starts at `pos` (quoted, or a bare token)."""
    run = 0
    while pos + run < len(text) and text[pos + run] == "\\" and run < 7:
        run += 1
    quote = text[pos + run] if pos + run < len(text) else ""
    if quote in ("'", '"'):
        start = pos + run + 1
        close = _closing_quote(text, start, quote, run, scan)
        line = scan.line_end(start)
        if close is None or close > line:  # never closes on this line: mask to its end
            return (start, line) if line > start else None
        if close == start:
            return None  # an empty string hides nothing
        return _credential_span(text, start, close) if credential else (start, close)
    if run:
        return None
    m = bare.match(text, pos)
    if m is None or m.group().lower() in ("null", "true", "false"):
        return None
    return m.span()


def _closing_quote(text: str, start: int, quote: str, escapes: int, scan: _Scanner) -> int | None:
    """Where the string opened by `escapes` backslashes and `quote` ends (its backslashes).

    A plain string (no backslash before its quote) ends at a quote preceded by an even
    number of backslashes; a string in a JSON string (``\\"...\\"``) at a quote preceded
    by exactly as many backslashes as opened it. An odd case (a backslash at the end of
    a value in a JSON string) only makes the masked span longer.
    """
    pos = start
    while True:
        found = scan.find(quote, pos)
        if found >= len(text):
            return None
        run = 0
        while found - run - 1 >= start and text[found - run - 1] == "\\":
            run += 1
        if (escapes == 0 and run % 2 == 0) or (escapes and run == escapes):
            return found - run
        pos = found + 1


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if end <= start:
            continue
        if merged and start < merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _apply(text: str, spans: list[tuple[int, int]]) -> str:
    if not spans:
        return text
    out: list[str] = []
    last = 0
    for start, end in _merge(spans):
        out.append(text[last:start])
        out.append(MASK)
        last = end
    out.append(text[last:])
    return "".join(out)


# --------------------------------------------------------------------------------------
# The redactor


class Redactor:
    """Masks secrets in URLs, headers, free text and JSON values (see the module docstring).

    Build one per tap run from the config (:func:`build_redactor`), share it, and pass
    every string that may leave the process through it. Thread-safe: secrets may be
    added while other threads redact (each call uses one consistent snapshot).

    Args:
        secrets: literal secret values (tokens, passwords, keys).
        secret_headers: header names whose values are masked by position.
        secret_params: query/JSON key names whose values are masked by position.
    """

    def __init__(
        self,
        secrets: Iterable[str] = (),
        *,
        secret_headers: Iterable[str] = (),
        secret_params: Iterable[str] = (),
    ) -> None:
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()
        self._literals = _Literals()
        self._secret_headers = frozenset(h.strip().lower() for h in secret_headers)
        self._secret_params = frozenset(p.strip().lower() for p in secret_params)
        self._structure = self._build_structure()
        self._sealed: Redactor | None = None
        for secret in secrets:
            self.add_secret(secret)

    def __repr__(self) -> str:
        """Say how much is known, never what."""
        return f"<Redactor: {len(self._secrets)} secrets>"

    # -- registration -----------------------------------------------------------------

    def _build_structure(self) -> _Structure:
        self._marked = frozenset(
            _collapse(n) for n in (*self._secret_params, *self._secret_headers)
        )
        return _Structure.build(
            {*CREDENTIAL_KEYS, *self._secret_params},
            {*CREDENTIAL_HEADERS, *self._secret_headers},
        )

    def add_secret(self, value: str) -> None:
        """Register a secret so that it is masked wherever it appears, in any spelling.

        Empty strings are ignored; short ones are only masked by position (see
        :data:`MIN_LITERAL_LENGTH`), and so are substrings of :data:`MASK` (masking them
        would make redaction grow on each pass).

        Args:
            value: the secret, as it appears in the config.
        """
        if not isinstance(value, str) or len(value) < MIN_LITERAL_LENGTH or value in MASK:
            return
        with self._lock:
            if value in self._secrets:
                return
            self._secrets = self._secrets | {value}
            self._literals = _Literals.build(self._secrets)

    def seal(self) -> None:
        """Remember what the config alone taught (see :meth:`config_view`)."""
        sealed = Redactor(secret_headers=self._secret_headers, secret_params=self._secret_params)
        sealed._secrets, sealed._literals = self._secrets, self._literals
        self._sealed = sealed

    def config_view(self) -> Redactor:
        """A redactor that knows only what it knew when :meth:`seal` was called.

        What a run learns later (rendered templates, proxies) depends on the run; a
        fingerprint of the config that must be the same from run to run (the resume
        position's spec hash) masks with this one.
        """
        return self._sealed if self._sealed is not None else self

    def add_secret_param(self, name: str) -> None:
        """Mask the values of query params, ``key=value`` pairs and JSON fields `name`."""
        lowered = name.strip().lower()
        with self._lock:
            if not lowered or lowered in self._secret_params:
                return
            self._secret_params = self._secret_params | {lowered}
            self._structure = self._build_structure()

    def add_secret_header(self, name: str) -> None:
        """Mask the values of headers (and JSON fields) named `name`."""
        lowered = name.strip().lower()
        with self._lock:
            if not lowered or lowered in self._secret_headers:
                return
            self._secret_headers = self._secret_headers | {lowered}
            self._structure = self._build_structure()

    def add_basic_credentials(self, user: str, password: str) -> None:
        """Register HTTP Basic credentials (RFC 7617).

        Registers the password and ``base64("user:password")``, which is what an
        ``Authorization: Basic`` (or ``Proxy-Authorization``) header carries, in the
        standard and the URL-safe alphabet, with and without padding.

        Args:
            user: the user name (not itself treated as secret).
            password: the password.
        """
        if not password:
            return
        self.add_secret(password)
        raw = f"{user}:{password}".encode()
        for token in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
            text = token.decode("ascii")
            self.add_secret(text)
            self.add_secret(text.rstrip("="))

    def add_url_secrets(self, url: str) -> None:
        """Register the secrets a config or proxy URL carries.

        The userinfo password (percent-decoded too, and the Basic credentials requests
        makes of it), and the values of secret-looking query and fragment params (whose
        names are then masked by position). Never call it with a URL the server gave (a
        redirect, a next link): its params are data, whatever their names.

        Args:
            url: an absolute or relative URL.
        """
        m = _USERINFO_RE.match(url)
        if m and ":" in m.group(2):
            user, _, password = m.group(2).partition(":")
            for form in {password, unquote(password)}:
                self.add_secret(form)
            # requests turns URL userinfo into a Basic header (Proxy-Authorization for a proxy).
            self.add_basic_credentials(unquote(user), unquote(password))
        base, _, fragment = url.partition("#")
        query = base.partition("?")[2]
        for part in [*query.split("&"), *fragment.split("&")]:
            key, eq, value = part.partition("=")
            if eq and value and "{{" not in value and self.is_sensitive_param(unquote_plus(key)):
                self.add_secret_param(unquote_plus(key))
                for form in {value, unquote_plus(value)}:
                    self.add_secret(form)

    def learn(
        self,
        spec: _Secretive,
        *,
        from_data: t.Container[tuple[str, str]] = (),
        from_secrets: t.Iterable[tuple[str, str]] = (),
    ) -> None:
        """Register every secret a spec carries (call it again once templates render).

        Auth values (and the Basic credentials basic/digest send; a query API key's
        name is masked by position), the values of headers with a secret-looking name
        (and the credential after an auth scheme, ``Bearer <token>``), and literal
        values under secret-looking names in ``params``, ``data`` and the ``url``; the
        proxy's user info and the client key's password.

        Args:
            spec: the spec (or a rendered one).
            from_data: ``(field, key)`` pairs (``("params", "next_key")``, key ``""`` for
                the whole ``url`` or ``data``) whose values a template read from server
                data (a parent row, the bookmark): not secrets because of their name.
                ``Authorization``-like headers and ``auth`` are learned whatever their source.
            from_secrets: ``(field, key)`` pairs whose values a template read from
                ``secrets``: their names are masked by position too.
        """
        for field, key in from_secrets:
            if field == "header":
                self.add_secret_header(key)
            elif field in ("params", "data") and key:
                self.add_secret_param(key)
        auth = spec.auth
        if auth is not None:
            for secret in auth.secrets():
                self.add_secret(secret)
            if auth.type in ("basic", "digest"):
                self.add_basic_credentials(auth.user or "", auth.password or "")
            if auth.type == "api_key" and auth.name:
                if auth.location == "query":
                    self.add_secret_param(auth.name)
                else:
                    self.add_secret_header(auth.name)
        for name, value in spec.header:
            if not value or "{{" in value:
                continue
            credential = name.strip().lower() in CREDENTIAL_HEADERS
            if credential or (self.is_sensitive_header(name) and ("header", name) not in from_data):
                self.add_secret_header(name)
                self.add_secret(value)
                scheme, _, rest = value.partition(" ")
                if rest.strip() and scheme.isalpha():
                    self.add_secret(rest.strip())
        for key, value in spec.params.items():
            if ("params", key) not in from_data:
                self._learn_field("params", key, value)
        if ("url", "") not in from_data and "{{" not in spec.url:
            self.add_url_secrets(spec.url)
        for field, body in (("data", spec.data), ("json", getattr(spec, "json", None))):
            if ("data", "") in from_data or (field, "") in from_data:
                continue
            if isinstance(body, Mapping):
                stack: list[tuple[str, JSON]] = list(body.items())
                while stack:
                    key, value = stack.pop()
                    if isinstance(value, Mapping):
                        stack.extend(value.items())
                    elif (field, key) not in from_data:
                        self._learn_field(field, key, value)
            elif field == "data" and isinstance(body, str) and "=" in body:
                for part in body.split("&"):  # a form-encoded body
                    key, _, value = part.partition("=")
                    self._learn_field(field, unquote_plus(key), unquote_plus(value))

        proxy = getattr(spec, "proxy", None)
        if proxy:  # its user info, and the Proxy-Authorization it makes
            self.add_url_secrets(proxy)
        key_password = getattr(spec, "client_key_password", None)
        if key_password:
            self.add_secret(key_password)

    def _learn_field(self, field: str, key: str, value: JSON) -> None:
        """A config literal under a secret-looking name is a secret (lists: each item)."""
        for item in value if isinstance(value, list) else (value,):
            if not isinstance(item, str) or not item or "{{" in item:
                continue
            if self.is_sensitive_param(key):
                self.add_secret_param(key)
                self.add_secret(item)

    # -- predicates -------------------------------------------------------------------

    def is_sensitive_param(self, name: str) -> bool:
        """Whether a name looks secret (the config rule: see :data:`SENSITIVE_QUERY_KEYS`).

        Used to learn secrets from the config, never to mask what a server sent.

        Args:
            name: the decoded query key (or ``data`` field).

        Returns:
            True for the names in :data:`SENSITIVE_QUERY_KEYS` and their camelCase
            forms, names ending in ``_token``/``_key``/``_secret``/``-token``/``-key``
            (or, ignoring ``-``/``_``, in ``token``/``secret``/``password``/``apikey``),
            and names already masked by position; but not the pagination and ordering
            keys in ``_NOT_SECRET_KEYS`` (``page_token``, ``sort_key``...).
        """
        n = name.strip().lower()
        if n in self._secret_params:
            return True
        collapsed = _collapse(n)
        if collapsed in _NOT_SECRET_COLLAPSED:
            return False
        return (
            n in SENSITIVE_QUERY_KEYS
            or n.endswith(_KEY_SUFFIXES)
            or collapsed in _COLLAPSED_KEYS
            or collapsed.endswith(_COLLAPSED_SUFFIXES)
        )

    def is_sensitive_header(self, name: str) -> bool:
        """Whether a header name looks secret (the config rule: see :data:`SENSITIVE_HEADERS`).

        Args:
            name: the header name.

        Returns:
            True for :data:`SENSITIVE_HEADERS`, ``secret_headers``, and names containing
            ``token``, ``secret``, ``api-key``, ``apikey`` or ``password``.
        """
        n = name.strip().lower()
        return (
            n in SENSITIVE_HEADERS
            or n in self._secret_headers
            or any(part in n for part in _HEADER_PARTS)
        )

    def is_credential_param(self, name: str) -> bool:
        """Whether a query key or JSON field's value is masked by position.

        True for :data:`CREDENTIAL_KEYS` (any case, ``-``/``_``/camelCase) and the names
        the config marked secret (learned, ``secret_headers``, a query API key's name).
        """
        collapsed = _collapse(name.strip())
        return collapsed in _COLLAPSED_CREDENTIALS or collapsed in self._marked

    def is_credential_header(self, name: str) -> bool:
        """Whether a header's value is masked by position: :data:`CREDENTIAL_HEADERS`, or
        a header the config marked secret."""
        n = name.strip().lower()
        return n in CREDENTIAL_HEADERS or n in self._secret_headers

    def is_sensitive_field(self, name: str) -> bool:
        """Whether a JSON object key's value is masked by position (in :meth:`value`)."""
        return self.is_credential_param(name) or self.is_credential_header(name)

    # -- redaction --------------------------------------------------------------------

    def url(self, url: str) -> str:
        """Return ``url`` with its secrets masked and every other byte unchanged.

        Masks the userinfo password (``https://user:***REDACTED***@host``), the values
        of credential params (see :meth:`is_credential_param`), also in a ``k=v``
        fragment (OAuth's implicit flow puts ``access_token`` there), and every known
        secret anywhere in the URL, in any spelling. ``%20``, ``,``, ``:``, ``+`` and
        repeated keys come out as they went in.

        Args:
            url: an absolute or relative URL.

        Returns:
            The redacted URL.
        """
        spans = self._literals.spans(url)
        m = _USERINFO_RE.match(url)
        if m and ":" in m.group(2):
            start = m.start(2) + m.group(2).index(":") + 1
            if start < m.end(2):
                spans.append((start, m.end(2)))
        qpos, hpos = url.find("?"), url.find("#")
        if hpos != -1 and (qpos == -1 or hpos < qpos):
            qpos = -1
        if qpos != -1:
            end = hpos if hpos != -1 else len(url)
            spans += self._param_spans(url, qpos + 1, end)
        if hpos != -1:
            spans += self._param_spans(url, hpos + 1, len(url))
        return _apply(url, spans)

    def _param_spans(self, url: str, start: int, end: int) -> list[tuple[int, int]]:
        spans = []
        pos = start
        for part in url[start:end].split("&"):
            key, eq, value = part.partition("=")
            if eq and value and self.is_credential_param(unquote_plus(key)):
                spans.append((pos + len(key) + 1, pos + len(part)))
            pos += len(part) + 1
        return spans

    def headers(self, headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
        """Return a copy of ``headers`` safe to print.

        Credential headers (see :meth:`is_credential_header`) are masked entirely,
        except that a known authorization scheme is kept (``Bearer ***REDACTED***``).
        Other values go through :meth:`text` (a ``Link`` or ``Location`` header may
        carry a secret). Repeated names are joined with ``", "`` (RFC 9110 §5.3); the
        first spelling of a name is kept.

        Args:
            headers: a mapping (a dict, requests' ``CaseInsensitiveDict``) or pairs.

        Returns:
            A new dict.
        """
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        out: dict[str, str] = {}
        spelling: dict[str, str] = {}
        for name, raw in pairs:
            value = str(raw)
            credential = self.is_credential_header(name)
            safe = _mask_credential(value) if credential else self.text(value)
            key = spelling.setdefault(name.lower(), name)
            out[key] = f"{out[key]}, {safe}" if key in out else safe
        return out

    def _spans(self, text: str, *, truncated: bool = False) -> list[tuple[int, int]]:
        return self._literals.spans(text) + self._structure.spans(text, truncated=truncated)

    def text(self, text: str) -> str:
        """Return free text (a log line, an error body) with secrets masked.

        Every known secret in any spelling; the password of any ``scheme://user:pw@``;
        and the values of credential headers in ``Name: value`` lines, and of credential
        params and fields in ``key=value`` and ``"key": "value"`` (also single-quoted,
        and JSON-escaped inside JSON). Linear in the length of the text; for a long text
        that will be cut anyway, use :meth:`excerpt`.

        Args:
            text: any text.

        Returns:
            The redacted text.
        """
        return _apply(text, self._spans(text))

    def excerpt(self, text: str, limit: int) -> tuple[str, bool]:
        """The redacted first `limit` characters of `text`, and whether it was cut.

        Redacts a window somewhat longer than `limit` (enough for the longest spelling
        of any secret), then cuts: a secret that straddles the cut is masked whole, and
        no characters of one survive. Only the window is read, so a huge text costs
        what its excerpt costs.

        Args:
            text: any text.
            limit: how many characters of the redacted text to keep.

        Returns:
            ``(excerpt, cut)``; `cut` is False when the whole text fitted.
        """
        margin = self._literals.longest + 4096
        window = limit + margin
        while True:
            part = text[:window]
            truncated = window < len(text)
            spans = _merge(self._spans(part, truncated=truncated))
            redacted = _apply(part, spans)
            if not truncated:
                if len(redacted) <= limit:
                    return redacted, False
                break
            # The cut must fall before what a secret cut by the window could have left:
            # the redacted image of the window's first `safe` characters must reach
            # `limit`, unless a mask runs past `safe` (then nothing after it shows).
            safe = window - margin
            if spans and spans[-1][1] >= safe:
                break
            shown = safe - sum(e - s - len(MASK) for s, e in spans)
            if shown >= limit:
                break
            window *= 2
        cut = min(limit, len(redacted))
        for start in _mask_positions(redacted):  # never cut a mask in two
            if start < cut < start + len(MASK):
                cut = start + len(MASK)
                break
        return redacted[:cut], True

    def text_quoting(self, text: str, quoted: JSON) -> str:
        """Like :meth:`text`, for a message that may quote parts of the JSON `quoted`.

        An expression's error message quotes excerpts of the ``info`` it ran on, cut
        short with ``...``: a secret may appear there whole or cut in half, where no
        pattern finds it. So the values of credential fields in `quoted` are masked in
        the text literally, whole, and so is the start of one of them, or of a known
        secret, right before a ``...``. The message is bounded first
        (:data:`QUOTED_MESSAGE_CHARS`), so a long one cannot make this slow.
        """
        if len(text) > QUOTED_MESSAGE_CHARS:
            text = text[:QUOTED_MESSAGE_CHARS] + "..."
        values = self._sensitive_values(quoted)
        spans: list[tuple[int, int]] = []
        for value in values:
            start = text.find(value)
            while start != -1:
                spans.append((start, start + len(value)))
                start = text.find(value, start + len(value))
        text = _apply(text, spans + self._spans(text))
        candidates = sorted({*values, *self._literals.spellings})
        return _mask_cut_prefixes(text, candidates)

    def _sensitive_values(self, value: JSON) -> set[str]:
        """The texts of scalar values under credential keys anywhere in `value`."""
        found: set[str] = set()
        stack: list[tuple[JSON, bool]] = [(value, False)]
        while stack:
            item, sensitive = stack.pop()
            if isinstance(item, dict):
                stack.extend(
                    (v, isinstance(k, str) and self.is_sensitive_field(k)) for k, v in item.items()
                )
            elif isinstance(item, list):
                stack.extend((v, sensitive) for v in item)
            elif sensitive and isinstance(item, (str, int, float)) and not isinstance(item, bool):
                text = str(item)
                if len(text) >= MIN_LITERAL_LENGTH:
                    found.add(text)
                    found.add(orjson.dumps(text).decode()[1:-1])
        return found

    def value(self, obj: t.Any) -> t.Any:
        """Return a redacted deep copy of a JSON value (for display).

        Values of credential fields (see :meth:`is_sensitive_field`) are masked: strings
        and numbers become :data:`MASK`, while ``None``, ``""`` and booleans are kept
        (they hide nothing); objects under such a key are walked, lists have their
        scalars masked. Every other string goes through :meth:`text`, every key through
        the known secrets.

        Args:
            obj: a JSON value (dict, list, str, int, float, bool, None). Tuples are
                treated as lists; other objects are returned unchanged.

        Returns:
            The redacted copy.
        """
        return self._walk(obj, sensitive=False)

    def literals(self, obj: t.Any) -> t.Any:
        """Return a deep copy of a JSON value with only the known secrets masked.

        This is the rule for records. A record is data the API returned, so nothing is
        masked by name: a field called ``key``, ``token`` or ``access_token`` in a
        response is what the user asked for (an issue key, a cursor, a token the API
        lists), and :meth:`value` would destroy it. What is masked is every secret the
        tap holds from its config, in any spelling, wherever the server echoed it: the
        user's own credentials never land in a warehouse. Object keys are masked too.

        Args:
            obj: a JSON value; tuples are treated as lists, other objects returned as is.

        Returns:
            The copy (``obj`` itself when no secret is known).
        """
        literals = self._literals
        if literals.raw is None:
            return obj
        return _walk_literals(obj, literals)

    def mentions_secret(self, data: bytes | str) -> bool:
        """Whether a text (or UTF-8 bytes) contains any known secret, in any spelling.

        A cheap test before :meth:`literals`: one pass over a whole page instead of a
        copy of every record.
        """
        literals = self._literals
        if literals.raw is None:
            return False
        text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
        return literals.search(text)

    def is_secret(self, value: str) -> bool:
        """Whether a whole value is a registered secret (in any of its registered forms).

        The transport asks this of each query value before a request goes to an origin
        that gets no credentials (``tap_rhttp.http.origins``).
        """
        if not isinstance(value, str) or not value:
            return False
        return value in self._secrets or (0, len(value)) in self._literals.spans(value)

    # -- internals ----------------------------------------------------------------------

    def _walk(self, obj: t.Any, *, sensitive: bool) -> t.Any:
        if isinstance(obj, Mapping):
            literals = self._literals
            return {
                (_apply(k, literals.spans(k)) if isinstance(k, str) else k): self._walk(
                    v, sensitive=isinstance(k, str) and self.is_sensitive_field(k)
                )
                for k, v in obj.items()
            }
        if isinstance(obj, (list, tuple)):
            return [self._walk(v, sensitive=sensitive) for v in obj]
        if sensitive:
            if obj is None or isinstance(obj, bool) or obj == "":
                return obj
            if isinstance(obj, (str, int, float)):
                return MASK
        if isinstance(obj, str):
            return self.text(obj)
        return obj


#: How much of an expression's error message :meth:`Redactor.text_quoting` reads.
QUOTED_MESSAGE_CHARS = 8192


def _walk_literals(obj: t.Any, literals: _Literals) -> t.Any:
    if isinstance(obj, str):
        return _apply(obj, literals.spans(obj))
    if isinstance(obj, Mapping):
        return {
            (_apply(k, literals.spans(k)) if isinstance(k, str) else k): _walk_literals(v, literals)
            for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [_walk_literals(v, literals) for v in obj]
    return obj


def _mask_positions(text: str) -> t.Iterator[int]:
    start = text.find(MASK)
    while start != -1:
        yield start
        start = text.find(MASK, start + len(MASK))


_DOTS_RE = re.compile(r"\.{3,}")


def _mask_cut_prefixes(text: str, candidates: list[str]) -> str:
    """Mask the start of a candidate that an excerpt cut short right before ``...``.

    Each run of dots is checked at its start and where its last three dots begin (an
    excerpt's ``...`` follows whatever the cut left). The candidates are sorted, so
    whether some candidate starts with a text is one binary search; the positions where
    a candidate could start are found once for the whole text, by their first four
    characters (the last three before a ``...`` are tried one by one).
    """
    if not candidates or "..." not in text:
        return text
    longest = max(map(len, candidates))
    by_head = {c[:4] for c in candidates}
    heads = [i for i in range(len(text) - 3) if text[i : i + 4] in by_head]
    spans: list[tuple[int, int]] = []
    floor = 0
    for m in _DOTS_RE.finditer(text):
        for end in sorted({m.start(), m.end() - 3}):
            low = max(floor, end - longest)
            tries = heads[bisect.bisect_left(heads, low) : bisect.bisect_right(heads, end - 4)]
            for start in [*tries, *range(max(low, end - 3), end)]:
                if _is_prefix(text[start:end], candidates):
                    spans.append((start, end))
                    break
        floor = m.end()
    return _apply(text, spans)


def _is_prefix(part: str, candidates: list[str]) -> bool:
    if not part:
        return False
    k = bisect.bisect_left(candidates, part)
    return k < len(candidates) and candidates[k].startswith(part)


def _mask_credential(value: str) -> str:
    """Mask a credential, keeping a known auth scheme in front (``Bearer ***``)."""
    scheme, _, rest = value.strip().partition(" ")
    if rest.strip() and scheme.lower() in _AUTH_SCHEMES:
        return f"{scheme} {MASK}"
    return MASK


# --------------------------------------------------------------------------------------
# Logging


def _redact_record(record: logging.LogRecord, redactors: Iterable[Redactor]) -> None:
    """Redact one log record in place, keeping its structure when nothing is secret.

    The message is rendered (``record.msg % record.args``) and redacted; only when that
    changed it are ``msg`` and ``args`` replaced (so a structured formatter still finds
    singer-sdk's ``METRIC: %s`` point). A logged exception is formatted and redacted the
    same way: when its text held a secret, ``exc_text`` gets the redacted text and
    ``exc_info`` is cleared so that no formatter can render the raw traceback again.
    """
    try:
        message = record.getMessage()
    except Exception:  # a bad format string must not leak the args unredacted
        message = f"{record.msg!s} {record.args!r}"
        record.msg, record.args = message, ()
    safe = message
    for redactor in redactors:
        safe = redactor.text(safe)
    if safe != message:
        record.msg, record.args = safe, ()
    if record.exc_info and record.exc_info[0] is not None:
        text = record.exc_text or _FORMATTER.formatException(record.exc_info)
        redacted = text
        for redactor in redactors:
            redacted = redactor.text(redacted)
        if redacted != text:
            record.exc_text, record.exc_info = redacted, None
    elif record.exc_text:
        for redactor in redactors:
            record.exc_text = redactor.text(record.exc_text)
    if record.stack_info:
        for redactor in redactors:
            record.stack_info = redactor.text(record.stack_info)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts every record it sees with a :class:`Redactor`.

    :func:`install_log_redaction` is what the tap uses (it covers every logger and
    handler); this filter is for a handler built by hand. It never drops a record.

    Args:
        redactor: the redactor to apply.
        name: as for :class:`logging.Filter`.
    """

    def __init__(self, redactor: Redactor, name: str = "") -> None:
        super().__init__(name)
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; always True."""
        _redact_record(record, (self.redactor,))
        return True


_FORMATTER = logging.Formatter()
_INSTALLED: weakref.WeakSet[Redactor] = weakref.WeakSet()
_INSTALL_LOCK = threading.Lock()
_FACTORY: list[t.Callable[..., logging.LogRecord]] = []


def install_log_redaction(redactor: Redactor) -> None:
    """Redact every log record of the process with `redactor`, from now on.

    Wraps the log record factory (:func:`logging.setLogRecordFactory`), once per
    process: every record any logger makes, whatever handlers, levels and
    ``propagate`` a ``SINGER_SDK_LOG_CONFIG`` file sets up (and ``logging.lastResort``),
    is redacted by every installed redactor that is still alive (they are held weakly:
    the caller keeps its redactor, as the tap's run does), before any handler sees it.
    Calling it again with the same redactor does nothing.
    """
    with _INSTALL_LOCK:
        _INSTALLED.add(redactor)
        if _FACTORY:
            return
        previous = logging.getLogRecordFactory()
        _FACTORY.append(previous)

        def factory(*args: t.Any, **kwargs: t.Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            redactors = list(_INSTALLED)
            if redactors:
                _redact_record(record, redactors)
            return record

        logging.setLogRecordFactory(factory)


def build_redactor(
    specs: t.Sequence[t.Any],
    secrets: t.Mapping[str, t.Any] | None = None,
    *,
    proxies: t.Iterable[str] = (),
) -> Redactor:
    """One redactor that knows every secret of a config: its specs', its `secrets`' and
    the credentials of the proxies requests will use (``HTTP(S)_PROXY``...)."""
    redactor = Redactor(secret_headers=[h for spec in specs for h in spec.secret_headers])
    for value in (secrets or {}).values():
        if isinstance(value, str) and value:
            redactor.add_secret(value)
    for proxy in proxies:
        redactor.add_url_secrets(proxy)
    for spec in specs:
        redactor.learn(spec)
    redactor.seal()
    return redactor
