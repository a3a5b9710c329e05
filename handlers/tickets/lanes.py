"""The delivery lanes: how everything the desk sends is queued and kept in order.

**Lanes.** Everything that goes into a ticket's topic (creating, closing and reopening it, the
card, copies of the customer's messages, notices) is a ``TicketDelivery`` in the ticket's
"topic" lane; its renames are in the "title" lane (a rename never holds up a relay, and renames
between the two waiting statuses wait ``relay.title_delay_seconds`` so they add up); everything
that goes to the customer (staff replies, canned replies, questions) is in the "customer" lane.
At most one delivery per lane is in the outbox at any time (``pump``); when the dispatcher has
sent it (or given up), ``DeliveryHooks`` records the result in the same transaction and queues
the next. So:

- each direction stays in order, also across retries (a 500 is retried before anything behind
  it goes) and across processes;
- copies wait for the topic to exist: a burst from a new customer makes one ticket and one topic;
- a topic deleted by staff is recreated (a new topic, the card and a summary of the history, in
  front of what was waiting), a topic closed by staff is reopened, both when a send finds out;
- an album (photos sharing a ``media_group_id``, arriving as separate updates) goes as one
  ``sendMediaGroup`` of their files: its delivery waits ``album_grace_seconds`` for the rest;
- what failed for good is reported in the topic (a staff reply to a customer who blocked the
  bot is marked undelivered).

Payloads are built when a delivery is queued into the outbox, from the database of that moment
(the topic's current thread id, the customer's current language). Customer-visible texts the
dispatcher renders itself (questions, notices) follow the customer's language at send time.

Functions take the session first and only flush; the caller owns the transaction and wakes
the dispatcher after committing.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from handlers.tickets.desk import (
    ALBUM,
    CARD,
    COPY,
    CREATE_RETRY_AFTER,
    CREATE_TOPIC,
    KIND_CUSTOMER,
    KIND_TOPIC,
    SUMMARY,
    TEXT,
    TOPIC_ACTIONS,
    Desk,
    Incoming,
    Staff,
)
from handlers.tickets.payloads import build_delivery
from storage import outbox as outbox_queries
from storage.models import Ticket, TicketDelivery, TicketMessage
from storage.outbox import Priority
from storage.payloads import ALBUM_LIMIT, CAPTION_LIMIT
from storage.staff_group import tickets_without_topic
from storage.tickets import lanes
from storage.tickets.messages import EVENT, IN, KEPT, OUT, QUEUED, add_message
from storage.tickets.rows import lock_ticket

logger = logging.getLogger(__name__)


async def record_event(
    session: AsyncSession, ticket: Ticket, what: str, now: datetime, staff: Staff | None = None
) -> None:
    await add_message(
        session,
        ticket_id=ticket.id,
        direction=EVENT,
        author_user_id=staff.user_id if staff else None,
        author_name=staff.name if staff else None,
        kind="event",
        text=what,
        state=KEPT,
        created_at=now,
    )


async def store_message(
    session: AsyncSession,
    ticket: Ticket,
    item: Incoming,
    now: datetime,
    state: str = QUEUED,
    staff: Staff | None = None,
) -> TicketMessage:
    """A message the customer (or, with ``staff``, a staff member) sent into the ticket."""
    return await add_message(
        session,
        ticket_id=ticket.id,
        direction=OUT if staff else IN,
        author_user_id=staff.user_id if staff else None,
        author_name=staff.name if staff else None,
        kind=item.kind,
        text=item.text,
        html=item.html,
        media_file_id=item.file_id,
        media_group_id=item.media_group_id,
        chat_message_id=item.message_id,
        state=state,
        created_at=now,
    )


async def push_delivery(
    session: AsyncSession,
    ticket: Ticket,
    lane: str,
    action: str,
    now: datetime,
    *,
    message: TicketMessage | None = None,
    payload: dict[str, Any] | None = None,
    front: bool = False,
    not_before: datetime | None = None,
) -> TicketDelivery:
    return await lanes.add_delivery(
        session,
        ticket_id=ticket.id,
        lane=lane,
        action=action,
        ticket_message_id=message.id if message else None,
        payload=payload or {},
        front=front,
        state=lanes.D_QUEUED,
        tries=0,
        not_before=not_before,
        created_at=now,
        updated_at=now,
    )


def _caption_too_long(message: TicketMessage) -> bool:
    return message.kind != "text" and len(message.text or "") > CAPTION_LIMIT


async def queue_to_topic(
    session: AsyncSession,
    desk: Desk,
    ticket: Ticket,
    message: TicketMessage,
    now: datetime,
    *,
    album_grace: bool,
) -> None:
    """Queue the copy of a customer's message (an album item joins its album's copy)."""
    if message.media_group_id and await _join_album(
        session, desk, ticket, lanes.TOPIC, message, now, album_grace=album_grace
    ):
        return
    if _caption_too_long(message):
        await push_delivery(
            session, ticket, lanes.TOPIC, COPY, now, message=message, payload={"bare": True}
        )
        await push_delivery(
            session,
            ticket,
            lanes.TOPIC,
            TEXT,
            now,
            payload={"html": desk.staff_text("ticket_caption_overflow", text=message.text or "")},
        )
        return
    await push_delivery(session, ticket, lanes.TOPIC, COPY, now, message=message)


async def queue_to_customer(
    session: AsyncSession, desk: Desk, ticket: Ticket, message: TicketMessage, now: datetime
) -> None:
    """Queue a staff message for the customer: text, a media copy, or an album."""
    if message.media_group_id and await _join_album(
        session, desk, ticket, lanes.CUSTOMER, message, now, album_grace=True
    ):
        return
    if message.kind == "text":
        await push_delivery(session, ticket, lanes.CUSTOMER, TEXT, now, message=message)
    elif _caption_too_long(message):
        await push_delivery(
            session, ticket, lanes.CUSTOMER, COPY, now, message=message, payload={"bare": True}
        )
        await push_delivery(session, ticket, lanes.CUSTOMER, TEXT, now, message=message)
    else:
        await push_delivery(session, ticket, lanes.CUSTOMER, COPY, now, message=message)


async def _join_album(
    session: AsyncSession,
    desk: Desk,
    ticket: Ticket,
    lane: str,
    message: TicketMessage,
    now: datetime,
    *,
    album_grace: bool,
) -> bool:
    """Add an album item to its album's pending copy, or start one (waiting a moment for the
    other items when they are still arriving). False: the album's copy is already on its way,
    this late item goes on its own."""
    group = message.media_group_id
    albums = [
        delivery
        for delivery in await lanes.open_deliveries(session, ticket.id, lane, ALBUM)
        if delivery.payload.get("group") == group
    ]
    if albums:
        album = albums[-1]
        messages = [*album.payload.get("messages", []), message.id]
        if len(messages) > ALBUM_LIMIT:
            return False
        payload = {**album.payload, "messages": messages}
        if album.state == lanes.D_QUEUED:
            album.payload = payload
            album.updated_at = now
            return True
        # In the outbox already: extend the row while it still waits for the album's grace.
        built = await build_delivery(session, desk, ticket, album, now, override=payload)
        if built is not None and await lanes.replace_pending_payload(
            session, delivery_key(album), replace(built[1], delivery=album.id, ticket=ticket.id)
        ):
            album.payload = payload
            album.updated_at = now
            return True
        return False
    grace = desk.rules.relay.album_grace_seconds if album_grace else 0.0
    await push_delivery(
        session,
        ticket,
        lane,
        ALBUM,
        now,
        message=message,
        payload={"group": group, "messages": [message.id]},
        not_before=now + timedelta(seconds=grace) if grace else None,
    )
    return True


def delivery_key(delivery: TicketDelivery, tries: int | None = None) -> str:
    """The outbox key of a delivery's attempt (its latest unless ``tries`` is given)."""
    return f"tk:{delivery.id}:{delivery.tries if tries is None else tries}"


class NotRead:
    """A lane's head the caller has not read: ``pump`` reads it."""


NOT_READ = NotRead()


async def pump(
    session: AsyncSession,
    desk: Desk,
    ticket: Ticket,
    lane: str,
    now: datetime,
    *,
    head: TicketDelivery | NotRead | None = NOT_READ,
) -> bool:
    """Put the lane's next delivery into the outbox unless one is there already; True if one
    was queued. Deliveries with nothing left to do (a rename to the current title, say) are
    skipped; a lane that needs a topic that does not exist gets its creation put in front.
    ``head``: the lane's head when the caller read it already (``lanes.delivery_and_next``)."""
    if lane != lanes.CUSTOMER and desk.topic_chat(ticket) is None:
        return False
    for _ in range(200):
        if isinstance(head, NotRead):
            delivery = await lanes.lane_head(session, ticket.id, lane)
        else:
            delivery, head = head, NOT_READ
        if delivery is None or delivery.state == lanes.D_OUTBOX:
            return False
        if (
            lane != lanes.CUSTOMER
            and ticket.topic_thread_id is None
            and delivery.action != CREATE_TOPIC
        ):
            if delivery.action in TOPIC_ACTIONS:  # nothing to rename, close or reopen
                finish_delivery(delivery, lanes.D_SKIPPED, now)
                continue
            if not await _recreate_topic(session, ticket, now):
                return False
            continue
        built = await build_delivery(session, desk, ticket, delivery, now)
        if built is None:
            finish_delivery(delivery, lanes.D_SKIPPED, now)
            continue
        chat_id, payload = built
        await lanes.set_delivery_state(
            session, delivery, lanes.D_OUTBOX, now, tries=delivery.tries + 1
        )
        due = max(now, delivery.not_before) if delivery.not_before else now
        await outbox_queries.enqueue(
            session,
            dedupe_key=delivery_key(delivery),
            chat_id=chat_id,
            kind=KIND_CUSTOMER if lane == lanes.CUSTOMER else KIND_TOPIC,
            payload=replace(payload, delivery=delivery.id, ticket=ticket.id),
            due_at=due,
            now=now,
            customer_id=ticket.customer_id if lane == lanes.CUSTOMER else None,
            priority=Priority.REPLY,
            transactional=True,
        )
        return True
    logger.error("ticket %s: lane %s skipped too many deliveries at once", ticket.id, lane)
    return False


def finish_delivery(
    delivery: TicketDelivery, state: str, now: datetime, error: str | None = None
) -> None:
    delivery.state = state
    delivery.updated_at = now
    if error is not None:
        delivery.error = error[:300]


async def _recreate_topic(session: AsyncSession, ticket: Ticket, now: datetime) -> bool:
    """Queue the topic's creation (with the card and a history summary when there is history)
    in front of the lane; False while a creation that failed for good is recent."""
    latest = await lanes.latest_delivery(session, ticket.id, lanes.TOPIC, CREATE_TOPIC)
    if latest is not None and latest.state == lanes.D_QUEUED:
        latest.front = True
        return True
    if (
        latest is not None
        and latest.state == lanes.D_FAILED
        and latest.updated_at > now - CREATE_RETRY_AFTER
    ):
        logger.warning("ticket %s: its topic cannot be created; waiting", ticket.id)
        return False
    await push_delivery(session, ticket, lanes.TOPIC, CREATE_TOPIC, now, front=True)
    await push_delivery(session, ticket, lanes.TOPIC, CARD, now, front=True)
    if latest is not None:  # there was a topic before: staff need the history
        await push_delivery(session, ticket, lanes.TOPIC, SUMMARY, now, front=True)
    return True


async def give_topics(session: AsyncSession, desk: Desk, now: datetime) -> int:
    """A staff group is connected (or moved): every ticket not closed that has no topic there
    gets one, its waiting deliveries behind it. Tickets opened while there was no group have
    their creation waiting; those whose topic was in the old group get a new one with the card
    and a summary of the history. Returns how many topic lanes moved."""
    if not desk.group.chats:
        return 0
    moved = 0
    for ticket_id in await tickets_without_topic(session):
        ticket = await lock_ticket(session, ticket_id)
        if ticket is None or ticket.topic_thread_id is not None:
            continue
        moved += await give_topic(session, desk, ticket, now)
    return moved


async def give_topic(session: AsyncSession, desk: Desk, ticket: Ticket, now: datetime) -> bool:
    """The (locked) ticket has no topic in its group: one is created there, in front of what
    waits, with the card and (when it had a topic before) a summary of the history."""
    if desk.topic_chat(ticket) is None:
        return False
    if await lanes.lane_head(session, ticket.id, lanes.TOPIC) is None:
        await _recreate_topic(session, ticket, now)
    return await pump(session, desk, ticket, lanes.TOPIC, now)
