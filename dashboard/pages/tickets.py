"""The tickets: a list filtered by status, tier and number (deadlines missed marked late), and
one ticket's facts and history."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from dashboard import auth, queries
from dashboard.core import Dashboard
from dashboard.html import Tr, esc, figure, section, table
from dashboard.pages.guard import signed_in
from dashboard.pages.respond import page_response
from storage.models import Customer, Ticket, TicketMessage
from storage.tickets.messages import EVENT, history
from storage.tickets.rows import ticket_by_number
from storage.tickets.statuses import CLOSED, RESOLVED, STATUSES
from surveys.queries import ScoreLine, card_scores

TICKET_COLUMNS = (
    "ticket_number",
    "status",
    "tier",
    "category",
    "priority",
    "customer",
    "assignee",
    "opened",
    "first_response_due",
    "resolution_due",
)
_DONE = (RESOLVED, CLOSED)
CANNED = "canned"
"""A staff reply picked under ``/canned``: its text is the reply's code (``tickets.toml``)."""


def _select(name: str, current: str, options: list[tuple[str, str]]) -> str:
    items = "".join(
        f'<option value="{esc(value)}"{" selected" if value == current else ""}>{label}</option>'
        for value, label in options
    )
    return f'<select name="{name}">{items}</select>'


def _filters(tr: Tr, status: str, tier: str, number: str, tiers: list[str]) -> str:
    """The list's filter form (a GET): status, tier, ticket number."""
    return (
        '<form class="filters" method="get" action="/dashboard/tickets">'
        + _select(
            "status",
            status,
            [("not_closed", tr("status_not_closed")), ("all", tr("all"))]
            + [(value, tr.label("status", value)) for value in STATUSES],
        )
        + _select(
            "tier",
            tier,
            [("", tr("all_tiers"))]
            + [(value, esc(tr.tier(value))) for value in tr.tiers_in_order(tiers)],
        )
        + f'<input name="number" value="{esc(number)}" placeholder="{tr("ticket_number")}">'
        + f'<button type="submit">{tr("filter")}</button></form>'
    )


def _due(tr: Tr, due: datetime, met_at: datetime | None, now: datetime) -> str:
    """A deadline, marked when it was missed (met late, or unmet and past)."""
    late = (met_at or now) > due
    css = "late" if late else ""
    return f'<span class="{css}">{tr.when(due)}</span>'


def _ticket_row(tr: Tr, row: queries.TicketRow, now: datetime) -> list[str]:
    """One ticket in the list, under ``TICKET_COLUMNS``."""
    return [
        f'<a href="/dashboard/tickets/{esc(row.number)}" data-ticket="{esc(row.number)}">'
        f"{esc(row.number)}</a>",
        tr.label("status", row.status),
        esc(tr.tier(row.tier)),
        esc(tr.category(row.category)),
        tr.label("priority", str(row.priority)),
        esc(row.customer_name or "—"),
        esc(row.assignee_name or "—"),
        tr.when(row.opened_at),
        _due(tr, row.first_response_due, row.first_response_at, now),
        _due(tr, row.resolution_due, None if row.status in _DONE else now, now),
    ]


@signed_in
async def ticket_list(
    request: web.Request, dashboard: Dashboard, tr: Tr, staff: auth.StaffSession
) -> web.StreamResponse:
    status = request.query.get("status", "not_closed")
    tier = request.query.get("tier", "")
    number = request.query.get("number", "")
    now = dashboard.clock.now()
    async with dashboard.sessionmaker() as session:
        rows = await queries.ticket_list(
            session,
            status=status if status != "all" else None,
            tier=tier or None,
            number=number or None,
        )
        tiers = await queries.ticket_tiers(session)
    body = (
        _filters(tr, status, tier, number, tiers)
        + f"<p>{tr('tickets_shown', count=figure('tickets-shown', len(rows)))}</p>"
        + table(
            list(map(tr, TICKET_COLUMNS)),
            [_ticket_row(tr, row, now) for row in rows],
            css="list",
            empty=tr("no_tickets"),
        )
    )
    return page_response(request, dashboard, tr, staff, "tickets", tr("nav_tickets"), body)


def _event_label(tr: Tr, event: str) -> str:
    """``claimed``, ``priority:3``, ...: what happened, translated (the detail kept as is)."""
    name, _, detail = event.partition(":")
    label = tr.label("event", name)
    return f"{label} ({esc(detail)})" if detail else label


def _customer_name(tr: Tr, customer: Customer | None) -> str:
    """The customer as staff know them (signed-in staff only; plain text); "erased" after
    ``/forget``."""
    if customer is None or customer.erased_at is not None:
        return tr("customer_erased")
    return customer.name or f"#{customer.id}"


def _scores(tr: Tr, scores: list[ScoreLine]) -> str:
    """The customer's latest survey scores: "Delivery speed 4/5 (2026-11-17)", one a line."""
    if not scores:
        return tr("no_scores")
    return "<br>".join(
        tr(
            "score_item",
            dimension=tr.dimension(line.dimension) if line.dimension else tr("score"),
            score=line.score,
            out_of=10 if line.kind == "nps" else 5,
            date=tr.when(line.answered_at)[:10],
        )
        for line in scores
    )


def _facts(tr: Tr, ticket: Ticket, customer: Customer | None, scores: list[ScoreLine]) -> str:
    """The ticket's customer (name, tier, stage, latest scores), status, category, assignee
    and deadlines, as a two-column table."""
    stage = tr.label("stage", customer.stage) if customer is not None else "—"
    return table(
        [tr("field"), tr("value")],
        [
            [tr("customer"), figure("ticket-customer", _customer_name(tr, customer))],
            [tr("tier"), figure("ticket-tier", tr.tier(ticket.tier))],
            [tr("stage"), stage],
            [tr("survey_scores"), _scores(tr, scores)],
            [tr("status"), figure("ticket-status", tr.label("status", ticket.status))],
            [tr("category"), figure("ticket-category", tr.category(ticket.category))],
            [tr("assignee"), esc(ticket.assignee_name or "—")],
            [tr("opened"), tr.when(ticket.opened_at)],
            [tr("first_response"), tr.when(ticket.first_response_at)],
            [tr("first_response_due"), tr.when(ticket.first_response_due)],
            [tr("resolution_due"), tr.when(ticket.resolution_due)],
            [tr("resolved"), tr.when(ticket.resolved_at)],
        ],
        css="facts",
    )


def _message_text(tr: Tr, message: TicketMessage, language: str) -> str:
    """What a history entry says: an event's name, a canned reply's text as the customer got it
    (in their language), or the text with its kind when it is not plain text (a photo...)."""
    if message.direction == EVENT:
        return _event_label(tr, message.text or "")
    if message.kind == CANNED:
        reply = tr.canned(message.text or "")
        if reply is None:
            return tr("canned_gone", code=message.text or "")
        return tr("canned_sent", title=reply.title, text=reply.text(language))
    if message.kind in ("text", ""):
        return esc(message.text or "")
    kind = tr.label("message_kind", message.kind)
    return f"[{kind}] {esc(message.text)}" if message.text else f"[{kind}]"


def _history_row(tr: Tr, message: TicketMessage, language: str) -> list[str]:
    """One message or event of the ticket's history: when, which way, who, what."""
    return [
        tr.when(message.created_at),
        tr.label("direction", message.direction),
        esc(message.author_name or "—"),
        _message_text(tr, message, language),
    ]


@signed_in
async def ticket_page(
    request: web.Request, dashboard: Dashboard, tr: Tr, staff: auth.StaffSession
) -> web.StreamResponse:
    number = request.match_info["number"]
    async with dashboard.sessionmaker() as session:
        ticket = await ticket_by_number(session, number)
        if ticket is None:
            raise web.HTTPNotFound()
        messages = await history(session, ticket.id)
        customer = await session.get(Customer, ticket.customer_id)
        scores = await card_scores(session, ticket.customer_id) if customer else []
    language = customer.language if customer is not None else tr.language
    body = (
        '<p><a href="/dashboard/tickets">← '
        + tr("nav_tickets")
        + "</a></p>"
        + section(tr("ticket_facts"), _facts(tr, ticket, customer, scores))
        + section(
            tr("ticket_history", count=figure("history-count", len(messages))),
            table(
                [tr("when"), tr("direction"), tr("author"), tr("message")],
                [_history_row(tr, message, language) for message in messages],
                css="history",
            ),
        )
    )
    return page_response(
        request, dashboard, tr, staff, "tickets", tr("ticket_title", number=ticket.number), body
    )
