"""The route table: every URL under ``/dashboard`` and the module that answers it, the security
headers hook, and the static files."""

from __future__ import annotations

from aiohttp import web

from dashboard import auth
from dashboard.core import STATIC_DIR, Dashboard
from dashboard.html import PAGE_PATHS
from dashboard.pages.campaigns import campaigns_page
from dashboard.pages.customers import customers
from dashboard.pages.guard import security_headers
from dashboard.pages.outbox import outbox, retry
from dashboard.pages.overview import overview
from dashboard.pages.respond import DASHBOARD_KEY
from dashboard.pages.satisfaction import satisfaction
from dashboard.pages.signin import login, login_page, logout
from dashboard.pages.staff import staff_page
from dashboard.pages.tickets import ticket_list, ticket_page


async def to_overview(_request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/dashboard/")


def mount(app: web.Application, dashboard: Dashboard) -> None:
    """Add ``/dashboard/...`` (pages, sign-in, static files) to ``app``."""
    app[DASHBOARD_KEY] = dashboard
    app.on_response_prepare.append(security_headers)
    app.router.add_get("/dashboard", to_overview)
    app.router.add_get(PAGE_PATHS["overview"], overview)
    app.router.add_get(PAGE_PATHS["tickets"], ticket_list)
    app.router.add_get("/dashboard/tickets/{number}", ticket_page)
    app.router.add_get(PAGE_PATHS["satisfaction"], satisfaction)
    app.router.add_get(PAGE_PATHS["customers"], customers)
    app.router.add_get(PAGE_PATHS["staff"], staff_page)
    app.router.add_get(PAGE_PATHS["campaigns"], campaigns_page)
    app.router.add_get(PAGE_PATHS["outbox"], outbox)
    app.router.add_post("/dashboard/outbox/retry", retry)
    app.router.add_get(auth.LOGIN_PATH + "{token}", login_page)
    app.router.add_post(auth.LOGIN_PATH + "{token}", login)
    app.router.add_post("/dashboard/logout", logout)
    app.router.add_static("/dashboard/static", STATIC_DIR)
