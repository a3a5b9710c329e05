"""The first step of every update: store what a person sent before any rule runs.

Registered in the earliest handler group. The row is committed on its own, so a later failure
(a rule raising, Telegram refusing a reply, a crash) cannot lose the message. A redelivered
update (same ``update_id``) and messages from chats that are neither private nor the staff
group stop here.
"""

from __future__ import annotations

import logging

from telegram import Message, Update
from telegram.constants import ChatType
from telegram.ext import ApplicationHandlerStop, ContextTypes, TypeHandler

from handlers.context import get_deps
from storage import customers as customer_queries

logger = logging.getLogger(__name__)

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


async def store_inbound(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log the message, then let the rule handlers run (or stop: redelivery, foreign chat)."""
    message = update.message or update.edited_message
    chat = update.effective_chat
    if chat is None:
        return
    deps = get_deps(context)
    if chat.type != ChatType.PRIVATE and chat.id != deps.staff_chat_id:
        raise ApplicationHandlerStop
    if message is None:
        return
    kind, file_id = message_kind(message)
    sender = message.from_user
    async with deps.sessionmaker.begin() as session:
        stored = await customer_queries.log_inbound(
            session,
            update_id=update.update_id,
            chat_id=chat.id,
            telegram_message_id=message.message_id,
            sender_user_id=sender.id if sender else None,
            kind=kind,
            text=message.text or message.caption,
            media_file_id=file_id,
            edited=update.edited_message is not None,
            received_at=deps.clock.now(),
        )
    if not stored:
        logger.info("update %s already handled: skipped", update.update_id)
        raise ApplicationHandlerStop


def build_handler() -> TypeHandler[Update, ContextTypes.DEFAULT_TYPE, None]:
    return TypeHandler(Update, store_inbound)
