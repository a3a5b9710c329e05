"""``carebot plan --date 2027-02-17``: what the care planners would queue that day, without
queueing anything (counts by kind and tier, a few messages rendered in both languages). A day
that plans nothing says why: care switched off, no customers, and who has a birthday or a
greeted holiday that day but cannot get a care message (not on Telegram yet, no consent, the bot
blocked, data erased)."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from datetime import date

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from bot.cli_texts import cli_language, counted, listing, say
from bot.cli_tools import Tool, database, open_tool
from bot.kernel.config import QuietHoursConfig
from scheduler.care import CarePlanner, Planned, lunar_pairs, planner_for, solar_pairs
from storage import care as care_queries
from storage.care import REACH_REASONS, Conversion, conversion

SAMPLE_COUPON = "CB-XXXX-XXXX"


def preview_lines(
    planner: CarePlanner, planned: list[Planned], day: date, samples: int
) -> list[str]:
    """The report ``carebot plan`` prints."""
    lines = [
        say("cli_plan_title", day=day.isoformat(), messages=counted("messages", len(planned)))
    ]
    by_kind = Counter(item.occasion for item in planned)
    by_tier = Counter((item.occasion, item.tier) for item in planned)
    for occasion, count in sorted(by_kind.items()):
        tiers = ", ".join(
            f"{tier} {by_tier[(occasion, tier)]}"
            for tier in sorted({t for (o, t) in by_tier if o == occasion})
        )
        lines.append(f"  {occasion:<13} {count:>8}   ({tiers})")
    shown: Counter[str] = Counter()
    for item in planned:
        if shown[item.occasion] >= samples:
            continue
        shown[item.occasion] += 1
        sample = item
        if item.coupon is not None:
            sample = replace(item, params={**item.params, "coupon": SAMPLE_COUPON})
        lines.append(f"- {item.occasion} · {item.tier} · customer {item.customer.id}")
        for language in ("en", "zh"):
            lines.append(f"    {language}: {planner.render(sample, language)}")
    return lines


def reasons(counts: dict[str, int]) -> str:
    """ "2 are not on Telegram yet, 1 blocked the bot": each reason that has customers."""
    return listing(
        [
            counted(f"plan_{reason}", counts[reason])
            for reason in REACH_REASONS
            if counts.get(reason)
        ]
    )


async def why_nothing(
    session: AsyncSession, planner: CarePlanner, day: date, quiet: QuietHoursConfig
) -> list[str]:
    """Why a day plans nothing, one line a reason (see the module docstring); ``quiet``: the
    outbox's quiet hours, which only delay a message (said so)."""
    if not planner.rules.enabled or not planner.rules.tiers:
        return [say("cli_plan_off")]
    everyone = await care_queries.reach_counts(session)
    total = sum(everyone.values())
    if not total:
        return [say("cli_plan_no_customers")]
    lines = [
        say("cli_plan_customers", customers=counted("customers", total), reasons=reasons(everyone))
    ]
    born = await care_queries.reach_counts(session, born_on=(solar_pairs(day), lunar_pairs(day)))
    born_total = sum(born.values())
    lines.append(
        say(
            "cli_plan_birthdays", customers=counted("customers", born_total), reasons=reasons(born)
        )
        if born_total
        else say("cli_plan_no_birthdays")
    )
    lines += await _holiday_lines(session, planner, day)
    if quiet.enabled:
        lines.append(
            say("cli_plan_quiet_hours", start=f"{quiet.start:%H:%M}", end=f"{quiet.end:%H:%M}")
        )
    return [say("cli_plan_why"), *(f"  - {line}" for line in lines)]


async def _holiday_lines(session: AsyncSession, planner: CarePlanner, day: date) -> list[str]:
    lines = []
    for country in sorted(planner.rules.holidays.countries):
        names = planner.holiday_names(country, day)
        if names is None:
            continue
        counts = await care_queries.reach_counts(session, countries=[country])
        lines.append(
            say(
                "cli_plan_holiday",
                holiday=names.get(cli_language(), names["en"]),
                country=country,
                customers=counted("customers", sum(counts.values())),
                reasons=reasons(counts),
            )
        )
    return lines or [say("cli_plan_no_holiday")]


async def explain(tool: Tool, planner: CarePlanner, day: date) -> list[str]:
    """``why_nothing`` on the tool's database."""
    async with database(tool) as sessionmaker, sessionmaker() as session:
        return await why_nothing(session, planner, day, tool.rules.outbox.quiet_hours)


def plan_command(
    day: str = typer.Option(..., "--date", help="The day to preview (YYYY-MM-DD)."),
    samples: int = typer.Option(2, "--samples", min=0, help="Messages shown per kind."),
) -> None:
    """Print what the care planners would send on a day, without sending or queueing."""
    try:
        wanted = date.fromisoformat(day)
    except ValueError:
        typer.echo(f"carebot: --date: expected YYYY-MM-DD, got {day!r}", err=True)
        raise typer.Exit(2) from None
    tool = open_tool()
    planner = planner_for(tool.rules)

    async def run() -> tuple[list[Planned], list[Conversion]]:
        async with database(tool) as sessionmaker, sessionmaker() as session:
            planned = await planner.preview(session, wanted)  # that local day, every zone
            return planned, await conversion(session)

    planned, converted = asyncio.run(run())
    for line in preview_lines(planner, planned, wanted, samples):
        typer.echo(line)
    if not planned:
        for line in asyncio.run(explain(tool, planner, wanted)):
            typer.echo(line)
    for row in converted:
        typer.echo(f"retention offers so far, {row.tier}: {row.issued} issued, {row.used} used")
