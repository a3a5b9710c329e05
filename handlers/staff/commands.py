"""Staff in the ticket topics, free of Telegram: who counts as staff, and what their messages,
commands and card buttons do to the topic's ticket.

Every function finds the ticket by the topic it was used in and locks it, then calls the desk
(``handlers.tickets``). Membership is decided by the handler (Telegram's ``getChatMember``, cached
briefly in ``MemberCache``) before any of these run: a non-member gets a refusal and changes
nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dashboard.auth import LINK_TTL, LoginLinks
from handlers.tickets import lifecycle
from handlers.tickets.assignment import duty_roll, sign_on
from handlers.tickets.card import staff_card
from handlers.tickets.desk import CB_TICKET, Desk, Incoming, Staff, StaffReply
from handlers.tickets.lifecycle import (
    ban_customer,
    canned_menu,
    claim,
    reopen,
    resolve,
    send_canned,
    set_priority,
    unban_customer,
)
from handlers.tickets.moving import move_ticket
from handlers.tickets.relay import add_note, note_saved, relay_staff_edit, staff_reply
from storage.models import Ticket
from storage.tickets.rows import lock_ticket, ticket_by_topic
from storage.tickets.staff import save_staff_member

STAFF_STATUSES = frozenset({"creator", "administrator", "member"})

TicketAction = Callable[[AsyncSession, Ticket], Awaitable[StaffReply | None]]


def counts_as_staff(status: str, is_member: bool | None = None) -> bool:
    """Owners, admins and members of the staff group; a restricted user only while still a
    member; nobody who left or was kicked."""
    if status in STAFF_STATUSES:
        return True
    return status == "restricted" and bool(is_member)


@dataclass
class _Entry:
    is_staff: bool
    until: float


class MemberCache:
    """Membership answers remembered for ``ttl`` seconds, so a busy topic does not call
    ``getChatMember`` for every message (and a removed member loses access within ``ttl``).
    Kept per group: an answer about the old staff group says nothing once it moved. A lookup
    still in flight is shared (``answer``): twenty topics answered at once by one member ask
    Telegram once."""

    def __init__(self, ttl: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._monotonic = monotonic
        self._entries: dict[tuple[int, int], _Entry] = {}
        self._asking: dict[tuple[int, int], asyncio.Future[bool | None]] = {}

    def get(self, chat_id: int, user_id: int) -> bool | None:
        entry = self._entries.get((chat_id, user_id))
        if entry is None or entry.until <= self._monotonic():
            self._entries.pop((chat_id, user_id), None)
            return None
        return entry.is_staff

    def put(self, chat_id: int, user_id: int, is_staff: bool) -> None:
        self._entries[chat_id, user_id] = _Entry(is_staff, self._monotonic() + self._ttl)

    async def answer(
        self, chat_id: int, user_id: int, ask: Callable[[], Awaitable[bool | None]]
    ) -> tuple[bool | None, bool]:
        """Whether the user is staff: remembered, or ``ask``-ed (None: nobody could say, so
        nothing is remembered), the callers meanwhile awaiting the same lookup; and whether
        this caller's lookup was the one that asked (it records the answer)."""
        known = self.get(chat_id, user_id)
        if known is not None:
            return known, False
        key = (chat_id, user_id)
        asking = self._asking.get(key)
        if asking is not None:
            return await asyncio.shield(asking), False
        asking = asyncio.ensure_future(self._ask(key, ask))
        self._asking[key] = asking
        return await asyncio.shield(asking), True

    async def _ask(
        self, key: tuple[int, int], ask: Callable[[], Awaitable[bool | None]]
    ) -> bool | None:
        try:
            is_staff = await ask()
            if is_staff is not None:
                self.put(*key, is_staff)
            return is_staff
        finally:
            self._asking.pop(key, None)


async def remember(session: AsyncSession, staff: Staff, is_staff: bool, now: datetime) -> None:
    """Keep who was checked, so ``/assign @username`` can find them."""
    await save_staff_member(
        session,
        user_id=staff.user_id,
        username=staff.username,
        name=staff.name,
        is_staff=is_staff,
        now=now,
    )


def refusal(desk: Desk) -> StaffReply:
    return StaffReply(desk.staff_text("ticket_not_staff"))


async def _in_topic(
    session: AsyncSession,
    desk: Desk,
    thread_id: int | None,
    action: TicketAction,
    *,
    quiet: bool,
    chat_id: int | None = None,
) -> StaffReply | None:
    """Run ``action`` on the topic's ticket (locked; ``chat_id``: the staff group the topic is
    in); a topic that is no ticket's gets a hint for a command and silence for a plain
    message."""
    ticket = await ticket_by_topic(session, thread_id, chat_id) if thread_id else None
    locked = await lock_ticket(session, ticket.id) if ticket is not None else None
    if locked is None:
        return None if quiet else StaffReply(desk.staff_text("ticket_not_a_ticket_topic"))
    return await action(session, locked)


async def message(
    session: AsyncSession,
    desk: Desk,
    thread_id: int | None,
    staff: Staff,
    item: Incoming,
    now: datetime,
    *,
    chat_id: int | None = None,
) -> StaffReply | None:
    """A message in a topic: to the customer (a ``!`` message is a note)."""

    async def run(session: AsyncSession, ticket: Ticket) -> StaffReply | None:
        return await staff_reply(session, desk, ticket, staff, item, now)

    return await _in_topic(session, desk, thread_id, run, quiet=True, chat_id=chat_id)


async def edit(
    session: AsyncSession,
    desk: Desk,
    thread_id: int | None,
    item: Incoming,
    now: datetime,
    *,
    chat_id: int | None = None,
) -> None:
    """A staff member edited their reply in the topic."""

    async def run(session: AsyncSession, ticket: Ticket) -> StaffReply | None:
        await relay_staff_edit(session, desk, ticket, item, now)
        return None

    await _in_topic(session, desk, thread_id, run, quiet=True, chat_id=chat_id)


async def note(
    session: AsyncSession,
    desk: Desk,
    thread_id: int | None,
    staff: Staff,
    item: Incoming,
    now: datetime,
    *,
    chat_id: int | None = None,
) -> StaffReply | None:
    """``/note text``: an internal note (kept, never relayed), acknowledged in the topic so
    nobody takes it for a reply the customer got."""
    parts = (item.text or "").split(maxsplit=1)  # "/note text", also over several lines
    text = parts[1].strip() if len(parts) > 1 else ""

    async def run(session: AsyncSession, ticket: Ticket) -> StaffReply | None:
        if not text:
            return StaffReply(desk.staff_text("ticket_note_usage"))
        stripped = Incoming(item.chat_id, item.message_id, item.kind, text, None)
        await add_note(session, ticket, staff, stripped, now)
        return note_saved(desk)

    return await _in_topic(session, desk, thread_id, run, quiet=False, chat_id=chat_id)


Command = Callable[[AsyncSession, Desk, Ticket, Staff, datetime], Awaitable[StaffReply]]

COMMANDS: dict[str, Command] = {
    "claim": claim,
    "close": resolve,
    "reopen": reopen,
    "ban": ban_customer,
    "unban": unban_customer,
}


async def command(
    session: AsyncSession,
    desk: Desk,
    thread_id: int | None,
    staff: Staff,
    name: str,
    now: datetime,
    *,
    chat_id: int | None = None,
    argument: str = "",
) -> StaffReply | None:
    """``/claim``, ``/close``, ``/reopen``, ``/ban``, ``/unban``, ``/card``, ``/canned``,
    ``/move <group>`` (``argument``: the group)."""

    async def run(session: AsyncSession, ticket: Ticket) -> StaffReply | None:
        if name == "card":
            return await staff_card(session, desk, ticket)
        if name == "canned":
            return canned_menu(desk, ticket)
        if name == "move":
            return await move_ticket(session, desk, ticket, staff, argument.lower(), now)
        return await COMMANDS[name](session, desk, ticket, staff, now)

    return await _in_topic(session, desk, thread_id, run, quiet=False, chat_id=chat_id)


async def assign(
    session: AsyncSession,
    desk: Desk,
    thread_id: int | None,
    staff: Staff,
    username: str | None,
    replied_to: Staff | None,
    now: datetime,
    *,
    replied_is_staff: bool = False,
    chat_id: int | None = None,
) -> StaffReply | None:
    """``/assign @name``, or ``/assign`` in reply to the assignee's message (``replied_is_staff``:
    what Telegram said of their membership; a non-member is refused)."""

    async def run(session: AsyncSession, ticket: Ticket) -> StaffReply | None:
        return await lifecycle.assign(
            session,
            desk,
            ticket,
            staff,
            replied_to,
            username,
            now,
            assignee_is_staff=replied_is_staff,
        )

    return await _in_topic(session, desk, thread_id, run, quiet=False, chat_id=chat_id)


async def duty(
    session: AsyncSession, desk: Desk, chat_id: int, staff: Staff, argument: str, now: datetime
) -> StaffReply:
    """``/duty on|off`` in a staff group: the member is (no longer) among those auto-assignment
    gives that group's tickets to (within their duty hours, if any); a bare ``/duty`` says who
    is on duty there and until when."""
    group = desk.group.name_of(chat_id)
    if group is None:  # pragma: no cover - the handler's filter admits staff groups only
        return refusal(desk)
    word = argument.strip().lower()
    if word in ("on", "off"):
        return await sign_on(session, desk, group, staff, word == "on", now)
    return await duty_roll(session, desk, group, now)


async def press(
    session: AsyncSession,
    desk: Desk,
    staff: Staff,
    data: str,
    now: datetime,
    message_id: int | None = None,
) -> StaffReply:
    """A button under a card or a canned-reply menu: ``tk:<ticket>:<action>[:<arg>]``
    (``message_id``: the message it is under). The card at the top of the topic follows through
    the outbox (``lifecycle.refresh_card``); a priority picked on it is answered with a toast,
    one picked on another card (``/card``) edits that one. Buttons of a closed ticket, or of
    one that no longer exists, are answered harmlessly."""
    ticket_id, _, rest = data.removeprefix(CB_TICKET).partition(":")
    action, _, argument = rest.partition(":")
    ticket = await lock_ticket(session, int(ticket_id)) if ticket_id.isdigit() else None
    if ticket is None:
        return StaffReply(desk.staff_text("ticket_button_stale"), alert=True)
    if action in PRESSES:
        return await PRESSES[action](session, desk, ticket, staff, now)
    if action == "priority" and argument.isdigit():
        result = await set_priority(session, desk, ticket, staff, int(argument), now)
        if result.alert or (message_id is not None and message_id == ticket.card_message_id):
            return StaffReply(result.text, alert=True)
        card = await staff_card(session, desk, ticket)
        return StaffReply(card.text, card.buttons, replace=True)
    if action == "canned":
        return await send_canned(session, desk, ticket, staff, argument, now)
    return StaffReply(desk.staff_text("ticket_button_stale"), alert=True)


PRESSES: dict[str, Command] = {"claim": claim, "close": resolve, "reopen": reopen}
"""The card's buttons that act like their commands."""


@dataclass(frozen=True)
class DashboardAnswer:
    """What ``/dashboard`` answers: ``private`` (the one text holding a link) goes only to the
    member's private chat; ``here`` is said where they asked; ``unreachable`` is said in the
    group instead when the bot may not write to them privately (they never started it)."""

    private: str | None
    here: str | None
    unreachable: str


def dashboard_unreachable(desk: Desk) -> DashboardAnswer:
    """For whoever can't get a link in a private chat (an anonymous admin): how to get one."""
    unreachable = desk.staff_text("dashboard_open_private")
    return DashboardAnswer(private=None, here=unreachable, unreachable=unreachable)


async def dashboard_link(
    session: AsyncSession,
    desk: Desk,
    links: LoginLinks | None,
    staff: Staff,
    now: datetime,
    *,
    in_group: bool = False,
) -> DashboardAnswer:
    """``/dashboard``: a one-time sign-in link to the staff dashboard for this staff member,
    for their private chat (asked in the group, the group hears only that it was sent)."""
    unreachable = desk.staff_text("dashboard_open_private")
    if links is None:
        return DashboardAnswer(None, desk.staff_text("dashboard_off"), unreachable)
    url = await links.mint(session, user_id=staff.user_id, name=staff.name, now=now)
    minutes = int(LINK_TTL.total_seconds() // 60)
    link = desk.staff_text("dashboard_link", url=url, minutes=minutes)
    here = desk.staff_text("dashboard_sent_privately", name=staff.name) if in_group else None
    return DashboardAnswer(private=link, here=here, unreachable=unreachable)
