"""The delivery lanes: how everything the desk sends is queued and kept in order.

**Lanes.** Everything that goes into a ticket's topic (creating, closing and reopening it, the
card, copies of the customer's messages, notices) is a ``TicketDelivery`` in the ticket's
"topic" lane; its renames are in the "title" lane (a rename never holds up a relay, and renames
between the two waiting statuses wait ``relay.title_delay_seconds`` so they add up); everything
that goes to the customer (staff replies, canned replies, questions) is in the "customer" lane.
A lane's deliveries go into the outbox a window at a time (``pump``: up to ``Desk.lane_window``,
in order); the dispatcher sends a chat's rows one at a time in the order they were queued, and
when it has sent the window's last (or given up on one), ``DeliveryHooks`` records the result in
the same transaction and queues the next window. A failure takes the window's later rows back
out of the outbox first, so whatever it puts in front (a new topic, a fallback text) goes
first and they are built again. So:

- each direction stays in order, also across retries (a 500 is retried before anything behind
  it goes) and across processes;
- copies wait for the topic to exist: a burst from a new customer makes one ticket and one topic;
- a topic deleted by staff is recreated (a new topic, the card and a summary of the history, in
  front of what was waiting), a topic closed by staff is reopened, both when a send finds out;
- when a topic's window would wait behind its group's 20 a minute, the customer's consecutive
  texts in it go as one message (``handlers.tickets.coalesce``);
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
from enum import Enum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from handlers.tickets.coalesce import Room, coalesce, would_wait
from handlers.tickets.desk import (
    ALBUM,
    CARD,
    CLOSE_TOPIC,
    COPY,
    CREATE_RETRY_AFTER,
    CREATE_TOPIC,
    KIND_CUSTOMER,
    KIND_TOPIC,
    REOPEN_TOPIC,
    SUMMARY,
    TEXT,
    TITLE,
    TOPIC_ACTIONS,
    Desk,
    Incoming,
    Staff,
)
from handlers.tickets.payloads import build_delivery
from storage import outbox as outbox_queries
from storage.models import Ticket, TicketDelivery, TicketMessage
from storage.outbox import Priority
from storage.payloads import ALBUM_LIMIT, CAPTION_LIMIT, Payload
from storage.staff_group import tickets_without_topic
from storage.tickets import lanes
from storage.tickets.messages import EVENT, IN, KEPT, OUT, QUEUED, add_message, messages_now
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


WINDOW_ENDS = (CREATE_TOPIC, TITLE, CLOSE_TOPIC, REOPEN_TOPIC, CARD)
"""Actions whose outcome changes the ticket (its topic, title, state, card): what follows is
built from that change, so a window ends with one, and its outcome takes the ticket's lock."""


def _seen_in_outbox(session: AsyncSession) -> dict[tuple[int, str], TicketDelivery]:
    """The lanes this transaction found with a window in the outbox, and a delivery of it
    (several updates of a conversation are handled in one transaction, each queueing into the
    same lane). It holds while the delivery is still in the outbox as this session sees it
    (``pump`` checks): the ticket is locked, so the window's last outcome, which takes the lock,
    queues the next window after this transaction whatever it adds."""
    transaction = session.sync_session.get_transaction()
    kept = session.info.get(_SEEN_IN_OUTBOX)
    if kept is None or kept[0] is not transaction:
        kept = (transaction, {})
        session.info[_SEEN_IN_OUTBOX] = kept
    seen: dict[tuple[int, str], TicketDelivery] = kept[1]
    return seen


_SEEN_IN_OUTBOX = "tickets.lanes.seen_in_outbox"


class _Fill(Enum):
    """How filling a window from what was read ended."""

    DONE = "done"
    """The window is complete (full, or ended by a delivery nothing may overtake)."""
    AGAIN = "again"
    """A topic's creation was put in front: read the lane again."""
    READ_ALL = "read all"
    """Everything read was taken or skipped: read on if there may be more."""


async def pump(
    session: AsyncSession,
    desk: Desk,
    ticket: Ticket,
    lane: str,
    now: datetime,
    *,
    room: Room | None = None,
) -> bool:
    """Put the lane's next deliveries into the outbox, at most ``desk.lane_window`` of them in
    order, unless some are there already (the last of those to be sent pumps again); True if
    any were queued. A window ends early at a delivery that changes the ticket
    (``WINDOW_ENDS``) or waits (``not_before``: an album's grace, a delayed rename), so that
    nothing behind it can overtake it. Deliveries with nothing left to do (a rename to the
    current title, say) are skipped; a lane that needs a topic that does not exist gets its
    creation put in front. With ``room`` (the dispatcher's limiter) a topic's window that would
    wait behind its group's limit is coalesced (``handlers.tickets.coalesce``)."""
    if lane != lanes.CUSTOMER and desk.topic_chat(ticket) is None:
        return False
    seen_busy = _seen_in_outbox(session)
    known_busy = seen_busy.get((ticket.id, lane))
    if known_busy is not None and known_busy.state == lanes.D_OUTBOX:
        return False
    size = max(desk.lane_window, 1)
    window: list[tuple[TicketDelivery, int, Payload]] = []
    for _ in range(200):
        read = await lanes.lane_window(session, ticket.id, lane, size)
        if read and read[0].state == lanes.D_OUTBOX:
            seen_busy[(ticket.id, lane)] = read[0]
            return False  # chosen ones are still queued in the table: only an earlier window
        taken = {delivery.id for delivery, _, _ in window}
        fresh = [delivery for delivery in read if delivery.id not in taken]
        step = await _fill(session, desk, ticket, lane, fresh, window, now)
        if step is _Fill.DONE or (step is _Fill.READ_ALL and (not fresh or len(read) < size)):
            break
    else:
        logger.error("ticket %s: lane %s skipped too many deliveries at once", ticket.id, lane)
    carried: dict[int, list[TicketDelivery]] = {}
    if would_wait(lane, window, room):
        window, carried = await coalesce(session, desk, window, now)
    await _into_outbox(session, ticket, lane, window, now)
    for head, parts in carried.items():
        lanes.merge_into(parts, head, now)
    return bool(window)


async def _fill(
    session: AsyncSession,
    desk: Desk,
    ticket: Ticket,
    lane: str,
    fresh: list[TicketDelivery],
    window: list[tuple[TicketDelivery, int, Payload]],
    now: datetime,
) -> _Fill:
    """Add to ``window`` from ``fresh`` (the lane's next queued deliveries, in order)."""
    wanted = [d.ticket_message_id for d in fresh if d.ticket_message_id is not None]
    known = await messages_now(session, wanted) if len(wanted) > 1 else None
    for delivery in fresh:
        if len(window) >= max(desk.lane_window, 1):
            return _Fill.DONE
        if (
            lane != lanes.CUSTOMER
            and ticket.topic_thread_id is None
            and delivery.action != CREATE_TOPIC
        ):
            if delivery.action in TOPIC_ACTIONS:  # nothing to rename, close or reopen
                finish_delivery(delivery, lanes.D_SKIPPED, now)
                continue
            if window:  # what follows needs the topic: the next window
                return _Fill.DONE
            recreating = await _recreate_topic(session, ticket, now)
            return _Fill.AGAIN if recreating else _Fill.DONE
        built = await build_delivery(session, desk, ticket, delivery, now, known=known)
        if built is None:
            finish_delivery(delivery, lanes.D_SKIPPED, now)
            continue
        window.append((delivery, *built))
        if delivery.action in WINDOW_ENDS or (
            delivery.not_before is not None and delivery.not_before > now
        ):
            return _Fill.DONE
    return _Fill.READ_ALL


async def _into_outbox(
    session: AsyncSession,
    ticket: Ticket,
    lane: str,
    window: list[tuple[TicketDelivery, int, Payload]],
    now: datetime,
) -> None:
    """The window's deliveries into the outbox, in its order: one write for the deliveries,
    one for the rows (their ids, and so the dispatcher's order, follow the window's)."""
    if not window:
        return
    await lanes.into_outbox(session, [delivery for delivery, _, _ in window], now)
    customer_lane = lane == lanes.CUSTOMER
    await outbox_queries.enqueue_in_order(
        session,
        [
            {
                "dedupe_key": delivery_key(delivery),
                "chat_id": chat_id,
                "kind": KIND_CUSTOMER if customer_lane else KIND_TOPIC,
                "payload": replace(payload, delivery=delivery.id, ticket=ticket.id),
                "due_at": max(now, delivery.not_before) if delivery.not_before else now,
                "now": now,
                "customer_id": ticket.customer_id if customer_lane else None,
                "priority": _priority(lane),
                "transactional": True,
            }
            for delivery, chat_id, payload in window
        ],
    )


def _priority(lane: str) -> Priority:
    """Renames (their own lane) give way to everything else of the desk: customer copies go
    first when both wait behind a group's limit. The card's edits stay in the topic lane's
    order, which a lower priority would hold up; they give way inside a window instead
    (``handlers.tickets.coalesce``)."""
    if lane == lanes.TITLE:
        return Priority.NOTICE
    return Priority.REPLY


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
