"""SQLite units of work take turns inside the process (``storage.engine.create_sessionmaker``);
PostgreSQL's do not. A database error keeps the values it was given to itself, and SQLite
overwrites what is deleted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from storage import engine as engine_module
from storage.engine import BotDatabase, create_engine, create_sessionmaker
from tests.auxil import databases


class WatchedTurn(asyncio.Lock):
    """The turn units of work take, telling when one has to wait for it."""

    def __init__(self) -> None:
        super().__init__()
        self.contended = asyncio.Event()

    async def acquire(self) -> bool:
        if self.locked():
            self.contended.set()
        return await super().acquire()


async def test_sqlite_units_of_work_take_turns_and_reads_do_not_wait(
    sqlite_template: Path, tmp_path: Path
) -> None:
    engine = create_engine(databases.sqlite_copy(sqlite_template, tmp_path))
    turn = WatchedTurn()
    sessionmaker = create_sessionmaker(engine, turn=turn)
    order: list[str] = []
    first_inside = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> None:
        async with sessionmaker.begin() as session:
            await session.execute(text("SELECT 1"))
            order.append("first in")
            first_inside.set()
            await release_first.wait()
            order.append("first out")

    async def second() -> None:
        await first_inside.wait()
        async with sessionmaker.begin() as session:
            order.append("second in")
            await session.execute(text("SELECT 1"))

    try:
        tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
        await first_inside.wait()
        # A read-only session is not queued behind the unit of work.
        async with sessionmaker() as reader:
            assert (await reader.execute(text("SELECT 2"))).scalar() == 2
        await asyncio.wait_for(turn.contended.wait(), timeout=5)
        assert order == ["first in"]  # the second waits its turn
        release_first.set()
        await asyncio.gather(*tasks)
        assert order == ["first in", "first out", "second in"]
    finally:
        await engine.dispose()


async def test_a_unit_of_work_opened_inside_another_fails_with_the_reason(
    sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "WRITE_TURN_TIMEOUT_SECONDS", 0.1)
    engine = create_engine(databases.sqlite_copy(sqlite_template, tmp_path))
    sessionmaker = create_sessionmaker(engine)
    try:
        async with sessionmaker.begin():
            with pytest.raises(TimeoutError, match="opening a second one inside it"):
                async with sessionmaker.begin():
                    pass  # pragma: no cover - never entered
        async with sessionmaker.begin() as session:  # the turn was given back
            assert (await session.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await engine.dispose()


async def test_postgresql_units_of_work_do_not_queue(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    sessionmaker = create_sessionmaker(engine)
    try:
        async with sessionmaker.begin(), sessionmaker.begin() as inner:
            assert (await inner.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await engine.dispose()


async def test_a_database_error_does_not_quote_the_values_it_was_given(database_url: str) -> None:
    """Its text reaches the logs (``bot.errors``); the values are what a customer wrote."""
    engine = create_engine(database_url)
    words = "call me on 13900001234 about my parcel"
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE private_words (words TEXT UNIQUE)"))
        with pytest.raises(IntegrityError) as error:
            async with engine.begin() as connection:
                for _ in range(2):
                    await connection.execute(
                        text("INSERT INTO private_words VALUES (:words)"), {"words": words}
                    )
        assert "private_words" in str(error.value)  # the statement is still named
        assert words not in str(error.value)
        assert "13900001234" not in str(error.value)
    finally:
        async with engine.begin() as connection:
            await connection.execute(text("DROP TABLE IF EXISTS private_words"))
        await engine.dispose()


async def test_sqlite_overwrites_what_is_deleted(sqlite_template: Path, tmp_path: Path) -> None:
    """``secure_delete`` on every connection, of both ways into a bot's database: a deleted row's
    text does not stay behind in a free page of the file."""
    url = databases.sqlite_copy(sqlite_template, tmp_path)
    database = BotDatabase.open(url)
    path = Path(str(make_url(url).database))
    secret = "Idasecretwords-13900001234"
    try:
        for sessions in (database.hot, database.background):
            async with sessions() as session:
                assert (await session.execute(text("PRAGMA secure_delete"))).scalar() == 1
        async with database.hot.begin() as session:
            await session.execute(
                text(
                    "INSERT INTO inbox (update_id, kind, text, received_at, state, attempts, "
                    "edited) VALUES (:id, 'text', :text, '2026-11-23 09:00:00', 'handled', 0, 0)"
                ),
                [  # rows around it: the page stays in use
                    {"id": number, "text": secret if number == 1 else f"hello {number}"}
                    for number in range(5)
                ],
            )
        async with database.hot.begin() as session:
            await session.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
            assert secret.encode() in _written(path)  # the test sees the file as it is
            await session.execute(text("DELETE FROM inbox WHERE update_id = 1"))
        async with database.hot() as session:
            await session.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    finally:
        await database.dispose()
    assert secret.encode() not in _written(path)


def _written(path: Path) -> bytes:
    """The database file and its WAL and shared-memory files, as they are on disk."""
    return path.read_bytes() + b"".join(
        other.read_bytes() for other in path.parent.glob(f"{path.name}-*")
    )
