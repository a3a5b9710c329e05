"""``carebot points …``: one customer's loyalty points for the operator (README: Loyalty
points). ``show`` prints the balance, what expires when, and every movement with its order or
coupon (and the order that used the coupon); ``adjust`` adds or takes points by hand, with a
reason, as a movement of the ledger; ``settle`` runs the points jobs once (after an import,
without waiting for the bot's next run). Only the database and the rule files are needed."""

from __future__ import annotations

import asyncio
from datetime import datetime

import typer

from bot.cli_customer import BY, Key, find_customer, not_found
from bot.cli_tools import Tool, database, open_tool
from handlers.loyalty.points import AdjustError, Programme, adjust, ledger_of
from scheduler import points as point_jobs
from storage.models import Customer
from storage.points import Movement

points_app = typer.Typer(
    help="Loyalty points: show a customer's ledger, adjust it, run the points jobs.",
    no_args_is_help=True,
)


def _day(programme: Programme, moment: datetime) -> str:
    return moment.astimezone(programme.zone).date().isoformat()


def _detail(programme: Programme, movement: Movement) -> str:
    """What a movement is about, for the operator."""
    parts = []
    if movement.order:
        parts.append(f"order {movement.order}")
    if movement.coupon:
        parts.append(f"coupon {movement.coupon}")
        if movement.coupon_used_by:
            parts.append(f"used by order {movement.coupon_used_by}")
        elif movement.coupon_valid_until:
            parts.append(f"unused, valid until {_day(programme, movement.coupon_valid_until)}")
    if movement.reason:
        parts.append(f"reason: {movement.reason}")
    if movement.points > 0 and movement.expires_at:
        parts.append(f"expires after {programme.last_day(movement.expires_at).isoformat()}")
    return ", ".join(parts)


async def _show(tool: Tool, customer: str, key: Key) -> list[str] | None:
    programme = Programme.from_config(tool.rules)
    now = tool.clock.now()
    async with database(tool) as sessions, sessions() as session:
        found = await find_customer(session, customer, key)
        if found is None:
            return None
        movements, ledger = await ledger_of(session, found.id)
    lines = [
        f"customer {found.id} (shop id {found.external_id or '-'}), tier {found.tier}: "
        f"{ledger.balance(now)} points"
    ]
    for moment, points in ledger.expiring(now).items():
        lines.append(f"  {points} expire after {programme.last_day(moment).isoformat()}")
    for movement in movements:
        lines.append(
            f"{_day(programme, movement.created_at)}  {movement.points:>+7}  "
            f"{movement.kind:<8} {_detail(programme, movement)}".rstrip()
        )
    if not movements:
        lines.append("no movements")
    return lines


@points_app.command("show")
def show(
    customer: str = typer.Argument(..., help="The customer (see --by)."),
    by: Key = BY,
) -> None:
    """Print the customer's balance, what expires when, and every movement."""
    tool = open_tool()
    lines = asyncio.run(_show(tool, customer, by))
    if lines is None:
        raise not_found(customer, by)
    typer.echo("\n".join(lines))


async def _adjust(
    tool: Tool, customer: str, key: Key, amount: int, reason: str
) -> tuple[Customer, int] | None:
    programme = Programme.from_config(tool.rules)
    async with database(tool) as sessions, sessions.begin() as session:
        found = await find_customer(session, customer, key)
        if found is None:
            return None
        balance = await adjust(session, programme, found, amount, reason, tool.clock.now())
    return found, balance


@points_app.command(
    "adjust", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": True}
)
def adjust_command(
    customer: str = typer.Argument(..., help="The customer (see --by)."),
    amount: str = typer.Argument(..., help="Points to add, or to take with a minus (-50)."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the ledger)."),
    by: Key = BY,
) -> None:
    """Add or take points by hand; the reason is kept with the movement."""
    tool = open_tool()
    text = amount.strip()
    if not text.lstrip("+-").isdigit() or len(text) > 10:
        typer.echo(f"carebot: AMOUNT: {text!r} is not a whole number (e.g. 200 or -50)", err=True)
        raise typer.Exit(2)
    try:
        done = asyncio.run(_adjust(tool, customer, by, int(text), reason))
    except AdjustError as error:
        typer.echo(f"carebot: {error}; nothing was changed", err=True)
        raise typer.Exit(2) from None
    if done is None:
        raise not_found(customer, by)
    found, balance = done
    typer.echo(f"customer {found.id}: {int(text):+d} points ({reason.strip()}); balance {balance}")


@points_app.command("settle")
def settle_command() -> None:
    """Run the points jobs once: earn, take back, welcome bonuses, expiry and reminders."""
    tool = open_tool()
    programme = Programme.from_config(tool.rules)

    async def work() -> tuple[point_jobs.SettleReport, point_jobs.ExpireReport]:
        now = tool.clock.now()
        async with database(tool) as sessions:
            async with sessions.begin() as session:
                settled = await point_jobs.settle(session, programme, now)
            async with sessions.begin() as session:
                expired = await point_jobs.expire(session, programme, now)
        return settled, expired

    settled, expired = asyncio.run(work())
    typer.echo(
        f"points: {settled.earned} order(s) earned, {settled.reversed} taken back, "
        f"{settled.welcomed} welcome bonus(es), {settled.coupons_used} coupon(s) used, "
        f"{expired.expired} expiry(ies) closed, {expired.reminders} reminder(s) queued"
    )
