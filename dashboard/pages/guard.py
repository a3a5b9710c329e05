"""What stands before every page: the signed-in check (``signed_in``: a live session of someone
still in the staff group, checked against the database and the staff group on each request)
and the security headers every response under ``/dashboard`` carries (``SECURITY_HEADERS``:
no framing, no script or style from elsewhere, no Referer)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from dashboard import auth
from dashboard.core import Dashboard
from dashboard.html import Tr
from dashboard.pages.respond import dashboard_of, refused, translator

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
"""A page handler once let in: the request, the dashboard, the visitor's language, who it is."""


def signed_in(page: Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Pages need a signed cookie naming a live session (not signed out, not expired) of
    someone still in the staff group; otherwise a page saying why (and how to get a link)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        dashboard = dashboard_of(request)
        tr = translator(request, dashboard)
        now = dashboard.clock.now()
        staff = dashboard.signer.load(request.cookies.get(auth.COOKIE), now)
        if staff is not None:
            async with dashboard.sessionmaker() as session:
                if not await auth.is_live(session, staff, now):
                    staff = None
        if staff is None:
            return refused(request, tr, "signin_title", "signin_needed", "signin", 401)
        if dashboard.staff_check is not None:
            is_staff = await dashboard.staff_check(staff.user_id)  # outside any transaction
            if is_staff is None:
                return refused(
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
                return refused(request, tr, "not_staff_title", "not_staff", "not-staff", 403)
        return await page(request, dashboard, tr, staff)

    return handler


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``SECURITY_HEADERS`` on every response under ``/dashboard`` (pages, redirects, errors,
    static files); the rest of the app (webhook, metrics, demo) is left as it is."""
    if request.path == "/dashboard" or request.path.startswith("/dashboard/"):
        response.headers.update(SECURITY_HEADERS)
