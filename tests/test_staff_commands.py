"""Staff in the ticket topics (``handlers.staff.commands``) without Telegram, on SQLite and
PostgreSQL: who counts as staff and how long that is remembered, what a message, a note, each
command and each card button does to the topic's ticket (its row, its history, what is queued
for the customer), and what is refused or answered harmlessly."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.kernel.config import load_config
from bot.kernel.texts import Texts
from bot.settings import EXAMPLE_CONFIG_DIR
from dashboard.auth import LINK_TTL, LOGIN_PATH, LoginLinks, peek_login_token
from handlers.onboarding.registration import Person, ensure_customer
from handlers.staff import commands
from handlers.staff.commands import MemberCache, counts_as_staff
from handlers.tickets.desk import Incoming, Staff, StaffReply
from handlers.tickets.lifecycle import TicketDesk, open_ticket
from storage.models import (
    CustomerBan,
    DashboardLogin,
    StaffMember,
    Ticket,
    TicketDelivery,
    TicketMessage,
)
from storage.tickets import lanes
from storage.tickets.messages import EVENT, KEPT, NOTE, OUT

CONFIG = load_config(EXAMPLE_CONFIG_DIR)
DESK = TicketDesk.from_config(CONFIG, Texts.load(), -1001000000001)
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
TOPIC = 501
UNKNOWN_TOPIC = 999
ANN = Person(user_id=7201, chat_id=7201, first_name="Ann", language_code="en")
MAX = Staff(9001, "Max", "max_care")
LEA = Staff(9002, "Lea", "lea")

Sessions = async_sessionmaker[AsyncSession]


def said(message_id: int, words: str) -> Incoming:
    """A text a staff member wrote in the topic."""
    return Incoming(DESK.staff_chat_id or 0, message_id, "text", text=words, html=words)


async def ticket_in_topic(sessionmaker: Sessions) -> int:
    """Ann's open ticket, its topic created (as the dispatcher records it); its id."""
    async with sessionmaker.begin() as session:
        customer, _ = await ensure_customer(session, ANN, CONFIG.general, NOW)
        ticket, _ = await open_ticket(
            session, DESK, customer, source="complaint", category="delivery", now=NOW
        )
        ticket.topic_thread_id = TOPIC
        return ticket.id


async def ticket(sessionmaker: Sessions) -> Ticket:
    async with sessionmaker() as session:
        return (await session.execute(select(Ticket))).scalar_one()


async def history(sessionmaker: Sessions, *directions: str) -> list[tuple[str, str | None]]:
    """(direction, text) of the ticket's messages of those directions, oldest first."""
    async with sessionmaker() as session:
        rows = await session.execute(
            select(TicketMessage.direction, TicketMessage.text)
            .where(TicketMessage.direction.in_(directions))
            .order_by(TicketMessage.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


async def customer_lane(sessionmaker: Sessions) -> list[tuple[str, str]]:
    """(action, state) of what is queued for the customer, oldest first."""
    async with sessionmaker() as session:
        rows = await session.execute(
            select(TicketDelivery.action, TicketDelivery.state)
            .where(TicketDelivery.lane == lanes.CUSTOMER)
            .order_by(TicketDelivery.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


async def count(sessionmaker: Sessions, model: type) -> int:
    async with sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def command(
    sessionmaker: Sessions, name: str, thread_id: int | None = TOPIC, staff: Staff = MAX
) -> StaffReply | None:
    async with sessionmaker.begin() as session:
        return await commands.command(session, DESK, thread_id, staff, name, NOW)


async def press(sessionmaker: Sessions, data: str, staff: Staff = MAX) -> StaffReply:
    async with sessionmaker.begin() as session:
        return await commands.press(session, DESK, staff, data, NOW)


def test_who_counts_as_staff() -> None:
    for status in ("creator", "administrator", "member"):
        assert counts_as_staff(status), status
    assert counts_as_staff("restricted", is_member=True)
    assert not counts_as_staff("restricted", is_member=False)
    assert not counts_as_staff("restricted")
    for status in ("left", "kicked"):
        assert not counts_as_staff(status, is_member=True), status


def test_membership_is_remembered_for_its_ttl_only_and_per_group() -> None:
    now = [100.0]
    group, other_group = -1001, -1002
    cache = MemberCache(60, monotonic=lambda: now[0])
    assert cache.get(group, MAX.user_id) is None
    cache.put(group, MAX.user_id, True)
    cache.put(group, LEA.user_id, False)
    now[0] += 59.9
    assert (cache.get(group, MAX.user_id), cache.get(group, LEA.user_id)) == (True, False)
    assert cache.get(other_group, MAX.user_id) is None  # an answer about another group
    now[0] += 0.1
    assert (cache.get(group, MAX.user_id), cache.get(group, LEA.user_id)) == (None, None)


async def test_a_message_goes_to_the_customer_and_a_bang_message_stays_a_note(
    sessionmaker: Sessions,
) -> None:
    await ticket_in_topic(sessionmaker)
    async with sessionmaker.begin() as session:
        replied = await commands.message(session, DESK, TOPIC, MAX, said(10, "We are on it"), NOW)
        noted = await commands.message(
            session, DESK, TOPIC, MAX, said(11, "! courier called"), NOW
        )
    saved = StaffReply(DESK.staff_text("ticket_note_saved"))  # so nobody takes it for a reply
    assert (replied, noted) == (None, saved)
    assert await history(sessionmaker, OUT, NOTE) == [
        (OUT, "We are on it"),
        (NOTE, "courier called"),
    ]
    assert [action for action, _ in await customer_lane(sessionmaker)] == ["text"]
    found = await ticket(sessionmaker)
    assert (found.status, found.first_response_at) == ("waiting_customer", NOW)


async def test_a_message_outside_a_ticket_topic_is_ignored(sessionmaker: Sessions) -> None:
    await ticket_in_topic(sessionmaker)
    async with sessionmaker.begin() as session:
        for thread_id in (UNKNOWN_TOPIC, None):
            assert (
                await commands.message(session, DESK, thread_id, MAX, said(12, "hi"), NOW) is None
            )
    assert await history(sessionmaker, OUT, NOTE) == []
    assert await customer_lane(sessionmaker) == []


async def test_note_keeps_the_text_and_without_one_says_how(sessionmaker: Sessions) -> None:
    await ticket_in_topic(sessionmaker)
    async with sessionmaker.begin() as session:
        kept = await commands.note(
            session, DESK, TOPIC, MAX, said(20, "/note refund approved\nby phone"), NOW
        )
        usage = await commands.note(session, DESK, TOPIC, MAX, said(21, "/note  "), NOW)
        elsewhere = await commands.note(
            session, DESK, UNKNOWN_TOPIC, MAX, said(22, "/note x"), NOW
        )
    assert kept == StaffReply(DESK.staff_text("ticket_note_saved"))
    assert usage == StaffReply(DESK.staff_text("ticket_note_usage"))
    assert elsewhere == StaffReply(DESK.staff_text("ticket_not_a_ticket_topic"))
    async with sessionmaker() as session:
        notes = (
            await session.execute(
                select(
                    TicketMessage.text, TicketMessage.state, TicketMessage.author_user_id
                ).where(TicketMessage.direction == NOTE)
            )
        ).all()
    assert [tuple(row) for row in notes] == [("refund approved\nby phone", KEPT, MAX.user_id)]
    assert await customer_lane(sessionmaker) == []


async def test_claim_close_and_reopen_change_the_ticket_and_tell_the_customer(
    sessionmaker: Sessions,
) -> None:
    await ticket_in_topic(sessionmaker)
    claimed = await command(sessionmaker, "claim")
    assert claimed == StaffReply(DESK.staff_text("ticket_claimed", name="Max"))
    found = await ticket(sessionmaker)
    assert (found.assignee_user_id, found.assignee_name) == (MAX.user_id, "Max")

    not_closed = await command(sessionmaker, "reopen")
    assert not_closed == StaffReply(DESK.staff_text("ticket_not_closed"))

    closed = await command(sessionmaker, "close")
    assert closed is not None and not closed.alert
    assert closed.text == DESK.staff_text(
        "ticket_resolved_staff", name="Max", hours=DESK.rules.reopen.auto_close_resolved_hours
    )
    found = await ticket(sessionmaker)
    assert (found.status, found.resolved_at) == ("resolved", NOW)
    assert [action for action, _ in await customer_lane(sessionmaker)] == ["notice"]
    again = await command(sessionmaker, "close")
    assert again == StaffReply(DESK.staff_text("ticket_already_resolved"), alert=True)

    reopened = await command(sessionmaker, "reopen", staff=LEA)
    assert reopened == StaffReply(DESK.staff_text("ticket_reopened_staff", name="Lea"))
    found = await ticket(sessionmaker)
    assert (found.status, found.resolved_at, found.reopen_count) == ("waiting_staff", None, 1)
    assert [action for action, _ in await customer_lane(sessionmaker)] == ["notice", "notice"]
    assert [text for _, text in await history(sessionmaker, EVENT)] == [
        "opened",
        "claimed",
        "resolved",
        "reopened",
    ]


async def test_ban_and_unban_each_once(sessionmaker: Sessions) -> None:
    await ticket_in_topic(sessionmaker)
    assert await command(sessionmaker, "ban") == StaffReply(
        DESK.staff_text("ticket_banned_staff", name="Max")
    )
    async with sessionmaker() as session:
        banned = (await session.execute(select(CustomerBan))).scalar_one()
    assert (banned.banned_by_user_id, banned.banned_by_name, banned.banned_at) == (
        MAX.user_id,
        "Max",
        NOW,
    )
    assert await command(sessionmaker, "ban") == StaffReply(DESK.staff_text("ticket_ban_already"))
    assert await command(sessionmaker, "unban") == StaffReply(
        DESK.staff_text("ticket_unbanned_staff", name="Max")
    )
    assert await count(sessionmaker, CustomerBan) == 0
    assert await command(sessionmaker, "unban") == StaffReply(DESK.staff_text("ticket_unban_none"))
    assert [text for _, text in await history(sessionmaker, EVENT)] == [
        "opened",
        "banned",
        "unbanned",
    ]


async def test_commands_outside_a_ticket_topic_get_a_hint_and_change_nothing(
    sessionmaker: Sessions,
) -> None:
    await ticket_in_topic(sessionmaker)
    hint = StaffReply(DESK.staff_text("ticket_not_a_ticket_topic"))
    for name in ("claim", "close", "ban", "card", "canned"):
        assert await command(sessionmaker, name, thread_id=UNKNOWN_TOPIC) == hint, name
        assert await command(sessionmaker, name, thread_id=None) == hint, name
    found = await ticket(sessionmaker)
    assert (found.status, found.assignee_user_id) == ("open", None)
    assert await count(sessionmaker, CustomerBan) == 0


async def test_canned_offers_one_button_per_reply_of_this_ticket(sessionmaker: Sessions) -> None:
    ticket_id = await ticket_in_topic(sessionmaker)
    menu = await command(sessionmaker, "canned")
    assert menu is not None
    assert menu.buttons == [
        [(reply.title, f"tk:{ticket_id}:canned:{reply.code}")] for reply in DESK.rules.canned
    ]


async def test_assign_by_username_or_in_reply_to_a_member_only(sessionmaker: Sessions) -> None:
    await ticket_in_topic(sessionmaker)

    async def assign(
        username: str | None, replied_to: Staff | None = None, *, member: bool = False
    ) -> StaffReply | None:
        async with sessionmaker.begin() as session:
            return await commands.assign(
                session, DESK, TOPIC, MAX, username, replied_to, NOW, replied_is_staff=member
            )

    assert await assign(None) == StaffReply(DESK.staff_text("ticket_assign_usage"))
    assert await assign("@lea") == StaffReply(
        DESK.staff_text("ticket_assign_unknown", username="lea")
    )
    # Lea wrote in the group once: the membership check remembered her.
    async with sessionmaker.begin() as session:
        await commands.remember(session, Staff(LEA.user_id, "Lea Wu", "lea"), True, NOW)
    async with sessionmaker() as session:
        member = (await session.execute(select(StaffMember))).scalar_one()
    assert (member.user_id, member.username, member.is_staff) == (LEA.user_id, "lea", True)
    assigned = await assign("@lea")
    assert assigned is not None and "Assigned to" in assigned.text
    found = await ticket(sessionmaker)
    assert (found.assignee_user_id, found.assignee_name) == (LEA.user_id, "Lea")

    stranger = Staff(9003, "Sam")
    assert await assign(None, stranger) == StaffReply(
        DESK.staff_text("ticket_assign_not_staff", name="Sam")
    )
    assert (await ticket(sessionmaker)).assignee_user_id == LEA.user_id
    await assign(None, stranger, member=True)
    assert (await ticket(sessionmaker)).assignee_user_id == stranger.user_id


async def test_card_buttons_claim_set_priority_and_send_canned_replies(
    sessionmaker: Sessions,
) -> None:
    ticket_id = await ticket_in_topic(sessionmaker)
    claimed = await press(sessionmaker, f"tk:{ticket_id}:claim", staff=LEA)
    assert claimed == StaffReply(DESK.staff_text("ticket_claimed", name="Lea"))

    urgent = await press(sessionmaker, f"tk:{ticket_id}:priority:3")
    assert urgent.replace and not urgent.alert  # the card, redrawn in place
    assert (await ticket(sessionmaker)).priority == 3

    canned = await press(sessionmaker, f"tk:{ticket_id}:canned:greeting")
    title = DESK.rules.canned[0].title
    assert canned == StaffReply(DESK.staff_text("ticket_canned_sent", title=title), replace=True)
    async with sessionmaker() as session:
        sent = (
            await session.execute(
                select(TicketMessage.kind, TicketMessage.text).where(
                    TicketMessage.direction == OUT
                )
            )
        ).all()
    assert [tuple(row) for row in sent] == [("canned", "greeting")]
    assert [action for action, _ in await customer_lane(sessionmaker)] == ["canned"]
    found = await ticket(sessionmaker)
    assert (found.assignee_user_id, found.status, found.first_response_at) == (
        LEA.user_id,
        "waiting_customer",
        NOW,
    )


async def test_stale_buttons_are_answered_harmlessly(sessionmaker: Sessions) -> None:
    ticket_id = await ticket_in_topic(sessionmaker)
    stale = StaffReply(DESK.staff_text("ticket_button_stale"), alert=True)
    for data in (
        f"tk:{ticket_id + 1}:claim",
        "tk:abc:claim",
        f"tk:{ticket_id}:explode",
        f"tk:{ticket_id}:priority:9",
        f"tk:{ticket_id}:priority:high",
        f"tk:{ticket_id}:canned:no-such-reply",
    ):
        assert await press(sessionmaker, data) == stale, data
    found = await ticket(sessionmaker)
    assert (found.assignee_user_id, found.priority, found.status) == (
        None,
        DESK.rules.priority_of("normal", "delivery"),
        "open",
    )
    assert await customer_lane(sessionmaker) == []


async def test_a_closed_ticket_takes_no_reply_and_no_claim(sessionmaker: Sessions) -> None:
    ticket_id = await ticket_in_topic(sessionmaker)
    async with sessionmaker.begin() as session:
        closed = await session.get(Ticket, ticket_id)
        assert closed is not None
        closed.status, closed.open_customer_id, closed.closed_at = "closed", None, NOW
    async with sessionmaker.begin() as session:
        refused = await commands.message(session, DESK, TOPIC, MAX, said(30, "hi"), NOW)
    assert refused == StaffReply(DESK.staff_text("ticket_is_closed"))
    already = StaffReply(DESK.staff_text("ticket_already_closed"), alert=True)
    assert await command(sessionmaker, "claim") == already
    assert await press(sessionmaker, f"tk:{ticket_id}:claim") == already
    assert await press(sessionmaker, f"tk:{ticket_id}:canned:greeting") == already
    assert await history(sessionmaker, OUT) == []
    assert await customer_lane(sessionmaker) == []
    # A customer with another open ticket: /reopen points there instead.
    async with sessionmaker.begin() as session:
        customer, _ = await ensure_customer(session, ANN, CONFIG.general, NOW)
        other, _ = await open_ticket(
            session, DESK, customer, source="question", category="question", now=NOW
        )
        number = other.number
    assert await command(sessionmaker, "reopen") == StaffReply(
        DESK.staff_text("ticket_reopen_conflict", number=number)
    )


async def test_dashboard_link_is_minted_only_when_the_dashboard_is_set_up(
    sessionmaker: Sessions,
) -> None:
    async with sessionmaker.begin() as session:
        off = await commands.dashboard_link(session, DESK, None, MAX, NOW)
    assert (off.private, off.here) == (None, DESK.staff_text("dashboard_off"))
    assert await count(sessionmaker, DashboardLogin) == 0

    links = LoginLinks("https://care.example/")
    async with sessionmaker.begin() as session:
        answer = await commands.dashboard_link(session, DESK, links, MAX, NOW, in_group=True)
    assert answer.private is not None
    [url] = re.findall(r'href="([^"]+)"', answer.private)
    assert url.startswith("https://care.example" + LOGIN_PATH)
    assert answer.here == DESK.staff_text("dashboard_sent_privately", name="Max")
    async with sessionmaker() as session:
        login = (await session.execute(select(DashboardLogin))).scalar_one()
        name = await peek_login_token(session, url.rpartition("/")[2], NOW)
    assert (login.user_id, login.expires_at, name) == (MAX.user_id, NOW + LINK_TTL, "Max")
