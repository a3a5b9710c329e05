"""Loyalty points jobs (README: Loyalty points): what moves points without anybody asking.

``points.settle`` (every few minutes) writes the ledger's movements that follow from the
orders: points earned on each delivered order (a delivery time and a status that counts, as
for follow-up visits; the customer's tier multiplier of that moment), taken back when the
order becomes refunded or cancelled (``loyalty.toml`` ``reverse_on``), the welcome bonus of a
customer linked to the shop's record, and the redemption coupons that imported orders used.

``points.expire`` (hourly) closes the points that expired: on the first run of the day after
their last day, what is left of them becomes an expire movement. It also queues the expiry
reminder, ``expiry.reminder_days_before`` days ahead, through the outbox as a care message
(consent, quiet hours and the daily cap apply at send time, as for every care message).

Every movement and reminder has a unique key (``earn:order:12``, ``expire:5:2027-12-31``,
``points:expiry:5:2027-12-31``): a job run twice, in two processes, or after a re-import of
the same orders adds nothing twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.kernel.config import Config
from bot.kernel.replies import TextRef
from handlers.loyalty.ledger import replay
from handlers.loyalty.points import Programme
from scheduler.care import STOP_DATA
from scheduler.wiring import PeriodicJob
from storage import care as care_queries
from storage import outbox
from storage import points as point_queries
from storage.models import Customer
from storage.payloads import CatalogueText, OutboxButton
from storage.points import EARN, EXPIRE, REVERSE, WELCOME

logger = logging.getLogger(__name__)

SETTLE_EVERY = timedelta(minutes=10)
EXPIRE_EVERY = timedelta(hours=1)
KIND_REMINDER = "points.expiry"


@dataclass(frozen=True)
class SettleReport:
    earned: int
    reversed: int
    welcomed: int
    coupons_used: int


@dataclass(frozen=True)
class ExpireReport:
    expired: int
    reminders: int


async def earn(session: AsyncSession, programme: Programme, now: datetime) -> int:
    """Points for the delivered orders that have not earned theirs; how many orders earned."""
    rules = programme.rules
    rows = []
    since = now - rules.expiry.longest()
    for order in await point_queries.earn_candidates(session, delivered_since=since, now=now):
        expires_at = rules.expires_at(order.delivered_at, programme.zone)
        if expires_at <= now:  # delivered so long ago that the points would be gone
            continue
        rows.append(
            {
                "key": f"earn:order:{order.order_id}",
                "customer_id": order.customer_id,
                "kind": EARN,
                "points": rules.points_for(order.value_cents, order.tier),
                "order_id": order.order_id,
                "tier": order.tier,
                "expires_at": expires_at,
                "created_at": now,
            }
        )
    return await point_queries.insert_movements(session, rows)


async def take_back(session: AsyncSession, programme: Programme, now: datetime) -> int:
    """Take back the points of orders refunded or cancelled since they earned them."""
    candidates = await point_queries.reverse_candidates(
        session, statuses=programme.rules.reverse_on, now=now
    )
    rows = [
        {
            "key": f"reverse:order:{order.order_id}",
            "customer_id": order.customer_id,
            "kind": REVERSE,
            "points": -order.points,
            "order_id": order.order_id,
            "tier": order.tier,
            "created_at": now,
        }
        for order in candidates
        if order.points
    ]
    return await point_queries.insert_movements(session, rows)


async def welcome(session: AsyncSession, programme: Programme, now: datetime) -> int:
    """The welcome bonus of each customer linked to the shop's record and to a chat."""
    bonus = programme.rules.welcome_bonus
    if bonus == 0:
        return 0
    expires_at = programme.rules.expires_at(now, programme.zone)
    rows = [
        {
            "key": f"welcome:{customer_id}",
            "customer_id": customer_id,
            "kind": WELCOME,
            "points": bonus,
            "tier": tier,
            "expires_at": expires_at,
            "created_at": now,
        }
        for customer_id, tier in await point_queries.welcome_candidates(session)
    ]
    return await point_queries.insert_movements(session, rows)


async def settle(session: AsyncSession, programme: Programme, now: datetime) -> SettleReport:
    """One settling pass (see the module docstring); nothing when points are off."""
    if not programme.rules.enabled:
        return SettleReport(0, 0, 0, 0)
    coupons_used = await care_queries.mark_coupons_used(session, now)
    return SettleReport(
        earned=await earn(session, programme, now),
        reversed=await take_back(session, programme, now),
        welcomed=await welcome(session, programme, now),
        coupons_used=coupons_used,
    )


async def close_expired(session: AsyncSession, programme: Programme, now: datetime) -> int:
    """An expire movement for what is left of the points that expired by ``now`` (zero when
    nothing is: the row still says they are closed); how many were written."""
    rows = []
    for customer_id in await point_queries.unclosed_expiries(session, now=now):
        ledger = replay(await point_queries.movements_of(session, customer_id))
        for moment, left in ledger.expired(now).items():
            day = programme.last_day(moment).isoformat()
            rows.append(
                {
                    "key": f"expire:{customer_id}:{day}",
                    "customer_id": customer_id,
                    "kind": EXPIRE,
                    "points": -max(left, 0),
                    "expires_at": moment,
                    "created_at": now,
                }
            )
    return await point_queries.insert_movements(session, rows)


async def remind(session: AsyncSession, programme: Programme, now: datetime) -> int:
    """Queue a reminder for the points expiring within ``reminder_days_before`` days, once per
    customer and expiry day, to customers who may get care messages."""
    days = programme.rules.expiry.reminder_days_before
    if days == 0:
        return 0
    queued = 0
    until = now + timedelta(days=days)
    for customer_id in await point_queries.customers_expiring(
        session, after=now, until=until, reachable_only=True
    ):
        ledger = replay(await point_queries.movements_of(session, customer_id))
        customer = await session.get(Customer, customer_id)
        if customer is None or customer.chat_id is None:
            continue
        for moment, left in ledger.expiring(now).items():
            if moment > until or left <= 0:
                continue
            day = programme.last_day(moment).isoformat()
            queued += await outbox.enqueue(
                session,
                dedupe_key=f"points:expiry:{customer_id}:{day}",
                chat_id=customer.chat_id,
                kind=KIND_REMINDER,
                payload=CatalogueText(
                    TextRef("points_expiry_reminder", {"points": left, "date": day}),
                    buttons=[[OutboxButton(TextRef("care_button_stop"), data=STOP_DATA)]],
                ),
                due_at=now,
                now=now,
                customer_id=customer_id,
                priority=outbox.Priority.CARE,
            )
    return queued


async def expire(session: AsyncSession, programme: Programme, now: datetime) -> ExpireReport:
    """One expiry pass: expired points closed, reminders queued; nothing when points are
    off."""
    if not programme.rules.enabled:
        return ExpireReport(0, 0)
    return ExpireReport(
        expired=await close_expired(session, programme, now),
        reminders=await remind(session, programme, now),
    )


def points_jobs(
    sessionmaker: async_sessionmaker[AsyncSession],
    rules: Config,
    *,
    settle_every: timedelta = SETTLE_EVERY,
    expire_every: timedelta = EXPIRE_EVERY,
) -> list[PeriodicJob]:
    """The periodic points jobs; both idempotent, so any interval is safe."""
    programme = Programme.from_config(rules)

    async def settle_job(now: datetime) -> SettleReport:
        async with sessionmaker.begin() as session:
            report = await settle(session, programme, now)
        if report.earned or report.reversed or report.welcomed:
            logger.info(
                "points: %d orders earned points, %d taken back, %d welcome bonuses",
                report.earned,
                report.reversed,
                report.welcomed,
            )
        return report

    async def expire_job(now: datetime) -> ExpireReport:
        async with sessionmaker.begin() as session:
            report = await expire(session, programme, now)
        if report.expired or report.reminders:
            logger.info(
                "points: %d expiries closed, %d reminders queued", report.expired, report.reminders
            )
        return report

    return [
        PeriodicJob("points.settle", settle_every, settle_job),
        PeriodicJob("points.expire", expire_every, expire_job),
    ]
