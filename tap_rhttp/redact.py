"""Secrets out of URLs, headers, free text and JSON before anything leaves the process.

Every string that may carry a credential passes through a :class:`Redactor` before it is
logged, raised (``errors.RHTTPError`` messages are promised safe to print), written to
STATE or put in a record. Two mechanisms work together:

* **Structural masking** by name: the password in a URL's userinfo, the values of
  sensitive query keys (``?token=***REDACTED***``, the key is kept), the values of
  sensitive headers (``Authorization``, ``Cookie``...), and the values of sensitive keys in
  JSON and in ``key=value`` / ``"key": "value"`` / ``Name: value`` text. This needs no
  knowledge of the secret itself.
* **Literal masking**: every secret the tap knows from its config (``add_secret``), in its
  raw, percent-encoded, HTML-escaped and JSON-escaped forms, is replaced wherever it
  appears, e.g. in a server's HTML error page that echoes our URL back.

Choices, and what was rejected:

* Secrets shorter than :data:`MIN_LITERAL_LENGTH` characters are *not* replaced in free
  text: masking every ``"ab"`` in a log would mangle innocent words and even reveal the
  secret by where the holes are. They are still masked where their position is known
  (auth headers, URL userinfo, sensitive query keys, sensitive JSON keys).
* URLs are not parsed and re-serialised (``urllib.parse`` would re-encode ``%20``, ``,``
  and ``:`` and turn spaces into ``+``); only the masked spans change, every other byte is
  kept, so a redacted URL still tells you exactly what was sent.
* Keys ending in ``_token``/``_key``/``_secret`` are sensitive, except a short list of
  well-known non-credentials (``page_token``, ``next_token``, ``sort_key``...) that are
  needed to debug pagination. A name given in ``secret_params`` always wins.
* In JSON and quoted pairs, ``code`` is *not* treated as sensitive (it is an error code in
  almost every error body); it is masked as a URL query key, where it is OAuth's
  authorization code.
* The redacted forms are for display. Do not redact a value that must round-trip (a
  pagination token in STATE): strip the secret parameter and re-add it from config instead.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import re
import threading
import typing as t
from collections.abc import Mapping
from urllib.parse import quote, quote_plus, unquote, unquote_plus

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
    def secrets(self) -> tuple[str, ...]: ...


class _Secretive(t.Protocol):
    """What :meth:`Redactor.learn` reads of a spec (the config layer's ``RequestSpec``)."""

    @property
    def auth(self) -> _Credentials | None: ...
    @property
    def header(self) -> HeaderPairs: ...
    @property
    def params(self) -> t.Mapping[str, JSON]: ...
    @property
    def proxy(self) -> str | None: ...
    @property
    def client_key_password(self) -> str | None: ...


__all__ = [
    "MASK",
    "MIN_LITERAL_LENGTH",
    "SENSITIVE_HEADERS",
    "SENSITIVE_QUERY_KEYS",
    "RedactingFilter",
    "Redactor",
]

MASK: str = "***REDACTED***"
"""What every masked value becomes."""

MIN_LITERAL_LENGTH: int = 4
"""Secrets shorter than this are masked only where their position is known."""

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
        "code",
        "credentials",
        "credential",
    }
)
"""Query keys (and JSON keys) whose values are masked; compared lower-case.

Also sensitive: any key ending in one of ``_token``, ``_key``, ``_secret``, ``-token``,
``-key``, ``-secret``, ``_password``; camelCase spellings of the keys above
(``accessToken``, ``clientSecret``: a second comparison ignores ``-`` and ``_``); and keys
that, so compared, end in ``token``, ``secret``, ``password``, ``passwd`` or ``apikey``
(``githubToken``). Exempt: pagination and ordering keys such as ``page_token``,
``pageToken``, ``next_token``, ``sort_key`` (opaque cursors, needed to debug paging).
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
"""Header names whose values are masked entirely; compared lower-case.

Also sensitive: any header name containing ``token``, ``secret``, ``api-key``, ``api_key``,
``apikey`` or ``password``.
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
_NOT_SECRET_FIELDS = frozenset({"code"})
# Authorization schemes shown in front of a masked credential: the scheme is not secret
# and tells you which auth was sent. An unknown first word is masked with the rest.
_AUTH_SCHEMES = frozenset(
    {"basic", "bearer", "digest", "token", "negotiate", "ntlm", "oauth", "hoba", "apikey"}
)


def _collapse(name: str) -> str:
    return name.replace("-", "").replace("_", "")


_COLLAPSED_KEYS = frozenset(_collapse(k) for k in SENSITIVE_QUERY_KEYS)
_COLLAPSED_SUFFIXES = ("token", "secret", "password", "passwd", "apikey")
_NOT_SECRET_COLLAPSED = frozenset(_collapse(k) for k in _NOT_SECRET_KEYS)

_USERINFO_RE = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.\-]*:)?//)([^/?#]*)@")
# user:password@ of a URL inside free text ("proxy http://u:pw@proxy:3128 refused").
_TEXT_USERINFO_RE = re.compile(r"(//[^/?#\s:@\"'<>]*):([^/?#\s@\"'<>]+)@")
# key=value in free text: an echoed URL, a form body, a cookie string. An unquoted value
# stops at a backtick, which never appears raw in a URL: r.http's envelope quotes the URL
# in backticks ("of `http://h/x?token=***`: status code 500.").
_KV_RE = re.compile(
    r"""(?<![A-Za-z0-9_.\-])(?P<k>[A-Za-z0-9_.\-]{1,100})=
        (?P<v>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|[^&\s"'<>\#;,`]+)""",
    re.VERBOSE,
)
# "key": "value" (JSON), 'key': 'value' (a Python repr), \"key\": \"value\" (JSON in JSON).
_PAIR_RE = re.compile(
    r"""(?P<kq>\\?["'])(?P<k>[A-Za-z0-9_.\-]{1,100})(?P=kq)(?P<mid>[ \t]*:[ \t]*)
        (?P<vq>\\?["'])(?P<v>(?:(?!(?P=vq))[^\\\n]|\\.)*?)(?P=vq)""",
    re.VERBOSE,
)
# Name: value header lines. Any sensitive name at a line start; inline, only exact names
# from SENSITIVE_HEADERS (so "invalid token: expired" in prose is left alone).
_HEADER_LINE_RE = re.compile(
    r"(?P<k>(?<![A-Za-z0-9_\-])[A-Za-z][A-Za-z0-9_\-]{0,100})(?P<mid>[ \t]*:[ \t]*)"
    r"(?P<v>[^\r\n]*)"
)


class Redactor:
    """Masks secrets in URLs, headers, free text and JSON values.

    Build one per tap run from the config (every value marked secret), share it, and
    pass every string that may leave the process through it. Thread-safe: secrets may be
    added while other threads redact.

    Very short secrets (under :data:`MIN_LITERAL_LENGTH` characters) are not replaced in
    free text, because masking every occurrence of two or three common characters would
    destroy innocent text; they are still masked where their position is known
    structurally (auth headers, URL userinfo, sensitive query keys and JSON keys).

    Args:
        secrets: literal secret values (tokens, passwords, keys).
        secret_headers: extra header names whose values are always masked.
        secret_params: extra query/JSON key names whose values are always masked.
    """

    def __init__(
        self,
        secrets: Iterable[str] = (),
        *,
        secret_headers: Iterable[str] = (),
        secret_params: Iterable[str] = (),
    ) -> None:
        self._lock = threading.Lock()
        self._literals: set[str] = set()
        self._literal_re: re.Pattern[str] | None = None
        self._secret_headers = frozenset(h.strip().lower() for h in secret_headers)
        self._secret_params = frozenset(p.strip().lower() for p in secret_params)
        for secret in secrets:
            self.add_secret(secret)

    def __repr__(self) -> str:
        """Say how much is known, never what."""
        return f"<Redactor: {len(self._literals)} literal forms>"

    # -- registration -----------------------------------------------------------------

    def add_secret(self, value: str) -> None:
        """Register a secret so that it is masked wherever it appears.

        Its encoded forms are registered too, so an echoed URL, HTML page or JSON
        document is caught: ``quote`` (with and without ``/`` safe, and with lower-case
        hex), ``quote_plus``, HTML-escaped and JSON-escaped. Empty strings are ignored;
        short ones are only masked structurally (see the class docstring).

        Args:
            value: the secret, as it appears in the config.
        """
        if not isinstance(value, str) or not value or len(value) < MIN_LITERAL_LENGTH:
            return
        forms = {
            value,
            quote(value, safe=""),
            quote(value),
            quote_plus(value),
            quote_plus(value, safe="/"),
            html.escape(value),
            json.dumps(value)[1:-1],
        }
        forms |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), f) for f in forms}
        # A secret that is part of the mask would make redaction grow on each pass.
        forms = {f for f in forms if f and f not in MASK}
        with self._lock:
            if forms <= self._literals:
                return
            self._literals |= forms
            ordered = sorted(self._literals, key=lambda s: (-len(s), s))
            self._literal_re = re.compile("|".join(re.escape(s) for s in ordered))

    def add_basic_credentials(self, user: str, password: str) -> None:
        """Register HTTP Basic credentials (RFC 7617).

        Registers the password and ``base64("user:password")``, which is what an
        ``Authorization: Basic`` header carries.

        Args:
            user: the user name (not itself treated as secret).
            password: the password.
        """
        if not password:
            return
        self.add_secret(password)
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self.add_secret(token)

    def add_url_secrets(self, url: str) -> None:
        """Register the secrets a URL carries: its userinfo password and sensitive params.

        :meth:`url` masks these by position, but a server may echo them anywhere (an
        HTML error page quoting the request, a JSON body). Call this with every URL
        before it is requested, so a secret written in a config ``url``, or carried by
        a redirect target or a next-page link, is known as a literal too. Each value is
        registered as it appears and percent-decoded; short ones only structurally
        (see :data:`MIN_LITERAL_LENGTH`).

        Args:
            url: an absolute or relative URL.
        """
        m = _USERINFO_RE.match(url)
        if m and ":" in m.group(2):
            user, _, password = m.group(2).partition(":")
            for form in {password, unquote(password)}:
                self.add_secret(form)
            # requests turns URL userinfo into an Authorization: Basic header.
            self.add_basic_credentials(unquote(user), unquote(password))
        base, _, fragment = url.partition("#")
        query = base.partition("?")[2]
        for part in [*query.split("&"), *fragment.split("&")]:
            key, eq, value = part.partition("=")
            if eq and value and self.is_sensitive_param(unquote_plus(key)):
                for form in {value, unquote_plus(value)}:
                    self.add_secret(form)

    def learn(self, spec: _Secretive) -> None:
        """Register every secret a spec carries (call it again once templates render).

        Auth values (and, for basic/digest, the base64 credentials as sent), sensitive
        header values (and the credential after an auth scheme, ``Bearer <token>``),
        the values of sensitive params, the proxy's user info and the client key's
        password.
        """
        if spec.auth is not None:
            for secret in spec.auth.secrets():
                self.add_secret(secret)
            if spec.auth.type in ("basic", "digest"):
                self.add_basic_credentials(spec.auth.user or "", spec.auth.password or "")
        for name, value in spec.header:
            if value and self.is_sensitive_header(name):
                self.add_secret(value)
                scheme, _, credential = value.partition(" ")
                if credential.strip() and scheme.isalpha():
                    self.add_secret(credential.strip())
        for key, value in spec.params.items():
            if isinstance(value, str) and value and self.is_sensitive_param(key):
                self.add_secret(value)
        if spec.proxy:  # its user info: the password, and the Proxy-Authorization it makes
            self.add_url_secrets(spec.proxy)
        if spec.client_key_password:
            self.add_secret(spec.client_key_password)

    # -- predicates -------------------------------------------------------------------

    def is_sensitive_param(self, name: str) -> bool:
        """Whether a query key's value must be masked (case-insensitive).

        Args:
            name: the decoded query key.

        Returns:
            True for the names in :data:`SENSITIVE_QUERY_KEYS` and their camelCase
            forms, names ending in ``_token``/``_key``/``_secret``/``-token``/``-key``
            (or, ignoring ``-``/``_``, in ``token``/``secret``/``password``/``apikey``),
            and any name given as ``secret_params``; but not the pagination and
            ordering keys in ``_NOT_SECRET_KEYS`` (``page_token``, ``sort_key``...).
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
        """Whether a header's value must be masked (case-insensitive).

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

    def is_sensitive_field(self, name: str) -> bool:
        """Whether a JSON object key's value must be masked (case-insensitive).

        Args:
            name: the object key.

        Returns:
            True when the key is a sensitive query key (except ``code``, an error code
            in most bodies, unless listed in ``secret_params``), a name in
            :data:`SENSITIVE_HEADERS`, or a name given as ``secret_headers``. The
            substring rule for headers is not used (``total_tokens`` is no secret).
        """
        n = name.strip().lower()
        if n in _NOT_SECRET_FIELDS and n not in self._secret_params:
            return False
        return self.is_sensitive_param(n) or n in SENSITIVE_HEADERS or n in self._secret_headers

    # -- redaction --------------------------------------------------------------------

    def url(self, url: str) -> str:
        """Return ``url`` with its secrets masked and every other byte unchanged.

        Masks the userinfo password (``https://user:***REDACTED***@host``), the values
        of sensitive query keys, also in a ``k=v`` fragment (OAuth's implicit flow puts
        ``access_token`` there), and every registered secret anywhere in the URL.
        Nothing is decoded and re-encoded: ``%20``, ``,``, ``:``, ``+`` and repeated keys
        come out as they went in.

        Args:
            url: an absolute or relative URL.

        Returns:
            The redacted URL.
        """
        out = url
        m = _USERINFO_RE.match(out)
        if m and ":" in m.group(2):
            user, _, password = m.group(2).partition(":")
            if password:
                out = f"{m.group(1)}{user}:{MASK}@{out[m.end() :]}"
        out = self._mask_url_params(out)
        return self._mask_literals(out)

    def headers(self, headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
        """Return a copy of ``headers`` safe to print.

        Sensitive headers (see :meth:`is_sensitive_header`) are masked entirely, except
        that a known authorization scheme is kept (``Bearer ***REDACTED***``). Other
        values go through :meth:`text` (a ``Link`` or ``Location`` header may carry a
        token in its URL). Repeated names are joined with ``", "`` (RFC 9110 §5.3); the
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
            safe = _mask_credential(value) if self.is_sensitive_header(name) else self.text(value)
            key = spelling.setdefault(name.lower(), name)
            out[key] = f"{out[key]}, {safe}" if key in out else safe
        return out

    def text(self, text: str) -> str:
        """Return free text (a log line, an error body) with secrets masked.

        Registered secrets are replaced first (longest first, one precompiled regex),
        then the password of any ``scheme://user:password@`` URL, then values in
        ``key=value``, ``"key": "value"`` (also single-quoted, and JSON escaped inside
        JSON) and ``Name: value`` header lines for sensitive names.

        Args:
            text: any text.

        Returns:
            The redacted text.
        """
        out = self._mask_literals(text)
        if "@" in out:
            out = _TEXT_USERINFO_RE.sub(rf"\1:{MASK}@", out)
        if "=" in out:
            out = _sub_sensitive(_KV_RE, out, self._kv_sub)
        if ":" in out:
            out = _sub_sensitive(_PAIR_RE, out, self._pair_sub)
            out = _sub_sensitive(_HEADER_LINE_RE, out, self._header_line_sub)
        return out

    def text_quoting(self, text: str, quoted: JSON) -> str:
        """Like :meth:`text`, for a message that may quote parts of the JSON `quoted`.

        An expression's error message quotes excerpts of the ``info`` it ran on, cut
        short with ``...``: a secret the server sent under a sensitive key (an echoed
        ``access_token``) may appear there whole or cut in half, where no pattern finds
        it. The values of sensitive fields in `quoted` are masked in the text literally,
        whole, and the start of one right before a ``...``. Linear in the number of those
        values for each ``...``, so a body full of sensitive fields cannot make a message
        slow.
        """
        return _mask_quoted(self.text(text), self._sensitive_values(quoted))

    def _sensitive_values(self, value: JSON) -> set[str]:
        """The texts of scalar values under sensitive keys anywhere in `value`."""
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
        """Return a redacted deep copy of a JSON value.

        Values of sensitive keys (see :meth:`is_sensitive_field`) are masked: strings
        and numbers become :data:`MASK`, while ``None``, ``""`` and booleans are kept
        (they hide nothing); objects under a sensitive key are walked, lists have their
        scalars masked. Every other string goes through :meth:`text`.

        Args:
            obj: a JSON value (dict, list, str, int, float, bool, None). Tuples are
                treated as lists; other objects are returned unchanged.

        Returns:
            The redacted copy.
        """
        return self._walk(obj, sensitive=False)

    def literals(self, obj: t.Any) -> t.Any:
        """Return a deep copy of a JSON value with only the registered secrets masked.

        This is the rule for records. A record is data the API returned, so nothing is
        masked by name: a field called ``key``, ``token`` or ``signature`` in a response
        is what the user asked for (an issue key, a cursor, a commit signature), and
        :meth:`value` would destroy it. What is masked is every secret the tap holds
        from its config (in all its encoded forms), wherever the server echoed it: the
        user's own credentials never land in a warehouse. Object keys are masked too.

        Args:
            obj: a JSON value; tuples are treated as lists, other objects returned as is.

        Returns:
            The copy (``obj`` itself when no secret is registered).
        """
        pattern = self._literal_re
        if pattern is None:
            return obj
        return self._walk_literals(obj, pattern)

    def mentions_secret(self, data: bytes | str) -> bool:
        """Whether a text (or UTF-8 bytes) contains any registered secret, in any form.

        A cheap test before :meth:`literals`: one regex search over a whole page instead
        of a copy of every record.
        """
        pattern = self._literal_re
        if pattern is None:
            return False
        text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
        return pattern.search(text) is not None

    def is_secret(self, value: str) -> bool:
        """Whether a whole value is a registered secret (in any of its registered forms).

        The transport asks this of each query value before a request goes to an origin
        that gets no credentials (``tap_rhttp.http.origins``).
        """
        return isinstance(value, str) and value in self._literals

    # -- internals ----------------------------------------------------------------------

    def _walk_literals(self, obj: t.Any, pattern: re.Pattern[str]) -> t.Any:
        if isinstance(obj, str):
            return pattern.sub(MASK, obj)
        if isinstance(obj, Mapping):
            return {
                (pattern.sub(MASK, k) if isinstance(k, str) else k): self._walk_literals(v, pattern)
                for k, v in obj.items()
            }
        if isinstance(obj, (list, tuple)):
            return [self._walk_literals(v, pattern) for v in obj]
        return obj

    def _walk(self, obj: t.Any, *, sensitive: bool) -> t.Any:
        if isinstance(obj, Mapping):
            return {
                k: self._walk(v, sensitive=isinstance(k, str) and self.is_sensitive_field(k))
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

    def _mask_literals(self, text: str) -> str:
        pattern = self._literal_re
        return pattern.sub(MASK, text) if pattern is not None else text

    def _mask_url_params(self, url: str) -> str:
        qpos = url.find("?")
        hpos = url.find("#")
        if hpos != -1 and (qpos == -1 or hpos < qpos):
            qpos = -1
        if qpos != -1:
            end = hpos if hpos != -1 else len(url)
            url = url[: qpos + 1] + self._mask_params(url[qpos + 1 : end]) + url[end:]
            hpos = url.find("#", qpos)
        if hpos != -1 and "=" in url[hpos:]:
            url = url[: hpos + 1] + self._mask_params(url[hpos + 1 :])
        return url

    def _mask_params(self, query: str) -> str:
        parts = query.split("&")
        for i, part in enumerate(parts):
            key, eq, value = part.partition("=")
            if eq and value and self.is_sensitive_param(unquote_plus(key)):
                parts[i] = f"{key}={MASK}"
        return "&".join(parts)

    def _kv_sub(self, m: re.Match[str]) -> str | None:
        key, value = m.group("k"), m.group("v")
        if not self.is_sensitive_param(key):
            return None
        if value[:1] in "\"'" and len(value) >= 2:
            return f"{key}={value[0]}{MASK}{value[-1]}"
        return f"{key}={MASK}"

    def _pair_sub(self, m: re.Match[str]) -> str | None:
        if not m.group("v") or not self.is_sensitive_field(m.group("k")):
            return None
        kq, vq = m.group("kq"), m.group("vq")
        mask = _mask_credential(m.group("v"))
        return f"{kq}{m.group('k')}{kq}{m.group('mid')}{vq}{mask}{vq}"

    def _header_line_sub(self, m: re.Match[str]) -> str | None:
        name, value = m.group("k"), m.group("v")
        if not value.strip():
            return None
        start = m.start()
        line_start = m.string.rfind("\n", 0, start) + 1
        at_line_start = not m.string[line_start:start].strip()
        n = name.lower()
        known = n in SENSITIVE_HEADERS or n in self._secret_headers
        if not (known or (at_line_start and self.is_sensitive_header(n))):
            return None
        return f"{name}{m.group('mid')}{_mask_credential(value)}"


def _sub_sensitive(
    pattern: re.Pattern[str], text: str, replace: t.Callable[[re.Match[str]], str | None]
) -> str:
    """Like ``pattern.sub``, but a match ``replace`` declines (None) consumes only its key.

    A non-sensitive ``href="...?token=x"`` or ``"body": "{\\"token\\": ...}"`` must not
    swallow the sensitive pair inside its value, so the search resumes right after the
    declined key instead of after the whole match.
    """
    out: list[str] = []
    last = pos = 0
    while (m := pattern.search(text, pos)) is not None:
        new = replace(m)
        if new is None:
            pos = m.end("k")
            continue
        out.append(text[last : m.start()])
        out.append(new)
        last = pos = m.end()
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


def _mask_quoted(text: str, secrets: t.Collection[str]) -> str:
    """Mask each secret in `text`, and the start of one that an excerpt cut short.

    An excerpt ends in ``...``; the text right before it may be a secret's first
    characters.
    """
    for secret in sorted(secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    longest = max(map(len, secrets), default=0)
    end = text.rfind("...")
    while end > 0:
        window = max(0, end - longest)
        cut = end
        for secret in secrets:
            start = text.find(secret[0], window, cut)
            while start != -1:
                if secret.startswith(text[start:end]):
                    cut = start
                    break
                start = text.find(secret[0], start + 1, cut)
        if cut < end:
            text = text[:cut] + MASK + text[end:]
        end = text.rfind("...", 0, cut)
    return text


def _mask_credential(value: str) -> str:
    """Mask a credential, keeping a known auth scheme in front (``Bearer ***``)."""
    scheme, _, rest = value.strip().partition(" ")
    if rest.strip() and scheme.lower() in _AUTH_SCHEMES:
        return f"{scheme} {MASK}"
    return MASK


class RedactingFilter(logging.Filter):
    """A logging filter that redacts every record it sees with a :class:`Redactor`.

    The message is rendered (``record.msg % record.args``), redacted, and stored back
    with ``record.args = ()``. A logged exception is formatted into ``record.exc_text``,
    redacted, and ``record.exc_info`` is cleared so that no formatter can render the raw
    traceback again (standard formatters print ``exc_text``). ``stack_info`` is redacted
    too. It never drops a record.

    Attach it to *handlers* (a logger's own filters do not see records propagated from
    child loggers)::

        for handler in logging.getLogger().handlers:
            handler.addFilter(RedactingFilter(redactor))

    Args:
        redactor: the redactor to apply.
        name: as for :class:`logging.Filter`.
    """

    def __init__(self, redactor: Redactor, name: str = "") -> None:
        super().__init__(name)
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place.

        Args:
            record: the log record.

        Returns:
            Always True: redaction never suppresses a record.
        """
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not leak the args unredacted
            message = f"{record.msg!s} {record.args!r}"
        record.msg = self.redactor.text(message)
        record.args = ()
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = _FORMATTER.formatException(record.exc_info)
        record.exc_info = None
        if record.exc_text:
            record.exc_text = self.redactor.text(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor.text(record.stack_info)
        return True


_FORMATTER = logging.Formatter()


def build_redactor(
    specs: t.Sequence[t.Any], secrets: t.Mapping[str, t.Any] | None = None
) -> Redactor:
    """One redactor that knows every secret of a config: its specs' and its `secrets`."""
    redactor = Redactor(
        secret_headers=[h for spec in specs for h in spec.secret_headers],
        secret_params=[
            spec.auth.name
            for spec in specs
            if spec.auth
            and spec.auth.type == "api_key"
            and spec.auth.location == "query"
            and spec.auth.name
        ],
    )
    for value in (secrets or {}).values():
        if isinstance(value, str) and value:
            redactor.add_secret(value)
    for spec in specs:
        redactor.learn(spec)
    return redactor
