"""What Telegram made of a delivery, reported by the outbox dispatcher (``DeliveryHooks``):
recorded in the same transaction, then (after the last of a lane's window) the lane's next
window is queued; a failure or a retry first takes the window's later rows back out of the
outbox; a topic deleted or closed by staff is recreated or reopened, what failed for good is
said in the topic; and the recovery of deliveries whose outcome never arrived (``recover_one``,
``resume_lane``). The rules act on a failure's ``reason`` (``storage.failures``), never on
Telegram's error text."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from handlers.tickets.coalesce import Room
from handlers.tickets.desk import (
    ALBUM,
    CANNED,
    CARD,
    CLOSE_TOPIC,
    COPY,
    CREATE_TOPIC,
    EDIT,
    KIND_TOPIC,
    MAX_TRIES,
    OUTBOX_KINDS,
    REOPEN_TOPIC,
    TEXT,
    TITLE,
    TOPIC_ACTIONS,
    Desk,
)
from handlers.tickets.lanes import WINDOW_ENDS, finish_delivery, pump, push_delivery
from storage import outbox as outbox_queries
from storage.failures import FailureReader, Reason, SendFailure
from storage.models import Outbox, Ticket, TicketDelivery
from storage.outbox import OutboxMessage, Priority
from storage.payloads import TopicChange, from_json
from storage.tickets import lanes
from storage.tickets.messages import (
    RELAYED,
    UNDELIVERED,
    mark_relayed,
    messages_by_id,
)
from storage.tickets.rows import lock_ticket

logger = logging.getLogger(__name__)


class DeliveryHooks:
    """What the dispatcher calls, in the transaction that records a ticket row's outcome."""

    def __init__(self, desk: Desk) -> None:
        self.desk = desk
        """Replaceable (tests run with other rules)."""
        self.room: Room | None = None
        """The dispatcher's view of how many more sends a chat takes now (``use_room``)."""

    def use_room(self, room: Room) -> None:
        """The dispatcher says how to ask its limiter: a topic's next window is coalesced when
        its group has no room (``handlers.tickets.coalesce``)."""
        self.room = room

    async def _locked(
        self, session: AsyncSession, message: OutboxMessage
    ) -> tuple[TicketDelivery, Ticket] | None:
        """The row's delivery and its ticket, the ticket locked first (see ``lock_ticket``)."""
        delivery_id = message.payload.delivery
        if delivery_id is None:
            return None
        ticket_id = message.payload.ticket
        if ticket_id is None:  # a row queued before tickets went into payloads
            found = await lanes.get_delivery(session, delivery_id)
            if found is None:
                return None
            ticket_id = found.ticket_id
        ticket = await lock_ticket(session, ticket_id)
        delivery = await lanes.get_delivery(session, delivery_id)
        if ticket is None or delivery is None or delivery.ticket_id != ticket_id:
            return None
        return delivery, ticket

    async def sent(
        self,
        session: AsyncSession,
        message: OutboxMessage,
        message_ids: Sequence[int],
        now: datetime,
    ) -> bool:
        """Record what Telegram made of the delivery; the last of its lane's window queues
        the next window. A copy with more of its window still in the outbox touches neither
        the ticket nor the lane: its delivery and message are marked, nothing else (three
        statements with the outbox row's, where a whole round used to run ten)."""
        delivery_id = message.payload.delivery
        if delivery_id is None:
            return False
        await self._parts_sent(session, message, list(message_ids), now)
        done = await lanes.mark_sent(session, delivery_id, now)
        if done is None:  # not in the outbox (any more): record it, the lane is not waiting
            return await self._sent_late(session, message, list(message_ids), now)
        if done.in_outbox and done.action not in WINDOW_ENDS:
            await self._record_messages(session, done, list(message_ids))
            return False
        ticket = await lock_ticket(session, done.ticket_id)
        if ticket is None:
            return False
        await self._record(session, done, ticket, message, list(message_ids))
        if done.in_outbox:
            return False
        return await pump(session, self.desk, ticket, done.lane, now, room=self.room)

    @staticmethod
    async def _parts_sent(
        session: AsyncSession, message: OutboxMessage, ids: list[int], now: datetime
    ) -> None:
        """A row of merged texts was sent: the deliveries it carried besides its own are sent,
        and their messages relayed as the one message Telegram made of them."""
        parts = message.payload.merged
        if not parts:
            return
        for message_id in await lanes.mark_parts_sent(session, parts, now):
            await mark_relayed(session, message_id, ids[0] if ids else None)

    async def _sent_late(
        self, session: AsyncSession, message: OutboxMessage, ids: list[int], now: datetime
    ) -> bool:
        """A sent row whose delivery was no longer in the outbox (an outcome replayed by the
        recovery, say): what Telegram made of it is still recorded."""
        found = await self._locked(session, message)
        if found is None:
            return False
        delivery, ticket = found
        await self._record(session, delivery, ticket, message, ids)
        await lanes.set_delivery_state(session, delivery, lanes.D_SENT, now)
        return False

    async def _record(
        self,
        session: AsyncSession,
        delivery: TicketDelivery | lanes.SentDelivery,
        ticket: Ticket,
        message: OutboxMessage,
        ids: list[int],
    ) -> None:
        first = ids[0] if ids else None
        action = delivery.action
        payload = message.payload
        name = payload.name if isinstance(payload, TopicChange) else None
        if action == CREATE_TOPIC and first is not None:
            ticket.topic_thread_id = first
            ticket.staff_chat_id = message.chat_id  # the thread id is this chat's
            ticket.topic_closed = False
            ticket.topic_title = name
            ticket.card_message_id = None
        elif action == TITLE:
            ticket.topic_title = name
        elif action == CLOSE_TOPIC:
            ticket.topic_closed = True
        elif action == REOPEN_TOPIC:
            ticket.topic_closed = False
        elif action == CARD:
            ticket.card_message_id = first
        else:
            await self._record_messages(session, delivery, ids)

    @staticmethod
    async def _record_messages(
        session: AsyncSession, delivery: TicketDelivery | lanes.SentDelivery, ids: list[int]
    ) -> None:
        """The ticket's messages a copy, text or album carried are relayed, as ``ids``."""
        action = delivery.action
        if action == ALBUM:
            items = await messages_by_id(session, list(delivery.payload.get("messages", [])))
            for item, copied in zip(items, ids, strict=False):
                item.copy_message_id, item.state = copied, RELAYED
        elif delivery.ticket_message_id is not None and action in (COPY, TEXT, EDIT, CANNED):
            await mark_relayed(session, delivery.ticket_message_id, ids[0] if ids else None)

    async def failed(
        self,
        session: AsyncSession,
        message: OutboxMessage,
        failure: SendFailure,
        *,
        dead: bool,
        now: datetime,
    ) -> bool:
        """A delivery failed for good (or ran out of attempts): recreate or reopen the topic
        and try again, fall back to text, or say so in the topic; then go on with the lane."""
        found = await self._locked(session, message)
        if found is None:
            return False
        delivery, ticket = found
        if delivery.state != lanes.D_OUTBOX:
            return False
        await lanes.pull_back(session, ticket.id, delivery.lane, message.id, now)
        desk = self.desk
        if delivery.lane != lanes.CUSTOMER:
            await self._topic_failed(session, delivery, ticket, message, failure, dead, now)
            fell_back = not dead and failure.reason is not Reason.TOPIC_DELETED
            await self._parts_failed(session, delivery, ticket, fell_back, now)
        else:
            finish_delivery(delivery, lanes.D_FAILED, now, failure.description)
            await self._undelivered(session, delivery, ticket, failure, dead, now)
            await pump(session, desk, ticket, lanes.TOPIC, now)
        await pump(session, desk, ticket, delivery.lane, now, room=self.room)
        return True

    async def retrying(
        self, session: AsyncSession, message: OutboxMessage, failure: SendFailure, now: datetime
    ) -> bool:
        """The row goes again after a backoff: the rest of its lane's window comes back out of
        the outbox (it would overtake it) and follows once it is sent."""
        found = await self._locked(session, message)
        if found is None:
            return False
        delivery, ticket = found
        if delivery.state == lanes.D_OUTBOX:
            await lanes.pull_back(session, ticket.id, delivery.lane, message.id, now)
        return False

    async def _topic_failed(
        self,
        session: AsyncSession,
        delivery: TicketDelivery,
        ticket: Ticket,
        message: OutboxMessage,
        failure: SendFailure,
        dead: bool,
        now: datetime,
    ) -> None:
        thread = message.payload.thread_id
        retry = delivery.tries < MAX_TRIES
        reason = failure.reason
        error = failure.description.lower()  # as the delivery has always kept it
        if reason is Reason.TOPIC_DELETED:
            if delivery.action in TOPIC_ACTIONS or delivery.action == CREATE_TOPIC:
                finish_delivery(delivery, lanes.D_SKIPPED if retry else lanes.D_FAILED, now, error)
            else:
                if ticket.topic_thread_id is not None and ticket.topic_thread_id == thread:
                    logger.info("ticket %s: its topic was deleted; recreating it", ticket.id)
                    ticket.topic_thread_id = None
                    ticket.topic_title = None
                    ticket.topic_closed = False
                    ticket.card_message_id = None
                finish_delivery(delivery, lanes.D_QUEUED if retry else lanes.D_FAILED, now, error)
            return
        if reason is Reason.TOPIC_CLOSED and retry:
            ticket.topic_closed = True
            await push_delivery(session, ticket, lanes.TOPIC, REOPEN_TOPIC, now, front=True)
            finish_delivery(delivery, lanes.D_QUEUED, now, error)
            return
        if reason is Reason.TOPIC_NOT_MODIFIED:
            await self._record(session, delivery, ticket, message, [])
            if delivery.action == CLOSE_TOPIC:
                ticket.topic_closed = True
            finish_delivery(delivery, lanes.D_SENT, now, error)
            return
        finish_delivery(delivery, lanes.D_FAILED, now, error)
        if delivery.action in (COPY, ALBUM) and not dead:
            await self._copy_fallback(session, delivery, ticket, now)

    async def _parts_failed(
        self,
        session: AsyncSession,
        delivery: TicketDelivery,
        ticket: Ticket,
        fell_back: bool,
        now: datetime,
    ) -> None:
        """The deliveries a failed row of merged texts carried end as it did: queued again with
        it (a new topic, a reopened one), or failed with it, their texts then given in the topic
        one by one after its own when it fell back to its text."""
        parts = await lanes.settle_parts(
            session, ticket.id, delivery.lane, [delivery.id], delivery.state, now, delivery.error
        )
        if parts and fell_back and delivery.state == lanes.D_FAILED and delivery.action == COPY:
            for part in parts:
                await self._copy_fallback(session, part, ticket, now)

    async def _copy_fallback(
        self, session: AsyncSession, delivery: TicketDelivery, ticket: Ticket, now: datetime
    ) -> None:
        """A customer's message that could not be copied (deleted meanwhile, a caption too long
        for a bot): its stored text goes into the topic instead."""
        ids = delivery.payload.get("messages") or (
            [delivery.ticket_message_id] if delivery.ticket_message_id else []
        )
        for item in await messages_by_id(session, list(ids)):
            text = self.desk.staff_text(
                "ticket_copy_fallback", kind=item.kind, text=item.text or "—"
            )
            await push_delivery(
                session,
                ticket,
                lanes.TOPIC,
                TEXT,
                now,
                message=item,
                payload={"html": text},
                front=True,
            )

    async def _undelivered(
        self,
        session: AsyncSession,
        delivery: TicketDelivery,
        ticket: Ticket,
        failure: SendFailure,
        dead: bool,
        now: datetime,
    ) -> None:
        """A staff reply did not reach the customer: mark it and say so in the topic, under the
        staff member's message."""
        desk = self.desk
        ids = delivery.payload.get("messages") or (
            [delivery.ticket_message_id] if delivery.ticket_message_id else []
        )
        items = await messages_by_id(session, list(ids))
        for item in items:
            item.state = UNDELIVERED
        if failure.unreachable:
            reason = desk.staff_text("ticket_reason_blocked")
        elif dead:
            reason = desk.staff_text("ticket_reason_gave_up")
        else:
            reason = desk.staff_text("ticket_reason_failed", error=failure.description[:200])
        reply_to = items[0].chat_message_id if items and items[0].kind != "canned" else None
        await push_delivery(
            session,
            ticket,
            lanes.TOPIC,
            TEXT,
            now,
            payload={
                "html": desk.staff_text("ticket_undelivered", reason=reason),
                "reply_to": reply_to,
            },
        )


async def recover_one(
    session: AsyncSession,
    desk: Desk,
    delivery_id: int,
    row: Outbox | None,
    now: datetime,
    read_failure: FailureReader,
) -> bool:
    """A delivery whose outbox row ended without its hook (the hook raised, or an operator
    cancelled the row): replay what the row says happened, so the lane goes on. What it says of
    a failure is its stored text, read back by ``read_failure`` (the dispatcher's
    ``stored_failure``)."""
    hooks = DeliveryHooks(desk)
    if row is None:
        message = OutboxMessage(
            id=0,
            dedupe_key="",
            customer_id=None,
            chat_id=0,
            kind=KIND_TOPIC,
            payload=from_json({"delivery": delivery_id}),
            priority=int(Priority.REPLY),
            transactional=True,
            due_at=now,
            attempts=0,
            care_day=None,
        )
        return await hooks.failed(
            session, message, SendFailure(Reason.UNKNOWN, "outbox row gone"), dead=True, now=now
        )
    message = outbox_queries.message_of(row)
    if row.state == outbox_queries.State.SENT:
        ids = [row.telegram_message_id] if row.telegram_message_id is not None else []
        return await hooks.sent(session, message, ids, now)
    failed_for_good = row.state == outbox_queries.State.FAILED
    return await hooks.failed(
        session,
        message,
        read_failure(row.last_error or row.state, failed_for_good),
        dead=not failed_for_good,
        now=now,
    )


async def resume_lane(
    session: AsyncSession, desk: Desk, ticket_id: int, lane: str, now: datetime
) -> bool:
    """Queue the next window of a lane nothing is pumping (``lanes.idle_lanes``); True when
    something was queued."""
    ticket = await lock_ticket(session, ticket_id)
    if ticket is None:
        return False
    return await pump(session, desk, ticket, lane, now)


def hooks_by_kind(desk: Desk) -> dict[str, DeliveryHooks]:
    """The dispatcher's hooks for the ticket lanes' outbox kinds."""
    hooks = DeliveryHooks(desk)
    return {kind: hooks for kind in OUTBOX_KINDS}
