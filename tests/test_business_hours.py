"""Business-time arithmetic (``bot.kernel.hours``): deadlines that count only open hours,
across weekends, lunch breaks, public holidays (China's National Day week, its make-up working
days), dates of the operator's own, and the days the clocks change; and the ``[hours]`` table's
start-up check."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.kernel.config import TicketConfig
from bot.kernel.files import ConfigError, load_config_file
from bot.kernel.hours import BusinessHours, HoursConfig, parse_spans

SHANGHAI = ZoneInfo("Asia/Shanghai")
LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
HOUR = timedelta(hours=1)


def desk(**values: Any) -> BusinessHours:
    """Monday to Friday 9:00-18:00 in Shanghai unless told otherwise."""
    return HoursConfig.model_validate({"enabled": True, **values}).calendar()


def sh(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=SHANGHAI)  # type: ignore[misc]


# --- add ---------------------------------------------------------------------------------------


def test_always_open_is_plain_elapsed_time() -> None:
    hours = HoursConfig().calendar()
    assert hours.always_open
    start = sh(2026, 11, 27, 23, 30)
    assert hours.add(start, HOUR) == start + HOUR
    assert hours.between(start, start + 3 * HOUR) == 3 * HOUR
    assert hours.next_open(start) == start
    assert hours.is_open(start)


def test_inside_opening_hours_a_deadline_is_plain_time() -> None:
    hours = desk()
    assert hours.add(sh(2026, 11, 23, 10, 0), HOUR) == sh(2026, 11, 23, 11, 0)
    assert hours.add(sh(2026, 11, 23, 9, 0), 9 * HOUR) == sh(2026, 11, 23, 18, 0)


def test_a_friday_night_deadline_falls_on_monday_after_opening() -> None:
    hours = desk()
    assert hours.add(sh(2026, 11, 27, 23, 30), HOUR) == sh(2026, 11, 30, 10, 0)
    assert hours.add(sh(2026, 11, 28, 12, 0), timedelta(minutes=15)) == sh(2026, 11, 30, 9, 15)
    # Half an hour on Friday, the rest on Monday.
    assert hours.add(sh(2026, 11, 27, 17, 30), HOUR) == sh(2026, 11, 30, 9, 30)


def test_a_deadline_at_closing_time_stays_there() -> None:
    hours = desk()
    assert hours.add(sh(2026, 11, 27, 17, 0), HOUR) == sh(2026, 11, 27, 18, 0)


def test_starting_at_closing_time_or_before_opening() -> None:
    hours = desk()
    assert hours.add(sh(2026, 11, 24, 18, 0), HOUR) == sh(2026, 11, 25, 10, 0)
    assert hours.add(sh(2026, 11, 24, 6, 0), HOUR) == sh(2026, 11, 24, 10, 0)
    assert hours.add(sh(2026, 11, 24, 6, 0), timedelta(0)) == sh(2026, 11, 24, 9, 0)
    assert hours.add(sh(2026, 11, 24, 12, 0), timedelta(0)) == sh(2026, 11, 24, 12, 0)


def test_long_durations_span_several_business_days() -> None:
    hours = desk()
    # 48 business hours from Monday 9:00: five days of 9 hours is 45, so Monday 12:00.
    assert hours.add(sh(2026, 11, 23, 9, 0), 48 * HOUR) == sh(2026, 11, 30, 12, 0)


def test_lunch_breaks_and_a_short_saturday() -> None:
    hours = desk(mon="09:00-12:00, 13:00-18:00", sat="10:00-12:00")
    assert hours.add(sh(2026, 11, 23, 11, 30), HOUR) == sh(2026, 11, 23, 13, 30)
    assert hours.add(sh(2026, 11, 23, 12, 30), HOUR) == sh(2026, 11, 23, 14, 0)
    assert hours.add(sh(2026, 11, 27, 17, 0), 2 * HOUR) == sh(2026, 11, 28, 11, 0)
    assert hours.add(sh(2026, 11, 28, 11, 30), HOUR) == sh(2026, 11, 30, 9, 30)


def test_hours_until_midnight_run_into_the_next_open_day() -> None:
    hours = desk(mon="18:00-24:00", tue="00:00-02:00")
    assert hours.add(sh(2026, 11, 23, 23, 0), 2 * HOUR) == sh(2026, 11, 24, 1, 0)
    assert hours.between(sh(2026, 11, 23, 12, 0), sh(2026, 11, 24, 12, 0)) == 8 * HOUR


def test_results_are_utc() -> None:
    due = desk().add(sh(2026, 11, 27, 23, 30), HOUR)
    assert due.tzinfo is UTC
    assert due == datetime(2026, 11, 30, 2, 0, tzinfo=UTC)


# --- holidays and the operator's dates --------------------------------------------------------


def test_national_day_week_is_closed_in_china() -> None:
    hours = desk(country="CN")
    # Wednesday 30 September 17:30: half an hour that day, the rest on Thursday 8 October.
    assert hours.add(sh(2026, 9, 30, 17, 30), HOUR) == sh(2026, 10, 8, 9, 30)
    for day in range(1, 8):
        assert hours.spans_on(date(2026, 10, day)) == ()
    assert hours.between(sh(2026, 9, 30, 17, 0), sh(2026, 10, 8, 10, 0)) == 2 * HOUR
    assert hours.next_open(sh(2026, 10, 3, 12, 0)) == sh(2026, 10, 8, 9, 0)


def test_without_a_country_holidays_are_ordinary_days() -> None:
    assert desk().add(sh(2026, 9, 30, 17, 30), HOUR) == sh(2026, 10, 1, 9, 30)


def test_chinese_new_year_and_its_substituted_days_off() -> None:
    hours = desk(country="CN")
    # Friday 13 February 2026: Spring Festival closes 16-20 and the substituted Monday 23rd.
    assert hours.add(sh(2026, 2, 13, 17, 0), 2 * HOUR) == sh(2026, 2, 24, 10, 0)


def test_make_up_working_days_open_when_configured() -> None:
    """China moves working days onto weekends around long holidays (Sunday 20 September and
    Saturday 10 October 2026); ``make_up_days`` gives them hours."""
    closed = desk(country="CN")
    made_up = desk(country="CN", make_up_days="09:00-18:00")
    assert closed.spans_on(date(2026, 9, 20)) == ()
    assert made_up.add(sh(2026, 9, 19, 12, 0), HOUR) == sh(2026, 9, 20, 10, 0)
    assert closed.add(sh(2026, 9, 19, 12, 0), HOUR) == sh(2026, 9, 21, 10, 0)
    assert made_up.add(sh(2026, 10, 9, 17, 30), HOUR) == sh(2026, 10, 10, 9, 30)
    assert made_up.spans_on(date(2026, 10, 11)) == ()  # an ordinary Sunday


def test_the_operators_dates_override_week_and_holidays() -> None:
    hours = desk(
        country="CN",
        dates={"2026-11-24": "closed", "2026-10-02": "10:00-12:00", "2026-11-28": "09:00-10:00"},
    )
    assert hours.add(sh(2026, 11, 23, 17, 30), HOUR) == sh(2026, 11, 25, 9, 30)
    assert hours.add(sh(2026, 10, 1, 12, 0), HOUR) == sh(2026, 10, 2, 11, 0)
    assert hours.add(sh(2026, 11, 27, 17, 30), HOUR) == sh(2026, 11, 28, 9, 30)


def test_a_subdivisions_own_holidays() -> None:
    # Cesar Chavez Day (31 March) is a holiday in California only.
    national = desk(timezone="America/Los_Angeles", country="US")
    california = desk(timezone="America/Los_Angeles", country="US", subdivision="CA")
    assert national.spans_on(date(2026, 3, 31)) != ()
    assert california.spans_on(date(2026, 3, 31)) == ()


# --- clock changes -----------------------------------------------------------------------------


def test_a_day_the_clocks_go_forward_is_23_hours_long() -> None:
    every_day = {day: "00:00-24:00" for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    hours = desk(timezone="Europe/London", **every_day)
    sunday = datetime(2026, 3, 29, tzinfo=LONDON)
    monday = datetime(2026, 3, 30, tzinfo=LONDON)
    assert hours.between(sunday, monday) == 23 * HOUR
    assert hours.add(sunday, 23 * HOUR) == monday
    autumn = datetime(2026, 10, 25, tzinfo=LONDON)
    assert hours.between(autumn, datetime(2026, 10, 26, tzinfo=LONDON)) == 25 * HOUR


def test_opening_hours_follow_local_time_across_a_clock_change() -> None:
    hours = desk(timezone="Europe/London", **{day: "09:00-17:00" for day in ("mon", "fri")})
    # Friday 16:00 GMT + 2 business hours: one on Friday, one on Monday from 9:00 BST.
    due = hours.add(datetime(2026, 3, 27, 16, 0, tzinfo=LONDON), 2 * HOUR)
    assert due == datetime(2026, 3, 30, 10, 0, tzinfo=LONDON)
    assert due == datetime(2026, 3, 30, 9, 0, tzinfo=UTC)
    new_york = desk(timezone="America/New_York", sun="01:00-05:00")
    # 8 March 2026: 02:00-03:00 does not exist, so Sunday's 01:00-05:00 is three hours.
    assert new_york.between(
        datetime(2026, 3, 8, tzinfo=NEW_YORK), datetime(2026, 3, 9, tzinfo=NEW_YORK)
    ) == (3 * HOUR)


# --- between, next_open ------------------------------------------------------------------------


def test_between_counts_only_open_time() -> None:
    hours = desk()
    assert hours.between(sh(2026, 11, 27, 17, 0), sh(2026, 11, 30, 10, 0)) == 2 * HOUR
    assert hours.between(sh(2026, 11, 28, 10, 0), sh(2026, 11, 29, 10, 0)) == timedelta(0)
    assert hours.between(sh(2026, 11, 30, 10, 0), sh(2026, 11, 27, 17, 0)) == timedelta(0)
    assert hours.between(sh(2026, 11, 23, 0, 0), sh(2026, 11, 30, 0, 0)) == 45 * HOUR


def test_between_undoes_add() -> None:
    """For any start (open or closed) and duration, the open time from the start to its
    deadline is the duration."""
    hours = desk(country="CN", mon="09:00-12:00, 13:30-18:00", sat="10:00-14:00")
    shuffle = random.Random(20)
    origin = sh(2026, 9, 1, 0, 0)
    for _ in range(400):
        start = origin + timedelta(minutes=shuffle.randrange(0, 60 * 24 * 70))
        duration = timedelta(minutes=shuffle.randrange(0, 60 * 60))
        assert hours.between(start, hours.add(start, duration)) == duration, (start, duration)


def test_next_open_and_is_open() -> None:
    hours = desk(country="CN")
    assert hours.is_open(sh(2026, 11, 23, 9, 0))
    assert not hours.is_open(sh(2026, 11, 23, 18, 0))
    assert hours.next_open(sh(2026, 11, 23, 18, 0)) == sh(2026, 11, 24, 9, 0)
    assert hours.next_open(sh(2026, 11, 27, 23, 30)) == sh(2026, 11, 30, 9, 0)
    assert hours.next_open(sh(2026, 11, 24, 8, 59)) == sh(2026, 11, 24, 9, 0)


# --- the rule file -----------------------------------------------------------------------------


def test_spans_are_read_strictly() -> None:
    assert parse_spans(" 09:00-12:00 , 13:00-24:00 ") == (
        (datetime(1, 1, 1, 9).time(), datetime(1, 1, 1, 12).time()),
        (datetime(1, 1, 1, 13).time(), None),
    )
    assert parse_spans("closed") == ()
    for text in ("9-18", "09:00-08:00", "09:00-12:00, 11:00-13:00", "25:00-26:00", "09:00-24:30"):
        with pytest.raises(ValueError):
            parse_spans(text)


@pytest.mark.parametrize(
    ("table", "key", "message"),
    [
        ('mon = "9 to 5"', "hours.mon", 'expected "HH:MM-HH:MM"'),
        ('tue = "18:00-09:00"', "hours.tue", "split hours past midnight"),
        ('timezone = "Mars/Olympus"', "hours.timezone", "IANA time zone"),
        ('country = "XX"', "hours", "Country XX not available"),
        ('country = "US"\nsubdivision = "ZZ"', "hours", "subdivision ZZ"),
        ('subdivision = "CA"', "hours", "subdivision needs a country"),
        ('country = "china"', "hours.country", "should match pattern"),
        ('[hours.dates]\n2026-13-01 = "closed"', "hours.dates.2026-13-01.[key]", "date"),
        ('[hours.dates]\n2026-12-24 = "all day"', "hours.dates.2026-12-24", "'all day'"),
        ("weekend = true", "hours.weekend", "unknown key"),
        (
            "\n".join(f'{day} = "closed"' for day in ("mon", "tue", "wed", "thu", "fri")),
            "hours",
            "at least one weekday",
        ),
    ],
)
def test_a_bad_table_names_file_and_key(
    tmp_path: Path, table: str, key: str, message: str
) -> None:
    path = tmp_path / "tickets.toml"
    path.write_text(f"[hours]\nenabled = true\n{table}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config_file(path, TicketConfig)
    assert str(caught.value).startswith(f"{path}: {key}: "), str(caught.value)
    assert message in str(caught.value)


def test_the_shipped_table_is_valid_and_disabled_tables_are_always_open(tmp_path: Path) -> None:
    path = tmp_path / "tickets.toml"
    path.write_text('[hours]\nmon = "closed"\ntue = "closed"\n', encoding="utf-8")
    rules = load_config_file(path, TicketConfig)
    assert rules.hours.calendar().always_open
    assert TicketConfig().hours.calendar().always_open
