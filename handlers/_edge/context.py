"""What every handler gets from the composition root, and the small helpers all of them use.

The composition root (``bot.app``) builds the Application with ``ContextTypes(context=CareContext,
bot_data=...)``: every callback's ``context`` is a :class:`CareContext`, whose ``bot_data`` is a
:class:`BotData` holding the services built once (typed attributes, no string keys).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram import Update
from telegram.ext import CallbackContext, ExtBot

from bot.kernel.clock import Clock
from bot.kernel.config import Config
from bot.kernel.texts import Texts
from dashboard.auth import LoginLinks
from handlers.answers.kb import KbLibrary
from handlers.onboarding.registration import Person
from handlers.staff.commands import MemberCache
from handlers.tickets.lifecycle import TicketDesk


@dataclass(frozen=True)
class Deps:
    """Services built once by ``bot.app`` and shared by all handlers (``BotData.deps``)."""

    sessionmaker: async_sessionmaker[AsyncSession]
    texts: Texts
    rules: Config
    clock: Clock
    background_sessionmaker: async_sessionmaker[AsyncSession] | None = None
    """For what may read long (the dashboard, the metrics): off the message path's sessions,
    which on SQLite run on the event loop (``storage.engine.BotDatabase``)."""

    @property
    def reports(self) -> async_sessionmaker[AsyncSession]:
        """The sessions for long reads (the message path's when there is no other)."""
        return self.background_sessionmaker or self.sessionmaker


class BotData:
    """``context.bot_data``: the services the handlers share, one set per Application.

    PTB makes it empty when the Application is built (``ContextTypes`` calls the class without
    arguments); ``bot.app.build_application`` then sets ``deps``, ``desk`` and ``kb`` before any
    update is handled (read before that, they raise AttributeError). The others are None until
    their owner sets them. Never persisted: ``DraftPersistence`` stores no ``bot_data`` (these
    are live services, not data).
    """

    __slots__ = ("deps", "desk", "kb", "login_links", "members", "wake")

    deps: Deps
    desk: TicketDesk
    """The ticket desk: the handlers and the dispatcher's outcome hooks share this one."""
    kb: KbLibrary
    """The live knowledge base (reloaded on ``carebot kb reload`` or SIGHUP)."""

    def __init__(self) -> None:
        self.login_links: LoginLinks | None = None
        """The dashboard's sign-in links; None without ``CAREBOT_DASHBOARD_URL``
        (``bot.web.wire_operations``)."""
        self.members: MemberCache | None = None
        """Staff-group membership answers, made on first use by ``handlers.staff.telegram``."""
        self.wake: Callable[[], None] | None = None
        """Wakes the outbox dispatcher; set by whoever runs one in this process
        (``bot.runner``, the test harness). None: no dispatcher here, nothing to wake."""


class CareContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], Any]):
    """The ``context`` of every carebot callback: PTB's, with ``bot_data`` typed as
    :class:`BotData` and the two services nearly every handler uses as properties.

    Its ``bot_data`` type parameter is ``Any`` so that a ``CareContext`` still fits code typed
    for PTB's default context (``ContextTypes.DEFAULT_TYPE``); the ``bot_data`` property
    narrows it to what the composition root put there.
    """

    @property
    def bot_data(self) -> BotData:
        data = self.application.bot_data
        if not isinstance(data, BotData):
            raise TypeError(
                "bot_data is not a BotData: build the Application with bot.app's context types"
            )
        return data

    @bot_data.setter
    def bot_data(self, _: object) -> NoReturn:
        raise AttributeError("You can not assign a new value to bot_data")

    @property
    def deps(self) -> Deps:
        return self.bot_data.deps

    @property
    def desk(self) -> TicketDesk:
        """The ticket desk of this bot (built once from the rules and settings)."""
        return self.bot_data.desk


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
