"""Composition root: builds the PTB Application with its services and handlers, in order."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram import BotCommand
from telegram.constants import ParseMode
from telegram.ext import Application, ApplicationBuilder, Defaults

from bot.errors import on_error
from bot.http import AiohttpRequest
from bot.kb import KB_KEY, KbLibrary, KnowledgeBase
from bot.rules import Rules
from bot.settings import Settings
from bot.texts import LANGUAGES, Texts
from bot.update_processor import PerConversationUpdateProcessor
from bot.web import wire_operations
from handlers import answers, care, complaints, inbound, onboarding, staff, surveys
from handlers.context import DEPS_KEY, Deps
from scheduler.clock import Clock

COMMANDS = ("start", "profile", "complaint", "language", "stop", "forget", "help")
MAX_CONCURRENT_UPDATES = 64

# Handler groups: lower runs first; each group's first matching handler runs.
GROUP_STORE_INBOUND = -10
GROUP_FEATURES = 0


def build_application(
    settings: Settings,
    *,
    rules: Rules,
    texts: Texts,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: Clock,
    with_updater: bool = True,
    knowledge: KnowledgeBase | None = None,
) -> Application:
    """The bot with every handler registered; ``with_updater=False`` for webhook mode.

    ``knowledge`` defaults to the knowledge base in ``settings.config_dir`` (loaded here).
    """
    api = settings.telegram_api_url
    builder = (
        ApplicationBuilder()
        .token(settings.token)
        .base_url(f"{api}/bot")
        .base_file_url(f"{api}/file/bot")
        .defaults(Defaults(parse_mode=ParseMode.HTML))
        .request(AiohttpRequest(connection_pool_size=MAX_CONCURRENT_UPDATES))
        .get_updates_request(AiohttpRequest(connection_pool_size=1))
        .post_init(_publish_commands)
        .concurrent_updates(PerConversationUpdateProcessor(MAX_CONCURRENT_UPDATES))
        # Loads the complaint flow's steps from the database (see handlers.complaints).
        .persistence(complaints.DraftPersistence(sessionmaker))
    )
    if not with_updater:
        builder = builder.updater(None)
    application = builder.build()
    application.bot_data[DEPS_KEY] = Deps(
        sessionmaker=sessionmaker,
        texts=texts,
        rules=rules,
        clock=clock,
        staff_chat_id=settings.staff_chat_id,
    )
    application.bot_data[KB_KEY] = KbLibrary(settings.config_dir, knowledge)
    application.bot_data[inbound.JOURNAL_KEY] = inbound.InboundJournal(sessionmaker)
    # Order matters: store what arrived, then features, then catch-alls.
    application.add_handler(inbound.build_handler(), group=GROUP_STORE_INBOUND)
    # The complaint flow before onboarding's free text; a customer with an open ticket is
    # relayed to it; the staff group's topics.
    application.add_handlers(complaints.build_handlers(), group=GROUP_FEATURES)
    application.add_handlers(staff.build_handlers(settings.staff_chat_id), group=GROUP_FEATURES)
    application.add_handlers(onboarding.build_handlers(), group=GROUP_FEATURES)
    application.add_handlers(answers.build_handlers(), group=GROUP_FEATURES)
    application.add_handlers(care.build_handlers(), group=GROUP_FEATURES)
    application.add_handlers(surveys.build_handlers(), group=GROUP_FEATURES)
    application.add_handlers(onboarding.build_fallback_handlers(), group=GROUP_FEATURES)
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
