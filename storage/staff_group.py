"""The staff groups ``/setup`` chose, by name (``main`` for a bare ``/setup``): one row per
name, read by every process and changed only by a compare-and-set, so two ``/setup`` at once
(in two processes) cannot both win; and the tickets whose topics a group change concerns."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.customers import _insert_ignoring_conflicts
from storage.models import StaffGroupSetting, Ticket

MAIN = "main"
"""The group a bare ``/setup`` sets up."""


async def stored_staff_groups(session: AsyncSession) -> dict[str, int]:
    """Every stored group: name → chat id."""
    result = await session.execute(select(StaffGroupSetting.name, StaffGroupSetting.chat_id))
    return {name: chat_id for name, chat_id in result.all()}


async def stored_staff_group(session: AsyncSession, name: str = MAIN) -> int | None:
    """The chat id ``/setup`` stored for ``name``, or None before its first one."""
    result = await session.execute(
        select(StaffGroupSetting.chat_id).where(StaffGroupSetting.name == name)
    )
    return result.scalar_one_or_none()


async def set_staff_group(
    session: AsyncSession,
    *,
    expected: int | None,
    chat_id: int,
    title: str | None,
    user_id: int | None,
    now: datetime,
    name: str = MAIN,
) -> bool:
    """Make ``chat_id`` the staff group ``name`` if the stored one is still ``expected`` (None:
    none yet); False when another ``/setup`` changed it meanwhile, or the chat became another
    group's (nothing is written then)."""
    values: dict[str, object] = {
        "chat_id": chat_id,
        "title": (title or "")[:256] or None,
        "set_by_user_id": user_id,
        "set_at": now,
    }
    if expected is None:
        inserted = await session.execute(
            _insert_ignoring_conflicts(session, StaffGroupSetting)
            .values(name=name, **values)
            .on_conflict_do_nothing()  # the name, or the chat being another group's
        )
        return bool(inserted.rowcount)  # type: ignore[attr-defined]
    elsewhere = select(StaffGroupSetting.name).where(StaffGroupSetting.chat_id == chat_id)
    changed = await session.execute(
        update(StaffGroupSetting)
        .where(
            StaffGroupSetting.name == name,
            StaffGroupSetting.chat_id == expected,
            ~elsewhere.exists(),
        )
        .values(**values)
    )
    return bool(changed.rowcount)  # type: ignore[attr-defined]


async def forget_topics(session: AsyncSession, chat_id: int) -> int:
    """A staff group left ``chat_id``: its tickets have no topic in the new one yet (the old
    group's thread ids mean nothing there). Returns how many tickets had one."""
    result = await session.execute(
        update(Ticket)
        .where(Ticket.staff_chat_id == chat_id, Ticket.topic_thread_id.is_not(None))
        .values(topic_thread_id=None, card_message_id=None, topic_closed=False)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def adopt_topics(session: AsyncSession, chat_id: int) -> int:
    """Topics made before tickets knew their chat (with ``CAREBOT_STAFF_CHAT_ID`` set, the
    migration could not tell): they are in ``chat_id``, the main group. How many."""
    result = await session.execute(
        update(Ticket)
        .where(Ticket.staff_chat_id.is_(None), Ticket.topic_thread_id.is_not(None))
        .values(staff_chat_id=chat_id)
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
