"""The complaint flow and the customer's side of tickets: thin PTB callbacks over
``handlers.complaints.flow``, ``handlers.tickets`` and ``handlers.route`` (media and edits).

The flow is a ConversationHandler whose state survives a restart: its truth is the customer's
row in ``complaint_drafts``, written by the rules in the same transaction as each answer.
``DraftPersistence`` is a PTB persistence that only *loads* those steps when the Application
starts (``update_conversation`` has nothing left to write). A restarted bot therefore resumes
every customer at the step they were at.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram import Message, Update
from telegram.error import BadRequest
from telegram.ext import (
    BaseHandler,
    BasePersistence,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    PersistenceInput,
    filters,
)
from telegram.warnings import PTBUserWarning

from handlers._edge.context import CareContext, person_of
from handlers._edge.render import respond, send_replies
from handlers.complaints import flow
from handlers.route import route_edit, route_media
from handlers.tickets.desk import CB_RESOLUTION
from handlers.tickets.lifecycle import confirm_resolution
from handlers.tickets.telegram import incoming_of, on_desk_button, wake_dispatcher
from storage.engine import after_commit
from storage.tickets.drafts import draft_steps, remember_prompt

CONVERSATION = "complaint"
ConversationKey = tuple[int | str, ...]
ConversationDict = dict[ConversationKey, object]
PRIVATE = filters.ChatType.PRIVATE
NEW_MESSAGE = filters.UpdateType.MESSAGE
# What a customer may send besides text; relayed to their ticket when they have one.
MEDIA = (
    filters.PHOTO
    | filters.Document.ALL
    | filters.VOICE
    | filters.VIDEO
    | filters.AUDIO
    | filters.ANIMATION
    | filters.VIDEO_NOTE
    | filters.Sticker.ALL
    | filters.LOCATION
    | filters.VENUE
)


class DraftPersistence(BasePersistence[dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    """Loads the complaint flow's steps from ``complaint_drafts`` when the bot starts.

    Nothing else is persisted through PTB: the database is the truth and every rule writes
    its own rows in its own transaction, so the write side is empty. ``bot_data`` in
    particular must stay out of ``store_data``: it is a ``BotData`` of live services (PTB
    would deep-copy it to store it, and want ``get_bot_data`` to return one).
    """

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(
            store_data=PersistenceInput(
                bot_data=False, chat_data=False, user_data=False, callback_data=False
            ),
            update_interval=3600,
        )
        self._sessionmaker = sessionmaker

    async def get_conversations(self, name: str) -> ConversationDict:
        if name != CONVERSATION:
            return {}
        async with self._sessionmaker() as session:
            steps = await draft_steps(session)
        return {(chat_id, user_id): step for chat_id, user_id, step in steps}

    async def update_conversation(
        self, name: str, key: ConversationKey, new_state: object | None
    ) -> None:
        """Already written by the rule that decided the new step."""

    async def get_user_data(self) -> dict[int, dict[Any, Any]]:
        return {}

    async def get_chat_data(self) -> dict[int, dict[Any, Any]]:
        return {}

    async def get_bot_data(self) -> dict[Any, Any]:
        return {}

    async def get_callback_data(self) -> None:
        return None

    async def update_user_data(self, user_id: int, data: dict[Any, Any]) -> None:
        return None

    async def update_chat_data(self, chat_id: int, data: dict[Any, Any]) -> None:
        return None

    async def update_bot_data(self, data: dict[Any, Any]) -> None:
        return None

    async def update_callback_data(self, data: Any) -> None:
        return None

    async def drop_chat_data(self, chat_id: int) -> None:
        return None

    async def drop_user_data(self, user_id: int) -> None:
        return None

    async def refresh_user_data(self, user_id: int, user_data: dict[Any, Any]) -> None:
        return None

    async def refresh_chat_data(self, chat_id: int, chat_data: dict[Any, Any]) -> None:
        return None

    async def refresh_bot_data(self, bot_data: dict[Any, Any]) -> None:
        return None

    async def flush(self) -> None:
        return None


async def _answer(
    update: Update,
    context: CareContext,
    result: flow.FlowResult,
) -> object:
    texts = context.deps.texts
    wake_dispatcher(context)
    if result.alert is not None:
        await respond(update, texts, result.alert)
    elif result.step_over:
        await after_commit(lambda: _next_step(update, context, result))
    elif result.replies or update.callback_query is not None:
        await respond(update, texts, result.replies)
    return result.step if result.step is not None else ConversationHandler.END


async def _next_step(update: Update, context: CareContext, result: flow.FlowResult) -> None:
    """A step is over (committed): the buttons of its messages go (the pressed one's and the
    prompt the draft remembers), the replies go out, and the draft remembers the one that
    carries the new step's buttons (its own small transaction: a crash in between leaves old
    buttons, which only answer "no longer active")."""
    query = update.callback_query
    chat, user = update.effective_chat, update.effective_user
    if chat is None or user is None:
        return
    stale = {result.retire} if result.retire is not None else set()
    if query is not None and isinstance(query.message, Message):
        stale.add(query.message.message_id)
    for message_id in sorted(stale):
        with contextlib.suppress(BadRequest):  # gone, or without buttons already
            await context.bot.edit_message_reply_markup(chat.id, message_id, reply_markup=None)
    sent = await send_replies(update, context.deps.texts, result.replies)
    last = sent[-1] if sent else None
    prompt = (
        last.message_id
        if last is not None and result.step is not None and result.replies[-1].buttons
        else None
    )
    if prompt is None and result.retire is None:
        return
    async with context.deps.sessionmaker.begin() as session:
        await remember_prompt(session, user.id, prompt)


async def start(update: Update, context: CareContext) -> object:
    """``/complaint``: pick a category."""
    deps = context.deps
    async with deps.sessionmaker.begin() as session:
        result = await flow.start(
            session, person_of(update), context.desk, deps.rules.general, deps.clock.now()
        )
    return await _answer(update, context, result)


async def press_button(update: Update, context: CareContext) -> object:
    """A button of the flow (category, order, skip, done, send, cancel)."""
    query = update.callback_query
    if query is None:
        return None
    deps = context.deps
    async with deps.sessionmaker.begin() as session:
        result = await flow.press(
            session, query.from_user.id, query.data or "", context.desk, deps.clock.now()
        )
    return await _answer(update, context, result)


async def write(update: Update, context: CareContext) -> object:
    """A message during the flow: the order number, or part of the description."""
    message = update.effective_message
    user = update.effective_user
    if message is None or user is None:
        return None
    deps = context.deps
    async with deps.sessionmaker.begin() as session:
        result = await flow.message(
            session, user.id, incoming_of(message), context.desk, deps.clock.now()
        )
    return await _answer(update, context, result)


async def done(update: Update, context: CareContext) -> object:
    """``/done``: the description is complete."""
    user = update.effective_user
    if user is None:
        return None
    deps = context.deps
    async with deps.sessionmaker.begin() as session:
        result = await flow.done(session, user.id, context.desk, deps.clock.now())
    return await _answer(update, context, result)


async def cancel(update: Update, context: CareContext) -> object:
    """``/cancel`` at any step: nothing is kept."""
    user = update.effective_user
    if user is None:
        return None
    deps = context.deps
    async with deps.sessionmaker.begin() as session:
        result = await flow.cancel(session, user.id, deps.clock.now())
    return await _answer(update, context, result)


def build_conversation() -> ConversationHandler[CareContext]:
    """The complaint flow; persistent (see ``DraftPersistence``)."""
    private_message = PRIVATE & NEW_MESSAGE
    button = CallbackQueryHandler(press_button, pattern=f"^{flow.CB_FLOW}")
    step = [
        button,
        CommandHandler("done", done, filters=private_message),
        MessageHandler(private_message & ~filters.COMMAND, write),
    ]
    with warnings.catch_warnings():
        # per_message=False is right here: the flow follows the customer, not one message.
        warnings.filterwarnings("ignore", message=".*per_message", category=PTBUserWarning)
        return ConversationHandler(
            entry_points=[
                CommandHandler(["complaint", "complain"], start, filters=private_message)
            ],
            states={name: list(step) for name in flow.STEPS},
            fallbacks=[CommandHandler("cancel", cancel, filters=private_message), button],
            allow_reentry=True,
            name=CONVERSATION,
            persistent=True,
        )


# --- the customer's side of an open ticket -------------------------------------------------------


async def relay_media(update: Update, context: CareContext) -> None:
    """A photo, document, voice, ... outside the flow: to the customer's ticket if they have
    one, else the polite "text please" of onboarding."""
    message = update.effective_message
    if message is None:
        return
    deps = context.deps
    async with deps.sessionmaker.begin() as session:
        replies = await route_media(
            session,
            person_of(update),
            incoming_of(message),
            deps.rules.general,
            deps.clock.now(),
            context.desk,
        )
    wake_dispatcher(context)
    await respond(update, deps.texts, replies)


async def relay_edit(update: Update, context: CareContext) -> None:
    """The customer edited a message: relayed to the topic marked as edited, if it was part of
    a ticket (the edit itself is stored by the inbound step either way)."""
    message = update.edited_message
    user = update.effective_user
    if message is None or user is None:
        return
    deps = context.deps
    async with deps.sessionmaker.begin() as session:
        known = await route_edit(
            session, user.id, incoming_of(message), context.desk, deps.clock.now()
        )
    if known:
        wake_dispatcher(context)


def build_handlers() -> list[BaseHandler[Update, CareContext, Any]]:
    """The flow, then the customer's side of tickets (before onboarding's handlers)."""
    private_message = PRIVATE & NEW_MESSAGE
    return [
        build_conversation(),
        CallbackQueryHandler(
            on_desk_button(confirm_resolution),
            pattern=f"^{CB_RESOLUTION}",
        ),
        MessageHandler(private_message & MEDIA, relay_media),
        MessageHandler(PRIVATE & filters.UpdateType.EDITED_MESSAGE, relay_edit),
    ]
