"""Birthdays as customers write them, checked in the calendar they are in.

A Gregorian birthday is a real date (02-29 without a year is fine: it is greeted on Feb 28 in
common years). A lunar birthday (the customer's lunar flag, or the ``lunar`` column of the
customers CSV) is a lunar month 1-12 and day 1-30: a 30th is greeted on the 29th in a year
whose month has 29 days (``scheduler.care.lunar_pairs``). A leap month may be written with 闰
(``闰4月15日``, ``1990-闰5-20``); it is kept as its month number, and greeted in the regular
month every year, since most years have no such leap month. With a year, the date must exist in
that lunar year (the ``lunardate`` package's range, 1900-2099) and not be in the future.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date

from lunardate import LunarDate

LUNAR_MONTHS = 12
LUNAR_DAYS = 30
LEAP = "闰"


class BirthdayError(ValueError):
    """The text is not a usable birthday; ``reason_key`` names the catalogue entry saying why."""

    def __init__(self, reason_key: str) -> None:
        super().__init__(reason_key)
        self.reason_key = reason_key


@dataclass(frozen=True)
class Birthday:
    year: int | None
    month: int
    day: int

    def __str__(self) -> str:
        month_day = f"{self.month:02d}-{self.day:02d}"
        return f"{self.year:04d}-{month_day}" if self.year else month_day


_FULL_DATE = re.compile(r"^(\d{4})\s*[-/.]\s*(闰?)\s*(\d{1,2})\s*[-/.]\s*(\d{1,2})$")
_MONTH_DAY = re.compile(r"^()(闰?)\s*(\d{1,2})\s*[-/.]\s*(\d{1,2})$")
_CHINESE_DATE = re.compile(r"^(?:(\d{4})\s*年)?\s*(闰?)\s*(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]?$")


def parse_birthday(text: str, today: date, *, lunar: bool = False) -> Birthday:
    """Read ``1990-05-17``, ``1990/5/17``, ``05-17`` or ``5月17日`` (full-width digits too) as a
    Gregorian date, or as a lunar one when ``lunar`` (``闰`` before the month: a leap month);
    BirthdayError says why not."""
    normalised = unicodedata.normalize("NFKC", text).strip()
    match = (
        _FULL_DATE.match(normalised)
        or _CHINESE_DATE.match(normalised)
        or _MONTH_DAY.match(normalised)
    )
    if match is None:
        raise BirthdayError("birthday_reason_format")
    year_text, leap, month_text, day_text = match.groups()
    if leap and not lunar:
        raise BirthdayError("birthday_reason_format")
    birthday = Birthday(int(year_text) if year_text else None, int(month_text), int(day_text))
    check_birthday(birthday, today, lunar=lunar, leap=bool(leap))
    return birthday


def check_birthday(birthday: Birthday, today: date, *, lunar: bool, leap: bool = False) -> None:
    """Raise BirthdayError unless ``birthday`` exists in its calendar (Gregorian, or lunar when
    ``lunar``; ``leap``: in that year's leap month) and is not in the future."""
    year, month, day = birthday.year, birthday.month, birthday.day
    if lunar:
        if not (1 <= month <= LUNAR_MONTHS and 1 <= day <= LUNAR_DAYS):
            raise BirthdayError("birthday_reason_impossible_lunar")
    else:
        try:
            date(year or 2000, month, day)  # without a year, a leap year: 02-29 is fine
        except ValueError:
            raise BirthdayError("birthday_reason_impossible") from None
    if year is None:
        return
    if year < 1900:
        raise BirthdayError("birthday_reason_too_old")
    if year > today.year:
        raise BirthdayError("birthday_reason_future")
    if lunar:
        try:
            solar = LunarDate(year, month, day, leap).to_solar_date()
        except ValueError:  # that lunar month has 29 days, or the year has no such leap month
            raise BirthdayError("birthday_reason_lunar_year") from None
    else:
        solar = date(year, month, day)
    if solar > today:
        raise BirthdayError("birthday_reason_future")
