"""Within Telegram's 20 messages a minute per group, without loss: when a topic's next window
would wait behind its group's limit, consecutive plain texts of the customer in it go as ONE
message, each line with its time ("[14:02] text"), and the card's edits give way to them.

What decides: the dispatcher's limiter, asked through ``room`` (how many more sends the group
takes right now, ``scheduler.dispatcher.loop.DispatchLoop.room``). A window is built with it only
when a send of the lane was just recorded (``handlers.tickets.outcomes.DeliveryHooks``): that is
when a topic's copies queue up behind the limit. Without it (a lane that was empty, a process
without a dispatcher) nothing is merged.

What merges: copies of the customer's text messages (``COPY`` of a ``text`` message, no album,
no caption), next to each other in the window, as long as the whole stays within Telegram's
4,096 characters (counted on the HTML, in UTF-16 units as Telegram counts, so never more).
Media, edits, the bot's own texts and everything else keep their own message and their place.

Without loss: the first delivery of a run is the row's ``delivery``; the others are marked
``D_MERGED`` into it (``payload.merged`` on the row, ``into`` on each). Sent, all of them are
sent and relayed as the one Telegram message (an edit of any of them answers that message); a
failure or another try takes all of them along (``storage.tickets.lanes.settle_parts``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from bot.kernel.texts import Markup
from handlers.tickets.desk import CARD_EDIT, COPY, Desk
from storage.models import TicketDelivery, TicketMessage
from storage.payloads import Copy, Payload, ReadyText
from storage.tickets import lanes
from storage.tickets.messages import IN, messages_now

TEXT_LIMIT = 4096
"""The longest text Telegram takes (characters after entities parsing)."""

Room = Callable[[int], int]
"""How many more sends a chat takes right now (the dispatcher's limiter)."""

Entry = tuple[TicketDelivery, int, Payload]
"""A window's delivery with its chat and payload (``handlers.tickets.lanes.pump``)."""


def telegram_length(text: str) -> int:
    """Characters as Telegram counts them (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def would_wait(lane: str, window: list[Entry], room: Room | None) -> bool:
    """Whether the topic lane's window would queue behind its group's limit."""
    if lane != lanes.TOPIC or room is None or len(window) < 2:
        return False
    return room(window[0][1]) < len(window)


async def coalesce(
    session: AsyncSession, desk: Desk, window: list[Entry], now: datetime
) -> tuple[list[Entry], dict[int, list[TicketDelivery]]]:
    """The window with its runs of consecutive customer texts merged into one row each, the
    card's edits after the rest; and the deliveries each merged row carries besides its own
    (by the row's delivery id), for ``handlers.tickets.lanes`` to mark."""
    ids = [d.ticket_message_id for d, _, _ in window if d.ticket_message_id is not None]
    known = await messages_now(session, ids)
    edits = [entry for entry in window if entry[0].action == CARD_EDIT]
    result: list[Entry] = []
    carried: dict[int, list[TicketDelivery]] = {}
    run: list[tuple[Entry, str]] = []
    length = 0

    def close_run() -> None:
        nonlocal run, length
        if len(run) > 1:
            head, parts = run[0][0], [entry[0] for entry, _ in run[1:]]
            result.append(_merged(head, [line for _, line in run], parts))
            carried[head[0].id] = parts
        else:
            result.extend(entry for entry, _ in run)
        run, length = [], 0

    for entry in window:
        if entry[0].action == CARD_EDIT:
            continue
        line = _line(desk, entry, known)
        if line is None:
            close_run()
            result.append(entry)
            continue
        size = telegram_length(line) + (1 if run else 0)
        if run and length + size > TEXT_LIMIT:
            close_run()
            size -= 1
        run.append((entry, line))
        length += size
    close_run()
    return result + edits, carried


def _line(desk: Desk, entry: Entry, known: dict[int, TicketMessage]) -> str | None:
    """The line a delivery reads as inside merged texts; None: it goes as it is."""
    delivery, _, payload = entry
    if delivery.action != COPY or not isinstance(payload, Copy) or payload.caption is not None:
        return None
    message = known.get(delivery.ticket_message_id or 0)
    if (
        message is None
        or message.kind != "text"
        or message.direction != IN
        or message.media_group_id is not None
        or message.edit_of_id is not None
    ):
        return None
    text = Markup(message.html) if message.html else (message.text or "")
    line = desk.staff_text("ticket_merged_line", time=_clock(desk, message), text=text)
    return line if telegram_length(line) <= TEXT_LIMIT else None


def _clock(desk: Desk, message: TicketMessage) -> str:
    """When the customer wrote it, as staff read times (shop time, minutes)."""
    return message.created_at.astimezone(ZoneInfo(desk.zone)).strftime("%H:%M")


def _merged(head: Entry, lines: list[str], parts: list[TicketDelivery]) -> Entry:
    delivery, chat_id, payload = head
    text = ReadyText(
        "\n".join(lines),
        html=True,
        thread_id=payload.thread_id,
        merged=[part.id for part in parts],
    )
    return delivery, chat_id, text
