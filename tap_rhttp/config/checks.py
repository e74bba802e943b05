"""The checks of config values: each takes (value, path, option name), returns the value.

Every check returns the normalised value or raises a :class:`~tap_rhttp.errors.ConfigError`
that names the config path, quotes the value and says what is allowed (RethinkDB's own
wording where r.http has one, e.g. "`method` (get) is not recognized (GET, HEAD, POST,
PUT, PATCH and DELETE are allowed)."). The option table (``options``) names a check per
option; ``load`` runs them, and the cross-field rules.
"""

from __future__ import annotations

import decimal
import json
import math
import re
import typing as t

from tap_rhttp.errors import ConfigError
from tap_rhttp.formats.records import compile_records_path
from tap_rhttp.http.auth import AUTH_TYPES, Credentials
from tap_rhttp.http.urls import SCHEMES, normalise_url, url_scheme
from tap_rhttp.schema.drift import POLICIES as DRIFT_POLICIES
from tap_rhttp.schema.infer import SampleSize

if t.TYPE_CHECKING:
    from tap_rhttp.types import JSON, HeaderPairs

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
RESULT_FORMATS = ("auto", "json", "jsonp", "text", "binary")
LINK_NEXT = "link-next"
#: RethinkDB's definition of the `link-next` preset, run by the one expression paginator.
LINK_NEXT_EXPRESSION = "info['header']['link']['rel=\"next\"'].default(None)"

STREAM_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def quote_value(value: JSON) -> str:
    """Render a config value for a message, short and unambiguous."""
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def type_name(value: JSON) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# --------------------------------------------------------------------------- checks
# Each check takes (value, path, option-name) and returns the normalised value or raises.


def is_int(value: JSON) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: JSON) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite(value: JSON) -> bool:
    """A number that fits a float (an integer literal may be far larger)."""
    try:
        return is_number(value) and math.isfinite(value)
    except OverflowError:
        return False


def int_at_least(minimum: int) -> t.Callable[[JSON, str, str], int]:
    def check(value: JSON, path: str, name: str) -> int:
        if not is_int(value):
            raise ConfigError(
                path,
                f"`{name}` should be an integer (got {quote_value(value)}).",
                value=value,
                allowed=f"an integer >= {minimum}",
            )
        if value < minimum:
            raise ConfigError(
                path,
                f"`{name}` should be greater than or equal to {minimum} (got {value}).",
                value=value,
            )
        return int(value)

    return check


def seconds(*, allow_zero: bool = True) -> t.Callable[[JSON, str, str], float]:
    def check(value: JSON, path: str, name: str) -> float:
        if not is_finite(value):
            raise ConfigError(
                path,
                f"`{name}` should be a number of seconds (got {quote_value(value)}).",
                value=value,
                allowed="a number of seconds, fractions allowed",
            )
        if value < 0:
            raise ConfigError(
                path, f"`{name}` may not be negative (got {quote_value(value)}).", value=value
            )
        if value == 0 and not allow_zero:
            raise ConfigError(
                path, f"`{name}` should be greater than 0 (got {quote_value(value)}).", value=value
            )
        return float(value)

    return check


def check_string(value: JSON, path: str, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(
            path,
            f"`{name}` should be a non-empty string (got {quote_value(value)}).",
            value=value,
        )
    return value


def check_bool(value: JSON, path: str, name: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(
            path,
            f"`{name}` should be true or false (got {quote_value(value)}).",
            value=value,
        )
    return value


def check_name(value: JSON, path: str, name: str) -> str:
    if not isinstance(value, str) or not STREAM_NAME_RE.fullmatch(value):
        raise ConfigError(
            path,
            f"`name` {quote_value(value)} is not a valid stream name: it becomes a table name, "
            "so use letters, digits and `_`, not starting with a digit.",
            value=value,
        )
    return value


def check_url(value: JSON, path: str, name: str) -> str:
    url = check_string(value, path, name)
    templated = "{{" in url
    literal = url.split("{{", 1)[0] if templated else url
    if templated and "://" not in literal:
        return url  # the scheme is templated: checked again once rendered
    if any(c in literal for c in "\r\n\t "):
        raise ConfigError(
            path, f"`url` {quote_value(url)} contains whitespace; encode it (%20).", value=url
        )
    scheme = url_scheme(normalise_url(literal))
    if scheme not in SCHEMES:
        raise ConfigError(
            path,
            f"Unsupported protocol `{scheme}` in `url` {quote_value(value)}.",
            value=value,
            allowed="http:// or https:// (no scheme means http://)",
        )
    return url if templated else normalise_url(url)


def check_method(value: JSON, path: str, name: str) -> str:
    if (
        isinstance(value, str)
        and value.upper() in METHODS
        and value in (value.upper(), value.lower())
    ):
        return value.upper()
    raise ConfigError(
        path,
        f"`method` ({value if isinstance(value, str) else quote_value(value)}) is not recognized "
        "(GET, HEAD, POST, PUT, PATCH and DELETE are allowed).",
        value=value,
    )


def check_result_format(value: JSON, path: str, name: str) -> str:
    if value in RESULT_FORMATS:
        return t.cast("str", value)
    raise ConfigError(
        path,
        f"`result_format` {quote_value(value)} is not recognized.",
        value=value,
        allowed=", ".join(f"`{f}`" for f in RESULT_FORMATS),
    )


def check_scalar_map(value: JSON, path: str, name: str) -> dict[str, JSON]:
    """`params` (and form `data`): an object of number/string/null values."""
    if not isinstance(value, dict):
        raise ConfigError(
            path,
            f"`{name}` should be an object (got {type_name(value)} {quote_value(value)}).",
            value=value,
            allowed="an object whose values are numbers, strings or null",
        )
    for key, item in value.items():
        if item is not None and not isinstance(item, str) and not is_number(item):
            raise ConfigError(
                f"{path}.{key}",
                f"`{name}` values should be numbers, strings or null "
                f"(got {type_name(item)} {quote_value(item)}).",
                value=item,
            )
        if isinstance(item, float) and not math.isfinite(item):
            raise ConfigError(f"{path}.{key}", f"`{name}` values must be finite.", value=item)
    return dict(value)


def check_header_name(name: str, path: str) -> None:
    if not HEADER_NAME_RE.fullmatch(name):
        raise ConfigError(
            path,
            f"`header` name {quote_value(name)} is not a valid HTTP header name.",
            value=name,
            allowed="letters, digits and !#$%&'*+-.^_`|~",
        )


def check_header_value(text: str, path: str) -> None:
    if "\r" in text or "\n" in text:
        raise ConfigError(
            path,
            "`header` values may not contain CR or LF (a header line cannot be injected).",
            value=text,
        )


def check_header(value: JSON, path: str, name: str) -> HeaderPairs:
    """An object of string/null values, or an array of ``"Name: value"`` lines."""
    pairs: list[tuple[str, str | None]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            check_header_name(key, f"{path}.{key}")
            if item is not None and not isinstance(item, str):
                raise ConfigError(
                    f"{path}.{key}",
                    f"`header` values should be strings or null "
                    f"(got {type_name(item)} {quote_value(item)}).",
                    value=item,
                )
            if item is not None:
                check_header_value(item, f"{path}.{key}")
            pairs.append((key, item))
        return tuple(pairs)
    if isinstance(value, list):
        for index, line in enumerate(value):
            where = f"{path}[{index}]"
            if not isinstance(line, str):
                raise ConfigError(
                    where,
                    f"`header` lines should be strings (got {quote_value(line)}).",
                    value=line,
                )
            check_header_value(line, where)
            key, sep, rest = line.partition(":")
            if not sep:
                raise ConfigError(
                    where,
                    f"`header` line {quote_value(line)} has no `:`.",
                    value=line,
                    allowed='"Name: value"',
                )
            key = key.strip()
            check_header_name(key, where)
            pairs.append((key, rest.strip()))
        return tuple(pairs)
    raise ConfigError(
        path,
        f"`header` should be an object or an array of strings (got {quote_value(value)}).",
        value=value,
    )


def check_verify(value: JSON, path: str, name: str) -> bool | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value:
        return value
    raise ConfigError(
        path,
        f"`verify` should be true, false or a path to a CA bundle (got {quote_value(value)}).",
        value=value,
    )


def check_page(value: JSON, path: str, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            path,
            f"`page` should be 'link-next' or a page expression string (got {quote_value(value)}).",
            value=value,
            allowed="'link-next', or an expression such as \"info['body']['next'].default(None)\"",
        )
    return value


def check_records_path(value: JSON, path: str, name: str) -> str:
    text = check_string(value, path, name)
    try:
        compile_records_path(text)
    except Exception as exc:
        raise ConfigError(
            path,
            f"`records_path` {quote_value(text)} is not a valid JSONPath: {exc}",
            value=text,
            allowed="a JSONPath such as `$.items[*]` or `$.data`",
        ) from None
    return text


def check_string_list(value: JSON, path: str, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(
            path,
            f"`{name}` should be a list of field names (got {quote_value(value)}).",
            value=value,
        )
    if len(set(value)) != len(value):
        raise ConfigError(path, f"`{name}` lists a name twice: {quote_value(value)}.", value=value)
    return tuple(value)


def check_schema(value: JSON, path: str, name: str) -> dict[str, JSON]:
    if not isinstance(value, dict) or not isinstance(value.get("properties"), dict):
        raise ConfigError(
            path,
            "`schema` should be a JSON Schema object with a `properties` object "
            f"(got {quote_value(value)}).",
            value=value,
        )
    return value


def check_schema_sample(value: JSON, path: str, name: str) -> SampleSize:
    """`{"pages": n, "records": n}`, either key optional (each at least 1)."""
    if not isinstance(value, dict):
        raise ConfigError(
            path,
            f"`schema_sample` should be an object (got {quote_value(value)}).",
            value=value,
            allowed='{"pages": 3, "records": 1000}',
        )
    for key, item in value.items():
        if key not in SampleSize._fields:
            raise ConfigError(
                f"{path}.{key}",
                f"`{key}` is not an option of `schema_sample`.",
                value=key,
                allowed="`pages`, `records`",
            )
        if not is_int(item) or item < 1:
            raise ConfigError(
                f"{path}.{key}",
                f"`schema_sample.{key}` should be an integer of at least 1 "
                f"(got {quote_value(item)}).",
                value=item,
            )
    return SampleSize()._replace(**{k: int(v) for k, v in value.items()})


def check_schema_overrides(value: JSON, path: str, name: str) -> dict[str, JSON]:
    """An object of field name -> JSON Schema object."""
    if not isinstance(value, dict):
        raise ConfigError(
            path,
            f"`schema_overrides` should be an object of field -> JSON Schema "
            f"(got {quote_value(value)}).",
            value=value,
            allowed='{"parent_id": {"type": ["integer", "null"]}}',
        )
    for key, node in value.items():
        if not isinstance(node, dict):
            raise ConfigError(
                f"{path}.{key}",
                f"`schema_overrides.{key}` should be a JSON Schema object "
                f"(got {quote_value(node)}).",
                value=node,
                allowed='{"type": ["integer", "null"]}',
            )
    return dict(value)


def check_schema_drift(value: JSON, path: str, name: str) -> str:
    if value in DRIFT_POLICIES:
        return t.cast("str", value)
    raise ConfigError(
        path,
        f"`schema_drift` {quote_value(value)} is not recognized.",
        value=value,
        allowed=", ".join(f"`{p}`" for p in DRIFT_POLICIES),
    )


def check_rate(value: JSON, path: str, name: str) -> float:
    if not is_finite(value) or value <= 0:
        raise ConfigError(
            path,
            f"`{name}` should be a number of requests per second greater than 0 "
            f"(got {quote_value(value)}).",
            value=value,
        )
    return float(value)


_AUTH_KEYS = {
    "basic": ("type", "user", "pass"),
    "digest": ("type", "user", "pass"),
    "bearer": ("type", "token"),
    "api_key": ("type", "name", "value", "in"),
}


def check_auth(value: JSON, path: str, name: str) -> Credentials:
    if not isinstance(value, dict):
        raise ConfigError(
            path,
            f"`auth` should be an object like "
            f'{{"type": "basic", "user": "...", "pass": "..."}} (got {type_name(value)}).',
            value="<redacted>",
        )
    kind = value.get("type", "basic")
    if kind not in AUTH_TYPES:
        raise ConfigError(
            f"{path}.type",
            f"`auth.type` {quote_value(kind)} is not supported.",
            value=kind,
            allowed=", ".join(f"`{a}`" for a in AUTH_TYPES),
        )
    allowed_keys = _AUTH_KEYS[kind]
    for key in value:
        if key not in allowed_keys:
            raise ConfigError(
                f"{path}.{key}",
                f"`{key}` is not an option of `{kind}` auth.",
                allowed=", ".join(f"`{k}`" for k in allowed_keys),
            )
    for key in allowed_keys[1:]:
        if key == "in":
            continue
        item = value.get(key)
        if not isinstance(item, str) or (key != "pass" and not item):
            raise ConfigError(
                f"{path}.{key}",
                f"`{kind}` auth needs `{key}` as a string"
                + (" (got a value of the wrong type)." if key in value else "."),
                value="<redacted>" if key in ("pass", "token", "value") else item,
            )
    location = value.get("in", "header")
    if location not in ("header", "query"):
        raise ConfigError(
            f"{path}.in",
            f"`auth.in` {quote_value(location)} is not supported.",
            value=location,
            allowed="`header` or `query`",
        )
    if kind == "api_key" and location == "header":
        check_header_name(value["name"], f"{path}.name")
    for secret_key in ("pass", "token", "value"):
        item = value.get(secret_key)
        if isinstance(item, str):
            check_header_value(item, f"{path}.{secret_key}")
    return Credentials(
        type=kind,
        user=value.get("user"),
        password=value.get("pass"),
        token=value.get("token"),
        name=value.get("name"),
        value=value.get("value"),
        location=location,
    )


def check_any(value: JSON, path: str, name: str) -> JSON:
    return value


def check_for_each(value: JSON, path: str, name: str) -> tuple[JSON, ...]:
    """A list of values; an empty one is a valid, empty fan-out (r.expr([]).map(...) is [])."""
    if not isinstance(value, list):
        raise ConfigError(
            path,
            f"`for_each` should be a list of values (got {quote_value(value)}).",
            value=value,
            allowed="a JSON array; the spec runs once per element, bound to `item`",
        )
    return tuple(value)


def check_parent_keys(value: JSON, path: str, name: str) -> tuple[tuple[str, str], ...]:
    """A list of parent fields, or an object mapping parent field -> child column."""
    if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return tuple((v, v) for v in value)
    if isinstance(value, dict) and all(
        isinstance(v, str) and STREAM_NAME_RE.fullmatch(v) for v in value.values()
    ):
        return tuple(value.items())
    raise ConfigError(
        path,
        f"`parent_keys` should be a list of parent field names or an object mapping a "
        f"parent field to a column name (got {quote_value(value)}).",
        value=value,
    )


def check_on_error(value: JSON, path: str, name: str) -> str:
    if value in ("fail", "skip"):
        return t.cast("str", value)
    raise ConfigError(
        path,
        f"`on_error` {quote_value(value)} is not recognized.",
        value=value,
        allowed="`fail` or `skip`",
    )


def check_scalar(value: JSON, path: str, name: str) -> JSON:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return value
    raise ConfigError(
        path, f"`{name}` should be a string or a number (got {quote_value(value)}).", value=value
    )


def check_data(method: str, data: JSON, path: str) -> JSON:
    """`data` against the method's rules (used at load and after templates render)."""
    if data is None:
        return None
    if method in ("GET", "HEAD"):
        raise ConfigError(
            path,
            "`data` should only be specified on a PUT, POST, PATCH, or DELETE "
            "request.  If you want URL parameters, use `params` instead.",
            value=data,
        )
    if method == "POST" and not isinstance(data, (str, dict)):
        raise ConfigError(
            path,
            f"`data` on a POST should be an object or a string "
            f"(got {type_name(data)} {quote_value(data)}).",
            value=data,
        )
    if method == "POST" and isinstance(data, dict):
        check_scalar_map(data, path, "data")
    return data


def plain_json(value: JSON) -> JSON:
    """The config as plain JSON values.

    singer-sdk reads config files with ``parse_float=Decimal``; every number here is a
    JSON number again (a Decimal, which only a literal with a fraction or an exponent
    becomes, is a float), so `timeout: 2.5` is a number and expressions only ever see
    JSON values. `3e0` stays a float, as singer-sdk's schema check sees it: not an integer.
    """
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    return value
