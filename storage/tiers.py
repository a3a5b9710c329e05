"""RFM scores, tiers, lifecycle stages and churn signals, computed in set-based SQL.

A run is a handful of ``INSERT ... SELECT`` / ``UPDATE ... FROM`` statements over every customer
(full run) or over the customers whose orders changed (incremental run); no Python loop over
customers. The same SQL runs on SQLite and PostgreSQL; where they differ (the median, the
quintile edges, null-safe comparison, session tuning, locking) the difference sits in one small
function.

Days are integers (days since 1970-01-01 in the shop's time zone, ``orders.placed_day``), so
recency and windows are integer arithmetic and both databases give the same numbers.

What a customer's orders say (first and last order, count, median gap between orders, orders and
spend in the frequency window and the two churn periods) is kept in ``rfm_scores`` and kept
current: recomputed from the orders for the customers whose orders changed, and brought forward
day by day for the rest (an order changes a window count only on the day it crosses the
window's edge). Every full run then scores, tiers, stages and flags every customer again with
new quintile boundaries, and writes only what changed.

Scores: every dimension is "higher is better" (last order day, frequency, monetary) and a
customer's score is ``1 + the number of thresholds their value reaches``. In quintile mode a
threshold is one more than the largest value of an ``NTILE(5)`` group, so equal values always
get the same score (the lower one when a boundary falls among them); fixed mode takes the
thresholds from the rules. Incremental runs reuse the thresholds of the last full run.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntFlag
from typing import Any

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.columns import UTCDateTime
from storage.models import (
    COUNTED_ORDERS,
    Customer,
    RfmPending,
    RfmScore,
    TierHistory,
    TierRun,
)

SCORE_FIELDS = ("r_score", "f_score", "m_score")
# Condition fields as the rules name them -> the SQL expression over one ``rfm_scores`` row.
CONDITION_SQL = {
    "r_score": "rfm_scores.r_score",
    "f_score": "rfm_scores.f_score",
    "m_score": "rfm_scores.m_score",
    "recency_days": "(:today - rfm_scores.last_day)",
    "frequency": "rfm_scores.frequency",
    "monetary_cents": "rfm_scores.monetary_cents",
}
CONDITION_OPS = (">=", "<=", "==", ">", "<")
STAGES = ("prospect", "new", "active", "at_risk", "churned")
PROSPECT_REASON = "no counted orders"
DIMENSIONS = ("last_day", "frequency", "monetary_cents")
ANALYZE_AFTER_ROWS = 10_000
# Window counts are brought forward from the last run when it was at most this long ago;
# otherwise (or when the windows changed) they are recounted from all orders.
MAX_AGING_DAYS = 31


class ChurnFlag(IntFlag):
    """Why a customer is flagged at risk of churning (``rfm_scores.churn_flags``)."""

    OVERDUE = 1  # stage "at_risk": no order for longer than their usual gap
    FREQUENCY = 2  # fewer orders in the last period than in the one before
    SPEND = 4  # less spend in the last period than in the one before
    SATISFACTION = 8  # recent survey scores below the customer's own earlier ones


@dataclass(frozen=True)
class Condition:
    """``field op value``; monetary values are in cents (``monetary_cents``)."""

    field: str
    op: str
    value: int

    def __post_init__(self) -> None:
        if self.field not in CONDITION_SQL or self.op not in CONDITION_OPS:
            raise ValueError(f"unsupported condition {self.field} {self.op}")


@dataclass(frozen=True)
class TierRuleSpec:
    """One way into ``tier``: all ``conditions`` hold. ``why`` is written to tier history."""

    tier: str
    conditions: tuple[Condition, ...]
    why: str


@dataclass(frozen=True)
class Thresholds:
    """The smallest value earning scores 2, 3, 4 and 5 per dimension (None: unreachable)."""

    last_day: tuple[int | None, ...]
    frequency: tuple[int | None, ...]
    monetary_cents: tuple[int | None, ...]

    def as_json(self) -> dict[str, list[int | None]]:
        return {name: list(getattr(self, name)) for name in DIMENSIONS}

    @classmethod
    def from_json(cls, data: Mapping[str, Sequence[int | None]]) -> Thresholds:
        return cls(**{name: tuple(data[name]) for name in DIMENSIONS})


@dataclass(frozen=True)
class TierSpec:
    """Everything a run needs from the rules, as plain values (storage knows no rule files)."""

    rules: tuple[TierRuleSpec, ...]
    default_tier: str
    at_risk_days: Mapping[str, int]
    method: str = "quintile"  # or "fixed"
    window_days: int = 365
    fixed_recency_days: tuple[int, int, int, int] = (365, 180, 90, 30)
    fixed_frequency: tuple[int, int, int, int] = (2, 3, 5, 10)
    fixed_monetary_cents: tuple[int, int, int, int] = (50_000, 150_000, 500_000, 1_500_000)
    new_days: int = 30
    churned_days: int = 365
    at_risk_factor: float = 1.5
    own_gap_min_orders: int = 3
    at_risk_min_days: int = 7
    churn_period_days: int = 90
    churn_drop_percent: int = 50
    churn_min_orders: int = 2
    churn_min_spend_cents: int = 30_000

    def fixed_thresholds(self, today: int) -> Thresholds:
        return Thresholds(
            last_day=tuple(today - days for days in self.fixed_recency_days),
            frequency=self.fixed_frequency,
            monetary_cents=self.fixed_monetary_cents,
        )


@dataclass(frozen=True)
class RunSummary:
    """What one run did; ``run_id`` is None when an incremental run found nothing to do."""

    run_id: int | None
    full: bool
    day: int
    scored: int = 0
    refreshed: int = 0
    tier_changes: int = 0
    customer_changes: int = 0
    thresholds: Thresholds | None = None
    duration_ms: int = 0


# --- the dialect differences -------------------------------------------------------------------


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _temp(session: AsyncSession, name: str) -> str:
    """The qualified name of a temporary table."""
    return f"{'pg_temp' if _dialect(session) == 'postgresql' else 'temp'}.{name}"


def _distinct(session: AsyncSession, left: str, right: str) -> str:
    """Null-safe "differs" (SQLite spells IS DISTINCT FROM as IS NOT before 3.39)."""
    operator = "IS DISTINCT FROM" if _dialect(session) == "postgresql" else "IS NOT"
    return f"{left} {operator} {right}"


async def _create_temp_table(session: AsyncSession, name: str, columns: str) -> str:
    """A fresh temporary table for this run (a leftover of a failed run is dropped first)."""
    qualified = _temp(session, name)
    await session.execute(text(f"DROP TABLE IF EXISTS {qualified}"))
    suffix = " ON COMMIT DROP" if _dialect(session) == "postgresql" else ""
    await session.execute(text(f"CREATE TEMPORARY TABLE {name} ({columns}){suffix}"))
    return qualified


async def _analyze(session: AsyncSession, table: str) -> None:
    """PostgreSQL plans joins on a temporary table blind unless it is analysed."""
    if _dialect(session) == "postgresql":
        await session.execute(text(f"ANALYZE {table}"))


# pg_advisory_xact_lock key of tier runs ("tiers" in ASCII).
RUN_LOCK_KEY = 0x7469657273


async def lock_runs(session: AsyncSession) -> None:
    """Serialise tier runs until this transaction ends: several bot processes may share one
    PostgreSQL database, and each runs the tiers job. (SQLite: one writer at a time anyway.)"""
    if _dialect(session) == "postgresql":
        await session.execute(text(f"SELECT pg_advisory_xact_lock({RUN_LOCK_KEY})"))


async def _tune_session(session: AsyncSession, *, full: bool) -> None:
    """PostgreSQL, this transaction only: sorts stay in memory; no JIT, no parallel workers and
    no hash aggregates (nor, on a full run, hash joins). The per-customer aggregates are meant
    to stream from the covering index in customer order; the planner underestimates the number
    of customers (hundreds of thousands of groups) and would hash them instead, 3-4 times
    slower at 5 M orders, and on a full run then hash-join them to ``rfm_scores`` (a
    500,000-row hash built in memory) where a merge join reads both in customer order: the
    window recount took 1.6 s instead of 2.0-2.4 s, and copying changes to ``customers`` 0.4 s
    instead of 0.6-0.9 s. (An incremental run joins a small batch: the planner's choice is
    right there.) Compiling expressions or starting workers costs more than it saves in these
    single passes (a parallel window aggregate took as long as a serial one on this 2-core
    machine).
    """
    if _dialect(session) == "postgresql":
        settings = [
            "work_mem = '256MB'",
            "jit = off",
            "max_parallel_workers_per_gather = 0",
            "enable_hashagg = off",
        ]
        if full:
            settings.append("enable_hashjoin = off")
        for setting in settings:
            await session.execute(text(f"SET LOCAL {setting}"))


def _median_gap_sql(session: AsyncSession, scope: str) -> str:
    """Per customer in scope: the median of the day gaps between consecutive counted orders.

    PostgreSQL has ``percentile_cont``; SQLite ranks the gaps with window functions. Both give
    the mean of the two middle gaps for an even count.
    """
    gaps = f"""
        SELECT customer_id,
               placed_day - LAG(placed_day) OVER (
                   PARTITION BY customer_id ORDER BY placed_day
               ) AS gap
        FROM orders
        WHERE {COUNTED_ORDERS} {scope}
    """
    if _dialect(session) == "postgresql":
        return f"""
            SELECT customer_id,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY gap) AS median_gap
            FROM ({gaps}) AS gaps
            WHERE gap IS NOT NULL
            GROUP BY customer_id
        """
    return f"""
        SELECT customer_id, AVG(gap) AS median_gap
        FROM (
            SELECT customer_id, gap,
                   ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY gap) AS position,
                   COUNT(*) OVER (PARTITION BY customer_id) AS gaps
            FROM ({gaps}) AS gaps
            WHERE gap IS NOT NULL
        ) AS ranked
        WHERE position IN ((gaps + 1) / 2, (gaps + 2) / 2)
        GROUP BY customer_id
    """


# --- the run ----------------------------------------------------------------------------------

_WINDOW_COLUMNS = (
    "frequency",
    "monetary_cents",
    "orders_recent",
    "orders_previous",
    "spend_recent_cents",
    "spend_previous_cents",
)
ROW = "rfm_scores."  # how the classifying expressions name the row being updated


def ntile_ends(count: int, groups: int = 5) -> list[int | None]:
    """1-based positions of the last row of NTILE(groups) groups 1..groups-1 over ``count``
    sorted rows (None: the group is empty). NTILE gives the first ``count % groups`` groups one
    row more than the others."""
    size, extra = divmod(count, groups)
    return [k * size + min(k, extra) if count >= k else None for k in range(1, groups)]


@dataclass
class _Run:
    """The state of one run while its statements execute."""

    session: AsyncSession
    spec: TierSpec
    today: int
    now: datetime
    full: bool
    everybody: bool
    params: dict[str, Any] = field(default_factory=dict)
    # Where this run's rows are computed before scoring: ``rfm_scores`` itself or, for a
    # rebuild on PostgreSQL, a temporary table whose rows are then written to ``rfm_scores``
    # once, with their scores (see ``_staged_rebuild``).
    source: str = "rfm_scores"

    @property
    def batch(self) -> str:
        return _temp(self.session, "rfm_batch")

    def in_batch(self, column: str) -> str:
        return f"{column} IN (SELECT customer_id FROM {self.batch})"

    def scope(self, column: str) -> str:
        """``AND column IN batch`` for an incremental run, nothing for a full one."""
        return "" if self.full else f"AND {self.in_batch(column)}"

    async def execute(self, sql: str, **params: Any) -> int:
        statement = text(sql)
        if ":now" in sql:
            statement = statement.bindparams(bindparam("now", type_=UTCDateTime()))
        result = await self.session.execute(statement, {**self.params, **params})
        return max(int(result.rowcount), 0)  # type: ignore[attr-defined]


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
        if not await _has_pending(session):
            return RunSummary(run_id=None, full=False, day=today)
        thresholds = await _reusable_thresholds(session, spec, today)
        full = thresholds is None
    full = full or rebuild
    await _tune_session(session, full=full)
    # The run's row is written first: on SQLite this takes the write lock before anything is
    # read, so a concurrent writer waits instead of invalidating the run's snapshot.
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
    previous = await last_run(session, before=tier_run.id)
    run = _Run(session, spec, today, now, full, rebuild)
    run.params = {"today": today, "now": now, "run_id": tier_run.id}
    if _staged_rebuild(run):
        run.source = await _create_temp_table(session, "rfm_fresh", "LIKE rfm_scores")

    refreshed = await _refresh_order_statistics(run)
    if rebuild:
        pass  # every row was just computed from the orders
    elif recount or previous is None or not _windows_carry_over(previous, spec, today):
        await _collect_windows(run, "")
    else:
        await _age_windows(run, since=previous.day)
    scored = await _count_in_scope(run)
    if thresholds is None:
        thresholds = (
            await _quintile_thresholds(run, scored)
            if spec.method == "quintile"
            else spec.fixed_thresholds(today)
        )
    await _score_and_classify(run, thresholds)
    tier_changes, customer_changes = await _apply_to_customers(run)
    await session.execute(text(f"DROP TABLE IF EXISTS {run.batch}"))

    duration_ms = round((time.perf_counter() - started) * 1000)
    tier_run.thresholds = thresholds.as_json()
    tier_run.customers = scored
    tier_run.tier_changes = tier_changes
    tier_run.customer_changes = customer_changes
    tier_run.duration_ms = duration_ms
    await session.flush()
    return RunSummary(
        run_id=tier_run.id,
        full=full,
        day=today,
        scored=scored,
        refreshed=refreshed,
        tier_changes=tier_changes,
        customer_changes=customer_changes,
        thresholds=thresholds,
        duration_ms=duration_ms,
    )


async def _has_pending(session: AsyncSession) -> bool:
    result = await session.execute(select(RfmPending.customer_id).limit(1))
    return result.first() is not None


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


async def _refresh_order_statistics(run: _Run) -> int:
    """Claim the queue, then recompute the claimed customers' (everybody's on a rebuild) order
    statistics: first and last order day, count, median gap, and today's window numbers.
    Returns how many customers were refreshed.

    The queue is copied into this run's batch and only those rows are deleted, so a customer
    queued while the run executes stays queued for the next run. Customers without counted
    orders lose their ``rfm_scores`` row: they are prospects again.
    """
    batch = await _create_temp_table(run.session, "rfm_batch", "customer_id BIGINT PRIMARY KEY")
    if run.everybody:
        await run.execute("DELETE FROM rfm_pending")
        scope = ""
    else:
        await run.execute(f"INSERT INTO {batch} (customer_id) SELECT customer_id FROM rfm_pending")
        await run.execute(f"DELETE FROM rfm_pending WHERE {run.in_batch('customer_id')}")
        await _analyze(run.session, batch)
        scope = f"AND {run.in_batch('customer_id')}"
    await run.execute(f"DELETE FROM rfm_scores WHERE 1 = 1 {scope}")
    windows, days = _windows_sql(run, scope)
    # The pinned tier: one lookup per customer of a batch, a join for everybody (730,339 index
    # lookups took ~5 s of a rebuild on PostgreSQL; a join for a batch of 100 would scan).
    pinned_tier = "CASE WHEN c.tier_pinned THEN c.tier END"
    pins = "LEFT JOIN customers AS c ON c.id = totals.customer_id"
    if not run.everybody:
        pinned_tier = f"(SELECT {pinned_tier} FROM customers AS c WHERE c.id = totals.customer_id)"
        pins = ""
    inserted = await run.execute(
        f"""
        INSERT INTO {run.source} (
            customer_id, first_day, last_day, orders_total, median_gap,
            {", ".join(_WINDOW_COLUMNS)}, tier_rule, churn_flags, pinned_tier
        )
        SELECT totals.customer_id, totals.first_day, totals.last_day, totals.orders_total,
               medians.median_gap,
               {", ".join(f"COALESCE(w.{column}, 0)" for column in _WINDOW_COLUMNS)}, 0, 0,
               {pinned_tier}
        FROM (
            SELECT customer_id, MIN(placed_day) AS first_day, MAX(placed_day) AS last_day,
                   COUNT(*) AS orders_total
            FROM orders
            WHERE {COUNTED_ORDERS} {scope}
            GROUP BY customer_id
        ) AS totals
        LEFT JOIN ({_median_gap_sql(run.session, scope)}) AS medians
            ON medians.customer_id = totals.customer_id
        LEFT JOIN ({windows}) AS w ON w.customer_id = totals.customer_id
        {pins}
        """,
        **days,
    )
    if inserted > ANALYZE_AFTER_ROWS:
        await _analyze(run.session, run.source)  # fresh statistics for the rest of the run
    if run.everybody:
        return inserted
    result = await run.session.execute(text(f"SELECT COUNT(*) FROM {batch}"))
    return int(result.scalar_one())


def _windows_sql(run: _Run, scope: str) -> tuple[str, dict[str, int]]:
    """Per customer (in ``scope``): orders and spend in the frequency window and in the two
    churn periods, from one pass over the covering index restricted to the days any window
    looks at. Customers without an order in those days are absent (their numbers are 0)."""
    spec = run.spec
    period = spec.churn_period_days
    lookback = max(spec.window_days, 2 * period)
    days = {
        "window_start": run.today - spec.window_days,
        "recent_start": run.today - period,
        "previous_start": run.today - 2 * period,
        "lookback_start": run.today - lookback,
    }

    def count(condition: str | None) -> str:
        return f"COUNT(*) FILTER (WHERE {condition})" if condition else "COUNT(*)"

    def total(condition: str | None) -> str:
        summed = (
            f"SUM(value_cents) FILTER (WHERE {condition})" if condition else "SUM(value_cents)"
        )
        return f"COALESCE(CAST({summed} AS BIGINT), 0)"

    in_window = None if lookback == spec.window_days else "placed_day > :window_start"
    in_recent = "placed_day > :recent_start"
    in_previous = "placed_day > :previous_start AND placed_day <= :recent_start"
    aggregates = {
        "frequency": count(in_window),
        "monetary_cents": total(in_window),
        "orders_recent": count(in_recent),
        "orders_previous": count(in_previous),
        "spend_recent_cents": total(in_recent),
        "spend_previous_cents": total(in_previous),
    }
    sql = f"""
        SELECT customer_id,
               {", ".join(f"{value} AS {column}" for column, value in aggregates.items())}
        FROM orders
        WHERE {COUNTED_ORDERS} AND placed_day > :lookback_start {scope}
        GROUP BY customer_id
    """
    return sql, days


def _windows_carry_over(previous: TierRun, spec: TierSpec, today: int) -> bool:
    """Whether the window counts the previous run left can be brought forward to today."""
    return (
        previous.window_days == spec.window_days
        and previous.period_days == spec.churn_period_days
        and 0 <= today - previous.day <= MAX_AGING_DAYS
    )


def _merged_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Half-open-left day ranges ``(low, high]`` merged where they overlap or touch."""
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


async def _age_windows(run: _Run, *, since: int) -> None:
    """Bring every customer's window counts from day ``since`` to today, exactly.

    An order changes a window count only on the day it crosses one of the window's edges, so
    only orders placed in ``(since - edge, today - edge]`` matter. Each of them adds its
    membership today minus its membership on ``since`` to each count (read through the
    covering index on ``orders(placed_day, customer_id, value_cents)``). Customers refreshed
    by this run are left out: their counts are already today's.
    """
    if since == run.today:
        return
    spec = run.spec
    window, period = spec.window_days, spec.churn_period_days
    edges = {window, period, 2 * period}
    ranges = _merged_ranges([(since - edge, run.today - edge) for edge in edges])
    days: dict[str, int] = {"then": since}
    arms = []
    for index, (low, high) in enumerate(ranges):
        days[f"low{index}"], days[f"high{index}"] = low, high
        # One range search per (disjoint) range: an OR of ranges is planned as a full scan.
        arms.append(
            "SELECT customer_id, placed_day, value_cents FROM orders"
            f" WHERE {COUNTED_ORDERS} AND placed_day > :low{index} AND placed_day <= :high{index}"
        )

    def member(name: str, day: str) -> str:
        if name == "window":
            return f"placed_day > {day} - {window}"
        if name == "recent":
            return f"placed_day > {day} - {period}"
        return f"placed_day > {day} - {2 * period} AND placed_day <= {day} - {period}"

    def change(name: str) -> str:
        now, then = member(name, ":today"), member(name, ":then")
        return f"(CASE WHEN {now} THEN 1 ELSE 0 END - CASE WHEN {then} THEN 1 ELSE 0 END)"

    deltas = {
        "frequency": f"SUM({change('window')})",
        "monetary_cents": f"CAST(SUM({change('window')} * value_cents) AS BIGINT)",
        "orders_recent": f"SUM({change('recent')})",
        "orders_previous": f"SUM({change('previous')})",
        "spend_recent_cents": f"CAST(SUM({change('recent')} * value_cents) AS BIGINT)",
        "spend_previous_cents": f"CAST(SUM({change('previous')} * value_cents) AS BIGINT)",
    }
    not_refreshed = "" if run.everybody else f"AND NOT {run.in_batch('customer_id')}"
    assignments = ", ".join(
        f"{column} = rfm_scores.{column} + d.{column}" for column in _WINDOW_COLUMNS
    )
    nonzero = " OR ".join(f"d.{column} <> 0" for column in _WINDOW_COLUMNS)
    await run.execute(
        f"""
        UPDATE rfm_scores SET {assignments}
        FROM (
            SELECT customer_id,
                   {", ".join(f"{value} AS {column}" for column, value in deltas.items())}
            FROM ({" UNION ALL ".join(arms)}) AS crossing
            WHERE 1 = 1 {not_refreshed}
            GROUP BY customer_id
        ) AS d
        WHERE d.customer_id = rfm_scores.customer_id AND ({nonzero})
        """,
        **days,
    )


async def _collect_windows(run: _Run, scope: str) -> None:
    """Recount the window numbers of the customers in ``scope`` (everybody: ``""``) from
    their orders: the aggregate feeds one ``UPDATE ... FROM`` that writes only the rows whose
    numbers differ; customers whose last order is older than every window get zeros."""
    windows, days = _windows_sql(run, scope)
    assignments = ", ".join(f"{column} = w.{column}" for column in _WINDOW_COLUMNS)
    changed = " OR ".join(f"rfm_scores.{column} <> w.{column}" for column in _WINDOW_COLUMNS)
    await run.execute(
        f"""
        UPDATE rfm_scores SET {assignments}
        FROM ({windows}) AS w
        WHERE w.customer_id = rfm_scores.customer_id AND ({changed})
        """,
        **days,
    )
    zeros = ", ".join(f"{column} = 0" for column in _WINDOW_COLUMNS)
    nonzero = " OR ".join(f"{column} <> 0" for column in _WINDOW_COLUMNS)
    # (last_day + 0): a sequential scan, cheaper than visiting most rows through the index.
    await run.execute(
        f"""
        UPDATE rfm_scores SET {zeros}
        WHERE (last_day + 0) <= :lookback_start AND ({nonzero}) {scope}
        """,
        **days,
    )


async def _quintile_thresholds(run: _Run, count: int) -> Thresholds:
    """One more than the largest value of each of the lower four NTILE(5) groups.

    The edges depend only on the sorted values, so they are read by position: PostgreSQL with
    ``percentile_disc`` at exactly those positions (one sort per dimension, half the time of
    NTILE itself), SQLite with ``LIMIT 1 OFFSET`` on the indexes of ``rfm_scores`` (its window
    functions cost about a microsecond a row). Both give NTILE's numbers.
    """
    session = run.session
    ends = [end for end in ntile_ends(count) if end is not None]
    found: dict[str, list[int | None]] = {name: [None] * 4 for name in DIMENSIONS}
    if not ends:
        return Thresholds(**{name: tuple(values) for name, values in found.items()})
    if _dialect(session) == "postgresql":
        # percentile_disc(f) is the value at position ceil(f * count): aim at the middle of
        # the wanted row so floating point cannot tip it into the next one.
        fractions = ", ".join(repr((end - 0.5) / count) for end in ends)
        picks = ", ".join(
            f"percentile_disc(ARRAY[{fractions}]) WITHIN GROUP (ORDER BY {name})"
            for name in DIMENSIONS
        )
        row = (await session.execute(text(f"SELECT {picks} FROM {run.source}"))).one()
        values = {name: list(row[index]) for index, name in enumerate(DIMENSIONS)}
    else:
        picks = ", ".join(
            f"(SELECT {name} FROM rfm_scores ORDER BY {name} LIMIT 1 OFFSET {end - 1})"
            for name in DIMENSIONS
            for end in ends
        )
        row = (await session.execute(text(f"SELECT {picks}"))).one()
        values = {
            name: list(row[index * len(ends) : (index + 1) * len(ends)])
            for index, name in enumerate(DIMENSIONS)
        }
    for name, tops in values.items():
        for bucket, top in enumerate(tops):
            found[name][bucket] = int(top) + 1
    return Thresholds(**{name: tuple(values) for name, values in found.items()})


def _at_least_sql(column: str, thresholds: Sequence[int | None], score: int) -> str:
    """SQL for "the score of ``column`` is at least ``score``" on the raw value: scores are
    ``1 + the number of (non-decreasing) thresholds reached``, so that is one comparison."""
    if score <= 1:
        return "1 = 1"
    if score > len(thresholds) + 1 or thresholds[score - 2] is None:
        return "1 = 0"
    return f"{ROW}{column} >= {thresholds[score - 2]}"


def _condition_sql(condition: Condition, thresholds: Thresholds, params: dict[str, Any]) -> str:
    if condition.field in SCORE_FIELDS:
        column = DIMENSIONS[SCORE_FIELDS.index(condition.field)]
        values = getattr(thresholds, column)
        k = condition.value
        at_least = {
            ">=": _at_least_sql(column, values, k),
            ">": _at_least_sql(column, values, k + 1),
            "<=": f"NOT ({_at_least_sql(column, values, k + 1)})",
            "<": f"NOT ({_at_least_sql(column, values, k)})",
            "==": f"{_at_least_sql(column, values, k)}"
            f" AND NOT ({_at_least_sql(column, values, k + 1)})",
        }
        return f"({at_least[condition.op]})"
    key = f"condition{len(params)}"
    params[key] = condition.value
    operator = "=" if condition.op == "==" else condition.op
    return f"{CONDITION_SQL[condition.field]} {operator} :{key}"


def _rule_sql(spec: TierSpec, thresholds: Thresholds, params: dict[str, Any]) -> str:
    """The number of the first rule that matches the row (0: none, the default tier).

    Conditions on scores are turned into conditions on the raw values with the run's
    thresholds, so the tier is computed in the same pass as the scores.
    """
    cases = []
    for number, rule in enumerate(spec.rules, start=1):
        terms = [_condition_sql(condition, thresholds, params) for condition in rule.conditions]
        cases.append(f"WHEN {' AND '.join(terms)} THEN {number}")
    return f"CASE {' '.join(cases)} ELSE 0 END" if cases else "0"


def _by_rule_sql(spec: TierSpec, rule: str, kind: str, params: dict[str, Any]) -> str:
    """CASE over a rule number giving its tier (``kind="tier"``) or its why (``"why"``)."""
    params["default_tier"] = spec.default_tier
    params["default_why"] = f"{spec.default_tier}: no rule matched"
    cases = []
    for number, spec_rule in enumerate(spec.rules, start=1):
        params[f"rule{number}_{kind}"] = spec_rule.tier if kind == "tier" else spec_rule.why[:300]
        cases.append(f"WHEN {number} THEN :rule{number}_{kind}")
    default = f":default_{kind}"
    if not cases:
        return f"CAST({default} AS VARCHAR(300))"
    return f"CASE {rule} {' '.join(cases)} ELSE {default} END"


def _score_sql(session: AsyncSession, column: str, thresholds: Sequence[int | None]) -> str:
    """1 + the number of thresholds reached (SQLite adds comparisons as 0/1 directly, which is
    measurably cheaper there than CASE over a million rows)."""
    template = "({})" if _dialect(session) == "sqlite" else "CAST(({}) AS INTEGER)"
    terms = [
        template.format(f"{ROW}{column} >= {threshold}")
        for threshold in thresholds
        if threshold is not None
    ]
    return " + ".join(["1", *terms])


def _gap_sql(spec: TierSpec, tier: str, params: dict[str, Any]) -> str:
    """Days without an order after which the customer is at risk: a factor of their own median
    gap, or their tier's ``at_risk_days`` (the pinned tier if staff pinned one)."""
    params.update(
        own_min=spec.own_gap_min_orders,
        factor=spec.at_risk_factor,
        min_days=float(spec.at_risk_min_days),
        gap_default=float(spec.at_risk_days.get(spec.default_tier, 180)),
    )
    cases = []
    for index, (name, days) in enumerate(sorted(spec.at_risk_days.items())):
        params[f"gap_tier{index}"] = name
        params[f"gap_days{index}"] = float(days)
        cases.append(f"WHEN :gap_tier{index} THEN CAST(:gap_days{index} AS DOUBLE PRECISION)")
    effective = f"COALESCE({ROW}pinned_tier, {tier})"
    own = f"{ROW}median_gap * CAST(:factor AS DOUBLE PRECISION)"
    floor = "CAST(:min_days AS DOUBLE PRECISION)"
    by_tier = (
        f"CASE {effective} {' '.join(cases)} ELSE CAST(:gap_default AS DOUBLE PRECISION) END"
        if cases
        else "CAST(:gap_default AS DOUBLE PRECISION)"
    )
    return (
        f"CASE WHEN {ROW}orders_total >= :own_min AND {ROW}median_gap IS NOT NULL"
        f" THEN CASE WHEN {own} > {floor} THEN {own} ELSE {floor} END"
        f" ELSE {by_tier} END"
    )


async def _score_and_classify(run: _Run, thresholds: Thresholds) -> None:
    """R, F and M scores, the tier the rules give, the at-risk gap, the stage and the churn
    flags, in one pass over ``rfm_scores``. Only rows whose values change are written, and
    they are marked with this run for ``_apply_to_customers``.

    Scores are ``1 + the number of thresholds the value reaches``; the thresholds are integers
    computed by this run, written into the SQL as literals.
    """
    spec = run.spec
    params: dict[str, Any] = {
        "churned_days": spec.churned_days,
        "new_days": spec.new_days,
        "min_orders": spec.churn_min_orders,
        "min_spend": spec.churn_min_spend_cents,
        "keep_percent": 100 - spec.churn_drop_percent,
    }

    def stage_of(gap: str) -> str:
        recency = f"(:today - {ROW}last_day)"
        return (
            f"CASE WHEN {recency} >= :churned_days THEN 'churned'"
            f" WHEN :today - {ROW}first_day < :new_days THEN 'new'"
            f" WHEN {recency} > {gap} THEN 'at_risk'"
            " ELSE 'active' END"
        )

    def flags_of(stage: str) -> str:
        return (
            f"CASE WHEN {stage} = 'at_risk' THEN {int(ChurnFlag.OVERDUE)} ELSE 0 END"
            f" + CASE WHEN {ROW}orders_previous >= :min_orders"
            f" AND {ROW}orders_recent * 100 <= {ROW}orders_previous * :keep_percent"
            f" THEN {int(ChurnFlag.FREQUENCY)} ELSE 0 END"
            f" + CASE WHEN {ROW}spend_previous_cents >= :min_spend"
            f" AND {ROW}spend_recent_cents * 100 <= {ROW}spend_previous_cents * :keep_percent"
            f" THEN {int(ChurnFlag.SPEND)} ELSE 0 END"
        )

    rule = _rule_sql(spec, thresholds, params)
    tier = _by_rule_sql(spec, rule, "tier", params)
    gap = _gap_sql(spec, tier, params)
    scores = {
        "r_score": _score_sql(run.session, "last_day", thresholds.last_day),
        "f_score": _score_sql(run.session, "frequency", thresholds.frequency),
        "m_score": _score_sql(run.session, "monetary_cents", thresholds.monetary_cents),
    }
    # SET: each column from the ones before it, nested (evaluated for changed rows only).
    values = {
        **scores,
        "tier_rule": rule,
        "tier": tier,
        "at_risk_after": gap,
        "stage": stage_of(gap),
        "churn_flags": flags_of(stage_of(gap)),
    }
    # WHERE: each column checked against the *stored* values of the ones before it. If an
    # earlier column changed, its own check is already true; if none did, stored equals new.
    # So the disjunction is exactly "some column changes", and every row pays for each
    # expression once instead of for the whole nest.
    checks = {
        **scores,
        "tier_rule": rule,
        "tier": _by_rule_sql(spec, f"{ROW}tier_rule", "tier", params),
        "at_risk_after": _gap_sql(spec, f"{ROW}tier", params),
        "stage": stage_of(f"{ROW}at_risk_after"),
        "churn_flags": flags_of(f"{ROW}stage"),
    }
    if run.source != "rfm_scores":  # computed elsewhere: every row is written once, scored
        await _insert_scored(run, values, params)
        return
    assignments = ", ".join(f"{column} = {value}" for column, value in values.items())
    changed = " OR ".join(
        _distinct(run.session, f"{ROW}{column}", f"({value})") for column, value in checks.items()
    )
    await run.execute(
        f"""
        UPDATE rfm_scores SET {assignments}, changed_run = :run_id
        WHERE ({changed}) {run.scope("rfm_scores.customer_id")}
        """,
        **params,
    )


def _staged_rebuild(run: _Run) -> bool:
    """Whether a rebuild computes its rows in a temporary table first (PostgreSQL).

    Scoring rows inserted by the same transaction rewrites each of them and makes PostgreSQL
    check its foreign key a second time (an update of a row this transaction wrote always
    is): on a first run after a bulk load that was a quarter of the run. SQLite checks a key
    for a few microseconds and picks its quintiles from the indexes of ``rfm_scores``."""
    return run.everybody and _dialect(run.session) == "postgresql"


async def _insert_scored(run: _Run, values: Mapping[str, str], params: dict[str, Any]) -> None:
    """Copy the rows computed in ``run.source`` into ``rfm_scores`` with their scores, tier,
    stage and flags (the expressions name the row ``rfm_scores``: the source is aliased so)."""
    computed = {**values, "changed_run": "CAST(:run_id AS BIGINT)"}
    columns = [column.name for column in RfmScore.__table__.columns]
    select_list = ", ".join(computed.get(column, f"{ROW}{column}") for column in columns)
    await run.execute(
        f"""
        INSERT INTO rfm_scores ({", ".join(columns)})
        SELECT {select_list} FROM {run.source} AS rfm_scores
        """,
        **params,
    )
    await run.session.execute(text(f"DROP TABLE {run.source}"))
    await _analyze(run.session, "rfm_scores")


async def _count_in_scope(run: _Run) -> int:
    """Customers with counted orders the run covers (all of them on a full run)."""
    scope = "" if run.full else f"WHERE {run.in_batch('customer_id')}"
    result = await run.session.execute(text(f"SELECT COUNT(*) FROM {run.source} {scope}"))
    return int(result.scalar_one())


async def _apply_to_customers(run: _Run) -> tuple[int, int]:
    """Copy the changed tiers (unless pinned) and stages to ``customers``, writing tier history
    first. Refreshed customers without counted orders get the default tier and "prospect".

    The customers whose tier or stage changes are found once (the rows this run changed,
    joined to their customer) and staged in a small temporary table: the history insert and
    the update then read it instead of repeating that join."""
    params: dict[str, Any] = {"prospect_why": PROSPECT_REASON}
    why = _by_rule_sql(run.spec, "s.tier_rule", "why", params)
    moves = await _create_temp_table(
        run.session,
        "rfm_moves",
        "customer_id BIGINT PRIMARY KEY, old_tier VARCHAR(32) NOT NULL,"
        " new_tier VARCHAR(32) NOT NULL, stage VARCHAR(16) NOT NULL, tier_moves BOOLEAN NOT NULL,"
        " reason VARCHAR(300)",
    )
    await run.execute(
        f"""
        INSERT INTO {moves} (customer_id, old_tier, new_tier, stage, tier_moves, reason)
        SELECT c.id, c.tier, CASE WHEN c.tier_pinned THEN c.tier ELSE s.tier END, s.stage,
               NOT c.tier_pinned AND c.tier <> s.tier, {why}
        FROM rfm_scores AS s JOIN customers AS c ON c.id = s.customer_id
        WHERE s.changed_run = :run_id
          AND ((NOT c.tier_pinned AND c.tier <> s.tier) OR c.stage <> s.stage)
        """,
        **params,
    )
    await _analyze(run.session, moves)
    tier_changes = await run.execute(
        f"""
        INSERT INTO tier_history (customer_id, run_id, old_tier, new_tier, reason, changed_at)
        SELECT customer_id, CAST(:run_id AS BIGINT), old_tier, new_tier, reason, :now
        FROM {moves} WHERE tier_moves
        """
    )
    # (The IN lets SQLite drive the update from the small table instead of scanning customers.)
    customer_changes = await run.execute(
        f"""
        UPDATE customers SET tier = m.new_tier, stage = m.stage
        FROM {moves} AS m
        WHERE m.customer_id = customers.id AND customers.id IN (SELECT customer_id FROM {moves})
        """
    )
    await run.session.execute(text(f"DROP TABLE IF EXISTS {moves}"))
    # Customers of this run's batch (everybody on a rebuild) without counted orders.
    refreshed = "" if run.everybody else f"AND {run.in_batch('c.id')}"
    no_orders = "NOT EXISTS (SELECT 1 FROM rfm_scores AS s WHERE s.customer_id = c.id)"
    tier_changes += await run.execute(
        f"""
        INSERT INTO tier_history (customer_id, run_id, old_tier, new_tier, reason, changed_at)
        SELECT c.id, CAST(:run_id AS BIGINT), c.tier, CAST(:default_tier AS VARCHAR(32)),
               CAST(:prospect_why AS VARCHAR(300)), :now
        FROM customers AS c
        WHERE NOT c.tier_pinned AND c.tier <> :default_tier {refreshed} AND {no_orders}
        """,
        **params,
    )
    customer_changes += await run.execute(
        f"""
        UPDATE customers
        SET tier = CASE WHEN tier_pinned THEN tier ELSE :default_tier END, stage = 'prospect'
        WHERE id IN (
            SELECT c.id FROM customers AS c
            WHERE ((NOT c.tier_pinned AND c.tier <> :default_tier) OR c.stage <> 'prospect')
              {refreshed} AND {no_orders}
        )
        """,
        **params,
    )
    return tier_changes, customer_changes


# --- the queue, pinning, and what the CLI and the customer card read ---------------------------


async def mark_pending(session: AsyncSession, customer_ids: Sequence[int], now: datetime) -> None:
    """Queue customers whose orders changed for the next incremental run (an upsert: see
    ``RfmPending``)."""
    if not customer_ids:
        return
    insert = postgresql.insert if _dialect(session) == "postgresql" else sqlite.insert
    statement = insert(RfmPending).values(
        [{"customer_id": customer_id, "marked_at": now} for customer_id in set(customer_ids)]
    )
    statement = statement.on_conflict_do_update(
        index_elements=[RfmPending.customer_id],
        set_={"marked_at": statement.excluded.marked_at},
    )
    await session.execute(statement)


async def pending_customers(session: AsyncSession) -> list[int]:
    """The customers queued for the next incremental run."""
    return list((await session.execute(select(RfmPending.customer_id))).scalars())


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


async def pending_count(session: AsyncSession) -> int:
    result = await session.execute(select(func.count()).select_from(RfmPending))
    return int(result.scalar_one())


async def pin_tier(
    session: AsyncSession, customer_id: int, tier: str, now: datetime, why: str
) -> bool:
    """Pin a customer's tier (runs leave it alone); history records who and why. False when
    the customer does not exist."""
    customer = await session.get(Customer, customer_id, with_for_update=True)
    if customer is None:
        return False
    if customer.tier != tier:
        session.add(
            TierHistory(
                customer_id=customer_id,
                old_tier=customer.tier,
                new_tier=tier,
                reason=f"pinned: {why}"[:300],
                changed_at=now,
            )
        )
    customer.tier = tier
    customer.tier_pinned = True
    await session.flush()
    return True


async def unpin_tier(
    session: AsyncSession, customer_id: int, default_tier: str, now: datetime
) -> str | None:
    """Unpin and return the customer to the tier the rules gave at the last run (or the
    default tier without orders); None when the customer does not exist."""
    customer = await session.get(Customer, customer_id, with_for_update=True)
    if customer is None:
        return None
    rfm = await session.get(RfmScore, customer_id)
    tier = rfm.tier if rfm is not None and rfm.tier else default_tier
    if customer.tier != tier:
        session.add(
            TierHistory(
                customer_id=customer_id,
                old_tier=customer.tier,
                new_tier=tier,
                reason="unpinned: back to the tier the rules give",
                changed_at=now,
            )
        )
    customer.tier = tier
    customer.tier_pinned = False
    await session.flush()
    return tier


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
