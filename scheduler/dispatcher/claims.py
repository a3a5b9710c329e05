"""What a claim does with the rows it leased: the policy's verdict on each (send now, later, or
never; ``scheduler.policy``), a slot of the customer's day for each proactive row, at most
``HELD_PER_CHAT`` rows of a chat held in memory, and the rest given back to the table."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.limiter import is_group
from scheduler.policy import Defer, SendPolicy, Skip
from storage import outbox as outbox_queries
from storage.outbox import OutboxMessage, Recipient

HELD_PER_CHAT = 10
"""Rows of one chat a claim keeps in memory: sent one at a time, so ten of a group limited to 20
a minute take half a minute, well inside the lease."""


@dataclass
class Held:
    """A claimed row waiting in memory for its chat's turn."""

    message: OutboxMessage
    recipient: Recipient | None
    held_since: float


@dataclass
class Verdicts:
    """A claim's rows sorted by the policy."""

    skips: list[tuple[OutboxMessage, str]] = field(default_factory=list)
    """Rows that will never go (no consent, unreachable, erased), with the reason."""
    later: list[tuple[OutboxMessage, datetime, bool]] = field(default_factory=list)
    """Rows given back: when they are due again, and whether their care day is cleared."""
    ready: list[OutboxMessage] = field(default_factory=list)
    care: list[tuple[OutboxMessage, str]] = field(default_factory=list)
    """Proactive rows that may go once they have a slot of this customer-local day."""


def send_order(message: OutboxMessage) -> tuple[int, datetime, int]:
    return (-message.priority, message.due_at, message.id)


def recipient_of(message: OutboxMessage, recipients: dict[int, Recipient]) -> Recipient | None:
    return recipients.get(message.customer_id) if message.customer_id else None


def judge(
    policy: SendPolicy,
    messages: list[OutboxMessage],
    recipients: dict[int, Recipient],
    now: datetime,
) -> Verdicts:
    """The policy's verdict on each claimed row."""
    verdicts = Verdicts()
    for message in messages:
        verdict = policy.judge(message, recipient_of(message, recipients), now)
        if isinstance(verdict, Skip):
            verdicts.skips.append((message, verdict.reason))
        elif isinstance(verdict, Defer):
            verdicts.later.append((message, verdict.until, True))
        elif verdict.care_day is not None:
            verdicts.care.append((message, verdict.care_day))
        else:
            verdicts.ready.append(message)
    return verdicts


async def reserve_care(
    sessionmaker: async_sessionmaker[AsyncSession],
    policy: SendPolicy,
    verdicts: Verdicts,
    recipients: dict[int, Recipient],
    now: datetime,
) -> list[OutboxMessage]:
    """Count proactive rows against their customer's day; rows over the cap, or yielding the
    day's last slot to a greeting (``SendPolicy.ahead_of``), wait for the customer's next day
    (added to ``verdicts.later``). All in one transaction, one by one if another dispatcher
    raced."""
    care = verdicts.care
    if not care:
        return []
    try:
        async with sessionmaker.begin() as session:
            granted = [await _reserve(session, policy, message, day) for message, day in care]
    except IntegrityError:
        granted = []
        for message, day in care:
            try:
                async with sessionmaker.begin() as session:
                    ok = await _reserve(session, policy, message, day)
            except IntegrityError:
                ok = False
            granted.append(ok)
    kept: list[OutboxMessage] = []
    for (message, _day), ok in zip(care, granted, strict=True):
        if ok:
            kept.append(message)
            continue
        recipient = recipients.get(message.customer_id or 0)
        zone = policy.zone(recipient.timezone if recipient else None)
        verdicts.later.append((message, policy.next_day_opening(now, zone), True))
    return kept


async def _reserve(
    session: AsyncSession, policy: SendPolicy, message: OutboxMessage, day: str
) -> bool:
    return await outbox_queries.reserve_care_slot(
        session,
        message,
        day=day,
        per_day=policy.max_per_day,
        ahead=policy.ahead_of(message, day),
    )


def hold(
    ready: list[OutboxMessage],
    held: list[Held],
    busy_chats: set[int],
    recipients: dict[int, Recipient],
    later: list[tuple[OutboxMessage, datetime, bool]],
    since: float,
    room: Callable[[int], int] | None = None,
) -> None:
    """Add the rows ready to go to ``held``, up to HELD_PER_CHAT per chat, sent one after
    another in order (a burst into the staff group costs one claim per HELD_PER_CHAT copies,
    not a claim and a release each); a chat's other rows go to ``later`` unchanged (keeping
    their place in the queue) and are skipped by claims while the chat has rows held or on the
    wire. A group holds no more than its window takes now (``room``, the limiter's): what would
    wait behind its limit waits in the table, where the next claim takes the most urgent first
    (a customer's copy before a topic's rename)."""
    per_chat = Counter(row.message.chat_id for row in held)
    caps: dict[int, int] = {}
    for message in ready:
        chat_id = message.chat_id
        if chat_id not in caps:
            caps[chat_id] = HELD_PER_CHAT
            if room is not None and is_group(chat_id):
                caps[chat_id] = min(HELD_PER_CHAT, max(1, room(chat_id)))
        if chat_id in busy_chats or per_chat[chat_id] >= caps[chat_id]:
            later.append((message, message.due_at, False))
            continue
        per_chat[message.chat_id] += 1
        held.append(Held(message, recipient_of(message, recipients), since))
    held.sort(key=lambda row: send_order(row.message))


async def put_back(
    session: AsyncSession, later: list[tuple[OutboxMessage, datetime, bool]], now: datetime
) -> None:
    """Give back the rows that wait: those of a chat already held unchanged, in one statement
    (with one busy chat, a claim gives back almost all it took), then each one with a new due
    time or its care day cleared."""
    unchanged = [m.id for m, due, clear in later if due == m.due_at and not clear]
    await outbox_queries.release(session, unchanged, now=now)
    for message, due, clear_day in later:
        if due != message.due_at or clear_day:
            await outbox_queries.release(
                session, [message.id], now=now, due_at=due, clear_care_day=clear_day
            )
