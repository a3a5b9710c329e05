"""The last step of a run: copy the changed tiers (unless pinned) and stages to ``customers``,
writing tier history first. Refreshed customers without counted orders get the default tier and
"prospect"."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from storage.tiers.context import Run
from storage.tiers.dialect import analyze, create_temp_table
from storage.tiers.scoring import by_rule_sql
from storage.tiers.spec import PROSPECT_REASON


async def apply_to_customers(run: Run) -> tuple[int, int]:
    """Copy this run's tier and stage changes to ``customers`` and tier history; returns the
    number of tier changes and of customers changed.

    The customers whose tier or stage changes are found once (the rows this run changed,
    joined to their customer) and staged in a small temporary table: the history insert and
    the update then read it instead of repeating that join."""
    params: dict[str, Any] = {"prospect_why": PROSPECT_REASON}
    why = by_rule_sql(run.spec, "s.tier_rule", "why", params)
    moves = await _stage_moves(run, why, params)
    tier_changes, customer_changes = await _write_moves(run, moves)
    prospect_tiers, prospects = await _reset_prospects(run, params)
    return tier_changes + prospect_tiers, customer_changes + prospects


async def _stage_moves(run: Run, why: str, params: dict[str, Any]) -> str:
    """The temporary table of the customers whose tier or stage this run changes."""
    moves = await create_temp_table(
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
    await analyze(run.session, moves)
    return moves


async def _write_moves(run: Run, moves: str) -> tuple[int, int]:
    """Tier history for the staged tier moves, then the staged tiers and stages to
    ``customers``; the staging table is dropped."""
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
    return tier_changes, customer_changes


async def _reset_prospects(run: Run, params: dict[str, Any]) -> tuple[int, int]:
    """Customers of this run's batch (everybody on a rebuild) without counted orders: the
    default tier (unless pinned, with history) and stage "prospect"."""
    refreshed = "" if run.everybody else f"AND {run.in_batch('c.id')}"
    no_orders = "NOT EXISTS (SELECT 1 FROM rfm_scores AS s WHERE s.customer_id = c.id)"
    tier_changes = await run.execute(
        f"""
        INSERT INTO tier_history (customer_id, run_id, old_tier, new_tier, reason, changed_at)
        SELECT c.id, CAST(:run_id AS BIGINT), c.tier, CAST(:default_tier AS VARCHAR(32)),
               CAST(:prospect_why AS VARCHAR(300)), :now
        FROM customers AS c
        WHERE NOT c.tier_pinned AND c.tier <> :default_tier {refreshed} AND {no_orders}
        """,
        **params,
    )
    customer_changes = await run.execute(
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
