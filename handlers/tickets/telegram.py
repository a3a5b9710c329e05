"""Telegram-side helpers shared by the ticket handlers (complaints, staff, free text, the
knowledge base's hand-off): messages as plain values, waking the dispatcher, the desk's
buttons. The desk itself is ``CareContext.desk``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Message, Update

from bot.kernel.replies import Alert, Reply
from handlers._edge.context import CareContext
from handlers._edge.inbound import message_kind
from handlers._edge.render import respond
from handlers.tickets.desk import Incoming
from handlers.tickets.lifecycle import TicketDesk
from storage.engine import current_unit

DeskButtonRule = Callable[
    [AsyncSession, TicketDesk, int, str, datetime],
    Awaitable[Reply | Sequence[Reply] | Alert | None],
]


def wake_dispatcher(context: CareContext) -> None:
    """Tell the dispatcher something was queued, once it is committed (at once outside a unit
    of work): relays go out at once instead of at its next poll."""
    wake = context.bot_data.wake
    if wake is None:
        return

    async def wake_now() -> None:
        wake()

    unit = current_unit()
    if unit is None:
        wake()
    else:
        unit.after_commit.append(wake_now)


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


def on_desk_button(
    rule: DeskButtonRule,
) -> Callable[[Update, CareContext], Coroutine[Any, Any, None]]:
    """A callback for an inline button whose rule may open tickets or queue messages: the rule
    (given the desk, the presser, the button's data and the time) in one transaction, the
    dispatcher woken after the commit, then the answer (a bare acknowledgement when the rule
    has nothing to say)."""

    async def callback(update: Update, context: CareContext) -> None:
        query = update.callback_query
        if query is None:
            return
        deps = context.deps
        async with deps.sessionmaker.begin() as session:
            result = await rule(
                session, context.desk, query.from_user.id, query.data or "", deps.clock.now()
            )
        wake_dispatcher(context)
        if result is None:
            await query.answer()
            return
        await respond(update, deps.texts, result)

    # Named after the rule: the metrics and the per-update log say which button it was.
    callback.__module__, callback.__qualname__ = rule.__module__, rule.__qualname__
    callback.__doc__ = rule.__doc__
    return callback
