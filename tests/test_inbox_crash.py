"""The inbox under SIGKILL: a real ``carebot run`` process, killed at many points while 20
customers with open tickets write 500 messages at once, restarted on the same database each
time, in long-polling and webhook mode, on SQLite and PostgreSQL. Every message ends up in its
ticket's topic, in order; a copy is repeated at most as often as the dispatcher had sends in
flight when it died."""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.kernel.config import load_config
from bot.kernel.texts import Texts
from bot.sandbox.api import LocalBotApi
from bot.sandbox.records import FakeUser
from bot.settings import EXAMPLE_CONFIG_DIR
from handlers.tickets.lifecycle import TicketDesk, open_ticket
from storage.engine import create_engine, create_sessionmaker
from storage.models import Customer, InboxUpdate
from tests.auxil import databases
from tests.auxil.cluster import SECRET, WEBHOOK_PATH, cluster, fast_config
from tests.auxil.harness import STAFF_CHAT_ID
from tests.auxil.processes import free_port, start_carebot
from tests.auxil.waiting import eventually

CUSTOMERS = 20
MESSAGES = 25
KILLS = 10
DISPATCH_CONCURRENCY = 4  # outbox.toml's dispatch.concurrency: sends in flight at a kill
FIRST_CUSTOMER = 810_000


@dataclass
class Bot:
    """One ``carebot run`` process; ``restart`` kills it (SIGKILL) and starts the next."""

    api: LocalBotApi
    database_url: str
    config_dir: Path
    workdir: Path
    webhook: bool
    process: asyncio.subprocess.Process | None = None
    starts: int = 0

    async def start(self) -> None:
        self.starts += 1
        port = free_port()
        settings: dict[str, str] = {
            "telegram_token": self.api.token,
            "telegram_api_url": self.api.root_url,
            "database_url": self.database_url,
            "config_dir": str(self.config_dir),
            "staff_chat_id": str(STAFF_CHAT_ID),
            "log_level": "WARNING",
        }
        if self.webhook:
            settings.update(
                webhook_url=f"http://127.0.0.1:{port}{WEBHOOK_PATH}",
                webhook_secret=SECRET,
                listen_host="127.0.0.1",
                listen_port=str(port),
            )
        self.process = await start_carebot(
            "run", log=self.workdir / f"bot{self.starts}.log", **settings
        )

    async def kill(self) -> None:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def restart(self) -> None:
        await self.kill()
        await self.start()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                await self.process.wait()

    def logs(self) -> str:
        return "\n".join(
            (self.workdir / f"bot{number}.log").read_text(errors="replace")[-2000:]
            for number in range(1, self.starts + 1)
        )


@pytest.fixture
async def local_server() -> AsyncIterator[LocalBotApi]:
    api = LocalBotApi("123456:CRASH-test")
    api.webhook_max_retry_delay = 0.2
    await api.start()
    api.add_group(STAFF_CHAT_ID, "Staff", forum=True)
    yield api
    await api.stop()


async def _customers_with_tickets(api: LocalBotApi, database_url: str) -> list[FakeUser]:
    """Customers registered with an open ticket each (its topic is created by the bot)."""
    users = [api.add_user(FIRST_CUSTOMER + n, f"Customer {n}") for n in range(CUSTOMERS)]
    rules = load_config(EXAMPLE_CONFIG_DIR)
    desk = TicketDesk.from_config(rules, Texts.load(), STAFF_CHAT_ID)
    engine = create_engine(database_url)
    now = datetime.now(UTC)
    try:
        async with create_sessionmaker(engine).begin() as session:
            for user in users:
                customer = Customer(
                    telegram_user_id=user.id,
                    chat_id=user.id,
                    name=user.first_name,
                    language="en",
                    timezone="Asia/Shanghai",
                    country="CN",
                    created_at=now,
                    updated_at=now,
                )
                session.add(customer)
                await session.flush()
                await open_ticket(
                    session, desk, customer, source="complaint", category="delivery", now=now
                )
    finally:
        await engine.dispose()
    return users


async def _desk_bot(
    api: LocalBotApi, database_url: str, workdir: Path, mode: str
) -> tuple[Bot, list[FakeUser]]:
    """``carebot run`` (long polling or webhook) once every customer's ticket has its topic
    and card."""
    users = await _customers_with_tickets(api, database_url)
    bot = Bot(api, database_url, _crash_config(workdir), workdir, webhook=mode == "webhook")
    await bot.start()
    try:
        await _until(lambda: _cards(api) >= CUSTOMERS, "every ticket's topic and card", bot)
    except BaseException:
        await bot.stop()
        raise
    return bot, users


def _crash_config(workdir: Path) -> Path:
    """Telegram's limits lifted (what is tested is losing nothing, not pacing) and no flood
    throttle (25 messages at once from one customer are all relayed)."""
    config = fast_config(workdir / "config")
    tickets = config / "tickets.toml"
    tickets.write_text(
        tickets.read_text(encoding="utf-8").replace("max_messages = 10", "max_messages = 1000"),
        encoding="utf-8",
    )
    return config


def _copies_by_topic(api: LocalBotApi) -> dict[int, list[int]]:
    """The customers' messages copied into topics: source message ids per customer, in the
    order the copies were made."""
    copies: dict[int, list[int]] = {}
    for message in api.sent(STAFF_CHAT_ID):
        if message.copied_from is not None:
            chat_id, message_id = message.copied_from
            copies.setdefault(chat_id, []).append(message_id)
    return copies


async def _until(check: Callable[[], bool], what: str, bot: Bot, within: float = 90) -> None:
    for _ in range(int(within * 20)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {within:g} s\n{bot.logs()}")


async def _copied_after(api: LocalBotApi, user: FakeUser, bot: Bot) -> int:
    """The customer writes once more and the copy is waited for: it goes into the topic behind
    everything handled before it (a copy made twice included). Its message id."""
    update = await api.send_text(user, "one more thing")
    last = int(update["message"]["message_id"])
    await _until(lambda: last in _copies_by_topic(api).get(user.id, []), "the last copy", bot)
    return last


async def _nothing_pending(database_url: str) -> bool:
    return (await _inbox_states(database_url)).get("pending", 0) == 0


async def _waiting_for_a_lock(engine: AsyncEngine) -> bool:
    """Whether a session of the database waits for a lock (PostgreSQL; asked in a transaction
    of its own: one sees the same activity snapshot throughout)."""
    async with engine.connect() as connection:
        waiting = await connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
        return int(waiting.scalar_one()) > 0


async def _rows(database_url: str, statement: Any) -> list[Any]:
    """``statement``'s rows, read on an engine of its own (the bot is another process)."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(statement)).all())
    finally:
        await engine.dispose()


async def _inbox_states(database_url: str) -> dict[str, int]:
    statement = select(InboxUpdate.state, func.count()).group_by(InboxUpdate.state)
    return {state: int(count) for state, count in await _rows(database_url, statement)}


@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_sigkill_at_many_points_loses_nothing_and_keeps_order(
    local_server: LocalBotApi, database_url: str, tmp_path: Path, mode: str
) -> None:
    api = local_server
    bot, users = await _desk_bot(api, database_url, tmp_path, mode)
    try:
        sent: dict[int, list[int]] = {user.id: [] for user in users}
        for number in range(MESSAGES):
            for user in users:
                update = await api.send_text(user, f"message {number} from {user.id}")
                sent[user.id].append(update["message"]["message_id"])
        total = CUSTOMERS * MESSAGES

        def copied() -> int:
            return sum(len(set(ids)) for ids in _copies_by_topic(api).values())

        rng = random.Random(f"{mode}-{database_url[:6]}")
        for target in sorted(rng.sample(range(5, total - 20), KILLS)):
            await _until(lambda target=target: copied() >= target, f"{target} copies", bot)
            await asyncio.sleep(rng.uniform(0, 0.03))
            await bot.restart()
        await _until(lambda: copied() == total, "every message copied", bot, within=120)

        copies = _copies_by_topic(api)
        for user in users:
            collapsed = [
                source
                for index, source in enumerate(copies[user.id])
                if index == 0 or copies[user.id][index - 1] != source
            ]
            assert collapsed == sent[user.id], f"customer {user.id}'s copies out of order"
        repeated = sum(len(ids) for ids in copies.values()) - total
        assert repeated <= KILLS * DISPATCH_CONCURRENCY
        # A copy goes out only once the unit of work that queued it (and marked its update
        # handled) committed; wait for the inbox all the same rather than for a while.
        await eventually(
            lambda: _nothing_pending(database_url), timeout=30, description="nothing pending"
        )
        assert (await _inbox_states(database_url)).get("failed", 0) == 0
    finally:
        await bot.stop()


@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_a_crash_before_the_inbox_commit_means_a_redelivery_handled_once(
    local_server: LocalBotApi, sqlite_template: Path, tmp_path: Path, mode: str
) -> None:
    """The bot has the update (fetched, or its webhook POST) but dies before storing it: it was
    never confirmed, so Telegram sends it again, and it is handled once. (SQLite: a write lock
    taken by the test holds the bot between the fetch and the commit.)"""
    database_url = databases.sqlite_copy(sqlite_template, tmp_path)
    api = local_server
    bot, (user, *_) = await _desk_bot(api, database_url, tmp_path, mode)
    try:
        path = database_url.split("///", 1)[1]
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # every writer now waits: the bot cannot store
        try:
            update = await api.send_text(user, "the parcel is still missing")
            if mode == "polling":  # fetched: storing it now waits for SQLite's lock
                await _until(lambda: _fetched(api, update["update_id"]), "the fetch", bot)
            else:
                # POSTed and waiting for SQLite's lock. Nothing shows a POST in flight (the
                # local server records it once answered), so this one stays a wait.
                await asyncio.sleep(1.0)
            assert update["update_id"] in [u["update_id"] for u in api.pending_updates]
            await bot.kill()
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert await _stored(database_url, update["update_id"]) == 0
        await bot.start()
        last = await _copied_after(api, user, bot)
        assert _copies_by_topic(api)[user.id] == [update["message"]["message_id"], last]
        assert await _stored(database_url, update["update_id"]) == 1
    finally:
        await bot.stop()


@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_a_crash_after_the_inbox_commit_is_handled_after_the_restart(
    local_server: LocalBotApi, postgres_url: str, tmp_path: Path, mode: str
) -> None:
    """The update is stored (Telegram told), the bot dies before its rules commit: the next
    process handles it. (PostgreSQL: a row lock taken by the test holds the bot between the
    inbox commit and the rules.)"""
    databases.truncate_all(postgres_url)
    database_url = postgres_url
    api = local_server
    bot, (user, *_) = await _desk_bot(api, database_url, tmp_path, mode)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as holder:
            # The rules lock the customer first; storing the update (a foreign key) only
            # shares the row.
            await holder.execute(
                text("SELECT id FROM customers WHERE telegram_user_id = :id FOR NO KEY UPDATE"),
                {"id": user.id},
            )
            update = await api.send_text(user, "the parcel is still missing")
            # Stored, and its rules waiting for the customer's row.
            await eventually(
                lambda: _waiting_for_a_lock(engine), timeout=10, description="the rules blocked"
            )
            assert await _stored(database_url, update["update_id"]) == 1
            await bot.kill()
            await holder.rollback()
        assert await _inbox_states(database_url) == {"pending": 1}
        await bot.start()
        last = await _copied_after(api, user, bot)
        assert _copies_by_topic(api)[user.id] == [update["message"]["message_id"], last]
        assert await _inbox_states(database_url) == {"handled": 2}
    finally:
        await engine.dispose()
        await bot.stop()


def _cards(api: LocalBotApi) -> int:
    return len([m for m in api.sent(STAFF_CHAT_ID) if m.text and "🎫" in m.text])


def _fetched(api: LocalBotApi, update_id: int) -> bool:
    """Whether a getUpdates answer carried the update."""
    return any(
        call.method == "getUpdates"
        and isinstance(call.result, list)
        and any(item.get("update_id") == update_id for item in call.result)
        for call in api.calls
    )


async def _stored(database_url: str, update_id: int) -> int:
    statement = select(func.count()).where(InboxUpdate.update_id == update_id)
    ((count,),) = await _rows(database_url, statement)
    return int(count)


async def test_two_processes_on_postgresql_handle_each_update_once_in_order(
    local_server: LocalBotApi, postgres_url: str, tmp_path: Path
) -> None:
    """Two webhook processes behind a round-robin balancer: consecutive updates of one
    conversation reach different processes, and each conversation's updates are still
    handled once each, in the order they arrived."""
    databases.truncate_all(postgres_url)
    api = local_server
    users = await _customers_with_tickets(api, postgres_url)
    config = _crash_config(tmp_path)
    async with cluster(
        api,
        replicas=2,
        database_url=postgres_url,
        workdir=tmp_path,
        staff_chat_id=STAFF_CHAT_ID,
        config_dir=config,
    ) as (balancer, bots):
        await api.wait_for(lambda: _cards(api) >= CUSTOMERS, timeout=60, description="cards")
        sent: dict[int, list[int]] = {user.id: [] for user in users}
        for number in range(10):
            for user in users:
                update = await api.send_text(user, f"message {number} from {user.id}")
                sent[user.id].append(update["message"]["message_id"])
        await api.wait_for(
            lambda: sum(len(ids) for ids in _copies_by_topic(api).values()) >= 10 * CUSTOMERS,
            timeout=90,
            description="every message copied",
        )
        # One more message each, copied behind anything handled twice.
        for user in users:
            update = await api.send_text(user, "last")
            sent[user.id].append(update["message"]["message_id"])
        await api.wait_for(
            lambda: all(
                _copies_by_topic(api).get(user.id, [])[-1:] == sent[user.id][-1:] for user in users
            ),
            timeout=60,
            description="every last message copied",
        )
        assert _copies_by_topic(api) == sent
        assert all(balancer.forwarded.get(bot.port, 0) > 50 for bot in bots)
        states = await _inbox_states(postgres_url)
        assert set(states) == {"handled"}, states
