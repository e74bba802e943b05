"""``{{ expr }}`` templates in a spec's url, params, header, data, json, auth, proxy and key
password.

The seed page's fan-out examples are ReQL functions around ``r.http``::

    r.expr([1, 2, 3]).map(lambda i: r.http('httpbin.org/get', params={'user': i}))
    r.table('data').map(lambda row: r.http('httpbin.org/put', method='PUT', data=row))

In a JSON config the function body becomes templates: ``"params": {"user": "{{ item }}"}``
with ``for_each``, ``"data": "{{ row }}"`` with ``parent``. Each placeholder is an
expression of the same sandboxed language as ``page`` (see ``expressions``), compiled
once at config load against exactly the names the spec makes available:

- ``item``: the current ``for_each`` value (only with ``for_each``);
- ``row``: the current parent record (only with ``parent``);
- ``window``: the current time window (only with ``windows``; see ``windows``);
- ``bookmark``: the stream's bookmark, or ``start_value`` (only with ``replication_key``);
- ``config``: the non-secret top-level settings;
- ``secrets``: the top-level ``secrets`` object (its values are redacted everywhere);
- ``env``: the process environment, only with ``template_env: true``.

A string that is exactly one placeholder keeps the JSON type of its result (``"{{ row }}"``
sends the whole object; ``"{{ item }}"`` stays a number). Placeholders inside a longer
string are formatted as text (null as empty, numbers in shortest form, objects as JSON)
and, inside a URL, percent-encoded so a value can never change the URL's structure: ``/``,
``?``, ``#``, ``&`` and ``%`` are escaped, and a rendered URL whose path holds a ``.`` or
``..`` segment (``/users/{{ item }}/repos`` with ``item`` = ``..``, also spelt ``%2e%2e``)
is rejected for that chain, since HTTP clients and servers remove dot segments (RFC 3986
§5.2.4) and ``/users/../repos`` would become ``/repos``. Encoding the dots instead was
rejected: ``%2E`` is the same unreserved character, which a normaliser decodes and removes
all the same.

Rejected: Jinja. It is a second, much larger language with its own escapes, filters and
sandbox story; users already write ReQL for ``page``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing as t
from urllib.parse import quote

from tap_rhttp.config.checks import (
    check_credentials,
    check_data,
    json_content_type,
    plain_json,
    quote_value,
)
from tap_rhttp.config.options import OPTIONS
from tap_rhttp.errors import ConfigError, ExpressionError
from tap_rhttp.expr import Expression, compile_expression
from tap_rhttp.formats.readers import dump_json
from tap_rhttp.http.auth import Credentials
from tap_rhttp.http.urls import SCHEMES, url_scheme

if t.TYPE_CHECKING:
    from tap_rhttp.config.spec import RequestSpec
    from tap_rhttp.types import JSON

_URL_PATH_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]*(?P<path>[^?#]*)")
TEMPLATE_FIELDS = (
    "url",
    "params",
    "header",
    "data",
    "json",
    "auth",
    "proxy",
    "client_key_password",
)


def has_placeholder(value: JSON) -> bool:
    """True when a JSON value contains a ``{{`` (a placeholder, or an unclosed one) anywhere."""
    if isinstance(value, str):
        return "{{" in value
    if isinstance(value, dict):
        return any(has_placeholder(v) for v in value.values())
    if isinstance(value, list):
        return any(has_placeholder(v) for v in value)
    return False


def as_text(value: JSON) -> str:
    """A template result placed inside a longer string."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    return dump_json(value).decode()


@dataclasses.dataclass(frozen=True)
class StringTemplate:
    """One string with placeholders, compiled.

    ``parts`` alternates literal text and expressions; ``whole`` is set when the string
    is exactly one placeholder (the result keeps its JSON type).
    """

    source: str
    parts: tuple[str | Expression, ...]
    url: bool = False

    @property
    def whole(self) -> Expression | None:
        if len(self.parts) == 1 and isinstance(self.parts[0], Expression):
            return self.parts[0]
        return None

    def render(self, env: t.Mapping[str, JSON], now: float | None = None) -> JSON:
        whole = self.whole
        if whole is not None:
            return whole.evaluate(env, now=now)
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                text = as_text(part.evaluate(env, now=now))
                out.append(quote(text, safe="") if self.url else text)
        return "".join(out)


def placeholder_end(source: str, start: int) -> int:
    """Where the placeholder whose expression starts at `start` closes (the index of its
    ``}}``), or -1 when it never does.

    The closing ``}}`` is the first one outside the expression's own string literals and
    brackets, so ``{{ {'a': {'b': 1}} }}`` is one placeholder whose expression is a nested
    dict literal.
    """
    depth = 0
    quote_char = ""
    index = start
    length = len(source)
    while index < length:
        char = source[index]
        if quote_char:
            if char == "\\":
                index += 1
            elif char == quote_char:
                quote_char = ""
        elif char in "'\"":
            quote_char = char
        elif char in "([{":
            depth += 1
        elif char in ")]":
            depth = max(depth - 1, 0)
        elif char == "}":
            if depth == 0 and source.startswith("}}", index):
                return index
            depth = max(depth - 1, 0)
        index += 1
    return -1


def compile_string(
    source: str, *, path: str, names: t.Collection[str], url: bool = False
) -> StringTemplate | str:
    """Compile one string; a string without placeholders is returned as is.

    Every ``{{`` opens a placeholder, which :func:`placeholder_end` closes; a ``}}``
    outside any placeholder is literal text (the end of a nested JSON object in a body
    string). A literal ``{{`` is written as a placeholder: ``{{ '{{' }}``.
    """
    if "{{" not in source:
        return source
    parts: list[str | Expression] = []
    position = 0
    while (opening := source.find("{{", position)) != -1:
        closing = placeholder_end(source, opening + 2)
        if closing == -1:
            raise ConfigError(
                path,
                f"unbalanced `{{{{` / `}}}}` in {source!r}: a `{{{{` at character "
                f"{opening + 1} is never closed (write a literal `{{{{` as `{{{{ '{{{{' }}}}`).",
                value=source,
            )
        if opening > position:
            parts.append(source[position:opening])
        text = source[opening + 2 : closing].strip()
        if not text:
            raise ConfigError(path, f"empty placeholder `{{{{}}}}` in {source!r}.", value=source)
        parts.append(compile_expression(text, path=path, names=tuple(names)))
        position = closing + 2
    if position < len(source):
        parts.append(source[position:])
    return StringTemplate(source, tuple(parts), url=url)


def compile_value(value: JSON, *, path: str, names: t.Collection[str]) -> JSON:
    """Compile every string inside a JSON value (keys stay literal)."""
    if isinstance(value, str):
        return compile_string(value, path=path, names=names)
    if isinstance(value, dict):
        return {k: compile_value(v, path=f"{path}.{k}", names=names) for k, v in value.items()}
    if isinstance(value, list):
        return [compile_value(v, path=f"{path}[{i}]", names=names) for i, v in enumerate(value)]
    return value


def render_value(value: JSON, env: t.Mapping[str, JSON], now: float | None = None) -> JSON:
    """Render a compiled JSON value."""
    if isinstance(value, StringTemplate):
        return value.render(env, now)
    if isinstance(value, dict):
        return {k: render_value(v, env, now) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, env, now) for v in value]
    return value


def referenced_names(value: JSON) -> set[str]:
    """Which names a compiled value's placeholders could read."""
    found: set[str] = set()
    if isinstance(value, StringTemplate):
        for part in value.parts:
            if isinstance(part, Expression):
                found |= {name for name in part.names if part.reads(name)}
    elif isinstance(value, dict):
        for v in value.values():
            found |= referenced_names(v)
    elif isinstance(value, list):
        for v in value:
            found |= referenced_names(v)
    return found


def templates_read(spec: RequestSpec, name: str) -> bool:
    """Whether any placeholder of the spec could read `name` (``bookmark``, say): when
    none does, every rendering gives the same spec whatever `name` is bound to."""

    def reads(value: t.Any) -> bool:
        if isinstance(value, (tuple, list)):  # (a header's compiled (name, value) pairs)
            return any(reads(v) for v in value)
        if isinstance(value, dict):
            return any(reads(v) for v in value.values())
        return name in referenced_names(value)

    return any(reads(compiled) for compiled in spec.templates.values())


#: Names whose values come from the server: a template reading them renders data.
DATA_NAMES = frozenset({"row", "bookmark", "window"})


def template_sources(
    spec: RequestSpec,
) -> tuple[frozenset[tuple[str, str]], frozenset[tuple[str, str]]]:
    """Which templated values are server data, and which are read from ``secrets``.

    Returns two sets of ``(field, key)`` pairs (key ``""`` for a whole ``url`` or a
    ``data`` that is one template): the values whose placeholders read only what a
    server sent (``row``, ``bookmark``: a cursor from a parent row is no secret because
    of the name it is sent under), and the values that read ``secrets`` (their names
    are secret, whatever they look like). For ``Redactor.learn``.
    """
    data: set[tuple[str, str]] = set()
    secret: set[tuple[str, str]] = set()

    def classify(field: str, key: str, value: JSON) -> None:
        names = referenced_names(value)
        if "secrets" in names:
            secret.add((field, key))
        elif names and names <= DATA_NAMES | {"config"} and names & DATA_NAMES:
            data.add((field, key))

    compiled = spec.templates
    if "url" in compiled:
        classify("url", "", compiled["url"])
    for key, value in (compiled.get("params") or {}).items():
        classify("params", key, value)
    for name, value in compiled.get("header") or ():
        classify("header", name, value)
    for field in ("data", "json"):
        body = compiled.get(field)
        if isinstance(body, dict):
            stack = list(body.items())
            while stack:
                key, value = stack.pop()
                if isinstance(value, dict):
                    stack.extend(value.items())
                else:
                    classify(field, key, value)
        elif body is not None:
            classify(field, "", body)
    return frozenset(data), frozenset(secret)


def _render_field(compiled: JSON, env: t.Mapping[str, JSON], path: str, now: float | None) -> JSON:
    try:
        return render_value(compiled, env, now)
    except ExpressionError as exc:
        raise type(exc)(f"{path}: in a `{{{{ }}}}` template: {exc}") from None


def render_spec(
    spec: RequestSpec, env: t.Mapping[str, JSON], *, now: float | None = None
) -> RequestSpec:
    """The spec with every template rendered for one item/row, and re-checked.

    Raises:
        ExpressionError: a placeholder failed (the message names the config path).
        ConfigError: a rendered value is not allowed where it lands (bad URL scheme,
            a header with CR/LF, form data that is not flat...).
    """
    compiled = spec.templates
    if not compiled:
        return spec
    changes: dict[str, JSON] = {}
    if "url" in compiled:
        url = _render_field(compiled["url"], env, f"{spec.path}.url", now)
        changes["url"] = OPTIONS["url"].check(as_text(url), f"{spec.path}.url", "url")
        check_no_dot_segments(changes["url"], f"{spec.path}.url")
    if "params" in compiled:
        params = _render_field(compiled["params"], env, f"{spec.path}.params", now)
        changes["params"] = OPTIONS["params"].check(params, f"{spec.path}.params", "params")
    if "header" in compiled:
        rendered = {
            name: _render_field(value, env, f"{spec.path}.header.{name}", now)
            for name, value in compiled["header"]
        }
        changes["header"] = OPTIONS["header"].check(rendered, f"{spec.path}.header", "header")
    if "data" in compiled:
        data = _render_field(compiled["data"], env, f"{spec.path}.data", now)
        as_json = isinstance(data, (dict, list)) and json_content_type(spec.header)
        changes["data"] = check_data(spec.method, data, f"{spec.path}.data", as_json=as_json)
    if "json" in compiled:
        body = _render_field(compiled["json"], env, f"{spec.path}.json", now)
        changes["json"] = check_data(spec.method, body, f"{spec.path}.json", as_json=True)
    for name in ("proxy", "client_key_password"):
        if name in compiled:
            text = as_text(_render_field(compiled[name], env, f"{spec.path}.{name}", now))
            changes[name] = OPTIONS[name].check(text, f"{spec.path}.{name}", name)
    if "auth" in compiled and spec.auth is not None:
        fields = _render_field(compiled["auth"], env, f"{spec.path}.auth", now)
        values: dict[str, t.Any] = {
            k: as_text(v) if v is not None else None for k, v in fields.items()
        }
        auth = dataclasses.replace(spec.auth, **values)
        assert isinstance(auth, Credentials)
        if auth.type == "oauth2" and url_scheme(auth.token_url or "") not in SCHEMES:
            raise ConfigError(
                f"{spec.path}.auth.token_url",
                f"the rendered `auth.token_url` {quote_value(auth.token_url)} should be an "
                "http:// or https:// URL.",
                value=auth.token_url,
            )
        changes["auth"] = check_credentials(auth, f"{spec.path}.auth")
    return dataclasses.replace(spec, **changes)


def check_no_dot_segments(url: str, path: str) -> None:
    """A rendered URL may not hold a ``.`` or ``..`` path segment (see the module docstring).

    Raises:
        ConfigError: it does; the message names the config path and the segment.
    """
    match = _URL_PATH_RE.match(url)
    if match is None:
        return
    for segment in match.group("path").split("/"):
        if segment and re.sub("%2e", ".", segment, flags=re.IGNORECASE) in (".", ".."):
            raise ConfigError(
                path,
                f"the rendered `url` has a {quote_value(segment)} path segment, which would "
                "change which resource is requested (`..` removes the segment before it); "
                "a template value may not do that.",
                value=segment,
                allowed="path segments other than `.` and `..`",
            )


# --------------------------------------------------------------------------- environments


def template_context(config: t.Mapping[str, JSON]) -> dict[str, JSON]:
    """`config` (the non-secret top-level settings) and `secrets`, for every template."""
    settings = {
        k: plain_json(v) for k, v in config.items() if k not in ("streams", "defaults", "secrets")
    }
    return {"config": settings, "secrets": dict(config.get("secrets") or {})}


def template_env(
    spec: RequestSpec,
    context: t.Mapping[str, JSON],
    *,
    item: JSON = None,
    row: JSON = None,
    bookmark: JSON = None,
    window: JSON = None,
) -> dict[str, JSON]:
    """The names a `{{ }}` template of `spec` sees (`context` has `config`, `secrets`)."""
    env: dict[str, JSON] = dict(context)
    names = spec.template_names
    if "item" in names:
        env["item"] = item
    if "row" in names:
        env["row"] = row
    if "bookmark" in names:
        env["bookmark"] = bookmark
    if "window" in names:
        env["window"] = window
    if "env" in names:
        env["env"] = dict(os.environ)
    return env


def spec_reads(spec: RequestSpec, name: str) -> bool:
    """Whether any `{{ }}` template of `spec` could read `name` (e.g. ``bookmark``)."""
    compiled = dict(spec.templates)
    if "header" in compiled:
        compiled["header"] = dict(compiled["header"])
    return name in referenced_names(compiled)
