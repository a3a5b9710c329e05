"""The SLA planner's queries: tickets due a reminder or an escalation, tickets resolved long enough
ago to close by themselves."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Ticket
from storage.tickets.statuses import RESOLVED, SLA_RUNNING


async def first_response_candidates(
    session: AsyncSession, *, now: datetime, horizon: datetime, limit: int = 500
) -> list[int]:
    """Tickets still owing a first reply whose deadline is within ``horizon`` and that still
    need a reminder, or are past it and still need an escalation."""
    result = await session.execute(
        select(Ticket.id)
        .where(
            Ticket.status.in_(SLA_RUNNING),
            Ticket.first_response_due <= horizon,
            Ticket.first_response_at.is_(None),
            or_(
                Ticket.first_response_reminded_at.is_(None),
                and_(
                    Ticket.first_response_escalated_at.is_(None),
                    Ticket.first_response_due <= now,
                ),
            ),
        )
        .order_by(Ticket.first_response_due)
        .limit(limit)
    )
    return [int(ticket_id) for ticket_id in result.scalars()]


async def resolution_candidates(
    session: AsyncSession, *, now: datetime, horizon: datetime, limit: int = 500
) -> list[int]:
    result = await session.execute(
        select(Ticket.id)
        .where(
            Ticket.status.in_(SLA_RUNNING),
            Ticket.resolution_due <= horizon,
            or_(
                Ticket.resolution_reminded_at.is_(None),
                and_(Ticket.resolution_escalated_at.is_(None), Ticket.resolution_due <= now),
            ),
        )
        .order_by(Ticket.resolution_due)
        .limit(limit)
    )
    return [int(ticket_id) for ticket_id in result.scalars()]


async def resolved_before(session: AsyncSession, moment: datetime, limit: int = 500) -> list[int]:
    """Tickets marked resolved before ``moment`` and never confirmed: to close by themselves."""
    result = await session.execute(
        select(Ticket.id)
        .where(Ticket.status == RESOLVED, Ticket.resolved_at <= moment)
        .order_by(Ticket.resolved_at)
        .limit(limit)
    )
    return [int(ticket_id) for ticket_id in result.scalars()]
