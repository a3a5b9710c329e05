"""The plain values tier runs work with: day numbers, the run specification the rules become,
the thresholds, what a run returns, stages and churn flags. No SQL and no session here: this is
what callers (the scheduler, the CLI, the dashboard) build and read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import IntFlag

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

EPOCH = date(1970, 1, 1)


def day_number(day: date) -> int:
    """Days since 1970-01-01: how orders store their day (``orders.placed_day``)."""
    return (day - EPOCH).days


def day_of(number: int) -> date:
    """The date of a day number (``day_number``'s inverse)."""
    return EPOCH + timedelta(days=number)


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
