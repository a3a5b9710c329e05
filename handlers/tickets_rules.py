"""The ticket desk, free of Telegram: opening tickets, relaying both ways, the topic's life.

Used by the complaint flow, the staff commands, the knowledge base's hand-off, the SLA planner
and, through ``DeliveryHooks``, by the outbox dispatcher.

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

import html
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from bot.kernel.config import PRIORITIES, Rules, TicketRules
from bot.kernel.replies import Alert, Reply
from bot.kernel.texts import Markup, Texts
from storage import outbox as outbox_queries
from storage import tickets as q
from storage.models import Customer, Outbox, Ticket, TicketDelivery, TicketMessage
from storage.outbox import OutboxMessage, Priority
from surveys import queries as survey_queries

logger = logging.getLogger(__name__)

KIND_TOPIC = "ticket.topic"
KIND_CUSTOMER = "ticket.reply"
KIND_ESCALATION = "ticket.escalation"
OUTBOX_KINDS = (KIND_TOPIC, KIND_CUSTOMER)
"""Outbox kinds whose results come back through ``DeliveryHooks``."""

CAPTION_LIMIT = 1024
MAX_TRIES = 5
CREATE_RETRY_AFTER = timedelta(minutes=5)
STRANDED_AFTER = timedelta(minutes=1)
BAN_NOTICE_EVERY = timedelta(hours=24)
SUMMARY_TEXT = 120
TOPIC_TITLE_LIMIT = 128

# Callback data: staff buttons tk:<ticket>:<action>[:<arg>], the customer's tr:<ticket>:yes|no.
CB_TICKET = "tk:"
CB_RESOLUTION = "tr:"

# Delivery actions.
CREATE_TOPIC = "create_topic"
TITLE = "title"
CLOSE_TOPIC = "close_topic"
REOPEN_TOPIC = "reopen_topic"
CARD = "card"
SUMMARY = "summary"
TEXT = "text"
COPY = "copy"
ALBUM = "album"
EDIT = "edit"
NOTICE = "notice"
CANNED = "canned"
TOPIC_ACTIONS = (TITLE, CLOSE_TOPIC, REOPEN_TOPIC)

SOURCE_COMPLAINT = "complaint"
SOURCE_QUESTION = "question"
SOURCE_FOLLOW_UP = "follow_up"


@dataclass(frozen=True)
class Desk:
    """What the desk needs from the configuration, built once by the composition root."""

    rules: TicketRules
    texts: Texts
    staff_chat_id: int | None
    currency: str = "CNY"
    zone: str = "Asia/Shanghai"

    @classmethod
    def from_rules(cls, rules: Rules, texts: Texts, staff_chat_id: int | None) -> Desk:
        return cls(
            rules=rules.tickets,
            texts=texts,
            staff_chat_id=staff_chat_id,
            currency=rules.tiers.orders.currency,
            zone=rules.tiers.orders.timezone,
        )

    @property
    def staff_language(self) -> str:
        return self.rules.relay.staff_language

    def staff_text(self, key: str, **params: Any) -> str:
        """A text for the staff group, in its language."""
        return self.texts.render(self.staff_language, key, **params)

    def when(self, moment: datetime | None) -> str:
        """A moment as staff read it: shop time, minutes."""
        if moment is None:
            return "—"
        return moment.astimezone(ZoneInfo(self.zone)).strftime("%Y-%m-%d %H:%M")

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
        """A ticket for what a survey brought up (``surveys.desk.Desk``): opened (or the open
        one), then ``text`` in its topic; its id."""
        ticket, _ = await open_ticket(
            session, self, customer, source=source, category=category, now=now, subject=subject
        )
        await push_topic_text(session, self, ticket, text, now)
        return ticket.id


@dataclass(frozen=True)
class Incoming:
    """A message someone sent (a customer in private, staff in a topic), as plain values."""

    chat_id: int
    message_id: int
    kind: str
    text: str | None = None
    html: str | None = None
    media_group_id: str | None = None
    file_id: str | None = None


@dataclass(frozen=True)
class Staff:
    """A staff member acting in the group."""

    user_id: int
    name: str
    username: str | None = None

    @property
    def mention(self) -> str:
        return f'<a href="tg://user?id={self.user_id}">{html.escape(self.name)}</a>'


@dataclass(frozen=True)
class StaffReply:
    """What the bot answers staff in the topic (already in the staff language): a message, or a
    toast for a pressed button; ``replace`` edits the message whose button was pressed."""

    text: str
    buttons: list[list[tuple[str, str]]] = field(default_factory=list)
    alert: bool = False
    replace: bool = False


# --- texts for staff ---------------------------------------------------------------------------


def category_label(desk: Desk, code: str, language: str) -> str:
    category = desk.rules.category(code)
    if category is not None:
        return category.label(language)
    if code == SOURCE_QUESTION:
        return desk.texts.render(language, "ticket_category_question")
    return code


def status_label(desk: Desk, status: str) -> str:
    return desk.staff_text(f"ticket_status_{status}")


def priority_label(desk: Desk, priority: int) -> str:
    return desk.staff_text(f"ticket_priority_{PRIORITIES[max(0, min(priority, 3))]}")


def tier_label(tier: str) -> str:
    return tier.upper() if len(tier) <= 4 else tier.capitalize()


def topic_title(desk: Desk, ticket: Ticket, customer: Customer | None) -> str:
    """Ticket number, tier, status and customer, as the topic is named (at most 128); only the
    number once the customer has erased their data (``/forget``)."""
    if customer is not None and customer.erased_at is not None:
        return ticket.number
    name = (customer.name if customer else None) or desk.staff_text("ticket_anonymous")
    title = desk.staff_text(
        "ticket_topic_title",
        number=ticket.number,
        tier=tier_label(ticket.tier),
        status=status_label(desk, ticket.status),
        name=Markup(name),
    )
    return title[:TOPIC_TITLE_LIMIT]


def _money(desk: Desk, cents: int) -> str:
    return f"{cents / 100:,.2f} {desk.currency}"


async def card_text(session: AsyncSession, desk: Desk, ticket: Ticket) -> str:
    """The customer card: who they are, what they bought, their tickets; then this ticket."""
    customer = await session.get(Customer, ticket.customer_id)
    orders = await q.order_summary(session, ticket.customer_id)
    earlier = await q.recent_tickets(session, ticket.customer_id, limit=5, exclude=ticket.id)
    language = customer.language if customer else desk.staff_language
    lines = [
        desk.staff_text(
            "ticket_card_head",
            number=ticket.number,
            category=category_label(desk, ticket.category, desk.staff_language),
            status=status_label(desk, ticket.status),
        ),
        desk.staff_text(
            "ticket_card_work",
            priority=priority_label(desk, ticket.priority),
            assignee=ticket.assignee_name or desk.staff_text("ticket_nobody"),
        ),
        desk.staff_text(
            "ticket_card_sla",
            first_response=desk.when(ticket.first_response_due),
            resolution=desk.when(ticket.resolution_due),
        ),
    ]
    if ticket.order_ref:
        lines.append(desk.staff_text("ticket_card_order", order=ticket.order_ref))
    if ticket.subject:
        lines.append(desk.staff_text("ticket_card_subject", subject=ticket.subject))
    lines.append(
        desk.staff_text(
            "ticket_card_customer",
            name=(customer.name if customer else None) or desk.staff_text("ticket_anonymous"),
            language=desk.texts.render(language, "language_name"),
            tier=tier_label(ticket.tier),
            stage=customer.stage if customer else "—",
        )
    )
    lines.append(
        desk.staff_text(
            "ticket_card_orders", count=orders.count, spend=_money(desk, orders.spend_cents)
        )
    )
    if earlier:
        items = ", ".join(
            desk.staff_text(
                "ticket_card_ticket_item",
                number=other.number,
                status=status_label(desk, other.status),
                date=desk.when(other.opened_at)[:10],
            )
            for other in earlier
        )
        lines.append(desk.staff_text("ticket_card_tickets", tickets=Markup(items)))
    else:
        lines.append(desk.staff_text("ticket_card_no_tickets"))
    lines.append(await _survey_scores(session, desk, ticket.customer_id))
    return "\n".join(lines)


async def _survey_scores(session: AsyncSession, desk: Desk, customer_id: int) -> str:
    """The card's line of the customer's latest survey scores."""
    scores = await survey_queries.card_scores(session, customer_id)
    if not scores:
        return desk.staff_text("survey_card_no_scores")
    items = ", ".join(
        desk.staff_text(
            "survey_card_score_item",
            survey=line.survey_id,
            dimension=line.dimension or "",
            score=f"{line.score}/{5 if line.kind == 'scale' else 10}",
            date=desk.when(line.answered_at)[:10],
        )
        for line in scores
    )
    return desk.staff_text("survey_card_scores", scores=Markup(items))


def card_buttons(desk: Desk, ticket: Ticket) -> list[list[tuple[str, str]]]:
    """Claim, close, and the four priorities (the current one marked)."""
    prefix = f"{CB_TICKET}{ticket.id}:"
    return [
        [
            (desk.staff_text("ticket_button_claim"), f"{prefix}claim"),
            (desk.staff_text("ticket_button_close"), f"{prefix}close"),
        ],
        [
            (
                ("• " if level == ticket.priority else "") + priority_label(desk, level),
                f"{prefix}priority:{level}",
            )
            for level in range(len(PRIORITIES))
        ],
    ]


def _outbox_buttons(rows: list[list[tuple[str, str]]]) -> list[list[dict[str, str]]]:
    return [[{"text": label, "data": data} for label, data in row] for row in rows]


async def staff_card(session: AsyncSession, desk: Desk, ticket: Ticket) -> StaffReply:
    """The card as an answer to ``/card`` or a pressed card button."""
    return StaffReply(await card_text(session, desk, ticket), card_buttons(desk, ticket))


# --- opening -----------------------------------------------------------------------------------


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
    complaint's description), in order. Two concurrent openings for one customer make one
    ticket: the unique ``open_customer_id`` decides.
    """
    existing = await q.open_ticket_of(session, customer.id)
    if existing is not None:
        return existing, False
    numbers = desk.rules.numbers
    prefix = numbers.question if source == SOURCE_QUESTION else numbers.complaint
    target = desk.rules.sla.target(customer.tier)
    ticket_id = await q.insert_ticket(
        session,
        {
            "customer_id": customer.id,
            "open_customer_id": customer.id,
            "source": source,
            "category": category,
            "order_id": order_id,
            "order_ref": order_ref,
            "subject": subject[:500] if subject else None,
            "status": q.OPEN,
            "priority": desk.rules.priority_of(customer.tier, category),
            "tier": customer.tier,
            "topic_closed": False,
            "opened_at": now,
            "first_response_due": now + timedelta(minutes=target.first_response_minutes),
            "resolution_due": now + timedelta(hours=target.resolution_hours),
            "reopen_count": 0,
            "lock_version": 0,
            "updated_at": now,
        },
    )
    if ticket_id is None:  # somebody else opened one a moment ago
        existing = await q.open_ticket_of(session, customer.id)
        if existing is None:  # pragma: no cover - the winner cannot vanish before commit
            raise RuntimeError("the concurrent ticket vanished")
        return existing, False
    ticket = await q.lock_ticket(session, ticket_id)
    assert ticket is not None
    ticket.number = f"{prefix}-{await q.next_number(session, prefix):0{numbers.digits}d}"
    await _event(session, ticket, "opened", now)
    await _push(session, ticket, q.TOPIC, CREATE_TOPIC, now)
    await _push(session, ticket, q.TOPIC, CARD, now)
    for item in items:
        message = await _store_message(session, ticket, item, now)
        await _queue_to_topic(session, desk, ticket, message, now, album_grace=False)
    await pump(session, desk, ticket, q.TOPIC, now)
    return ticket, True


async def add_customer_items(
    session: AsyncSession, desk: Desk, ticket: Ticket, items: Sequence[Incoming], now: datetime
) -> None:
    """Attach messages to a ticket at once (a complaint filed while another ticket opened)."""
    locked = await q.lock_ticket(session, ticket.id)
    assert locked is not None
    for item in items:
        message = await _store_message(session, locked, item, now)
        await _queue_to_topic(session, desk, locked, message, now, album_grace=False)
    await pump(session, desk, locked, q.TOPIC, now)


async def _event(
    session: AsyncSession, ticket: Ticket, what: str, now: datetime, staff: Staff | None = None
) -> None:
    await q.add_message(
        session,
        ticket_id=ticket.id,
        direction=q.EVENT,
        author_user_id=staff.user_id if staff else None,
        author_name=staff.name if staff else None,
        kind="event",
        text=what,
        state=q.KEPT,
        created_at=now,
    )


async def _store_message(
    session: AsyncSession,
    ticket: Ticket,
    item: Incoming,
    now: datetime,
    state: str = q.QUEUED,
    staff: Staff | None = None,
) -> TicketMessage:
    """A message the customer (or, with ``staff``, a staff member) sent into the ticket."""
    return await q.add_message(
        session,
        ticket_id=ticket.id,
        direction=q.OUT if staff else q.IN,
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


# --- the customer writes -----------------------------------------------------------------------


async def relay_from_customer(
    session: AsyncSession, desk: Desk, customer: Customer, item: Incoming, now: datetime
) -> list[Reply] | None:
    """A customer's message (text or media) outside any flow: attached to their open ticket
    (reopening a recently closed one, or opening a follow-up) and copied into its topic.

    Returns what to tell the customer (usually nothing), or None when there is no ticket for
    the message: the caller answers it as usual (the knowledge base).
    """
    reopen = desk.rules.reopen
    closed_since = now - max(
        timedelta(hours=reopen.window_hours), timedelta(days=reopen.follow_up_days)
    )
    if not await q.may_take_message(session, customer.id, closed_since):
        return None
    ban = await q.get_ban(session, customer.id)
    ticket = await q.open_ticket_of(session, customer.id)
    replies: list[Reply] = []
    if ticket is None:
        if ban is not None:
            return None
        ticket, replies = await _reopen_or_follow_up(session, desk, customer, now)
        if ticket is None:
            return None
    locked = await q.lock_ticket(session, ticket.id)
    assert locked is not None
    ticket = locked
    if ban is not None:
        await _store_message(session, ticket, item, now, state=q.BANNED)
        if ban.notified_at is None or ban.notified_at <= now - BAN_NOTICE_EVERY:
            ban.notified_at = now
            return [Reply("ticket_banned_notice", customer.language)]
        return []
    flood = desk.rules.flood
    recent = await q.count_inbound_since(
        session, ticket.id, now - timedelta(seconds=flood.per_seconds)
    )
    if recent >= flood.max_messages:
        await _store_message(session, ticket, item, now, state=q.THROTTLED)
        noticed = ticket.flood_noticed_at
        if noticed is None or noticed <= now - timedelta(seconds=flood.per_seconds):
            ticket.flood_noticed_at = now
            replies.append(Reply("ticket_flood_notice", customer.language))
        return replies
    message = await _store_message(session, ticket, item, now)
    await _queue_to_topic(session, desk, ticket, message, now, album_grace=True)
    await pump(session, desk, ticket, q.TOPIC, now)
    if ticket.status == q.WAITING_CUSTOMER:
        await _set_status(session, desk, ticket, q.WAITING_STAFF, now)
    ticket.updated_at = now
    return replies


async def _reopen_or_follow_up(
    session: AsyncSession, desk: Desk, customer: Customer, now: datetime
) -> tuple[Ticket | None, list[Reply]]:
    """The customer has no open ticket: reopen their last one if it closed recently, open a
    follow-up if it closed a while ago, else nothing."""
    last = await q.last_closed_ticket(session, customer.id)
    if last is None or last.closed_at is None:
        return None, []
    rules = desk.rules.reopen
    if last.closed_at >= now - timedelta(hours=rules.window_hours):
        ticket = await q.lock_ticket(session, last.id)
        assert ticket is not None
        await _reopen(session, desk, ticket, now, event="reopened_by_customer")
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
            Reply("ticket_follow_up_opened", customer.language, {"number": ticket.number})
        ]
    return None, []


async def relay_customer_edit(
    session: AsyncSession, desk: Desk, customer: Customer, item: Incoming, now: datetime
) -> bool:
    """The customer edited a message that is part of a ticket: the new text goes into the
    topic marked as edited, replying to the copy; the original stays in the history."""
    found = await q.ticket_of_customer_message(session, customer.id, item.message_id)
    if found is None:
        return False
    ticket = await q.lock_ticket(session, found.ticket_id)
    original = await q.get_message(session, found.id)  # read again under the lock
    assert ticket is not None and original is not None
    edit = await q.add_message(
        session,
        ticket_id=ticket.id,
        direction=q.IN,
        kind=item.kind,
        text=item.text,
        html=item.html,
        media_file_id=item.file_id,
        chat_message_id=item.message_id,
        edit_of_id=original.id,
        state=q.QUEUED if ticket.status != q.CLOSED else q.KEPT,
        created_at=now,
    )
    if ticket.status == q.CLOSED or original.state not in (q.QUEUED, q.RELAYED):
        return True
    await _push(session, ticket, q.TOPIC, EDIT, now, message=edit)
    await pump(session, desk, ticket, q.TOPIC, now)
    return True


# --- staff write -------------------------------------------------------------------------------


async def staff_reply(
    session: AsyncSession, desk: Desk, ticket: Ticket, staff: Staff, item: Incoming, now: datetime
) -> StaffReply | None:
    """A staff member wrote in the topic: the message goes to the customer (media too),
    prefixed with their name if configured. A message starting with ``!`` is a note."""
    if (item.text or "").startswith("!"):
        await add_note(session, ticket, staff, item, now)
        return None
    if ticket.status == q.CLOSED:
        return StaffReply(desk.staff_text("ticket_is_closed"))
    message = await _store_message(session, ticket, item, now, staff=staff)
    await _staff_responded(session, desk, ticket, now)
    await _queue_to_customer(session, desk, ticket, message, now)
    await pump(session, desk, ticket, q.CUSTOMER, now)
    await pump(session, desk, ticket, q.TOPIC, now)
    return None


async def _staff_responded(
    session: AsyncSession, desk: Desk, ticket: Ticket, now: datetime
) -> None:
    if ticket.first_response_at is None:
        ticket.first_response_at = now
    if ticket.status in (q.OPEN, q.WAITING_STAFF):
        await _set_status(session, desk, ticket, q.WAITING_CUSTOMER, now)
    ticket.updated_at = now


async def add_note(
    session: AsyncSession, ticket: Ticket, staff: Staff, item: Incoming, now: datetime
) -> None:
    """An internal note: kept in the history, never relayed."""
    text = item.text or ""
    await q.add_message(
        session,
        ticket_id=ticket.id,
        direction=q.NOTE,
        author_user_id=staff.user_id,
        author_name=staff.name,
        kind=item.kind,
        text=text.removeprefix("!").strip() if text.startswith("!") else text,
        html=item.html,
        media_file_id=item.file_id,
        chat_message_id=item.message_id,
        state=q.KEPT,
        created_at=now,
    )


async def relay_staff_edit(
    session: AsyncSession, desk: Desk, ticket: Ticket, item: Incoming, now: datetime
) -> None:
    """Staff edited a reply: the customer gets the new text marked as edited."""
    original = await q.find_original(session, ticket.id, q.OUT, item.message_id)
    if original is None or ticket.status == q.CLOSED:
        return
    edit = await q.add_message(
        session,
        ticket_id=ticket.id,
        direction=q.OUT,
        author_user_id=original.author_user_id,
        author_name=original.author_name,
        kind=item.kind,
        text=item.text,
        html=item.html,
        chat_message_id=item.message_id,
        edit_of_id=original.id,
        state=q.QUEUED,
        created_at=now,
    )
    await _push(session, ticket, q.CUSTOMER, EDIT, now, message=edit)
    await pump(session, desk, ticket, q.CUSTOMER, now)


async def claim(
    session: AsyncSession, desk: Desk, ticket: Ticket, staff: Staff, now: datetime
) -> StaffReply:
    if ticket.status == q.CLOSED:
        return StaffReply(desk.staff_text("ticket_already_closed"), alert=True)
    ticket.assignee_user_id, ticket.assignee_name = staff.user_id, staff.name
    ticket.updated_at = now
    await _event(session, ticket, "claimed", now, staff)
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
    if ticket.status == q.CLOSED:
        return StaffReply(desk.staff_text("ticket_already_closed"))
    if assignee is not None and not assignee_is_staff:
        return StaffReply(desk.staff_text("ticket_assign_not_staff", name=assignee.name))
    if assignee is None and username:
        member = await q.staff_by_username(session, username)
        if member is None:
            return StaffReply(
                desk.staff_text("ticket_assign_unknown", username=username.lstrip("@"))
            )
        assignee = Staff(member.user_id, member.name.split(" ")[0], member.username)
    if assignee is None:
        return StaffReply(desk.staff_text("ticket_assign_usage"))
    ticket.assignee_user_id, ticket.assignee_name = assignee.user_id, assignee.name
    ticket.updated_at = now
    await _event(session, ticket, f"assigned:{assignee.user_id}", now, staff)
    return StaffReply(
        desk.staff_text("ticket_assigned", name=Markup(assignee.mention), by=staff.name)
    )


async def set_priority(
    session: AsyncSession, desk: Desk, ticket: Ticket, staff: Staff, level: int, now: datetime
) -> StaffReply:
    if ticket.status == q.CLOSED:
        return StaffReply(desk.staff_text("ticket_already_closed"), alert=True)
    if not 0 <= level < len(PRIORITIES):
        return StaffReply(desk.staff_text("ticket_button_stale"), alert=True)
    ticket.priority = level
    ticket.updated_at = now
    await _event(session, ticket, f"priority:{level}", now, staff)
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
    if ticket.status == q.CLOSED:
        return StaffReply(desk.staff_text("ticket_already_closed"), alert=True)
    if ticket.status == q.RESOLVED:
        return StaffReply(desk.staff_text("ticket_already_resolved"), alert=True)
    ticket.resolved_at = now
    await _set_status(session, desk, ticket, q.RESOLVED, now)
    await _event(session, ticket, "resolved", now, staff)
    await _push(
        session,
        ticket,
        q.CUSTOMER,
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
    await pump(session, desk, ticket, q.CUSTOMER, now)
    await pump(session, desk, ticket, q.TOPIC, now)
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
    ticket = await q.lock_ticket(session, int(ticket_id)) if ticket_id.isdigit() else None
    customer = await session.get(Customer, ticket.customer_id) if ticket else None
    language = customer.language if customer else "en"
    if (
        ticket is None
        or customer is None
        or customer.telegram_user_id != user_id
        or ticket.status != q.RESOLVED
        or answer not in ("yes", "no")
    ):
        return Alert("button_expired", language)
    if answer == "yes":
        await ticket_closed(session, desk, ticket, now, "ticket_customer_confirmed")
        return Reply(
            "ticket_closed_thanks", language, {"number": ticket.number}, replace_message=True
        )
    ticket.resolved_at = None
    await _set_status(session, desk, ticket, q.WAITING_STAFF, now)
    await _event(session, ticket, "not_resolved", now)
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
    await _set_status(session, desk, ticket, q.CLOSED, now)
    await _event(session, ticket, "closed", now)
    hours = desk.rules.reopen.auto_close_resolved_hours
    await _push(
        session,
        ticket,
        q.TOPIC,
        TEXT,
        now,
        payload={"html": desk.staff_text(reason_key, hours=hours)},
    )
    await _push(session, ticket, q.TOPIC, CLOSE_TOPIC, now)
    await pump(session, desk, ticket, q.TOPIC, now)


async def reopen(
    session: AsyncSession, desk: Desk, ticket: Ticket, staff: Staff, now: datetime
) -> StaffReply:
    """``/reopen`` of a resolved or closed ticket; the customer is told."""
    if ticket.status not in (q.RESOLVED, q.CLOSED):
        return StaffReply(desk.staff_text("ticket_not_closed"))
    if ticket.status == q.CLOSED:
        other = await q.open_ticket_of(session, ticket.customer_id)
        if other is not None:
            return StaffReply(desk.staff_text("ticket_reopen_conflict", number=other.number))
    await _reopen(session, desk, ticket, now, event="reopened", staff=staff)
    await _push(
        session,
        ticket,
        q.CUSTOMER,
        NOTICE,
        now,
        payload={"key": "ticket_reopened_notice", "params": {"number": ticket.number}},
    )
    await pump(session, desk, ticket, q.CUSTOMER, now)
    return StaffReply(desk.staff_text("ticket_reopened_staff", name=staff.name))


async def _reopen(
    session: AsyncSession,
    desk: Desk,
    ticket: Ticket,
    now: datetime,
    *,
    event: str,
    staff: Staff | None = None,
) -> None:
    if ticket.status == q.CLOSED:  # the topic opens first, then it is renamed
        await _push(session, ticket, q.TOPIC, REOPEN_TOPIC, now)
    ticket.open_customer_id = ticket.customer_id
    ticket.closed_at = None
    ticket.resolved_at = None
    ticket.reopened_at = now
    ticket.reopen_count += 1
    await _set_status(session, desk, ticket, q.WAITING_STAFF, now)
    await _event(session, ticket, event, now, staff)
    await pump(session, desk, ticket, q.TOPIC, now)


async def send_canned(
    session: AsyncSession, desk: Desk, ticket: Ticket, staff: Staff, code: str, now: datetime
) -> StaffReply:
    """A canned reply picked under ``/canned``: sent in the customer's language."""
    reply = desk.rules.canned_reply(code)
    if reply is None:
        return StaffReply(desk.staff_text("ticket_button_stale"), alert=True)
    if ticket.status == q.CLOSED:
        return StaffReply(desk.staff_text("ticket_already_closed"), alert=True)
    message = await q.add_message(
        session,
        ticket_id=ticket.id,
        direction=q.OUT,
        author_user_id=staff.user_id,
        author_name=staff.name,
        kind="canned",
        text=code,
        state=q.QUEUED,
        created_at=now,
    )
    await _staff_responded(session, desk, ticket, now)
    await _push(session, ticket, q.CUSTOMER, CANNED, now, message=message, payload={"code": code})
    await pump(session, desk, ticket, q.CUSTOMER, now)
    await pump(session, desk, ticket, q.TOPIC, now)
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
    if not await q.ban(
        session, ticket.customer_id, by_user_id=staff.user_id, by_name=staff.name, now=now
    ):
        return StaffReply(desk.staff_text("ticket_ban_already"))
    await _event(session, ticket, "banned", now, staff)
    return StaffReply(desk.staff_text("ticket_banned_staff", name=staff.name))


async def unban_customer(
    session: AsyncSession, desk: Desk, ticket: Ticket, staff: Staff, now: datetime
) -> StaffReply:
    if not await q.unban(session, ticket.customer_id):
        return StaffReply(desk.staff_text("ticket_unban_none"))
    await _event(session, ticket, "unbanned", now, staff)
    return StaffReply(desk.staff_text("ticket_unbanned_staff", name=staff.name))


async def _set_status(
    session: AsyncSession, desk: Desk, ticket: Ticket, status: str, now: datetime
) -> None:
    """Change the status; the topic's title follows. Back-and-forth between "waiting for us"
    and "waiting for the customer" renames after ``relay.title_delay_seconds`` (the changes of
    a lively conversation add up to one rename, or none), the others at once."""
    if ticket.status == status:
        return
    ticket.status = status
    ticket.updated_at = now
    await _retitle(
        session, desk, ticket, now, soon=status in (q.WAITING_STAFF, q.WAITING_CUSTOMER)
    )


async def _retitle(
    session: AsyncSession, desk: Desk, ticket: Ticket, now: datetime, *, soon: bool
) -> None:
    """Queue a rename of the topic in its own lane (renames never hold up a relay)."""
    delay = desk.rules.relay.title_delay_seconds if soon else 0
    pending = await q.open_deliveries(session, ticket.id, q.TITLE, TITLE)
    queued = [delivery for delivery in pending if delivery.state == q.D_QUEUED]
    waiting = [delivery for delivery in pending if delivery.state == q.D_OUTBOX]
    if waiting and ticket.topic_thread_id is not None:
        # A rename still waits in the outbox: it takes the title of now (and goes at once if
        # this change should be seen at once).
        row = waiting[-1]
        customer = await session.get(Customer, ticket.customer_id)
        payload = {
            "topic": {"action": "edit", "name": topic_title(desk, ticket, customer)},
            "thread_id": ticket.topic_thread_id,
            "delivery": row.id,
            "ticket": ticket.id,
        }
        due = None if delay else now
        if await q.replace_pending_payload(session, _dedupe_key(row), payload, due_at=due):
            return
    if queued:  # it will be built with the title of its moment
        if not delay:
            queued[-1].not_before = None
        return
    later = now + timedelta(seconds=delay) if delay else None
    await _push(session, ticket, q.TITLE, TITLE, now, not_before=later)
    await pump(session, desk, ticket, q.TITLE, now)


async def push_topic_text(
    session: AsyncSession, desk: Desk, ticket: Ticket, text_html: str, now: datetime
) -> None:
    """A message from the bot into the ticket's topic (reminders, notices), in order."""
    await _push(session, ticket, q.TOPIC, TEXT, now, payload={"html": text_html})
    await pump(session, desk, ticket, q.TOPIC, now)


# --- queueing ----------------------------------------------------------------------------------


async def _push(
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
    return await q.add_delivery(
        session,
        ticket_id=ticket.id,
        lane=lane,
        action=action,
        ticket_message_id=message.id if message else None,
        payload=payload or {},
        front=front,
        state=q.D_QUEUED,
        tries=0,
        not_before=not_before,
        created_at=now,
        updated_at=now,
    )


def _caption_too_long(message: TicketMessage) -> bool:
    return message.kind != "text" and len(message.text or "") > CAPTION_LIMIT


async def _queue_to_topic(
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
        session, desk, ticket, q.TOPIC, message, now, album_grace=album_grace
    ):
        return
    if _caption_too_long(message):
        await _push(session, ticket, q.TOPIC, COPY, now, message=message, payload={"bare": True})
        await _push(
            session,
            ticket,
            q.TOPIC,
            TEXT,
            now,
            payload={"html": desk.staff_text("ticket_caption_overflow", text=message.text or "")},
        )
        return
    await _push(session, ticket, q.TOPIC, COPY, now, message=message)


async def _queue_to_customer(
    session: AsyncSession, desk: Desk, ticket: Ticket, message: TicketMessage, now: datetime
) -> None:
    """Queue a staff message for the customer: text, a media copy, or an album."""
    if message.media_group_id and await _join_album(
        session, desk, ticket, q.CUSTOMER, message, now, album_grace=True
    ):
        return
    if message.kind == "text":
        await _push(session, ticket, q.CUSTOMER, TEXT, now, message=message)
    elif _caption_too_long(message):
        await _push(
            session, ticket, q.CUSTOMER, COPY, now, message=message, payload={"bare": True}
        )
        await _push(session, ticket, q.CUSTOMER, TEXT, now, message=message)
    else:
        await _push(session, ticket, q.CUSTOMER, COPY, now, message=message)


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
        for delivery in await q.open_deliveries(session, ticket.id, lane, ALBUM)
        if delivery.payload.get("group") == group
    ]
    if albums:
        album = albums[-1]
        messages = [*album.payload.get("messages", []), message.id]
        if len(messages) > 10:
            return False
        payload = {**album.payload, "messages": messages}
        if album.state == q.D_QUEUED:
            album.payload = payload
            album.updated_at = now
            return True
        # In the outbox already: extend the row while it still waits for the album's grace.
        built = await _build(session, desk, ticket, album, now, override=payload)
        if built is not None and await q.replace_pending_payload(
            session, _dedupe_key(album), {**built[1], "delivery": album.id, "ticket": ticket.id}
        ):
            album.payload = payload
            album.updated_at = now
            return True
        return False
    grace = desk.rules.relay.album_grace_seconds if album_grace else 0.0
    await _push(
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


def _dedupe_key(delivery: TicketDelivery, tries: int | None = None) -> str:
    """The outbox key of a delivery's attempt (its latest unless ``tries`` is given)."""
    return f"tk:{delivery.id}:{delivery.tries if tries is None else tries}"


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
    tickets = await q.erase_customer_tickets(session, customer_id)
    deliveries = await q.deliveries_of(session, [ticket.id for ticket in tickets])
    carrying = [
        delivery
        for delivery in deliveries
        if delivery.state in (q.D_QUEUED, q.D_OUTBOX)
        and (delivery.lane == q.CUSTOMER or delivery.action not in KEPT_ON_ERASURE)
    ]
    cancelled = await outbox_queries.cancel_erased(
        session,
        now=now,
        dedupe_keys=[_dedupe_key(d) for d in carrying if d.state == q.D_OUTBOX],
    )
    for delivery in carrying:
        if delivery.state == q.D_QUEUED or _dedupe_key(delivery) in cancelled:
            _finish(delivery, q.D_SKIPPED, now, error="erased")
    await outbox_queries.erase_payloads(
        session,
        dedupe_keys=[
            _dedupe_key(delivery, tries)
            for delivery in deliveries
            for tries in range(1, delivery.tries + 1)
        ],
    )
    for delivery in deliveries:
        if delivery.state != q.D_OUTBOX:  # one on the wire keeps what its outcome needs
            delivery.payload = {}
    for ticket in tickets:
        if ticket.status != q.CLOSED:  # the rename comes with the closing
            await ticket_closed(session, desk, ticket, now, "ticket_customer_forgot")
            continue
        if ticket.topic_thread_id is not None:
            await _push(session, ticket, q.TITLE, TITLE, now)
            await pump(session, desk, ticket, q.TITLE, now)
        await pump(session, desk, ticket, q.TOPIC, now)


async def pump(
    session: AsyncSession, desk: Desk, ticket: Ticket, lane: str, now: datetime
) -> bool:
    """Put the lane's next delivery into the outbox unless one is there already; True if one
    was queued. Deliveries with nothing left to do (a rename to the current title, say) are
    skipped; a lane that needs a topic that does not exist gets its creation put in front."""
    if lane != q.CUSTOMER and desk.staff_chat_id is None:
        return False
    for _ in range(200):
        delivery = await q.lane_head(session, ticket.id, lane)
        if delivery is None or delivery.state == q.D_OUTBOX:
            return False
        if (
            lane != q.CUSTOMER
            and ticket.topic_thread_id is None
            and delivery.action != CREATE_TOPIC
        ):
            if delivery.action in TOPIC_ACTIONS:  # nothing to rename, close or reopen
                _finish(delivery, q.D_SKIPPED, now)
                continue
            if not await _recreate_topic(session, ticket, now):
                return False
            continue
        built = await _build(session, desk, ticket, delivery, now)
        if built is None:
            _finish(delivery, q.D_SKIPPED, now)
            continue
        chat_id, payload = built
        delivery.tries += 1
        delivery.state = q.D_OUTBOX
        delivery.updated_at = now
        due = max(now, delivery.not_before) if delivery.not_before else now
        await outbox_queries.enqueue(
            session,
            dedupe_key=_dedupe_key(delivery),
            chat_id=chat_id,
            kind=KIND_CUSTOMER if lane == q.CUSTOMER else KIND_TOPIC,
            payload={**payload, "delivery": delivery.id, "ticket": ticket.id},
            due_at=due,
            now=now,
            customer_id=ticket.customer_id if lane == q.CUSTOMER else None,
            priority=Priority.REPLY,
            transactional=True,
        )
        return True
    logger.error("ticket %s: lane %s skipped too many deliveries at once", ticket.id, lane)
    return False


def _finish(delivery: TicketDelivery, state: str, now: datetime, error: str | None = None) -> None:
    delivery.state = state
    delivery.updated_at = now
    if error is not None:
        delivery.error = error[:300]


async def _recreate_topic(session: AsyncSession, ticket: Ticket, now: datetime) -> bool:
    """Queue the topic's creation (with the card and a history summary when there is history)
    in front of the lane; False while a creation that failed for good is recent."""
    latest = await q.latest_delivery(session, ticket.id, q.TOPIC, CREATE_TOPIC)
    if latest is not None and latest.state == q.D_QUEUED:
        latest.front = True
        return True
    if (
        latest is not None
        and latest.state == q.D_FAILED
        and latest.updated_at > now - CREATE_RETRY_AFTER
    ):
        logger.warning("ticket %s: its topic cannot be created; waiting", ticket.id)
        return False
    await _push(session, ticket, q.TOPIC, CREATE_TOPIC, now, front=True)
    await _push(session, ticket, q.TOPIC, CARD, now, front=True)
    if latest is not None:  # there was a topic before: staff need the history
        await _push(session, ticket, q.TOPIC, SUMMARY, now, front=True)
    return True


# --- building what the dispatcher sends --------------------------------------------------------


async def _build(
    session: AsyncSession,
    desk: Desk,
    ticket: Ticket,
    delivery: TicketDelivery,
    now: datetime,
    *,
    override: dict[str, Any] | None = None,
) -> tuple[int, dict[str, Any]] | None:
    """The chat and outbox payload for a delivery, from the database of this moment; None
    when there is nothing to send any more."""
    payload = override if override is not None else delivery.payload
    customer = await session.get(Customer, ticket.customer_id)
    if delivery.lane == q.CUSTOMER:
        if customer is None or customer.chat_id is None:
            return None  # erased: nobody to write to
        built = await _build_for_customer(session, desk, customer, delivery, payload)
        return (customer.chat_id, built) if built is not None else None
    assert desk.staff_chat_id is not None
    thread = ticket.topic_thread_id
    built_topic = await _build_for_topic(session, desk, ticket, customer, delivery, payload)
    if built_topic is None:
        return None
    if thread is not None and delivery.action != CREATE_TOPIC:
        built_topic["thread_id"] = thread
    return desk.staff_chat_id, built_topic


async def _build_for_topic(
    session: AsyncSession,
    desk: Desk,
    ticket: Ticket,
    customer: Customer | None,
    delivery: TicketDelivery,
    payload: dict[str, Any],
) -> dict[str, Any] | None:
    action = delivery.action
    if action == CREATE_TOPIC:
        if ticket.topic_thread_id is not None:
            return None
        return {"topic": {"action": "create", "name": topic_title(desk, ticket, customer)}}
    if action == TITLE:
        name = topic_title(desk, ticket, customer)
        return None if name == ticket.topic_title else {"topic": {"action": "edit", "name": name}}
    if action == CLOSE_TOPIC:
        return None if ticket.topic_closed else {"topic": {"action": "close"}}
    if action == REOPEN_TOPIC:
        return None if not ticket.topic_closed else {"topic": {"action": "reopen"}}
    if action == CARD:
        text = await card_text(session, desk, ticket)
        return outbox_queries.ready_text_payload(
            text, html=True, buttons=_outbox_buttons(card_buttons(desk, ticket))
        )
    if action == SUMMARY:
        return outbox_queries.ready_text_payload(await _summary(session, desk, ticket), html=True)
    if action == TEXT:
        return _with_reply(
            outbox_queries.ready_text_payload(str(payload.get("html", "")), html=True),
            payload.get("reply_to"),
        )
    message = (
        await q.get_message(session, delivery.ticket_message_id)
        if delivery.ticket_message_id
        else None
    )
    if message is None or customer is None:
        return None
    if action == EDIT:
        original = await q.get_message(session, message.edit_of_id) if message.edit_of_id else None
        text = desk.staff_text("ticket_edited_marker", text=message.text or "")
        built = outbox_queries.ready_text_payload(text, html=True)
        return _with_reply(built, original.copy_message_id if original else None)
    if customer.chat_id is None:  # erased meanwhile: the text is gone too
        return None
    if action == ALBUM:
        items = await q.messages_by_id(session, list(payload.get("messages", [])))
        return _album(customer.chat_id, items)
    if action == COPY:
        copied = outbox_queries.copy_payload(customer.chat_id, message.chat_message_id or 0)
        if payload.get("bare"):  # the caption is too long for a bot: it follows as a text
            copied["copy"]["caption"] = desk.staff_text("ticket_caption_below")
        return copied
    return None


async def _build_for_customer(
    session: AsyncSession,
    desk: Desk,
    customer: Customer,
    delivery: TicketDelivery,
    payload: dict[str, Any],
) -> dict[str, Any] | None:
    action = delivery.action
    language = customer.language
    render = desk.texts.render
    if action == NOTICE:
        return outbox_queries.text_payload(
            str(payload["key"]), payload.get("params") or {}, buttons=payload.get("buttons")
        )
    message = (
        await q.get_message(session, delivery.ticket_message_id)
        if delivery.ticket_message_id
        else None
    )
    if message is None or desk.staff_chat_id is None:
        return None
    name = message.author_name or ""
    prefix = desk.rules.relay.staff_name_prefix and bool(name)
    if action == CANNED:
        reply = desk.rules.canned_reply(str(payload.get("code", "")))
        if reply is None:
            return None
        text = reply.text(language)
        body = (
            render(language, "ticket_staff_says", name=name, text=text)
            if prefix
            else html.escape(text)
        )
        return outbox_queries.ready_text_payload(body, html=True)
    if action == TEXT:
        content = Markup(message.html or html.escape(message.text or ""))
        body = (
            render(language, "ticket_staff_says", name=name, text=content) if prefix else content
        )
        return outbox_queries.ready_text_payload(str(body), html=True)
    if action == EDIT:
        original = await q.get_message(session, message.edit_of_id) if message.edit_of_id else None
        content = Markup(message.html or html.escape(message.text or ""))
        body = render(language, "ticket_edited_customer", text=content)
        built = outbox_queries.ready_text_payload(body, html=True)
        return _with_reply(built, original.copy_message_id if original else None)
    if action == ALBUM:
        items = await q.messages_by_id(session, list(payload.get("messages", [])))
        return _album(
            desk.staff_chat_id, items, _prefixed_caption(desk, language, name) if prefix else None
        )
    if action == COPY:
        copied = outbox_queries.copy_payload(desk.staff_chat_id, message.chat_message_id or 0)
        if payload.get("bare"):  # the caption is too long for a bot: it follows as a text
            copied["copy"]["caption"] = (
                render(language, "ticket_staff_caption_bare", name=name)
                if prefix
                else render(language, "ticket_caption_below")
            )
        elif prefix:
            caption = _prefixed_caption(desk, language, name)(_caption_html(message))
            copied["copy"]["caption"] = caption
        return copied
    return None


ALBUM_KINDS = ("photo", "video", "document", "audio")


def _caption_html(item: TicketMessage) -> str | None:
    if item.html:
        return item.html
    return html.escape(item.text) if item.text else None


def _prefixed_caption(desk: Desk, language: str, name: str) -> Callable[[str | None], str]:
    """A staff caption with the staff member's name in front (or just the name)."""

    def caption(original: str | None) -> str:
        if original:
            return desk.texts.render(
                language, "ticket_staff_caption", name=name, caption=Markup(original)
            )
        return desk.texts.render(language, "ticket_staff_caption_bare", name=name)

    return caption


def _album(
    from_chat_id: int,
    items: Sequence[TicketMessage],
    first_caption: Callable[[str | None], str | None] | None = None,
) -> dict[str, Any] | None:
    """An album as one message group: ``sendMediaGroup`` with the items' files (captions
    kept; ``first_caption`` may rewrite the first one), else ``copyMessages``; a lone item is
    a plain copy."""
    usable = [item for item in items if item.chat_message_id]
    if not usable:
        return None
    if len(usable) == 1:
        copied = outbox_queries.copy_payload(from_chat_id, usable[0].chat_message_id or 0)
        if first_caption is not None:
            copied["copy"]["caption"] = first_caption(_caption_html(usable[0]))
        return copied
    if not all(item.kind in ALBUM_KINDS and item.media_file_id for item in usable):
        ids = [item.chat_message_id for item in usable]
        return {"copy_many": {"from_chat_id": from_chat_id, "message_ids": ids}}
    media: list[dict[str, Any]] = []
    for index, item in enumerate(usable):
        caption = _caption_html(item)
        if index == 0 and first_caption is not None:
            caption = first_caption(caption)
        if caption and len(caption) > CAPTION_LIMIT:  # keep the album; the text is shortened
            caption = html.escape((item.text or "")[: CAPTION_LIMIT - 100]) + "…"
        entry: dict[str, Any] = {"type": item.kind, "media": item.media_file_id}
        if caption:
            entry["caption"] = caption
        media.append(entry)
    return {"media_group": media}


def _with_reply(payload: dict[str, Any], reply_to: Any) -> dict[str, Any]:
    if reply_to:
        payload["reply_to"] = int(reply_to)
    return payload


async def _summary(session: AsyncSession, desk: Desk, ticket: Ticket) -> str:
    """The latest messages of the ticket, for a recreated topic (what is still queued follows
    as copies, so it is left out)."""
    rows = [
        message
        for message in await q.recent_messages(
            session, ticket.id, desk.rules.relay.summary_messages * 2
        )
        if message.direction != q.EVENT and message.state != q.QUEUED
    ][-desk.rules.relay.summary_messages :]
    lines = []
    for message in rows:
        if message.direction == q.IN:
            who = desk.staff_text("ticket_who_customer")
        elif message.direction == q.NOTE:
            who = desk.staff_text("ticket_who_note", name=message.author_name or "")
        else:
            who = desk.staff_text("ticket_who_staff", name=message.author_name or "")
        text = message.text or f"[{message.kind}]"
        if len(text) > SUMMARY_TEXT:
            text = text[: SUMMARY_TEXT - 1] + "…"
        lines.append(
            desk.staff_text(
                "ticket_summary_line",
                when=desk.when(message.created_at),
                who=Markup(who),
                text=text,
            )
        )
    body = "\n".join(lines) if lines else desk.staff_text("ticket_summary_empty")
    return desk.staff_text("ticket_summary", number=ticket.number, lines=Markup(body))


# --- results from the dispatcher -----------------------------------------------------------------


class DeliveryHooks:
    """What the dispatcher calls, in the transaction that records a ticket row's outcome."""

    def __init__(self, desk: Desk) -> None:
        self.desk = desk
        """Replaceable (tests run with other rules)."""

    async def _locked(
        self, session: AsyncSession, message: OutboxMessage
    ) -> tuple[TicketDelivery, Ticket] | None:
        """The row's delivery and its ticket, the ticket locked first (see ``lock_ticket``)."""
        delivery_id = message.payload.get("delivery")
        if not isinstance(delivery_id, int):
            return None
        ticket_id = message.payload.get("ticket")
        if not isinstance(ticket_id, int):  # a row queued before tickets went into payloads
            found = await q.get_delivery(session, delivery_id)
            if found is None:
                return None
            ticket_id = found.ticket_id
        ticket = await q.lock_ticket(session, ticket_id)
        delivery = await q.get_delivery(session, delivery_id)
        if ticket is None or delivery is None or delivery.ticket_id != ticket.id:
            return None
        return delivery, ticket

    async def sent(
        self,
        session: AsyncSession,
        message: OutboxMessage,
        message_ids: Sequence[int],
        now: datetime,
    ) -> bool:
        """Record what Telegram made of the delivery, then queue the lane's next one."""
        found = await self._locked(session, message)
        if found is None:
            return False
        delivery, ticket = found
        await self._record(session, delivery, ticket, message.payload, list(message_ids))
        was_head = delivery.state == q.D_OUTBOX
        _finish(delivery, q.D_SENT, now)
        if was_head:
            await pump(session, self.desk, ticket, delivery.lane, now)
        return True

    async def _record(
        self,
        session: AsyncSession,
        delivery: TicketDelivery,
        ticket: Ticket,
        payload: dict[str, Any],
        ids: list[int],
    ) -> None:
        first = ids[0] if ids else None
        action = delivery.action
        topic = payload.get("topic") or {}
        if action == CREATE_TOPIC and first is not None:
            ticket.topic_thread_id = first
            ticket.topic_closed = False
            ticket.topic_title = topic.get("name")
            ticket.card_message_id = None
        elif action == TITLE:
            ticket.topic_title = topic.get("name")
        elif action == CLOSE_TOPIC:
            ticket.topic_closed = True
        elif action == REOPEN_TOPIC:
            ticket.topic_closed = False
        elif action == CARD:
            ticket.card_message_id = first
        elif action == ALBUM:
            items = await q.messages_by_id(session, list(delivery.payload.get("messages", [])))
            for item, copied in zip(items, ids, strict=False):
                item.copy_message_id, item.state = copied, q.RELAYED
        elif delivery.ticket_message_id is not None and action in (COPY, TEXT, EDIT, CANNED):
            relayed = await q.get_message(session, delivery.ticket_message_id)
            if relayed is not None:
                if relayed.copy_message_id is None:
                    relayed.copy_message_id = first
                relayed.state = q.RELAYED

    async def failed(
        self,
        session: AsyncSession,
        message: OutboxMessage,
        error: str,
        *,
        unreachable: bool,
        dead: bool,
        now: datetime,
    ) -> bool:
        """A delivery failed for good (or ran out of attempts): recreate or reopen the topic
        and try again, fall back to text, or say so in the topic; then go on with the lane."""
        found = await self._locked(session, message)
        if found is None:
            return False
        delivery, ticket = found
        if delivery.state != q.D_OUTBOX:
            return False
        desk = self.desk
        lowered = error.lower()
        if delivery.lane != q.CUSTOMER:
            await self._topic_failed(session, delivery, ticket, message, lowered, dead, now)
        else:
            _finish(delivery, q.D_FAILED, now, error)
            await self._undelivered(session, delivery, ticket, error, unreachable, dead, now)
            await pump(session, desk, ticket, q.TOPIC, now)
        await pump(session, desk, ticket, delivery.lane, now)
        return True

    async def _topic_failed(
        self,
        session: AsyncSession,
        delivery: TicketDelivery,
        ticket: Ticket,
        message: OutboxMessage,
        error: str,
        dead: bool,
        now: datetime,
    ) -> None:
        thread = message.payload.get("thread_id")
        retry = delivery.tries < MAX_TRIES
        if "thread not found" in error or "topic_deleted" in error or "topic_id_invalid" in error:
            if delivery.action in TOPIC_ACTIONS or delivery.action == CREATE_TOPIC:
                _finish(delivery, q.D_SKIPPED if retry else q.D_FAILED, now, error)
            else:
                if ticket.topic_thread_id is not None and ticket.topic_thread_id == thread:
                    logger.info("ticket %s: its topic was deleted; recreating it", ticket.id)
                    ticket.topic_thread_id = None
                    ticket.topic_title = None
                    ticket.topic_closed = False
                    ticket.card_message_id = None
                _finish(delivery, q.D_QUEUED if retry else q.D_FAILED, now, error)
            return
        if "topic_closed" in error and retry:
            ticket.topic_closed = True
            await _push(session, ticket, q.TOPIC, REOPEN_TOPIC, now, front=True)
            _finish(delivery, q.D_QUEUED, now, error)
            return
        if "topic_not_modified" in error:
            await self._record(session, delivery, ticket, message.payload, [])
            if delivery.action == CLOSE_TOPIC:
                ticket.topic_closed = True
            _finish(delivery, q.D_SENT, now, error)
            return
        _finish(delivery, q.D_FAILED, now, error)
        if delivery.action in (COPY, ALBUM) and not dead:
            await self._copy_fallback(session, delivery, ticket, now)

    async def _copy_fallback(
        self, session: AsyncSession, delivery: TicketDelivery, ticket: Ticket, now: datetime
    ) -> None:
        """A customer's message that could not be copied (deleted meanwhile, a caption too long
        for a bot): its stored text goes into the topic instead."""
        ids = delivery.payload.get("messages") or (
            [delivery.ticket_message_id] if delivery.ticket_message_id else []
        )
        for item in await q.messages_by_id(session, list(ids)):
            text = self.desk.staff_text(
                "ticket_copy_fallback", kind=item.kind, text=item.text or "—"
            )
            await _push(
                session,
                ticket,
                q.TOPIC,
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
        error: str,
        unreachable: bool,
        dead: bool,
        now: datetime,
    ) -> None:
        """A staff reply did not reach the customer: mark it and say so in the topic, under the
        staff member's message."""
        desk = self.desk
        ids = delivery.payload.get("messages") or (
            [delivery.ticket_message_id] if delivery.ticket_message_id else []
        )
        items = await q.messages_by_id(session, list(ids))
        for item in items:
            item.state = q.UNDELIVERED
        if unreachable:
            reason = desk.staff_text("ticket_reason_blocked")
        elif dead:
            reason = desk.staff_text("ticket_reason_gave_up")
        else:
            reason = desk.staff_text("ticket_reason_failed", error=error[:200])
        reply_to = items[0].chat_message_id if items and items[0].kind != "canned" else None
        await _push(
            session,
            ticket,
            q.TOPIC,
            TEXT,
            now,
            payload={
                "html": desk.staff_text("ticket_undelivered", reason=reason),
                "reply_to": reply_to,
            },
        )


async def recover_one(
    session: AsyncSession, desk: Desk, delivery_id: int, row: Outbox | None, now: datetime
) -> bool:
    """A delivery whose outbox row ended without its hook (the hook raised, or an operator
    cancelled the row): replay what the row says happened, so the lane goes on."""
    hooks = DeliveryHooks(desk)
    if row is None:
        message = OutboxMessage(
            id=0,
            dedupe_key="",
            customer_id=None,
            chat_id=0,
            kind=KIND_TOPIC,
            payload={"delivery": delivery_id},
            priority=int(Priority.REPLY),
            transactional=True,
            due_at=now,
            attempts=0,
            care_day=None,
        )
        return await hooks.failed(
            session, message, "outbox row gone", unreachable=False, dead=True, now=now
        )
    message = OutboxMessage(
        id=row.id,
        dedupe_key=row.dedupe_key,
        customer_id=row.customer_id,
        chat_id=row.chat_id,
        kind=row.kind,
        payload=dict(row.payload),
        priority=row.priority,
        transactional=row.transactional,
        due_at=row.due_at,
        attempts=row.attempts,
        care_day=row.care_day,
    )
    if row.state == outbox_queries.State.SENT:
        ids = [row.telegram_message_id] if row.telegram_message_id is not None else []
        return await hooks.sent(session, message, ids, now)
    return await hooks.failed(
        session,
        message,
        row.last_error or row.state,
        unreachable=False,
        dead=row.state != outbox_queries.State.FAILED,
        now=now,
    )


def hooks_by_kind(desk: Desk) -> dict[str, DeliveryHooks]:
    """The dispatcher's hooks for the ticket lanes' outbox kinds."""
    hooks = DeliveryHooks(desk)
    return {kind: hooks for kind in OUTBOX_KINDS}
