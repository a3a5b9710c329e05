"""Turn rule replies into Telegram messages: the only place catalogue keys meet PTB objects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from telegram.error import BadRequest

from bot.kernel.replies import Alert, Keyboard, Reply, TextRef
from bot.kernel.texts import Texts
from storage.engine import after_commit

ReplyMarkup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove


def _resolve(texts: Texts, language: str, params: dict[str, Any]) -> dict[str, Any]:
    return {
        name: texts.render(language, value.key, **_resolve(texts, language, value.params))
        if isinstance(value, TextRef)
        else value
        for name, value in params.items()
    }


def render_text(texts: Texts, reply: Reply) -> str:
    return texts.render(reply.language, reply.key, **_resolve(texts, reply.language, reply.params))


def render_markup(texts: Texts, reply: Reply) -> ReplyMarkup | None:
    if reply.buttons:
        return InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton(
                        _button_label(
                            texts, reply.language, button.key, button.params, button.data
                        ),
                        callback_data=None if button.url else button.data,
                        url=button.url,
                    )
                    for button in row
                ]
                for row in reply.buttons
            ]
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
    return texts.render(language, key, **_resolve(texts, language, params))


async def respond(update: Update, texts: Texts, result: Reply | Alert | Sequence[Reply]) -> None:
    """Send what a rule returned: answer a pressed button, edit its message or send new ones;
    once the update's unit of work has committed (``storage.engine.after_commit``)."""
    await after_commit(lambda: _send(update, texts, result))


async def _send(update: Update, texts: Texts, result: Reply | Alert | Sequence[Reply]) -> None:
    query = update.callback_query
    if isinstance(result, Alert):
        if query is not None:
            await query.answer(texts.render(result.language, result.key), show_alert=False)
        return
    replies = [result] if isinstance(result, Reply) else list(result)
    if query is not None:
        await query.answer()
    chat = update.effective_chat
    if chat is None:
        return
    for reply in replies:
        text = render_text(texts, reply)
        markup = render_markup(texts, reply)
        if reply.replace_message and query is not None and query.message is not None:
            inline = markup if isinstance(markup, InlineKeyboardMarkup) else None
            try:
                await query.edit_message_text(text, reply_markup=inline)
                continue
            except BadRequest as error:
                # The message is gone or unchanged: fall back to a new message.
                if "not modified" in str(error).lower():
                    continue
        await chat.send_message(text, reply_markup=markup)
