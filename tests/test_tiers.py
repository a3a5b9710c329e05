"""RFM scores, tiers, lifecycle stages and churn signals, on SQLite and PostgreSQL.

Every expected number below is worked out by hand in the comments, not by calling the code under
test. Days are "days before today"; amounts are yuan. The rules are ``tier_rules()`` in
``tests/auxil/shop.py``: window 365 days, churn periods of 90 days, stages new < 30 days,
churned >= 365 days, at risk after 1.5 x own median gap (>= 3 orders, at least 7 days) or the
tier's gap (vip 60, important 90, normal 180); tiers vip = (M>=5 and F>=4) or spend >= 10,000;
important = M>=4 or (F>=4 and R>=3); normal otherwise.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import ClassVar

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler import tiers as tier_job
from storage import orders as order_queries
from storage.models import Customer, RfmPending, RfmScore, TierHistory, TierRun
from storage.tiers import runs as tier_runs
from storage.tiers.pending import mark_pending
from storage.tiers.pins import pin_tier, unpin_tier
from storage.tiers.report import tier_report
from storage.tiers.scoring import ntile_ends
from storage.tiers.spec import ChurnFlag, RunSummary, Thresholds
from surveys.analytics import satisfaction_drops
from tests.auxil.shop import (
    NOW,
    TODAY,
    Order,
    add_customer,
    customers_by_name,
    order_rows,
    rfm_by_name,
    tier_rules,
)
from tests.auxil.surveys import answered_survey

DONE = "completed"

# Ten customers with counted orders, one with cancelled orders only (Q), one with none (Z).
HAND_MADE: dict[str, list[Order]] = {
    # A: a refunded order yesterday does not count (not its recency, not its spend).
    "A": [(5, 3000, DONE), (40, 3000, DONE), (75, 3000, DONE), (110, 3000, DONE),
          (1, 50000, "refunded")],
    "B": [(10, 2000, DONE), (50, 2000, DONE), (95, 2000, DONE)],
    "C": [(20, 1500, DONE), (200, 1500, DONE)],
    "D": [(45, 800, DONE)],
    "N": [(10, 600, DONE)],
    "X": [(400, 5000, DONE), (500, 5000, DONE)],
    "R": [(100, 700, DONE), (130, 700, DONE), (160, 700, "paid"), (190, 700, "delivered")],
    "S": [(200, 900, DONE)],
    "P": [(120, 400, DONE)],  # staff pin P to vip before the run
    "F": [(30, 500, DONE), (100, 500, DONE), (110, 500, DONE), (120, 500, DONE),
          (130, 500, DONE)],
    "Q": [(15, 999, "cancelled")],
    "Z": [],
}  # fmt: skip

# Quintiles over the 10 customers with counted orders: NTILE(5) groups of 2 rows; a threshold is
# one more than the top value of groups 1-4, i.e. of sorted positions 2, 4, 6 and 8.
#   recency, oldest first: X 400, S 200 | P 120, R 100 | D 45, F 30 | C 20, B 10 | N 10, A 5
#     -> R score = 1 + [r < 200] + [r < 100] + [r < 30] + [r < 10]; B and N tie at 10 across
#        the last boundary and both get 4.
#   frequency: X 0, D 1 | N 1, S 1 | P 1, C 2 | B 3, A 4 | R 4, F 5
#     -> thresholds 2, 2, 3, 5: the 1s span three groups and all score 1 (no one scores 2).
#   monetary: X 0, P 400 | N 600, D 800 | S 900, F 2500 | R 2800, C 3000 | B 6000, A 12000
#     -> thresholds 400.01, 800.01, 2500.01, 3000.01 yuan.
THRESHOLDS = Thresholds(
    last_day=(TODAY - 199, TODAY - 99, TODAY - 29, TODAY - 9),
    frequency=(2, 2, 3, 5),
    monetary_cents=(40_001, 80_001, 250_001, 300_001),
)


@dataclasses.dataclass(frozen=True)
class Expected:
    recency: int
    frequency: int
    monetary: int  # yuan
    scores: tuple[int, int, int]  # R, F, M
    rule_tier: str
    stage: str
    at_risk_after: float
    median_gap: float | None
    flags: int


EXPECTED = {
    # A: gaps 35, 35, 35 -> median 35, at risk after 52.5; M5 F4 -> vip (first rule).
    "A": Expected(5, 4, 12000, (5, 4, 5), "vip", "active", 52.5, 35.0, 0),
    # B: gaps 45, 40 -> median 42.5, 63.75 days; M5 F4 -> vip.
    "B": Expected(10, 3, 6000, (4, 4, 5), "vip", "active", 63.75, 42.5, 0),
    # C: 2 orders (< 3): its tier's gap, important 90; M4 -> important.
    "C": Expected(20, 2, 3000, (4, 3, 4), "important", "active", 90.0, 180.0, 0),
    "D": Expected(45, 1, 800, (3, 1, 2), "normal", "active", 180.0, None, 0),
    # N: first order 10 days ago (< 30): new.
    "N": Expected(10, 1, 600, (4, 1, 2), "normal", "new", 180.0, None, 0),
    # X: no order for 400 days: churned; nothing in the 365-day window.
    "X": Expected(400, 0, 0, (1, 1, 1), "normal", "churned", 180.0, 100.0, 0),
    # R: gaps 30 -> at risk after 45, 100 days without an order: at risk (overdue). The last
    # 90 days have no order, the 90 before have 3 (100, 130, 160; 190 is outside): frequency
    # and spend falling. 1 + 2 + 4.
    "R": Expected(100, 4, 2800, (2, 4, 4), "important", "at_risk", 45.0, 30.0, 7),
    # S: one order 200 days ago, normal gap 180: at risk; no order in either period.
    "S": Expected(200, 1, 900, (1, 1, 3), "normal", "at_risk", 180.0, None, 1),
    # P: the rules say normal, but P is pinned to vip, so its gap is vip's 60: at risk after
    # 120 days. Previous period 400 yuan (>= 300), last period nothing: spend falling. 1 + 4.
    "P": Expected(120, 1, 400, (2, 1, 1), "normal", "at_risk", 60.0, None, 5),
    # F: gaps 10, 10, 10, 70 -> median 10, 1.5 x 10 = 15 (above the 7-day floor); 30 days
    # without an order: at risk. 1 order in the last 90 days vs 4 before, 500 vs 2000 yuan.
    # F5 and R3 -> important (fourth rule).
    "F": Expected(30, 5, 2500, (3, 5, 3), "important", "at_risk", 15.0, 10.0, 7),
}


async def load(
    sessionmaker: async_sessionmaker[AsyncSession], histories: dict[str, list[Order]]
) -> None:
    async with sessionmaker.begin() as session:
        for name in histories:
            await add_customer(session, name)
        await order_queries.add_orders(session, order_rows(histories), NOW)


async def run(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    full: bool = True,
    days_later: int = 0,
    **rule_overrides: object,
) -> RunSummary:
    async with sessionmaker.begin() as session:
        return await tier_job.recompute(
            session, tier_rules(**rule_overrides), NOW + timedelta(days=days_later), full=full
        )


async def pin(sessionmaker: async_sessionmaker[AsyncSession], name: str, tier: str) -> None:
    async with sessionmaker.begin() as session:
        customer = (await customers_by_name(session))[name]
        await pin_tier(session, customer.id, tier, NOW, "key account")
        await mark_pending(session, [customer.id], NOW)


async def assert_worked_out_by_hand(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Every customer's scores, tier, stage and flags are the ones worked out in EXPECTED."""
    async with sessionmaker() as session:
        rfm = await rfm_by_name(session)
        customers = await customers_by_name(session)
    assert set(rfm) == set(EXPECTED)  # Q (cancelled only) and Z (no order) have no scores
    for name, expected in EXPECTED.items():
        row = rfm[name]
        got = Expected(
            TODAY - row.last_day,
            row.frequency,
            row.monetary_cents // 100,
            (row.r_score or 0, row.f_score or 0, row.m_score or 0),
            str(row.tier),
            str(row.stage),
            row.at_risk_after or 0.0,
            row.median_gap,
            row.churn_flags,
        )
        assert got == expected, name
        tier = "vip" if name == "P" else expected.rule_tier
        assert (customers[name].tier, customers[name].stage) == (tier, expected.stage), name
    for name in ("Q", "Z"):
        assert (customers[name].tier, customers[name].stage) == ("normal", "prospect")


class TestHandMadeDataSet:
    async def test_scores_tiers_stages_and_flags(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        await load(sessionmaker, HAND_MADE)
        await pin(sessionmaker, "P", "vip")
        summary = await run(sessionmaker)

        assert summary.full and summary.scored == 10
        assert summary.thresholds == THRESHOLDS
        await assert_worked_out_by_hand(sessionmaker)

    async def test_the_first_run_after_a_bulk_load_gives_the_same_numbers(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        await load(sessionmaker, HAND_MADE)
        await pin(sessionmaker, "P", "vip")
        async with sessionmaker.begin() as session:
            rebuilt = await tier_job.recompute(session, tier_rules(), NOW, rebuild=True)
        assert (rebuilt.full, rebuilt.scored, rebuilt.thresholds) == (True, 10, THRESHOLDS)
        assert rebuilt.tier_changes == 5  # A, B to vip; C, F, R to important (P is pinned)
        await assert_worked_out_by_hand(sessionmaker)
        rebuilt_rows = await snapshot(sessionmaker)
        again = await run(sessionmaker)
        assert (again.tier_changes, again.customer_changes) == (0, 0)
        assert await snapshot(sessionmaker) == rebuilt_rows

    async def test_counts_in_windows_and_totals(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        await load(sessionmaker, HAND_MADE)
        await run(sessionmaker)
        async with sessionmaker() as session:
            rfm = await rfm_by_name(session)
        # (orders in total, first order, last 90 days: orders / yuan, the 90 before: orders / yuan)
        assert {
            name: (
                row.orders_total,
                TODAY - row.first_day,
                row.orders_recent,
                row.spend_recent_cents // 100,
                row.orders_previous,
                row.spend_previous_cents // 100,
            )
            for name, row in rfm.items()
        } == {
            "A": (4, 110, 3, 9000, 1, 3000),  # 5, 40, 75 | 110 (the refund is not counted)
            "B": (3, 95, 2, 4000, 1, 2000),
            "C": (2, 200, 1, 1500, 0, 0),
            "D": (1, 45, 1, 800, 0, 0),
            "N": (1, 10, 1, 600, 0, 0),
            "X": (2, 500, 0, 0, 0, 0),
            "R": (4, 190, 0, 0, 3, 2100),
            "S": (1, 200, 0, 0, 0, 0),
            "P": (1, 120, 0, 0, 1, 400),
            "F": (5, 130, 1, 500, 4, 2000),
        }

    async def test_tier_history_says_what_changed_and_why(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        await load(sessionmaker, HAND_MADE)
        await pin(sessionmaker, "P", "vip")
        summary = await run(sessionmaker)

        assert summary.tier_changes == 5
        async with sessionmaker() as session:
            rows = await session.execute(
                select(Customer.external_id, TierHistory)
                .join(TierHistory, TierHistory.customer_id == Customer.id)
                .order_by(Customer.external_id)
            )
            history = {
                str(name): (change.old_tier, change.new_tier, change.reason, change.run_id)
                for name, change in rows.all()
            }
        run_id = summary.run_id
        assert history == {
            "A": ("normal", "vip", "vip: m_score >= 5 and f_score >= 4", run_id),
            "B": ("normal", "vip", "vip: m_score >= 5 and f_score >= 4", run_id),
            "C": ("normal", "important", "important: m_score >= 4", run_id),
            "F": ("normal", "important", "important: f_score >= 4 and r_score >= 3", run_id),
            "P": ("normal", "vip", "pinned: key account", None),
            "R": ("normal", "important", "important: m_score >= 4", run_id),
        }

    async def test_a_second_run_changes_nothing(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        await load(sessionmaker, HAND_MADE)
        await run(sessionmaker)
        again = await run(sessionmaker)
        assert (again.tier_changes, again.customer_changes) == (0, 0)

    async def test_pinned_tier_survives_runs_and_unpinning_restores_the_rules(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        await load(sessionmaker, HAND_MADE)
        await pin(sessionmaker, "P", "vip")
        await run(sessionmaker)
        await run(sessionmaker, days_later=1)
        async with sessionmaker.begin() as session:
            p = (await customers_by_name(session))["P"]
            assert (p.tier, p.tier_pinned) == ("vip", True)
            assert await unpin_tier(session, p.id, "normal", NOW) == "normal"
            await mark_pending(session, [p.id], NOW)
        await run(sessionmaker, full=False)
        async with sessionmaker() as session:
            p = (await customers_by_name(session))["P"]
            rfm = (await rfm_by_name(session))["P"]
            last = await session.execute(
                select(TierHistory.reason)
                .where(TierHistory.customer_id == p.id)
                .order_by(TierHistory.id.desc())
            )
            reason = last.scalars().first()
        # Back to normal: its gap is normal's 180 again, so 120 days without an order is fine.
        assert (p.tier, p.tier_pinned, p.stage) == ("normal", False, "active")
        assert (rfm.at_risk_after, rfm.churn_flags) == (180.0, 4)  # spend is still falling
        assert reason == "unpinned: back to the tier the rules give"

    async def test_stages_move_with_time(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        await load(sessionmaker, {"D": HAND_MADE["D"], "N": HAND_MADE["N"]})
        stages: list[tuple[str, str]] = []
        # D: one order 45 days ago (normal, at risk after 180 days, churned after 365).
        # N: one order 10 days ago (new for 30 days).
        for days_later in (0, 20, 135, 136, 319, 320):
            await run(sessionmaker, days_later=days_later)
            async with sessionmaker() as session:
                customers = await customers_by_name(session)
            stages.append((customers["D"].stage, customers["N"].stage))
        assert stages == [
            ("active", "new"),  # D 45 days, N 10 days
            ("active", "active"),  # N 30 days: no longer new
            ("active", "active"),  # D 180 days: not longer than 180 yet
            ("at_risk", "active"),  # D 181 days; N 146
            ("at_risk", "at_risk"),  # D 364; N 329 > 180
            ("churned", "at_risk"),  # D 365 days: churned
        ]


class TestIncremental:
    async def test_only_the_queued_customers_are_recomputed(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        await load(sessionmaker, HAND_MADE)
        await run(sessionmaker)
        # D orders again today; nobody else changes.
        async with sessionmaker.begin() as session:
            counts = await order_queries.add_orders(
                session, order_rows({"D": [(0, 5000, DONE)]}, prefix="NEW"), NOW
            )
        assert counts.customers_queued == 1
        summary = await run(sessionmaker, full=False)

        assert not summary.full and (summary.refreshed, summary.scored) == (1, 1)
        assert summary.thresholds == THRESHOLDS  # the full run's boundaries, not new ones
        async with sessionmaker() as session:
            d = (await rfm_by_name(session))["D"]
            pending = (await session.execute(select(func.count()).select_from(RfmPending))).one()
        # D: 2 orders, 5800 yuan, last today: R5 (0 < 9), F 2 -> 3, M 5800 -> 5 => important.
        assert (TODAY - d.last_day, d.frequency, d.monetary_cents // 100) == (0, 2, 5800)
        assert (d.r_score, d.f_score, d.m_score, d.tier) == (5, 3, 5, "important")
        assert pending == (0,)
        assert await run(sessionmaker, full=False) == RunSummary(None, False, TODAY)

    async def test_incremental_equals_full_for_the_customers_it_touched(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        await load(sessionmaker, HAND_MADE)
        await pin(sessionmaker, "P", "vip")
        first = await run(sessionmaker)
        changes = {
            "D": [(45, 800, DONE), (0, 5000, DONE)],  # a new order today
            "S": [(200, 900, "refunded")],  # its only order refunded: a prospect again
            "Q": [(15, 999, DONE)],  # cancelled -> completed: Q has an order now
            "B": [(10, 2000, DONE), (50, 2000, DONE), (95, 2000, "cancelled")],
        }
        async with sessionmaker.begin() as session:
            await order_queries.add_orders(session, order_rows(changes), NOW)
            # N's order moves to Z (a correction in the shop): both are recomputed.
            moved = order_rows({"N": HAND_MADE["N"]})[0]
            await order_queries.add_orders(
                session, [dataclasses.replace(moved, customer_external_id="Z")], NOW
            )
        incremental = await run(sessionmaker, full=False)
        assert incremental.refreshed == 6  # D, S, Q, B, N, Z
        touched = await snapshot(sessionmaker)

        # A full run scoring with the same thresholds (fixed at the incremental run's values).
        assert first.thresholds is not None
        spec = dataclasses.replace(
            tier_job.build_spec(tier_rules()),
            method="fixed",
            fixed_recency_days=tuple(TODAY - t for t in first.thresholds.last_day if t),
            fixed_frequency=first.thresholds.frequency,
            fixed_monetary_cents=first.thresholds.monetary_cents,
        )
        async with sessionmaker.begin() as session:
            full = await tier_runs.recompute(session, spec, today=TODAY, now=NOW, full=True)
        assert full.thresholds == first.thresholds
        assert await snapshot(sessionmaker) == touched
        # And by hand for the touched ones:
        assert {name: touched[name][:2] for name in ("D", "S", "Q", "B", "N", "Z")} == {
            "D": ("important", "active"),  # R5 F3 M5 (5800 yuan)
            "S": ("normal", "prospect"),
            "Q": ("normal", "new"),  # one order 15 days ago, 999 yuan: M3 (> 800)
            "B": ("important", "active"),  # 2 orders, 4000 yuan: M5 but F3 < 4 -> M>=4
            "N": ("normal", "prospect"),
            "Z": ("normal", "new"),
        }


async def snapshot(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> dict[str, tuple[object, ...]]:
    """Every customer's tier, stage and RFM numbers (without run bookkeeping)."""
    async with sessionmaker() as session:
        customers = await customers_by_name(session)
        rfm = await rfm_by_name(session)
    skip = {"customer_id", "changed_run"}
    columns = [c.name for c in RfmScore.__table__.columns if c.name not in skip]
    return {
        name: (
            customer.tier,
            customer.stage,
            *((getattr(rfm[name], column) for column in columns) if name in rfm else ()),
        )
        for name, customer in customers.items()
    }


class TestChurnSignals:
    # Fixed thresholds: the tier does not matter here, the signals do.
    HISTORIES: ClassVar[dict[str, list[Order]]] = {
        # 4 orders x 100 before, 2 x 300 in the last 90 days: frequency 2 <= 4 x 50 %; spend
        # 600 > 200. Gaps 10, 10, 10, 80, 10 -> median 10 -> at risk after 15; 10 days: active.
        "freq": [(130, 100, DONE), (120, 100, DONE), (110, 100, DONE), (100, 100, DONE),
                 (20, 300, DONE), (10, 300, DONE)],
        # 2 x 1000 before, 2 x 200 after: 2 > 1 order, 400 <= 1000 yuan. Median gap 50 -> 75.
        "spend": [(150, 1000, DONE), (100, 1000, DONE), (40, 200, DONE), (10, 200, DONE)],
        # 3 x 500 before, 1 x 200 after: both fall. Gaps 50, 25, 90 -> 50 -> 75; 5 days.
        "both": [(170, 500, DONE), (120, 500, DONE), (95, 500, DONE), (5, 200, DONE)],
        # The same before and after.
        "steady": [(150, 500, DONE), (100, 500, DONE), (50, 500, DONE), (10, 500, DONE)],
        # Period edges: 90 days ago is the earlier period, 180 days ago is in neither. 1 order
        # (89 days) vs 2 (90, 90): exactly 50 %, flagged; 400 vs 800 yuan, flagged. Gaps 90, 0,
        # 1 -> median 1; 1.5 days is below the 7-day floor; 89 days without an order: overdue.
        "edges": [(180, 400, DONE), (90, 400, DONE), (90, 400, DONE), (89, 400, DONE)],
        # One order before (fewer than 2) of 100 yuan (less than 300): no signal; 1 order ->
        # normal's 180-day gap, 100 days: active.
        "small": [(100, 100, DONE)],
        # A refund in the earlier period does not count as spend that fell.
        "refund": [(100, 5000, "refunded"), (60, 100, DONE), (10, 100, DONE)],
    }  # fmt: skip

    async def test_falling_frequency_and_spend_are_flagged_with_their_numbers(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        await load(sessionmaker, self.HISTORIES)
        await run(sessionmaker, scores={"method": "fixed"})
        async with sessionmaker() as session:
            rfm = await rfm_by_name(session)
        flags = ChurnFlag
        got = {
            name: (
                flags(row.churn_flags),
                row.orders_recent,
                row.orders_previous,
                row.spend_recent_cents // 100,
                row.spend_previous_cents // 100,
                row.stage,
            )
            for name, row in rfm.items()
        }
        none = flags(0)
        assert got == {
            "freq": (flags.FREQUENCY, 2, 4, 600, 400, "active"),
            "spend": (flags.SPEND, 2, 2, 400, 2000, "active"),
            "both": (flags.FREQUENCY | flags.SPEND, 1, 3, 200, 1500, "active"),
            "steady": (none, 2, 2, 1000, 1000, "active"),
            "edges": (flags.OVERDUE | flags.FREQUENCY | flags.SPEND, 1, 2, 400, 800, "at_risk"),
            "small": (none, 0, 1, 0, 100, "active"),
            "refund": (none, 2, 0, 200, 0, "active"),
        }
        today = TODAY
        assert tier_job.churn_signals(rfm["edges"], today) == [
            tier_job.ChurnSignal("overdue", 89, 7.0),
            tier_job.ChurnSignal("frequency", 1, 2),
            tier_job.ChurnSignal("spend", 40_000, 80_000),
        ]

    async def test_falling_satisfaction_is_flagged_with_the_scores(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Survey scores normalised to 0-100 (1-5: (s-1) x 25, NPS: s x 10). "cooling": 5 and
        NPS 10 earlier (100, 100), 2 in the last 90 days (25): falling. "content": 4 and 4
        earlier (75, 75), 5 lately (100): not. "new": only recent answers: no history, no flag.
        """
        histories = {name: self.HISTORIES["steady"] for name in ("cooling", "content", "new")}
        await load(sessionmaker, histories)
        csat, nps = "csat", "nps"
        answers = {  # name: [(days ago, survey, kind, score)]
            "cooling": [(120, csat, "scale", 5), (100, nps, "nps", 10), (20, csat, "scale", 2)],
            "content": [(150, csat, "scale", 4), (110, csat, "scale", 4), (5, csat, "scale", 5)],
            "new": [(10, csat, "scale", 1)],
        }
        async with sessionmaker.begin() as session:
            people = await customers_by_name(session)
            for name, given in answers.items():
                for days_ago, survey, kind, score in given:
                    await answered_survey(
                        session,
                        customer_id=people[name].id,
                        survey=survey,
                        subject=f"period:{days_ago}",
                        tier="normal",
                        at=NOW - timedelta(days=days_ago),
                        scores=[("score", kind, score)],
                    )
        flags = ChurnFlag
        await run(sessionmaker, scores={"method": "fixed"})
        async with sessionmaker() as session:
            rfm = await rfm_by_name(session)
            drops = await satisfaction_drops(session, now=NOW)
        assert {name: flags(row.churn_flags) for name, row in rfm.items()} == {
            "cooling": flags.SATISFACTION,
            "content": flags(0),
            "new": flags(0),
        }
        cooling = drops[rfm["cooling"].customer_id]
        assert tier_job.churn_signals(rfm["cooling"], TODAY, cooling) == [
            tier_job.ChurnSignal("satisfaction", 25.0, 100.0)
        ]
        # An incremental run rescoring "cooling" (a new order) keeps the flag.
        async with sessionmaker.begin() as session:
            await mark_pending(session, [rfm["cooling"].customer_id], NOW)
        summary = await run(sessionmaker, full=False, scores={"method": "fixed"})
        assert (summary.full, summary.scored) == (False, 1)
        async with sessionmaker() as session:
            assert flags((await rfm_by_name(session))["cooling"].churn_flags) == flags.SATISFACTION


class TestRuns:
    async def test_fixed_thresholds_come_from_the_rules(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        await load(sessionmaker, {"A": HAND_MADE["A"], "D": HAND_MADE["D"]})
        summary = await run(
            sessionmaker,
            scores={
                "method": "fixed",
                "fixed": {
                    "recency_days": [365, 180, 90, 30],
                    "frequency": [2, 3, 5, 10],
                    "monetary": [500, 1500, 5000, 15000],
                },
            },
        )
        async with sessionmaker() as session:
            rfm = await rfm_by_name(session)
        # A: 5 days (<= 30: R5), 4 orders (>= 3: F3), 12000 (>= 5000: M4): vip by spend.
        # D: 45 days (<= 90: R4), 1 order (F1), 800 (>= 500: M2) -> normal.
        assert (rfm["A"].r_score, rfm["A"].f_score, rfm["A"].m_score) == (5, 3, 4)
        assert (rfm["D"].r_score, rfm["D"].f_score, rfm["D"].m_score) == (4, 1, 2)
        assert (rfm["A"].tier, rfm["D"].tier) == ("vip", "normal")  # A: spend >= 10,000
        assert summary.thresholds == Thresholds(
            (TODAY - 365, TODAY - 180, TODAY - 90, TODAY - 30),
            (2, 3, 5, 10),
            (50_000, 150_000, 500_000, 1_500_000),
        )

    async def test_an_incremental_run_without_a_full_one_does_a_full_one(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        await load(sessionmaker, HAND_MADE)
        summary = await run(sessionmaker, full=False)
        assert summary.full and summary.thresholds == THRESHOLDS
        async with sessionmaker() as session:
            runs = (await session.execute(select(TierRun.full, TierRun.customers))).all()
        assert [tuple(row) for row in runs] == [(True, 10)]

    async def test_report_counts_tiers_stages_flags_and_movements(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        await load(sessionmaker, HAND_MADE)
        await pin(sessionmaker, "P", "vip")
        await run(sessionmaker)
        async with sessionmaker() as session:
            report = await tier_report(session)
        assert report.counts == {
            ("vip", "active"): 2,  # A, B
            ("vip", "at_risk"): 1,  # P (pinned)
            ("important", "active"): 1,  # C
            ("important", "at_risk"): 2,  # R, F
            ("normal", "active"): 1,  # D
            ("normal", "new"): 1,  # N
            ("normal", "churned"): 1,  # X
            ("normal", "at_risk"): 1,  # S
            ("normal", "prospect"): 2,  # Q, Z
        }
        flags = ChurnFlag
        assert report.churn_flags == {
            flags.OVERDUE: 4,
            flags.FREQUENCY: 2,
            flags.SPEND: 3,
            flags.SATISFACTION: 0,
        }
        # What the runs changed since the last full one (the staff pin is not a movement).
        assert report.movements == {("normal", "vip"): 2, ("normal", "important"): 3}


@pytest.mark.parametrize(
    ("count", "ends"),
    [
        (0, [None, None, None, None]),
        (3, [1, 2, 3, None]),
        (7, [2, 4, 5, 6]),  # NTILE(5) over 7 rows: groups of 2, 2, 1, 1, 1
        (10, [2, 4, 6, 8]),
        (11, [3, 5, 7, 9]),
    ],
)
def test_ntile_group_ends(count: int, ends: list[int | None]) -> None:
    assert ntile_ends(count) == ends


class TestSchedule:
    def test_the_full_run_is_due_once_a_day_after_its_time(self) -> None:
        rules = tier_rules(schedule={"full_at": "03:00"})
        # NOW is 17:00 in Shanghai; 18:30 UTC the day before is 02:30 in Shanghai.
        early = NOW - timedelta(hours=14, minutes=30)
        assert tier_job.full_run_due(rules, NOW, None)
        assert tier_job.full_run_due(rules, NOW, TODAY - 1)
        assert not tier_job.full_run_due(rules, NOW, TODAY)
        assert not tier_job.full_run_due(rules, early, TODAY - 1)

    async def test_the_job_runs_the_full_run_then_only_queued_customers(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        await load(sessionmaker, {"D": HAND_MADE["D"], "N": HAND_MADE["N"]})
        rules = tier_rules()
        first = await tier_job.scheduled_run(sessionmaker, rules, NOW)
        again = await tier_job.scheduled_run(sessionmaker, rules, NOW + timedelta(minutes=10))
        async with sessionmaker.begin() as session:
            await order_queries.add_orders(
                session, order_rows({"D": [(0, 10, DONE)]}, prefix="NEW"), NOW
            )
        queued = await tier_job.scheduled_run(sessionmaker, rules, NOW + timedelta(minutes=20))
        tomorrow = await tier_job.scheduled_run(sessionmaker, rules, NOW + timedelta(days=1))
        assert (first.full, first.scored) == (True, 2)
        assert again.run_id is None  # nothing queued, today's full run done
        assert (queued.full, queued.scored) == (False, 1)
        assert (tomorrow.full, tomorrow.day) == (True, TODAY + 1)


def dense_histories(customers: int = 30) -> dict[str, list[Order]]:
    """Customers ordering every 3 to 6 days over 420 days (a fixed pattern): every day, orders
    cross the 90-, 180- and 365-day edges."""
    return {
        f"K{k:02d}": [(days_ago, 100 + 10 * k, DONE) for days_ago in range(k % 6, 420, 3 + k % 4)]
        for k in range(customers)
    }


class TestWindowsCarriedOver:
    @pytest.mark.parametrize("days", [1, 2, 7, 31, 45])
    async def test_bringing_windows_forward_equals_recounting_them(
        self, sessionmaker: async_sessionmaker[AsyncSession], days: int
    ) -> None:
        await load(sessionmaker, dense_histories())
        await run(sessionmaker)
        before = await snapshot(sessionmaker)
        # A change between the runs: K05 orders again (queued, recomputed from its orders).
        async with sessionmaker.begin() as session:
            await order_queries.add_orders(
                session, order_rows({"K05": [(0, 77, DONE)]}, prefix="NEW"), NOW
            )
        await run(sessionmaker, days_later=days)  # windows brought forward (45: recounted)
        carried = await snapshot(sessionmaker)
        async with sessionmaker.begin() as session:
            recounted = await tier_job.recompute(
                session, tier_rules(), NOW + timedelta(days=days), full=True, recount=True
            )
        assert (recounted.tier_changes, recounted.customer_changes) == (0, 0)
        assert await snapshot(sessionmaker) == carried
        windows = slice(6, 12)  # frequency ... spend_previous_cents in the snapshot
        moved = [name for name in carried if carried[name][windows] != before[name][windows]]
        assert len(moved) > 5  # orders did cross window edges between the runs
