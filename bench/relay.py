"""Relay latency of the ticket desk: customers and staff writing back and forth in many tickets
at once, through the real bot, its outbox dispatcher and the local Bot API server.

    python bench/relay.py                          # 200 tickets, 3 rounds each, SQLite
    python bench/relay.py --database postgresql    # the same on a throwaway PostgreSQL database
    python bench/relay.py --tickets 50 --rounds 2  # a quicker look

The local Bot API server runs in its own process (as Telegram would be on another machine),
together with the virtual people: ``--tickets`` customers each file a complaint through the
real flow (/complaint, category, skip the order, one description message, done, send), wait for
the ticket's topic, then ``--rounds`` times write a message, wait for its copy in the topic,
and get a staff answer written in the topic (by one of ``--staff`` members), waiting for it to
arrive in their chat, with a random pause of up to ``--think`` ms between steps. All tickets run
at once. The figures are measured in that process, from the moment a message is handed to the
server to the moment the bot's copy of it is stored there:

- customer -> topic: the customer's message, to its copyMessage in the ticket's topic;
- staff -> customer: the staff reply in the topic, to its copy in the customer's private chat.

The bot is ``bot.app.build_application`` with the outbox dispatcher and the ticket desk's hooks
(as ``carebot run`` starts them). Telegram allows a bot 20 messages a minute into one group, so
with the shipped ``outbox.toml`` the staff group — one group for every topic — would hold the
whole desk to 20 relays, title changes and topic creations a minute; ``--limits lifted`` (the
default) raises the dispatcher's limits so the figures show the bot's own cost.
``--limits telegram`` keeps the shipped ones (expect minutes per round).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import multiprocessing.connection
import random
import signal
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from bench._databases import scratch_database
from bot.app import build_application
from bot.rules import OutboxRules, load_rules
from bot.settings import EXAMPLE_CONFIG_DIR, load_settings
from bot.texts import Texts
from handlers.tickets import DESK_KEY, WAKE_KEY
from handlers.tickets_rules import Desk, hooks_by_kind
from scheduler.clock import SystemClock
from scheduler.dispatcher import Dispatcher
from scheduler.locks import lock_for
from storage.engine import create_engine, create_sessionmaker

TOKEN = "123456:BENCH-TOKEN"
STAFF_CHAT_ID = -1001555000001
FIRST_CUSTOMER = 700_000
FIRST_STAFF = 900_000


# -- the other machine: Telegram's side and the people --------------------------------------------


@dataclass
class Results:
    to_topic: list[float] = field(default_factory=list)
    to_customer: list[float] = field(default_factory=list)
    flow_seconds: float = 0.0
    rounds_seconds: float = 0.0
    calls: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class Watch:
    """Wakes whoever waits for a message the bot stores in a chat (the server's ``_post`` is
    wrapped: scanning the staff group's thousands of messages per wait would measure the bench,
    not the bot)."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.copies: dict[tuple[int, int], asyncio.Future[float]] = {}
        self.markers: dict[tuple[int, str], asyncio.Future[float]] = {}
        self.chat_events: dict[int, asyncio.Event] = defaultdict(asyncio.Event)
        self.topics: dict[int, asyncio.Future[int]] = {}
        original = api._post

        def post(target: Any, content: Any, method: str, params: Any, **kwargs: Any) -> Any:
            message = original(target, content, method, params, **kwargs)
            record = api._sent[target.chat.id][-1]
            self._seen(record)
            return message

        api._post = post

    def _seen(self, record: Any) -> None:
        if record.copied_from is not None:
            future = self.copies.pop(record.copied_from, None)
            if future is not None and not future.done():
                future.set_result(record.at)
        body = record.text or record.caption or ""
        if record.chat_id > 0 and "#" in body:
            marker = body[body.index("#") :].split()[0]
            future = self.markers.pop((record.chat_id, marker), None)
            if future is not None and not future.done():
                future.set_result(record.at)
        self.chat_events[record.chat_id].set()
        if record.chat_id == STAFF_CHAT_ID and (record.text or "").startswith("🎫"):
            for name_part, waiting in list(self.topics.items()):
                if f"Customer {name_part}" in self._topic_name(record.message_thread_id):
                    if not waiting.done():
                        waiting.set_result(record.message_thread_id)
                    self.topics.pop(name_part, None)

    def _topic_name(self, thread_id: int | None) -> str:
        for topic in self.api.topics(STAFF_CHAT_ID):
            if topic.message_thread_id == thread_id:
                return str(topic.name)
        return ""

    def copy_of(self, chat_id: int, message_id: int) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.copies[(chat_id, message_id)] = future
        return future

    def marker(self, chat_id: int, marker: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.markers[(chat_id, marker)] = future
        return future

    def topic_for(self, user_id: int) -> asyncio.Future[int]:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.topics[user_id] = future
        return future

    async def next_in(self, chat_id: int, count: int, timeout: float = 60) -> Any:  # noqa: ASYNC109
        """The ``count``-th message the bot sent to the chat, once it is there."""
        async with asyncio.timeout(timeout):
            while len(self.api.sent(chat_id)) < count:
                event = self.chat_events[chat_id]
                event.clear()
                await event.wait()
        return self.api.sent(chat_id)[count - 1]


async def _people(api: Any, args: dict[str, Any], results: Results) -> None:
    watch = Watch(api)
    rng = random.Random(7)
    customers = [api.user(FIRST_CUSTOMER + i) for i in range(args["tickets"])]
    staff = [api.user(FIRST_STAFF + i) for i in range(args["staff"])]
    think = args["think"] / 1000

    async def pause() -> None:
        await asyncio.sleep(rng.uniform(0, think))

    async def file(customer: Any) -> int:
        topic = watch.topic_for(customer.id)
        seen = 0

        async def step() -> Any:
            nonlocal seen
            seen += 1
            return await watch.next_in(customer.id, seen)

        await api.send_text(customer, "/complaint")
        menu = await step()
        await api.press_button(customer, menu, "cf:cat:delivery")
        order = await step()
        await api.press_button(customer, order, "cf:skip")
        await step()
        await api.send_text(customer, "The parcel arrived broken")
        added = await step()
        await api.press_button(customer, added, "cf:done")
        confirm = await step()
        await api.press_button(customer, confirm, "cf:send")
        await step()
        return await asyncio.wait_for(topic, 120)

    async def talk(index: int, customer: Any, thread: int) -> None:
        member = staff[index % len(staff)]
        for round_ in range(args["rounds"]):
            await pause()
            update = await api.send_text(customer, f"question {round_} from {customer.id}")
            sent_at = time.monotonic()
            arrived = await asyncio.wait_for(
                watch.copy_of(customer.id, update["message"]["message_id"]), 120
            )
            results.to_topic.append(arrived - sent_at)
            await pause()
            marker = f"#{customer.id}-{round_}"
            waiting = watch.marker(customer.id, marker)
            await api.send_text(
                member, f"answer {marker}", chat_id=STAFF_CHAT_ID, message_thread_id=thread
            )
            sent_at = time.monotonic()
            arrived = await asyncio.wait_for(waiting, 120)
            results.to_customer.append(arrived - sent_at)

    started = time.monotonic()
    threads = await asyncio.gather(*(file(customer) for customer in customers))
    results.flow_seconds = time.monotonic() - started
    started = time.monotonic()
    outcomes = await asyncio.gather(
        *(
            talk(index, customer, thread)
            for index, (customer, thread) in enumerate(zip(customers, threads, strict=True))
        ),
        return_exceptions=True,
    )
    results.rounds_seconds = time.monotonic() - started
    results.errors = [repr(outcome) for outcome in outcomes if isinstance(outcome, BaseException)]
    counts: dict[str, int] = defaultdict(int)
    for call in api.calls:
        if call.method != "getUpdates":
            counts[call.method] += 1
    results.calls = dict(counts)


def _serve(args: dict[str, Any], connection: multiprocessing.connection.Connection) -> None:
    from bot.local_api import LocalBotApi

    async def main() -> None:
        api = LocalBotApi(TOKEN)
        for i in range(args["tickets"]):
            api.add_user(FIRST_CUSTOMER + i, f"Customer {FIRST_CUSTOMER + i}")
        api.add_group(STAFF_CHAT_ID, "Staff", forum=True)
        for i in range(args["staff"]):
            api.add_member(STAFF_CHAT_ID, api.add_user(FIRST_STAFF + i, f"Agent{i}"), "member")
        root = await api.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        connection.send(root)
        await asyncio.get_running_loop().run_in_executor(None, connection.recv)  # bot is up
        results = Results()
        try:
            await _people(api, args, results)
        except Exception as error:  # report rather than hang the parent
            results.errors.append(repr(error))
        connection.send(results)
        await stop.wait()
        await api.stop()

    asyncio.run(main())


# -- this machine: the bot ------------------------------------------------------------------------


def _outbox_rules(limits: str) -> OutboxRules:
    shipped = load_rules(EXAMPLE_CONFIG_DIR).outbox
    if limits == "telegram":
        return shipped
    lifted = shipped.limits.model_copy(
        update={
            "per_second": 10_000,
            "per_private_chat_second": 10_000,
            "per_group_minute": 10_000,
        }
    )
    return shipped.model_copy(update={"limits": lifted})


def _ms(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * fraction + 0.5) - 1)] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--staff", type=int, default=10)
    parser.add_argument("--think", type=int, default=200, help="longest pause, ms")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--limits", choices=["lifted", "telegram"], default="lifted")
    args = parser.parse_args()

    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    server = context.Process(target=_serve, args=(vars(args), child), daemon=True)
    server.start()
    if not parent.poll(60):
        server.terminate()
        raise RuntimeError("local Bot API server did not start")
    root = parent.recv()
    workdir = Path(tempfile.mkdtemp(prefix="carebot-relay-"))
    rules = load_rules(EXAMPLE_CONFIG_DIR)
    texts = Texts.load()
    outbox = _outbox_rules(args.limits)
    try:
        async with scratch_database(args.database, workdir, "relay") as url:
            settings = load_settings(
                telegram_token=TOKEN,
                telegram_api_url=root,
                database_url=url,
                staff_chat_id=STAFF_CHAT_ID,
            )
            engine = create_engine(url)
            sessionmaker = create_sessionmaker(engine)
            clock = SystemClock()
            application = build_application(
                settings, rules=rules, texts=texts, sessionmaker=sessionmaker, clock=clock
            )
            desk = Desk.from_rules(rules, texts, STAFF_CHAT_ID)
            application.bot_data[DESK_KEY] = desk
            dispatcher = Dispatcher(
                application.bot,
                sessionmaker,
                texts=texts,
                rules=outbox,
                clock=clock,
                default_timezone=rules.general.customers.default_timezone,
                lock=lock_for(engine, exclusive=True),
                hooks=hooks_by_kind(desk),
            )
            application.bot_data[WAKE_KEY] = dispatcher.wake
            stop = asyncio.Event()
            async with application:
                await application.start()
                assert application.updater is not None
                await application.updater.start_polling(poll_interval=0, timeout=10)
                dispatching = asyncio.create_task(dispatcher.run(stop))
                parent.send("go")
                results: Results = await asyncio.get_running_loop().run_in_executor(
                    None, parent.recv
                )
                stop.set()
                await dispatching
                await application.updater.stop()
                await application.stop()
            await engine.dispose()
    finally:
        server.terminate()
        server.join(10)

    print(
        f"{args.tickets} tickets x {args.rounds} rounds, {args.staff} staff, {args.database}, "
        f"limits {args.limits}; local Bot API server and the people in their own process"
    )
    if results.errors:
        print(f"ERRORS ({len(results.errors)}): {results.errors[:3]}")
    print(
        f"filing {args.tickets} complaints and their topics: {results.flow_seconds:.1f} s; "
        f"the rounds: {results.rounds_seconds:.1f} s"
    )
    for label, values in (
        ("customer -> topic", results.to_topic),
        ("staff -> customer", results.to_customer),
    ):
        if values:
            median = statistics.median(values) * 1000
            print(
                f"{label:<18} {len(values):5d} messages   median {median:7.1f} ms"
                f"   p99 {_ms(values, 0.99):7.1f} ms   max {max(values) * 1000:7.1f} ms"
            )
    calls = ", ".join(f"{method} {count}" for method, count in sorted(results.calls.items()))
    print(f"Bot API calls: {calls}")


if __name__ == "__main__":
    asyncio.run(main())
