"""carebot's SQLite connection (``storage.sqlite_driver``) behaves like aiosqlite under
SQLAlchemy, threaded (the default) and inline, with one worker call per statement."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from storage import inbox as inbox_queries
from storage import sqlite_driver
from storage.engine import create_engine, create_sessionmaker
from storage.models import InboxUpdate
from tests.auxil import databases

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
# A statement that keeps SQLite busy for a while (tens of milliseconds or more).
SLOW_COUNT = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) "
    "SELECT count(*) FROM n"
)


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
        "thread_id": None,
        "payload": "{}",
    }


@pytest.fixture(params=[False, True], ids=["threaded", "inline"])
async def engine(
    request: pytest.FixtureRequest, sqlite_template: Path, tmp_path: Path
) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(databases.sqlite_copy(sqlite_template, tmp_path), inline=request.param)
    yield engine
    await engine.dispose()


async def _store(session: AsyncSession, rows: list[dict[str, object]]) -> set[int]:
    """The update ids the inbox took as new."""
    return set(await inbox_queries.store(session, rows))


async def test_commit_rollback_and_errors(engine: AsyncEngine) -> None:
    sessionmaker = create_sessionmaker(engine)
    async with engine.connect() as connection:
        pragmas = [
            (await connection.execute(text(f"PRAGMA {name}"))).scalar()
            for name in ("journal_mode", "synchronous", "foreign_keys")
        ]
    assert pragmas == ["wal", 1, 1]

    async with sessionmaker.begin() as session:
        new = await _store(session, [_row(1), _row(2)])
    assert new == {1, 2}
    async with sessionmaker.begin() as session:  # a redelivery is recognised
        assert await _store(session, [_row(2), _row(3)]) == {3}

    with pytest.raises(RuntimeError):
        async with sessionmaker.begin() as session:
            await _store(session, [_row(4)])
            raise RuntimeError("rule failed")
    with pytest.raises(IntegrityError):
        async with sessionmaker.begin() as session:
            session.add(InboxUpdate(**{**_row(5), "kind": None}))
    async with sessionmaker() as session:
        count = (await session.execute(select(func.count(InboxUpdate.id)))).scalar_one()
    assert count == 3  # 1, 2, 3: the rolled-back and the refused rows are not there


async def test_cursor_reads_rows_counts_and_ids(engine: AsyncEngine) -> None:
    connection = await engine.connect()
    try:
        driver = (await connection.get_raw_connection()).driver_connection
        assert isinstance(driver, sqlite_driver.SqliteConnection)
        cursor = driver.cursor()
        await cursor.execute("CREATE TEMP TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        await cursor.executemany("INSERT INTO t (v) VALUES (?)", [("a",), ("b",), ("c",)])
        assert cursor.rowcount == 3
        await cursor.execute("INSERT INTO t (v) VALUES (?)", ("d",))
        assert cursor.lastrowid == 4
        await cursor.execute("UPDATE t SET v = upper(v) WHERE id <= ?", (2,))
        assert cursor.rowcount == 2
        await cursor.execute("SELECT id, v FROM t ORDER BY id")
        assert [column[0] for column in cursor.description] == ["id", "v"]
        assert await cursor.fetchone() == (1, "A")
        assert await cursor.fetchmany(2) == [(2, "B"), (3, "c")]
        assert await cursor.fetchall() == [(4, "d")]
        assert await cursor.fetchone() is None
        await driver.rollback()
    finally:
        await connection.close()


async def test_one_worker_call_per_statement_and_none_for_idle_commits(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiosqlite under SQLAlchemy makes four calls per statement (cursor, execute, fetch,
    close) and one per commit or rollback, open transaction or not."""
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session:  # connect before counting
        await session.execute(text("SELECT 1"))
    calls: list[str] = []
    real_run = sqlite_driver.SqliteConnection.run

    async def counted(self: sqlite_driver.SqliteConnection, function: Any, *args: Any) -> Any:
        calls.append(getattr(function, "__name__", "?"))
        return await real_run(self, function, *args)

    monkeypatch.setattr(sqlite_driver.SqliteConnection, "run", counted)
    async with sessionmaker() as session:  # read only: no commit, no rollback on check-in
        assert (await session.execute(text("SELECT 41 + 1"))).scalar_one() == 42
    assert calls == ["_execute"]
    calls.clear()
    async with sessionmaker.begin() as session:
        await _store(session, [_row(9)])
    assert calls == ["_execute", "commit"]


async def test_threaded_statement_leaves_the_event_loop_free(
    sqlite_template: Path, tmp_path: Path
) -> None:
    """The default: a long statement (a nightly job's) runs on the worker thread while the
    loop goes on; inline, the loop would stand still until it ends."""
    engine = create_engine(databases.sqlite_copy(sqlite_template, tmp_path))
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))  # connected before the race starts
            ticking = asyncio.create_task(ticker())
            await asyncio.sleep(0)
            before = ticks
            assert (await connection.execute(text(SLOW_COUNT))).scalar_one() == 3_000_000
            during = ticks - before
            done.set()
            await ticking
    finally:
        await engine.dispose()
    assert during > 10


async def test_a_cancelled_statement_leaves_the_engine_usable(
    sqlite_template: Path, tmp_path: Path
) -> None:
    engine = create_engine(databases.sqlite_copy(sqlite_template, tmp_path))
    sessionmaker = create_sessionmaker(engine)
    try:

        async def slow() -> None:
            async with sessionmaker() as session:
                await session.execute(text(SLOW_COUNT))

        task = asyncio.create_task(slow())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with sessionmaker.begin() as session:
            assert await _store(session, [_row(11)]) == {11}
        async with sessionmaker() as session:
            count = (await session.execute(select(func.count(InboxUpdate.id)))).scalar_one()
        assert count == 1
    finally:
        await engine.dispose()
