"""``/move <group>`` in a ticket's topic: the ticket goes to another staff group. Its topic is
recreated there as ``/setup`` does for every open ticket when the desk moves (the card and a
summary of the history, in front of whatever waits, ``lanes.give_topic``); the old topic is
told where it went (the command's answer, said there); a group that assigns by itself gives
it to someone on duty there. The SLA deadlines stay as they were set when the ticket opened,
even when the new group keeps other business hours (the answer says so): a move does not
lengthen or shorten what the customer was promised; only the out-of-hours reply follows the
new group's hours from then on."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from handlers.tickets.assignment import assign_on_arrival
from handlers.tickets.desk import Desk, Staff, StaffReply
from handlers.tickets.lanes import give_topic, pump, record_event
from storage.models import Customer, Ticket
from storage.tickets import lanes
from storage.tickets.statuses import CLOSED


async def move_ticket(
    session: AsyncSession, desk: Desk, ticket: Ticket, staff: Staff, name: str, now: datetime
) -> StaffReply:
    """Move the (locked) ticket to the staff group ``name``; the answer is for the old topic
    (or says what was wrong: no name, a group not set up, the group it is in, a closed
    ticket), and nothing changes then."""
    groups = ", ".join(desk.group.chats)
    if ticket.status == CLOSED:
        return StaffReply(desk.staff_text("ticket_already_closed"))
    if not name:
        return StaffReply(desk.staff_text("ticket_move_usage", groups=groups))
    target = desk.group.chat_of(name)
    if target is None:
        return StaffReply(desk.staff_text("ticket_move_unknown", name=name[:40], groups=groups))
    if target == desk.topic_chat(ticket):
        return StaffReply(desk.staff_text("ticket_move_same", name=name))
    before = ticket.staff_group
    ticket.staff_group = name
    ticket.topic_thread_id = None  # the old topic stays as it is; a new one is made there
    ticket.topic_title = None
    ticket.topic_closed = False
    ticket.card_message_id = None
    ticket.updated_at = now
    await record_event(session, ticket, f"moved:{name}", now, staff)
    await give_topic(session, desk, ticket, now)
    customer = await session.get(Customer, ticket.customer_id)
    language = customer.language if customer is not None else ""
    await assign_on_arrival(session, desk, ticket, language, now)
    await pump(session, desk, ticket, lanes.TOPIC, now)
    answer = desk.staff_text("ticket_moved", name=name, by=staff.name)
    if desk.rules.hours_of(before) != desk.rules.hours_of(name):
        answer += "\n" + desk.staff_text(
            "ticket_move_deadlines_kept",
            name=name,
            first_response=desk.when(ticket.first_response_due, before),
            resolution=desk.when(ticket.resolution_due, before),
        )
    return StaffReply(answer)
