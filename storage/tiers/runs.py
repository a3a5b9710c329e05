"""Tier runs: ``recompute`` (what ``scheduler.tiers`` and ``carebot tiers recompute`` call),
the lock that serialises runs, the runs recorded in ``tier_runs``, and the survey flag added
after a run.

A run is a handful of ``INSERT ... SELECT`` / ``UPDATE ... FROM`` statements over every customer
(full run) or over the customers whose orders changed (incremental run); its steps, in order:
``statistics`` (what the orders say), ``scoring`` (thresholds, scores, tier, stage, flags) and
``changes`` (customers and tier history).
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import replace
from datetime import datetime

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import RfmScore, TierRun
from storage.tiers.changes import apply_to_customers
from storage.tiers.context import Run, staged_rebuild
from storage.tiers.dialect import create_temp_table, dialect_name, tune_session
from storage.tiers.pending import has_pending
from storage.tiers.scoring import quintile_thresholds, score_and_classify
from storage.tiers.spec import ChurnFlag, RunSummary, Thresholds, TierSpec
from storage.tiers.statistics import (
    age_windows,
    collect_windows,
    refresh_order_statistics,
    windows_carry_over,
)

# pg_advisory_xact_lock key of tier runs ("tiers" in ASCII).
RUN_LOCK_KEY = 0x7469657273


async def lock_runs(session: AsyncSession) -> None:
    """Serialise tier runs until this transaction ends: several bot processes may share one
    PostgreSQL database, and each runs the tiers job. (SQLite: one writer at a time anyway.)"""
    if dialect_name(session) == "postgresql":
        await session.execute(text(f"SELECT pg_advisory_xact_lock({RUN_LOCK_KEY})"))


async def last_run(
    session: AsyncSession, *, full: bool | None = None, before: int | None = None
) -> TierRun | None:
    """The latest run (of a kind: ``full``; before run id ``before``)."""
    statement = select(TierRun).order_by(TierRun.id.desc()).limit(1)
    if full is not None:
        statement = statement.where(TierRun.full.is_(full))
    if before is not None:
        statement = statement.where(TierRun.id < before)
    result = await session.execute(statement)
    return result.scalar_one_or_none()


async def recompute(
    session: AsyncSession,
    spec: TierSpec,
    *,
    today: int,
    now: datetime,
    full: bool,
    rebuild: bool = False,
    recount: bool = False,
) -> RunSummary:
    """Recompute RFM, tiers, stages and churn flags; the caller owns the transaction.

    Incremental (``full=False``): only the customers queued in ``rfm_pending``, scored with the
    thresholds of the last full run (a full run is done instead when there is none yet). Full:
    new thresholds; every customer is scored, tiered, staged and flagged again.

    What a customer's orders say is kept current, not recounted each time: the queued
    customers' order statistics (first and last order, count, median gap, window counts) are
    recomputed from their orders, and everybody's window counts are brought forward to today
    (only customers with an order on a day that left a window since the last run change).
    ``recount`` recounts every window from all orders instead; ``rebuild`` recomputes every
    customer's statistics (the first run after a bulk load, a repair after orders were written
    behind carebot's back, or after renaming the default tier).
    """
    started = time.perf_counter()
    await lock_runs(session)
    thresholds: Thresholds | None = None
    if not full and not rebuild:
        if not await has_pending(session):
            return RunSummary(run_id=None, full=False, day=today)
        thresholds = await _reusable_thresholds(session, spec, today)
        full = thresholds is None
    full = full or rebuild
    await tune_session(session, full=full)
    tier_run = await _open_run(session, spec, today=today, now=now, full=full)
    run = Run(session, spec, today, now, full, rebuild)
    run.params = {"today": today, "now": now, "run_id": tier_run.id}
    summary = await _run_steps(run, tier_run, thresholds, recount=recount)
    duration_ms = round((time.perf_counter() - started) * 1000)
    tier_run.duration_ms = duration_ms
    await session.flush()
    return replace(summary, duration_ms=duration_ms)


async def _open_run(
    session: AsyncSession, spec: TierSpec, *, today: int, now: datetime, full: bool
) -> TierRun:
    """The run's row, written first: on SQLite this takes the write lock before anything is
    read, so a concurrent writer waits instead of invalidating the run's snapshot."""
    tier_run = TierRun(
        full=full,
        day=today,
        method=spec.method,
        thresholds={},
        window_days=spec.window_days,
        period_days=spec.churn_period_days,
        started_at=now,
    )
    session.add(tier_run)
    await session.flush()
    return tier_run


async def _run_steps(
    run: Run, tier_run: TierRun, thresholds: Thresholds | None, *, recount: bool
) -> RunSummary:
    """The run's statements, in order; what they did is written to ``tier_run`` (all but the
    duration) and returned."""
    previous = await last_run(run.session, before=tier_run.id)
    if staged_rebuild(run):
        run.source = await create_temp_table(run.session, "rfm_fresh", "LIKE rfm_scores")

    refreshed = await refresh_order_statistics(run)
    if run.everybody:
        pass  # every row was just computed from the orders
    elif recount or previous is None or not windows_carry_over(previous, run.spec, run.today):
        await collect_windows(run, "")
    else:
        await age_windows(run, since=previous.day)
    scored = await _count_in_scope(run)
    if thresholds is None:
        thresholds = (
            await quintile_thresholds(run, scored)
            if run.spec.method == "quintile"
            else run.spec.fixed_thresholds(run.today)
        )
    await score_and_classify(run, thresholds)
    tier_changes, customer_changes = await apply_to_customers(run)
    await run.session.execute(text(f"DROP TABLE IF EXISTS {run.batch}"))

    tier_run.thresholds = thresholds.as_json()
    tier_run.customers = scored
    tier_run.tier_changes = tier_changes
    tier_run.customer_changes = customer_changes
    return RunSummary(
        run_id=tier_run.id,
        full=run.full,
        day=run.today,
        scored=scored,
        refreshed=refreshed,
        tier_changes=tier_changes,
        customer_changes=customer_changes,
        thresholds=thresholds,
    )


async def _reusable_thresholds(
    session: AsyncSession, spec: TierSpec, today: int
) -> Thresholds | None:
    """Fixed thresholds, or the last full run's quintiles (None: a full run is needed)."""
    if spec.method == "fixed":
        return spec.fixed_thresholds(today)
    result = await session.execute(
        select(TierRun.thresholds)
        .where(TierRun.full.is_(True), TierRun.method == "quintile")
        .order_by(TierRun.id.desc())
        .limit(1)
    )
    stored = result.scalar_one_or_none()
    return Thresholds.from_json(stored) if stored else None


async def _count_in_scope(run: Run) -> int:
    """Customers with counted orders the run covers (all of them on a full run)."""
    scope = "" if run.full else f"WHERE {run.in_batch('customer_id')}"
    result = await run.session.execute(text(f"SELECT COUNT(*) FROM {run.source} {scope}"))
    return int(result.scalar_one())


async def flag_satisfaction_falling(session: AsyncSession, customer_ids: Collection[int]) -> None:
    """Add the "satisfaction falling" flag to these customers' scores (a run writes the other
    flags from scratch, so it only ever needs adding)."""
    ids = sorted(customer_ids)
    for start in range(0, len(ids), 1000):
        await session.execute(
            update(RfmScore)
            .where(RfmScore.customer_id.in_(ids[start : start + 1000]))
            .values(churn_flags=RfmScore.churn_flags.op("|")(int(ChurnFlag.SATISFACTION)))
        )
