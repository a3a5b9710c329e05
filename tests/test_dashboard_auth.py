"""Signing in to the dashboard, over HTTP: opening a link only offers to sign in (a link
preview spends nothing) and its button works once and only for 10 minutes; a forged or
expired session cookie opens nothing; a form without the session's token changes nothing;
signing out is a POST that ends the session in the database, so a copy of the cookie opens
nothing afterwards; every response forbids framing and Referer headers. On both databases."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from yarl import URL

from bot.kernel.clock import ManualClock
from bot.web import dashboard_secret
from dashboard.auth import COOKIE, mint_login_path
from dashboard.core import Dashboard
from dashboard.pages.routes import mount
from storage.models import DashboardLogin, DashboardSession
from tests.auxil.harness import START, TOKEN
from tests.test_metrics import serving

PAGES = ("/dashboard/", "/dashboard/tickets", "/dashboard/satisfaction", "/dashboard/customers")
Site = tuple[str, ManualClock, async_sessionmaker[AsyncSession]]


@pytest.fixture
async def site(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[Site]:
    clock = ManualClock(START)
    app = web.Application()
    mount(app, Dashboard(sessionmaker, dashboard_secret(TOKEN), clock))
    async with serving(app) as root:
        yield root, clock, sessionmaker


def client() -> aiohttp.ClientSession:
    # Cookies for 127.0.0.1 (an IP address) are only kept by an "unsafe" jar.
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def status(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url, allow_redirects=False) as response:
        return response.status


async def sign_in(browser: aiohttp.ClientSession, root: str, path: str) -> None:
    """What a person does with a link: open it, press "Sign in"."""
    async with browser.get(root + path, allow_redirects=False) as response:
        assert response.status == 200
        assert f'action="{path}"' in await response.text()
    async with browser.post(root + path, allow_redirects=False) as response:
        assert response.status == 303
        assert response.headers["Location"] == "/dashboard/"


async def form_token(browser: aiohttp.ClientSession, root: str) -> str:
    async with browser.get(root + "/dashboard/") as response:
        assert response.status == 200
        found = re.search(r'name="form_token" value="([^"]+)"', await response.text())
    assert found is not None
    return found.group(1)


def cookie_of(browser: aiohttp.ClientSession, root: str) -> str:
    return browser.cookie_jar.filter_cookies(URL(root + "/dashboard/"))[COOKIE].value


async def test_a_link_signs_in_once_and_the_session_opens_every_page(site: Site) -> None:
    root, clock, sessionmaker = site
    path = await mint_login_path(sessionmaker, user_id=1, name="Sam", now=clock.now())
    async with client() as browser:
        for page in PAGES:
            assert await status(browser, root + page) == 401
        async with browser.get(root + path) as response:
            assert response.status == 200
            assert COOKIE not in response.cookies
        async with browser.post(root + path, allow_redirects=False) as response:
            assert response.status == 303
            assert response.headers["Location"] == "/dashboard/"
            cookie = response.cookies[COOKIE]
            assert cookie["httponly"] and cookie["path"] == "/dashboard"
        for page in PAGES:
            assert await status(browser, root + page) == 200, page
        assert await status(browser, root + path) == 403  # used up
        async with browser.post(root + path, allow_redirects=False) as response:
            assert response.status == 403


async def test_opening_the_link_spends_nothing_until_sign_in_is_pressed(site: Site) -> None:
    """Telegram's link preview (or a mail scanner) fetching the link must not use it up: a GET
    shows a "Sign in" page, in English or Chinese, and sets no cookie."""
    root, clock, sessionmaker = site
    path = await mint_login_path(sessionmaker, user_id=1, name="Sam", now=clock.now())
    async with aiohttp.ClientSession() as preview:
        for _ in range(2):
            async with preview.get(root + path, allow_redirects=False) as response:
                assert response.status == 200
                assert COOKIE not in response.cookies
                assert "Sam" in await response.text()
        async with preview.get(
            root + path, headers={"Accept-Language": "zh-CN"}, allow_redirects=False
        ) as response:
            assert '<button type="submit" data-action="signin">登录</button>' in (
                await response.text()
            )
    async with sessionmaker() as session:
        used = (await session.execute(select(DashboardLogin.used_at))).scalar_one()
        assert used is None
        assert (await session.execute(select(DashboardSession))).first() is None
    async with client() as browser:
        await sign_in(browser, root, path)
        assert await status(browser, root + "/dashboard/") == 200
    async with sessionmaker() as session:
        used = (await session.execute(select(DashboardLogin.used_at))).scalar_one()
        assert used == clock.now()
        stored = (await session.execute(select(DashboardSession))).scalar_one()
        assert (stored.user_id, stored.revoked_at) == (1, None)


async def test_an_old_link_or_session_and_a_forged_cookie_open_nothing(site: Site) -> None:
    root, clock, sessionmaker = site
    late = await mint_login_path(sessionmaker, user_id=1, name="Sam", now=clock.now())
    clock.advance(timedelta(minutes=11))
    async with client() as browser:
        assert await status(browser, root + late) == 403
        async with browser.post(root + late, allow_redirects=False) as response:
            assert response.status == 403
    async with client() as browser:
        path = await mint_login_path(sessionmaker, user_id=2, name="Ann", now=clock.now())
        await sign_in(browser, root, path)
        payload, mac = cookie_of(browser, root).split(".")
        forged = {COOKIE: f"{payload}x.{mac}"}
        async with aiohttp.ClientSession(cookies=forged) as other:
            assert await status(other, root + "/dashboard/") == 401
        clock.advance(timedelta(hours=13))  # the session is over
        assert await status(browser, root + "/dashboard/") == 401


async def test_signing_out_ends_the_session_even_for_a_copy_of_the_cookie(site: Site) -> None:
    """Sign-out is a POST with the form token (a GET or a forged form does nothing); after it
    the very same signed cookie is refused, because its session is revoked in the database."""
    root, clock, sessionmaker = site
    path = await mint_login_path(sessionmaker, user_id=1, name="Sam", now=clock.now())
    async with client() as browser:
        await sign_in(browser, root, path)
        copied = {COOKIE: cookie_of(browser, root)}
        assert await status(browser, root + "/dashboard/logout") == 405
        async with browser.post(
            root + "/dashboard/logout", data={"form_token": "guess"}, allow_redirects=False
        ) as response:
            assert response.status == 403
        assert await status(browser, root + "/dashboard/") == 200
        token = await form_token(browser, root)
        async with browser.post(
            root + "/dashboard/logout", data={"form_token": token}, allow_redirects=False
        ) as response:
            assert response.status == 303
            assert response.headers["Location"] == "/dashboard/"
        assert await status(browser, root + "/dashboard/") == 401
    async with aiohttp.ClientSession(cookies=copied) as thief:
        for page in PAGES:
            assert await status(thief, root + page) == 401, page
    async with sessionmaker() as session:
        revoked = (await session.execute(select(DashboardSession.revoked_at))).scalar_one()
    assert revoked == clock.now()


async def test_the_retry_form_needs_the_session_token(site: Site) -> None:
    root, clock, sessionmaker = site
    path = await mint_login_path(sessionmaker, user_id=1, name="Sam", now=clock.now())
    async with client() as browser:
        await sign_in(browser, root, path)
        async with browser.post(
            root + "/dashboard/outbox/retry", data={"which": "all", "form_token": "guess"}
        ) as response:
            assert response.status == 403


async def test_every_dashboard_response_forbids_framing_and_referers(site: Site) -> None:
    """Pages, the sign-in page, refusals, redirects and static files all carry the headers
    (clickjacking of the retry buttons; the sign-in token in a Referer)."""
    root, clock, sessionmaker = site
    path = await mint_login_path(sessionmaker, user_id=1, name="Sam", now=clock.now())
    async with client() as browser:
        urls = [
            "/dashboard",  # a redirect
            "/dashboard/",  # 401 without a session
            path,  # the sign-in page
            "/dashboard/login/unknown",  # 403
            "/dashboard/static/dashboard.js",
            "/dashboard/static/chart.umd.min.js",
            "/dashboard/static/dashboard.css",
        ]
        responses = []
        for url in urls:
            async with browser.get(root + url, allow_redirects=False) as response:
                responses.append((url, response.status, response.headers))
        await sign_in(browser, root, path)
        for url in (*PAGES, "/dashboard/outbox"):
            async with browser.get(root + url, allow_redirects=False) as response:
                responses.append((url, response.status, response.headers))
    assert [status for _, status, _ in responses] == [302, 401, 200, 403, 200, 200, 200] + [
        200
    ] * (len(PAGES) + 1)
    for url, _, headers in responses:
        assert headers["X-Frame-Options"] == "DENY", url
        assert headers["Referrer-Policy"] == "no-referrer", url
        policy = dict(
            directive.strip().split(" ", 1)
            for directive in headers["Content-Security-Policy"].split(";")
        )
        assert policy["frame-ancestors"] == "'none'", url
        assert policy["script-src"] == "'self'", url
        assert policy["style-src"] == "'self'", url
        assert policy["default-src"] == "'none'", url
