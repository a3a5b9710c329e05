"""A dispatcher that takes the exclusive lock reclaims at once the rows a dead predecessor left
claimed, instead of waiting out their lease; one standing by, or one of several non-exclusive
dispatchers, leaves other dispatchers' claims alone. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram import Bot

from bot.kernel.clock import SystemClock
from bot.kernel.config import OutboxConfig
from bot.kernel.texts import Texts
from bot.sandbox.api import LocalBotApi
from bot.settings import EXAMPLE_CONFIG_DIR
from scheduler.dispatcher.telegram import Dispatcher
from scheduler.locks import DispatchLock, lock_for
from storage import outbox as outbox_queries
from storage.models import Outbox
from storage.outbox import State
from tests.auxil.local_api_fixtures import ptb_bot
from tests.auxil.outbox import (
    delivered,
    dispatcher_for,
    drain,
    fast_rules,
    message_calls,
    queue_text,
    rows,
    running,
)
from tests.auxil.processes import start_carebot

LONG_LEASE = timedelta(hours=1)
RECLAIMED = re.compile(r"reclaimed (\d+) outbox rows")


@pytest.fixture
async def bot(local_api: LocalBotApi) -> AsyncIterator[Bot]:
    async with ptb_bot(local_api) as bot:
        yield bot


async def _queue(
    sessionmaker: async_sessionmaker[AsyncSession], api: LocalBotApi, chats: range
) -> list[str]:
    """One text per chat, due a second apart in the past (the queue's order); their keys."""
    start = datetime.now(UTC) - timedelta(minutes=1)
    keys = []
    async with sessionmaker.begin() as session:
        for n, chat_id in enumerate(chats):
            api.add_user(chat_id, f"User {chat_id}")
            key = f"msg:{chat_id}"
            await queue_text(session, key, chat_id, now=start + timedelta(seconds=n))
            keys.append(key)
    return keys


async def _claim_and_vanish(sessionmaker: async_sessionmaker[AsyncSession], limit: int) -> None:
    """What a dispatcher leaves behind when it is SIGKILLed: rows claimed for a long lease."""
    now = datetime.now(UTC)
    async with sessionmaker.begin() as session:
        claimed = await outbox_queries.claim_due(
            session, now=now, lease_until=now + LONG_LEASE, limit=limit
        )
    assert len(claimed) == limit


def _reclaim_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if RECLAIMED.search(r.getMessage())]


@pytest.mark.parametrize("entry", ["run", "run_until_idle"])
async def test_rows_a_dead_dispatcher_left_claimed_go_out_at_once_in_order(
    entry: str,
    local_api: LocalBotApi,
    bot: Bot,
    sessionmaker: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = local_api
    chats = range(9701, 9707)
    keys = await _queue(sessionmaker, api, chats)
    async with sessionmaker.begin() as session:  # an earlier attempt failed on the second row
        await session.execute(
            update(Outbox).where(Outbox.dedupe_key == keys[1]).values(attempts=2)
        )
    await _claim_and_vanish(sessionmaker, 4)  # the four oldest; the two newest stay pending
    before = await rows(sessionmaker)
    orphans = sorted(row.id for row in before.values() if row.state == State.CLAIMED)
    assert len(orphans) == 4

    caplog.set_level("INFO", logger="scheduler.dispatcher")
    # One send at a time, so the server sees the dispatcher's order; the lease is an hour away,
    # and both waits below give up after seconds.
    dispatcher = dispatcher_for(bot, sessionmaker, rules=fast_rules(dispatch={"concurrency": 1}))
    if entry == "run":
        async with running(dispatcher):
            await api.wait_for(
                lambda: len(delivered(api)) >= len(chats), timeout=10, description="all sent"
            )
    else:
        await drain(dispatcher)

    assert [call.params["chat_id"] for call in message_calls(api)] == list(chats)
    stored = await rows(sessionmaker)
    assert {row.state for row in stored.values()} == {State.SENT}
    attempts = [stored[key].attempts for key in keys]
    assert attempts == [1, 3, 1, 1, 1, 1]  # the reclaim counted no attempt
    [line] = _reclaim_lines(caplog)
    assert line.startswith("reclaimed 4 outbox rows")
    assert line.endswith(": " + ", ".join(map(str, orphans)))  # ids, no texts
    [record] = [r for r in caplog.records if r.getMessage() == line]
    assert (record.levelname, getattr(record, "reclaimed", None)) == ("INFO", 4)


class _CountingLock:
    """The real lock, counting how often the dispatcher tried to take it."""

    def __init__(self, inner: DispatchLock) -> None:
        self.inner = inner
        self.exclusive = inner.exclusive
        self.attempts = 0

    async def acquire(self) -> bool:
        self.attempts += 1
        return await self.inner.acquire()

    async def held(self) -> bool:
        return await self.inner.held()

    async def release(self) -> None:
        await self.inner.release()


def _dispatcher(
    bot: Bot,
    sessionmaker: async_sessionmaker[AsyncSession],
    rules: OutboxConfig,
    lock: DispatchLock,
) -> Dispatcher:
    return Dispatcher(
        bot,
        sessionmaker,
        texts=Texts.load(),
        rules=rules,
        clock=SystemClock(),
        default_timezone="Asia/Shanghai",
        lock=lock,
    )


async def test_a_dispatcher_standing_by_leaves_the_holders_claims_alone(
    local_api: LocalBotApi,
    bot: Bot,
    sessionmaker: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While another holds the lock its claims are its own; once it is gone, the stand-by takes
    over and reclaims them."""
    api = local_api
    engine = sessionmaker.kw["bind"]
    holder = lock_for(engine, exclusive=True)
    assert await holder.acquire()
    chats = range(9801, 9804)
    await _queue(sessionmaker, api, chats)
    await _claim_and_vanish(sessionmaker, len(chats))  # the holder's claims, in its buffer
    before = {
        key: (row.state, row.claimed_until) for key, row in (await rows(sessionmaker)).items()
    }

    caplog.set_level("INFO", logger="scheduler.dispatcher")
    rules = fast_rules()
    lock = _CountingLock(lock_for(engine, exclusive=rules.dispatch.exclusive))
    try:
        async with running(_dispatcher(bot, sessionmaker, rules, lock)):
            for _ in range(200):  # three refusals: it has stood by for a while
                if lock.attempts >= 3:
                    break
                await asyncio.sleep(0.05)
            assert lock.attempts >= 3
            after = {
                key: (row.state, row.claimed_until)
                for key, row in (await rows(sessionmaker)).items()
            }
            assert after == before
            assert message_calls(api) == []
            assert _reclaim_lines(caplog) == []

            await holder.release()  # the holder dies
            await api.wait_for(
                lambda: len(delivered(api)) >= len(chats), timeout=10, description="taken over"
            )
    finally:
        await holder.release()
    assert [line.split(":")[0] for line in _reclaim_lines(caplog)] == [
        "reclaimed 3 outbox rows left claimed by a previous dispatcher"
    ]
    assert {row.state for row in (await rows(sessionmaker)).values()} == {State.SENT}


async def test_non_exclusive_dispatchers_never_reclaim_each_others_rows(
    local_api: LocalBotApi,
    bot: Bot,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """PostgreSQL with ``exclusive = false``: the other dispatchers are alive and sending."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite always has one dispatcher per file (an exclusive file lock)")
    api = local_api
    chats = range(9901, 9905)
    keys = await _queue(sessionmaker, api, chats)
    await _claim_and_vanish(sessionmaker, 2)  # another live dispatcher's claims
    before = await rows(sessionmaker)

    caplog.set_level("INFO", logger="scheduler.dispatcher")
    rules = fast_rules(dispatch={"exclusive": False})
    await drain(dispatcher_for(bot, sessionmaker, rules=rules))

    assert sorted(call.params["chat_id"] for call in delivered(api)) == list(chats)[2:]
    stored = await rows(sessionmaker)
    for key in keys[:2]:
        assert stored[key].state == State.CLAIMED
        assert stored[key].claimed_until == before[key].claimed_until
    assert _reclaim_lines(caplog) == []


KILL_CONFIG = """
[limits]
per_second = 5
[dispatch]
batch_size = 10
concurrency = 4
lease_seconds = 600
poll_seconds = 0.05
"""


async def _start_drain(
    api: LocalBotApi, database_url: str, config: Path, log: Path
) -> asyncio.subprocess.Process:
    return await start_carebot(
        "outbox",
        "drain",
        log=log,
        telegram_token=api.token,
        telegram_api_url=api.root_url,
        database_url=database_url,
        config_dir=str(config),
        log_level="INFO",
    )


async def test_a_restarted_dispatcher_process_does_not_wait_out_a_killed_ones_lease(
    local_api: LocalBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    tmp_path: Path,
) -> None:
    """``carebot outbox drain`` SIGKILLed mid-broadcast with a 10-minute lease: the next one
    sends what it had claimed right away."""
    api = local_api
    chats = range(21_001, 21_041)
    await _queue(sessionmaker, api, chats)
    config = tmp_path / "config"
    shutil.copytree(EXAMPLE_CONFIG_DIR, config)
    (config / "outbox.toml").write_text(KILL_CONFIG, encoding="utf-8")

    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = await _start_drain(api, database_url, config, first_log)
    try:
        # 5 a second and a batch of 10: there are always claimed rows waiting in its buffer.
        await api.wait_for(lambda: len(delivered(api)) >= 10, timeout=30, description="10 sent")
    finally:
        first.kill()  # SIGKILL: no clean-up of any kind
        await first.wait()
    left = [row for row in (await rows(sessionmaker)).values() if row.state == State.CLAIMED]
    assert left, "nothing was claimed when it died"
    assert all(row.claimed_until and row.claimed_until > datetime.now(UTC) for row in left)
    assert len(delivered(api)) < len(chats), "the broadcast finished before the kill"

    second = await _start_drain(api, database_url, config, second_log)
    try:
        # Far below the 600 s lease: without the reclaim the claimed rows would wait for it.
        await api.wait_for(
            lambda: {call.params["chat_id"] for call in delivered(api)} == set(chats),
            timeout=60,
            description="every chat served",
        )
    finally:
        if second.returncode is None:
            second.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await second.wait()
    output = second_log.read_text(encoding="utf-8", errors="replace")
    assert code == 0, output
    match = RECLAIMED.search(output)
    assert match, output
    assert int(match.group(1)) == len(left)
    per_chat = Counter(call.params["chat_id"] for call in delivered(api))
    assert sum(per_chat.values()) - len(chats) <= 4  # at most the sends on the wire (concurrency)
    assert {row.state for row in (await rows(sessionmaker)).values()} == {State.SENT}
