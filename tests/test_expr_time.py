"""ReQL times in the expression language: the calendar, offsets, arithmetic, r.now().

Most single-expression cases are in data/expression_cases.json; these need a clock, an
environment, many dates, or Python's own calendar to compare against.
"""

from __future__ import annotations

import datetime
import pathlib
import random
import re
import typing as t

import pytest

from tap_rhttp import errors
from tap_rhttp.expr import compile_expression
from tap_rhttp.expr import evaluator as evaluator_module

MANUAL = pathlib.Path(__file__).resolve().parent.parent / "docs" / "expressions.md"
RUN_START = 1_717_243_200.25  # 2024-06-01T12:00:00.250Z


def run(source: str, *, now: t.Any = RUN_START, **names: t.Any) -> t.Any:
    env = {"info": None, **names}
    return compile_expression(source, path="p", names=tuple(env)).evaluate(env, now=now)


# -- r.now() --------------------------------------------------------------------------------


def test_now_is_the_instant_the_caller_passes() -> None:
    assert run("r.now()") == "2024-06-01T12:00:00.250+00:00"
    assert run("r.now().to_epoch_time()") == RUN_START


def test_now_is_fixed_across_evaluations_of_a_run() -> None:
    expression = compile_expression("r.now().sub(86400).to_iso8601()", path="p")
    first = expression.evaluate({"info": None}, now=RUN_START)
    second = expression.evaluate({"info": None}, now=RUN_START)
    assert first == second == "2024-05-31T12:00:00.250+00:00"


@pytest.mark.parametrize(
    "now",
    [
        RUN_START,
        "2024-06-01T12:00:00.250Z",
        "2024-06-01T14:00:00.250+02:00",
        datetime.datetime(2024, 6, 1, 12, 0, 0, 250_000, tzinfo=datetime.timezone.utc),
        datetime.datetime(
            2024, 6, 1, 7, 0, 0, 250_000, tzinfo=datetime.timezone(datetime.timedelta(hours=-5))
        ),
    ],
    ids=["epoch", "iso-z", "iso-offset", "datetime-utc", "datetime-offset"],
)
def test_now_accepts_epoch_seconds_iso_text_and_aware_datetimes(now: t.Any) -> None:
    assert run("r.now()", now=now) == "2024-06-01T12:00:00.250+00:00"  # always UTC, as ReQL


@pytest.mark.parametrize(
    ("now", "error"),
    [
        (True, TypeError),
        ([RUN_START], TypeError),
        ("2024-06-01T12:00:00", ValueError),  # no time zone
        ("yesterday", ValueError),
        (datetime.datetime(2024, 6, 1), ValueError),  # naive: no instant
    ],
)
def test_now_refuses_what_names_no_instant(now: t.Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        run("1", now=now)


def test_without_now_the_clock_is_read_once_per_evaluation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    readings = iter([1000.0, 2000.0, 3000.0])
    calls: list[float] = []

    def clock() -> float:
        calls.append(value := next(readings))
        return value

    monkeypatch.setattr(evaluator_module.time, "time", clock)
    expression = compile_expression("[r.now(), r.now() + 1, r.now().to_epoch_time()]", path="p")
    assert expression.evaluate({"info": None}) == [
        "1970-01-01T00:16:40+00:00",
        "1970-01-01T00:16:41+00:00",
        1000,
    ]
    assert expression.evaluate({"info": None})[2] == 2000
    assert calls == [1000.0, 2000.0]
    assert compile_expression("1 + 1", path="p").evaluate({"info": None}) == 2
    assert calls == [1000.0, 2000.0]  # not read when r.now() is not called


def test_an_expression_says_whether_it_calls_now() -> None:
    assert compile_expression("r.now().to_iso8601()", path="p").calls_now
    assert compile_expression("info['a'].default(r.now())", path="p").calls_now
    assert not compile_expression("r.epoch_time(0)", path="p").calls_now
    assert not compile_expression("info['now']", path="p").calls_now


# -- results are JSON -------------------------------------------------------------------------


def test_times_in_results_are_iso_text_wherever_they_are() -> None:
    assert run("{'a': [r.now(), {'b': r.now() - 0.25}], 'c': 1}") == {
        "a": ["2024-06-01T12:00:00.250+00:00", {"b": "2024-06-01T12:00:00+00:00"}],
        "c": 1,
    }


def test_results_without_times_are_not_copied() -> None:
    body = {"items": list(range(1000))}
    result = run("[info, r.now()]", info=body)
    assert result[0] is body
    assert result[1] == "2024-06-01T12:00:00.250+00:00"


def test_a_time_in_a_longer_string_is_its_iso_text() -> None:
    assert run("'since=' + r.now().coerce_to('string')") == "since=2024-06-01T12:00:00.250+00:00"
    assert run("'since=' + r.now().to_iso8601()") == "since=2024-06-01T12:00:00.250+00:00"
    with pytest.raises(errors.ExpressionError, match="Expected type STRING but found PTYPE"):
        run("'since=' + r.now()")  # as in ReQL: + does not coerce


# -- arithmetic across fixed offsets -----------------------------------------------------------


@pytest.mark.parametrize("offset", ["+00:00", "-05:00", "+05:30", "+14:00", "-12:00", "+24:59"])
def test_a_day_later_is_the_same_local_time_at_any_offset(offset: str) -> None:
    source = (
        f"[(r.time(2024, 3, 9, 12, 0, 0, '{offset}') + 86400).to_iso8601(),"
        f" (r.time(2024, 11, 2, 12, 0, 0, '{offset}') + 86400).to_iso8601()]"
    )
    assert run(source) == [f"2024-03-10T12:00:00{offset}", f"2024-11-03T12:00:00{offset}"]


def test_the_same_instant_at_two_offsets() -> None:
    t = "r.iso8601('2024-01-01T00:15:00Z')"
    assert run(
        f"[{t}.in_timezone('+05:30') - {t}, {t}.in_timezone('+05:30') == {t}, "
        f"{t}.in_timezone('+05:30').hours(), {t}.in_timezone('-09:30').day(), "
        f"{t}.in_timezone('+05:30').timezone()]"
    ) == [0, True, 5, 31, "+05:30"]


def test_sub_and_add_chains() -> None:
    assert run("r.now().sub(3600, 60).add(1).to_iso8601()") == "2024-06-01T10:59:01.250+00:00"
    assert run("r.sub(r.now(), r.now() - 90)") == 90
    assert run("(r.now() + 0.0004).to_epoch_time()") == RUN_START  # rounded to the ms
    assert run("(r.now() + 0.0005).to_epoch_time()") == 1_717_243_200.251


# -- month, day and year boundaries ------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "seconds", "end"),
    [
        ("2023-01-31T23:00:00Z", 3600, "2023-02-01T00:00:00+00:00"),
        ("2023-02-28T12:00:00Z", 86400, "2023-03-01T12:00:00+00:00"),
        ("2024-02-28T12:00:00Z", 86400, "2024-02-29T12:00:00+00:00"),
        ("2100-02-28T12:00:00Z", 86400, "2100-03-01T12:00:00+00:00"),  # not a leap year
        ("2000-02-28T12:00:00Z", 86400, "2000-02-29T12:00:00+00:00"),  # a leap year
        ("2023-12-31T23:59:59.999Z", 0.001, "2024-01-01T00:00:00+00:00"),
        ("2024-03-01T00:00:00+01:00", -1, "2024-02-29T23:59:59+01:00"),
        ("1970-01-01T00:00:00Z", -0.001, "1969-12-31T23:59:59.999+00:00"),
        ("1400-01-01T00:00:00Z", 86400 * 365, "1401-01-01T00:00:00+00:00"),  # not leap
        ("9999-12-31T23:59:59.999Z", 0, "9999-12-31T23:59:59.999+00:00"),
    ],
)
def test_boundaries(start: str, seconds: float, end: str) -> None:
    assert run(f"r.iso8601('{start}') + {seconds}") == end


def test_day_of_year_and_week_at_the_ends_of_years() -> None:
    def days(text: str) -> t.Any:
        return run(f"[r.iso8601('{text}').day_of_year(), r.iso8601('{text}').day_of_week()]")

    assert days("2024-12-31T12:00Z") == [366, 2]
    assert days("2023-12-31T12:00Z") == [365, 7]
    assert days("2024-01-01T12:00Z") == [1, 1]
    # the day of week is the local one: 23:30 on a Sunday in UTC is Monday in +01:00
    assert run("r.iso8601('2023-12-31T23:30Z').in_timezone('+01:00').day_of_week()") == 1


def test_fields_agree_with_pythons_calendar() -> None:
    rng = random.Random(20240601)
    for _ in range(400):
        ms = rng.randrange(-17_000_000_000_000, 253_000_000_000_000)
        minutes = rng.randrange(-24 * 60 - 59, 24 * 60 + 60)
        sign = "-" if minutes < 0 else "+"
        tz = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
        if tz in ("-00:00",):
            continue
        expected = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + (
            datetime.timedelta(milliseconds=ms, minutes=minutes)
        )
        fields = run(
            "[t.year(), t.month(), t.day(), t.hours(), t.minutes(), t.seconds(), "
            "t.day_of_week(), t.day_of_year(), t.to_iso8601()]".replace(
                "t.", f"r.epoch_time({ms / 1000!r}).in_timezone('{tz}')."
            )
        )
        fraction = f".{expected.microsecond // 1000:03d}" if expected.microsecond else ""
        assert fields == [
            expected.year,
            expected.month,
            expected.day,
            expected.hour,
            expected.minute,
            (expected.second * 1000 + expected.microsecond // 1000) / 1000
            if expected.microsecond
            else expected.second,
            expected.isoweekday(),
            expected.timetuple().tm_yday,
            expected.strftime("%Y-%m-%dT%H:%M:%S") + fraction + tz,
        ], (ms, tz)


def test_iso8601_reads_every_form_reql_reads() -> None:
    dates = ["2013", "2013-01", "2013-01-01", "20130101", "2013-001", "2013001"]
    times = ["13", "13:00", "1300", "13:00:00", "13:00:00.000000", "130000.000000"]
    zones = ["Z", "+00", "+0000", "+00:00"]
    texts = [f"{d}T{tm}{z}" for d in dates for tm in times for z in zones]
    for start in range(0, len(texts), 48):
        calls = (f"r.iso8601('{text}').to_iso8601()" for text in texts[start : start + 48])
        assert set(run("[" + ", ".join(calls) + "]")) == {"2013-01-01T13:00:00+00:00"}
    assert run("r.iso8601('2013-01-01', default_timezone='+01').to_iso8601()") == (
        "2013-01-01T00:00:00+01:00"
    )
    assert run("r.iso8601('2013-01-01T13:00:00.123456789Z').to_epoch_time()") == 1357045200.123


@pytest.mark.parametrize(
    "text",
    [
        *(f"{d}T13:00+00:00" for d in ["201301", "2013-0101", "2a13", "2013+01", "2013-01-01.1"]),
        *(
            f"2013-01-01T{tm}+00:00"
            for tm in ["a3", "13:0000", "13:000", "13:00.00", "130000.00000000a"]
        ),
        *(f"2013-01-01T13:00{z}" for z in ["X", "-7", "-07:-1", "+07+01", "PST", "UTC", "Z+00"]),
        "2013-02-29T00:00Z",
        "2013-13-01T00:00Z",
        "2013-01-32T00:00Z",
        "2013-366T00:00Z",
        "2013-01-01T24:00Z",
        "2013-01-01T23:60Z",
        "2013-01-01T23:59:60Z",
        "1399-12-31T00:00Z",
        "",
        "T",
    ],
)
def test_iso8601_refuses_what_reql_refuses(text: str) -> None:
    with pytest.raises(errors.ExpressionError) as caught:
        run(f"r.iso8601('{text}')")
    assert not isinstance(caught.value, errors.NonExistenceError)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("r.time(2013, 1, 1, 'Z').in_timezone('')", "Timezone `` does not start with `-` or `+`."),
        ("r.time(2013, 1, 1, '-00')", "`-00` is not a valid time offset."),
        ("r.time(2013, 1, 1, '+0100x')", "Garbage characters `x` at end of timezone string"),
        ("r.time(2013, 1, 1.5, 'Z')", "Number not an integer: 1.5."),
        ("r.time(2013, 1, 1, 0, 0, 'a', 'Z')", "Expected type NUMBER but found STRING."),
        ("r.epoch_time('1')", "Expected type NUMBER but found STRING."),
        ("r.epoch_time(1e300)", "Time value out of range"),
        ("r.iso8601(1)", "Expected type STRING but found NUMBER."),
        ("r.now().in_timezone(1)", "Expected type STRING but found NUMBER."),
        ("r.now().during(1, 2)", "Not a TIME pseudotype: `1`."),
        ("r.now() * 2", "Expected type NUMBER but found PTYPE<TIME>."),
        ("r.now().count()", "Cannot convert PTYPE<TIME> to SEQUENCE."),
        ("r.now().coerce_to('number')", "Cannot coerce PTYPE<TIME> to NUMBER."),
        ("r.now()['epoch_time']", "Cannot perform bracket on a non-object non-sequence"),
    ],
)
def test_time_errors(source: str, message: str) -> None:
    with pytest.raises(errors.ExpressionError) as caught:
        run(source)
    assert message in str(caught.value)


def test_reql_offsets() -> None:
    zones = {"Z": "+00:00", "+00": "+00:00", "-0130": "-01:30", "+05:30": "+05:30"}
    for given, kept in zones.items():
        assert run(f"r.now().in_timezone('{given}').timezone()") == kept
    assert run("r.now().in_timezone('-0000').timezone()") == "-00:00"  # ReQL's quirk, kept
    assert run("r.now().in_timezone('+24:59').timezone()") == "+24:59"


# -- the manual's examples ----------------------------------------------------------------------


def test_the_manuals_time_examples_run() -> None:
    section = MANUAL.read_text(encoding="utf-8").split("## Times", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```text\n(.*?)```", section, re.S)
    assert block is not None
    env = {
        "info": {
            "params": {"since": "2024-05-31T00:00:00Z", "page": 1},
            "header": {},
            "body": {"last_updated": "2024-06-01T11:30:00Z"},
        },
        "row": {"created_at": "2024-06-01T11:59:00.250+00:00"},
    }
    results = []
    for line in block.group(1).splitlines():
        source = line.split("  #", 1)[0].strip()
        if source:
            expression = compile_expression(source, path="docs", names=tuple(env))
            results.append(expression.evaluate(env, now=RUN_START))
    assert results == [
        "2024-05-31T12:00:00.250+00:00",
        {"params": {"since": "2024-05-31T01:00:00+00:00"}},
        {"params": {"day": "2024-06-01T00:00:00-05:00"}},
        {"params": {"page": 2}},
        60,
    ]
