"""One active dispatcher per database.

Telegram's limits are per bot, so the dispatcher that paces sends must be the only one sending
(otherwise two processes would each send 30 a second). Every dispatcher first takes a lock and
stands by while another process holds it; the lock dies with its holder, so a standby takes
over after a crash without any clean-up.

- **SQLite**: an OS file lock (``fcntl.flock``, exclusive, non-blocking) on
  ``<database file>.dispatcher.lock`` beside the database. The kernel drops it when the
  holding process exits for any reason, SIGKILL included. This is also what keeps two
  dispatchers from draining one SQLite file at once: claims there are plain UPDATEs, with no
  row locks to skip.
- **PostgreSQL**: a session-level advisory lock (``pg_try_advisory_lock``) held on a dedicated
  connection; the server drops it when that connection closes. With ``exclusive = false`` in
  ``outbox.toml`` there is no lock: several dispatchers drain together and ``FOR UPDATE SKIP
  LOCKED`` claims keep them off each other's rows.

Holding an exclusive lock (``DispatchLock.exclusive``) means every other dispatcher on the
database is gone, so the dispatcher that takes it reclaims the rows still claimed at once
(``Dispatcher._reclaim``) instead of waiting out their lease.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from pathlib import Path
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage import outbox as outbox_queries

logger = logging.getLogger(__name__)

ADVISORY_KEY = int.from_bytes(
    hashlib.sha256(b"carebot:outbox-dispatcher").digest()[:8], "big", signed=True
)


class DispatchLock(Protocol):
    exclusive: bool
    """True when holding the lock means no other dispatcher runs on this database (so rows
    still claimed when it is taken belong to a dispatcher that died)."""

    async def acquire(self) -> bool:
        """Take the lock if it is free; True when this process now holds it."""
        ...

    async def held(self) -> bool:
        """Whether the lock is still ours (a dropped database connection loses it)."""
        ...

    async def release(self) -> None: ...


class NoLock:
    """Several dispatchers may run (PostgreSQL with ``exclusive = false``)."""

    exclusive = False

    async def acquire(self) -> bool:
        return True

    async def held(self) -> bool:
        return True

    async def release(self) -> None:
        return None


class FileLock:
    """``flock`` on a file beside the SQLite database; released by the kernel on exit."""

    exclusive = True

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    async def acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    async def held(self) -> bool:
        return self._fd is not None

    async def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class AdvisoryLock:
    """A PostgreSQL advisory lock on a connection kept open while dispatching."""

    exclusive = True

    def __init__(self, engine: AsyncEngine, key: int = ADVISORY_KEY) -> None:
        self._engine = engine
        self._key = key
        self._connection: AsyncConnection | None = None

    async def acquire(self) -> bool:
        if self._connection is not None:
            return True
        connection = await self._engine.connect()
        try:
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            if await outbox_queries.try_advisory_lock(connection, self._key):
                self._connection = connection
                return True
        except BaseException:
            await connection.close()
            raise
        await connection.close()
        return False

    async def held(self) -> bool:
        if self._connection is None:
            return False
        try:
            await outbox_queries.ping(self._connection)
        except Exception:
            logger.warning("lost the dispatcher lock's database connection")
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None
            return False
        return True

    async def release(self) -> None:
        if self._connection is None:
            return
        try:
            await outbox_queries.advisory_unlock(self._connection, self._key)
        finally:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None


def lock_for(engine: AsyncEngine, *, exclusive: bool) -> DispatchLock:
    """The lock that fits the engine's database; see the module docstring."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:") or database.startswith("file::memory:"):
            return NoLock()  # an in-memory database lives in one process anyway
        return FileLock(Path(f"{database}.dispatcher.lock"))
    return AdvisoryLock(engine) if exclusive else NoLock()
