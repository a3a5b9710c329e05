"""The first step of every update: store what a person sent before any rule runs.

Registered in the earliest handler group. The row is committed before the rules run, so a later
failure (a rule raising, Telegram refusing a reply, a crash) cannot lose the message. A
redelivered update (same ``update_id``) and messages from chats that are neither private nor
the staff group stop here.

Rows arriving together share one transaction (group commit): each update still waits for its
own row to be committed, but concurrent updates pay for one commit instead of one each.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
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

JOURNAL_KEY = "inbound_journal"
BUTTON_KIND = "button"


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


class InboundJournal:
    """Commits inbound rows in batches; ``store`` returns once the row is committed."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker
        self._waiting: list[tuple[dict[str, Any], asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def store(self, row: dict[str, Any]) -> bool:
        """Commit ``row``; False when its update was stored before (a redelivery)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((row, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        # The task starts after the updates already running have queued their rows.
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                async with self._sessionmaker.begin() as session:
                    new = await customer_queries.log_inbound_many(session, [r for r, _ in batch])
            except Exception as error:  # every waiting update sees the failure
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for row, future in batch:
                if not future.done():
                    future.set_result(row["update_id"] in new)


def inbound_row(update: Update) -> dict[str, Any] | None:
    """What a person sent in this update, as an ``inbound_messages`` row without its time: a
    message (new or edited) or a pressed button; None for anything else (status changes)."""
    chat = update.effective_chat
    if update.callback_query is not None:
        query = update.callback_query
        origin = query.message
        return {
            "update_id": update.update_id,
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
        return None
    kind, file_id = message_kind(message)
    sender = message.from_user
    return {
        "update_id": update.update_id,
        "chat_id": chat.id,
        "telegram_message_id": message.message_id,
        "sender_user_id": sender.id if sender else None,
        "kind": kind,
        "text": message.text or message.caption,
        "media_file_id": file_id,
        "edited": update.edited_message is not None,
    }


async def store_inbound(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log what was sent, then let the rule handlers run (or stop: redelivery, foreign chat).

    Button presses are logged too: their ``update_id`` is what makes a redelivered press (a
    webhook retried, or delivered to a second bot process) a no-op.
    """
    chat = update.effective_chat
    if chat is None:
        return
    deps = get_deps(context)
    if chat.type != ChatType.PRIVATE and chat.id != deps.staff_chat_id:
        raise ApplicationHandlerStop
    row = inbound_row(update)
    if row is None:
        return
    journal: InboundJournal = context.bot_data[JOURNAL_KEY]
    stored = await journal.store({**row, "received_at": deps.clock.now()})
    if not stored:
        logger.info("update %s already handled: skipped", update.update_id)
        raise ApplicationHandlerStop


def build_handler() -> TypeHandler[Update, ContextTypes.DEFAULT_TYPE, None]:
    return TypeHandler(Update, store_inbound)
