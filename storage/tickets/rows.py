"""The ticket rows: numbered, inserted, read and locked, found by customer, topic or number.

``lock_ticket`` is the lock everybody changing a ticket (its status, its lanes) takes first.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Integer, Table, and_, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import contains_eager

from storage.columns import UTCDateTime
from storage.customers import _insert_ignoring_conflicts
from storage.models import Customer, CustomerBan, Ticket, TicketCounter
from storage.tickets.statuses import CLOSED


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


# The statements every relayed message runs (here: a ticket locked and read; its lane's head, the
# message and delivery read back are in ``lanes`` and ``messages``) are built once: building one
# costs more than running it.
# The ticket with its customer: whoever locks a ticket goes on to build what it sends, which
# needs the customer (their chat, their language); one joined read instead of two.
_GET_TICKET = (
    select(Ticket)
    .outerjoin(Ticket.owner)
    .options(contains_eager(Ticket.owner))
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
# The lock: a plain write (SQLite's write lock is taken there, PostgreSQL locks the row), then the
# row read into the identity map. Cheaper than one ORM ``UPDATE ... RETURNING`` of the mapped
# class, which costs about twice a Core write and a read together (bench/relay.py, profiled).
_TICKETS = cast(Table, Ticket.__table__)
_BUMP_TICKET = (
    update(_TICKETS)
    .where(_TICKETS.c.id == bindparam("ticket_id"))
    .values(lock_version=_TICKETS.c.lock_version + 1)
)
_BUMP_OPEN_TICKET_OF = (
    update(_TICKETS)
    .where(_TICKETS.c.open_customer_id == bindparam("owner"))
    .values(
        lock_version=_TICKETS.c.lock_version + 1,
        updated_at=bindparam("touched_at", type_=UTCDateTime()),
    )
)
_OPEN_TICKET_OF = (
    select(Ticket)
    .where(Ticket.open_customer_id == bindparam("customer_id"))
    .execution_options(populate_existing=True)
)
_OPEN_TICKET_AND_BAN_OF = (
    select(Ticket, CustomerBan)
    .outerjoin(CustomerBan, CustomerBan.customer_id == Ticket.customer_id)
    .where(Ticket.open_customer_id == bindparam("customer_id"))
    .execution_options(populate_existing=True)
)


async def get_ticket(session: AsyncSession, ticket_id: int) -> Ticket | None:
    """The ticket as the database has it now; its customer is loaded too (``session.get``
    finds it without a query)."""
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
    bumped = await session.execute(_BUMP_TICKET, {"ticket_id": ticket_id})
    if not bumped.rowcount:  # type: ignore[attr-defined]
        return None
    return await get_ticket(session, ticket_id)


async def lock_open_ticket_of(
    session: AsyncSession, customer_id: int, now: datetime
) -> tuple[Ticket, CustomerBan | None] | None:
    """The customer's open ticket, locked as ``lock_ticket`` locks and its ``updated_at`` set
    to ``now``, with their ban if staff banned them; None when they have no open ticket. The
    caller holds the customer's row already (``storage.customers.get_for_update``), so the lock
    order holds without reading it again: this is the first thing every message from a
    customer with a ticket does."""
    bumped = await session.execute(_BUMP_OPEN_TICKET_OF, {"owner": customer_id, "touched_at": now})
    if not bumped.rowcount:  # type: ignore[attr-defined]
        return None
    result = await session.execute(_OPEN_TICKET_AND_BAN_OF, {"customer_id": customer_id})
    ticket, ban = result.one()
    return ticket, ban


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
_TICKET_BY_CHAT_TOPIC = (
    select(Ticket)
    .where(
        Ticket.staff_chat_id == bindparam("chat_id"),
        Ticket.topic_thread_id == bindparam("thread_id"),
    )
    .order_by(Ticket.id.desc())
    .limit(1)
)


async def ticket_by_topic(
    session: AsyncSession, thread_id: int, chat_id: int | None = None
) -> Ticket | None:
    """The ticket whose topic this is in the staff group ``chat_id`` (thread ids are per chat;
    None: in whichever group), the newest should a thread id ever come back."""
    if chat_id is None:
        result = await session.execute(_TICKET_BY_TOPIC, {"thread_id": thread_id})
    else:
        result = await session.execute(
            _TICKET_BY_CHAT_TOPIC, {"thread_id": thread_id, "chat_id": chat_id}
        )
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
