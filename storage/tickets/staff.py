"""Staff members: who a membership check found to be staff, remembered; found by username."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.customers import _insert_ignoring_conflicts
from storage.models import StaffMember


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
