"""``{{ expr }}`` templates in a spec's url, params, header, data and auth values.

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
and, inside a URL, percent-encoded so a value can never change the URL's structure.

Rejected: Jinja. It is a second, much larger language with its own escapes, filters and
sandbox story; users already write ReQL for ``page``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing as t
from urllib.parse import quote

import orjson

from tap_rhttp.config.checks import check_data, plain_json
from tap_rhttp.config.options import OPTIONS
from tap_rhttp.errors import ConfigError, ExpressionError
from tap_rhttp.expressions import Expression, compile_expression
from tap_rhttp.http.auth import Credentials

if t.TYPE_CHECKING:
    from tap_rhttp.config.spec import RequestSpec
    from tap_rhttp.types import JSON

_PLACEHOLDER_RE = re.compile(r"\{\{(.*?)\}\}", re.S)
TEMPLATE_FIELDS = ("url", "params", "header", "data", "auth")


def has_placeholder(value: JSON) -> bool:
    """True when a JSON value contains a ``{{ ... }}`` anywhere."""
    if isinstance(value, str):
        return "{{" in value and _PLACEHOLDER_RE.search(value) is not None
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
    return orjson.dumps(value).decode()


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

    def render(self, env: t.Mapping[str, JSON]) -> JSON:
        whole = self.whole
        if whole is not None:
            return whole.evaluate(env)
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                text = as_text(part.evaluate(env))
                out.append(quote(text, safe="") if self.url else text)
        return "".join(out)


def compile_string(
    source: str, *, path: str, names: t.Collection[str], url: bool = False
) -> StringTemplate | str:
    """Compile one string; a string without placeholders is returned as is."""
    if "{{" not in source:
        return source
    parts: list[str | Expression] = []
    position = 0
    for match in _PLACEHOLDER_RE.finditer(source):
        if match.start() > position:
            parts.append(source[position : match.start()])
        text = match.group(1).strip()
        if not text:
            raise ConfigError(path, f"empty placeholder `{{{{}}}}` in {source!r}.", value=source)
        parts.append(compile_expression(text, path=path, names=tuple(names)))
        position = match.end()
    if position < len(source):
        parts.append(source[position:])
    leftover = "".join(p for p in parts if isinstance(p, str))
    if "{{" in leftover or "}}" in leftover:
        raise ConfigError(path, f"unbalanced `{{{{` / `}}}}` in {source!r}.", value=source)
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


def render_value(value: JSON, env: t.Mapping[str, JSON]) -> JSON:
    """Render a compiled JSON value."""
    if isinstance(value, StringTemplate):
        return value.render(env)
    if isinstance(value, dict):
        return {k: render_value(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, env) for v in value]
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


def _render_field(compiled: JSON, env: t.Mapping[str, JSON], path: str) -> JSON:
    try:
        return render_value(compiled, env)
    except ExpressionError as exc:
        raise type(exc)(f"{path}: in a `{{{{ }}}}` template: {exc}") from None


def render_spec(spec: RequestSpec, env: t.Mapping[str, JSON]) -> RequestSpec:
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
        url = _render_field(compiled["url"], env, f"{spec.path}.url")
        changes["url"] = OPTIONS["url"].check(as_text(url), f"{spec.path}.url", "url")
    if "params" in compiled:
        params = _render_field(compiled["params"], env, f"{spec.path}.params")
        changes["params"] = OPTIONS["params"].check(params, f"{spec.path}.params", "params")
    if "header" in compiled:
        rendered = {
            name: _render_field(value, env, f"{spec.path}.header.{name}")
            for name, value in compiled["header"]
        }
        changes["header"] = OPTIONS["header"].check(rendered, f"{spec.path}.header", "header")
    if "data" in compiled:
        data = _render_field(compiled["data"], env, f"{spec.path}.data")
        changes["data"] = check_data(spec.method, data, f"{spec.path}.data")
    if "auth" in compiled and spec.auth is not None:
        fields = _render_field(compiled["auth"], env, f"{spec.path}.auth")
        values: dict[str, t.Any] = {
            k: as_text(v) if v is not None else None for k, v in fields.items()
        }
        changes["auth"] = dataclasses.replace(spec.auth, **values)
        assert isinstance(changes["auth"], Credentials)
    return dataclasses.replace(spec, **changes)


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
