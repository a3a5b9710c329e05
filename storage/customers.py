"""Queries on the customer aggregate and its message log. Functions take the session first."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.engine import SQLITE_BUSY_TIMEOUT_MS
from storage.models import Base, Customer, InboxUpdate, KbHandoff, KbQuestion

logger = logging.getLogger(__name__)


def _insert_ignoring_conflicts(session: AsyncSession, model: type[Base]) -> Any:
    """``INSERT`` in the session's dialect, so ``on_conflict_do_nothing`` works on both."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


async def get_by_telegram_id(session: AsyncSession, telegram_user_id: int) -> Customer | None:
    result = await session.execute(
        select(Customer).where(Customer.telegram_user_id == telegram_user_id)
    )
    return result.scalar_one_or_none()


_CUSTOMER_FOR_UPDATE = (
    select(Customer)
    .where(Customer.telegram_user_id == bindparam("telegram_user_id"))
    .with_for_update()
)


async def get_for_update(session: AsyncSession, telegram_user_id: int) -> Customer | None:
    """The customer row, locked against concurrent writers on PostgreSQL."""
    result = await session.execute(_CUSTOMER_FOR_UPDATE, {"telegram_user_id": telegram_user_id})
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


async def link_inbound_to_customer(
    session: AsyncSession, customer_id: int, telegram_user_id: int
) -> None:
    """Attach a newly registered customer's earlier messages (sent before /start) to them."""
    await session.execute(
        update(InboxUpdate)
        .where(InboxUpdate.sender_user_id == telegram_user_id)
        .where(InboxUpdate.customer_id.is_(None))
        .values(customer_id=customer_id)
    )


async def erase_personal_data(session: AsyncSession, customer: Customer, now: datetime) -> None:
    """Clear personal data and detach from Telegram; counts (messages, orders) stay anonymous."""
    telegram_user_id = customer.telegram_user_id
    await session.execute(
        update(InboxUpdate)
        .where(
            (InboxUpdate.customer_id == customer.id)
            | (InboxUpdate.sender_user_id == telegram_user_id)
        )
        .values(
            customer_id=customer.id,
            text=None,
            media_file_id=None,
            sender_user_id=None,
            chat_id=None,
            thread_id=None,
            telegram_message_id=None,
            # An update still waiting for its rules keeps the raw update they need (this
            # very /forget's is among them); marking it handled drops it.
            payload=case((InboxUpdate.state == "pending", InboxUpdate.payload), else_=None),
            error=None,
        )
    )
    # What they asked the knowledge base, in their words.
    await session.execute(
        update(KbQuestion)
        .where(KbQuestion.customer_id == customer.id)
        .values(question="", typed=None)
    )
    await session.execute(
        update(KbHandoff).where(KbHandoff.customer_id == customer.id).values(question="")
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


_UNDER = {
    "ticket_messages": ("ticket_id", "tickets"),
    "survey_answers": ("response_id", "survey_responses"),
}
"""Tables whose rows belong to a customer through a parent row: column, parent table."""


async def personal_record(
    session: AsyncSession, customer_id: int
) -> dict[str, list[dict[str, Any]]]:
    """Everything stored about one customer, table by table (``carebot customer export``): every
    row that points at them, and the ticket messages and survey answers under their tickets and
    responses. A table added later with a ``customer_id`` is part of it by itself."""
    tables = Base.metadata.tables
    record: dict[str, list[dict[str, Any]]] = {}
    for table in Base.metadata.sorted_tables:
        if table.name == "customers":
            where = table.c.id == customer_id
        elif "customer_id" in table.c:
            where = table.c.customer_id == customer_id
        elif table.name in _UNDER:
            column, parent = _UNDER[table.name]
            mine = select(tables[parent].c.id).where(tables[parent].c.customer_id == customer_id)
            where = table.c[column].in_(mine.scalar_subquery())
        else:
            continue
        result = await session.execute(
            select(table).where(where).order_by(*table.primary_key.columns)
        )
        record[table.name] = [dict(row) for row in result.mappings()]
    return record


def sqlite_file(session: AsyncSession) -> str | None:
    """The SQLite file the session writes, if it is one."""
    url = session.get_bind().engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return url.database


async def checkpoint(path: str) -> None:
    """Copy SQLite's write-ahead log into the database file and empty it. After an erasure the
    log still holds the pages as they were; in the file, ``secure_delete`` has overwritten the
    freed space. Off the event loop (it waits for readers); a failure leaves it to SQLite's
    next automatic checkpoint."""

    def run() -> bool:
        timeout = SQLITE_BUSY_TIMEOUT_MS / 1000
        with contextlib.closing(sqlite3.connect(path, timeout=timeout)) as connection:
            busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return not busy

    try:
        done = await asyncio.to_thread(run)
    except sqlite3.Error:
        done = False
    if not done:
        logger.warning("the checkpoint after an erasure did not complete; SQLite's next will")


async def count_inbound(session: AsyncSession, customer_id: int) -> int:
    result = await session.execute(
        select(func.count()).select_from(InboxUpdate).where(InboxUpdate.customer_id == customer_id)
    )
    return int(result.scalar_one())
