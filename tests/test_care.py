"""Care plans on SQLite and PostgreSQL: a year of greetings, follow-ups and offers worked out by
hand, idempotence (twice, and two processes on PostgreSQL), catch-up and stale greetings, the
retention flow with its coupon, and ``care.toml`` validation."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from bot.cli import app
from bot.kernel.care_config import CareConfig
from bot.kernel.config import load_config
from bot.kernel.files import ConfigError, load_config_file
from bot.kernel.replies import Alert, Reply
from bot.kernel.texts import Texts
from bot.metrics import handler_name
from handlers.care.actions import press_care_button
from handlers.care.telegram import build_handlers
from handlers.tickets.lifecycle import TicketDesk
from scheduler.care import (
    CarePlanner,
    care_jobs,
    coupon_code,
    lunar_pairs,
    plan_before_dispatch,
    planner_for,
    solar_pairs,
)
from storage import care as care_queries
from storage.engine import create_engine, create_sessionmaker
from storage.models import Coupon, Customer, Order, Outbox
from storage.tickets.rows import open_ticket_of
from tests.auxil.harness import STAFF_CHAT_ID, Harness
from tests.auxil.outbox import add_customer
from tests.auxil.tickets import lanes_idle

CONFIG = Path(__file__).resolve().parents[1] / "bot" / "example_config"
RULES = load_config(CONFIG)


def planner(codes: list[str] | None = None) -> CarePlanner:
    new_code = (lambda: codes.pop(0)) if codes is not None else coupon_code
    return CarePlanner(
        RULES.care, default_timezone="Asia/Shanghai", currency="CNY", new_code=new_code
    )


async def add_order(
    session: AsyncSession, customer_id: int, external_id: str, *, placed: datetime, **extra: Any
) -> int:
    values: dict[str, Any] = {
        "external_id": external_id,
        "customer_id": customer_id,
        "amount_cents": 50_000,
        "currency": "CNY",
        "value_cents": 50_000,
        "status": "delivered",
        "placed_at": placed,
        "placed_day": (placed.date() - date(1970, 1, 1)).days,
        "created_at": placed,
        "updated_at": placed,
    }
    values.update(extra)
    result = await session.execute(insert(Order).values(**values).returning(Order.id))
    # What the importer does when a customer's orders change: reschedule their follow-ups.
    await care_queries.schedule_followups(
        session, select(Customer.id).where(Customer.id == customer_id)
    )
    return int(result.scalar_one())


async def plan(
    sessionmaker: async_sessionmaker[AsyncSession], at: datetime, p: CarePlanner
) -> int:
    async with sessionmaker.begin() as session:
        report = await p.run(session, at)
    return len(report.planned)


async def care_rows(sessionmaker: async_sessionmaker[AsyncSession]) -> list[Outbox]:
    async with sessionmaker() as session:
        result = await session.execute(select(Outbox).order_by(Outbox.id))
        return list(result.scalars())


async def count_rows(sessionmaker: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    async with sessionmaker() as session:
        outbox_rows = await session.scalar(select(func.count()).select_from(Outbox))
        coupons = await session.scalar(select(func.count()).select_from(Coupon))
    return int(outbox_rows or 0), int(coupons or 0)


def d(text: str) -> date:
    return date.fromisoformat(f"2027-{text}")


class TestCalendar:
    def test_feb_29_birthdays_are_greeted_on_feb_28_in_common_years_only(self) -> None:
        assert solar_pairs(date(2027, 2, 28)) == {(2, 28), (2, 29)}
        assert solar_pairs(date(2028, 2, 28)) == {(2, 28)}
        assert solar_pairs(date(2028, 2, 29)) == {(2, 29)}

    def test_lunar_birthdays_move_with_the_lunar_calendar(self) -> None:
        # Mid-Autumn (lunar 8/15) falls on 2027-09-15 and 2028-10-03.
        assert lunar_pairs(date(2027, 9, 15)) == {(8, 15)}
        assert lunar_pairs(date(2028, 10, 3)) == {(8, 15)}
        # Lunar 2027/1 has 30 days, the 12th month of 2026 has 29: its 29th also greets the 30th.
        assert lunar_pairs(date(2027, 2, 5)) == {(12, 29), (12, 30)}

    def test_coupon_codes_are_random_and_readable(self) -> None:
        codes = {coupon_code() for _ in range(1000)}
        assert len(codes) == 1000
        assert all(len(code) == 12 and code.startswith("CB-") for code in codes)
        assert not any(char in code[3:] for code in codes for char in "01IO")


class TestRules:
    def test_the_example_file_covers_every_tier_of_tiers_toml(self) -> None:
        assert {tier.name for tier in RULES.tiers.tiers} <= set(RULES.care.tiers)

    def test_an_unknown_placeholder_names_the_file_and_the_key(self, tmp_path: Path) -> None:
        text = (CONFIG / "care.toml").read_text(encoding="utf-8")
        broken = text.replace("生日快乐！🎂 祝您一切顺利。", "生日快乐！{coupon}", 1)
        path = tmp_path / "care.toml"
        path.write_text(broken, encoding="utf-8")
        with pytest.raises(ConfigError) as caught:
            load_config_file(path, CareConfig)
        assert str(caught.value) == (
            f"{path}: tiers.important.templates: birthday.zh: unknown placeholder {{coupon}} "
            "(allowed: {name}, {recommendations})"
        )

    def test_both_languages_are_required(self, tmp_path: Path) -> None:
        text = (CONFIG / "care.toml").read_text(encoding="utf-8")
        broken = text.replace(
            'birthday = { en = "Happy birthday, {name}!", zh = "{name}，生日快乐！" }',
            'birthday = { en = "Happy birthday, {name}!" }',
        )
        path = tmp_path / "care.toml"
        path.write_text(broken, encoding="utf-8")
        with pytest.raises(ConfigError, match=r"tiers\.normal\.templates\.birthday\.zh: Field"):
            load_config_file(path, CareConfig)


async def _year_customers(session: AsyncSession) -> dict[str, int]:
    ids = {
        # VIP in Shanghai (CN holidays), solar birthday, an order delivered on April 1st.
        "A": await add_customer(
            session, 1, tier="vip", birth_year=1990, birth_month=3, birth_day=15
        ),
        # Normal in New York (US: no greeted holidays), born on Feb 29, an order in June.
        "B": await add_customer(
            session,
            2,
            tier="normal",
            timezone="America/New_York",
            country="US",
            birth_year=1992,
            birth_month=2,
            birth_day=29,
            language="zh",
        ),
        # Important in Shanghai, lunar birthday 8/15 (Mid-Autumn itself), at risk all year.
        "C": await add_customer(
            session,
            3,
            tier="important",
            stage="at_risk",
            birth_month=8,
            birth_day=15,
            birthday_lunar=True,
        ),
        # No consent: nothing at all.
        "D": await add_customer(
            session,
            4,
            consent=False,
            country="SG",
            timezone="Asia/Singapore",
            birth_month=5,
            birth_day=1,
        ),
        # Unreachable (blocked the bot): nothing at all.
        "E": await add_customer(
            session,
            5,
            tier="vip",
            reachable=False,
            timezone="Europe/London",
            birth_month=7,
            birth_day=7,
        ),
        # Normal in Singapore (SG holidays), birthday the day before SG's National Day.
        "F": await add_customer(
            session, 6, country="SG", timezone="Asia/Singapore", birth_month=8, birth_day=8
        ),
    }
    await add_order(
        session,
        ids["A"],
        "A-1",
        placed=datetime(2027, 3, 28, 2, 0, tzinfo=UTC),
        delivered_at=datetime(2027, 4, 1, 2, 0, tzinfo=UTC),  # 10:00 in Shanghai
    )
    await add_order(
        session,
        ids["B"],
        "B-1",
        placed=datetime(2027, 6, 5, 16, 0, tzinfo=UTC),
        delivered_at=datetime(2027, 6, 10, 16, 0, tzinfo=UTC),  # 12:00 in New York
    )
    # E's order would give follow-ups, but E is unreachable.
    await add_order(
        session,
        ids["E"],
        "E-1",
        placed=datetime(2027, 3, 1, tzinfo=UTC),
        delivered_at=datetime(2027, 3, 2, tzinfo=UTC),
    )
    return ids


# Worked out by hand. CN holidays greeted in 2027 (first days): New Year 01-01, Spring Festival
# 02-06, Dragon Boat 06-09, Mid-Autumn 09-15, National Day 10-01; SG: 01-01, Chinese New Year
# 02-06, National Day 08-09. VIP follow-ups 3, 33, 63 and 93 days after delivery; normal 14.
# C: the lunar birthday falls on Mid-Autumn (the birthday wins); the retention offer is not
# sent on holidays (New Year's Day takes 01-01), and comes again only once more than 90 days
# passed since the previous one was issued: 01-02 (issued at tick 01-01 16:00 UTC), 04-03
# (tick 04-01 16:00 UTC is exactly 90 days later: not yet), 07-03, 10-02 (National Day was
# 10-01), and the next would be 12-31 16:00 UTC, after the last tick.
EXPECTED: dict[str, set[tuple[str, date]]] = {
    "A": {
        ("holiday", d("01-01")),
        ("holiday", d("02-06")),
        ("birthday", d("03-15")),
        ("followup", d("04-04")),
        ("followup", d("05-04")),
        ("followup", d("06-03")),
        ("holiday", d("06-09")),
        ("followup", d("07-03")),
        ("holiday", d("09-15")),
        ("holiday", d("10-01")),
    },
    "B": {("birthday", d("02-28")), ("followup", d("06-24"))},
    "C": {
        ("holiday", d("01-01")),
        ("retention", d("01-02")),
        ("holiday", d("02-06")),
        ("retention", d("04-03")),
        ("holiday", d("06-09")),
        ("retention", d("07-03")),
        ("birthday", d("09-15")),
        ("holiday", d("10-01")),
        ("retention", d("10-02")),
    },
    "D": set(),
    "E": set(),
    "F": {
        ("holiday", d("01-01")),
        ("holiday", d("02-06")),
        ("birthday", d("08-08")),
        ("holiday", d("08-09")),
    },
}


class TestAYear:
    async def test_every_customer_gets_exactly_the_messages_worked_out_by_hand(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as session:
            ids = await _year_customers(session)
        p = planner()
        # One tick a day at 16:00 UTC: 00:00 in Shanghai and Singapore (the day just began),
        # 11:00 or 12:00 in New York, 16:00 or 17:00 in London: inside everybody's send window.
        moment = datetime(2026, 12, 31, 16, 0, tzinfo=UTC)
        ticks = 0
        while moment <= datetime(2027, 12, 30, 16, 0, tzinfo=UTC):
            planned = await plan(sessionmaker, moment, p)
            if planned or ticks % 30 == 0:
                # A second run in the same tick writes nothing new (and issues no coupon).
                before = await count_rows(sessionmaker)
                await plan(sessionmaker, moment, p)
                assert await count_rows(sessionmaker) == before
            moment += timedelta(days=1)
            ticks += 1
        assert ticks == 365

        got: dict[str, set[tuple[str, date]]] = {name: set() for name in ids}
        names = {customer_id: name for name, customer_id in ids.items()}
        rows = await care_rows(sessionmaker)
        for row in rows:
            care = row.payload["care"]
            got[names[row.customer_id]].add((care["occasion"], date.fromisoformat(care["day"])))
        assert got == EXPECTED
        assert len(rows) == sum(len(messages) for messages in EXPECTED.values())
        # Every row is due at 10:00 local on its day (or at once when planned later that day).
        by_key = {row.dedupe_key: row for row in rows}
        birthday_b = by_key[f"care:birthday:{ids['B']}:2027-02-28"]
        assert birthday_b.due_at == datetime(2027, 2, 28, 16, 0, tzinfo=UTC)  # planned 11:00 EST
        greeting_a = by_key[f"care:birthday:{ids['A']}:2027-03-15"]
        assert greeting_a.due_at == datetime(2027, 3, 15, 2, 0, tzinfo=UTC)  # 10:00 Shanghai
        assert birthday_b.payload["text"] == "Customer 2，生日快乐！"  # B reads Chinese
        followup = by_key[f"care:followup:{ids['A']}:2027-04-04"]
        assert followup.payload["text"] == (
            "Hello Customer 1, this is your personal check-in about order A-1. How is everything?"
        )
        assert [[b["data"] for b in row] for row in followup.payload["buttons"]] == [
            [
                f"care:good:{followup_order(rows, ids)}",
                f"care:problem:{followup_order(rows, ids)}",
            ],
            ["care:stop"],
        ]
        holiday = by_key[f"care:holiday:{ids['C']}:2027-02-06"]
        assert holiday.payload["text"] == "Happy Chinese New Year (Spring Festival), Customer 3!"
        async with sessionmaker() as session:
            coupons = await care_queries.coupons_of(session, ids["C"])
        assert [coupon.issued_day for coupon in coupons] == [
            "2027-01-02",
            "2027-04-03",
            "2027-07-03",
            "2027-10-02",
        ]
        assert len({coupon.code for coupon in coupons}) == 4


def followup_order(rows: list[Outbox], ids: dict[str, int]) -> int:
    """The order id the A-1 follow-up buttons carry."""
    row = next(row for row in rows if row.dedupe_key.startswith(f"care:followup:{ids['A']}:"))
    data = row.payload["buttons"][0][0]["data"]
    return int(data.rsplit(":", 1)[1])


class TestCatchUp:
    async def test_a_greeting_missed_in_the_morning_is_planned_later_that_day(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as session:
            customer = await add_customer(session, 1, birth_month=3, birth_day=15)
        # The bot comes back at 15:00 in Shanghai on the birthday: due at once, not skipped.
        back = datetime(2027, 3, 15, 7, 0, tzinfo=UTC)
        assert await plan(sessionmaker, back, planner()) == 1
        assert await plan(sessionmaker, back + timedelta(hours=1), planner()) == 1
        [row] = await care_rows(sessionmaker)
        assert (row.dedupe_key, row.due_at) == (f"care:birthday:{customer}:2027-03-15", back)

    async def test_nothing_is_planned_for_a_day_past_its_send_window(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as session:
            await add_customer(session, 1, birth_month=3, birth_day=15)
        # 20:30 in Shanghai on the birthday, then the next morning: nothing either time.
        assert await plan(sessionmaker, datetime(2027, 3, 15, 12, 30, tzinfo=UTC), planner()) == 0
        assert await plan(sessionmaker, datetime(2027, 3, 16, 1, 0, tzinfo=UTC), planner()) == 0
        assert await care_rows(sessionmaker) == []

    async def test_stale_and_deferred_greetings_are_cancelled_not_sent_late(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as session:
            first = await add_customer(session, 1, birth_month=3, birth_day=15)
            second = await add_customer(session, 2, birth_month=3, birth_day=15)
        morning = datetime(2027, 3, 15, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
        assert await plan(sessionmaker, morning, planner()) == 2
        # The dispatcher deferred the second one to the next morning (the daily cap).
        async with sessionmaker.begin() as session:
            await session.execute(
                update(Outbox)
                .where(Outbox.customer_id == second)
                .values(due_at=datetime(2027, 3, 16, 1, 0, tzinfo=UTC))
            )
        async with sessionmaker.begin() as session:
            report = await planner().run(session, morning + timedelta(hours=2))
        assert report.stale_cancelled == 1
        # The bot was down all day: at the next run the first one is stale too.
        async with sessionmaker.begin() as session:
            report = await planner().run(session, datetime(2027, 3, 16, 0, 30, tzinfo=UTC))
        assert report.stale_cancelled == 1
        states = {
            row.customer_id: (row.state, row.last_error) for row in await care_rows(sessionmaker)
        }
        assert states == {
            first: ("cancelled", "stale: past its day"),
            second: ("cancelled", "stale: past its day"),
        }


class TestRetention:
    async def test_offer_coupon_order_conversion_and_no_second_offer_in_the_period(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as session:
            customer = await add_customer(session, 1, tier="vip", stage="active")
        day = datetime(2027, 3, 10, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai, no holiday
        assert await plan(sessionmaker, day, planner(["CB-AAAA-AAAA"])) == 0
        # The tiers job flags the customer at risk.
        async with sessionmaker.begin() as session:
            await session.execute(
                update(Customer).where(Customer.id == customer).values(stage="at_risk")
            )
        assert await plan(sessionmaker, day, planner(["CB-AAAA-BBBB"])) == 1
        assert await plan(sessionmaker, day, planner(["CB-AAAA-CCCC"])) == 0
        [row] = await care_rows(sessionmaker)
        assert row.kind == "care.retention"
        assert row.payload["text"] == (
            "Customer 1, we miss you! Here is 20% off your next order (from 100 CNY): "
            "code CB-AAAA-BBBB, valid until 2027-04-09."
        )
        async with sessionmaker() as session:
            [coupon] = await care_queries.coupons_of(session, customer)
            assert (coupon.code, coupon.used_at, coupon.min_spend_cents) == (
                "CB-AAAA-BBBB",
                None,
                10_000,
            )
            assert coupon.valid_until == datetime(2027, 4, 9, 15, 59, 59, tzinfo=UTC)
        # An order carrying the code is imported; the next run counts the conversion.
        async with sessionmaker.begin() as session:
            order = await add_order(
                session, customer, "R-1", placed=day + timedelta(days=5), coupon="CB-AAAA-BBBB"
            )
            await add_order(
                session, customer, "R-2", placed=day + timedelta(days=6), coupon="CB-AAAA-BBBB"
            )
        later = day + timedelta(days=7)
        async with sessionmaker.begin() as session:
            report = await planner(["CB-AAAA-DDDD"]).run(session, later)
        assert report.coupons_used == 1
        assert report.planned == []  # still at risk, but offered within the period
        async with sessionmaker() as session:
            [coupon] = await care_queries.coupons_of(session, customer)
            assert (coupon.order_id, coupon.used_at) == (order, later)
            assert await care_queries.conversion(session) == [care_queries.Conversion("vip", 1, 1)]
        # 90 days after the offer, a customer still at risk gets the next one.
        assert await plan(sessionmaker, day + timedelta(days=89), planner(["CB-AAAA-EEEE"])) == 0
        assert await plan(sessionmaker, day + timedelta(days=91), planner(["CB-AAAA-FFFF"])) == 1

    async def test_an_expired_coupon_is_not_counted(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as session:
            customer = await add_customer(session, 1, stage="at_risk")
        day = datetime(2027, 3, 10, 3, 0, tzinfo=UTC)
        assert await plan(sessionmaker, day, planner(["CB-XXXX-XXXX"])) == 1
        async with sessionmaker.begin() as session:
            await add_order(
                session, customer, "L-1", placed=day + timedelta(days=30), coupon="CB-XXXX-XXXX"
            )
        async with sessionmaker.begin() as session:
            report = await planner().run(session, day + timedelta(days=31))
        assert report.coupons_used == 0


class TestIdempotence:
    async def test_two_processes_plan_each_message_once(
        self, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
    ) -> None:
        if not database_url.startswith("postgresql"):
            pytest.skip("one writer at a time on SQLite; two processes are a PostgreSQL setup")
        async with sessionmaker.begin() as session:
            for user in range(1, 21):
                await add_customer(session, user, birth_month=3, birth_day=15)
            for user in range(21, 41):
                await add_customer(session, user, stage="at_risk")
        day = datetime(2027, 3, 15, 3, 0, tzinfo=UTC)
        engines = [create_engine(database_url) for _ in range(2)]
        try:
            makers = [create_sessionmaker(engine) for engine in engines]
            for _ in range(3):
                await asyncio.gather(*(plan(maker, day, planner()) for maker in makers))
                day += timedelta(hours=1)
        finally:
            for engine in engines:
                await engine.dispose()
        rows = await care_rows(sessionmaker)
        assert sorted(row.kind for row in rows) == ["care.birthday"] * 20 + ["care.retention"] * 20
        async with sessionmaker() as session:
            coupons = (await session.execute(select(Coupon))).scalars().all()
        assert sorted(coupon.customer_id for coupon in coupons) == sorted(
            row.customer_id for row in rows if row.kind == "care.retention"
        )


class TestButtons:
    async def test_stop_withdraws_consent_and_no_more_care_is_planned(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as session:
            customer = await add_customer(session, 7, birth_month=3, birth_day=15, language="zh")
        now = datetime(2027, 3, 1, 3, 0, tzinfo=UTC)
        async with sessionmaker.begin() as session:
            first = await press_care_button(session, None, 7, "care:stop", now)
            again = await press_care_button(session, None, 7, "care:stop", now)
            unknown = await press_care_button(session, None, 8, "care:stop", now)
        assert first == Reply("care_stopped", "zh")
        assert again == Reply("care_already_stopped", "zh")
        assert unknown is None
        async with sessionmaker() as session:
            stored = await session.get(Customer, customer)
            assert stored is not None and not stored.consent
        assert await plan(sessionmaker, datetime(2027, 3, 15, 3, 0, tzinfo=UTC), planner()) == 0

    async def test_a_problem_opens_a_ticket_about_the_order_and_pauses_follow_ups(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as session:
            customer = await add_customer(session, 7, tier="vip")
            order = await add_order(
                session,
                customer,
                "P-1",
                placed=datetime(2027, 3, 1, tzinfo=UTC),
                delivered_at=datetime(2027, 3, 2, 2, 0, tzinfo=UTC),
            )
        visit = datetime(2027, 3, 5, 3, 0, tzinfo=UTC)  # 3 days after delivery, Shanghai
        assert await plan(sessionmaker, visit, planner()) == 1
        [row] = await care_rows(sessionmaker)
        problem = row.payload["buttons"][0][1]["data"]
        assert problem == f"care:problem:{order}"
        async with sessionmaker.begin() as session:
            fine = await press_care_button(session, None, 7, f"care:good:{order}", visit)
        assert fine == Alert("care_thanks_good", "en")
        desk = TicketDesk.from_config(RULES, Texts.load(), -1001000000001)
        async with sessionmaker.begin() as session:
            reply = await press_care_button(session, desk, 7, problem, visit)
        assert reply == Reply("care_problem", "en")
        async with sessionmaker() as session:
            ticket = await open_ticket_of(session, customer)
            assert ticket is not None
            assert (ticket.source, ticket.order_id, ticket.order_ref) == (
                "care",
                order,
                "P-1",
            )
        # The next visit (33 days after delivery) is skipped while the ticket is open.
        assert await plan(sessionmaker, visit + timedelta(days=30), planner()) == 0

    def test_the_telegram_callback_keeps_its_handler_label(self) -> None:
        # The rule lives in handlers.care.actions; metrics and logs name it as before it moved.
        [handler] = build_handlers()
        assert handler_name(handler) == "care.press_care_button"


class TestPreview:
    async def test_plan_prints_counts_and_samples_without_queueing(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        database_url: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        async with sessionmaker.begin() as session:
            await add_customer(session, 1, tier="vip", birth_month=2, birth_day=6)
            await add_customer(session, 2, language="zh")
            await add_customer(
                session,
                3,
                tier="important",
                stage="at_risk",
                country="US",
                timezone="America/New_York",
            )
        monkeypatch.setenv("CAREBOT_DATABASE_URL", database_url)
        monkeypatch.setenv("CAREBOT_CONFIG_DIR", str(CONFIG))
        result = await asyncio.to_thread(
            CliRunner().invoke, app, ["plan", "--date", "2027-02-06", "--samples", "1"]
        )
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert lines[:4] == [
            "care plan for 2027-02-06: 3 messages; nothing was queued",
            "  birthday             1   (vip 1)",
            "  holiday              1   (normal 1)",
            "  retention            1   (important 1)",
        ]
        assert "    zh: Customer 2，春节快乐！" in lines
        assert any("code CB-XXXX-XXXX, valid until 2027-02-27" in line for line in lines)
        assert await care_rows(sessionmaker) == []

    async def test_a_day_that_plans_nothing_says_why_in_english_and_chinese(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        database_url: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        async with sessionmaker.begin() as session:
            born = {"birth_month": 3, "birth_day": 9}
            await add_customer(session, 1, chat_id=None, **born)  # imported, never wrote
            await add_customer(session, 2, chat_id=None, **born)
            await add_customer(session, 3, consent=False, **born)
            await add_customer(session, 4, reachable=False)
            await add_customer(session, 5)
        monkeypatch.setenv("CAREBOT_DATABASE_URL", database_url)
        monkeypatch.setenv("CAREBOT_CONFIG_DIR", str(CONFIG))
        english = await asyncio.to_thread(
            CliRunner().invoke, app, ["plan", "--date", "2027-03-09"]
        )
        assert english.exit_code == 0, english.output
        assert english.output.splitlines()[:5] == [
            "care plan for 2027-03-09: 0 messages; nothing was queued",
            "Why nothing is planned:",
            "  - 5 customers in all: 2 are not on Telegram yet, 1 has not agreed to care "
            "messages, 1 blocked the bot, 1 can receive care messages",
            "  - 3 customers with a birthday that day: 2 are not on Telegram yet, "
            "1 has not agreed to care messages",
            "  - no greeted holiday that day",
        ]
        monkeypatch.setenv("CAREBOT_CLI_LANGUAGE", "zh")
        chinese = await asyncio.to_thread(
            CliRunner().invoke, app, ["plan", "--date", "2027-03-09"]
        )
        assert (
            "  - 当天生日的有 3 位客户：2 位尚未使用 Telegram 联系我们，1 位未同意接收关怀消息"
            in (chinese.output.splitlines())
        )
        assert await care_rows(sessionmaker) == []

    def test_a_bad_date_is_one_line(self) -> None:
        result = CliRunner().invoke(app, ["plan", "--date", "17.02.2027"])
        assert result.exit_code == 2
        assert "--date: expected YYYY-MM-DD" in result.output


class TestEndToEnd:
    async def test_a_follow_up_arrives_with_buttons_and_a_problem_opens_a_ticket(
        self, harness: Harness
    ) -> None:
        api = harness.api
        mei = api.add_user(4001, "Mei", language_code="en")
        async with harness.sessionmaker.begin() as session:
            customer = await add_customer(session, mei.id, tier="vip", name="Mei")
            order = await add_order(
                session,
                customer,
                "E2E-1",
                placed=datetime(2026, 11, 18, 2, 0, tzinfo=UTC),
                delivered_at=datetime(2026, 11, 20, 2, 0, tzinfo=UTC),  # 3 days ago, 10:00
            )
        async with harness.sessionmaker.begin() as session:
            report = await planner().run(session, harness.clock.now())  # 17:00 in Shanghai
        assert [item.occasion for item in report.planned] == ["followup"]
        assert harness.dispatcher is not None
        harness.dispatcher.wake()
        [visit] = await api.wait_for_sent(mei.id, 1)
        assert visit.text == (
            "Hello Mei, this is your personal check-in about order E2E-1. How is everything?"
        )
        assert visit.buttons() == [
            (harness.text("en", "care_button_good"), f"care:good:{order}"),
            (harness.text("en", "care_button_problem"), f"care:problem:{order}"),
            (harness.text("en", "care_button_stop"), "care:stop"),
        ]
        await api.press_button(mei, visit, f"care:problem:{order}")
        said = (await api.wait_for_sent(mei.id, 2))[-1]
        assert said.text == harness.text("en", "care_problem")
        async with harness.sessionmaker() as session:
            ticket = await open_ticket_of(session, customer)
        assert ticket is not None and ticket.order_ref == "E2E-1"
        await lanes_idle(harness, ticket.number)  # its topic, created by the dispatcher
        assert len(api.topics(STAFF_CHAT_ID)) == 1

        await api.press_button(mei, visit, "care:stop")
        said = (await api.wait_for_sent(mei.id, 3))[-1]
        assert said.text == harness.text("en", "care_stopped")
        stored = await harness.customer(mei.id)
        assert stored is not None and not stored.consent


class TestWiring:
    async def test_the_periodic_job_plans_and_a_restart_drops_stale_greetings_first(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as session:
            await add_customer(session, 1, birth_month=3, birth_day=15)
        [job] = care_jobs(sessionmaker, planner_for(RULES))
        assert (job.id, job.every) == ("care.plan", timedelta(minutes=10))
        await job.run(datetime(2027, 3, 15, 1, 0, tzinfo=UTC))
        [row] = await care_rows(sessionmaker)
        assert row.state == "pending"
        # The bot was down from that morning to the next day: nothing stale goes out.
        restart = datetime(2027, 3, 16, 1, 0, tzinfo=UTC)
        report = await plan_before_dispatch(sessionmaker, planner_for(RULES), restart)
        assert report.stale_cancelled == 1
        [row] = await care_rows(sessionmaker)
        assert row.state == "cancelled"
