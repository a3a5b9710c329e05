"""APScheduler 3 inside the bot process: a handful of periodic jobs, and the dispatcher task.

The database is the truth, APScheduler is only the clock (design, Principle 1): every job is a
fixed, named, periodic job (``outbox.prune``, ``outbox.report`` and the planners later features
add), never a job per customer, and the in-memory job store holds nothing that must survive a
restart. A job gets the injected clock's ``now()`` rather than reading the time itself, so a
test calls the same function with a ``ManualClock`` and runs a year of planning in a second.

Jobs coalesce and never overlap (``max_instances=1``); a job that raises is logged by
APScheduler and simply runs again at its next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.kernel.clock import Clock
from bot.kernel.config import OutboxConfig
from storage import outbox as outbox_queries

logger = logging.getLogger(__name__)

JobFunction = Callable[[datetime], Awaitable[object]]


@dataclass(frozen=True)
class PeriodicJob:
    """``run(now)`` every ``every``; ``id`` is stable so the job is findable and unique."""

    id: str
    every: timedelta
    run: JobFunction


class LongRunning(Protocol):
    """The dispatcher, seen from here (this module stays free of Telegram types)."""

    async def run(self, stop: asyncio.Event) -> None: ...


async def run_job(job: PeriodicJob, clock: Clock) -> None:
    """One tick of ``job`` at the injected clock's time (APScheduler calls this)."""
    await job.run(clock.now())


def build_scheduler(jobs: Sequence[PeriodicJob], clock: Clock) -> AsyncIOScheduler:
    """An AsyncIOScheduler with ``jobs``, not started (``start()`` needs a running loop)."""
    scheduler = AsyncIOScheduler(
        timezone=UTC,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
    )
    for job in jobs:
        scheduler.add_job(
            run_job,
            IntervalTrigger(seconds=job.every.total_seconds(), timezone=UTC),
            args=(job, clock),
            id=job.id,
            name=job.id,
            replace_existing=True,
        )
    return scheduler


def outbox_jobs(
    sessionmaker: async_sessionmaker[AsyncSession], rules: OutboxConfig
) -> list[PeriodicJob]:
    """The outbox's own housekeeping: prune old sent rows, log the queue's health."""

    async def prune(now: datetime) -> int:
        before = now - timedelta(days=rules.dispatch.keep_sent_days)
        removed = 0
        while True:  # in slices, so no transaction holds the table for long
            async with sessionmaker.begin() as session:
                count = await outbox_queries.prune_sent(session, before=before)
            removed += count
            if count == 0:
                return removed

    async def report(now: datetime) -> None:
        async with sessionmaker() as session:
            stats = await outbox_queries.stats(session)
        by_state: dict[str, int] = {}
        for (state, _kind), count in stats.counts.items():
            by_state[state] = by_state.get(state, 0) + count
        late = (now - stats.oldest_due).total_seconds() if stats.oldest_due else 0.0
        log = logger.warning if by_state.get(outbox_queries.State.DEAD, 0) else logger.info
        log(
            "outbox: %s; oldest waiting row due %.0f s ago",
            ", ".join(f"{state}={count}" for state, count in sorted(by_state.items())) or "empty",
            max(late, 0.0),
        )

    return [
        PeriodicJob("outbox.prune", timedelta(hours=1), prune),
        PeriodicJob("outbox.report", timedelta(minutes=5), report),
    ]


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("the dispatcher stopped on an error", exc_info=task.exception())


class Background:
    """What runs beside the bot's handlers: the dispatcher task and the scheduler's jobs.

    ``start()`` after the Application started, ``stop()`` before it stops (``bot.runner``).
    """

    def __init__(self, dispatcher: LongRunning, jobs: Sequence[PeriodicJob], clock: Clock) -> None:
        self._dispatcher = dispatcher
        self._jobs = list(jobs)
        self._clock = clock
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.scheduler: AsyncIOScheduler | None = None

    async def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(self._dispatcher.run(self._stop), name="dispatcher")
        self._task.add_done_callback(_report_crash)
        self.scheduler = build_scheduler(self._jobs, self._clock)
        self.scheduler.start()

    async def stop(self) -> None:
        """Stop the jobs, then let the dispatcher finish its sends and give its rows back."""
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=40)
            except TimeoutError:
                logger.error("dispatcher did not stop in time; its leases will expire")
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
