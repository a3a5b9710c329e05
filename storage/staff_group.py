"""The staff group ``/setup`` chose: one row, read by every process and changed only by a
compare-and-set, so two ``/setup`` at once (in two processes) cannot both win."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.customers import _insert_ignoring_conflicts
from storage.models import StaffGroupSetting, Ticket

ROW = 1
"""The one row's id."""

_STORED = select(StaffGroupSetting.chat_id).where(StaffGroupSetting.id == ROW)


async def stored_staff_group(session: AsyncSession) -> int | None:
    """The chat id ``/setup`` stored, or None before the first one."""
    return (await session.execute(_STORED)).scalar_one_or_none()


async def set_staff_group(
    session: AsyncSession,
    *,
    expected: int | None,
    chat_id: int,
    title: str | None,
    user_id: int | None,
    now: datetime,
) -> bool:
    """Make ``chat_id`` the staff group if the stored one is still ``expected`` (None: none
    yet); False when another ``/setup`` changed it meanwhile (nothing is written then)."""
    values: dict[str, object] = {
        "chat_id": chat_id,
        "title": (title or "")[:256] or None,
        "set_by_user_id": user_id,
        "set_at": now,
    }
    if expected is None:
        inserted = await session.execute(
            _insert_ignoring_conflicts(session, StaffGroupSetting)
            .values(id=ROW, **values)
            .on_conflict_do_nothing(index_elements=[StaffGroupSetting.id])
        )
        return bool(inserted.rowcount)  # type: ignore[attr-defined]
    changed = await session.execute(
        update(StaffGroupSetting)
        .where(StaffGroupSetting.id == ROW, StaffGroupSetting.chat_id == expected)
        .values(**values)
    )
    return bool(changed.rowcount)  # type: ignore[attr-defined]


async def forget_topics(session: AsyncSession) -> int:
    """The staff group moved: no ticket has a topic in the new one yet (the old group's thread
    ids mean nothing there). Returns how many tickets had one."""
    result = await session.execute(
        update(Ticket)
        .where(Ticket.topic_thread_id.is_not(None))
        .values(topic_thread_id=None, card_message_id=None, topic_closed=False)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def tickets_without_topic(session: AsyncSession) -> list[int]:
    """Tickets not closed whose topic does not exist yet (waiting for a staff group)."""
    result = await session.execute(
        select(Ticket.id)
        .where(Ticket.open_customer_id.is_not(None), Ticket.topic_thread_id.is_(None))
        .order_by(Ticket.id)
    )
    return list(result.scalars())
