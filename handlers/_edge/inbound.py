"""What a person sent, as the inbox records it: the kind of message, its text and file, and the
conversation it belongs to (``bot.inbox`` stores every update with this before any rule runs)."""

from __future__ import annotations

from typing import Any

from telegram import Message, Update

_MEDIA_KINDS = (
    "photo",
    "document",
    "voice",
    "video",
    "audio",
    "animation",
    "video_note",
    "sticker",
)

BUTTON_KIND = "button"
OTHER_KIND = "update"
"""Anything that is neither a message nor a pressed button (a member joining, a block)."""

ConversationKey = tuple[int | None, int | None]


def message_kind(message: Message) -> tuple[str, str | None]:
    """What kind of message this is and the file id of its media, if any."""
    if message.text is not None:
        return "text", None
    for kind in _MEDIA_KINDS:
        media = getattr(message, kind)
        if media:
            item = media[-1] if isinstance(media, tuple) else media
            return kind, item.file_id
    for kind in ("contact", "location", "venue", "poll", "dice"):
        if getattr(message, kind) is not None:
            return kind, None
    return "other", None


def conversation_key(update: Update) -> ConversationKey:
    """The chat (and forum topic) an update belongs to: its updates are handled one after
    another in the order they arrived. ``(None, None)`` for an update outside any chat."""
    chat = update.effective_chat
    if chat is None:
        return None, None
    message = update.effective_message
    return chat.id, message.message_thread_id if message is not None else None


def record_of(update: Update) -> dict[str, Any]:
    """What a person sent in this update, as the inbox keeps it after handling: a message (new
    or edited), a pressed button (its data), or just the kind of update for anything else."""
    chat = update.effective_chat
    if update.callback_query is not None:
        query = update.callback_query
        origin = query.message
        return {
            "chat_id": chat.id if chat else None,
            "telegram_message_id": origin.message_id if origin else None,
            "sender_user_id": query.from_user.id,
            "kind": BUTTON_KIND,
            "text": query.data,
            "media_file_id": None,
            "edited": False,
        }
    message = update.message or update.edited_message
    if message is None or chat is None:
        user = update.effective_user
        return {
            "chat_id": chat.id if chat else None,
            "telegram_message_id": None,
            "sender_user_id": user.id if user else None,
            "kind": OTHER_KIND,
            "text": None,
            "media_file_id": None,
            "edited": False,
        }
    kind, file_id = message_kind(message)
    sender = message.from_user
    return {
        "chat_id": chat.id,
        "telegram_message_id": message.message_id,
        "sender_user_id": sender.id if sender else None,
        "kind": kind,
        "text": message.text or message.caption,
        "media_file_id": file_id,
        "edited": update.edited_message is not None,
    }
