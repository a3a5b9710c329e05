"""The composition root's side of the typed context: the ``ContextTypes`` every carebot
Application is built with (``bot.app.build_application``), and its ``bot_data``.

The handlers see ``context.bot_data`` as a ``handlers._edge.context.BotData`` (the services
they share); the Application's is an :class:`AppData`, which adds what only the composition
root uses: the inbox and the metrics. The handlers' package may not import this module
(tests/test_layout.py).
"""

from __future__ import annotations

from typing import Any

from telegram.ext import Application, ContextTypes

from bot.inbox import Inbox
from bot.metrics import BotMetrics
from handlers._edge.context import BotData, CareContext


class AppData(BotData):
    """``Application.bot_data``: the handlers' services, the inbox and the metrics.

    ``inbox`` is set by ``build_application`` (the inbox needs the Application, which makes
    this object first); read before that, it raises AttributeError.
    """

    __slots__ = ("inbox", "metrics")

    inbox: Inbox
    """What arrives is stored there and handled from there (``bot.inbox``)."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics = BotMetrics()
        """The process's metrics (``bot.web`` serves them)."""


CONTEXT_TYPES = ContextTypes(context=CareContext, bot_data=AppData)

CareApplication = Application[Any, CareContext, Any, Any, AppData, Any]
"""An Application built with ``CONTEXT_TYPES`` (``bot.app.build_application``)."""


def inbox_of(application: CareApplication) -> Inbox:
    """The application's inbox (``bot.app.build_application`` makes it with the bot)."""
    return application.bot_data.inbox
