"""What every sending method shares: where a message goes (chat, topic, reply, keyboard), its
formatted text or caption, and ``_post``, which creates the bot's message and records it as a
``SentMessage``."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from bot.sandbox.core import ChatState, SandboxCore
from bot.sandbox.entities import PARSERS, EntityParseError, trim
from bot.sandbox.protocol import (
    MAX_CAPTION_LENGTH,
    MAX_TEXT_LENGTH,
    ApiError,
    JSONDict,
    bad_request,
    chat_id_param,
    embedded,
    kind_of,
    words,
)
from bot.sandbox.records import SentMessage

_INLINE_BUTTON_ACTIONS = frozenset(
    words(
        "url callback_data login_url switch_inline_query switch_inline_query_current_chat "
        "switch_inline_query_chosen_chat copy_text callback_game pay web_app"
    )
)


@dataclass
class Target:
    chat: ChatState
    thread_id: int | None
    reply_to: JSONDict | None
    markup: JSONDict | None


def _rows(markup: JSONDict, key: str, error: str) -> list[list[Any]]:
    rows = markup[key]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise bad_request(error)
    return rows


def _check_inline_button(button: Any) -> None:
    if not isinstance(button, dict) or not isinstance(button.get("text"), str):
        raise bad_request("can't parse inline keyboard button: Text must be a String")
    if not _INLINE_BUTTON_ACTIONS.intersection(button):
        raise bad_request("text buttons are unallowed in the inline keyboard")
    if "callback_data" in button:
        data = button["callback_data"]
        if not isinstance(data, str) or not 1 <= len(data.encode()) <= 64:
            raise bad_request("BUTTON_DATA_INVALID")
    if "url" in button and not re.match(r"(https?|tg)://", str(button["url"]), re.IGNORECASE):
        raise bad_request(
            f"inline keyboard button URL '{button['url']}' is invalid: Wrong HTTP URL"
        )


def _check_keyboard_button(button: Any) -> None:
    text = button if isinstance(button, str) else button.get("text")
    if not isinstance(text, str) or not text:
        raise bad_request("can't parse keyboard button: Text must be non-empty")


def check_markup(markup: Any, *, inline_only: bool = False) -> JSONDict | None:
    """The ``reply_markup`` parameter, validated as Telegram does (None when absent)."""
    if markup is None or markup == "":
        return None
    if not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        error = 'field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays'
        for row in _rows(markup, "inline_keyboard", error):
            for button in row:
                _check_inline_button(button)
        return markup
    if inline_only:
        raise bad_request("inline keyboard expected")
    if "keyboard" in markup:
        error = 'field "keyboard" of the ReplyKeyboardMarkup must be an Array'
        for row in _rows(markup, "keyboard", error):
            for button in row:
                _check_keyboard_button(button)
        return markup
    if markup.get("remove_keyboard") or markup.get("force_reply"):
        return markup
    raise bad_request("can't parse reply keyboard markup JSON object")


def format_text(text: str, parse_mode: Any, entities: Any) -> tuple[str, list[JSONDict]]:
    """Plain text and entities, by ``parse_mode`` or from the given ``entities``; trimmed."""
    mode = parse_mode.lower() if isinstance(parse_mode, str) else ""
    try:
        if mode == "":
            plain = text
            found = [e for e in entities if isinstance(e, dict)] if entities else []
        elif mode in PARSERS:
            plain, found = PARSERS[mode](text)
        else:
            raise bad_request("unsupported parse_mode")
    except EntityParseError as exc:
        raise bad_request(f"can't parse entities: {exc}") from exc
    return trim(plain, found)


def caption_content(caption: Any, parse_mode: Any, entities: Any, content: JSONDict) -> JSONDict:
    """Set (or remove) the caption of ``content``."""
    content.pop("caption", None)
    content.pop("caption_entities", None)
    if caption:
        plain, found = format_text(str(caption), parse_mode, entities)
        if len(plain) > MAX_CAPTION_LENGTH:
            raise bad_request("message caption is too long")
        if plain:
            content["caption"] = plain
        if found:
            content["caption_entities"] = found
    return content


def text_content(p: JSONDict) -> JSONDict:
    text = p.get("text")
    if not text:
        raise bad_request("message text is empty")
    plain, entities = format_text(text, p.get("parse_mode"), p.get("entities"))
    if not plain:
        raise bad_request("message text is empty")
    if len(plain) > MAX_TEXT_LENGTH:
        raise bad_request("message is too long")
    content: JSONDict = {"text": plain}
    if entities:
        content["entities"] = entities
    options = p.get("link_preview_options")
    if isinstance(options, dict) and options:
        content["link_preview_options"] = options
    elif p.get("disable_web_page_preview"):
        content["link_preview_options"] = {"is_disabled": True}
    return content


class PostingMixin(SandboxCore):
    """Targets and ``_post``: the common part of every method that creates a bot message."""

    def _writable_chat(self, value: Any) -> ChatState:
        chat = self._chat(value)
        if chat.type == "private":
            if not chat.started:
                raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
        else:
            status = chat.members.get(self.bot_id, "left")
            if status == "kicked":
                raise ApiError(403, "Forbidden: bot was kicked from the supergroup chat")
            if status == "left":
                raise ApiError(403, "Forbidden: bot is not a member of the supergroup chat")
        return chat

    def _thread(self, chat: ChatState, value: Any) -> int | None:
        """The topic a message goes to: None for the General topic and non-forum chats."""
        if not value or not chat.is_forum or value == 1:
            return None
        topic = chat.topics.get(value)
        if topic is None or topic.deleted:
            raise bad_request("message thread not found")
        if topic.closed:
            raise bad_request("TOPIC_CLOSED")
        return int(value)

    def _target(self, p: JSONDict) -> Target:
        chat = self._writable_chat(p.get("chat_id"))
        thread_id = self._thread(chat, p.get("message_thread_id"))
        reply_to: JSONDict | None = None
        reply = p.get("reply_parameters")
        if not isinstance(reply, dict):
            reply = {}
            if p.get("reply_to_message_id"):
                reply = {
                    "message_id": p["reply_to_message_id"],
                    "allow_sending_without_reply": p.get("allow_sending_without_reply", False),
                }
        if reply.get("message_id"):
            source = chat
            if reply.get("chat_id") not in (None, chat.id):
                source = self._chat(chat_id_param(reply["chat_id"]))
            reply_to = source.messages.get(int(reply["message_id"]))
            if reply_to is None and not reply.get("allow_sending_without_reply"):
                raise bad_request("message to be replied not found")
            if reply_to is not None and thread_id is None and source is chat:
                replied_thread = reply_to.get("message_thread_id")
                if replied_thread and reply_to.get("is_topic_message"):
                    thread_id = self._thread(chat, replied_thread)
        markup = check_markup(p.get("reply_markup"))
        return Target(chat, thread_id, reply_to, markup)

    def _post(
        self,
        target: Target,
        content: JSONDict,
        method: str,
        params: JSONDict,
        *,
        text: str | None = None,
        caption: str | None = None,
        parse_mode: str | None = None,
        copied_from: tuple[int, int] | None = None,
        media_group_id: str | None = None,
        extra: JSONDict | None = None,
    ) -> JSONDict:
        """Create a bot message in the target chat, store and record it."""
        message = self._bot_message(target, content, params, media_group_id, extra)
        kind = kind_of(message)
        file_id: str | None = None
        if kind == "photo":
            file_id = message["photo"][-1]["file_id"]
        elif isinstance(message.get(kind), dict):
            file_id = message[kind].get("file_id")
        record = SentMessage(
            chat_id=target.chat.id,
            message_id=message["message_id"],
            method=method,
            kind=kind,
            text=text if text is not None else message.get("text"),
            caption=caption if caption is not None else message.get("caption"),
            parse_mode=parse_mode,
            reply_markup=target.markup,
            message_thread_id=target.thread_id,
            reply_to_message_id=(
                target.reply_to["message_id"] if target.reply_to is not None else None
            ),
            media_group_id=media_group_id,
            file_id=file_id,
            copied_from=copied_from,
            at=time.monotonic(),
            message=message,
            params=params,
        )
        self._sent.setdefault(target.chat.id, []).append(record)
        self._sent_index[(target.chat.id, record.message_id)] = record
        self._notify()
        return message

    def _bot_message(
        self,
        target: Target,
        content: JSONDict,
        params: JSONDict,
        media_group_id: str | None,
        extra: JSONDict | None,
    ) -> JSONDict:
        """The stored Message dict of a new bot message."""
        chat = target.chat
        message: JSONDict = {
            "message_id": chat.next_message_id(),
            "from": self.bot_user,
            "chat": dict(chat.brief),
            "date": self._now(),
        }
        if target.thread_id is not None:
            message["message_thread_id"] = target.thread_id
            message["is_topic_message"] = True
        if target.reply_to is not None:
            message["reply_to_message"] = embedded(target.reply_to)
        elif target.thread_id is not None and target.thread_id in chat.messages:
            message["reply_to_message"] = embedded(chat.messages[target.thread_id])
        if media_group_id is not None:
            message["media_group_id"] = media_group_id
        if extra:
            message.update(extra)
        message.update(content)
        if target.markup is not None and "inline_keyboard" in target.markup:
            message["reply_markup"] = target.markup
        if params.get("protect_content"):
            message["has_protected_content"] = True
        chat.messages[message["message_id"]] = message
        return message


def message_ids(p: JSONDict) -> list[int]:
    """The ``message_ids`` parameter of the methods acting on several messages."""
    ids = p.get("message_ids")
    if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
        raise bad_request("message_ids must contain 1-100 message identifiers")
    return [int(i) for i in ids]
