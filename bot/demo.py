"""``carebot demo``: try carebot in a browser, without a bot token.

One process runs the project's local Bot API server (``bot.sandbox``), the real bot polling
it (``bot.runner.serve``) on a temporary SQLite database seeded through the real importer, tiers
run, surveys' storage and ticket desk, and a small chat page on one loopback URL where a person
plays customers (their private chats) and a staff member (the staff forum group and its topics)
side by side. The page is plain HTML and JavaScript from ``bot/demo_static`` (no CDN: it works
offline); it reads the local server's state by long polling ``/api/state`` and acts through
``/api/send``, ``/api/press`` and ``/api/contact``. The staff dashboard, when installed, is
mounted on the same server and ``/dashboard-login`` signs the visitor in.

The demo's clock moves: ``/api/next-day`` (the page's "⏩ next day") jumps to tomorrow morning and
runs the jobs the bot runs on its own (tiers, care plans, surveys) there at once, so greetings,
follow-ups, retention offers and surveys show in the customers' chats. The sample shop is dated
so that the first presses bring each of them; the demo's rules have quiet hours off.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import json
import logging
import secrets
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import importer
from bot.kernel.clock import Clock, MovableClock, SystemClock
from bot.kernel.config import Config, load_config
from bot.kernel.survey_config import Question, SurveyDefinition
from bot.kernel.texts import Texts
from bot.runner import serve
from bot.sandbox.api import LocalBotApi
from bot.sandbox.records import FakeUser
from bot.settings import EXAMPLE_CONFIG_DIR, Settings, load_settings
from handlers.onboarding.registration import CB_CONSENT
from handlers.tickets.desk import Desk
from handlers.tickets.lifecycle import TicketDesk, open_ticket
from scheduler import tiers as tier_job
from scheduler.care import PlanReport as CarePlanReport
from scheduler.care import care_jobs, planner_for
from scheduler.points import points_jobs
from scheduler.surveys import survey_jobs
from scheduler.tiers import tier_jobs
from scheduler.wiring import PeriodicJob
from storage import linking as link_queries
from storage.engine import BotDatabase
from storage.migrate import upgrade
from storage.models import Customer
from storage.tiers.cards import find_customer
from surveys import queries as survey_queries
from surveys.planner import PlanReport as SurveyPlanReport
from surveys.planner import SurveyPlanner

logger = logging.getLogger(__name__)

# Never a real token: the bot only ever talks to the local server.
DEMO_TOKEN = "100000001:DEMO-not-a-real-token"
STAFF_CHAT_ID = -1001000000777
STATIC_DIR = Path(__file__).parent / "demo_static"
STATIC_FILES = frozenset({"app.js", "app.css", "strings.json", "favicon.svg"})  # index.html: /
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
LONG_POLL_SECONDS = 20.0
MAX_TEXT = 4096
BOT_REPLY_SECONDS = 20.0


# --- who the visitor can be -----------------------------------------------------------------


@dataclass(frozen=True)
class Persona:
    """Someone the visitor plays. ``note`` is a key of the page's catalogue (strings.json)."""

    user_id: int
    name: str
    language: str
    note: str
    staff: bool = False
    phone: str | None = None
    linked_to: str | None = None
    """The imported customer this Telegram account is linked to at start (``/start <code>``)."""

    def user(self) -> FakeUser:
        return FakeUser(self.user_id, self.name, self.language)


PERSONAS = (
    Persona(7001, "Alex", "en", "persona_new"),
    Persona(7002, "王芳", "zh", "persona_vip", phone="+8613800000001", linked_to="C001"),
    Persona(7003, "李雷", "zh", "persona_phone", phone="+8613800000002"),
    Persona(7004, "Emma Brown", "en", "persona_delivered", linked_to="C003"),
    Persona(7005, "Olivia Smith", "en", "persona_lapsed", linked_to="C007"),
    Persona(7900, "Mei", "en", "persona_staff", staff=True),
)


# --- the sample shop ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleCustomer:
    external_id: str
    name: str
    phone: str
    language: str
    birthday: str
    orders: int
    every_days: int
    last_days_ago: int
    amount: str


SAMPLE_CUSTOMERS = (
    # 王芳's birthday is tomorrow (see BIRTHDAY_TOMORROW): the first "next day" greets her.
    SampleCustomer("C001", "王芳", "+86 138 0000 0001", "zh", "", 14, 24, 3, "¥1,280.00"),
    SampleCustomer("C002", "李雷", "138 0000 0002", "zh", "1988-07-02", 6, 40, 12, "¥640.00"),
    # A VIP whose order was delivered two days ago: the first "next day" is the day of her
    # follow-up visit and of the delivery survey (the daily cap sends one the day after).
    SampleCustomer("C003", "Emma Brown", "+44 7700 900003", "en", "", 12, 25, 4, "USD 120"),
    SampleCustomer("C004", "张伟", "138 0000 0004", "zh", "1979-11-30", 4, 60, 45, "¥320.00"),
    SampleCustomer("C005", "刘洋", "138 0000 0005", "zh", "", 2, 90, 200, "¥150.00"),
    SampleCustomer("C006", "陈静", "138 0000 0006", "zh", "1995-01-20", 11, 28, 2, "¥899.00"),
    # Orders every 50 days, the last 75 days ago: tomorrow she is at risk (1.5 x her usual
    # gap, tiers.toml [stages]) and gets a retention offer.
    SampleCustomer("C007", "Olivia Smith", "+1 415 555 0107", "en", "", 3, 50, 75, "USD 45"),
    SampleCustomer("C008", "杨帆", "138 0000 0008", "zh", "", 1, 1, 8, "¥99.00"),
    SampleCustomer("C009", "赵磊", "138 0000 0009", "zh", "1992-09-09", 7, 35, 95, "¥520.00"),
    SampleCustomer("C010", "黄丽", "138 0000 0010", "zh", "", 5, 45, 20, "¥260.00"),
    SampleCustomer("C011", "Noah Wilson", "+61 4 1234 0111", "en", "", 0, 0, 0, ""),
    SampleCustomer("C012", "周杰", "138 0000 0012", "zh", "", 2, 150, 400, "¥2,100.00"),
)
BIRTHDAY_TOMORROW = "C001"
# The imported customers the visitor plays (their chats are linked at start).
PLAYED = frozenset(persona.linked_to for persona in PERSONAS if persona.linked_to)
# Sample orders are placed at this shop-local time of day, so what falls due on a "next day"
# (which starts at MORNING) does not depend on the hour the demo was started.
ORDER_TIME = time(9, 0)
# Weeks of answered surveys behind the dashboard's satisfaction charts.
SURVEY_WEEKS = 8
# A sample score by dimension (moved by customer and week); other questions are skipped.
SAMPLE_SCORES = {"delivery_speed": 4, "service_attitude": 4, "product_quality": 5, "recommend": 9}
# A ticket the VIP persona has open: (her Telegram id, category, what she wrote).
SAMPLE_TICKET = (7002, "delivery", "快递显示已签收，但我没有收到包裹。")


def _birthday(sample: SampleCustomer, today: date) -> str:
    """The birthday column: tomorrow for ``BIRTHDAY_TOMORROW`` (born in a leap year, so a
    29 February works too), else the sample's."""
    if sample.external_id != BIRTHDAY_TOMORROW:
        return sample.birthday
    tomorrow = today + timedelta(days=1)
    return f"1992-{tomorrow.month:02d}-{tomorrow.day:02d}"


def _sample_files(directory: Path, now: datetime, zone: ZoneInfo) -> tuple[Path, Path]:
    """The sample shop as the CSV exports ``carebot import`` reads, dated around ``now``."""
    customers_csv = directory / "customers.csv"
    orders_csv = directory / "orders.csv"
    today = now.astimezone(zone)
    morning = datetime.combine(today.date(), ORDER_TIME, tzinfo=zone)
    with customers_csv.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer_id", "name", "phone", "language", "birthday"])
        for sample in SAMPLE_CUSTOMERS:
            birthday = _birthday(sample, today.date())
            writer.writerow(
                [sample.external_id, sample.name, sample.phone, sample.language, birthday]
            )
    with orders_csv.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["order_id", "customer_id", "amount", "placed_at", "status", "delivered_at"]
        )
        for sample in SAMPLE_CUSTOMERS:
            for index in range(sample.orders):
                placed = morning - timedelta(days=sample.last_days_ago + index * sample.every_days)
                arrives = placed + timedelta(days=2)
                # The latest order is on its way or just delivered (what surveys and follow-ups
                # look at); older ones are completed.
                status = "shipped" if arrives > today else "delivered" if index == 0 else None
                writer.writerow(
                    [
                        f"{sample.external_id}-{index}",
                        sample.external_id,
                        sample.amount,
                        placed.strftime("%Y-%m-%d %H:%M"),
                        status or "completed",
                        arrives.strftime("%Y-%m-%d %H:%M") if status == "delivered" else "",
                    ]
                )
    return customers_csv, orders_csv


async def seed_shop(
    sessionmaker: async_sessionmaker[AsyncSession], rules: Config, directory: Path, now: datetime
) -> None:
    """Import the sample customers and orders (the real importer), compute their tiers and
    give them a history of answered surveys."""
    zone = ZoneInfo(rules.tiers.orders.timezone)
    customers_csv, orders_csv = _sample_files(directory, now, zone)
    async with sessionmaker.begin() as session:
        await importer.import_customers(
            session, customers_csv, rules.tiers.orders, rules.general, now
        )
    async with sessionmaker.begin() as session:
        await importer.import_orders(session, orders_csv, rules.tiers.orders, now)
    async with sessionmaker.begin() as session:
        await tier_job.recompute(session, rules.tiers, now, full=True)
    async with sessionmaker.begin() as session:
        await seed_survey_history(session, rules, now)


def _sample_score(
    planner: SurveyPlanner, survey: SurveyDefinition, question: Question, turn: int
) -> int:
    """A plausible score above the recovery threshold (a low one would need its ticket)."""
    top = 10 if question.type == "nps" else 5
    score = SAMPLE_SCORES.get(question.dimension or "", top - 1) + turn % 3 - 1
    return max(planner.rules.threshold(survey, question.type) + 1, min(top, score))


async def seed_survey_history(session: AsyncSession, rules: Config, now: datetime) -> None:
    """``SURVEY_WEEKS`` weeks of answered surveys from the sample customers the visitor does
    not play, through the surveys' own storage functions, as the planner and the question flow
    would have left them."""
    planner = SurveyPlanner(rules.surveys)
    customers: list[Customer] = []
    for sample in SAMPLE_CUSTOMERS:
        if sample.external_id in PLAYED:
            continue  # no survey fatigue holds back what "next day" brings them
        customer = await find_customer(session, sample.external_id)
        if customer is not None and sample.orders:
            customers.append(customer)
    for survey in rules.surveys.surveys:
        stored = planner.snapshot(survey)
        started = now - timedelta(weeks=SURVEY_WEEKS)
        definition = await survey_queries.definition_id(
            session, stored.id, stored.digest, stored.model_dump(mode="json"), started
        )
        audience = [c for c in customers if not survey.tiers or c.tier in survey.tiers]
        if not audience:
            continue
        for turn in range(SURVEY_WEEKS * 2):
            customer = audience[(turn * 5 + len(survey.id)) % len(audience)]
            answered = now - timedelta(days=turn * 3.5 + 1)
            response = await survey_queries.insert_response(
                session,
                {
                    "definition_id": definition,
                    "survey_id": survey.id,
                    "customer_id": customer.id,
                    "subject": f"period:{answered.date().isoformat()}",
                    "tier": customer.tier,
                    "status": survey_queries.COMPLETE,
                    "low_score": False,
                    "invited_at": answered - timedelta(hours=2),
                    "expires_at": answered + timedelta(hours=survey.expire_after_hours),
                    "last_answer_at": answered,
                    "completed_at": answered,
                    "closed_at": answered,
                    "updated_at": answered,
                },
            )
            if response is None:
                continue
            for position, question in enumerate(survey.questions):
                if not question.scored:
                    continue
                await survey_queries.add_answer(
                    session,
                    {
                        "response_id": response,
                        "question_id": question.id,
                        "position": position,
                        "kind": question.type,
                        "dimension": question.dimension,
                        "score": _sample_score(planner, survey, question, turn + position),
                        "answered_at": answered,
                    },
                )


async def link_code_of(sessionmaker: async_sessionmaker[AsyncSession], external_id: str) -> str:
    """The one-time code the shop would send the imported customer (``carebot import
    link-codes``)."""
    async with sessionmaker() as session:
        codes = await link_queries.unlinked_codes(session)
    return next(code for customer, _, _, code in codes if customer == external_id)


def _has_sent(api: LocalBotApi, chat_id: int, text: str) -> Callable[[], bool]:
    return lambda: any(message.text == text for message in api.sent(chat_id))


async def _link_and_consent(
    api: LocalBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    texts: Texts,
    persona: Persona,
) -> None:
    """The persona opens the shop's link (``/start <code>``) and says yes to care messages."""
    assert persona.linked_to is not None
    code = await link_code_of(sessionmaker, persona.linked_to)
    await api.send_text(persona.user(), f"/start {code}")
    question = texts.render(persona.language, "consent_question")
    await api.wait_for(
        _has_sent(api, persona.user_id, question),
        timeout=BOT_REPLY_SECONDS,
        description=f"{persona.name} linked to {persona.linked_to}",
    )
    asked = next(message for message in api.sent(persona.user_id) if message.text == question)
    await api.press_button(persona.user(), asked.message_id, f"{CB_CONSENT}yes")
    await api.wait_for(
        _has_sent(api, persona.user_id, texts.render(persona.language, "consent_on")),
        timeout=BOT_REPLY_SECONDS,
        description=f"{persona.name} consented",
    )


async def seed_conversations(
    api: LocalBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    desk: Desk,
    texts: Texts,
    clock: Clock,
) -> None:
    """What happened on Telegram before the visitor came: the imported personas opened the
    shop's link (``/start <code>``) and agreed to care messages; the VIP has a ticket open,
    whose topic the bot creates in the group."""
    await asyncio.gather(
        *(
            _link_and_consent(api, sessionmaker, texts, persona)
            for persona in PERSONAS
            if persona.linked_to is not None
        )
    )
    user_id, category, subject = SAMPLE_TICKET
    async with sessionmaker.begin() as session:
        customer = await find_customer(session, f"tg:{user_id}")
        if customer is None:
            raise RuntimeError(f"demo: persona {user_id} is not registered")
        await open_ticket(
            session,
            desk,
            customer,
            source="complaint",
            category=category,
            subject=subject,
            now=clock.now(),
        )


DashboardLogin = Callable[[], Awaitable[str]]
"""Mints a one-time dashboard login path for the visitor (the staff persona)."""
DASHBOARD_LOGIN_PATH = "/dashboard-login"


# --- the demo's time -----------------------------------------------------------------------

# A "next day" starts at this shop-local time: care.toml's send window is open.
MORNING = time(10, 0)
# The demo's survey planner looks every few seconds (a CSAT follows a closed ticket at once).
DEMO_SURVEY_CHECK_SECONDS = 5


def demo_rules(rules: Config) -> Config:
    """The demo's own rules: the example files with quiet hours and business hours off (a
    message the visitor brings about at night arrives now, not at 09:00, and the desk answers at
    any hour) and surveys planned every few seconds."""
    outbox = rules.outbox.model_copy(
        update={"quiet_hours": rules.outbox.quiet_hours.model_copy(update={"enabled": False})}
    )
    settings = rules.surveys.settings
    planner = settings.planner.model_copy(update={"check_seconds": DEMO_SURVEY_CHECK_SECONDS})
    surveys = rules.surveys.model_copy(
        update={"settings": settings.model_copy(update={"planner": planner})}
    )
    tickets = rules.tickets.model_copy(
        update={"hours": rules.tickets.hours.model_copy(update={"enabled": False})}
    )
    return rules.model_copy(update={"outbox": outbox, "surveys": surveys, "tickets": tickets})


def daily_jobs(
    sessionmaker: async_sessionmaker[AsyncSession], rules: Config, desk: TicketDesk
) -> list[PeriodicJob]:
    """What the bot runs on its own each day, in order: tiers (who is at risk now), points
    (earned, taken back, expired), care (greetings, follow-ups, retention offers), surveys
    (invitations, reminders, recovery tickets). The same jobs the bot's scheduler runs."""
    return [
        *tier_jobs(sessionmaker, rules.tiers),
        *points_jobs(sessionmaker, rules),
        *care_jobs(sessionmaker, planner_for(rules)),
        *survey_jobs(sessionmaker, rules.surveys, desk),
    ]


@dataclass
class DemoCalendar:
    """The demo's clock, which the visitor moves a day at a time (``next_day``)."""

    clock: MovableClock
    zone: ZoneInfo
    jobs: list[PeriodicJob]
    first_day: date
    last_morning: date | None = None
    """The day the visitor last moved to (its jobs ran at ``MORNING``)."""
    _moving: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def starting(
        cls,
        clock: MovableClock,
        rules: Config,
        sessionmaker: async_sessionmaker[AsyncSession],
        desk: TicketDesk,
    ) -> DemoCalendar:
        """The calendar from the clock's day on, moving with ``daily_jobs``."""
        zone = ZoneInfo(rules.tiers.orders.timezone)
        today = clock.now().astimezone(zone).date()
        return cls(clock, zone, daily_jobs(sessionmaker, rules, desk), today)

    def today(self) -> date:
        """The shop's date on the demo's clock."""
        return self.clock.now().astimezone(self.zone).date()

    def view(self) -> dict[str, Any]:
        """The date the page shows, and how many days the visitor moved on."""
        today = self.today()
        return {"date": today.isoformat(), "day": (today - self.first_day).days}

    def next_morning(self) -> datetime:
        """The next day's ``MORNING``: the day after the last one moved to (or the first),
        and never in the past (the real clock may have passed midnight or a morning since)."""
        local = self.clock.now().astimezone(self.zone)
        earliest = local.date() + timedelta(days=1 if local.time() >= MORNING else 0)
        following = (self.last_morning or self.first_day) + timedelta(days=1)
        return datetime.combine(max(earliest, following), MORNING, self.zone)

    async def next_day(self) -> dict[str, Any]:
        """Move the clock to the next day's ``MORNING`` (shop time) and run the daily jobs
        there at once; their messages then go out through the outbox as usual. Returns what was
        planned."""
        async with self._moving:
            now = self.clock.move_to(self.next_morning())
            self.last_morning = now.astimezone(self.zone).date()
            reports = [await job.run(now) for job in self.jobs]
        care = next((r for r in reports if isinstance(r, CarePlanReport)), None)
        surveys = next((r for r in reports if isinstance(r, SurveyPlanReport)), None)
        return {
            **self.view(),
            "care": len(care.planned) if care else 0,
            "surveys": len(surveys.invited) if surveys else 0,
            "recovery": surveys.recovered if surveys else 0,
        }


# --- what the page shows -------------------------------------------------------------------


def _buttons(markup: Any) -> list[list[dict[str, Any]]]:
    """An inline keyboard as the page draws it: text plus callback data or a URL."""
    rows = (markup or {}).get("inline_keyboard", [])
    return [
        [
            {"text": button.get("text", ""), "data": button.get("callback_data")}
            if "callback_data" in button
            else {"text": button.get("text", ""), "url": button.get("url")}
            for button in row
        ]
        for row in rows
    ]


@dataclass
class DemoWorld:
    """The local server seen as chats: what the page draws and what it may do."""

    api: LocalBotApi
    personas: tuple[Persona, ...] = PERSONAS
    staff_chat_id: int = STAFF_CHAT_ID
    dashboard_login: DashboardLogin | None = None
    calendar: DemoCalendar | None = None
    _pressed_by: dict[str, int] = field(default_factory=dict)

    def persona(self, user_id: Any) -> Persona:
        for persona in self.personas:
            if persona.user_id == user_id:
                return persona
        raise KeyError(f"no persona {user_id!r}")

    def add_people(self) -> None:
        """The personas on the local server; staff are members of the staff group."""
        self.api.add_group(self.staff_chat_id, "Staff · 客服组", forum=True)
        for persona in self.personas:
            self.api.add_user(
                persona.user_id, persona.name, language_code=persona.language, started=False
            )
            if persona.staff:
                self.api.add_member(self.staff_chat_id, persona.user_id, "administrator")

    def _message(self, message: dict[str, Any], me: int) -> dict[str, Any]:
        """A stored message as the page draws it, from the point of view of user ``me``."""
        sender = message.get("from", {})
        if sender.get("id") == self.api.bot_id:
            origin = "bot"
        elif sender.get("id") == me:
            origin = "me"
        else:
            origin = "other"
        service = next((key for key in message if key.startswith("forum_topic_")), None)
        view: dict[str, Any] = {
            "id": message["message_id"],
            "from": "service" if service else origin,
            "author": sender.get("first_name", ""),
            "thread": message.get("message_thread_id"),
            "text": message.get("text", message.get("caption", "")),
            "entities": message.get("entities", message.get("caption_entities", [])),
            "kind": next(
                (
                    kind
                    for kind in ("photo", "document", "voice", "video", "contact", "sticker")
                    if kind in message
                ),
                "text",
            ),
            "buttons": _buttons(message.get("reply_markup")),
            "edited": "edit_date" in message,
        }
        if service:
            view["service"] = service
            view["text"] = (message[service] or {}).get("name", "")
        if "contact" in message:
            view["text"] = message["contact"].get("phone_number", "")
        return view

    def _keyboard(self, chat_id: int) -> list[list[dict[str, Any]]] | None:
        """The reply keyboard the bot last showed in the chat, unless removed or used up."""
        current: dict[str, Any] | None = None
        shown_at = 0
        for sent in self.api.sent(chat_id):
            markup = sent.reply_markup or {}
            if "keyboard" in markup:
                current, shown_at = markup, sent.message_id
            elif markup.get("remove_keyboard"):
                current = None
        if current is None:
            return None
        if current.get("one_time_keyboard") and any(
            message["message_id"] > shown_at and message.get("from", {}).get("id") == chat_id
            for message in self.api.history(chat_id)
        ):
            return None
        return [
            [
                {
                    "text": button if isinstance(button, str) else button.get("text", ""),
                    "contact": isinstance(button, dict) and bool(button.get("request_contact")),
                }
                for button in row
            ]
            for row in current["keyboard"]
        ]

    def _toasts(self) -> list[dict[str, Any]]:
        """The bot's answers to pressed buttons that carry a text (Telegram shows a toast)."""
        return [
            {
                "seq": index,
                "persona": self._pressed_by.get(str(answer.get("callback_query_id"))),
                "text": answer["text"],
                "alert": bool(answer.get("show_alert")),
            }
            for index, answer in enumerate(self.api.answered_callbacks)
            if answer.get("text")
        ]

    def view(self) -> dict[str, Any]:
        """Everything the page draws, with a version that changes when anything does."""
        staff = next(persona for persona in self.personas if persona.staff)
        topics = [
            {"id": topic.message_thread_id, "name": topic.name, "closed": topic.closed}
            for topic in self.api.topics(self.staff_chat_id)
            if not topic.deleted
        ]
        state: dict[str, Any] = {
            "customers": [
                {
                    "id": persona.user_id,
                    "name": persona.name,
                    "language": persona.language,
                    "note": persona.note,
                    "phone": persona.phone,
                    "messages": [
                        self._message(message, persona.user_id)
                        for message in self.api.history(persona.user_id)
                    ],
                    "keyboard": self._keyboard(persona.user_id),
                }
                for persona in self.personas
                if not persona.staff
            ],
            "staff": {
                "id": staff.user_id,
                "name": staff.name,
                "note": staff.note,
                "topics": topics,
                "messages": [
                    self._message(message, staff.user_id)
                    for message in self.api.history(self.staff_chat_id)
                ],
            },
            "toasts": self._toasts(),
            "dashboard": DASHBOARD_LOGIN_PATH if self.dashboard_login else None,
            "clock": self.calendar.view() if self.calendar else None,
        }
        encoded = json.dumps(state, sort_keys=True, ensure_ascii=False, default=str)
        state["version"] = hashlib.sha1(encoded.encode()).hexdigest()[:16]
        return state

    async def changed_view(self, since: str | None) -> dict[str, Any]:
        """The view, once its version differs from ``since`` (or after a long-poll wait)."""
        view = self.view()
        if since and view["version"] == since:
            with contextlib.suppress(AssertionError):
                await self.api.wait_for(
                    lambda: self.view()["version"] != since,
                    timeout=LONG_POLL_SECONDS,
                    description="a change",
                )
            view = self.view()
        return view

    # What the visitor does -----------------------------------------------------------------

    async def send(self, persona: Persona, text: str, thread: int | None) -> None:
        """A customer writes in private; staff write in the group (in topic ``thread``)."""
        if persona.staff:
            await self.api.send_text(
                persona.user(), text, chat_id=self.staff_chat_id, message_thread_id=thread
            )
        else:
            await self.api.send_text(persona.user(), text)

    async def press(self, persona: Persona, message_id: int, data: str) -> None:
        """Press one of the buttons the message shows (no other callback data)."""
        chat_id = self.staff_chat_id if persona.staff else persona.user_id
        shown = self.api.message(chat_id, message_id)
        if data not in {
            button.get("data") for row in _buttons(shown.get("reply_markup")) for button in row
        }:
            raise KeyError(f"message {message_id} has no button {data!r}")
        update = await self.api.press_button(persona.user(), message_id, data, chat_id=chat_id)
        self._pressed_by[update["callback_query"]["id"]] = persona.user_id

    async def share_contact(self, persona: Persona) -> None:
        """The customer shares their own phone number (Telegram's contact button)."""
        if persona.phone is None or persona.staff:
            raise KeyError(f"{persona.name} has no phone to share")
        await self.api.send_contact(
            persona.user(),
            persona.phone,
            contact_user_id=persona.user_id,
            first_name=persona.name,
        )


# --- the page's server ---------------------------------------------------------------------


@web.middleware
async def loopback_only(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Answer only requests addressed to a loopback name (no DNS rebinding), and take the
    page's actions only as JSON (a page elsewhere cannot post a form to them)."""
    host = request.url.host or ""
    if host not in LOOPBACK_HOSTS:
        raise web.HTTPForbidden(text="the demo answers on loopback addresses only")
    if (
        request.path.startswith("/api/")
        and request.method == "POST"
        and request.content_type != "application/json"
    ):
        raise web.HTTPUnsupportedMediaType(text="send JSON")
    return await handler(request)


async def _body(request: web.Request, world: DemoWorld) -> tuple[Persona, dict[str, Any]]:
    try:
        body = await request.json()
        persona = world.persona(body.get("persona"))
    except (ValueError, KeyError, AttributeError) as error:
        raise web.HTTPBadRequest(text=f"bad request: {error}") from None
    return persona, body


async def favicon(_: web.Request) -> web.FileResponse:
    """The page's icon, also where browsers look without a link (no 404 in the console)."""
    return web.FileResponse(STATIC_DIR / "favicon.svg", headers={"Content-Type": "image/svg+xml"})


async def _index(_: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


async def _static(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    response = web.FileResponse(STATIC_DIR / name)
    response.headers["Cache-Control"] = "no-cache"
    return response


def build_demo_app(world: DemoWorld) -> web.Application:
    """The chat page, its JSON API and the dashboard's login hand-off (when mounted)."""
    app = web.Application(middlewares=[loopback_only])

    async def state(request: web.Request) -> web.Response:
        return web.json_response(await world.changed_view(request.query.get("since")))

    async def send(request: web.Request) -> web.Response:
        persona, body = await _body(request, world)
        text = body.get("text")
        thread = body.get("thread")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            raise web.HTTPBadRequest(text=f"text: 1 to {MAX_TEXT} characters")
        if thread is not None and not isinstance(thread, int):
            raise web.HTTPBadRequest(text="thread: a topic id or null")
        await world.send(persona, text, thread)
        return web.json_response({"ok": True})

    async def press(request: web.Request) -> web.Response:
        persona, body = await _body(request, world)
        try:
            await world.press(persona, int(body["message"]), str(body["data"]))
        except (KeyError, ValueError, TypeError) as error:
            raise web.HTTPBadRequest(text=f"bad button: {error}") from None
        return web.json_response({"ok": True})

    async def contact(request: web.Request) -> web.Response:
        persona, _ = await _body(request, world)
        try:
            await world.share_contact(persona)
        except KeyError as error:
            raise web.HTTPBadRequest(text=str(error)) from None
        return web.json_response({"ok": True})

    async def next_day(_: web.Request) -> web.Response:
        if world.calendar is None:
            raise web.HTTPNotFound(text="this demo's clock cannot be moved")
        return web.json_response({"ok": True, **await world.calendar.next_day()})

    async def dashboard(_: web.Request) -> web.Response:
        if world.dashboard_login is None:
            raise web.HTTPNotFound(text="the dashboard is not installed in this carebot")
        raise web.HTTPFound(await world.dashboard_login())

    app.router.add_get("/", _index)
    app.router.add_get("/static/{name}", _static)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_get("/api/state", state)
    app.router.add_post("/api/send", send)
    app.router.add_post("/api/press", press)
    app.router.add_post("/api/contact", contact)
    app.router.add_post("/api/next-day", next_day)
    app.router.add_get(DASHBOARD_LOGIN_PATH, dashboard)
    return app


def mount_dashboard(
    app: web.Application,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    staff: Persona,
    rules: Config,
    clock: Clock,
) -> DashboardLogin | None:
    """Mount the staff dashboard on the demo's server; None when this carebot has none."""
    try:
        from dashboard.auth import mint_login_path
        from dashboard.core import Dashboard
        from dashboard.pages.routes import mount
    except ImportError:
        logger.warning("no dashboard package: the demo page runs without it")
        return None
    mount(
        app,
        Dashboard(
            sessionmaker=sessionmaker,
            secret=secrets.token_bytes(32),  # sessions last as long as this sandbox
            clock=clock,
            timezone=rules.tiers.orders.timezone,
            secure_cookies=False,
            rules=rules,
        ),
    )

    async def login() -> str:
        path: str = await mint_login_path(
            sessionmaker, user_id=staff.user_id, name=staff.name, now=clock.now()
        )
        return path

    return login


# --- running it ----------------------------------------------------------------------------


def demo_settings(api: LocalBotApi, database_url: str) -> Settings:
    """The bot's settings: everything given, so nothing from the environment, a ``.env`` or a
    ``carebot.toml`` (a real token, a webhook, PostgreSQL) can leak into the sandbox."""
    return load_settings(
        telegram_token=DEMO_TOKEN,
        telegram_api_url=api.root_url,
        database_url=database_url,
        staff_chat_id=STAFF_CHAT_ID,
        config_dir=EXAMPLE_CONFIG_DIR,
        webhook_url=None,
        listen_host="127.0.0.1",
        dashboard_url=None,
        serve_web=False,
    )


@contextlib.asynccontextmanager
async def _site(app: web.Application, host: str, port: int) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield f"http://{bound_host}:{bound_port}/"
    finally:
        await runner.cleanup()


async def run_demo(
    port: int = 8080,
    *,
    ready: Callable[[str], None],
    stop: asyncio.Event | None = None,
    clock: Clock | None = None,
) -> None:
    """Run the sandbox until ``stop`` (or Ctrl-C); ``ready`` gets the page's URL once the
    bot answers and the sample shop is in place. Everything lives in a temporary directory."""
    stop = stop or asyncio.Event()
    clock = MovableClock(clock or SystemClock())
    rules = demo_rules(load_config(EXAMPLE_CONFIG_DIR))
    texts = Texts.load()
    with tempfile.TemporaryDirectory(prefix="carebot-demo-") as directory:
        database_url = f"sqlite+aiosqlite:///{Path(directory) / 'demo.db'}"
        await asyncio.to_thread(upgrade, database_url)
        # The bot's own sessions: what the demo writes waits its turn with the bot's writes.
        database = BotDatabase.open(database_url)
        sessionmaker = database.background
        api = LocalBotApi(DEMO_TOKEN, bot_username="carebot_demo_bot")
        world = DemoWorld(api)
        bot: asyncio.Task[None] | None = None
        try:
            await seed_shop(sessionmaker, rules, Path(directory), clock.now())
            await api.start("127.0.0.1", 0)
            world.add_people()
            settings = demo_settings(api, database_url)
            bot = asyncio.create_task(
                serve(
                    settings, rules=rules, texts=texts, clock=clock, stop=stop, database=database
                )
            )
            desk = TicketDesk.from_config(rules, texts, STAFF_CHAT_ID)
            seeding = asyncio.create_task(
                seed_conversations(api, sessionmaker, desk, texts, clock)
            )
            await asyncio.wait({bot, seeding}, return_when=asyncio.FIRST_COMPLETED)
            if not seeding.done():  # the bot stopped (or failed) before the sandbox was ready
                seeding.cancel()
                return await bot
            await seeding
            world.calendar = DemoCalendar.starting(clock, rules, sessionmaker, desk)
            app = build_demo_app(world)
            staff = next(persona for persona in world.personas if persona.staff)
            world.dashboard_login = mount_dashboard(
                app, sessionmaker, staff=staff, rules=rules, clock=clock
            )
            async with _site(app, "127.0.0.1", port) as url:
                ready(url)
                await bot
        finally:
            stop.set()
            if bot is not None and not bot.done():
                with contextlib.suppress(Exception):
                    await bot
            await api.stop()
            await database.dispose()
