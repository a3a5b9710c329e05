"""Benchmark: the satisfaction-survey analytics over 200,000 customers (SQLite, PostgreSQL).

    python bench/survey_analytics.py                          # both databases, full size
    python bench/survey_analytics.py --database sqlite --customers 20000   # a quicker look

The customers are bench/plan.py's (5 % VIP, 15 % important, 80 % normal), registered a year
ago. Over the six months before 2026-11-23 09:00 UTC they got the three shipped surveys
(``bot/example_config/surveys``): CSAT after tickets (0-4 tickets each), the delivery survey
(three 1-5 dimensions) after orders (0-6 each), and the NPS (0-10) in each of the two 90-day
periods (60 % of the customers each time). VIPs answer more often than normal customers; 12 % of
the answered responses stop half-way (partial); unanswered ones expired or are still open; each
customer scores around a mood of their own, and one in eight has grown unhappier over the last
two months (the churn link's "falling"). Rows are built from the survey definitions as
``surveys.flow`` stores them, loaded in bulk (Core executemany), then the database is analysed.

Timed through carebot's own code, median of 3 runs, each in a fresh session:

1. ``surveys.analytics.satisfaction_by`` over the last 90 days by tier, by tier and dimension,
   and over the six months by month (the trend); ``response_rates`` by tier;
2. ``satisfaction_drops`` over all customers (the churn link, default 90-day recent window);
3. the NPS planner's look-up (``SurveyPlanner.candidates``: customers not asked for 90 days,
   none in the 14-day fatigue period, no ticket open): at most ``max_invitations_per_run``,
   and every candidate (the cost of a look-up that finds few: it visits every customer).

The machine is shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sized
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bench._databases import scratch_database
from bench.plan import CUSTOMER_COLUMNS, customer_rows
from bot.kernel.config import Config, load_config
from bot.kernel.survey_config import SurveyDefinition
from bot.settings import EXAMPLE_CONFIG_DIR
from storage.engine import create_engine, create_sessionmaker
from storage.models import Customer, SurveyAnswer, SurveyResponse
from surveys import analytics
from surveys.planner import SurveyPlanner
from surveys.queries import COMPLETE, EXPIRED, INVITED, PARTIAL, definition_id

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
HISTORY = timedelta(days=183)
REPORT_WINDOW = timedelta(days=90)
REGISTERED = NOW - timedelta(days=365)
BATCH = 20_000
RUNS = 3
TIER_COLUMN = CUSTOMER_COLUMNS.index("tier")
ANSWER_RATE = {"vip": 0.65, "important": 0.55, "normal": 0.42}
TICKETS_PER_CUSTOMER = ([0, 1, 2, 3, 4], [55, 25, 12, 5, 3])
ORDERS_PER_CUSTOMER = ([0, 1, 2, 3, 4, 6], [30, 30, 18, 10, 7, 5])
NPS_SHARE = 0.6
NPS_EVERY = timedelta(days=90)
PARTIAL_SHARE = 0.12
FALLING_SHARE = 0.125


class Seeder:
    """The survey rows of one customer after another, as ``surveys.flow`` would have stored
    them (deterministic for a seed, so both databases get the same data)."""

    def __init__(self, rules: Config, definition_ids: dict[str, int], seed: int) -> None:
        self.rules = rules.surveys
        self.definition_ids = definition_ids
        self.categories = [category.code for category in rules.tickets.categories]
        self.rng = random.Random(seed)
        self.response_id = 0
        self.subject_id = 0

    def rows(
        self, customer_id: int, tier: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        rng = self.rng
        mood = min(4.8, max(1.5, rng.gauss(3.9, 0.6)))
        drop = rng.uniform(1.0, 2.0) if rng.random() < FALLING_SHARE else 0.0
        invitations: list[tuple[str, datetime]] = []
        for survey_id, (counts, weights) in (
            ("csat", TICKETS_PER_CUSTOMER),
            ("delivery", ORDERS_PER_CUSTOMER),
        ):
            for _ in range(rng.choices(counts, weights)[0]):
                invitations.append((survey_id, NOW - HISTORY * rng.random()))
        nps_at = NOW - HISTORY + NPS_EVERY * rng.random()  # every_days = 90 apart
        for period in range(2):
            if rng.random() < NPS_SHARE:
                invitations.append(("nps", nps_at + (NPS_EVERY + timedelta(days=1)) * period))
        responses: list[dict[str, Any]] = []
        answers: list[dict[str, Any]] = []
        for survey_id, invited_at in sorted(invitations, key=lambda item: item[1]):
            falling = drop if invited_at > NOW - timedelta(days=60) else 0.0
            response, given = self._response(survey_id, customer_id, tier, invited_at)
            responses.append(response)
            answers.extend(self._answers(response, given, mood - falling))
        return responses, answers

    def _survey(self, survey_id: str) -> SurveyDefinition:
        survey = self.rules.survey(survey_id)
        assert survey is not None, f"the shipped surveys have no {survey_id!r}"
        return survey

    def _response(
        self, survey_id: str, customer_id: int, tier: str, invited_at: datetime
    ) -> tuple[dict[str, Any], int]:
        """The response row (its answers filled in by ``_answers``) and how many questions
        the customer went through: 0 (no answer), all, or a part."""
        survey = self._survey(survey_id)
        self.response_id += 1
        self.subject_id += 1
        subject = {
            "csat": f"ticket:T{self.subject_id:08d}",
            "delivery": f"order:O{self.subject_id:09d}",
            "nps": f"period:{invited_at.date().isoformat()}",
        }[survey_id]
        questions = len(survey.questions)
        given = 0
        if self.rng.random() < ANSWER_RATE[tier]:
            partial = self.rng.random() < PARTIAL_SHARE
            given = self.rng.randint(1, questions - 1) if partial else questions
        expires_at = invited_at + timedelta(hours=survey.expire_after_hours)
        response = {
            "id": self.response_id,
            "definition_id": self.definition_ids[survey_id],
            "survey_id": survey_id,
            "customer_id": customer_id,
            "subject": subject,
            "tier": tier,
            "category": self.rng.choice(self.categories) if survey_id == "csat" else None,
            "status": COMPLETE if given == questions else PARTIAL if given else INVITED,
            "current_question": None if given == questions else survey.questions[given].id,
            "low_score": False,
            "invited_at": invited_at,
            "expires_at": expires_at,
            "last_answer_at": None,
            "completed_at": None,
            "closed_at": None,
            "recovered_at": None,
            "updated_at": invited_at,
        }
        if given < questions and expires_at <= NOW:
            response["closed_at"] = response["updated_at"] = expires_at
            if not given:
                response["status"] = EXPIRED
        return response, given

    def _answers(self, response: dict[str, Any], given: int, mood: float) -> list[dict[str, Any]]:
        """The first ``given`` answers (optional and conditional questions as the flow asks
        them); fills in the response's answer times and low-score flag."""
        rng = self.rng
        survey = self._survey(response["survey_id"])
        answered_at = response["invited_at"] + timedelta(hours=rng.expovariate(1 / 3))
        scores: dict[str, int] = {}
        rows: list[dict[str, Any]] = []
        for position, question in enumerate(survey.questions[:given]):
            if question.ask_if is not None and not question.ask_if.holds(
                scores.get(question.ask_if.question)
            ):
                continue
            values: dict[str, Any] = {}
            if question.type == "scale":
                values["score"] = min(5, max(1, round(rng.gauss(mood, 0.8))))
            elif question.type == "nps":
                values["score"] = min(10, max(0, round((mood - 1) * 2.5 + rng.gauss(0, 1.5))))
            elif rng.random() < 0.5:  # an optional choice or text: half of them skipped
                if question.type == "choice":
                    values["choice"] = rng.choice(question.options).id
                else:
                    values["text"] = "It took too long."
            score = values.get("score")
            if score is not None:
                scores[question.id] = score
                if score <= self.rules.threshold(survey, question.type):
                    response["low_score"] = True
            rows.append(
                {
                    "response_id": response["id"],
                    "question_id": question.id,
                    "position": position,
                    "kind": question.type,
                    "dimension": question.dimension,
                    "score": score,
                    "choice": values.get("choice"),
                    "text": values.get("text"),
                    "answered_at": answered_at,
                }
            )
            answered_at += timedelta(seconds=rng.randint(5, 90))
        if rows:
            last = rows[-1]["answered_at"]
            response["last_answer_at"] = last
            if response["status"] == COMPLETE:
                response["completed_at"] = response["closed_at"] = response["updated_at"] = last
            elif response["closed_at"] is None:
                response["updated_at"] = last
        if response["low_score"] and response["closed_at"] is not None:
            response["recovered_at"] = response["closed_at"]  # its recovery ticket was opened
        return rows


async def _insert(engine: AsyncEngine, table: Any, rows: list[dict[str, Any]]) -> None:
    if rows:
        async with engine.begin() as connection:
            await connection.execute(table.insert(), rows)


async def load(engine: AsyncEngine, rules: Config, customers: int, seed: int) -> dict[str, int]:
    """Seed customers and six months of survey responses; returns row counts."""
    planner = SurveyPlanner(rules.surveys)
    sessionmaker = create_sessionmaker(engine)
    definition_ids: dict[str, int] = {}
    async with sessionmaker.begin() as session:
        for survey in rules.surveys.surveys:
            stored = planner.snapshot(survey)
            definition_ids[survey.id] = await definition_id(
                session, survey.id, stored.digest, stored.model_dump(mode="json"), REGISTERED
            )
    tiers: list[str] = []
    rows: Iterator[tuple[Any, ...]] = customer_rows(customers, seed)
    while batch := list(itertools.islice(rows, BATCH)):
        tiers.extend(row[TIER_COLUMN] for row in batch)
        await _insert(
            engine,
            Customer.__table__,
            [
                dict(zip(CUSTOMER_COLUMNS, (*row, REGISTERED, REGISTERED), strict=True))
                for row in batch
            ],
        )
    seeder = Seeder(rules, definition_ids, seed)
    counts = {"customers": customers, "responses": 0, "answers": 0}
    responses: list[dict[str, Any]] = []
    answers: list[dict[str, Any]] = []
    for customer_id, tier in enumerate(tiers, start=1):
        new_responses, new_answers = seeder.rows(customer_id, tier)
        responses.extend(new_responses)
        answers.extend(new_answers)
        if len(answers) >= BATCH or customer_id == customers:
            await _insert(engine, SurveyResponse.__table__, responses)
            await _insert(engine, SurveyAnswer.__table__, answers)
            counts["responses"] += len(responses)
            counts["answers"] += len(answers)
            responses, answers = [], []
    if engine.dialect.name == "postgresql":
        async with engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text("VACUUM ANALYZE"))
    else:
        async with engine.begin() as connection:
            await connection.execute(text("ANALYZE"))
    return counts


def queries(rules: Config) -> list[tuple[str, Callable[[AsyncSession], Awaitable[Sized]]]]:
    since = NOW - REPORT_WINDOW
    planner = SurveyPlanner(rules.surveys)
    nps = rules.surveys.survey("nps")
    assert nps is not None
    limit = rules.surveys.settings.planner.max_invitations_per_run

    def report(
        *group_by: str, start: datetime = since
    ) -> Callable[[AsyncSession], Awaitable[Sized]]:
        return lambda session: analytics.satisfaction_by(
            session, since=start, until=NOW, group_by=group_by
        )

    return [
        ("report by tier, 90 days", report("tier")),
        ("report by tier + dimension, 90 days", report("tier", "dimension")),
        ("report by month, 6 months", report("month", start=NOW - HISTORY)),
        (
            "response rates by tier, 90 days",
            lambda session: analytics.response_rates(
                session, since=since, until=NOW, group_by=["tier"]
            ),
        ),
        (
            "churn link (satisfaction_drops), all customers",
            lambda session: analytics.satisfaction_drops(session, now=NOW),
        ),
        (
            f"NPS planner look-up (limit {limit})",
            lambda session: planner.candidates(session, nps, NOW, limit),
        ),
        (  # what the hourly look-up costs when few are due: it visits every customer
            "NPS planner look-up, every candidate (no limit)",
            lambda session: planner.candidates(session, nps, NOW, sys.maxsize),
        ),
    ]


async def timed(engine: AsyncEngine, rules: Config) -> list[tuple[str, float, int]]:
    """(query, median ms, rows returned) per query."""
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session:  # connect outside the timing
        await session.execute(text("SELECT 1"))
    figures = []
    for name, query in queries(rules):
        durations = []
        for _ in range(RUNS):
            async with sessionmaker() as session:
                started = time.perf_counter()
                found = await query(session)
                durations.append(time.perf_counter() - started)
        figures.append((name, statistics.median(durations) * 1000, len(found)))
    return figures


def _load_average() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


async def bench(kind: str, customers: int, seed: int) -> None:
    rules = load_config(EXAMPLE_CONFIG_DIR)
    with tempfile.TemporaryDirectory(prefix="carebot-bench-surveys-") as directory:
        async with scratch_database(kind, Path(directory), "surveys") as url:
            engine = create_engine(url)
            try:
                started = time.perf_counter()
                counts = await load(engine, rules, customers, seed)
                print(
                    f"{kind}: {counts['customers']:,} customers, {counts['responses']:,} "
                    f"responses, {counts['answers']:,} answers, loaded in "
                    f"{time.perf_counter() - started:.0f} s",
                    flush=True,
                )
                before = _load_average()
                figures = await timed(engine, rules)
            finally:
                await engine.dispose()
    print(f"  {'query':<48} {'median ms':>10} {'rows':>7}")
    for name, milliseconds, rows in figures:
        print(f"  {name:<48} {milliseconds:10.1f} {rows:>7,}")
    print(f"  load average (1/5/15 min) before: {before}, after: {_load_average()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    print(f"survey analytics, {args.customers:,} customers, {RUNS} runs per query (median)")
    for kind in ("sqlite", "postgresql"):
        if args.database in (kind, "both"):
            asyncio.run(bench(kind, args.customers, args.seed))


if __name__ == "__main__":
    main()
