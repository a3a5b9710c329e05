"""The outbox: rows per state, the dead rows, and retrying them (some or all: a POST carrying
the session's form token)."""

from __future__ import annotations

from aiohttp import web

from dashboard import auth, queries
from dashboard.core import Dashboard
from dashboard.html import Tr, bar_chart, esc, figure, section, table
from dashboard.pages.guard import signed_in
from dashboard.pages.respond import page_response
from storage import outbox as outbox_queries


def _depth(tr: Tr, depth: dict[str, int]) -> str:
    """Rows per state: a chart and a table side by side."""
    states = list(depth)
    depth_rows = [
        [tr.label("state", state), figure(f"depth.{state}", depth[state])] for state in states
    ]
    return (
        '<div class="grid">'
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
    )


def _dead_form(tr: Tr, token: str, dead: list[outbox_queries.DeadRow]) -> str:
    """The dead rows, each with a checkbox, and the buttons retrying those ticked or all."""
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
    return (
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


@signed_in
async def outbox(
    request: web.Request, dashboard: Dashboard, tr: Tr, staff: auth.StaffSession
) -> web.StreamResponse:
    async with dashboard.sessionmaker() as session:
        depth = await queries.outbox_depth(session)
        dead = await outbox_queries.list_dead(session)
    retried = request.query.get("retried")
    notice = (
        f'<p class="notice">{tr("retried", count=figure("retried", retried))}</p>'
        if retried is not None and retried.isdigit()
        else ""
    )
    form = _dead_form(tr, dashboard.signer.form_token(staff), dead)
    body = (
        notice
        + _depth(tr, depth)
        + section(tr("dead_rows", count=figure("dead-count", len(dead))), form)
    )
    return page_response(request, dashboard, tr, staff, "outbox", tr("nav_outbox"), body)


@signed_in
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
