"""Helpers for ticket tests: play a customer through the complaint flow, play staff in a topic,
wait for what the bot sent, read tickets back."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import func, select, update

from bot.kernel.texts import Markup
from bot.sandbox.api import LocalBotApi
from bot.sandbox.records import FakeUser, ForumTopicInfo, SentMessage
from handlers.tickets.desk import Incoming
from handlers.tickets.lifecycle import open_ticket
from storage.models import Customer, Ticket, TicketDelivery, TicketMessage
from storage.tickets.messages import history
from storage.tickets.rows import ticket_by_number
from tests.auxil.harness import STAFF_CHAT_ID, Harness

STAFF = STAFF_CHAT_ID


def staff_member(
    api: LocalBotApi, user_id: int, name: str, username: str | None = None
) -> FakeUser:
    """A member of the staff group."""
    user = api.add_user(user_id, name, username=username)
    api.add_member(STAFF, user, "member")
    return user


def live_topics(api: LocalBotApi) -> list[ForumTopicInfo]:
    return [topic for topic in api.topics(STAFF) if not topic.deleted]


async def wait_topics(
    api: LocalBotApi, count: int = 1, within: float = 5.0
) -> list[ForumTopicInfo]:
    """Wait until ``count`` topics (deleted ones included) exist; returns the live ones."""
    await api.wait_for(
        lambda: len(api.topics(STAFF)) >= count, timeout=within, description=f"{count} topic(s)"
    )
    return live_topics(api)


async def wait_message(
    api: LocalBotApi,
    chat_id: int,
    predicate: Callable[[SentMessage], bool],
    *,
    thread_id: int | None = None,
    within: float = 5.0,
    description: str = "a matching message",
) -> SentMessage:
    """The first message the bot sent to the chat (topic) that satisfies ``predicate``."""
    found: list[SentMessage] = []

    def check() -> bool:
        found[:] = [m for m in api.sent(chat_id, thread_id=thread_id) if predicate(m)]
        return bool(found)

    await api.wait_for(check, timeout=within, description=description)
    return found[0]


async def wait_text(
    api: LocalBotApi,
    chat_id: int,
    text: str,
    *,
    thread_id: int | None = None,
    within: float = 5.0,
) -> SentMessage:
    return await wait_message(
        api,
        chat_id,
        lambda m: m.body == text,
        thread_id=thread_id,
        within=within,
        description=f"the text {text[:60]!r} in chat {chat_id} thread {thread_id}",
    )


def plain(text: str) -> str:
    """What Telegram keeps of an HTML text: tags gone, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", text))


async def wait_edited(
    api: LocalBotApi, chat_id: int, message_id: int, text: str, within: float = 5.0
) -> None:
    """Wait until the bot's message reads ``text`` (HTML) after an edit."""
    await api.wait_for(
        lambda: api.message(chat_id, message_id).get("text") == plain(text),
        timeout=within,
        description=f"message {message_id} in chat {chat_id} to read {plain(text)[:60]!r}",
    )


def general(api: LocalBotApi) -> list[SentMessage]:
    """What the bot posted in the staff group's General topic."""
    return [m for m in api.sent(STAFF) if m.message_thread_id is None]


async def file_complaint(
    harness: Harness,
    user: FakeUser,
    *,
    category: str = "delivery",
    texts: Sequence[str] = ("The parcel arrived broken",),
    photos: int = 0,
) -> str:
    """Go through the whole flow (skipping the order); returns the ticket number."""
    api = harness.api
    before = len(api.sent(user.id))
    await api.send_text(user, "/complaint")
    menu = (await api.wait_for_sent(user.id, before + 1))[-1]
    await api.press_button(user, menu, f"cf:cat:{category}")
    order = (await api.wait_for_sent(user.id, before + 2))[-1]
    await api.press_button(user, order, "cf:skip")
    sent = before + 3
    await api.wait_for_sent(user.id, sent)
    for text in texts:
        await api.send_text(user, text)
        sent += 1
        await api.wait_for_sent(user.id, sent)
    for index in range(photos):
        await api.send_photo(user, caption=f"photo {index + 1}")
        sent += 1
        await api.wait_for_sent(user.id, sent)
    ack = api.sent(user.id)[-1]
    await api.press_button(user, ack, "cf:done")
    confirm = (await api.wait_for_sent(user.id, sent + 1))[-1]
    await api.press_button(user, confirm, "cf:send")
    opened = (await api.wait_for_sent(user.id, sent + 2))[-1]
    ticket = await latest_ticket(harness, user.id)
    assert ticket is not None, api.dump(user.id)
    language = "zh" if (user.language_code or "").startswith("zh") else "en"
    said = harness.desk.answer_promise("complaint_opened")  # another without a staff group
    assert opened.text == harness.text(language, said, number=ticket.number)
    return ticket.number


async def open_ticket_for(
    harness: Harness,
    user: FakeUser,
    *,
    tier: str = "normal",
    category: str = "delivery",
    source: str = "complaint",
) -> Ticket:
    """A registered customer of ``tier`` with an open ticket (no flow, opened as ``source``),
    its topic on its way."""
    api = harness.api
    before = len(api.sent(user.id))
    await api.send_text(user, "/start")
    await api.wait_for_sent(user.id, before + 1)
    async with harness.sessionmaker.begin() as session:
        await session.execute(
            update(Customer).where(Customer.telegram_user_id == user.id).values(tier=tier)
        )
        customer = (
            await session.execute(select(Customer).where(Customer.telegram_user_id == user.id))
        ).scalar_one()
        ticket, _ = await open_ticket(
            session,
            harness.desk,
            customer,
            source=source,
            category=category,
            now=harness.clock.now(),
        )
    assert harness.dispatcher is not None
    harness.dispatcher.wake()
    return ticket


async def desk_ticket(
    harness: Harness, user: FakeUser, *, tier: str = "normal", category: str = "delivery"
) -> tuple[str, int]:
    """A customer with an open ticket whose topic and card are there, nothing under way:
    (ticket number, topic thread id)."""
    opened = await open_ticket_for(harness, user, tier=tier, category=category)
    thread = await topic_of(harness, opened.number)
    await lanes_idle(harness, opened.number)
    return opened.number, thread


async def topic_of(harness: Harness, number: str, within: float = 5.0) -> int:
    """The thread id of the ticket's topic, once its card is there."""
    for _ in range(int(within / 0.02)):
        async with harness.sessionmaker() as session:
            found = await ticket_by_number(session, number)
        if found is not None and found.card_message_id and found.topic_thread_id:
            return found.topic_thread_id
        await asyncio.sleep(0.02)
    raise AssertionError(f"ticket {number} got no topic with a card\n{harness.api.dump(STAFF)}")


async def staff_says(api: LocalBotApi, staff: FakeUser, thread: int, text: str) -> dict[str, Any]:
    return await api.send_text(staff, text, chat_id=STAFF, message_thread_id=thread)


async def latest_ticket(harness: Harness, telegram_user_id: int) -> Ticket | None:
    async with harness.sessionmaker() as session:
        result = await session.execute(
            select(Ticket)
            .join(Customer, Customer.id == Ticket.customer_id)
            .where(Customer.telegram_user_id == telegram_user_id)
            .order_by(Ticket.id.desc())
            .limit(1)
        )
        return result.scalar_one_or_none()


async def ticket(harness: Harness, number: str) -> Ticket:
    async with harness.sessionmaker() as session:
        found = await ticket_by_number(session, number)
    assert found is not None
    return found


async def messages(harness: Harness, number: str) -> list[TicketMessage]:
    async with harness.sessionmaker() as session:
        found = await ticket_by_number(session, number)
        assert found is not None
        return await history(session, found.id)


async def count(harness: Harness, model: type, *where: Any) -> int:
    async with harness.sessionmaker() as session:
        result = await session.execute(select(func.count()).select_from(model).where(*where))
        return int(result.scalar_one())


async def wait_stored(harness: Harness, number: str, direction: str, count_: int) -> None:
    """Wait until the ticket holds ``count_`` messages of ``direction``."""
    for _ in range(250):
        if len([m for m in await messages(harness, number) if m.direction == direction]) >= count_:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"ticket {number} never got {count_} {direction} messages")


async def lanes_idle(harness: Harness, number: str) -> None:
    """Wait until nothing of the ticket is queued or on its way."""
    api = harness.api

    async def busy() -> int:
        found = await ticket(harness, number)
        return await count(
            harness,
            TicketDelivery,
            TicketDelivery.ticket_id == found.id,
            TicketDelivery.state.in_(["queued", "outbox"]),
        )

    for _ in range(250):
        if await busy() == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"ticket {number} still has deliveries under way\n{api.dump(STAFF)}")


def staff_reply_text(harness: Harness, language: str, name: str, text: str) -> str:
    return harness.text(language, "ticket_staff_says", name=name, text=Markup(text))


def incoming_text(chat_id: int, message_id: int, text: str) -> Incoming:
    return Incoming(chat_id=chat_id, message_id=message_id, kind="text", text=text, html=text)
