"""ReQL's TIME pseudotype: an instant in epoch milliseconds, shown at a fixed UTC offset.

RethinkDB keeps a time as ``{"$reql_type$": "TIME", "epoch_time": seconds, "timezone":
"+HH:MM"}``: seconds since the epoch rounded to the millisecond, and a fixed offset (no
named zones, no daylight saving). :class:`Time` is that value inside the evaluator, and
this module is its calendar: the fields (year, month, ..., day of week), ISO 8601 text
in both directions, and the validation of offsets, with RethinkDB's error messages.

Why not :mod:`datetime`: a config's expression must never be able to reach a Python
object with methods, and ``datetime`` is also narrower than ReQL (years 1 to 9999, no
``-00:00`` quirk, its own parsing rules). The civil calendar here is plain integer
arithmetic on days (the proleptic Gregorian calendar, as in ReQL), so a time is two
numbers and a string, and nothing else.

This module is a leaf: it imports nothing from the rest of the package, so that
:mod:`tap_rhttp.expr.values` can name the type.
"""

from __future__ import annotations

import dataclasses
import math
import typing as t

from tap_rhttp import errors

MAX_EPOCH_MS: t.Final = 2**53
"""Largest instant, in milliseconds from the epoch either way (about 285 000 years)."""

_DAY_MS: t.Final = 86_400_000
_MIN_YEAR, _MAX_YEAR = 1400, 10000  # the calendar ReQL's time library supports
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_MESSAGE_TEXT = 100  # characters of user text quoted in a message


def _fail(message: str) -> errors.ExpressionError:
    return errors.ExpressionError(message)


def _quote(text: str) -> str:
    return text if len(text) <= _MESSAGE_TEXT else text[:_MESSAGE_TEXT] + "..."


def _logic(reason: str) -> errors.ExpressionError:
    """ReQL's wrapping of its time library's errors."""
    return _fail(f"Error in time logic: {reason}.")


# --------------------------------------------------------------------------------------
# The civil calendar (proleptic Gregorian), on whole days since 1970-01-01
# --------------------------------------------------------------------------------------


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _month_days(year: int, month: int) -> int:
    return 29 if month == 2 and _is_leap(year) else _MONTH_DAYS[month - 1]


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a date (H. Hinnant's algorithm, any year)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """The date ``days`` after 1970-01-01, as (year, month, day)."""
    days += 719_468
    era = days // 146_097
    day_of_era = days - era * 146_097
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = shifted_month + (3 if shifted_month < 10 else -9)
    return year_of_era + era * 400 + (month <= 2), month, day


def _check_date(year: int, month: int, day: int) -> None:
    """Refuse a date ReQL's calendar refuses, with its messages."""
    if not _MIN_YEAR <= year <= _MAX_YEAR:
        raise _logic(f"Year is out of valid range: {_MIN_YEAR}..{_MAX_YEAR}")
    if not 1 <= month <= 12:
        raise _logic("Month number is out of range 1..12")
    if not 1 <= day <= 31:
        raise _logic("Day of month value is out of range 1..31")
    if day > _month_days(year, month):
        raise _logic("Day of month is not valid for year")


def _round_ms(seconds: float) -> int:
    """Seconds to whole milliseconds, half away from zero (ReQL's ``round(x * 1000)``)."""
    scaled = abs(seconds) * 1000
    if not math.isfinite(scaled):
        raise _fail(f"Number result is not finite ({seconds!r}).")
    whole = math.floor(scaled + 0.5)
    return -whole if seconds < 0 else whole


# --------------------------------------------------------------------------------------
# Offsets: `+HH:MM`
# --------------------------------------------------------------------------------------


def _digits(text: str, count: int, at: int, whole: str) -> str:
    """``count`` digits of ``text`` from ``at``, or ReQL's message about ``whole``."""
    part = text[at : at + count]
    if len(part) == count and part.isascii() and part.isdigit():  # in C, however long
        return part
    for index in range(at, at + count):
        if index >= len(text):
            raise _fail(f"Truncated date string `{_quote(whole)}`.")
        if not "0" <= text[index] <= "9":
            raise _fail(
                f"Invalid date string `{_quote(whole)}` (got `{text[index]}` but expected a digit)."
            )
    return text[at : at + count]


def timezone(text: str) -> str:
    """ReQL's sanitized offset: ``Z``, ``±HH``, ``±HHMM`` or ``±HH:MM`` to ``±HH:MM``.

    Hours may go to 24 and minutes to 59, as in ReQL; ``-00`` and ``-00:00`` are refused
    (``-0000`` is not, and stays ``-00:00``: ReQL's own quirk, kept).

    Raises:
        ExpressionError: the text is not an offset (ReQL's messages).
    """
    if text in ("-00", "-00:00"):
        raise _fail(f"`{text}` is not a valid time offset.")
    if text == "Z":
        return "+00:00"
    if not text or text[0] not in "+-":
        raise _fail(f"Timezone `{_quote(text)}` does not start with `-` or `+`.")
    hours = _digits(text, 2, 1, text)
    if len(text) == 3:
        return f"{text[0]}{hours}:00"
    at = 4 if text[3] == ":" else 3
    minutes = _digits(text, 2, at, text)
    if at + 2 != len(text):
        raise _fail(
            f"Garbage characters `{_quote(text[at + 2 :])}` at end of timezone string "
            f"`{_quote(text)}`."
        )
    if not (hours[0] in "01" or (hours[0] == "2" and hours[1] <= "4")):
        raise _fail(f"Hours out of range in `{_quote(text)}`.")
    if not minutes[0] <= "5":
        raise _fail(f"Minutes out of range in `{_quote(text)}`.")
    return f"{text[0]}{hours}:{minutes}"


def _offset_minutes(tz: str) -> int:
    sign = -1 if tz[0] == "-" else 1
    return sign * (int(tz[1:3]) * 60 + int(tz[4:6]))


# --------------------------------------------------------------------------------------
# The value
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Time:
    """A ReQL time: ``ms`` since the epoch (UTC), shown at the offset ``tz`` (``±HH:MM``).

    Build it with :func:`make_time` (which checks the range). Equality and order are by
    instant only, as in ReQL, and belong to the evaluator's JSON equality and ordering:
    the class itself compares by identity.
    """

    ms: int
    tz: str

    def local(self) -> tuple[int, int]:
        """(whole days since 1970-01-01, milliseconds into that day), at ``tz``."""
        return divmod(self.ms + _offset_minutes(self.tz) * 60_000, _DAY_MS)

    def civil(self) -> tuple[int, int, int, int]:
        """(year, month, day, milliseconds into the day) at ``tz``, in ReQL's calendar."""
        days, ms_of_day = self.local()
        year, month, day = _civil_from_days(days)
        if not _MIN_YEAR <= year <= _MAX_YEAR:
            raise _logic(f"Year is out of valid range: {_MIN_YEAR}..{_MAX_YEAR}")
        return year, month, day, ms_of_day

    def iso8601(self) -> str:
        """ReQL's ``to_iso8601``: ``2013-07-30T20:56:05.123-07:00`` (no ``.000``)."""
        year, month, day, ms_of_day = self.civil()
        if year > 9999:
            raise _fail(f"Year `{year}` out of valid ISO 8601 range [0, 9999].")
        seconds, ms = divmod(ms_of_day, 1000)
        minutes, seconds = divmod(seconds, 60)
        hours, minutes = divmod(minutes, 60)
        fraction = f".{ms:03d}" if ms else ""
        return (
            f"{year:04d}-{month:02d}-{day:02d}T{hours:02d}:{minutes:02d}:{seconds:02d}"
            f"{fraction}{self.tz}"
        )

    def text(self) -> str:
        """The ISO 8601 text, or a description when the year has none (for messages)."""
        try:
            return self.iso8601()
        except errors.ExpressionError:
            return f"<a time {self.ms / 1000} seconds from the epoch>"


def make_time(ms: int, tz: str) -> Time:
    """A time at ``ms`` milliseconds from the epoch, with an already sanitized offset.

    Raises:
        ExpressionError: the instant is beyond ``MAX_EPOCH_MS``.
    """
    if not -MAX_EPOCH_MS <= ms <= MAX_EPOCH_MS:
        raise _fail("Time value out of range: at most 2**53 milliseconds from 1970 either way.")
    return Time(ms, tz)


def epoch_time(seconds: float) -> Time:
    """ReQL's ``r.epoch_time(seconds)``: rounded to the millisecond, at ``+00:00``."""
    return make_time(_round_ms(seconds), "+00:00")


def from_civil(
    year: int, month: int, day: int, hours: int, minutes: int, seconds: float, tz: str
) -> Time:
    """ReQL's ``r.time(...)``: a local date and time at the offset ``tz``.

    Hours and minutes may run over (``25`` hours is the next day at 01:00), as in ReQL;
    the date must exist.
    """
    _check_date(year, month, day)
    zone = timezone(tz)
    local_ms = (
        _days_from_civil(year, month, day) * _DAY_MS
        + hours * 3_600_000
        + minutes * 60_000
        + _round_ms(seconds)
    )
    return make_time(local_ms - _offset_minutes(zone) * 60_000, zone)


# --------------------------------------------------------------------------------------
# Fields
# --------------------------------------------------------------------------------------


def day_of_week(time: Time) -> int:
    """ISO 8601's: Monday is 1, Sunday 7 (1970-01-01 was a Thursday)."""
    time.civil()  # the range check
    days, _ = time.local()
    return (days + 3) % 7 + 1


def day_of_year(time: Time) -> int:
    year, month, day, _ = time.civil()
    return _days_from_civil(year, month, day) - _days_from_civil(year, 1, 1) + 1


def date(time: Time) -> Time:
    """Midnight of the same local day, at the same offset."""
    _, _, _, ms_of_day = time.civil()
    return make_time(time.ms - ms_of_day, time.tz)


# --------------------------------------------------------------------------------------
# ISO 8601 text, as ReQL reads it
# --------------------------------------------------------------------------------------

_WEEK_DATES = (
    "Due to limitations in the boost time library we use for parsing, we cannot support "
    "ISO week dates right now.  Sorry about that!  Please use years, calendar dates, or "
    "ordinal dates instead."
)


def _date_part(text: str) -> tuple[int, int, int, str]:
    """(year, month, day, sanitized) from ``YYYY[-MM[-DD]]``, ``YYYYMMDD`` or ``YYYY[-]DDD``."""
    year = int(_digits(text, 4, 0, text))
    if len(text) == 4:
        return year, 1, 1, f"{year:04d}-01-01"
    at = 4
    first_hyphen = text[at] == "-"
    at += first_hyphen
    if text[at : at + 1] == "W":
        _digits(text, 2, at + 1, text)
        raise _fail(_WEEK_DATES)
    if len(text) - at == 3:
        ordinal = int(_digits(text, 3, at, text))
        if not _MIN_YEAR <= year <= _MAX_YEAR:
            raise _logic(f"Year is out of valid range: {_MIN_YEAR}..{_MAX_YEAR}")
        if not 1 <= ordinal <= (366 if _is_leap(year) else 365):
            raise _logic("Day of year value is out of range 1..366")
        month, day = 1, ordinal
        while day > _month_days(year, month):
            day -= _month_days(year, month)
            month += 1
        return year, month, day, f"{year:04d}-{ordinal:03d}"
    month = int(_digits(text, 2, at, text))
    at += 2
    if first_hyphen and at == len(text):
        return year, month, 1, f"{year:04d}-{month:02d}-01"
    second_hyphen = text[at : at + 1] == "-"
    at += second_hyphen
    if first_hyphen != second_hyphen:
        raise _fail(f"Date string `{_quote(text)}` must have 0 or 2 hyphens.")
    day = int(_digits(text, 2, at, text))
    at += 2
    if at != len(text):
        raise _fail(
            f"Garbage characters `{_quote(text[at:])}` at end of date string `{_quote(text)}`."
        )
    return year, month, day, f"{year:04d}-{month:02d}-{day:02d}"


def _time_part(text: str) -> tuple[int, int, int, int, str]:
    """(hours, minutes, seconds, ms, sanitized) from ``HH[[:]MM[[:]SS[.fff...]]]``."""
    hours = int(_digits(text, 2, 0, text))
    if len(text) == 2:
        return hours, 0, 0, 0, f"{hours:02d}:00:00.000"
    at = 2
    first_colon = text[at] == ":"
    at += first_colon
    minutes = int(_digits(text, 2, at, text))
    at += 2
    if at == len(text):
        return hours, minutes, 0, 0, f"{hours:02d}:{minutes:02d}:00.000"
    second_colon = text[at] == ":"
    at += second_colon
    if first_colon != second_colon:
        raise _fail(f"Time string `{_quote(text)}` must have 0 or 2 colons.")
    seconds = int(_digits(text, 2, at, text))
    at += 2
    ms = 0
    if text[at : at + 1] == ".":
        at += 1
        kept = text[at : at + 3]
        _digits(text, len(text) - at, at, text)  # every further character is a digit
        ms = int((kept + "00")[:3]) if kept else 0
        at = len(text)
    if at != len(text):
        raise _fail(
            f"Garbage characters `{_quote(text[at:])}` at end of time string `{_quote(text)}`."
        )
    return hours, minutes, seconds, ms, f"{hours:02d}:{minutes:02d}:{seconds:02d}.{ms:03d}"


def parse_iso8601(text: str, default_tz: str | None = None) -> Time:
    """ReQL's ``r.iso8601(text, default_timezone=...)``.

    Dates ``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD``, ``YYYYMMDD``, ``YYYY-DDD``, ``YYYYDDD``;
    an optional ``T`` and time ``HH``, ``HH:MM``, ``HHMM``, ``HH:MM:SS``, ``HHMMSS``, with
    a fraction of a second (digits past the third are dropped, as in ReQL); then ``Z`` or
    an offset, or ``default_tz``. Week dates are refused, as in ReQL.

    Raises:
        ExpressionError: the text is not such a date and time (ReQL's messages).
    """
    split = text.find("T")
    year, month, day, date_text = _date_part(text if split < 0 else text[:split])
    hours = minutes = seconds = ms = 0
    time_text = "00:00:00.000"
    zone = default_tz
    if split >= 0:
        start = split + 1
        sign = next((found for c in "-+Z" if (found := text.find(c, start)) >= 0), -1)
        hours, minutes, seconds, ms, time_text = _time_part(
            text[start:] if sign < 0 else text[start:sign]
        )
        if sign >= 0:
            zone = timezone(text[sign:])
    if zone is None:
        raise _fail("ISO 8601 string has no time zone, and no default time zone was provided.")
    zone = timezone(zone)
    _check_date(year, month, day)
    if hours > 23 or minutes > 59 or seconds > 59:
        raise _fail(
            f"Failed to parse `{_quote(text)}` (`{date_text}T{time_text}{zone}`) as ISO 8601 time."
        )
    local_ms = (
        _days_from_civil(year, month, day) * _DAY_MS
        + ((hours * 60 + minutes) * 60 + seconds) * 1000
        + ms
    )
    return make_time(local_ms - _offset_minutes(zone) * 60_000, zone)


def in_timezone(time: Time, tz: str) -> Time:
    """The same instant at another offset."""
    return make_time(time.ms, timezone(tz))


def plus_seconds(time: Time, seconds: float) -> Time:
    """ReQL's ``time + seconds`` (and ``- seconds``): rounded to the millisecond."""
    return make_time(_round_ms(time.ms / 1000 + seconds), time.tz)
