"""The follow-up schedule on SQLite and PostgreSQL: written in the transaction that imports or
adds orders (each customer's latest delivery), backfilled by migration 0008, read on the
customer's local day (across a DST change) with the cadence of their current tier."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from alembic import command
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import importer
from bot.kernel.config import GeneralConfig, OrderConfig
from bot.kernel.replies import Reply
from handlers.onboarding.registration import AWAITING_TIMEZONE, Person
from handlers.route import route_text
from storage import orders as order_queries
from storage.migrate import alembic_config
from storage.models import Customer, FollowupVisit, Ticket
from tests.auxil import databases
from tests.auxil.outbox import add_customer
from tests.test_care import add_order, care_rows, plan, planner

DELIVERED = datetime(2027, 3, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


def order(
    external_id: str, customer: str, delivered_at: datetime | None
) -> order_queries.OrderRow:
    placed = DELIVERED - timedelta(days=3)
    return order_queries.OrderRow(
        line=1,
        external_id=external_id,
        customer_external_id=customer,
        amount_cents=10_000,
        currency="CNY",
        value_cents=10_000,
        status="delivered" if delivered_at else "shipped",
        placed_at=placed,
        placed_day=(placed.date() - date(1970, 1, 1)).days,
        delivered_at=delivered_at,
    )


async def schedule(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[int, int]:
    """customer id -> the order their visits count from."""
    async with sessionmaker() as session:
        result = await session.execute(select(FollowupVisit.customer_id, FollowupVisit.order_id))
        return {customer: order_id for customer, order_id in result}


async def visit_days(sessionmaker: async_sessionmaker[AsyncSession]) -> list[str]:
    return [row.payload["care"]["day"] for row in await care_rows(sessionmaker)]


def shanghai(day: str) -> datetime:
    """11:00 in Shanghai on 2027-``day``: inside the send window."""
    return datetime.fromisoformat(f"2027-{day}T03:00:00+00:00")


class TestWrittenWithTheOrders:
    async def test_only_the_latest_delivery_is_visited_and_a_refund_cancels_its_visits(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as session:
            customer = await add_customer(session, 1, tier="vip", external_id="C1")
            await add_customer(session, 2, tier="vip", external_id="C2")
            await order_queries.add_orders(session, [order("O1", "C1", DELIVERED)], DELIVERED)
        # A second delivery four days later: the first one's visit (03-04) is dropped.
        second = DELIVERED + timedelta(days=4)
        async with sessionmaker.begin() as session:
            await order_queries.add_orders(
                session, [order("O2", "C1", second), order("O3", "C2", None)], second
            )
        [(owner, latest)] = (await schedule(sessionmaker)).items()
        assert owner == customer
        for day in ("03-04", "03-08"):  # VIP: 3 days after the latest delivery
            await plan(sessionmaker, shanghai(day), planner())
        assert await visit_days(sessionmaker) == ["2027-03-08"]
        rows = await care_rows(sessionmaker)
        assert rows[0].payload["buttons"][0][0]["data"] == f"care:good:{latest}"
        # The order is refunded (re-imported with the new status): no visit 33 days after.
        refunded = replace(order("O2", "C1", second), status="refunded")
        async with sessionmaker.begin() as session:
            await order_queries.add_orders(session, [refunded], second + timedelta(days=5))
        assert await plan(sessionmaker, shanghai("04-07"), planner()) == 0

    async def test_an_order_moved_to_another_customer_moves_its_visits(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as session:
            await add_customer(session, 1, external_id="C1")
            second = await add_customer(session, 2, external_id="C2")
            await order_queries.add_orders(session, [order("O1", "C1", DELIVERED)], DELIVERED)
        async with sessionmaker.begin() as session:
            await order_queries.add_orders(
                session, [order("O1", "C2", DELIVERED)], DELIVERED + timedelta(hours=1)
            )
        assert list(await schedule(sessionmaker)) == [second]

    async def test_a_customers_import_that_moves_the_time_zone_moves_the_visit_day(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        async with sessionmaker.begin() as session:
            await add_customer(session, 1, timezone="Pacific/Kiritimati", external_id="C1")
            # 00:00 on 03-02 in Kiritimati (UTC+14), 23:00 on 02-28 in Pago Pago (UTC-11).
            delivered = datetime(2027, 3, 1, 10, 0, tzinfo=UTC)
            await order_queries.add_orders(session, [order("O1", "C1", delivered)], delivered)
        path = tmp_path / "customers.csv"
        path.write_text("customer_id,timezone\nC1,Pacific/Pago_Pago\n", encoding="utf-8")
        async with sessionmaker.begin() as session:
            rules = OrderConfig(currency="CNY", timezone="Asia/Shanghai")
            await importer.import_customers(session, path, rules, GeneralConfig(), delivered)
        # Normal tier: 14 days after 02-28, at 11:00 in Pago Pago.
        assert await plan(sessionmaker, datetime(2027, 3, 14, 22, 0, tzinfo=UTC), planner()) == 1
        assert await visit_days(sessionmaker) == ["2027-03-14"]

    async def test_a_time_zone_set_in_the_profile_moves_the_visit_day(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as session:
            await add_customer(
                session, 1, timezone="Pacific/Kiritimati", awaiting=AWAITING_TIMEZONE
            )
            delivered = datetime(2027, 3, 1, 10, 0, tzinfo=UTC)  # 03-02 there, 02-28 in Pago Pago
            customer_id = (await session.execute(select(Customer.id))).scalar_one()
            await add_order(session, customer_id, "O1", placed=delivered, delivered_at=delivered)
        async with sessionmaker.begin() as session:
            person = Person(user_id=1, chat_id=1, first_name="One")
            reply = await route_text(
                session, person, "Pacific/Pago_Pago", GeneralConfig(), delivered
            )
        assert isinstance(reply, Reply) and reply.key == "timezone_saved"
        assert await plan(sessionmaker, datetime(2027, 3, 14, 22, 0, tzinfo=UTC), planner()) == 1
        assert await visit_days(sessionmaker) == ["2027-03-14"]


class TestReadOnTheDay:
    async def test_visits_follow_the_tier_the_customer_has_now(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as session:
            customer = await add_customer(session, 1, tier="vip")
            await add_order(session, customer, "O1", placed=DELIVERED, delivered_at=DELIVERED)
            # The tiers job moves the customer down before the first visit.
            await session.execute(
                update(Customer).where(Customer.id == customer).values(tier="important")
            )
        for day in ("03-04", "03-08"):  # VIP would be 3 days after, important is 7
            await plan(sessionmaker, shanghai(day), planner())
        assert await visit_days(sessionmaker) == ["2027-03-08"]

    async def test_the_customers_local_day_counts_across_a_dst_change(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as session:
            customer = await add_customer(
                session, 1, timezone="America/New_York", country="US", tier="normal"
            )
            # 23:30 on 03-05 in New York (already 03-06 in UTC); clocks go forward on 03-14.
            delivered = datetime(2027, 3, 6, 4, 30, tzinfo=UTC)
            await add_order(session, customer, "O1", placed=delivered, delivered_at=delivered)
        moments = [
            datetime(2027, 3, 18, 15, 0, tzinfo=UTC),  # 11:00 on 03-18 in New York: too soon
            datetime(2027, 3, 19, 3, 0, tzinfo=UTC),  # 23:00 on 03-18: past the send window
            datetime(2027, 3, 19, 4, 30, tzinfo=UTC),  # 00:30 on 03-19: 14 days after
            datetime(2027, 3, 19, 15, 0, tzinfo=UTC),  # 11:00: the same visit again
            datetime(2027, 3, 20, 15, 0, tzinfo=UTC),
        ]
        planned = [await plan(sessionmaker, moment, planner()) for moment in moments]
        assert planned == [0, 0, 1, 1, 0]
        [row] = await care_rows(sessionmaker)
        assert row.payload["care"]["day"] == "2027-03-19"
        assert row.due_at == datetime(2027, 3, 19, 14, 0, tzinfo=UTC)  # 10:00 EDT


class TestAfterATicket:
    async def test_a_resolved_ticket_gets_one_visit_on_the_tiers_day(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        resolved = datetime(2027, 3, 1, 16, 30, tzinfo=UTC)  # 00:30 on 03-02 in Shanghai
        async with sessionmaker.begin() as session:
            customer = await add_customer(session, 1, tier="vip")
            session.add(
                Ticket(
                    number="C-000001",
                    customer_id=customer,
                    source="complaint",
                    category="delivery",
                    status="resolved",
                    priority=1,
                    tier="vip",
                    topic_closed=False,
                    opened_at=resolved - timedelta(hours=5),
                    resolved_at=resolved,
                    first_response_due=resolved,
                    resolution_due=resolved,
                    reopen_count=0,
                    lock_version=0,
                    updated_at=resolved,
                )
            )
        for day in ("03-03", "03-04", "03-05"):  # VIP: 2 days after (local), once
            await plan(sessionmaker, shanghai(day), planner())
            await plan(sessionmaker, shanghai(day), planner())
        [row] = await care_rows(sessionmaker)
        assert (row.dedupe_key, row.payload["care"]["occasion"]) == (
            f"care:followup:{customer}:2027-03-04",
            "after_ticket",
        )


class TestMigration:
    async def test_the_upgrade_schedules_orders_delivered_before_it(
        self, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
    ) -> None:
        async with sessionmaker.begin() as session:
            first = await add_customer(session, 1, tier="vip")
            second = await add_customer(session, 2, tier="vip")
            await add_order(session, first, "O1", placed=DELIVERED, delivered_at=DELIVERED)
            latest = await add_order(
                session,
                first,
                "O2",
                placed=DELIVERED,
                delivered_at=DELIVERED + timedelta(days=1),
            )
            await add_order(session, second, "O3", placed=DELIVERED)  # not delivered
        config = alembic_config(database_url)
        databases.blocking(command.downgrade, config, "0007")
        databases.blocking(command.upgrade, config, "head")
        assert await schedule(sessionmaker) == {first: latest}
        assert await plan(sessionmaker, shanghai("03-05"), planner()) == 1
