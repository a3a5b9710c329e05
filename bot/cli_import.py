"""``carebot import customers|orders|products|order-lines FILE`` and ``carebot import
link-codes OUT``.

A file is validated whole before anything is written; a file with any bad row is rejected with
every problem as ``file:line:column: what was wrong`` and exit code 1, and nothing is imported.
After an orders import the customers whose orders changed are recomputed (incremental run).
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from pathlib import Path

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from bot import catalog_import, importer
from bot.cli_rich import LazyConsole
from bot.cli_texts import counted
from bot.cli_tools import Tool, database, open_tool
from scheduler import tiers as tier_job
from storage import linking as link_queries
from storage.orders import ImportCounts
from storage.tiers.spec import RunSummary

PROGRESS_FROM_LINES = 5_000

import_app = typer.Typer(
    rich_markup_mode=None,
    help="Import customers, orders, products and order lines from the shop's CSV exports.",
    no_args_is_help=True,
)
err = LazyConsole(stderr=True)

FileArgument = typer.Argument(
    ..., exists=True, dir_okay=False, readable=True, help="CSV file (UTF-8, comma or tab)"
)

ImportStep = Callable[[AsyncSession, importer.ImportProgress | None], Awaitable[ImportCounts]]


async def _run_import(tool: Tool, path: Path, step: ImportStep) -> ImportCounts:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    lines = importer.count_lines(path)
    bar = (
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err.console,
            transient=True,
        )
        if lines > PROGRESS_FROM_LINES
        else None
    )
    progress = None
    if bar is not None:
        reading = bar.add_task(f"checking {path.name}", total=lines - 1)
        writing = bar.add_task("writing", total=lines - 1)
        progress = importer.ImportProgress(
            read=lambda rows: bar.advance(reading, rows),
            written=lambda rows: bar.advance(writing, rows),
        )
    async with database(tool) as sessionmaker:
        with bar if bar is not None else nullcontext():
            async with sessionmaker.begin() as session:
                return await step(session, progress)


def _reject(error: importer.ImportRejected, path: Path) -> None:
    for problem in error.problems:
        typer.echo(str(problem), err=True)
    lines = len({problem.line for problem in error.problems})
    typer.echo(f"{path}: rejected ({counted('bad_lines', lines)}); nothing was imported", err=True)
    raise typer.Exit(1)


def _summary(path: Path, counts: ImportCounts) -> str:
    return (
        f"{path}: {counts.rows} rows: {counts.inserted} new, {counts.updated} changed, "
        f"{counts.unchanged} unchanged"
    )


def _import_file(tool: Tool, path: Path, step: ImportStep) -> ImportCounts:
    """Run ``step`` over ``path`` in one transaction; a rejected file prints its problems and
    exits 1 with nothing imported."""
    try:
        return asyncio.run(_run_import(tool, path, step))
    except importer.ImportRejected as error:
        _reject(error, path)
        raise  # not reached: _reject exits


@import_app.command("products")
def import_products(file: Path = FileArgument) -> None:
    """Add or update products by sku (columns sku, name_zh, name_en, category, url, active)."""
    tool = open_tool()

    async def step(
        session: AsyncSession, progress: importer.ImportProgress | None
    ) -> ImportCounts:
        return await catalog_import.import_products(session, file, tool.clock.now(), progress)

    typer.echo(_summary(file, _import_file(tool, file, step)))


@import_app.command("order-lines")
def import_order_lines(file: Path = FileArgument) -> None:
    """Add or update order lines (order_id, sku, quantity, unit_price); orders and products
    first. The file is the truth for the orders it names: their other lines are removed."""
    tool = open_tool()

    async def step(
        session: AsyncSession, progress: importer.ImportProgress | None
    ) -> ImportCounts:
        return await catalog_import.import_order_lines(
            session, file, tool.rules.tiers.orders, tool.clock.now(), progress
        )

    counts = _import_file(tool, file, step)
    typer.echo(f"{_summary(file, counts)}; {counts.removed} line(s) no longer in their order")


@import_app.command("customers")
def import_customers(file: Path = FileArgument) -> None:
    """Add or update customers by customer_id (re-importing the same file changes nothing)."""
    tool = open_tool()

    async def step(
        session: AsyncSession, progress: importer.ImportProgress | None
    ) -> ImportCounts:
        return await importer.import_customers(
            session, file, tool.rules.tiers.orders, tool.rules.general, tool.clock.now(), progress
        )

    try:
        counts = asyncio.run(_run_import(tool, file, step))
    except importer.ImportRejected as error:
        _reject(error, file)
    typer.echo(_summary(file, counts))


@import_app.command("orders")
def import_orders(
    file: Path = FileArgument,
    recompute: bool = typer.Option(
        True, "--recompute/--no-recompute", help="Recompute the tiers of the changed customers."
    ),
) -> None:
    """Add or update orders by order_id; customers must have been imported first."""
    tool = open_tool()

    async def step(
        session: AsyncSession, progress: importer.ImportProgress | None
    ) -> ImportCounts:
        return await importer.import_orders(
            session, file, tool.rules.tiers.orders, tool.clock.now(), progress
        )

    try:
        counts = asyncio.run(_run_import(tool, file, step))
    except importer.ImportRejected as error:
        _reject(error, file)
    typer.echo(
        f"{_summary(file, counts)}; {counted('customers', counts.customers_queued)} to recompute"
    )
    if recompute and counts.customers_queued:

        async def run() -> RunSummary:
            async with database(tool) as sessionmaker, sessionmaker.begin() as session:
                return await tier_job.recompute(session, tool.rules.tiers, tool.clock.now())

        summary = asyncio.run(run())
        typer.echo(
            f"tiers: {'full' if summary.full else 'incremental'} run, {summary.scored} scored, "
            f"{counted('tier_changes', summary.tier_changes)}, {summary.duration_ms} ms"
        )


@import_app.command("link-codes")
def link_codes(
    output: Path = typer.Argument(..., dir_okay=False, help="CSV file to write"),  # noqa: B008
    bot_username: str = typer.Option(
        "", "--bot", help="The bot's username, to write ready deep links (t.me/<bot>?start=)."
    ),
) -> None:
    """Write the one-time link codes of imported customers who are not on Telegram yet.

    Send each customer their link: opening it starts the bot and links their orders.
    """
    tool = open_tool()

    async def read() -> list[tuple[str, str | None, str | None, str]]:
        async with database(tool) as sessionmaker, sessionmaker() as session:
            return await link_queries.unlinked_codes(session)

    rows = asyncio.run(read())
    with output.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer_id", "name", "phone", "link_code", "link"])
        for external_id, name, phone, code in rows:
            link = f"https://t.me/{bot_username.lstrip('@')}?start={code}" if bot_username else ""
            writer.writerow([external_id, name or "", phone or "", code, link])
    typer.echo(f"{output}: {counted('link_codes', len(rows))}")
