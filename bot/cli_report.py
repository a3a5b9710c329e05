"""``carebot report ...``: reports for operators. Each report is one command of ``report_app``."""

from __future__ import annotations

import asyncio
import csv
import math
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from bot.cli_rich import LazyConsole, new_table, new_text
from bot.cli_texts import counted
from bot.cli_tools import database, open_tool
from bot.kernel.texts import LANGUAGES
from dashboard.core import load_catalogue
from dashboard.html import Tr
from dashboard.staff_table import STAFF_COLUMNS, load_staff, staff_cells
from storage import kb as kb_queries
from storage.tickets.reports import TicketReport, ticket_report
from storage.tickets.staff_report import StaffFigures
from storage.tiers.report import TierReport, tier_report
from storage.tiers.spec import STAGES, ChurnFlag, day_of
from surveys import analytics as survey_analytics

report_app = typer.Typer(rich_markup_mode=None, help="Reports.", no_args_is_help=True)
out = LazyConsole()


@report_app.command("tiers")
def tiers() -> None:
    """Customers per tier and stage, churn signals, recent runs and tier movement since the
    last full run."""
    tool = open_tool()

    async def read() -> TierReport:
        async with database(tool) as sessionmaker, sessionmaker() as session:
            return await tier_report(session)

    report = asyncio.run(read())
    names = [rule.name for rule in tool.rules.tiers.tiers]
    names += sorted({tier for tier, _ in report.counts} - set(names))
    table = new_table("tier", *STAGES, "total", title="customers by tier and stage")
    for name in names:
        row = [report.counts.get((name, stage), 0) for stage in STAGES]
        table.add_row(name, *(f"{count:,}" for count in row), f"{sum(row):,}")
    totals = [sum(report.counts.get((name, stage), 0) for name in names) for stage in STAGES]
    table.add_row("total", *(f"{count:,}" for count in totals), f"{sum(totals):,}", style="bold")
    out.print(table)

    labels = {
        ChurnFlag.OVERDUE: "overdue (no order for longer than usual)",
        ChurnFlag.FREQUENCY: "order frequency falling",
        ChurnFlag.SPEND: "spend falling",
        ChurnFlag.SATISFACTION: "satisfaction falling (survey scores)",
    }
    for flag, count in report.churn_flags.items():
        out.print(f"churn signal {labels[flag]}: {counted('customers', count)}")

    if report.since_run is not None:
        since = report.since_run
        movement = new_table(
            "from",
            "to",
            "customers",
            title=f"tier changes since full run #{since.id} ({day_of(since.day)})",
        )
        for (old, new), count in sorted(
            report.movements.items(), key=lambda item: (-item[1], str(item[0]))
        ):
            movement.add_row(old or "-", new, f"{count:,}")
        out.print(movement if report.movements else f"no tier changes since run #{since.id}")

    runs = new_table("run", "day", "kind", "scored", "tier changes", "changed", "ms", title="runs")
    for run in report.runs:
        runs.add_row(
            f"#{run.id}",
            str(day_of(run.day)),
            "full" if run.full else "incremental",
            f"{run.customers:,}",
            f"{run.tier_changes:,}",
            f"{run.customer_changes:,}",
            f"{run.duration_ms:,}",
        )
    out.print(runs if report.runs else "no tiers run yet: carebot tiers recompute --full")
    if report.pending:
        out.print(f"{counted('customers', report.pending)} waiting for the next run")


@report_app.command("kb")
def kb(
    days: int = typer.Option(30, min=1, help="Look at the questions of the last N days."),
    limit: int = typer.Option(20, min=1, help="Show at most this many rows per list."),
) -> None:
    """Questions the knowledge base could not answer, and its least helpful entries."""
    tool = open_tool()
    since = tool.clock.now() - timedelta(days=days)

    async def read() -> tuple[
        list[kb_queries.UnansweredQuestion], list[kb_queries.EntryHelpfulness]
    ]:
        async with database(tool) as sessionmaker, sessionmaker() as session:
            return (
                await kb_queries.top_unanswered(session, since, limit),
                await kb_queries.worst_entries(session, since, limit),
            )

    unanswered, entries = asyncio.run(read())
    questions = new_table(
        "asked", "question", title=f"unanswered questions, last {days} days (most asked first)"
    )
    for question in unanswered:
        # A customer's words: shown as typed, never read as Rich markup.
        questions.add_row(f"{question.count:,}", new_text(question.question))
    out.print(questions if unanswered else "no unanswered questions")
    helpfulness = new_table(
        "entry", "shown", "helpful", "not helpful", title="entries by helpfulness (least first)"
    )
    for entry in entries:
        helpfulness.add_row(
            entry.entry_id, f"{entry.shown:,}", f"{entry.helpful:,}", f"{entry.unhelpful:,}"
        )
    out.print(helpfulness if entries else "no entry was shown")


def _percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of sorted ``values`` (None when there are none)."""
    if not values:
        return None
    rank = max(1, math.ceil(fraction * len(values)))
    return values[rank - 1]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes = round(seconds / 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m"


DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M"]
Since = Annotated[
    datetime | None,
    typer.Option(formats=DATE_FORMATS, help="From (UTC); default 30 days before --until."),
]
Until = Annotated[
    datetime | None,
    typer.Option(formats=DATE_FORMATS, help="Until, excluded (UTC); default now."),
]


@report_app.command("tickets")
def tickets(since: Since = None, until: Until = None) -> None:
    """Tickets opened in a period: counts by category, tier and status; median and p90 times
    to the first reply and to resolution; SLA breaches."""
    tool = open_tool()
    now = tool.clock.now()
    end = until.replace(tzinfo=UTC) if until else now
    start = since.replace(tzinfo=UTC) if since else end - timedelta(days=30)
    if start >= end:
        typer.echo("carebot: --since must be before --until", err=True)
        raise typer.Exit(2)

    async def read() -> TicketReport:
        async with database(tool) as sessionmaker, sessionmaker() as session:
            return await ticket_report(session, start, end, now)

    report = asyncio.run(read())
    out.print(
        f"tickets opened from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC: {report.opened}"
    )
    for title, counts in (
        ("by category", report.by_category),
        ("by tier", report.by_tier),
        ("by status", report.by_status),
    ):
        table = new_table(title.split()[-1], "tickets", title=title)
        for name, count in counts.items():
            table.add_row(name, f"{count:,}")
        out.print(table if counts else f"{title}: none")
    times = new_table("", "tickets", "median", "p90", title="times from opening")
    for label, values in (
        ("first reply", report.first_response),
        ("resolution", report.resolution),
    ):
        times.add_row(
            label,
            f"{len(values):,}",
            _duration(statistics.median(values) if values else None),
            _duration(_percentile(values, 0.9)),
        )
    out.print(times)
    out.print(
        f"SLA breaches: first reply {report.first_response_breaches:,}, "
        f"resolution {report.resolution_breaches:,}"
    )


# --- surveys ----------------------------------------------------------------------

SURVEY_COLUMNS = ("scores", "CSAT %", "mean", "NPS n", "NPS", "sent", "answered", "resp. %")
"""Each figure follows the count behind it: scores (1-5 answers) for CSAT % and mean, NPS n
(0-10 answers) for NPS, sent (invitations) for answered and the response rate."""


def _figure(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def survey_table(
    scores: list[survey_analytics.SatisfactionRow],
    rates: list[survey_analytics.ResponseRateRow] | None,
) -> list[list[str]]:
    """The report's rows, group values first; each figure beside the count behind it."""
    by_group = {row.group: row for row in rates or []}
    groups = sorted({row.group for row in scores} | set(by_group))
    found = {row.group: row for row in scores}
    table = []
    for group in groups:
        score = found.get(group)
        rate = by_group.get(group)
        table.append(
            [
                *group,
                str(score.scale_answers) if score else "0",
                _figure(score.csat_percent if score else None, 1),
                _figure(score.mean_score if score else None, 2),
                str(score.nps_answers) if score else "0",
                _figure(score.nps if score else None, 1),
                str(rate.sent) if rate else "",
                str(rate.responded) if rate else "",
                _figure(rate.response_rate if rate else None, 1),
            ]
        )
    return table


def _survey_groups(group_by: str, start: datetime, end: datetime) -> list[str]:
    """The ``--group-by`` keys, after checking them and the period (exit 2 with why not)."""
    keys = [key.strip() for key in group_by.split(",") if key.strip()]
    unknown = [key for key in keys if key not in survey_analytics.GROUPS]
    if start >= end or unknown or len(set(keys)) != len(keys):
        problem = (
            "--since must be before --until"
            if start >= end
            else f"--group-by: expected some of {', '.join(survey_analytics.GROUPS)}"
        )
        typer.echo(f"carebot: {problem}", err=True)
        raise typer.Exit(2)
    return keys


async def _survey_figures(
    session: AsyncSession, start: datetime, end: datetime, keys: list[str]
) -> tuple[list[survey_analytics.SatisfactionRow], list[survey_analytics.ResponseRateRow] | None]:
    """The scores per group, and the response rates per group (None when grouped by
    dimension: an invitation has no dimension)."""
    scores = await survey_analytics.satisfaction_by(session, since=start, until=end, group_by=keys)
    rates = (
        None
        if "dimension" in keys
        else await survey_analytics.response_rates(session, since=start, until=end, group_by=keys)
    )
    return scores, rates


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    """The report's table as a UTF-8 CSV file, header first."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    out.print(f"wrote {counted('rows', len(rows))} to {path}")


@report_app.command("surveys")
def surveys(
    since: Since = None,
    until: Until = None,
    group_by: Annotated[
        str,
        typer.Option(
            "--group-by",
            help="tier, category, dimension, survey, week or month; several with commas "
            "(tier,dimension).",
        ),
    ] = "tier",
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="Also write the table to this CSV file.")
    ] = None,
) -> None:
    """Satisfaction of the surveys sent in a period: CSAT % (share of 4-5), mean 1-5 score,
    NPS and response rate per group, each with the count behind it."""
    tool = open_tool()
    end = until.replace(tzinfo=UTC) if until else tool.clock.now()
    start = since.replace(tzinfo=UTC) if since else end - timedelta(days=30)
    keys = _survey_groups(group_by, start, end)

    async def read() -> tuple[
        list[survey_analytics.SatisfactionRow], list[survey_analytics.ResponseRateRow] | None
    ]:
        async with database(tool) as sessionmaker, sessionmaker() as session:
            return await _survey_figures(session, start, end, keys)

    scores, rates = asyncio.run(read())
    rows = survey_table(scores, rates)
    header = [*keys, *SURVEY_COLUMNS]
    table = new_table(
        title=f"surveys sent from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
    )
    for name in header:
        table.add_column(name, no_wrap=name in keys)
    for row in rows:
        table.add_row(*row)
    out.print(table if rows else "no survey answers in this period")
    if csv_file is not None:
        _write_csv(csv_file, header, rows)


# --- staff ------------------------------------------------------------------------------


@report_app.command("staff")
def staff(
    since: Since = None,
    until: Until = None,
    lang: Annotated[str, typer.Option("--lang", help="zh or en.")] = "en",
) -> None:
    """Per staff member, the tickets opened in a period they handled: median and p90 first
    reply and resolution in business hours, SLA breaches, CSAT of their tickets."""
    tool = open_tool()
    now = tool.clock.now()
    end = until.replace(tzinfo=UTC) if until else now
    start = since.replace(tzinfo=UTC) if since else end - timedelta(days=30)
    if start >= end or lang not in LANGUAGES:
        problem = (
            f"--lang: expected one of {', '.join(LANGUAGES)}"
            if lang not in LANGUAGES
            else "--since must be before --until"
        )
        typer.echo(f"carebot: {problem}", err=True)
        raise typer.Exit(2)

    async def read() -> list[StaffFigures]:
        async with database(tool) as sessionmaker, sessionmaker() as session:
            return await load_staff(session, tool.rules, start, end, now)

    figures = asyncio.run(read())
    tr = Tr(load_catalogue(), lang, ZoneInfo("UTC"), tool.rules)
    table = new_table(
        title=tr("staff_title", since=f"{start:%Y-%m-%d %H:%M}", until=f"{end:%Y-%m-%d %H:%M} UTC")
    )
    for index, column in enumerate(STAFF_COLUMNS):
        table.add_column(tr(column), no_wrap=index == 0, justify="left" if index == 0 else "right")
    for row in figures:
        table.add_row(*staff_cells(tr, row))
    out.print(table if figures else tr("staff_none"))
    out.print(tr("staff_note"))
