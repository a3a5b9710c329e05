"""Every process re-reads the staff group ``/setup`` stored (``staff_group.refresh``, every
``STAFF_GROUP_REFRESH``): another process may have run it.

The process that ran ``/setup`` uses the new group at once and gave the waiting tickets their
topics in the same transaction. When a process sees the group change, it gives topics to the
tickets still without one, then once more at the next tick: a ticket another handler opened
while the group was unknown here, committed after that pass, is caught by the second one.
With ``CAREBOT_STAFF_CHAT_ID`` fixing ``main``, the other named groups are still read.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handlers.staff.setup import load_stored_group
from handlers.tickets.desk import STAFF_GROUP_REFRESH, Desk
from handlers.tickets.lanes import give_topics
from scheduler.wiring import PeriodicJob
from storage.staff_group import stored_staff_groups

logger = logging.getLogger(__name__)

PASSES_AFTER_A_CHANGE = 2


class StaffGroupWatch:
    """The refresh job's state: the groups it saw last, and the passes still to run."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], desk: Desk) -> None:
        self._sessions = sessionmaker
        self._desk = desk
        self._seen: dict[str, int] | None = None
        self._passes = PASSES_AFTER_A_CHANGE  # the first tick after start-up checks too

    async def run(self, now: datetime) -> int:
        """Re-read the groups; after a change, give waiting tickets their topics. Returns how
        many topic lanes moved."""
        async with self._sessions() as session:
            stored = await stored_staff_groups(session)
        if stored != self._seen:
            if self._seen is not None or stored != self._desk.group.chats:
                logger.info("staff groups are now %s (set by /setup)", stored)
            self._seen, self._passes = stored, PASSES_AFTER_A_CHANGE
        if self._passes == 0:
            return 0
        self._passes -= 1
        async with self._sessions.begin() as session:
            await load_stored_group(session, self._desk.group)
            return await give_topics(session, self._desk, now)


def staff_group_jobs(
    sessionmaker: async_sessionmaker[AsyncSession], desk: Desk
) -> list[PeriodicJob]:
    """The refresh job (the setting may fix ``main``; ``/setup <name>`` adds others)."""
    watch = StaffGroupWatch(sessionmaker, desk)
    return [PeriodicJob("staff_group.refresh", STAFF_GROUP_REFRESH, watch.run)]
