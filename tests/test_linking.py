"""Linking imported customers to their Telegram account: a one-time code or the verified phone."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.kernel.config import GeneralConfig
from bot.kernel.replies import Reply
from handlers.onboarding import registration
from handlers.onboarding.registration import Person
from storage import customers as customer_queries
from storage import orders as order_queries
from storage.models import Customer, InboxUpdate, Order, TierHistory
from tests.auxil.harness import Harness
from tests.auxil.shop import NOW, add_customer, order_rows

GENERAL = GeneralConfig()
CODE = "ABCDEFGHJKLM"
ANN = Person(user_id=5001, chat_id=5001, first_name="Ann", language_code="en")


async def shop_customer(session: AsyncSession, external_id: str, **values: object) -> Customer:
    """An imported customer with one order, as ``carebot import`` leaves them."""
    customer = await add_customer(session, external_id, **values)
    await order_queries.add_orders(
        session, order_rows({external_id: [(3, 100, "completed")]}, prefix=external_id), NOW
    )
    return customer


async def say_hello(session: AsyncSession, person: Person, update_id: int) -> None:
    """A message the person sent before they were linked (it must follow them)."""
    customer = await customer_queries.get_by_telegram_id(session, person.user_id)
    session.add(
        InboxUpdate(
            update_id=update_id,
            customer_id=customer.id if customer else None,
            chat_id=person.chat_id,
            telegram_message_id=update_id,
            sender_user_id=person.user_id,
            kind="text",
            text="hello",
            edited=False,
            received_at=NOW,
        )
    )
    await session.flush()


def keys(replies: list[Reply] | Reply) -> list[str]:
    return [reply.key for reply in (replies if isinstance(replies, list) else [replies])]


class TestLinkCode:
    async def test_start_with_the_code_links_and_uses_it_up(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as session:
            imported = await shop_customer(session, "C1", name="张伟", link_code=CODE)
            imported_id = imported.id
        async with sessionmaker.begin() as session:
            await registration.start(session, ANN, GENERAL, NOW)  # first /start: a fresh customer
            await say_hello(session, ANN, 1)
            session.add(
                TierHistory(
                    customer_id=(await customer_queries.get_by_telegram_id(session, 5001)).id,  # type: ignore[union-attr]
                    old_tier="normal",
                    new_tier="normal",
                    reason="test",
                    changed_at=NOW,
                )
            )
        async with sessionmaker.begin() as session:
            replies = await registration.start(session, ANN, GENERAL, NOW, CODE.lower())

        assert keys(replies) == ["welcome_back", "link_done", "consent_question"]
        async with sessionmaker() as session:
            customers = (await session.execute(select(Customer))).scalars().all()
            assert len(customers) == 1  # the /start row was folded into the imported one
            linked = customers[0]
            assert (linked.id, linked.external_id, linked.telegram_user_id) == (
                imported_id,
                "C1",
                5001,
            )
            assert (linked.link_code, linked.chat_id, linked.language) == (None, 5001, "en")
            orders = await session.execute(select(Order.customer_id))
            assert list(orders.scalars()) == [imported_id]
            messages = await session.execute(select(InboxUpdate.customer_id))
            assert list(messages.scalars()) == [imported_id]
            history = await session.execute(select(TierHistory.customer_id))
            assert list(history.scalars()) == [imported_id]

        bob = Person(user_id=5002, chat_id=5002, first_name="Bob", language_code="en")
        async with sessionmaker.begin() as session:
            replies = await registration.start(session, bob, GENERAL, NOW, CODE)
        assert keys(replies) == ["welcome", "link_code_unknown", "consent_question"]

    async def test_other_payloads_and_linked_accounts(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as session:
            await shop_customer(session, "C1", link_code=CODE)
            await shop_customer(session, "C2", link_code="MLKJHGFEDCBA")
        async with sessionmaker.begin() as session:
            assert keys(await registration.start(session, ANN, GENERAL, NOW, "promo")) == [
                "welcome",
                "consent_question",
            ]
        async with sessionmaker.begin() as session:
            assert "link_done" in keys(await registration.start(session, ANN, GENERAL, NOW, CODE))
        async with sessionmaker.begin() as session:
            replies = await registration.start(session, ANN, GENERAL, NOW, "MLKJHGFEDCBA")
        # Two shop records are not merged automatically; C2 keeps its code.
        assert "link_already" in keys(replies)
        async with sessionmaker() as session:
            c2 = (
                await session.execute(select(Customer).where(Customer.external_id == "C2"))
            ).scalar_one()
        assert (c2.telegram_user_id, c2.link_code) == (None, "MLKJHGFEDCBA")


class TestPhone:
    async def test_sharing_the_own_number_links_the_one_imported_customer(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as session:
            imported_id = (await shop_customer(session, "C1", phone="+8613800138000")).id
        async with sessionmaker.begin() as session:
            await registration.start(session, ANN, GENERAL, NOW)
        async with sessionmaker.begin() as session:
            reply = await registration.save_contact(
                session, ANN, 5001, "8613800138000", GENERAL, NOW
            )
        assert keys(reply) == ["phone_saved_linked"]
        async with sessionmaker() as session:
            linked = await customer_queries.get_by_telegram_id(session, 5001)
            count = (await session.execute(select(func.count()).select_from(Customer))).one()
        assert linked is not None and (linked.id, linked.external_id) == (imported_id, "C1")
        assert count == (1,)

    async def test_an_ambiguous_number_links_nobody(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as session:
            await shop_customer(session, "C1", phone="+8613800138000")
            await shop_customer(session, "C2", phone="+8613800138000")
        async with sessionmaker.begin() as session:
            await registration.start(session, ANN, GENERAL, NOW)
            reply = await registration.save_contact(
                session, ANN, 5001, "+8613800138000", GENERAL, NOW
            )
        assert keys(reply) == ["phone_saved"]
        async with sessionmaker() as session:
            linked = await customer_queries.get_by_telegram_id(session, 5001)
        assert linked is not None and linked.external_id is None


class TestEndToEnd:
    async def test_a_deep_link_links_the_shop_customer(self, harness: Harness) -> None:
        async with harness.sessionmaker.begin() as session:
            imported_id = (await shop_customer(session, "C7", name="李娜", link_code=CODE)).id
        api = harness.api
        li = api.add_user(5007, "Li", language_code="zh-hans")
        await api.send_text(li, f"/start {CODE}")
        sent = await api.wait_for_sent(li.id, 3)
        assert [message.text for message in sent] == [
            harness.text("zh", "welcome", name="李娜"),
            harness.text("zh", "link_done"),
            harness.text("zh", "consent_question"),
        ]
        row = await harness.customer(li.id)
        assert row is not None and (row.id, row.external_id) == (imported_id, "C7")
