"""Telegram-side helpers shared by the ticket handlers (complaints, staff, free text, the
knowledge base's hand-off): the desk, messages as plain values, waking the dispatcher."""

from __future__ import annotations

from collections.abc import Callable

from telegram import Message
from telegram.ext import ContextTypes

from handlers.context import get_deps
from handlers.inbound import message_kind
from handlers.tickets_rules import Desk, Incoming

DESK_KEY = "tickets.desk"
WAKE_KEY = "outbox.wake"
"""``bot_data`` key of a callable that wakes the outbox dispatcher (set by whoever runs it)."""


def desk_of(context: ContextTypes.DEFAULT_TYPE) -> Desk:
    """The ticket desk of this bot (built once from the rules and settings)."""
    desk = context.bot_data.get(DESK_KEY)
    if not isinstance(desk, Desk):
        deps = get_deps(context)
        desk = Desk.from_rules(deps.rules, deps.texts, deps.staff_chat_id)
        context.bot_data[DESK_KEY] = desk
    return desk


def wake_dispatcher(context: ContextTypes.DEFAULT_TYPE) -> None:
    """Tell the dispatcher something was queued (call after the commit): relays go out at
    once instead of at its next poll."""
    wake: Callable[[], None] | None = context.bot_data.get(WAKE_KEY)
    if wake is not None:
        wake()


def incoming_of(message: Message) -> Incoming:
    """A message as plain values: kind, text or caption (plain and HTML), album, file."""
    kind, file_id = message_kind(message)
    if message.text is not None:
        text: str | None = message.text
        markup: str | None = message.text_html
    elif message.caption is not None:
        text, markup = message.caption, message.caption_html
    else:
        text = markup = None
    return Incoming(
        chat_id=message.chat_id,
        message_id=message.message_id,
        kind=kind,
        text=text,
        html=markup,
        media_group_id=message.media_group_id,
        file_id=file_id,
    )
