"""Staff: per staff member, the tickets opened in the last ``STAFF_DAYS`` days they handled,
their first-reply and resolution times in business hours (median, p90), SLA breaches and CSAT
(``dashboard.staff_table``; the same table as ``carebot report staff``)."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from dashboard import auth
from dashboard.core import Dashboard
from dashboard.html import Tr, esc, figure, section, table
from dashboard.pages.guard import signed_in
from dashboard.pages.respond import page_response
from dashboard.staff_table import STAFF_COLUMNS, load_staff, staff_cells

STAFF_DAYS = 30


@signed_in
async def staff_page(
    request: web.Request, dashboard: Dashboard, tr: Tr, staff: auth.StaffSession
) -> web.StreamResponse:
    now = dashboard.clock.now()
    since = now - timedelta(days=STAFF_DAYS)
    async with dashboard.sessionmaker() as session:
        figures = await load_staff(session, dashboard.rules, since, now, now)
    rows = [
        [
            esc(cells[0]),
            *(
                figure(f"staff.{row.user_id or 'nobody'}.{column}", cell)
                for column, cell in zip(STAFF_COLUMNS[1:], cells[1:], strict=True)
            ),
        ]
        for row in figures
        for cells in [staff_cells(tr, row)]
    ]
    body = section(
        tr("staff_title", since=tr.when(since), until=tr.when(now)),
        f"<p>{tr('staff_note')}</p>",
        table(
            [tr(column) for column in STAFF_COLUMNS],
            rows,
            css="figures staff",
            empty=tr("staff_none"),
        ),
    )
    return page_response(request, dashboard, tr, staff, "staff", tr("nav_staff"), body)
