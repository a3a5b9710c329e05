"""Telegram's 20 messages a minute per group, without loss: customers writing into their tickets'
topics faster than one group takes, first all in one staff group, then spread over three
(routed by category), through the real bot, its outbox dispatcher and the local Bot API server
enforcing the group limit.

    python bench/group_limit.py                       # 60 customers, 10 minutes, time x10
    python bench/group_limit.py --minutes 3 --scale 20 --customers 30   # a quicker look
    python bench/group_limit.py --database postgresql
    python bench/group_limit.py --layouts one --coalesce off   # every text its own message

Time is scaled: with ``--scale 10`` a "minute" lasts 6 s, the server answers 429 beyond 20
messages into a group in any 6 s, the dispatcher's limiter keeps to 20 per 6 s, the desk's
flood throttle counts per 6 s, and each customer writes once every 6 s (at their own offset in
it) for ``--minutes`` such minutes: the same shape as Telegram's limit and customers writing once
a minute, ten times faster. Latencies are printed in real seconds and, in brackets, as Telegram's
pace would make them (times the scale). The other limits (30 a second, 1 a second per private
chat) are the shipped ones, unscaled: they do not bind here.

Setup (not measured): every customer /starts the bot and gets a ticket with its topic and card
(opened directly, the group limit not enforced yet). Then the limit is on and the customers
write. Printed per layout: customer messages relayed, latency (written -> in the topic) p50 /
p99 / max, sends into each group per (scaled) minute, customer messages per send (a copy is 1, a
merged message carries several), merged messages, 429 answers, and the checks: lost (never in
the topic, waiting ``--stall`` scaled minutes after the last one), duplicated, reordered (a
customer's message shown before an earlier one of theirs) and misdirected (another topic).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shlex
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select

from bench._databases import scratch_database
from bot.app import build_application
from bot.context import inbox_of
from bot.kernel.clock import SystemClock
from bot.kernel.config import Config, RoutingRule, load_config
from bot.kernel.texts import Texts
from bot.sandbox.api import LocalBotApi
from bot.settings import EXAMPLE_CONFIG_DIR, load_settings
from handlers.staff.setup import load_stored_group
from handlers.tickets.lifecycle import open_ticket
from handlers.tickets.outcomes import hooks_by_kind
from scheduler.dispatcher.telegram import Dispatcher
from scheduler.limiter import Limits, SlidingWindowLimiter
from scheduler.locks import lock_for
from storage.engine import BotDatabase
from storage.models import Customer, Ticket
from storage.staff_group import set_staff_group

TOKEN = "123456:BENCH-TOKEN"
GROUPS = {"main": -1001777000001, "two": -1001777000002, "three": -1001777000003}
CATEGORIES = {"main": "delivery", "two": "quality", "three": "service"}
FIRST_CUSTOMER = 710_000
PER_MINUTE = 20
MARKER = re.compile(r"\bm(\d+)-(\d+)\b")


@dataclass
class Run:
    """One layout's figures."""

    groups: int
    written: dict[tuple[int, int], float] = field(default_factory=dict)
    """(customer, n) -> when it was handed to the server."""
    seen: dict[tuple[int, int], list[tuple[float, int, int | None]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    """(customer, n) -> (arrival, chat, thread) of each message in a topic showing it."""
    sends: Counter[int] = field(default_factory=Counter)
    carrying: int = 0
    merged: int = 0
    refused: int = 0
    seconds: float = 0.0
    started_at: float = 0.0
    """When the limit went on: messages in the topics before it are the setup's."""
    topics: dict[int, tuple[int, int | None]] = field(default_factory=dict)
    """customer -> (chat, thread) of their ticket's topic."""


def _rules(args: argparse.Namespace, groups: int) -> Config:
    """The shipped rules, the desk's flood throttle scaled, tickets routed by category."""
    rules = load_config(EXAMPLE_CONFIG_DIR)
    flood = rules.tickets.flood.model_copy(update={"per_seconds": max(1, round(60 / args.scale))})
    routing = [
        RoutingRule(group=name, category=[CATEGORIES[name]]) for name in list(GROUPS)[1:groups]
    ]
    tickets = rules.tickets.model_copy(update={"flood": flood, "routing": routing})
    return rules.model_copy(update={"tickets": tickets})


def _dispatcher(application: Any, database: BotDatabase, rules: Config, limits: Limits) -> Any:
    clock = SystemClock()
    dispatcher = Dispatcher(
        application.bot,
        database.hot,
        texts=Texts.load(),
        rules=rules.outbox,
        clock=clock,
        default_timezone=rules.general.customers.default_timezone,
        lock=lock_for(database.hot.engine, exclusive=True),
        limiter=SlidingWindowLimiter(limits),
        hooks=hooks_by_kind(application.bot_data.desk),
    )
    application.bot_data.wake = dispatcher.wake
    return dispatcher


@asynccontextmanager
async def _running(dispatcher: Any) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        yield
    finally:
        stop.set()
        await task


async def _setup(
    api: LocalBotApi, database: BotDatabase, desk: Any, customers: list[Any], groups: int
) -> None:
    """Every customer registered through the bot, then a ticket each (category by group)."""
    for customer in customers:
        await api.send_text(customer, "/start")
    await api.wait_for(
        lambda: all(api.sent(c.id) for c in customers), timeout=120, description="/start"
    )
    names = list(GROUPS)[:groups]
    async with database.hot.begin() as session:
        for index, customer in enumerate(customers):
            found = (
                await session.execute(
                    select(Customer).where(Customer.telegram_user_id == customer.id)
                )
            ).scalar_one()
            category = CATEGORIES[names[index % groups]]
            await open_ticket(
                session,
                desk,
                found,
                source="complaint",
                category=category,
                now=SystemClock().now(),
            )


async def _topics_ready(database: BotDatabase, count: int) -> dict[int, tuple[int, int | None]]:
    """customer's Telegram id -> (chat, thread) of their ticket's topic, once all have cards."""
    for _ in range(3000):
        async with database.hot() as session:
            result = await session.execute(
                select(Customer.telegram_user_id, Ticket.staff_chat_id, Ticket.topic_thread_id)
                .join(Ticket, Ticket.customer_id == Customer.id)
                .where(Ticket.card_message_id.is_not(None))
            )
            rows = result.all()
        if len(rows) >= count:
            return {int(user): (int(chat), thread) for user, chat, thread in rows}
        await asyncio.sleep(0.1)
    raise RuntimeError("the tickets' topics did not all get their card")


def _markers(api: LocalBotApi, message: Any) -> list[tuple[int, int]]:
    """The customer messages a message in a topic shows, in order: a copy's, a merged one's."""
    if message.copied_from is not None:
        original = api.message(*message.copied_from)
        body = str(original.get("text") or "")
    else:
        body = message.text or ""
    return [(int(c), int(n)) for c, n in MARKER.findall(body)]


async def _write(api: LocalBotApi, customers: list[Any], run: Run, args: argparse.Namespace):
    """Each customer writes once a (scaled) minute, at their own offset in it."""
    period = 60 / args.scale
    start = time.monotonic()
    plan = sorted(
        (start + (index / len(customers) + minute) * period, index, minute)
        for index in range(len(customers))
        for minute in range(args.minutes)
    )
    for moment, index, minute in plan:
        await asyncio.sleep(max(0.0, moment - time.monotonic()))
        customer = customers[index]
        run.written[(customer.id, minute)] = time.monotonic()
        await api.send_text(customer, f"question m{customer.id}-{minute}")


async def _wait_all(api: LocalBotApi, run: Run, args: argparse.Namespace) -> None:
    """Until every message shows in a topic, or ``--stall`` scaled minutes pass without one."""
    stall = args.stall * 60 / args.scale
    last, seen = time.monotonic(), 0
    while time.monotonic() - last < stall:
        _collect(api, run)
        if len(run.seen) >= len(run.written):
            return
        if len(run.seen) > seen:
            last, seen = time.monotonic(), len(run.seen)
        await asyncio.sleep(0.2)


def _collect(api: LocalBotApi, run: Run) -> None:
    """Every customer message shown in a topic since the limit went on, and the sends
    carrying them."""
    run.seen.clear()
    run.merged = run.carrying = 0
    for chat in GROUPS.values():
        for message in api.sent(chat):
            if message.at < run.started_at:
                continue
            found = _markers(api, message)
            if not found:
                continue
            run.carrying += 1
            run.merged += message.copied_from is None
            for marker in found:
                run.seen[marker].append((message.at, chat, message.message_thread_id))


async def _layout(args: argparse.Namespace, groups: int, workdir: Path) -> Run:
    """One layout on a fresh server and database."""
    run = Run(groups)
    api = LocalBotApi(TOKEN)
    root = await api.start()
    customers = [
        api.add_user(FIRST_CUSTOMER + i, f"Customer {FIRST_CUSTOMER + i}")
        for i in range(args.customers)
    ]
    for name, chat in GROUPS.items():
        api.add_group(chat, f"Staff {name}", forum=True)
    async with scratch_database(args.database, workdir, f"groups{groups}") as url:
        database = BotDatabase.open(url)
        async with database.hot.begin() as session:
            for name in list(GROUPS)[1:groups]:
                await set_staff_group(
                    session,
                    expected=None,
                    chat_id=GROUPS[name],
                    title=name,
                    user_id=1,
                    now=SystemClock().now(),
                    name=name,
                )
        try:
            await _measure(args, api, root, database, url, customers, run)
        finally:
            await database.dispose()
            await api.stop()
    return run


async def _measure(
    args: argparse.Namespace,
    api: LocalBotApi,
    root: str,
    database: BotDatabase,
    url: str,
    customers: list[Any],
    run: Run,
) -> None:
    rules = _rules(args, run.groups)
    settings = load_settings(
        telegram_token=TOKEN, telegram_api_url=root, database_url=url, staff_chat_id=GROUPS["main"]
    )
    application = build_application(
        settings,
        rules=rules,
        texts=Texts.load(),
        sessionmaker=database.hot,
        background_sessionmaker=database.background,
        clock=SystemClock(),
    )
    async with database.hot() as session:
        await load_stored_group(session, application.bot_data.desk.group)
    lifted = Limits(per_second=1000, per_private_chat_second=1000, per_group_minute=10_000)
    scaled = Limits(per_group_minute=PER_MINUTE, minute=60 / args.scale)
    async with application:
        await application.start()
        inbox = inbox_of(application)
        await inbox.start(polling=True)
        try:
            async with _running(_dispatcher(application, database, rules, lifted)):
                desk = application.bot_data.desk
                await _setup(api, database, desk, customers, run.groups)
                run.topics = await _topics_ready(database, len(customers))
            api.limit_groups(PER_MINUTE, 60 / args.scale)
            first = len(api.calls)
            run.started_at = time.monotonic()
            dispatcher = _dispatcher(application, database, rules, scaled)
            if args.coalesce == "off":  # the desk's hooks never hear the limiter: no merging
                for hook in dispatcher.hooks.values():
                    hook.room = None
            async with _running(dispatcher):
                started = time.monotonic()
                await _write(api, customers, run, args)
                await _wait_all(api, run, args)
                run.seconds = time.monotonic() - started
            _collect(api, run)
            _count_calls(api, run, first)
        finally:
            await inbox.stop()
            await application.stop()


def _count_calls(api: LocalBotApi, run: Run, first: int) -> None:
    for call in api.calls[first:]:
        chat = call.params.get("chat_id")
        if call.status == 429:
            run.refused += 1
        elif call.ok and chat in GROUPS.values():
            run.sends[chat] += 1


def _check_order(run: Run) -> tuple[int, int, int]:
    """Duplicated, reordered, misdirected."""
    duplicated = sum(len(found) - 1 for found in run.seen.values() if len(found) > 1)
    misdirected = 0
    shown: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for (customer, n), found in run.seen.items():
        arrival, chat, thread = found[0]
        misdirected += run.topics.get(customer) != (chat, thread)
        shown[customer].append((arrival, n))
    reordered = 0
    for items in shown.values():
        highest = -1
        for _, n in sorted(items):
            reordered += n < highest
            highest = max(highest, n)
    return duplicated, reordered, misdirected


def _ms(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * fraction + 0.5) - 1)]


def _report(args: argparse.Namespace, run: Run) -> None:
    latencies = [
        run.seen[key][0][0] - written for key, written in run.written.items() if key in run.seen
    ]
    lost = len(run.written) - len([key for key in run.written if key in run.seen])
    duplicated, reordered, misdirected = _check_order(run)
    scaled_minutes = run.seconds / (60 / args.scale)
    relayed = len(latencies)
    print(f"{run.groups} group(s): {relayed}/{len(run.written)} customer messages relayed")
    if latencies:
        for label, value in (
            ("p50", statistics.median(latencies)),
            ("p99", _ms(latencies, 0.99)),
            ("max", max(latencies)),
        ):
            print(
                f"  latency {label}: {value:6.2f} s"
                f"  ({value * args.scale:6.1f} s at Telegram's pace)"
            )
    for name, chat in list(GROUPS.items())[: run.groups]:
        per_minute = run.sends[chat] / scaled_minutes if scaled_minutes else 0.0
        print(f"  sends into {name}: {run.sends[chat]} ({per_minute:.1f} a minute)")
    per_send = relayed / run.carrying if run.carrying else 0.0
    print(
        f"  sends carrying customer messages: {run.carrying} ({run.merged} merged), "
        f"{per_send:.2f} messages per send"
    )
    print(f"  429 answers: {run.refused}")
    print(
        f"  lost/duplicated/reordered/misdirected: {lost}/{duplicated}/{reordered}/{misdirected}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--customers", type=int, default=60)
    parser.add_argument("--minutes", type=int, default=10, help="each writes once a minute")
    parser.add_argument("--scale", type=float, default=10.0, help="time runs this much faster")
    parser.add_argument("--layouts", choices=["both", "one", "three"], default="both")
    parser.add_argument(
        "--coalesce", choices=["on", "off"], default="on", help="off: every text its own send"
    )
    parser.add_argument("--stall", type=float, default=5, help="scaled minutes without progress")
    args = parser.parse_args()
    print("$ " + shlex.join(sys.orig_argv), flush=True)
    print(
        f"{args.customers} customers writing once a minute for {args.minutes} minutes, "
        f"{PER_MINUTE} messages a minute per group enforced by the server; time x{args.scale:g} "
        f"(a minute is {60 / args.scale:g} s); {args.database}; coalescing {args.coalesce}"
    )
    layouts = {"both": (1, 3), "one": (1,), "three": (3,)}[args.layouts]
    with tempfile.TemporaryDirectory(prefix="carebot-group-limit-") as workdir:
        for groups in layouts:
            run = await _layout(args, groups, Path(workdir))
            _report(args, run)


if __name__ == "__main__":
    asyncio.run(main())
