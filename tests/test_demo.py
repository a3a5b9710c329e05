"""``carebot demo``: the sandbox starts on one loopback URL, its chat page talks to the real bot
(customer and staff side by side), and the sample shop is seeded through the real importer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from playwright.async_api import async_playwright
from sqlalchemy import func, select

from bot.demo import (
    DEMO_TOKEN,
    PERSONAS,
    SAMPLE_CUSTOMERS,
    STATIC_DIR,
    DemoCalendar,
    run_demo,
    seed_shop,
)
from bot.kernel.clock import Clock, ManualClock, MovableClock, SystemClock
from bot.kernel.config import load_config
from bot.kernel.texts import Texts
from bot.settings import EXAMPLE_CONFIG_DIR
from scheduler.wiring import PeriodicJob
from storage.engine import create_engine, create_sessionmaker
from storage.models import Customer, Order, SurveyResponse
from surveys.analytics import satisfaction_by
from tests.auxil.browser import CHROMIUM_FLAGS, require_chromium
from tests.auxil.processes import CAREBOT, carebot_env

NEWCOMER, VIP, BY_PHONE, DELIVERED, LAPSED, STAFF = (persona.user_id for persona in PERSONAS)
SHOP_ZONE = ZoneInfo("Asia/Shanghai")  # tiers.toml [orders] timezone
State = dict[str, Any]


@dataclass
class Page:
    """The chat page's side of the demo: the HTTP calls its JavaScript makes."""

    url: str
    http: aiohttp.ClientSession
    state: State | None = None

    async def get_state(self) -> State:
        """The next state, as the page's long poll gets it."""
        since = f"?since={self.state['version']}" if self.state else ""
        async with self.http.get(f"{self.url}api/state{since}") as response:
            assert response.status == 200
            self.state = await response.json()
        return self.state

    async def until(self, predicate: Callable[[State], bool], within: float = 15.0) -> State:
        async with asyncio.timeout(within):
            state = self.state or await self.get_state()
            while not predicate(state):
                state = await self.get_state()
        return state

    async def post(self, action: str, **body: Any) -> aiohttp.ClientResponse:
        async with self.http.post(f"{self.url}api/{action}", json=body) as response:
            await response.read()
            return response


def chat(state: State, persona: int) -> list[dict[str, Any]]:
    customer = next(c for c in state["customers"] if c["id"] == persona)
    return list(customer["messages"])


def bot_texts(state: State, persona: int) -> list[str]:
    return [m["text"] for m in chat(state, persona) if m["from"] == "bot"]


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    """The demo running in this process on a free port, and a client for its page."""
    async with running_demo() as running:
        yield running


@pytest.fixture
async def night_page() -> AsyncIterator[Page]:
    """The demo started at 23:00 Shanghai time (the shop's zone), inside the shipped quiet
    hours."""
    clock = MovableClock(SystemClock())
    local = clock.now().astimezone(SHOP_ZONE)
    night = datetime.combine(local.date(), time(23, 0), SHOP_ZONE)
    clock.move_to(night if night > local else night + timedelta(days=1))
    async with running_demo(clock) as running:
        yield running


@contextlib.asynccontextmanager
async def running_demo(clock: Clock | None = None) -> AsyncIterator[Page]:
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    demo = asyncio.create_task(run_demo(0, ready=ready.set_result, stop=stop, clock=clock))
    await asyncio.wait({demo, ready}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if demo.done():
        await demo  # raises what stopped it
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1 (browsers keep them)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        try:
            yield Page(ready.result(), http)
        finally:
            stop.set()
            await asyncio.wait_for(demo, timeout=30)


class TestChatPage:
    async def test_start_from_the_page_gets_the_bots_reply_and_its_buttons_work(
        self, page: Page
    ) -> None:
        texts = Texts.load()
        assert page.url.startswith("http://127.0.0.1:")
        before = await page.get_state()
        assert chat(before, NEWCOMER) == []

        response = await page.post("send", persona=NEWCOMER, text="/start")
        assert response.status == 200
        state = await page.until(lambda s: len(bot_texts(s, NEWCOMER)) >= 2)
        assert bot_texts(state, NEWCOMER)[0].startswith("Hello Alex!")
        consent = chat(state, NEWCOMER)[-1]
        assert consent["text"] == texts.render("en", "consent_question")
        yes = consent["buttons"][0][0]

        await page.post("press", persona=NEWCOMER, message=consent["id"], data=yes["data"])
        state = await page.until(
            lambda s: texts.render("en", "consent_on") in bot_texts(s, NEWCOMER)
        )

    async def test_staff_answer_the_vip_in_her_tickets_topic(self, page: Page) -> None:
        state = await page.until(lambda s: bool(s["staff"]["topics"]))
        (topic,) = state["staff"]["topics"]
        assert "王芳" in topic["name"]
        assert bot_texts(state, VIP)  # she linked her account by the shop's link
        card = await page.until(
            lambda s: any(
                m["thread"] == topic["id"] and m["buttons"] for m in s["staff"]["messages"]
            )
        )
        assert card

        await page.post(
            "send", persona=STAFF, text="您好，我们马上查一下物流。", thread=topic["id"]
        )
        await page.until(lambda s: any("我们马上查一下物流" in text for text in bot_texts(s, VIP)))

    async def test_sharing_the_phone_links_the_imported_customer(self, page: Page) -> None:
        linked = Texts.load().render("zh", "phone_saved_linked")
        await page.post("send", persona=BY_PHONE, text="/start")
        await page.until(lambda s: len(bot_texts(s, BY_PHONE)) >= 1)
        assert (await page.post("contact", persona=BY_PHONE)).status == 200
        state = await page.until(lambda s: linked in bot_texts(s, BY_PHONE))
        shared = [m for m in chat(state, BY_PHONE) if m["kind"] == "contact"]
        assert [m["text"] for m in shared] == ["+8613800000002"]

    async def test_the_page_and_its_catalogue_are_served_from_the_package(
        self, page: Page
    ) -> None:
        async with page.http.get(page.url) as response:
            html = await response.text()
        assert response.status == 200
        assert '<script src="/static/app.js">' in html
        assert "http" not in html.replace("http-equiv", "")  # nothing from the network
        async with page.http.get(f"{page.url}static/strings.json") as response:
            catalogue = await response.json(content_type=None)
        assert set(catalogue["en"]) == set(catalogue["zh"])
        script = (STATIC_DIR / "app.js").read_text()
        assert "fetch(" in script and "https://" not in script
        async with page.http.get(f"{page.url}static/../demo.py") as response:
            assert response.status == 404
        assert '<link rel="icon" href="/static/favicon.svg"' in html
        for icon in ("favicon.ico", "static/favicon.svg"):
            async with page.http.get(page.url + icon) as response:
                assert response.status == 200, icon
                assert response.content_type == "image/svg+xml", icon
                assert (await response.read()).startswith(b"<svg")

    async def test_what_the_page_may_not_do(self, page: Page) -> None:
        state = await page.get_state()
        vip_message = chat(state, VIP)[-1]
        refused = [
            await page.post("send", persona=999, text="/start"),
            await page.post("send", persona=NEWCOMER, text=""),
            await page.post("send", persona=NEWCOMER, text="x" * 5000),
            await page.post("press", persona=VIP, message=vip_message["id"], data="tk:1:close"),
            await page.post("contact", persona=NEWCOMER),
        ]
        assert [response.status for response in refused] == [400] * len(refused)
        form = await page.http.post(f"{page.url}api/send", data={"persona": "7001"})
        assert form.status == 415
        async with page.http.get(page.url, headers={"Host": "evil.example:80"}) as response:
            assert response.status == 403
        assert chat(await page.get_state(), NEWCOMER) == []

    async def test_the_dashboard_link_signs_the_visitor_in(self, page: Page) -> None:
        state = await page.get_state()
        if state["dashboard"] is None:
            pytest.skip("this carebot has no dashboard package")
        async with page.http.get(f"{page.url}{state['dashboard'].lstrip('/')}") as response:
            assert response.status == 200
            assert response.url.path.startswith("/dashboard")


def survey_question(state: State, persona: int) -> dict[str, Any] | None:
    """The latest message of the persona's chat with survey answer buttons, if any."""
    asking = [
        m
        for m in chat(state, persona)
        if m["from"] == "bot"
        and any(b.get("data", "").startswith("sv:") for r in m["buttons"] for b in r)
    ]
    return asking[-1] if asking else None


class TestNextDay:
    """The page's "next day": the clock moves to tomorrow morning and the bot's daily jobs run
    there, so what carebot does on its own shows in the customers' chats."""

    async def next_day(self, page: Page) -> dict[str, Any]:
        async with page.http.post(f"{page.url}api/next-day", json={}) as response:
            assert response.status == 200, await response.text()
            answer: dict[str, Any] = await response.json()
        return answer

    async def test_greeting_follow_up_offer_and_survey_arrive_and_a_low_score_opens_a_ticket(
        self, page: Page
    ) -> None:
        rules = load_config(EXAMPLE_CONFIG_DIR)
        vip, normal = rules.care.tier("vip"), rules.care.tier("normal")
        # The demo shop has no order lines: {recommendations} renders as nothing.
        birthday = vip.templates.birthday.get("zh").format(name="王芳", recommendations="")
        follow_up = vip.templates.followup.get("en").format(
            name="Emma Brown", order="C003-0", recommendations=""
        )
        birthday, follow_up = birthday.strip(), follow_up.strip()
        offer_start = normal.templates.retention.get("en").split("{coupon}")[0]
        offer_start = offer_start.format(
            name="Olivia Smith",
            discount=normal.offer.discount_percent,
            min_spend=f"{normal.offer.min_spend} CNY",
        )
        before = await page.get_state()
        today = date.fromisoformat(before["clock"]["date"])
        assert before["clock"]["day"] == 0
        consented = Texts.load().render("en", "consent_on")
        assert bot_texts(before, LAPSED)[-1] == consented  # linked, said yes, nothing since

        first = await self.next_day(page)
        assert first["date"] == (today + timedelta(days=1)).isoformat() and first["day"] == 1
        assert first["care"] == 3  # the birthday, the follow-up and the offer
        state = await page.until(
            lambda s: (
                birthday in bot_texts(s, VIP)
                and any(text.startswith(offer_start) for text in bot_texts(s, LAPSED))
                and len(bot_texts(s, DELIVERED)) > len(bot_texts(before, DELIVERED))
            )
        )
        assert state["clock"] == {"date": first["date"], "day": 1}
        # Emma's follow-up and her delivery survey fall on the same day: the daily cap
        # (outbox.toml, one care message a day) sends the second the next day.
        second = await self.next_day(page)
        assert second["day"] == 2
        state = await page.until(
            lambda s: follow_up in bot_texts(s, DELIVERED) and survey_question(s, DELIVERED)
        )
        invitation = survey_question(state, DELIVERED)
        assert invitation is not None and "How was your order C003-0?" in invitation["text"]

        topics = {topic["id"] for topic in state["staff"]["topics"]}
        for _ in range(3):  # the three scored questions, each answered with its lowest score
            question = survey_question(state, DELIVERED)
            assert question is not None
            lowest = question["buttons"][0][0]
            assert lowest["data"].endswith(":1")
            await page.post(
                "press", persona=DELIVERED, message=question["id"], data=lowest["data"]
            )
            state = await page.until(
                lambda s, asked=question["id"]: (
                    (next_question := survey_question(s, DELIVERED)) is not None
                    and next_question["id"] != asked
                )
            )
        comment = survey_question(state, DELIVERED)
        assert comment is not None
        await page.post(
            "press",
            persona=DELIVERED,
            message=comment["id"],
            data=comment["buttons"][-1][0]["data"],
        )
        state = await page.until(
            lambda s: any(
                topic["id"] not in topics and "Emma Brown" in topic["name"]
                for topic in s["staff"]["topics"]
            )
        )

    async def test_the_clock_only_moves_when_asked_and_never_twice_at_once(
        self, page: Page
    ) -> None:
        state = await page.get_state()
        today = date.fromisoformat(state["clock"]["date"])
        answers = await asyncio.gather(self.next_day(page), self.next_day(page))
        assert sorted(answer["day"] for answer in answers) == [1, 2]
        assert sorted(answer["date"] for answer in answers) == [
            (today + timedelta(days=n)).isoformat() for n in (1, 2)
        ]
        # Day 1: the birthday, the follow-up and the offer; day 2 has none of its own.
        assert [answer["care"] for answer in sorted(answers, key=lambda a: a["day"])] == [3, 0]


async def test_each_next_day_is_the_morning_after_the_last_whatever_the_hour() -> None:
    zone = ZoneInfo("Asia/Shanghai")
    ran: list[datetime] = []

    async def record(now: datetime) -> None:
        ran.append(now)

    def calendar_at(moment: datetime) -> tuple[ManualClock, DemoCalendar]:
        base = ManualClock(moment)
        job = PeriodicJob("record", timedelta(days=1), record)
        return base, DemoCalendar(MovableClock(base), zone, [job], moment.date())

    def morning(day: int) -> datetime:
        return datetime(2025, 6, day, 10, 0, tzinfo=zone)

    # Started in the afternoon: the next morning, then the one after.
    _, calendar = calendar_at(datetime(2025, 6, 11, 15, 0, tzinfo=zone))
    assert await calendar.next_day() == {
        "date": "2025-06-12",
        "day": 1,
        "care": 0,
        "surveys": 0,
        "recovery": 0,
    }
    assert (await calendar.next_day())["date"] == "2025-06-13"
    assert ran == [morning(12), morning(13)]
    # Started before 10:00: still the next day, not this morning.
    _, calendar = calendar_at(datetime(2025, 6, 11, 8, 0, tzinfo=zone))
    assert (await calendar.next_day())["date"] == "2025-06-12"
    # Started just before midnight and pressed just after: the day after the start, once.
    base, calendar = calendar_at(datetime(2025, 6, 11, 23, 59, 50, tzinfo=zone))
    base.advance(timedelta(seconds=20))
    assert calendar.view() == {"date": "2025-06-12", "day": 1}
    assert (await calendar.next_day())["date"] == "2025-06-12"
    assert ran[-1] == morning(12)
    # Left open for days: on from the real date, never back.
    base.advance(timedelta(days=3))
    assert (await calendar.next_day())["date"] == "2025-06-16"


async def test_a_ticket_closed_at_night_brings_its_survey_at_once(night_page: Page) -> None:
    """Quiet hours are off in the demo: the CSAT follows the closed ticket now, not at
    09:00 the next morning."""
    csat = load_config(EXAMPLE_CONFIG_DIR).surveys.survey("csat")
    assert csat is not None
    question = csat.questions[0].text.get("zh")
    state = await night_page.until(lambda s: bool(s["staff"]["topics"]))
    (topic,) = state["staff"]["topics"]
    assert not any(question in text for text in bot_texts(state, VIP))
    await night_page.post("send", persona=STAFF, text="/close", thread=topic["id"])
    state = await night_page.until(lambda s: bool(chat(s, VIP)[-1]["buttons"]))
    asked = chat(state, VIP)[-1]  # resolved: is it? (the ticket closes on her yes)
    solved = asked["buttons"][0][0]
    assert solved["data"].endswith(":yes")
    await night_page.post("press", persona=VIP, message=asked["id"], data=solved["data"])
    state = await night_page.until(lambda s: any(question in text for text in bot_texts(s, VIP)))
    assert state["clock"]["day"] == 0  # the same night


@pytest.fixture
def chromium() -> str:
    return require_chromium()


async def test_a_person_in_a_browser_starts_the_bot_and_answers_as_staff(
    page: Page, chromium: str, tmp_path: Path
) -> None:
    """The page's JavaScript, in headless Chromium: type /start as the newcomer, see the reply,
    press its button; switch to Chinese; write in the VIP's ticket topic as staff; press
    "next day" and see the care messages it brings."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium, args=list(CHROMIUM_FLAGS)
        )
        try:
            tab = await browser.new_page(viewport={"width": 1400, "height": 900}, locale="en-US")
            errors: list[str] = []  # the page may log none (a missing favicon.ico included)
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda error: errors.append(str(error)))
            await tab.goto(page.url)
            customer_log = tab.locator("#customer-log")
            await tab.locator("#personas button", has_text="Alex").click()
            await tab.fill("#customer-text", "/start")
            await tab.locator("#customer-form button[type=submit]").click()
            await customer_log.locator(".bubble.bot", has_text="Hello Alex!").wait_for()
            await customer_log.locator("button.inline", has_text="Yes").click()
            consent_on = Texts.load().render("en", "consent_on")
            await customer_log.locator(".bubble.bot", has_text=consent_on[:20]).wait_for()

            await tab.locator("#lang").click()
            assert await tab.locator("#customer-title").inner_text() == "顾客 — 与机器人的私聊"
            topic = tab.locator("#topics button", has_text="王芳")
            await topic.click()
            await tab.fill("#staff-text", "马上为您查询。")
            await tab.locator("#staff-form button[type=submit]").click()
            await tab.locator("#personas button", has_text="王芳").click()
            await customer_log.locator(".bubble.bot", has_text="马上为您查询。").wait_for()

            # ⏩ Next day: her birthday greeting arrives, and Olivia's tab shows a new message.
            shop_date = tab.locator("#shop-date")
            before = await shop_date.inner_text()
            assert before.startswith("店铺日期：")
            await tab.locator("#next-day").click()
            await customer_log.locator(".bubble.bot", has_text="生日快乐").wait_for()
            await tab.locator("#personas button", has_text="Olivia").locator(".unread").wait_for()
            assert await shop_date.inner_text() not in (before, "")
            await tab.locator("#personas button", has_text="Olivia").click()
            await customer_log.locator(".bubble.bot", has_text="% off your next order").wait_for()
            await tab.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
            assert errors == []
        finally:
            await browser.close()


async def test_the_sample_shop_goes_through_the_importer_and_gets_tiers_and_surveys(
    database_url: str, tmp_path: Path
) -> None:
    engine = create_engine(database_url)
    sessionmaker = create_sessionmaker(engine)
    now = datetime.now(UTC)
    try:
        await seed_shop(sessionmaker, load_config(EXAMPLE_CONFIG_DIR), tmp_path, now)
        async with sessionmaker() as session:
            customers = (await session.execute(select(Customer))).scalars().all()
            orders = (await session.execute(select(func.count()).select_from(Order))).scalar()
            by_dimension = await satisfaction_by(
                session, since=now - timedelta(weeks=9), until=now, group_by=["dimension"]
            )
            weeks = await satisfaction_by(
                session, since=now - timedelta(weeks=9), until=now, group_by=["week"]
            )
            low = await session.execute(
                select(func.count()).where(SurveyResponse.low_score.is_(True))
            )
    finally:
        await engine.dispose()
    assert len(customers) == len(SAMPLE_CUSTOMERS)
    assert orders == sum(sample.orders for sample in SAMPLE_CUSTOMERS)
    assert {customer.tier for customer in customers} == {"vip", "important", "normal"}
    assert all(customer.link_code for customer in customers)  # ready for /start <code>
    by_id = {customer.external_id: customer for customer in customers}
    assert by_id["C002"].phone == "+8613800000002"  # normalised: the contact button finds it
    dimensions = {row.group[0]: row for row in by_dimension}
    assert set(dimensions) >= {"delivery_speed", "service_attitude", "product_quality"}
    assert all(3 <= (row.mean_score or 0) <= 5 for row in by_dimension if row.scale_answers)
    assert dimensions["recommend"].nps is not None and dimensions["recommend"].detractors == 0
    assert len(weeks) >= 8  # a trend to draw
    assert low.scalar() == 0  # no low score without its recovery ticket


def test_the_command_prints_one_url_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    # Settings the demo must ignore: it never needs a token and runs on its own database.
    environment = carebot_env(
        telegram_token="", database_url="postgresql+asyncpg://nobody@192.0.2.1/none"
    )
    process = subprocess.Popen(
        [*CAREBOT, "demo", "--port", "0"],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("carebot demo: open http://127.0.0.1:"), process.stderr
        url = line.split("open ", 1)[1].strip()
        state = asyncio.run(_fetch_json(f"{url}api/state"))
        assert [c["id"] for c in state["customers"]] == [
            NEWCOMER,
            VIP,
            BY_PHONE,
            DELIVERED,
            LAPSED,
        ]
        process.send_signal(signal.SIGINT)
        rest, errors = process.communicate(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    assert process.returncode == 0, errors
    assert rest == ""  # one URL, nothing else
    assert DEMO_TOKEN not in errors
    assert not list(tmp_path.iterdir())  # the sandbox's database was temporary


async def _fetch_json(url: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return json.loads(await response.text())
