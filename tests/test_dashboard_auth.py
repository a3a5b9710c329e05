"""Signing in to the dashboard, over HTTP: a link works once and only for 10 minutes, a
forged or expired session cookie opens nothing, a form without the session's token changes
nothing, signing out ends the session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from yarl import URL

from bot.web import dashboard_secret
from dashboard import Dashboard, mount
from dashboard.auth import COOKIE, mint_login_path
from scheduler.clock import ManualClock
from tests.auxil.harness import START, TOKEN
from tests.test_metrics import serving

PAGES = ("/dashboard/", "/dashboard/tickets", "/dashboard/satisfaction", "/dashboard/customers")


@pytest.fixture
async def site(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[tuple[str, ManualClock, async_sessionmaker[AsyncSession]]]:
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


async def test_a_link_signs_in_once_and_the_session_opens_every_page(
    site: tuple[str, ManualClock, async_sessionmaker[AsyncSession]],
) -> None:
    root, clock, sessionmaker = site
    path = await mint_login_path(sessionmaker, user_id=1, name="Sam", now=clock.now())
    async with client() as browser:
        for page in PAGES:
            assert await status(browser, root + page) == 401
        async with browser.get(root + path, allow_redirects=False) as response:
            assert response.status == 302
            assert response.headers["Location"] == "/dashboard/"
            cookie = response.cookies[COOKIE]
            assert cookie["httponly"] and cookie["path"] == "/dashboard"
        for page in PAGES:
            assert await status(browser, root + page) == 200, page
        assert await status(browser, root + path) == 403  # used up
        assert await status(browser, root + "/dashboard/logout") == 302
        assert await status(browser, root + "/dashboard/") == 401


async def test_an_old_link_or_session_and_a_forged_cookie_open_nothing(
    site: tuple[str, ManualClock, async_sessionmaker[AsyncSession]],
) -> None:
    root, clock, sessionmaker = site
    late = await mint_login_path(sessionmaker, user_id=1, name="Sam", now=clock.now())
    clock.advance(timedelta(minutes=11))
    async with client() as browser:
        assert await status(browser, root + late) == 403
    async with client() as browser:
        path = await mint_login_path(sessionmaker, user_id=2, name="Ann", now=clock.now())
        assert await status(browser, root + path) == 302
        cookie = browser.cookie_jar.filter_cookies(URL(root + "/dashboard/"))[COOKIE].value
        payload, mac = cookie.split(".")
        forged = {COOKIE: f"{payload}x.{mac}"}
        async with aiohttp.ClientSession(cookies=forged) as other:
            assert await status(other, root + "/dashboard/") == 401
        clock.advance(timedelta(hours=13))  # the session is over
        assert await status(browser, root + "/dashboard/") == 401


async def test_the_retry_form_needs_the_session_token(
    site: tuple[str, ManualClock, async_sessionmaker[AsyncSession]],
) -> None:
    root, clock, sessionmaker = site
    path = await mint_login_path(sessionmaker, user_id=1, name="Sam", now=clock.now())
    async with client() as browser:
        assert await status(browser, root + path) == 302
        async with browser.post(
            root + "/dashboard/outbox/retry", data={"which": "all", "form_token": "guess"}
        ) as response:
            assert response.status == 403
