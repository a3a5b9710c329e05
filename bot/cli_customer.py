"""``carebot customer …``: a customer's right of access and right to be forgotten, for the
operator: ``export`` prints everything stored about one customer as JSON, ``forget`` erases it
as ``/forget`` does (the running bot renames their topics to the ticket number through the
outbox). Only the database and the rule files are needed."""

from __future__ import annotations

import asyncio
import json
from enum import StrEnum

import typer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.cli_tools import Tool, database, open_tool, or_exit
from bot.kernel.texts import Texts
from handlers.onboarding import privacy
from handlers.staff.setup import load_stored_group
from handlers.tickets.lifecycle import TicketDesk
from storage.models import Customer

customer_app = typer.Typer(
    rich_markup_mode=None,
    help="One customer's data: export it, or erase it (as /forget does).",
    no_args_is_help=True,
)


class Key(StrEnum):
    """How the customer is named on the command line."""

    ID = "id"
    TELEGRAM = "telegram"
    SHOP = "shop"


KEY_HELP = "What CUSTOMER is: carebot's customer id, their Telegram user id, or the shop's id."
BY = typer.Option(Key.ID, "--by", help=KEY_HELP)


async def find_customer(session: AsyncSession, customer: str, key: Key) -> Customer | None:
    """The customer named ``customer`` on the command line (see ``--by``); None if none."""
    if key is Key.SHOP:
        where = Customer.external_id == customer
    elif not customer.lstrip("-").isdigit():
        return None
    elif key is Key.TELEGRAM:
        where = Customer.telegram_user_id == int(customer)
    else:
        where = Customer.id == int(customer)
    return (await session.execute(select(Customer).where(where))).scalar_one_or_none()


def not_found(customer: str, key: Key) -> typer.Exit:
    typer.echo(f"carebot: no customer with {key.value} {customer}", err=True)
    return typer.Exit(2)


@customer_app.command("export")
def export(
    customer: str = typer.Argument(..., help="The customer (see --by)."),
    by: Key = BY,
) -> None:
    """Print everything stored about the customer as JSON, table by table."""
    tool = open_tool()

    async def work() -> dict[str, object] | None:
        async with database(tool) as sessions, sessions() as session:
            found = await find_customer(session, customer, by)
            return None if found is None else await privacy.export_customer(session, found.id)

    record = asyncio.run(work())
    if record is None:
        raise not_found(customer, by)
    typer.echo(json.dumps(record, ensure_ascii=False, indent=2, default=str))


@customer_app.command("forget")
def forget(
    customer: str = typer.Argument(..., help="The customer (see --by)."),
    by: Key = BY,
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
) -> None:
    """Erase the customer's personal data everywhere, as /forget does; counts stay anonymous."""
    tool = open_tool()
    texts = or_exit(Texts.load)
    if not yes:
        typer.confirm(f"Erase everything carebot keeps about customer {customer}?", abort=True)
    erased = asyncio.run(_forget(tool, texts, customer, by))
    if erased is None:
        raise not_found(customer, by)
    typer.echo(f"customer {erased} erased")


async def _forget(tool: Tool, texts: Texts, customer: str, key: Key) -> int | None:
    desk = TicketDesk.from_config(tool.rules, texts, tool.settings.staff_chat_id)
    async with database(tool) as sessions:
        async with sessions.unit() as unit:
            found = await find_customer(unit.session, customer, key)
            if found is None:
                return None
            await load_stored_group(unit.session, desk.group)  # its topics are renamed there
            await privacy.erase_customer(unit.session, desk, found, tool.clock.now())
        for action in unit.after_commit:
            await action()
    return found.id
