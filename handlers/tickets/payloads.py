"""What the dispatcher sends for a delivery, built from the database of this moment (the topic's
current thread id, the customer's current language): topic actions, the card, copies, texts,
albums, and what goes to the customer. Customer-visible texts the dispatcher renders itself
follow the customer's language at send time."""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.kernel.texts import Markup
from handlers.tickets.card import card_buttons, card_text, history_summary, outbox_buttons
from handlers.tickets.desk import (
    ALBUM,
    CANNED,
    CARD,
    CARD_EDIT,
    CLOSE_TOPIC,
    COPY,
    CREATE_TOPIC,
    EDIT,
    NOTICE,
    REOPEN_TOPIC,
    SUMMARY,
    TEXT,
    TITLE,
    Desk,
    topic_title,
)
from storage.models import Customer, Ticket, TicketDelivery, TicketMessage
from storage.payloads import (
    CAPTION_LIMIT,
    Copy,
    CopyMany,
    EditText,
    MediaGroup,
    MediaItem,
    Payload,
    ReadyText,
    TopicAction,
    TopicChange,
    from_json,
)
from storage.tickets import lanes
from storage.tickets.messages import get_message, messages_by_id

NOTICE_FIELDS = ("key", "params", "buttons")
"""What a notice's instructions hold: a catalogue text with its buttons, as the outbox keeps it."""


async def build_delivery(
    session: AsyncSession,
    desk: Desk,
    ticket: Ticket,
    delivery: TicketDelivery,
    now: datetime,
    *,
    override: dict[str, Any] | None = None,
    known: Mapping[int, TicketMessage] | None = None,
) -> tuple[int, Payload] | None:
    """The chat and outbox payload for a delivery (its instructions, ``delivery.payload``, or
    ``override``), from the database of this moment; None when there is nothing to send any
    more. ``known``: messages the caller has just read (a lane's window reads them at once)."""
    payload = override if override is not None else delivery.payload
    customer = await session.get(Customer, ticket.customer_id)
    if delivery.lane == lanes.CUSTOMER:
        if customer is None or customer.chat_id is None:
            return None  # erased: nobody to write to
        built = await _build_for_customer(
            session, desk, ticket, customer, delivery, payload, known
        )
        return (customer.chat_id, built) if built is not None else None
    chat_id = desk.topic_chat(ticket)
    if chat_id is None:  # its group is not set up (here) yet: pump does not get this far
        return None
    thread = ticket.topic_thread_id
    built_topic = await _build_for_topic(session, desk, ticket, customer, delivery, payload, known)
    if built_topic is None:
        return None
    if thread is not None and delivery.action != CREATE_TOPIC:
        built_topic = replace(built_topic, thread_id=thread)
    return chat_id, built_topic


async def _message_of(
    session: AsyncSession, delivery: TicketDelivery, known: Mapping[int, TicketMessage] | None
) -> TicketMessage | None:
    message_id = delivery.ticket_message_id
    if message_id is None:
        return None
    if known is not None and message_id in known:
        return known[message_id]
    return await get_message(session, message_id)


async def _build_for_topic(
    session: AsyncSession,
    desk: Desk,
    ticket: Ticket,
    customer: Customer | None,
    delivery: TicketDelivery,
    payload: dict[str, Any],
    known: Mapping[int, TicketMessage] | None,
) -> Payload | None:
    action = delivery.action
    if action == CREATE_TOPIC:
        if ticket.topic_thread_id is not None:
            return None
        return TopicChange(TopicAction.CREATE, topic_title(desk, ticket, customer))
    if action == TITLE:
        name = topic_title(desk, ticket, customer)
        return None if name == ticket.topic_title else TopicChange(TopicAction.EDIT, name)
    if action == CLOSE_TOPIC:
        return None if ticket.topic_closed else TopicChange(TopicAction.CLOSE)
    if action == REOPEN_TOPIC:
        return None if not ticket.topic_closed else TopicChange(TopicAction.REOPEN)
    if action == CARD:
        text = await card_text(session, desk, ticket)
        return ReadyText(text, html=True, buttons=outbox_buttons(card_buttons(desk, ticket)))
    if action == CARD_EDIT:  # the card as the ticket is now; none sent yet: nothing to edit
        if ticket.card_message_id is None:
            return None
        text = await card_text(session, desk, ticket)
        buttons = outbox_buttons(card_buttons(desk, ticket))
        return EditText(ticket.card_message_id, text, html=True, buttons=buttons)
    if action == SUMMARY:
        return ReadyText(await history_summary(session, desk, ticket), html=True)
    if action == TEXT:
        return ReadyText(
            str(payload.get("html", "")), html=True, reply_to=_reply_id(payload.get("reply_to"))
        )
    message = await _message_of(session, delivery, known)
    if message is None or customer is None:
        return None
    if action == EDIT:
        original = await get_message(session, message.edit_of_id) if message.edit_of_id else None
        text = desk.staff_text("ticket_edited_marker", text=message.text or "")
        return ReadyText(
            text, html=True, reply_to=_reply_id(original.copy_message_id if original else None)
        )
    if customer.chat_id is None:  # erased meanwhile: the text is gone too
        return None
    if action == ALBUM:
        items = await messages_by_id(session, list(payload.get("messages", [])))
        return _album(customer.chat_id, items)
    if action == COPY:
        # A caption too long for a bot is left out: it follows as a text.
        caption = desk.staff_text("ticket_caption_below") if payload.get("bare") else None
        return Copy(customer.chat_id, message.chat_message_id or 0, caption)
    return None


async def _build_for_customer(
    session: AsyncSession,
    desk: Desk,
    ticket: Ticket,
    customer: Customer,
    delivery: TicketDelivery,
    payload: dict[str, Any],
    known: Mapping[int, TicketMessage] | None,
) -> Payload | None:
    action = delivery.action
    staff_chat = ticket.staff_chat_id or desk.topic_chat(ticket)  # where staff wrote it
    language = customer.language
    render = desk.texts.render
    if action == NOTICE:  # a catalogue text, kept in the outbox's own JSON
        return from_json({name: payload[name] for name in NOTICE_FIELDS if name in payload})
    message = await _message_of(session, delivery, known)
    if message is None or staff_chat is None:
        return None
    name = message.author_name or ""
    prefix = desk.rules.relay.staff_name_prefix and bool(name)
    if action == CANNED:
        reply = desk.rules.canned_reply(str(payload.get("code", "")))
        if reply is None:
            return None
        text = reply.text(language)
        body = (
            render(language, "ticket_staff_says", name=name, text=text)
            if prefix
            else html.escape(text)
        )
        return ReadyText(body, html=True)
    if action == TEXT:
        content = Markup(message.html or html.escape(message.text or ""))
        body = (
            render(language, "ticket_staff_says", name=name, text=content) if prefix else content
        )
        return ReadyText(str(body), html=True)
    if action == EDIT:
        original = await get_message(session, message.edit_of_id) if message.edit_of_id else None
        content = Markup(message.html or html.escape(message.text or ""))
        body = render(language, "ticket_edited_customer", text=content)
        return ReadyText(
            body, html=True, reply_to=_reply_id(original.copy_message_id if original else None)
        )
    if action == ALBUM:
        items = await messages_by_id(session, list(payload.get("messages", [])))
        return _album(
            staff_chat, items, _prefixed_caption(desk, language, name) if prefix else None
        )
    if action == COPY:
        caption = _staff_copy_caption(desk, language, name, message, prefix, payload.get("bare"))
        return Copy(staff_chat, message.chat_message_id or 0, caption)
    return None


def _staff_copy_caption(
    desk: Desk,
    language: str,
    name: str,
    message: TicketMessage,
    prefix: bool,
    bare: object,
) -> str | None:
    """The caption of a staff member's media copied to the customer: their name when names
    are shown; "see below" when the caption is too long for a bot (it follows as a text)."""
    render = desk.texts.render
    if bare:
        if prefix:
            return render(language, "ticket_staff_caption_bare", name=name)
        return render(language, "ticket_caption_below")
    if prefix:
        return _prefixed_caption(desk, language, name)(_caption_html(message))
    return None


ALBUM_KINDS = ("photo", "video", "document", "audio")


def _caption_html(item: TicketMessage) -> str | None:
    if item.html:
        return item.html
    return html.escape(item.text) if item.text else None


def _prefixed_caption(desk: Desk, language: str, name: str) -> Callable[[str | None], str]:
    """A staff caption with the staff member's name in front (or just the name)."""

    def caption(original: str | None) -> str:
        if original:
            return desk.texts.render(
                language, "ticket_staff_caption", name=name, caption=Markup(original)
            )
        return desk.texts.render(language, "ticket_staff_caption_bare", name=name)

    return caption


def _album(
    from_chat_id: int,
    items: Sequence[TicketMessage],
    first_caption: Callable[[str | None], str | None] | None = None,
) -> Payload | None:
    """An album as one message group: ``sendMediaGroup`` with the items' files (captions
    kept; ``first_caption`` may rewrite the first one), else ``copyMessages``; a lone item is
    a plain copy."""
    usable = [item for item in items if item.chat_message_id]
    if not usable:
        return None
    if len(usable) == 1:
        caption = first_caption(_caption_html(usable[0])) if first_caption is not None else None
        return Copy(from_chat_id, usable[0].chat_message_id or 0, caption)
    if not all(item.kind in ALBUM_KINDS and item.media_file_id for item in usable):
        return CopyMany(from_chat_id, [item.chat_message_id or 0 for item in usable])
    media: list[MediaItem] = []
    for index, item in enumerate(usable):
        caption = _caption_html(item)
        if index == 0 and first_caption is not None:
            caption = first_caption(caption)
        if caption and len(caption) > CAPTION_LIMIT:  # keep the album; the text is shortened
            caption = html.escape((item.text or "")[: CAPTION_LIMIT - 100]) + "…"
        media.append(MediaItem(item.kind, item.media_file_id or "", caption or None))
    return MediaGroup(media)


def _reply_id(reply_to: Any) -> int | None:
    """The message to answer, as the dispatcher takes it (none for a missing or zero id)."""
    return int(reply_to) if reply_to else None
