"""The tap's config JSON Schema, generated from the option table.

singer-sdk checks the config against it (after :func:`~tap_rhttp.config.load.load_specs`,
whose messages name the option the way r.http does), and ``--about`` prints it.
"""

from __future__ import annotations

import typing as t

from tap_rhttp.config.options import OPTIONS, REATTEMPTS_MAX, REQUIRED


def _or_null(schema: dict[str, t.Any]) -> dict[str, t.Any]:
    """`schema`, or null (an option set to null is not set, as the tap's checks read it)."""
    kind = schema.get("type")
    if kind is not None and "enum" not in schema:
        kinds = [kind] if isinstance(kind, str) else list(kind)
        return {**schema, "type": [*kinds, "null"]}
    if not schema:
        return schema
    return {"anyOf": [schema, {"type": "null"}]}


def _spec_properties(*, stream: bool) -> dict[str, t.Any]:
    props: dict[str, t.Any] = {}
    for name, option in OPTIONS.items():
        if not stream and name == "name":
            continue
        required = stream and name in REQUIRED
        prop = dict(option.jsonschema) if required else _or_null(option.jsonschema)
        prop["description"] = option.description + (" Required." if required else "")
        if option.default not in (None, ()):
            prop["description"] += f" Default: {option.default!r}."
        props[name] = prop
    props["attempts"] = {
        "type": ["integer", "null"],
        "minimum": 1,
        "maximum": REATTEMPTS_MAX,
        "description": "Alias of `reattempts`.",
    }
    return props


def config_schema() -> dict[str, t.Any]:
    """The tap's config JSON Schema, generated from the option table.

    No ``default`` keywords inside specs: the SDK would fill them into every stream and
    they would beat ``defaults``. Defaults are stated in the descriptions instead.
    """
    return {
        "type": "object",
        "properties": {
            "streams": {
                "type": "array",
                "description": "The r.http request specs; each becomes one stream and "
                "needs `name` and `url` (every other option is optional, also under "
                "`defaults`).",
                "items": {
                    "type": "object",
                    "properties": _spec_properties(stream=True),
                    "required": list(REQUIRED),
                },
            },
            "secrets": {
                "type": ["object", "null"],
                "description": "Named secret values for `{{ secrets['name'] }}` templates; "
                "redacted everywhere.",
                "additionalProperties": {"type": "string"},
                "secret": True,
                "writeOnly": True,
            },
            "shard": {
                "anyOf": [
                    {
                        "type": "object",
                        "properties": {
                            "index": {"type": "integer", "minimum": 0},
                            "count": {"type": "integer", "minimum": 1},
                        },
                        "required": ["index", "count"],
                    },
                    {"type": "string", "pattern": r"^\s*\d+/\d+\s*$"},
                    {"type": "null"},
                ],
                "description": "This process's share of the job: shard `index` (from 0) of "
                '`count`, or "index/count"; default: the TAP_RHTTP_SHARD environment '
                "variable, else no sharding.",
            },
            "defaults": {
                "type": ["object", "null"],
                "description": "Options applied to every stream; a stream's own value wins "
                "(`params` merge key by key).",
                "properties": _spec_properties(stream=False),
            },
        },
        "required": ["streams"],
    }
