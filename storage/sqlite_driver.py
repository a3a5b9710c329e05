"""SQLite under SQLAlchemy's aiosqlite dialect, with one thread hop per statement.

aiosqlite runs every call on its worker thread and wakes the event loop for each: SQLAlchemy's
adapter creates a cursor, executes, fetches and closes it, four hops per statement, and a
commit and the pool's rollback on check-in make two more. The hops, not SQLite, were most of
the cost of an update (about 130 microseconds of CPU each here; an indexed lookup or a WAL
commit with ``synchronous=NORMAL`` takes tens). This module gives the dialect an
aiosqlite-shaped connection that does the whole statement in one call (execute, fetch every
row, close) and skips commits and rollbacks when no transaction is open. The SQL, the types and
the code path are SQLAlchemy's, as with aiosqlite and as on PostgreSQL; only the connection
underneath changes.

Where the calls run:

- ``threaded`` (the default for a database file): on one worker thread per connection, like
  aiosqlite; a long statement (a nightly tier run over a million customers) leaves the event
  loop free.
- ``inline`` (opt-in, ``create_engine(inline=True)``): on the event loop itself, no hop at all.
  A statement blocks the loop while it runs, and a transaction waiting on SQLite's lock would
  block the task holding it, so ``storage.engine`` gives an inline engine a single connection.

Rows are buffered: a result is read whole when its statement runs, so nothing streams. carebot's
queries aggregate in SQL; none reads millions of rows into Python.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from queue import SimpleQueue
from typing import Any, TypeVar

T = TypeVar("T")

Outcome = tuple[list[Any], Any, int, int | None]
"""What a statement left behind: its rows, description, rowcount and lastrowid."""


def _execute(connection: sqlite3.Connection, sql: str, parameters: Sequence[Any]) -> Outcome:
    cursor = connection.cursor()
    try:
        cursor.execute(sql, parameters)
        rows = cursor.fetchall() if cursor.description else []
        return rows, cursor.description, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


def _execute_many(
    connection: sqlite3.Connection, sql: str, parameters: Iterable[Sequence[Any]]
) -> Outcome:
    cursor = connection.cursor()
    try:
        cursor.executemany(sql, parameters)
        return [], cursor.description, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class _Worker:
    """One thread that runs calls in order and hands each result back to the caller's loop."""

    def __init__(self) -> None:
        self._jobs: SimpleQueue[Callable[[], None] | None] = SimpleQueue()
        threading.Thread(target=self._serve, name="carebot-sqlite", daemon=True).start()

    def call(self, function: Callable[[], T]) -> asyncio.Future[T]:
        """Run ``function`` on the thread; its result (or error) arrives in the future."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def job() -> None:
            try:
                result = function()
            except BaseException as error:  # handed to the caller, raised there
                _settle(loop, future.set_exception, future, error)
            else:
                _settle(loop, future.set_result, future, result)

        self._jobs.put(job)
        return future

    def stop(self, last: Callable[[], object] | None = None) -> None:
        """Finish the calls already queued and ``last`` (errors ignored), then end the thread."""
        if last is not None:
            self._jobs.put(lambda: _quietly(last))
        self._jobs.put(None)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()


def _settle(
    loop: asyncio.AbstractEventLoop,
    setter: Callable[[Any], None],
    future: asyncio.Future[Any],
    value: Any,
) -> None:
    def settle() -> None:
        if not future.done():  # the caller may have been cancelled meanwhile
            setter(value)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
        loop.call_soon_threadsafe(settle)


def _quietly(function: Callable[[], object]) -> None:
    with contextlib.suppress(Exception):
        function()


class SqliteCursor:
    """An aiosqlite-shaped cursor: ``execute`` runs, reads and closes in one call."""

    def __init__(self, connection: SqliteConnection) -> None:
        self._connection = connection
        self._rows: list[Any] = []
        self._next = 0
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    async def __aenter__(self) -> SqliteCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> SqliteCursor:
        self._keep(await self._connection.run(_execute, sql, parameters or ()))
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> SqliteCursor:
        self._keep(await self._connection.run(_execute_many, sql, list(parameters)))
        return self

    def _keep(self, outcome: Outcome) -> None:
        self._rows, self.description, self.rowcount, self.lastrowid = outcome
        self._next = 0

    async def fetchone(self) -> Any:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        start = self._next
        self._next = min(len(self._rows), start + (size if size is not None else self.arraysize))
        return self._rows[start : self._next]

    async def fetchall(self) -> list[Any]:
        start, self._next = self._next, len(self._rows)
        return self._rows[start:]

    async def nextset(self) -> None:
        return None

    async def close(self) -> None:
        self._rows = []


class SqliteConnection:
    """An aiosqlite-shaped connection over a plain ``sqlite3`` connection; its calls run on
    ``worker`` (a thread of its own) or, without one, inline on the event loop."""

    def __init__(self, connection: sqlite3.Connection, worker: _Worker | None) -> None:
        self._conn = connection
        self._worker = worker
        # None once closed: SQLAlchemy's dialect reads it (as aiosqlite's) before commits.
        self._connection: sqlite3.Connection | None = connection

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(sqlite3_connection, *args)`` where this connection's calls run."""
        if self._connection is None:
            raise ValueError("no active connection")
        if self._worker is None:
            return function(self._conn, *args)
        return await self._worker.call(lambda: function(self._conn, *args))

    def cursor(self) -> SqliteCursor:
        if self._connection is None:
            raise ValueError("no active connection")
        return SqliteCursor(self)

    # ``in_transaction`` is read between calls (SQLAlchemy runs one at a time on a connection):
    # the pool's rollback on check-in and a read-only unit of work's commit cost no hop.
    async def commit(self) -> None:
        if self._conn.in_transaction:
            await self.run(sqlite3.Connection.commit)

    async def rollback(self) -> None:
        if self._conn.in_transaction:
            await self.run(sqlite3.Connection.rollback)

    async def close(self) -> None:
        if self._connection is not None:
            await self.run(sqlite3.Connection.close)
            self._connection = None
            if self._worker is not None:
                self._worker.stop()

    def stop(self) -> None:
        """Terminate without waiting (SQLAlchemy's ``terminate`` on an invalidated connection)."""
        if self._connection is None:
            return
        self._connection = None
        if self._worker is None:
            self._conn.close()
        else:
            self._worker.stop(last=self._conn.close)

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        await self.run(lambda connection: connection.create_function(*args, **kwargs))

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level


def sqlite_connector(database: str, *, inline: bool) -> Callable[[], Any]:
    """The ``async_creator`` for ``create_async_engine``: a fresh connection to ``database``,
    threaded (one worker thread each) or inline."""

    def open_database() -> sqlite3.Connection:
        # pysqlite's default transaction handling, which SQLAlchemy's dialect expects.
        return sqlite3.connect(database, check_same_thread=False)

    async def connect() -> SqliteConnection:
        if inline:
            return SqliteConnection(open_database(), None)
        worker = _Worker()
        try:
            return SqliteConnection(await worker.call(open_database), worker)
        except BaseException:
            worker.stop()
            raise

    return connect
