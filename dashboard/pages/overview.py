"""The overview: open tickets by status and tier, SLA breaches, and today's care messages (the
shop's calendar day) by kind and state."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from aiohttp import web

from dashboard import auth, queries
from dashboard.core import Dashboard
from dashboard.html import Tr, bar_chart, card, esc, figure, section, table
from dashboard.pages.guard import signed_in
from dashboard.pages.respond import page_response


def _today(dashboard: Dashboard, now: datetime) -> tuple[datetime, datetime]:
    """The shop's calendar day around ``now``, as UTC bounds."""
    zone = ZoneInfo(dashboard.timezone)
    local = now.astimezone(zone)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def _cards(
    tr: Tr,
    by_status_tier: dict[tuple[str, str], int],
    breaches: queries.Breaches,
    care: dict[tuple[str, str], int],
) -> str:
    """The figures at the top: open tickets, breached deadlines, care messages today."""
    return "".join(
        [
            card(tr("open_tickets"), "open-total", sum(by_status_tier.values())),
            card(tr("breach_first_response"), "breach-first", breaches.first_response, alert=True),
            card(tr("breach_resolution"), "breach-resolution", breaches.resolution, alert=True),
            card(tr("care_today"), "care-today", sum(care.values())),
        ]
    )


def _open_tickets(tr: Tr, by_status_tier: dict[tuple[str, str], int]) -> str:
    """Tickets not closed, per status (rows) and tier (columns): a stacked chart and a table."""
    statuses = list(queries.NOT_CLOSED)
    tiers = tr.tiers_in_order(tier for _, tier in by_status_tier)
    rows = [
        [
            tr.label("status", status),
            *(
                figure(f"open.{status}.{tier}", by_status_tier.get((status, tier), 0))
                for tier in tiers
            ),
            figure(
                f"open.{status}",
                sum(count for (s, _), count in by_status_tier.items() if s == status),
            ),
        ]
        for status in statuses
    ]
    tickets_chart = bar_chart(
        "open-tickets",
        [tr.label("status", status) for status in statuses],
        [
            (tr.tier(tier), [by_status_tier.get((status, tier), 0) for status in statuses])
            for tier in tiers
        ],
        stacked=True,
    )
    return section(
        tr("open_by_status_tier"),
        tickets_chart,
        table(
            [tr("status"), *(esc(tr.tier(tier)) for tier in tiers), tr("total")],
            rows,
            css="figures",
        ),
    )


def _care_today(tr: Tr, care: dict[tuple[str, str], int], since: datetime) -> str:
    """Today's care messages per kind (rows) and state (columns): a chart (when there are any)
    and a table."""
    kinds = sorted({kind for kind, _ in care})
    states = sorted({state for _, state in care})
    care_rows = [
        [
            tr.label("kind", kind),
            *(figure(f"care.{kind}.{state}", care.get((kind, state), 0)) for state in states),
            figure(f"care.{kind}", sum(count for (k, _), count in care.items() if k == kind)),
        ]
        for kind in kinds
    ]
    care_chart = bar_chart(
        "care-today",
        [tr.label("kind", kind) for kind in kinds],
        [
            (tr.label("state", state), [care.get((kind, state), 0) for kind in kinds])
            for state in states
        ],
        stacked=True,
    )
    return section(
        tr("care_today_title", day=since.strftime("%Y-%m-%d")),
        care_chart if kinds else "",
        table(
            [tr("kind"), *(tr.label("state", state) for state in states), tr("total")],
            care_rows,
            css="figures",
            empty=tr("nothing_today"),
        ),
    )


@signed_in
async def overview(
    request: web.Request, dashboard: Dashboard, tr: Tr, staff: auth.StaffSession
) -> web.StreamResponse:
    now = dashboard.clock.now()
    since, until = _today(dashboard, now)
    async with dashboard.sessionmaker() as session:
        by_status_tier = await queries.open_tickets_by_status_and_tier(session)
        breaches = await queries.sla_breaches(session, now)
        care = await queries.care_messages(session, since, until)
    body = (
        f'<div class="cards">{_cards(tr, by_status_tier, breaches, care)}</div>'
        + '<div class="grid">'
        + _open_tickets(tr, by_status_tier)
        + _care_today(tr, care, since)
        + "</div>"
    )
    return page_response(request, dashboard, tr, staff, "overview", tr("nav_overview"), body)
