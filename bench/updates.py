"""Customer text messages through the whole stack, against bare PTB bots.

Every bot runs the real ``telegram.ext.Application`` and replies over HTTP to the project's local
Bot API server, which runs in its own process (as Telegram would be on another machine). Each of
``--customers`` virtual customers sends its next message when the reply to the previous one has
been sent, so the figures are a rate and a latency (update in -> reply acknowledged), not queueing.

    python bench/updates.py --messages 2000 --customers 8 --rounds 2

The bots, measured in turn in each round:

- ``echo``: a bare PTB echo bot (the target's baseline), on carebot's HTTP transport; once, for
  reference, on PTB's default one (``echo-httpx``);
- ``answer-only``: the same bare bot sending carebot's answer (matched in the knowledge base,
  rendered with its link and buttons), storing nothing;
- ``answer+sqlite3``: that, plus the rows carebot writes (the message, then the question) through
  ``sqlite3`` directly: the floor for any storage layer;
- ``carebot``: the full stack (``bot.app.build_application``): every message stored (SQLite,
  WAL) before its rule runs, the customer loaded, the ticket check, the question recorded, the
  per-update metrics and log line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from telegram import Update
from telegram.constants import ParseMode
from telegram.ext import (
    Application,
    ApplicationBuilder,
    ContextTypes,
    Defaults,
    MessageHandler,
    filters,
)

from bench._server import start_server
from bot.app import MAX_CONCURRENT_UPDATES, build_application
from bot.context import AppData
from bot.http import AiohttpRequest
from bot.kernel.clock import SystemClock
from bot.kernel.config import load_config
from bot.kernel.texts import Texts
from bot.settings import EXAMPLE_CONFIG_DIR, load_settings
from handlers._edge.render import respond
from handlers.answers.answering import Answer, find_answer
from handlers.answers.kb import KnowledgeBase, load_knowledge_base
from storage.engine import BotDatabase
from storage.migrate import upgrade

TOKEN = "123456:BENCH-TOKEN"
Bot = Application[Any, Any, Any, Any, Any, Any]
Made = tuple[Bot, Callable[[], Coroutine[Any, Any, None]]]
"""A bot to measure and what to call when it is done."""
FIRST_USER = 500_000


@dataclass
class Result:
    name: str
    rate: float
    latencies: list[float]

    def line(self) -> str:
        ordered = sorted(self.latencies)
        p50 = statistics.median(ordered) * 1000
        p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000
        return (
            f"{self.name:<14} {self.rate:8.0f} updates/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms"
        )


class UpdateFactory:
    def __init__(self) -> None:
        self.next_id = 1
        self.raw: dict[int, str] = {}
        """Each update as it would come over the wire (what an inbox stores)."""

    def text(self, application: Bot, user_id: int, text: str) -> Update:
        return Update.de_json(self.data(user_id, text), application.bot)

    def data(self, user_id: int, text: str) -> dict[str, Any]:
        self.next_id += 1
        data = {
            "update_id": self.next_id,
            "message": {
                "message_id": self.next_id,
                "date": int(time.time()),
                "chat": {"id": user_id, "type": "private", "first_name": "C"},
                "from": {"id": user_id, "is_bot": False, "first_name": "C", "language_code": "en"},
                "text": text,
                **(
                    {"entities": [{"type": "bot_command", "offset": 0, "length": len(text)}]}
                    if text.startswith("/")
                    else {}
                ),
            },
        }
        self.raw[self.next_id] = json.dumps(data, separators=(",", ":"))
        return data


async def drive(
    application: Bot,
    factory: UpdateFactory,
    customers: int,
    messages: int,
    text: str,
) -> tuple[float, list[float]]:
    """Closed loop: each customer sends, waits for the update to be fully handled, sends again.
    carebot's updates go in through its inbox (stored, then handled from there, as from
    getUpdates or the webhook); the bare bots' through PTB's update processor."""
    processor = application.update_processor
    bot_data = application.bot_data  # carebot's AppData; a bare bot's plain dict
    inbox = bot_data.inbox if isinstance(bot_data, AppData) else None
    handled: dict[int, asyncio.Future[None]] = {}
    if inbox is not None:

        def done(update_ids: list[int]) -> None:
            for update_id in update_ids:
                waiting = handled.pop(update_id, None)
                if waiting is not None:
                    waiting.set_result(None)

        inbox.on_handled = done
    latencies: list[float] = []
    per_customer = messages // customers

    async def customer(user_id: int) -> None:
        for _ in range(per_customer):
            started = time.perf_counter()
            if inbox is not None:
                data = factory.data(user_id, text)
                waiting = handled[data["update_id"]] = asyncio.get_running_loop().create_future()
                await inbox.receive([data])
                await waiting
            else:
                update = factory.text(application, user_id, text)
                await processor.process_update(update, application.process_update(update))
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(customer(FIRST_USER + i) for i in range(customers)))
    elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, latencies


async def echo(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.message is not None and update.message.text is not None
    await update.message.reply_text(update.message.text)


StoreRows = Callable[[Update, Answer], int]
"""Stores a message and the question answered from it; returns the question's id."""


def answering(
    knowledge: KnowledgeBase, texts: Texts, store: StoreRows | None = None
) -> Callable[..., Coroutine[Any, Any, None]]:
    """A callback that sends carebot's answer to the text
    (``handlers.answers.answering.find_answer``, then rendered with its buttons, as carebot
    does), storing the rows with ``store`` if given: what the answer itself costs, apart from
    carebot's storage layer, ticket check and per-update metrics and log."""

    async def answer(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None and update.message.text is not None
        found = find_answer(update.message.text, knowledge)
        question_id = store(update, found) if store is not None else 0
        await respond(update, texts, found.reply("en", question_id))

    return answer


def raw_sqlite_rows(connection: sqlite3.Connection, factory: UpdateFactory) -> StoreRows:
    """The rows carebot writes for a question, through ``sqlite3`` on the event loop with no
    ORM, no pool and no thread: the update committed to the inbox first (with its raw JSON),
    then the customer looked up, the question recorded and the update marked handled in a
    second transaction. The floor for any storage layer."""

    def store(update: Update, answer: Answer) -> int:
        message = update.message
        assert message is not None
        user_id = message.chat.id
        now = message.date.isoformat()
        best = answer.match.best
        (row_id,) = connection.execute(
            "INSERT INTO inbox (update_id, customer_id, chat_id, thread_id, telegram_message_id,"
            " sender_user_id, kind, text, media_file_id, edited, received_at, state, payload,"
            " attempts) VALUES (?, (SELECT id FROM customers WHERE telegram_user_id = ?), ?,"
            " NULL, ?, ?, 'text', ?, NULL, 0, ?, 'pending', ?, 0) RETURNING id",
            (
                update.update_id,
                user_id,
                user_id,
                message.message_id,
                user_id,
                message.text,
                now,
                factory.raw.pop(update.update_id),
            ),
        ).fetchone()
        connection.commit()
        customer = connection.execute(
            "SELECT id, language FROM customers WHERE telegram_user_id = ?", (user_id,)
        ).fetchone()
        (question_id,) = connection.execute(
            "INSERT INTO kb_questions (customer_id, language, question, entry_id, score, outcome,"
            " asked_at) VALUES (?, 'en', ?, ?, ?, ?, ?) RETURNING id",
            (
                customer[0] if customer else None,
                answer.match.normalised,
                best.entry_id if best else None,
                best.score if best else 0.0,
                answer.outcome,
                now,
            ),
        ).fetchone()
        connection.execute(
            "UPDATE inbox SET state = 'handled', payload = NULL, handled_at = ? WHERE id = ?",
            (now, row_id),
        )
        connection.commit()
        return int(question_id)

    return store


def echo_application(
    root: str,
    *,
    stock_transport: bool,
    callback: Callable[..., Coroutine[Any, Any, None]] = echo,
) -> Bot:
    """A bare PTB bot answering every text with ``callback`` (echo by default); with
    ``stock_transport`` on PTB's default HTTP client (httpx), otherwise on the same transport
    carebot uses."""
    builder = (
        ApplicationBuilder()
        .token(TOKEN)
        .base_url(f"{root}/bot")
        .defaults(Defaults(parse_mode=ParseMode.HTML))
        .concurrent_updates(MAX_CONCURRENT_UPDATES)
        .updater(None)
    )
    if not stock_transport:
        builder = builder.request(AiohttpRequest(connection_pool_size=MAX_CONCURRENT_UPDATES))
    application = builder.build()
    application.add_handler(MessageHandler(filters.TEXT, callback))
    return application


async def run_one(
    name: str,
    make: Callable[[], Coroutine[Any, Any, Made]],
    customers: int,
    messages: int,
    factory: UpdateFactory,
) -> Result:
    application, cleanup = await make()
    async with application:
        await application.start()
        # Warm-up (and registration for the full stack): not timed.
        for i in range(customers):
            update = factory.text(application, FIRST_USER + i, "/start")
            await application.process_update(update)
        await drive(application, factory, customers, min(messages, customers * 20), "warm up")
        rate, latencies = await drive(
            application, factory, customers, messages, "where is my parcel?"
        )
        await application.stop()
    await cleanup()
    return Result(name, rate, latencies)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--customers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each bot")
    args = parser.parse_args()

    server = start_server(TOKEN, range(FIRST_USER, FIRST_USER + args.customers))
    workdir = Path(tempfile.mkdtemp(prefix="carebot-bench-"))
    texts = Texts.load()
    rules = load_config(EXAMPLE_CONFIG_DIR)
    knowledge = load_knowledge_base(EXAMPLE_CONFIG_DIR)

    factory = UpdateFactory()

    async def nothing() -> None:
        return None

    databases = 0

    async def fresh_database() -> Path:
        nonlocal databases
        databases += 1
        path = workdir / f"bench-{databases}.db"
        await asyncio.to_thread(upgrade, f"sqlite+aiosqlite:///{path}")
        return path

    async def make_stock_echo() -> Made:
        return echo_application(server.root_url, stock_transport=True), nothing

    async def make_echo() -> Made:
        return echo_application(server.root_url, stock_transport=False), nothing

    async def make_answering() -> Made:
        callback = answering(knowledge, texts)
        return echo_application(server.root_url, stock_transport=False, callback=callback), nothing

    async def make_answering_raw_sqlite() -> Made:
        connection = sqlite3.connect(await fresh_database())
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        callback = answering(knowledge, texts, raw_sqlite_rows(connection, factory))

        async def close() -> None:
            connection.close()

        return echo_application(server.root_url, stock_transport=False, callback=callback), close

    async def make_full() -> Made:
        url = f"sqlite+aiosqlite:///{await fresh_database()}"
        settings = load_settings(
            telegram_token=TOKEN, telegram_api_url=server.root_url, database_url=url
        )
        database = BotDatabase.open(url)  # as carebot run opens it
        application = build_application(
            settings,
            rules=rules,
            texts=texts,
            sessionmaker=database.hot,
            background_sessionmaker=database.background,
            clock=SystemClock(),
        )
        return application, database.dispose

    try:
        print(
            f"{args.messages} messages from {args.customers} customers, "
            f"{args.rounds} alternating rounds; local Bot API server in its own process"
        )
        stock = await run_one(
            "echo-httpx", make_stock_echo, args.customers, args.messages, factory
        )
        print(stock.line(), "(bare PTB echo on PTB's default transport, for reference)")
        bots = {
            "echo": make_echo,
            "answer-only": make_answering,
            "answer+sqlite3": make_answering_raw_sqlite,
            "carebot": make_full,
        }
        results: dict[str, list[Result]] = {name: [] for name in bots}
        for _ in range(args.rounds):
            for name, make in bots.items():
                results[name].append(
                    await run_one(name, make, args.customers, args.messages, factory)
                )
                print(results[name][-1].line())
        best = {name: max(r.rate for r in runs) for name, runs in results.items()}
        ratios = ", ".join(f"{name} {best[name] / best['echo']:.2f}" for name in list(bots)[1:])
        print(f"ratio (best / best echo, same transport): {ratios}")
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
