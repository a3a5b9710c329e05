"""Engine and session factory for SQLite (embedded default) and PostgreSQL (scale-out)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from storage.sqlite_driver import sqlite_connector

SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
SQLITE_BUSY_TIMEOUT_MS = 10_000
WRITE_TURN_TIMEOUT_SECONDS = 30.0


def parse_database_url(url: str) -> URL:
    """Parse and check a database URL; raises ValueError naming what was expected."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # SQLAlchemy raises ArgumentError with the raw text
        raise ValueError(
            "expected a URL like sqlite+aiosqlite:///carebot.db or "
            "postgresql+asyncpg://user@host/dbname"
        ) from exc
    if parsed.drivername not in SUPPORTED_DRIVERS:
        raise ValueError(f"expected a driver among {', '.join(SUPPORTED_DRIVERS)}")
    if parsed.drivername.startswith("postgresql") and not parsed.database:
        raise ValueError("expected a database name in the PostgreSQL URL")
    return parsed


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # Deleted rows are overwritten with zeros, not left in free pages of the file (erasure).
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def create_engine(url: str, *, inline: bool = False, **kwargs: Any) -> AsyncEngine:
    """Create the async engine; SQLite gets WAL, synchronous=NORMAL, foreign keys, busy timeout
    and secure delete.

    A database error never quotes the values it was given (``hide_parameters``): its text
    reaches the logs, and the values are what customers wrote.

    A SQLite file is opened through ``storage.sqlite_driver``: one thread hop per statement
    instead of aiosqlite's four. ``inline=True`` runs it on the event loop instead, with no hop
    at all, on one pooled connection. That is opt-in: a statement blocks the loop while it
    runs, so a long one (a nightly tier run, a dashboard page over a big table) would stop the
    bot meanwhile, and a session opened inside another would wait for the one connection.
    """
    parsed = parse_database_url(url)
    is_sqlite = parsed.get_backend_name() == "sqlite"
    if is_sqlite and parsed.database not in (None, "", ":memory:"):
        kwargs.setdefault("async_creator", sqlite_connector(parsed.database, inline=inline))
        if inline:
            kwargs.setdefault("pool_size", 1)
            kwargs.setdefault("max_overflow", 0)
    kwargs.setdefault("hide_parameters", True)
    engine = create_async_engine(parsed, **kwargs)
    if is_sqlite:
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


@dataclass
class UnitOfWork:
    """One transaction shared by everything that runs inside it (the inbox handles a
    conversation's waiting updates in one), and what to do once it has committed."""

    session: AsyncSession
    after_commit: list[Callable[[], Awaitable[object]]] = field(default_factory=list)
    failed: BaseException | None = None
    """Set when a rule inside the unit raised: the unit must roll back, not commit."""


_CURRENT_UNIT: ContextVar[UnitOfWork | None] = ContextVar("carebot_unit_of_work", default=None)


def current_unit() -> UnitOfWork | None:
    """The unit of work the running code is part of, if any."""
    return _CURRENT_UNIT.get()


async def after_commit(action: Callable[[], Awaitable[object]]) -> None:
    """Run ``action`` once the current unit of work has committed, or at once outside one:
    a reply goes out only for effects that are stored, and never for a rolled-back attempt."""
    unit = _CURRENT_UNIT.get()
    if unit is None:
        await action()
    else:
        unit.after_commit.append(action)


def mark_unit_failed(error: BaseException) -> None:
    """The current unit of work must roll back (a rule failed and its error was handled)."""
    unit = _CURRENT_UNIT.get()
    if unit is not None and unit.failed is None:
        unit.failed = error


class Sessions(async_sessionmaker[AsyncSession]):
    """Sessions whose ``begin()`` joins the current unit of work when there is one.

    On SQLite, a unit of work that may write (``begin()``) also waits its turn in the process.
    SQLite has one writer at a time. Without a queue, concurrent units of work on pooled
    connections meet at SQLite's lock, and the losers sleep in its busy handler's backoff steps
    (up to 100 ms each): the tail of the update latency. Queued here, they wait exactly as
    long as the one before them takes. Read-only sessions (``sessionmaker()``) do not queue.
    """

    def __init__(self, engine: AsyncEngine, *, turn: asyncio.Lock | None = None) -> None:
        super().__init__(engine, expire_on_commit=False)
        self.engine = engine
        self.dialect: str = engine.dialect.name
        self._turn = (turn or asyncio.Lock()) if self.dialect == "sqlite" else None

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:  # type: ignore[override]
        unit = _CURRENT_UNIT.get()
        if unit is not None:
            try:
                yield unit.session
            except BaseException as error:
                mark_unit_failed(error)
                raise
            return
        if self._turn is None:
            async with super().begin() as session:
                yield session
            return
        try:
            async with asyncio.timeout(WRITE_TURN_TIMEOUT_SECONDS):
                await self._turn.acquire()
        except TimeoutError:
            raise TimeoutError(
                f"no turn to write to SQLite within {WRITE_TURN_TIMEOUT_SECONDS:g} s "
                "(a unit of work holding it for that long, or opening a second one inside it)"
            ) from None
        try:
            async with super().begin() as session:
                yield session
        finally:
            self._turn.release()

    @contextlib.asynccontextmanager
    async def unit(self) -> AsyncIterator[UnitOfWork]:
        """One transaction that every ``begin()`` inside joins; it commits when the block ends
        (the caller raises to roll it back) and the caller runs ``after_commit`` afterwards."""
        async with self.begin() as session:
            unit = UnitOfWork(session)
            token = _CURRENT_UNIT.set(unit)
            try:
                yield unit
            finally:
                _CURRENT_UNIT.reset(token)


def create_sessionmaker(engine: AsyncEngine, *, turn: asyncio.Lock | None = None) -> Sessions:
    """Sessions that keep loaded objects usable after commit (handlers render them afterwards),
    join the current unit of work, and on SQLite write one unit at a time (``Sessions``; give
    ``turn`` to share the turns with other sessions on the same file)."""
    return Sessions(engine, turn=turn)


@dataclass
class BotDatabase:
    """A bot process's two ways into one database.

    ``hot``: what every message does (the inbox's units of work, the outbox dispatcher): short
    indexed statements. On SQLite they run on the event loop itself (``inline``): a thread hop
    per statement cost more CPU than the statements, about half of a relayed message's.
    ``background``: the periodic jobs, the dashboard, the metrics: statements that may run long
    (a nightly tier run) stay on a worker thread, off the event loop. On SQLite both write one
    unit of work at a time (one turn), so the loop never waits at SQLite's lock for this
    process; another process writing the file (``carebot import``) makes it wait up to the busy
    timeout. On PostgreSQL both are one engine.
    """

    hot: Sessions
    background: Sessions

    @classmethod
    def open(cls, url: str) -> BotDatabase:
        engine = create_engine(url)
        if engine.dialect.name != "sqlite" or parse_database_url(url).database in (
            None,
            "",
            ":memory:",
        ):
            sessions = create_sessionmaker(engine)
            return cls(sessions, sessions)
        turn = asyncio.Lock()
        inline = create_engine(url, inline=True)
        return cls(create_sessionmaker(inline, turn=turn), create_sessionmaker(engine, turn=turn))

    async def dispose(self) -> None:
        for engine in {self.hot.engine, self.background.engine}:
            await engine.dispose()
