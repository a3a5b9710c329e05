"""Dispatchers as separate processes (``carebot outbox drain``) against the local Bot API server
running in the test process: a SIGKILL mid-broadcast, and two dispatchers on one database."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.kernel.config import load_config
from bot.kernel.texts import Texts
from bot.sandbox.api import LocalBotApi
from bot.settings import EXAMPLE_CONFIG_DIR
from handlers.tickets.lifecycle import TicketDesk, open_ticket
from storage import outbox as outbox_queries
from storage.outbox import State
from storage.payloads import ReadyText
from tests.auxil.harness import STAFF_CHAT_ID
from tests.auxil.outbox import delivered, rows
from tests.auxil.processes import start_carebot
from tests.auxil.shop import add_customer

STOPPED = re.compile(r"dispatcher stopped: sent (\d+)")


@dataclass
class DrainProcess:
    process: asyncio.subprocess.Process
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def sent(self) -> int:
        match = STOPPED.search(self.output())
        assert match, self.output()
        return int(match.group(1))

    async def terminate(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await self.process.wait()
        assert code == 0, self.output()


def _config_dir(tmp_path: Path, outbox: str) -> Path:
    """The shipped rule files with a faster ``outbox.toml``."""
    directory = tmp_path / "config"
    shutil.copytree(EXAMPLE_CONFIG_DIR, directory)
    (directory / "outbox.toml").write_text(outbox, encoding="utf-8")
    return directory


async def _start(
    api: LocalBotApi, database_url: str, config_dir: Path, log: Path, **settings: str
) -> DrainProcess:
    process = await start_carebot(
        "outbox",
        "drain",
        log=log,
        telegram_token=api.token,
        telegram_api_url=api.root_url,
        database_url=database_url,
        config_dir=str(config_dir),
        log_level="INFO",
        **settings,
    )
    return DrainProcess(process, log)


async def _queue_broadcast(
    sessionmaker: async_sessionmaker[AsyncSession], api: LocalBotApi, chats: range
) -> None:
    now = datetime.now(UTC)
    for chat_id in chats:
        api.add_user(chat_id, f"User {chat_id}")
    async with sessionmaker.begin() as session:
        await outbox_queries.enqueue_many(
            session,
            (
                {
                    "dedupe_key": f"broadcast:{chat_id}",
                    "chat_id": chat_id,
                    "kind": "broadcast",
                    "payload": ReadyText(f"hello {chat_id}"),
                    "due_at": now,
                    "now": now,
                }
                for chat_id in chats
            ),
        )


async def _wait_for_chats(api: LocalBotApi, chats: range, seconds: float, *procs: Any) -> None:
    """Wait until every chat got a message (reading the server's calls once, as they come)."""
    missing = set(chats)
    seen = 0
    for _ in range(int(seconds * 10)):
        calls = api.calls
        while seen < len(calls) and calls[seen].status:  # answered calls, in arrival order
            if calls[seen].ok and calls[seen].method == "sendMessage":
                missing.discard(calls[seen].params["chat_id"])
            seen += 1
        if not missing:
            return
        await asyncio.sleep(0.1)
    logs = "\n".join(proc.output()[-3000:] for proc in procs)
    raise AssertionError(f"{len(missing)} chats got nothing; dispatcher logs:\n{logs}")


CRASH_CONFIG = """
[dispatch]
batch_size = 10
concurrency = 4
lease_seconds = 2
poll_seconds = 0.05
"""


async def test_a_dispatcher_killed_mid_broadcast_loses_nothing(
    local_api: LocalBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    tmp_path: Path,
) -> None:
    api = local_api
    chats = range(20_001, 20_091)
    await _queue_broadcast(sessionmaker, api, chats)
    config = _config_dir(tmp_path, CRASH_CONFIG)

    first = await _start(api, database_url, config, tmp_path / "first.log")
    await api.wait_for(lambda: len(delivered(api)) >= 30, timeout=30, description="30 sent")
    first.process.kill()  # SIGKILL: no clean-up of any kind
    await first.process.wait()
    before_restart = len(delivered(api))
    assert before_restart < len(chats), "the broadcast finished before the crash"

    second = await _start(api, database_url, config, tmp_path / "second.log")
    await _wait_for_chats(api, chats, 60, first, second)
    await second.terminate()

    per_chat = Counter(call.params["chat_id"] for call in delivered(api))
    assert set(per_chat) == set(chats)
    duplicates = sum(per_chat.values()) - len(chats)
    assert duplicates <= 4  # at most the sends on the wire (concurrency) when it died
    stored = await rows(sessionmaker)
    assert {row.state for row in stored.values()} == {State.SENT}


async def test_postgresql_two_dispatchers_drain_together_without_duplicates(
    local_api: LocalBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    tmp_path: Path,
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite allows one dispatcher per file (see the stand-by test)")
    api = local_api
    chats = range(30_001, 32_001)
    await _queue_broadcast(sessionmaker, api, chats)
    # Limits raised: this is about claims, and 2,000 at 30/s would take a minute.
    config = _config_dir(
        tmp_path,
        "[limits]\nper_second = 5000\n"
        "[dispatch]\nexclusive = false\nbatch_size = 50\nconcurrency = 8\npoll_seconds = 0.05\n",
    )
    procs = [await _start(api, database_url, config, tmp_path / f"d{n}.log") for n in (1, 2)]
    await _wait_for_chats(api, chats, 120, *procs)
    for proc in procs:
        await proc.terminate()

    per_chat = Counter(call.params["chat_id"] for call in delivered(api))
    assert per_chat == Counter(dict.fromkeys(chats, 1))
    sent = [proc.sent() for proc in procs]
    assert sum(sent) == 2000
    assert all(count > 0 for count in sent), sent  # both really drained


async def test_a_second_dispatcher_stands_by_while_the_first_holds_the_database(
    local_api: LocalBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    tmp_path: Path,
) -> None:
    """SQLite's file lock and PostgreSQL's advisory lock (``exclusive = true``)."""
    api = local_api
    chats = range(40_001, 40_061)
    config = _config_dir(tmp_path, "[dispatch]\npoll_seconds = 0.05\n")
    procs = [await _start(api, database_url, config, tmp_path / f"d{n}.log") for n in (1, 2)]
    for _ in range(600):
        outputs = [proc.output() for proc in procs]
        if any("dispatcher started" in out for out in outputs) and any(
            "standing by" in out for out in outputs
        ):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("\n".join(proc.output() for proc in procs))
    await _queue_broadcast(sessionmaker, api, chats)
    await _wait_for_chats(api, chats, 60, *procs)
    for proc in procs:
        await proc.terminate()
    assert sorted(proc.sent() for proc in procs) == [0, 60]
    assert len(delivered(api)) == 60


async def test_a_stand_alone_dispatcher_carries_a_tickets_lane(
    local_api: LocalBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    tmp_path: Path,
) -> None:
    """The ticket desk's outcome hooks run in ``carebot outbox drain`` too: once the topic is
    created, the card queued behind it goes into that topic."""
    api = local_api
    rules = load_config(EXAMPLE_CONFIG_DIR)
    desk = TicketDesk.from_config(rules, Texts.load(), STAFF_CHAT_ID)
    now = datetime.now(UTC)
    async with sessionmaker.begin() as session:
        customer = await add_customer(session, "S-50001")
        ticket, _ = await open_ticket(
            session, desk, customer, source="complaint", category="delivery", now=now
        )
    config = _config_dir(tmp_path, "[dispatch]\npoll_seconds = 0.05\n")
    drain = await _start(
        api, database_url, config, tmp_path / "drain.log", staff_chat_id=str(STAFF_CHAT_ID)
    )
    try:
        await api.wait_for(
            lambda: any(m.message_thread_id for m in api.sent(STAFF_CHAT_ID)),
            timeout=30,
            description="the card in the new topic",
        )
    finally:
        await drain.terminate()
    [topic] = api.calls_of("createForumTopic")
    [card] = api.sent(STAFF_CHAT_ID)
    assert card.message_thread_id == topic.result["message_thread_id"]
    assert (card.text or "").startswith(f"🎫 <b>{ticket.number}</b>")
