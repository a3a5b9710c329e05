"""``carebot report tiers`` and the dashboard's tiers page: where customers are now (tier and
stage counts, churn flags) and how they moved since the last full run."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Customer, RfmScore, TierHistory, TierRun
from storage.tiers.pending import pending_count
from storage.tiers.runs import last_run
from storage.tiers.spec import ChurnFlag


@dataclass(frozen=True)
class TierReport:
    """``carebot report tiers``: where customers are now and how they moved."""

    counts: dict[tuple[str, str], int]  # (tier, stage) -> customers
    churn_flags: dict[ChurnFlag, int]
    runs: list[TierRun]
    since_run: TierRun | None  # the last full run: movements are counted from it on
    movements: dict[tuple[str | None, str], int]  # (old, new) -> changes made by runs since
    pending: int


async def tier_report(session: AsyncSession, runs: int = 5) -> TierReport:
    counts_rows = await session.execute(
        select(Customer.tier, Customer.stage, func.count()).group_by(Customer.tier, Customer.stage)
    )
    counts = {(tier, stage): int(count) for tier, stage, count in counts_rows}
    flag_sums = [
        func.coalesce(func.sum(RfmScore.churn_flags.op("&")(int(flag)) / int(flag)), 0)
        for flag in ChurnFlag
    ]
    flags_row = (await session.execute(select(*flag_sums))).one()
    churn = {flag: int(value) for flag, value in zip(ChurnFlag, flags_row, strict=True)}
    run_rows = await session.execute(select(TierRun).order_by(TierRun.id.desc()).limit(runs))
    since = await last_run(session, full=True)
    movements: dict[tuple[str | None, str], int] = {}
    if since is not None:
        moved = await session.execute(
            select(TierHistory.old_tier, TierHistory.new_tier, func.count())
            .where(TierHistory.run_id >= since.id)
            .group_by(TierHistory.old_tier, TierHistory.new_tier)
        )
        movements = {(old, new): int(count) for old, new, count in moved}
    return TierReport(
        counts=counts,
        churn_flags=churn,
        runs=list(run_rows.scalars()),
        since_run=since,
        movements=movements,
        pending=await pending_count(session),
    )
