"""``carebot report tickets``: the tickets opened in a period, counted, timed and checked against
their SLA deadlines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Ticket
from storage.tickets.statuses import CLOSED


@dataclass(frozen=True)
class ReportRow:
    category: str
    tier: str
    status: str
    opened_at: datetime
    first_response_at: datetime | None
    first_response_due: datetime
    resolved_at: datetime | None
    resolution_due: datetime


async def report_rows(session: AsyncSession, since: datetime, until: datetime) -> list[ReportRow]:
    """Tickets opened in ``[since, until)`` with what the report needs."""
    result = await session.execute(
        select(
            Ticket.category,
            Ticket.tier,
            Ticket.status,
            Ticket.opened_at,
            Ticket.first_response_at,
            Ticket.first_response_due,
            Ticket.resolved_at,
            Ticket.resolution_due,
        )
        .where(Ticket.opened_at >= since, Ticket.opened_at < until)
        .order_by(Ticket.opened_at)
    )
    return [ReportRow(**row._asdict()) for row in result]


@dataclass(frozen=True)
class TicketReport:
    """``carebot report tickets``: tickets opened in a period."""

    opened: int
    by_category: dict[str, int]
    by_tier: dict[str, int]
    by_status: dict[str, int]
    first_response: list[float]
    """Seconds from opening to the first staff reply, of the tickets that got one."""
    resolution: list[float]
    """Seconds from opening to the (last) resolution, of the tickets resolved."""
    first_response_breaches: int
    resolution_breaches: int


def _count(values: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


async def ticket_report(
    session: AsyncSession, since: datetime, until: datetime, now: datetime
) -> TicketReport:
    """Counts, response and resolution times and SLA breaches of the tickets opened in
    ``[since, until)``. A deadline counts as breached when it was met late, or is still unmet
    and already past at ``now``."""
    rows = await report_rows(session, since, until)
    first = [
        (row.first_response_at - row.opened_at).total_seconds()
        for row in rows
        if row.first_response_at is not None
    ]
    resolution = [
        (row.resolved_at - row.opened_at).total_seconds()
        for row in rows
        if row.resolved_at is not None
    ]
    first_late = sum(1 for row in rows if (row.first_response_at or now) > row.first_response_due)
    resolution_late = sum(
        1
        for row in rows
        if (row.resolved_at or (now if row.status != CLOSED else row.resolution_due))
        > row.resolution_due
    )
    return TicketReport(
        opened=len(rows),
        by_category=_count([row.category for row in rows]),
        by_tier=_count([row.tier for row in rows]),
        by_status=_count([row.status for row in rows]),
        first_response=sorted(first),
        resolution=sorted(resolution),
        first_response_breaches=first_late,
        resolution_breaches=resolution_late,
    )
