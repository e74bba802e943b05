"""The type aliases every layer shares (one home, as httpx keeps ``_types.py``)."""

from __future__ import annotations

import typing as t

#: A JSON value as Python holds it: dict (str keys), list, str, int, float, bool, None.
#: ``t.Any`` because mypy cannot express the recursive union usefully at call sites.
JSON: t.TypeAlias = t.Any

#: A JSON object.
JSONObject: t.TypeAlias = dict[str, JSON]

#: Header pairs in config order; a value of None removes a default header.
HeaderPairs: t.TypeAlias = tuple[tuple[str, "str | None"], ...]
