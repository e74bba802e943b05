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
import unicodedata

from tap_rhttp.errors import ConfigError
from tap_rhttp.expr import compile_expression
from tap_rhttp.formats.delimited import CsvOptions
from tap_rhttp.formats.records import compile_records_path
from tap_rhttp.formats.xmldoc import XmlOptions
from tap_rhttp.http.auth import AUTH_TYPES, OAUTH2_CLIENT_AUTH, OAUTH2_GRANTS, Credentials
from tap_rhttp.http.origins import origin_of, origin_text, parse_origin
from tap_rhttp.http.rules import ACTIONS, ResponseRule
from tap_rhttp.http.urls import SCHEMES, normalise_url, url_scheme
from tap_rhttp.schema.drift import POLICIES as DRIFT_POLICIES
from tap_rhttp.schema.infer import SampleSize

if t.TYPE_CHECKING:
    from tap_rhttp.types import JSON, HeaderPairs

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
RESULT_FORMATS = ("auto", "json", "jsonp", "text", "binary", "csv", "jsonl", "xml")
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


#: The range of a JSON integer tap-rhttp carries (what orjson and msgspec encode: int64 and
#: uint64); a larger literal would lose digits or fail the first request, so load rejects it.
INT_MIN = -(1 << 63)
INT_MAX = (1 << 64) - 1


def _bound(value: float) -> str:
    """A bound as a message prints it: 86400, not 86400.0."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def int_between(minimum: int, maximum: int) -> t.Callable[[JSON, str, str], int]:
    """An integer option in ``[minimum, maximum]``."""
    allowed = f"an integer from {minimum} to {maximum}"

    def check(value: JSON, path: str, name: str) -> int:
        if not is_int(value):
            raise ConfigError(
                path,
                f"`{name}` should be an integer (got {quote_value(value)}).",
                value=value,
                allowed=allowed,
            )
        if value < minimum:
            raise ConfigError(
                path,
                f"`{name}` should be greater than or equal to {minimum} (got {value}).",
                value=value,
                allowed=allowed,
            )
        if value > maximum:
            raise ConfigError(
                path,
                f"`{name}` should be at most {maximum} (got {quote_value(value)}).",
                value=value,
                allowed=allowed,
            )
        return int(value)

    return check


def seconds(*, maximum: float, allow_zero: bool = True) -> t.Callable[[JSON, str, str], float]:
    """A number of seconds in ``[0, maximum]`` (``(0, maximum]`` without `allow_zero`)."""
    allowed = (
        f"a number of seconds from 0 to {_bound(maximum)}"
        if allow_zero
        else f"a number of seconds greater than 0, up to {_bound(maximum)}"
    )

    def check(value: JSON, path: str, name: str) -> float:
        if not is_finite(value):
            raise ConfigError(
                path,
                f"`{name}` should be a number of seconds (got {quote_value(value)}).",
                value=value,
                allowed=allowed + ", fractions allowed",
            )
        if value < 0:
            raise ConfigError(
                path, f"`{name}` may not be negative (got {quote_value(value)}).", value=value
            )
        if value == 0 and not allow_zero:
            raise ConfigError(
                path, f"`{name}` should be greater than 0 (got {quote_value(value)}).", value=value
            )
        if value > maximum:
            raise ConfigError(
                path,
                f"`{name}` should be at most {_bound(maximum)} seconds (got {quote_value(value)}).",
                value=value,
                allowed=allowed,
            )
        return float(value)

    return check


def _int_text(value: int) -> str:
    """An integer for a message: its digits, or its size when it is very long."""
    return str(value) if value.bit_length() <= 400 else f"an integer of {value.bit_length()} bits"


def number_errors(value: JSON, path: str) -> list[ConfigError]:
    """Numbers no request or message can carry, anywhere in a config value.

    NaN and the infinities are not JSON (a config read by singer-sdk may still hold them,
    e.g. from `1e400` or an environment variable), and an integer outside
    [:data:`INT_MIN`, :data:`INT_MAX`] would lose digits or fail the first request.
    """
    errors: list[ConfigError] = []
    stack: list[tuple[JSON, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, bool) or item is None or isinstance(item, str):
            continue
        if isinstance(item, float) and not math.isfinite(item):
            errors.append(
                ConfigError(
                    where,
                    f"numbers must be finite (got {quote_value(item)}).",
                    value=item,
                    allowed="a finite JSON number",
                )
            )
        elif isinstance(item, int) and not INT_MIN <= item <= INT_MAX:
            errors.append(
                ConfigError(
                    where,
                    f"integers must fit in 64 bits (got {_int_text(item)}); "
                    "write a larger one as a string.",
                    value="<large integer>",
                    allowed=f"an integer from {INT_MIN} to {INT_MAX}",
                )
            )
        elif isinstance(item, dict):
            stack.extend((v, f"{where}.{k}") for k, v in reversed(list(item.items())))
        elif isinstance(item, (list, tuple)):
            stack.extend((v, f"{where}[{i}]") for i, v in reversed(list(enumerate(item))))
    return errors


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


def _object_of(value: JSON, path: str, name: str, keys: t.Collection[str]) -> dict[str, JSON]:
    if not isinstance(value, dict):
        raise ConfigError(
            path,
            f"`{name}` should be an object (got {type_name(value)} {quote_value(value)}).",
            value=value,
            allowed="an object with " + ", ".join(f"`{k}`" for k in keys),
        )
    for key in value:
        if key not in keys:
            raise ConfigError(
                f"{path}.{key}",
                f"`{key}` is not an option of `{name}`.",
                value=key,
                allowed=", ".join(f"`{k}`" for k in keys),
            )
    return value


def _one_char(value: JSON, path: str, label: str, *, nullable: bool) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str) or len(value) != 1 or value in "\r\n":
        raise ConfigError(
            path,
            f"`{label}` should be one character (got {quote_value(value)}).",
            value=value,
            allowed="one character other than CR and LF" + (", or null" if nullable else ""),
        )
    return value


_CSV_KEYS = (
    "delimiter",
    "quotechar",
    "escapechar",
    "doublequote",
    "skipinitialspace",
    "header",
    "fieldnames",
)


def check_csv(value: JSON, path: str, name: str) -> CsvOptions:
    """The `csv` option: how CSV bodies are read."""
    options = _object_of(value, path, name, _CSV_KEYS)
    delimiter = options.get("delimiter")
    if delimiter is not None:
        delimiter = _one_char(delimiter, f"{path}.delimiter", "csv.delimiter", nullable=False)
    quotechar = _one_char(
        options.get("quotechar", '"'), f"{path}.quotechar", "csv.quotechar", nullable=True
    )
    escapechar = _one_char(
        options.get("escapechar"), f"{path}.escapechar", "csv.escapechar", nullable=True
    )
    flags = {
        key: check_bool(options[key], f"{path}.{key}", f"csv.{key}")
        for key in ("doublequote", "skipinitialspace", "header")
        if key in options
    }
    fieldnames = None
    if options.get("fieldnames") is not None:
        fieldnames = check_string_list(
            options["fieldnames"], f"{path}.fieldnames", "csv.fieldnames"
        )
    if not flags.get("header", True) and fieldnames is None:
        raise ConfigError(
            f"{path}.header",
            "`csv.header: false` needs `csv.fieldnames` (the names of the fields).",
            value=False,
        )
    chars = [c for c in (delimiter or ",", quotechar, escapechar) if c is not None]
    if len(set(chars)) != len(chars):
        raise ConfigError(
            path,
            "`csv.delimiter`, `csv.quotechar` and `csv.escapechar` must differ "
            f"(got {quote_value(value)}).",
            value=value,
        )
    return CsvOptions(
        delimiter=delimiter,
        quotechar=quotechar,
        escapechar=escapechar,
        fieldnames=fieldnames,
        **flags,
    )


_XML_NAME_RE = re.compile(r"^[^\s/<>&\"'=]+$")


def check_xml(value: JSON, path: str, name: str) -> XmlOptions:
    """The `xml` option: where the records of an XML body are, and which names are arrays."""
    options = _object_of(value, path, name, ("records", "arrays"))
    records = None
    if options.get("records") is not None:
        text = options["records"]
        steps = text.strip("/").split("/") if isinstance(text, str) else []
        if not steps or not all(_XML_NAME_RE.fullmatch(step) for step in steps):
            raise ConfigError(
                f"{path}.records",
                f"`xml.records` should be a path of element names from the root, such as "
                f"`channel/item` (got {quote_value(text)}).",
                value=text,
                allowed="element names (`prefix:name` when namespaced) separated by `/`",
            )
        records = tuple(steps)
    arrays: tuple[str, ...] = ()
    if options.get("arrays") is not None:
        arrays = check_string_list(options["arrays"], f"{path}.arrays", "xml.arrays")
    return XmlOptions(records=records, arrays=frozenset(arrays))


def _check_scalar(item: JSON, path: str, name: str, *, in_list: bool) -> None:
    if item is not None and not isinstance(item, str) and not is_number(item):
        hint = "" if in_list else " A list of them sends the key once per value."
        raise ConfigError(
            path,
            f"`{name}` values should be numbers, strings or null "
            f"(got {type_name(item)} {quote_value(item)}).{hint}",
            value=item,
        )
    if isinstance(item, float) and not math.isfinite(item):
        raise ConfigError(path, f"`{name}` values must be finite.", value=item)


def check_scalar_map(value: JSON, path: str, name: str) -> dict[str, JSON]:
    """`params` (and form `data`): an object of number/string/null values, or lists of them.

    A list sends its key once per value, in order (``fields=a&fields=b``).
    """
    if not isinstance(value, dict):
        raise ConfigError(
            path,
            f"`{name}` should be an object (got {type_name(value)} {quote_value(value)}).",
            value=value,
            allowed="an object whose values are numbers, strings or null, or lists of them",
        )
    for key, item in value.items():
        if isinstance(item, list):
            for index, element in enumerate(item):
                _check_scalar(element, f"{path}.{key}[{index}]", name, in_list=True)
        else:
            _check_scalar(item, f"{path}.{key}", name, in_list=False)
    return dict(value)


def check_header_name(name: str, path: str) -> None:
    if not HEADER_NAME_RE.fullmatch(name):
        raise ConfigError(
            path,
            f"`header` name {quote_value(name)} is not a valid HTTP header name.",
            value=name,
            allowed="letters, digits and !#$%&'*+-.^_`|~",
        )


def _char_name(char: str) -> str:
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" {name}" if name else "")


def check_header_value(text: str, path: str, *, what: str = "`header` values") -> None:
    """A header value HTTP/1.1 can carry as it is (RFC 9110 §5.5), else a ConfigError.

    Field values are Latin-1 octets without control characters, and leading or trailing
    whitespace is not part of a value. A character pasted from a document (a zero-width
    space, a typographic quote) would otherwise fail the first request, deep in the
    transport. The message names the character, never the value (it may be a secret). A value with
    a ``{{ }}`` placeholder is checked once rendered (``templates.render_spec``), except
    for CR and LF, which no placeholder can make right.
    """
    templated = "{{" in text
    if "\r" in text or "\n" in text:
        raise ConfigError(
            path,
            f"{what} may not contain CR or LF (a header line cannot be injected).",
            value="<redacted>",
        )
    if templated:
        return
    for char in text:
        if ord(char) > 0xFF:
            raise ConfigError(
                path,
                f"{what} can only hold Latin-1 characters; this one holds {_char_name(char)} "
                "(pasted from a document?).",
                value="<redacted>",
                allowed="printable Latin-1 characters",
            )
        if (ord(char) < 0x20 and char != "\t") or ord(char) == 0x7F:
            raise ConfigError(
                path,
                f"{what} may not contain control characters; this one holds {_char_name(char)}.",
                value="<redacted>",
                allowed="printable Latin-1 characters",
            )
    if text != text.strip(" \t"):
        raise ConfigError(
            path,
            f"{what} may not start or end with a space or tab (HTTP drops it; a pasted value?).",
            value="<redacted>",
        )


def check_credentials(credentials: Credentials, path: str) -> Credentials:
    """Credentials HTTP can carry, checked at load and again after templates render.

    Values that travel in a header (a bearer token, a header API key, a digest user name)
    follow :func:`check_header_value`; basic credentials are sent base64-encoded as UTF-8
    (RFC 7617), so they only may not hold control characters a pasted value brings in;
    a query API key is percent-encoded and may hold anything.
    """
    kind = credentials.type
    if kind == "bearer" and credentials.token is not None:
        check_header_value(credentials.token, f"{path}.token", what="`bearer` tokens")
    if kind == "api_key" and credentials.location == "header" and credentials.value is not None:
        check_header_value(credentials.value, f"{path}.value", what="header API keys")
    if kind == "digest" and credentials.user is not None:
        check_header_value(credentials.user, f"{path}.user", what="`digest` user names")
        if "{{" not in credentials.user and ('"' in credentials.user or "\\" in credentials.user):
            raise ConfigError(
                f"{path}.user",
                '`digest` user names may not contain `"` or `\\` (RFC 7616 sends them quoted).',
                value=credentials.user,
            )
    for key, item in (("user", credentials.user), ("pass", credentials.password)):
        if kind in ("basic", "digest") and item is not None:
            bad = next((c for c in item if ord(c) < 0x20 or ord(c) == 0x7F), None)
            if bad is not None:
                raise ConfigError(
                    f"{path}.{key}",
                    f"`{kind}` auth `{key}` may not contain control characters; this one "
                    f"holds {_char_name(bad)}.",
                    value="<redacted>",
                )
    return credentials


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
            check_header_value(rest.strip(" \t"), where)
            pairs.append((key, rest.strip(" \t")))
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


#: `rate_limit` bounds, requests per second: one request every 10,000 s (about 2.8 hours)
#: at the slowest; beyond 10,000 per second a client-side limit means nothing.
RATE_MIN = 0.0001
RATE_MAX = 10000.0


#: Upper bounds of `schema_sample`: discovery fetches and holds what it samples.
SAMPLE_MAX = {"pages": 100, "records": 1_000_000}


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
        if item > SAMPLE_MAX[key]:
            raise ConfigError(
                f"{path}.{key}",
                f"`schema_sample.{key}` should be at most {SAMPLE_MAX[key]} "
                f"(got {quote_value(item)}).",
                value=item,
                allowed=f"an integer from 1 to {SAMPLE_MAX[key]}",
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
    if not is_finite(value) or not RATE_MIN <= value <= RATE_MAX:
        raise ConfigError(
            path,
            f"`{name}` should be a number of requests per second greater than 0, from "
            f"{_bound(RATE_MIN)} (one request every {_bound(1 / RATE_MIN)} s) to "
            f"{_bound(RATE_MAX)} (got {quote_value(value)}).",
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
    if kind == "oauth2":
        return check_oauth2(value, path)
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
    return check_credentials(
        Credentials(
            type=kind,
            user=value.get("user"),
            password=value.get("pass"),
            token=value.get("token"),
            name=value.get("name"),
            value=value.get("value"),
            location=location,
        ),
        path,
    )


def check_trusted_origins(value: JSON, path: str, name: str) -> tuple[str, ...]:
    """A list of origins (``https://host[:port]``, no path) that also receive credentials."""
    if not isinstance(value, list):
        raise ConfigError(
            path,
            f"`trusted_origins` should be a list of origins (got {quote_value(value)}).",
            value=value,
            allowed='origins such as "https://api2.example.com" or "https://files.example.com:8443"',
        )
    origins: list[str] = []
    for index, item in enumerate(value):
        origin = parse_origin(item) if isinstance(item, str) else None
        if origin is None:
            raise ConfigError(
                f"{path}[{index}]",
                f"`trusted_origins` entry {quote_value(item)} is not an origin: write the "
                "scheme, host and optional port only (no path, query or user info).",
                value=item,
                allowed='"https://api2.example.com", "http://127.0.0.1:8080"',
            )
        origins.append(origin_text(origin))
    return tuple(origins)


def check_proxy(value: JSON, path: str, name: str) -> str:
    """A proxy URL: http:// or https://, a host, optional user info (a secret) and port."""
    text = value if isinstance(value, str) else ""
    if "{{" in text:
        return text  # checked again once rendered
    origin = origin_of(text) if text and not any(c in text for c in "\r\n\t ") else None
    if origin is None:
        raise ConfigError(
            path,
            f"`proxy` should be an http:// or https:// URL of a proxy (got "
            f"{quote_value(redact_userinfo(value) if isinstance(value, str) else value)}).",
            value="<redacted>",
            allowed='"http://proxy.internal:3128" or "http://user:password@proxy.internal:3128"',
        )
    return text


def redact_userinfo(url: str) -> str:
    """A URL with the password of its user info replaced, for a config message."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.\-]*://[^/?#:@]*):[^/?#@]*@", r"\1:***@", url)


_OAUTH2_KEYS = (
    "type",
    "grant",
    "token_url",
    "client_id",
    "client_secret",
    "refresh_token",
    "username",
    "password",
    "scopes",
    "audience",
    "extra",
    "client_auth",
    "token_cache",
)
_OAUTH2_SECRETS = ("client_secret", "refresh_token", "password")
#: What each grant needs besides `token_url` and `client_id`.
_OAUTH2_NEEDS = {
    "client_credentials": ("client_secret",),
    "refresh_token": ("refresh_token",),
    "password": ("username", "password"),
}


def check_oauth2(value: dict[str, JSON], path: str) -> Credentials:
    """`auth` of type `oauth2`: a grant, the token endpoint and the grant's credentials."""
    for key in value:
        if key not in _OAUTH2_KEYS:
            raise ConfigError(
                f"{path}.{key}",
                f"`{key}` is not an option of `oauth2` auth.",
                allowed=", ".join(f"`{k}`" for k in _OAUTH2_KEYS),
            )
    grant = value.get("grant", "client_credentials")
    if grant not in OAUTH2_GRANTS:
        raise ConfigError(
            f"{path}.grant",
            f"`auth.grant` {quote_value(grant)} is not supported.",
            value=grant,
            allowed=", ".join(f"`{g}`" for g in OAUTH2_GRANTS),
        )
    for key in ("token_url", "client_id", *_OAUTH2_NEEDS[grant]):
        item = value.get(key)
        if not isinstance(item, str) or not item:
            raise ConfigError(
                f"{path}.{key}",
                f"`oauth2` auth with the `{grant}` grant needs `{key}` as a non-empty string"
                + (" (got a value of the wrong type)." if key in value else "."),
                value="<redacted>" if key in _OAUTH2_SECRETS else item,
            )
    optional = ("client_secret", "refresh_token", "username", "password", "audience", "token_cache")
    for key in optional:
        item = value.get(key)
        if item is not None and (not isinstance(item, str) or not item):
            raise ConfigError(
                f"{path}.{key}",
                f"`auth.{key}` should be a non-empty string.",
                value="<redacted>" if key in _OAUTH2_SECRETS else item,
            )
    token_url = value["token_url"]
    assert isinstance(token_url, str)
    if "{{" not in token_url and url_scheme(token_url) not in SCHEMES:
        raise ConfigError(
            f"{path}.token_url",
            f"`auth.token_url` {quote_value(token_url)} should be an http:// or https:// URL.",
            value=token_url,
        )
    scopes = value.get("scopes", [])
    if isinstance(scopes, str):
        scopes = scopes.split()
    if not isinstance(scopes, list) or not all(isinstance(s, str) and s for s in scopes):
        raise ConfigError(
            f"{path}.scopes",
            f"`auth.scopes` should be a list of scope names (got {quote_value(scopes)}).",
            value=scopes,
            allowed='["read:orders", "write:orders"] or "read:orders write:orders"',
        )
    extra = value.get("extra", {})
    if not isinstance(extra, dict) or not all(
        isinstance(v, str) or is_finite(v) for v in extra.values()
    ):
        raise ConfigError(
            f"{path}.extra",
            "`auth.extra` should be an object of extra token request parameters "
            "(string or number values).",
            value="<redacted>",
        )
    client_auth = value.get("client_auth", "basic")
    if client_auth not in OAUTH2_CLIENT_AUTH:
        raise ConfigError(
            f"{path}.client_auth",
            f"`auth.client_auth` {quote_value(client_auth)} is not supported.",
            value=client_auth,
            allowed="`basic` (an Authorization header, RFC 6749's default) or `body`",
        )
    for secret_key in _OAUTH2_SECRETS:
        item = value.get(secret_key)
        if isinstance(item, str):
            check_header_value(item, f"{path}.{secret_key}")
    return Credentials(
        type="oauth2",
        grant=grant,
        token_url=token_url,
        client_id=value["client_id"],
        client_secret=value.get("client_secret"),
        refresh_token=value.get("refresh_token"),
        user=value.get("username"),
        password=value.get("password"),
        scopes=tuple(scopes),
        audience=value.get("audience"),
        extra=tuple((str(k), as_param(v)) for k, v in extra.items()),
        client_auth=client_auth,
        token_cache=value.get("token_cache"),
    )


def as_param(value: JSON) -> str:
    """A string or number as a form parameter value."""
    if isinstance(value, str):
        return value
    return repr(value) if isinstance(value, float) else str(value)


_RULE_KEYS = ("status", "when", "action", "message")
_STATUS_CLASS_RE = re.compile(r"^[1-5]xx$")


def _rule_statuses(value: JSON, path: str) -> tuple[frozenset[int], str]:
    """A rule's `status`: a code, a class such as "4xx", or a list of them."""
    items = value if isinstance(value, list) else [value]
    codes: set[int] = set()
    for item in items:
        if is_int(item) and 100 <= item <= 599:
            codes.add(item)
        elif isinstance(item, str) and _STATUS_CLASS_RE.fullmatch(item.lower()):
            first = int(item[0]) * 100
            codes.update(range(first, first + 100))
        else:
            raise ConfigError(
                path,
                f"`status` {quote_value(item)} is not a status code or class.",
                value=item,
                allowed='a code (404), a class ("4xx"), or a list of them ([429, "5xx"])',
            )
    if not codes:
        raise ConfigError(path, "`status` should not be an empty list.", value=value)
    return frozenset(codes), quote_value(value)


def check_response_rules(value: JSON, path: str, name: str) -> tuple[ResponseRule, ...]:
    """`response_rules`: a list of {status and/or when, action, message} objects."""
    if not isinstance(value, list):
        raise ConfigError(
            path,
            f"`response_rules` should be a list of rules (got {quote_value(value)}).",
            value=value,
            allowed='[{"status": 404, "action": "skip"}, ...]',
        )
    out: list[ResponseRule] = []
    for index, rule in enumerate(value):
        where = f"{path}[{index}]"
        if not isinstance(rule, dict):
            raise ConfigError(
                where,
                f"a response rule should be an object (got {quote_value(rule)}).",
                value=rule,
                allowed='{"status": ..., "when": ..., "action": ..., "message": ...}',
            )
        for key in rule:
            if key not in _RULE_KEYS:
                raise ConfigError(
                    f"{where}.{key}",
                    f"`{key}` is not an option of a response rule.",
                    value=key,
                    allowed=", ".join(f"`{k}`" for k in _RULE_KEYS),
                )
        action = rule.get("action")
        if action not in ACTIONS:
            raise ConfigError(
                f"{where}.action",
                f"`action` {quote_value(action)} is not recognized.",
                value=action,
                allowed=", ".join(f"`{a}`" for a in ACTIONS),
            )
        if rule.get("status") is None and rule.get("when") is None:
            raise ConfigError(where, "a response rule needs `status`, `when` or both.", value=rule)
        statuses, status_text = (
            _rule_statuses(rule["status"], f"{where}.status")
            if rule.get("status") is not None
            else (None, "")
        )
        when = rule.get("when")
        compiled = None
        if when is not None:
            if not isinstance(when, str) or not when.strip():
                raise ConfigError(
                    f"{where}.when",
                    f"`when` should be an expression string (got {quote_value(when)}).",
                    value=when,
                    allowed="an expression of `response`, e.g. "
                    "\"response['body']['error'] == 'rate limited'\"",
                )
            compiled = compile_expression(when, path=f"{where}.when", names=("response",))
        message = rule.get("message")
        if message is not None and not isinstance(message, str):
            raise ConfigError(
                f"{where}.message",
                f"`message` should be a string (got {quote_value(message)}).",
                value=message,
            )
        out.append(
            ResponseRule(
                path=where,
                action=t.cast("str", action),
                statuses=statuses,
                status_text=status_text,
                when=compiled,
                when_source=when,
                message=message or None,
            )
        )
    return tuple(out)


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


def json_content_type(header: HeaderPairs) -> bool:
    """Whether the spec's own `Content-Type` header is JSON (``application/json``, ``+json``)."""
    for name, value in header:
        if name.lower() == "content-type" and value:
            kind = value.split(";", 1)[0].strip().lower()
            return kind == "application/json" or kind.endswith("+json")
    return False


def check_data(method: str, data: JSON, path: str, *, as_json: bool = False) -> JSON:
    """`data` (or `json`) against the method's rules (at load and after templates render).

    Args:
        as_json: the body goes out as JSON (`json`, or `data` under a JSON Content-Type):
            any JSON value is allowed, on POST too.
    """
    if data is None:
        return None
    if method in ("GET", "HEAD"):
        option = path.rsplit(".", 1)[-1]
        raise ConfigError(
            path,
            f"`{option}` should only be specified on a PUT, POST, PATCH, or DELETE "
            "request.  If you want URL parameters, use `params` instead.",
            value=data,
        )
    if as_json:
        return data
    if method == "POST" and not isinstance(data, (str, dict)):
        raise ConfigError(
            path,
            f"`data` on a POST should be an object or a string "
            f"(got {type_name(data)} {quote_value(data)}); for a JSON body give `json`, or "
            "a `Content-Type: application/json` header.",
            value=data,
        )
    if method == "POST" and isinstance(data, dict):
        try:
            check_scalar_map(data, path, "data")
        except ConfigError as exc:
            raise ConfigError(
                exc.path,
                f"{exc.detail} A POST object is form-encoded; for a JSON body give `json`, "
                "or a `Content-Type: application/json` header.",
                value=exc.value,
            ) from None
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
