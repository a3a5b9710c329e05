"""A ticket's delivery lanes: what the desk sends, queued per lane (the topic, its renames, the
customer) and handed to the outbox one at a time; and their vocabulary, the lanes and the states
of a delivery.

A lane is changed only after ``storage.tickets.rows.lock_ticket``.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import String, Table, and_, bindparam, cast, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.orm.attributes import set_committed_value

from storage.columns import UTCDateTime
from storage.inserts import insert_loaded
from storage.models import Outbox, TicketDelivery
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


async def add_delivery(session: AsyncSession, **values: Any) -> TicketDelivery:
    return await insert_loaded(session, TicketDelivery, **values)


# Every relay reads its delivery back and its lane's head (``_LANE_HEAD``, below): both statements
# are built once, as building one costs more than running it.
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
    put in front first, then in order); None when the lane is empty. One indexed query: the
    pump runs after every send."""
    result = await session.execute(_LANE_HEAD, {"ticket_id": ticket_id, "lane": lane})
    return result.scalar_one_or_none()


_LANE_OF = aliased(TicketDelivery)
_DELIVERY_AND_NEXT = (
    select(TicketDelivery)
    .where(
        or_(
            TicketDelivery.id == bindparam("delivery_id"),
            and_(
                TicketDelivery.ticket_id == bindparam("ticket_id"),
                TicketDelivery.state == D_QUEUED,
                TicketDelivery.lane
                == select(_LANE_OF.lane)
                .where(_LANE_OF.id == bindparam("delivery_id"))
                .scalar_subquery(),
            ),
        )
    )
    .order_by(
        (TicketDelivery.id == bindparam("delivery_id")).desc(),
        TicketDelivery.front.desc(),
        TicketDelivery.id,
    )
    .limit(2)
    .execution_options(populate_existing=True)
)


async def delivery_and_next(
    session: AsyncSession, delivery_id: int, ticket_id: int
) -> tuple[TicketDelivery | None, TicketDelivery | None]:
    """A delivery of ``ticket_id`` and the next queued one of its lane (what ``lane_head``
    answers once this one is done), in one read: every relay's outcome needs both."""
    result = await session.execute(
        _DELIVERY_AND_NEXT, {"delivery_id": delivery_id, "ticket_id": ticket_id}
    )
    rows = list(result.scalars())
    if not rows or rows[0].id != delivery_id or rows[0].ticket_id != ticket_id:
        return None, None
    return rows[0], rows[1] if len(rows) > 1 else None


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
    key = (
        literal("tk:") + cast(TicketDelivery.id, String) + ":" + cast(TicketDelivery.tries, String)
    )
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
