"""The chat part of surveys: the answer buttons (``sv:…``). Free-text answers arrive through
``handlers.onboarding_rules.handle_text``. The rules are in ``surveys.flow``."""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, ContextTypes

from handlers.context import get_deps
from handlers.render import respond
from handlers.tickets import desk_of, wake_dispatcher
from surveys import flow


async def on_survey_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The customer tapped an answer (or Skip)."""
    query = update.callback_query
    if query is None:
        return
    deps = get_deps(context)
    async with deps.sessionmaker.begin() as session:
        result = await flow.press_button(
            session, desk_of(context), query.from_user.id, query.data or "", deps.clock.now()
        )
    wake_dispatcher(context)
    if result is None:
        await query.answer()
        return
    await respond(update, deps.texts, result)


def build_handlers() -> list[BaseHandler[Update, ContextTypes.DEFAULT_TYPE, None]]:
    return [CallbackQueryHandler(on_survey_button, pattern=rf"^{flow.CB_SURVEY}")]
