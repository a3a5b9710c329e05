"""The chat part of surveys: the answer buttons (``sv:…``). Free-text answers arrive through
``handlers.route.route_text``. The rules are in ``surveys.flow``."""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler

from handlers._edge.context import CareContext
from handlers.tickets.telegram import on_desk_button
from surveys import flow


def build_handlers() -> list[BaseHandler[Update, CareContext, None]]:
    return [CallbackQueryHandler(on_desk_button(flow.press_button), pattern=rf"^{flow.CB_SURVEY}")]
