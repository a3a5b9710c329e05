"""One order across a customer's day, on SQLite and PostgreSQL: a greeting due today is never
lost to a survey invitation (end to end, through the dispatcher and its daily cap); and one rule
for a delivered order, shared by follow-up visits and the delivery survey."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import importer
from bot.kernel.config import OrderConfig
from scheduler.care import planner_for
from storage.models import Outbox, SurveyResponse
from surveys.planner import SurveyPlanner
from tests.auxil.harness import Harness
from tests.auxil.outbox import add_customer
from tests.auxil.waiting import eventually
from tests.test_care import RULES

SHANGHAI_MIDNIGHT = datetime(2026, 11, 24, 16, 5, tzinfo=UTC)  # 00:05 on the 25th in Shanghai


async def outbox_rows(harness: Harness) -> dict[str, Outbox]:
    """The customer's rows by kind."""
    async with harness.sessionmaker() as session:
        result = await session.execute(select(Outbox).where(Outbox.customer_id.is_not(None)))
        return {row.kind: row for row in result.scalars()}


async def at(harness: Harness, moment: datetime) -> None:
    """Move the clock (the dispatcher's too) and let the dispatcher look at once."""
    harness.clock.set(moment)
    assert harness.dispatcher is not None
    harness.dispatcher.wake()


async def row_state(harness: Harness, kind: str, state: str, due: datetime | None = None) -> None:
    async def holds() -> bool:
        row = (await outbox_rows(harness)).get(kind)
        return row is not None and row.state == state and (due is None or row.due_at == due)

    await eventually(holds, description=f"the {kind} row {state}, due {due}")


class TestGreetingsFirst:
    async def test_nps_on_the_birthday_goes_the_next_day_and_the_greeting_on_the_day(
        self, harness: Harness
    ) -> None:
        api = harness.api
        mei = api.add_user(6101, "Mei", language_code="en")
        async with harness.sessionmaker.begin() as session:
            await add_customer(
                session,
                mei.id,
                name="Mei",
                birth_month=11,
                birth_day=25,
                created_at=datetime(2026, 8, 20, tzinfo=UTC),  # the 90-day NPS is due
            )
        # 00:05 on her birthday: the care job queues the greeting, due at 10:00.
        await at(harness, SHANGHAI_MIDNIGHT)
        async with harness.sessionmaker.begin() as session:
            report = await planner_for(harness.rules).run(session, harness.clock.now())
        assert [item.occasion for item in report.planned] == ["birthday"]
        # 02:00: the survey job invites her to the NPS; quiet hours hold it until 09:00.
        await at(harness, SHANGHAI_MIDNIGHT + timedelta(hours=2))
        async with harness.sessionmaker.begin() as session:
            surveys = await SurveyPlanner(harness.rules.surveys).run(
                session, harness.desk, harness.clock.now()
            )
        assert len(surveys.invited) == 1
        nine = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
        await row_state(harness, "survey.invitation", "pending", nine)

        # 09:00: the invitation falls due first, but the day's one slot is the greeting's: it
        # waits for the next day (before the fix it took the slot, and the greeting was
        # deferred past its day and dropped as stale).
        await at(harness, nine)
        await row_state(harness, "survey.invitation", "pending", nine + timedelta(days=1))
        await at(harness, nine + timedelta(hours=1))  # 10:00
        [greeting] = await api.wait_for_sent(mei.id, 1)
        assert greeting.text == "Happy birthday, Mei!"
        await row_state(harness, "care.birthday", "sent")
        async with harness.sessionmaker.begin() as session:  # later runs change nothing
            report = await planner_for(harness.rules).run(session, harness.clock.now())
        assert report.stale_cancelled == 0

        # The next day at 09:00 (a free day, within the survey's week): the invitation.
        await at(harness, nine + timedelta(days=1))
        invitation = (await api.wait_for_sent(mei.id, 2))[-1]
        assert "recommend us to a friend" in (invitation.text or "")
        rows = await outbox_rows(harness)
        assert rows["care.birthday"].care_day == "2026-11-25"
        assert rows["survey.invitation"].care_day == "2026-11-26"
        async with harness.sessionmaker() as session:
            [response] = (await session.execute(select(SurveyResponse))).scalars()
        assert (response.survey_id, response.status) == ("nps", "invited")


ORDERS = (
    "order_id,customer_id,amount,placed_at,status,delivered_at\n"
    "O1,C1,100,2026-11-10,,2026-11-20 08:00\n"  # the default status: completed
    "O2,C2,100,2026-11-10,refunded,2026-11-20 08:00\n"
    "O3,C3,100,2026-11-10,delivered,2026-11-20 08:00\n"
    "O4,C4,100,2026-11-10,shipped,\n"
    "O5,C5,100,2026-11-10,已完成,2026-11-20 08:00\n"
)


class TestDeliveredOrders:
    async def test_follow_ups_and_the_delivery_survey_agree_on_what_was_delivered(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # 17:00 in Shanghai, three days later
        async with sessionmaker.begin() as session:
            for number in range(1, 6):
                await add_customer(session, 6200 + number, external_id=f"C{number}", tier="vip")
        path = tmp_path / "orders.csv"
        path.write_text(ORDERS, encoding="utf-8")
        async with sessionmaker.begin() as session:
            await importer.import_orders(
                session, path, OrderConfig(currency="CNY", timezone="Asia/Shanghai"), now
            )
        async with sessionmaker.begin() as session:
            followups = await planner_for(RULES).followups(session, now)
            await SurveyPlanner(RULES.surveys).invite(session, now)
        async with sessionmaker() as session:
            subjects = (await session.execute(select(SurveyResponse.subject))).scalars()
            surveyed = sorted(subjects)
        visited = sorted(f"order:{item.params['order']}" for item in followups)
        assert visited == ["order:O1", "order:O3", "order:O5"]
        assert surveyed == visited
