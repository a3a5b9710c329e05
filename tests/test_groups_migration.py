"""Migration 0017 (several staff groups) on a database with data, on SQLite and PostgreSQL: the
one staff group ``/setup`` stored becomes ``main``, tickets belong to ``main`` and their topics
to its chat, so ``ticket_by_topic`` finds them by (chat, thread)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from storage.engine import create_engine, create_sessionmaker
from storage.migrate import upgrade
from storage.models import Customer
from storage.staff_group import stored_staff_groups
from storage.tickets.rows import ticket_by_topic
from tests.auxil import databases

WHEN = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
GROUP = -1001000000001


async def _fill_at_0016(url: str) -> None:
    """The staff group /setup chose and two tickets, one with a topic, at revision 0016."""
    engine = create_engine(url)
    try:
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker.begin() as session:
            customer = Customer(
                telegram_user_id=1, chat_id=1, timezone="UTC", country="CN",
                created_at=WHEN, updated_at=WHEN,
            )  # fmt: skip
            session.add(customer)
            await session.flush()
            await session.execute(
                text(
                    "INSERT INTO staff_group (id, chat_id, title, set_at) "
                    "VALUES (1, :chat, 'Staff', :at)"
                ),
                {"chat": GROUP, "at": WHEN},
            )
            for number, thread in (("C-000001", 501), ("C-000002", None)):
                await session.execute(
                    text(
                        "INSERT INTO tickets (number, customer_id, source, category, status, "
                        "priority, tier, topic_thread_id, topic_closed, opened_at, "
                        "first_response_due, resolution_due, reopen_count, lock_version, "
                        "updated_at) VALUES (:number, :customer, 'complaint', 'delivery', "
                        "'open', 1, 'normal', :thread, false, :at, :at, :at, 0, 0, :at)"
                    ),
                    {"number": number, "customer": customer.id, "thread": thread, "at": WHEN},
                )
    finally:
        await engine.dispose()


async def _check_at_0017(url: str) -> None:
    engine = create_engine(url)
    try:
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session:
            assert await stored_staff_groups(session) == {"main": GROUP}
            found = await ticket_by_topic(session, 501, GROUP)
            assert found is not None and found.number == "C-000001"
            assert await ticket_by_topic(session, 501, GROUP - 1) is None
            rows = await session.execute(
                text("SELECT number, staff_group, staff_chat_id FROM tickets ORDER BY number")
            )
            assert [tuple(row) for row in rows] == [
                ("C-000001", "main", GROUP),
                ("C-000002", "main", None),
            ]
    finally:
        await engine.dispose()


async def _migrate(url: str) -> None:
    databases.blocking(upgrade, url, "0016")
    await _fill_at_0016(url)
    databases.blocking(upgrade, url, "0017")
    await _check_at_0017(url)


async def test_the_one_staff_group_becomes_main_and_tickets_its_on_sqlite(tmp_path: Path) -> None:
    await _migrate(f"sqlite+aiosqlite:///{tmp_path / 'groups.db'}")


async def test_the_one_staff_group_becomes_main_and_tickets_its_on_postgresql() -> None:
    url = databases.blocking(databases.create_empty_postgres_database)
    try:
        await _migrate(url)
    finally:
        databases.drop_postgres_database(url)
