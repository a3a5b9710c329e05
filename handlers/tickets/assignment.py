"""Who works a ticket, per staff group (``tickets.toml`` ``[groups.<name>]``, ``[[staff]]``):
auto-assignment among the staff on duty (``/duty on|off``, within their duty hours when the
rule file gives them some) when a ticket arrives, round robin
or to the one with the fewest open tickets, preferring those whose skills (categories,
languages) fit; the reassignment once a first-reply deadline passes unanswered, with the
group's leads called; and what an agent may not do (assign to someone else, take over
another's ticket), which a lead may."""

from __future__ import annotations

import html
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot.kernel.texts import Markup
from handlers.tickets.closed_hours import staff_when
from handlers.tickets.desk import TEXT, Desk, Staff, StaffReply
from handlers.tickets.lanes import pump, push_delivery, record_event
from storage.models import Customer, StaffMember, Ticket
from storage.tickets import lanes
from storage.tickets.duty import mark_assigned, on_duty, open_tickets_of, set_duty

ROUND_ROBIN = "round_robin"
LEAST_OPEN = "least_open"
MANUAL = "manual"
ALWAYS = timedelta(days=7)
"""Duty hours running this long without a break are not said to end."""


def duty_window(
    desk: Desk, user_id: int, group: str, now: datetime
) -> tuple[bool, datetime | None]:
    """Whether a member who said ``/duty on`` in ``group`` is on duty at ``now`` (within their
    ``[[staff]]`` hours, or they have none), and when that changes: the end of their hours
    (on) or their next beginning (off); None: it does not (no hours, or hours all week)."""
    hours = desk.duty_hours_of(user_id, group)
    if hours is None:
        return True, None
    begins = hours.next_open(now)
    if begins > now:
        return False, begins
    ends = hours.open_until(now)
    return True, ends if ends - now < ALWAYS else None


async def duty_roll(session: AsyncSession, desk: Desk, group: str, now: datetime) -> StaffReply:
    """A bare ``/duty``: who is on duty in ``group`` now (and until when their hours run), then
    those who said ``/duty on`` but are outside their hours (and when these begin)."""
    zone = desk.group_zone(group)
    current: list[str] = []
    waiting: list[str] = []
    for row in await on_duty(session, group):
        on, edge = duty_window(desk, row.user_id, group, now)
        name = html.escape(row.name)
        if edge is None:
            current.append(name)
            continue
        key = "duty_member_until" if on else "duty_member_from"
        line = desk.staff_text(key, name=Markup(name), when=staff_when(desk, edge, now, zone))
        (current if on else waiting).append(line)
    if current:
        text = desk.staff_text("duty_list", group=group, names=Markup(", ".join(current)))
    else:
        text = desk.staff_text("duty_nobody", group=group)
    if waiting:
        text += "\n" + desk.staff_text("duty_waiting", names=Markup(", ".join(waiting)))
    return StaffReply(text)


async def sign_on(
    session: AsyncSession, desk: Desk, group: str, staff: Staff, on: bool, now: datetime
) -> StaffReply:
    """``/duty on|off``: recorded; the answer says when duty hours make ``on`` start later."""
    await set_duty(
        session, group=group, user_id=staff.user_id, name=staff.name, on_duty=on, now=now
    )
    if on:
        now_on, begins = duty_window(desk, staff.user_id, group, now)
        if not now_on and begins is not None:
            when = staff_when(desk, begins, now, desk.group_zone(group))
            return StaffReply(
                desk.staff_text("duty_on_later", name=staff.name, group=group, when=when)
            )
    return StaffReply(
        desk.staff_text("duty_on" if on else "duty_off", name=staff.name, group=group)
    )


async def pick_assignee(
    session: AsyncSession,
    desk: Desk,
    ticket: Ticket,
    language: str,
    now: datetime,
    *,
    exclude: int | None = None,
) -> Staff | None:
    """The on-duty member of the ticket's group who gets it (``exclude``: not them), per the
    group's ``assign``; members whose skills fit first; members outside their duty hours never.
    None: manual, or nobody on duty."""
    mode = desk.rules.group_rules(ticket.staff_group).assign
    if mode == MANUAL:
        return None
    group = ticket.staff_group
    duty = [
        row
        for row in await on_duty(session, group, lock=True)
        if row.user_id != exclude and duty_window(desk, row.user_id, group, now)[0]
    ]
    skilled = [
        row
        for row in duty
        if (member := desk.rules.member(row.user_id)) is None
        or member.can_take(ticket.category, language)
    ]
    pool = skilled or duty
    if not pool:
        return None
    chosen = pool[0]  # round robin: the one served longest ago
    if mode == LEAST_OPEN:
        counts = await open_tickets_of(session, [row.user_id for row in pool])
        chosen = min(pool, key=lambda row: counts.get(row.user_id, 0))  # ties: round robin
    await mark_assigned(session, ticket.staff_group, chosen.user_id)
    return Staff(chosen.user_id, chosen.name)


async def assign_on_arrival(
    session: AsyncSession, desk: Desk, ticket: Ticket, language: str, now: datetime
) -> None:
    """A new ticket in a group that assigns by itself: its assignee, mentioned in the topic
    (or a line saying nobody is on duty there)."""
    if desk.rules.group_rules(ticket.staff_group).assign == MANUAL:
        return
    chosen = await pick_assignee(session, desk, ticket, language, now)
    if chosen is None:
        await _topic_line(session, ticket, desk.staff_text("ticket_nobody_on_duty"), now)
        return
    await _give(session, ticket, chosen, now)
    await _topic_line(
        session, ticket, desk.staff_text("ticket_auto_assigned", name=Markup(chosen.mention)), now
    )


async def missed_first_reply(
    session: AsyncSession, desk: Desk, ticket: Ticket, now: datetime
) -> str:
    """The first-reply deadline passed unanswered (once per ticket): another member on duty
    gets it (said in the topic) when the group says so; returns the mentions of the group's
    leads for the escalation ("" when none are called)."""
    rules = desk.rules.group_rules(ticket.staff_group)
    if rules.reassign_missed_first_reply and rules.assign != MANUAL:
        customer = await session.get(Customer, ticket.customer_id)
        language = customer.language if customer is not None else ""
        before = ticket.assignee_name or desk.staff_text("ticket_nobody")
        chosen = await pick_assignee(
            session, desk, ticket, language, now, exclude=ticket.assignee_user_id
        )
        if chosen is not None:
            await _give(session, ticket, chosen, now)
            text = desk.staff_text(
                "ticket_reassigned_missed", before=before, name=Markup(chosen.mention)
            )
            await _topic_line(session, ticket, text, now)
            await pump(session, desk, ticket, lanes.TOPIC, now)
    if not rules.escalate_to_leads:
        return ""
    group = ticket.staff_group
    return ", ".join([await _mention(session, user) for user in desk.rules.leads_of(group)])


def refuse_agent(
    desk: Desk, ticket: Ticket, staff: Staff, assignee_id: int | None
) -> StaffReply | None:
    """An agent's ``/assign`` to someone else, or taking (``/claim``, ``/assign`` to
    themselves) a ticket someone else has: refused, saying why. Leads may; None: allowed."""
    if desk.rules.role_of(staff.user_id) != "agent":
        return None
    if assignee_id is not None and assignee_id != staff.user_id:
        return StaffReply(desk.staff_text("ticket_agent_assign_refused"))
    if ticket.assignee_user_id is not None and ticket.assignee_user_id != staff.user_id:
        name = ticket.assignee_name or str(ticket.assignee_user_id)
        return StaffReply(desk.staff_text("ticket_agent_takeover_refused", name=name))
    return None


async def _give(session: AsyncSession, ticket: Ticket, chosen: Staff, now: datetime) -> None:
    ticket.assignee_user_id, ticket.assignee_name = chosen.user_id, chosen.name
    ticket.updated_at = now
    await record_event(session, ticket, f"auto_assigned:{chosen.user_id}", now)


async def _topic_line(session: AsyncSession, ticket: Ticket, text: str, now: datetime) -> None:
    """A line in the ticket's topic, in order (the caller pumps the lane)."""
    await push_delivery(session, ticket, lanes.TOPIC, TEXT, now, payload={"html": text})


async def _mention(session: AsyncSession, user_id: int) -> str:
    """A staff member mentioned by id (their name as last seen in a staff group)."""
    member = await session.get(StaffMember, user_id)
    name = member.name if member is not None else str(user_id)
    return f'<a href="tg://user?id={user_id}">{html.escape(name)}</a>'
