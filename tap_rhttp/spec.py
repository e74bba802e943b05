"""Frozen request specs built from raw config, with every default and every check.

A spec is one r.http call: ``r.http(url, options)`` written as a JSON object in the
tap's ``streams`` list, plus a few pipeline options. All checks happen here, at
start-up, for every command (``--discover`` included), so a typo never costs a request:
types, ranges, cross-field rules, unknown keys (with a "did you mean"), and stream
names. Every message names the config path, quotes the value and says what is allowed.

One table, :data:`OPTIONS`, drives validation, the tap's ``config_jsonschema`` and the
README's settings table, so the three cannot drift apart.

Rejected: validating with the config JSON Schema alone. Its messages cannot name the
option the way r.http does, cannot suggest a fix for a typo, and its ``default``
keywords would be filled into every stream, silently beating ``defaults``.
"""

from __future__ import annotations

import dataclasses
import decimal
import difflib
import hashlib
import json
import math
import re
import typing as t

from tap_rhttp.errors import ConfigError, ConfigErrors

if t.TYPE_CHECKING:
    from tap_rhttp.expressions import Expression

JSON = t.Any

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
RESULT_FORMATS = ("auto", "json", "jsonp", "text", "binary")
AUTH_TYPES = ("basic", "digest", "bearer", "api_key")
SCHEMES = ("http", "https")
LINK_NEXT = "link-next"
#: RethinkDB's definition of the `link-next` preset, run by the one expression paginator.
LINK_NEXT_EXPRESSION = "info['header']['link']['rel=\"next\"'].default(None)"

STREAM_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def _quote(value: JSON) -> str:
    """Render a config value for a message, short and unambiguous."""
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _type_name(value: JSON) -> str:
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


def _is_int(value: JSON) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: JSON) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_finite(value: JSON) -> bool:
    """A number that fits a float (an integer literal may be far larger)."""
    try:
        return _is_number(value) and math.isfinite(value)
    except OverflowError:
        return False


def _int_at_least(minimum: int) -> t.Callable[[JSON, str, str], int]:
    def check(value: JSON, path: str, name: str) -> int:
        if not _is_int(value):
            raise ConfigError(
                path,
                f"`{name}` should be an integer (got {_quote(value)}).",
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


def _seconds(*, allow_zero: bool = True) -> t.Callable[[JSON, str, str], float]:
    def check(value: JSON, path: str, name: str) -> float:
        if not _is_finite(value):
            raise ConfigError(
                path,
                f"`{name}` should be a number of seconds (got {_quote(value)}).",
                value=value,
                allowed="a number of seconds, fractions allowed",
            )
        if value < 0:
            raise ConfigError(
                path, f"`{name}` may not be negative (got {_quote(value)}).", value=value
            )
        if value == 0 and not allow_zero:
            raise ConfigError(
                path, f"`{name}` should be greater than 0 (got {_quote(value)}).", value=value
            )
        return float(value)

    return check


def _check_string(value: JSON, path: str, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(
            path,
            f"`{name}` should be a non-empty string (got {_quote(value)}).",
            value=value,
        )
    return value


def _check_bool(value: JSON, path: str, name: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(
            path,
            f"`{name}` should be true or false (got {_quote(value)}).",
            value=value,
        )
    return value


def _check_name(value: JSON, path: str, name: str) -> str:
    if not isinstance(value, str) or not STREAM_NAME_RE.fullmatch(value):
        raise ConfigError(
            path,
            f"`name` {_quote(value)} is not a valid stream name: it becomes a table name, "
            "so use letters, digits and `_`, not starting with a digit.",
            value=value,
        )
    return value


def normalise_url(value: str) -> str:
    """Give a scheme-less URL the ``http://`` that r.http assumes."""
    return value if _SCHEME_RE.match(value) else "http://" + value


def url_scheme(url: str) -> str:
    """The lower-cased scheme of a normalised URL."""
    match = _SCHEME_RE.match(url)
    return match.group(1).lower() if match else ""


def _check_url(value: JSON, path: str, name: str) -> str:
    url = _check_string(value, path, name)
    templated = "{{" in url
    literal = url.split("{{", 1)[0] if templated else url
    if templated and "://" not in literal:
        return url  # the scheme is templated: checked again once rendered
    if any(c in literal for c in "\r\n\t "):
        raise ConfigError(
            path, f"`url` {_quote(url)} contains whitespace; encode it (%20).", value=url
        )
    scheme = url_scheme(normalise_url(literal))
    if scheme not in SCHEMES:
        raise ConfigError(
            path,
            f"Unsupported protocol `{scheme}` in `url` {_quote(value)}.",
            value=value,
            allowed="http:// or https:// (no scheme means http://)",
        )
    return url if templated else normalise_url(url)


def _check_method(value: JSON, path: str, name: str) -> str:
    if (
        isinstance(value, str)
        and value.upper() in METHODS
        and value in (value.upper(), value.lower())
    ):
        return value.upper()
    raise ConfigError(
        path,
        f"`method` ({value if isinstance(value, str) else _quote(value)}) is not recognized "
        "(GET, HEAD, POST, PUT, PATCH and DELETE are allowed).",
        value=value,
    )


def _check_result_format(value: JSON, path: str, name: str) -> str:
    if value in RESULT_FORMATS:
        return t.cast("str", value)
    raise ConfigError(
        path,
        f"`result_format` {_quote(value)} is not recognized.",
        value=value,
        allowed=", ".join(f"`{f}`" for f in RESULT_FORMATS),
    )


def _check_scalar_map(value: JSON, path: str, name: str) -> dict[str, JSON]:
    """`params` (and form `data`): an object of number/string/null values."""
    if not isinstance(value, dict):
        raise ConfigError(
            path,
            f"`{name}` should be an object (got {_type_name(value)} {_quote(value)}).",
            value=value,
            allowed="an object whose values are numbers, strings or null",
        )
    for key, item in value.items():
        if item is not None and not isinstance(item, str) and not _is_number(item):
            raise ConfigError(
                f"{path}.{key}",
                f"`{name}` values should be numbers, strings or null "
                f"(got {_type_name(item)} {_quote(item)}).",
                value=item,
            )
        if isinstance(item, float) and not math.isfinite(item):
            raise ConfigError(f"{path}.{key}", f"`{name}` values must be finite.", value=item)
    return dict(value)


Header = tuple[tuple[str, str | None], ...]


def _check_header_name(name: str, path: str) -> None:
    if not HEADER_NAME_RE.fullmatch(name):
        raise ConfigError(
            path,
            f"`header` name {_quote(name)} is not a valid HTTP header name.",
            value=name,
            allowed="letters, digits and !#$%&'*+-.^_`|~",
        )


def _check_header_value(text: str, path: str) -> None:
    if "\r" in text or "\n" in text:
        raise ConfigError(
            path,
            "`header` values may not contain CR or LF (a header line cannot be injected).",
            value=text,
        )


def _check_header(value: JSON, path: str, name: str) -> Header:
    """An object of string/null values, or an array of ``"Name: value"`` lines."""
    pairs: list[tuple[str, str | None]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            _check_header_name(key, f"{path}.{key}")
            if item is not None and not isinstance(item, str):
                raise ConfigError(
                    f"{path}.{key}",
                    f"`header` values should be strings or null "
                    f"(got {_type_name(item)} {_quote(item)}).",
                    value=item,
                )
            if item is not None:
                _check_header_value(item, f"{path}.{key}")
            pairs.append((key, item))
        return tuple(pairs)
    if isinstance(value, list):
        for index, line in enumerate(value):
            where = f"{path}[{index}]"
            if not isinstance(line, str):
                raise ConfigError(
                    where,
                    f"`header` lines should be strings (got {_quote(line)}).",
                    value=line,
                )
            _check_header_value(line, where)
            key, sep, rest = line.partition(":")
            if not sep:
                raise ConfigError(
                    where,
                    f"`header` line {_quote(line)} has no `:`.",
                    value=line,
                    allowed='"Name: value"',
                )
            key = key.strip()
            _check_header_name(key, where)
            pairs.append((key, rest.strip()))
        return tuple(pairs)
    raise ConfigError(
        path,
        f"`header` should be an object or an array of strings (got {_quote(value)}).",
        value=value,
    )


def _check_verify(value: JSON, path: str, name: str) -> bool | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value:
        return value
    raise ConfigError(
        path,
        f"`verify` should be true, false or a path to a CA bundle (got {_quote(value)}).",
        value=value,
    )


def _check_page(value: JSON, path: str, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            path,
            f"`page` should be 'link-next' or a page expression string (got {_quote(value)}).",
            value=value,
            allowed="'link-next', or an expression such as \"info['body']['next'].default(None)\"",
        )
    return value


def _check_records_path(value: JSON, path: str, name: str) -> str:
    text = _check_string(value, path, name)
    from tap_rhttp.formats import compile_records_path  # local: formats imports spec

    try:
        compile_records_path(text)
    except Exception as exc:
        raise ConfigError(
            path,
            f"`records_path` {_quote(text)} is not a valid JSONPath: {exc}",
            value=text,
            allowed="a JSONPath such as `$.items[*]` or `$.data`",
        ) from None
    return text


def _check_string_list(value: JSON, path: str, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(
            path,
            f"`{name}` should be a list of field names (got {_quote(value)}).",
            value=value,
        )
    if len(set(value)) != len(value):
        raise ConfigError(path, f"`{name}` lists a name twice: {_quote(value)}.", value=value)
    return tuple(value)


def _check_schema(value: JSON, path: str, name: str) -> dict[str, JSON]:
    if not isinstance(value, dict) or not isinstance(value.get("properties"), dict):
        raise ConfigError(
            path,
            "`schema` should be a JSON Schema object with a `properties` object "
            f"(got {_quote(value)}).",
            value=value,
        )
    return value


def _check_rate(value: JSON, path: str, name: str) -> float:
    if not _is_finite(value) or value <= 0:
        raise ConfigError(
            path,
            f"`{name}` should be a number of requests per second greater than 0 "
            f"(got {_quote(value)}).",
            value=value,
        )
    return float(value)


@dataclasses.dataclass(frozen=True)
class Auth:
    """Credentials for one spec. Every value but `type`, `user` and `name` is secret."""

    type: str
    user: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    token: str | None = dataclasses.field(default=None, repr=False)
    name: str | None = None
    value: str | None = dataclasses.field(default=None, repr=False)
    location: str = "header"

    def secrets(self) -> tuple[str, ...]:
        """The secret strings this auth carries, for the redactor."""
        return tuple(s for s in (self.password, self.token, self.value) if s)


_AUTH_KEYS = {
    "basic": ("type", "user", "pass"),
    "digest": ("type", "user", "pass"),
    "bearer": ("type", "token"),
    "api_key": ("type", "name", "value", "in"),
}


def _check_auth(value: JSON, path: str, name: str) -> Auth:
    if not isinstance(value, dict):
        raise ConfigError(
            path,
            f"`auth` should be an object like "
            f'{{"type": "basic", "user": "...", "pass": "..."}} (got {_type_name(value)}).',
            value="<redacted>",
        )
    kind = value.get("type", "basic")
    if kind not in AUTH_TYPES:
        raise ConfigError(
            f"{path}.type",
            f"`auth.type` {_quote(kind)} is not supported.",
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
            f"`auth.in` {_quote(location)} is not supported.",
            value=location,
            allowed="`header` or `query`",
        )
    if kind == "api_key" and location == "header":
        _check_header_name(value["name"], f"{path}.name")
    for secret_key in ("pass", "token", "value"):
        item = value.get(secret_key)
        if isinstance(item, str):
            _check_header_value(item, f"{path}.{secret_key}")
    return Auth(
        type=kind,
        user=value.get("user"),
        password=value.get("pass"),
        token=value.get("token"),
        name=value.get("name"),
        value=value.get("value"),
        location=location,
    )


def _check_any(value: JSON, path: str, name: str) -> JSON:
    return value


def _check_for_each(value: JSON, path: str, name: str) -> tuple[JSON, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(
            path,
            f"`for_each` should be a non-empty list of values (got {_quote(value)}).",
            value=value,
            allowed="a JSON array; the spec runs once per element, bound to `item`",
        )
    return tuple(value)


def _check_parent_keys(value: JSON, path: str, name: str) -> tuple[tuple[str, str], ...]:
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
        f"parent field to a column name (got {_quote(value)}).",
        value=value,
    )


def _check_on_error(value: JSON, path: str, name: str) -> str:
    if value in ("fail", "skip"):
        return t.cast("str", value)
    raise ConfigError(
        path,
        f"`on_error` {_quote(value)} is not recognized.",
        value=value,
        allowed="`fail` or `skip`",
    )


def _check_scalar(value: JSON, path: str, name: str) -> JSON:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return value
    raise ConfigError(
        path, f"`{name}` should be a string or a number (got {_quote(value)}).", value=value
    )


# --------------------------------------------------------------------------- the table


@dataclasses.dataclass(frozen=True)
class Option:
    """One spec option: how to check it, its default, and how to document it."""

    name: str
    check: t.Callable[[JSON, str, str], JSON]
    default: JSON
    description: str
    jsonschema: dict[str, JSON]
    secret: bool = False
    r_http: bool = True
    example: str = ""


_SCALAR = {"type": ["string", "number", "null"]}

OPTIONS: dict[str, Option] = {
    o.name: o
    for o in (
        Option(
            "name",
            _check_name,
            None,
            "Stream (and table) name; letters, digits and `_`. Required, unique.",
            {"type": "string", "pattern": STREAM_NAME_RE.pattern},
            r_http=False,
            example='"name": "posts"',
        ),
        Option(
            "url",
            _check_url,
            None,
            "URL to request. No scheme means `http://`; only http and https. Required.",
            {"type": "string"},
            example='"url": "https://api.example.com/posts"',
        ),
        Option(
            "method",
            _check_method,
            "GET",
            "HTTP method: GET, HEAD, POST, PUT, PATCH or DELETE.",
            {"type": "string", "enum": [*METHODS, *(m.lower() for m in METHODS)]},
            example='"method": "POST"',
        ),
        Option(
            "params",
            _check_scalar_map,
            None,
            "Query parameters (numbers, strings or null for `k=`), merged into the URL's "
            "own query; a key already in the URL is replaced, never sent twice.",
            {"type": "object", "additionalProperties": _SCALAR},
            example='"params": {"q": "banana", "limit": 2}',
        ),
        Option(
            "header",
            _check_header,
            None,
            'Extra headers: an object (null removes a default header) or an array of "Name: '
            'value" lines. Defaults: `User-Agent: tap-rhttp/<version>`, '
            "`Accept-Encoding: gzip, deflate`.",
            {
                "anyOf": [
                    {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
                    {"type": "array", "items": {"type": "string"}},
                ]
            },
            example='"header": {"Accept": "application/json"}',
        ),
        Option(
            "data",
            _check_any,
            None,
            "Request body (not on GET/HEAD). POST: an object is form-encoded, a string is "
            "sent as is. PUT/PATCH/DELETE: a string is sent as is, anything else as JSON.",
            {},
            example='"data": {"player": "Bob", "game": "tic tac toe"}',
        ),
        Option(
            "auth",
            _check_auth,
            None,
            "Credentials: `basic`/`digest` (`user`, `pass`), `bearer` (`token`) or "
            "`api_key` (`name`, `value`, `in`: header|query). Secret.",
            {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "enum": list(AUTH_TYPES)},
                    "user": {"type": "string"},
                    "pass": {"type": "string", "secret": True, "writeOnly": True},
                    "token": {"type": "string", "secret": True, "writeOnly": True},
                    "name": {"type": "string"},
                    "value": {"type": "string", "secret": True, "writeOnly": True},
                    "in": {"type": "string", "enum": ["header", "query"]},
                },
            },
            secret=True,
            example='"auth": {"type": "digest", "user": "fred", "pass": "mxyzptlk"}',
        ),
        Option(
            "timeout",
            _seconds(),
            30.0,
            "Seconds one attempt may take, from connect to the last body byte. "
            "0 disables the limit.",
            {"type": "number", "minimum": 0},
            example='"timeout": 10',
        ),
        Option(
            "reattempts",
            _int_at_least(1),
            5,
            "Total tries per request (alias `attempts`), with backoff between them.",
            {"type": "integer", "minimum": 1},
            example='"reattempts": 3',
        ),
        Option(
            "redirects",
            _int_at_least(0),
            1,
            "Redirect hops to follow; 0 makes any 3xx an error.",
            {"type": "integer", "minimum": 0},
            example='"redirects": 2',
        ),
        Option(
            "verify",
            _check_verify,
            True,
            "Verify the server's TLS certificate: true, false, or a path to a CA bundle.",
            {"type": ["boolean", "string"]},
            example='"verify": false',
        ),
        Option(
            "result_format",
            _check_result_format,
            "auto",
            "How to read the body: auto, json, jsonp, text or binary (base64).",
            {"type": "string", "enum": list(RESULT_FORMATS)},
            example='"result_format": "jsonp"',
        ),
        Option(
            "page",
            _check_page,
            None,
            "Depagination: 'link-next' or a page expression of `info` "
            "(`params`, `header`, `body`). Needs `page_limit`.",
            {"type": "string"},
            example="\"page\": \"info['body']['meta']['next'].default(None)\"",
        ),
        Option(
            "page_limit",
            _int_at_least(-1),
            None,
            "Requests to make with `page`: -1 no limit, 0 none, n at most n. Needs `page`.",
            {"type": "integer", "minimum": -1},
            example='"page_limit": 5',
        ),
        Option(
            "records_path",
            _check_records_path,
            None,
            "JSONPath to the records in each body (e.g. `$.items[*]`); default: the body.",
            {"type": "string"},
            r_http=False,
            example='"records_path": "$.items[*]"',
        ),
        Option(
            "primary_keys",
            _check_string_list,
            (),
            "Fields that identify a record (targets upsert on them).",
            {"type": "array", "items": {"type": "string"}},
            r_http=False,
            example='"primary_keys": ["id"]',
        ),
        Option(
            "schema",
            _check_schema,
            None,
            "JSON Schema of the records; default: inferred from the first page at discovery.",
            {"type": "object"},
            r_http=False,
            example='"schema": {"properties": {"id": {"type": "integer"}}}',
        ),
        Option(
            "secret_headers",
            _check_string_list,
            (),
            "Header names whose values are secrets (Authorization, Cookie, *token*, "
            "*api-key* ... are always treated as secret).",
            {"type": "array", "items": {"type": "string"}},
            r_http=False,
            example='"secret_headers": ["X-Customer"]',
        ),
        Option(
            "backoff_base",
            _seconds(allow_zero=False),
            1.0,
            "Upper bound in seconds of the first jittered wait between tries; doubles per try.",
            {"type": "number", "exclusiveMinimum": 0},
            r_http=False,
            example='"backoff_base": 0.5',
        ),
        Option(
            "backoff_max",
            _seconds(allow_zero=False),
            60.0,
            "Cap in seconds on any one backoff wait.",
            {"type": "number", "exclusiveMinimum": 0},
            r_http=False,
            example='"backoff_max": 30',
        ),
        Option(
            "retry_after_max",
            _seconds(),
            300.0,
            "Longest `Retry-After` (seconds) honoured; a longer one fails fast.",
            {"type": "number", "minimum": 0},
            r_http=False,
            example='"retry_after_max": 120',
        ),
        Option(
            "for_each",
            _check_for_each,
            None,
            "Fan-out: run the spec once per value of this list, bound to `item` in templates.",
            {"type": "array"},
            r_http=False,
            example='"for_each": [1, 2, 3]',
        ),
        Option(
            "parent",
            _check_name,
            None,
            "Fan-out: the name of another stream; the spec runs once per parent record, "
            "bound to `row` in templates.",
            {"type": "string"},
            r_http=False,
            example='"parent": "users"',
        ),
        Option(
            "parent_keys",
            _check_parent_keys,
            None,
            "Parent fields copied into each child record: a list (same names) or an object "
            "(parent field -> column). Default: the parent's primary keys as `<parent>_<key>`.",
            {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "object"}]},
            r_http=False,
            example='"parent_keys": {"id": "user_id"}',
        ),
        Option(
            "on_error",
            _check_on_error,
            "fail",
            "`fail` stops the run on a failed request chain; `skip` logs it, counts it and "
            "goes on with the next item/row (r.http's `.default()`).",
            {"type": "string", "enum": ["fail", "skip"]},
            r_http=False,
            example='"on_error": "skip"',
        ),
        Option(
            "replication_key",
            _check_string,
            None,
            "Incremental: the field whose latest value is the bookmark (must be in the schema).",
            {"type": "string"},
            r_http=False,
            example='"replication_key": "updated_at"',
        ),
        Option(
            "start_value",
            _check_scalar,
            None,
            "Incremental: the bookmark to use when STATE has none.",
            {"type": ["string", "number"]},
            r_http=False,
            example='"start_value": "2024-01-01T00:00:00Z"',
        ),
        Option(
            "filter_bookmark",
            _check_bool,
            True,
            "Incremental: drop records whose replication key is at or before the bookmark.",
            {"type": "boolean"},
            r_http=False,
            example='"filter_bookmark": false',
        ),
        Option(
            "is_sorted",
            _check_bool,
            False,
            "Incremental: the API returns records in replication-key order, so the bookmark "
            "advances as records arrive (and a sort error fails the run).",
            {"type": "boolean"},
            r_http=False,
            example='"is_sorted": true',
        ),
        Option(
            "max_concurrency",
            _int_at_least(1),
            1,
            "Fan-out: request chains (for_each values) fetched at once.",
            {"type": "integer", "minimum": 1},
            r_http=False,
            example='"max_concurrency": 4',
        ),
        Option(
            "template_env",
            _check_bool,
            False,
            "Allow `env` (the process environment) in `{{ }}` templates.",
            {"type": "boolean"},
            r_http=False,
            example='"template_env": true',
        ),
        Option(
            "rate_limit",
            _check_rate,
            None,
            "Client-side limit: at most this many requests per second for the stream.",
            {"type": "number", "exclusiveMinimum": 0},
            r_http=False,
            example='"rate_limit": 5',
        ),
    )
}

ALIASES = {"attempts": "reattempts"}
#: Options that may not appear under `defaults`.
NOT_IN_DEFAULTS = frozenset({"name"})
#: Object options merged key by key (stream over defaults); others are replaced whole.
MERGED = frozenset({"params"})


@dataclasses.dataclass(frozen=True)
class RequestSpec:
    """One validated r.http spec: everything a stream needs to make its requests."""

    name: str
    path: str
    url: str
    method: str = "GET"
    params: t.Mapping[str, JSON] = dataclasses.field(default_factory=dict)
    header: Header = ()
    data: JSON = None
    auth: Auth | None = None
    timeout: float = 30.0
    reattempts: int = 5
    redirects: int = 1
    verify: bool | str = True
    result_format: str = "auto"
    page: Expression | None = None
    page_source: str | None = None
    page_limit: int | None = None
    records_path: str | None = None
    primary_keys: tuple[str, ...] = ()
    schema: dict[str, JSON] | None = None
    secret_headers: tuple[str, ...] = ()
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    retry_after_max: float = 300.0
    rate_limit: float | None = None
    for_each: tuple[JSON, ...] | None = None
    parent: str | None = None
    parent_keys: tuple[tuple[str, str], ...] | None = None
    on_error: str = "fail"
    replication_key: str | None = None
    start_value: JSON = None
    filter_bookmark: bool = True
    is_sorted: bool = False
    max_concurrency: int = 1
    template_env: bool = False
    templates: t.Mapping[str, JSON] = dataclasses.field(default_factory=dict, repr=False)
    raw: t.Mapping[str, JSON] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def template_names(self) -> tuple[str, ...]:
        """The names `{{ }}` templates of this spec may use."""
        names = ["config", "secrets"]
        if self.for_each is not None:
            names.append("item")
        if self.parent is not None:
            names.append("row")
        if self.replication_key is not None:
            names.append("bookmark")
        if self.template_env:
            names.append("env")
        return tuple(names)

    @property
    def has_data(self) -> bool:
        """True when a request body is configured."""
        return self.data is not None

    def fingerprint(self) -> str:
        """A digest of everything that shapes this spec's requests and records.

        Two specs with the same fingerprint make the same requests and read them the same
        way (the page expression counts by its source text). A digest, so no secret is
        kept in it.
        """
        fields: dict[str, JSON] = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("page", "templates", "raw")
        }
        fields["auth"] = dataclasses.asdict(self.auth) if self.auth is not None else None
        text = json.dumps(fields, sort_keys=True, default=_fingerprint_value)
        return hashlib.sha256(text.encode()).hexdigest()


def _fingerprint_value(value: JSON) -> JSON:
    if isinstance(value, t.Mapping):
        return dict(value)
    return repr(value)


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


def _check_keys(raw: dict[str, JSON], path: str, *, in_defaults: bool) -> list[ConfigError]:
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


def _merge_headers(base: Header, over: Header) -> Header:
    names = {k.lower() for k, _ in over}
    return tuple((k, v) for k, v in base if k.lower() not in names) + over


def _check_values(raw: dict[str, JSON], path: str) -> tuple[dict[str, JSON], list[ConfigError]]:
    values: dict[str, JSON] = {}
    errors: list[ConfigError] = []
    for key, value in raw.items():
        option = OPTIONS.get(key)
        if option is None:
            continue
        if value is None and key not in ("name", "url"):
            continue  # explicit null means "not set"
        try:
            values[key] = option.check(value, f"{path}.{key}", key)
        except ConfigError as exc:
            errors.append(exc)
    return values, errors


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
            f"(got {_type_name(data)} {_quote(data)}).",
            value=data,
        )
    if method == "POST" and isinstance(data, dict):
        _check_scalar_map(data, path, "data")
    return data


def _cross_checks(values: dict[str, JSON], raw: dict[str, JSON], path: str) -> list[ConfigError]:
    errors: list[ConfigError] = []
    method = values.get("method", "GET")
    try:
        check_data(method, values.get("data"), f"{path}.data")
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
    if values.get("parent_keys") is not None and values.get("parent") is None:
        errors.append(ConfigError(f"{path}.parent_keys", "`parent_keys` needs `parent`."))
    if values.get("start_value") is not None and values.get("replication_key") is None:
        errors.append(ConfigError(f"{path}.start_value", "`start_value` needs `replication_key`."))
    schema = values.get("schema")
    key = values.get("replication_key")
    if schema is not None and key is not None and key not in schema.get("properties", {}):
        errors.append(
            ConfigError(
                f"{path}.replication_key",
                f"replication key `{key}` is not in `schema.properties`.",
                value=key,
                allowed=", ".join(sorted(schema.get("properties", {}))) or "(none)",
            )
        )
    if schema is not None:
        props = schema.get("properties", {})
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
    from tap_rhttp.expressions import compile_expression

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
    from tap_rhttp.templates import compile_string, compile_value, has_placeholder

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


#: singer-sdk's built-in top-level settings. The SDK checks them itself, after
#: :func:`load_specs`; ``tests/test_config_agreement.py`` keeps this list in step.
SDK_SETTINGS = frozenset(
    {
        "batch_config",
        "faker_config",
        "flattening_enabled",
        "flattening_max_depth",
        "flattening_max_key_length",
        "flattening_separator",
        "stream_map_config",
        "stream_maps",
    }
)


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
                    f"(got {_quote(streams)}).",
                    value=streams,
                    allowed='[{"name": "...", "url": "..."}, ...]',
                )
            ]
        )
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
    errors += _check_keys(defaults, "defaults", in_defaults=True)
    default_values, default_errors = _check_values(defaults, "defaults")
    errors += default_errors

    specs: list[RequestSpec] = []
    seen: dict[str, str] = {}
    for index, stream in enumerate(streams):
        path = f"streams[{index}]"
        if not isinstance(stream, dict):
            errors.append(
                ConfigError(path, f"a stream spec should be an object (got {_quote(stream)}).")
            )
            continue
        try:
            stream = _resolve_aliases(stream, path)
        except ConfigError as exc:
            errors.append(exc)
            continue
        key_errors = _check_keys(stream, path, in_defaults=False)
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
        values, value_errors = _check_values(stream, path)
        errors += value_errors
        if value_errors or "name" not in values or "url" not in values:
            continue
        name = values["name"]
        if name in seen:
            errors.append(
                ConfigError(
                    f"{path}.name",
                    f"stream name {_quote(name)} is already used by {seen[name]}; "
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
    errors += _check_parents(specs)
    if errors:
        raise ConfigErrors(errors)
    return specs


def _check_parents(specs: list[RequestSpec]) -> list[ConfigError]:
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
                    f"`parent` names no stream: {_quote(spec.parent)}."
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
