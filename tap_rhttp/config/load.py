"""Loading a config: every stream's options checked, merged with `defaults`, built.

A spec is one r.http call: ``r.http(url, options)`` written as a JSON object in the
tap's ``streams`` list, plus a few pipeline options. :func:`load_specs` checks all of
it at start-up, for every command (``--discover`` included), so a typo never costs a
request: types, ranges, cross-field rules, unknown keys (with a "did you mean"), and
stream names. Every message names the config path, quotes the value and says what is
allowed; every problem of the config is reported at once.

Rejected: validating with the config JSON Schema alone. Its messages cannot name the
option the way r.http does, cannot suggest a fix for a typo, and its ``default``
keywords would be filled into every stream, silently beating ``defaults``.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing as t

from tap_rhttp.config.checks import (
    LINK_NEXT,
    LINK_NEXT_EXPRESSION,
    check_data,
    json_content_type,
    number_errors,
    plain_json,
    quote_value,
)
from tap_rhttp.config.options import ALIASES, MERGED, NOT_IN_DEFAULTS, OPTIONS
from tap_rhttp.config.spec import RequestSpec
from tap_rhttp.config.templates import compile_string, compile_value, has_placeholder
from tap_rhttp.errors import ConfigError, ConfigErrors
from tap_rhttp.expr import compile_expression

if t.TYPE_CHECKING:
    from tap_rhttp.types import JSON, HeaderPairs


def _suggest(key: str, known: t.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" Did you mean `{close[0]}`?" if close else ""


def _resolve_aliases(raw: dict[str, JSON], path: str) -> dict[str, JSON]:
    out = dict(raw)
    for alias, real in ALIASES.items():
        if alias in out:
            if real in out:
                raise ConfigError(
                    f"{path}.{alias}",
                    f"give either `{real}` or its alias `{alias}`, not both.",
                    value=out[alias],
                )
            out[real] = out.pop(alias)
    return out


def check_keys(raw: dict[str, JSON], path: str, *, in_defaults: bool) -> list[ConfigError]:
    errors = []
    known = set(OPTIONS) | set(ALIASES)
    for key in raw:
        if key not in known:
            errors.append(
                ConfigError(
                    f"{path}.{key}",
                    f"unknown option `{key}`.{_suggest(key, known)}",
                    value=key,
                    allowed="the options listed in the README's settings table",
                )
            )
        elif in_defaults and key in NOT_IN_DEFAULTS:
            errors.append(
                ConfigError(f"{path}.{key}", f"`{key}` cannot be set in `defaults`.", value=key)
            )
    return errors


def _merge_headers(base: HeaderPairs, over: HeaderPairs) -> HeaderPairs:
    names = {k.lower() for k, _ in over}
    return tuple((k, v) for k, v in base if k.lower() not in names) + over


def check_values(raw: dict[str, JSON], path: str) -> tuple[dict[str, JSON], list[ConfigError]]:
    values: dict[str, JSON] = {}
    errors: list[ConfigError] = []
    for key, value in raw.items():
        option = OPTIONS.get(key)
        if option is None:
            continue
        if value is None and key not in ("name", "url"):
            continue  # explicit null means "not set"
        try:
            checked = option.check(value, f"{path}.{key}", key)
        except ConfigError as exc:
            errors.append(exc)
            continue
        bad_numbers = number_errors(value, f"{path}.{key}")
        if bad_numbers:
            errors += bad_numbers
        else:
            values[key] = checked
    return values, errors


def _cross_checks(values: dict[str, JSON], raw: dict[str, JSON], path: str) -> list[ConfigError]:
    errors: list[ConfigError] = []
    method = values.get("method", "GET")
    as_json = json_content_type(values.get("header", ()))
    if values.get("data") is not None and values.get("json") is not None:
        errors.append(
            ConfigError(
                f"{path}.json",
                "give either `data` or `json`, not both (both are the request body).",
                value=values["json"],
            )
        )
    for option in ("data", "json"):
        try:
            check_data(
                method,
                values.get(option),
                f"{path}.{option}",
                as_json=option == "json" or as_json,
            )
        except ConfigError as exc:
            errors.append(exc)
    has_page = "page" in values
    has_limit = "page_limit" in values
    if has_page and not has_limit:
        errors.append(
            ConfigError(
                f"{path}.page",
                "`page` needs `page_limit` too (either none or both must be provided).",
                value=values["page"],
                allowed="`page_limit`: -1 (no limit), 0, or a positive number of requests",
            )
        )
    if has_limit and not has_page:
        errors.append(
            ConfigError(
                f"{path}.page_limit",
                "`page_limit` needs `page` too (either none or both must be provided).",
                value=values["page_limit"],
                allowed="`page`: 'link-next' or a page expression",
            )
        )
    result_format = values.get("result_format", "auto")
    for option in ("csv", "xml"):
        if values.get(option) is not None and result_format not in (option, "auto"):
            errors.append(
                ConfigError(
                    f"{path}.{option}",
                    f"`{option}` applies to `result_format` `{option}` or `auto`, "
                    f"not `{result_format}`.",
                    value=raw.get(option),
                )
            )
    xml = values.get("xml")
    if (
        result_format == "xml"
        and xml is not None
        and xml.records is not None
        and values.get("records_path") is not None
    ):
        errors.append(
            ConfigError(
                f"{path}.records_path",
                "give either `xml.records` or `records_path` for an XML body, not both.",
                value=values["records_path"],
            )
        )
    base, cap = values.get("backoff_base"), values.get("backoff_max")
    if base is not None and cap is not None and cap < base:
        errors.append(
            ConfigError(
                f"{path}.backoff_max",
                f"`backoff_max` ({values['backoff_max']}) should be at least "
                f"`backoff_base` ({values['backoff_base']}).",
                value=values["backoff_max"],
            )
        )
    if values.get("for_each") is not None and values.get("parent") is not None:
        errors.append(
            ConfigError(
                f"{path}.parent",
                "give either `for_each` or `parent`, not both.",
                value=values["parent"],
            )
        )
    if values.get("windows") is not None:
        for other in ("for_each", "parent"):
            if values.get(other) is not None:
                errors.append(
                    ConfigError(
                        f"{path}.windows",
                        f"give either `windows` or `{other}`, not both.",
                        value=raw.get("windows"),
                    )
                )
    if values.get("parent_keys") is not None and values.get("parent") is None:
        errors.append(ConfigError(f"{path}.parent_keys", "`parent_keys` needs `parent`."))
    if values.get("start_value") is not None and values.get("replication_key") is None:
        errors.append(ConfigError(f"{path}.start_value", "`start_value` needs `replication_key`."))
    if values.get("client_key") is not None and values.get("client_cert") is None:
        errors.append(
            ConfigError(
                f"{path}.client_key",
                "`client_key` needs `client_cert` (the certificate the key belongs to).",
                value=values["client_key"],
            )
        )
    if values.get("client_key_password") is not None and values.get("client_cert") is None:
        errors.append(
            ConfigError(
                f"{path}.client_key_password",
                "`client_key_password` needs `client_cert` (and `client_key` when the key "
                "is a file of its own).",
                value="<redacted>",
            )
        )
    schema = values.get("schema")
    key = values.get("replication_key")
    # a declared schema lists every field; `schema_overrides` may add some to it
    declared = {**(schema or {}).get("properties", {}), **(values.get("schema_overrides") or {})}
    if schema is not None and key is not None and key not in declared:
        errors.append(
            ConfigError(
                f"{path}.replication_key",
                f"replication key `{key}` is not in `schema.properties`.",
                value=key,
                allowed=", ".join(sorted(declared)) or "(none)",
            )
        )
    if schema is not None:
        props = declared
        for key in values.get("primary_keys", ()):
            if key not in props:
                errors.append(
                    ConfigError(
                        f"{path}.primary_keys",
                        f"primary key `{key}` is not in `schema.properties`.",
                        value=key,
                        allowed=", ".join(sorted(props)) or "(no properties declared)",
                    )
                )
    return errors


def _build(values: dict[str, JSON], path: str, raw: dict[str, JSON]) -> RequestSpec:
    kwargs: dict[str, JSON] = {}
    for key, option in OPTIONS.items():
        if key in values:
            kwargs[key] = values[key]
        elif option.default is not None:
            kwargs[key] = option.default
    page_source = values.get("page")
    page_expr = None
    if page_source is not None:
        text = LINK_NEXT_EXPRESSION if page_source.strip() == LINK_NEXT else page_source
        page_expr = compile_expression(text, path=f"{path}.page", names=("info",))
    kwargs["page"] = page_expr
    kwargs["page_source"] = page_source
    spec = RequestSpec(path=path, raw=raw, **kwargs)
    templates = _compile_templates(spec)
    return dataclasses.replace(spec, templates=templates) if templates else spec


def _compile_templates(spec: RequestSpec) -> dict[str, JSON]:
    """Compile the `{{ }}` placeholders of the templated fields, with the spec's names."""
    names = spec.template_names
    out: dict[str, JSON] = {}
    if has_placeholder(spec.url):
        out["url"] = compile_string(spec.url, path=f"{spec.path}.url", names=names, url=True)
    if has_placeholder(dict(spec.params)):
        out["params"] = compile_value(dict(spec.params), path=f"{spec.path}.params", names=names)
    if any(has_placeholder(v) for _, v in spec.header):
        out["header"] = tuple(
            (k, compile_value(v, path=f"{spec.path}.header.{k}", names=names))
            for k, v in spec.header
        )
    if has_placeholder(spec.data):
        out["data"] = compile_value(spec.data, path=f"{spec.path}.data", names=names)
    if has_placeholder(spec.json):
        out["json"] = compile_value(spec.json, path=f"{spec.path}.json", names=names)
    for name in ("proxy", "client_key_password"):
        value = getattr(spec, name)
        if has_placeholder(value):
            out[name] = compile_string(
                value, path=f"{spec.path}.{name}", names=names, url=name == "proxy"
            )
    if spec.auth is not None:
        fields = {
            f.name: getattr(spec.auth, f.name)
            for f in dataclasses.fields(spec.auth)
            if isinstance(getattr(spec.auth, f.name), str)
        }
        if has_placeholder(fields):
            out["auth"] = compile_value(fields, path=f"{spec.path}.auth", names=names)
    return out


def _merge(defaults: dict[str, JSON], stream: dict[str, JSON]) -> dict[str, JSON]:
    merged = dict(defaults)
    for key, value in stream.items():
        if key in MERGED and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def load_specs(config: t.Mapping[str, JSON]) -> list[RequestSpec]:
    """Validate the whole config and build one :class:`RequestSpec` per stream.

    Args:
        config: the tap config (``streams`` and optional ``defaults``).

    Returns:
        The specs, in config order.

    Raises:
        ConfigErrors: every problem found, each naming its config path.
    """
    errors: list[ConfigError] = []
    config = plain_json(dict(config))
    streams = config.get("streams")
    if not isinstance(streams, list) or not streams:
        raise ConfigErrors(
            [
                ConfigError(
                    "streams",
                    "`streams` should be a non-empty list of request specs "
                    f"(got {quote_value(streams)}).",
                    value=streams,
                    allowed='[{"name": "...", "url": "..."}, ...]',
                )
            ]
        )
    for key, value in config.items():
        if key not in ("streams", "defaults"):
            errors += number_errors(value, key)
    secrets = config.get("secrets")
    if secrets is not None and (
        not isinstance(secrets, dict) or not all(isinstance(v, str) for v in secrets.values())
    ):
        errors.append(
            ConfigError(
                "secrets",
                "`secrets` should be an object of strings (name -> secret value).",
                value="<redacted>",
            )
        )
    defaults = config.get("defaults")
    defaults = {} if defaults is None else defaults
    if not isinstance(defaults, dict):
        raise ConfigErrors(
            [ConfigError("defaults", "`defaults` should be an object.", value=defaults)]
        )
    try:
        defaults = _resolve_aliases(defaults, "defaults")
    except ConfigError as exc:
        errors.append(exc)
    errors += check_keys(defaults, "defaults", in_defaults=True)
    default_values, default_errors = check_values(defaults, "defaults")
    errors += default_errors

    specs: list[RequestSpec] = []
    seen: dict[str, str] = {}
    for index, stream in enumerate(streams):
        path = f"streams[{index}]"
        if not isinstance(stream, dict):
            errors.append(
                ConfigError(path, f"a stream spec should be an object (got {quote_value(stream)}).")
            )
            continue
        try:
            stream = _resolve_aliases(stream, path)
        except ConfigError as exc:
            errors.append(exc)
            continue
        key_errors = check_keys(stream, path, in_defaults=False)
        errors += key_errors
        for required in ("name", "url"):
            if required not in stream:
                errors.append(
                    ConfigError(
                        f"{path}.{required}",
                        f"`{required}` is required.",
                        allowed=OPTIONS[required].description,
                    )
                )
        values, value_errors = check_values(stream, path)
        errors += value_errors
        if value_errors or "name" not in values or "url" not in values:
            continue
        name = values["name"]
        if name in seen:
            errors.append(
                ConfigError(
                    f"{path}.name",
                    f"stream name {quote_value(name)} is already used by {seen[name]}; "
                    "names must be unique.",
                    value=name,
                )
            )
            continue
        seen[name] = path
        merged_values = _merge(default_values, values)
        if "header" in default_values and "header" in values:
            merged_values["header"] = _merge_headers(default_values["header"], values["header"])
        cross = _cross_checks(merged_values, stream, path)
        if cross or key_errors:
            errors += cross
            continue
        try:
            specs.append(_build(merged_values, path, _merge(defaults, stream)))
        except ConfigError as exc:
            errors.append(exc)
    errors += check_parents(specs)
    if errors:
        raise ConfigErrors(errors)
    return specs


def check_files(specs: t.Sequence[RequestSpec]) -> list[ConfigError]:
    """The files a run reads (client certificates and keys) exist and can be read.

    Run by the run context rather than :func:`load_specs`, so a config can be checked
    (the README's examples are) on a machine that does not hold the files.
    """
    errors: list[ConfigError] = []
    for spec in specs:
        for name in ("client_cert", "client_key"):
            path = getattr(spec, name)
            if path is None:
                continue
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                errors.append(
                    ConfigError(
                        f"{spec.path}.{name}",
                        f"`{name}` {quote_value(path)} cannot be read: {exc.strerror or exc}.",
                        value=path,
                        allowed="the path of a readable PEM file",
                    )
                )
    return errors


def check_parents(specs: list[RequestSpec]) -> list[ConfigError]:
    """`parent` names an existing stream, and parent links never form a cycle."""
    by_name = {s.name: s for s in specs}
    errors: list[ConfigError] = []
    for spec in specs:
        if spec.parent is None:
            continue
        if spec.parent not in by_name:
            errors.append(
                ConfigError(
                    f"{spec.path}.parent",
                    f"`parent` names no stream: {quote_value(spec.parent)}."
                    + _suggest(spec.parent, by_name),
                    value=spec.parent,
                    allowed=", ".join(sorted(n for n in by_name if n != spec.name)),
                )
            )
            continue
        seen = [spec.name]
        current: RequestSpec | None = by_name[spec.parent]
        while current is not None:
            if current.name in seen:
                errors.append(
                    ConfigError(
                        f"{spec.path}.parent",
                        "parent links form a cycle: " + " -> ".join([*seen, current.name]) + ".",
                        value=spec.parent,
                    )
                )
                break
            seen.append(current.name)
            current = by_name.get(current.parent) if current.parent else None
    return errors
