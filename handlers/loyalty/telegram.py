"""``/points``, ``/redeem`` and the redeem buttons on Telegram: thin PTB callbacks over
``handlers.loyalty.points`` (the update parsed, the rule run in one transaction, what it
returns sent)."""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, filters

from handlers._edge.context import CareContext, person_of
from handlers._edge.render import respond
from handlers.loyalty import points
from handlers.loyalty.points import CB_REDEEM, Programme

PRIVATE_MESSAGE = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE


async def on_points(update: Update, context: CareContext) -> None:
    """``/points``: balance, what expires soon, the latest movements, the tier's benefits."""
    deps = context.deps
    async with deps.sessionmaker.begin() as session:
        reply = await points.points_command(
            session,
            Programme.from_config(deps.rules),
            person_of(update),
            deps.rules.general,
            deps.clock.now(),
        )
    await respond(update, deps.texts, reply)


async def on_redeem(update: Update, context: CareContext) -> None:
    """``/redeem`` (choices as buttons) or ``/redeem AMOUNT``."""
    deps = context.deps
    argument = " ".join(context.args) if context.args else None
    async with deps.sessionmaker.begin() as session:
        reply = await points.redeem_command(
            session,
            Programme.from_config(deps.rules),
            person_of(update),
            deps.rules.general,
            argument,
            deps.clock.now(),
        )
    await respond(update, deps.texts, reply)


async def on_redeem_button(update: Update, context: CareContext) -> None:
    """A ``/redeem`` choice pressed."""
    deps = context.deps
    query = update.callback_query
    if query is None:
        return
    async with deps.sessionmaker.begin() as session:
        result = await points.press_redeem(
            session,
            Programme.from_config(deps.rules),
            query.from_user.id,
            query.data or "",
            deps.clock.now(),
        )
    await respond(update, deps.texts, result)


def build_handlers() -> list[BaseHandler[Update, CareContext, None]]:
    """The points commands (private chats) and the redeem buttons."""
    return [
        CommandHandler("points", on_points, filters=PRIVATE_MESSAGE),
        CommandHandler("redeem", on_redeem, filters=PRIVATE_MESSAGE),
        CallbackQueryHandler(on_redeem_button, pattern=f"^{CB_REDEEM}[0-9]+$"),
    ]
