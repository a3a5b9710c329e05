"""The outbox dispatcher: a long broadcast through the local Bot API server, and the claim query
over a million queued rows.

    python bench/dispatch.py                          # SQLite, the figures for the README
    python bench/dispatch.py --database postgresql    # the same on a throwaway PostgreSQL database
    python bench/dispatch.py --chats 1000 --claim-rows 100000   # a quicker look

1. **Broadcast**: ``--chats`` messages to as many distinct chats plus ``--one-chat`` messages to
   a single chat (queued first, so a busy chat must not hold the broadcast up), drained by the
   real dispatcher with the shipped ``outbox.toml`` through the local Bot API server, which
   runs in its own process (as Telegram would be on another machine). Figures
   come from the *server's* arrival times: sustained rate, the most arrivals in any sliding
   second overall and in one chat, the smallest gap in the busy chat, and 429s (answered by the
   server, and sends that Telegram would have refused: arrivals over a limit).
2. **PTB's AIORateLimiter** (when ``aiolimiter`` is importable): the same kind of burst through
   ``ExtBot`` with its stock limiter at 30/s, for comparison. It is a leaky bucket that starts
   full, so it lets about twice the rate through in one sliding second.
3. **Claim**: ``--claim-rows`` pending rows (plus as many already sent), then the time to claim
   the next batch of 50, with the query plan; then the same without ``ix_outbox_due``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from telegram import Bot

from bench._databases import scratch_database
from bot.kernel.clock import SystemClock
from bot.kernel.config import load_config
from bot.kernel.replies import TextRef
from bot.kernel.texts import Texts
from bot.sandbox.api import LocalBotApi
from bot.settings import EXAMPLE_CONFIG_DIR
from scheduler.dispatcher.telegram import create_dispatcher
from scheduler.limiter import max_in_sliding_window
from storage import outbox as outbox_queries
from storage.engine import create_engine, create_sessionmaker
from storage.payloads import CatalogueText

TOKEN = "123456:BENCH-TOKEN"
FIRST_CHAT = 1_000_000
BUSY_CHAT = 999_999


# -- databases ---------------------------------------------------------------------------------


# -- the local Bot API server, in its own process (as Telegram is on another machine) -------------


@dataclass(frozen=True)
class Arrival:
    """One request as the server saw it (``at``: its monotonic clock, shared by processes)."""

    method: str
    chat_id: int | None
    status: int
    at: float

    @property
    def ok(self) -> bool:
        return self.status == 200


def _serve(chat_ids: list[int], connection: Connection) -> None:

    async def main() -> None:
        api = LocalBotApi(TOKEN)
        for chat_id in chat_ids:
            api.add_user(chat_id, f"Customer {chat_id}")
        connection.send(await api.start())
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, connection.recv)  # "report, please"
        connection.send(
            [(call.method, call.params.get("chat_id"), call.status, call.at) for call in api.calls]
        )
        await api.stop()

    asyncio.run(main())


@asynccontextmanager
async def server_process(chat_ids: list[int]) -> AsyncIterator[tuple[str, Connection]]:
    """Start the server with these private chats; yields its root URL and the pipe to ask it
    for its arrivals (``arrivals(pipe)``)."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_serve, args=(chat_ids, child), daemon=True)
    process.start()
    try:
        if not await asyncio.to_thread(parent.poll, 120):
            raise RuntimeError("local Bot API server did not start")
        yield parent.recv(), parent
    finally:
        process.terminate()
        process.join(10)


async def arrivals(pipe: Connection) -> list[Arrival]:
    pipe.send("report")
    records = await asyncio.to_thread(pipe.recv)
    return [Arrival(*record) for record in records if record[0] == "sendMessage"]


# -- 1. the broadcast --------------------------------------------------------------------------


def _rows(chat_ids: Iterable[int], now: datetime, prefix: str) -> list[dict[str, object]]:
    return [
        {
            "dedupe_key": f"{prefix}:{n}:{chat_id}",
            "chat_id": chat_id,
            "kind": prefix,
            "payload": CatalogueText(TextRef("fallback")),
            "due_at": now,
            "now": now,
        }
        for n, chat_id in enumerate(chat_ids)
    ]


async def broadcast(url: str, chats: int, one_chat: int) -> None:
    rules = load_config(EXAMPLE_CONFIG_DIR)
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    now = datetime.now(UTC)
    async with sessionmaker.begin() as session:
        await outbox_queries.enqueue_many(session, _rows([BUSY_CHAT] * one_chat, now, "busy"))
    for start in range(0, chats, 5000):
        async with sessionmaker.begin() as session:
            block = range(FIRST_CHAT + start, FIRST_CHAT + min(chats, start + 5000))
            await outbox_queries.enqueue_many(session, _rows(block, now, "news"))
    total = chats + one_chat
    print(f"broadcast: {chats} distinct chats + {one_chat} to one chat, queued on {engine.name}")

    chat_ids = [BUSY_CHAT, *range(FIRST_CHAT, FIRST_CHAT + chats)]
    async with server_process(chat_ids) as (root, pipe):
        stop = asyncio.Event()
        async with Bot(TOKEN, base_url=f"{root}/bot", base_file_url=f"{root}/file/bot") as bot:
            dispatcher = create_dispatcher(
                bot,
                engine,
                sessionmaker,
                texts=Texts.load(),
                rules=rules.outbox,
                clock=SystemClock(),
                default_timezone=rules.general.customers.default_timezone,
            )
            task = asyncio.create_task(dispatcher.run(stop))
            started = last_report = time.monotonic()
            while dispatcher.counters.sent < total:
                await asyncio.sleep(0.5)
                if time.monotonic() - last_report >= 60:
                    last_report = time.monotonic()
                    done = dispatcher.counters.sent
                    print(f"  … {done}/{total} after {last_report - started:.0f} s", flush=True)
                if task.done():
                    task.result()
            stop.set()
            await task
        calls = await arrivals(pipe)
    await engine.dispose()
    report(calls, rules.outbox.limits.per_second)
    print(f"  dispatcher counters: {dispatcher.counters}")


def report(calls: list[Arrival], per_second: int) -> None:
    ok = [c for c in calls if c.ok]
    arrivals = sorted(c.at for c in ok)
    by_chat: dict[int | None, list[float]] = defaultdict(list)
    for call in ok:
        by_chat[call.chat_id].append(call.at)
    span = arrivals[-1] - arrivals[0]
    over = sum(
        1
        for i, moment in enumerate(arrivals)
        if i >= per_second and moment - arrivals[i - per_second] < 1.0
    )
    busiest = max(by_chat, key=lambda chat: len(by_chat[chat]))
    busy = sorted(by_chat[busiest])
    gaps = [b - a for a, b in itertools.pairwise(busy)]
    per_chat_max = max(max_in_sliding_window(times, 1.0) for times in by_chat.values())
    # Sustained: the whole run minus the first second (a full window may go at once).
    after_first = [moment for moment in arrivals if moment >= arrivals[0] + 1.0]
    sustained = len(after_first) / (arrivals[-1] - arrivals[0] - 1.0) if span > 1 else 0.0
    print(f"  delivered            {len(ok)} messages in {span:.1f} s")
    print(f"  sustained rate       {sustained:.2f} msg/s (overall {len(ok) / span:.2f} msg/s)")
    print(f"  max in any 1 s       {max_in_sliding_window(arrivals, 1.0)} overall")
    print(f"  max in any 1 s       {per_chat_max} in one chat")
    if gaps:
        print(
            f"  busy chat            {len(busy)} messages, smallest gap {min(gaps):.3f} s, "
            f"mean {statistics.fmean(gaps):.3f} s"
        )
    refused = sum(1 for c in calls if c.status == 429)
    print(f"  429s                 {refused} answered; {over} sends over {per_second}/s")


# -- 2. PTB's AIORateLimiter -------------------------------------------------------------------


async def ptb_limiter(messages: int) -> None:
    from telegram.ext import AIORateLimiter, ExtBot

    try:
        limiter = AIORateLimiter(overall_max_rate=30, overall_time_period=1)
    except RuntimeError:
        print("PTB AIORateLimiter: skipped (needs python-telegram-bot[rate-limiter])")
        return
    chat_ids = list(range(FIRST_CHAT, FIRST_CHAT + messages))
    async with server_process(chat_ids) as (root, pipe):
        bot: ExtBot[None] = ExtBot(
            TOKEN, base_url=f"{root}/bot", base_file_url=f"{root}/file/bot", rate_limiter=limiter
        )
        async with bot:
            await asyncio.gather(*(bot.send_message(chat_id, "hello") for chat_id in chat_ids))
        calls = await arrivals(pipe)
    print(f"PTB AIORateLimiter(overall_max_rate=30), {messages} messages sent at once:")
    report(calls, 30)


# -- 3. claiming the next batch ----------------------------------------------------------------

SQLITE_FILL = """
WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < :rows)
INSERT INTO outbox (dedupe_key, chat_id, kind, payload, priority, transactional, state, due_at,
                    attempts, created_at, updated_at, sent_at)
SELECT 'bench:' || :state || ':' || n, 2000000 + n,
       CASE WHEN n % 10 = 0 THEN 'reply' ELSE 'greeting' END,
       '{"key": "fallback", "params": {}}',
       CASE WHEN n % 10 = 0 THEN 30 ELSE 0 END, 0, :state,
       datetime(:now, '-' || (n % 86400) || ' seconds'), 0, :now, :now,
       CASE WHEN :state = 'sent' THEN :now END
FROM seq
"""
POSTGRES_FILL = """
INSERT INTO outbox (dedupe_key, chat_id, kind, payload, priority, transactional, state, due_at,
                    attempts, created_at, updated_at, sent_at)
SELECT 'bench:' || :state || ':' || n, 2000000 + n,
       CASE WHEN n % 10 = 0 THEN 'reply' ELSE 'greeting' END,
       '{"key": "fallback", "params": {}}',
       CASE WHEN n % 10 = 0 THEN 30 ELSE 0 END, false, :state,
       CAST(:now AS timestamptz) - make_interval(secs => n % 86400), 0,
       CAST(:now AS timestamptz), CAST(:now AS timestamptz),
       CASE WHEN :state = 'sent' THEN CAST(:now AS timestamptz) END
FROM generate_series(1, :rows) AS n
"""


async def fill(engine: AsyncEngine, rows: int, now: datetime) -> float:
    started = time.perf_counter()
    postgres = engine.dialect.name == "postgresql"
    stamp: object = now if postgres else now.strftime("%Y-%m-%d %H:%M:%S")
    async with engine.begin() as connection:
        for state in ("pending", "sent"):
            await connection.execute(
                text(POSTGRES_FILL if postgres else SQLITE_FILL),
                {"rows": rows, "state": state, "now": stamp},
            )
        await connection.execute(text("ANALYZE outbox" if postgres else "ANALYZE"))
    return time.perf_counter() - started


async def time_claims(
    sessionmaker: async_sessionmaker[AsyncSession], now: datetime, rounds: int = 30
) -> list[float]:
    """Claim 50 rows ``rounds`` times (each claim committed, as the dispatcher does)."""
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        async with sessionmaker.begin() as session:
            claimed = await outbox_queries.claim_due(
                session, now=now, lease_until=now + timedelta(minutes=2), limit=50
            )
        timings.append(time.perf_counter() - started)
        assert len(claimed) == 50
    return timings


async def plan(sessionmaker: async_sessionmaker[AsyncSession], now: datetime) -> list[str]:
    async with sessionmaker() as session:
        dialect = session.get_bind().dialect
        lines = []
        for priority in (30, 0):
            statement = outbox_queries.claim_candidates(
                session, now=now, priority=priority, limit=50
            )
            sql = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
            if dialect.name == "postgresql":
                result = await session.execute(text(f"EXPLAIN (ANALYZE, COSTS OFF) {sql}"))
                lines += [f"    {row[0]}" for row in result]
            else:
                result = await session.execute(text(f"EXPLAIN QUERY PLAN {sql}"))
                lines += [f"    priority {priority}: {row[-1]}" for row in result]
    return lines


def _ms(timings: list[float]) -> str:
    ordered = sorted(timings)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    return f"median {statistics.median(ordered) * 1000:.2f} ms, p95 {p95 * 1000:.2f} ms"


async def claim(url: str, rows: int) -> None:
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    now = datetime.now(UTC).replace(microsecond=0)
    seconds = await fill(engine, rows, now)
    print(f"claim on {engine.name}: {rows} pending rows (+{rows} sent) written in {seconds:.1f} s")
    print("  query plan of one priority level's claim:")
    for line in await plan(sessionmaker, now):
        print(line)
    print(f"  claim 50 with ix_outbox_due:    {_ms(await time_claims(sessionmaker, now))}")
    async with engine.begin() as connection:
        await connection.execute(text("DROP INDEX ix_outbox_due"))
    print(f"  claim 50 without the index:     {_ms(await time_claims(sessionmaker, now, 5))}")
    await engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--chats", type=int, default=10_000)
    parser.add_argument("--one-chat", type=int, default=50)
    parser.add_argument("--claim-rows", type=int, default=1_000_000)
    parser.add_argument("--ptb-messages", type=int, default=300)
    parser.add_argument("--skip", choices=("broadcast", "ptb", "claim"), action="append")
    args = parser.parse_args()
    skip = set(args.skip or ())
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"machine: {os.cpu_count()} cores, load average {load} at start")
    with tempfile.TemporaryDirectory(prefix="carebot-bench-") as tmp:
        directory = Path(tmp)
        if "broadcast" not in skip:
            async with scratch_database(args.database, directory, "broadcast") as url:
                await broadcast(url, args.chats, args.one_chat)
        if "ptb" not in skip:
            await ptb_limiter(args.ptb_messages)
        if "claim" not in skip:
            async with scratch_database(args.database, directory, "claim") as url:
                await claim(url, args.claim_rows)


if __name__ == "__main__":
    asyncio.run(main())
