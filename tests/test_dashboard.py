"""The staff dashboard in a real browser (Playwright driving the machine's Chromium).

Staff sign in with the one-time link ``/dashboard`` sends them privately (opening it shows a
"Sign in" page; its button spends it); every page's figures are checked against the database
(seeded through the real storage and desk functions) and shows the display names the rule
files give (tiers, categories, dimensions, canned replies), never their identifiers; each page
is saved as a screenshot (the path is printed), logs no console error and breaks nothing of the
dashboard's Content-Security-Policy; every page fits a phone (390 px) in both languages. One
Chromium per module, shared over CDP.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import BrowserContext, ConsoleMessage, Page, WebError, async_playwright
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.kernel.campaign_config import Campaign
from bot.kernel.clock import ManualClock
from bot.kernel.config import load_config
from bot.kernel.texts import Texts
from bot.settings import EXAMPLE_CONFIG_DIR
from bot.web import build_web_app, dashboard_for, dashboard_secret
from dashboard.auth import LoginLinks, mint_login_path
from dashboard.core import Dashboard
from dashboard.pages.routes import mount
from handlers.tickets.desk import Incoming, Staff
from handlers.tickets.lifecycle import TicketDesk, open_ticket, resolve, send_canned
from handlers.tickets.relay import staff_reply
from scheduler import tiers as tier_job
from scheduler.campaigns import Campaigns
from storage import campaigns as campaign_queries
from storage import care as care_queries
from storage import orders as order_queries
from storage import outbox as outbox_queries
from storage.models import (
    Coupon,
    Customer,
    Order,
    Outbox,
    RfmScore,
    SurveyAnswer,
    SurveyResponse,
    Ticket,
)
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
WINBACK = Campaign.model_validate(
    {
        "title": {"en": "Win them back", "zh": "挽回老客户"},
        "coupon": {"discount_percent": 15},
        "message": {"en": "Hello {name}: {coupon}", "zh": "{name}您好：{coupon}"},
        "buttons": [{"en": "Shop", "zh": "商店", "url": "https://shop.example/"}],
        "window": {"start": "2026-11-20", "end": "2026-11-30"},
    }
).model_copy(update={"name": "winback"})
SHIPPED_RULES = load_config(EXAMPLE_CONFIG_DIR)
RULES = SHIPPED_RULES.model_copy(
    update={"campaigns": {**SHIPPED_RULES.campaigns, "winback": WINBACK}}
)
CONSOLE_ERRORS: dict[Page, list[str]] = {}
"""What each page logged as an error since it last opened a page (``open_page``)."""
PHONE = {"width": 390, "height": 844}
AT_RISK_STAGE = Customer.stage == "at_risk"


def _console_message(message: ConsoleMessage) -> None:
    if message.type == "error" and message.page is not None:
        where = message.location.get("url", "")
        CONSOLE_ERRORS.setdefault(message.page, []).append(f"{message.text} [{where}]")


def _page_error(error: WebError) -> None:
    if error.page is not None:
        CONSOLE_ERRORS.setdefault(error.page, []).append(f"uncaught: {error.error}")


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
        # ... and every console error and uncaught exception (a 404 favicon included).
        context.on("console", _console_message)
        context.on("weberror", _page_error)
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


def console_errors(page: Page, *, status: int = 200) -> list[str]:
    """The console errors of ``page`` since it last opened one, but the browser's note of the
    page's own status when the test asked for a refusal (a 401 is what that page is)."""
    expected = f"the server responded with a status of {status}"
    return [
        error
        for error in CONSOLE_ERRORS.get(page, [])
        if status == 200 or not (expected in error and error.endswith(f"[{page.url}]"))
    ]


async def open_page(page: Page, url: str, shots: Path, name: str, *, charts: bool = True) -> None:
    """Go to ``url``, wait for its charts, save a full-page screenshot; nothing on it may have
    been blocked by the Content-Security-Policy, nor logged a console error."""
    await page.bring_to_front()  # a background tab is not painted: no screenshot
    CONSOLE_ERRORS.setdefault(page, []).clear()
    response = await page.goto(url)
    assert response is not None and response.status == 200, url
    if charts:
        await page.wait_for_function("document.body.dataset.charts !== undefined")
    await page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    assert await page.evaluate("window.cspViolations") == [], url
    assert console_errors(page) == [], url


async def chart_labels(page: Page, name: str) -> list[str]:
    """The labels of a drawn chart (its x axis, or a doughnut's legend)."""
    labels: list[str] = await page.evaluate(
        "name => Chart.getChart(document.querySelector(`canvas[data-chart-name=${name}]`))"
        ".data.labels",
        name,
    )
    return labels


CHART_GEOMETRY = """name => {
  const chart = Chart.getChart(document.querySelector(`canvas[data-chart-name=${name}]`));
  const area = chart.chartArea, y = chart.scales.y;
  const left = Math.ceil(area.left), width = Math.floor(area.right) - left;
  const zero = Math.round(y.getPixelForValue(0));
  const pixels = chart.ctx.getImageData(left, zero - 1, width, 3).data;
  const columns = [];  // per column, the darkest of the three rows around 0 (over white)
  for (let x = 0; x < width; x++) {
    let dark = 255;
    for (let row = 0; row < 3; row++) {
      const at = (row * width + x) * 4;
      dark = Math.min(dark, 255 - (pixels[at + 3] * (255 - pixels[at])) / 255);
    }
    columns.push(dark);
  }
  return {
    min: y.min,
    max: y.max,
    ticks: y.ticks.map(tick => tick.value),
    left: area.left,
    right: area.right,
    points: chart.getDatasetMeta(0).data.map(p => ({x: p.x, radius: p.options.radius})),
    darkColumns: columns.filter(value => value < 140).length / width,
  };
}"""


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
        assert console_errors(page, status=401) == []

        # The icon every page links, and where browsers look without a link.
        for path in ("/favicon.ico", "/dashboard/static/favicon.svg"):
            icon = await page.request.get(root + path)
            assert icon.status == 200, path
            assert icon.headers["content-type"] == "image/svg+xml", path
            assert (await icon.body()).startswith(b"<svg")

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
    """Customers with orders and tiers, three tickets (one answered, one answered with a canned
    reply and resolved), and outbox rows (two dead)."""
    now = clock.now()
    desk = TicketDesk.from_config(RULES, Texts.load(), STAFF_CHAT_ID)
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
        await send_canned(session, desk, tickets[2], staff, "thanks", now)
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


async def seed_campaign(sessionmaker: async_sessionmaker[AsyncSession], now: datetime) -> None:
    """The customers on Telegram with consent, and ``winback`` sent to them all by the real
    ``send``: one message delivered, one refused for good, one cancelled, one waiting; one
    coupon used by an order of 888 CNY."""
    async with sessionmaker.begin() as session:
        await session.execute(
            update(Customer).values(consent=True, chat_id=Customer.id + 900, reachable=True)
        )
        report = await Campaigns(RULES).send(session, WINBACK, now)
        assert report.queued == len(HISTORIES)
    async with sessionmaker.begin() as session:
        people = await customers_by_name(session)
        rows = dict(
            (
                await session.execute(
                    select(Outbox.customer_id, Outbox.id).where(Outbox.kind == "campaign")
                )
            ).all()
        )
        await outbox_queries.mark_sent(
            session, rows[people["A"].id], telegram_message_id=1, now=now
        )
        await outbox_queries.finish(
            session, rows[people["B"].id], state=State.FAILED, error="blocked", now=now
        )
        await care_queries.cancel_rows(session, [rows[people["C"].id]], reason="test", now=now)
        code = await session.scalar(
            select(Coupon.code).where(Coupon.customer_id == people["D"].id)
        )
        session.add(
            Order(
                external_id="W-1",
                customer_id=people["D"].id,
                amount_cents=88800,
                currency="CNY",
                value_cents=88800,
                status="completed",
                placed_at=now,
                placed_day=(now.date() - date(1970, 1, 1)).days,
                coupon=code,
                created_at=now,
                updated_at=now,
            )
        )
        await session.flush()
        assert await care_queries.mark_coupons_used(session, now) == 1


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
    await seed_campaign(sessionmaker, clock.now())
    app = web.Application()
    mount(
        app,
        Dashboard(sessionmaker, dashboard_secret(TOKEN), clock, timezone=SHOP_ZONE, rules=RULES),
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
    # Display names, not identifiers: in the list and in the tier filter.
    cells = await page.locator("table.list td").all_inner_texts()
    assert "🚚 Delivery" in cells and "delivery" not in cells
    tiers = await count(sessionmaker, Ticket.tier, where=Ticket.id > 0)
    options = await page.locator("select[name=tier] option").all_inner_texts()
    names = {rule.name: rule.en for rule in RULES.tiers.tiers}
    assert options[1:] == [names[rule] for rule in names if (rule,) in tiers]
    assert not {tier for (tier,) in tiers} & set(cells + options)

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
    assert await figure(page, "history-count") == len(entries) >= 3
    history_text = await page.locator("table.history").inner_text()
    assert "Broken (C)" in history_text
    # The canned reply as the customer got it (in their language, Chinese), not its code.
    thanks = RULES.tickets.canned_reply("thanks")
    assert thanks is not None
    assert f"“{thanks.title}”: {thanks.zh}" in history_text
    assert "\tthanks" not in history_text
    # Who the customer is: their name, their tier's and category's display names, their
    # latest scores by dimension name.
    async with sessionmaker() as session:
        customer = await session.get(Customer, ticket.customer_id)
    assert customer is not None and customer.name == "Customer C"
    assert await page.locator('[data-figure="ticket-customer"]').inner_text() == "Customer C"
    tier = next(rule for rule in RULES.tiers.tiers if rule.name == ticket.tier)
    assert tier.en is not None and tier.en != ticket.tier
    assert await page.locator('[data-figure="ticket-tier"]').inner_text() == tier.en
    assert await page.locator('[data-figure="ticket-category"]').inner_text() == "🚚 Delivery"
    facts = await page.locator("table.facts").inner_text()
    assert "Would recommend (NPS): 3/10 (2026-11-19)" in facts  # C's NPS answer

    # In Chinese: the same names from the rule files, in Chinese.
    await open_page(page, f"{page.url}?lang=zh", screenshots, "ticket-zh")
    assert await page.locator('[data-figure="ticket-tier"]').inner_text() == tier.zh
    assert await page.locator('[data-figure="ticket-category"]').inner_text() == "🚚 物流配送"
    assert "推荐意愿（NPS）：3/10" in await page.locator("table.facts").inner_text()
    assert f"“{thanks.title}”：{thanks.zh}" in await page.locator("table.history").inner_text()


async def test_customers_page_shows_tiers_stages_and_who_is_at_risk(
    signed_in: tuple[str, Page, async_sessionmaker[AsyncSession]], screenshots: Path
) -> None:
    root, page, sessionmaker = signed_in
    await open_page(page, f"{root}/dashboard/customers", screenshots, "customers")
    mix = await count(sessionmaker, Customer.tier, Customer.stage, where=Customer.id > 0)
    for (tier, stage), expected in mix.items():
        assert await figure(page, f"mix.{tier}.{stage}") == expected
    # The at-risk list is the customers whose stage is "at risk" (the rule retention offers
    # use too), no more: a churn signal in another stage is listed apart, with its stage.
    at_risk = await count(sessionmaker, Customer.name, where=AT_RISK_STAGE)
    assert at_risk  # C has not ordered for 200 days
    assert await figure(page, "at-risk-count") == len(at_risk)
    risk_rows = page.locator("table.at-risk tbody tr")
    assert sorted(await risk_rows.locator("td:nth-child(1)").all_inner_texts()) == sorted(
        name for (name,) in at_risk
    )
    assert set(await risk_rows.locator("td:nth-child(3)").all_inner_texts()) == {"At risk"}
    warned = await count(
        sessionmaker,
        Customer.name,
        where=~AT_RISK_STAGE
        & Customer.id.in_(select(RfmScore.customer_id).where(RfmScore.churn_flags != 0)),
    )
    assert await figure(page, "warning-count") == len(warned)
    stages = await page.locator("table.warnings tbody td:nth-child(3)").all_inner_texts()
    assert "At risk" not in stages
    # Tiers by their display names, best first, in the table and the chart.
    tier_names = [rule.en for rule in RULES.tiers.tiers]
    shown = (
        await page.locator("table.figures").first.locator("tbody td:first-child").all_inner_texts()
    )
    assert shown == [name for name in tier_names if name in shown] and shown
    legend = await chart_labels(page, "tiers")
    assert legend == shown
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
    # The staff group's queue: the seeded tickets' topics and cards, waiting.
    queued = await count(
        sessionmaker,
        Outbox.chat_id,
        where=Outbox.state.in_(["pending", "claimed"]) & (Outbox.chat_id < 0),
    )
    assert list(queued) == [(STAFF_CHAT_ID,)]
    assert await figure(page, f"group-queue.{STAFF_CHAT_ID}") == queued[(STAFF_CHAT_ID,)] > 0
    wait = await page.locator(f'[data-figure="group-wait.{STAFF_CHAT_ID}"]').inner_text()
    assert wait.strip()

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


async def test_campaigns_page_shows_each_campaign_by_tier_in_both_languages(
    signed_in: tuple[str, Page, async_sessionmaker[AsyncSession]], screenshots: Path
) -> None:
    """The same figures as ``carebot campaign stats``, tiers by their display names; a
    campaign not sent yet says so."""
    root, page, sessionmaker = signed_in
    await open_page(page, f"{root}/dashboard/campaigns", screenshots, "campaigns")
    async with sessionmaker() as session:
        run = await campaign_queries.find_run(session, "winback")
        assert run is not None
        figures = await campaign_queries.figures(session, run.id)
    for row in figures.by_tier:
        for column in ("queued", "sent", "waiting", "blocked", "cancelled", "pressed"):
            assert await figure(page, f"campaign.winback.{row.tier}.{column}") == getattr(
                row, column
            ), (row.tier, column)
    total = {
        column: await figure(page, f"campaign.winback.all.{column}")
        for column in ("queued", "sent", "waiting", "blocked", "cancelled", "pressed")
    }
    assert total == {
        "queued": 4,
        "sent": 1,
        "waiting": 1,
        "blocked": 1,
        "cancelled": 1,
        "pressed": 0,
    }
    coupons = page.locator('[data-figure="campaign.winback.all.coupons"]')
    assert await coupons.inner_text() == "1 / 4"
    revenue = page.locator('[data-figure="campaign.winback.all.revenue"]')
    assert await revenue.inner_text() == "888.00 CNY"
    # Tiers by their display names, best first, then all of them.
    present = {row.tier for row in figures.by_tier}
    rows = page.locator("table.campaigns").nth(1).locator("tbody td:first-child")
    assert await rows.all_inner_texts() == [
        *(rule.en for rule in RULES.tiers.tiers if rule.name in present),
        "All tiers",
    ]
    headings = await page.locator("main h2").all_inner_texts()
    assert headings == ["Spring tea for regulars · spring_tea", "Win them back · winback"]
    text = await page.locator("main").inner_text()
    assert "Not sent yet" in text and "cannot be counted" in text
    await open_page(page, f"{root}/dashboard/campaigns?lang=zh", screenshots, "campaigns-zh")
    headings = await page.locator("main h2").all_inner_texts()
    assert headings == ["春茶回馈老客户 · spring_tea", "挽回老客户 · winback"]
    assert await rows.all_inner_texts() == [
        *(rule.zh for rule in RULES.tiers.tiers if rule.name in present),
        "全部等级",
    ]


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

    # Display names: tiers (best first) and dimensions, in the tables and the charts.
    tiers = page.locator("table.figures").first.locator("tbody td:first-child")
    assert await tiers.all_inner_texts() == ["VIP", "Normal"]
    assert await chart_labels(page, "tier-dimensions") == ["VIP", "Normal"]
    headers = await page.locator("table.figures").first.locator("th").all_inner_texts()
    assert "Delivery speed" in headers and "delivery_speed" not in headers

    # NPS runs -100..100 with a darker line at 0 (the trend here is 0, then nothing).
    nps = await page.evaluate(CHART_GEOMETRY, "nps-weekly")
    assert (nps["min"], nps["max"]) == (-100, 100)
    assert nps["ticks"] == [-100, -50, 0, 50, 100]
    assert nps["darkColumns"] > 0.9, nps  # across the chart, not the faint grid grey


async def test_one_week_of_answers_is_a_visible_point(
    signed_in: tuple[str, Page, async_sessionmaker[AsyncSession]], screenshots: Path
) -> None:
    """A shop in its first week: each line chart's one point stands in the middle, drawn whole
    (not a dot in the corner)."""
    root, page, sessionmaker = signed_in
    async with sessionmaker.begin() as session:  # keep the week of 2026-11-16 only
        earlier = select(SurveyResponse.id).where(
            SurveyResponse.invited_at < datetime(2026, 11, 16, tzinfo=UTC)
        )
        await session.execute(delete(SurveyAnswer).where(SurveyAnswer.response_id.in_(earlier)))
        await session.execute(delete(SurveyResponse).where(SurveyResponse.id.in_(earlier)))
    await open_page(page, f"{root}/dashboard/satisfaction", screenshots, "satisfaction-one-week")
    for name in ("csat-weekly", "nps-weekly", "dimensions-weekly"):
        assert await chart_labels(page, name) == ["2026-11-16"], name
        chart = await page.evaluate(CHART_GEOMETRY, name)
        (point,) = chart["points"]
        middle = (chart["left"] + chart["right"]) / 2
        assert abs(point["x"] - middle) < 2, (name, chart)
        assert point["radius"] >= 4, name


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


PHONE_CHECK = """() => {
  const lines = element => {
    const range = document.createRange();
    range.selectNodeContents(element);
    const tops = new Set([...range.getClientRects()].map(rect => Math.round(rect.top)));
    return tops.size;
  };
  const menu = [...document.querySelectorAll("nav a, .who a, .who span, .who button")];
  const tooWide = [...document.querySelectorAll("canvas, .card, section, .scroll")].filter(
    element => element.getBoundingClientRect().right > window.innerWidth + 0.5
  );
  return {
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    menuLines: menu.map(item => [item.textContent.trim(), lines(item)]),
    tooWide: tooWide.map(element => element.tagName + "." + element.className),
    scrollingTables: [...document.querySelectorAll(".scroll")].filter(
      box => box.scrollWidth > box.clientWidth
    ).length,
  };
}"""


async def test_every_page_fits_a_phone_in_both_languages(
    signed_in: tuple[str, Page, async_sessionmaker[AsyncSession]], screenshots: Path
) -> None:
    """At 390 px (staff open the sign-in link from Telegram on a phone), in English and
    Chinese: no page scrolls sideways, each menu item is one line, charts and cards fit the
    screen (wide tables scroll in their own box), and no page logs a console error."""
    root, page, sessionmaker = signed_in
    await page.set_viewport_size(PHONE)
    async with sessionmaker() as session:
        number = (await session.execute(select(func.min(Ticket.number)))).scalar_one()
    pages = {
        "overview": "/dashboard/",
        "tickets": "/dashboard/tickets?status=all",
        "ticket": f"/dashboard/tickets/{number}",
        "satisfaction": "/dashboard/satisfaction",
        "customers": "/dashboard/customers",
        "staff": "/dashboard/staff",
        "campaigns": "/dashboard/campaigns",
        "outbox": "/dashboard/outbox",
    }
    scrolling = 0
    for language in ("en", "zh"):
        await page.goto(f"{root}/dashboard/?lang={language}")  # remembered for the next pages
        for name, path in pages.items():
            await open_page(page, root + path, screenshots, f"phone-{language}-{name}")
            assert await page.get_attribute("html", "lang") == language
            fit = await page.evaluate(PHONE_CHECK)
            assert fit["scrollWidth"] <= fit["innerWidth"] == PHONE["width"], (name, fit)
            assert all(lines == 1 for _, lines in fit["menuLines"]), (name, fit["menuLines"])
            assert len(fit["menuLines"]) >= 10, name  # seven pages, languages, who, sign out
            assert fit["tooWide"] == [], (name, fit["tooWide"])
            scrolling += fit["scrollingTables"]
        # The sign-in page a link opens fits too.
        path = await mint_login_path(sessionmaker, user_id=4021, name="Lin", now=START)
        await open_page(
            page,
            f"{root}{path}?lang={language}",
            screenshots,
            f"phone-{language}-signin",
            charts=False,
        )
        fit = await page.evaluate(PHONE_CHECK)
        assert fit["scrollWidth"] <= fit["innerWidth"], fit
    assert scrolling > 0  # some tables are wider than a phone: they scroll in their box
