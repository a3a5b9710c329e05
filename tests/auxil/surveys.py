"""Survey answers for tests that read them (reports, the dashboard, churn signals), written
through the surveys' own storage functions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from surveys import queries as survey_queries

# (question id, which is also its dimension; "scale" or "nps"; the score)
Score = tuple[str, str, int]


async def answered_survey(
    session: AsyncSession,
    *,
    customer_id: int,
    survey: str,
    subject: str,
    tier: str,
    at: datetime,
    scores: Sequence[Score],
) -> int:
    """A completed response of ``survey`` about ``subject``, answered at ``at``."""
    definition = await survey_queries.definition_id(session, survey, "d1", {}, at)
    response = await survey_queries.insert_response(
        session,
        {
            "definition_id": definition,
            "survey_id": survey,
            "customer_id": customer_id,
            "subject": subject,
            "tier": tier,
            "status": survey_queries.COMPLETE,
            "low_score": False,
            "invited_at": at,
            "expires_at": at + timedelta(days=3),
            "last_answer_at": at,
            "updated_at": at,
        },
    )
    assert response is not None
    for position, (question, kind, score) in enumerate(scores):
        await survey_queries.add_answer(
            session,
            {
                "response_id": response,
                "question_id": question,
                "position": position,
                "kind": kind,
                "dimension": question,
                "score": score,
                "answered_at": at,
            },
        )
    return response
