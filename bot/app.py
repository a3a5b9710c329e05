"""Composition root: builds the PTB Application with its services and handlers, in order."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram import BotCommand
from telegram.constants import ParseMode
from telegram.ext import Application, ApplicationBuilder, Defaults

from bot.errors import on_error
from bot.rules import Rules
from bot.settings import Settings
from bot.texts import LANGUAGES, Texts
from handlers import inbound, onboarding
from handlers.context import DEPS_KEY, Deps
from scheduler.clock import Clock

COMMANDS = ("start", "profile", "language", "stop", "forget", "help")

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
) -> Application:
    """The bot with every handler registered; ``with_updater=False`` for webhook mode."""
    api = settings.telegram_api_url
    builder = (
        ApplicationBuilder()
        .token(settings.token)
        .base_url(f"{api}/bot")
        .base_file_url(f"{api}/file/bot")
        .defaults(Defaults(parse_mode=ParseMode.HTML))
        .post_init(_publish_commands)
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
    # Order matters: store what arrived, then features, then catch-alls.
    application.add_handler(inbound.build_handler(), group=GROUP_STORE_INBOUND)
    application.add_handlers(onboarding.build_handlers(), group=GROUP_FEATURES)
    application.add_handlers(onboarding.build_fallback_handlers(), group=GROUP_FEATURES)
    application.add_error_handler(on_error)
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
