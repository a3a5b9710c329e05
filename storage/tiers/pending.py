"""The queue of customers whose orders changed (``rfm_pending``), read and written outside
runs: the importer and staff queue customers, an incremental run claims them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import RfmPending
from storage.tiers.dialect import dialect_name


async def mark_pending(session: AsyncSession, customer_ids: Sequence[int], now: datetime) -> None:
    """Queue customers whose orders changed for the next incremental run (an upsert: see
    ``RfmPending``)."""
    if not customer_ids:
        return
    insert = postgresql.insert if dialect_name(session) == "postgresql" else sqlite.insert
    statement = insert(RfmPending).values(
        [{"customer_id": customer_id, "marked_at": now} for customer_id in set(customer_ids)]
    )
    statement = statement.on_conflict_do_update(
        index_elements=[RfmPending.customer_id],
        set_={"marked_at": statement.excluded.marked_at},
    )
    await session.execute(statement)


async def pending_customers(session: AsyncSession) -> list[int]:
    """The customers queued for the next incremental run."""
    return list((await session.execute(select(RfmPending.customer_id))).scalars())


async def has_pending(session: AsyncSession) -> bool:
    result = await session.execute(select(RfmPending.customer_id).limit(1))
    return result.first() is not None


async def pending_count(session: AsyncSession) -> int:
    result = await session.execute(select(func.count()).select_from(RfmPending))
    return int(result.scalar_one())
