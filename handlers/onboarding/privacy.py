"""A customer's right to be forgotten and to see what is kept: ``/forget`` in the chat, and
``carebot customer forget|export`` for the operator. Free of Telegram; the caller owns the
transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from handlers.tickets.desk import Desk
from handlers.tickets.lifecycle import forget_customer
from storage import campaigns as campaign_queries
from storage import customers as customer_queries
from storage import outbox as outbox_queries
from storage import points as point_queries
from storage import recommend as recommend_queries
from storage.engine import after_commit
from storage.models import Customer
from surveys import queries as survey_queries


async def erase_customer(
    session: AsyncSession, desk: Desk, customer: Customer, now: datetime
) -> None:
    """Erase what the customer sent and who they are from every table it reaches: their record
    (name, username, phone, birthday, Telegram ids), what they wrote (the inbox, tickets,
    survey comments, questions to the knowledge base), what was sent to them or about them
    (outbox and delivery payloads, their chat id), the tickets' topic titles, their points
    ledger, the products recommended to them, the campaigns queued for them. Counts stay,
    anonymous: orders and their lines, tickets, scores. On SQLite the write-ahead log is
    emptied once this commits, so the old pages are gone from the files too."""
    await customer_queries.erase_personal_data(session, customer, now)
    await forget_customer(session, desk, customer.id, now)
    await survey_queries.erase_texts(session, customer.id)
    await point_queries.erase(session, customer.id)
    await campaign_queries.erase(session, customer.id)
    await outbox_queries.cancel_erased(session, now=now, customer_id=customer.id)
    await outbox_queries.erase_payloads(session, customer_id=customer.id)
    await recommend_queries.erase_recommendations(session, customer.id)
    path = customer_queries.sqlite_file(session)
    if path is not None:
        await after_commit(lambda: customer_queries.checkpoint(path))


async def export_customer(session: AsyncSession, customer_id: int) -> dict[str, Any] | None:
    """Everything stored about the customer, table by table; None if there is no such customer."""
    if await session.get(Customer, customer_id) is None:
        return None
    return {
        "customer_id": customer_id,
        "tables": await customer_queries.personal_record(session, customer_id),
    }
