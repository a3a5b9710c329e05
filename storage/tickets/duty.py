"""Who is on duty in each staff group (``/duty on|off``), and what auto-assignment reads of
them: the candidates in round-robin order and their open tickets."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.customers import _insert_ignoring_conflicts
from storage.models import StaffDuty, Ticket


async def set_duty(
    session: AsyncSession, *, group: str, user_id: int, name: str, on_duty: bool, now: datetime
) -> None:
    """Record ``/duty on`` or ``/duty off`` of a member in a group."""
    values = {"name": name[:128], "on_duty": on_duty, "changed_at": now}
    statement = _insert_ignoring_conflicts(session, StaffDuty).values(
        group_name=group, user_id=user_id, assigned_turn=0, **values
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[StaffDuty.group_name, StaffDuty.user_id], set_=values
        )
    )


async def on_duty(session: AsyncSession, group: str, *, lock: bool = False) -> list[StaffDuty]:
    """The group's members on duty, the one auto-assignment served longest ago first (never:
    first of all), then by user id. ``lock``: held until commit, so two tickets arriving at
    once are handed out one after the other (PostgreSQL; SQLite writes one at a time)."""
    statement = (
        select(StaffDuty)
        .where(StaffDuty.group_name == group, StaffDuty.on_duty.is_(True))
        .order_by(StaffDuty.assigned_turn, StaffDuty.user_id)
    )
    if lock:
        statement = statement.with_for_update()
    return list((await session.execute(statement)).scalars())


async def open_tickets_of(session: AsyncSession, user_ids: list[int]) -> dict[int, int]:
    """How many tickets not closed each of ``user_ids`` is assigned (absent: none)."""
    if not user_ids:
        return {}
    result = await session.execute(
        select(Ticket.assignee_user_id, func.count())
        .where(Ticket.assignee_user_id.in_(user_ids), Ticket.open_customer_id.is_not(None))
        .group_by(Ticket.assignee_user_id)
    )
    return {int(user_id or 0): int(count) for user_id, count in result.all()}


async def mark_assigned(session: AsyncSession, group: str, user_id: int) -> None:
    """Auto-assignment gave the member a ticket: they take the group's next turn (round robin
    moves on; a turn, not a time, so two tickets in one instant still alternate)."""
    latest = (
        select(func.coalesce(func.max(StaffDuty.assigned_turn), 0))
        .where(StaffDuty.group_name == group)
        .scalar_subquery()
    )
    await session.execute(
        update(StaffDuty)
        .where(StaffDuty.group_name == group, StaffDuty.user_id == user_id)
        .values(assigned_turn=latest + 1)
        .execution_options(synchronize_session=False)
    )
