"""SQLite units of work take turns inside the process (``storage.engine.create_sessionmaker``);
PostgreSQL's do not."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from storage import engine as engine_module
from storage.engine import create_engine, create_sessionmaker
from tests.auxil import databases


async def test_sqlite_units_of_work_take_turns_and_reads_do_not_wait(
    sqlite_template: Path, tmp_path: Path
) -> None:
    engine = create_engine(databases.sqlite_copy(sqlite_template, tmp_path))
    sessionmaker = create_sessionmaker(engine)
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
        await asyncio.sleep(0.05)
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
