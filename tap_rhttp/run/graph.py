"""The rules of a config's stream graph: order, parent columns, replication keys, bookmarks.

Pure functions of the specs (and of a STATE or a record), so the sync, discovery and
explain mode apply exactly the same ones.
"""

from __future__ import annotations

import datetime
import typing as t

from tap_rhttp.errors import ConfigError, ConfigErrors

if t.TYPE_CHECKING:
    from tap_rhttp.config.spec import RequestSpec
    from tap_rhttp.types import JSON

#: (parent field, child column) pairs copied into each child record.
ParentColumns = tuple[tuple[str, str], ...]


def ordered(specs: t.Sequence[RequestSpec]) -> list[RequestSpec]:
    """Parents before their children, otherwise in config order (no cycles: checked at load)."""
    done: dict[str, RequestSpec] = {}
    pending = list(specs)
    while pending:
        for spec in list(pending):
            if spec.parent is None or spec.parent in done:
                done[spec.name] = spec
                pending.remove(spec)
    return list(done.values())


def parent_columns(spec: RequestSpec, by_name: t.Mapping[str, RequestSpec]) -> ParentColumns:
    """The parent fields a child record gets: `parent_keys`, else `<parent>_<key>` per
    primary key of the parent."""
    if spec.parent is None:
        return ()
    if spec.parent_keys is not None:
        return spec.parent_keys
    return tuple((key, f"{spec.parent}_{key}") for key in by_name[spec.parent].primary_keys)


def shard_rule(spec: RequestSpec, by_name: t.Mapping[str, RequestSpec]) -> str:
    """How a stream takes its shard's share of the work (see ``tap_rhttp.config.shard``).

    - ``values``: a stream with `for_each` or `windows` runs the chains whose value (the
      `for_each` value, the window's start) hashes to the shard;
    - ``source``: a stream without fan-out that has children runs in every shard, as the
      source of its children's rows, and emits its records in shard 0 only;
    - ``zero``: a stream without fan-out and without children runs in shard 0 only;
    - ``rows``: a child of a ``source`` stream runs the parent rows whose key hashes to
      the shard;
    - ``all``: a deeper child runs every row it gets (its parent's chains are split).
    """
    if spec.parent is None:
        if spec.for_each is not None or spec.windows is not None:
            return "values"
        has_children = any(other.parent == spec.name for other in by_name.values())
        return "source" if has_children else "zero"
    parent = by_name[spec.parent]
    if parent.parent is None and parent.for_each is None and parent.windows is None:
        return "rows"
    return "all"


def row_identity(row: t.Mapping[str, JSON], keys: t.Sequence[str]) -> JSON:
    """What identifies a parent row: its primary-key values, else the whole row."""
    return [row.get(k) for k in keys] if keys else dict(row)


def with_parent_columns(
    schema: dict[str, JSON], columns: ParentColumns, parent_schema: dict[str, JSON] | None
) -> dict[str, JSON]:
    """A child's schema with its parent columns, typed as in the parent's schema."""
    if not columns:
        return schema
    parent_props = (parent_schema or {}).get("properties", {})
    props = dict(schema.get("properties", {}))
    for field, column in columns:
        props.setdefault(column, parent_props.get(field, {}))
    return {**schema, "properties": props}


def check_replication_key(spec: RequestSpec, schema: dict[str, JSON]) -> None:
    """The replication key must be a field of the stream's schema.

    Raises:
        ConfigErrors: it is not (the message lists the fields there are).
    """
    key = spec.replication_key
    if key is not None and key not in schema.get("properties", {}):
        raise ConfigErrors(
            [
                ConfigError(
                    f"{spec.path}.replication_key",
                    f"replication key `{key}` is not a field of the stream's schema "
                    "(inferred from discovery's sample, or declared).",
                    value=key,
                    allowed=", ".join(sorted(schema.get("properties", {}))) or "(none)",
                )
            ]
        )


def bookmark(spec: RequestSpec, saved: JSON) -> JSON:
    """The bookmark a run starts from: the saved value, else `start_value` (None when the
    stream is not incremental)."""
    if spec.replication_key is None:
        return None
    return saved if saved is not None else spec.start_value


def saved_bookmark(spec: RequestSpec, state: t.Mapping[str, JSON] | None) -> JSON:
    """The bookmark a Singer STATE holds for a stream (None if it holds none)."""
    entry = ((state or {}).get("bookmarks") or {}).get(spec.name) or {}
    return entry.get("replication_key_value") if isinstance(entry, dict) else None


def _as_datetime(value: JSON) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)


def at_or_before(value: JSON, mark: JSON) -> bool:
    """Whether a replication-key value is at or before the bookmark.

    Date-times compare as instants (offsets honoured), numbers as numbers, anything
    else as text; values of different kinds are never dropped.
    """
    when, mark_time = _as_datetime(value), _as_datetime(mark)
    if when is not None and mark_time is not None:
        return when <= mark_time
    numbers = (int, float)
    if isinstance(value, numbers) and isinstance(mark, numbers):
        return bool(value <= mark)
    if isinstance(value, str) and isinstance(mark, str):
        return value <= mark
    return False
