"""Banned customers: their messages are kept, never relayed, and start no ticket."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from storage.customers import _insert_ignoring_conflicts
from storage.models import CustomerBan


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
