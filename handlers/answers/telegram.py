"""Knowledge-base answers in the private chat: thin PTB callbacks over ``answering``.

Free text reaches the knowledge base through onboarding's text handler (a customer who is in a
flow answers the flow first); the buttons under an answer are handled here.
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler

from handlers._edge.context import CareContext
from handlers._edge.render import respond
from handlers.answers import answering
from handlers.answers.kb import KnowledgeBase
from handlers.tickets.telegram import wake_dispatcher


def current_knowledge(context: CareContext) -> KnowledgeBase:
    """The running bot's knowledge base (reloaded first if ``carebot kb reload`` ran)."""
    return context.bot_data.kb.current()


async def on_kb_button(update: Update, context: CareContext) -> None:
    """👍, 👎, a suggested question, "talk to a person" or "open a complaint"."""
    query = update.callback_query
    knowledge = current_knowledge(context)
    if query is None:
        return
    deps = context.deps
    async with deps.sessionmaker.begin() as session:
        result = await answering.press_button(
            session,
            query.from_user.id,
            query.data or "",
            knowledge,
            deps.clock.now(),
            desk=context.desk,
        )
    wake_dispatcher(context)
    await respond(update, deps.texts, result)


def build_handlers() -> list[BaseHandler[Update, CareContext, None]]:
    return [CallbackQueryHandler(on_kb_button, pattern=f"^{answering.CB_PREFIX}")]
