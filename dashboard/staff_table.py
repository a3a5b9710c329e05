"""The staff report's table, shared by the dashboard's staff page and ``carebot report staff``:
its columns and each staff member's cells in the reader's language (``storage.tickets.
staff_report`` counts; business time comes from ``tickets.toml`` ``[hours]``, or a ticket's
group's ``[groups.<name>.hours]``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.kernel.config import Config
from bot.kernel.hours import BusinessHours
from dashboard.html import Tr
from storage.tickets.staff_report import StaffFigures, median, nearest_rank, staff_report

STAFF_COLUMNS = (
    "staff_member",
    "staff_tickets",
    "staff_first_median",
    "staff_first_p90",
    "staff_resolution_median",
    "staff_resolution_p90",
    "staff_breaches",
    "staff_csat",
    "staff_csat_answers",
)
"""Catalogue keys of the headers, in order; also the names of the page's figures."""


async def load_staff(
    session: AsyncSession, rules: Config | None, since: datetime, until: datetime, now: datetime
) -> list[StaffFigures]:
    """The figures of the tickets opened in ``[since, until)``, timed in the business hours of
    each ticket's group (always open without ``rules``)."""
    hours = rules.tickets.hours.calendar() if rules is not None else BusinessHours()
    groups = rules.tickets.groups if rules is not None else {}
    group_between = {
        name: group.hours.calendar().between
        for name, group in groups.items()
        if group.hours is not None
    }
    return await staff_report(session, since, until, now, hours.between, group_between)


def staff_cells(tr: Tr, row: StaffFigures) -> list[str]:
    """One staff member's cells under ``STAFF_COLUMNS``, as plain text."""
    csat = row.csat_percent
    return [
        row.name or tr("staff_nobody"),
        str(row.tickets),
        tr.duration(median(row.first_reply)),
        tr.duration(nearest_rank(row.first_reply, 0.9)),
        tr.duration(median(row.resolution)),
        tr.duration(nearest_rank(row.resolution, 0.9)),
        str(row.breaches),
        "—" if csat is None else f"{csat:.1f}",
        str(row.csat_answers),
    ]
