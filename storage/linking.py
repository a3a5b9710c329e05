"""Linking an imported customer (orders, no Telegram) to the Telegram account that writes to us.

The imported row is kept (its orders, RFM and tier history point at it); the row ``/start``
created is folded into it and deleted. Every table with a foreign key to ``customers`` is
re-pointed, found from the models' metadata, so tables added by later features follow without
changes here.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Base, Customer, RfmPending, RfmScore

# Rows keyed by the customer alone: the registered row's copy is dropped, not re-pointed (the
# imported customer's own one stays; RFM is recomputed for it).
_PER_CUSTOMER = (RfmScore.__table__, RfmPending.__table__)


def _unlinked() -> list[ColumnElement[bool]]:
    return [Customer.telegram_user_id.is_(None), Customer.erased_at.is_(None)]


async def find_by_link_code(session: AsyncSession, code: str) -> Customer | None:
    """The imported, not yet linked customer holding this one-time code (locked)."""
    result = await session.execute(
        select(Customer).where(Customer.link_code == code, *_unlinked()).with_for_update()
    )
    return result.scalar_one_or_none()


async def find_by_phone(session: AsyncSession, phone: str, limit: int = 2) -> list[Customer]:
    """Imported, not yet linked customers with this phone (normalised ``+<digits>``)."""
    result = await session.execute(
        select(Customer)
        .where(Customer.phone == phone, Customer.external_id.is_not(None), *_unlinked())
        .order_by(Customer.id)
        .limit(limit)
        .with_for_update()
    )
    return list(result.scalars())


async def move_dependents(session: AsyncSession, keep_id: int, drop_id: int) -> None:
    """Point every row that references customer ``drop_id`` at ``keep_id``."""
    for table in Base.metadata.sorted_tables:
        for foreign_key in table.foreign_keys:
            if foreign_key.column is not Customer.__table__.c.id:
                continue
            column = foreign_key.parent
            if table in _PER_CUSTOMER:
                await session.execute(delete(table).where(column == drop_id))
            else:
                await session.execute(
                    update(table).where(column == drop_id).values({column.name: keep_id})
                )


async def release_telegram_identity(session: AsyncSession, customer: Customer) -> None:
    """Free the registered row's unique Telegram id so the imported row can take it."""
    customer.telegram_user_id = None
    customer.chat_id = None
    await session.flush()


async def delete_customer(session: AsyncSession, customer: Customer) -> None:
    await session.delete(customer)
    await session.flush()


async def unlinked_codes(session: AsyncSession) -> list[tuple[str, str | None, str | None, str]]:
    """(shop customer id, name, phone, link code) of imported customers not on Telegram yet."""
    result = await session.execute(
        select(Customer.external_id, Customer.name, Customer.phone, Customer.link_code)
        .where(Customer.external_id.is_not(None), Customer.link_code.is_not(None), *_unlinked())
        .order_by(Customer.external_id)
    )
    return [(str(ext), name, phone, str(code)) for ext, name, phone, code in result]
