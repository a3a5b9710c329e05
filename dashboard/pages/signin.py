"""Signing in and out (``dashboard.auth`` keeps the tokens and sessions): the page a sign-in
link opens, its button that spends the token and sets the session cookie, and signing out
(a POST with the session's form token)."""

from __future__ import annotations

from aiohttp import web

from dashboard import auth
from dashboard.html import Tr, bare_page, esc
from dashboard.pages.respond import dashboard_of, html_response, translator


def _invalid_link(request: web.Request, tr: Tr) -> web.Response:
    body = bare_page(
        tr, title=tr("link_invalid_title"), message=tr("link_invalid"), status_name="invalid"
    )
    return html_response(request, body, status=403)


async def login_page(request: web.Request) -> web.StreamResponse:
    """GET of a sign-in link: a "Sign in" page whose button spends the token. Nothing is
    spent here, so a link preview (or anything else fetching the link) uses nothing up."""
    dashboard = dashboard_of(request)
    tr = translator(request, dashboard)
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
    return html_response(request, body)


async def login(request: web.Request) -> web.StreamResponse:
    """POST from the sign-in page: the token is spent and a stored session opened."""
    dashboard = dashboard_of(request)
    now = dashboard.clock.now()
    async with dashboard.sessionmaker.begin() as session:
        staff = await auth.use_login_token(session, request.match_info["token"], now)
    if staff is None:
        return _invalid_link(request, translator(request, dashboard))
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
    dashboard = dashboard_of(request)
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
