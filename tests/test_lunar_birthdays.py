"""Lunar birthdays checked as lunar dates: when customers write them (``/profile`` with the
lunar flag on, end to end), in the customers CSV (its ``lunar`` column, on both databases), and
greeted on the right day (a 30th on the 29th of a 29-day month)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import importer
from bot.importer import ImportRejected
from bot.kernel.config import GeneralConfig, OrderConfig
from handlers.onboarding.birthdays import Birthday, BirthdayError, parse_birthday
from storage.models import Customer
from tests.auxil.harness import Harness
from tests.auxil.outbox import add_customer
from tests.test_care import planner

TODAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
RULES = OrderConfig(currency="CNY", timezone="Asia/Shanghai")


class TestParsing:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("02-30", Birthday(None, 2, 30)),
            ("2月30日", Birthday(None, 2, 30)),
            ("1990-02-30", Birthday(1990, 2, 30)),  # lunar 1990/2 has 30 days
            ("12-30", Birthday(None, 12, 30)),
            ("闰5月20日", Birthday(None, 5, 20)),  # a leap month: kept as its month
            ("1990-闰5-20", Birthday(1990, 5, 20)),  # 1990 has a leap 5th month
            ("2025年闰6月29日", Birthday(2025, 6, 29)),
            ("2026-10-15", Birthday(2026, 10, 15)),  # today, 2026-11-23, in lunar
        ],
    )
    def test_lunar_forms(self, text: str, expected: Birthday) -> None:
        assert parse_birthday(text, TODAY, lunar=True) == expected

    @pytest.mark.parametrize(
        ("text", "lunar", "reason"),
        [
            ("02-30", False, "birthday_reason_impossible"),  # as Gregorian: no such day
            ("闰5月20日", False, "birthday_reason_format"),  # leap months are lunar only
            ("02-31", True, "birthday_reason_impossible_lunar"),
            ("13-01", True, "birthday_reason_impossible_lunar"),
            ("00-10", True, "birthday_reason_impossible_lunar"),
            ("1989-02-30", True, "birthday_reason_lunar_year"),  # lunar 1989/2 has 29 days
            ("1991-闰5-20", True, "birthday_reason_lunar_year"),  # 1991 has no leap month
            ("2025-闰6-30", True, "birthday_reason_lunar_year"),  # leap 6th of 2025: 29 days
            ("2026-10-16", True, "birthday_reason_future"),  # tomorrow in lunar
            ("1899-01-01", True, "birthday_reason_too_old"),
        ],
    )
    def test_rejected_forms_say_why(self, text: str, lunar: bool, reason: str) -> None:
        with pytest.raises(BirthdayError) as error:
            parse_birthday(text, TODAY, lunar=lunar)
        assert error.value.reason_key == reason


class TestProfile:
    async def test_a_lunar_30th_is_saved_and_the_flag_cannot_make_it_gregorian(
        self, harness: Harness
    ) -> None:
        api = harness.api
        lin = api.add_user(1201, "林", language_code="zh")
        await api.send_text(lin, "/profile")
        card = (await api.wait_for_sent(lin.id, 1))[0]
        await api.press_button(lin, card, "profile:lunar")
        await harness.barrier(lin, "zh")  # the press is handled
        stored = await harness.customer(lin.id)
        assert stored is not None and stored.birthday_lunar

        await api.press_button(lin, card, "profile:birthday")
        prompt = (await api.wait_for_sent(lin.id, 3))[-1]
        assert prompt.text == harness.text("zh", "birthday_prompt_lunar")
        await api.send_text(lin, "02-31")
        refused = (await api.wait_for_sent(lin.id, 4))[-1]
        reason = harness.text("zh", "birthday_reason_impossible_lunar")
        assert refused.text == harness.text("zh", "birthday_invalid", value="02-31", reason=reason)
        await api.send_text(lin, "02-30")
        saved = (await api.wait_for_sent(lin.id, 5))[-1]
        assert saved.text == harness.text("zh", "birthday_saved", birthday="02-30")
        stored = await harness.customer(lin.id)
        assert stored is not None
        assert (stored.birth_month, stored.birth_day, stored.birthday_lunar) == (2, 30, True)

        # Turning the flag off would make 02-30 a Gregorian date: refused, nothing changed.
        await api.press_button(lin, card, "profile:lunar")
        refusal = harness.text("zh", "lunar_toggle_refused")
        await api.wait_for(
            lambda: any(answer.get("text") == refusal for answer in api.answered_callbacks),
            description="the refusal",
        )
        await harness.barrier(lin, "zh")
        stored = await harness.customer(lin.id)
        assert stored is not None and stored.birthday_lunar


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


async def import_customers(
    sessionmaker: async_sessionmaker[AsyncSession], path: Path
) -> importer.ImportCounts:
    async with sessionmaker.begin() as session:
        return await importer.import_customers(session, path, RULES, GeneralConfig(), NOW)


async def birthdays(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> dict[str, tuple[int | None, int | None, int | None, bool]]:
    async with sessionmaker() as session:
        result = await session.execute(
            select(
                Customer.external_id,
                Customer.birth_year,
                Customer.birth_month,
                Customer.birth_day,
                Customer.birthday_lunar,
            )
        )
        return {row[0]: (row[1], row[2], row[3], bool(row[4])) for row in result}


class TestCsv:
    async def test_the_lunar_column_says_which_calendar_the_birthday_is_in(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        path = write(
            tmp_path,
            "customers.csv",
            "customer_id,birthday,lunar\n"
            "C1,02-30,农历\n"
            "C2,1990-05-17,\n"
            "C3,1990-闰5-20,true\n"
            "C4,05-17,0\n"
            "C5,,\n"
            "C6,12-30,1\n",
        )
        counts = await import_customers(sessionmaker, path)
        assert (counts.inserted, counts.updated) == (6, 0)
        assert await birthdays(sessionmaker) == {
            "C1": (None, 2, 30, True),
            "C2": (1990, 5, 17, False),
            "C3": (1990, 5, 20, True),
            "C4": (None, 5, 17, False),
            "C5": (None, None, None, False),
            "C6": (None, 12, 30, True),
        }
        # A later file turns C4's birthday lunar; an empty birthday keeps C6's as it is.
        again = write(tmp_path, "again.csv", "customer_id,birthday,lunar\nC4,05-17,农历\nC6,,\n")
        counts = await import_customers(sessionmaker, again)
        assert (counts.inserted, counts.updated) == (0, 1)
        found = await birthdays(sessionmaker)
        assert (found["C4"], found["C6"]) == ((None, 5, 17, True), (None, 12, 30, True))

    async def test_bad_lunar_cells_name_line_and_column_and_nothing_is_imported(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        path = write(
            tmp_path,
            "customers.csv",
            "customer_id,name,birthday,lunar\n"
            "C1,Ok,02-30,1\n"
            "C2,Gregorian,02-30,0\n"
            "C3,Too big,13-01,1\n"
            "C4,Unknown flag,05-17,maybe\n"
            "C5,No birthday,,农历\n"
            "C6,Not that year,1989-02-30,true\n",
        )
        with pytest.raises(ImportRejected) as rejected:
            await import_customers(sessionmaker, path)
        assert [str(problem) for problem in rejected.value.problems] == [
            f"{path}:3:3: birthday: '02-30' is not a Gregorian birthday "
            "(no such day in the Gregorian calendar)",
            f"{path}:4:3: birthday: '13-01' is not a lunar birthday "
            "(a lunar month is 1-12 and a lunar day 1-30)",
            f"{path}:5:4: lunar: 'maybe': expected 1, true or 农历 (lunar), or 0, false or "
            "empty (not)",
            f"{path}:6:4: lunar: says the birthday is lunar, but the row has no birthday",
            f"{path}:7:3: birthday: '1989-02-30' is not a lunar birthday "
            "(no such day in that lunar year)",
        ]
        assert await birthdays(sessionmaker) == {}


class TestGreeting:
    async def test_a_30th_is_greeted_on_the_29th_of_a_29_day_month_only(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        # Lunar 2026/12 has 29 days (its 29th is 2027-02-05); lunar 2027/1 has 30 (its 29th
        # and 30th are 2027-03-06 and 2027-03-07).
        async with sessionmaker.begin() as session:
            late_12 = await add_customer(
                session, 1, birth_month=12, birth_day=30, birthday_lunar=True
            )
            on_12_29 = await add_customer(
                session, 2, birth_month=12, birth_day=29, birthday_lunar=True
            )
            late_1 = await add_customer(
                session, 3, birth_month=1, birth_day=30, birthday_lunar=True
            )
            await add_customer(session, 4, birth_month=12, birth_day=30)  # Gregorian
        greeted: dict[str, list[int]] = {}
        for day in ("2027-02-04", "2027-02-05", "2027-03-06", "2027-03-07"):
            at = datetime.fromisoformat(f"{day}T02:00:00+00:00")  # 10:00 in Shanghai
            async with sessionmaker.begin() as session:
                report = await planner().run(session, at)
            greeted[day] = sorted(
                item.customer.id for item in report.planned if item.occasion == "birthday"
            )
        assert greeted == {
            "2027-02-04": [],
            "2027-02-05": [late_12, on_12_29],
            "2027-03-06": [],
            "2027-03-07": [late_1],
        }
