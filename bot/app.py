"""Composition root: builds the PTB Application with its services and handlers, in order."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import BotCommand
from telegram.constants import ParseMode
from telegram.ext import ApplicationBuilder, Defaults

import handlers.answers.telegram
import handlers.care.telegram
import handlers.complaints.telegram
import handlers.loyalty.telegram
import handlers.onboarding.telegram
import handlers.staff.telegram
import handlers.surveys.telegram
from bot.context import CONTEXT_TYPES, CareApplication
from bot.errors import on_error
from bot.http import AiohttpRequest
from bot.inbox import Inbox, InboxBot
from bot.kernel.clock import Clock
from bot.kernel.config import Config
from bot.kernel.texts import LANGUAGES, Texts
from bot.settings import Settings
from bot.web import wire_operations
from handlers._edge.context import Deps
from handlers.answers.kb import KbLibrary, KnowledgeBase
from handlers.tickets.desk import StaffGroup
from handlers.tickets.lifecycle import TicketDesk
from storage import outbox as outbox_queries
from storage.engine import Sessions
from storage.payloads import ReadyText

COMMANDS = (
    "start",
    "profile",
    "complaint",
    "points",
    "redeem",
    "language",
    "stop",
    "forget",
    "help",
)
MAX_CONCURRENT_UPDATES = 64
KIND_INBOX_PARKED = "inbox.parked"

# Handler groups: lower runs first; each group's first matching handler runs.
GROUP_FEATURES = 0


def build_application(
    settings: Settings,
    *,
    rules: Config,
    texts: Texts,
    sessionmaker: Sessions,
    clock: Clock,
    knowledge: KnowledgeBase | None = None,
    background_sessionmaker: Sessions | None = None,
) -> CareApplication:
    """The bot with every handler registered, and its inbox (``inbox_of``): what arrives, by
    long polling or the webhook, is stored there and handled from there.

    Every service is built here once and carried in the typed ``bot_data``
    (``bot.context.AppData``): the handlers read ``context.deps``, ``context.desk``, ...
    ``knowledge`` defaults to the knowledge base in ``settings.config_dir`` (loaded here);
    ``background_sessionmaker`` serves the dashboard and the metrics (``BotDatabase``).
    """
    application = _new_application(settings, sessionmaker)
    services = application.bot_data
    services.deps = Deps(
        sessionmaker=sessionmaker,
        texts=texts,
        rules=rules,
        clock=clock,
        background_sessionmaker=background_sessionmaker,
    )
    # The ticket desk: the handlers and the dispatcher's outcome hooks (bot.runner) share it,
    # and with the inbox and the staff handlers its staff group (the setting, or /setup's).
    services.desk = desk = TicketDesk.from_config(rules, texts, settings.staff_chat_id)
    services.kb = KbLibrary(settings.config_dir, knowledge)
    services.inbox = Inbox(
        application,
        sessionmaker,
        clock=clock,
        rules=rules.outbox.inbox,
        staff_group=desk.group,
        notify_parked=_parked_notice(application),
        exclusive=sessionmaker.dialect == "sqlite",
    )
    _add_handlers(application, desk.group)
    application.add_error_handler(on_error)
    # Last: every handler registered above is counted, timed and logged per update.
    wire_operations(application, settings)
    return application


def _new_application(settings: Settings, sessionmaker: Sessions) -> CareApplication:
    """The Application on carebot's transport (aiohttp), with the typed context and no
    ``Updater``: the inbox fetches."""
    api = settings.telegram_api_url
    bot = InboxBot(
        settings.token,
        base_url=f"{api}/bot",
        base_file_url=f"{api}/file/bot",
        defaults=Defaults(parse_mode=ParseMode.HTML),
        request=AiohttpRequest(connection_pool_size=MAX_CONCURRENT_UPDATES),
        get_updates_request=AiohttpRequest(connection_pool_size=1),
    )
    application = (
        ApplicationBuilder()
        .bot(bot)
        .context_types(CONTEXT_TYPES)  # context: CareContext; bot_data: AppData
        .updater(None)  # the inbox fetches (bot.inbox.Inbox.poll)
        .post_init(_publish_commands)
        # Loads the complaint flow's steps from the database (see handlers.complaints.telegram).
        .persistence(handlers.complaints.telegram.DraftPersistence(sessionmaker))
        .build()
    )
    return application


def _add_handlers(application: CareApplication, staff_group: StaffGroup) -> None:
    """Every feature's handlers, in the order they are tried."""
    # Order matters: features, then catch-alls. (What arrived is stored before any of them
    # runs: bot.inbox.)
    # The complaint flow before onboarding's free text; a customer with an open ticket is
    # relayed to it; the staff group's topics.
    application.add_handlers(handlers.complaints.telegram.build_handlers(), group=GROUP_FEATURES)
    application.add_handlers(
        handlers.staff.telegram.build_handlers(staff_group), group=GROUP_FEATURES
    )
    # /points and /redeem before onboarding's answer to unknown commands.
    application.add_handlers(handlers.loyalty.telegram.build_handlers(), group=GROUP_FEATURES)
    application.add_handlers(handlers.onboarding.telegram.build_handlers(), group=GROUP_FEATURES)
    application.add_handlers(handlers.answers.telegram.build_handlers(), group=GROUP_FEATURES)
    application.add_handlers(handlers.care.telegram.build_handlers(), group=GROUP_FEATURES)
    application.add_handlers(handlers.surveys.telegram.build_handlers(), group=GROUP_FEATURES)
    application.add_handlers(
        handlers.onboarding.telegram.build_fallback_handlers(), group=GROUP_FEATURES
    )


async def _publish_commands(application: CareApplication) -> None:
    """The command menu, in English by default and in Chinese for zh clients."""
    texts: Texts = application.bot_data.deps.texts
    for language in LANGUAGES:
        commands = [
            BotCommand(command, texts.render(language, f"command_{command}"))
            for command in COMMANDS
        ]
        await application.bot.set_my_commands(
            commands, language_code=None if language == "en" else language
        )


def _parked_notice(application: CareApplication) -> Any:
    """Tell staff, once per update, in the staff group's General topic that an update was
    parked (in the transaction that parks it)."""

    async def notify(
        session: AsyncSession, row_id: int, kind: str, attempts: int, error: str, now: datetime
    ) -> None:
        desk = application.bot_data.desk
        if desk.staff_chat_id is None:
            return
        text = desk.staff_text(
            "inbox_parked", id=row_id, kind=kind, attempts=attempts, error=error
        )
        await outbox_queries.enqueue(
            session,
            dedupe_key=f"inbox-parked:{row_id}",
            chat_id=desk.staff_chat_id,
            kind=KIND_INBOX_PARKED,
            payload=ReadyText(text, html=True),
            due_at=now,
            now=now,
            priority=outbox_queries.Priority.NOTICE,
        )

    return notify
