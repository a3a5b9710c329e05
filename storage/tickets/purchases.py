"""A customer's orders as the desk reads them: the card's summary, the orders the complaint flow
offers and the one it settles on (by id or by the shop's reference)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Order


@dataclass(frozen=True)
class OrderSummary:
    count: int
    spend_cents: int


async def order_summary(session: AsyncSession, customer_id: int) -> OrderSummary:
    """Counted orders (not refunded or cancelled, as for RFM) and their value in the shop's
    currency."""
    result = await session.execute(
        select(func.count(), func.coalesce(func.sum(Order.value_cents), 0)).where(
            Order.customer_id == customer_id, Order.status.not_in(["refunded", "cancelled"])
        )
    )
    count, spend = result.one()
    return OrderSummary(int(count), int(spend))


async def customer_orders(session: AsyncSession, customer_id: int, limit: int) -> list[Order]:
    """The customer's latest orders, newest first (the complaint flow offers them)."""
    result = await session.execute(
        select(Order)
        .where(Order.customer_id == customer_id)
        .order_by(Order.placed_at.desc(), Order.id.desc())
        .limit(limit)
    )
    return list(result.scalars())


async def customer_order(session: AsyncSession, customer_id: int, order_id: int) -> Order | None:
    result = await session.execute(
        select(Order).where(Order.id == order_id, Order.customer_id == customer_id)
    )
    return result.scalar_one_or_none()


async def customer_order_by_reference(
    session: AsyncSession, customer_id: int, reference: str
) -> Order | None:
    result = await session.execute(
        select(Order).where(
            Order.customer_id == customer_id,
            func.lower(Order.external_id) == reference.strip().lower(),
        )
    )
    return result.scalars().first()
