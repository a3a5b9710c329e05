"""Queries on knowledge-base questions, feedback and hand-off requests. Session first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import Table, case, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.customers import _insert_ignoring_conflicts
from storage.models import KbHandoff, KbQuestion, KbReload

# KbQuestion.outcome
ANSWERED = "answered"
SUGGESTED = "suggested"
PICKED = "picked"
UNANSWERED = "unanswered"
# KbQuestion.feedback
HELPFUL = "helpful"
UNHELPFUL = "unhelpful"

QUESTION_LENGTH = 500


# Built once: every free-text message records its question.
_QUESTIONS = cast(Table, KbQuestion.__table__)
_RECORD_QUESTION = insert(_QUESTIONS).returning(_QUESTIONS.c.id)


async def record_question(
    session: AsyncSession,
    *,
    customer_id: int | None,
    language: str,
    question: str,
    entry_id: str | None,
    score: float,
    outcome: str,
    asked_at: datetime,
    typed: str | None = None,
) -> int:
    """Store a question (normalised, and as ``typed``) and how it was matched; returns its id
    (the buttons under the answer carry it)."""
    result = await session.execute(
        _RECORD_QUESTION,
        {
            "customer_id": customer_id,
            "language": language,
            "question": question[:QUESTION_LENGTH],
            "typed": typed[:QUESTION_LENGTH] if typed is not None else None,
            "entry_id": entry_id,
            "score": score,
            "outcome": outcome,
            "asked_at": asked_at,
        },
    )
    return int(result.scalar_one())


async def get_question_for_update(session: AsyncSession, question_id: int) -> KbQuestion | None:
    result = await session.execute(
        select(KbQuestion).where(KbQuestion.id == question_id).with_for_update()
    )
    return result.scalar_one_or_none()


async def record_handoff(
    session: AsyncSession,
    *,
    customer_id: int,
    question: str,
    entry_id: str | None,
    kind: str,
    requested_at: datetime,
) -> KbHandoff:
    row = KbHandoff(
        customer_id=customer_id,
        question=question[:QUESTION_LENGTH],
        entry_id=entry_id,
        kind=kind,
        requested_at=requested_at,
    )
    session.add(row)
    await session.flush()
    return row


async def handoffs_of(session: AsyncSession, customer_id: int) -> list[KbHandoff]:
    result = await session.execute(
        select(KbHandoff).where(KbHandoff.customer_id == customer_id).order_by(KbHandoff.id)
    )
    return list(result.scalars())


@dataclass(frozen=True)
class UnansweredQuestion:
    question: str
    count: int
    last_asked: datetime


@dataclass(frozen=True)
class EntryHelpfulness:
    entry_id: str
    helpful: int
    unhelpful: int
    shown: int

    @property
    def helpful_share(self) -> float | None:
        votes = self.helpful + self.unhelpful
        return self.helpful / votes if votes else None


async def top_unanswered(
    session: AsyncSession, since: datetime, limit: int = 20
) -> list[UnansweredQuestion]:
    """Questions the knowledge base could not answer with confidence (and no suggestion was
    picked), most frequent first: what the operator should add."""
    count = func.count().label("count")
    result = await session.execute(
        select(KbQuestion.question, count, func.max(KbQuestion.asked_at))
        .where(KbQuestion.outcome.in_((UNANSWERED, SUGGESTED)))
        .where(KbQuestion.asked_at >= since)
        .group_by(KbQuestion.question)
        .order_by(count.desc(), KbQuestion.question)
        .limit(limit)
    )
    return [
        UnansweredQuestion(question, int(n), _aware(last)) for question, n, last in result.all()
    ]


async def worst_entries(
    session: AsyncSession, since: datetime, limit: int = 20
) -> list[EntryHelpfulness]:
    """Entries by helpfulness, least helpful first (most 👎, then fewest 👍)."""
    helpful = func.sum(case((KbQuestion.feedback == HELPFUL, 1), else_=0)).label("helpful")
    unhelpful = func.sum(case((KbQuestion.feedback == UNHELPFUL, 1), else_=0)).label("unhelpful")
    shown = func.count().label("shown")
    result = await session.execute(
        select(KbQuestion.entry_id, helpful, unhelpful, shown)
        .where(KbQuestion.outcome.in_((ANSWERED, PICKED)))
        .where(KbQuestion.entry_id.is_not(None))
        .where(KbQuestion.asked_at >= since)
        .group_by(KbQuestion.entry_id)
        .having(func.sum(case((KbQuestion.feedback.is_not(None), 1), else_=0)) > 0)
        .order_by((unhelpful - helpful).desc(), unhelpful.desc(), KbQuestion.entry_id)
        .limit(limit)
    )
    return [
        EntryHelpfulness(str(entry_id), int(up or 0), int(down or 0), int(n))
        for entry_id, up, down, n in result.all()
    ]


def _aware(moment: datetime) -> datetime:
    # Aggregates bypass the column type: SQLite returns naive UTC (or a string), PostgreSQL aware.
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


# --- reloads: ``carebot kb reload`` raises a version every bot process follows ---

KB_RELOAD_ROW = 1
_RELOAD_VERSION = select(KbReload.version).where(KbReload.id == KB_RELOAD_ROW)


async def reload_version(session: AsyncSession) -> int | None:
    """How many reloads were asked for so far (None: never)."""
    return (await session.execute(_RELOAD_VERSION)).scalar_one_or_none()


async def request_reload(session: AsyncSession, now: datetime) -> int:
    """Ask every running bot to load the knowledge-base files again; the new version."""
    raised = await session.execute(
        update(KbReload)
        .where(KbReload.id == KB_RELOAD_ROW)
        .values(version=KbReload.version + 1, requested_at=now)
    )
    if not raised.rowcount:  # type: ignore[attr-defined]
        await session.execute(
            _insert_ignoring_conflicts(session, KbReload)
            .values(id=KB_RELOAD_ROW, version=0, requested_at=now)
            .on_conflict_do_nothing(index_elements=[KbReload.id])
        )
        return await request_reload(session, now)
    return int((await session.execute(_RELOAD_VERSION)).scalar_one())
