"""What a customer's orders say, kept in ``rfm_scores``: first and last order day, count,
median gap between orders, and orders and spend in the frequency window and the two churn
periods.

The queued customers' statistics are recomputed from their orders
(``refresh_order_statistics``); everybody else's window counts are brought forward day by day
(``age_windows``: an order changes a window count only on the day it crosses the window's
edge) or, when that cannot be done exactly, recounted from all orders (``collect_windows``).
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import COUNTED_ORDERS, TierRun
from storage.tiers.context import WINDOW_COLUMNS, Run
from storage.tiers.dialect import analyze, create_temp_table, dialect_name
from storage.tiers.spec import TierSpec

ANALYZE_AFTER_ROWS = 10_000
# Window counts are brought forward from the last run when it was at most this long ago;
# otherwise (or when the windows changed) they are recounted from all orders.
MAX_AGING_DAYS = 31


def median_gap_sql(session: AsyncSession, scope: str) -> str:
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
    if dialect_name(session) == "postgresql":
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


async def _claim_queue(run: Run) -> tuple[str, str]:
    """Copy the queue into this run's batch and delete only those rows from it (everybody: the
    whole queue); returns the batch table and the scope (``AND customer_id IN batch``)."""
    batch = await create_temp_table(run.session, "rfm_batch", "customer_id BIGINT PRIMARY KEY")
    if run.everybody:
        await run.execute("DELETE FROM rfm_pending")
        return batch, ""
    await run.execute(f"INSERT INTO {batch} (customer_id) SELECT customer_id FROM rfm_pending")
    await run.execute(f"DELETE FROM rfm_pending WHERE {run.in_batch('customer_id')}")
    await analyze(run.session, batch)
    return batch, f"AND {run.in_batch('customer_id')}"


async def refresh_order_statistics(run: Run) -> int:
    """Claim the queue, then recompute the claimed customers' (everybody's on a rebuild) order
    statistics: first and last order day, count, median gap, and today's window numbers.
    Returns how many customers were refreshed.

    The queue is copied into this run's batch and only those rows are deleted, so a customer
    queued while the run executes stays queued for the next run. Customers without counted
    orders lose their ``rfm_scores`` row: they are prospects again.
    """
    batch, scope = await _claim_queue(run)
    await run.execute(f"DELETE FROM rfm_scores WHERE 1 = 1 {scope}")
    windows, days = windows_sql(run, scope)
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
            {", ".join(WINDOW_COLUMNS)}, tier_rule, churn_flags, pinned_tier
        )
        SELECT totals.customer_id, totals.first_day, totals.last_day, totals.orders_total,
               medians.median_gap,
               {", ".join(f"COALESCE(w.{column}, 0)" for column in WINDOW_COLUMNS)}, 0, 0,
               {pinned_tier}
        FROM (
            SELECT customer_id, MIN(placed_day) AS first_day, MAX(placed_day) AS last_day,
                   COUNT(*) AS orders_total
            FROM orders
            WHERE {COUNTED_ORDERS} {scope}
            GROUP BY customer_id
        ) AS totals
        LEFT JOIN ({median_gap_sql(run.session, scope)}) AS medians
            ON medians.customer_id = totals.customer_id
        LEFT JOIN ({windows}) AS w ON w.customer_id = totals.customer_id
        {pins}
        """,
        **days,
    )
    if inserted > ANALYZE_AFTER_ROWS:
        await analyze(run.session, run.source)  # fresh statistics for the rest of the run
    if run.everybody:
        return inserted
    result = await run.session.execute(text(f"SELECT COUNT(*) FROM {batch}"))
    return int(result.scalar_one())


def windows_sql(run: Run, scope: str) -> tuple[str, dict[str, int]]:
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


def windows_carry_over(previous: TierRun, spec: TierSpec, today: int) -> bool:
    """Whether the window counts the previous run left can be brought forward to today."""
    return (
        previous.window_days == spec.window_days
        and previous.period_days == spec.churn_period_days
        and 0 <= today - previous.day <= MAX_AGING_DAYS
    )


def merged_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Half-open-left day ranges ``(low, high]`` merged where they overlap or touch."""
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _crossing_orders_sql(spec: TierSpec, since: int, today: int) -> tuple[str, dict[str, int]]:
    """The counted orders that crossed a window edge between day ``since`` and ``today``:
    those placed in ``(since - edge, today - edge]`` for some edge, one range search per
    (disjoint) range (an OR of ranges is planned as a full scan)."""
    window, period = spec.window_days, spec.churn_period_days
    edges = {window, period, 2 * period}
    ranges = merged_ranges([(since - edge, today - edge) for edge in edges])
    days: dict[str, int] = {"then": since}
    arms = []
    for index, (low, high) in enumerate(ranges):
        days[f"low{index}"], days[f"high{index}"] = low, high
        arms.append(
            "SELECT customer_id, placed_day, value_cents FROM orders"
            f" WHERE {COUNTED_ORDERS} AND placed_day > :low{index} AND placed_day <= :high{index}"
        )
    return " UNION ALL ".join(arms), days


def _membership_sql(spec: TierSpec, name: str, day: str) -> str:
    """Whether an order (``placed_day``) is in window ``name`` ("window", "recent" or
    "previous") as of ``day`` (an SQL expression)."""
    window, period = spec.window_days, spec.churn_period_days
    if name == "window":
        return f"placed_day > {day} - {window}"
    if name == "recent":
        return f"placed_day > {day} - {period}"
    return f"placed_day > {day} - {2 * period} AND placed_day <= {day} - {period}"


def _window_deltas_sql(spec: TierSpec) -> dict[str, str]:
    """Per window column: the aggregate of an order's membership today minus its membership on
    day ``:then``."""

    def change(name: str) -> str:
        now, then = _membership_sql(spec, name, ":today"), _membership_sql(spec, name, ":then")
        return f"(CASE WHEN {now} THEN 1 ELSE 0 END - CASE WHEN {then} THEN 1 ELSE 0 END)"

    return {
        "frequency": f"SUM({change('window')})",
        "monetary_cents": f"CAST(SUM({change('window')} * value_cents) AS BIGINT)",
        "orders_recent": f"SUM({change('recent')})",
        "orders_previous": f"SUM({change('previous')})",
        "spend_recent_cents": f"CAST(SUM({change('recent')} * value_cents) AS BIGINT)",
        "spend_previous_cents": f"CAST(SUM({change('previous')} * value_cents) AS BIGINT)",
    }


async def age_windows(run: Run, *, since: int) -> None:
    """Bring every customer's window counts from day ``since`` to today, exactly.

    An order changes a window count only on the day it crosses one of the window's edges, so
    only orders placed in ``(since - edge, today - edge]`` matter. Each of them adds its
    membership today minus its membership on ``since`` to each count (read through the
    covering index on ``orders(placed_day, customer_id, value_cents)``). Customers refreshed
    by this run are left out: their counts are already today's.
    """
    if since == run.today:
        return
    crossing, days = _crossing_orders_sql(run.spec, since, run.today)
    deltas = _window_deltas_sql(run.spec)
    not_refreshed = "" if run.everybody else f"AND NOT {run.in_batch('customer_id')}"
    assignments = ", ".join(
        f"{column} = rfm_scores.{column} + d.{column}" for column in WINDOW_COLUMNS
    )
    nonzero = " OR ".join(f"d.{column} <> 0" for column in WINDOW_COLUMNS)
    await run.execute(
        f"""
        UPDATE rfm_scores SET {assignments}
        FROM (
            SELECT customer_id,
                   {", ".join(f"{value} AS {column}" for column, value in deltas.items())}
            FROM ({crossing}) AS crossing
            WHERE 1 = 1 {not_refreshed}
            GROUP BY customer_id
        ) AS d
        WHERE d.customer_id = rfm_scores.customer_id AND ({nonzero})
        """,
        **days,
    )


async def collect_windows(run: Run, scope: str) -> None:
    """Recount the window numbers of the customers in ``scope`` (everybody: ``""``) from
    their orders: the aggregate feeds one ``UPDATE ... FROM`` that writes only the rows whose
    numbers differ; customers whose last order is older than every window get zeros."""
    windows, days = windows_sql(run, scope)
    assignments = ", ".join(f"{column} = w.{column}" for column in WINDOW_COLUMNS)
    changed = " OR ".join(f"rfm_scores.{column} <> w.{column}" for column in WINDOW_COLUMNS)
    await run.execute(
        f"""
        UPDATE rfm_scores SET {assignments}
        FROM ({windows}) AS w
        WHERE w.customer_id = rfm_scores.customer_id AND ({changed})
        """,
        **days,
    )
    zeros = ", ".join(f"{column} = 0" for column in WINDOW_COLUMNS)
    nonzero = " OR ".join(f"{column} <> 0" for column in WINDOW_COLUMNS)
    # (last_day + 0): a sequential scan, cheaper than visiting most rows through the index.
    await run.execute(
        f"""
        UPDATE rfm_scores SET {zeros}
        WHERE (last_day + 0) <= :lookback_start AND ({nonzero}) {scope}
        """,
        **days,
    )
