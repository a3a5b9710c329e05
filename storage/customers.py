"""Queries on the customer aggregate and its message log. Functions take the session first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Base, Customer, InboundMessage


def _insert_ignoring_conflicts(session: AsyncSession, model: type[Base]) -> Any:
    """``INSERT`` in the session's dialect, so ``on_conflict_do_nothing`` works on both."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


async def get_by_telegram_id(session: AsyncSession, telegram_user_id: int) -> Customer | None:
    result = await session.execute(
        select(Customer).where(Customer.telegram_user_id == telegram_user_id)
    )
    return result.scalar_one_or_none()


async def get_for_update(session: AsyncSession, telegram_user_id: int) -> Customer | None:
    """The customer row, locked against concurrent writers on PostgreSQL."""
    result = await session.execute(
        select(Customer).where(Customer.telegram_user_id == telegram_user_id).with_for_update()
    )
    return result.scalar_one_or_none()


async def insert_if_absent(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert a customer unless one with the same Telegram id exists; True if inserted.

    Two concurrent ``/start`` from one person (or two bot processes) cannot make two rows.
    """
    statement = (
        _insert_ignoring_conflicts(session, Customer)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[Customer.telegram_user_id])
    )
    result = await session.execute(statement)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def log_inbound(
    session: AsyncSession,
    *,
    update_id: int,
    chat_id: int,
    telegram_message_id: int,
    sender_user_id: int | None,
    kind: str,
    text: str | None,
    media_file_id: str | None,
    edited: bool,
    received_at: datetime,
) -> bool:
    """Store one inbound message; False when this update was already stored (a redelivery).

    The sender's customer id is looked up in the same statement (one round trip).
    """
    customer_id = (
        select(Customer.id).where(Customer.telegram_user_id == sender_user_id).scalar_subquery()
    )
    statement = (
        _insert_ignoring_conflicts(session, InboundMessage)
        .values(
            update_id=update_id,
            customer_id=customer_id,
            chat_id=chat_id,
            telegram_message_id=telegram_message_id,
            sender_user_id=sender_user_id,
            kind=kind,
            text=text,
            media_file_id=media_file_id,
            edited=edited,
            received_at=received_at,
        )
        .on_conflict_do_nothing(index_elements=[InboundMessage.update_id])
    )
    result = await session.execute(statement)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def link_inbound_to_customer(
    session: AsyncSession, customer_id: int, telegram_user_id: int
) -> None:
    """Attach a newly registered customer's earlier messages (sent before /start) to them."""
    await session.execute(
        update(InboundMessage)
        .where(InboundMessage.sender_user_id == telegram_user_id)
        .where(InboundMessage.customer_id.is_(None))
        .values(customer_id=customer_id)
    )


async def erase_personal_data(session: AsyncSession, customer: Customer, now: datetime) -> None:
    """Clear personal data and detach from Telegram; counts (messages, orders) stay anonymous."""
    telegram_user_id = customer.telegram_user_id
    await session.execute(
        update(InboundMessage)
        .where(
            (InboundMessage.customer_id == customer.id)
            | (InboundMessage.sender_user_id == telegram_user_id)
        )
        .values(
            customer_id=customer.id,
            text=None,
            media_file_id=None,
            sender_user_id=None,
            chat_id=None,
            telegram_message_id=None,
        )
    )
    customer.telegram_user_id = None
    customer.chat_id = None
    customer.name = None
    customer.username = None
    customer.phone = None
    customer.birth_year = customer.birth_month = customer.birth_day = None
    customer.birthday_lunar = False
    customer.consent = False
    customer.awaiting = None
    customer.erased_at = now
    customer.updated_at = now
    await session.flush()


async def count_inbound(session: AsyncSession, customer_id: int) -> int:
    result = await session.execute(
        select(func.count())
        .select_from(InboundMessage)
        .where(InboundMessage.customer_id == customer_id)
    )
    return int(result.scalar_one())
