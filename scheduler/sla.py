"""The SLA planner: reminders before a ticket's deadlines, escalations after them.

A periodic job (``tickets.sla``, every ``sla.check_seconds``) looks at the open tickets whose
first-reply or resolution deadline (set from the customer's tier when the ticket opened, see
``tickets.toml``) is within ``sla.remind_before_minutes``:

- before the deadline, a reminder goes into the ticket's topic, mentioning the assignee;
- once it has passed, an escalation goes into the staff group's General topic.

Each is recorded on the ticket (``*_reminded_at``, ``*_escalated_at``) in the transaction that
queues it, and escalations carry a dedupe key, so the planner is safe to run twice, on two
machines or after a crash. The same job closes tickets that staff marked resolved and the
customer never confirmed (``reopen.auto_close_resolved_hours``), and resumes a ticket's lane whose
outbox row ended without its outcome hook (one that raised, or a row an operator cancelled).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.kernel.texts import Markup
from handlers.tickets.assignment import missed_first_reply
from handlers.tickets.desk import KIND_ESCALATION, STRANDED_AFTER, Desk, Staff, tier_label
from handlers.tickets.lifecycle import push_topic_text, refresh_card, ticket_closed
from handlers.tickets.outcomes import recover_one, resume_lane
from scheduler.wiring import PeriodicJob
from storage import outbox as outbox_queries
from storage.failures import FailureReader
from storage.models import Ticket
from storage.outbox import Priority
from storage.payloads import ReadyText
from storage.tickets.lanes import idle_lanes, stranded_deliveries
from storage.tickets.rows import lock_ticket
from storage.tickets.sla import first_response_candidates, resolution_candidates, resolved_before
from storage.tickets.statuses import RESOLVED, SLA_RUNNING

logger = logging.getLogger(__name__)

FIRST_RESPONSE = "first_response"
RESOLUTION = "resolution"


@dataclass
class SlaRun:
    """What one tick did (tests and the logs read it)."""

    reminders: int = 0
    escalations: int = 0
    closed: int = 0
    recovered: int = 0


def topic_link(staff_chat_id: int, thread_id: int | None) -> str | None:
    """``https://t.me/c/…/…`` for a topic of a supergroup (staff open it with one tap)."""
    text = str(staff_chat_id)
    if thread_id is None or not text.startswith("-100"):
        return None
    return f"https://t.me/c/{text[4:]}/{thread_id}"


def _assignee(desk: Desk, ticket: Ticket) -> str:
    if ticket.assignee_user_id is None:
        return desk.staff_text("ticket_sla_unassigned")
    name = ticket.assignee_name or str(ticket.assignee_user_id)
    staff = Staff(ticket.assignee_user_id, name)
    return staff.mention


async def _remind(
    session: AsyncSession, desk: Desk, ticket: Ticket, kind: str, due: datetime, now: datetime
) -> None:
    minutes = max(0, int((due - now).total_seconds() // 60))
    text = desk.staff_text(
        f"ticket_sla_reminder_{kind}",
        mention=Markup(_assignee(desk, ticket)),
        due=desk.when(due, ticket.staff_group),
        minutes=minutes,
    )
    await push_topic_text(session, desk, ticket, text, now)


async def _escalate(
    session: AsyncSession, desk: Desk, ticket: Ticket, kind: str, due: datetime, now: datetime
) -> None:
    leads = ""
    if kind == FIRST_RESPONSE:  # reassigned (once) where the group says so; its leads called
        leads = await missed_first_reply(session, desk, ticket, now)
        await refresh_card(session, desk, ticket, now)
    chat_id = desk.topic_chat(ticket)  # the ticket's group's General topic
    if chat_id is None:
        return
    link = topic_link(chat_id, ticket.topic_thread_id)
    text = desk.staff_text(
        f"ticket_sla_escalation_{kind}",
        number=ticket.number,
        tier=tier_label(desk, ticket.tier),
        due=desk.when(due, ticket.staff_group),
        assignee=Markup(_assignee(desk, ticket)),
        link=Markup(desk.staff_text("ticket_sla_link", url=link) if link else ""),
    )
    if leads:
        text += "\n" + desk.staff_text("ticket_sla_escalation_leads", leads=Markup(leads))
    await outbox_queries.enqueue(
        session,
        dedupe_key=f"tk-sla:{ticket.id}:{kind}:{due.isoformat()}",
        chat_id=chat_id,
        kind=KIND_ESCALATION,
        payload=ReadyText(text, html=True),
        due_at=now,
        now=now,
        priority=Priority.NOTICE,
    )


async def _check(
    session: AsyncSession, desk: Desk, ticket: Ticket, kind: str, now: datetime, run: SlaRun
) -> None:
    """Remind or escalate one deadline of one (locked) ticket, if it is time and not done."""
    if ticket.status not in SLA_RUNNING:
        return
    if kind == FIRST_RESPONSE:
        if ticket.first_response_at is not None:
            return
        due = ticket.first_response_due
        reminded, escalated = ticket.first_response_reminded_at, ticket.first_response_escalated_at
    else:
        due = ticket.resolution_due
        reminded, escalated = ticket.resolution_reminded_at, ticket.resolution_escalated_at
    remind_before = timedelta(minutes=desk.rules.sla.remind_before_minutes)
    if now >= due:
        if escalated is not None:
            return
        await _escalate(session, desk, ticket, kind, due, now)
        run.escalations += 1
        escalated = now
        reminded = reminded or now  # a late tick does not remind after escalating
    elif now >= due - remind_before and reminded is None:
        await _remind(session, desk, ticket, kind, due, now)
        run.reminders += 1
        reminded = now
    else:
        return
    if kind == FIRST_RESPONSE:
        ticket.first_response_reminded_at, ticket.first_response_escalated_at = reminded, escalated
    else:
        ticket.resolution_reminded_at, ticket.resolution_escalated_at = reminded, escalated


async def plan(
    sessionmaker: async_sessionmaker[AsyncSession],
    desk: Desk,
    now: datetime,
    read_failure: FailureReader,
) -> SlaRun:
    """One tick: reminders, escalations and auto-closes due at ``now``; a short transaction
    per ticket. ``read_failure`` reads a stranded row's stored error back (``_recover``)."""
    run = SlaRun()
    horizon = now + timedelta(minutes=desk.rules.sla.remind_before_minutes)
    auto_close = now - timedelta(hours=desk.rules.reopen.auto_close_resolved_hours)
    async with sessionmaker() as session:
        work = [
            (ticket_id, FIRST_RESPONSE)
            for ticket_id in await first_response_candidates(session, now=now, horizon=horizon)
        ]
        work += [
            (ticket_id, RESOLUTION)
            for ticket_id in await resolution_candidates(session, now=now, horizon=horizon)
        ]
        closing = await resolved_before(session, auto_close)
    for ticket_id, kind in work:
        async with sessionmaker.begin() as session:
            ticket = await lock_ticket(session, ticket_id)
            if ticket is not None:
                await _check(session, desk, ticket, kind, now, run)
    for ticket_id in closing:
        async with sessionmaker.begin() as session:
            ticket = await lock_ticket(session, ticket_id)
            if ticket is None or ticket.status != RESOLVED or ticket.resolved_at is None:
                continue
            if ticket.resolved_at > auto_close:
                continue
            await ticket_closed(session, desk, ticket, now, "ticket_auto_closed")
            run.closed += 1
    run.recovered = await _recover(sessionmaker, desk, now, read_failure)
    if run.reminders or run.escalations or run.closed or run.recovered:
        logger.info(
            "sla: %d reminders, %d escalations, %d tickets closed unconfirmed, %d lanes resumed",
            run.reminders,
            run.escalations,
            run.closed,
            run.recovered,
        )
    return run


async def _recover(
    sessionmaker: async_sessionmaker[AsyncSession],
    desk: Desk,
    now: datetime,
    read_failure: FailureReader,
) -> int:
    """Resume ticket lanes whose outbox row ended without its outcome hook (see
    ``recover_one``), then those with deliveries queued and none in the outbox
    (``idle_lanes``); the same job, so nothing waits forever."""
    async with sessionmaker() as session:
        stranded = await stranded_deliveries(session, before=now - STRANDED_AFTER)
    recovered = 0
    for delivery, row in stranded:
        async with sessionmaker.begin() as session:
            if await recover_one(session, desk, delivery.id, row, now, read_failure):
                recovered += 1
    async with sessionmaker() as session:
        idle = await idle_lanes(session, before=now - STRANDED_AFTER)
    for ticket_id, lane in idle:
        async with sessionmaker.begin() as session:
            if await resume_lane(session, desk, ticket_id, lane, now):
                recovered += 1
    if recovered:
        logger.warning("sla: %d ticket deliveries ended without their hook; resumed", recovered)
    return recovered


def sla_jobs(
    sessionmaker: async_sessionmaker[AsyncSession], desk: Desk, read_failure: FailureReader
) -> list[PeriodicJob]:
    """The periodic SLA job for ``scheduler.wiring`` (beside the outbox's jobs);
    ``read_failure`` is the dispatcher's (``scheduler.dispatcher.telegram.stored_failure``)."""

    async def tick(now: datetime) -> SlaRun:
        return await plan(sessionmaker, desk, now, read_failure)

    return [PeriodicJob("tickets.sla", timedelta(seconds=desk.rules.sla.check_seconds), tick)]
