"""Survey analytics on a hand-made data set, figures worked out by hand (SQLite and
PostgreSQL): CSAT %, mean, NPS and response rate by tier, dimension, month and tier with
dimension; the churn link; ``carebot report surveys`` and its CSV."""

from __future__ import annotations

import asyncio
import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from bot import cli_tools
from bot.cli import app as cli_app
from bot.kernel.clock import ManualClock
from storage.models import SurveyAnswer, SurveyDefinition, SurveyResponse
from surveys.analytics import response_rates, satisfaction_by, satisfaction_drops
from tests.auxil.outbox import add_customer

SINCE = datetime(2026, 10, 1, tzinfo=UTC)
UNTIL = datetime(2026, 12, 1, tzinfo=UTC)

# (key, survey, customer, tier, category, invited day, answers as (question, dimension, kind,
# score or choice)); customers: A vip, B and C normal.
DATA: list[tuple[str, str, str, str, str | None, str, list[tuple[str, str | None, str, Any]]]] = [
    (
        "R1",
        "csat",
        "A",
        "vip",
        "delivery",
        "2026-11-02",
        [("score", "service_attitude", "scale", 5)],
    ),
    (
        "R2",
        "csat",
        "B",
        "normal",
        "quality",
        "2026-11-03",
        [
            ("score", "service_attitude", "scale", 2),
            ("what_went_wrong", None, "text", "late"),
        ],
    ),
    (
        "R3",
        "delivery",
        "A",
        "vip",
        None,
        "2026-11-05",
        [
            ("delivery_speed", "delivery_speed", "scale", 4),
            ("service_attitude", "service_attitude", "scale", 3),
            ("product_quality", "product_quality", "scale", 5),
        ],
    ),
    (
        "R4",
        "delivery",
        "B",
        "normal",
        None,
        "2026-11-06",
        [  # left halfway
            ("delivery_speed", "delivery_speed", "scale", 1),
            ("service_attitude", "service_attitude", "scale", 4),
        ],
    ),
    ("R5", "delivery", "C", "normal", None, "2026-11-07", []),  # never answered
    (
        "R6",
        "nps",
        "A",
        "vip",
        None,
        "2026-11-10",
        [
            ("recommend", "recommend", "nps", 10),
            ("reason", None, "choice", "price"),
        ],
    ),
    ("R7", "nps", "C", "normal", None, "2026-11-11", [("recommend", "recommend", "nps", 6)]),
    ("R8", "nps", "C", "normal", None, "2026-11-12", [("recommend", "recommend", "nps", 8)]),
    (
        "R9",
        "csat",
        "B",
        "normal",
        "delivery",
        "2026-10-20",
        [("score", "service_attitude", "scale", 4)],
    ),
    (
        "R10",
        "delivery",
        "A",
        "vip",
        None,
        "2026-10-15",
        [
            ("delivery_speed", "delivery_speed", "scale", 3),
            ("product_quality", "product_quality", "scale", 3),
        ],
    ),
    # Outside the period: counted nowhere.
    (
        "R11",
        "csat",
        "A",
        "vip",
        "delivery",
        "2026-09-30",
        [("score", "service_attitude", "scale", 1)],
    ),
]


async def load(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """The data set; returns the customers' ids by letter."""
    async with sessionmaker.begin() as session:
        customers = {
            letter: await add_customer(session, 7000 + index, tier=tier)
            for index, (letter, tier) in enumerate(
                (("A", "vip"), ("B", "normal"), ("C", "normal"))
            )
        }
        result = await session.execute(
            insert(SurveyDefinition)
            .values(survey_id="any", digest="x", definition={}, created_at=SINCE)
            .returning(SurveyDefinition.id)
        )
        definition = int(result.scalar_one())
        for key, survey, letter, tier, category, day, answers in DATA:
            invited = datetime.fromisoformat(day).replace(hour=10, tzinfo=UTC)
            answered = invited + timedelta(hours=1)
            result = await session.execute(
                insert(SurveyResponse)
                .values(
                    definition_id=definition,
                    survey_id=survey,
                    customer_id=customers[letter],
                    subject=key,
                    tier=tier,
                    category=category,
                    status="complete" if answers else "invited",
                    current_question=None,
                    low_score=False,
                    invited_at=invited,
                    expires_at=invited + timedelta(days=3),
                    last_answer_at=answered if answers else None,
                    updated_at=invited,
                )
                .returning(SurveyResponse.id)
            )
            response = int(result.scalar_one())
            for position, (question, dimension, kind, value) in enumerate(answers):
                await session.execute(
                    insert(SurveyAnswer).values(
                        response_id=response,
                        question_id=question,
                        position=position,
                        kind=kind,
                        dimension=dimension,
                        score=value if kind in ("scale", "nps") else None,
                        choice=value if kind == "choice" else None,
                        text=value if kind == "text" else None,
                        answered_at=answered,
                    )
                )
    return customers


def figures(rows: list[Any]) -> dict[tuple[str, ...], tuple[Any, ...]]:
    return {
        row.group: (
            row.scale_answers,
            None if row.csat_percent is None else round(row.csat_percent, 1),
            None if row.mean_score is None else round(row.mean_score, 2),
            row.nps_answers,
            None if row.nps is None else round(row.nps, 1),
        )
        for row in rows
    }


async def test_figures_by_tier_dimension_and_month(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await load(sessionmaker)
    async with sessionmaker() as session:
        by_tier = await satisfaction_by(session, since=SINCE, until=UNTIL, group_by=["tier"])
        by_dimension = await satisfaction_by(
            session, since=SINCE, until=UNTIL, group_by=["dimension"]
        )
        by_month = await satisfaction_by(session, since=SINCE, until=UNTIL, group_by=["month"])
        both = await satisfaction_by(
            session, since=SINCE, until=UNTIL, group_by=["tier", "dimension"]
        )
        overall = await satisfaction_by(session, since=SINCE, until=UNTIL)
        rates = await response_rates(session, since=SINCE, until=UNTIL, group_by=["tier"])
        by_category = await satisfaction_by(
            session, since=SINCE, until=UNTIL, group_by=["category"]
        )
    # vip: 1-5 scores 5 (R1), 4 3 5 (R3), 3 3 (R10): 6 answers, 3 of them 4-5 -> 50.0 %,
    # mean 23/6 = 3.83; NPS: one 10 -> 100.
    # normal: 2 (R2), 1 4 (R4), 4 (R9): 4 answers, 2 of them 4-5 -> 50.0 %, mean 11/4 = 2.75;
    # NPS: 6 (detractor) and 8 (passive) -> (0 - 1) / 2 = -50.
    assert figures(by_tier) == {
        ("normal",): (4, 50.0, 2.75, 2, -50.0),
        ("vip",): (6, 50.0, 3.83, 1, 100.0),
    }
    # delivery_speed 4 1 3: 1 of 3 -> 33.3 %, 8/3 = 2.67; product_quality 5 3: 50 %, 4.0;
    # service_attitude 5 2 3 4 4: 3 of 5 -> 60 %, 18/5 = 3.6; recommend 10 6 8: NPS 0.
    assert figures(by_dimension) == {
        ("delivery_speed",): (3, 33.3, 2.67, 0, None),
        ("product_quality",): (2, 50.0, 4.0, 0, None),
        ("recommend",): (0, None, None, 3, 0.0),
        ("service_attitude",): (5, 60.0, 3.6, 0, None),
    }
    # October: 4 (R9), 3 3 (R10) -> 1 of 3, 10/3; November: 5 2 4 3 5 1 4 -> 4 of 7, 24/7.
    assert figures(by_month) == {
        ("2026-10",): (3, 33.3, 3.33, 0, None),
        ("2026-11",): (7, 57.1, 3.43, 3, 0.0),
    }
    assert figures(both) == {
        ("normal", "delivery_speed"): (1, 0.0, 1.0, 0, None),
        ("normal", "recommend"): (0, None, None, 2, -50.0),
        ("normal", "service_attitude"): (3, 66.7, 3.33, 0, None),
        ("vip", "delivery_speed"): (2, 50.0, 3.5, 0, None),
        ("vip", "product_quality"): (2, 50.0, 4.0, 0, None),
        ("vip", "recommend"): (0, None, None, 1, 100.0),
        ("vip", "service_attitude"): (2, 50.0, 4.0, 0, None),
    }
    assert figures(overall) == {(): (10, 50.0, 3.4, 3, 0.0)}
    # CSAT answers by ticket category; the delivery and NPS surveys have none.
    assert figures(by_category) == {
        ("delivery",): (2, 100.0, 4.5, 0, None),
        ("quality",): (1, 0.0, 2.0, 0, None),
        ("—",): (7, 42.9, 3.29, 3, 0.0),
    }
    # Sent: vip R1 R3 R6 R10, all answered; normal R2 R4 R5 R7 R8 R9, all but R5.
    assert [(r.group, r.sent, r.responded, r.completed) for r in rates] == [
        (("normal",), 6, 5, 5),
        (("vip",), 4, 4, 4),
    ]
    assert [round(r.response_rate or 0, 1) for r in rates] == [83.3, 100.0]


async def test_weeks_start_on_monday(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    await load(sessionmaker)
    async with sessionmaker() as session:
        rows = await satisfaction_by(session, since=SINCE, until=UNTIL, group_by=["week"])
    # 2026-11-02 is a Monday: R1 (Mon 11-02), R2 (Tue 11-03), R3 (Thu 11-05) share a week.
    # R10 (Thu 10-15) | R9 (Tue 10-20) | R1-R5 (Mon 11-02 to Sat 11-07) | R6-R8 (NPS only).
    assert [(row.group, row.scale_answers, row.nps_answers) for row in rows] == [
        (("2026-10-12",), 2, 0),
        (("2026-10-19",), 1, 0),
        (("2026-11-02",), 7, 0),
        (("2026-11-09",), 0, 3),
    ]


async def test_churn_link_compares_recent_scores_with_the_customers_own(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    customers = await load(sessionmaker)
    async with sessionmaker() as session:
        drops = await satisfaction_drops(session, now=UNTIL, recent_days=30, min_earlier_answers=1)
        only_b = await satisfaction_drops(
            session,
            now=UNTIL,
            recent_days=30,
            min_earlier_answers=1,
            customer_ids=[customers["B"]],
        )
        strict = await satisfaction_drops(session, now=UNTIL, recent_days=30)
    a, b = customers["A"], customers["B"]
    # On 0-100: a 1-5 score s is (s-1)*25, a 0-10 score s is s*10.
    # A before November: 3 3 (R10) and 1 (R11) -> 50 50 0, mean 33.3; in November 5 4 3 5 and
    # NPS 10 -> 100 75 50 100 100, mean 85: not falling.
    # B before: 4 (R9) -> 75; in November 2 1 4 -> 25 0 75, mean 33.3: falling.
    # C has no earlier scores: left out.
    assert set(drops) == {a, b}
    assert (round(drops[a].earlier_mean, 1), drops[a].earlier_answers) == (33.3, 3)
    assert (drops[a].recent_mean, drops[a].recent_answers, drops[a].falling) == (85.0, 5, False)
    assert (drops[b].earlier_mean, drops[b].earlier_answers) == (75.0, 1)
    assert (round(drops[b].recent_mean, 1), drops[b].recent_answers) == (33.3, 3)
    assert drops[b].falling
    assert set(only_b) == {b}
    assert set(strict) == {a}  # B has one earlier score, fewer than the default 2


async def test_the_command_prints_the_table_and_writes_csv(
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    await load(sessionmaker)
    monkeypatch.setenv("CAREBOT_DATABASE_URL", database_url)
    monkeypatch.setattr(cli_tools, "clock", ManualClock(UNTIL))
    target = tmp_path / "tiers.csv"
    result = await asyncio.to_thread(
        CliRunner().invoke,
        cli_app,
        ["report", "surveys", "--since", "2026-10-01", "--group-by", "tier", "--csv", str(target)],
    )
    assert result.exit_code == 0, result.output
    vip = next(line for line in result.output.splitlines() if "│ vip" in line)
    assert [cell.strip() for cell in vip.split("│")[1:-1]] == [
        "vip",
        "6",
        "50.0",
        "3.83",
        "1",
        "100.0",
        "4",
        "4",
        "100.0",
    ]
    with target.open(encoding="utf-8") as handle:
        assert list(csv.reader(handle)) == [
            [
                "tier",
                "scores",
                "CSAT %",
                "mean",
                "NPS n",
                "NPS",
                "sent",
                "answered",
                "resp. %",
            ],
            ["normal", "4", "50.0", "2.75", "2", "-50.0", "6", "5", "83.3"],
            ["vip", "6", "50.0", "3.83", "1", "100.0", "4", "4", "100.0"],
        ]
    by_dimension = await asyncio.to_thread(
        CliRunner().invoke,
        cli_app,
        ["report", "surveys", "--since", "2026-10-01", "--group-by", "dimension"],
    )
    assert by_dimension.exit_code == 0, by_dimension.output
    attitude = next(line for line in by_dimension.output.splitlines() if "service_att" in line)
    assert [cell.strip() for cell in attitude.split("│")[1:6]] == [
        "service_attitude",
        "5",
        "60.0",
        "3.60",
        "0",
    ]
    bad = await asyncio.to_thread(
        CliRunner().invoke, cli_app, ["report", "surveys", "--group-by", "colour"]
    )
    assert bad.exit_code == 2 and "--group-by: expected some of tier" in bad.output
