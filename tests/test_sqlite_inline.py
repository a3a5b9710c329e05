"""The opt-in inline SQLite driver behaves like aiosqlite under SQLAlchemy."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from storage import customers as customer_queries
from storage.engine import create_engine, create_sessionmaker
from storage.models import InboundMessage
from tests.auxil import databases

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _row(update_id: int) -> dict[str, object]:
    return {
        "update_id": update_id,
        "chat_id": 7,
        "telegram_message_id": update_id,
        "sender_user_id": 7,
        "kind": "text",
        "text": "hello",
        "media_file_id": None,
        "edited": False,
        "received_at": NOW,
    }


async def test_commit_rollback_and_errors(sqlite_template: Path, tmp_path: Path) -> None:
    url = databases.sqlite_copy(sqlite_template, tmp_path)
    engine = create_engine(url, inline=True)
    sessionmaker = create_sessionmaker(engine)
    try:
        async with engine.connect() as connection:
            pragmas = [
                (await connection.execute(text(f"PRAGMA {name}"))).scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys")
            ]
        assert pragmas == ["wal", 1, 1]

        async with sessionmaker.begin() as session:
            new = await customer_queries.log_inbound_many(session, [_row(1), _row(2)])
        assert new == {1, 2}
        async with sessionmaker.begin() as session:  # a redelivery is recognised
            assert await customer_queries.log_inbound_many(session, [_row(2), _row(3)]) == {3}

        with pytest.raises(RuntimeError):
            async with sessionmaker.begin() as session:
                await customer_queries.log_inbound_many(session, [_row(4)])
                raise RuntimeError("rule failed")
        with pytest.raises(IntegrityError):
            async with sessionmaker.begin() as session:
                session.add(InboundMessage(**{**_row(5), "kind": None}))
        async with sessionmaker() as session:
            count = (await session.execute(select(func.count(InboundMessage.id)))).scalar_one()
        assert count == 3  # 1, 2, 3: the rolled-back and the refused rows are not there
    finally:
        await engine.dispose()
