"""The dashboard's and the metrics' SQL: read-only figures, one-time login tokens, sessions.

What already has a query in ``storage`` is reused from there (outbox stats and dead rows,
ticket history, the tier report); what is here is what only the dashboard asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import outbox as outbox_queries
from storage.models import (
    AT_RISK,
    Customer,
    DashboardLogin,
    DashboardSession,
    Outbox,
    RfmScore,
    Ticket,
)
from storage.tickets.statuses import CLOSED, SLA_RUNNING, STATUSES
from storage.tiers.spec import ChurnFlag

NOT_CLOSED = tuple(status for status in STATUSES if status != CLOSED)
CARE_KINDS = "care.%"


# --- outbox ----------------------------------------------------------------------------------


async def outbox_depth(session: AsyncSession) -> dict[str, int]:
    """Rows per state, every state present (0 when none)."""
    stats = await outbox_queries.stats(session)
    depth = {state.value: 0 for state in outbox_queries.State}
    for (state, _kind), count in stats.counts.items():
        depth[state] = depth.get(state, 0) + count
    return depth


async def care_messages(
    session: AsyncSession, since: datetime, until: datetime
) -> dict[tuple[str, str], int]:
    """Care messages (``care.*`` outbox rows) due in ``[since, until)``: (kind, state) -> rows."""
    result = await session.execute(
        select(Outbox.kind, Outbox.state, func.count())
        .where(Outbox.kind.like(CARE_KINDS), Outbox.due_at >= since, Outbox.due_at < until)
        .group_by(Outbox.kind, Outbox.state)
    )
    return {(kind, state): int(count) for kind, state, count in result}


# --- tickets ---------------------------------------------------------------------------------


async def open_tickets_by_status(session: AsyncSession) -> dict[str, int]:
    """Tickets not closed, per status, every such status present."""
    counts = {status: 0 for status in NOT_CLOSED}
    for (status, _tier), count in (await open_tickets_by_status_and_tier(session)).items():
        counts[status] += count
    return counts


async def open_tickets_by_status_and_tier(session: AsyncSession) -> dict[tuple[str, str], int]:
    result = await session.execute(
        select(Ticket.status, Ticket.tier, func.count())
        .where(Ticket.status.in_(NOT_CLOSED))
        .group_by(Ticket.status, Ticket.tier)
    )
    return {(status, tier): int(count) for status, tier, count in result}


@dataclass(frozen=True)
class Breaches:
    """Running tickets past a deadline they have not met (the same rule as the SLA planner)."""

    first_response: int
    resolution: int


async def sla_breaches(session: AsyncSession, now: datetime) -> Breaches:
    running = Ticket.status.in_(SLA_RUNNING)
    first = await session.execute(
        select(func.count()).where(
            running, Ticket.first_response_at.is_(None), Ticket.first_response_due < now
        )
    )
    resolution = await session.execute(
        select(func.count()).where(running, Ticket.resolution_due < now)
    )
    return Breaches(int(first.scalar_one()), int(resolution.scalar_one()))


@dataclass(frozen=True)
class TicketRow:
    id: int
    number: str
    status: str
    tier: str
    category: str
    priority: int
    assignee_name: str | None
    opened_at: datetime
    first_response_due: datetime
    first_response_at: datetime | None
    resolution_due: datetime
    customer_name: str | None


async def ticket_list(
    session: AsyncSession,
    *,
    status: str | None = None,
    tier: str | None = None,
    number: str | None = None,
    limit: int = 200,
) -> list[TicketRow]:
    """Newest first; ``status`` "not_closed" means every status but closed."""
    statement = select(
        Ticket.id,
        Ticket.number,
        Ticket.status,
        Ticket.tier,
        Ticket.category,
        Ticket.priority,
        Ticket.assignee_name,
        Ticket.opened_at,
        Ticket.first_response_due,
        Ticket.first_response_at,
        Ticket.resolution_due,
        Customer.name.label("customer_name"),
    ).join(Customer, Customer.id == Ticket.customer_id)
    if status == "not_closed":
        statement = statement.where(Ticket.status.in_(NOT_CLOSED))
    elif status:
        statement = statement.where(Ticket.status == status)
    if tier:
        statement = statement.where(Ticket.tier == tier)
    if number:
        statement = statement.where(Ticket.number.ilike(f"%{number.strip()}%"))
    result = await session.execute(
        statement.order_by(Ticket.opened_at.desc(), Ticket.id.desc()).limit(limit)
    )
    return [TicketRow(**row._asdict()) for row in result]


async def ticket_tiers(session: AsyncSession) -> list[str]:
    result = await session.execute(select(Ticket.tier).distinct().order_by(Ticket.tier))
    return list(result.scalars())


# --- customers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AtRisk:
    customer_id: int
    name: str | None
    tier: str
    stage: str
    flags: list[ChurnFlag]
    last_day: int
    monetary_cents: int


async def at_risk(session: AsyncSession, *, limit: int = 100) -> list[AtRisk]:
    """Customers whose lifecycle stage is "at risk", the longest silent first: the same rule
    as the stage itself and the retention offers (``storage.models.AT_RISK``)."""
    return await _risk_rows(session, text(f"customers.{AT_RISK}"), limit)


async def churn_warnings(session: AsyncSession, *, limit: int = 100) -> list[AtRisk]:
    """Customers not at risk (yet) with a churn signal (ordering less often, spending less,
    less satisfied), the longest silent first."""
    return await _risk_rows(
        session, and_(text(f"NOT (customers.{AT_RISK})"), RfmScore.churn_flags != 0), limit
    )


async def _risk_rows(session: AsyncSession, where: Any, limit: int) -> list[AtRisk]:
    result = await session.execute(
        select(
            Customer.id,
            Customer.name,
            Customer.tier,
            Customer.stage,
            RfmScore.churn_flags,
            RfmScore.last_day,
            RfmScore.monetary_cents,
        )
        .join(RfmScore, RfmScore.customer_id == Customer.id)
        .where(where)
        .order_by(RfmScore.last_day, Customer.id)
        .limit(limit)
    )
    return [
        AtRisk(
            customer_id=row.id,
            name=row.name,
            tier=row.tier,
            stage=row.stage,
            flags=[flag for flag in ChurnFlag if row.churn_flags & flag],
            last_day=row.last_day,
            monetary_cents=row.monetary_cents,
        )
        for row in result
    ]


# --- one-time login tokens -------------------------------------------------------------------


async def add_login(
    session: AsyncSession,
    *,
    token_hash: str,
    user_id: int,
    name: str,
    now: datetime,
    expires_at: datetime,
) -> None:
    session.add(
        DashboardLogin(
            token_hash=token_hash,
            user_id=user_id,
            name=name,
            created_at=now,
            expires_at=expires_at,
        )
    )
    await session.flush()


async def login_open(session: AsyncSession, token_hash: str, now: datetime) -> str | None:
    """The name a token would sign in, if it is unused and unexpired; spends nothing (a GET
    of the link, a link preview included, only looks)."""
    result = await session.execute(
        select(DashboardLogin.name).where(
            DashboardLogin.token_hash == token_hash,
            DashboardLogin.used_at.is_(None),
            DashboardLogin.expires_at > now,
        )
    )
    name = result.scalar_one_or_none()
    return None if name is None else str(name)


async def use_login(
    session: AsyncSession, token_hash: str, now: datetime
) -> tuple[int, str] | None:
    """Mark the token used if it is unused and unexpired; returns (user id, name) or None.
    One UPDATE: two requests racing with the same link cannot both get in."""
    result = await session.execute(
        update(DashboardLogin)
        .where(
            DashboardLogin.token_hash == token_hash,
            DashboardLogin.used_at.is_(None),
            DashboardLogin.expires_at > now,
        )
        .values(used_at=now)
        .returning(DashboardLogin.user_id, DashboardLogin.name)
    )
    row = result.one_or_none()
    return (int(row.user_id), str(row.name)) if row is not None else None


async def prune_logins(session: AsyncSession, before: datetime) -> int:
    """Forget tokens that expired before ``before`` (used or not)."""
    result = await session.execute(
        delete(DashboardLogin).where(DashboardLogin.expires_at < before)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


# --- sessions --------------------------------------------------------------------------------


async def add_session(
    session: AsyncSession, *, id_hash: str, user_id: int, now: datetime, expires_at: datetime
) -> None:
    session.add(
        DashboardSession(id_hash=id_hash, user_id=user_id, created_at=now, expires_at=expires_at)
    )
    await session.flush()


async def session_active(session: AsyncSession, id_hash: str, user_id: int, now: datetime) -> bool:
    """Whether the session exists for ``user_id``, is not revoked and has not expired."""
    result = await session.execute(
        select(func.count()).where(
            DashboardSession.id_hash == id_hash,
            DashboardSession.user_id == user_id,
            DashboardSession.revoked_at.is_(None),
            DashboardSession.expires_at > now,
        )
    )
    return bool(result.scalar_one())


async def revoke_session(session: AsyncSession, id_hash: str, now: datetime) -> int:
    """Sign one session out (a no-op when it is already)."""
    result = await session.execute(
        update(DashboardSession)
        .where(DashboardSession.id_hash == id_hash, DashboardSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def revoke_user_sessions(session: AsyncSession, user_id: int, now: datetime) -> int:
    """Sign every live session of ``user_id`` out (they left the staff group)."""
    result = await session.execute(
        update(DashboardSession)
        .where(
            DashboardSession.user_id == user_id,
            DashboardSession.revoked_at.is_(None),
            DashboardSession.expires_at > now,
        )
        .values(revoked_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def prune_sessions(session: AsyncSession, before: datetime) -> int:
    """Forget sessions that expired before ``before`` (revoked or not)."""
    result = await session.execute(
        delete(DashboardSession).where(DashboardSession.expires_at < before)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
