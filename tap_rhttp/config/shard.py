"""Shards: one job split across processes that an orchestrator runs side by side.

``"shard": {"index": 2, "count": 8}`` (or ``"shard": "2/8"``, or the environment variable
``TAP_RHTTP_SHARD=2/8`` or ``TAP_RHTTP_SHARD='{"index": 2, "count": 8}'`` when the config
has none) makes this process take its share of
every stream's fan-out: index 0 to count-1. A value belongs to the shard
``sha256(canonical JSON of the value) mod count``, the canonical JSON having sorted keys
and no spaces (orjson's), so every process of a job, on any machine and Python, agrees
on the split without talking to the others. Which value is hashed, and which streams run
where, is the stream graph's rule (``tap_rhttp.run.graph.shard_rule``):

- a `for_each` value itself; a window's start (``"2024-01-03T00:00:00Z"``);
- for the children of a stream that does not fan out, the parent row's primary-key
  values (a list, in `primary_keys` order), or the whole row when it has none;
- a stream without fan-out runs in shard 0 only.

Rejected: ranges (index i takes the i-th slice of the values). A value added to or
removed from a `for_each` list would move every later value to another shard, and so
away from the STATE that knows it is done.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import typing as t

import orjson

from tap_rhttp.errors import ConfigError
from tap_rhttp.formats.readers import dump_json

if t.TYPE_CHECKING:
    from tap_rhttp.types import JSON

#: The environment variable read when the config has no `shard`.
ENV = "TAP_RHTTP_SHARD"
#: The most shards one job may be split into.
MAX_SHARDS = 10_000
_TEXT_RE = re.compile(r"(\d+)/(\d+)")
_ALLOWED = '{"index": 2, "count": 8} or "2/8" (index from 0 to count - 1)'


@dataclasses.dataclass(frozen=True)
class Shard:
    """This process's share of a job: shard `index` of `count`."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, value: JSON) -> bool:
        """Whether `value` (a for_each value, window start or parent key) is this shard's."""
        return shard_of(value, self.count) == self.index


def shard_of(value: JSON, count: int) -> int:
    """The shard a value belongs to: sha256 of its canonical JSON, modulo `count`."""
    text = dump_json(value, sort_keys=True)  # an integer past 64 bits too
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") % count


def check_shard(value: JSON, path: str) -> Shard:
    """A `shard` setting: ``{"index": i, "count": n}`` or ``"i/n"``."""
    index: JSON
    count: JSON
    if isinstance(value, str):
        match = _TEXT_RE.fullmatch(value.strip())
        if match is None:
            raise ConfigError(path, "not a shard.", value=value, allowed=_ALLOWED)
        index, count = int(match.group(1)), int(match.group(2))
    elif isinstance(value, dict):
        unknown = sorted(set(value) - {"index", "count"})
        if unknown:
            raise ConfigError(
                f"{path}.{unknown[0]}", f"unknown key `{unknown[0]}` of `shard`.", value=unknown[0]
            )
        index, count = value.get("index"), value.get("count")
    else:
        raise ConfigError(path, "not a shard.", value=value, allowed=_ALLOWED)
    for name, number in (("count", count), ("index", index)):
        if not isinstance(number, int) or isinstance(number, bool):
            raise ConfigError(
                f"{path}.{name}", f"`{name}` should be an integer.", value=number, allowed=_ALLOWED
            )
    assert isinstance(index, int)
    assert isinstance(count, int)
    if not 1 <= count <= MAX_SHARDS:
        raise ConfigError(
            f"{path}.count",
            f"`count` should be from 1 to {MAX_SHARDS}.",
            value=count,
            allowed=_ALLOWED,
        )
    if not 0 <= index < count:
        raise ConfigError(
            f"{path}.index",
            f"`index` should be from 0 to {count - 1} (count - 1).",
            value=index,
            allowed=_ALLOWED,
        )
    return Shard(index, count)


def load_shard(config: t.Mapping[str, JSON], environ: t.Mapping[str, str]) -> Shard | None:
    """The run's shard: the config's `shard`, else ``TAP_RHTTP_SHARD``; None: no sharding.

    Raises:
        ConfigError: the value is not a shard.
    """
    value = config.get("shard")
    if value is not None:
        return check_shard(value, "shard")
    text = environ.get(ENV, "").strip()
    if text.startswith("{"):  # as Meltano requires it for an object setting
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise ConfigError(ENV, "not a shard.", value=text, allowed=_ALLOWED) from None
        return check_shard(parsed, ENV)
    if text:
        return check_shard(text, ENV)
    return None
