"""Queries of the care planners (issue 7): who has a birthday, a holiday, a follow-up visit or a
retention offer due, coupons, and stale greetings in the outbox.

Every lookup is set-based and indexed (``ix_customers_birthday``, ``ix_orders_delivered``,
``ix_tickets_resolved``); the planner narrows the rows to each customer's local day in Python.
Only customers who may get care messages are returned: consented, reachable, not erased, with
a chat. Functions take the session first and only flush.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, false, func, or_, select, text, true, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.customers import _insert_ignoring_conflicts
from storage.models import (
    AT_RISK,
    COUNTED_ORDERS,
    WITH_COUPON,
    Coupon,
    Customer,
    Order,
    Outbox,
    Ticket,
)

COUPON_BATCH = 1000  # rows per INSERT (SQLite allows 32,766 parameters per statement)
_OPEN = text("outbox.state IN ('pending', 'claimed')")


@dataclass(frozen=True)
class CareCustomer:
    """What a planner needs to know about one customer."""

    id: int
    chat_id: int
    name: str | None
    language: str
    timezone: str
    country: str
    tier: str
    birth_month: int | None
    birth_day: int | None
    birthday_lunar: bool


@dataclass(frozen=True)
class VisitCandidate:
    """A delivered order (or resolved ticket) whose follow-up visit may fall today."""

    customer: CareCustomer
    reference_id: int
    reference: str
    at: datetime


@dataclass(frozen=True)
class TierRange:
    """Rows whose time falls in ``[start, end)`` are wanted for customers of ``tiers`` (and,
    when ``others`` is set, of every tier not in ``known``)."""

    start: datetime
    end: datetime
    tiers: tuple[str, ...]
    others: bool
    known: tuple[str, ...]


_CUSTOMER_COLUMNS = (
    Customer.id,
    Customer.chat_id,
    Customer.name,
    Customer.language,
    Customer.timezone,
    Customer.country,
    Customer.tier,
    Customer.birth_month,
    Customer.birth_day,
    Customer.birthday_lunar,
)


def _customer(row: Any) -> CareCustomer:
    """The first columns of ``row`` (``_CUSTOMER_COLUMNS``, in order) as a CareCustomer."""
    id_, chat_id, name, language, timezone, country, tier, month, day, lunar = tuple(row)[:10]
    return CareCustomer(
        id_, chat_id, name, language, timezone, country, tier, month, day, bool(lunar)
    )


def _reachable() -> Any:
    return and_(
        Customer.consent.is_(True),
        Customer.reachable.is_(True),
        Customer.erased_at.is_(None),
        Customer.chat_id.is_not(None),
    )


_OPEN_TICKET = aliased(Ticket, name="open_ticket")
_LATER_ORDER = aliased(Order, name="later_order")


def _no_open_ticket() -> Any:
    return ~exists().where(_OPEN_TICKET.open_customer_id == Customer.id)


def _tier_condition(tier_range: TierRange) -> Any:
    conditions = [Customer.tier.in_(tier_range.tiers)] if tier_range.tiers else []
    if tier_range.others:
        conditions.append(Customer.tier.not_in(tier_range.known))
    return or_(*conditions) if conditions else false()


async def birthday_customers(
    session: AsyncSession,
    *,
    solar: Iterable[tuple[int, int]],
    lunar: Iterable[tuple[int, int]],
) -> list[CareCustomer]:
    """Customers born on one of these (month, day) pairs: ``solar`` for Gregorian birthdays,
    ``lunar`` for lunar ones. One indexed lookup per pair (no scan)."""
    conditions = [
        and_(
            Customer.birth_month == month,
            Customer.birth_day == day,
            Customer.birthday_lunar.is_(is_lunar),
        )
        for pairs, is_lunar in ((sorted(set(solar)), False), (sorted(set(lunar)), True))
        for month, day in pairs
    ]
    if not conditions:
        return []
    result = await session.execute(
        select(*_CUSTOMER_COLUMNS).where(or_(*conditions), _reachable()).order_by(Customer.id)
    )
    return [_customer(row) for row in result]


async def customers_in_countries(
    session: AsyncSession, countries: Sequence[str]
) -> list[CareCustomer]:
    """Every customer of these countries who may get care messages (holiday greetings)."""
    if not countries:
        return []
    result = await session.execute(
        select(*_CUSTOMER_COLUMNS)
        .where(Customer.country.in_(sorted(set(countries))), _reachable())
        .order_by(Customer.id)
    )
    return [_customer(row) for row in result]


async def delivered_orders(
    session: AsyncSession, ranges: Sequence[TierRange]
) -> list[VisitCandidate]:
    """Each customer's latest delivered order, when it was delivered within one of ``ranges``
    for the customer's tier, and the customer has no open ticket."""
    if not ranges:
        return []
    later = _LATER_ORDER
    found: dict[int, VisitCandidate] = {}
    for item in ranges:  # one index range scan each (an OR of ranges would scan the table)
        statement = (
            select(
                *_CUSTOMER_COLUMNS,
                Order.id.label("order_id"),
                Order.external_id,
                Order.delivered_at,
            )
            .join(Customer, Customer.id == Order.customer_id)
            .where(
                Order.delivered_at >= item.start,
                Order.delivered_at < item.end,
                _tier_condition(item),
                text(f"orders.{COUNTED_ORDERS}"),
                _reachable(),
                _no_open_ticket(),
                ~exists().where(
                    later.customer_id == Order.customer_id,
                    later.delivered_at > Order.delivered_at,
                ),
            )
        )
        for row in await session.execute(statement):
            found[row.order_id] = VisitCandidate(
                _customer(row), row.order_id, row.external_id, row.delivered_at
            )
    return [found[order_id] for order_id in sorted(found)]


async def resolved_tickets(
    session: AsyncSession, ranges: Sequence[TierRange]
) -> list[VisitCandidate]:
    """Tickets resolved within one of ``ranges`` for their customer's tier, whose customer has
    no open ticket now (a follow-up visit after a ticket)."""
    if not ranges:
        return []
    statement = (
        select(*_CUSTOMER_COLUMNS, Ticket.id.label("ticket_id"), Ticket.number, Ticket.resolved_at)
        .join(Customer, Customer.id == Ticket.customer_id)
        .where(
            or_(
                *(
                    and_(
                        Ticket.resolved_at >= item.start,
                        Ticket.resolved_at < item.end,
                        _tier_condition(item),
                    )
                    for item in ranges
                )
            ),
            _reachable(),
            _no_open_ticket(),
        )
        .order_by(Ticket.id)
    )
    result = await session.execute(statement)
    return [
        VisitCandidate(_customer(row), row.ticket_id, row.number, row.resolved_at)
        for row in result
    ]


async def at_risk_customers(
    session: AsyncSession, *, offered_since: datetime
) -> list[CareCustomer]:
    """Customers the tiers job flags at risk (stage ``at_risk``) without a coupon issued since
    ``offered_since`` (at most one offer per period)."""
    result = await session.execute(
        select(*_CUSTOMER_COLUMNS)
        .where(
            text(f"customers.{AT_RISK}"),
            _reachable(),
            ~exists().where(Coupon.customer_id == Customer.id, Coupon.issued_at >= offered_since),
        )
        .order_by(Customer.id)
    )
    return [_customer(row) for row in result]


async def issue_coupons(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> set[int]:
    """Store coupons in bulk; returns the customers whose coupon was stored. A customer missing
    from the result already has one for that day (another process issued it) or, very rarely,
    drew a code that is taken: the caller skips that offer (the next run retries it)."""
    issued: set[int] = set()
    for start in range(0, len(rows), COUPON_BATCH):
        chunk = [dict(row) for row in rows[start : start + COUPON_BATCH]]
        statement = (
            _insert_ignoring_conflicts(session, Coupon)
            .on_conflict_do_nothing()
            .returning(Coupon.customer_id)
        )
        result = await session.execute(statement, chunk)
        issued.update(int(customer_id) for customer_id in result.scalars())
    return issued


async def mark_coupons_used(session: AsyncSession, now: datetime) -> int:
    """Mark unused coupons used by the first counted order that carries their code within
    their validity (an order placed between issue and expiry, by the same customer).

    Walks the orders that carry a coupon (a small partial index), not the coupons."""
    result = await session.execute(
        select(Coupon.id, Order.id.label("order_id"))
        .join(Coupon, Coupon.code == Order.coupon)
        .where(
            text(f"orders.{WITH_COUPON}"),
            text(f"orders.{COUNTED_ORDERS}"),
            Coupon.used_at.is_(None),
            Order.customer_id == Coupon.customer_id,
            Order.placed_at >= Coupon.issued_at,
            Order.placed_at <= Coupon.valid_until,
        )
        .order_by(Coupon.id, Order.placed_at, Order.id)
    )
    first: dict[int, int] = {}
    for coupon_id, order_id in result:
        first.setdefault(coupon_id, order_id)
    for coupon_id, order_id in first.items():
        await session.execute(
            update(Coupon)
            .where(Coupon.id == coupon_id, Coupon.used_at.is_(None))
            .values(order_id=order_id, used_at=now)
        )
    return len(first)


@dataclass(frozen=True)
class Conversion:
    tier: str
    issued: int
    used: int


async def conversion(session: AsyncSession, *, since: datetime | None = None) -> list[Conversion]:
    """Retention offers issued and redeemed, by tier (optionally those issued since a time)."""
    statement = select(Coupon.tier, func.count(), func.count(Coupon.used_at)).group_by(Coupon.tier)
    if since is not None:
        statement = statement.where(Coupon.issued_at >= since)
    result = await session.execute(statement.order_by(Coupon.tier))
    return [Conversion(tier, int(issued), int(used)) for tier, issued, used in result]


async def coupons_of(session: AsyncSession, customer_id: int) -> list[Coupon]:
    """A customer's coupons, oldest first."""
    result = await session.execute(
        select(Coupon).where(Coupon.customer_id == customer_id).order_by(Coupon.issued_at)
    )
    return list(result.scalars())


async def coupon_days_since(session: AsyncSession, since: datetime) -> list[tuple[int, str]]:
    """(customer, local day) of the coupons issued since ``since``."""
    result = await session.execute(
        select(Coupon.customer_id, Coupon.issued_day).where(Coupon.issued_at >= since)
    )
    return [(customer_id, day) for customer_id, day in result]


@dataclass(frozen=True)
class OpenCareRow:
    id: int
    due_at: datetime
    payload: dict[str, Any]


async def open_care_rows(session: AsyncSession, kinds: Sequence[str]) -> list[OpenCareRow]:
    """Pending care rows of these kinds (greetings not sent yet): the stale check reads them."""
    result = await session.execute(
        select(Outbox.id, Outbox.due_at, Outbox.payload).where(
            _OPEN, Outbox.priority == 0, Outbox.kind.in_(list(kinds)), Outbox.state == "pending"
        )
    )
    return [OpenCareRow(row.id, row.due_at, row.payload) for row in result]


async def cancel_rows(
    session: AsyncSession, ids: Sequence[int], *, reason: str, now: datetime
) -> int:
    """Cancel these rows if still pending (a claimed row is already on its way)."""
    if not ids:
        return 0
    result = await session.execute(
        update(Outbox)
        .where(Outbox.id.in_(list(ids)), Outbox.state == "pending")
        .values(state="cancelled", last_error=reason, updated_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def withdraw_consent(session: AsyncSession, customer_id: int, now: datetime) -> bool:
    """The customer tapped "stop these messages": no more proactive care. True if it changed."""
    result = await session.execute(
        update(Customer)
        .where(Customer.id == customer_id, Customer.consent.is_(true()))
        .values(consent=False, consent_answered=True, updated_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
