"""Staff pinning a customer's tier (runs leave a pinned tier alone) and unpinning it; both
record who and why in tier history."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Customer, RfmScore, TierHistory


async def pin_tier(
    session: AsyncSession, customer_id: int, tier: str, now: datetime, why: str
) -> bool:
    """Pin a customer's tier (runs leave it alone); history records who and why. False when
    the customer does not exist."""
    customer = await session.get(Customer, customer_id, with_for_update=True)
    if customer is None:
        return False
    if customer.tier != tier:
        session.add(
            TierHistory(
                customer_id=customer_id,
                old_tier=customer.tier,
                new_tier=tier,
                reason=f"pinned: {why}"[:300],
                changed_at=now,
            )
        )
    customer.tier = tier
    customer.tier_pinned = True
    await session.flush()
    return True


async def unpin_tier(
    session: AsyncSession, customer_id: int, default_tier: str, now: datetime
) -> str | None:
    """Unpin and return the customer to the tier the rules gave at the last run (or the
    default tier without orders); None when the customer does not exist."""
    customer = await session.get(Customer, customer_id, with_for_update=True)
    if customer is None:
        return None
    rfm = await session.get(RfmScore, customer_id)
    tier = rfm.tier if rfm is not None and rfm.tier else default_tier
    if customer.tier != tier:
        session.add(
            TierHistory(
                customer_id=customer_id,
                old_tier=customer.tier,
                new_tier=tier,
                reason="unpinned: back to the tier the rules give",
                changed_at=now,
            )
        )
    customer.tier = tier
    customer.tier_pinned = False
    await session.flush()
    return tier
