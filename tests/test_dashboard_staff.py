"""End to end: the dashboard and the staff group, through the real Application, the local Bot
API server and the bot's own web app, on both databases.

``/dashboard`` sends its one-time link only to the member's private chat, without a link
preview; a member removed from the staff group loses the dashboard within
``relay.staff_check_seconds`` (the same cached ``getChatMember`` answers staff commands use),
and their sessions are revoked for good.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from sqlalchemy import select
from yarl import URL

from bot.web import build_web_app, dashboard_for
from dashboard.auth import COOKIE, LoginLinks
from dashboard.core import load_catalogue
from handlers.staff.commands import MemberCache
from storage.models import DashboardSession
from tests.auxil.harness import Harness
from tests.auxil.tickets import STAFF, staff_member, wait_message, wait_text
from tests.test_metrics import serving

LINK = re.compile(r'href="([^"]+/dashboard/login/[^"]+)"')


class Ticks:
    """The membership cache's monotonic clock, moved by the test (injected, not patched)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def site(harness: Harness) -> AsyncIterator[tuple[str, Ticks]]:
    """The bot's web app with its dashboard, as ``carebot run`` serves it with
    ``CAREBOT_DASHBOARD_URL``; membership answers cached for 60 s of the test's ticks."""
    ticks = Ticks()
    ttl = harness.rules.tickets.relay.staff_check_seconds
    harness.application.bot_data.members = MemberCache(ttl, monotonic=ticks)
    dashboard = dashboard_for(harness.application, harness.settings)
    async with serving(build_web_app(harness.application, dashboard=dashboard)) as root:
        harness.application.bot_data.login_links = LoginLinks(root)
        yield root, ticks


def client() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def status(browser: aiohttp.ClientSession, url: str) -> int:
    async with browser.get(url, allow_redirects=False) as response:
        return response.status


def harness_dashboard_text(harness: Harness, key: str) -> str:
    """A dashboard catalogue string as the pages show it (English)."""
    return load_catalogue().render("en", key)


def links_in(harness: Harness, chat_id: int) -> list[str]:
    return [
        m.text or "" for m in harness.api.sent(chat_id) if "/dashboard/login/" in (m.text or "")
    ]


async def test_dashboard_in_the_group_sends_the_link_privately_without_a_preview(
    harness: Harness, site: tuple[str, Ticks]
) -> None:
    """The group only hears that a link was sent; the private message holds it, with link
    previews off (a preview would fetch it); asked privately, the same."""
    api = harness.api
    sam = staff_member(api, 4301, "Sam")
    await api.send_text(sam, "/dashboard", chat_id=STAFF)
    private = await wait_message(api, sam.id, lambda m: "/dashboard/login/" in (m.text or ""))
    assert private.message["link_preview_options"] == {"is_disabled": True}
    await wait_text(api, STAFF, harness.text("en", "dashboard_sent_privately", name="Sam"))
    assert links_in(harness, STAFF) == []
    assert all("/dashboard/login/" not in str(m.message) for m in api.sent(STAFF))

    await api.send_text(sam, "/dashboard")  # privately
    await api.wait_for(lambda: len(links_in(harness, sam.id)) == 2)
    again = api.sent(sam.id)[-1]
    assert again.message["link_preview_options"] == {"is_disabled": True}
    assert len(api.sent(sam.id)) == 2  # nothing else was said to them


async def test_dashboard_in_the_group_from_someone_who_never_started_the_bot(
    harness: Harness, site: tuple[str, Ticks]
) -> None:
    """The bot may not write first: the group is told, without a link, to open a private
    chat and send /dashboard there; nothing else is posted."""
    api = harness.api
    nia = api.add_user(4302, "Nia", started=False)
    api.add_member(STAFF, nia, "member")
    await api.send_text(nia, "/dashboard", chat_id=STAFF)
    told = await wait_text(api, STAFF, harness.text("en", "dashboard_open_private"))
    assert "/dashboard/login/" not in str(told.message)
    assert api.sent(nia.id) == []
    assert links_in(harness, STAFF) == []
    assert [m.text for m in api.sent(STAFF)] == [told.text]

    # Once they open the private chat, /dashboard there works.
    await api.send_text(nia, "/dashboard")
    await api.wait_for(lambda: len(links_in(harness, nia.id)) == 1)


async def test_a_member_removed_from_the_staff_group_loses_the_dashboard(
    harness: Harness, site: tuple[str, Ticks]
) -> None:
    """Every dashboard request asks whether the person is still staff (cached like staff
    commands): once the cache lapses after a kick, the session is refused and revoked, and
    being added back does not revive it."""
    root, ticks = site
    api = harness.api
    sam = staff_member(api, 4303, "Sam")
    await api.send_text(sam, "/dashboard")
    await api.wait_for(lambda: len(links_in(harness, sam.id)) == 1)
    found = LINK.search(links_in(harness, sam.id)[0])
    assert found is not None
    link = found.group(1)
    async with client() as browser:
        assert await status(browser, link) == 200
        async with browser.post(link, allow_redirects=False) as response:
            assert response.status == 303
        asked = len(api.calls_of("getChatMember"))
        assert await status(browser, root + "/dashboard/") == 200
        assert await status(browser, root + "/dashboard/outbox") == 200
        assert len(api.calls_of("getChatMember")) == asked  # remembered, not asked again

        held = browser.cookie_jar.filter_cookies(URL(root + "/dashboard/"))[COOKIE].value

        api.add_member(STAFF, sam, "kicked")
        assert await status(browser, root + "/dashboard/") == 200  # within the cached minute
        ticks.now += harness.rules.tickets.relay.staff_check_seconds + 1
        async with browser.get(root + "/dashboard/outbox", allow_redirects=False) as response:
            assert response.status == 403
            assert harness_dashboard_text(harness, "not_staff") in await response.text()
        assert len(api.calls_of("getChatMember")) == asked + 1
        async with harness.sessionmaker() as session:
            stored = (
                await session.execute(
                    select(DashboardSession).where(DashboardSession.user_id == sam.id)
                )
            ).scalar_one()
        assert stored.revoked_at == harness.clock.now()

    # Added back, the old session stays ended (its cookie's signature is still valid).
    api.add_member(STAFF, sam, "member")
    ticks.now += harness.rules.tickets.relay.staff_check_seconds + 1
    async with aiohttp.ClientSession(cookies={COOKIE: held}) as replay:
        assert await status(replay, root + "/dashboard/") == 401


async def test_the_dashboard_refuses_while_telegram_cannot_say_who_is_staff(
    harness: Harness, site: tuple[str, Ticks]
) -> None:
    """No answer from getChatMember: no page (503), nothing remembered, and the next request
    asks again and gets in."""
    root, ticks = site
    api = harness.api
    kim = staff_member(api, 4304, "Kim")
    await api.send_text(kim, "/dashboard")
    await api.wait_for(lambda: len(links_in(harness, kim.id)) == 1)
    found = LINK.search(links_in(harness, kim.id)[0])
    assert found is not None
    async with client() as browser:
        async with browser.post(found.group(1), allow_redirects=False) as response:
            assert response.status == 303
        ticks.now += harness.rules.tickets.relay.staff_check_seconds + 1
        api.fail("getChatMember", error_code=500, description="Internal Server Error")
        assert await status(browser, root + "/dashboard/") == 503
        assert await status(browser, root + "/dashboard/") == 200
