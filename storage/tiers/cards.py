"""What staff read about one customer's value: finding the customer and their tier card
(``carebot tiers show``, the customer card)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Customer, RfmScore, TierHistory, TierRun
from storage.tiers.runs import last_run


async def find_customer(session: AsyncSession, reference: str) -> Customer | None:
    """A customer by the shop's id, ``tg:<telegram user id>`` or ``id:<carebot id>``."""
    kind, _, value = reference.partition(":")
    statement = select(Customer)
    if kind == "tg" and value.lstrip("-").isdigit():
        statement = statement.where(Customer.telegram_user_id == int(value))
    elif kind == "id" and value.isdigit():
        statement = statement.where(Customer.id == int(value))
    else:
        statement = statement.where(Customer.external_id == reference)
    result = await session.execute(statement)
    return result.scalar_one_or_none()


@dataclass(frozen=True)
class TierCard:
    """What staff see about a customer's value: the customer card's tier section."""

    customer: Customer
    rfm: RfmScore | None
    history: list[TierHistory]
    last_run: TierRun | None


async def tier_card(session: AsyncSession, customer_id: int, history: int = 10) -> TierCard | None:
    customer = await session.get(Customer, customer_id)
    if customer is None:
        return None
    rfm = await session.get(RfmScore, customer_id)
    rows = await session.execute(
        select(TierHistory)
        .where(TierHistory.customer_id == customer_id)
        .order_by(TierHistory.changed_at.desc(), TierHistory.id.desc())
        .limit(history)
    )
    return TierCard(customer, rfm, list(rows.scalars()), await last_run(session))
