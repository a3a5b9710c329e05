"""Queries of campaigns (README: Campaigns): who is in a segment, the recipients a campaign was
queued for (once each: ``ix_campaign_recipients_customer``), cancelling what is still queued,
the figures by tier, and erasure.

A segment only ever holds customers who may get care messages: consented, reachable (not
blocked), not erased, on Telegram. Functions take the session first and only flush.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.care import _CUSTOMER_COLUMNS, CareCustomer, _customer, reachable
from storage.customers import _insert_ignoring_conflicts
from storage.models import (
    UNCOUNTED_STATUSES,
    CampaignRecipient,
    CampaignRun,
    Coupon,
    Customer,
    Order,
    OrderLine,
    Outbox,
    PointsMovement,
    Product,
)

CAMPAIGN_KIND = "campaign"
"""The outbox ``kind`` of a campaign's messages, and the ``coupons.kind`` of its coupons."""
_LATER = aliased(Order, name="later_order")


@dataclass(frozen=True)
class SegmentFilter:
    """A campaign's segment in database terms (moments in UTC)."""

    tiers: Sequence[str] = ()
    stages: Sequence[str] = ()
    languages: Sequence[str] = ()
    last_order_after: datetime | None = None
    last_order_before: datetime | None = None
    categories: Sequence[str] = ()
    points_at_least: int | None = None


def _counted(order: Any) -> Any:
    return order.status.not_in(UNCOUNTED_STATUSES)


def _conditions(segment: SegmentFilter) -> list[Any]:
    """The WHERE conditions on ``customers`` of the segment (consent and reach always)."""
    conditions = [reachable()]
    if segment.tiers:
        conditions.append(Customer.tier.in_(list(segment.tiers)))
    if segment.stages:
        conditions.append(Customer.stage.in_(list(segment.stages)))
    if segment.languages:
        conditions.append(Customer.language.in_(list(segment.languages)))
    if segment.last_order_after is not None:
        conditions.append(
            exists().where(
                Order.customer_id == Customer.id,
                _counted(Order),
                Order.placed_at >= segment.last_order_after,
            )
        )
    if segment.last_order_before is not None:
        conditions.append(exists().where(Order.customer_id == Customer.id, _counted(Order)))
        conditions.append(
            ~exists().where(
                _LATER.customer_id == Customer.id,
                _counted(_LATER),
                _LATER.placed_at >= segment.last_order_before,
            )
        )
    if segment.categories:
        conditions.append(
            select(OrderLine.id)
            .join(Order, Order.id == OrderLine.order_id)
            .join(Product, Product.id == OrderLine.product_id)
            .where(
                Order.customer_id == Customer.id,
                _counted(Order),
                Product.category.in_(list(segment.categories)),
            )
            .exists()
        )
    if segment.points_at_least is not None:
        balance = (
            select(func.coalesce(func.sum(PointsMovement.points), 0))
            .where(PointsMovement.customer_id == Customer.id)
            .scalar_subquery()
        )
        conditions.append(balance >= segment.points_at_least)
    return conditions


async def counts_by_tier(session: AsyncSession, segment: SegmentFilter) -> dict[str, int]:
    """How many customers of the segment, by tier."""
    result = await session.execute(
        select(Customer.tier, func.count())
        .where(*_conditions(segment))
        .group_by(Customer.tier)
        .order_by(Customer.tier)
    )
    return {str(tier): int(count) for tier, count in result}


async def first_of_language(
    session: AsyncSession, segment: SegmentFilter, language: str
) -> CareCustomer | None:
    """The first customer of the segment who reads ``language`` (a preview's sample)."""
    result = await session.execute(
        select(*_CUSTOMER_COLUMNS)
        .where(*_conditions(segment), Customer.language == language)
        .order_by(Customer.id)
        .limit(1)
    )
    row = result.first()
    return _customer(row) if row is not None else None


async def find_run(session: AsyncSession, name: str) -> CampaignRun | None:
    """The campaign's row, once it was first sent."""
    result = await session.execute(select(CampaignRun).where(CampaignRun.name == name))
    return result.scalar_one_or_none()


async def start_run(session: AsyncSession, name: str, now: datetime) -> CampaignRun:
    """The campaign's row, created by its first send (two sends at once: one row)."""
    await session.execute(
        _insert_ignoring_conflicts(session, CampaignRun)
        .values(name=name, created_at=now)
        .on_conflict_do_nothing(index_elements=[CampaignRun.name])
    )
    run = await find_run(session, name)
    assert run is not None
    return run


async def not_yet_queued(
    session: AsyncSession, run_id: int, segment: SegmentFilter
) -> list[CareCustomer]:
    """The customers of the segment the campaign was not queued for yet."""
    queued = exists().where(
        CampaignRecipient.campaign_id == run_id, CampaignRecipient.customer_id == Customer.id
    )
    result = await session.execute(
        select(*_CUSTOMER_COLUMNS).where(*_conditions(segment), ~queued).order_by(Customer.id)
    )
    return [_customer(row) for row in result]


async def add_recipients(
    session: AsyncSession, rows: Sequence[Mapping[str, Any]]
) -> dict[int, int]:
    """Store recipients (``campaign_id``, ``customer_id``, ``tier``, ``queued_at``); those
    already there are skipped. Returns {customer: recipient id} of the ones stored."""
    stored: dict[int, int] = {}
    for start in range(0, len(rows), 1000):
        statement = (
            _insert_ignoring_conflicts(session, CampaignRecipient)
            .on_conflict_do_nothing()
            .returning(CampaignRecipient.customer_id, CampaignRecipient.id)
        )
        result = await session.execute(
            statement, [dict(row) for row in rows[start : start + 1000]]
        )
        stored.update({int(customer): int(id_) for customer, id_ in result})
    return stored


async def drop_recipients(session: AsyncSession, ids: Sequence[int]) -> None:
    """Forget recipients that got nothing after all (a coupon code was taken): the next send
    tries them again."""
    if ids:
        await session.execute(delete(CampaignRecipient).where(CampaignRecipient.id.in_(ids)))


async def coupon_ids(session: AsyncSession, codes: Sequence[str]) -> dict[str, int]:
    """{code: coupon id} of these codes."""
    result = await session.execute(select(Coupon.code, Coupon.id).where(Coupon.code.in_(codes)))
    return {str(code): int(id_) for code, id_ in result}


async def link(session: AsyncSession, run_id: int, key_prefix: str) -> None:
    """Point the campaign's new recipients at their outbox rows (keyed ``<prefix><customer>``)."""
    result = await session.execute(
        select(CampaignRecipient.id, Outbox.id)
        .join(Outbox, Outbox.customer_id == CampaignRecipient.customer_id)
        .where(
            CampaignRecipient.campaign_id == run_id,
            CampaignRecipient.outbox_id.is_(None),
            Outbox.dedupe_key.startswith(key_prefix, autoescape=True),
        )
    )
    pairs = [{"id": recipient, "outbox_id": row} for recipient, row in result]
    if pairs:
        await session.execute(update(CampaignRecipient), pairs)


async def set_coupons(session: AsyncSession, coupons: Mapping[int, int]) -> None:
    """Record each recipient's coupon ({recipient id: coupon id})."""
    if coupons:
        await session.execute(
            update(CampaignRecipient),
            [{"id": recipient, "coupon_id": coupon} for recipient, coupon in coupons.items()],
        )


async def cancel(session: AsyncSession, run: CampaignRun, now: datetime) -> int:
    """Stop the campaign: mark it cancelled and cancel its rows still pending (a claimed row
    is already on its way), in the caller's transaction. Returns the rows cancelled."""
    await session.execute(
        update(CampaignRun)
        .where(CampaignRun.id == run.id, CampaignRun.cancelled_at.is_(None))
        .values(cancelled_at=now)
    )
    rows = select(CampaignRecipient.outbox_id).where(CampaignRecipient.campaign_id == run.id)
    result = await session.execute(
        update(Outbox)
        .where(Outbox.id.in_(rows), Outbox.state == "pending")
        .values(state="cancelled", last_error="campaign cancelled", updated_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def mark_pressed(
    session: AsyncSession, recipient_id: int, customer_id: int, now: datetime
) -> bool:
    """The customer pressed a button of their campaign message (its first press counts)."""
    result = await session.execute(
        update(CampaignRecipient)
        .where(
            CampaignRecipient.id == recipient_id,
            CampaignRecipient.customer_id == customer_id,
            CampaignRecipient.pressed_at.is_(None),
        )
        .values(pressed_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


@dataclass
class TierFigures:
    """A campaign's figures for the recipients of one tier (or all of them)."""

    tier: str
    queued: int = 0
    waiting: int = 0
    sent: int = 0
    blocked: int = 0
    """Not delivered for good: the bot blocked, consent withdrawn, data erased."""
    cancelled: int = 0
    pressed: int = 0
    coupons: int = 0
    coupons_used: int = 0
    revenue_cents: int = 0
    """The value of the orders that used the campaign's coupons (shop currency)."""

    def add(self, other: TierFigures) -> None:
        for name in self.__dataclass_fields__:
            if name != "tier":
                setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class CampaignFigures:
    by_tier: list[TierFigures] = field(default_factory=list)

    @property
    def total(self) -> TierFigures:
        total = TierFigures("")
        for figures in self.by_tier:
            total.add(figures)
        return total


def _count(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


async def figures(session: AsyncSession, run_id: int) -> CampaignFigures:
    """Queued, waiting, sent, blocked, cancelled, "stop" pressed, coupons issued and used and
    the revenue of the orders that used them, by the recipients' tier."""
    used_by = aliased(Order, name="used_by")
    result = await session.execute(
        select(
            CampaignRecipient.tier,
            func.count(),
            _count(Outbox.state.in_(("pending", "claimed"))),
            _count(Outbox.state == "sent"),
            _count(Outbox.state == "failed"),
            _count(Outbox.state == "cancelled"),
            func.count(CampaignRecipient.pressed_at),
            func.count(CampaignRecipient.coupon_id),
            func.count(Coupon.used_at),
            func.coalesce(func.sum(used_by.value_cents), 0),
        )
        .outerjoin(Outbox, Outbox.id == CampaignRecipient.outbox_id)
        .outerjoin(Coupon, Coupon.id == CampaignRecipient.coupon_id)
        .outerjoin(used_by, and_(used_by.id == Coupon.order_id, Coupon.used_at.is_not(None)))
        .where(CampaignRecipient.campaign_id == run_id)
        .group_by(CampaignRecipient.tier)
        .order_by(CampaignRecipient.tier)
    )
    return CampaignFigures(
        [TierFigures(str(row[0]), *(int(value) for value in row[1:])) for row in result]
    )


async def runs(session: AsyncSession) -> dict[str, CampaignRun]:
    """Every campaign sent so far, by name."""
    result = await session.execute(select(CampaignRun))
    return {run.name: run for run in result.scalars()}


async def erase(session: AsyncSession, customer_id: int) -> int:
    """Delete the customer's recipient rows (``/forget``); how many there were."""
    result = await session.execute(
        delete(CampaignRecipient).where(CampaignRecipient.customer_id == customer_id)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
