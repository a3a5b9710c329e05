"""The staff dashboard in a real browser (Playwright driving the machine's Chromium).

Staff sign in with the one-time link ``/dashboard`` sends them privately (opening it shows a
"Sign in" page; its button spends it); every page's figures are checked against the database
(seeded through the real storage and desk functions); each page is saved as a screenshot (the
path is printed), and none breaks the dashboard's Content-Security-Policy. One Chromium per
module, shared over CDP.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import BrowserContext, Page, async_playwright
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.kernel.clock import ManualClock
from bot.kernel.config import load_config
from bot.kernel.texts import Texts
from bot.settings import EXAMPLE_CONFIG_DIR
from bot.web import build_web_app, dashboard_for, dashboard_secret
from dashboard.auth import LoginLinks, mint_login_path
from dashboard.core import Dashboard
from dashboard.pages.routes import mount
from handlers.tickets.desk import Incoming, Staff
from handlers.tickets.lifecycle import TicketDesk, open_ticket, resolve
from handlers.tickets.relay import staff_reply
from scheduler import tiers as tier_job
from storage import orders as order_queries
from storage import outbox as outbox_queries
from storage.models import Customer, Outbox, Ticket
from storage.outbox import State
from tests.auxil.browser import CHROMIUM_FLAGS, require_chromium
from tests.auxil.harness import STAFF_CHAT_ID, START, TOKEN, Harness
from tests.auxil.outbox import queue_text
from tests.auxil.shop import add_customer, customers_by_name, order_rows, tier_rules
from tests.auxil.surveys import answered_survey
from tests.auxil.tickets import open_ticket_for, staff_member, wait_message
from tests.test_metrics import serving

SHOP_ZONE = "Asia/Shanghai"
CSP_WATCH = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(event.violatedDirective + " " + event.blockedURI);
});
"""


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One headless Chromium for the module; yields its DevTools endpoint."""
    executable = require_chromium()
    profile = tmp_path_factory.mktemp("chromium-profile")
    process = subprocess.Popen(
        [
            executable,
            *CHROMIUM_FLAGS,
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    found = threading.Event()
    endpoint: list[str] = []

    def read_stderr() -> None:  # keep draining: a full pipe would stall Chromium
        assert process.stderr is not None
        for line in process.stderr:
            match = re.search(r"DevTools listening on (ws://\S+)", line)
            if match and not found.is_set():
                endpoint.append(match.group(1))
                found.set()
        found.set()

    threading.Thread(target=read_stderr, daemon=True).start()
    try:
        if not found.wait(30) or not endpoint:
            pytest.fail("Chromium did not start (no DevTools endpoint)")
        yield endpoint[0]
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[BrowserContext]:
    """A fresh browser context (no cookies) on the module's Chromium."""
    async with async_playwright() as playwright:
        connected = await playwright.chromium.connect_over_cdp(chromium)
        context = await connected.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(5000)
        # Every page records what its Content-Security-Policy blocked (the script is injected
        # by the browser, so the policy does not apply to it).
        await context.add_init_script(CSP_WATCH)
        try:
            yield context
        finally:
            await context.close()
            await connected.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    folder = tmp_path / "screenshots"
    folder.mkdir()
    print(f"\nscreenshots: {folder}")
    return folder


async def figure(page: Page, name: str) -> int:
    return int(await page.locator(f'[data-figure="{name}"]').first.inner_text())


async def open_page(page: Page, url: str, shots: Path, name: str) -> None:
    """Go to ``url``, wait for its charts, save a full-page screenshot; nothing on it may have
    been blocked by the Content-Security-Policy."""
    await page.bring_to_front()  # a background tab is not painted: no screenshot
    response = await page.goto(url)
    assert response is not None and response.status == 200, url
    await page.wait_for_function("document.body.dataset.charts !== undefined")
    await page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    assert await page.evaluate("window.cspViolations") == [], url


async def sign_in(page: Page, link: str) -> None:
    """Open a sign-in link (a "Sign in" page: nothing spent yet) and press its button."""
    response = await page.goto(link)
    assert response is not None and response.status == 200, link
    assert await page.get_attribute("body", "data-page") == "signin-offer"
    async with page.expect_navigation():
        await page.click("[data-action=signin]")
    assert await page.evaluate("window.cspViolations") == []


async def count(sessionmaker: async_sessionmaker[AsyncSession], *columns: Any, where: Any) -> dict:
    """Rows grouped by ``columns``: the test's own reading of the database."""
    async with sessionmaker() as session:
        result = await session.execute(
            select(*columns, func.count()).where(where).group_by(*columns)
        )
    return {tuple(row[:-1]): int(row[-1]) for row in result}


# --- signing in through the bot, and the overview ---------------------------------------------


async def test_staff_sign_in_with_the_dashboard_command_and_see_the_overview(
    harness: Harness, browser: BrowserContext, screenshots: Path
) -> None:
    api = harness.api
    dashboard = dashboard_for(harness.application, harness.settings)
    async with serving(build_web_app(harness.application, dashboard=dashboard)) as root:
        # What CAREBOT_DASHBOARD_URL wires in bot.web.wire_operations.
        harness.application.bot_data.login_links = LoginLinks(root)

        # Open tickets of two tiers, and today's care messages.
        vip = await open_ticket_for(harness, api.add_user(4001, "Vera"), tier="vip")
        await open_ticket_for(harness, api.add_user(4002, "Nick"), tier="normal")
        await open_ticket_for(harness, api.add_user(4003, "Nora"), tier="normal")
        async with harness.sessionmaker.begin() as session:
            for index, kind in enumerate(("care.birthday", "care.birthday", "care.holiday")):
                await queue_text(
                    session,
                    f"care-{index}",
                    900 + index,
                    kind=kind,
                    now=harness.clock.now(),
                    # Due tonight, shop time (not sent during the test).
                    due_at=harness.clock.now() + timedelta(hours=5),
                )

        # Without a session: no page, only how to get in.
        page = await browser.new_page()
        response = await page.goto(f"{root}/dashboard/")
        assert response is not None and response.status == 401
        assert "/dashboard" in await page.locator("main").inner_text()

        # A customer asking privately gets no link; a staff member asking in the group gets
        # one in their private chat (the group only hears that it was sent).
        stranger = api.add_user(4010, "Stan")
        await api.send_text(stranger, "/dashboard")
        refusal = (await api.wait_for_sent(stranger.id, 1))[-1]
        assert refusal.text == harness.text("en", "ticket_not_staff")
        assert "/dashboard/login/" not in (refusal.text or "")
        sam = staff_member(api, 4020, "Sam")
        await api.send_text(sam, "/dashboard", chat_id=STAFF_CHAT_ID)
        answer = await wait_message(
            api, sam.id, lambda sent: "/dashboard/login/" in (sent.text or "")
        )
        link = re.search(r'href="([^"]+)"', answer.text or "")
        assert link is not None and link.group(1).startswith(f"{root}/dashboard/login/")
        await wait_message(
            api,
            STAFF_CHAT_ID,
            lambda sent: sent.text == harness.text("en", "dashboard_sent_privately", name="Sam"),
        )
        assert not [m for m in api.sent(STAFF_CHAT_ID) if "/dashboard/login/" in (m.text or "")]
        await api.send_text(sam, "/dashboard")  # privately: another link of their own
        await api.wait_for_sent(sam.id, 2)
        private = api.sent(sam.id)[-1]
        assert f'href="{root}/dashboard/login/' in (private.text or "")
        assert link.group(1) not in (private.text or "")

        await sign_in(page, link.group(1))
        assert page.url == f"{root}/dashboard/"
        await open_page(page, page.url, screenshots, "overview-signed-in")
        assert await page.locator('[data-figure="staff-name"]').inner_text() == "Sam"
        assert await figure(page, "breach-first") == 0

        # 45 minutes later the VIP's first reply is overdue (the normal ones are not yet).
        harness.clock.advance(timedelta(minutes=45))
        await open_page(page, f"{root}/dashboard/", screenshots, "overview")

        now = harness.clock.now()
        open_counts = await count(
            harness.sessionmaker, Ticket.status, Ticket.tier, where=Ticket.status != "closed"
        )
        assert open_counts  # the figures below are not all zero
        for (status, tier), expected in open_counts.items():
            assert await figure(page, f"open.{status}.{tier}") == expected
        assert await figure(page, "open-total") == sum(open_counts.values()) == 3
        overdue = await count(
            harness.sessionmaker,
            Ticket.tier,
            where=(Ticket.first_response_at.is_(None)) & (Ticket.first_response_due < now),
        )
        assert overdue == {(vip.tier,): 1}
        assert await figure(page, "breach-first") == 1
        care = await count(harness.sessionmaker, Outbox.kind, where=Outbox.kind.like("care.%"))
        assert await figure(page, "care.care.birthday") == care[("care.birthday",)] == 2
        assert await figure(page, "care.care.holiday") == care[("care.holiday",)] == 1
        assert await figure(page, "care-today") == 3
        assert await page.locator("canvas[data-chart-name=open-tickets]").count() == 1

        # The link worked once.
        other = await browser.new_page()
        again = await other.goto(link.group(1))
        assert again is not None and again.status == 403
        await other.close()

        # Chinese on request, kept for the next page.
        await open_page(page, f"{root}/dashboard/?lang=zh", screenshots, "overview-zh")
        assert await page.locator("h1").inner_text() == "总览"
        await open_page(page, f"{root}/dashboard/outbox", screenshots, "outbox-zh")
        assert await page.locator("h1").inner_text() == "发送队列"


# --- the other pages, seeded through the storage and desk functions ---------------------------

# (days before today, yuan, status) per customer: a VIP, an important one, one at risk.
HISTORIES = {
    "A": [(2, 6000, "delivered"), (20, 5000, "delivered"), (40, 4000, "delivered")],
    "B": [(5, 900, "delivered"), (60, 800, "delivered")],
    "C": [(200, 300, "delivered")],
    "D": [(10, 100, "delivered")],
}


async def seed_shop(
    sessionmaker: async_sessionmaker[AsyncSession], clock: ManualClock
) -> TicketDesk:
    """Customers with orders and tiers, three tickets (one answered, one resolved), and outbox
    rows (two dead)."""
    now = clock.now()
    rules = load_config(EXAMPLE_CONFIG_DIR)
    desk = TicketDesk.from_config(rules, Texts.load(), STAFF_CHAT_ID)
    async with sessionmaker.begin() as session:
        for name in HISTORIES:
            await add_customer(session, name, name=f"Customer {name}")
        await order_queries.add_orders(session, order_rows(HISTORIES), now)
        await tier_job.recompute(session, tier_rules(), now, full=True)
    staff = Staff(4020, "Sam", None)
    async with sessionmaker.begin() as session:
        people = await customers_by_name(session)
        tickets = []
        for name in ("A", "B", "C"):
            ticket, _ = await open_ticket(
                session,
                desk,
                people[name],
                source="complaint",
                category="delivery",
                now=now,
                items=[Incoming(chat_id=1, message_id=1, kind="text", text=f"Broken ({name})")],
            )
            tickets.append(ticket)
        reply = Incoming(chat_id=STAFF_CHAT_ID, message_id=2, kind="text", text="On its way")
        await staff_reply(session, desk, tickets[1], staff, reply, now)
        await resolve(session, desk, tickets[2], staff, now)
        for index in range(3):
            await queue_text(session, f"care.holiday:{index}", 800 + index, kind="care.holiday")
        for key in ("care.holiday:0", "care.holiday:1"):
            row = (
                await session.execute(select(Outbox.id).where(Outbox.dedupe_key == key))
            ).scalar_one()
            await outbox_queries.finish(
                session, row, state=State.DEAD, error="TimedOut: no answer", now=now
            )
    return desk


# (survey, customer, tier, invited, answers as (dimension, kind, score)): two weeks of answers.
SURVEYS = [
    ("csat", "A", "vip", "2026-11-10", [("service_attitude", "scale", 5)]),
    ("csat", "B", "normal", "2026-11-11", [("service_attitude", "scale", 2)]),
    (
        "delivery",
        "A",
        "vip",
        "2026-11-17",
        [("delivery_speed", "scale", 4), ("product_quality", "scale", 5)],
    ),
    ("nps", "B", "normal", "2026-11-18", [("recommend", "nps", 10)]),
    ("nps", "C", "normal", "2026-11-19", [("recommend", "nps", 3)]),
]


async def seed_surveys(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Survey responses and answers, through the surveys' own storage functions."""
    async with sessionmaker.begin() as session:
        people = await customers_by_name(session)
        for index, (survey, name, tier, day, answers) in enumerate(SURVEYS):
            await answered_survey(
                session,
                customer_id=people[name].id,
                survey=survey,
                subject=f"period:{index}",
                tier=tier,
                at=datetime.fromisoformat(day).replace(hour=10, tzinfo=UTC),
                scores=answers,
            )


@pytest.fixture
async def signed_in(
    database_url: str, browser: BrowserContext
) -> AsyncIterator[tuple[str, Page, async_sessionmaker[AsyncSession]]]:
    """The dashboard mounted on a bare aiohttp app (as the demo does), the shop seeded, and a
    browser page signed in with ``mint_login_path``."""
    from storage.engine import create_engine, create_sessionmaker

    engine = create_engine(database_url)
    sessionmaker = create_sessionmaker(engine)
    clock = ManualClock(START)
    await seed_shop(sessionmaker, clock)
    await seed_surveys(sessionmaker)
    app = web.Application()
    mount(
        app,
        Dashboard(sessionmaker, dashboard_secret(TOKEN), clock, timezone=SHOP_ZONE),
    )
    try:
        async with serving(app) as root:
            path = await mint_login_path(sessionmaker, user_id=4020, name="Sam", now=clock.now())
            page = await browser.new_page()
            await sign_in(page, root + path)
            yield root, page, sessionmaker
    finally:
        await engine.dispose()


async def test_tickets_page_lists_filters_and_shows_a_history(
    signed_in: tuple[str, Page, async_sessionmaker[AsyncSession]], screenshots: Path
) -> None:
    root, page, sessionmaker = signed_in
    await open_page(page, f"{root}/dashboard/tickets", screenshots, "tickets")
    not_closed = await count(sessionmaker, Ticket.number, where=Ticket.status != "closed")
    assert await figure(page, "tickets-shown") == len(not_closed) == 3
    links = await page.locator("[data-ticket]").all_inner_texts()
    assert sorted(links) == sorted(number for (number,) in not_closed)

    # Filter: resolved only.
    await page.select_option("select[name=status]", "resolved")
    await page.click(".filters button")
    await page.wait_for_load_state()
    resolved = await count(sessionmaker, Ticket.number, where=Ticket.status == "resolved")
    assert await figure(page, "tickets-shown") == len(resolved) == 1
    await page.screenshot(path=str(screenshots / "tickets-resolved.png"), full_page=True)

    # One ticket's history: the customer's words, the staff reply, the events.
    number = next(iter(resolved))[0]
    await page.click(f'[data-ticket="{number}"]')
    await page.wait_for_load_state()
    await page.screenshot(path=str(screenshots / "ticket.png"), full_page=True)
    async with sessionmaker() as session:
        ticket = (
            await session.execute(select(Ticket).where(Ticket.number == number))
        ).scalar_one()
        from storage.tickets.messages import history

        entries = await history(session, ticket.id)
    assert await figure(page, "history-count") == len(entries) >= 2
    assert "Broken (C)" in await page.locator("table.history").inner_text()


async def test_customers_page_shows_tiers_stages_and_who_is_at_risk(
    signed_in: tuple[str, Page, async_sessionmaker[AsyncSession]], screenshots: Path
) -> None:
    root, page, sessionmaker = signed_in
    await open_page(page, f"{root}/dashboard/customers", screenshots, "customers")
    mix = await count(sessionmaker, Customer.tier, Customer.stage, where=Customer.id > 0)
    for (tier, stage), expected in mix.items():
        assert await figure(page, f"mix.{tier}.{stage}") == expected
    at_risk = await count(sessionmaker, Customer.name, where=Customer.stage == "at_risk")
    assert at_risk  # C has not ordered for 200 days
    shown = await figure(page, "at-risk-count")
    assert shown >= len(at_risk)
    risk_table = await page.locator("table.list").last.inner_text()
    for (name,) in at_risk:
        assert name in risk_table
    assert await page.locator("canvas[data-chart-name=tiers]").count() == 1


async def test_outbox_page_shows_depth_and_retries_dead_rows(
    signed_in: tuple[str, Page, async_sessionmaker[AsyncSession]], screenshots: Path
) -> None:
    root, page, sessionmaker = signed_in
    await open_page(page, f"{root}/dashboard/outbox", screenshots, "outbox")
    depth = await count(sessionmaker, Outbox.state, where=Outbox.id > 0)
    for (state,), expected in depth.items():
        assert await figure(page, f"depth.{state}") == expected
    assert await figure(page, "dead-count") == depth[("dead",)] == 2

    # Retry one of the two dead rows.
    first = page.locator("[data-dead]").first
    row_id = int(await first.get_attribute("value") or 0)
    await first.check()
    await page.click("button[value=selected]")
    await page.wait_for_load_state()
    await page.screenshot(path=str(screenshots / "outbox-retried.png"), full_page=True)
    assert await figure(page, "retried") == 1
    assert await figure(page, "dead-count") == 1
    async with sessionmaker() as session:
        state = (await session.execute(select(Outbox.state).where(Outbox.id == row_id))).scalar()
    assert state == "pending"


async def test_satisfaction_page_shows_csat_dimensions_and_nps_by_week_and_tier(
    signed_in: tuple[str, Page, async_sessionmaker[AsyncSession]], screenshots: Path
) -> None:
    root, page, _ = signed_in
    await open_page(page, f"{root}/dashboard/satisfaction", screenshots, "satisfaction")
    # Worked out by hand from SURVEYS: 1-5 answers 5, 2, 4, 5; NPS answers 10 and 3.
    expected = {
        "csat": "75.0",  # three of four are 4 or 5
        "mean": "4.0",
        "nps": "0.0",  # one promoter, one detractor
        "answers": "6",
        "tier.vip.csat": "100.0",
        "tier.vip.mean": "4.7",
        "tier.vip.delivery_speed": "4.0",
        "tier.vip.nps": "—",
        "tier.normal.csat": "0.0",
        "tier.normal.service_attitude": "2.0",
        "tier.normal.nps": "0.0",
        "week.2026-11-09.csat": "50.0",
        "week.2026-11-09.service_attitude": "3.5",
        "week.2026-11-16.csat": "100.0",
        "week.2026-11-16.product_quality": "5.0",
        "week.2026-11-16.nps": "0.0",
    }
    for name, value in expected.items():
        assert await page.locator(f'[data-figure="{name}"]').inner_text() == value, name
    assert await page.get_attribute("body", "data-charts") == "4"


async def test_another_site_cannot_frame_the_dashboard(
    signed_in: tuple[str, Page, async_sessionmaker[AsyncSession]],
) -> None:
    """Clickjacking: a page elsewhere framing the outbox (its retry buttons) gets nothing,
    although the browser holds a session cookie it would send along."""
    root, page, _ = signed_in

    async def framing(_: web.Request) -> web.Response:
        return web.Response(
            text=f'<!doctype html><iframe src="{root}/dashboard/outbox" width=800 height=600>'
            "</iframe>",
            content_type="text/html",
        )

    evil = web.Application()
    evil.router.add_get("/", framing)
    async with serving(evil) as elsewhere:
        response = await page.goto(elsewhere + "/")
        assert response is not None and response.status == 200
        await page.wait_for_load_state("load")
        frames = [frame for frame in page.frames if frame != page.main_frame]
        assert len(frames) == 1
        assert await frames[0].locator("[data-figure=dead-count]").count() == 0
        assert not frames[0].url.startswith(root)
