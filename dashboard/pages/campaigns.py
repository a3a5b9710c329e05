"""Campaigns: each campaign of ``campaigns/*.toml`` (and any sent whose file is gone), its
window and state, and the figures ``carebot campaign stats`` prints, by tier: queued, sent,
waiting, blocked, cancelled, "stop" pressed, coupons used and the revenue of their orders
(``storage.campaigns.figures``)."""

from __future__ import annotations

from aiohttp import web

from bot.kernel.campaign_config import Campaign
from dashboard import auth
from dashboard.core import Dashboard
from dashboard.html import Tr, esc, figure, section, table
from dashboard.pages.guard import signed_in
from dashboard.pages.respond import page_response
from storage import campaigns as campaign_queries
from storage.campaigns import CampaignFigures, TierFigures
from storage.models import CampaignRun

COLUMNS = (
    "campaign_tier",
    "campaign_queued",
    "campaign_sent",
    "campaign_waiting",
    "campaign_blocked",
    "campaign_cancelled",
    "campaign_pressed",
    "campaign_coupons_used",
    "campaign_revenue",
)


def _row(name: str, label: str, key: str, row: TierFigures, currency: str) -> list[str]:
    def cell(column: str, value: object) -> str:
        return figure(f"campaign.{name}.{key}.{column}", value)

    return [
        esc(label),
        cell("queued", f"{row.queued:,}"),
        cell("sent", f"{row.sent:,}"),
        cell("waiting", f"{row.waiting:,}"),
        cell("blocked", f"{row.blocked:,}"),
        cell("cancelled", f"{row.cancelled:,}"),
        cell("pressed", f"{row.pressed:,}"),
        cell("coupons", f"{row.coupons_used:,} / {row.coupons:,}"),
        cell("revenue", f"{row.revenue_cents / 100:,.2f} {currency}"),
    ]


def _state(tr: Tr, run: CampaignRun | None) -> str:
    if run is None:
        return tr("campaign_state_new")
    if run.cancelled_at is not None:
        return tr("campaign_state_cancelled", when=tr.when(run.cancelled_at))
    return tr("campaign_state_sending", when=tr.when(run.created_at))


def _campaign_section(
    tr: Tr,
    name: str,
    campaign: Campaign | None,
    run: CampaignRun | None,
    figures: CampaignFigures,
    currency: str,
) -> str:
    """One campaign: title, window, state, the figures by tier and for all tiers."""
    lines = [_state(tr, run)]
    if campaign is None:
        title = name
        lines.append(tr("campaign_file_gone"))
    else:
        title = campaign.title.get(tr.language)
        window = campaign.window
        lines.insert(
            0,
            tr(
                "campaign_window",
                start=window.start.isoformat(),
                end=window.end.isoformat(),
                from_=f"{window.from_:%H:%M}",
                until=f"{window.until:%H:%M}",
            ),
        )
        if campaign.buttons:
            lines.append(tr("campaign_links_note"))
    order = tr.tiers_in_order(row.tier for row in figures.by_tier)
    rows = [
        _row(name, tr.tier(row.tier), row.tier, row, currency)
        for row in sorted(figures.by_tier, key=lambda row: order.index(row.tier))
    ]
    if figures.by_tier:
        rows.append(_row(name, tr("campaign_all_tiers"), "all", figures.total, currency))
    return section(
        tr("campaign_heading", title=title, name=name),
        "".join(f"<p>{line}</p>" for line in lines),
        table(
            [tr(column) for column in COLUMNS],
            rows,
            css="figures campaigns",
            empty=tr("campaign_nobody"),
        ),
    )


@signed_in
async def campaigns_page(
    request: web.Request, dashboard: Dashboard, tr: Tr, staff: auth.StaffSession
) -> web.StreamResponse:
    files = dict(dashboard.rules.campaigns) if dashboard.rules is not None else {}
    currency = dashboard.rules.tiers.orders.currency if dashboard.rules is not None else ""
    async with dashboard.sessionmaker() as session:
        runs = await campaign_queries.runs(session)
        figures = {
            name: await campaign_queries.figures(session, run.id) for name, run in runs.items()
        }
    names = sorted(files) + sorted(set(runs) - set(files))
    body = (
        "".join(
            _campaign_section(
                tr,
                name,
                files.get(name),
                runs.get(name),
                figures.get(name, CampaignFigures()),
                currency,
            )
            for name in names
        )
        or f"<p>{tr('campaigns_none')}</p>"
    )
    return page_response(request, dashboard, tr, staff, "campaigns", tr("nav_campaigns"), body)
