"""The bot under test: the real Application, polling the local Bot API server over HTTP, with
the outbox dispatcher draining the same database (relays, topics and everything else the bot
sends on its own go through it)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from telegram.ext import Application

from bot.app import build_application
from bot.context import inbox_of
from bot.kernel.clock import ManualClock
from bot.kernel.config import Config, OutboxConfig, TicketConfig, load_config
from bot.kernel.texts import Texts
from bot.runner import serve
from bot.sandbox.api import LocalBotApi
from bot.sandbox.records import FakeUser, SentMessage
from bot.settings import EXAMPLE_CONFIG_DIR, Settings, load_settings
from handlers.staff.setup import load_stored_group
from handlers.tickets.lifecycle import TicketDesk
from handlers.tickets.outcomes import DeliveryHooks, hooks_by_kind
from scheduler.dispatcher.telegram import Dispatcher
from scheduler.limiter import Limits, SlidingWindowLimiter
from scheduler.locks import NoLock
from storage.engine import create_engine, create_sessionmaker
from storage.models import Customer
from tests.auxil.processes import free_port

TOKEN = "123456:TEST-TOKEN-carebot"
STAFF_CHAT_ID = -1001000000001
START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
WEBHOOK_SECRET = "s3cret-token_for-tests"

# The shipped outbox.toml with short waits and Telegram's limits lifted: the limits themselves
# are the dispatcher tests' business, and end-to-end tests should not wait for them.
HARNESS_OUTBOX = OutboxConfig.model_validate(
    {
        "retry": {"backoff_base_seconds": 0.05, "backoff_max_seconds": 0.2},
        "dispatch": {"poll_seconds": 0.05, "lease_seconds": 30},
        "limits": {
            "per_second": 1000,
            "per_private_chat_second": 1000,
            "per_group_minute": 10_000,
        },
    }
)


class DispatchClock:
    """The test's ManualClock as the dispatcher sees it: plus the real time elapsed since the
    harness started. Handlers keep the frozen time tests compare with; rows they queue are due
    at once, and retries and album waits fall due by themselves."""

    def __init__(self, clock: ManualClock) -> None:
        self._clock = clock
        self._started = time.monotonic()

    def now(self) -> datetime:
        return self._clock.now() + timedelta(seconds=time.monotonic() - self._started)

    def restart(self) -> None:
        """Count the real time from now: a wait the bot starts after this (an album's grace)
        lasts its real length instead of being already over."""
        self._started = time.monotonic()


@dataclass
class Harness:
    api: LocalBotApi
    application: Application
    sessionmaker: async_sessionmaker[AsyncSession]
    clock: ManualClock
    texts: Texts
    rules: Config
    settings: Settings
    engine: AsyncEngine | None = None
    dispatcher: Dispatcher | None = None
    dispatch_clock: DispatchClock | None = None
    _dispatch_stop: asyncio.Event = field(default_factory=asyncio.Event)
    _dispatch_task: asyncio.Task[None] | None = None

    def text(self, language: str, key: str, **params: Any) -> str:
        """The rendered catalogue text, as the customer should see it (HTML tags stripped by
        Telegram are kept here exactly as sent)."""
        return self.texts.render(language, key, **params)

    async def customer(self, telegram_user_id: int) -> Customer | None:
        async with self.sessionmaker() as session:
            result = await session.execute(
                select(Customer).where(Customer.telegram_user_id == telegram_user_id)
            )
            return result.scalar_one_or_none()

    async def barrier(self, user: FakeUser, language: str = "en") -> SentMessage:
        """Send ``/help`` from ``user`` and wait for its answer (in ``language``). A private
        chat's updates are handled one after another in arrival order, and each one's replies
        go out before the next is handled: once this answer is there, everything the user sent
        before it has been handled and answered. (What the dispatcher sends for those updates
        may still be on its way: wait for their ticket's lanes, ``tests.auxil.tickets``.)"""
        before = len(self.api.sent(user.id))
        help_text = self.text(language, "help")
        await self.api.send_text(user, "/help")
        await self.api.wait_for(
            lambda: any(m.text == help_text for m in self.api.sent(user.id)[before:]),
            description=f"the answer to {user.first_name}'s /help",
        )
        return next(m for m in self.api.sent(user.id)[before:] if m.text == help_text)

    @property
    def desk(self) -> TicketDesk:
        """The ticket desk the running bot uses."""
        return self.application.bot_data.desk

    def use_ticket_rules(self, rules: TicketConfig) -> TicketDesk:
        """Run the rest of the test with other ``tickets.toml`` rules (handlers and hooks)."""
        self.rules = self.rules.model_copy(update={"tickets": rules})
        desk = TicketDesk.from_config(self.rules, self.texts, self.desk.group)
        self.application.bot_data.desk = desk
        if self.dispatcher is not None:
            for hook in set(self.dispatcher.hooks.values()):
                if isinstance(hook, DeliveryHooks):
                    hook.desk = desk
        return desk

    async def start(self, application: Application | None = None) -> None:
        """Start the bot (a new Application unless given) and its dispatcher on the harness's
        database."""
        if application is None:
            application = build_application(
                self.settings,
                rules=self.rules,
                texts=self.texts,
                sessionmaker=self.sessionmaker,
                clock=self.clock,
            )
        await application.initialize()
        async with self.sessionmaker() as session:  # as carebot run does (without the check)
            await load_stored_group(session, application.bot_data.desk.group)
        await application.start()
        await inbox_of(application).start(polling=True, wait_seconds=1)
        self.application = application
        desk = self.desk
        self.dispatch_clock = DispatchClock(self.clock)
        self._start_dispatcher(desk)

    def _start_dispatcher(
        self, desk: TicketDesk, limiter: SlidingWindowLimiter | None = None
    ) -> None:
        assert self.dispatch_clock is not None
        dispatcher = Dispatcher(
            self.application.bot,
            self.sessionmaker,
            texts=self.texts,
            rules=HARNESS_OUTBOX,
            clock=self.dispatch_clock,
            default_timezone=self.rules.general.customers.default_timezone,
            lock=NoLock(),
            limiter=limiter,
            hooks=hooks_by_kind(desk),
        )
        self.application.bot_data.wake = dispatcher.wake
        self.dispatcher = dispatcher
        self._dispatch_stop = asyncio.Event()
        self._dispatch_task = asyncio.create_task(dispatcher.run(self._dispatch_stop))

    async def limit_groups(self, per_window: int, window: float) -> None:
        """Telegram's flood limit on groups, scaled down: the local server answers 429 beyond
        ``per_window`` messages into a group in ``window`` seconds, and a new dispatcher keeps
        to that limit (a paused dispatcher is resumed: what waited goes now, under the limit)."""
        self.api.limit_groups(per_window, window)
        if self._dispatch_task is not None:
            await self.pause_dispatcher()
        limits = Limits(
            per_second=1000,
            per_private_chat_second=1000,
            per_group_minute=per_window,
            minute=window,
        )
        self._start_dispatcher(self.desk, SlidingWindowLimiter(limits))

    async def pause_dispatcher(self) -> None:
        """Stop the dispatcher (its sends finish, its claimed rows go back): what the bot
        queues meanwhile waits in the outbox and the lanes until ``resume_dispatcher``."""
        assert self._dispatch_task is not None
        self._dispatch_stop.set()
        await asyncio.wait_for(self._dispatch_task, timeout=30)
        self._dispatch_task = None

    def resume_dispatcher(self) -> None:
        assert self.dispatcher is not None and self._dispatch_task is None
        self._dispatch_stop = asyncio.Event()
        self._dispatch_task = asyncio.create_task(self.dispatcher.run(self._dispatch_stop))

    async def stop(self) -> None:
        """Stop receiving (what is under way finishes), the dispatcher (its sends finish) and
        the bot, as a process would on SIGTERM."""
        await inbox_of(self.application).stop()
        if self._dispatch_task is not None:
            self._dispatch_stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._dispatch_task, timeout=30)
            self._dispatch_task = None
        application = self.application
        if application.running:
            await application.stop()
        await application.shutdown()

    async def restart(self) -> None:
        """A new bot process on the same database: nothing in memory survives."""
        await self.stop()
        await self.start()


def harness_rules(rules: Config) -> Config:
    """The shipped rules, with the topic renames of back-and-forth statuses made at once (a
    test that wants the delay sets it with ``Harness.use_ticket_rules``) and short inbox
    waits."""
    relay = rules.tickets.relay.model_copy(update={"title_delay_seconds": 0})
    # Failed updates retried at once and parked soon; pending ones picked up quickly.
    inbox = rules.outbox.inbox.model_copy(
        update={"retry_seconds": 0.05, "max_attempts": 3, "sweep_seconds": 0.2}
    )
    return rules.model_copy(
        update={
            "tickets": rules.tickets.model_copy(update={"relay": relay}),
            "outbox": rules.outbox.model_copy(update={"inbox": inbox}),
        }
    )


def harness_settings(api: LocalBotApi, database_url: str, **extra: Any) -> Settings:
    """The settings of the bot under test (``staff_chat_id=None``: none, /setup chooses)."""
    values: dict[str, Any] = {"staff_chat_id": STAFF_CHAT_ID, **extra}
    return load_settings(
        telegram_token=api.token,
        telegram_api_url=api.root_url,
        database_url=database_url,
        config_dir=Path(EXAMPLE_CONFIG_DIR),
        **values,
    )


@pytest.fixture
async def local_api() -> AsyncIterator[LocalBotApi]:
    api = LocalBotApi(TOKEN)
    await api.start()
    api.add_group(STAFF_CHAT_ID, "Staff", forum=True)
    yield api
    await api.stop()


@pytest.fixture
async def harness(local_api: LocalBotApi, database_url: str) -> AsyncIterator[Harness]:
    """The bot polling the local server, with its dispatcher, on a fresh database of each
    kind."""
    async with running_harness(local_api, database_url) as harness:
        yield harness


@contextlib.asynccontextmanager
async def running_harness(
    local_api: LocalBotApi, database_url: str, **settings_: Any
) -> AsyncIterator[Harness]:
    """The bot of the ``harness`` fixture, with other settings (``harness_settings``)."""
    settings = harness_settings(local_api, database_url, **settings_)
    engine = create_engine(database_url)
    sessionmaker = create_sessionmaker(engine)
    texts = Texts.load()
    rules = harness_rules(load_config(settings.config_dir))
    clock = ManualClock(START)
    application = build_application(
        settings, rules=rules, texts=texts, sessionmaker=sessionmaker, clock=clock
    )
    harness = Harness(
        local_api, application, sessionmaker, clock, texts, rules, settings, engine=engine
    )
    await harness.start(application)
    try:
        yield harness
    finally:
        await harness.stop()
        await engine.dispose()


@pytest.fixture
async def webhook_bot(
    local_api: LocalBotApi, database_url: str
) -> AsyncIterator[tuple[LocalBotApi, Settings]]:
    """``carebot run`` in webhook mode, the local server delivering to it."""
    port = free_port()
    settings = harness_settings(
        local_api,
        database_url,
        webhook_url=f"http://127.0.0.1:{port}/telegram/hook",
        webhook_secret=WEBHOOK_SECRET,
        listen_host="127.0.0.1",
        listen_port=port,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve(
            settings,
            rules=harness_rules(load_config(settings.config_dir)),
            texts=Texts.load(),
            clock=ManualClock(START),
            stop=stop,
        )
    )
    for _ in range(500):
        if any(call.method == "setWebhook" for call in local_api.calls) or task.done():
            break
        await asyncio.sleep(0.01)
    if task.done():
        task.result()  # surface a start-up failure
    yield local_api, settings
    stop.set()
    await asyncio.wait_for(task, timeout=15)
