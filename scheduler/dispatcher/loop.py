"""The scheduling loop (``DispatchLoop``): the lock (or standing by), reclaiming a dead
predecessor's rows, one step at a time under the limiter, claims into the held buffer, the held
rows' leases, the sends on the wire, and shutdown. Telegram reaches it only as a
``TelegramSide`` (``scheduler.dispatcher.telegram`` gives it one)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.kernel.clock import Clock
from bot.kernel.config import OutboxConfig
from scheduler.dispatcher.claims import (
    Held,
    Verdicts,
    hold,
    judge,
    put_back,
    reserve_care,
    send_order,
)
from scheduler.dispatcher.outcomes import (
    DispatchCounters,
    Outcome,
    OutcomeHooks,
    OutcomeRecorder,
    Request,
    SeesRoom,
)
from scheduler.limiter import Limits, SlidingWindowLimiter, Ticket
from scheduler.locks import DispatchLock, NoLock
from scheduler.policy import SKIP_ERASED, SKIP_UNREACHABLE, SendPolicy
from storage import outbox as outbox_queries
from storage.failures import Reason, SendFailure
from storage.outbox import OutboxMessage, Recipient

# The package's one logger: its records keep the name they had when the dispatcher was a module.
logger = logging.getLogger("scheduler.dispatcher")

LOCK_CHECK_SECONDS = 5.0
STANDBY_POLLS = 5
RECLAIM_IDS_LOGGED = 50  # a reclaim logs the ids of the first rows, not thousands


class TelegramSide(Protocol):
    """The Bot API, seen from the loop (this module stays free of Telegram types)."""

    def render(self, message: OutboxMessage, recipient: Recipient | None) -> Request:
        """The API call for a row; raises if its payload can never be sent."""
        ...

    async def call(
        self, message: OutboxMessage, request: Request, pause: Callable[[float], None]
    ) -> Outcome:
        """Make the call; ``pause`` at once if Telegram makes every send wait."""
        ...


class DispatchLoop:
    """Drains the outbox through a ``TelegramSide``; start ``run()`` as a task, or
    ``run_until_idle()`` in tests/bench."""

    def __init__(
        self,
        telegram: TelegramSide,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        rules: OutboxConfig,
        clock: Clock,
        default_timezone: str,
        lock: DispatchLock | None = None,
        limiter: SlidingWindowLimiter | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        hooks: Mapping[str, OutcomeHooks] | None = None,
    ) -> None:
        self._telegram = telegram
        self.hooks: dict[str, OutcomeHooks] = dict(hooks or {})
        self._sessionmaker = sessionmaker
        self._rules = rules
        self._clock = clock
        self._policy = SendPolicy(rules, default_timezone=default_timezone)
        self._lock = lock or NoLock()
        self._monotonic = monotonic
        self.limiter = limiter or SlidingWindowLimiter(
            Limits(
                per_second=rules.limits.per_second,
                per_private_chat_second=rules.limits.per_private_chat_second,
                per_group_minute=rules.limits.per_group_minute,
            ),
            clock=monotonic,
        )
        self.counters = DispatchCounters()
        self._outcomes = OutcomeRecorder(
            sessionmaker,
            rules=rules,
            clock=clock,
            rng=rng or random.Random(),
            hooks=self.hooks,
            counters=self.counters,
        )
        self._held: list[Held] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy_chats: set[int] = set()
        self._progress = asyncio.Event()
        self._wake = asyncio.Event()
        self._table_drained = False
        self._next_claim_at = -math.inf
        for hook in set(self.hooks.values()):
            if isinstance(hook, SeesRoom):
                hook.use_room(self.room)

    # -- public -------------------------------------------------------------------------------

    def room(self, chat_id: int) -> int:
        """How many more sends the chat takes now: what its window allows (``limiter.room``)
        less the rows of it held here waiting for their turn (0: what comes next waits)."""
        held = sum(1 for row in self._held if row.message.chat_id == chat_id)
        return max(0, self.limiter.room(chat_id) - held)

    def wake(self) -> None:
        """Something was queued: look at the table now rather than at the next poll."""
        self._table_drained = False
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch until ``stop`` is set: take the lock (or stand by until it is free), then
        drain. Errors (a database restart, say) are logged and the loop goes on."""
        standing_by = False
        while not stop.is_set():
            try:
                locked = await self._lock.acquire()
            except Exception:  # the database is down: keep trying, quietly
                logger.exception("could not take the dispatcher lock")
                locked = False
            if not locked:
                if not standing_by:
                    logger.info("another dispatcher holds this database: standing by")
                    standing_by = True
                await self._sleep(self._rules.dispatch.poll_seconds * STANDBY_POLLS, stop)
                continue
            standing_by = False
            logger.info("dispatcher started")
            try:
                await self._reclaim()
                await self._drain(stop)
            finally:
                await self._shutdown()
        counters = self.counters
        logger.info(
            "dispatcher stopped: sent %d, failed %d, dead %d, retried %d, rate-limited %d",
            counters.sent,
            counters.failed,
            counters.dead,
            counters.retried,
            counters.rate_limited,
        )

    async def run_until_idle(self) -> None:
        """Send everything due now, then return (tests and the benchmark; wrap it in
        ``asyncio.timeout``)."""
        if not await self._lock.acquire():
            raise RuntimeError("another dispatcher holds this database")
        never = asyncio.Event()
        try:
            await self._reclaim()
            while True:
                wait = await self._step()
                if wait is None:
                    self._table_drained = False  # look once more before calling it done
                    wait = await self._step()
                    if wait is None:
                        return
                if wait > 0:
                    await self._sleep(wait, never)
        finally:
            await self._shutdown()

    async def _drain(self, stop: asyncio.Event) -> None:
        """The loop of a dispatcher holding the lock; returns on stop or when the lock is lost."""
        poll = self._rules.dispatch.poll_seconds
        check_lock_at = self._monotonic() + LOCK_CHECK_SECONDS
        while not stop.is_set():
            try:
                wait = await self._step()
                if wait is None:  # nothing due: sleep until the next row falls due
                    wait = await self._idle_wait()
                    self._table_drained = False
            except Exception:
                logger.exception("dispatcher step failed; trying again in %.1f s", poll)
                wait = poll
            if wait > 0:
                await self._sleep(wait, stop)
            if self._monotonic() >= check_lock_at:
                check_lock_at = self._monotonic() + LOCK_CHECK_SECONDS
                if not await self._lock.held():
                    logger.warning("dispatcher lock lost: standing by")
                    return

    async def _reclaim(self) -> None:
        """Just after taking an exclusive lock: put the rows a dead predecessor left claimed
        back in line now (a SIGKILL leaves them leased for ``lease_seconds``). With a
        non-exclusive lock other dispatchers are alive and their claims are theirs: nothing.
        A failure is logged and left to the leases, as before."""
        if not self._lock.exclusive:
            return
        try:
            async with self._sessionmaker.begin() as session:
                ids = await outbox_queries.reclaim_claimed(session, now=self._clock.now())
        except Exception:
            logger.exception("could not reclaim claimed outbox rows; their lease will expire")
            return
        if ids:
            self._table_drained = False
            logger.info(
                "reclaimed %d outbox rows left claimed by a previous dispatcher: %s",
                len(ids),
                ", ".join(map(str, ids[:RECLAIM_IDS_LOGGED]))
                + (", …" if len(ids) > RECLAIM_IDS_LOGGED else ""),
                extra={"reclaimed": len(ids)},
            )

    # -- one step of the loop -----------------------------------------------------------------

    async def _step(self) -> float | None:
        """Start at most one send. Returns how long to wait before the next step (0: at once,
        ``inf``: until a send ends), or None when there is nothing to do at all."""
        # Cleared when a step starts, not when a sleep starts: a wake() or a finished send that
        # comes while the loop is between the two (asking when the next row is due, say) must
        # cut the coming sleep short instead of waiting out a poll interval.
        self._progress.clear()
        self._wake.clear()
        dispatch = self._rules.dispatch
        paused = self.limiter.pause_delay()
        if paused > 0:
            await self._release_held()  # hold nothing while Telegram makes us wait
            return paused
        if len(self._held_chats()) <= dispatch.batch_size // 2 and self._may_claim():
            await self._claim()
        if not self._held:
            return math.inf if self._tasks else None
        if len(self._tasks) >= dispatch.concurrency:
            return math.inf
        overall = self.limiter.overall_delay()
        if overall > 0:
            return overall
        return await self._start_next()

    async def _start_next(self) -> float:
        """Start the first held row whose chat is ready (0.0), giving back the rows held for
        more than half their lease; else how long until a held chat is ready."""
        now = self._monotonic()
        lease_margin = self._rules.dispatch.lease_seconds / 2
        soonest = math.inf
        expired: list[Held] = []
        for index, held in enumerate(self._held):
            if now - held.held_since > lease_margin:
                expired.append(held)
                continue
            chat_id = held.message.chat_id
            wait = math.inf if chat_id in self._busy_chats else self.limiter.chat_delay(chat_id)
            if wait <= 0:
                del self._held[index]
                await self._start(held)
                if expired:
                    await self._give_back(expired)
                return 0.0
            soonest = min(soonest, wait)
        if expired:
            await self._give_back(expired)
        return soonest

    def _held_chats(self) -> set[int]:
        return {held.message.chat_id for held in self._held}

    def _may_claim(self) -> bool:
        if not self._table_drained:
            return True
        return self._monotonic() >= self._next_claim_at

    # -- claiming -----------------------------------------------------------------------------

    async def _claim(self) -> None:
        """Lease the next due rows and sort them: send soon, later, or never."""
        now = self._clock.now()
        messages, recipients = await self._lease(now)
        if not messages:
            return
        verdicts = judge(self._policy, messages, recipients, now)
        granted = await reserve_care(self._sessionmaker, self._policy, verdicts, recipients, now)
        ready = sorted([*verdicts.ready, *granted], key=send_order)
        held, busy, room = self._held, self._busy_chats, self.limiter.room
        hold(ready, held, busy, recipients, verdicts.later, self._monotonic(), room)
        self.counters.deferred += len(verdicts.later)
        await self._settle(verdicts, now)

    async def _lease(self, now: datetime) -> tuple[list[OutboxMessage], dict[int, Recipient]]:
        """Claim up to a batch of due rows, skipping the chats that cannot take a message now
        (held, on the wire, or with a full window), and read their recipients."""
        dispatch = self._rules.dispatch
        held_chats = self._held_chats()
        want = dispatch.batch_size - len(held_chats)
        waiting = self.limiter.waiting_chats()
        exclude = held_chats | self._busy_chats | set(waiting)
        async with self._sessionmaker.begin() as session:
            messages = await outbox_queries.claim_due(
                session,
                now=now,
                lease_until=now + timedelta(seconds=dispatch.lease_seconds),
                limit=want,
                exclude_chats=exclude,
            )
            recipients = await outbox_queries.recipients(
                session, [m.customer_id for m in messages if m.customer_id is not None]
            )
        self._table_drained = len(messages) < want
        # Rows of a skipped chat may be due: look again when the first such chat is ready.
        soonest = min(waiting.values(), default=dispatch.poll_seconds)
        self._next_claim_at = self._monotonic() + min(dispatch.poll_seconds, soonest)
        return messages, recipients

    async def _settle(self, verdicts: Verdicts, now: datetime) -> None:
        """Fail the skipped rows and give back those that wait, in one transaction."""
        skips = verdicts.skips
        async with self._sessionmaker.begin() as session:
            for message, reason in skips:
                gone = reason in (SKIP_UNREACHABLE, SKIP_ERASED)
                failure = SendFailure(
                    Reason.UNREACHABLE if gone else Reason.SKIPPED,
                    f"skipped: {reason}",
                    permanent=True,
                )
                if await self._outcomes.give_up(session, message, failure, now):
                    self._table_drained = False
            await put_back(session, verdicts.later, now)
        if skips:
            self.counters.failed += len(skips)
            logger.info("outbox: %d rows skipped (no consent, unreachable, erased)", len(skips))

    async def _idle_wait(self) -> float:
        """Seconds until the next pending row falls due, at most one poll interval."""
        poll = self._rules.dispatch.poll_seconds
        async with self._sessionmaker() as session:
            due = await outbox_queries.next_due(session)
        if due is None:
            return poll
        seconds = (due - self._clock.now()).total_seconds()
        return min(poll, max(seconds, 0.01))

    async def _sleep(self, seconds: float, stop: asyncio.Event) -> None:
        """Wait ``seconds`` (``inf``: until a send ends), or less if woken or stopped."""
        if math.isinf(seconds):
            seconds = self._rules.dispatch.poll_seconds
        waiters = [
            asyncio.ensure_future(event.wait()) for event in (stop, self._wake, self._progress)
        ]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    # -- sending ------------------------------------------------------------------------------

    async def _start(self, held: Held) -> None:
        message = held.message
        try:
            request = self._telegram.render(message, held.recipient)
        except Exception as error:  # a payload that can never be sent: say why, move on
            # The error's type only: its text can quote the payload (a customer's words);
            # the reason is kept on the row (``carebot outbox``).
            logger.warning(
                "outbox row %s has a bad payload (%s)", message.id, type(error).__name__
            )
            failure = SendFailure(Reason.BAD_PAYLOAD, f"bad payload: {error!r}", permanent=True)
            await self._give_back_chat(message.chat_id)  # as after a failed send (``_send``)
            async with self._sessionmaker.begin() as session:
                if await self._outcomes.give_up(session, message, failure, self._clock.now()):
                    self._table_drained = False
            self.counters.failed += 1
            return
        ticket = self.limiter.begin(message.chat_id)
        self._busy_chats.add(message.chat_id)
        task = asyncio.create_task(self._send(message, request, ticket))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._progress.set()
        if not task.cancelled() and task.exception() is not None:
            logger.error("outbox send task failed", exc_info=task.exception())

    async def _send(self, message: OutboxMessage, request: Request, ticket: Ticket) -> None:
        """One API call, then its outcome written in one short transaction; the chat sends
        nothing else until then. So a chat's outcomes are written in the order of its sends (a
        hook sees what those before it wrote: whether its ticket lane's window is empty), and a
        crash repeats at most the one send of a chat that was on the wire. After a send that did
        not succeed, the chat's rows held in memory go back to the table first: the outcome's
        hook may take some of them back (a ticket lane's rows queued behind this one), and the
        table decides what the chat sends next."""
        chat_id = message.chat_id
        try:
            try:
                outcome = await self._telegram.call(message, request, self.limiter.pause)
            finally:
                self.limiter.end(ticket)
            if outcome.message_ids is None:
                await self._give_back_chat(chat_id)
            if await self._outcomes.record(outcome):
                self._table_drained = False
        finally:
            self._busy_chats.discard(chat_id)

    # -- giving rows back ---------------------------------------------------------------------

    async def _give_back(self, rows: list[Held]) -> None:
        for held in rows:
            with contextlib.suppress(ValueError):
                self._held.remove(held)
        async with self._sessionmaker.begin() as session:
            await outbox_queries.release(
                session, [held.message.id for held in rows], now=self._clock.now()
            )
        self._table_drained = False

    async def _give_back_chat(self, chat_id: int) -> None:
        rows = [held for held in self._held if held.message.chat_id == chat_id]
        if rows:
            await self._give_back(rows)

    async def _release_held(self) -> None:
        if self._held:
            await self._give_back(list(self._held))

    async def _shutdown(self) -> None:
        """Let the sends on the wire finish, give back the rows held in memory, unlock."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=30)
        try:
            await self._release_held()
        except Exception:
            logger.exception("could not give back claimed rows; their lease will expire")
        await self._lock.release()
