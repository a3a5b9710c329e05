"""The out-of-hours reply: a customer who writes into a ticket, or is handed to a person, while
the ticket's staff group is closed (``tickets.toml`` ``[groups.<name>.hours]``, else ``[hours]``)
is told once per ticket and closed period when that team is back, in their own time zone and
language.

The reopening announced is kept on the ticket (``after_hours_until``), in the transaction that
queues the reply, so a second message in the same closed period, or the same one replayed after
a crash or a restart, says nothing more.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from bot.kernel.clock import LocalZones
from bot.kernel.texts import Markup
from handlers.tickets.desk import NOTICE, Desk
from handlers.tickets.lanes import pump, push_delivery
from storage.models import Customer, Ticket
from storage.tickets import lanes

AFTER_HOURS = "ticket_after_hours"


def reopening_text(reopens: datetime, now: datetime, zone: ZoneInfo) -> dict[str, Any]:
    """When the desk opens, as a catalogue text (the outbox's JSON form) in ``zone``: "today
    at 14:00", "tomorrow at 9:00", "on Monday at 9:00", or with the date a week or more
    ahead."""
    local, today = reopens.astimezone(zone), now.astimezone(zone).date()
    params: dict[str, Any] = {
        "time": f"{local.hour}:{local.minute:02d}",
        "weekday": {"key": f"weekday_{local.weekday()}"},
    }
    days = (local.date() - today).days
    if days <= 0:
        return {"key": "hours_when_today", "params": params}
    if days == 1:
        return {"key": "hours_when_tomorrow", "params": params}
    if days < 7:
        return {"key": "hours_when_weekday", "params": params}
    params.update(day=local.day, month={"key": f"month_{local.month}"})
    return {"key": "hours_when_date", "params": params}


def staff_when(desk: Desk, moment: datetime, now: datetime, zone: ZoneInfo) -> str:
    """``reopening_text`` rendered for staff, in the staff language ("tomorrow at 9:00")."""
    ref = reopening_text(moment, now, zone)
    params = {
        name: desk.staff_text(value["key"]) if isinstance(value, dict) else value
        for name, value in ref["params"].items()
    }
    return Markup(desk.staff_text(ref["key"], **params))


async def tell_when_open(
    session: AsyncSession,
    desk: Desk,
    ticket: Ticket,
    customer: Customer,
    now: datetime,
) -> bool:
    """Queue the out-of-hours reply on the ticket's customer lane if the ticket's group is
    closed at ``now`` and the customer was not told of this reopening yet; True if queued.
    ``ticket`` is locked by the caller."""
    hours = desk.hours_of(ticket.staff_group)
    if hours.always_open:
        return False
    reopens = hours.next_open(now)
    if reopens == now or ticket.after_hours_until == reopens:
        return False
    ticket.after_hours_until = reopens
    zone = LocalZones(desk.customer_zone).get(customer.timezone)
    await push_delivery(
        session,
        ticket,
        lanes.CUSTOMER,
        NOTICE,
        now,
        payload={"key": AFTER_HOURS, "params": {"when": reopening_text(reopens, now, zone)}},
    )
    await pump(session, desk, ticket, lanes.CUSTOMER, now)
    return True
