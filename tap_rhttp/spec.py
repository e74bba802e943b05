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
import difflib
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
        if not _is_number(value) or not math.isfinite(value):
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
    if not isinstance(value, str) or not STREAM_NAME_RE.match(value):
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
    if any(c in url for c in "\r\n\t "):
        raise ConfigError(
            path, f"`url` {_quote(url)} contains whitespace; encode it (%20).", value=url
        )
    url = normalise_url(url)
    scheme = url_scheme(url)
    if scheme not in SCHEMES:
        raise ConfigError(
            path,
            f"Unsupported protocol `{scheme}` in `url` {_quote(value)}.",
            value=value,
            allowed="http:// or https:// (no scheme means http://)",
        )
    return url


def _check_method(value: JSON, path: str, name: str) -> str:
    if isinstance(value, str) and value.upper() in METHODS:
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
    if not HEADER_NAME_RE.match(name):
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
                if _is_number(item):
                    item = json.dumps(item)
                else:
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
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
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
    raw: t.Mapping[str, JSON] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def has_data(self) -> bool:
        """True when a request body is configured."""
        return self.data is not None


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


def _cross_checks(values: dict[str, JSON], raw: dict[str, JSON], path: str) -> list[ConfigError]:
    errors: list[ConfigError] = []
    method = values.get("method", "GET")
    if values.get("data") is not None:
        data = values["data"]
        if method in ("GET", "HEAD"):
            errors.append(
                ConfigError(
                    f"{path}.data",
                    "`data` should only be specified on a PUT, POST, PATCH, or DELETE "
                    "request.  If you want URL parameters, use `params` instead.",
                    value=data,
                )
            )
        elif method == "POST" and not isinstance(data, (str, dict)):
            errors.append(
                ConfigError(
                    f"{path}.data",
                    f"`data` on a POST should be an object or a string "
                    f"(got {_type_name(data)} {_quote(data)}).",
                    value=data,
                )
            )
        elif method == "POST" and isinstance(data, dict):
            try:
                _check_scalar_map(data, f"{path}.data", "data")
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
    schema = values.get("schema")
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
    return RequestSpec(path=path, raw=raw, **kwargs)


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
    defaults = config.get("defaults") or {}
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
        if key_errors or value_errors or "name" not in values or "url" not in values:
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
        if cross:
            errors += cross
            continue
        try:
            specs.append(_build(merged_values, path, _merge(defaults, stream)))
        except ConfigError as exc:
            errors.append(exc)
    if errors:
        raise ConfigErrors(errors)
    return specs
