"""The surveys' SQL (besides the reports, in ``surveys.analytics``): definitions, responses,
answers, and the customers a survey may go to. Functions take the session first and only
flush; the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, and_, cast, exists, func, literal, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.customers import _insert_ignoring_conflicts
from storage.models import (
    Customer,
    Order,
    Outbox,
    SurveyAnswer,
    SurveyDefinition,
    SurveyResponse,
    Ticket,
    delivered,
)
from storage.outbox import State

INVITED = "invited"
PARTIAL = "partial"
COMPLETE = "complete"
EXPIRED = "expired"
OPEN_STATUSES = (INVITED, PARTIAL)


@dataclass(frozen=True)
class Candidate:
    """A customer a survey may go to, and what it is about."""

    customer_id: int
    chat_id: int
    language: str
    tier: str
    ticket_id: int | None = None
    ticket_number: str | None = None
    category: str | None = None
    order_id: int | None = None
    order_ref: str | None = None


@dataclass(frozen=True)
class Audience:
    """Who may get a survey now: tiers (empty: all); unless ``exempt``, nobody with a ticket
    open or a survey invitation after ``fatigue_since`` (None: no cap)."""

    tiers: tuple[str, ...] = ()
    exempt: bool = False
    fatigue_since: datetime | None = None


@dataclass(frozen=True)
class ScoreLine:
    """One scored answer, for the customer card."""

    survey_id: str
    dimension: str | None
    kind: str
    score: int
    answered_at: datetime


# --- definitions --------------------------------------------------------------------------------


PLAN_LOCK_KEY = 0x73757276657973  # "surveys"


async def lock_planning(session: AsyncSession) -> None:
    """Serialise survey planning until this transaction ends. Every bot process runs the
    planner; the fatigue cap (one survey per customer per period, across surveys) is a query,
    so two planners at once could each invite the same customer to a different survey.
    (SQLite: one writer at a time anyway.)"""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text(f"SELECT pg_advisory_xact_lock({PLAN_LOCK_KEY})"))


async def definition_id(
    session: AsyncSession, survey_id: str, digest: str, definition: dict[str, Any], now: datetime
) -> int:
    """The row of this content of a survey, stored the first time it is used."""
    await session.execute(
        _insert_ignoring_conflicts(session, SurveyDefinition)
        .values(survey_id=survey_id, digest=digest, definition=definition, created_at=now)
        .on_conflict_do_nothing(
            index_elements=[SurveyDefinition.survey_id, SurveyDefinition.digest]
        )
    )
    result = await session.execute(
        select(SurveyDefinition.id).where(
            SurveyDefinition.survey_id == survey_id, SurveyDefinition.digest == digest
        )
    )
    return int(result.scalar_one())


async def definition(session: AsyncSession, definition_id: int) -> tuple[str, dict[str, Any]]:
    """A stored definition: (digest, JSON)."""
    result = await session.execute(
        select(SurveyDefinition.digest, SurveyDefinition.definition).where(
            SurveyDefinition.id == definition_id
        )
    )
    digest, data = result.one()
    return str(digest), dict(data)


# --- who gets a survey --------------------------------------------------------------------------


def _reachable(audience: Audience) -> list[Any]:
    """Customers a proactive survey can reach and who are not worn out by surveys."""
    conditions: list[Any] = [
        Customer.consent.is_(True),
        Customer.reachable.is_(True),
        Customer.erased_at.is_(None),
        Customer.chat_id.is_not(None),
    ]
    if audience.tiers:
        conditions.append(Customer.tier.in_(audience.tiers))
    if audience.exempt:
        return conditions
    open_ticket = Ticket.__table__.alias("open_ticket")
    conditions.append(~exists().where(open_ticket.c.open_customer_id == Customer.id))
    if audience.fatigue_since is not None:
        recent = SurveyResponse.__table__.alias("recent")
        conditions.append(
            ~exists().where(
                recent.c.customer_id == Customer.id,
                recent.c.invited_at > audience.fatigue_since,
            )
        )
    return conditions


def _not_asked(survey_id: str, column: Any, value: Any) -> Any:
    asked = SurveyResponse.__table__.alias("asked")
    return ~exists().where(asked.c.survey_id == survey_id, asked.c[column] == value)


_CUSTOMER_COLUMNS = (Customer.id, Customer.chat_id, Customer.language, Customer.tier)


def _candidate(row: Any, **about: Any) -> Candidate:
    """A candidate from a row starting with ``_CUSTOMER_COLUMNS``."""
    return Candidate(int(row[0]), int(row[1]), str(row[2]), str(row[3]), **about)


async def closed_tickets(
    session: AsyncSession,
    survey_id: str,
    audience: Audience,
    *,
    closed_from: datetime,
    closed_until: datetime,
    limit: int,
) -> list[Candidate]:
    """Tickets closed in [from, until] whose customer has not had this survey about them."""
    result = await session.execute(
        select(*_CUSTOMER_COLUMNS, Ticket.id, Ticket.number, Ticket.category)
        .join(Customer, Customer.id == Ticket.customer_id)
        .where(
            Ticket.closed_at >= closed_from,
            Ticket.closed_at <= closed_until,
            Ticket.status == "closed",
            _not_asked(survey_id, "ticket_id", Ticket.id),
            *_reachable(audience),
        )
        .order_by(Ticket.closed_at, Ticket.id)
        .limit(limit)
    )
    return [
        _candidate(row, ticket_id=row[4], ticket_number=row[5], category=row[6]) for row in result
    ]


async def delivered_orders(
    session: AsyncSession,
    survey_id: str,
    audience: Audience,
    *,
    delivered_from: datetime,
    delivered_until: datetime,
    limit: int,
) -> list[Candidate]:
    """Orders delivered in [from, until] (``storage.models.delivered``, the rule follow-up
    visits use too: whatever the status, as long as it counts) whose customer has not had this
    survey about them."""
    result = await session.execute(
        select(*_CUSTOMER_COLUMNS, Order.id, Order.external_id)
        .join(Customer, Customer.id == Order.customer_id)
        .where(
            Order.delivered_at >= delivered_from,
            Order.delivered_at <= delivered_until,
            delivered(),
            _not_asked(survey_id, "order_id", Order.id),
            *_reachable(audience),
        )
        .order_by(Order.delivered_at, Order.id)
        .limit(limit)
    )
    return [_candidate(row, order_id=row[4], order_ref=row[5]) for row in result]


async def periodic_customers(
    session: AsyncSession,
    survey_id: str,
    audience: Audience,
    *,
    last_before: datetime,
    limit: int,
) -> list[Candidate]:
    """Customers registered before ``last_before`` who have not had this survey since."""
    asked = SurveyResponse.__table__.alias("asked")
    result = await session.execute(
        select(*_CUSTOMER_COLUMNS)
        .where(
            Customer.created_at <= last_before,
            ~exists().where(
                asked.c.survey_id == survey_id,
                asked.c.customer_id == Customer.id,
                asked.c.invited_at > last_before,
            ),
            *_reachable(audience),
        )
        .order_by(Customer.id)
        .limit(limit)
    )
    return [_candidate(row) for row in result]


# --- responses and answers ----------------------------------------------------------------------


async def insert_response(session: AsyncSession, values: dict[str, Any]) -> int | None:
    """A new response; None when this survey already went to the customer about the subject."""
    result = await session.execute(
        _insert_ignoring_conflicts(session, SurveyResponse)
        .values(**values)
        .on_conflict_do_nothing(
            index_elements=[
                SurveyResponse.survey_id,
                SurveyResponse.customer_id,
                SurveyResponse.subject,
            ]
        )
        .returning(SurveyResponse.id)
    )
    found = result.scalar_one_or_none()
    return None if found is None else int(found)


async def lock_response(session: AsyncSession, response_id: int) -> SurveyResponse | None:
    """The response, locked for this transaction (answers to it are serialised)."""
    result = await session.execute(
        select(SurveyResponse).where(SurveyResponse.id == response_id).with_for_update()
    )
    return result.scalar_one_or_none()


async def answers(session: AsyncSession, response_id: int) -> list[SurveyAnswer]:
    result = await session.execute(
        select(SurveyAnswer)
        .where(SurveyAnswer.response_id == response_id)
        .order_by(SurveyAnswer.position)
    )
    return list(result.scalars())


async def add_answer(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Save one answer; False when the question was answered already."""
    result = await session.execute(
        _insert_ignoring_conflicts(session, SurveyAnswer)
        .values(**values)
        .on_conflict_do_nothing(
            index_elements=[SurveyAnswer.response_id, SurveyAnswer.question_id]
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def invite_key(response_id: int) -> str:
    return f"survey:{response_id}:invite"


def reminder_key(response_id: int) -> str:
    return f"survey:{response_id}:reminder"


async def due_reminders(
    session: AsyncSession, *, answered_before: datetime, now: datetime, limit: int
) -> list[tuple[SurveyResponse, datetime]]:
    """Open, unreminded responses quiet since before ``answered_before`` (their last answer, or
    the invitation's delivery when there is none): (response, quiet since). The caller applies
    each survey's own delay."""
    key = literal("survey:") + cast(SurveyResponse.id, String) + literal(":invite")
    quiet_since = func.coalesce(SurveyResponse.last_answer_at, Outbox.sent_at)
    result = await session.execute(
        select(SurveyResponse, quiet_since)
        .join(Outbox, and_(Outbox.dedupe_key == key, Outbox.state == State.SENT.value))
        .where(
            SurveyResponse.closed_at.is_(None),
            SurveyResponse.expires_at > now,
            SurveyResponse.reminded_at.is_(None),
            SurveyResponse.current_question.is_not(None),
            quiet_since <= answered_before,
        )
        .order_by(SurveyResponse.id)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in result]


async def due_expiry(session: AsyncSession, now: datetime, limit: int) -> list[SurveyResponse]:
    result = await session.execute(
        select(SurveyResponse)
        .where(SurveyResponse.closed_at.is_(None), SurveyResponse.expires_at <= now)
        .order_by(SurveyResponse.expires_at, SurveyResponse.id)
        .limit(limit)
    )
    return list(result.scalars())


async def due_recovery(
    session: AsyncSession, *, quiet_before: datetime, limit: int
) -> list[SurveyResponse]:
    """Low-scored responses without their recovery ticket yet: finished, closed, or left
    unanswered since ``quiet_before``."""
    result = await session.execute(
        select(SurveyResponse)
        .where(
            SurveyResponse.low_score.is_(True),
            SurveyResponse.recovered_at.is_(None),
            or_(
                SurveyResponse.closed_at.is_not(None),
                SurveyResponse.last_answer_at <= quiet_before,
            ),
        )
        .order_by(SurveyResponse.id)
        .limit(limit)
    )
    return list(result.scalars())


async def cancel_unsent(session: AsyncSession, keys: Sequence[str], now: datetime) -> int:
    """Cancel the survey's messages still waiting in the outbox (it closed before they went)."""
    if not keys:
        return 0
    result = await session.execute(
        update(Outbox)
        .where(Outbox.dedupe_key.in_(list(keys)), Outbox.state == State.PENDING.value)
        .values(state=State.CANCELLED.value, last_error="survey closed", updated_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def clear_awaiting(session: AsyncSession, customer_ids: Iterable[int], marker: str) -> None:
    """Forget a pending free-text question of a closed survey."""
    ids = sorted(set(customer_ids))
    if ids:
        await session.execute(
            update(Customer)
            .where(Customer.id.in_(ids), Customer.awaiting == marker)
            .values(awaiting=None)
        )


async def card_scores(session: AsyncSession, customer_id: int, limit: int = 5) -> list[ScoreLine]:
    """The customer's latest scores, newest first."""
    result = await session.execute(
        select(
            SurveyResponse.survey_id,
            SurveyAnswer.dimension,
            SurveyAnswer.kind,
            SurveyAnswer.score,
            SurveyAnswer.answered_at,
        )
        .join(SurveyResponse, SurveyResponse.id == SurveyAnswer.response_id)
        .where(SurveyResponse.customer_id == customer_id, SurveyAnswer.score.is_not(None))
        .order_by(SurveyAnswer.answered_at.desc(), SurveyAnswer.id.desc())
        .limit(limit)
    )
    return [ScoreLine(row[0], row[1], row[2], int(row[3] or 0), row[4]) for row in result]


async def erase_texts(session: AsyncSession, customer_id: int) -> None:
    """``/forget``: free-text answers are personal data; scores stay (anonymous statistics)."""
    mine = select(SurveyResponse.id).where(SurveyResponse.customer_id == customer_id)
    await session.execute(
        update(SurveyAnswer)
        .where(
            SurveyAnswer.response_id.in_(mine.scalar_subquery()), SurveyAnswer.text.is_not(None)
        )
        .values(text=None)
    )
