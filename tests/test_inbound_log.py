"""The inbound log stores many messages in one statement on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import customers as customer_queries
from storage.models import Customer, InboundMessage

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _row(update_id: int, sender: int) -> dict[str, object]:
    return {
        "update_id": update_id,
        "chat_id": sender,
        "telegram_message_id": update_id,
        "sender_user_id": sender,
        "kind": "text",
        "text": f"message {update_id}",
        "media_file_id": None,
        "edited": False,
        "received_at": NOW,
    }


async def test_a_batch_is_stored_linked_and_redeliveries_recognised(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker.begin() as session:
        session.add(
            Customer(
                telegram_user_id=11,
                chat_id=11,
                language="en",
                timezone="Asia/Shanghai",
                country="CN",
                created_at=NOW,
                updated_at=NOW,
            )
        )
    async with sessionmaker.begin() as session:
        new = await customer_queries.log_inbound_many(
            session, [_row(1, 11), _row(2, 22), _row(3, 11)]
        )
    assert new == {1, 2, 3}
    async with sessionmaker.begin() as session:
        again = await customer_queries.log_inbound_many(session, [_row(3, 11), _row(4, 22)])
    assert again == {4}
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                select(InboundMessage.update_id, InboundMessage.customer_id).order_by(
                    InboundMessage.update_id
                )
            )
        ).all()
        customer_id = (
            await session.execute(select(Customer.id).where(Customer.telegram_user_id == 11))
        ).scalar_one()
    assert [tuple(row) for row in rows] == [
        (1, customer_id),
        (2, None),
        (3, customer_id),
        (4, None),
    ]
