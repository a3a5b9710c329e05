"""``carebot campaign preview|send|cancel|stats NAME``: the campaigns of ``campaigns/*.toml``
for the operator (README: Campaigns), in Chinese or English (``bot.cli_texts``). ``preview``
queues nothing; ``send`` and ``cancel`` are one transaction each; ``stats`` reads. A campaign
file with a mistake stops every command with its file and key (the rule files are validated
first, as at start-up)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from bot.cli_texts import cli_language, counted, listing, say, zoned
from bot.cli_tools import Tool, database, money, open_tool
from bot.kernel.campaign_config import Campaign
from bot.kernel.config import Config, readable_name
from scheduler.campaigns import CampaignError, Campaigns, SendReport
from storage import campaigns as campaign_queries
from storage.campaigns import CampaignFigures, TierFigures
from storage.models import CampaignRun

T = TypeVar("T")

campaign_app = typer.Typer(
    help="Campaigns (campaigns/*.toml): preview, send, cancel, statistics.",
    no_args_is_help=True,
)
NAME = typer.Argument(..., help="The campaign: its file's name in campaigns/ without .toml.")


def tier_label(rules: Config, tier: str, language: str) -> str:
    """A tier's display name in ``language`` (``tiers.toml``), else the name made readable."""
    rule = next((rule for rule in rules.tiers.tiers if rule.name == tier), None)
    return rule.label(language) if rule is not None else readable_name(tier)


def _run(tool: Tool, work: Callable[[AsyncSession], Awaitable[T]], *, write: bool = False) -> T:
    """``work`` in one session (one transaction when ``write``); a CampaignError is one line
    on stderr and exit code 2, nothing changed."""

    async def run() -> T:
        async with database(tool) as sessions:
            if write:
                async with sessions.begin() as session:
                    return await work(session)
            async with sessions() as session:
                return await work(session)

    try:
        return asyncio.run(run())
    except CampaignError as error:
        typer.echo(f"carebot: {say(error.key, **error.params)}", err=True)
        raise typer.Exit(2) from None


def _campaign(campaigns: Campaigns, name: str) -> Campaign:
    try:
        return campaigns.campaign(name)
    except CampaignError as error:
        typer.echo(f"carebot: {say(error.key, **error.params)}", err=True)
        raise typer.Exit(2) from None


def _title(campaign: Campaign) -> str:
    window = campaign.window
    return say(
        "cli_campaign_title",
        name=campaign.name,
        title=campaign.title.get(cli_language()),
        start=window.start.isoformat(),
        end=window.end.isoformat(),
        from_=f"{window.from_:%H:%M}",
        until=f"{window.until:%H:%M}",
    )


@campaign_app.command("preview")
def preview(name: str = NAME) -> None:
    """Who the campaign reaches now, by tier, and its message in both languages; nothing is
    queued."""
    tool = open_tool()
    campaigns = Campaigns(tool.rules)
    campaign = _campaign(campaigns, name)
    found = _run(tool, lambda session: campaigns.preview(session, campaign))
    language = cli_language()
    tiers = [
        f"{tier_label(tool.rules, tier, language)} {count:,}"
        for tier, count in found.counts.items()
    ]
    typer.echo(_title(campaign))
    typer.echo(
        say(
            "cli_campaign_preview",
            customers=counted("customers", sum(found.counts.values())),
            tiers=listing(tiers) or "-",
        )
    )
    for sample_language, text in found.samples.items():
        typer.echo(say("cli_campaign_sample", language=sample_language))
        typer.echo("\n".join(f"    {line}" for line in text.splitlines()))
    if campaign.buttons:
        typer.echo(say("cli_campaign_links_note"))


@campaign_app.command("send")
def send(name: str = NAME) -> None:
    """Queue the campaign for its segment through the outbox (again: only customers not
    queued yet)."""
    tool = open_tool()
    campaigns = Campaigns(tool.rules)
    campaign = _campaign(campaigns, name)
    now = tool.clock.now()
    report: SendReport = _run(
        tool, lambda session: campaigns.send(session, campaign, now), write=True
    )
    typer.echo(
        say(
            "cli_campaign_queued",
            name=name,
            customers=counted("customers", report.queued),
            coupons=counted("coupons", report.coupons),
        )
    )
    if report.window_over:
        typer.echo(
            say("cli_campaign_window_over", customers=counted("customers", report.window_over))
        )
    if report.skipped:
        typer.echo(
            say("cli_campaign_skipped", customers=counted("customers", len(report.skipped)))
        )


@campaign_app.command("cancel")
def cancel(name: str = NAME) -> None:
    """Stop the campaign: what is still queued is cancelled in one transaction, and it is never
    sent again."""
    tool = open_tool()
    campaigns = Campaigns(tool.rules)
    campaign = _campaign(campaigns, name)
    now = tool.clock.now()
    cancelled = _run(tool, lambda session: campaigns.cancel(session, campaign, now), write=True)
    typer.echo(say("cli_campaign_cancelled", name=name, messages=counted("messages", cancelled)))


def figure_line(rules: Config, label: str, figures: TierFigures) -> str:
    """One line of ``stats``: a tier's (or all tiers') figures."""
    return say(
        "cli_campaign_stats_row",
        tier=label,
        queued=f"{figures.queued:,}",
        sent=f"{figures.sent:,}",
        waiting=f"{figures.waiting:,}",
        blocked=f"{figures.blocked:,}",
        cancelled=f"{figures.cancelled:,}",
        pressed=f"{figures.pressed:,}",
        used=f"{figures.coupons_used:,}",
        coupons=f"{figures.coupons:,}",
        revenue=money(figures.revenue_cents, rules.tiers.orders.currency),
    )


@campaign_app.command("stats")
def stats(name: str = NAME) -> None:
    """Queued, sent, blocked, "stop" pressed, coupons used and their orders' revenue, by
    tier."""
    tool = open_tool()
    campaign = _campaign(Campaigns(tool.rules), name)

    async def read(session: AsyncSession) -> tuple[CampaignRun | None, CampaignFigures]:
        run = await campaign_queries.find_run(session, name)
        if run is None:
            return None, CampaignFigures()
        return run, await campaign_queries.figures(session, run.id)

    run, figures = _run(tool, read)
    if run is None:
        typer.echo(say("cli_campaign_not_sent_yet", name=name))
        return
    language = cli_language()
    state = ""
    if run.cancelled_at is not None:
        zone = tool.rules.tiers.orders.timezone
        state = say("cli_campaign_state_cancelled", when=zoned(run.cancelled_at, zone))
    typer.echo(
        say("cli_campaign_stats_title", name=name, title=campaign.title.get(language), state=state)
    )
    for row in figures.by_tier:
        label = tier_label(tool.rules, row.tier, language)
        typer.echo("  " + figure_line(tool.rules, label, row))
    typer.echo("  " + figure_line(tool.rules, say("cli_campaign_all_tiers"), figures.total))
    if campaign.buttons:
        typer.echo(say("cli_campaign_links_note"))
