"""Reading a response body by `result_format`: ``json``, ``jsonp``, ``text``, ``binary``, ``auto``.

``auto`` picks by the Content-Type as r.http does (and, beyond r.http, CSV, JSON Lines
and XML types pick those formats, read by ``delimited`` and ``xmldoc``); binary bodies
travel base64-encoded. Turning a read body into records is ``records``' job, and
``decoder`` puts the formats together.

JSON is parsed with msgspec (strict: no NaN, no trailing commas; integers of any size
exact, where orjson would read 18446744073709551617 as 1.8446744073709552e19), and a
document msgspec refuses goes to the standard library's parser instead, for r.http's
wording or what msgspec cannot hold (an integer of thousands of digits).

On that path a number too large for a double (``1e999999``) is an error, not an
infinity that would be written as null, and so is a string holding a lone UTF-16
surrogate escape (``"\\ud800"``), which is no Unicode character and which no RECORD line
(UTF-8) can carry. Each is a clear error of the page: ``failed to parse JSON response: ...``.

:func:`dump_json` writes JSON the same way back (orjson, or the standard library for an
integer orjson cannot write), for messages, templates and explain mode.
"""

from __future__ import annotations

import base64
import codecs
import json
import math
import re
import typing as t

import msgspec
import orjson

from tap_rhttp.errors import ResponseFormatError

if t.TYPE_CHECKING:
    from tap_rhttp.types import JSON

BINARY_PREFIXES = ("audio/", "image/", "video/")
BINARY_TYPES = frozenset({"application/octet-stream"})
JSONP_TYPES = frozenset({"application/json-p", "text/json-p", "text/javascript"})
CSV_TYPES = frozenset({"text/csv", "application/csv", "text/tab-separated-values"})
JSONL_TYPES = frozenset(
    {
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/x-jsonl",
        "application/jsonlines",
        "application/x-jsonlines",
    }
)
XML_TYPES = frozenset({"application/xml", "text/xml"})

# fn(...), obj.fn(...), obj["fn"](...), with an optional /**/ prefix and trailing `;`.
_IDENT = r"[A-Za-z_$][\w$]*"
_JSONP_RE = re.compile(
    rf"""^\s*(?:/\*\*/\s*)?{_IDENT}(?:\.{_IDENT}|\[\s*(?:"[^"]*"|'[^']*')\s*\])*\s*\(""",
)
_JSONP_TAIL_RE = re.compile(r"\)\s*;?\s*$")


def media_type(content_type: str | None) -> tuple[str, str | None]:
    """Split a Content-Type into its lower-cased media type and its charset."""
    if not content_type:
        return "", None
    parts = content_type.split(";")
    kind = parts[0].strip().lower()
    charset = None
    for part in parts[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"').strip("'") or None
    return kind, charset


def auto_format(content_type: str | None) -> str:
    """The format `auto` picks for a Content-Type (``jsonp`` means json, jsonp, then text)."""
    kind, _ = media_type(content_type)
    if kind == "application/json" or kind.endswith("+json"):
        return "json"
    if kind in JSONP_TYPES:
        return "jsonp"
    if kind.startswith(BINARY_PREFIXES) or kind in BINARY_TYPES:
        return "binary"
    if kind in CSV_TYPES:
        return "csv"
    if kind in JSONL_TYPES:
        return "jsonl"
    if kind in XML_TYPES or kind.endswith("+xml"):
        return "xml"
    return "text"


def decode_text(body: bytes, content_type: str | None) -> str:
    """Decode a body by its charset (UTF-8 when none or unknown); never fails."""
    _, charset = media_type(content_type)
    encoding = "utf-8"
    if charset:
        try:
            encoding = codecs.lookup(charset).name
        except LookupError:
            encoding = "utf-8"
    return body.decode(encoding, errors="replace")


#: Strict JSON into Python values, integers of any size exactly (orjson reads an integer
#: past 64 bits as a float, msgspec as an int).
_DECODER = msgspec.json.Decoder()


def _reject_constant(name: str) -> t.NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise ValueError(f"the number {shown} is too large for a 64-bit float (it would be lost)")
    return value


def _lone_surrogate(value: JSON) -> str | None:
    """The first string (key or value) holding a lone surrogate, or None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _parse_exact(body: bytes | str, fast_error: Exception | None) -> JSON:
    try:
        value = json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ResponseFormatError(f"failed to parse JSON response: {exc}") from None
    except RecursionError:
        raise ResponseFormatError(f"failed to parse JSON response: {fast_error}") from None
    bad = _lone_surrogate(value)
    if bad is not None:
        char = next(c for c in bad if 0xD800 <= ord(c) <= 0xDFFF)
        raise ResponseFormatError(
            f"failed to parse JSON response: a string holds a lone UTF-16 surrogate "
            f"(\\u{ord(char):04x}), which is no Unicode character and cannot be written out."
        )
    return value


def parse_json(body: bytes | str) -> JSON:
    """Parse strict JSON exactly, or raise ResponseFormatError with r.http's wording."""
    try:
        return t.cast("JSON", _DECODER.decode(body))
    except (msgspec.MsgspecError, RecursionError) as fast_error:
        # The exact parser says what is wrong in r.http's words (or accepts what the
        # fast one may not, e.g. an integer of more digits than msgspec reads).
        return _parse_exact(body, fast_error)


def dump_json(
    value: JSON,
    *,
    default: t.Callable[[t.Any], t.Any] | None = None,
    sort_keys: bool = False,
) -> bytes:
    """Compact JSON of a value, integers past 64 bits included (orjson cannot write them)."""
    try:
        return orjson.dumps(
            value, default=default, option=orjson.OPT_SORT_KEYS if sort_keys else None
        )
    except orjson.JSONEncodeError as fast_error:
        try:
            return json.dumps(
                value,
                ensure_ascii=False,
                separators=(",", ":"),
                default=default,
                sort_keys=sort_keys,
            ).encode("utf-8", "surrogatepass")
        except (TypeError, ValueError, RecursionError):
            raise fast_error from None


def parse_jsonp(text: str) -> JSON:
    """Parse padded JSON: the text between the first `(` and the last `)`."""
    head = _JSONP_RE.match(text)
    tail = _JSONP_TAIL_RE.search(text)
    if not head or not tail or tail.start() < head.end():
        raise ResponseFormatError("failed to parse JSONP response")
    try:
        return parse_json(text[head.end() : tail.start()])
    except ResponseFormatError:
        raise ResponseFormatError("failed to parse JSONP response") from None


def read_body(
    body: bytes, content_type: str | None, result_format: str, *, json_expected: bool = False
) -> JSON:
    """Read a body the way r.http's `result_format` says.

    Args:
        body: the complete (decompressed) body.
        content_type: the response's Content-Type header, if any.
        result_format: one of auto, json, jsonp, text, binary.
        json_expected: the caller selects records from the body with a JSONPath
            (`records_path`), which only JSON can satisfy. With ``auto``, a body whose
            Content-Type `auto` would read as text (``text/plain``, none, ...) is then
            read as JSON, and one that is not JSON is an error naming its Content-Type and
            the fix: reading it as text would select nothing, silently.

    Returns:
        A JSON value (binary: a base64 string).

    Raises:
        ResponseFormatError: json/jsonp parse failures; with `json_expected`, a body
            labelled otherwise that is not JSON.
    """
    fmt = auto_format(content_type) if result_format == "auto" else result_format
    if result_format == "auto" and json_expected and fmt == "text":
        return _json_labelled_otherwise(body, content_type, fmt)
    if fmt == "json":
        return parse_json(body)
    if fmt == "binary":
        return base64.b64encode(body).decode("ascii")
    text = decode_text(body, content_type)
    if fmt == "text":
        return text
    if result_format == "auto":  # a javascript-ish type: json, then jsonp, then text
        try:
            return parse_json(body)
        except ResponseFormatError:
            pass
        try:
            return parse_jsonp(text)
        except ResponseFormatError:
            return text
    return parse_jsonp(text)


def _json_labelled_otherwise(body: bytes, content_type: str | None, fmt: str) -> JSON:
    try:
        return parse_json(body)
    except ResponseFormatError as json_error:
        if fmt == "jsonp":  # a javascript-ish type: padded JSON is JSON too
            try:
                return parse_jsonp(decode_text(body, content_type))
            except ResponseFormatError:
                pass
        kind, _ = media_type(content_type)
        label = f"Content-Type `{kind}`" if kind else "no Content-Type"
        reason = str(json_error).removeprefix("failed to parse JSON response: ")
        raise ResponseFormatError(
            f"the body has {label}, which `result_format: auto` reads as {fmt}, but "
            f"`records_path` selects records from JSON and the body is not JSON ({reason}). "
            "Set `result_format: json` if the API sends JSON under that Content-Type; "
            f"drop `records_path` to take the body as {fmt}."
        ) from None


def looks_like_json(text: JSON) -> bool:
    """Whether a body `auto` read as text is a JSON object or array (r.http keeps it text)."""
    if not isinstance(text, str):
        return False
    head = text.lstrip()[:1]
    if head not in ("{", "["):
        return False
    try:
        parse_json(text)
    except ResponseFormatError:
        return False
    return True
