"""``carebot kb reload`` reaches every bot process through the database: the command raises a
version (``storage.kb.request_reload``) and each process reads it every ``KB_RELOAD_CHECK``,
loading the knowledge-base files again when it changed. Nothing is written next to the files, so
a read-only config directory (the Docker image's) reloads too."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handlers.answers.kb import KbLibrary
from scheduler.wiring import PeriodicJob
from storage.kb import reload_version

KB_RELOAD_CHECK = timedelta(seconds=2)


class KbReloadWatch:
    """The job's state: the version this process loaded last."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], library: KbLibrary) -> None:
        self._sessions = sessionmaker
        self._library = library
        self._seen: int | None = None

    async def prime(self) -> None:
        """Remember the version of the files loaded at start-up (read it before they are used:
        a reload asked for later is followed)."""
        async with self._sessions() as session:
            self._seen = await reload_version(session)

    async def run(self, _now: datetime) -> bool:
        """Load the files again if a reload was asked for since; True when it was."""
        async with self._sessions() as session:
            version = await reload_version(session)
        if version == self._seen:
            return False
        self._seen = version
        return self._library.reload()


def kb_reload_jobs(watch: KbReloadWatch) -> list[PeriodicJob]:
    """The job following ``carebot kb reload``."""
    return [PeriodicJob("kb.reload", KB_RELOAD_CHECK, watch.run)]
