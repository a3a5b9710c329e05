"""Reading birthdays the way customers write them."""

from __future__ import annotations

from datetime import date

import pytest

from handlers.onboarding.registration import Birthday, BirthdayError, parse_birthday

TODAY = date(2026, 11, 23)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1990-05-17", Birthday(1990, 5, 17)),
        ("1990/5/7", Birthday(1990, 5, 7)),
        ("05-17", Birthday(None, 5, 17)),
        ("5月17日", Birthday(None, 5, 17)),
        ("1990年5月17日", Birthday(1990, 5, 17)),
        ("１９９０－０５－１７", Birthday(1990, 5, 17)),  # full-width digits
        ("02-29", Birthday(None, 2, 29)),
        ("2000-02-29", Birthday(2000, 2, 29)),
    ],
)
def test_accepted_forms(text: str, expected: Birthday) -> None:
    assert parse_birthday(text, TODAY) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1990-02-30", "birthday_reason_impossible"),
        ("1990-02-29", "birthday_reason_impossible"),
        ("13-01", "birthday_reason_impossible"),
        ("2月30日", "birthday_reason_impossible"),
        ("2030-01-01", "birthday_reason_future"),
        ("1850-01-01", "birthday_reason_too_old"),
        ("yesterday", "birthday_reason_format"),
        ("", "birthday_reason_format"),
    ],
)
def test_rejected_forms_say_why(text: str, reason: str) -> None:
    with pytest.raises(BirthdayError) as error:
        parse_birthday(text, TODAY)
    assert error.value.reason_key == reason


def test_str_keeps_the_missing_year_missing() -> None:
    assert str(Birthday(None, 2, 9)) == "02-09"
    assert str(Birthday(1988, 12, 1)) == "1988-12-01"
