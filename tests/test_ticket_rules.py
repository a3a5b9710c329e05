"""A ticket's life (``handlers.tickets.lifecycle`` and ``relay``) without Telegram, on SQLite and
PostgreSQL: numbering and one open ticket per customer, where a customer's message goes (the
open ticket, a reopened one, a follow-up, or nowhere), bans and the flood throttle, and the
customer's answer to "is your problem solved?"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.kernel.config import load_config
from bot.kernel.replies import Alert, Reply
from bot.kernel.texts import Texts
from bot.settings import EXAMPLE_CONFIG_DIR
from handlers.onboarding.registration import Person, ensure_customer
from handlers.tickets.desk import Incoming, Staff
from handlers.tickets.lifecycle import (
    TicketDesk,
    confirm_resolution,
    open_ticket,
    resolve,
    ticket_closed,
)
from handlers.tickets.relay import relay_from_customer
from storage.models import Ticket, TicketDelivery, TicketMessage
from storage.tickets.bans import ban
from storage.tickets.messages import IN
from storage.tickets.rows import lock_ticket

CONFIG = load_config(EXAMPLE_CONFIG_DIR)
DESK = TicketDesk.from_config(CONFIG, Texts.load(), -1001000000001)
REOPEN = DESK.rules.reopen
FLOOD = DESK.rules.flood
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
ANN = Person(user_id=7501, chat_id=7501, first_name="Ann", language_code="en")
BEN = Person(user_id=7502, chat_id=7502, first_name="Ben", language_code="en")
MAX = Staff(9001, "Max")

Sessions = async_sessionmaker[AsyncSession]


async def open_for(
    sessionmaker: Sessions, person: Person = ANN, source: str = "complaint", at: datetime = NOW
) -> tuple[str, bool]:
    async with sessionmaker.begin() as session:
        customer, _ = await ensure_customer(session, person, CONFIG.general, at)
        ticket, opened = await open_ticket(
            session, DESK, customer, source=source, category="delivery", now=at
        )
        return ticket.number, opened


async def close_at(sessionmaker: Sessions, moment: datetime) -> None:
    """Ann's ticket, closed at ``moment`` (confirmed by her)."""
    async with sessionmaker.begin() as session:
        ticket = await lock_ticket(session, await ticket_id(sessionmaker))
        assert ticket is not None
        await ticket_closed(session, DESK, ticket, moment, "ticket_customer_confirmed")


async def ticket_id(sessionmaker: Sessions) -> int:
    """The first ticket's id."""
    async with sessionmaker() as session:
        ids = await session.execute(select(Ticket.id).order_by(Ticket.id).limit(1))
        return int(ids.scalar_one())


async def write(
    sessionmaker: Sessions, words: str, at: datetime, message_id: int = 100
) -> list[Reply] | None:
    """Ann writes outside any flow; what the relay tells her (None: no ticket takes it)."""
    async with sessionmaker.begin() as session:
        customer, _ = await ensure_customer(session, ANN, CONFIG.general, at)
        item = Incoming(ANN.chat_id, message_id, "text", text=words, html=words)
        return await relay_from_customer(session, DESK, customer, item, at)


async def tickets(sessionmaker: Sessions) -> list[tuple[str, str, str, int]]:
    """(number, source, status, reopen count) of every ticket, oldest first."""
    async with sessionmaker() as session:
        rows = await session.execute(
            select(Ticket.number, Ticket.source, Ticket.status, Ticket.reopen_count).order_by(
                Ticket.id
            )
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


async def inbound(sessionmaker: Sessions) -> list[tuple[str, str | None, str]]:
    """(ticket number, text, state) of what customers wrote into tickets, oldest first."""
    async with sessionmaker() as session:
        rows = await session.execute(
            select(Ticket.number, TicketMessage.text, TicketMessage.state)
            .join(Ticket, Ticket.id == TicketMessage.ticket_id)
            .where(TicketMessage.direction == IN)
            .order_by(TicketMessage.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def keys(replies: list[Reply] | None) -> list[str] | None:
    return None if replies is None else [reply.key for reply in replies]


async def test_numbers_per_kind_and_one_open_ticket_per_customer(sessionmaker: Sessions) -> None:
    assert await open_for(sessionmaker) == ("C-000001", True)
    assert await open_for(sessionmaker, source="question") == ("C-000001", False)
    assert await open_for(sessionmaker, BEN, source="question") == ("Q-000001", True)
    assert await tickets(sessionmaker) == [
        ("C-000001", "complaint", "open", 0),
        ("Q-000001", "question", "open", 0),
    ]
    async with sessionmaker() as session:
        actions = await session.execute(
            select(TicketDelivery.action, TicketDelivery.state)
            .where(TicketDelivery.ticket_id == await ticket_id(sessionmaker))
            .order_by(TicketDelivery.id)
        )
        # The topic first (in the outbox), its card behind it.
        assert [tuple(row) for row in actions] == [("create_topic", "outbox"), ("card", "queued")]


async def test_a_message_goes_to_the_open_ticket_and_hands_the_turn_to_staff(
    sessionmaker: Sessions,
) -> None:
    assert await write(sessionmaker, "hello?", NOW) is None  # no ticket: the caller answers
    number, _ = await open_for(sessionmaker)
    async with sessionmaker.begin() as session:
        ticket = await lock_ticket(session, await ticket_id(sessionmaker))
        assert ticket is not None
        ticket.status = "waiting_customer"
    assert await write(sessionmaker, "any news?", NOW, 101) == []
    assert await inbound(sessionmaker) == [(number, "any news?", "queued")]
    assert await tickets(sessionmaker) == [(number, "complaint", "waiting_staff", 0)]


async def test_after_closing_a_message_reopens_then_follows_up_then_goes_elsewhere(
    sessionmaker: Sessions,
) -> None:
    number, _ = await open_for(sessionmaker)
    await close_at(sessionmaker, NOW)

    within = NOW + timedelta(hours=REOPEN.window_hours - 1)
    reopened = await write(sessionmaker, "it broke again", within)
    assert reopened == [Reply("ticket_reopened_notice", "en", {"number": number})]
    assert await tickets(sessionmaker) == [(number, "complaint", "waiting_staff", 1)]

    await close_at(sessionmaker, within)
    later = within + timedelta(hours=REOPEN.window_hours + 1)
    follow_up = await write(sessionmaker, "one more question", later, 101)
    assert keys(follow_up) == ["ticket_follow_up_opened"]
    assert await tickets(sessionmaker) == [
        (number, "complaint", "closed", 1),
        ("C-000002", "follow_up", "open", 0),
    ]
    assert [row[0] for row in await inbound(sessionmaker)] == [number, "C-000002"]

    async with sessionmaker.begin() as session:
        second = await lock_ticket(session, (await ticket_id(sessionmaker)) + 1)
        assert second is not None
        await ticket_closed(session, DESK, second, later, "ticket_customer_confirmed")
    much_later = later + timedelta(days=REOPEN.follow_up_days, hours=1)
    assert await write(sessionmaker, "hello again", much_later, 102) is None
    assert len(await tickets(sessionmaker)) == 2


async def test_a_banned_customer_is_kept_not_relayed_and_told_once_a_day(
    sessionmaker: Sessions,
) -> None:
    number, _ = await open_for(sessionmaker)
    async with sessionmaker.begin() as session:
        customer, _ = await ensure_customer(session, ANN, CONFIG.general, NOW)
        await ban(session, customer.id, by_user_id=MAX.user_id, by_name=MAX.name, now=NOW)
    assert keys(await write(sessionmaker, "hello?", NOW)) == ["ticket_banned_notice"]
    soon = NOW + timedelta(hours=23)
    assert await write(sessionmaker, "hello??", soon, 101) == []
    next_day = NOW + timedelta(hours=24)
    assert keys(await write(sessionmaker, "hello???", next_day, 102)) == ["ticket_banned_notice"]
    assert await inbound(sessionmaker) == [
        (number, "hello?", "banned"),
        (number, "hello??", "banned"),
        (number, "hello???", "banned"),
    ]

    # Without an open ticket, a banned customer's message opens nothing.
    await close_at(sessionmaker, next_day)
    assert await write(sessionmaker, "let me in", next_day, 103) is None
    assert len(await tickets(sessionmaker)) == 1


async def test_a_flood_is_kept_but_throttled_with_one_notice(sessionmaker: Sessions) -> None:
    number, _ = await open_for(sessionmaker)
    told: list[list[str] | None] = []
    for n in range(FLOOD.max_messages + 2):
        told.append(keys(await write(sessionmaker, f"spam {n}", NOW, 100 + n)))
    assert told == [[]] * FLOOD.max_messages + [["ticket_flood_notice"], []]
    states = [state for _, _, state in await inbound(sessionmaker)]
    assert states == ["queued"] * FLOOD.max_messages + ["throttled"] * 2
    # Once the window has passed, the customer is heard again.
    calm = NOW + timedelta(seconds=FLOOD.per_seconds + 1)
    assert await write(sessionmaker, "calm now", calm, 200) == []
    assert (await inbound(sessionmaker))[-1] == (number, "calm now", "queued")


async def test_the_customer_confirms_or_rejects_a_resolution(sessionmaker: Sessions) -> None:
    await open_for(sessionmaker)
    ticket = await ticket_id(sessionmaker)

    async def answer(data: str, person: Person = ANN) -> Reply | Alert:
        async with sessionmaker.begin() as session:
            return await confirm_resolution(session, DESK, person.user_id, data, NOW)

    async def resolve_now() -> None:
        async with sessionmaker.begin() as session:
            locked = await lock_ticket(session, ticket)
            assert locked is not None
            await resolve(session, DESK, locked, MAX, NOW)

    assert await answer(f"tr:{ticket}:yes") == Alert("button_expired", "en")  # not resolved
    await resolve_now()
    await open_for(sessionmaker, BEN)
    assert await answer(f"tr:{ticket}:yes", BEN) == Alert("button_expired", "en")  # not Ben's
    assert await answer(f"tr:{ticket}:maybe") == Alert("button_expired", "en")

    assert await answer(f"tr:{ticket}:no") == Reply(
        "ticket_not_resolved_ack", "en", replace_message=True
    )
    async with sessionmaker() as session:
        found = await session.get(Ticket, ticket)
        assert found is not None
        assert (found.status, found.resolved_at) == ("waiting_staff", None)

    await resolve_now()
    assert await answer(f"tr:{ticket}:yes") == Reply(
        "ticket_closed_thanks", "en", {"number": "C-000001"}, replace_message=True
    )
    async with sessionmaker() as session:
        found = await session.get(Ticket, ticket)
        assert found is not None
        assert (found.status, found.closed_at, found.open_customer_id) == ("closed", NOW, None)
    assert await answer(f"tr:{ticket}:yes") == Alert("button_expired", "en")  # only once
