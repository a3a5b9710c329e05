"""The inbound log stores many messages in one statement on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import inbox as inbox_queries
from storage.models import Customer, InboxUpdate, KbHandoff
from tests.auxil.harness import Harness

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
        "thread_id": None,
        "payload": "{}",
    }


async def _store(session: AsyncSession, rows: list[dict[str, object]]) -> set[int]:
    """The update ids the inbox took as new."""
    return set(await inbox_queries.store(session, rows))


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
        new = await _store(session, [_row(1, 11), _row(2, 22), _row(3, 11)])
    assert new == {1, 2, 3}
    async with sessionmaker.begin() as session:
        again = await _store(session, [_row(3, 11), _row(4, 22)])
    assert again == {4}
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                select(InboxUpdate.update_id, InboxUpdate.customer_id).order_by(
                    InboxUpdate.update_id
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


async def test_a_redelivered_message_or_button_press_is_handled_once(harness: Harness) -> None:
    """Telegram redelivers an update whose webhook answer it missed; with several bot processes
    the copy may reach another one. The update id makes the copy a no-op."""
    api = harness.api
    ada = api.add_user(7001, "Ada", language_code="en")
    question = await api.send_text(ada, "what is the capital of france")
    reply = (await api.wait_for_sent(ada.id, 1))[0]
    person = next(data for _, data in reply.buttons() if data.startswith("kb:person:"))
    press = await api.press_button(ada, reply, person)
    await api.wait_for_sent(ada.id, 2)

    answered = [m.text for m in api.sent(ada.id)]

    await api.send_raw_update(question)
    await api.send_raw_update(press)
    # A fresh message after the copies: once it is answered, the copies have been dealt with
    # (a wrongly handled copy would have been answered before it).
    help_answer = await harness.barrier(ada)
    assert [m.text for m in api.sent(ada.id)] == [*answered, help_answer.text]
    async with harness.sessionmaker() as session:
        handoffs = (await session.execute(select(func.count()).select_from(KbHandoff))).scalar()
        kinds = (
            await session.execute(select(InboxUpdate.kind).order_by(InboxUpdate.update_id))
        ).scalars()
        assert (handoffs, list(kinds)) == (1, ["text", "button", "text"])
