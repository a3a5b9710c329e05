"""The recommendations job (README: Recommendations): once a day after ``schedule.at`` shop
time, every process checks every ``schedule.check_minutes`` and the first one that finds no
run recorded for today runs it (``storage.recommend.recompute``); the others wait on the lock,
then find it done. ``carebot recommend run`` runs it at once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.kernel.config import Config
from bot.kernel.recommend_config import RecommendConfig
from scheduler.wiring import PeriodicJob
from storage import recommend as recommend_queries
from storage.recommend import RecommendSpec, RunSummary
from storage.tiers.spec import day_number

logger = logging.getLogger(__name__)


def build_spec(rules: RecommendConfig) -> RecommendSpec:
    """The rule file as the plain values storage works with."""
    together = rules.together
    return RecommendSpec(
        window_days=together.window_days,
        min_support=together.min_support,
        min_confidence=together.min_confidence,
        neighbours=together.neighbours,
        top_k=rules.top_k,
        fill_with_bestsellers=rules.fill_with_bestsellers,
    )


def shop_day(zone: ZoneInfo, now: datetime) -> int:
    """Today's day number in the shop's time zone."""
    return day_number(now.astimezone(zone).date())


async def recompute(
    session: AsyncSession, rules: RecommendConfig, zone: ZoneInfo, now: datetime
) -> RunSummary:
    """Run the job now, in the caller's transaction (serialised with other processes)."""
    await recommend_queries.lock_runs(session)
    return await recommend_queries.recompute(
        session, build_spec(rules), day=shop_day(zone, now), now=now
    )


def run_due(rules: RecommendConfig, zone: ZoneInfo, now: datetime, last_day: int | None) -> bool:
    """Whether the daily run should happen now: past ``schedule.at`` and not yet done today."""
    local = now.astimezone(zone)
    if last_day is not None and last_day >= day_number(local.date()):
        return False
    return local.time() >= rules.schedule.at


async def scheduled_run(
    sessionmaker: async_sessionmaker[AsyncSession],
    rules: RecommendConfig,
    zone: ZoneInfo,
    now: datetime,
) -> RunSummary | None:
    """One tick: today's run when it is due (None otherwise)."""
    async with sessionmaker.begin() as session:
        await recommend_queries.lock_runs(session)  # a second process waits, then finds it done
        last = await recommend_queries.last_run(session)
        if not run_due(rules, zone, now, last.day if last else None):
            return None
        summary = await recommend_queries.recompute(
            session, build_spec(rules), day=shop_day(zone, now), now=now
        )
    logger.info(
        "recommendations: %d order lines, %d pairs, %d customers with a list, %d ms",
        summary.lines,
        summary.pairs,
        summary.customers,
        summary.duration_ms,
    )
    return summary


def recommend_jobs(
    sessionmaker: async_sessionmaker[AsyncSession], rules: Config
) -> list[PeriodicJob]:
    """The periodic recommendations job (none when ``recommend.toml`` has it off)."""
    recommend = rules.recommend
    if not recommend.enabled:
        return []
    zone = ZoneInfo(rules.tiers.orders.timezone)

    async def tick(now: datetime) -> RunSummary | None:
        return await scheduled_run(sessionmaker, recommend, zone, now)

    every = timedelta(minutes=recommend.schedule.check_minutes)
    return [PeriodicJob("recommend.compute", every, tick)]
