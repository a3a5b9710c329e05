"""SQLite without the thread hop: the aiosqlite interface, executed inline on the event loop.

aiosqlite runs every call (cursor, execute, fetch, commit) on a worker thread and wakes the loop
for each one; with SQLAlchemy on top that is a dozen thread hops per unit of work, and the hops,
not SQLite, were most of the cost of storing an update (see the README's benchmarks). SQLite is
an in-process library whose key lookups and WAL commits (``synchronous=NORMAL``) take tens of
microseconds, so carebot calls it directly. SQLAlchemy's aiosqlite dialect is kept (same SQL,
same types, same code path as PostgreSQL); only the connection underneath changes.

Two consequences, handled by ``storage.engine.create_engine``:

- A statement blocks the event loop while it runs. Short ones (the bot's) are fine; set-based
  jobs over a million rows use a threaded engine instead (``inline=False``).
- A transaction that waited on SQLite's lock would block the whole loop, including the task that
  holds the lock. So an inline engine has a single pooled connection: a second unit of work
  waits for it asynchronously (SQLite allows one writer at a time anyway), and nothing inside
  the process ever busy-waits on SQLite's lock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any


class InlineCursor:
    """An aiosqlite-shaped cursor whose coroutines finish without suspending."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> InlineCursor:
        self._cursor.execute(sql, parameters or ())
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> InlineCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def nextset(self) -> None:
        return None

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class InlineConnection:
    """An aiosqlite-shaped connection over a plain ``sqlite3`` connection."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._conn = connection
        self._connection: sqlite3.Connection | None = connection

    def cursor(self) -> InlineCursor:
        if self._connection is None:
            raise ValueError("no active connection")
        return InlineCursor(self._connection.cursor())

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()

    def stop(self) -> None:
        """Terminate (SQLAlchemy's ``terminate`` on an invalidated connection)."""
        if self._connection is not None:
            self._connection = None
            self._conn.close()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level


def inline_connector(database: str) -> Any:
    """The ``async_creator`` for ``create_async_engine``: a fresh inline connection."""

    async def connect() -> InlineConnection:
        # pysqlite's default transaction handling, which SQLAlchemy's dialect expects.
        return InlineConnection(sqlite3.connect(database, check_same_thread=False))

    return connect
