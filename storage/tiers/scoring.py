"""Scores, tiers, stages and churn flags: the quintile thresholds of a full run and the SQL
that classifies every row of ``rfm_scores`` in one pass.

Every dimension is "higher is better" (last order day, frequency, monetary) and a customer's
score is ``1 + the number of thresholds their value reaches``. In quintile mode a threshold is
one more than the largest value of an ``NTILE(5)`` group, so equal values always get the same
score (the lower one when a boundary falls among them); fixed mode takes the thresholds from
the rules. Incremental runs reuse the thresholds of the last full run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import RfmScore
from storage.tiers.context import ROW, Run
from storage.tiers.dialect import analyze, dialect_name, distinct
from storage.tiers.spec import (
    CONDITION_SQL,
    DIMENSIONS,
    SCORE_FIELDS,
    ChurnFlag,
    Condition,
    Thresholds,
    TierSpec,
)


def ntile_ends(count: int, groups: int = 5) -> list[int | None]:
    """1-based positions of the last row of NTILE(groups) groups 1..groups-1 over ``count``
    sorted rows (None: the group is empty). NTILE gives the first ``count % groups`` groups one
    row more than the others."""
    size, extra = divmod(count, groups)
    return [k * size + min(k, extra) if count >= k else None for k in range(1, groups)]


async def quintile_thresholds(run: Run, count: int) -> Thresholds:
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
    if dialect_name(session) == "postgresql":
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


def by_rule_sql(spec: TierSpec, rule: str, kind: str, params: dict[str, Any]) -> str:
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
    template = "({})" if dialect_name(session) == "sqlite" else "CAST(({}) AS INTEGER)"
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


def _stage_sql(gap: str) -> str:
    """The lifecycle stage of the row, given its at-risk gap (an SQL expression)."""
    recency = f"(:today - {ROW}last_day)"
    return (
        f"CASE WHEN {recency} >= :churned_days THEN 'churned'"
        f" WHEN :today - {ROW}first_day < :new_days THEN 'new'"
        f" WHEN {recency} > {gap} THEN 'at_risk'"
        " ELSE 'active' END"
    )


def _flags_sql(stage: str) -> str:
    """The churn flags of the row (all but "satisfaction falling"), given its stage."""
    return (
        f"CASE WHEN {stage} = 'at_risk' THEN {int(ChurnFlag.OVERDUE)} ELSE 0 END"
        f" + CASE WHEN {ROW}orders_previous >= :min_orders"
        f" AND {ROW}orders_recent * 100 <= {ROW}orders_previous * :keep_percent"
        f" THEN {int(ChurnFlag.FREQUENCY)} ELSE 0 END"
        f" + CASE WHEN {ROW}spend_previous_cents >= :min_spend"
        f" AND {ROW}spend_recent_cents * 100 <= {ROW}spend_previous_cents * :keep_percent"
        f" THEN {int(ChurnFlag.SPEND)} ELSE 0 END"
    )


def _classify_sql(
    run: Run, thresholds: Thresholds, params: dict[str, Any]
) -> tuple[dict[str, str], dict[str, str]]:
    """Per classified column: its new value (for SET) and its change check (for WHERE)."""
    spec = run.spec
    rule = _rule_sql(spec, thresholds, params)
    tier = by_rule_sql(spec, rule, "tier", params)
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
        "stage": _stage_sql(gap),
        "churn_flags": _flags_sql(_stage_sql(gap)),
    }
    # WHERE: each column checked against the *stored* values of the ones before it. If an
    # earlier column changed, its own check is already true; if none did, stored equals new.
    # So the disjunction is exactly "some column changes", and every row pays for each
    # expression once instead of for the whole nest.
    checks = {
        **scores,
        "tier_rule": rule,
        "tier": by_rule_sql(spec, f"{ROW}tier_rule", "tier", params),
        "at_risk_after": _gap_sql(spec, f"{ROW}tier", params),
        "stage": _stage_sql(f"{ROW}at_risk_after"),
        "churn_flags": _flags_sql(f"{ROW}stage"),
    }
    return values, checks


async def score_and_classify(run: Run, thresholds: Thresholds) -> None:
    """R, F and M scores, the tier the rules give, the at-risk gap, the stage and the churn
    flags, in one pass over ``rfm_scores``. Only rows whose values change are written, and
    they are marked with this run for ``changes.apply_to_customers``.

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
    values, checks = _classify_sql(run, thresholds, params)
    if run.source != "rfm_scores":  # computed elsewhere: every row is written once, scored
        await _insert_scored(run, values, params)
        return
    assignments = ", ".join(f"{column} = {value}" for column, value in values.items())
    changed = " OR ".join(
        distinct(run.session, f"{ROW}{column}", f"({value})") for column, value in checks.items()
    )
    await run.execute(
        f"""
        UPDATE rfm_scores SET {assignments}, changed_run = :run_id
        WHERE ({changed}) {run.scope("rfm_scores.customer_id")}
        """,
        **params,
    )


async def _insert_scored(run: Run, values: Mapping[str, str], params: dict[str, Any]) -> None:
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
    await analyze(run.session, "rfm_scores")
