"""A rule's transaction as the bot runs it, for tests that call rules without Telegram."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.engine import Sessions


@asynccontextmanager
async def unit_of_work(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One unit of work (``storage.engine.Sessions.unit``), as the inbox runs an update's rules;
    once it has committed, what they left for after the commit runs (replies, the SQLite
    checkpoint after an erasure). Under a plain ``begin()`` those run at once, inside the
    transaction that is still open: the checkpoint then waits out SQLite's busy timeout."""
    assert isinstance(sessionmaker, Sessions)
    async with sessionmaker.unit() as unit:
        yield unit.session
    for action in unit.after_commit:
        await action()
