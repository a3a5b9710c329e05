"""Knowledge-base answers in the private chat: thin PTB callbacks over ``answering``.

Free text reaches the knowledge base through onboarding's text handler (a customer who is in a
flow answers the flow first); the buttons under an answer are handled here.
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, ContextTypes

from handlers._edge.context import get_deps
from handlers._edge.render import respond
from handlers.answers import answering
from handlers.answers.kb import KB_KEY, KbLibrary, KnowledgeBase
from handlers.tickets.telegram import desk_of, wake_dispatcher


def current_knowledge(context: ContextTypes.DEFAULT_TYPE) -> KnowledgeBase | None:
    """The running bot's knowledge base (reloaded first if ``carebot kb reload`` ran)."""
    library = context.bot_data.get(KB_KEY)
    return library.current() if isinstance(library, KbLibrary) else None


async def on_kb_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """👍, 👎, a suggested question, "talk to a person" or "open a complaint"."""
    query = update.callback_query
    knowledge = current_knowledge(context)
    if query is None or knowledge is None:
        return
    deps = get_deps(context)
    async with deps.sessionmaker.begin() as session:
        result = await answering.press_button(
            session,
            query.from_user.id,
            query.data or "",
            knowledge,
            deps.clock.now(),
            desk=desk_of(context),
        )
    wake_dispatcher(context)
    await respond(update, deps.texts, result)


def build_handlers() -> list[BaseHandler[Update, ContextTypes.DEFAULT_TYPE, None]]:
    return [CallbackQueryHandler(on_kb_button, pattern=f"^{answering.CB_PREFIX}")]
