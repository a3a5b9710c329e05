"""The dashboard's routes: sign-in by one-time link, and one handler per page.

Every page handler opens one read-only session, asks ``dashboard.queries`` (or the storage
queries it reuses) for its figures and renders them with ``dashboard.html``. The writes are
POSTs carrying the session's form token (the outbox page's retry buttons, signing out) and
the sign-in page's button. Before any page, the session is checked against the database and
the person against the staff group (``_signed_in``). Every response under ``/dashboard``
forbids framing, scripts and styles from elsewhere, and Referer headers (``SECURITY_HEADERS``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from aiohttp import web

from bot.kernel.texts import LANGUAGES, language_from_code
from dashboard import auth, queries
from dashboard.core import STATIC_DIR, Dashboard
from dashboard.html import (
    PAGE_PATHS,
    Tr,
    bar_chart,
    bare_page,
    card,
    doughnut,
    esc,
    figure,
    layout,
    section,
    table,
)
from storage import outbox as outbox_queries
from storage.tickets.messages import EVENT, history
from storage.tickets.rows import ticket_by_number
from storage.tickets.statuses import CLOSED, RESOLVED, STATUSES
from storage.tiers.report import tier_report
from storage.tiers.spec import STAGES, day_of
from surveys import analytics

DASHBOARD_KEY = web.AppKey("dashboard", Dashboard)
LANGUAGE_COOKIE = "carebot_dashboard_lang"
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
AT_RISK_COLUMNS = ("customer", "tier", "stage", "reasons", "last_order", "spend")
SECURITY_HEADERS = {
    # Nothing may frame the dashboard (its retry buttons), in old browsers and new.
    "X-Frame-Options": "DENY",
    # Only the dashboard's own files (static/: Chart.js, dashboard.js, dashboard.css); no
    # inline script or style, forms only to itself.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    # The sign-in link's token never leaves in a Referer.
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
Page = Callable[[web.Request, Dashboard, Tr, auth.StaffSession], Awaitable[web.StreamResponse]]


def _dashboard(request: web.Request) -> Dashboard:
    return request.app[DASHBOARD_KEY]


def _language(request: web.Request) -> str:
    asked = request.query.get("lang")
    if asked in LANGUAGES:
        return asked
    saved = request.cookies.get(LANGUAGE_COOKIE)
    if saved in LANGUAGES:
        return saved
    return language_from_code(request.headers.get("Accept-Language"))


def _tr(request: web.Request, dashboard: Dashboard) -> Tr:
    return Tr(dashboard.texts, _language(request), ZoneInfo(dashboard.timezone))


def _html(request: web.Request, body: str, *, status: int = 200) -> web.Response:
    response = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    asked = request.query.get("lang")
    if asked in LANGUAGES:
        response.set_cookie(LANGUAGE_COOKIE, asked, path="/dashboard", samesite="Lax")
    response.headers["Cache-Control"] = "no-store"
    return response


def _page(
    request: web.Request,
    dashboard: Dashboard,
    tr: Tr,
    staff: auth.StaffSession,
    page: str,
    title: str,
    body: str,
) -> web.Response:
    """A signed-in page: ``body`` in the layout (navigation, language switch, who is in)."""
    return _html(
        request,
        layout(
            tr,
            page=page,
            title=title,
            staff_name=staff.name,
            body=body,
            form_token=dashboard.signer.form_token(staff),
        ),
    )


def _refused(
    request: web.Request,
    tr: Tr,
    title: str,
    message: str,
    name: str,
    status: int,
    *,
    drop: bool = True,
) -> web.Response:
    """A bare page for a visitor who is not let in; a cookie they hold is dropped unless the
    refusal is only for now (``drop`` off)."""
    response = _html(
        request,
        bare_page(tr, title=tr(title), message=tr(message), status_name=name),
        status=status,
    )
    if drop and auth.COOKIE in request.cookies:
        response.del_cookie(auth.COOKIE, path="/dashboard")
    return response


def _signed_in(page: Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Pages need a signed cookie naming a live session (not signed out, not expired) of
    someone still in the staff group; otherwise a page saying why (and how to get a link)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        dashboard = _dashboard(request)
        tr = _tr(request, dashboard)
        now = dashboard.clock.now()
        staff = dashboard.signer.load(request.cookies.get(auth.COOKIE), now)
        if staff is not None:
            async with dashboard.sessionmaker() as session:
                if not await auth.is_live(session, staff, now):
                    staff = None
        if staff is None:
            return _refused(request, tr, "signin_title", "signin_needed", "signin", 401)
        if dashboard.staff_check is not None:
            is_staff = await dashboard.staff_check(staff.user_id)  # outside any transaction
            if is_staff is None:
                return _refused(
                    request,
                    tr,
                    "staff_unknown_title",
                    "staff_unknown",
                    "staff-unknown",
                    503,
                    drop=False,
                )
            if not is_staff:
                async with dashboard.sessionmaker.begin() as session:
                    await auth.sign_out_everywhere(session, staff.user_id, now)
                return _refused(request, tr, "not_staff_title", "not_staff", "not-staff", 403)
        return await page(request, dashboard, tr, staff)

    return handler


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``SECURITY_HEADERS`` on every response under ``/dashboard`` (pages, redirects, errors,
    static files); the rest of the app (webhook, metrics, demo) is left as it is."""
    if request.path == "/dashboard" or request.path.startswith("/dashboard/"):
        response.headers.update(SECURITY_HEADERS)


# --- signing in and out ----------------------------------------------------------------------


def _invalid_link(request: web.Request, tr: Tr) -> web.Response:
    body = bare_page(
        tr, title=tr("link_invalid_title"), message=tr("link_invalid"), status_name="invalid"
    )
    return _html(request, body, status=403)


async def login_page(request: web.Request) -> web.StreamResponse:
    """GET of a sign-in link: a "Sign in" page whose button spends the token. Nothing is
    spent here, so a link preview (or anything else fetching the link) uses nothing up."""
    dashboard = _dashboard(request)
    tr = _tr(request, dashboard)
    token = request.match_info["token"]
    async with dashboard.sessionmaker() as session:
        name = await auth.peek_login_token(session, token, dashboard.clock.now())
    if name is None:
        return _invalid_link(request, tr)
    form = (
        f'<form method="post" action="{esc(auth.LOGIN_PATH + token)}">'
        f'<button type="submit" data-action="signin">{tr("signin_button")}</button></form>'
    )
    body = bare_page(
        tr,
        title=tr("signin_title"),
        message=tr("signin_prompt", name=name),
        status_name="signin-offer",
        extra=form,
    )
    return _html(request, body)


async def login(request: web.Request) -> web.StreamResponse:
    """POST from the sign-in page: the token is spent and a stored session opened."""
    dashboard = _dashboard(request)
    now = dashboard.clock.now()
    async with dashboard.sessionmaker.begin() as session:
        staff = await auth.use_login_token(session, request.match_info["token"], now)
    if staff is None:
        return _invalid_link(request, _tr(request, dashboard))
    response = web.HTTPSeeOther("/dashboard/")
    response.set_cookie(
        auth.COOKIE,
        dashboard.signer.dump(staff),
        path="/dashboard",
        max_age=int(auth.SESSION_TTL.total_seconds()),
        httponly=True,
        samesite="Lax",
        secure=dashboard.secure_cookies,
    )
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    """POST with the form token: the session is revoked in the database (a copy of the cookie
    opens nothing afterwards) and the cookie dropped."""
    dashboard = _dashboard(request)
    now = dashboard.clock.now()
    staff = dashboard.signer.load(request.cookies.get(auth.COOKIE), now)
    if staff is not None:
        form = await request.post()
        if not dashboard.signer.form_token_matches(staff, form.get("form_token")):
            raise web.HTTPForbidden()
        async with dashboard.sessionmaker.begin() as session:
            await auth.sign_out(session, staff, now)
    response = web.HTTPSeeOther("/dashboard/")
    response.del_cookie(auth.COOKIE, path="/dashboard")
    raise response


async def to_overview(_request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/dashboard/")


# --- overview --------------------------------------------------------------------------------


def _today(dashboard: Dashboard, now: datetime) -> tuple[datetime, datetime]:
    """The shop's calendar day around ``now``, as UTC bounds."""
    zone = ZoneInfo(dashboard.timezone)
    local = now.astimezone(zone)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


@_signed_in
async def overview(
    request: web.Request, dashboard: Dashboard, tr: Tr, staff: auth.StaffSession
) -> web.StreamResponse:
    now = dashboard.clock.now()
    since, until = _today(dashboard, now)
    async with dashboard.sessionmaker() as session:
        by_status_tier = await queries.open_tickets_by_status_and_tier(session)
        breaches = await queries.sla_breaches(session, now)
        care = await queries.care_messages(session, since, until)
    statuses = list(queries.NOT_CLOSED)
    tiers = sorted({tier for _, tier in by_status_tier})
    open_total = sum(by_status_tier.values())
    cards = "".join(
        [
            card(tr("open_tickets"), "open-total", open_total),
            card(tr("breach_first_response"), "breach-first", breaches.first_response, alert=True),
            card(tr("breach_resolution"), "breach-resolution", breaches.resolution, alert=True),
            card(tr("care_today"), "care-today", sum(care.values())),
        ]
    )
    rows = [
        [
            tr.label("status", status),
            *(
                figure(f"open.{status}.{tier}", by_status_tier.get((status, tier), 0))
                for tier in tiers
            ),
            figure(
                f"open.{status}",
                sum(count for (s, _), count in by_status_tier.items() if s == status),
            ),
        ]
        for status in statuses
    ]
    tickets_chart = bar_chart(
        "open-tickets",
        [tr.label("status", status) for status in statuses],
        [(tier, [by_status_tier.get((status, tier), 0) for status in statuses]) for tier in tiers],
        stacked=True,
    )
    kinds = sorted({kind for kind, _ in care})
    states = sorted({state for _, state in care})
    care_rows = [
        [
            tr.label("kind", kind),
            *(figure(f"care.{kind}.{state}", care.get((kind, state), 0)) for state in states),
            figure(f"care.{kind}", sum(count for (k, _), count in care.items() if k == kind)),
        ]
        for kind in kinds
    ]
    care_chart = bar_chart(
        "care-today",
        [tr.label("kind", kind) for kind in kinds],
        [
            (tr.label("state", state), [care.get((kind, state), 0) for kind in kinds])
            for state in states
        ],
        stacked=True,
    )
    body = (
        f'<div class="cards">{cards}</div>'
        + '<div class="grid">'
        + section(
            tr("open_by_status_tier"),
            tickets_chart,
            table(
                [tr("status"), *(esc(tier) for tier in tiers), tr("total")],
                rows,
                css="figures",
            ),
        )
        + section(
            tr("care_today_title", day=since.strftime("%Y-%m-%d")),
            care_chart if kinds else "",
            table(
                [tr("kind"), *(tr.label("state", state) for state in states), tr("total")],
                care_rows,
                css="figures",
                empty=tr("nothing_today"),
            ),
        )
        + "</div>"
    )
    return _page(request, dashboard, tr, staff, "overview", tr("nav_overview"), body)


# --- tickets ---------------------------------------------------------------------------------


def _select(name: str, current: str, options: list[tuple[str, str]]) -> str:
    items = "".join(
        f'<option value="{esc(value)}"{" selected" if value == current else ""}>{label}</option>'
        for value, label in options
    )
    return f'<select name="{name}">{items}</select>'


@_signed_in
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
    form = (
        '<form class="filters" method="get" action="/dashboard/tickets">'
        + _select(
            "status",
            status,
            [("not_closed", tr("status_not_closed")), ("all", tr("all"))]
            + [(value, tr.label("status", value)) for value in STATUSES],
        )
        + _select("tier", tier, [("", tr("all_tiers"))] + [(value, esc(value)) for value in tiers])
        + f'<input name="number" value="{esc(number)}" placeholder="{tr("ticket_number")}">'
        + f'<button type="submit">{tr("filter")}</button></form>'
    )
    table_rows = [
        [
            f'<a href="/dashboard/tickets/{esc(row.number)}" data-ticket="{esc(row.number)}">'
            f"{esc(row.number)}</a>",
            tr.label("status", row.status),
            esc(row.tier),
            tr.label("category", row.category),
            tr.label("priority", str(row.priority)),
            esc(row.customer_name or "—"),
            esc(row.assignee_name or "—"),
            tr.when(row.opened_at),
            _due(tr, row.first_response_due, row.first_response_at, now),
            _due(tr, row.resolution_due, None if row.status in _DONE else now, now),
        ]
        for row in rows
    ]
    body = (
        form
        + f"<p>{tr('tickets_shown', count=figure('tickets-shown', len(rows)))}</p>"
        + table(
            list(map(tr, TICKET_COLUMNS)),
            table_rows,
            css="list",
            empty=tr("no_tickets"),
        )
    )
    return _page(request, dashboard, tr, staff, "tickets", tr("nav_tickets"), body)


_DONE = (RESOLVED, CLOSED)


def _event_label(tr: Tr, event: str) -> str:
    """``claimed``, ``priority:3``, ...: what happened, translated (the detail kept as is)."""
    name, _, detail = event.partition(":")
    label = tr.label("event", name)
    return f"{label} ({esc(detail)})" if detail else label


def _due(tr: Tr, due: datetime, met_at: datetime | None, now: datetime) -> str:
    """A deadline, marked when it was missed (met late, or unmet and past)."""
    late = (met_at or now) > due
    css = "late" if late else ""
    return f'<span class="{css}">{tr.when(due)}</span>'


@_signed_in
async def ticket_page(
    request: web.Request, dashboard: Dashboard, tr: Tr, staff: auth.StaffSession
) -> web.StreamResponse:
    number = request.match_info["number"]
    async with dashboard.sessionmaker() as session:
        ticket = await ticket_by_number(session, number)
        messages = await history(session, ticket.id) if ticket else []
    if ticket is None:
        raise web.HTTPNotFound()
    facts = table(
        [tr("field"), tr("value")],
        [
            [tr("status"), figure("ticket-status", tr.label("status", ticket.status))],
            [tr("tier"), esc(ticket.tier)],
            [tr("category"), tr.label("category", ticket.category)],
            [tr("assignee"), esc(ticket.assignee_name or "—")],
            [tr("opened"), tr.when(ticket.opened_at)],
            [tr("first_response"), tr.when(ticket.first_response_at)],
            [tr("first_response_due"), tr.when(ticket.first_response_due)],
            [tr("resolution_due"), tr.when(ticket.resolution_due)],
            [tr("resolved"), tr.when(ticket.resolved_at)],
        ],
        css="facts",
    )
    entries = [
        [
            tr.when(message.created_at),
            tr.label("direction", message.direction),
            esc(message.author_name or "—"),
            _event_label(tr, message.text or "")
            if message.direction == EVENT
            else esc(message.text or message.kind),
        ]
        for message in messages
    ]
    body = (
        '<p><a href="/dashboard/tickets">← '
        + tr("nav_tickets")
        + "</a></p>"
        + section(tr("ticket_facts"), facts)
        + section(
            tr("ticket_history", count=figure("history-count", len(messages))),
            table(
                [tr("when"), tr("direction"), tr("author"), tr("message")],
                entries,
                css="history",
            ),
        )
    )
    return _page(
        request, dashboard, tr, staff, "tickets", tr("ticket_title", number=ticket.number), body
    )


# --- customers -------------------------------------------------------------------------------


@_signed_in
async def customers(
    request: web.Request, dashboard: Dashboard, tr: Tr, staff: auth.StaffSession
) -> web.StreamResponse:
    async with dashboard.sessionmaker() as session:
        report = await tier_report(session)
        risky = await queries.at_risk(session)
    tiers = sorted({tier for tier, _ in report.counts})
    stages = list(STAGES)
    mix_rows = [
        [
            esc(tier),
            *(
                figure(f"mix.{tier}.{stage}", report.counts.get((tier, stage), 0))
                for stage in stages
            ),
            figure(f"mix.{tier}", sum(c for (t, _), c in report.counts.items() if t == tier)),
        ]
        for tier in tiers
    ]
    tier_totals = [sum(c for (t, _), c in report.counts.items() if t == tier) for tier in tiers]
    stage_totals = [
        sum(c for (_, s), c in report.counts.items() if s == stage) for stage in stages
    ]
    movement_rows = [
        [esc(old or "—"), esc(new), figure(f"moved.{old or 'none'}.{new}", count)]
        for (old, new), count in sorted(
            report.movements.items(), key=lambda item: (-item[1], str(item[0]))
        )
    ]
    since = (
        tr("movement_since", when=tr.when(report.since_run.started_at))
        if report.since_run is not None
        else tr("movement_no_run")
    )
    risk_rows = [
        [
            esc(row.name or f"#{row.customer_id}"),
            esc(row.tier),
            tr.label("stage", row.stage),
            "<br>".join(tr.label("flag", flag.name) for flag in row.flags)
            if row.flags
            else tr.label("flag", "OVERDUE"),
            day_of(row.last_day).isoformat(),
            f"{row.monetary_cents / 100:,.2f}",
        ]
        for row in risky
    ]
    body = (
        '<div class="grid">'
        + section(tr("tier_mix"), doughnut("tiers", tiers, tier_totals))
        + section(
            tr("stage_mix"),
            bar_chart(
                "stages",
                [tr.label("stage", stage) for stage in stages],
                [(tr("customers"), stage_totals)],
            ),
        )
        + "</div>"
        + section(
            tr("tier_stage_table"),
            table(
                [tr("tier"), *(tr.label("stage", stage) for stage in stages), tr("total")],
                mix_rows,
                css="figures",
            ),
        )
        + section(
            tr("movement"),
            f"<p>{since}</p>",
            table(
                [tr("from_tier"), tr("to_tier"), tr("customers")],
                movement_rows,
                css="figures",
                empty=tr("no_movement"),
            ),
        )
        + section(
            tr("at_risk_title", count=figure("at-risk-count", len(risky))),
            table(
                list(map(tr, AT_RISK_COLUMNS)),
                risk_rows,
                css="list",
                empty=tr("no_at_risk"),
            ),
        )
    )
    return _page(request, dashboard, tr, staff, "customers", tr("nav_customers"), body)


# --- outbox ----------------------------------------------------------------------------------


@_signed_in
async def outbox(
    request: web.Request, dashboard: Dashboard, tr: Tr, staff: auth.StaffSession
) -> web.StreamResponse:
    async with dashboard.sessionmaker() as session:
        depth = await queries.outbox_depth(session)
        dead = await outbox_queries.list_dead(session)
    states = list(depth)
    depth_rows = [
        [tr.label("state", state), figure(f"depth.{state}", depth[state])] for state in states
    ]
    dead_rows = [
        [
            f'<input type="checkbox" name="id" value="{row.id}" data-dead="{row.id}">',
            esc(row.id),
            tr.label("kind", row.kind),
            esc(row.attempts),
            esc(row.last_error or "—"),
            tr.when(row.updated_at),
        ]
        for row in dead
    ]
    retried = request.query.get("retried")
    notice = (
        f'<p class="notice">{tr("retried", count=figure("retried", retried))}</p>'
        if retried is not None and retried.isdigit()
        else ""
    )
    token = dashboard.signer.form_token(staff)
    form = (
        '<form method="post" action="/dashboard/outbox/retry">'
        f'<input type="hidden" name="form_token" value="{esc(token)}">'
        + table(
            ["", "#", tr("kind"), tr("attempts"), tr("last_error"), tr("updated")],
            dead_rows,
            css="list",
            empty=tr("no_dead"),
        )
        + (
            f'<button type="submit" name="which" value="selected">{tr("retry_selected")}</button> '
            f'<button type="submit" name="which" value="all">{tr("retry_all")}</button>'
            if dead
            else ""
        )
        + "</form>"
    )
    body = (
        notice
        + '<div class="grid">'
        + section(
            tr("depth_by_state"),
            bar_chart(
                "outbox-depth",
                [tr.label("state", state) for state in states],
                [(tr("rows"), [depth[state] for state in states])],
            ),
        )
        + section(tr("depth_table"), table([tr("state"), tr("rows")], depth_rows, css="figures"))
        + "</div>"
        + section(tr("dead_rows", count=figure("dead-count", len(dead))), form)
    )
    return _page(request, dashboard, tr, staff, "outbox", tr("nav_outbox"), body)


@_signed_in
async def retry(
    request: web.Request, dashboard: Dashboard, tr: Tr, staff: auth.StaffSession
) -> web.StreamResponse:
    form = await request.post()
    if not dashboard.signer.form_token_matches(staff, form.get("form_token")):
        raise web.HTTPForbidden()
    ids = [int(value) for value in map(str, form.getall("id", [])) if value.isdigit()]
    which = form.get("which")
    async with dashboard.sessionmaker.begin() as session:
        if which == "all":
            count = await outbox_queries.retry(session, now=dashboard.clock.now())
        elif ids:
            count = await outbox_queries.retry(session, now=dashboard.clock.now(), message_ids=ids)
        else:
            count = 0
    raise web.HTTPSeeOther(f"/dashboard/outbox?retried={count}")


# --- satisfaction ----------------------------------------------------------------------------

SATISFACTION_WEEKS = 12


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


@_signed_in
async def satisfaction(
    request: web.Request, dashboard: Dashboard, tr: Tr, staff: auth.StaffSession
) -> web.StreamResponse:
    """CSAT and per-dimension means per week, the NPS trend, and all of it by tier, over the
    last ``SATISFACTION_WEEKS`` weeks of surveys sent (``surveys.analytics``)."""
    now = dashboard.clock.now()
    since = now - timedelta(weeks=SATISFACTION_WEEKS)
    until = now + timedelta(seconds=1)
    async with dashboard.sessionmaker() as session:

        async def scores(*group_by: str) -> list[analytics.SatisfactionRow]:
            return await analytics.satisfaction_by(
                session, since=since, until=until, group_by=group_by
            )

        total = await scores()
        weekly = await scores("week")
        weekly_dimensions = await scores("week", "dimension")
        by_tier = await scores("tier")
        tier_dimensions = await scores("tier", "dimension")
    overall = total[0] if total else None
    weeks = [row.group[0] for row in weekly]
    week_rows = {row.group[0]: row for row in weekly}
    dimensions = sorted(
        {row.group[1] for row in weekly_dimensions if row.scale_answers}
        | {row.group[1] for row in tier_dimensions if row.scale_answers}
    )
    week_means = {(row.group[0], row.group[1]): row.mean_score for row in weekly_dimensions}
    tier_means = {(row.group[0], row.group[1]): row.mean_score for row in tier_dimensions}
    tiers = [row.group[0] for row in by_tier]

    def dimension(name: str) -> str:
        return tr.label("dimension", name)

    cards = "".join(
        [
            card(tr("csat"), "csat", _score(overall.csat_percent if overall else None)),
            card(tr("mean_score"), "mean", _score(overall.mean_score if overall else None)),
            card(tr("nps"), "nps", _score(overall.nps if overall else None)),
            card(
                tr("answers"),
                "answers",
                (overall.scale_answers + overall.nps_answers) if overall else 0,
            ),
        ]
    )
    trends = (
        '<div class="grid">'
        + section(
            tr("csat_weekly"),
            bar_chart(
                "csat-weekly",
                weeks,
                [(tr("csat"), [week_rows[week].csat_percent for week in weeks])],
                kind="line",
                y_max=100,
            ),
        )
        + section(
            tr("nps_weekly"),
            bar_chart(
                "nps-weekly",
                weeks,
                [(tr("nps"), [week_rows[week].nps for week in weeks])],
                kind="line",
                y_min=-100,
                y_max=100,
            ),
        )
        + section(
            tr("dimensions_weekly"),
            bar_chart(
                "dimensions-weekly",
                weeks,
                [
                    (dimension(name), [week_means.get((week, name)) for week in weeks])
                    for name in dimensions
                ],
                kind="line",
                y_max=5,
            ),
        )
        + section(
            tr("dimensions_by_tier"),
            bar_chart(
                "tier-dimensions",
                tiers,
                [
                    (dimension(name), [tier_means.get((tier, name)) for tier in tiers])
                    for name in dimensions
                ],
                y_max=5,
            ),
        )
        + "</div>"
    )
    tier_table = table(
        [tr("tier"), tr("csat"), tr("mean_score"), *map(dimension, dimensions), tr("nps")],
        [
            [
                esc(row.group[0]),
                figure(f"tier.{row.group[0]}.csat", _score(row.csat_percent)),
                figure(f"tier.{row.group[0]}.mean", _score(row.mean_score)),
                *(
                    figure(
                        f"tier.{row.group[0]}.{name}", _score(tier_means.get((row.group[0], name)))
                    )
                    for name in dimensions
                ),
                figure(f"tier.{row.group[0]}.nps", _score(row.nps)),
            ]
            for row in by_tier
        ],
        css="figures",
        empty=tr("no_answers"),
    )
    week_table = table(
        [tr("week"), tr("csat"), *map(dimension, dimensions), tr("nps")],
        [
            [
                esc(week),
                figure(f"week.{week}.csat", _score(week_rows[week].csat_percent)),
                *(
                    figure(f"week.{week}.{name}", _score(week_means.get((week, name))))
                    for name in dimensions
                ),
                figure(f"week.{week}.nps", _score(week_rows[week].nps)),
            ]
            for week in weeks
        ],
        css="figures",
        empty=tr("no_answers"),
    )
    body = (
        f"<p>{tr('satisfaction_period', weeks=SATISFACTION_WEEKS)}</p>"
        + f'<div class="cards">{cards}</div>'
        + trends
        + section(tr("by_tier"), tier_table)
        + section(tr("by_week"), week_table)
    )
    return _page(request, dashboard, tr, staff, "satisfaction", tr("nav_satisfaction"), body)


def mount(app: web.Application, dashboard: Dashboard) -> None:
    """Add ``/dashboard/...`` (pages, sign-in, static files) to ``app``."""
    app[DASHBOARD_KEY] = dashboard
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/dashboard", to_overview)
    app.router.add_get(PAGE_PATHS["overview"], overview)
    app.router.add_get(PAGE_PATHS["tickets"], ticket_list)
    app.router.add_get("/dashboard/tickets/{number}", ticket_page)
    app.router.add_get(PAGE_PATHS["satisfaction"], satisfaction)
    app.router.add_get(PAGE_PATHS["customers"], customers)
    app.router.add_get(PAGE_PATHS["outbox"], outbox)
    app.router.add_post("/dashboard/outbox/retry", retry)
    app.router.add_get(auth.LOGIN_PATH + "{token}", login_page)
    app.router.add_post(auth.LOGIN_PATH + "{token}", login)
    app.router.add_post("/dashboard/logout", logout)
    app.router.add_static("/dashboard/static", STATIC_DIR)
