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
    tiers = tr.tiers_in_order(tier for tier, _ in report.counts)
    stages = list(STAGES)
    mix_rows = [
        [
            esc(tr.tier(tier)),
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
        + section(
            tr("tier_mix"), doughnut("tiers", [tr.tier(tier) for tier in tiers], tier_totals)
        )
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
        [
            esc(tr.tier(old)) if old else tr("no_tier"),
            esc(tr.tier(new)),
            figure(f"moved.{old or 'none'}.{new}", count),
        ]
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


def _risk_rows(tr: Tr, rows: list[queries.AtRisk]) -> list[list[str]]:
    """Customers under ``AT_RISK_COLUMNS``; the reasons are their churn flags (at risk without
    one: no order for longer than usual, what puts them in that stage)."""
    return [
        [
            esc(row.name or f"#{row.customer_id}"),
            esc(tr.tier(row.tier)),
            tr.label("stage", row.stage),
            "<br>".join(tr.label("flag", flag.name) for flag in row.flags)
            if row.flags
            else tr.label("flag", "OVERDUE"),
            day_of(row.last_day).isoformat(),
            f"{row.monetary_cents / 100:,.2f}",
        ]
        for row in rows
    ]


def _at_risk(tr: Tr, risky: list[queries.AtRisk], warned: list[queries.AtRisk]) -> str:
    """Customers in the "at risk" stage, then those in another stage with a churn signal."""
    headers = list(map(tr, AT_RISK_COLUMNS))
    return section(
        tr("at_risk_title", count=figure("at-risk-count", len(risky))),
        table(headers, _risk_rows(tr, risky), css="list at-risk", empty=tr("no_at_risk")),
    ) + section(
        tr("warnings_title", count=figure("warning-count", len(warned))),
        f"<p>{tr('warnings_note')}</p>",
        table(headers, _risk_rows(tr, warned), css="list warnings", empty=tr("no_warnings")),
    )


@signed_in
async def customers(
    request: web.Request, dashboard: Dashboard, tr: Tr, staff: auth.StaffSession
) -> web.StreamResponse:
    async with dashboard.sessionmaker() as session:
        report = await tier_report(session)
        risky = await queries.at_risk(session)
        warned = await queries.churn_warnings(session)
    body = _mix(tr, report) + _movement(tr, report) + _at_risk(tr, risky, warned)
    return page_response(request, dashboard, tr, staff, "customers", tr("nav_customers"), body)
