"""``carebot tiers recompute [--full] [--rebuild]``, ``show CUSTOMER``, ``pin``, ``unpin``."""

from __future__ import annotations

import asyncio

import typer

from bot.cli_rich import LazyConsole, new_table
from bot.cli_texts import counted, zoned
from bot.cli_tools import Tool, database, money, open_tool
from bot.kernel.config import TierConfig
from scheduler import tiers as tier_job
from storage.models import Customer, RfmScore
from storage.tiers.cards import TierCard, find_customer, tier_card
from storage.tiers.pending import mark_pending
from storage.tiers.pins import pin_tier, unpin_tier
from storage.tiers.spec import RunSummary, day_of
from surveys.analytics import SatisfactionDrop, satisfaction_drops

tiers_app = typer.Typer(
    rich_markup_mode=None,
    help="RFM scores, tiers, lifecycle stages and churn signals.",
    no_args_is_help=True,
)
out = LazyConsole()

CUSTOMER_HELP = "The shop's customer id, tg:<Telegram user id> or id:<carebot id>."


@tiers_app.command("recompute")
def recompute(
    full: bool = typer.Option(
        False, "--full", help="New quintile boundaries and every customer (the nightly run)."
    ),
    rebuild: bool = typer.Option(
        False,
        "--rebuild",
        help="Also recompute every customer's order statistics (after a bulk load or a repair).",
    ),
) -> None:
    """Recompute tiers: by default only the customers whose orders changed."""
    tool = open_tool()

    async def run() -> RunSummary:
        async with database(tool) as sessionmaker, sessionmaker.begin() as session:
            return await tier_job.recompute(
                session, tool.rules.tiers, tool.clock.now(), full=full, rebuild=rebuild
            )

    summary = asyncio.run(run())
    if summary.run_id is None:
        typer.echo("tiers: no customer's orders changed since the last run; nothing to do")
        return
    kind = "rebuild" if rebuild else "full" if summary.full else "incremental"
    typer.echo(
        f"tiers: {kind} run #{summary.run_id} on {day_of(summary.day)}: "
        f"{counted('customers', summary.scored)} with orders scored, "
        f"{summary.refreshed} refreshed, {counted('tier_changes', summary.tier_changes)}, "
        f"{counted('customers', summary.customer_changes)} changed, {summary.duration_ms} ms"
    )


def _find(tool: Tool, reference: str) -> tuple[TierCard, SatisfactionDrop | None]:
    """The customer's tier card and their survey scores, recent against earlier (over the
    churn period; None without enough answers)."""

    async def read() -> tuple[TierCard | None, SatisfactionDrop | None]:
        async with database(tool) as sessionmaker, sessionmaker() as session:
            customer = await find_customer(session, reference)
            if customer is None:
                return None, None
            drops = await satisfaction_drops(
                session,
                now=tool.clock.now(),
                customer_ids=[customer.id],
                recent_days=tool.rules.tiers.churn.period_days,
            )
            return await tier_card(session, customer.id), drops.get(customer.id)

    card, drop = asyncio.run(read())
    if card is None:
        typer.echo(f"carebot: no customer {reference!r} ({CUSTOMER_HELP})", err=True)
        raise typer.Exit(1)
    return card, drop


def _who(customer: Customer) -> str:
    linked = (
        f"Telegram {customer.telegram_user_id}" if customer.telegram_user_id else "no Telegram"
    )
    shop = customer.external_id or "-"
    return f"{customer.name or '(no name)'} · shop id {shop} · carebot id {customer.id} · {linked}"


def _signal_text(signal: tier_job.ChurnSignal, period: int, currency: str) -> str:
    """One churn signal in words, with the numbers behind it (``period``: the churn period in
    days, the recent one compared with the one before)."""
    if signal.kind == "overdue":
        return (
            f"overdue: {signal.recent:g} days without an order (at risk after {signal.before:g})"
        )
    if signal.kind == "frequency":
        return (
            f"frequency falling: {signal.recent:g} orders in the last {period} days, "
            f"{signal.before:g} in the {period} before"
        )
    if signal.kind == "spend":
        return (
            f"spend falling: {money(int(signal.recent), currency)} in the last {period} "
            f"days, {money(int(signal.before), currency)} in the {period} before"
        )
    return (
        f"satisfaction falling: survey scores {signal.recent:.0f}/100 on average in "
        f"the last {period} days, {signal.before:.0f}/100 before"
    )


def _print_scores(
    rfm: RfmScore, rules: TierConfig, today: int, satisfaction: SatisfactionDrop | None
) -> None:
    """The customer's RFM scores with their numbers, their order history's figures and their
    churn signals (``today``: the shop's day number)."""
    currency = rules.orders.currency
    window = rules.scores.window_days
    table = new_table("", "value", "score", box=None, pad_edge=False)
    table.add_row(
        "recency",
        f"{today - rfm.last_day} days (last order {day_of(rfm.last_day)})",
        str(rfm.r_score),
    )
    table.add_row("frequency", f"{rfm.frequency} orders in {window} days", str(rfm.f_score))
    table.add_row(
        "monetary", f"{money(rfm.monetary_cents, currency)} in {window} days", str(rfm.m_score)
    )
    out.print(table)
    gap = f"{rfm.median_gap:g} days" if rfm.median_gap is not None else "-"
    out.print(
        f"{rfm.orders_total} counted orders since {day_of(rfm.first_day)}; "
        f"median gap {gap}; at risk after {rfm.at_risk_after or 0:g} days without an order"
    )
    signals = tier_job.churn_signals(rfm, today, satisfaction)
    for signal in signals:
        text = _signal_text(signal, rules.churn.period_days, currency)
        out.print(f"[yellow]churn signal[/yellow] {text}")
    if not signals:
        out.print("no churn signal")


def _print_history(card: TierCard, zone: str) -> None:
    """The last tiers run and the customer's latest tier changes (times in the shop's ``zone``)."""
    if card.last_run is not None:
        run = card.last_run
        out.print(
            f"last run #{run.id} ({'full' if run.full else 'incremental'}) on {day_of(run.day)}"
        )
    if card.history:
        history = new_table("when", "from", "to", "why", title="tier history", box=None)
        for change in card.history:
            history.add_row(
                zoned(change.changed_at, zone),
                change.old_tier or "-",
                change.new_tier,
                change.reason,
            )
        out.print(history)


@tiers_app.command("show")
def show(customer: str = typer.Argument(..., help=CUSTOMER_HELP)) -> None:
    """A customer's tier, stage, RFM scores with their numbers, churn signals and tier history."""
    tool = open_tool()
    card, satisfaction = _find(tool, customer)
    rules = tool.rules.tiers
    today = tier_job.shop_today(rules, tool.clock.now())
    who = card.customer
    pinned = " (pinned by staff)" if who.tier_pinned else ""
    out.print(f"[bold]{_who(who)}[/bold]")
    out.print(f"tier [bold]{who.tier}[/bold]{pinned} · stage [bold]{who.stage}[/bold]")
    if card.rfm is None:
        out.print("no counted orders yet (refunded and cancelled orders do not count)")
    else:
        _print_scores(card.rfm, rules, today, satisfaction)
    _print_history(card, tool.rules.general.customers.default_timezone)


@tiers_app.command("pin")
def pin(
    customer: str = typer.Argument(..., help=CUSTOMER_HELP),
    tier: str = typer.Argument(..., help="A tier named in tiers.toml."),
    why: str = typer.Option("by staff", "--why", help="Written to the tier history."),
) -> None:
    """Pin a customer's tier: recomputes leave it alone until it is unpinned."""
    tool = open_tool()
    names = [rule.name for rule in tool.rules.tiers.tiers]
    if tier not in names:
        typer.echo(
            f"carebot: unknown tier {tier!r} (expected one of {', '.join(names)})", err=True
        )
        raise typer.Exit(2)
    card, _ = _find(tool, customer)

    async def run() -> None:
        async with database(tool) as sessionmaker, sessionmaker.begin() as session:
            now = tool.clock.now()
            await pin_tier(session, card.customer.id, tier, now, why)
            await mark_pending(session, [card.customer.id], now)

    asyncio.run(run())
    typer.echo(f"{customer}: tier pinned to {tier}")


@tiers_app.command("unpin")
def unpin(customer: str = typer.Argument(..., help=CUSTOMER_HELP)) -> None:
    """Unpin a customer's tier: it goes back to what the rules give."""
    tool = open_tool()
    card, _ = _find(tool, customer)

    async def run() -> str | None:
        async with database(tool) as sessionmaker, sessionmaker.begin() as session:
            now = tool.clock.now()
            tier = await unpin_tier(session, card.customer.id, tool.rules.tiers.default_tier, now)
            await mark_pending(session, [card.customer.id], now)
            return tier

    tier = asyncio.run(run())
    typer.echo(f"{customer}: unpinned, tier {tier}")
