"""What every dashboard route answers with: the dashboard and the visitor's language read from
the request (``?lang=``, then the language cookie, then ``Accept-Language``), and HTML
responses: a signed-in page in the layout, a bare page for a visitor who is not let in. Every
HTML response is ``no-store`` and remembers a ``?lang=`` in the language cookie."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from aiohttp import web

from bot.kernel.texts import LANGUAGES, language_from_code
from dashboard import auth
from dashboard.core import Dashboard
from dashboard.html import Tr, bare_page, layout

DASHBOARD_KEY = web.AppKey("dashboard", Dashboard)
LANGUAGE_COOKIE = "carebot_dashboard_lang"


def dashboard_of(request: web.Request) -> Dashboard:
    return request.app[DASHBOARD_KEY]


def language(request: web.Request) -> str:
    asked = request.query.get("lang")
    if asked in LANGUAGES:
        return asked
    saved = request.cookies.get(LANGUAGE_COOKIE)
    if saved in LANGUAGES:
        return saved
    return language_from_code(request.headers.get("Accept-Language"))


def translator(request: web.Request, dashboard: Dashboard) -> Tr:
    return Tr(dashboard.texts, language(request), ZoneInfo(dashboard.timezone), dashboard.rules)


def html_response(request: web.Request, body: str, *, status: int = 200) -> web.Response:
    response = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    asked = request.query.get("lang")
    if asked in LANGUAGES:
        response.set_cookie(LANGUAGE_COOKIE, asked, path="/dashboard", samesite="Lax")
    response.headers["Cache-Control"] = "no-store"
    return response


def page_response(
    request: web.Request,
    dashboard: Dashboard,
    tr: Tr,
    staff: auth.StaffSession,
    page: str,
    title: str,
    body: str,
) -> web.Response:
    """A signed-in page: ``body`` in the layout (navigation, language switch, who is in)."""
    return html_response(
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


def refused(
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
    response = html_response(
        request,
        bare_page(tr, title=tr(title), message=tr(message), status_name=name),
        status=status,
    )
    if drop and auth.COOKIE in request.cookies:
        response.del_cookie(auth.COOKIE, path="/dashboard")
    return response
