"""Composition root: builds the PTB Application with its services and handlers, in order."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import BotCommand
from telegram.constants import ParseMode
from telegram.ext import Application, ApplicationBuilder, Defaults

import handlers.answers.telegram
import handlers.care.telegram
import handlers.complaints.telegram
import handlers.onboarding.telegram
import handlers.staff.telegram
import handlers.surveys.telegram
from bot.errors import on_error
from bot.http import AiohttpRequest
from bot.inbox import INBOX_KEY, Inbox, InboxBot
from bot.kernel.clock import Clock
from bot.kernel.config import Config
from bot.kernel.texts import LANGUAGES, Texts
from bot.settings import Settings
from bot.web import wire_operations
from handlers._edge.context import DEPS_KEY, Deps
from handlers.answers.kb import KB_KEY, KbLibrary, KnowledgeBase
from handlers.tickets.lifecycle import TicketDesk
from handlers.tickets.telegram import DESK_KEY
from storage import outbox as outbox_queries
from storage.engine import Sessions
from storage.payloads import ReadyText

COMMANDS = ("start", "profile", "complaint", "language", "stop", "forget", "help")
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
) -> Application:
    """The bot with every handler registered, and its inbox (``inbox_of``): what arrives, by
    long polling or the webhook, is stored there and handled from there.

    ``knowledge`` defaults to the knowledge base in ``settings.config_dir`` (loaded here);
    ``background_sessionmaker`` serves the dashboard and the metrics (``BotDatabase``).
    """
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
        .updater(None)  # the inbox fetches (bot.inbox.Inbox.poll)
        .post_init(_publish_commands)
        # Loads the complaint flow's steps from the database (see handlers.complaints.telegram).
        .persistence(handlers.complaints.telegram.DraftPersistence(sessionmaker))
        .build()
    )
    application.bot_data[DEPS_KEY] = Deps(
        sessionmaker=sessionmaker,
        texts=texts,
        rules=rules,
        clock=clock,
        staff_chat_id=settings.staff_chat_id,
        background_sessionmaker=background_sessionmaker,
    )
    application.bot_data[KB_KEY] = KbLibrary(settings.config_dir, knowledge)
    application.bot_data[INBOX_KEY] = Inbox(
        application,
        sessionmaker,
        clock=clock,
        rules=rules.outbox.inbox,
        staff_chat_id=settings.staff_chat_id,
        notify_parked=_parked_notice(application),
        exclusive=sessionmaker.dialect == "sqlite",
    )
    # Order matters: features, then catch-alls. (What arrived is stored before any of them
    # runs: bot.inbox.)
    # The complaint flow before onboarding's free text; a customer with an open ticket is
    # relayed to it; the staff group's topics.
    application.add_handlers(handlers.complaints.telegram.build_handlers(), group=GROUP_FEATURES)
    application.add_handlers(
        handlers.staff.telegram.build_handlers(settings.staff_chat_id), group=GROUP_FEATURES
    )
    application.add_handlers(handlers.onboarding.telegram.build_handlers(), group=GROUP_FEATURES)
    application.add_handlers(handlers.answers.telegram.build_handlers(), group=GROUP_FEATURES)
    application.add_handlers(handlers.care.telegram.build_handlers(), group=GROUP_FEATURES)
    application.add_handlers(handlers.surveys.telegram.build_handlers(), group=GROUP_FEATURES)
    application.add_handlers(
        handlers.onboarding.telegram.build_fallback_handlers(), group=GROUP_FEATURES
    )
    application.add_error_handler(on_error)
    # Last: every handler registered above is counted, timed and logged per update.
    wire_operations(application, settings)
    return application


async def _publish_commands(application: Application) -> None:
    """The command menu, in English by default and in Chinese for zh clients."""
    texts: Texts = application.bot_data[DEPS_KEY].texts
    for language in LANGUAGES:
        commands = [
            BotCommand(command, texts.render(language, f"command_{command}"))
            for command in COMMANDS
        ]
        await application.bot.set_my_commands(
            commands, language_code=None if language == "en" else language
        )


def _parked_notice(application: Application) -> Any:
    """Tell staff, once per update, in the staff group's General topic that an update was
    parked (in the transaction that parks it)."""

    async def notify(
        session: AsyncSession, row_id: int, kind: str, attempts: int, error: str, now: datetime
    ) -> None:
        deps: Deps = application.bot_data[DEPS_KEY]
        desk = application.bot_data.get(DESK_KEY)
        if not isinstance(desk, TicketDesk):
            desk = TicketDesk.from_config(deps.rules, deps.texts, deps.staff_chat_id)
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
