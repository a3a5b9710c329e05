"""The dispatcher wakes up at once for a row queued while it was between two steps, instead of
waiting out a poll interval (ticket relays depend on it), on both databases."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.kernel.clock import SystemClock
from bot.kernel.texts import Texts
from bot.sandbox.api import LocalBotApi
from scheduler.dispatcher.telegram import Dispatcher
from storage.outbox import Priority
from tests.auxil.local_api_fixtures import ptb_bot
from tests.auxil.outbox import fast_rules, queue_text, running


async def test_a_wake_between_two_steps_is_not_lost(
    local_api: LocalBotApi, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    api = local_api
    api.add_user(9601, "Ann")
    queued: list[float] = []

    class Between(Dispatcher):
        async def _idle_wait(self) -> float:
            wait = await super()._idle_wait()
            if not queued:  # a handler commits a relay just now, and wakes the dispatcher
                async with sessionmaker.begin() as session:
                    await queue_text(
                        session,
                        "relay",
                        9601,
                        now=datetime.now(UTC),
                        priority=Priority.REPLY,
                        transactional=True,
                    )
                queued.append(time.monotonic())
                self.wake()
            return wait

    async with ptb_bot(api) as bot:
        rules = fast_rules(dispatch={"poll_seconds": 5.0})
        dispatcher = Between(
            bot,
            sessionmaker,
            texts=Texts.load(),
            rules=rules,
            clock=SystemClock(),
            default_timezone="Asia/Shanghai",
        )
        async with running(dispatcher):
            [sent] = await api.wait_for_sent(9601, 1, timeout=4)
    assert sent.text == "relay"
    assert sent.at - queued[0] < 1.0  # not the 5 s poll
