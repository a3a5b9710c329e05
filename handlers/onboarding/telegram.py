"""Onboarding and profile in the private chat: thin PTB callbacks over ``registration``
(and ``handlers.route`` for free text)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Update
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bot.kernel.config import GeneralConfig
from bot.kernel.replies import Alert, Reply
from handlers._edge.context import CareContext, person_of
from handlers._edge.render import respond
from handlers.answers.telegram import current_knowledge
from handlers.onboarding import registration
from handlers.route import route_text
from handlers.tickets.telegram import incoming_of, on_desk_button, wake_dispatcher

Callback = Callable[[Update, CareContext], Coroutine[Any, Any, None]]
PersonRule = Callable[
    [AsyncSession, registration.Person, GeneralConfig, datetime],
    Awaitable[Reply | Sequence[Reply]],
]

ButtonRule = Callable[
    [AsyncSession, int, str, datetime], Awaitable[Reply | Sequence[Reply] | Alert]
]

PRIVATE = filters.ChatType.PRIVATE
NEW_MESSAGE = filters.UpdateType.MESSAGE  # edits are stored by the inbound step, not answered here


def on_person(rule: PersonRule) -> Callback:
    """A callback that runs ``rule`` for the sender in one transaction, then sends its replies."""

    async def callback(update: Update, context: CareContext) -> None:
        deps = context.deps
        async with deps.sessionmaker.begin() as session:
            result = await rule(session, person_of(update), deps.rules.general, deps.clock.now())
        await respond(update, deps.texts, result)

    callback.__doc__ = rule.__doc__
    return callback


async def on_start(update: Update, context: CareContext) -> None:
    """``/start``, or ``/start <code>`` from a deep link (links the shop's customer record)."""
    deps = context.deps
    payload = context.args[0] if context.args else None
    async with deps.sessionmaker.begin() as session:
        replies = await registration.start(
            session, person_of(update), deps.rules.general, deps.clock.now(), payload
        )
    await respond(update, deps.texts, replies)


async def on_text(update: Update, context: CareContext) -> None:
    """Free text, wherever ``handlers.route`` sends it (a survey, the open ticket, a profile
    answer, the knowledge base)."""
    deps = context.deps
    message = update.effective_message
    text = message.text if message else None
    async with deps.sessionmaker.begin() as session:
        reply = await route_text(
            session,
            person_of(update),
            text or "",
            deps.rules.general,
            deps.clock.now(),
            current_knowledge(context),
            message=incoming_of(message) if message else None,
            desk=context.desk,
        )
    wake_dispatcher(context)
    await respond(update, deps.texts, reply)


async def on_contact(update: Update, context: CareContext) -> None:
    """A shared contact: kept as the phone only when it is the sender's own."""
    deps = context.deps
    contact = update.effective_message.contact if update.effective_message else None
    if contact is None:
        return
    async with deps.sessionmaker.begin() as session:
        reply = await registration.save_contact(
            session,
            person_of(update),
            contact.user_id,
            contact.phone_number,
            deps.rules.general,
            deps.clock.now(),
        )
    await respond(update, deps.texts, reply)


def on_button(rule: ButtonRule) -> Callback:
    """A callback for buttons whose data is ``prefix:value``: the rule gets the presser's id and
    the value, in one transaction; its answer is sent (or shown as a toast)."""

    async def callback(update: Update, context: CareContext) -> None:
        deps = context.deps
        query = update.callback_query
        if query is None:
            return
        value = (query.data or "").partition(":")[2]
        async with deps.sessionmaker.begin() as session:
            result = await rule(session, query.from_user.id, value, deps.clock.now())
        await respond(update, deps.texts, result)

    callback.__doc__ = rule.__doc__
    return callback


def build_handlers() -> list[BaseHandler[Update, CareContext, None]]:
    """Private-chat handlers, in the order they must be tried."""
    private_message = PRIVATE & NEW_MESSAGE
    return [
        CommandHandler("start", on_start, filters=private_message),
        CommandHandler("help", on_person(registration.help_text), filters=private_message),
        CommandHandler("language", on_person(registration.ask_language), filters=private_message),
        CommandHandler("profile", on_person(registration.show_profile), filters=private_message),
        CommandHandler("stop", on_person(registration.stop), filters=private_message),
        CommandHandler("forget", on_person(registration.ask_forget), filters=private_message),
        CallbackQueryHandler(
            on_button(registration.choose_language),
            pattern=f"^{registration.CB_LANGUAGE}(zh|en)$",
        ),
        CallbackQueryHandler(
            on_button(registration.set_consent),
            pattern=f"^{registration.CB_CONSENT}(yes|no)$",
        ),
        CallbackQueryHandler(
            on_button(registration.profile_action),
            pattern=f"^{registration.CB_PROFILE}[a-z]+$",
        ),
        CallbackQueryHandler(
            on_desk_button(registration.confirm_forget),
            pattern=f"^{registration.CB_FORGET}(yes|no)$",
        ),
        MessageHandler(private_message & filters.CONTACT, on_contact),
        MessageHandler(private_message & filters.TEXT & ~filters.COMMAND, on_text),
        # Unknown commands get the same guidance as free text.
        MessageHandler(private_message & filters.COMMAND, on_person(registration.fallback)),
        # Stickers, voice, locations, ...: a polite "text please".
        MessageHandler(private_message, on_person(registration.unsupported_input)),
    ]


def build_fallback_handlers() -> list[BaseHandler[Update, CareContext, None]]:
    """Catch-alls registered after every feature's handlers."""
    return [CallbackQueryHandler(on_button(registration.expired_button))]
