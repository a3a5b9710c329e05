"""What every handler gets from the composition root, and the small helpers all of them use."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram import Update
from telegram.ext import ContextTypes

from bot.kernel.clock import Clock
from bot.kernel.config import Config
from bot.kernel.texts import Texts
from handlers.onboarding.registration import Person

DEPS_KEY = "deps"


@dataclass(frozen=True)
class Deps:
    """Services built once by ``bot.app`` and shared by all handlers through ``bot_data``."""

    sessionmaker: async_sessionmaker[AsyncSession]
    texts: Texts
    rules: Config
    clock: Clock
    staff_chat_id: int | None
    background_sessionmaker: async_sessionmaker[AsyncSession] | None = None
    """For what may read long (the dashboard, the metrics): off the message path's sessions,
    which on SQLite run on the event loop (``storage.engine.BotDatabase``)."""

    @property
    def reports(self) -> async_sessionmaker[AsyncSession]:
        """The sessions for long reads (the message path's when there is no other)."""
        return self.background_sessionmaker or self.sessionmaker


def get_deps(context: ContextTypes.DEFAULT_TYPE) -> Deps:
    deps = context.bot_data[DEPS_KEY]
    assert isinstance(deps, Deps)
    return deps


def person_of(update: Update) -> Person:
    """The sender of an update as plain values (rules never see Telegram objects)."""
    user = update.effective_user
    chat = update.effective_chat
    if user is None or chat is None:
        raise ValueError("update has no sender")
    return Person(
        user_id=user.id,
        chat_id=chat.id,
        first_name=user.first_name,
        last_name=user.last_name,
        username=user.username,
        language_code=user.language_code,
    )
