"""The dispatcher and APScheduler inside the bot process: started and stopped by ``serve()``,
a handful of fixed jobs, each run with the injected clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.kernel.clock import ManualClock
from bot.kernel.config import OutboxConfig, load_config
from bot.kernel.texts import Texts
from bot.runner import serve
from bot.sandbox.api import LocalBotApi
from scheduler.wiring import Background, PeriodicJob, build_scheduler, outbox_jobs, run_job
from storage import outbox as outbox_queries
from tests.auxil.harness import harness_settings
from tests.auxil.outbox import NOW, queue_text, rows


async def test_serve_runs_the_dispatcher_beside_the_handlers(
    local_api: LocalBotApi, database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    api = local_api
    api.add_user(4242, "Reader")
    settings = harness_settings(api, database_url)
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve(settings, rules=load_config(settings.config_dir), texts=Texts.load(), stop=stop)
    )
    try:
        async with sessionmaker.begin() as session:
            now = datetime.now(UTC)
            await queue_text(session, "notice:4242", 4242, now=now, text="Your parcel is here")
        sent = await api.wait_for_sent(4242, 1, timeout=10)
        assert sent[0].text == "Your parcel is here"
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
    assert (await rows(sessionmaker))["notice:4242"].state == outbox_queries.State.SENT


async def test_the_scheduler_holds_fixed_jobs_and_runs_them_at_the_clocks_time(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker.begin() as session:
        for key in ("old", "recent"):
            await queue_text(session, key, 1)
    ids = {key: row.id for key, row in (await rows(sessionmaker)).items()}
    async with sessionmaker.begin() as session:
        for key, sent_at in (("old", NOW), ("recent", NOW + timedelta(days=80))):
            await outbox_queries.mark_sent(session, ids[key], telegram_message_id=1, now=sent_at)

    clock = ManualClock(NOW + timedelta(days=100))  # 100 days later, in no time
    jobs = outbox_jobs(sessionmaker, OutboxConfig())
    scheduler = build_scheduler(jobs, clock)
    assert sorted(job.id for job in scheduler.get_jobs()) == ["outbox.prune", "outbox.report"]
    for job in jobs:
        await run_job(job, clock)
    assert sorted(await rows(sessionmaker)) == ["recent"]  # kept 90 days


class FakeDispatcher:
    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.stopped = False

    async def run(self, stop: asyncio.Event) -> None:
        self.started.set()
        await stop.wait()
        self.stopped = True


async def test_background_starts_and_stops_the_dispatcher_and_the_jobs() -> None:
    ticks: list[datetime] = []

    async def tick(now: datetime) -> None:
        ticks.append(now)

    clock = ManualClock(NOW)
    dispatcher = FakeDispatcher()
    background = Background(
        dispatcher, [PeriodicJob("test.tick", timedelta(seconds=0.05), tick)], clock
    )
    await background.start()
    await asyncio.wait_for(dispatcher.started.wait(), timeout=5)
    for _ in range(100):
        if ticks:
            break
        await asyncio.sleep(0.02)
    await background.stop()
    assert dispatcher.stopped
    assert ticks and set(ticks) == {NOW}  # the job saw the injected clock, not the wall clock
    assert background.scheduler is not None and not background.scheduler.running
