"""Date windows: a stream run once per time window, like `for_each` over instants.

``"windows": {"start": "2024-01-01", "end": "2024-02-01", "step": "P1D", "lookback": "PT6H"}``
runs the spec once per window ``[start + k*step, start + (k+1)*step)``, the last one cut
at `end`, each bound to ``window`` in templates::

    window['start'], window['end']              # "2024-01-03T00:00:00Z" (ISO 8601, UTC)
    window['start_epoch'], window['end_epoch']  # 1704240000 (whole seconds since 1970)

The format is deliberately small, so that every value means one thing:

- an instant (`start`, `end`) is an ISO 8601 date (``2024-01-01``: midnight UTC) or
  date-time with a UTC offset (``2024-01-01T06:00:00Z``, ``...+02:00``), in whole
  seconds; or a duration, meaning that long before the run's now (``"start": "P30D"``:
  the last 30 days). `end` defaults to the run's now, one instant fixed when the run
  starts, so every window of a run ends at the same "now".
- a duration (`step`, `lookback`, or a relative instant) is a whole number of seconds, or
  ISO 8601 ``PnW`` / ``PnDTnHnMnS`` (``P1D``, ``PT6H``, ``P1DT12H``, ``PT90S``). Years and
  months are refused: their length varies, so they would not be one step.

Rejected: calendar steps (months), time zones other than UTC for the windows themselves,
and sub-second windows; each would make the window keys in STATE ambiguous.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import typing as t

from tap_rhttp.errors import ConfigError

if t.TYPE_CHECKING:
    from tap_rhttp.types import JSON

#: The most windows one stream may run in one run (checked when the config is loaded).
MAX_WINDOWS = 100_000
UTC = datetime.timezone.utc
_DURATION_RE = re.compile(
    r"P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?"
)
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_UNITS = {"weeks": 604800, "days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}
KEYS = ("start", "end", "step", "lookback")


@dataclasses.dataclass(frozen=True)
class Windows:
    """A stream's windows, as configured.

    Attributes:
        start: the first window's start: an instant, or seconds before the run's now.
        end: the last window's end: an instant, seconds before now, or None (now).
        step: each window's length, in seconds.
        lookback: seconds an incremental run starts before its bookmark.
    """

    start: datetime.datetime | int
    end: datetime.datetime | int | None
    step: int
    lookback: int = 0

    def bounds(self, now: datetime.datetime) -> tuple[datetime.datetime, datetime.datetime]:
        """The configured start and end, for a run whose now is `now`."""
        return _at(self.start, now), now if self.end is None else _at(self.end, now)

    def plan(
        self, now: datetime.datetime, bookmark: JSON = None
    ) -> tuple[datetime.datetime, datetime.datetime]:
        """Where a run's windows begin and end: from the start, or for an incremental run
        from its bookmark minus `lookback` (never before the start)."""
        start, end = self.bounds(now)
        mark = parse_instant(bookmark) if isinstance(bookmark, str) else None
        if mark is not None:
            since = mark.replace(microsecond=0) - datetime.timedelta(seconds=self.lookback)
            start = max(start, since)
        return start, end

    def between(
        self, start: datetime.datetime, end: datetime.datetime
    ) -> list[tuple[datetime.datetime, datetime.datetime]]:
        """The windows from `start` to `end`, in order (at most :data:`MAX_WINDOWS`)."""
        step = datetime.timedelta(seconds=self.step)
        out: list[tuple[datetime.datetime, datetime.datetime]] = []
        current = start
        while current < end and len(out) < MAX_WINDOWS:
            out.append((current, min(current + step, end)))
            current += step
        return out


def _at(value: datetime.datetime | int, now: datetime.datetime) -> datetime.datetime:
    return (
        value if isinstance(value, datetime.datetime) else now - datetime.timedelta(seconds=value)
    )


def iso(moment: datetime.datetime) -> str:
    """An instant as windows show it: ``2024-01-03T00:00:00Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(moment: datetime.datetime) -> int:
    """An instant as whole seconds since 1970-01-01T00:00:00Z."""
    return int(moment.timestamp())


def window_value(start: datetime.datetime, end: datetime.datetime) -> dict[str, JSON]:
    """What templates see as ``window``."""
    return {
        "start": iso(start),
        "end": iso(end),
        "start_epoch": epoch(start),
        "end_epoch": epoch(end),
    }


def parse_duration(value: JSON) -> int | None:
    """Whole seconds from a number or an ISO 8601 duration; None if it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if not isinstance(value, str):
        return None
    match = _DURATION_RE.fullmatch(value.strip().upper())
    if match is None or value.strip().upper() in ("P", "PT") or value.strip().upper().endswith("T"):
        return None
    return sum(int(n) * _UNITS[unit] for unit, n in match.groupdict().items() if n)


def parse_instant(value: str) -> datetime.datetime | None:
    """An ISO 8601 date (midnight UTC) or date-time with an offset; None otherwise."""
    text = value.strip()
    if _DATE_RE.fullmatch(text):
        try:
            day = datetime.date.fromisoformat(text)
        except ValueError:
            return None
        return datetime.datetime(day.year, day.month, day.day, tzinfo=UTC)
    if "T" not in text and " " not in text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.astimezone(UTC)


_INSTANT_ALLOWED = (
    'an ISO 8601 date ("2024-01-01") or date-time with a UTC offset '
    '("2024-01-01T06:00:00Z"), in whole seconds; or a duration before now ("P30D", 3600)'
)
_DURATION_ALLOWED = 'whole seconds (86400) or an ISO 8601 duration ("P1D", "PT6H", "P1DT12H")'
#: The longest duration a window option may give: 100 years of 365 days (a datetime's
#: arithmetic overflows far beyond, and no API keeps data longer).
DURATION_MAX = 100 * 365 * 86400


def _bounded(seconds: int, value: JSON, path: str) -> int:
    if seconds > DURATION_MAX:
        raise ConfigError(
            path,
            f"a duration may be at most {DURATION_MAX} seconds (100 years).",
            value=value,
            allowed=_DURATION_ALLOWED,
        )
    return seconds


def _instant(value: JSON, path: str) -> datetime.datetime | int:
    if isinstance(value, str):
        moment = parse_instant(value)
        if moment is not None:
            if moment.microsecond:
                raise ConfigError(
                    path,
                    "window instants are whole seconds.",
                    value=value,
                    allowed=_INSTANT_ALLOWED,
                )
            return moment
    seconds = parse_duration(value)
    if seconds is None or seconds < 0:
        raise ConfigError(
            path, "not an instant or a duration.", value=value, allowed=_INSTANT_ALLOWED
        )
    return _bounded(seconds, value, path)


def _duration(value: JSON, path: str, *, positive: bool) -> int:
    seconds = parse_duration(value)
    if seconds is None:
        hint = ""
        upper = value.upper() if isinstance(value, str) else ""
        if upper.startswith("P") and any(unit in upper.split("T")[0] for unit in "YM"):
            hint = " Years and months are not allowed (their length varies)."
        raise ConfigError(path, f"not a duration.{hint}", value=value, allowed=_DURATION_ALLOWED)
    if positive and seconds <= 0:
        raise ConfigError(path, "`step` should be greater than 0.", value=value)
    if seconds < 0:
        raise ConfigError(path, "a duration may not be negative.", value=value)
    return _bounded(seconds, value, path)


def check_windows(value: JSON, path: str, name: str) -> Windows:
    """The `windows` option: an object of `start`, `end`, `step`, `lookback`."""
    if not isinstance(value, dict):
        raise ConfigError(
            path,
            "`windows` should be an object.",
            value=value,
            allowed='{"start": "2024-01-01", "step": "P1D", "end": ..., "lookback": ...}',
        )
    for key in value:
        if key not in KEYS:
            raise ConfigError(
                f"{path}.{key}",
                f"unknown key `{key}` of `windows`.",
                value=key,
                allowed=", ".join(KEYS),
            )
    for key in ("start", "step"):
        if key not in value:
            raise ConfigError(f"{path}.{key}", f"`windows` needs `{key}`.")
    windows = Windows(
        start=_instant(value["start"], f"{path}.start"),
        end=_instant(value["end"], f"{path}.end") if value.get("end") is not None else None,
        step=_duration(value["step"], f"{path}.step", positive=True),
        lookback=_duration(value.get("lookback", 0), f"{path}.lookback", positive=False),
    )
    start, end = windows.bounds(datetime.datetime.now(UTC).replace(microsecond=0))
    if start >= end:
        raise ConfigError(
            path,
            f"`start` ({iso(start)}) should be before `end` ({iso(end)}).",
            value=value,
        )
    count = -(-int((end - start).total_seconds()) // windows.step)
    if count > MAX_WINDOWS:
        raise ConfigError(
            f"{path}.step",
            f"{count} windows from {iso(start)} to {iso(end)}; at most {MAX_WINDOWS} are allowed "
            "(use a longer `step`, or a later `start`).",
            value=value["step"],
        )
    return windows
