"""The tiers job: turn ``tiers.toml`` into a run specification and run it at the right time.

``recompute`` is what ``carebot tiers recompute`` and the scheduler call. The periodic job
(``tier_jobs``) is idempotent and driven by the database: every few minutes it recomputes the
customers whose orders changed, and once a day after ``schedule.full_at`` (shop time) it does the
full run, unless a full run for that day is already recorded (so a restart or a second process
does not run it twice in a day).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.kernel.config import TierCondition, TierConfig
from scheduler.wiring import PeriodicJob
from storage.models import RfmScore
from storage.tiers import pending, runs
from storage.tiers.spec import (
    ChurnFlag,
    Condition,
    RunSummary,
    TierRuleSpec,
    TierSpec,
    day_number,
)
from surveys.analytics import SatisfactionDrop, satisfaction_drops

logger = logging.getLogger(__name__)


def cents(amount: Decimal) -> int:
    """An amount in the shop's currency as integer hundredths."""
    return int((amount * 100).to_integral_value())


def shop_today(rules: TierConfig, now: datetime) -> int:
    """Today's day number in the shop's time zone."""
    return day_number(now.astimezone(ZoneInfo(rules.orders.timezone)).date())


def _condition(condition: TierCondition) -> Condition:
    if condition.field == "monetary":
        return Condition("monetary_cents", condition.op, cents(condition.value))
    return Condition(condition.field, condition.op, int(condition.value))


def build_spec(rules: TierConfig) -> TierSpec:
    """The rule file as the plain values storage works with (amounts in cents)."""
    fixed = rules.scores.fixed
    rule_specs = tuple(
        TierRuleSpec(
            tier=tier.name,
            conditions=tuple(_condition(condition) for condition in conditions),
            why=f"{tier.name}: {' and '.join(str(condition) for condition in conditions)}",
        )
        for tier in rules.tiers
        for conditions in tier.when
    )
    r1, r2, r3, r4 = fixed.recency_days
    f1, f2, f3, f4 = fixed.frequency
    m1, m2, m3, m4 = (cents(value) for value in fixed.monetary)
    return TierSpec(
        rules=rule_specs,
        default_tier=rules.default_tier,
        at_risk_days={tier.name: tier.at_risk_days for tier in rules.tiers},
        method=rules.scores.method,
        window_days=rules.scores.window_days,
        fixed_recency_days=(r1, r2, r3, r4),
        fixed_frequency=(f1, f2, f3, f4),
        fixed_monetary_cents=(m1, m2, m3, m4),
        new_days=rules.stages.new_days,
        churned_days=rules.stages.churned_days,
        at_risk_factor=rules.stages.at_risk_factor,
        own_gap_min_orders=rules.stages.own_gap_min_orders,
        at_risk_min_days=rules.stages.at_risk_min_days,
        churn_period_days=rules.churn.period_days,
        churn_drop_percent=rules.churn.drop_percent,
        churn_min_orders=rules.churn.min_orders,
        churn_min_spend_cents=cents(rules.churn.min_spend),
    )


async def recompute(
    session: AsyncSession,
    rules: TierConfig,
    now: datetime,
    *,
    full: bool = False,
    rebuild: bool = False,
    recount: bool = False,
) -> RunSummary:
    """Recompute tiers as of ``now`` (see ``storage.tiers.runs.recompute``), then flag the
    customers whose satisfaction is falling; the caller commits.

    The survey signal is read for the customers the run scored: everybody on a full run, the
    queued ones on an incremental run. New survey answers alone reach the flag with the next
    full run (nightly).
    """
    scope = None if full or rebuild else await pending.pending_customers(session)
    summary = await runs.recompute(
        session,
        build_spec(rules),
        today=shop_today(rules, now),
        now=now,
        full=full,
        rebuild=rebuild,
        recount=recount,
    )
    if summary.run_id is not None:
        drops = await satisfaction_drops(
            session,
            now=now,
            customer_ids=None if summary.full else scope,
            recent_days=rules.churn.period_days,
        )
        falling = [drop.customer_id for drop in drops.values() if drop.falling]
        await runs.flag_satisfaction_falling(session, falling)
    return summary


def full_run_due(rules: TierConfig, now: datetime, last_full_day: int | None) -> bool:
    """Whether the daily full run should happen now: past ``full_at`` shop time and not yet
    done today."""
    local = now.astimezone(ZoneInfo(rules.orders.timezone))
    today = day_number(local.date())
    if last_full_day is not None and last_full_day >= today:
        return False
    return local.time() >= rules.schedule.full_at


async def scheduled_run(
    sessionmaker: async_sessionmaker[AsyncSession], rules: TierConfig, now: datetime
) -> RunSummary:
    """One tick of the tiers job: the daily full run when due, else the incremental one."""
    async with sessionmaker.begin() as session:
        # Locked before looking: a second process waits, then finds today's full run done.
        await runs.lock_runs(session)
        last_full = await runs.last_run(session, full=True)
        full = full_run_due(rules, now, last_full.day if last_full else None)
        summary = await recompute(session, rules, now, full=full)
    if summary.run_id is not None:
        logger.info(
            "tiers: %s run scored %d customers (%d refreshed), %d tier changes, %d ms",
            "full" if summary.full else "incremental",
            summary.scored,
            summary.refreshed,
            summary.tier_changes,
            summary.duration_ms,
        )
    return summary


def tier_jobs(
    sessionmaker: async_sessionmaker[AsyncSession], rules: TierConfig
) -> list[PeriodicJob]:
    """The periodic tiers job for ``scheduler.wiring`` (add it beside the outbox's jobs)."""

    async def tick(now: datetime) -> RunSummary:
        return await scheduled_run(sessionmaker, rules, now)

    return [
        PeriodicJob("tiers.recompute", timedelta(minutes=rules.schedule.incremental_minutes), tick)
    ]


@dataclass(frozen=True)
class ChurnSignal:
    """One reason a customer is flagged at risk of churning, with its numbers (for the customer
    card and ``carebot tiers show``; rendering is the caller's)."""

    kind: str  # "overdue", "frequency", "spend" or "satisfaction"
    # days since the last order / orders / spend (cents) in the last period / mean score (0-100)
    recent: float
    # at-risk gap in days / orders / spend (cents) in the period before / mean score before
    before: float


def churn_signals(
    rfm: RfmScore, today: int, satisfaction: SatisfactionDrop | None = None
) -> list[ChurnSignal]:
    """The flags of ``rfm`` with the numbers behind each (``satisfaction``: the customer's
    survey scores, from ``surveys.analytics.satisfaction_drops``)."""
    flags = ChurnFlag(rfm.churn_flags)
    signals = []
    if ChurnFlag.OVERDUE in flags:
        signals.append(ChurnSignal("overdue", today - rfm.last_day, rfm.at_risk_after or 0.0))
    if ChurnFlag.FREQUENCY in flags:
        signals.append(ChurnSignal("frequency", rfm.orders_recent, rfm.orders_previous))
    if ChurnFlag.SPEND in flags:
        signals.append(ChurnSignal("spend", rfm.spend_recent_cents, rfm.spend_previous_cents))
    if ChurnFlag.SATISFACTION in flags and satisfaction is not None:
        signals.append(
            ChurnSignal("satisfaction", satisfaction.recent_mean, satisfaction.earlier_mean)
        )
    return signals
