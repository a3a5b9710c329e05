"""A ticket's life: opening it (with the complaint's description), its status and the topic's
title, claim and assignment, priority, resolution and the customer's confirmation, closing and
reopening, canned replies, bans, notices in the topic, ``/forget``; and ``TicketDesk``, the desk
with what surveys need of it (a recovery ticket)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot.kernel.config import PRIORITIES
from bot.kernel.replies import Alert, Reply
from bot.kernel.texts import Markup
from handlers.tickets.assignment import assign_on_arrival, refuse_agent
from handlers.tickets.closed_hours import tell_when_open
from handlers.tickets.desk import (
    CANNED,
    CARD,
    CARD_EDIT,
    CB_RESOLUTION,
    CB_TICKET,
    CLOSE_TOPIC,
    CREATE_TOPIC,
    NOTICE,
    REOPEN_TOPIC,
    SOURCE_QUESTION,
    TEXT,
    TITLE,
    Desk,
    Incoming,
    Staff,
    StaffReply,
    priority_label,
    topic_title,
)
from handlers.tickets.lanes import (
    delivery_key,
    finish_delivery,
    pump,
    push_delivery,
    queue_to_topic,
    record_event,
    store_message,
)
from storage import outbox as outbox_queries
from storage.models import Customer, Ticket
from storage.payloads import TopicAction, TopicChange
from storage.tickets import lanes
from storage.tickets.bans import ban, unban
from storage.tickets.erasure import erase_customer_tickets
from storage.tickets.messages import OUT, QUEUED, add_message
from storage.tickets.rows import insert_ticket, lock_ticket, next_number, open_ticket_of
from storage.tickets.staff import staff_by_username
from storage.tickets.statuses import (
    CLOSED,
    OPEN,
    RESOLVED,
    WAITING,
    WAITING_CUSTOMER,
    WAITING_STAFF,
)


def _new_ticket_row(
    desk: Desk,
    customer: Customer,
    *,
    source: str,
    category: str,
    now: datetime,
    subject: str | None,
    order_id: int | None,
    order_ref: str | None,
) -> dict[str, object]:
    """A new open ticket's row: its priority and the SLA's due times follow the customer's
    tier (and the category) as the desk's rules say, counted in the business hours of the
    group it is routed to; the subject is cut to 500 characters."""
    target = desk.rules.sla.target(customer.tier)
    group = desk.route(
        category=category, language=customer.language, tier=customer.tier, source=source
    )
    hours = desk.hours_of(group)
    return {
        "customer_id": customer.id,
        "staff_group": group,
        "open_customer_id": customer.id,
        "source": source,
        "category": category,
        "order_id": order_id,
        "order_ref": order_ref,
        "subject": subject[:500] if subject else None,
        "status": OPEN,
        "priority": desk.rules.priority_of(customer.tier, category),
        "tier": customer.tier,
        "topic_closed": False,
        "opened_at": now,
        "first_response_due": hours.add(now, timedelta(minutes=target.first_response_minutes)),
        "resolution_due": hours.add(now, timedelta(hours=target.resolution_hours)),
        "reopen_count": 0,
        "lock_version": 0,
        "updated_at": now,
    }


async def open_ticket(
    session: AsyncSession,
    desk: Desk,
    customer: Customer,
    *,
    source: str,
    category: str,
    now: datetime,
    subject: str | None = None,
    order_id: int | None = None,
    order_ref: str | None = None,
    items: Sequence[Incoming] = (),
) -> tuple[Ticket, bool]:
    """Open a ticket for ``customer`` (True) or return the open one they already have (False).

    Its topic is queued for creation with the card, then the copies of ``items`` (the
    complaint's description), in order; while the desk is closed the customer is told when it
    opens (``closed_hours``). Two concurrent openings for one customer make one
    ticket: the unique ``open_customer_id`` decides.
    """
    existing = await open_ticket_of(session, customer.id)
    if existing is not None:
        return existing, False
    numbers = desk.rules.numbers
    prefix = numbers.question if source == SOURCE_QUESTION else numbers.complaint
    ticket_id = await insert_ticket(
        session,
        _new_ticket_row(
            desk,
            customer,
            source=source,
            category=category,
            now=now,
            subject=subject,
            order_id=order_id,
            order_ref=order_ref,
        ),
    )
    if ticket_id is None:  # somebody else opened one a moment ago
        existing = await open_ticket_of(session, customer.id)
        if existing is None:  # pragma: no cover - the winner cannot vanish before commit
            raise RuntimeError("the concurrent ticket vanished")
        return existing, False
    ticket = await lock_ticket(session, ticket_id)
    assert ticket is not None
    ticket.number = f"{prefix}-{await next_number(session, prefix):0{numbers.digits}d}"
    await record_event(session, ticket, "opened", now)
    await push_delivery(session, ticket, lanes.TOPIC, CREATE_TOPIC, now)
    await push_delivery(session, ticket, lanes.TOPIC, CARD, now)
    await assign_on_arrival(session, desk, ticket, customer.language, now)
    for item in items:
        message = await store_message(session, ticket, item, now)
        await queue_to_topic(session, desk, ticket, message, now, album_grace=False)
    await pump(session, desk, ticket, lanes.TOPIC, now)
    await tell_when_open(session, desk, ticket, customer, now)
    return ticket, True


async def add_customer_items(
    session: AsyncSession, desk: Desk, ticket: Ticket, items: Sequence[Incoming], now: datetime
) -> None:
    """Attach messages to a ticket at once (a complaint filed while another ticket opened)."""
    locked = await lock_ticket(session, ticket.id)
    assert locked is not None
    for item in items:
        message = await store_message(session, locked, item, now)
        await queue_to_topic(session, desk, locked, message, now, album_grace=False)
    await pump(session, desk, locked, lanes.TOPIC, now)
    customer = await session.get(Customer, locked.customer_id)
    if customer is not None:
        await tell_when_open(session, desk, locked, customer, now)


async def staff_responded(
    session: AsyncSession, desk: Desk, ticket: Ticket, now: datetime
) -> None:
    if ticket.first_response_at is None:
        ticket.first_response_at = now
    if ticket.status in (OPEN, WAITING_STAFF):
        await set_status(session, desk, ticket, WAITING_CUSTOMER, now)
    ticket.updated_at = now


async def claim(
    session: AsyncSession, desk: Desk, ticket: Ticket, staff: Staff, now: datetime
) -> StaffReply:
    if ticket.status == CLOSED:
        return StaffReply(desk.staff_text("ticket_already_closed"), alert=True)
    refused = refuse_agent(desk, ticket, staff, staff.user_id)
    if refused is not None:
        return StaffReply(refused.text, alert=True)
    ticket.assignee_user_id, ticket.assignee_name = staff.user_id, staff.name
    ticket.updated_at = now
    await record_event(session, ticket, "claimed", now, staff)
    await refresh_card(session, desk, ticket, now)
    return StaffReply(desk.staff_text("ticket_claimed", name=staff.name))


async def assign(
    session: AsyncSession,
    desk: Desk,
    ticket: Ticket,
    staff: Staff,
    assignee: Staff | None,
    username: str | None,
    now: datetime,
    *,
    assignee_is_staff: bool = False,
) -> StaffReply:
    """``/assign @name`` (a staff member the bot has seen) or ``/assign`` replying to one
    (``assignee_is_staff``: Telegram says they are in the staff group; anyone else is refused
    and the ticket keeps its assignee)."""
    if ticket.status == CLOSED:
        return StaffReply(desk.staff_text("ticket_already_closed"))
    if assignee is not None and not assignee_is_staff:
        return StaffReply(desk.staff_text("ticket_assign_not_staff", name=assignee.name))
    if assignee is None and username:
        member = await staff_by_username(session, username)
        if member is None:
            return StaffReply(
                desk.staff_text("ticket_assign_unknown", username=username.lstrip("@"))
            )
        assignee = Staff(member.user_id, member.name.split(" ")[0], member.username)
    if assignee is None:
        return StaffReply(desk.staff_text("ticket_assign_usage"))
    refused = refuse_agent(desk, ticket, staff, assignee.user_id)
    if refused is not None:
        return refused
    ticket.assignee_user_id, ticket.assignee_name = assignee.user_id, assignee.name
    ticket.updated_at = now
    await record_event(session, ticket, f"assigned:{assignee.user_id}", now, staff)
    await refresh_card(session, desk, ticket, now)
    return StaffReply(
        desk.staff_text("ticket_assigned", name=Markup(assignee.mention), by=staff.name)
    )


async def set_priority(
    session: AsyncSession, desk: Desk, ticket: Ticket, staff: Staff, level: int, now: datetime
) -> StaffReply:
    if ticket.status == CLOSED:
        return StaffReply(desk.staff_text("ticket_already_closed"), alert=True)
    if not 0 <= level < len(PRIORITIES):
        return StaffReply(desk.staff_text("ticket_button_stale"), alert=True)
    ticket.priority = level
    ticket.updated_at = now
    await record_event(session, ticket, f"priority:{level}", now, staff)
    await refresh_card(session, desk, ticket, now)
    return StaffReply(
        desk.staff_text(
            "ticket_priority_set", priority=priority_label(desk, level), name=staff.name
        )
    )


async def resolve(
    session: AsyncSession, desk: Desk, ticket: Ticket, staff: Staff, now: datetime
) -> StaffReply:
    """``/close``: the ticket is resolved and the customer is asked to confirm; it closes when
    they do (or by itself after ``auto_close_resolved_hours``)."""
    if ticket.status == CLOSED:
        return StaffReply(desk.staff_text("ticket_already_closed"), alert=True)
    if ticket.status == RESOLVED:
        return StaffReply(desk.staff_text("ticket_already_resolved"), alert=True)
    ticket.resolved_at = now
    await set_status(session, desk, ticket, RESOLVED, now)
    await record_event(session, ticket, "resolved", now, staff)
    await push_delivery(
        session,
        ticket,
        lanes.CUSTOMER,
        NOTICE,
        now,
        payload={
            "key": "ticket_resolved_question",
            "params": {"number": ticket.number},
            "buttons": [
                [
                    {"key": "ticket_yes_button", "data": f"{CB_RESOLUTION}{ticket.id}:yes"},
                    {"key": "ticket_no_button", "data": f"{CB_RESOLUTION}{ticket.id}:no"},
                ]
            ],
        },
    )
    await pump(session, desk, ticket, lanes.CUSTOMER, now)
    await pump(session, desk, ticket, lanes.TOPIC, now)
    return StaffReply(
        desk.staff_text(
            "ticket_resolved_staff",
            name=staff.name,
            hours=desk.rules.reopen.auto_close_resolved_hours,
        )
    )


async def confirm_resolution(
    session: AsyncSession, desk: Desk, user_id: int, data: str, now: datetime
) -> Reply | Alert:
    """The customer's answer to "is your problem solved?": yes closes, no hands it back."""
    ticket_id, _, answer = data.removeprefix(CB_RESOLUTION).partition(":")
    ticket = await lock_ticket(session, int(ticket_id)) if ticket_id.isdigit() else None
    customer = await session.get(Customer, ticket.customer_id) if ticket else None
    language = customer.language if customer else "en"
    if (
        ticket is None
        or customer is None
        or customer.telegram_user_id != user_id
        or ticket.status != RESOLVED
        or answer not in ("yes", "no")
    ):
        return Alert("button_expired", language)
    if answer == "yes":
        await ticket_closed(session, desk, ticket, now, "ticket_customer_confirmed")
        return Reply(
            "ticket_closed_thanks", language, {"number": ticket.number}, replace_message=True
        )
    ticket.resolved_at = None
    await set_status(session, desk, ticket, WAITING_STAFF, now)
    await record_event(session, ticket, "not_resolved", now)
    await push_topic_text(
        session, desk, ticket, desk.staff_text("ticket_customer_not_resolved"), now
    )
    return Reply("ticket_not_resolved_ack", language, replace_message=True)


async def ticket_closed(
    session: AsyncSession, desk: Desk, ticket: Ticket, now: datetime, reason_key: str
) -> None:
    """Close the ticket (confirmed by the customer, or resolved and left unanswered): the
    topic says why, is renamed and closed. The CSAT survey follows from ``closed_at``
    (``surveys.planner``)."""
    ticket.closed_at = now
    ticket.open_customer_id = None
    await set_status(session, desk, ticket, CLOSED, now)
    await record_event(session, ticket, "closed", now)
    hours = desk.rules.reopen.auto_close_resolved_hours
    await push_delivery(
        session,
        ticket,
        lanes.TOPIC,
        TEXT,
        now,
        payload={"html": desk.staff_text(reason_key, hours=hours)},
    )
    await push_delivery(session, ticket, lanes.TOPIC, CLOSE_TOPIC, now)
    await pump(session, desk, ticket, lanes.TOPIC, now)


async def reopen(
    session: AsyncSession, desk: Desk, ticket: Ticket, staff: Staff, now: datetime
) -> StaffReply:
    """``/reopen`` of a resolved or closed ticket; the customer is told."""
    if ticket.status not in (RESOLVED, CLOSED):
        return StaffReply(desk.staff_text("ticket_not_closed"))
    if ticket.status == CLOSED:
        other = await open_ticket_of(session, ticket.customer_id)
        if other is not None:
            return StaffReply(desk.staff_text("ticket_reopen_conflict", number=other.number))
    await reopen_ticket(session, desk, ticket, now, event="reopened", staff=staff)
    await push_delivery(
        session,
        ticket,
        lanes.CUSTOMER,
        NOTICE,
        now,
        payload={"key": "ticket_reopened_notice", "params": {"number": ticket.number}},
    )
    await pump(session, desk, ticket, lanes.CUSTOMER, now)
    return StaffReply(desk.staff_text("ticket_reopened_staff", name=staff.name))


async def reopen_ticket(
    session: AsyncSession,
    desk: Desk,
    ticket: Ticket,
    now: datetime,
    *,
    event: str,
    staff: Staff | None = None,
) -> None:
    if ticket.status == CLOSED:  # the topic opens first, then it is renamed
        await push_delivery(session, ticket, lanes.TOPIC, REOPEN_TOPIC, now)
    ticket.open_customer_id = ticket.customer_id
    ticket.closed_at = None
    ticket.resolved_at = None
    ticket.reopened_at = now
    ticket.reopen_count += 1
    await set_status(session, desk, ticket, WAITING_STAFF, now)
    await record_event(session, ticket, event, now, staff)
    await pump(session, desk, ticket, lanes.TOPIC, now)


async def send_canned(
    session: AsyncSession, desk: Desk, ticket: Ticket, staff: Staff, code: str, now: datetime
) -> StaffReply:
    """A canned reply picked under ``/canned``: sent in the customer's language."""
    reply = desk.rules.canned_reply(code)
    if reply is None:
        return StaffReply(desk.staff_text("ticket_button_stale"), alert=True)
    if ticket.status == CLOSED:
        return StaffReply(desk.staff_text("ticket_already_closed"), alert=True)
    message = await add_message(
        session,
        ticket_id=ticket.id,
        direction=OUT,
        author_user_id=staff.user_id,
        author_name=staff.name,
        kind="canned",
        text=code,
        state=QUEUED,
        created_at=now,
    )
    await staff_responded(session, desk, ticket, now)
    await push_delivery(
        session, ticket, lanes.CUSTOMER, CANNED, now, message=message, payload={"code": code}
    )
    await pump(session, desk, ticket, lanes.CUSTOMER, now)
    await pump(session, desk, ticket, lanes.TOPIC, now)
    return StaffReply(desk.staff_text("ticket_canned_sent", title=reply.title), replace=True)


def canned_menu(desk: Desk, ticket: Ticket) -> StaffReply:
    if not desk.rules.canned:
        return StaffReply(desk.staff_text("ticket_canned_none"))
    return StaffReply(
        desk.staff_text("ticket_canned_menu"),
        [
            [(reply.title, f"{CB_TICKET}{ticket.id}:canned:{reply.code}")]
            for reply in desk.rules.canned
        ],
    )


async def ban_customer(
    session: AsyncSession, desk: Desk, ticket: Ticket, staff: Staff, now: datetime
) -> StaffReply:
    """``/ban``: the customer's messages are kept but no longer relayed."""
    if not await ban(
        session, ticket.customer_id, by_user_id=staff.user_id, by_name=staff.name, now=now
    ):
        return StaffReply(desk.staff_text("ticket_ban_already"))
    await record_event(session, ticket, "banned", now, staff)
    return StaffReply(desk.staff_text("ticket_banned_staff", name=staff.name))


async def unban_customer(
    session: AsyncSession, desk: Desk, ticket: Ticket, staff: Staff, now: datetime
) -> StaffReply:
    if not await unban(session, ticket.customer_id):
        return StaffReply(desk.staff_text("ticket_unban_none"))
    await record_event(session, ticket, "unbanned", now, staff)
    return StaffReply(desk.staff_text("ticket_unbanned_staff", name=staff.name))


async def set_status(
    session: AsyncSession, desk: Desk, ticket: Ticket, status: str, now: datetime
) -> None:
    """Change the status; the topic's title follows. Back-and-forth between "waiting for us"
    and "waiting for the customer" renames after ``relay.title_delay_seconds`` (the changes of
    a lively conversation add up to one rename, or none), the others at once."""
    if ticket.status == status:
        return
    flip = ticket.status in WAITING and status in WAITING
    ticket.status = status
    ticket.updated_at = now
    await _retitle(session, desk, ticket, now, soon=status in WAITING)
    if not flip:  # the card reads "in conversation" for both
        await refresh_card(session, desk, ticket, now)


async def refresh_card(session: AsyncSession, desk: Desk, ticket: Ticket, now: datetime) -> None:
    """The card at the top of the topic shows the ticket as it is now (assignee, status,
    priority, deadlines, the buttons that fit): an edit queued in the topic lane, after the
    card itself. It is built when it goes, so one edit still waiting is enough."""
    pending = await lanes.open_deliveries(session, ticket.id, lanes.TOPIC, CARD_EDIT)
    if any(delivery.state == lanes.D_QUEUED for delivery in pending):
        return
    await push_delivery(session, ticket, lanes.TOPIC, CARD_EDIT, now)
    await pump(session, desk, ticket, lanes.TOPIC, now)


async def _retitle(
    session: AsyncSession, desk: Desk, ticket: Ticket, now: datetime, *, soon: bool
) -> None:
    """Queue a rename of the topic in its own lane (renames never hold up a relay)."""
    delay = desk.rules.relay.title_delay_seconds if soon else 0
    pending = await lanes.open_deliveries(session, ticket.id, lanes.TITLE, TITLE)
    queued = [delivery for delivery in pending if delivery.state == lanes.D_QUEUED]
    waiting = [delivery for delivery in pending if delivery.state == lanes.D_OUTBOX]
    if waiting and ticket.topic_thread_id is not None:
        # A rename still waits in the outbox: it takes the title of now (and goes at once if
        # this change should be seen at once).
        row = waiting[-1]
        customer = await session.get(Customer, ticket.customer_id)
        payload = TopicChange(
            TopicAction.EDIT,
            topic_title(desk, ticket, customer),
            thread_id=ticket.topic_thread_id,
            delivery=row.id,
            ticket=ticket.id,
        )
        due = None if delay else now
        if await lanes.replace_pending_payload(session, delivery_key(row), payload, due_at=due):
            return
    if queued:  # it will be built with the title of its moment
        if not delay:
            queued[-1].not_before = None
        return
    later = now + timedelta(seconds=delay) if delay else None
    await push_delivery(session, ticket, lanes.TITLE, TITLE, now, not_before=later)
    await pump(session, desk, ticket, lanes.TITLE, now)


async def push_topic_text(
    session: AsyncSession, desk: Desk, ticket: Ticket, text_html: str, now: datetime
) -> None:
    """A message from the bot into the ticket's topic (reminders, notices), in order."""
    await push_delivery(session, ticket, lanes.TOPIC, TEXT, now, payload={"html": text_html})
    await pump(session, desk, ticket, lanes.TOPIC, now)


KEPT_ON_ERASURE = (CLOSE_TOPIC, REOPEN_TOPIC)
"""Deliveries that carry nothing of the customer: ``/forget`` lets them go on."""


async def forget_customer(
    session: AsyncSession, desk: Desk, customer_id: int, now: datetime
) -> None:
    """``/forget`` on the desk (after the customer's own record is erased): the tickets keep no
    text, no name and no title; what was still to be sent of theirs is cancelled (copies,
    texts, cards, titles, and everything for the customer, who is gone), and what was sent loses
    its payload; a ticket still open is closed (nobody can answer them now), and each topic is
    renamed to its ticket number. Telegram's copies in the staff group stay: they are the shop's
    record."""
    tickets = await erase_customer_tickets(session, customer_id)
    deliveries = await lanes.deliveries_of(session, [ticket.id for ticket in tickets])
    carrying = [
        delivery
        for delivery in deliveries
        if delivery.state in (lanes.D_QUEUED, lanes.D_OUTBOX)
        and (delivery.lane == lanes.CUSTOMER or delivery.action not in KEPT_ON_ERASURE)
    ]
    cancelled = await outbox_queries.cancel_erased(
        session,
        now=now,
        dedupe_keys=[delivery_key(d) for d in carrying if d.state == lanes.D_OUTBOX],
    )
    for delivery in carrying:
        if delivery.state == lanes.D_QUEUED or delivery_key(delivery) in cancelled:
            finish_delivery(delivery, lanes.D_SKIPPED, now, error="erased")
    by_id = {delivery.id: delivery for delivery in deliveries}
    for delivery in deliveries:  # texts merged into a row go as it goes
        if delivery.state == lanes.D_MERGED:
            head = by_id.get(int((delivery.payload or {}).get("into") or 0))
            if head is None or head.state == lanes.D_SKIPPED:
                finish_delivery(delivery, lanes.D_SKIPPED, now, error="erased")
    await outbox_queries.erase_payloads(
        session,
        dedupe_keys=[
            delivery_key(delivery, tries)
            for delivery in deliveries
            for tries in range(1, delivery.tries + 1)
        ],
    )
    for delivery in deliveries:  # one on the wire keeps what its outcome needs
        if delivery.state not in (lanes.D_OUTBOX, lanes.D_MERGED):
            delivery.payload = {}
    for ticket in tickets:
        if ticket.status != CLOSED:  # the rename comes with the closing
            await ticket_closed(session, desk, ticket, now, "ticket_customer_forgot")
            continue
        if ticket.topic_thread_id is not None:
            await push_delivery(session, ticket, lanes.TITLE, TITLE, now)
            await pump(session, desk, ticket, lanes.TITLE, now)
        await pump(session, desk, ticket, lanes.TOPIC, now)


class TicketDesk(Desk):
    """The desk with what surveys need of it (``surveys.desk.Desk``): a recovery ticket."""

    async def open_recovery_ticket(
        self,
        session: AsyncSession,
        customer: Customer,
        *,
        source: str,
        category: str,
        subject: str,
        text: str,
        now: datetime,
    ) -> int:
        """A ticket for what a survey brought up: opened (or the open one), then ``text`` (HTML)
        in its topic; its id."""
        ticket, _ = await open_ticket(
            session, self, customer, source=source, category=category, now=now, subject=subject
        )
        await push_topic_text(session, self, ticket, text, now)
        return ticket.id
