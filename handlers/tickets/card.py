"""What staff read about a ticket: the customer card (who they are, what they bought, their
tickets and survey scores), its buttons, and a summary of the history for a recreated topic."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from bot.kernel.config import PRIORITIES, readable_name
from bot.kernel.texts import Markup
from handlers.tickets.desk import (
    CB_TICKET,
    SUMMARY_TEXT,
    Desk,
    StaffReply,
    card_status_label,
    category_label,
    dimension_label,
    priority_label,
    stage_label,
    status_label,
    tier_label,
)
from storage import points as point_queries
from storage.models import Customer, Ticket
from storage.payloads import OutboxButton
from storage.tickets.messages import EVENT, IN, NOTE, QUEUED, recent_messages
from storage.tickets.purchases import order_summary
from storage.tickets.rows import recent_tickets
from storage.tickets.statuses import CLOSED, RESOLVED
from surveys import queries as survey_queries


def _money(desk: Desk, cents: int) -> str:
    return f"{cents / 100:,.2f} {desk.currency}"


async def card_text(session: AsyncSession, desk: Desk, ticket: Ticket) -> str:
    """The customer card: who they are, what they bought, their tickets; then this ticket."""
    customer = await session.get(Customer, ticket.customer_id)
    orders = await order_summary(session, ticket.customer_id)
    earlier = await recent_tickets(session, ticket.customer_id, limit=5, exclude=ticket.id)
    language = customer.language if customer else desk.staff_language
    lines = [
        desk.staff_text(
            "ticket_card_head",
            number=ticket.number,
            category=category_label(desk, ticket.category, desk.staff_language),
            status=card_status_label(desk, ticket.status),
        ),
        desk.staff_text(
            "ticket_card_work",
            priority=priority_label(desk, ticket.priority),
            assignee=ticket.assignee_name or desk.staff_text("ticket_nobody"),
        ),
        desk.staff_text(
            "ticket_card_sla",
            first_response=desk.when(ticket.first_response_due, ticket.staff_group),
            resolution=desk.when(ticket.resolution_due, ticket.staff_group),
        ),
    ]
    if ticket.order_ref:
        lines.append(desk.staff_text("ticket_card_order", order=ticket.order_ref))
    if ticket.subject:
        lines.append(desk.staff_text("ticket_card_subject", subject=ticket.subject))
    lines.append(
        desk.staff_text(
            "ticket_card_customer",
            name=(customer.name if customer else None) or desk.staff_text("ticket_anonymous"),
            language=desk.texts.render(language, "language_name"),
            tier=tier_label(desk, ticket.tier),
            stage=stage_label(desk, customer.stage if customer else None),
        )
    )
    lines.append(
        desk.staff_text(
            "ticket_card_orders", count=orders.count, spend=_money(desk, orders.spend_cents)
        )
    )
    if desk.points and customer is not None:
        balance = await point_queries.total(session, customer.id)
        lines.append(desk.staff_text("ticket_card_points", balance=balance))
    if earlier:
        items = ", ".join(
            desk.staff_text(
                "ticket_card_ticket_item",
                number=other.number,
                status=status_label(desk, other.status),
                date=desk.when(other.opened_at)[:10],
            )
            for other in earlier
        )
        lines.append(desk.staff_text("ticket_card_tickets", tickets=Markup(items)))
    else:
        lines.append(desk.staff_text("ticket_card_no_tickets"))
    lines.append(await _survey_scores(session, desk, ticket.customer_id))
    return "\n".join(lines)


async def _survey_scores(session: AsyncSession, desk: Desk, customer_id: int) -> str:
    """The card's line of the customer's latest survey scores."""
    scores = await survey_queries.card_scores(session, customer_id)
    if not scores:
        return desk.staff_text("survey_card_no_scores")
    items = ", ".join(
        desk.staff_text(
            "survey_card_score_item",
            dimension=dimension_label(desk, line.dimension) or readable_name(line.survey_id),
            score=f"{line.score}/{5 if line.kind == 'scale' else 10}",
            date=desk.when(line.answered_at)[:10],
        )
        for line in scores
    )
    return desk.staff_text("survey_card_scores", scores=Markup(items))


def card_buttons(desk: Desk, ticket: Ticket) -> list[list[tuple[str, str]]]:
    """The buttons that fit the ticket's state: claim while nobody has it, close until it is
    resolved, reopen once it is; the four priorities (the chosen one "● normal") until it is
    closed."""
    prefix = f"{CB_TICKET}{ticket.id}:"
    actions: list[tuple[str, str]] = []
    if ticket.status != CLOSED and ticket.assignee_user_id is None:
        actions.append((desk.staff_text("ticket_button_claim"), f"{prefix}claim"))
    if ticket.status in (RESOLVED, CLOSED):
        actions.append((desk.staff_text("ticket_button_reopen"), f"{prefix}reopen"))
    else:
        actions.append((desk.staff_text("ticket_button_close"), f"{prefix}close"))
    if ticket.status == CLOSED:
        return [actions]
    return [
        actions,
        [
            (
                _priority_button(desk, level, chosen=level == ticket.priority),
                f"{prefix}priority:{level}",
            )
            for level in range(len(PRIORITIES))
        ],
    ]


def _priority_button(desk: Desk, level: int, *, chosen: bool) -> str:
    """A priority's label; the chosen one marked "● normal" (its name, without its icon)."""
    if not chosen:
        return priority_label(desk, level)
    word = desk.staff_text(f"ticket_priority_word_{PRIORITIES[level]}")
    return desk.staff_text("ticket_priority_chosen", priority=word)


def outbox_buttons(rows: list[list[tuple[str, str]]]) -> list[list[OutboxButton]]:
    return [[OutboxButton(label, data=data) for label, data in row] for row in rows]


async def staff_card(session: AsyncSession, desk: Desk, ticket: Ticket) -> StaffReply:
    """The card as an answer to ``/card`` or a pressed card button."""
    return StaffReply(await card_text(session, desk, ticket), card_buttons(desk, ticket))


async def history_summary(session: AsyncSession, desk: Desk, ticket: Ticket) -> str:
    """The latest messages of the ticket, for a recreated topic (what is still queued follows
    as copies, so it is left out)."""
    rows = [
        message
        for message in await recent_messages(
            session, ticket.id, desk.rules.relay.summary_messages * 2
        )
        if message.direction != EVENT and message.state != QUEUED
    ][-desk.rules.relay.summary_messages :]
    lines = []
    for message in rows:
        if message.direction == IN:
            who = desk.staff_text("ticket_who_customer")
        elif message.direction == NOTE:
            who = desk.staff_text("ticket_who_note", name=message.author_name or "")
        else:
            who = desk.staff_text("ticket_who_staff", name=message.author_name or "")
        text = message.text or f"[{message.kind}]"
        if len(text) > SUMMARY_TEXT:
            text = text[: SUMMARY_TEXT - 1] + "…"
        lines.append(
            desk.staff_text(
                "ticket_summary_line",
                when=desk.when(message.created_at),
                who=Markup(who),
                text=text,
            )
        )
    body = "\n".join(lines) if lines else desk.staff_text("ticket_summary_empty")
    return desk.staff_text("ticket_summary", number=ticket.number, lines=Markup(body))
