"""Queries on the outbox: every message the bot sends on its own (design, Principles 1 and 2).

Producers (planners, staff relays) call ``enqueue``/``enqueue_many`` inside their own
transaction, so the row exists exactly when their decision is committed. The dispatcher
(``scheduler.dispatcher``) drains the table with the claim/mark functions below; each of those is
one short statement, committed by the caller at once.

Claims are leases: ``claim_due`` moves due rows to ``claimed`` with ``claimed_until`` in the
future, and a claimed row whose lease ran out (its dispatcher died) is due again. On PostgreSQL
the claim locks its candidates ``FOR UPDATE SKIP LOCKED``, so concurrent dispatchers never get
the same row; SQLite has a single writer and the dispatcher enforces one dispatcher per file.
A dispatcher that takes the exclusive lock knows the claimed rows' holder is gone and puts them
back in line at once (``reclaim_claimed``) rather than waiting out the lease.

Functions take the session first and only flush; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any, cast

from sqlalchemy import (
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from storage.columns import UTCDateTime
from storage.customers import _insert_ignoring_conflicts
from storage.models import Customer, Outbox
from storage.payloads import ERASED_PAYLOAD, Payload, from_json, to_json
from storage.staff_group import stored_staff_groups

MAX_ERROR_LENGTH = 500


class State(StrEnum):
    """Where a row is in its life. Only pending and claimed rows are ever sent."""

    PENDING = "pending"
    CLAIMED = "claimed"
    SENT = "sent"
    FAILED = "failed"
    """Permanent: the chat is gone or blocked, no consent, or Telegram refused the payload."""
    DEAD = "dead"
    """Transient errors until the last attempt; waits for an operator (``carebot outbox``)."""
    CANCELLED = "cancelled"


OPEN_STATES = (State.PENDING, State.CLAIMED)

# ``ix_outbox_due``'s WHERE clause, written out literally in the queries that should use it:
# both planners only use a partial index when they can prove the query implies its predicate,
# which a bound parameter (a generic plan on PostgreSQL) does not allow.
_OPEN = text("outbox.state IN ('pending', 'claimed')")


class Priority(IntEnum):
    """Which due rows go first. A fixed set of levels: the claim scans each level's slice of
    ``ix_outbox_due`` in turn, which keeps every claim an index range scan however large the
    backlog (an ``ORDER BY priority, due_at`` over all due rows would sort them)."""

    CARE = 0
    """Greetings, follow-ups, offers: proactive care."""
    NOTICE = 10
    """Messages to staff (SLA reminders) and other non-urgent notices."""
    SURVEY = 20
    """The next survey question after an answer: the customer is waiting for it."""
    REPLY = 30
    """Staff replies and answers to a customer's own ticket (queued ``transactional``)."""


@dataclass(frozen=True)
class OutboxMessage:
    """A claimed row as plain values, handed to the dispatcher."""

    id: int
    dedupe_key: str
    customer_id: int | None
    chat_id: int
    kind: str
    payload: Payload
    priority: int
    transactional: bool
    due_at: datetime
    attempts: int
    care_day: str | None


@dataclass(frozen=True)
class Recipient:
    """What the dispatcher needs to know about a row's customer at send time."""

    id: int
    language: str
    timezone: str
    consent: bool
    reachable: bool
    erased: bool


@dataclass(frozen=True)
class DeadRow:
    id: int
    kind: str
    chat_id: int
    customer_id: int | None
    attempts: int
    last_error: str | None
    due_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class OutboxStats:
    counts: dict[tuple[str, str], int]
    """(state, kind) -> rows."""
    oldest_due: datetime | None
    """The due time of the oldest row still waiting to be sent (pending or claimed)."""


def _row_values(
    *,
    dedupe_key: str,
    chat_id: int,
    kind: str,
    payload: Payload,
    due_at: datetime,
    now: datetime,
    customer_id: int | None = None,
    priority: Priority = Priority.CARE,
    transactional: bool = False,
) -> dict[str, Any]:
    if not dedupe_key or len(dedupe_key) > 200:
        raise ValueError("dedupe_key must be 1-200 characters")
    if not 1 <= len(kind) <= 32:
        raise ValueError("kind must be 1-32 characters")
    return {
        "dedupe_key": dedupe_key,
        "customer_id": customer_id,
        "chat_id": chat_id,
        "kind": kind,
        "payload": to_json(payload),
        "priority": int(Priority(priority)),
        "transactional": transactional,
        "state": State.PENDING.value,
        "due_at": due_at,
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
    }


_OUTBOX = cast(Table, Outbox.__table__)
# Core, built once per dialect: producers queue a row for every relayed message.
_ENQUEUE = {
    dialect: (postgresql.insert if dialect == "postgresql" else sqlite.insert)(
        _OUTBOX
    ).on_conflict_do_nothing(index_elements=[_OUTBOX.c.dedupe_key])
    for dialect in ("sqlite", "postgresql")
}


async def enqueue(
    session: AsyncSession,
    *,
    dedupe_key: str,
    chat_id: int,
    kind: str,
    payload: Payload,
    due_at: datetime,
    now: datetime,
    customer_id: int | None = None,
    priority: Priority = Priority.CARE,
    transactional: bool = False,
) -> bool:
    """Queue one message; False when a row with this ``dedupe_key`` already exists (no-op).
    ``payload`` is a kind of send (``storage.payloads``), stored as its JSON.

    ``transactional`` marks a reply to something the customer did (staff or ticket replies):
    it is sent even without consent and outside the quiet hours and the daily cap. Everything
    else addressed to a customer is proactive care.
    """
    values = _row_values(
        dedupe_key=dedupe_key,
        chat_id=chat_id,
        kind=kind,
        payload=payload,
        due_at=due_at,
        now=now,
        customer_id=customer_id,
        priority=priority,
        transactional=transactional,
    )
    result = await session.execute(_ENQUEUE[session.get_bind().dialect.name], values)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def enqueue_in_order(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """Queue rows that must go in this order (a ticket lane's window): ``enqueue``'s Core
    statement, built once, run once for all of them (an executemany), so their ids follow the
    list. Each row takes the keyword arguments of ``enqueue``; existing keys are skipped."""
    if not rows:
        return
    values = [_row_values(**row) for row in rows]
    statement = _ENQUEUE[session.get_bind().dialect.name]
    await session.execute(statement, values if len(values) > 1 else values[0])


async def enqueue_many(session: AsyncSession, rows: Iterable[Mapping[str, Any]]) -> None:
    """Queue many messages in one round trip (planners, broadcasts); existing keys are skipped.

    Each row takes the keyword arguments of ``enqueue``.
    """
    values = [_row_values(**row) for row in rows]
    if not values:
        return
    statement = _insert_ignoring_conflicts(session, Outbox).on_conflict_do_nothing(
        index_elements=[Outbox.dedupe_key]
    )
    await session.execute(statement, values)


def _claimable(now: datetime, priority: int) -> Any:
    """Due rows of one priority level that nobody holds (or whose holder's lease ran out)."""
    return and_(
        _OPEN,
        Outbox.priority == priority,
        Outbox.due_at <= now,
        or_(Outbox.state == State.PENDING.value, Outbox.claimed_until <= now),
    )


def claim_candidates(
    session: AsyncSession,
    *,
    now: datetime,
    priority: int,
    limit: int,
    exclude_chats: Collection[int] = (),
) -> Any:
    """The SELECT a claim runs for one priority level (exposed for EXPLAIN in the benchmark)."""
    statement = select(Outbox.id).where(_claimable(now, priority))
    if exclude_chats:
        statement = statement.where(Outbox.chat_id.not_in(sorted(exclude_chats)))
    statement = statement.order_by(Outbox.due_at, Outbox.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    return statement


def _build_claim(dialect: str) -> Any:
    """``UPDATE … WHERE id IN (the best :limit of each level's best :limit) RETURNING``: one
    statement for every priority level, each level's candidates an index range scan of
    ``ix_outbox_due``; the outer ORDER BY sorts at most ``levels × limit`` ids."""
    now = bindparam("now", type_=UTCDateTime())
    levels = []
    for priority in sorted(Priority, reverse=True):
        candidates = (
            select(Outbox.id, Outbox.priority, Outbox.due_at)
            .where(
                _OPEN,
                Outbox.priority == int(priority),
                Outbox.due_at <= now,
                or_(Outbox.state == State.PENDING.value, Outbox.claimed_until <= now),
                Outbox.chat_id.not_in(bindparam("exclude", expanding=True)),
            )
            .order_by(Outbox.due_at, Outbox.id)
            .limit(bindparam("limit"))
        )
        if dialect == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        level = candidates.subquery(f"level{int(priority)}")
        levels.append(select(level.c.id, level.c.priority, level.c.due_at))
    every = union_all(*levels).subquery("due")
    best = (
        select(every.c.id)
        .order_by(every.c.priority.desc(), every.c.due_at, every.c.id)
        .limit(bindparam("limit"))
    )
    return (
        update(Outbox)
        .where(Outbox.id.in_(best.scalar_subquery()))
        .values(
            state=State.CLAIMED.value,
            claimed_until=bindparam("lease_until", type_=UTCDateTime()),
            updated_at=now,
        )
        .returning(
            Outbox.id,
            Outbox.dedupe_key,
            Outbox.customer_id,
            Outbox.chat_id,
            Outbox.kind,
            Outbox.payload,
            Outbox.priority,
            Outbox.transactional,
            Outbox.due_at,
            Outbox.attempts,
            Outbox.care_day,
        )
        .execution_options(synchronize_session=False)
    )


# Built once per dialect: the dispatcher claims after every wake-up, and building this costs
# more than running it.
_CLAIM = {dialect: _build_claim(dialect) for dialect in ("sqlite", "postgresql")}


async def claim_due(
    session: AsyncSession,
    *,
    now: datetime,
    lease_until: datetime,
    limit: int,
    exclude_chats: Collection[int] = (),
) -> list[OutboxMessage]:
    """Lease up to ``limit`` due rows, highest priority first, oldest due first within a level,
    skipping rows for ``exclude_chats`` (chats the dispatcher cannot send to right now), in one
    statement (``_build_claim``). The caller commits right away."""
    result = await session.execute(
        _CLAIM[session.get_bind().dialect.name],
        {
            "now": now,
            "lease_until": lease_until,
            "limit": limit,
            "exclude": sorted(exclude_chats),
        },
    )
    rows = sorted(result.all(), key=lambda row: (-row.priority, row.due_at, row.id))
    return [message_of(row) for row in rows]


def message_of(row: Any) -> OutboxMessage:
    """A row (claimed, or an ``Outbox`` read by the desk's recovery) as plain values, its
    payload typed (``storage.payloads.from_json``)."""
    return OutboxMessage(
        id=row.id,
        dedupe_key=row.dedupe_key,
        customer_id=row.customer_id,
        chat_id=row.chat_id,
        kind=row.kind,
        payload=from_json(row.payload),
        priority=row.priority,
        transactional=row.transactional,
        due_at=row.due_at,
        attempts=row.attempts,
        care_day=row.care_day,
    )


def _build_next_due() -> Any:
    """The earliest due time of each priority level (each the first entry of its slice of
    ``ix_outbox_due``), in one statement."""
    levels = union_all(
        *(
            select(func.min(Outbox.due_at).label("due_at")).where(
                _OPEN, Outbox.priority == int(priority)
            )
            for priority in Priority
        )
    ).subquery("levels")
    return select(levels.c.due_at).where(levels.c.due_at.is_not(None))


# Built once: the dispatcher asks every time it runs out of due rows.
_NEXT_DUE = _build_next_due()


async def next_due(session: AsyncSession) -> datetime | None:
    """When the earliest pending row falls due (the dispatcher sleeps until then)."""
    result = await session.execute(_NEXT_DUE)
    found = [value for value in result.scalars() if value is not None]
    return min(found, default=None)


_RECIPIENTS = select(
    Customer.id,
    Customer.language,
    Customer.timezone,
    Customer.consent,
    Customer.reachable,
    Customer.erased_at,
).where(Customer.id.in_(bindparam("ids", expanding=True)))


async def recipients(session: AsyncSession, customer_ids: Iterable[int]) -> dict[int, Recipient]:
    """The current language, time zone, consent and reachability of these customers."""
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    result = await session.execute(_RECIPIENTS, {"ids": ids})
    return {
        row.id: Recipient(
            id=row.id,
            language=row.language,
            timezone=row.timezone,
            consent=row.consent,
            reachable=row.reachable,
            erased=row.erased_at is not None,
        )
        for row in result
    }


_MARK_SENT = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id == bindparam("message_id"))
    .values(
        state=State.SENT.value,
        telegram_message_id=bindparam("telegram_message_id"),
        sent_at=bindparam("now", type_=UTCDateTime()),
        updated_at=bindparam("now", type_=UTCDateTime()),
        claimed_until=None,
        attempts=_OUTBOX.c.attempts + 1,
        last_error=None,
    )
)


async def mark_sent(
    session: AsyncSession, message_id: int, *, telegram_message_id: int | None, now: datetime
) -> None:
    """Record a delivery and its Telegram message id in one statement (right after the call);
    the id is None for calls that create no message (closing a forum topic)."""
    await session.execute(
        _MARK_SENT,
        {"message_id": message_id, "telegram_message_id": telegram_message_id, "now": now},
    )


_RELEASE = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id.in_(bindparam("ids", expanding=True)), _OUTBOX.c.state == "claimed")
    .values(
        state=State.PENDING.value,
        claimed_until=None,
        updated_at=bindparam("now", type_=UTCDateTime()),
    )
)


async def release(
    session: AsyncSession,
    message_ids: Sequence[int],
    *,
    now: datetime,
    due_at: datetime | None = None,
    clear_care_day: bool = False,
) -> None:
    """Give claimed rows back (shutdown, a pause, a chat not ready yet), optionally later."""
    if not message_ids:
        return
    if due_at is None and not clear_care_day:  # the common case: built once
        await session.execute(_RELEASE, {"ids": list(message_ids), "now": now})
        return
    values: dict[str, Any] = {
        "state": State.PENDING.value,
        "claimed_until": None,
        "updated_at": now,
    }
    if due_at is not None:
        values["due_at"] = due_at
    if clear_care_day:
        values["care_day"] = None
        values["care_slot"] = None
    await session.execute(
        update(Outbox)
        .where(Outbox.id.in_(list(message_ids)), Outbox.state == State.CLAIMED.value)
        .values(**values)
    )


async def reclaim_claimed(session: AsyncSession, *, now: datetime) -> list[int]:
    """Give every claimed row back (pending, no lease) in one statement; returns their ids.

    Only for a dispatcher that has just taken the exclusive lock: no other dispatcher is alive
    then, so each claimed row was left by one that died and would otherwise wait out its lease.
    Attempts, due time, priority and care-day slot stay as they were, so the rows keep their
    place in the queue and their day's slot.
    """
    result = await session.execute(
        update(Outbox)
        .where(_OPEN, Outbox.state == State.CLAIMED.value)
        .values(state=State.PENDING.value, claimed_until=None, updated_at=now)
        .returning(Outbox.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(result.scalars())


async def retry_later(
    session: AsyncSession, message_id: int, *, due_at: datetime, error: str, now: datetime
) -> None:
    """A transient failure: count the attempt and try again at ``due_at``.

    The row gives up its care-day slot: it will count against the day it is finally sent on.
    """
    await session.execute(
        update(Outbox)
        .where(Outbox.id == message_id)
        .values(
            state=State.PENDING.value,
            attempts=Outbox.attempts + 1,
            due_at=due_at,
            claimed_until=None,
            last_error=error[:MAX_ERROR_LENGTH],
            care_day=None,
            care_slot=None,
            updated_at=now,
        )
    )


async def finish(
    session: AsyncSession,
    message_id: int,
    *,
    state: State,
    error: str,
    now: datetime,
    attempted: bool = True,
) -> None:
    """Park a row as failed (permanent) or dead (out of attempts), with the reason."""
    if state not in (State.FAILED, State.DEAD):
        raise ValueError("finish() parks rows as failed or dead")
    await session.execute(
        update(Outbox)
        .where(Outbox.id == message_id)
        .values(
            state=state.value,
            attempts=Outbox.attempts + 1 if attempted else Outbox.attempts,
            claimed_until=None,
            last_error=error[:MAX_ERROR_LENGTH],
            updated_at=now,
        )
    )


async def change_chat(session: AsyncSession, message_id: int, new_chat_id: int) -> None:
    """A group became a supergroup: later sends of this row go to its new id."""
    await session.execute(
        update(Outbox).where(Outbox.id == message_id).values(chat_id=new_chat_id)
    )


async def mark_unreachable(session: AsyncSession, customer_id: int, now: datetime) -> None:
    """The customer blocked the bot or the chat is gone: no more proactive sends to them."""
    await session.execute(
        update(Customer).where(Customer.id == customer_id).values(reachable=False, updated_at=now)
    )


async def reserve_care_slot(
    session: AsyncSession,
    message: OutboxMessage,
    *,
    day: str,
    per_day: int,
    ahead: Sequence[str] = (),
) -> bool:
    """Count this proactive message against the customer's local ``day``; False when the day's
    quota is used up (or another dispatcher took the last slot a moment ago), or when this
    would be the last slot and a row keyed one of ``ahead`` (messages that go first that day,
    ``scheduler.policy``) is still pending or claimed: it yields the slot to that row.

    The unique index on (customer, day, slot) is what makes the cap hold with several
    dispatchers: two of them can never both take slot 1. Run it in a transaction of its own:
    a lost race raises ``IntegrityError`` and the caller rolls back and tries later.
    """
    if message.care_day == day:
        return True  # reclaimed after a crash: the slot is still ours
    if message.customer_id is None:
        return True
    used = await session.execute(
        select(func.count())
        .select_from(Outbox)
        .where(Outbox.customer_id == message.customer_id, Outbox.care_day == day)
    )
    count = int(used.scalar_one())
    if count >= per_day:
        return False
    if count + 1 >= per_day and ahead and await _any_open(session, ahead, besides=message.id):
        return False
    await session.execute(
        update(Outbox).where(Outbox.id == message.id).values(care_day=day, care_slot=count + 1)
    )
    return True


async def _any_open(session: AsyncSession, keys: Sequence[str], *, besides: int) -> bool:
    """Whether a row keyed one of ``keys`` (other than row ``besides``) is still to be sent."""
    found = await session.execute(
        select(Outbox.id)
        .where(Outbox.dedupe_key.in_(list(keys)), _OPEN, Outbox.id != besides)
        .limit(1)
    )
    return found.first() is not None


async def stats(session: AsyncSession) -> OutboxStats:
    """Rows by state and kind, and how late the oldest unsent row is (``carebot outbox stats``)."""
    result = await session.execute(
        select(Outbox.state, Outbox.kind, func.count()).group_by(Outbox.state, Outbox.kind)
    )
    counts = {(state, kind): int(count) for state, kind, count in result}
    oldest = await session.execute(select(func.min(Outbox.due_at)).where(_OPEN))
    return OutboxStats(counts=counts, oldest_due=oldest.scalar_one_or_none())


@dataclass(frozen=True)
class GroupQueue:
    """The rows waiting for one group (Telegram lets a bot send 20 a minute into it)."""

    chat_id: int
    name: str | None
    """The staff group's name (``/setup <name>``), None for another group."""
    waiting: int
    """Rows due and not sent yet (pending, or claimed and on their way)."""
    oldest_due: datetime
    """When the one waiting longest fell due."""


async def group_queues(session: AsyncSession, now: datetime) -> list[GroupQueue]:
    """Each group's queue: the rows due for it and not sent yet, and the oldest one's due time,
    the longest waiting first (``carebot outbox stats``, the dashboard's outbox page)."""
    oldest = func.min(Outbox.due_at)
    result = await session.execute(
        select(Outbox.chat_id, func.count(), oldest)
        .where(_OPEN, Outbox.chat_id < 0, Outbox.due_at <= now)
        .group_by(Outbox.chat_id)
        .order_by(oldest, Outbox.chat_id)
    )
    names = {chat_id: name for name, chat_id in (await stored_staff_groups(session)).items()}
    return [
        GroupQueue(chat_id, names.get(chat_id), int(count), due)
        for chat_id, count, due in result.all()
    ]


async def list_dead(session: AsyncSession, *, limit: int = 100) -> list[DeadRow]:
    """Rows parked after their last attempt, newest first (``carebot outbox dead``)."""
    result = await session.execute(
        select(
            Outbox.id,
            Outbox.kind,
            Outbox.chat_id,
            Outbox.customer_id,
            Outbox.attempts,
            Outbox.last_error,
            Outbox.due_at,
            Outbox.updated_at,
        )
        .where(Outbox.state == State.DEAD.value)
        .order_by(Outbox.updated_at.desc(), Outbox.id.desc())
        .limit(limit)
    )
    return [DeadRow(**row._asdict()) for row in result]


async def retry(
    session: AsyncSession, *, now: datetime, message_ids: Sequence[int] | None = None
) -> int:
    """Send dead (or failed) rows again: by id, or every dead row when ``message_ids`` is None.

    Attempts start from zero again; returns how many rows were requeued.
    """
    if message_ids is None:
        condition = Outbox.state == State.DEAD.value
    else:
        condition = and_(
            Outbox.id.in_(list(message_ids)),
            Outbox.state.in_([State.DEAD.value, State.FAILED.value, State.CANCELLED.value]),
        )
    result = await session.execute(
        update(Outbox)
        .where(condition)
        .values(
            state=State.PENDING.value,
            attempts=0,
            due_at=now,
            claimed_until=None,
            care_day=None,
            care_slot=None,
            updated_at=now,
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def cancel_kind(session: AsyncSession, kind: str, *, now: datetime) -> int:
    """Cancel every unsent row of ``kind`` (pending or dead); rows stay, so their dedupe keys
    keep a re-run planner from queueing them again. A row already claimed is left to its
    dispatcher (it may be on the wire)."""
    result = await session.execute(
        update(Outbox)
        .where(
            Outbox.kind == kind,
            Outbox.state.in_([State.PENDING.value, State.DEAD.value]),
        )
        .values(
            state=State.CANCELLED.value,
            last_error=case((Outbox.last_error.is_(None), "cancelled"), else_=Outbox.last_error),
            updated_at=now,
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


_KEY_CHUNK = 500


async def cancel_erased(
    session: AsyncSession,
    *,
    now: datetime,
    dedupe_keys: Sequence[str] = (),
    customer_id: int | None = None,
) -> set[str]:
    """``/forget``: cancel the unsent rows (pending or dead) that carry what a customer sent or
    who they are, by key or by customer; the keys cancelled. A claimed row is on the wire and
    left to its dispatcher."""
    cancelled: set[str] = set()
    for match, _ in _erasure_matches(dedupe_keys, customer_id):
        result = await session.execute(
            update(Outbox)
            .where(match, Outbox.state.in_([State.PENDING.value, State.DEAD.value]))
            .values(state=State.CANCELLED.value, last_error="erased", updated_at=now)
            .returning(Outbox.dedupe_key)
        )
        cancelled.update(result.scalars())
    return cancelled


async def erase_payloads(
    session: AsyncSession, *, dedupe_keys: Sequence[str] = (), customer_id: int | None = None
) -> None:
    """``/forget``: the rows that are done (sent, failed, cancelled; kept for the counts) lose
    their payload, and a customer's own rows their chat id. Rows still to be sent are left as
    they are (``cancel_erased`` first cancels those that carry personal data)."""
    for match, by_customer in _erasure_matches(dedupe_keys, customer_id):
        values: dict[str, Any] = {"payload": ERASED_PAYLOAD}
        if by_customer:
            values["chat_id"] = 0
        await session.execute(
            update(Outbox)
            .where(match, Outbox.state.not_in([State.PENDING.value, State.CLAIMED.value]))
            .values(**values)
        )


def _erasure_matches(
    dedupe_keys: Sequence[str], customer_id: int | None
) -> list[tuple[Any, bool]]:
    """The rows to erase as conditions (keys in chunks, then the customer's), each with
    whether it selects the customer's own rows."""
    matches: list[tuple[Any, bool]] = [
        (Outbox.dedupe_key.in_(list(dedupe_keys[start : start + _KEY_CHUNK])), False)
        for start in range(0, len(dedupe_keys), _KEY_CHUNK)
    ]
    if customer_id is not None:
        matches.append((Outbox.customer_id == customer_id, True))
    return matches


async def prune_sent(session: AsyncSession, *, before: datetime, limit: int = 10_000) -> int:
    """Delete up to ``limit`` rows sent before ``before`` (the table stays as big as the
    retention window). Their dedupe keys go with them, so keep the window longer than any
    planner looks back."""
    doomed = (
        select(Outbox.id)
        .where(Outbox.state == State.SENT.value, Outbox.sent_at < before)
        .limit(limit)
        .scalar_subquery()
    )
    result = await session.execute(delete(Outbox).where(Outbox.id.in_(doomed)))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def states_by_key(session: AsyncSession, dedupe_keys: Sequence[str]) -> dict[str, str]:
    """The state of each given row (tests, the demo)."""
    result = await session.execute(
        select(Outbox.dedupe_key, Outbox.state).where(Outbox.dedupe_key.in_(list(dedupe_keys)))
    )
    return {key: state for key, state in result}


async def try_advisory_lock(connection: AsyncConnection, key: int) -> bool:
    """Take a PostgreSQL session-level advisory lock if it is free (held until released or the
    connection closes, e.g. when the process dies)."""
    result = await connection.execute(select(func.pg_try_advisory_lock(key)))
    return bool(result.scalar_one())


async def advisory_unlock(connection: AsyncConnection, key: int) -> None:
    await connection.execute(select(func.pg_advisory_unlock(key)))


async def ping(connection: AsyncConnection) -> None:
    """Raise if the connection is gone (a lost connection means a lost advisory lock)."""
    await connection.execute(select(1))
