"""Relay through the ticket desk, against a bare relay bot measured in the same run: customers
and staff writing in many tickets at once, through the real bot, its outbox dispatcher and the
local Bot API server.

    python bench/relay.py                          # burst, SQLite: baseline, then carebot
    python bench/relay.py --database postgresql    # the same on throwaway PostgreSQL databases
    python bench/relay.py --customers 5 --messages 5 --replies 20   # a quicker look
    python bench/relay.py --workload rounds        # the interactive rounds (carebot only)

The local Bot API server runs in its own process (as Telegram would be on another machine),
together with the virtual people, so the bot process's CPU time (``getrusage``) is the bot's
own. Latency is measured there, from the moment a message is handed to the server to the moment
the bot's copy of it is stored there.

``--workload burst`` (the default) runs two bots one after the other, each against a fresh
server process and a fresh database of ``--database``'s kind:

- ``baseline`` (``bench/_relay_baseline.py``): a bare python-telegram-bot topic-relay bot: per
  customer message, look the topic up, ``copy_message`` into it, insert a row, commit; per staff
  message in a topic, look the customer up by thread id, ``copy_message`` to them, insert a row,
  commit. Stock ``Updater`` (long polling), PTB's default transport (httpx) and sequential
  updates (``concurrent_updates`` off), unless ``--baseline-transport`` or
  ``--baseline-concurrency`` say otherwise;
- ``carebot``: ``bot.app.build_application`` with the outbox dispatcher and the ticket desk's
  hooks (``_carebot`` below, the one place that knows how carebot starts).

Setup (not measured): ``--customers`` customers each get a ticket and its topic (carebot: a
complaint filed through the real flow; baseline: the customer's first message, which creates
the topic). Then two bursts, each measured until the bot is idle again:

1. every customer sends ``--messages`` messages at once (interleaved, as fast as the server takes
   them); done when every message's copy is in its topic;
2. staff send ``--replies`` replies at once in the topics (round robin over the tickets and the
   ``--staff`` members); done when every reply has reached the customer's private chat.

Printed per burst and bot: the bot process's CPU time per relayed message (from the start of the
burst until the bot is idle after the last copy), messages per second and p50/p99 latency, and
the checks: lost (no copy arrived; the wait gives up after ``--stall`` seconds without progress),
reordered (a copy stored after the copy of a later message to the same topic or chat),
duplicated (a message copied more than once) and misdirected (a copy in the wrong chat or topic).

Telegram allows a bot 20 messages a minute into one group, and carebot keeps at most 10 messages
a minute per customer in the ticket's topic (the flood throttle); ``--limits lifted`` (the
default) raises both, so the figures show the bot's own cost. ``--limits telegram`` keeps the
shipped ones (expect minutes, and throttled messages counted as lost).

``--workload rounds`` (carebot only): ``--tickets`` customers each file a complaint through the
real flow (/complaint, category, skip the order, one description message, done, send), wait for
the ticket's topic, then ``--rounds`` times write a message, wait for its copy in the topic, and
get a staff answer written in the topic (by one of ``--staff`` members), waiting for it to arrive
in their chat, with a random pause of up to ``--think`` ms between steps; all tickets at once.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import multiprocessing
import multiprocessing.connection
import random
import re
import resource
import shlex
import signal
import statistics
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from bench._databases import scratch_database
from bench._relay_baseline import baseline_bot
from bot.app import build_application
from bot.context import inbox_of
from bot.kernel.clock import SystemClock
from bot.kernel.config import Config, load_config
from bot.kernel.texts import Texts
from bot.settings import EXAMPLE_CONFIG_DIR, load_settings
from handlers.tickets.outcomes import hooks_by_kind
from scheduler.dispatcher.telegram import Dispatcher
from scheduler.locks import lock_for
from storage.engine import BotDatabase

TOKEN = "123456:BENCH-TOKEN"
STAFF_CHAT_ID = -1001555000001
FIRST_CUSTOMER = 700_000
FIRST_STAFF = 900_000
MARKER = re.compile(r"\[[cs]\d+-\d+\]")
"""Tags each burst message (``[c<customer>-<n>]``, ``[s<customer>-<n>]``); copies keep it."""
BOTS = ("baseline", "carebot")

Where = tuple[int, int | None]
"""A chat, and the topic's thread id in the staff group (None in a private chat)."""
Measure = Callable[[str], Awaitable[tuple[float, float]]]


# -- the other machine: Telegram's side and the people --------------------------------------------


@dataclass
class Results:
    """The rounds workload."""

    to_topic: list[float] = field(default_factory=list)
    to_customer: list[float] = field(default_factory=list)
    flow_seconds: float = 0.0
    rounds_seconds: float = 0.0
    calls: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


@dataclass
class Tracked:
    """A burst message: where its copy belongs, its place among the messages for that chat or
    topic, when it was handed to the server, and where (and when) copies of it were stored."""

    destination: Where
    sequence: int
    sent_at: float = 0.0
    arrivals: list[tuple[float, Where]] = field(default_factory=list)


@dataclass
class Leg:
    """One burst as seen at the server, with the bot's CPU time for it."""

    name: str
    sent: int = 0
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    """From the first message handed to the server to the last copy stored."""
    cpu: float = 0.0
    """The bot process's CPU seconds from the start until it was idle after the last copy."""
    cpu_after: float = 0.0
    """Of ``cpu``, the part after the wait ended (at the last copy, or after ``--stall``)."""
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    misdirected: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    failed_calls: dict[str, int] = field(default_factory=dict)


@dataclass
class Burst:
    """The burst workload, for one bot."""

    bot: str
    setup_seconds: float = 0.0
    legs: list[Leg] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Watch:
    """Wakes whoever waits for a message the bot stores in a chat (the server's ``_post`` is
    wrapped: scanning the staff group's thousands of messages per wait would measure the bench,
    not the bot), and records where the copies of the tracked burst messages land."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.copies: dict[tuple[int, int], asyncio.Future[Any]] = {}
        self.markers: dict[tuple[int, str], asyncio.Future[float]] = {}
        self.chat_events: dict[int, asyncio.Event] = defaultdict(asyncio.Event)
        self.topics: dict[int, asyncio.Future[int]] = {}
        self.tracked: dict[str, Tracked] = {}
        self.landed: dict[Where, list[Tracked]] = defaultdict(list)
        """First copies of tracked messages, per chat or topic, in the order stored."""
        self.arrived = 0
        self.progress = asyncio.Event()
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
                future.set_result(record)
        body = record.text or record.caption or ""
        if self.tracked:
            self._track(record, body)
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

    def _track(self, record: Any, body: str) -> None:
        found = MARKER.search(body)
        item = self.tracked.get(found.group()) if found else None
        if item is None:
            return
        thread = record.message_thread_id if record.chat_id == STAFF_CHAT_ID else None
        where = (record.chat_id, thread)
        item.arrivals.append((record.at, where))
        if len(item.arrivals) == 1:
            self.landed[where].append(item)
            self.arrived += 1
        self.progress.set()

    def _topic_name(self, thread_id: int | None) -> str:
        for topic in self.api.topics(STAFF_CHAT_ID):
            if topic.message_thread_id == thread_id:
                return str(topic.name)
        return ""

    def copy_of(self, chat_id: int, message_id: int) -> asyncio.Future[Any]:
        """The bot's copy of the message (the server's ``SentMessage``), once stored."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
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


async def _file_complaint(api: Any, watch: Watch, customer: Any) -> int:
    """carebot: the customer files a complaint through the real flow; the ticket's thread id."""
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


async def _first_message(api: Any, watch: Watch, customer: Any) -> int:
    """The baseline: the customer's first message creates their topic; its thread id."""
    update = await api.send_text(customer, "Hello, my parcel arrived broken")
    copy = watch.copy_of(customer.id, update["message"]["message_id"])
    record = await asyncio.wait_for(copy, 120)
    return int(record.message_thread_id)


async def _people(api: Any, args: dict[str, Any], results: Results) -> None:
    """The rounds workload."""
    watch = Watch(api)
    rng = random.Random(7)
    customers = [api.user(FIRST_CUSTOMER + i) for i in range(args["tickets"])]
    staff = [api.user(FIRST_STAFF + i) for i in range(args["staff"])]
    think = args["think"] / 1000

    async def pause() -> None:
        await asyncio.sleep(rng.uniform(0, think))

    async def talk(index: int, customer: Any, thread: int) -> None:
        member = staff[index % len(staff)]
        for round_ in range(args["rounds"]):
            await pause()
            update = await api.send_text(customer, f"question {round_} from {customer.id}")
            sent_at = time.monotonic()
            copy = await asyncio.wait_for(
                watch.copy_of(customer.id, update["message"]["message_id"]), 120
            )
            results.to_topic.append(copy.at - sent_at)
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
    threads = await asyncio.gather(*(_file_complaint(api, watch, c) for c in customers))
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


Send = tuple[str, Tracked, Callable[[], Awaitable[Any]]]


async def _burst_people(api: Any, args: dict[str, Any], results: Burst, measure: Measure) -> None:
    """The burst workload: setup, then the customers' burst, then the staff's."""
    watch = Watch(api)
    customers = [api.user(FIRST_CUSTOMER + i) for i in range(args["customers"])]
    staff = [api.user(FIRST_STAFF + i) for i in range(args["staff"])]
    opening = _file_complaint if results.bot == "carebot" else _first_message
    started = time.monotonic()
    threads = await asyncio.gather(*(opening(api, watch, customer) for customer in customers))
    results.setup_seconds = time.monotonic() - started
    thread_of = {customer.id: thread for customer, thread in zip(customers, threads, strict=True)}

    asking: list[Send] = []
    for n in range(args["messages"]):
        for customer in customers:
            marker = f"[c{customer.id}-{n}]"
            send = functools.partial(api.send_text, customer, f"message {n} {marker}")
            asking.append((marker, Tracked((STAFF_CHAT_ID, thread_of[customer.id]), n), send))
    results.legs.append(await _leg(api, watch, "customer -> topic", asking, measure, args))

    answering: list[Send] = []
    replies: Counter[int] = Counter()
    for n in range(args["replies"]):
        customer, member = customers[n % len(customers)], staff[n % len(staff)]
        sequence = replies[customer.id]
        replies[customer.id] += 1
        marker = f"[s{customer.id}-{sequence}]"
        send = functools.partial(
            api.send_text,
            member,
            f"answer {sequence} {marker}",
            chat_id=STAFF_CHAT_ID,
            message_thread_id=thread_of[customer.id],
        )
        answering.append((marker, Tracked((customer.id, None), sequence), send))
    results.legs.append(await _leg(api, watch, "staff -> customer", answering, measure, args))


async def _leg(
    api: Any, watch: Watch, name: str, sends: list[Send], measure: Measure, args: dict[str, Any]
) -> Leg:
    """Hand every message to the server at once, wait for all copies (or ``--stall`` seconds
    without one), and the bot's CPU time from the start until it is idle again."""
    leg = Leg(name, sent=len(sends))
    watch.tracked = {marker: item for marker, item, _ in sends}
    watch.landed.clear()
    watch.arrived = 0
    cpu_before, _ = await measure("start")
    first_call = len(api.calls)
    first = time.monotonic()
    for _, item, send in sends:
        item.sent_at = time.monotonic()
        await send()
        await asyncio.sleep(0)  # the server takes the bot's requests meanwhile
    last_progress = time.monotonic()
    while watch.arrived < len(sends) and time.monotonic() - last_progress < args["stall"]:
        watch.progress.clear()
        try:
            async with asyncio.timeout(1):
                await watch.progress.wait()
            last_progress = time.monotonic()
        except TimeoutError:
            pass
    cpu_after, leg.cpu_after = await measure("end")
    leg.cpu = cpu_after - cpu_before
    items = list(watch.tracked.values())
    watch.tracked = {}
    arrived = [item for item in items if item.arrivals]
    leg.latencies = [item.arrivals[0][0] - item.sent_at for item in arrived]
    leg.seconds = max((item.arrivals[0][0] for item in arrived), default=first) - first
    leg.lost = len(items) - len(arrived)
    leg.duplicated = sum(len(item.arrivals) - 1 for item in arrived)
    leg.misdirected = sum(1 for item in arrived if item.arrivals[0][1] != item.destination)
    for where, landed in watch.landed.items():
        highest = -1
        for item in landed:
            if item.destination != where:
                continue
            if item.sequence < highest:
                leg.reordered += 1
            highest = max(highest, item.sequence)
    calls = [call for call in api.calls[first_call:] if call.method != "getUpdates"]
    leg.calls = dict(Counter(call.method for call in calls))
    leg.failed_calls = dict(
        Counter(f"{call.method} {call.status}: {call.error}" for call in calls if not call.ok)
    )
    return leg


def _serve(args: dict[str, Any], connection: multiprocessing.connection.Connection) -> None:
    from bot.sandbox.api import LocalBotApi

    async def main() -> None:
        loop = asyncio.get_running_loop()
        api = LocalBotApi(TOKEN)
        people = args["tickets"] if args["workload"] == "rounds" else args["customers"]
        for i in range(people):
            api.add_user(FIRST_CUSTOMER + i, f"Customer {FIRST_CUSTOMER + i}")
        api.add_group(STAFF_CHAT_ID, "Staff", forum=True)
        for i in range(args["staff"]):
            api.add_member(STAFF_CHAT_ID, api.add_user(FIRST_STAFF + i, f"Agent{i}"), "member")
        root = await api.start()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        connection.send(root)
        await loop.run_in_executor(None, connection.recv)  # bot is up

        def ask(what: str) -> tuple[float, float]:
            connection.send(what)
            answer: tuple[float, float] = connection.recv()
            return answer

        async def measure(what: str) -> tuple[float, float]:
            return await loop.run_in_executor(None, ask, what)

        results: Results | Burst
        if args["workload"] == "rounds":
            results = Results()
            try:
                await _people(api, args, results)
            except Exception as error:  # report rather than hang the parent
                results.errors.append(repr(error))
        else:
            results = Burst(args["bot"])
            try:
                await _burst_people(api, args, results, measure)
            except Exception as error:
                results.errors.append(repr(error))
            results.errors.extend(f"server: {error}" for error in api.server_errors)
        connection.send(results)
        await stop.wait()
        await api.stop()

    asyncio.run(main())


# -- this machine: the bot ------------------------------------------------------------------------


def _rules(limits: str) -> Config:
    """The shipped rules; with ``lifted``, Telegram's limits in the outbox and the ticket desk's
    flood throttle raised out of the way."""
    rules = load_config(EXAMPLE_CONFIG_DIR)
    if limits == "telegram":
        return rules
    outbox = rules.outbox.model_copy(
        update={
            "limits": rules.outbox.limits.model_copy(
                update={
                    "per_second": 10_000,
                    "per_private_chat_second": 10_000,
                    "per_group_minute": 10_000,
                }
            )
        }
    )
    flood = rules.tickets.flood.model_copy(update={"max_messages": 1000, "per_seconds": 1})
    tickets = rules.tickets.model_copy(update={"flood": flood})
    return rules.model_copy(update={"outbox": outbox, "tickets": tickets})


@asynccontextmanager
async def _carebot(root_url: str, database_url: str, limits: str) -> AsyncIterator[None]:
    """carebot, started as ``carebot run`` starts it (the application, the outbox dispatcher
    with the ticket desk's hooks, long polling into its inbox), running while the block runs.
    The only place here that knows how carebot starts."""
    rules = _rules(limits)
    texts = Texts.load()
    settings = load_settings(
        telegram_token=TOKEN,
        telegram_api_url=root_url,
        database_url=database_url,
        staff_chat_id=STAFF_CHAT_ID,
    )
    database = BotDatabase.open(database_url)  # as carebot run opens it
    sessionmaker = database.hot
    clock = SystemClock()
    application = build_application(
        settings,
        rules=rules,
        texts=texts,
        sessionmaker=sessionmaker,
        background_sessionmaker=database.background,
        clock=clock,
    )
    inbox = inbox_of(application)
    desk = application.bot_data.desk  # built once by build_application
    dispatcher = Dispatcher(
        application.bot,
        sessionmaker,
        texts=texts,
        rules=rules.outbox,
        clock=clock,
        default_timezone=rules.general.customers.default_timezone,
        lock=lock_for(database.hot.engine, exclusive=True),
        hooks=hooks_by_kind(desk),
    )
    application.bot_data.wake = dispatcher.wake
    stop = asyncio.Event()
    try:
        async with application:
            await application.start()
            await inbox.start(polling=True)
            dispatching = asyncio.create_task(dispatcher.run(stop))
            try:
                yield
            finally:
                await inbox.stop()
                stop.set()
                await dispatching
                await application.stop()
    finally:
        await database.dispose()


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _cpu_when_idle(window: float = 0.25, idle: float = 0.005, limit: float = 30) -> float:
    """Wait for a ``window`` in which this process uses less than ``idle`` CPU seconds; the CPU
    time when it began (at most ``limit`` seconds on)."""
    deadline = time.monotonic() + limit
    before = _cpu()
    while True:
        await asyncio.sleep(window)
        now = _cpu()
        if now - before < idle or time.monotonic() > deadline:
            return before
        before = now


async def _answer(connection: multiprocessing.connection.Connection) -> Any:
    """Tell the people the bot's CPU time when they ask (``start``: once the bot is idle, the
    time now; ``end``: the time when it went idle, and how much of it came after the request),
    until they send their results."""
    loop = asyncio.get_running_loop()
    while True:
        request = await loop.run_in_executor(None, connection.recv)
        if request == "start":
            await _cpu_when_idle()
            connection.send((_cpu(), 0.0))
        elif request == "end":
            asked = _cpu()
            idle = await _cpu_when_idle()
            connection.send((idle, idle - asked))
        else:
            return request


async def _run(bot: str, args: argparse.Namespace) -> Any:
    """One bot against a fresh server process (and its people) and a fresh database."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    server = context.Process(target=_serve, args=({**vars(args), "bot": bot}, child), daemon=True)
    server.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("local Bot API server did not start")
        root = parent.recv()
        with tempfile.TemporaryDirectory(prefix=f"carebot-relay-{bot}-") as workdir:
            async with scratch_database(args.database, Path(workdir), f"relay_{bot}") as url:
                running = (
                    _carebot(root, url, args.limits)
                    if bot == "carebot"
                    else baseline_bot(
                        TOKEN,
                        root,
                        url,
                        STAFF_CHAT_ID,
                        transport=args.baseline_transport,
                        concurrency=args.baseline_concurrency,
                    )
                )
                async with running:
                    parent.send("go")
                    return await _answer(parent)
    finally:
        server.terminate()
        server.join(10)
        if server.is_alive():
            server.kill()


def _ms(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * fraction + 0.5) - 1)] * 1000


def _print_rounds(args: argparse.Namespace, results: Results) -> None:
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


def _combined(name: str, legs: list[Leg]) -> Leg:
    return Leg(
        name,
        sent=sum(leg.sent for leg in legs),
        latencies=[value for leg in legs for value in leg.latencies],
        seconds=sum(leg.seconds for leg in legs),
        cpu=sum(leg.cpu for leg in legs),
        cpu_after=sum(leg.cpu_after for leg in legs),
        lost=sum(leg.lost for leg in legs),
        duplicated=sum(leg.duplicated for leg in legs),
        reordered=sum(leg.reordered for leg in legs),
        misdirected=sum(leg.misdirected for leg in legs),
    )


def _figures(leg: Leg) -> list[tuple[str, str, float | None]]:
    """Label, figure as shown, and the number compared across bots (None: not compared)."""
    relayed = len(leg.latencies)
    rate = relayed / leg.seconds if leg.seconds else 0.0
    p50 = statistics.median(leg.latencies) * 1000 if relayed else 0.0
    p99 = _ms(leg.latencies, 0.99) if relayed else 0.0
    cpu = leg.cpu / relayed * 1000 if relayed else 0.0
    checks = f"{leg.lost}/{leg.reordered}/{leg.duplicated}/{leg.misdirected}"
    return [
        ("relayed / sent", f"{relayed}/{leg.sent}", None),
        ("first hand-off to last copy", f"{leg.seconds:.2f} s", leg.seconds),
        ("msg/s", f"{rate:.0f}" if rate >= 10 else f"{rate:.2f}", rate),
        ("latency p50", f"{p50:.0f} ms", p50),
        ("latency p99", f"{p99:.0f} ms", p99),
        ("bot CPU", f"{leg.cpu:.2f} s", leg.cpu),
        ("  of it, after the last copy/stall", f"{leg.cpu_after:.2f} s", None),
        ("bot CPU per relayed message", f"{cpu:.2f} ms", cpu),
        ("lost/reordered/duplicated/misdirected", checks, None),
    ]


def _print_burst(args: argparse.Namespace, runs: dict[str, Burst]) -> None:
    names = list(runs)
    compare = len(names) == 2
    print(
        f"burst: {args.customers} customers x {args.messages} messages at once, then "
        f"{args.replies} staff replies at once ({args.staff} staff); {args.database}, "
        f"limits {args.limits}"
    )
    if "baseline" in runs:
        concurrency = (
            f"concurrent_updates({args.baseline_concurrency})"
            if args.baseline_concurrency > 1
            else "concurrent_updates off (PTB's default)"
        )
        print(
            f"baseline: bare PTB relay bot, stock Updater (long polling), "
            f"{args.baseline_transport}, {concurrency}"
        )
    if "carebot" in runs:
        print("carebot:  build_application + outbox dispatcher + ticket hooks, long polling")
    others = "the Bot API server and the people" + (
        ", PostgreSQL" if args.database == "postgresql" else ""
    )
    print(
        "CPU: the bot process (getrusage), from the start of a burst until the bot is idle "
        f"after its last copy ({others}: other processes, not counted)"
    )
    print()
    print(
        f"{'':<40}"
        + "".join(f"{name:>14}" for name in names)
        + (f"{'carebot/baseline':>18}" if compare else "")
    )
    setup = "".join(f"{f'{runs[name].setup_seconds:.1f} s':>14}" for name in names)
    print(f"{'setup: tickets and topics (not measured)':<40}{setup}")
    titles = ["customer -> topic", "staff -> customer"]
    groups: list[tuple[str, list[Leg]]] = [
        (title, [_combined(title, runs[name].legs[i : i + 1]) for name in names])
        for i, title in enumerate(titles)
    ]
    groups.append(("both bursts", [_combined("both", runs[name].legs) for name in names]))
    for title, legs in groups:
        print(title)
        columns = [_figures(leg) for leg in legs]
        for row, (label, _, _) in enumerate(columns[0]):
            line = f"  {label:<38}" + "".join(f"{column[row][1]:>14}" for column in columns)
            numbers = {name: column[row][2] for name, column in zip(names, columns, strict=True)}
            baseline, carebot = numbers.get("baseline"), numbers.get("carebot")
            if compare and baseline and carebot is not None:
                line += f"{carebot / baseline:>18.2f}"
            print(line)
    print()
    for name in names:
        run = runs[name]
        calls: Counter[str] = Counter()
        failed: Counter[str] = Counter()
        for leg in run.legs:
            calls.update(leg.calls)
            failed.update(leg.failed_calls)
        listed = ", ".join(f"{method} {count}" for method, count in sorted(calls.items()))
        print(f"{name} Bot API calls during the bursts: {listed}")
        if failed:
            print(f"{name} FAILED Bot API calls: {dict(failed)}")
        if run.errors:
            print(f"{name} ERRORS ({len(run.errors)}): {run.errors[:5]}")
    if compare:
        per_message = {
            name: _figures(_combined("both", runs[name].legs))[7][2] or 0.0 for name in names
        }
        ratio = per_message["carebot"] / per_message["baseline"] if per_message["baseline"] else 0
        print(
            f"CPU per relayed message, carebot/baseline: {per_message['carebot']:.2f} ms / "
            f"{per_message['baseline']:.2f} ms = {ratio:.2f}"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=["burst", "rounds"], default="burst")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--limits", choices=["lifted", "telegram"], default="lifted")
    parser.add_argument("--staff", type=int, default=10)
    burst = parser.add_argument_group("burst")
    burst.add_argument("--bots", choices=["both", *BOTS], default="both")
    burst.add_argument("--customers", type=int, default=20)
    burst.add_argument("--messages", type=int, default=25, help="per customer")
    burst.add_argument("--replies", type=int, default=200, help="staff replies in all")
    burst.add_argument("--stall", type=float, default=60, help="give up after s without a copy")
    burst.add_argument("--baseline-transport", choices=["httpx", "aiohttp"], default="httpx")
    burst.add_argument(
        "--baseline-concurrency", type=int, default=1, help="1: PTB's sequential default"
    )
    rounds = parser.add_argument_group("rounds")
    rounds.add_argument("--tickets", type=int, default=200)
    rounds.add_argument("--rounds", type=int, default=3)
    rounds.add_argument("--think", type=int, default=200, help="longest pause, ms")
    args = parser.parse_args()
    print("$ " + shlex.join(sys.orig_argv), flush=True)

    if args.workload == "rounds":
        _print_rounds(args, await _run("carebot", args))
        return
    runs: dict[str, Burst] = {}
    failed: dict[str, str] = {}
    for bot in BOTS if args.bots == "both" else (args.bots,):
        try:
            runs[bot] = await _run(bot, args)
        except Exception as error:  # report it, and the other bot's figures
            traceback.print_exc()
            failed[bot] = repr(error)
    if runs:
        _print_burst(args, runs)
    for bot, error in failed.items():
        print(f"{bot} DID NOT RUN: {error}")


if __name__ == "__main__":
    asyncio.run(main())
