"""Survey analytics in SQL: CSAT %, mean score, NPS and response rate, grouped by tier,
category, dimension, survey, week or month, each figure with the count behind it; and the
churn link: customers whose recent scores fell below their own earlier average.

A response belongs to the period it was sent in (``invited_at``, UTC); its tier and category are
those of that moment. Counts are summed by the database; the ratios are worked out here from
those integers, so both databases give the same figures.

- CSAT % = answers of 4 or 5 / all answers, on the 1-5 scale questions.
- mean = the average 1-5 score.
- NPS = % promoters (9-10) - % detractors (0-6) among the 0-10 answers.
- response rate = responses with at least one answer / responses sent.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import SurveyAnswer, SurveyResponse

GROUPS = ("tier", "category", "dimension", "survey", "week", "month")
"""What ``satisfaction_by`` can group by (``response_rates``: all but dimension)."""
NONE_LABEL = "—"


@dataclass(frozen=True)
class SatisfactionRow:
    """The scores of one group (``group`` holds its values in the order of ``group_by``)."""

    group: tuple[str, ...]
    scale_answers: int
    """1-5 answers: the count behind ``csat_percent`` and ``mean_score``."""
    satisfied: int
    """Of those, 4 or 5."""
    scale_sum: int
    nps_answers: int
    """0-10 answers: the count behind ``nps``."""
    promoters: int
    detractors: int

    @property
    def csat_percent(self) -> float | None:
        return _percent(self.satisfied, self.scale_answers)

    @property
    def mean_score(self) -> float | None:
        return self.scale_sum / self.scale_answers if self.scale_answers else None

    @property
    def nps(self) -> float | None:
        if not self.nps_answers:
            return None
        return 100 * (self.promoters - self.detractors) / self.nps_answers


@dataclass(frozen=True)
class ResponseRateRow:
    group: tuple[str, ...]
    sent: int
    """Responses planned (invitations queued): the count behind ``response_rate``."""
    responded: int
    """With at least one answer (partial or complete)."""
    completed: int

    @property
    def response_rate(self) -> float | None:
        return _percent(self.responded, self.sent)


@dataclass(frozen=True)
class SatisfactionDrop:
    """One customer's recent scores against their own earlier ones, on a 0-100 scale (a 1-5
    score s counts (s-1)*25, a 0-10 score s counts s*10)."""

    customer_id: int
    recent_mean: float
    recent_answers: int
    earlier_mean: float
    earlier_answers: int

    @property
    def falling(self) -> bool:
        return self.recent_mean < self.earlier_mean


def _percent(part: int, whole: int) -> float | None:
    return 100 * part / whole if whole else None


def _period(session: AsyncSession, unit: str) -> Any:
    """The week (its Monday, ISO date) or month (YYYY-MM) of ``invited_at``, in UTC."""
    column = SurveyResponse.invited_at
    if session.get_bind().dialect.name == "postgresql":
        utc = func.timezone("UTC", column)
        if unit == "week":
            return func.to_char(func.date_trunc("week", utc), "YYYY-MM-DD")
        return func.to_char(utc, "YYYY-MM")
    if unit == "week":
        return func.date(column, "weekday 0", "-6 days")
    return func.strftime("%Y-%m", column)


def _key(session: AsyncSession, name: str) -> Any:
    if name in ("week", "month"):
        return _period(session, name)
    column = {
        "tier": SurveyResponse.tier,
        "category": SurveyResponse.category,
        "dimension": SurveyAnswer.dimension,
        "survey": SurveyResponse.survey_id,
    }[name]
    return func.coalesce(column, literal(NONE_LABEL))


def _check(group_by: Sequence[str], allowed: Collection[str]) -> None:
    unknown = [name for name in group_by if name not in allowed]
    if unknown:
        raise ValueError(f"cannot group by {unknown[0]!r} (expected: {', '.join(allowed)})")


def _count(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


async def satisfaction_by(
    session: AsyncSession,
    *,
    since: datetime,
    until: datetime,
    group_by: Sequence[str] = (),
) -> list[SatisfactionRow]:
    """Scores of the responses sent in [since, until), one row per group (one row in all
    without ``group_by``), groups in ascending order."""
    _check(group_by, GROUPS)
    keys = [_key(session, name).label(f"g{index}") for index, name in enumerate(group_by)]
    scale = SurveyAnswer.kind == "scale"
    nps = SurveyAnswer.kind == "nps"
    statement = (
        select(
            *keys,
            _count(scale),
            _count(scale & (SurveyAnswer.score >= 4)),
            func.coalesce(func.sum(case((scale, SurveyAnswer.score), else_=0)), 0),
            _count(nps),
            _count(nps & (SurveyAnswer.score >= 9)),
            _count(nps & (SurveyAnswer.score <= 6)),
        )
        .join(SurveyResponse, SurveyResponse.id == SurveyAnswer.response_id)
        .where(
            SurveyResponse.invited_at >= since,
            SurveyResponse.invited_at < until,
            SurveyAnswer.score.is_not(None),
        )
    )
    if keys:
        statement = statement.group_by(*keys).order_by(*keys)
    result = await session.execute(statement)
    width = len(keys)
    return [
        SatisfactionRow(
            tuple(str(value) for value in row[:width]), *(int(value) for value in row[width:])
        )
        for row in result
        if width or row[width] or row[width + 3]  # no answers at all: no row
    ]


async def response_rates(
    session: AsyncSession,
    *,
    since: datetime,
    until: datetime,
    group_by: Sequence[str] = (),
) -> list[ResponseRateRow]:
    """Responses sent in [since, until) and how many were answered, per group."""
    _check(group_by, [name for name in GROUPS if name != "dimension"])
    keys = [_key(session, name).label(f"g{index}") for index, name in enumerate(group_by)]
    statement = select(
        *keys,
        func.count(),
        _count(SurveyResponse.last_answer_at.is_not(None)),
        _count(SurveyResponse.status == "complete"),
    ).where(SurveyResponse.invited_at >= since, SurveyResponse.invited_at < until)
    if keys:
        statement = statement.group_by(*keys).order_by(*keys)
    result = await session.execute(statement)
    width = len(keys)
    return [
        ResponseRateRow(
            tuple(str(value) for value in row[:width]), *(int(value) for value in row[width:])
        )
        for row in result
        if row[width]
    ]


async def satisfaction_drops(
    session: AsyncSession,
    *,
    now: datetime,
    customer_ids: Collection[int] | None = None,
    recent_days: int = 90,
    min_earlier_answers: int = 2,
) -> dict[int, SatisfactionDrop]:
    """Customers (those given, or all) with scores both in the last ``recent_days`` and at
    least ``min_earlier_answers`` before: their recent mean against their earlier one.
    ``SatisfactionDrop.falling`` says whether it fell (the tiers' "satisfaction falling")."""
    start = now - timedelta(days=recent_days)
    normalised = case(
        (SurveyAnswer.kind == "scale", (SurveyAnswer.score - 1) * 25.0),
        else_=SurveyAnswer.score * 10.0,
    )
    recent = SurveyAnswer.answered_at >= start
    statement = (
        select(
            SurveyResponse.customer_id,
            func.sum(case((recent, normalised), else_=0.0)),
            _count(recent),
            func.sum(case((recent, 0.0), else_=normalised)),
            _count(~recent),
        )
        .join(SurveyResponse, SurveyResponse.id == SurveyAnswer.response_id)
        .where(
            SurveyAnswer.score.is_not(None),
            SurveyAnswer.kind.in_(("scale", "nps")),
            SurveyAnswer.answered_at < now,
        )
        .group_by(SurveyResponse.customer_id)
        .having(_count(recent) > 0, _count(~recent) >= min_earlier_answers)
    )
    if customer_ids is not None:
        statement = statement.where(SurveyResponse.customer_id.in_(sorted(customer_ids)))
    result = await session.execute(statement)
    return {
        int(row[0]): SatisfactionDrop(
            customer_id=int(row[0]),
            recent_mean=float(row[1]) / int(row[2]),
            recent_answers=int(row[2]),
            earlier_mean=float(row[3]) / int(row[4]),
            earlier_answers=int(row[4]),
        )
        for row in result
    }
