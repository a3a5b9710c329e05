"""The customers: the tier and RFM-stage mix, how tiers moved since the last full run, and who
is at risk (``storage.tiers``)."""

from __future__ import annotations

from aiohttp import web

from dashboard import auth, queries
from dashboard.core import Dashboard
from dashboard.html import Tr, bar_chart, doughnut, esc, figure, section, table
from dashboard.pages.guard import signed_in
from dashboard.pages.respond import page_response
from storage.tiers.report import TierReport, tier_report
from storage.tiers.spec import STAGES, day_of

AT_RISK_COLUMNS = ("customer", "tier", "stage", "reasons", "last_order", "spend")


def _mix(tr: Tr, report: TierReport) -> str:
    """Customers per tier (a doughnut) and per stage (bars), then per tier and stage (a table)."""
    tiers = sorted({tier for tier, _ in report.counts})
    stages = list(STAGES)
    mix_rows = [
        [
            esc(tier),
            *(
                figure(f"mix.{tier}.{stage}", report.counts.get((tier, stage), 0))
                for stage in stages
            ),
            figure(f"mix.{tier}", sum(c for (t, _), c in report.counts.items() if t == tier)),
        ]
        for tier in tiers
    ]
    tier_totals = [sum(c for (t, _), c in report.counts.items() if t == tier) for tier in tiers]
    stage_totals = [
        sum(c for (_, s), c in report.counts.items() if s == stage) for stage in stages
    ]
    return (
        '<div class="grid">'
        + section(tr("tier_mix"), doughnut("tiers", tiers, tier_totals))
        + section(
            tr("stage_mix"),
            bar_chart(
                "stages",
                [tr.label("stage", stage) for stage in stages],
                [(tr("customers"), stage_totals)],
            ),
        )
        + "</div>"
        + section(
            tr("tier_stage_table"),
            table(
                [tr("tier"), *(tr.label("stage", stage) for stage in stages), tr("total")],
                mix_rows,
                css="figures",
            ),
        )
    )


def _movement(tr: Tr, report: TierReport) -> str:
    """Customers moved from one tier to another since the last full run, the most first."""
    movement_rows = [
        [esc(old or "—"), esc(new), figure(f"moved.{old or 'none'}.{new}", count)]
        for (old, new), count in sorted(
            report.movements.items(), key=lambda item: (-item[1], str(item[0]))
        )
    ]
    since = (
        tr("movement_since", when=tr.when(report.since_run.started_at))
        if report.since_run is not None
        else tr("movement_no_run")
    )
    return section(
        tr("movement"),
        f"<p>{since}</p>",
        table(
            [tr("from_tier"), tr("to_tier"), tr("customers")],
            movement_rows,
            css="figures",
            empty=tr("no_movement"),
        ),
    )


def _at_risk(tr: Tr, risky: list[queries.AtRisk]) -> str:
    """Customers at risk or with a churn signal, under ``AT_RISK_COLUMNS``."""
    risk_rows = [
        [
            esc(row.name or f"#{row.customer_id}"),
            esc(row.tier),
            tr.label("stage", row.stage),
            "<br>".join(tr.label("flag", flag.name) for flag in row.flags)
            if row.flags
            else tr.label("flag", "OVERDUE"),
            day_of(row.last_day).isoformat(),
            f"{row.monetary_cents / 100:,.2f}",
        ]
        for row in risky
    ]
    return section(
        tr("at_risk_title", count=figure("at-risk-count", len(risky))),
        table(
            list(map(tr, AT_RISK_COLUMNS)),
            risk_rows,
            css="list",
            empty=tr("no_at_risk"),
        ),
    )


@signed_in
async def customers(
    request: web.Request, dashboard: Dashboard, tr: Tr, staff: auth.StaffSession
) -> web.StreamResponse:
    async with dashboard.sessionmaker() as session:
        report = await tier_report(session)
        risky = await queries.at_risk(session)
    body = _mix(tr, report) + _movement(tr, report) + _at_risk(tr, risky)
    return page_response(request, dashboard, tr, staff, "customers", tr("nav_customers"), body)
