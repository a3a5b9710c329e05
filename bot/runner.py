"""Running the bot: long polling by default, a webhook server when a webhook URL is set."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from typing import Any

from aiohttp import web
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from telegram import Bot, Update
from telegram.error import InvalidToken, NetworkError

from bot.app import build_application
from bot.context import CareApplication, inbox_of
from bot.kernel.clock import Clock, SystemClock
from bot.kernel.config import Config
from bot.kernel.texts import Texts
from bot.settings import Settings
from bot.web import metrics_of, start_web_server
from handlers.answers.kb import KnowledgeBase, reload_on_sighup
from handlers.staff.telegram import connect_staff_group
from handlers.tickets.desk import Desk
from handlers.tickets.lifecycle import TicketDesk
from handlers.tickets.outcomes import hooks_by_kind
from scheduler.care import care_jobs, plan_before_dispatch, planner_for
from scheduler.dispatcher.telegram import Dispatcher, create_dispatcher, stored_failure
from scheduler.kb_reload import KbReloadWatch, kb_reload_jobs
from scheduler.points import points_jobs
from scheduler.recommend import recommend_jobs
from scheduler.sla import sla_jobs
from scheduler.staff_group import staff_group_jobs
from scheduler.surveys import survey_jobs
from scheduler.tiers import tier_jobs
from scheduler.wiring import Background, PeriodicJob, outbox_jobs
from storage.engine import BotDatabase
from storage.migrate import HEAD_REVISION, revision_of

logger = logging.getLogger(__name__)


def listen_for_shutdown(stop: asyncio.Event) -> Callable[[], None]:
    """SIGINT and SIGTERM set ``stop`` (Ctrl-C shuts down cleanly); returns the function that
    stops listening."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)

    def stop_listening() -> None:
        for signum in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)

    return stop_listening


async def _until_stopped(stop: asyncio.Event, polling: asyncio.Task[None] | None) -> None:
    """Wait for ``stop``; long polling that ends on its own (a second process polling the same
    bot, a revoked token) stops the bot too, with its error."""
    waiting = asyncio.ensure_future(stop.wait())
    tasks: set[asyncio.Future[Any]] = {waiting} | ({polling} if polling is not None else set())
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if polling is not None and polling.done() and not polling.cancelled():
        error = polling.exception()
        if isinstance(error, InvalidToken):
            raise StartupError(
                "the Bot API refused the bot token (CAREBOT_TELEGRAM_TOKEN): "
                "check it with @BotFather"
            )
        if error is not None:
            raise StartupError(f"long polling stopped: {type(error).__name__}: {error}")


class StartupError(Exception):
    """Start-up cannot go on; the message is one line for the operator."""


def database_error(
    database_url: str, error: BaseException, *, doing: str = "open"
) -> StartupError:
    """One line for a database that cannot be reached or opened: the setting, its URL with the
    password masked, and the driver's reason (its first line)."""
    url = make_url(database_url)
    cause = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    said = (str(cause).splitlines() or [""])[0]
    if url.password:
        said = said.replace(str(url.password), "***")
    reason = f"{type(cause).__name__}: {said}" if said else type(cause).__name__
    return StartupError(
        f"cannot {doing} the database at {url.render_as_string(hide_password=True)} "
        f"(CAREBOT_DATABASE_URL): {reason[:300]}"
    )


async def check_schema(settings: Settings) -> None:
    """Refuse to start on a database that cannot be reached, or whose schema is not the one
    this version expects."""
    try:
        current = await revision_of(settings.database_url)
    except Exception as error:  # unreachable, refused, not a database: one line, not a trace
        raise database_error(settings.database_url, error) from None
    head = HEAD_REVISION
    if current != head:
        raise StartupError(
            f"database schema is at revision {current or 'none'}, this carebot needs {head}: "
            "run `carebot db upgrade`"
        )


async def connect(bot: Bot, settings: Settings) -> None:
    """Initialise the bot (PTB asks the Bot API ``getMe``); a refused token or an unreachable
    server stops start-up with one line instead of a traceback."""
    try:
        await bot.initialize()
    except (InvalidToken, NetworkError) as error:
        await bot.shutdown()  # the HTTP sessions opened before getMe
        if isinstance(error, InvalidToken):
            raise StartupError(
                "the Bot API refused the bot token (CAREBOT_TELEGRAM_TOKEN): "
                "check it with @BotFather"
            ) from None
        reason = str(error).replace(settings.token, "<redacted>")
        raise StartupError(
            f"cannot reach the Bot API at {settings.telegram_api_url} "
            f"(CAREBOT_TELEGRAM_API_URL): {reason}"
        ) from None


def create_desk_dispatcher(
    bot: Bot,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    desk: Desk,
    rules: Config,
    texts: Texts,
    clock: Clock,
) -> Dispatcher:
    """The outbox dispatcher with the ticket desk's outcome hooks (a relayed message's lane
    moves on when it is sent), in the bot process or a stand-alone ``carebot outbox drain``."""
    return create_dispatcher(
        bot,
        engine,
        sessionmaker,
        texts=texts,
        rules=rules.outbox,
        clock=clock,
        default_timezone=rules.general.customers.default_timezone,
        hooks=hooks_by_kind(desk),
    )


def build_background(
    application: CareApplication,
    database: BotDatabase,
    *,
    rules: Config,
    texts: Texts,
    clock: Clock,
    kb_watch: KbReloadWatch | None = None,
) -> Background:
    """The outbox dispatcher (sending with the Application's bot, on the hot path's sessions)
    and the periodic jobs (on the background ones; ``kb_watch`` follows ``carebot kb
    reload``)."""
    # The ticket desk: the handlers and the dispatcher's outcome hooks share one.
    desk = application.bot_data.desk
    dispatcher = create_desk_dispatcher(
        application.bot,
        database.hot.engine,
        database.hot,
        desk=desk,
        rules=rules,
        texts=texts,
        clock=clock,
    )
    application.bot_data.wake = dispatcher.wake  # relays go out at once, not at a poll
    metrics_of(application).watch_dispatcher(dispatcher.counters)  # sends by result, 429s
    jobs = periodic_jobs(database.background, rules, desk, kb_watch=kb_watch)
    return Background(dispatcher, jobs, clock)


def periodic_jobs(
    sessionmaker: async_sessionmaker[AsyncSession],
    rules: Config,
    desk: TicketDesk,
    *,
    kb_watch: KbReloadWatch | None = None,
) -> list[PeriodicJob]:
    """Every job the bot process runs on its own: a handful, none per customer."""
    return [
        *(kb_reload_jobs(kb_watch) if kb_watch is not None else []),
        *outbox_jobs(sessionmaker, rules.outbox),
        *care_jobs(sessionmaker, planner_for(rules)),
        *points_jobs(sessionmaker, rules),
        *sla_jobs(sessionmaker, desk, stored_failure),
        *tier_jobs(sessionmaker, rules.tiers),
        *recommend_jobs(sessionmaker, rules),
        *survey_jobs(sessionmaker, rules.surveys, desk),
        *staff_group_jobs(sessionmaker, desk),
    ]


async def _start_application(
    application: CareApplication,
    database: BotDatabase,
    background: Background,
    rules: Config,
    clock: Clock,
) -> None:
    """Start PTB's application (and its ``post_init``, which PTB runs only in its own
    ``run_polling``/``run_webhook``), cancel the greetings gone stale while the bot was down
    and queue today's care messages (before the dispatcher could send anything), then start
    the dispatcher and the periodic jobs."""
    await application.start()
    if application.post_init is not None:  # PTB runs it only in run_polling/run_webhook
        await application.post_init(application)
    await plan_before_dispatch(database.background, planner_for(rules), clock.now())  # first
    await background.start()


async def _announce_mode(bot: Bot, settings: Settings, *, webhook: bool) -> None:
    """In webhook mode, tell Telegram where to deliver updates (with the secret token);
    either way, log which mode runs."""
    if webhook:
        await bot.set_webhook(
            url=str(settings.webhook_url),
            secret_token=settings.effective_webhook_secret,
            allowed_updates=Update.ALL_TYPES,
        )
        logger.info("webhook mode: listening on %s:%s", settings.listen_host, settings.listen_port)
    else:
        logger.info("long polling started")


def _assemble(
    settings: Settings,
    database: BotDatabase,
    *,
    rules: Config,
    texts: Texts,
    clock: Clock,
    knowledge: KnowledgeBase | None,
) -> tuple[CareApplication, KbReloadWatch, Background]:
    """The bot, the watch on ``carebot kb reload`` and the background jobs, on one database."""
    application = build_application(
        settings,
        rules=rules,
        texts=texts,
        sessionmaker=database.hot,
        background_sessionmaker=database.background,
        clock=clock,
        knowledge=knowledge,
    )
    kb_watch = KbReloadWatch(database.background, application.bot_data.kb)
    background = build_background(
        application, database, rules=rules, texts=texts, clock=clock, kb_watch=kb_watch
    )
    return application, kb_watch, background


async def serve(
    settings: Settings,
    *,
    rules: Config,
    texts: Texts,
    clock: Clock | None = None,
    stop: asyncio.Event | None = None,
    knowledge: KnowledgeBase | None = None,
    database: BotDatabase | None = None,
) -> None:
    """Run until ``stop`` is set (or SIGINT/SIGTERM), then shut down cleanly. ``knowledge``,
    ``database``: the caller's, if it has them (``carebot demo`` writes to the same SQLite file:
    one process, one writer at a time); the caller disposes of its database."""
    await check_schema(settings)
    stop = stop or asyncio.Event()
    stop_listening = listen_for_shutdown(stop)
    owned = database is None
    database = database or BotDatabase.open(settings.database_url)
    clock = clock or SystemClock()
    webhook_mode = settings.webhook_url is not None
    application, kb_watch, background = _assemble(
        settings, database, rules=rules, texts=texts, clock=clock, knowledge=knowledge
    )
    inbox = inbox_of(application)
    stop_kb_reloads = reload_on_sighup(application.bot_data.kb)
    runner: web.AppRunner | None = None
    try:
        await kb_watch.prime()  # the version of the files just loaded
        await connect(application.bot, settings)
        async with application:
            # The staff group (the setting, or what /setup stored) before anything runs.
            await connect_staff_group(application.bot, application.bot_data)
            await _start_application(application, database, background, rules, clock)
            # What a previous process stored but did not handle goes first, in order.
            await inbox.start(polling=not webhook_mode)
            # The web server (health, readiness, metrics, dashboard) in polling mode too when
            # asked for; webhook mode needs it for the webhook.
            if webhook_mode or settings.serve_web or settings.dashboard_url is not None:
                runner = await start_web_server(application, settings, webhook=webhook_mode)
            await _announce_mode(application.bot, settings, webhook=webhook_mode)
            await _until_stopped(stop, inbox.polling)
            logger.info("shutting down")
            await inbox.stop()
            await background.stop()
            await application.stop()
    finally:
        await inbox.stop()  # no-op after a clean stop
        await background.stop()
        stop_kb_reloads()
        if runner is not None:
            await runner.cleanup()
        if owned:
            await database.dispose()
        stop_listening()
