"""Per-group business hours (``[groups.<name>.hours]``) and staff duty hours (``[[staff]]``
``hours``) in ``tickets.toml``: checked at start-up with the file and the key named; a group's
table replaces the desk's ``[hours]`` for its tickets; duty hours read as written, in the
group's time zone, with when they end and begin."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.kernel.config import load_config
from bot.kernel.files import ConfigError
from bot.kernel.hours import DutyHoursConfig, parse_duty_hours
from bot.settings import EXAMPLE_CONFIG_DIR

LONDON = ZoneInfo("Europe/London")
SHANGHAI = ZoneInfo("Asia/Shanghai")

GOOD = """
[groups.intl]
assign = "round_robin"

[groups.intl.hours]
timezone = "Europe/London"
country = "GB"
mon = "09:00-17:30"
tue = "09:00-17:30"
wed = "09:00-17:30"
thu = "09:00-17:30"
fri = "09:00-17:30"

[groups.always]
hours = { enabled = false }

[[staff]]
user_id = 7001
hours = "mon-fri 09:00-12:00, 13:00-18:00; sat 10:00-14:00"

[[staff]]
user_id = 7002
[staff.hours]
tue = "22:00-24:00"
wed = "00:00-06:00"
"""


def _config_dir(tmp_path: Path, extra: str) -> Path:
    directory = tmp_path / "config"
    shutil.copytree(EXAMPLE_CONFIG_DIR, directory)
    tickets = directory / "tickets.toml"
    shipped = tickets.read_text(encoding="utf-8").split("\n[desk]\n")[0]  # ours replaces it
    tickets.write_text(shipped + "\n" + extra, encoding="utf-8")
    return directory


def test_a_groups_hours_replace_the_desks_and_duty_hours_read_as_written(
    tmp_path: Path,
) -> None:
    rules = load_config(_config_dir(tmp_path, GOOD)).tickets
    intl, desk = rules.hours_of("intl"), rules.hours_of("main")
    assert (intl.enabled, intl.timezone, intl.country, intl.sat) == (
        True,  # writing the table turns the group's hours on
        "Europe/London",
        "GB",
        "closed",  # the schema's default, not the desk's "10:00-16:00"
    )
    assert desk is rules.hours and desk.timezone == "Asia/Shanghai"
    assert rules.hours_of("vip") is rules.hours  # a group without a table: the desk's
    assert rules.hours_of("always").calendar().always_open
    # 9:30 on Saturday 28 November 2026 in Shanghai is 1:30 in London: closed for intl, which
    # opens at 9:00 on Monday (London), 17:00 in Shanghai.
    saturday = datetime(2026, 11, 28, 9, 30, tzinfo=SHANGHAI)
    assert intl.calendar().next_open(saturday) == datetime(2026, 11, 30, 9, 0, tzinfo=LONDON)

    amy, ben = rules.member(7001), rules.member(7002)
    assert amy is not None and amy.hours is not None
    assert (amy.hours.mon, amy.hours.sat, amy.hours.sun) == (
        "09:00-12:00, 13:00-18:00",
        "10:00-14:00",
        "closed",
    )
    assert ben is not None and ben.hours is not None
    night = ben.hours.calendar("Europe/London")
    tuesday = datetime(2026, 12, 1, 23, 0, tzinfo=LONDON)
    assert night.is_open(tuesday)
    assert night.open_until(tuesday) == datetime(2026, 12, 2, 6, 0, tzinfo=LONDON)  # one shift
    assert night.next_open(datetime(2026, 12, 2, 7, 0, tzinfo=LONDON)) == datetime(
        2026, 12, 8, 22, 0, tzinfo=LONDON
    )
    # The same hours in another group's zone are that zone's clock.
    assert not ben.hours.calendar("Asia/Shanghai").is_open(tuesday)


def test_duty_hours_text_forms() -> None:
    assert parse_duty_hours("sat,sun 10:00-14:00") == {"sat": "10:00-14:00", "sun": "10:00-14:00"}
    assert parse_duty_hours("fri-mon 08:00-12:00") == {  # a range may wrap the week
        day: "08:00-12:00" for day in ("fri", "sat", "sun", "mon")
    }
    # A night shift: the days that hold both ends get both, in order.
    assert parse_duty_hours("mon 22:00-24:00; tue 00:00-06:00; tue 22:00-24:00")["tue"] == (
        "00:00-06:00, 22:00-24:00"
    )
    always = DutyHoursConfig.model_validate("mon-sun 00:00-24:00").calendar("UTC")
    moment = datetime(2026, 12, 1, 12, 0, tzinfo=ZoneInfo("UTC"))
    assert always.open_until(moment) == datetime(2026, 12, 9, 12, 0, tzinfo=ZoneInfo("UTC"))


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ('[groups.intl.hours]\ntimezone = "Mars/Olympus"\n', "groups.intl.hours.timezone"),
        ('[groups.intl.hours]\nmon = "9-17"\n', "groups.intl.hours.mon: '9-17'"),
        ('[groups.intl.hours]\ncolour = "red"\n', "groups.intl.hours.colour: unknown key"),
        ('[groups.intl.hours]\ncountry = "XX"\n', "groups.intl.hours: the holidays"),
        (
            "[groups.intl.hours]\n"
            + "".join(f'{d} = "closed"\n' for d in ("mon", "tue", "wed", "thu", "fri")),
            "groups.intl.hours: expected at least one weekday",
        ),
        (
            '[[staff]]\nuser_id = 1\nhours = "monday 09:00-18:00"\n',
            "staff.0.hours: 'monday'",
        ),
        (
            '[[staff]]\nuser_id = 1\nhours = "mon-fri 9 to 5"\n',
            "staff.0.hours: '9 to 5'",
        ),
        (
            '[[staff]]\nuser_id = 1\nhours = "mon 10:00-12:00; mon 11:00-13:00"\n',
            "staff.0.hours: mon:",
        ),
        (
            '[[staff]]\nuser_id = 1\nhours = "sat closed"\n',
            'staff.0.hours: expected "DAYS',
        ),
        ("[[staff]]\nuser_id = 1\nhours = 5\n", 'staff.0.hours: expected "DAYS'),
        (
            '[[staff]]\nuser_id = 1\n[staff.hours]\nfriday = "09:00-18:00"\n',
            "staff.0.hours.friday: unknown key",
        ),
        (
            '[[staff]]\nuser_id = 1\n[staff.hours]\nmon = "18:00-09:00"\n',
            "staff.0.hours.mon:",
        ),
    ],
)
def test_wrong_hours_name_the_file_and_the_key(tmp_path: Path, extra: str, where: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(_config_dir(tmp_path, extra))
    assert str(raised.value).startswith(str(tmp_path / "config" / "tickets.toml"))
    assert where in str(raised.value), str(raised.value)
