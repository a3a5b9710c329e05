"""Queries on the inbox: every update a person sent, stored before Telegram is told it arrived
and handled from here exactly once (design, Principle 2; ``bot.inbox`` drives it).

An update is ``pending`` from the moment it is stored until the transaction that runs its rules
marks it ``handled`` (dropping the raw update, keeping the record); an update whose rules keep
failing is ``failed`` (parked) after its last attempt, until ``carebot inbox retry``. An update
that cannot be read at all is stored ``failed`` at once (``store_unreadable``, ``park``).

Functions take the session first and only flush; the caller owns the transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.columns import UTCDateTime
from storage.models import Customer, InboxUpdate

MAX_ERROR_LENGTH = 500

ConversationKey = tuple[int | None, int | None]
"""A private chat ``(chat_id, None)``, a topic of a group ``(chat_id, thread_id)``."""


class State(StrEnum):
    PENDING = "pending"
    HANDLED = "handled"
    FAILED = "failed"
    """Parked after its last attempt: waits for an operator (``carebot inbox retry``)."""


@dataclass(frozen=True)
class Pending:
    """A stored update waiting for its rules: the raw update and its conversation."""

    id: int
    update_id: int
    conversation: ConversationKey
    payload: str


UNREADABLE_KIND = "invalid"
"""The kind of an update that could not be read (stored parked, never handled)."""


def _build_store(dialect: str, *, parked: bool = False) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    customer_id = (
        select(Customer.id)
        # Its own parameter: asyncpg's multi-row insert needs each bind used once.
        .where(Customer.telegram_user_id == bindparam("customer_user_id"))
        .scalar_subquery()
    )
    return (
        insert(cast(Table, InboxUpdate.__table__))
        .values(
            update_id=bindparam("update_id"),
            customer_id=customer_id,
            chat_id=bindparam("chat_id"),
            thread_id=bindparam("thread_id"),
            telegram_message_id=bindparam("telegram_message_id"),
            sender_user_id=bindparam("sender_user_id"),
            kind=bindparam("kind"),
            text=bindparam("text"),
            media_file_id=bindparam("media_file_id"),
            edited=bindparam("edited"),
            received_at=bindparam("received_at", type_=UTCDateTime()),
            state=(State.FAILED if parked else State.PENDING).value,
            payload=bindparam("payload"),
            attempts=1 if parked else 0,
            **({"error": bindparam("error")} if parked else {}),
        )
        .on_conflict_do_nothing(index_elements=["update_id"])
        .returning(InboxUpdate.update_id, InboxUpdate.id)
    )


# Built once per dialect: this runs for every fetched batch, and building a statement costs
# more than executing it on SQLite.
_STORE = {dialect: _build_store(dialect) for dialect in ("sqlite", "postgresql")}
_STORE_UNREADABLE = {
    dialect: _build_store(dialect, parked=True) for dialect in ("sqlite", "postgresql")
}


async def store(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> dict[int, int]:
    """Store updates in one statement; returns ``{update_id: inbox id}`` of the new ones (a
    redelivered update is already stored and is left out).

    Each row has ``update_id``, ``chat_id``, ``thread_id``, ``telegram_message_id``,
    ``sender_user_id``, ``kind``, ``text``, ``media_file_id``, ``edited``, ``received_at`` and
    ``payload`` (the raw update as JSON); the sender's customer id is looked up in the same
    statement.
    """
    if not rows:
        return {}
    statement = _STORE[session.get_bind().dialect.name]
    params = [{**row, "customer_user_id": row["sender_user_id"]} for row in rows]
    result = await session.execute(statement, params)
    return {update_id: row_id for update_id, row_id in result.all()}


async def store_unreadable(
    session: AsyncSession, rows: Sequence[Mapping[str, Any]]
) -> dict[int, int]:
    """Store updates that cannot be read, parked at once (``failed``, one attempt) with their
    ``error`` (the error's type, never what the update holds), as ``store`` does otherwise:
    nothing will handle them, and they show in ``carebot inbox failed``."""
    if not rows:
        return {}
    statement = _STORE_UNREADABLE[session.get_bind().dialect.name]
    params = [{**row, "customer_user_id": row["sender_user_id"]} for row in rows]
    result = await session.execute(statement, params)
    return {update_id: row_id for update_id, row_id in result.all()}


_PENDING = text("inbox.state = 'pending'")


_SELECT_PENDING = select(
    InboxUpdate.id,
    InboxUpdate.update_id,
    InboxUpdate.chat_id,
    InboxUpdate.thread_id,
    InboxUpdate.payload,
).where(_PENDING)


def _pending_rows(result: Any) -> list[Pending]:
    return [
        Pending(row_id, update_id, (chat_id, thread_id), payload or "{}")
        for row_id, update_id, chat_id, thread_id, payload in result.all()
    ]


async def pending(session: AsyncSession, *, up_to_id: int | None = None) -> list[Pending]:
    """Pending updates in arrival order: all of them, or those stored up to ``up_to_id``."""
    statement = _SELECT_PENDING
    if up_to_id is not None:
        statement = statement.where(InboxUpdate.id <= up_to_id)
    return _pending_rows(await session.execute(statement.order_by(InboxUpdate.id)))


_INBOX = cast(Table, InboxUpdate.__table__)
# Core, not an ORM-enabled UPDATE: this runs in every unit of work.
_MARK_HANDLED = (
    update(_INBOX)
    .where(_INBOX.c.id.in_(bindparam("ids", expanding=True)), _PENDING)
    .values(
        state=State.HANDLED.value,
        payload=None,
        error=None,
        handled_at=bindparam("now", type_=UTCDateTime()),
    )
)


async def mark_handled(session: AsyncSession, ids: Sequence[int], now: datetime) -> int:
    """Mark updates handled (in the transaction of their effects) and drop their raw update;
    returns how many were still pending (fewer: another process handled them first)."""
    if not ids:
        return 0
    result = await session.execute(_MARK_HANDLED, {"ids": list(ids), "now": now})
    return int(result.rowcount)  # type: ignore[attr-defined]


async def record_failure(
    session: AsyncSession, row_id: int, error: str, *, max_attempts: int
) -> tuple[int, bool] | None:
    """Count a failed attempt at a pending update: its number, and whether that was the last
    (the update is parked); None when it is no longer pending."""
    row = await session.get(InboxUpdate, row_id, with_for_update=True)
    if row is None or row.state != State.PENDING:
        return None
    row.attempts += 1
    row.error = error[:MAX_ERROR_LENGTH]
    if row.attempts >= max_attempts:
        row.state = State.FAILED.value
    await session.flush()
    return row.attempts, row.state == State.FAILED


async def park(session: AsyncSession, row_id: int, error: str) -> bool:
    """Park a pending update at once (it cannot be read: trying again would not help); whether
    it was still pending."""
    result = await session.execute(
        update(_INBOX)
        .where(_INBOX.c.id == row_id, _PENDING)
        .values(
            state=State.FAILED.value,
            attempts=_INBOX.c.attempts + 1,
            error=error[:MAX_ERROR_LENGTH],
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def retry(session: AsyncSession, ids: Sequence[int] | None = None) -> list[int]:
    """Parked updates back to pending with fresh attempts (``None``: all); their ids."""
    condition = InboxUpdate.state == State.FAILED.value
    if ids is not None:
        condition = and_(condition, InboxUpdate.id.in_(list(ids)))
    result = await session.execute(
        update(InboxUpdate)
        .where(condition)
        .values(state=State.PENDING.value, attempts=0)
        .returning(InboxUpdate.id)
    )
    return sorted(result.scalars())


@dataclass(frozen=True)
class Parked:
    id: int
    update_id: int
    chat_id: int | None
    thread_id: int | None
    kind: str
    attempts: int
    error: str | None
    received_at: datetime


async def parked(session: AsyncSession, limit: int = 100) -> list[Parked]:
    """Failed (parked) updates, oldest first."""
    result = await session.execute(
        select(
            InboxUpdate.id,
            InboxUpdate.update_id,
            InboxUpdate.chat_id,
            InboxUpdate.thread_id,
            InboxUpdate.kind,
            InboxUpdate.attempts,
            InboxUpdate.error,
            InboxUpdate.received_at,
        )
        .where(InboxUpdate.state == State.FAILED.value)
        .order_by(InboxUpdate.id)
        .limit(limit)
    )
    return [Parked(*row) for row in result.all()]


@dataclass(frozen=True)
class InboxStats:
    by_state: dict[str, int]
    oldest_pending: datetime | None


async def stats(session: AsyncSession) -> InboxStats:
    """Updates by state, and when the oldest pending one arrived."""
    counts = await session.execute(
        select(InboxUpdate.state, func.count()).group_by(InboxUpdate.state)
    )
    oldest = await session.execute(select(func.min(InboxUpdate.received_at)).where(_PENDING))
    return InboxStats(
        by_state={state: int(count) for state, count in counts.all()},
        oldest_pending=oldest.scalar_one(),  # min() keeps the column's type: an aware UTC time
    )


def _conversation_lock_key(conversation: ConversationKey) -> int:
    digest = hashlib.blake2b(
        f"carebot:inbox:{conversation[0]}:{conversation[1]}".encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


async def lock_conversation(session: AsyncSession, conversation: ConversationKey) -> None:
    """PostgreSQL: hold the conversation until this transaction ends, so two bot processes
    never handle one conversation at once (a second one waits, then finds the updates handled).
    SQLite has one bot process per database: nothing to do."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            select(func.pg_advisory_xact_lock(_conversation_lock_key(conversation)))
        )


async def pending_in(
    session: AsyncSession, conversation: ConversationKey, limit: int
) -> list[Pending]:
    """A conversation's pending updates in arrival order, whichever process stored them (read
    under ``lock_conversation``)."""
    chat_id, thread_id = conversation
    statement = _SELECT_PENDING.where(
        InboxUpdate.chat_id.is_(None) if chat_id is None else InboxUpdate.chat_id == chat_id,
        InboxUpdate.thread_id.is_(None)
        if thread_id is None
        else InboxUpdate.thread_id == thread_id,
    )
    return _pending_rows(await session.execute(statement.order_by(InboxUpdate.id).limit(limit)))


async def last_id(session: AsyncSession) -> int:
    """The newest update's row id (0 for an empty inbox): the sweep's mark."""
    result = await session.execute(select(func.max(InboxUpdate.id)))
    return int(result.scalar_one() or 0)
