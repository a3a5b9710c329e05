"""``carebot report staff`` and the dashboard's staff page: per staff member, the tickets opened
in a period that they handled, their first-reply and resolution times in business time, the SLA
deadlines missed and the CSAT of those tickets' surveys.

A ticket is handled by its assignee, or, never assigned, by whoever replied first; a ticket
nobody answered or claimed counts under nobody (``user_id`` None). Business time is the desk's
(``bot.kernel.hours``), passed in as ``between`` so this module stays below the kernel, or the
ticket's group's own (``group_between``, for groups with ``[groups.<name>.hours]``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import StaffMember, SurveyAnswer, SurveyResponse, Ticket, TicketMessage
from storage.tickets.messages import OUT
from storage.tickets.statuses import CLOSED

BusinessTime = Callable[[datetime, datetime], timedelta]


def median(values: list[float]) -> float | None:
    """The median (None without values)."""
    return statistics.median(values) if values else None


def nearest_rank(values: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile (``0.9``: p90) of ``values`` (None without values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


@dataclass
class StaffFigures:
    """One staff member's figures (``user_id`` None: the tickets nobody handled)."""

    user_id: int | None
    name: str
    tickets: int = 0
    first_reply: list[float] = field(default_factory=list)
    """Business seconds from opening to the first staff reply, of the tickets that got one
    (shortest first)."""
    resolution: list[float] = field(default_factory=list)
    """Business seconds from opening to resolution, of the tickets resolved (shortest first)."""
    breaches: int = 0
    """SLA deadlines missed (first reply and resolution: a ticket can miss both)."""
    csat_answers: int = 0
    """1-5 answers of the surveys about their tickets: the count behind ``csat_percent``."""
    csat_satisfied: int = 0

    @property
    def csat_percent(self) -> float | None:
        return 100 * self.csat_satisfied / self.csat_answers if self.csat_answers else None


async def _tickets(session: AsyncSession, since: datetime, until: datetime) -> list[Ticket]:
    result = await session.execute(
        select(Ticket)
        .where(Ticket.opened_at >= since, Ticket.opened_at < until)
        .order_by(Ticket.opened_at, Ticket.id)
    )
    return list(result.scalars())


async def _first_repliers(
    session: AsyncSession, ticket_ids: list[int]
) -> dict[int, tuple[int, str | None]]:
    """Each ticket's first staff reply's author (id, name)."""
    found: dict[int, tuple[int, str | None]] = {}
    for chunk in _chunks(ticket_ids):
        result = await session.execute(
            select(
                TicketMessage.ticket_id, TicketMessage.author_user_id, TicketMessage.author_name
            )
            .where(
                TicketMessage.ticket_id.in_(chunk),
                TicketMessage.direction == OUT,
                TicketMessage.author_user_id.is_not(None),
            )
            .order_by(TicketMessage.ticket_id, TicketMessage.id)
        )
        for ticket_id, author, name in result:
            if author is not None:
                found.setdefault(int(ticket_id), (int(author), name))
    return found


async def _csat(session: AsyncSession, ticket_ids: list[int]) -> dict[int, tuple[int, int]]:
    """Per ticket: the 1-5 answers of the surveys about it, and how many were 4 or 5."""
    scale = SurveyAnswer.kind == "scale"
    found: dict[int, tuple[int, int]] = {}
    for chunk in _chunks(ticket_ids):
        result = await session.execute(
            select(
                SurveyResponse.ticket_id,
                func.sum(case((scale, 1), else_=0)),
                func.sum(case((scale & (SurveyAnswer.score >= 4), 1), else_=0)),
            )
            .join(SurveyResponse, SurveyResponse.id == SurveyAnswer.response_id)
            .where(SurveyResponse.ticket_id.in_(chunk), SurveyAnswer.score.is_not(None))
            .group_by(SurveyResponse.ticket_id)
        )
        for ticket_id, answers, satisfied in result:
            found[int(ticket_id)] = (int(answers or 0), int(satisfied or 0))
    return found


def _chunks(ids: list[int], size: int = 500) -> Iterable[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _breaches(ticket: Ticket, now: datetime) -> int:
    """Deadlines missed: met late, or unmet and past at ``now`` (as ``report tickets``)."""
    first_late = (ticket.first_response_at or now) > ticket.first_response_due
    resolved = ticket.resolved_at or (now if ticket.status != CLOSED else ticket.resolution_due)
    return int(first_late) + int(resolved > ticket.resolution_due)


async def staff_report(
    session: AsyncSession,
    since: datetime,
    until: datetime,
    now: datetime,
    between: BusinessTime,
    group_between: Mapping[str, BusinessTime] | None = None,
) -> list[StaffFigures]:
    """The figures of each staff member for the tickets opened in ``[since, until)``, the most
    tickets first (nobody's last); names are the staff group's display names."""
    tickets = await _tickets(session, since, until)
    ids = [ticket.id for ticket in tickets]
    repliers = await _first_repliers(session, ids)
    csat = await _csat(session, ids)
    names: dict[int | None, str] = {
        user_id: name
        for user_id, name in await session.execute(select(StaffMember.user_id, StaffMember.name))
    }
    figures: dict[int | None, StaffFigures] = {}
    for ticket in tickets:
        user_id, name = ticket.assignee_user_id, ticket.assignee_name
        if user_id is None and ticket.id in repliers:
            user_id, name = repliers[ticket.id]
        row = figures.get(user_id)
        if row is None:
            display = names.get(user_id) or name or (f"#{user_id}" if user_id else "")
            row = figures[user_id] = StaffFigures(user_id, display)
        row.tickets += 1
        timed = (group_between or {}).get(ticket.staff_group, between)
        if ticket.first_response_at is not None:
            row.first_reply.append(
                timed(ticket.opened_at, ticket.first_response_at).total_seconds()
            )
        if ticket.resolved_at is not None:
            row.resolution.append(timed(ticket.opened_at, ticket.resolved_at).total_seconds())
        row.breaches += _breaches(ticket, now)
        answers, satisfied = csat.get(ticket.id, (0, 0))
        row.csat_answers += answers
        row.csat_satisfied += satisfied
    for row in figures.values():
        row.first_reply.sort()
        row.resolution.sort()
    return sorted(figures.values(), key=lambda row: (row.user_id is None, -row.tickets, row.name))
