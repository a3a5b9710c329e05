"""The buttons under care messages, on Telegram: a thin PTB callback over
``handlers.care.actions.press_care_button`` (the update parsed, the rule run in one
transaction, what it returns sent)."""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler

from handlers._edge.context import CareContext
from handlers.care.actions import press_care_button
from handlers.tickets.telegram import on_desk_button


def build_handlers() -> list[BaseHandler[Update, CareContext, None]]:
    press = on_desk_button(press_care_button)
    # Named as before the rule moved out of this edge: the metrics' and logs' handler label
    # stays "care.press_care_button" (bot.metrics.handler_name reads the module).
    press.__module__ = __name__
    return [CallbackQueryHandler(press, pattern=r"^care:")]
