"""Queries of the loyalty points ledger (README: Loyalty points): the movements of a customer,
what the jobs find to do (orders to earn or take back, welcome bonuses, points expiring), and
the coupons of redeemed points.

Every movement has a unique ``key``; inserting skips the keys already there, so a job run
twice, by two processes, or after a re-import adds nothing twice. Functions take the session
first and only flush.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.care import reachable
from storage.customers import _insert_ignoring_conflicts
from storage.models import COUNTED_ORDERS, Coupon, Customer, Order, PointsMovement

EARN = "earn"
REVERSE = "reverse"
WELCOME = "welcome"
REDEEM = "redeem"
ADJUST = "adjust"
EXPIRE = "expire"
KINDS = (EARN, REVERSE, WELCOME, REDEEM, ADJUST, EXPIRE)
POINTS_COUPON = "points"  # coupons.kind of redeemed points
INSERT_BATCH = 2000  # rows per INSERT (9 parameters each)

_LATER = aliased(PointsMovement, name="later")


@dataclass(frozen=True)
class Movement:
    """One ledger row as the customer and staff read it: the order it is about (earn,
    reverse), the coupon it became (redeem) and the order that used that coupon."""

    id: int
    kind: str
    points: int
    created_at: datetime
    expires_at: datetime | None
    order_id: int | None
    order: str | None
    reason: str | None
    coupon: str | None
    coupon_used_by: str | None
    coupon_valid_until: datetime | None


@dataclass(frozen=True)
class EarnCandidate:
    """A delivered, counted order without its earned points yet."""

    order_id: int
    customer_id: int
    value_cents: int
    delivered_at: datetime
    tier: str


@dataclass(frozen=True)
class ReverseCandidate:
    """Points earned on an order that is now refunded or cancelled, not taken back yet."""

    order_id: int
    customer_id: int
    points: int
    tier: str | None


async def movements_of(session: AsyncSession, customer_id: int) -> list[Movement]:
    """A customer's movements, oldest first, with their orders and coupons."""
    used_by = aliased(Order, name="used_by")
    result = await session.execute(
        select(
            PointsMovement.id,
            PointsMovement.kind,
            PointsMovement.points,
            PointsMovement.created_at,
            PointsMovement.expires_at,
            PointsMovement.order_id,
            Order.external_id,
            PointsMovement.reason,
            Coupon.code,
            used_by.external_id,
            Coupon.valid_until,
        )
        .outerjoin(Order, Order.id == PointsMovement.order_id)
        .outerjoin(Coupon, Coupon.id == PointsMovement.coupon_id)
        .outerjoin(used_by, used_by.id == Coupon.order_id)
        .where(PointsMovement.customer_id == customer_id)
        .order_by(PointsMovement.created_at, PointsMovement.id)
    )
    return [Movement(*row) for row in result]


async def total(session: AsyncSession, customer_id: int) -> int:
    """The sum of a customer's movements: their balance once the points that expired are
    closed (``points.expire`` runs hourly)."""
    result = await session.execute(
        select(func.coalesce(func.sum(PointsMovement.points), 0)).where(
            PointsMovement.customer_id == customer_id
        )
    )
    return int(result.scalar_one())


async def insert_movements(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> int:
    """Store movements, skipping the keys already there; how many were stored."""
    stored = 0
    for start in range(0, len(rows), INSERT_BATCH):
        statement = (
            _insert_ignoring_conflicts(session, PointsMovement)
            .on_conflict_do_nothing(index_elements=[PointsMovement.key])
            .returning(PointsMovement.id)
        )
        result = await session.execute(
            statement, [dict(row) for row in rows[start : start + INSERT_BATCH]]
        )
        stored += len(result.scalars().all())
    return stored


async def earn_candidates(
    session: AsyncSession, *, delivered_since: datetime, now: datetime
) -> list[EarnCandidate]:
    """Orders delivered between ``delivered_since`` and ``now``, still counted, of customers
    not erased, that have not earned their points yet (an index range on the delivery time;
    older deliveries' points would have expired already)."""
    earned = exists().where(PointsMovement.order_id == Order.id, PointsMovement.kind == EARN)
    result = await session.execute(
        select(Order.id, Order.customer_id, Order.value_cents, Order.delivered_at, Customer.tier)
        .join(Customer, Customer.id == Order.customer_id)
        .where(
            Order.delivered_at >= delivered_since,
            Order.delivered_at <= now,
            text(f"orders.{COUNTED_ORDERS}"),
            Customer.erased_at.is_(None),
            ~earned,
        )
        .order_by(Order.id)
    )
    return [
        EarnCandidate(int(order), int(customer), int(value), delivered, str(tier))
        for order, customer, value, delivered, tier in result
        if delivered is not None
    ]


async def reverse_candidates(
    session: AsyncSession, *, statuses: Sequence[str], now: datetime
) -> list[ReverseCandidate]:
    """Earned points of orders now in one of ``statuses``, not taken back yet and not expired
    (points that expired are gone already)."""
    if not statuses:
        return []
    reversed_ = exists().where(_LATER.order_id == PointsMovement.order_id, _LATER.kind == REVERSE)
    result = await session.execute(
        select(
            PointsMovement.order_id,
            PointsMovement.customer_id,
            PointsMovement.points,
            PointsMovement.tier,
        )
        .join(Order, Order.id == PointsMovement.order_id)
        .where(
            PointsMovement.kind == EARN,
            PointsMovement.expires_at > now,
            Order.status.in_(list(statuses)),
            ~reversed_,
        )
        .order_by(PointsMovement.id)
    )
    return [
        ReverseCandidate(int(order), int(customer), int(points), tier)
        for order, customer, points, tier in result
        if order is not None
    ]


async def welcome_candidates(session: AsyncSession) -> list[tuple[int, str]]:
    """(customer, tier) of customers linked to both the shop's record and a Telegram chat who
    have not had their welcome bonus."""
    welcomed = exists().where(
        PointsMovement.customer_id == Customer.id, PointsMovement.kind == WELCOME
    )
    result = await session.execute(
        select(Customer.id, Customer.tier)
        .where(
            Customer.external_id.is_not(None),
            Customer.telegram_user_id.is_not(None),
            Customer.erased_at.is_(None),
            ~welcomed,
        )
        .order_by(Customer.id)
    )
    return [(int(customer_id), str(tier)) for customer_id, tier in result]


async def customers_expiring(
    session: AsyncSession, *, after: datetime, until: datetime, reachable_only: bool = False
) -> list[int]:
    """Customers with points that expire in ``(after, until]`` (``reachable_only``: those who
    may get care messages)."""
    statement = (
        select(PointsMovement.customer_id)
        .distinct()
        .where(
            PointsMovement.expires_at > after,
            PointsMovement.expires_at <= until,
            PointsMovement.points > 0,
        )
    )
    if reachable_only:
        statement = statement.join(Customer, Customer.id == PointsMovement.customer_id).where(
            reachable()
        )
    result = await session.execute(statement.order_by(PointsMovement.customer_id))
    return [int(customer_id) for customer_id in result.scalars()]


async def unclosed_expiries(session: AsyncSession, *, now: datetime) -> list[int]:
    """Customers with points that expired by ``now`` and no expire row closing them yet."""
    closed = exists().where(
        _LATER.customer_id == PointsMovement.customer_id,
        _LATER.kind == EXPIRE,
        _LATER.expires_at == PointsMovement.expires_at,
    )
    result = await session.execute(
        select(PointsMovement.customer_id)
        .distinct()
        .where(
            PointsMovement.expires_at <= now,
            PointsMovement.points > 0,
            ~closed,
        )
        .order_by(PointsMovement.customer_id)
    )
    return [int(customer_id) for customer_id in result.scalars()]


async def add_coupon(session: AsyncSession, values: Mapping[str, Any]) -> int | None:
    """Store a coupon of redeemed points; None when its code is taken (draw another)."""
    statement = (
        _insert_ignoring_conflicts(session, Coupon)
        .values(**values, kind=POINTS_COUPON)
        .on_conflict_do_nothing()
        .returning(Coupon.id)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def erase(session: AsyncSession, customer_id: int) -> int:
    """Delete a customer's movements (``/forget``); how many there were."""
    result = await session.execute(
        delete(PointsMovement).where(PointsMovement.customer_id == customer_id)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
