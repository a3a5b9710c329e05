"""A ticket's messages (its history): stored, read back, found by the chat message they were,
counted for the flood throttle; and their vocabulary, where a message came from and what became
of it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.columns import UTCDateTime
from storage.inserts import insert_loaded
from storage.models import Ticket, TicketMessage

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


async def add_message(session: AsyncSession, **values: Any) -> TicketMessage:
    return await insert_loaded(session, TicketMessage, **values)


# Read back after every relay: built once, as building it costs more than running it.
_GET_MESSAGE = (
    select(TicketMessage)
    .where(TicketMessage.id == bindparam("message_id"))
    .execution_options(populate_existing=True)
)


async def get_message(session: AsyncSession, message_id: int) -> TicketMessage | None:
    """The message as the database has it now (also when this session read it before)."""
    result = await session.execute(_GET_MESSAGE, {"message_id": message_id})
    return result.scalar_one_or_none()


_GET_MESSAGES = (
    select(TicketMessage)
    .where(TicketMessage.id.in_(bindparam("message_ids", expanding=True)))
    .execution_options(populate_existing=True)
)


async def messages_now(session: AsyncSession, ids: Sequence[int]) -> dict[int, TicketMessage]:
    """Several messages as the database has them now, by id, in one read (a lane's window is
    built from them)."""
    if not ids:
        return {}
    result = await session.execute(_GET_MESSAGES, {"message_ids": sorted(set(ids))})
    return {message.id: message for message in result.scalars()}


_MESSAGES = cast(Table, TicketMessage.__table__)
_MARK_RELAYED = (
    update(_MESSAGES)
    .where(_MESSAGES.c.id == bindparam("message_id"))
    .values(
        copy_message_id=func.coalesce(_MESSAGES.c.copy_message_id, bindparam("copy_id")),
        state=RELAYED,
    )
)


async def mark_relayed(session: AsyncSession, message_id: int, copy_id: int | None) -> None:
    """The message reached the other side as ``copy_id`` (kept when it had a copy already: an
    edit replies to the first). One Core write: every relayed message runs it."""
    await session.execute(_MARK_RELAYED, {"message_id": message_id, "copy_id": copy_id})


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
