"""JSON values as YAML a person pastes into ``meltano.yml``, and as pretty JSON.

Page expressions and JSONPaths are full of characters YAML reads as syntax
(``info['body']['next']`` is fine, but ``{'params': ...}`` starts a flow mapping and
``r.branch(a == b, None, {...})`` holds ``: `` sequences in some recipes), so an expression
pasted unquoted into ``meltano.yml`` breaks the file (``ScannerError: mapping values are
not allowed here``). :func:`to_yaml` therefore quotes every string:

- single quotes (``'`` doubled) for printable text: backslashes stay literal, so what
  you read is what the tap gets; double quotes instead when the text holds a ``'`` but
  neither ``"`` nor a backslash (an expression such as ``info['body']['next']``), which
  then needs no escape either;
- double quotes with escapes for anything else (line breaks, tabs, control characters
  and the code points a YAML reader refuses to read raw).

Keys are plain when they are identifiers YAML cannot mistake for another type
(``yes``, ``off``, ``null`` are quoted). A short list of scalars is written in flow style
(``primary_keys: ['id']``), its items quoted the same way. Floats always carry a ``.`` so YAML 1.1
readers such as PyYAML (which Meltano uses) do not take ``1e-05`` for a string. Block
style throughout, lists at their key's indentation, as ``meltano.yml`` itself is written.

Rejected: PyYAML's own dumper. The tap does not depend on PyYAML, and its output style
(plain scalars where it thinks them safe, ``"on"`` quoted but ``$VAR`` not) would have to
be configured and then trusted; this emitter is small and tested by parsing its output
back with PyYAML (``tests/test_wizard_render.py``).
"""

from __future__ import annotations

import functools
import json
import re
import typing as t

if t.TYPE_CHECKING:
    from tap_rhttp.types import JSON

__all__ = ["MELTANO_ENV_NOTE", "mentions_env_var", "to_json", "to_yaml"]

_PLAIN_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# YAML 1.1 reads these plain words as booleans or null (PyYAML does, whatever the case).
_RESERVED = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf"})
# What may stand raw inside single quotes: printable, and no line break (YAML folds those).
_SINGLE_SAFE = (
    r"[\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]*"
)
# What a YAML reader accepts raw inside double quotes (PyYAML's printable set, minus `"\`).
_DOUBLE_RAW = (
    r"[\x20\x21\x23-\x5b\x5d-\x7e"
    r"\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
)


@functools.cache
def _pattern(source: str) -> re.Pattern[str]:
    """A pattern compiled at its first use: these Unicode classes take milliseconds to
    compile, which every start of the tap would pay for a wizard it does not run."""
    return re.compile(source)


_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", '"': '\\"', "\\": "\\\\", "\0": "\\0"}
_FLOW_WIDTH = 96
_ENV_VAR_RE = re.compile(r"\$(\{[A-Za-z_]|[A-Za-z_])")

#: A comment for YAML whose strings contain ``$NAME``: Meltano expands those.
MELTANO_ENV_NOTE = (
    "# note: Meltano replaces $NAME and ${NAME} in these values with environment variables;"
    " write \\$NAME for a literal $."
)


def _quote(text: str) -> str:
    if _pattern(_SINGLE_SAFE).fullmatch(text):
        if "'" in text and '"' not in text and "\\" not in text:
            return f'"{text}"'  # an expression's quotes read as written, no escape needed
        return "'" + text.replace("'", "''") + "'"
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif _pattern(_DOUBLE_RAW).match(char):
            out.append(char)
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def _key(name: str) -> str:
    if _PLAIN_KEY_RE.fullmatch(name) and name.lower() not in _RESERVED:
        return name
    return _quote(name)


def _scalar(value: JSON) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        if text in ("inf", "-inf", "nan"):
            raise ValueError(f"{text} is not a JSON value")
        if "e" in text and "." not in text.split("e", 1)[0]:
            mantissa, exponent = text.split("e", 1)
            text = f"{mantissa}.0e{exponent if exponent[0] in '+-' else '+' + exponent}"
        return text
    if isinstance(value, str):
        return _quote(value)
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _flow(items: list[JSON], used: int) -> str | None:
    """A list of scalars in flow style (``['string', 'null']``) when it fits on the line."""
    if any(isinstance(item, (dict, list)) for item in items):
        return None
    text = "[" + ", ".join(_scalar(item) for item in items) + "]"
    return text if used + len(text) <= _FLOW_WIDTH else None


def _lines(value: JSON, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return [pad + "{}"]
        lines: list[str] = []
        for name, item in value.items():
            key = _key(str(name))
            if isinstance(item, dict) and item:
                lines.append(f"{pad}{key}:")
                lines += _lines(item, indent + 2)
            elif isinstance(item, list) and item and _flow(item, len(pad) + len(key) + 3):
                lines.append(f"{pad}{key}: {_flow(item, 0)}")
            elif isinstance(item, list) and item:
                lines.append(f"{pad}{key}:")
                lines += _lines(item, indent)
            else:
                lines.append(f"{pad}{key}: {_lines(item, 0)[0]}")
        return lines
    if isinstance(value, list):
        if not value:
            return [pad + "[]"]
        lines = []
        for item in value:
            inner = _lines(item, indent + 2)
            lines.append(f"{pad}- {inner[0][indent + 2 :]}")
            lines += inner[1:]
        return lines
    return [pad + _scalar(value)]


def to_yaml(value: JSON, indent: int = 0) -> str:
    """`value` as block-style YAML that reads back as exactly `value` (ends in a newline).

    Args:
        value: a JSON value (dicts, lists, strings, numbers, booleans, null).
        indent: spaces before every line.

    Raises:
        TypeError: something other than a JSON value.
    """
    return "\n".join(_lines(value, indent)) + "\n"


def mentions_env_var(value: JSON) -> bool:
    """Whether a string in `value` holds ``$NAME`` or ``${NAME}`` (Meltano expands them)."""
    if isinstance(value, str):
        return bool(_ENV_VAR_RE.search(value))
    if isinstance(value, dict):
        return any(mentions_env_var(k) or mentions_env_var(v) for k, v in value.items())
    if isinstance(value, list):
        return any(mentions_env_var(item) for item in value)
    return False


def _json_lines(value: JSON, indent: int, width: int) -> list[str]:
    flat = json.dumps(value, ensure_ascii=False)
    if indent + len(flat) <= width or not isinstance(value, (dict, list)) or not value:
        return [flat]
    pad = " " * (indent + 2)
    parts: list[list[str]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            inner = _json_lines(item, indent + 2, width)
            parts.append([f"{pad}{json.dumps(key, ensure_ascii=False)}: {inner[0]}", *inner[1:]])
        opening, closing = "{", "}"
    else:
        for item in value:
            inner = _json_lines(item, indent + 2, width)
            parts.append([f"{pad}{inner[0]}", *inner[1:]])
        opening, closing = "[", "]"
    lines = [opening]
    for n, part in enumerate(parts):
        if n < len(parts) - 1:
            part = [*part[:-1], part[-1] + ","]
        lines += part
    lines.append(" " * indent + closing)
    return lines


def to_json(value: JSON, width: int = 88) -> str:
    """`value` as indented JSON (non-ASCII kept), each part on one line when it fits."""
    return "\n".join(_json_lines(value, 0, width)) + "\n"
