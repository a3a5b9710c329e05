"""Turn rule replies into Telegram messages (texts and buttons through ``bot.kernel.render``,
the renderer the staff desk and the dispatcher share)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from telegram import (
    CallbackQuery,
    Chat,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from telegram.error import BadRequest

from bot.kernel.render import (
    inline_button,
    inline_keyboard,
    is_not_modified,
    render_ref,
)
from bot.kernel.replies import Alert, Keyboard, Reply, TextRef
from bot.kernel.texts import Texts
from storage.engine import after_commit

ReplyMarkup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove


def render_text(texts: Texts, reply: Reply) -> str:
    return render_ref(texts, reply.language, TextRef(reply.key, reply.params))


def render_markup(texts: Texts, reply: Reply) -> ReplyMarkup | None:
    if reply.buttons:
        return inline_keyboard(
            [
                inline_button(
                    _button_label(texts, reply.language, button.key, button.params, button.data),
                    data=button.data,
                    url=button.url,
                )
                for button in row
            ]
            for row in reply.buttons
        )
    if reply.keyboard is Keyboard.REQUEST_CONTACT:
        return ReplyKeyboardMarkup(
            [[KeyboardButton(texts.render(reply.language, "phone_button"), request_contact=True)]],
            resize_keyboard=True,
            one_time_keyboard=True,
        )
    if reply.keyboard is Keyboard.REMOVE:
        return ReplyKeyboardRemove()
    return None


def _button_label(texts: Texts, language: str, key: str, params: dict[str, Any], data: str) -> str:
    # A language-choice button is labelled in its own language, whatever the customer's is.
    if key == "language_name":
        language = data.rsplit(":", 1)[-1]
    return render_ref(texts, language, TextRef(key, params))


async def respond(update: Update, texts: Texts, result: Reply | Alert | Sequence[Reply]) -> None:
    """Send what a rule returned: answer a pressed button, edit its message or send new ones;
    once the update's unit of work has committed (``storage.engine.after_commit``)."""
    await after_commit(lambda: send_replies(update, texts, result))


async def send_replies(
    update: Update, texts: Texts, result: Reply | Alert | Sequence[Reply]
) -> list[Message | None]:
    """Send what a rule returned now (``respond`` waits for the commit): one entry per reply,
    the message it became (None: it edited the pressed one, or nothing was sent)."""
    query = update.callback_query
    if isinstance(result, Alert):
        if query is not None:
            await query.answer(texts.render(result.language, result.key), show_alert=False)
        return []
    replies = [result] if isinstance(result, Reply) else list(result)
    if query is not None:
        await query.answer()
    chat = update.effective_chat
    if chat is None:
        return [None for _ in replies]
    sent: list[Message | None] = []
    for reply in replies:
        sent.append(await _send_one(query, chat, texts, reply))
    return sent


async def _send_one(
    query: CallbackQuery | None, chat: Chat, texts: Texts, reply: Reply
) -> Message | None:
    text = render_text(texts, reply)
    markup = render_markup(texts, reply)
    if reply.replace_message and query is not None and query.message is not None:
        inline = markup if isinstance(markup, InlineKeyboardMarkup) else None
        try:
            await query.edit_message_text(text, reply_markup=inline)
            return None
        except BadRequest as error:
            # The message is gone or unchanged: fall back to a new message.
            if is_not_modified(error):
                return None
    return await chat.send_message(text, reply_markup=markup)
