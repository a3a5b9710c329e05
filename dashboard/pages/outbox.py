"""The outbox: rows per state, each group's queue and its oldest wait, the dead rows, and
retrying them (some or all: a POST carrying the session's form token)."""

from __future__ import annotations

from datetime import datetime

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


def _group_queues(tr: Tr, queues: list[outbox_queries.GroupQueue], now: datetime) -> str:
    """Each group's queue: Telegram takes 20 messages a minute into a group, so a busy staff
    group's copies wait here; the longest waiting first."""
    rows = [
        [
            esc(queue.name) if queue.name else tr("group_not_staff"),
            esc(queue.chat_id),
            figure(f"group-queue.{queue.chat_id}", queue.waiting),
            figure(
                f"group-wait.{queue.chat_id}",
                tr.duration(max(0.0, (now - queue.oldest_due).total_seconds())),
            ),
        ]
        for queue in queues
    ]
    return section(
        tr("group_queues"),
        table(
            [tr("group"), tr("chat"), tr("waiting"), tr("oldest_wait")],
            rows,
            css="figures",
            empty=tr("no_group_queue"),
        ),
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
    now = dashboard.clock.now()
    async with dashboard.sessionmaker() as session:
        depth = await queries.outbox_depth(session)
        queues = await outbox_queries.group_queues(session, now)
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
        + _group_queues(tr, queues, now)
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
