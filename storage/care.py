"""Queries of the care planners (README: Care plans): who has a birthday, a holiday, a
follow-up visit or a retention offer due, coupons, and stale greetings in the outbox.

Every lookup is set-based and indexed (``ix_customers_birthday``, ``ix_followup_visits_day``,
``ix_tickets_resolved``); the planner narrows the rows to each customer's local day in Python.
Follow-ups after a delivery read the schedule ``followup_visits`` (one row per customer: their
latest delivery), which ``schedule_followups`` rewrites whenever a customer's orders change.
Only customers who may get care messages are returned: consented, reachable, not erased, with
a chat. Functions take the session first and only flush.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    Select,
    and_,
    case,
    delete,
    exists,
    false,
    func,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.customers import _insert_ignoring_conflicts
from storage.models import (
    AT_RISK,
    COUNTED_ORDERS,
    WITH_COUPON,
    Coupon,
    Customer,
    FollowupVisit,
    Order,
    Outbox,
    Ticket,
    delivered,
)
from storage.payloads import from_json

RETENTION = "retention"  # coupons.kind of a retention offer ("points": redeemed points)
COUPON_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: read aloud, typed by hand
COUPON_BATCH = 1000  # rows per INSERT (SQLite allows 32,766 parameters per statement)
SCHEDULE_BATCH = 5000  # follow-up schedule rows per INSERT (3 parameters each)
_OPEN = text("outbox.state IN ('pending', 'claimed')")
AnySelect = Select[*tuple[Any, ...]]  # a SELECT of any columns (here: customer ids)


def coupon_code() -> str:
    """A random single-use code like ``CB-7KQ2-M9XH`` (40 bits: unguessable, easy to type)."""
    bits = int.from_bytes(secrets.token_bytes(5), "big")
    chars = "".join(COUPON_ALPHABET[(bits >> (5 * index)) & 31] for index in range(8))
    return f"CB-{chars[:4]}-{chars[4:]}"


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


def reachable() -> Any:
    """Customers who may get proactive messages (care, points reminders, campaigns): consented,
    reachable, not erased, with a chat."""
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
        select(*_CUSTOMER_COLUMNS).where(or_(*conditions), reachable()).order_by(Customer.id)
    )
    return [_customer(row) for row in result]


REACH_REASONS = ("erased", "not_on_telegram", "no_consent", "blocked", "reachable")
"""Why a customer can or cannot get a care message, in the order they are judged."""


def _reach_reason() -> Any:
    return case(
        (Customer.erased_at.is_not(None), "erased"),
        (Customer.chat_id.is_(None), "not_on_telegram"),
        (Customer.consent.is_not(True), "no_consent"),
        (Customer.reachable.is_not(True), "blocked"),
        else_="reachable",
    )


async def reach_counts(
    session: AsyncSession,
    *,
    born_on: tuple[Iterable[tuple[int, int]], Iterable[tuple[int, int]]] | None = None,
    countries: Sequence[str] | None = None,
) -> dict[str, int]:
    """Customers by ``REACH_REASONS`` (``carebot plan`` says why nothing is planned): all of
    them, those born on one of the (solar, lunar) (month, day) pairs ``born_on``, or those of
    ``countries``. Only the reasons that have customers are in the result."""
    reason = _reach_reason()
    statement = select(reason, func.count()).group_by(reason)
    if born_on is not None:
        solar, lunar = born_on
        statement = statement.where(
            or_(
                false(),
                *(
                    and_(
                        Customer.birth_month == month,
                        Customer.birth_day == day,
                        Customer.birthday_lunar.is_(is_lunar),
                    )
                    for pairs, is_lunar in ((set(solar), False), (set(lunar), True))
                    for month, day in sorted(pairs)
                ),
            )
        )
    if countries is not None:
        statement = statement.where(Customer.country.in_(sorted(set(countries))))
    return {str(name): int(number) for name, number in await session.execute(statement)}


async def customers_in_countries(
    session: AsyncSession, countries: Sequence[str]
) -> list[CareCustomer]:
    """Every customer of these countries who may get care messages (holiday greetings)."""
    if not countries:
        return []
    result = await session.execute(
        select(*_CUSTOMER_COLUMNS)
        .where(Customer.country.in_(sorted(set(countries))), reachable())
        .order_by(Customer.id)
    )
    return [_customer(row) for row in result]


def _in_ranges(moment: Any, ranges: Sequence[TierRange]) -> Any:
    """``moment`` within one of ``ranges`` for the customer's tier (an index range each)."""
    return or_(
        *(and_(moment >= item.start, moment < item.end, _tier_condition(item)) for item in ranges)
    )


async def _visit_candidates(session: AsyncSession, statement: Any) -> list[VisitCandidate]:
    """Run a candidate query: customer columns, then ``reference_id``, ``reference``, ``at``."""
    result = await session.execute(statement)
    return [
        VisitCandidate(_customer(row), row.reference_id, row.reference, row.at) for row in result
    ]


async def delivered_orders(
    session: AsyncSession, ranges: Sequence[TierRange]
) -> list[VisitCandidate]:
    """Each customer's latest delivered order (``followup_visits``) whose local delivery day
    began within one of ``ranges`` for the customer's tier, still delivered
    (``storage.models.delivered``: the rule the delivery survey uses too), and the customer has
    no open ticket. Reads only the schedule rows of those days, not the orders delivered
    around them."""
    if not ranges:
        return []
    statement = (
        select(
            *_CUSTOMER_COLUMNS,
            Order.id.label("reference_id"),
            Order.external_id.label("reference"),
            Order.delivered_at.label("at"),
        )
        .select_from(FollowupVisit)
        .join(Customer, Customer.id == FollowupVisit.customer_id)
        .join(Order, Order.id == FollowupVisit.order_id)
        .where(
            _in_ranges(FollowupVisit.day_start, ranges),
            reachable(),
            delivered(),
            _no_open_ticket(),
        )
        .order_by(Order.id)
    )
    return await _visit_candidates(session, statement)


def latest_deliveries(customers: AnySelect | None = None) -> AnySelect:
    """(customer, order, delivered at, time zone) of each customer's latest delivered order,
    whatever its status (a later refunded delivery means no visit for an earlier one; ties go
    to the lower order id); only for the customer ids ``customers`` selects, if given."""
    later = _LATER_ORDER
    statement: AnySelect = (
        select(Order.customer_id, Order.id, Order.delivered_at, Customer.timezone)
        .join(Customer, Customer.id == Order.customer_id)
        .where(
            Order.delivered_at.is_not(None),
            ~exists().where(
                later.customer_id == Order.customer_id,
                or_(
                    later.delivered_at > Order.delivered_at,
                    and_(later.delivered_at == Order.delivered_at, later.id < Order.id),
                ),
            ),
        )
    )
    if customers is not None:
        statement = statement.where(Order.customer_id.in_(customers))
    return statement


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):  # validated on the way in; never stop a write
        return ZoneInfo("UTC")


def schedule_row(
    customer_id: int, order_id: int, delivered_at: datetime, zone: str
) -> dict[str, Any]:
    """The ``followup_visits`` row of a latest delivery: its local day's start, in UTC."""
    local = delivered_at.astimezone(_zone(zone))
    day_start = datetime.combine(local.date(), time(0, 0), tzinfo=local.tzinfo)
    return {
        "customer_id": customer_id,
        "order_id": order_id,
        "day_start": day_start.astimezone(UTC),
    }


async def schedule_followups(session: AsyncSession, customers: AnySelect | None = None) -> int:
    """Rewrite the follow-up schedule of the customers ``customers`` selects (everybody when
    None): their latest delivery, or no row. Called in the transaction that changes their
    orders, so the planner never sees orders without their schedule. Returns the rows
    written."""
    target = delete(FollowupVisit)
    if customers is not None:
        target = target.where(FollowupVisit.customer_id.in_(customers))
    await session.execute(target)
    rows = [schedule_row(*row) for row in await session.execute(latest_deliveries(customers))]
    insert = _insert_ignoring_conflicts(session, FollowupVisit)
    statement = insert.on_conflict_do_update(
        index_elements=[FollowupVisit.customer_id],
        set_={"order_id": insert.excluded.order_id, "day_start": insert.excluded.day_start},
    )
    for start in range(0, len(rows), SCHEDULE_BATCH):
        await session.execute(statement, rows[start : start + SCHEDULE_BATCH])
    return len(rows)


async def reschedule_updated_customers(session: AsyncSession, updated_at: datetime) -> int:
    """Rewrite the follow-up schedule of the customers last updated at ``updated_at`` (an
    import that may have changed their time zone, hence their deliveries' local days)."""
    return await schedule_followups(
        session, select(Customer.id).where(Customer.updated_at == updated_at)
    )


async def resolved_tickets(
    session: AsyncSession, ranges: Sequence[TierRange]
) -> list[VisitCandidate]:
    """Tickets resolved within one of ``ranges`` for their customer's tier, whose customer has
    no open ticket now (a follow-up visit after a ticket).

    Not scheduled like deliveries: tickets are few, each has one visit, and a reopened ticket
    clears ``resolved_at``, so ``ix_tickets_resolved`` already reads only the visits due."""
    if not ranges:
        return []
    statement = (
        select(
            *_CUSTOMER_COLUMNS,
            Ticket.id.label("reference_id"),
            Ticket.number.label("reference"),
            Ticket.resolved_at.label("at"),
        )
        .join(Customer, Customer.id == Ticket.customer_id)
        .where(_in_ranges(Ticket.resolved_at, ranges), reachable(), _no_open_ticket())
        .order_by(Ticket.id)
    )
    return await _visit_candidates(session, statement)


async def at_risk_customers(
    session: AsyncSession, *, offered_since: datetime
) -> list[CareCustomer]:
    """Customers the tiers job flags at risk (stage ``at_risk``) without a retention offer
    issued since ``offered_since`` (at most one offer per period; redeemed points do not
    count)."""
    result = await session.execute(
        select(*_CUSTOMER_COLUMNS)
        .where(
            text(f"customers.{AT_RISK}"),
            reachable(),
            ~exists().where(
                Coupon.customer_id == Customer.id,
                Coupon.kind == RETENTION,
                Coupon.issued_at >= offered_since,
            ),
        )
        .order_by(Customer.id)
    )
    return [_customer(row) for row in result]


async def offered_on(session: AsyncSession, day: str) -> list[CareCustomer]:
    """Customers offered a coupon on their local ``day`` (ISO date) who may still get care
    messages: the offers already queued for that day (``carebot plan --date``)."""
    result = await session.execute(
        select(*_CUSTOMER_COLUMNS)
        .join(Coupon, Coupon.customer_id == Customer.id)
        .where(Coupon.issued_day == day, Coupon.kind == RETENTION, reachable())
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
    statement = (
        select(Coupon.tier, func.count(), func.count(Coupon.used_at))
        .where(Coupon.kind == RETENTION)
        .group_by(Coupon.tier)
    )
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
    """(customer, local day) of the retention offers issued since ``since``."""
    result = await session.execute(
        select(Coupon.customer_id, Coupon.issued_day).where(
            Coupon.issued_at >= since, Coupon.kind == RETENTION
        )
    )
    return [(customer_id, day) for customer_id, day in result]


@dataclass(frozen=True)
class OpenCareRow:
    id: int
    due_at: datetime
    expires_at: datetime | None
    """When the row goes stale (``storage.payloads.Payload.expires_at``)."""


async def open_care_rows(session: AsyncSession, kinds: Sequence[str]) -> list[OpenCareRow]:
    """Pending care rows of these kinds (greetings not sent yet): the stale check reads them."""
    result = await session.execute(
        select(Outbox.id, Outbox.due_at, Outbox.payload).where(
            _OPEN, Outbox.priority == 0, Outbox.kind.in_(list(kinds)), Outbox.state == "pending"
        )
    )
    return [OpenCareRow(row.id, row.due_at, from_json(row.payload).expires_at) for row in result]


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
