"""``carebot plan --date 2027-02-17``: what the care planners would queue that day, without
queueing anything (counts by kind and tier, a few messages rendered in both languages)."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from datetime import date

import typer

from bot.cli_tools import database, open_tool
from scheduler.care import CarePlanner, Planned, planner_for
from storage.care import Conversion, conversion

SAMPLE_COUPON = "CB-XXXX-XXXX"


def preview_lines(
    planner: CarePlanner, planned: list[Planned], day: date, samples: int
) -> list[str]:
    """The report ``carebot plan`` prints."""
    lines = [f"care plan for {day.isoformat()}: {len(planned)} message(s); nothing was queued"]
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
    for row in converted:
        typer.echo(f"retention offers so far, {row.tier}: {row.issued} issued, {row.used} used")
