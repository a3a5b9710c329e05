"""The survey job (README: Satisfaction surveys): ``surveys.plan`` runs ``SurveyPlanner.run`` every
``planner.check_seconds`` (``surveys/settings.toml``). Idempotent: responses are unique per
survey, customer and subject, reminders and expiry are recorded on the response."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.kernel.survey_config import SurveyConfig
from scheduler.wiring import PeriodicJob
from surveys.desk import Desk
from surveys.planner import PlanReport, SurveyPlanner

logger = logging.getLogger(__name__)


def survey_jobs(
    sessionmaker: async_sessionmaker[AsyncSession], rules: SurveyConfig, desk: Desk | None
) -> list[PeriodicJob]:
    """The periodic survey job (none when no survey is configured)."""
    if not rules.surveys:
        return []
    planner = SurveyPlanner(rules)

    async def plan(now: datetime) -> PlanReport:
        async with sessionmaker.begin() as session:
            report = await planner.run(session, desk, now)
        if report.invited or report.reminded or report.expired or report.recovered:
            logger.info(
                "surveys: %d invited, %d reminded, %d closed, %d recovery tickets",
                len(report.invited),
                report.reminded,
                report.expired,
                report.recovered,
            )
        return report

    every = timedelta(seconds=rules.settings.planner.check_seconds)
    return [PeriodicJob("surveys.plan", every, plan)]
