"""Where a customer's free text goes (``handlers.route``), without Telegram, on SQLite and
PostgreSQL: the open ticket before the knowledge base, a waiting profile question before the
ticket, the length check after the ticket, the knowledge base last; media to the open ticket
else "text please"; an edit to the ticket its message is in."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.kernel.config import load_config
from bot.kernel.replies import Reply
from bot.kernel.texts import Texts
from bot.settings import EXAMPLE_CONFIG_DIR
from handlers.answers.kb import load_knowledge_base
from handlers.onboarding.registration import AWAITING_BIRTHDAY, Person, ensure_customer
from handlers.route import route_edit, route_media, route_text
from handlers.tickets.desk import Incoming
from handlers.tickets.lifecycle import TicketDesk, open_ticket
from storage.models import Customer, KbQuestion, TicketMessage

CONFIG = load_config(EXAMPLE_CONFIG_DIR)
KNOWLEDGE = load_knowledge_base(EXAMPLE_CONFIG_DIR)
DESK = TicketDesk.from_config(CONFIG, Texts.load(), -1001000000001)
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
ANN = Person(user_id=7001, chat_id=7001, first_name="Ann")
QUESTION = "how can I return an item"


async def route(
    sessionmaker: async_sessionmaker[AsyncSession], text: str, message_id: int = 10
) -> Reply | list[Reply]:
    """Ann's text, routed in one transaction as the private chat's edge routes it."""
    message = Incoming(
        chat_id=ANN.chat_id, message_id=message_id, kind="text", text=text, html=text
    )
    async with sessionmaker.begin() as session:
        return await route_text(
            session, ANN, text, CONFIG.general, NOW, KNOWLEDGE, message=message, desk=DESK
        )


async def with_open_ticket(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker.begin() as session:
        customer, _ = await ensure_customer(session, ANN, CONFIG.general, NOW)
        await open_ticket(
            session, DESK, customer, source="complaint", category="delivery", now=NOW
        )


async def count(sessionmaker: async_sessionmaker[AsyncSession], model: type) -> int:
    async with sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def test_without_a_ticket_a_question_gets_the_knowledge_bases_answer(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    reply = await route(sessionmaker, QUESTION)
    assert isinstance(reply, Reply) and reply.key.startswith("kb_"), reply
    assert (await count(sessionmaker, KbQuestion), await count(sessionmaker, TicketMessage)) == (
        1,
        0,
    )


async def test_an_open_ticket_takes_the_text_before_the_knowledge_base_even_a_long_one(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await with_open_ticket(sessionmaker)
    assert await route(sessionmaker, QUESTION) == []  # relayed: nothing to tell the customer
    long = "x" * (CONFIG.general.chat.max_text_length + 1)
    assert await route(sessionmaker, long, message_id=11) == []
    async with sessionmaker() as session:
        texts = (await session.execute(select(TicketMessage.text))).scalars().all()
    assert QUESTION in texts and long in texts
    assert await count(sessionmaker, KbQuestion) == 0


async def test_a_waiting_profile_question_is_answered_before_the_ticket_takes_the_text(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await with_open_ticket(sessionmaker)
    async with sessionmaker.begin() as session:
        customer = (await session.execute(select(Customer))).scalar_one()
        customer.awaiting = AWAITING_BIRTHDAY
        before = await count(sessionmaker, TicketMessage)
    reply = await route(sessionmaker, "1990-05-17")
    assert isinstance(reply, Reply) and reply.key == "birthday_saved"
    assert await count(sessionmaker, TicketMessage) == before


async def test_too_long_without_a_ticket_is_said_and_nothing_is_asked_of_the_knowledge_base(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    limit = CONFIG.general.chat.max_text_length
    reply = await route(sessionmaker, "y" * (limit + 1))
    assert isinstance(reply, Reply) and (reply.key, reply.params) == (
        "too_long",
        {"length": limit + 1, "limit": limit},
    )
    assert await count(sessionmaker, KbQuestion) == 0


async def test_media_goes_to_the_open_ticket_else_gets_text_please(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async def media(message_id: int) -> list[Reply]:
        photo = Incoming(chat_id=ANN.chat_id, message_id=message_id, kind="photo", file_id="F1")
        async with sessionmaker.begin() as session:
            return await route_media(session, ANN, photo, CONFIG.general, NOW, DESK)

    [reply] = await media(20)  # registered on first contact, no ticket
    assert reply.key == "unsupported_input"
    assert (await count(sessionmaker, Customer), await count(sessionmaker, TicketMessage)) == (
        1,
        0,
    )
    await with_open_ticket(sessionmaker)
    assert await media(21) == []  # relayed: nothing to tell the customer
    async with sessionmaker() as session:
        kinds = (await session.execute(select(TicketMessage.kind))).scalars().all()
    assert "photo" in kinds


async def test_an_edit_goes_to_the_ticket_its_message_is_in_and_a_stranger_is_not_looked_at(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    edited = Incoming(chat_id=ANN.chat_id, message_id=10, kind="text", text="fixed", html="fixed")

    async def edit() -> bool:
        async with sessionmaker.begin() as session:
            return await route_edit(session, ANN.user_id, edited, DESK, NOW)

    assert await edit() is False  # not a customer yet
    await with_open_ticket(sessionmaker)
    assert await route(sessionmaker, QUESTION, message_id=10) == []
    assert await edit() is True
    async with sessionmaker() as session:
        edits = (
            (
                await session.execute(
                    select(TicketMessage.text).where(TicketMessage.edit_of_id.is_not(None))
                )
            )
            .scalars()
            .all()
        )
    assert edits == ["fixed"]
