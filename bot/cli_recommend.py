"""``carebot recommend run`` (the nightly job, now) and ``carebot recommend show CUSTOMER``."""

from __future__ import annotations

import asyncio
from zoneinfo import ZoneInfo

import typer

from bot.cli_tools import database, open_tool
from scheduler import recommend as recommend_job
from storage.models import Product
from storage.recommend import RunSummary, recommended_products
from storage.tiers.cards import find_customer

recommend_app = typer.Typer(
    help="Products bought together, and what each customer is recommended.",
    no_args_is_help=True,
)


@recommend_app.command("run")
def run() -> None:
    """Compute pairs and every customer's recommendations now (the nightly job)."""
    tool = open_tool()
    zone = ZoneInfo(tool.rules.tiers.orders.timezone)

    async def compute() -> RunSummary:
        async with database(tool) as sessionmaker, sessionmaker.begin() as session:
            return await recommend_job.recompute(
                session, tool.rules.recommend, zone, tool.clock.now()
            )

    summary = asyncio.run(compute())
    typer.echo(
        f"recommendations: run #{summary.run_id}: {summary.lines} order line(s), "
        f"{summary.pairs} pair(s), {summary.customers} customer(s) with a list, "
        f"{summary.duration_ms} ms"
    )


@recommend_app.command("show")
def show(
    customer: str = typer.Argument(
        ..., help="The shop's customer id, tg:<Telegram user id> or id:<carebot id>."
    ),
) -> None:
    """A customer's recommended products, best first (sku, names, link)."""
    tool = open_tool()

    async def read() -> list[Product] | None:
        async with database(tool) as sessionmaker, sessionmaker() as session:
            found = await find_customer(session, customer)
            if found is None:
                return None
            return (await recommended_products(session, [found.id]))[found.id]

    products = asyncio.run(read())
    if products is None:
        typer.echo(f"carebot: no customer {customer!r}", err=True)
        raise typer.Exit(1)
    if not products:
        typer.echo("no recommendations (no order lines yet, or the job has not run)")
    for rank, product in enumerate(products, start=1):
        names = f"{product.name_en} / {product.name_zh}"
        typer.echo(f"{rank}. {product.sku}  {names}  {product.url or ''}".rstrip())
