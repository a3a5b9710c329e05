"""The dispatcher against the local Bot API server, on SQLite and PostgreSQL: limits measured from
the server's arrival times, Telegram's errors, rendering, quiet hours and the daily cap."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram import Bot
from typer.testing import CliRunner

from bot.cli import app
from bot.kernel.clock import ManualClock
from bot.kernel.replies import TextRef
from bot.kernel.texts import Texts
from bot.sandbox.api import LocalBotApi
from scheduler.limiter import max_in_sliding_window
from storage import outbox as outbox_queries
from storage.failures import Reason, SendFailure
from storage.models import Customer, Outbox
from storage.outbox import OutboxMessage, Priority, State
from storage.payloads import (
    CatalogueText,
    Copy,
    OutboxButton,
    ReadyText,
    TopicAction,
    TopicChange,
    from_json,
)
from tests.auxil.harness import STAFF_CHAT_ID
from tests.auxil.local_api_fixtures import ptb_bot
from tests.auxil.outbox import (
    add_customer,
    delivered,
    dispatcher_for,
    drain,
    fast_rules,
    message_calls,
    queue_text,
    rows,
    running,
)
from tests.auxil.processes import CAREBOT, carebot_env


@pytest.fixture
async def bot(local_api: LocalBotApi) -> AsyncIterator[Bot]:
    async with ptb_bot(local_api) as bot:
        yield bot


async def _broadcast(
    sessionmaker: async_sessionmaker[AsyncSession], api: LocalBotApi, chats: range
) -> None:
    async with sessionmaker.begin() as session:
        for chat_id in chats:
            api.add_user(chat_id, f"User {chat_id}")
            await queue_text(session, f"news:{chat_id}", chat_id, now=datetime.now(UTC))


def _per_chat(api: LocalBotApi) -> dict[int, int]:
    counts: dict[int, int] = {}
    for call in delivered(api):
        counts[call.params["chat_id"]] = counts.get(call.params["chat_id"], 0) + 1
    return counts


FINAL = {State.SENT, State.FAILED, State.DEAD}


async def until(
    condition: Callable[[dict[str, Outbox]], bool],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Wait (at most 10 s) until the outbox rows, by dedupe key, satisfy ``condition``."""
    for _ in range(200):
        if condition(await rows(sessionmaker)):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"outbox never got there: {await rows(sessionmaker)}")


class TestLimits:
    async def test_a_broadcast_never_exceeds_thirty_in_any_sliding_second(
        self, local_api: LocalBotApi, bot: Bot, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        chats = range(5001, 5201)
        await _broadcast(sessionmaker, local_api, chats)
        dispatcher = dispatcher_for(bot, sessionmaker)
        await drain(dispatcher)

        arrivals = [call.at for call in message_calls(local_api)]
        assert len(arrivals) == 200
        assert max_in_sliding_window(arrivals, 1.0) <= 30
        assert _per_chat(local_api) == dict.fromkeys(chats, 1)
        stored = await rows(sessionmaker)
        assert {row.state for row in stored.values()} == {State.SENT}
        assert all(row.telegram_message_id for row in stored.values())

    async def test_five_messages_to_one_chat_are_a_second_apart(
        self, local_api: LocalBotApi, bot: Bot, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        api = local_api
        api.add_user(6001, "Busy")
        now = datetime.now(UTC)
        async with sessionmaker.begin() as session:
            for n in range(5):
                await queue_text(session, f"tip:{n}", 6001, now=now, text=f"tip {n}")
            await queue_text(session, "other", 6002, now=now)
        api.add_user(6002, "Other")
        async with running(dispatcher_for(bot, sessionmaker)):
            sent = await api.wait_for_sent(6001, 5, timeout=15)
        arrivals = [c.at for c in message_calls(api) if c.params["chat_id"] == 6001]
        assert len(arrivals) == 5
        assert all(b - a >= 1.0 for a, b in itertools.pairwise(arrivals))
        assert sorted(m.text for m in sent) == [f"tip {n}" for n in range(5)]
        assert len(api.sent(6002)) == 1  # not held up behind the busy chat


class TestTelegramErrors:
    async def test_429_is_waited_out_then_everything_is_delivered(
        self, local_api: LocalBotApi, bot: Bot, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        api = local_api
        chats = range(7001, 7011)
        await _broadcast(sessionmaker, api, chats)
        api.rate_limit(retry_after=2, times=1)
        dispatcher = dispatcher_for(bot, sessionmaker)
        await drain(dispatcher)

        calls = message_calls(api)
        refused = [c for c in calls if c.status == 429]
        assert len(refused) == 1
        pause = [c.at - refused[0].at for c in calls if 0 < c.at - refused[0].at < 2.0]
        # Only sends already on the wire when the 429 came back; nothing started in the pause.
        assert len(pause) < fast_rules().dispatch.concurrency
        assert all(gap < 0.5 for gap in pause)
        assert _per_chat(api) == dict.fromkeys(chats, 1)
        assert dispatcher.counters.rate_limited == 1
        stored = await rows(sessionmaker)
        assert {(row.state, row.attempts) for row in stored.values()} == {(State.SENT, 1)}

    async def test_a_blocked_or_vanished_chat_makes_the_customer_unreachable(
        self, local_api: LocalBotApi, bot: Bot, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        api = local_api
        api.add_user(8001, "Blocker")
        api.block(8001)
        # 8002 never existed on the server: Telegram answers 400 "chat not found".
        async with sessionmaker.begin() as session:
            blocker = await add_customer(session, 8001, timezone="UTC")
            ghost = await add_customer(session, 8002, timezone="UTC")
            noon = datetime.now(UTC).replace(hour=12)
            for key, chat, customer in (("a", 8001, blocker), ("b", 8002, ghost)):
                await queue_text(session, key, chat, customer_id=customer, now=noon)
        clock = ManualClock(datetime.now(UTC).replace(hour=12))
        dispatcher = dispatcher_for(bot, sessionmaker, clock=clock)
        await drain(dispatcher)
        async with sessionmaker.begin() as session:
            for key, chat, customer in (("a2", 8001, blocker), ("b2", 8002, ghost)):
                await queue_text(session, key, chat, customer_id=customer, now=clock.now())
        async with running(dispatcher):
            await until(
                lambda stored: {stored["a2"].state, stored["b2"].state} <= FINAL, sessionmaker
            )

        assert [c.status for c in message_calls(api)] in ([403, 400], [400, 403])
        stored = await rows(sessionmaker)
        assert stored["a"].state == stored["b"].state == State.FAILED  # tried once each
        assert stored["a"].last_error is not None and stored["a"].last_error.startswith("403")
        assert stored["b"].last_error == "400 Chat not found"
        assert stored["a2"].state == stored["b2"].state == State.FAILED  # never tried
        assert stored["a2"].last_error == "skipped: customer unreachable"
        async with sessionmaker() as session:
            reachable = await session.execute(
                select(Customer.reachable).where(Customer.id.in_([blocker, ghost]))
            )
            assert set(reachable.scalars()) == {False}

    async def test_500_three_times_then_200_delivers_once(
        self, local_api: LocalBotApi, bot: Bot, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        api = local_api
        await _broadcast(sessionmaker, api, range(9001, 9002))
        api.fail("sendMessage", error_code=500, times=3, chat_id=9001)
        async with running(dispatcher_for(bot, sessionmaker)) as dispatcher:
            await api.wait_for_sent(9001, 1, timeout=10)
            await until(lambda stored: stored["news:9001"].state == State.SENT, sessionmaker)
        # Stopped: what was under way has finished.
        assert [c.status for c in message_calls(api)] == [500, 500, 500, 200]
        assert len(api.sent(9001)) == 1
        row = (await rows(sessionmaker))["news:9001"]
        assert (row.state, row.attempts) == (State.SENT, 4)
        assert dispatcher.counters.retried == 3

    async def test_a_row_that_keeps_failing_ends_dead_and_is_listed_by_the_cli(
        self,
        local_api: LocalBotApi,
        bot: Bot,
        sessionmaker: async_sessionmaker[AsyncSession],
        database_url: str,
        tmp_path: Path,
    ) -> None:
        api = local_api
        await _broadcast(sessionmaker, api, range(9101, 9103))
        api.fail("sendMessage", error_code=502, times=1000, chat_id=9101)
        rules = fast_rules(retry={"max_attempts": 3})
        dispatcher = dispatcher_for(bot, sessionmaker, rules=rules)
        async with running(dispatcher):
            await until(lambda stored: stored["news:9101"].state == State.DEAD, sessionmaker)
        row = (await rows(sessionmaker))["news:9101"]
        assert (row.state, row.attempts) == (State.DEAD, 3)
        assert len([c for c in message_calls(api) if c.params["chat_id"] == 9101]) == 3

        listing = _cli(database_url, tmp_path, "outbox", "dead")  # the real command
        assert str(row.id) in listing and "Bad Gateway" in listing
        assert "news:9102" not in listing and "9102" not in listing
        requeued = await _cli_in_process(database_url, "outbox", "retry", "--all-dead")
        assert "requeued 1 message" in requeued
        api.clear_faults()
        await drain(dispatcher)
        assert len(api.sent(9101)) == 1
        assert "no dead messages" in await _cli_in_process(database_url, "outbox", "dead")


def _cli(database_url: str, cwd: Path, *args: str) -> str:
    result = subprocess.run(
        [*CAREBOT, *args],
        env=carebot_env(database_url=database_url),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


async def _cli_in_process(database_url: str, *args: str) -> str:
    """The same Typer app, in a worker thread (it runs its own event loop)."""
    result = await asyncio.to_thread(
        CliRunner().invoke, app, list(args), env={"CAREBOT_DATABASE_URL": database_url}
    )
    assert result.exit_code == 0, result.output
    return result.output


class TestWhatGoesOut:
    async def test_texts_are_rendered_at_send_time_in_the_current_language(
        self, local_api: LocalBotApi, bot: Bot, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        api = local_api
        li = api.add_user(9201, "Li")
        api.create_topic(STAFF_CHAT_ID, "Ticket 6")  # so ours is not thread 1 ("General")
        staff = api.create_topic(STAFF_CHAT_ID, "Ticket 7").message_thread_id
        customer_message = await api.send_text(li, "my parcel is late")
        texts = Texts.load()
        now = datetime.now(UTC)
        async with sessionmaker.begin() as session:
            customer = await add_customer(session, 9201, language="en", timezone="UTC")
            await outbox_queries.enqueue(
                session,
                dedupe_key="welcome:9201",
                chat_id=9201,
                customer_id=customer,
                kind="reply",
                payload=CatalogueText(
                    TextRef("welcome", {"name": "<Li>"}),
                    buttons=[[OutboxButton(TextRef("consent_yes_button"), data="consent:yes")]],
                ),
                due_at=now,
                now=now,
                transactional=True,
                priority=Priority.REPLY,
            )
            await outbox_queries.enqueue(
                session,
                dedupe_key="relay:1",
                chat_id=STAFF_CHAT_ID,
                kind="relay",
                payload=Copy(9201, customer_message["message"]["message_id"], thread_id=staff),
                due_at=now,
                now=now,
                priority=Priority.REPLY,
            )
            # The customer switches to Chinese after the row was queued.
            await session.execute(
                Customer.__table__.update().where(Customer.id == customer).values(language="zh")
            )
        await drain(dispatcher_for(bot, sessionmaker))

        (welcome,) = api.sent(9201)
        assert welcome.text == texts.render("zh", "welcome", name="<Li>")
        assert welcome.buttons() == [(texts.render("zh", "consent_yes_button"), "consent:yes")]
        (relayed,) = api.sent(STAFF_CHAT_ID, thread_id=staff)
        assert relayed.copied_from == (9201, customer_message["message"]["message_id"])
        assert (await rows(sessionmaker))["relay:1"].telegram_message_id == relayed.message_id

    async def test_care_needs_consent_replies_do_not(
        self, local_api: LocalBotApi, bot: Bot, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        api = local_api
        api.add_user(9301, "Stopped")
        noon = datetime.now(UTC).replace(hour=4)  # 12:00 in Shanghai
        async with sessionmaker.begin() as session:
            customer = await add_customer(session, 9301, consent=False)
            await queue_text(session, "offer", 9301, customer_id=customer, now=noon)
            await queue_text(
                session, "reply", 9301, customer_id=customer, now=noon, transactional=True
            )
        await drain(dispatcher_for(bot, sessionmaker, clock=ManualClock(noon)))
        assert [m.text for m in api.sent(9301)] == ["reply"]
        stored = await rows(sessionmaker)
        assert stored["offer"].state == State.FAILED
        assert stored["offer"].last_error == "skipped: no consent to care messages"


class RecordingHooks:
    """Outcome hooks as a feature would write them: it records what happened and, when a topic
    was created, queues the next message into it in the same transaction."""

    def __init__(self) -> None:
        self.sent_ids: dict[str, list[int]] = {}
        self.failures: dict[str, tuple[SendFailure, bool]] = {}

    async def sent(
        self,
        session: AsyncSession,
        message: OutboxMessage,
        message_ids: Sequence[int],
        now: datetime,
    ) -> bool:
        self.sent_ids[message.dedupe_key] = list(message_ids)
        payload = message.payload
        if not isinstance(payload, TopicChange) or payload.action is not TopicAction.CREATE:
            return False
        await outbox_queries.enqueue(
            session,
            dedupe_key="card",
            chat_id=message.chat_id,
            kind="ticket",
            payload=ReadyText("the card", thread_id=message_ids[0]),
            due_at=now,
            now=now,
            priority=Priority.REPLY,
        )
        return True

    async def failed(
        self,
        session: AsyncSession,
        message: OutboxMessage,
        failure: SendFailure,
        *,
        dead: bool,
        now: datetime,
    ) -> bool:
        self.failures[message.dedupe_key] = (failure, dead)
        return False

    async def retrying(
        self, session: AsyncSession, message: OutboxMessage, failure: SendFailure, now: datetime
    ) -> bool:
        return False


async def test_topics_albums_replies_and_outcome_hooks(
    local_api: LocalBotApi, bot: Bot, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    api = local_api
    ann = api.add_user(9501, "Ann")
    first = (await api.send_photo(ann, caption="front"))["message"]
    second = (await api.send_photo(ann, caption="back"))["message"]
    topic = api.create_topic(STAFF_CHAT_ID, "Old ticket").message_thread_id
    photos = [message["photo"][-1]["file_id"] for message in (first, second)]
    now = datetime.now(UTC)
    payloads = {
        "create": {"topic": {"action": "create", "name": "Ticket 12"}},
        "album": {"copy_many": {"from_chat_id": 9501, "message_ids": [1, 2]}, "thread_id": topic},
        "photos": {
            "media_group": [
                {"type": "photo", "media": photos[0], "caption": "<b>front</b>"},
                {"type": "photo", "media": photos[1]},
            ],
            "thread_id": topic,
        },
        "bare": {"copy": {"from_chat_id": 9501, "message_id": 1, "remove_caption": True}},
        "close": {"topic": {"action": "close"}, "thread_id": topic},
        "reply": {"text": "about your photo", "reply_to": first["message_id"]},
        "missing": {"copy": {"from_chat_id": 9501, "message_id": 999}},
    }
    chats = {"bare": 9501, "reply": 9501}
    async with sessionmaker.begin() as session:
        for key, payload in payloads.items():
            await outbox_queries.enqueue(
                session,
                dedupe_key=key,
                chat_id=chats.get(key, STAFF_CHAT_ID),
                kind="ticket",
                payload=from_json(payload),  # the JSON rows have always had
                due_at=now,
                now=now,
                priority=Priority.REPLY,
            )
    hooks = RecordingHooks()
    dispatcher = dispatcher_for(bot, sessionmaker)
    dispatcher.hooks["ticket"] = hooks
    async with running(dispatcher):
        await until(
            lambda stored: len(stored) == 8 and set(row.state for row in stored.values()) <= FINAL,
            sessionmaker,
        )

    created = [t for t in api.topics(STAFF_CHAT_ID) if t.name == "Ticket 12"]
    assert len(created) == 1 and hooks.sent_ids["create"] == [created[0].message_thread_id]
    card = api.sent(STAFF_CHAT_ID, thread_id=created[0].message_thread_id)
    assert [m.text for m in card] == ["the card"]  # queued by the hook, sent by the same run
    album = api.sent(STAFF_CHAT_ID, thread_id=topic)
    assert [m.copied_from for m in album[:2]] == [(9501, 1), (9501, 2)]
    assert [m.caption for m in album[2:]] == ["<b>front</b>", None]
    assert len(hooks.sent_ids["album"]) == len(hooks.sent_ids["photos"]) == 2
    assert [t.closed for t in api.topics(STAFF_CHAT_ID) if t.message_thread_id == topic] == [True]
    bare, reply = api.sent(9501)
    assert bare.copied_from == (9501, 1) and bare.message.get("caption") is None
    assert reply.message["reply_to_message"]["message_id"] == first["message_id"]
    failure, dead = hooks.failures["missing"]
    assert failure.description.startswith("400") and failure.permanent and not dead
    assert failure.reason is Reason.MESSAGE_GONE
    stored = await rows(sessionmaker)
    assert stored["close"].state == State.SENT and stored["close"].telegram_message_id is None


class JumpyMonotonic:
    """Real monotonic time plus the jumps a test makes with its ManualClock, so the limiter
    sees days pass when the clock does."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


@pytest.fixture
def server_in_new_york() -> Iterator[None]:
    """The machine's own time zone differs from the customer's (and nothing may use it)."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    yield
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


@pytest.mark.usefixtures("server_in_new_york")
async def test_quiet_hours_and_the_daily_cap_follow_the_customers_clock(
    local_api: LocalBotApi, bot: Bot, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    api = local_api
    api.add_user(9401, "Wang")
    # 14:30 UTC: 22:30 in Shanghai (quiet hours) while it is 09:30 at the server in New York.
    clock = ManualClock(datetime(2026, 11, 23, 14, 30, tzinfo=UTC))
    monotonic = JumpyMonotonic()

    def jump_to(moment: datetime) -> None:
        monotonic.offset += (moment - clock.now()).total_seconds()
        clock.set(moment)

    dispatcher = dispatcher_for(bot, sessionmaker, clock=clock, monotonic=monotonic)
    async with sessionmaker.begin() as session:
        wang = await add_customer(session, 9401, timezone="Asia/Shanghai")
        await queue_text(session, "birthday", 9401, customer_id=wang, now=clock.now())
        await queue_text(
            session,
            "ticket-reply",
            9401,
            customer_id=wang,
            now=clock.now(),
            transactional=True,
            priority=Priority.REPLY,
        )
    await drain(dispatcher)
    assert [m.text for m in api.sent(9401)] == ["ticket-reply"]  # replies ignore quiet hours
    assert (await rows(sessionmaker))["birthday"].due_at == datetime(2026, 11, 24, 1, tzinfo=UTC)

    jump_to(datetime(2026, 11, 24, 0, 59, tzinfo=UTC))  # 08:59 in Shanghai
    await drain(dispatcher)
    assert len(api.sent(9401)) == 1
    jump_to(datetime(2026, 11, 24, 1, 0, tzinfo=UTC))  # 09:00 in Shanghai, 20:00 in New York
    await drain(dispatcher)
    assert [m.text for m in api.sent(9401)] == ["ticket-reply", "birthday"]

    # Later the same Shanghai day (still the 23rd in New York): the cap holds the offer back
    # until 09:00 tomorrow in Shanghai; a staff reply still goes at once.
    jump_to(datetime(2026, 11, 24, 4, 0, tzinfo=UTC))
    async with sessionmaker.begin() as session:
        await queue_text(session, "offer", 9401, customer_id=wang, now=clock.now())
        await queue_text(
            session,
            "staff-reply",
            9401,
            customer_id=wang,
            now=clock.now(),
            transactional=True,
            priority=Priority.REPLY,
        )
    await drain(dispatcher)
    assert [m.text for m in api.sent(9401)][2:] == ["staff-reply"]
    offer = (await rows(sessionmaker))["offer"]
    assert (offer.state, offer.due_at) == (State.PENDING, datetime(2026, 11, 25, 1, tzinfo=UTC))

    jump_to(datetime(2026, 11, 25, 1, 0, tzinfo=UTC))
    await drain(dispatcher)
    assert [m.text for m in api.sent(9401)][3:] == ["offer"]
    stored = await rows(sessionmaker)
    assert (stored["birthday"].care_day, stored["offer"].care_day) == ("2026-11-24", "2026-11-25")
