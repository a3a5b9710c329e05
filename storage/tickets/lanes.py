"""A ticket's delivery lanes: what the desk sends, queued per lane (the topic, its renames, the
customer) and handed to the outbox a window at a time; and their vocabulary, the lanes and the
states of a delivery.

A lane is changed only after ``storage.tickets.rows.lock_ticket``, with one exception: a
delivery the dispatcher sent is marked sent without it (``mark_sent``) unless its lane's window
is then empty (see ``handlers.tickets.outcomes``).
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    String,
    Table,
    bindparam,
    cast,
    delete,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.orm.attributes import set_committed_value

from storage.columns import UTCDateTime
from storage.inserts import insert_loaded
from storage.models import Outbox, TicketDelivery
from storage.outbox import State
from storage.payloads import Payload, to_json

# Delivery lanes and states.
TOPIC = "topic"
TITLE = "title"
"""The topic's renames: apart from the topic lane, so a rename never holds up a relay."""
CUSTOMER = "customer"
D_QUEUED = "queued"
D_OUTBOX = "outbox"
D_SENT = "sent"
D_FAILED = "failed"
D_SKIPPED = "skipped"
D_MERGED = "merged"
"""Carried by another delivery's outbox row (``payload["into"]``: that delivery), texts merged
into one message while the topic's group had no room: it ends as that row ends."""


async def add_delivery(session: AsyncSession, **values: Any) -> TicketDelivery:
    return await insert_loaded(session, TicketDelivery, **values)


# The statements every relayed message runs (its delivery marked sent, its lane's window read and
# moved into the outbox) are built once, as building one costs more than running it.
_GET_DELIVERY = (
    select(TicketDelivery)
    .where(TicketDelivery.id == bindparam("delivery_id"))
    .execution_options(populate_existing=True)
)


async def get_delivery(session: AsyncSession, delivery_id: int) -> TicketDelivery | None:
    result = await session.execute(_GET_DELIVERY, {"delivery_id": delivery_id})
    return result.scalar_one_or_none()


_DELIVERIES = typing.cast(Table, TicketDelivery.__table__)
_SET_DELIVERY_STATE = (
    update(_DELIVERIES)
    .where(_DELIVERIES.c.id == bindparam("delivery_id"))
    .values(
        state=bindparam("new_state"),
        tries=bindparam("new_tries"),
        updated_at=bindparam("changed_at", type_=UTCDateTime()),
    )
)


async def set_delivery_state(
    session: AsyncSession,
    delivery: TicketDelivery,
    state: str,
    now: datetime,
    *,
    tries: int | None = None,
) -> None:
    """Move a delivery on (into the outbox, sent): one Core write, and the loaded object
    changed to match without a unit of work, which costs three times as much; every relayed
    message does this twice."""
    new_tries = delivery.tries if tries is None else tries
    await session.execute(
        _SET_DELIVERY_STATE,
        {
            "delivery_id": delivery.id,
            "new_state": state,
            "new_tries": new_tries,
            "changed_at": now,
        },
    )
    set_committed_value(delivery, "state", state)
    set_committed_value(delivery, "tries", new_tries)
    set_committed_value(delivery, "updated_at", now)


_INTO_OUTBOX = (
    update(_DELIVERIES)
    .where(_DELIVERIES.c.id.in_(bindparam("delivery_ids", expanding=True)))
    .values(
        state=D_OUTBOX,
        tries=_DELIVERIES.c.tries + 1,
        updated_at=bindparam("changed_at", type_=UTCDateTime()),
    )
)


async def into_outbox(
    session: AsyncSession, deliveries: Sequence[TicketDelivery], now: datetime
) -> None:
    """Move a lane's window into the outbox (each one try more) in one Core write; the loaded
    objects are changed to match (their outbox keys follow ``tries``)."""
    await session.execute(
        _INTO_OUTBOX, {"delivery_ids": [delivery.id for delivery in deliveries], "changed_at": now}
    )
    for delivery in deliveries:
        set_committed_value(delivery, "state", D_OUTBOX)
        set_committed_value(delivery, "tries", delivery.tries + 1)
        set_committed_value(delivery, "updated_at", now)


@dataclass(frozen=True)
class SentDelivery:
    """A delivery just marked sent (``mark_sent``): what its outcome needs, and how many
    deliveries of its lane are still in the outbox (0: the lane's window is empty)."""

    id: int
    ticket_id: int
    lane: str
    action: str
    ticket_message_id: int | None
    payload: dict[str, Any]
    in_outbox: int


_OTHERS = aliased(TicketDelivery)
_MARK_SENT = (
    update(_DELIVERIES)
    .where(_DELIVERIES.c.id == bindparam("delivery_id"), _DELIVERIES.c.state == D_OUTBOX)
    .values(state=D_SENT, updated_at=bindparam("changed_at", type_=UTCDateTime()))
    .returning(
        _DELIVERIES.c.id,
        _DELIVERIES.c.ticket_id,
        _DELIVERIES.c.lane,
        _DELIVERIES.c.action,
        _DELIVERIES.c.ticket_message_id,
        _DELIVERIES.c.payload,
        select(func.count())
        .where(
            # Spelled out: RETURNING renders the updated table's columns unqualified, which
            # inside the subquery would name its own.
            _OTHERS.ticket_id == literal_column("ticket_deliveries.ticket_id"),
            _OTHERS.lane == literal_column("ticket_deliveries.lane"),
            _OTHERS.state == D_OUTBOX,
            _OTHERS.id != literal_column("ticket_deliveries.id"),
        )
        .scalar_subquery()
        .label("in_outbox"),
    )
)


async def mark_sent(session: AsyncSession, delivery_id: int, now: datetime) -> SentDelivery | None:
    """Mark a delivery that was in the outbox sent, and read what its outcome needs, in one
    statement (every relayed message runs it); None when it was not in the outbox (recovered,
    pulled back, erased). The count leaves the row itself out, so both databases agree on it
    whatever a statement sees of its own change."""
    result = await session.execute(_MARK_SENT, {"delivery_id": delivery_id, "changed_at": now})
    row = result.one_or_none()
    if row is None:
        return None
    return SentDelivery(
        id=row.id,
        ticket_id=row.ticket_id,
        lane=row.lane,
        action=row.action,
        ticket_message_id=row.ticket_message_id,
        payload=row.payload or {},
        in_outbox=int(row.in_outbox),
    )


def merge_into(parts: Sequence[TicketDelivery], head_id: int, now: datetime) -> None:
    """``parts`` go as part of the outbox row of the delivery ``head_id`` (see ``D_MERGED``)."""
    for part in parts:
        part.state = D_MERGED
        part.payload = {"into": head_id}
        part.updated_at = now


async def merged_parts(
    session: AsyncSession, ticket_id: int, lane: str, head_ids: Sequence[int]
) -> list[TicketDelivery]:
    """The deliveries merged into the rows of ``head_ids``, in order."""
    if not head_ids:
        return []
    result = await session.execute(
        select(TicketDelivery)
        .where(
            TicketDelivery.ticket_id == ticket_id,
            TicketDelivery.lane == lane,
            TicketDelivery.state == D_MERGED,
        )
        .order_by(TicketDelivery.id)
    )
    heads = set(head_ids)
    return [part for part in result.scalars() if (part.payload or {}).get("into") in heads]


async def settle_parts(
    session: AsyncSession,
    ticket_id: int,
    lane: str,
    head_ids: Sequence[int],
    state: str,
    now: datetime,
    error: str | None = None,
) -> list[TicketDelivery]:
    """The merged deliveries of ``head_ids`` end as their row did (``state``: queued again to be
    built anew, failed, skipped); returns them, in order."""
    parts = await merged_parts(session, ticket_id, lane, head_ids)
    for part in parts:
        part.state = state
        part.payload = {}
        part.updated_at = now
        if error is not None:
            part.error = error[:300]
    return parts


_PARTS_SENT = (
    update(_DELIVERIES)
    .where(_DELIVERIES.c.id.in_(bindparam("part_ids", expanding=True)))
    .values(state=D_SENT, updated_at=bindparam("changed_at", type_=UTCDateTime()))
    .returning(_DELIVERIES.c.ticket_message_id)
)


async def mark_parts_sent(
    session: AsyncSession, part_ids: Sequence[int], now: datetime
) -> list[int]:
    """The deliveries a merged row carried besides its own are sent: one write; the ids of the
    ticket messages they carried."""
    if not part_ids:
        return []
    result = await session.execute(_PARTS_SENT, {"part_ids": list(part_ids), "changed_at": now})
    return [message_id for (message_id,) in result if message_id is not None]


def _outbox_key() -> Any:
    return (
        literal("tk:") + cast(TicketDelivery.id, String) + ":" + cast(TicketDelivery.tries, String)
    )


async def pull_back(
    session: AsyncSession, ticket_id: int, lane: str, after_row: int, now: datetime
) -> int:
    """Take the lane's deliveries whose outbox row comes after row ``after_row`` (one that
    failed, or waits for another try) and nobody has claimed back out of the outbox: their rows
    are deleted and they are queued again, as they were, so whatever the failure puts in front
    goes first and they are built again (for a new topic, say). Returns how many."""
    result = await session.execute(
        select(TicketDelivery, Outbox.id)
        .join(Outbox, Outbox.dedupe_key == _outbox_key())
        .where(
            TicketDelivery.ticket_id == ticket_id,
            TicketDelivery.lane == lane,
            TicketDelivery.state == D_OUTBOX,
            Outbox.id > after_row,
            Outbox.state == State.PENDING.value,
        )
    )
    found = list(result.all())
    if not found:
        return 0
    await session.execute(
        delete(Outbox).where(
            Outbox.id.in_([row_id for _, row_id in found]), Outbox.state == State.PENDING.value
        )
    )
    for delivery, _ in found:
        delivery.state = D_QUEUED
        delivery.tries = max(delivery.tries - 1, 0)  # the row never went: its key is free again
        delivery.updated_at = now
    heads = [delivery.id for delivery, _ in found]
    parts = await settle_parts(session, ticket_id, lane, heads, D_QUEUED, now)
    return len(found) + len(parts)


async def replace_pending_payload(
    session: AsyncSession,
    dedupe_key: str,
    payload: Payload,
    *,
    due_at: datetime | None = None,
) -> bool:
    """Change an outbox row nobody has claimed yet (an album's copy growing while it waits for
    the album's last items; a delayed rename brought forward); False when it is claimed or
    gone."""
    values: dict[str, Any] = {"payload": to_json(payload)}
    if due_at is not None:
        values["due_at"] = due_at
    result = await session.execute(
        update(Outbox)
        .where(Outbox.dedupe_key == dedupe_key, Outbox.state == "pending")
        .values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


_LANE_HEAD = (
    select(TicketDelivery)
    .where(
        TicketDelivery.ticket_id == bindparam("ticket_id"),
        TicketDelivery.lane == bindparam("lane"),
        TicketDelivery.state.in_([D_OUTBOX, D_QUEUED]),
    )
    .order_by(
        (TicketDelivery.state == D_OUTBOX).desc(),
        TicketDelivery.front.desc(),
        TicketDelivery.id,
    )
    .limit(1)
)


async def lane_head(session: AsyncSession, ticket_id: int, lane: str) -> TicketDelivery | None:
    """The lane's delivery in the outbox if there is one, else its next queued delivery (those
    put in front first, then in order); None when the lane is empty. One indexed query: every
    message a lane queues runs it."""
    result = await session.execute(_LANE_HEAD, {"ticket_id": ticket_id, "lane": lane})
    return result.scalar_one_or_none()


_LANE_WINDOW = _LANE_HEAD.limit(bindparam("window")).execution_options(populate_existing=True)


async def lane_window(
    session: AsyncSession, ticket_id: int, lane: str, window: int
) -> list[TicketDelivery]:
    """The lane's first ``window`` deliveries in ``lane_head``'s order (one in the outbox
    first: then the window is not empty)."""
    result = await session.execute(
        _LANE_WINDOW, {"ticket_id": ticket_id, "lane": lane, "window": window}
    )
    return list(result.scalars())


async def open_deliveries(
    session: AsyncSession, ticket_id: int, lane: str, action: str
) -> list[TicketDelivery]:
    """Deliveries of one action not yet sent (queued or in the outbox), oldest first."""
    result = await session.execute(
        select(TicketDelivery)
        .where(
            TicketDelivery.ticket_id == ticket_id,
            TicketDelivery.lane == lane,
            TicketDelivery.action == action,
            TicketDelivery.state.in_([D_QUEUED, D_OUTBOX]),
        )
        .order_by(TicketDelivery.id)
    )
    return list(result.scalars())


async def latest_delivery(
    session: AsyncSession, ticket_id: int, lane: str, action: str
) -> TicketDelivery | None:
    result = await session.execute(
        select(TicketDelivery)
        .where(
            TicketDelivery.ticket_id == ticket_id,
            TicketDelivery.lane == lane,
            TicketDelivery.action == action,
        )
        .order_by(TicketDelivery.id.desc())
        .limit(1)
    )
    return result.scalar_one_or_none()


async def deliveries_of(
    session: AsyncSession, ticket_id: int | Sequence[int]
) -> list[TicketDelivery]:
    """Every delivery of one ticket, or of several, oldest first."""
    ids = [ticket_id] if isinstance(ticket_id, int) else list(ticket_id)
    result = await session.execute(
        select(TicketDelivery).where(TicketDelivery.ticket_id.in_(ids)).order_by(TicketDelivery.id)
    )
    return list(result.scalars())


async def stranded_deliveries(
    session: AsyncSession, *, before: datetime, limit: int = 100
) -> list[tuple[TicketDelivery, Outbox | None]]:
    """Deliveries still marked as in the outbox since before ``before`` whose outbox row has
    ended (sent, failed, dead, cancelled) or is gone: their outcome never reached the ticket
    (a hook that failed, an operator who cancelled the row), and their lane waits."""
    key = _outbox_key()
    result = await session.execute(
        select(TicketDelivery, Outbox)
        .outerjoin(Outbox, Outbox.dedupe_key == key)
        .where(
            TicketDelivery.state == D_OUTBOX,
            TicketDelivery.updated_at < before,
            or_(Outbox.id.is_(None), Outbox.state.not_in(["pending", "claimed"])),
        )
        .order_by(TicketDelivery.id)
        .limit(limit)
    )
    return [(delivery, row) for delivery, row in result]


async def idle_lanes(
    session: AsyncSession, *, before: datetime, limit: int = 100
) -> list[tuple[int, str]]:
    """Lanes (ticket, lane) with a delivery queued since before ``before`` and none in the
    outbox: no outcome is coming to queue their next window. The last outcome of a window
    queues the next one, but two outcomes of one lane written at once by two transactions
    (a recovery beside the dispatcher, on PostgreSQL) can each see the other's delivery still
    in the outbox; this finds such a lane, for the recovery to resume it."""
    in_outbox = aliased(TicketDelivery)
    result = await session.execute(
        select(TicketDelivery.ticket_id, TicketDelivery.lane)
        .where(
            TicketDelivery.state == D_QUEUED,
            TicketDelivery.updated_at < before,
            ~exists().where(
                in_outbox.ticket_id == TicketDelivery.ticket_id,
                in_outbox.lane == TicketDelivery.lane,
                in_outbox.state == D_OUTBOX,
            ),
        )
        .distinct()
        .order_by(TicketDelivery.ticket_id, TicketDelivery.lane)
        .limit(limit)
    )
    return [(ticket_id, lane) for ticket_id, lane in result]
