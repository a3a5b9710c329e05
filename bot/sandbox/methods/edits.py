"""Changing and removing the bot's messages: ``editMessageText``, ``editMessageCaption``,
``editMessageReplyMarkup``, ``deleteMessage`` and ``deleteMessages``."""

from __future__ import annotations

from bot.sandbox.methods.posting import (
    PostingMixin,
    caption_content,
    check_markup,
    message_ids,
    text_content,
)
from bot.sandbox.protocol import ApiError, Handler, JSONDict, bad_request, kind_of

_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
_WITHOUT_CAPTION = ("text", "service", "sticker", "location", "contact", "dice")


def _inline_markup(p: JSONDict) -> JSONDict | None:
    markup = check_markup(p.get("reply_markup"), inline_only=True)
    return markup if markup and markup.get("inline_keyboard") else None


class EditsMixin(PostingMixin):
    """Edits apply to the stored message (``SentMessage.message`` shows them)."""

    def _edit_handlers(self) -> dict[str, Handler]:
        return {
            "editMessageText": self._m_edit_message_text,
            "editMessageCaption": self._m_edit_message_caption,
            "editMessageReplyMarkup": self._m_edit_message_reply_markup,
            "deleteMessage": self._m_delete_message,
            "deleteMessages": self._m_delete_messages,
        }

    def _editable(self, p: JSONDict) -> JSONDict:
        if p.get("inline_message_id"):
            raise bad_request("MESSAGE_ID_INVALID")
        chat = self._chat(p.get("chat_id"))
        message_id = p.get("message_id")
        if not message_id:
            raise bad_request("message identifier is not specified")
        message = chat.messages.get(message_id)
        if message is None:
            raise bad_request("message to edit not found")
        if message.get("from", {}).get("id") != self.bot_id:
            raise bad_request("message can't be edited")
        return message

    def _apply_edit(self, message: JSONDict, changes: JSONDict, markup: JSONDict | None) -> None:
        before = {key: message.get(key) for key in changes}
        if before == changes and message.get("reply_markup") == markup:
            raise ApiError(400, _NOT_MODIFIED)
        for key, value in changes.items():
            if value is None:
                message.pop(key, None)
            else:
                message[key] = value
        if markup is None:
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = markup
        message["edit_date"] = self._now()

    async def _m_edit_message_text(self, p: JSONDict) -> JSONDict:
        message = self._editable(p)
        markup = _inline_markup(p)
        if "text" not in message:
            raise bad_request("there is no text in the message to edit")
        content = text_content(p)
        content.setdefault("entities", None)
        self._apply_edit(message, content, markup)
        return message

    async def _m_edit_message_caption(self, p: JSONDict) -> JSONDict:
        message = self._editable(p)
        markup = _inline_markup(p)
        if kind_of(message) in _WITHOUT_CAPTION:
            raise bad_request("there is no caption in the message to edit")
        content = caption_content(
            p.get("caption"), p.get("parse_mode"), p.get("caption_entities"), {}
        )
        content.setdefault("caption", None)
        content.setdefault("caption_entities", None)
        self._apply_edit(message, content, markup)
        return message

    async def _m_edit_message_reply_markup(self, p: JSONDict) -> JSONDict:
        message = self._editable(p)
        self._apply_edit(message, {}, _inline_markup(p))
        return message

    async def _m_delete_message(self, p: JSONDict) -> bool:
        chat = self._chat(p.get("chat_id"))
        if not self._delete(chat, p.get("message_id")):
            raise bad_request("message to delete not found")
        return True

    async def _m_delete_messages(self, p: JSONDict) -> bool:
        chat = self._chat(p.get("chat_id"))
        for message_id in message_ids(p):
            self._delete(chat, message_id)
        return True
