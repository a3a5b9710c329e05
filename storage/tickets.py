"""Queries on tickets: numbers, history, delivery lanes, complaint drafts, staff and bans.

Functions take the session first and only flush; the caller owns the transaction. A ticket's
lanes are changed only after ``lock_ticket``, which serialises everybody touching the same
ticket (handlers, the dispatcher's hooks, the SLA planner) on both databases.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Integer,
    String,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from storage.columns import UTCDateTime
from storage.customers import _insert_ignoring_conflicts
from storage.models import (
    ComplaintDraft,
    Customer,
    CustomerBan,
    Order,
    Outbox,
    StaffMember,
    Ticket,
    TicketCounter,
    TicketDelivery,
    TicketMessage,
)

# Ticket statuses.
OPEN = "open"
WAITING_STAFF = "waiting_staff"
WAITING_CUSTOMER = "waiting_customer"
RESOLVED = "resolved"
CLOSED = "closed"
STATUSES = (OPEN, WAITING_STAFF, WAITING_CUSTOMER, RESOLVED, CLOSED)
SLA_RUNNING = (OPEN, WAITING_STAFF, WAITING_CUSTOMER)
"""Statuses in which the SLA clocks run (staff owe an answer or a resolution)."""

# Where a ticket message came from.
IN = "in"
OUT = "out"
NOTE = "note"
EVENT = "event"

# What became of a message.
QUEUED = "queued"
RELAYED = "relayed"
UNDELIVERED = "undelivered"
THROTTLED = "throttled"
BANNED = "banned"
KEPT = "kept"
"""Notes and events: stored, never relayed."""

# Delivery lanes and states.
TOPIC = "topic"
TITLE = "title"
"""The topic's renames: apart from the topic lane, so a rename never holds up a relay."""
CUSTOMER = "customer"
D_QUEUED = "queued"
D_OUTBOX = "outbox"
D_SENT = "sent"
D_FAILED = "failed"
D_SKIPPED = "skipped"


# --- tickets -------------------------------------------------------------------------------------


async def next_number(session: AsyncSession, prefix: str) -> int:
    """The next ticket number for ``prefix``: dense, never reused (the counter row is locked
    until the transaction ends, so concurrent openings queue up)."""
    await session.execute(
        _insert_ignoring_conflicts(session, TicketCounter)
        .values(prefix=prefix, value=0)
        .on_conflict_do_nothing(index_elements=[TicketCounter.prefix])
    )
    result = await session.execute(
        update(TicketCounter)
        .where(TicketCounter.prefix == prefix)
        .values(value=TicketCounter.value + 1)
        .returning(TicketCounter.value)
    )
    return int(result.scalar_one())


async def insert_ticket(session: AsyncSession, values: dict[str, Any]) -> int | None:
    """Insert an open ticket; None when the customer already has one (a concurrent opening won).

    The row gets a placeholder number; the caller numbers it once the insert succeeded, so a
    lost race does not burn a number.
    """
    row = {**values, "number": f"~{uuid.uuid4().hex[:16]}"}
    result = await session.execute(
        _insert_ignoring_conflicts(session, Ticket)
        .values(**row)
        .on_conflict_do_nothing(index_elements=[Ticket.open_customer_id])
        .returning(Ticket.id)
    )
    inserted = result.scalar_one_or_none()
    return int(inserted) if inserted is not None else None


# The statements every relayed message runs (a ticket locked and read, its lane's head, the
# message and delivery read back) are built once: building one costs more than running it.
_GET_TICKET = (
    select(Ticket)
    .where(Ticket.id == bindparam("ticket_id"))
    .execution_options(populate_existing=True)
)
_LOCK_OWNER = (
    select(Customer.id)
    .where(
        Customer.id
        == select(Ticket.customer_id).where(Ticket.id == bindparam("ticket_id")).scalar_subquery()
    )
    .with_for_update(of=Customer)
)
# The lock and the read in one statement: the row as it is now, identity map refreshed.
_BUMP_TICKET = (
    update(Ticket)
    .where(Ticket.id == bindparam("ticket_id"))
    .values(lock_version=Ticket.lock_version + 1)
    .returning(Ticket)
    .execution_options(synchronize_session=False, populate_existing=True)
)


async def get_ticket(session: AsyncSession, ticket_id: int) -> Ticket | None:
    result = await session.execute(_GET_TICKET, {"ticket_id": ticket_id})
    return result.scalar_one_or_none()


async def lock_ticket(session: AsyncSession, ticket_id: int) -> Ticket | None:
    """The ticket, locked until the transaction ends.

    Locks are always taken customer first, then ticket, whoever takes them (a customer's
    message locks its customer row on arrival; a relay queued for the customer takes a key-share
    lock on it through the outbox's foreign key), so two of them can never wait on each other.
    The ticket is then written before anything else is read: SQLite's write lock is taken at
    that point (a SELECT ... FOR UPDATE means nothing there) and PostgreSQL locks the row.
    """
    if session.get_bind().dialect.name == "postgresql":
        owner = await session.execute(_LOCK_OWNER, {"ticket_id": ticket_id})
        if owner.scalar_one_or_none() is None:
            return None
    result = await session.execute(_BUMP_TICKET, {"ticket_id": ticket_id})
    return result.scalar_one_or_none()


_OPEN_TICKET_OF = select(Ticket).where(Ticket.open_customer_id == bindparam("customer_id"))


async def open_ticket_of(session: AsyncSession, customer_id: int) -> Ticket | None:
    """The customer's ticket that is not closed, if any (there is at most one)."""
    result = await session.execute(_OPEN_TICKET_OF, {"customer_id": customer_id})
    return result.scalar_one_or_none()


def _build_may_take_message() -> Any:
    customer_id = bindparam("customer_id", type_=Integer())
    open_ticket = select(Ticket.id).where(Ticket.open_customer_id == customer_id).exists()
    banned = select(CustomerBan.customer_id).where(CustomerBan.customer_id == customer_id).exists()
    recently_closed = (
        select(Ticket.id)
        .where(
            Ticket.customer_id == customer_id,
            Ticket.status == CLOSED,
            Ticket.closed_at >= bindparam("closed_since", type_=UTCDateTime()),
        )
        .exists()
    )
    return select(or_(open_ticket, and_(~banned, recently_closed)))


# Built once: every free-text message asks, and building it cost more than running it.
_MAY_TAKE_MESSAGE = _build_may_take_message()


async def may_take_message(
    session: AsyncSession, customer_id: int, closed_since: datetime
) -> bool:
    """Whether a ticket may take the customer's message: they have one open, or (not banned)
    one closed since ``closed_since`` that a message reopens or follows up. One statement: most
    messages come from customers with no ticket at all and go straight to the knowledge base.
    """
    result = await session.execute(
        _MAY_TAKE_MESSAGE, {"customer_id": customer_id, "closed_since": closed_since}
    )
    return bool(result.scalar())


async def last_closed_ticket(session: AsyncSession, customer_id: int) -> Ticket | None:
    result = await session.execute(
        select(Ticket)
        .where(Ticket.customer_id == customer_id, Ticket.status == CLOSED)
        .order_by(Ticket.closed_at.desc(), Ticket.id.desc())
        .limit(1)
    )
    return result.scalar_one_or_none()


_TICKET_BY_TOPIC = (
    select(Ticket)
    .where(Ticket.topic_thread_id == bindparam("thread_id"))
    .order_by(Ticket.id.desc())
    .limit(1)
)


async def ticket_by_topic(session: AsyncSession, thread_id: int) -> Ticket | None:
    """The ticket whose topic this is (the newest, should a thread id ever come back)."""
    result = await session.execute(_TICKET_BY_TOPIC, {"thread_id": thread_id})
    return result.scalar_one_or_none()


async def ticket_by_number(session: AsyncSession, number: str) -> Ticket | None:
    result = await session.execute(select(Ticket).where(Ticket.number == number))
    return result.scalar_one_or_none()


async def recent_tickets(
    session: AsyncSession, customer_id: int, *, limit: int = 5, exclude: int | None = None
) -> list[Ticket]:
    statement = select(Ticket).where(Ticket.customer_id == customer_id)
    if exclude is not None:
        statement = statement.where(Ticket.id != exclude)
    result = await session.execute(
        statement.order_by(Ticket.opened_at.desc(), Ticket.id.desc()).limit(limit)
    )
    return list(result.scalars())


async def tickets_of(session: AsyncSession, customer_id: int) -> list[Ticket]:
    result = await session.execute(
        select(Ticket).where(Ticket.customer_id == customer_id).order_by(Ticket.id)
    )
    return list(result.scalars())


@dataclass(frozen=True)
class OrderSummary:
    count: int
    spend_cents: int


async def order_summary(session: AsyncSession, customer_id: int) -> OrderSummary:
    """Counted orders (not refunded or cancelled, as for RFM) and their value in the shop's
    currency."""
    result = await session.execute(
        select(func.count(), func.coalesce(func.sum(Order.value_cents), 0)).where(
            Order.customer_id == customer_id, Order.status.not_in(["refunded", "cancelled"])
        )
    )
    count, spend = result.one()
    return OrderSummary(int(count), int(spend))


async def customer_orders(session: AsyncSession, customer_id: int, limit: int) -> list[Order]:
    """The customer's latest orders, newest first (the complaint flow offers them)."""
    result = await session.execute(
        select(Order)
        .where(Order.customer_id == customer_id)
        .order_by(Order.placed_at.desc(), Order.id.desc())
        .limit(limit)
    )
    return list(result.scalars())


async def customer_order(session: AsyncSession, customer_id: int, order_id: int) -> Order | None:
    result = await session.execute(
        select(Order).where(Order.id == order_id, Order.customer_id == customer_id)
    )
    return result.scalar_one_or_none()


async def customer_order_by_reference(
    session: AsyncSession, customer_id: int, reference: str
) -> Order | None:
    result = await session.execute(
        select(Order).where(
            Order.customer_id == customer_id,
            func.lower(Order.external_id) == reference.strip().lower(),
        )
    )
    return result.scalars().first()


# --- history -------------------------------------------------------------------------------------


async def add_message(session: AsyncSession, **values: Any) -> TicketMessage:
    message = TicketMessage(**values)
    session.add(message)
    await session.flush()
    return message


_GET_MESSAGE = (
    select(TicketMessage)
    .where(TicketMessage.id == bindparam("message_id"))
    .execution_options(populate_existing=True)
)


async def get_message(session: AsyncSession, message_id: int) -> TicketMessage | None:
    """The message as the database has it now (also when this session read it before)."""
    result = await session.execute(_GET_MESSAGE, {"message_id": message_id})
    return result.scalar_one_or_none()


async def messages_by_id(session: AsyncSession, ids: Sequence[int]) -> list[TicketMessage]:
    if not ids:
        return []
    result = await session.execute(select(TicketMessage).where(TicketMessage.id.in_(list(ids))))
    found = {message.id: message for message in result.scalars()}
    return [found[i] for i in ids if i in found]


async def find_original(
    session: AsyncSession, ticket_id: int, direction: str, chat_message_id: int
) -> TicketMessage | None:
    """The message written as ``chat_message_id`` (not one of its edits)."""
    result = await session.execute(
        select(TicketMessage)
        .where(
            TicketMessage.ticket_id == ticket_id,
            TicketMessage.direction == direction,
            TicketMessage.chat_message_id == chat_message_id,
            TicketMessage.edit_of_id.is_(None),
        )
        .order_by(TicketMessage.id)
        .limit(1)
    )
    return result.scalar_one_or_none()


async def ticket_of_customer_message(
    session: AsyncSession, customer_id: int, chat_message_id: int
) -> TicketMessage | None:
    """The ticket message a customer's private-chat message became, if it was attached."""
    result = await session.execute(
        select(TicketMessage)
        .join(Ticket, Ticket.id == TicketMessage.ticket_id)
        .where(
            Ticket.customer_id == customer_id,
            TicketMessage.direction == IN,
            TicketMessage.chat_message_id == chat_message_id,
            TicketMessage.edit_of_id.is_(None),
        )
        .order_by(TicketMessage.id.desc())
        .limit(1)
    )
    return result.scalar_one_or_none()


async def recent_messages(
    session: AsyncSession, ticket_id: int, limit: int, *, before_id: int | None = None
) -> list[TicketMessage]:
    """The latest ``limit`` messages of the ticket, oldest first."""
    statement = select(TicketMessage).where(TicketMessage.ticket_id == ticket_id)
    if before_id is not None:
        statement = statement.where(TicketMessage.id < before_id)
    result = await session.execute(statement.order_by(TicketMessage.id.desc()).limit(limit))
    return list(reversed(list(result.scalars())))


async def history(session: AsyncSession, ticket_id: int) -> list[TicketMessage]:
    result = await session.execute(
        select(TicketMessage)
        .where(TicketMessage.ticket_id == ticket_id)
        .order_by(TicketMessage.id)
    )
    return list(result.scalars())


_COUNT_INBOUND_SINCE = (
    select(func.count())
    .select_from(TicketMessage)
    .where(
        TicketMessage.ticket_id == bindparam("ticket_id"),
        TicketMessage.direction == IN,
        TicketMessage.created_at >= bindparam("since", type_=UTCDateTime()),
    )
)


async def count_inbound_since(session: AsyncSession, ticket_id: int, since: datetime) -> int:
    """Customer messages of the ticket at or after ``since`` (the flood throttle)."""
    result = await session.execute(_COUNT_INBOUND_SINCE, {"ticket_id": ticket_id, "since": since})
    return int(result.scalar_one())


# --- delivery lanes ------------------------------------------------------------------------------


async def add_delivery(session: AsyncSession, **values: Any) -> TicketDelivery:
    delivery = TicketDelivery(**values)
    session.add(delivery)
    await session.flush()
    return delivery


_GET_DELIVERY = (
    select(TicketDelivery)
    .where(TicketDelivery.id == bindparam("delivery_id"))
    .execution_options(populate_existing=True)
)


async def get_delivery(session: AsyncSession, delivery_id: int) -> TicketDelivery | None:
    result = await session.execute(_GET_DELIVERY, {"delivery_id": delivery_id})
    return result.scalar_one_or_none()


async def replace_pending_payload(
    session: AsyncSession,
    dedupe_key: str,
    payload: dict[str, Any],
    *,
    due_at: datetime | None = None,
) -> bool:
    """Change an outbox row nobody has claimed yet (an album's copy growing while it waits for
    the album's last items; a delayed rename brought forward); False when it is claimed or
    gone."""
    values: dict[str, Any] = {"payload": payload}
    if due_at is not None:
        values["due_at"] = due_at
    result = await session.execute(
        update(Outbox)
        .where(Outbox.dedupe_key == dedupe_key, Outbox.state == "pending")
        .values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


_LANE_HEAD = (
    select(TicketDelivery)
    .where(
        TicketDelivery.ticket_id == bindparam("ticket_id"),
        TicketDelivery.lane == bindparam("lane"),
        TicketDelivery.state.in_([D_OUTBOX, D_QUEUED]),
    )
    .order_by(
        (TicketDelivery.state == D_OUTBOX).desc(),
        TicketDelivery.front.desc(),
        TicketDelivery.id,
    )
    .limit(1)
)


async def lane_head(session: AsyncSession, ticket_id: int, lane: str) -> TicketDelivery | None:
    """The lane's delivery in the outbox if there is one, else its next queued delivery (those
    put in front first, then in order); None when the lane is empty. One indexed query: the
    pump runs after every send."""
    result = await session.execute(_LANE_HEAD, {"ticket_id": ticket_id, "lane": lane})
    return result.scalar_one_or_none()


async def open_deliveries(
    session: AsyncSession, ticket_id: int, lane: str, action: str
) -> list[TicketDelivery]:
    """Deliveries of one action not yet sent (queued or in the outbox), oldest first."""
    result = await session.execute(
        select(TicketDelivery)
        .where(
            TicketDelivery.ticket_id == ticket_id,
            TicketDelivery.lane == lane,
            TicketDelivery.action == action,
            TicketDelivery.state.in_([D_QUEUED, D_OUTBOX]),
        )
        .order_by(TicketDelivery.id)
    )
    return list(result.scalars())


async def latest_delivery(
    session: AsyncSession, ticket_id: int, lane: str, action: str
) -> TicketDelivery | None:
    result = await session.execute(
        select(TicketDelivery)
        .where(
            TicketDelivery.ticket_id == ticket_id,
            TicketDelivery.lane == lane,
            TicketDelivery.action == action,
        )
        .order_by(TicketDelivery.id.desc())
        .limit(1)
    )
    return result.scalar_one_or_none()


async def deliveries_of(
    session: AsyncSession, ticket_id: int | Sequence[int]
) -> list[TicketDelivery]:
    """Every delivery of one ticket, or of several, oldest first."""
    ids = [ticket_id] if isinstance(ticket_id, int) else list(ticket_id)
    result = await session.execute(
        select(TicketDelivery).where(TicketDelivery.ticket_id.in_(ids)).order_by(TicketDelivery.id)
    )
    return list(result.scalars())


async def stranded_deliveries(
    session: AsyncSession, *, before: datetime, limit: int = 100
) -> list[tuple[TicketDelivery, Outbox | None]]:
    """Deliveries still marked as in the outbox since before ``before`` whose outbox row has
    ended (sent, failed, dead, cancelled) or is gone: their outcome never reached the ticket
    (a hook that failed, an operator who cancelled the row), and their lane waits."""
    key = (
        literal("tk:") + cast(TicketDelivery.id, String) + ":" + cast(TicketDelivery.tries, String)
    )
    result = await session.execute(
        select(TicketDelivery, Outbox)
        .outerjoin(Outbox, Outbox.dedupe_key == key)
        .where(
            TicketDelivery.state == D_OUTBOX,
            TicketDelivery.updated_at < before,
            or_(Outbox.id.is_(None), Outbox.state.not_in(["pending", "claimed"])),
        )
        .order_by(TicketDelivery.id)
        .limit(limit)
    )
    return [(delivery, row) for delivery, row in result]


# --- complaint drafts ----------------------------------------------------------------------------


async def get_draft(session: AsyncSession, customer_id: int) -> ComplaintDraft | None:
    result = await session.execute(
        select(ComplaintDraft)
        .where(ComplaintDraft.customer_id == customer_id)
        .execution_options(populate_existing=True)
    )
    return result.scalar_one_or_none()


async def start_draft(
    session: AsyncSession, customer_id: int, step: str, now: datetime
) -> ComplaintDraft:
    """A fresh draft at ``step`` (an earlier one of the customer is replaced)."""
    await delete_draft(session, customer_id)
    draft = ComplaintDraft(
        customer_id=customer_id, step=step, items=[], started_at=now, updated_at=now
    )
    session.add(draft)
    await session.flush()
    return draft


async def delete_draft(session: AsyncSession, customer_id: int) -> bool:
    result = await session.execute(
        delete(ComplaintDraft).where(ComplaintDraft.customer_id == customer_id)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def draft_steps(session: AsyncSession) -> list[tuple[int, int, str]]:
    """(chat id, Telegram user id, step) of every draft: the conversations to resume."""
    result = await session.execute(
        select(Customer.chat_id, Customer.telegram_user_id, ComplaintDraft.step)
        .join(Customer, Customer.id == ComplaintDraft.customer_id)
        .where(Customer.chat_id.is_not(None), Customer.telegram_user_id.is_not(None))
    )
    return [(int(chat or 0), int(user or 0), str(step)) for chat, user, step in result]


# --- staff and bans ------------------------------------------------------------------------------


async def save_staff_member(
    session: AsyncSession,
    *,
    user_id: int,
    username: str | None,
    name: str,
    is_staff: bool,
    now: datetime,
) -> None:
    """Remember a membership check (two topics may check the same person at once)."""
    values = {
        "user_id": user_id,
        "username": username,
        "name": name,
        "is_staff": is_staff,
        "checked_at": now,
    }
    statement = _insert_ignoring_conflicts(session, StaffMember).values(**values)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[StaffMember.user_id],
            set_={key: value for key, value in values.items() if key != "user_id"},
        )
    )


async def staff_by_username(session: AsyncSession, username: str) -> StaffMember | None:
    result = await session.execute(
        select(StaffMember).where(
            func.lower(StaffMember.username) == username.lstrip("@").lower(),
            StaffMember.is_staff.is_(True),
        )
    )
    return result.scalars().first()


async def get_ban(session: AsyncSession, customer_id: int) -> CustomerBan | None:
    return await session.get(CustomerBan, customer_id)


async def ban(
    session: AsyncSession,
    customer_id: int,
    *,
    by_user_id: int | None,
    by_name: str | None,
    now: datetime,
) -> bool:
    """Ban a customer; False if they already were."""
    result = await session.execute(
        _insert_ignoring_conflicts(session, CustomerBan)
        .values(
            customer_id=customer_id,
            banned_by_user_id=by_user_id,
            banned_by_name=by_name,
            banned_at=now,
        )
        .on_conflict_do_nothing(index_elements=[CustomerBan.customer_id])
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def unban(session: AsyncSession, customer_id: int) -> bool:
    result = await session.execute(
        delete(CustomerBan).where(CustomerBan.customer_id == customer_id)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


# --- the SLA planner -----------------------------------------------------------------------------


async def first_response_candidates(
    session: AsyncSession, *, now: datetime, horizon: datetime, limit: int = 500
) -> list[int]:
    """Tickets still owing a first reply whose deadline is within ``horizon`` and that still
    need a reminder, or are past it and still need an escalation."""
    result = await session.execute(
        select(Ticket.id)
        .where(
            Ticket.status.in_(SLA_RUNNING),
            Ticket.first_response_due <= horizon,
            Ticket.first_response_at.is_(None),
            or_(
                Ticket.first_response_reminded_at.is_(None),
                and_(
                    Ticket.first_response_escalated_at.is_(None),
                    Ticket.first_response_due <= now,
                ),
            ),
        )
        .order_by(Ticket.first_response_due)
        .limit(limit)
    )
    return [int(ticket_id) for ticket_id in result.scalars()]


async def resolution_candidates(
    session: AsyncSession, *, now: datetime, horizon: datetime, limit: int = 500
) -> list[int]:
    result = await session.execute(
        select(Ticket.id)
        .where(
            Ticket.status.in_(SLA_RUNNING),
            Ticket.resolution_due <= horizon,
            or_(
                Ticket.resolution_reminded_at.is_(None),
                and_(Ticket.resolution_escalated_at.is_(None), Ticket.resolution_due <= now),
            ),
        )
        .order_by(Ticket.resolution_due)
        .limit(limit)
    )
    return [int(ticket_id) for ticket_id in result.scalars()]


async def resolved_before(session: AsyncSession, moment: datetime, limit: int = 500) -> list[int]:
    """Tickets marked resolved before ``moment`` and never confirmed: to close by themselves."""
    result = await session.execute(
        select(Ticket.id)
        .where(Ticket.status == RESOLVED, Ticket.resolved_at <= moment)
        .order_by(Ticket.resolved_at)
        .limit(limit)
    )
    return [int(ticket_id) for ticket_id in result.scalars()]


# --- reports and erasure -------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportRow:
    category: str
    tier: str
    status: str
    opened_at: datetime
    first_response_at: datetime | None
    first_response_due: datetime
    resolved_at: datetime | None
    resolution_due: datetime


async def report_rows(session: AsyncSession, since: datetime, until: datetime) -> list[ReportRow]:
    """Tickets opened in ``[since, until)`` with what the report needs."""
    result = await session.execute(
        select(
            Ticket.category,
            Ticket.tier,
            Ticket.status,
            Ticket.opened_at,
            Ticket.first_response_at,
            Ticket.first_response_due,
            Ticket.resolved_at,
            Ticket.resolution_due,
        )
        .where(Ticket.opened_at >= since, Ticket.opened_at < until)
        .order_by(Ticket.opened_at)
    )
    return [ReportRow(**row._asdict()) for row in result]


@dataclass(frozen=True)
class TicketReport:
    """``carebot report tickets``: tickets opened in a period."""

    opened: int
    by_category: dict[str, int]
    by_tier: dict[str, int]
    by_status: dict[str, int]
    first_response: list[float]
    """Seconds from opening to the first staff reply, of the tickets that got one."""
    resolution: list[float]
    """Seconds from opening to the (last) resolution, of the tickets resolved."""
    first_response_breaches: int
    resolution_breaches: int


def _count(values: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


async def ticket_report(
    session: AsyncSession, since: datetime, until: datetime, now: datetime
) -> TicketReport:
    """Counts, response and resolution times and SLA breaches of the tickets opened in
    ``[since, until)``. A deadline counts as breached when it was met late, or is still unmet
    and already past at ``now``."""
    rows = await report_rows(session, since, until)
    first = [
        (row.first_response_at - row.opened_at).total_seconds()
        for row in rows
        if row.first_response_at is not None
    ]
    resolution = [
        (row.resolved_at - row.opened_at).total_seconds()
        for row in rows
        if row.resolved_at is not None
    ]
    first_late = sum(1 for row in rows if (row.first_response_at or now) > row.first_response_due)
    resolution_late = sum(
        1
        for row in rows
        if (row.resolved_at or (now if row.status != CLOSED else row.resolution_due))
        > row.resolution_due
    )
    return TicketReport(
        opened=len(rows),
        by_category=_count([row.category for row in rows]),
        by_tier=_count([row.tier for row in rows]),
        by_status=_count([row.status for row in rows]),
        first_response=sorted(first),
        resolution=sorted(resolution),
        first_response_breaches=first_late,
        resolution_breaches=resolution_late,
    )


async def erase_customer_tickets(session: AsyncSession, customer_id: int) -> list[Ticket]:
    """``/forget`` on the desk: every text of the customer's tickets (theirs, and the staff's
    replies and notes, which may quote them), who wrote theirs, their files, the tickets'
    subject, order reference and topic title, and their complaint draft. The tickets stay,
    anonymous, for the statistics; they are returned, for their deliveries and topics."""
    mine = select(Ticket.id).where(Ticket.customer_id == customer_id).scalar_subquery()
    theirs = TicketMessage.direction == IN
    await session.execute(
        update(TicketMessage)
        .where(TicketMessage.ticket_id.in_(mine))
        .values(
            text=None,
            html=None,
            media_file_id=None,
            author_user_id=case((theirs, None), else_=TicketMessage.author_user_id),
            author_name=case((theirs, None), else_=TicketMessage.author_name),
        )
    )
    await session.execute(
        update(Ticket)
        .where(Ticket.customer_id == customer_id)
        .values(subject=None, order_ref=None, topic_title=None)
    )
    await delete_draft(session, customer_id)
    result = await session.execute(
        select(Ticket)
        .where(Ticket.customer_id == customer_id)
        .order_by(Ticket.id)
        .execution_options(populate_existing=True)
    )
    return list(result.scalars())
