"""Relaying both ways: what the customer writes (and edits) goes into the ticket's topic, what
staff write there (and edit) goes to the customer; notes stay internal."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot.kernel.replies import Reply
from handlers.tickets.closed_hours import tell_when_open
from handlers.tickets.desk import (
    BAN_NOTICE_EVERY,
    EDIT,
    SOURCE_FOLLOW_UP,
    Desk,
    Incoming,
    Staff,
    StaffReply,
)
from handlers.tickets.lanes import (
    pump,
    push_delivery,
    queue_to_customer,
    queue_to_topic,
    store_message,
)
from handlers.tickets.lifecycle import (
    open_ticket,
    push_topic_text,
    reopen_ticket,
    set_status,
    staff_responded,
)
from storage.models import Customer, Ticket
from storage.tickets import lanes
from storage.tickets.messages import (
    BANNED,
    IN,
    KEPT,
    NOTE,
    OUT,
    QUEUED,
    RELAYED,
    THROTTLED,
    add_message,
    count_inbound_since,
    find_original,
    get_message,
    ticket_of_customer_message,
)
from storage.tickets.rows import (
    last_closed_ticket,
    lock_open_ticket_of,
    lock_ticket,
    may_take_message,
)
from storage.tickets.statuses import CLOSED, WAITING_CUSTOMER, WAITING_STAFF


async def relay_from_customer(
    session: AsyncSession, desk: Desk, customer: Customer, item: Incoming, now: datetime
) -> list[Reply] | None:
    """A customer's message (text or media) outside any flow: attached to their open ticket
    (reopening a recently closed one, or opening a follow-up) and copied into its topic; while
    the desk is closed, they are told once when it opens.

    Returns what to tell the customer (usually nothing), or None when there is no ticket for
    the message: the caller answers it as usual (the knowledge base).
    """
    found = await lock_open_ticket_of(session, customer.id, now)
    replies: list[Reply] = []
    if found is not None:
        ticket, ban = found
    else:
        reopen = desk.rules.reopen
        closed_since = now - max(
            timedelta(hours=reopen.window_hours), timedelta(days=reopen.follow_up_days)
        )
        # Not banned, with a ticket closed recently enough to reopen or follow up; most
        # messages have no ticket at all and go on to the knowledge base.
        if not await may_take_message(session, customer.id, closed_since):
            return None
        reopened, replies = await _reopen_or_follow_up(session, desk, customer, now)
        if reopened is None:
            return None
        ticket, ban = reopened, None
        ticket.updated_at = now
    if ban is not None:
        await store_message(session, ticket, item, now, state=BANNED)
        if ban.notified_at is None or ban.notified_at <= now - BAN_NOTICE_EVERY:
            ban.notified_at = now
            return [Reply("ticket_banned_notice", customer.language)]
        return []
    flood = desk.rules.flood
    recent = await count_inbound_since(
        session, ticket.id, now - timedelta(seconds=flood.per_seconds)
    )
    if recent >= flood.max_messages:
        await store_message(session, ticket, item, now, state=THROTTLED)
        noticed = ticket.flood_noticed_at
        if noticed is None or noticed <= now - timedelta(seconds=flood.per_seconds):
            ticket.flood_noticed_at = now
            replies.append(Reply("ticket_flood_notice", customer.language))
        return replies
    message = await store_message(session, ticket, item, now)
    await queue_to_topic(session, desk, ticket, message, now, album_grace=True)
    await pump(session, desk, ticket, lanes.TOPIC, now)
    if ticket.status == WAITING_CUSTOMER:
        await set_status(session, desk, ticket, WAITING_STAFF, now)
    await tell_when_open(session, desk, ticket, customer, now)
    return replies


async def _reopen_or_follow_up(
    session: AsyncSession, desk: Desk, customer: Customer, now: datetime
) -> tuple[Ticket | None, list[Reply]]:
    """The customer has no open ticket: reopen their last one if it closed recently, open a
    follow-up if it closed a while ago, else nothing."""
    last = await last_closed_ticket(session, customer.id)
    if last is None or last.closed_at is None:
        return None, []
    rules = desk.rules.reopen
    if last.closed_at >= now - timedelta(hours=rules.window_hours):
        ticket = await lock_ticket(session, last.id)
        assert ticket is not None
        await reopen_ticket(session, desk, ticket, now, event="reopened_by_customer")
        await push_topic_text(
            session, desk, ticket, desk.staff_text("ticket_reopened_customer"), now
        )
        return ticket, [
            Reply("ticket_reopened_notice", customer.language, {"number": ticket.number})
        ]
    if rules.follow_up_days and last.closed_at >= now - timedelta(days=rules.follow_up_days):
        ticket, _ = await open_ticket(
            session, desk, customer, source=SOURCE_FOLLOW_UP, category=last.category, now=now
        )
        return ticket, [
            Reply(
                desk.answer_promise("ticket_follow_up_opened"),
                customer.language,
                {"number": ticket.number},
            )
        ]
    return None, []


async def relay_customer_edit(
    session: AsyncSession, desk: Desk, customer: Customer, item: Incoming, now: datetime
) -> bool:
    """The customer edited a message that is part of a ticket: the new text goes into the
    topic marked as edited, replying to the copy; the original stays in the history."""
    found = await ticket_of_customer_message(session, customer.id, item.message_id)
    if found is None:
        return False
    ticket = await lock_ticket(session, found.ticket_id)
    original = await get_message(session, found.id)  # read again under the lock
    assert ticket is not None and original is not None
    edit = await add_message(
        session,
        ticket_id=ticket.id,
        direction=IN,
        kind=item.kind,
        text=item.text,
        html=item.html,
        media_file_id=item.file_id,
        chat_message_id=item.message_id,
        edit_of_id=original.id,
        state=QUEUED if ticket.status != CLOSED else KEPT,
        created_at=now,
    )
    if ticket.status == CLOSED or original.state not in (QUEUED, RELAYED):
        return True
    await push_delivery(session, ticket, lanes.TOPIC, EDIT, now, message=edit)
    await pump(session, desk, ticket, lanes.TOPIC, now)
    return True


async def staff_reply(
    session: AsyncSession, desk: Desk, ticket: Ticket, staff: Staff, item: Incoming, now: datetime
) -> StaffReply | None:
    """A staff member wrote in the topic: the message goes to the customer (media too),
    prefixed with their name if configured. A message starting with ``!`` is a note."""
    if (item.text or "").startswith("!"):
        await add_note(session, ticket, staff, item, now)
        return note_saved(desk)
    if ticket.status == CLOSED:
        return StaffReply(desk.staff_text("ticket_is_closed"))
    message = await store_message(session, ticket, item, now, staff=staff)
    await staff_responded(session, desk, ticket, now)
    await queue_to_customer(session, desk, ticket, message, now)
    await pump(session, desk, ticket, lanes.CUSTOMER, now)
    await pump(session, desk, ticket, lanes.TOPIC, now)
    return None


def note_saved(desk: Desk) -> StaffReply:
    """The topic's acknowledgement of a note: kept, and not sent to the customer (so it
    cannot be mistaken for a reply)."""
    return StaffReply(desk.staff_text("ticket_note_saved"))


async def add_note(
    session: AsyncSession, ticket: Ticket, staff: Staff, item: Incoming, now: datetime
) -> None:
    """An internal note: kept in the history, never relayed."""
    text = item.text or ""
    await add_message(
        session,
        ticket_id=ticket.id,
        direction=NOTE,
        author_user_id=staff.user_id,
        author_name=staff.name,
        kind=item.kind,
        text=text.removeprefix("!").strip() if text.startswith("!") else text,
        html=item.html,
        media_file_id=item.file_id,
        chat_message_id=item.message_id,
        state=KEPT,
        created_at=now,
    )


async def relay_staff_edit(
    session: AsyncSession, desk: Desk, ticket: Ticket, item: Incoming, now: datetime
) -> None:
    """Staff edited a reply: the customer gets the new text marked as edited."""
    original = await find_original(session, ticket.id, OUT, item.message_id)
    if original is None or ticket.status == CLOSED:
        return
    edit = await add_message(
        session,
        ticket_id=ticket.id,
        direction=OUT,
        author_user_id=original.author_user_id,
        author_name=original.author_name,
        kind=item.kind,
        text=item.text,
        html=item.html,
        chat_message_id=item.message_id,
        edit_of_id=original.id,
        state=QUEUED,
        created_at=now,
    )
    await push_delivery(session, ticket, lanes.CUSTOMER, EDIT, now, message=edit)
    await pump(session, desk, ticket, lanes.CUSTOMER, now)
