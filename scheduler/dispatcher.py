"""The dispatcher: one long-running task that drains the outbox through PTB's ``telegram.Bot``.

What it promises (design, Principle 2):

- **Limits in any sliding window**: at most 30 sends per second overall, 1 per second in a
  private chat, 20 per minute in a group (``scheduler.limiter``, measured from the end of each
  request so the rule also holds at Telegram's side). A 429 pauses *every* send for
  ``retry_after``.
- **Errors**: 403 (blocked, deactivated) and 400 "chat not found" mark the customer unreachable
  and the row failed for good; another 400 fails the row (Telegram will never accept it);
  timeouts, 5xx and network errors are retried with exponential backoff and jitter until
  ``retry.max_attempts``, then the row is dead (``carebot outbox dead``/``retry``).
- **Crash safety**: rows are claimed with a lease (``claimed_until``); a row is marked sent,
  with its Telegram message id, in one statement right after the API call returns. After a crash
  at any point every message is delivered, and only the sends that were on the wire (at most
  ``dispatch.concurrency``) can be delivered twice; rows claimed but not yet sent are claimed
  again once their lease runs out, or at once by the next dispatcher to take the lock.
- **One dispatcher per database** (``scheduler.locks``): the others stand by. The one that takes
  an exclusive lock reclaims the rows its predecessor left claimed (``_reclaim``), so a restart
  after a SIGKILL does not wait out the lease; the sends that were on the wire when it died may
  go out a second time, as they would after the lease. (A PostgreSQL holder that lost its lock
  connection but lives on notices within ``LOCK_CHECK_SECONDS``; what it starts meanwhile from
  its buffer may go twice too.)
- **Outcome hooks**: a feature can register ``OutcomeHooks`` for its outbox kinds (tickets do,
  to keep each lane in order); they run in the transaction that records a row's outcome.

Scheduling: claimed rows wait in a small in-memory buffer, at most ``HELD_PER_CHAT`` per chat,
sent one at a time per chat in the order claimed. A claim skips the chats that cannot take a
message right now (one of theirs is in the buffer or on the wire, or their window is full), so a
chat with many queued messages neither holds up a broadcast nor loses its place in the queue:
its next row is claimed as soon as the chat is ready again. With several dispatchers
(PostgreSQL, ``exclusive = false``) this per-chat pacing is per process. Quiet hours, consent
and the daily cap are judged per row when it is claimed (``scheduler.policy``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from telegram import (
    Bot,
    ForumTopic,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMedia,
    InputMediaAudio,
    InputMediaDocument,
    InputMediaPhoto,
    InputMediaVideo,
    Message,
    MessageId,
    ReplyParameters,
)
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    RetryAfter,
    TelegramError,
)
from telegram.warnings import PTBDeprecationWarning

from bot.kernel.clock import Clock
from bot.kernel.config import OutboxRules
from bot.kernel.texts import DEFAULT_LANGUAGE, Texts
from scheduler.limiter import Limits, SlidingWindowLimiter, Ticket
from scheduler.locks import DispatchLock, NoLock, lock_for
from scheduler.policy import SKIP_ERASED, SKIP_UNREACHABLE, Defer, SendPolicy, Skip
from storage import outbox as queries
from storage.outbox import OutboxMessage, Recipient

logger = logging.getLogger(__name__)

INVALID_TOKEN_PAUSE = 60.0
LOCK_CHECK_SECONDS = 5.0
STANDBY_POLLS = 5
HELD_PER_CHAT = 10
"""Rows of one chat a claim keeps in memory: sent one at a time, so ten of a group limited to 20
a minute take half a minute, well inside the lease."""
RECLAIM_IDS_LOGGED = 50  # a reclaim logs the ids of the first rows, not thousands
# 400 descriptions meaning the chat itself is gone for this bot (same as a 403).
UNREACHABLE_400 = ("chat not found", "user not found", "peer_id_invalid", "chat_id_invalid")


@dataclass
class DispatchCounters:
    """What the dispatcher did since it started (the benchmark and the logs read these)."""

    sent: int = 0
    failed: int = 0
    dead: int = 0
    retried: int = 0
    rate_limited: int = 0
    deferred: int = 0


@dataclass
class _Held:
    """A claimed row waiting in memory for its chat's turn."""

    message: OutboxMessage
    recipient: Recipient | None
    held_since: float


class OutcomeHooks(Protocol):
    """A feature that wants to hear how its rows ended (``hooks`` maps outbox kinds to these).

    Called in the transaction that records the outcome, so what the hook writes (the ticket's
    new topic id, the next message of a lane) commits together with it. A True result means the
    hook queued more rows: the dispatcher looks at the table again at once.
    """

    async def sent(
        self,
        session: AsyncSession,
        message: OutboxMessage,
        message_ids: Sequence[int],
        now: datetime,
    ) -> bool: ...

    async def failed(
        self,
        session: AsyncSession,
        message: OutboxMessage,
        error: str,
        *,
        unreachable: bool,
        dead: bool,
        now: datetime,
    ) -> bool: ...


@dataclass(frozen=True)
class _Request:
    """One Bot API call: the ``telegram.Bot`` method and its keyword arguments."""

    method: str
    kwargs: dict[str, Any]


@dataclass
class _Outcome:
    """What to write back after one API call."""

    message: OutboxMessage
    message_ids: list[int] | None = None
    """What Telegram created (empty for topic changes); None when the call failed."""
    error: str | None = None
    permanent: bool = False
    unreachable: bool = False
    pause: float | None = None
    new_chat_id: int | None = None


class Dispatcher:
    """Drains the outbox; start ``run()`` as a task, or ``run_until_idle()`` in tests/bench."""

    def __init__(
        self,
        bot: Bot,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        texts: Texts,
        rules: OutboxRules,
        clock: Clock,
        default_timezone: str,
        lock: DispatchLock | None = None,
        limiter: SlidingWindowLimiter | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        hooks: Mapping[str, OutcomeHooks] | None = None,
    ) -> None:
        self._bot = bot
        self.hooks: dict[str, OutcomeHooks] = dict(hooks or {})
        self._sessionmaker = sessionmaker
        self._texts = texts
        self._rules = rules
        self._clock = clock
        self._policy = SendPolicy(rules, default_timezone=default_timezone)
        self._lock = lock or NoLock()
        self._monotonic = monotonic
        self._random = rng or random.Random()
        self.limiter = limiter or SlidingWindowLimiter(
            Limits(
                per_second=rules.limits.per_second,
                per_private_chat_second=rules.limits.per_private_chat_second,
                per_group_minute=rules.limits.per_group_minute,
            ),
            clock=monotonic,
        )
        self.counters = DispatchCounters()
        self._held: list[_Held] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy_chats: set[int] = set()
        self._progress = asyncio.Event()
        self._wake = asyncio.Event()
        self._table_drained = False
        self._next_claim_at = -math.inf

    # -- public -------------------------------------------------------------------------------

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
                ids = await queries.reclaim_claimed(session, now=self._clock.now())
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
        now = self._monotonic()
        lease_margin = dispatch.lease_seconds / 2
        soonest = math.inf
        expired: list[_Held] = []
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

    async def _claim(self) -> None:
        """Lease the next due rows and sort them: send soon, later, or never."""
        dispatch = self._rules.dispatch
        now = self._clock.now()
        held_chats = self._held_chats()
        want = dispatch.batch_size - len(held_chats)
        waiting = self.limiter.waiting_chats()
        exclude = held_chats | self._busy_chats | set(waiting)
        async with self._sessionmaker.begin() as session:
            messages = await queries.claim_due(
                session,
                now=now,
                lease_until=now + timedelta(seconds=dispatch.lease_seconds),
                limit=want,
                exclude_chats=exclude,
            )
            recipients = await queries.recipients(
                session, [m.customer_id for m in messages if m.customer_id is not None]
            )
        self._table_drained = len(messages) < want
        # Rows of a skipped chat may be due: look again when the first such chat is ready.
        soonest = min(waiting.values(), default=dispatch.poll_seconds)
        self._next_claim_at = self._monotonic() + min(dispatch.poll_seconds, soonest)
        if not messages:
            return
        skips: list[tuple[OutboxMessage, str]] = []
        later: list[tuple[OutboxMessage, datetime, bool]] = []
        ready: list[OutboxMessage] = []
        care: list[tuple[OutboxMessage, str]] = []
        for message in messages:
            recipient = recipients.get(message.customer_id) if message.customer_id else None
            verdict = self._policy.judge(message, recipient, now)
            if isinstance(verdict, Skip):
                skips.append((message, verdict.reason))
            elif isinstance(verdict, Defer):
                later.append((message, verdict.until, True))
            elif verdict.care_day is not None:
                care.append((message, verdict.care_day))
            else:
                ready.append(message)
        granted = await self._reserve_care(care, later, recipients, now)
        ready = sorted([*ready, *granted], key=_send_order)
        # Up to HELD_PER_CHAT rows per chat in memory, sent one after another in order (a burst
        # into the staff group costs one claim per HELD_PER_CHAT copies, not a claim and a
        # release each); a chat's other rows go back unchanged (keeping their place in the
        # queue) and are skipped by claims while the chat has rows held or on the wire.
        per_chat = Counter(held.message.chat_id for held in self._held)
        mono = self._monotonic()
        for message in ready:
            if message.chat_id in self._busy_chats or per_chat[message.chat_id] >= HELD_PER_CHAT:
                later.append((message, message.due_at, False))
                continue
            per_chat[message.chat_id] += 1
            recipient = recipients.get(message.customer_id) if message.customer_id else None
            self._held.append(_Held(message, recipient, mono))
        self._held.sort(key=lambda held: _send_order(held.message))
        self.counters.deferred += len(later)
        async with self._sessionmaker.begin() as session:
            for message, reason in skips:
                gone = reason in (SKIP_UNREACHABLE, SKIP_ERASED)
                await self._give_up(session, message, f"skipped: {reason}", now, unreachable=gone)
            # Rows of a chat already held go back unchanged, in one statement (with one busy
            # chat, a claim gives back almost all it took).
            unchanged = [m.id for m, due, clear in later if due == m.due_at and not clear]
            await queries.release(session, unchanged, now=now)
            for message, due, clear_day in later:
                if due != message.due_at or clear_day:
                    await queries.release(
                        session, [message.id], now=now, due_at=due, clear_care_day=clear_day
                    )
        if skips:
            self.counters.failed += len(skips)
            logger.info("outbox: %d rows skipped (no consent, unreachable, erased)", len(skips))

    async def _give_up(
        self,
        session: AsyncSession,
        message: OutboxMessage,
        error: str,
        now: datetime,
        *,
        unreachable: bool = False,
    ) -> None:
        """Fail a row without calling Telegram (no consent, erased customer, bad payload)."""
        await queries.finish(
            session, message.id, state=queries.State.FAILED, error=error, now=now, attempted=False
        )
        hook = self.hooks.get(message.kind)
        if hook is not None and await hook.failed(
            session, message, error, unreachable=unreachable, dead=False, now=now
        ):
            self._table_drained = False

    async def _reserve_care(
        self,
        care: list[tuple[OutboxMessage, str]],
        later: list[tuple[OutboxMessage, datetime, bool]],
        recipients: dict[int, Recipient],
        now: datetime,
    ) -> list[OutboxMessage]:
        """Count proactive rows against their customer's day; rows over the cap wait for the
        customer's next day. All in one transaction, one by one if another dispatcher raced."""
        if not care:
            return []
        per_day = self._policy.max_per_day
        try:
            async with self._sessionmaker.begin() as session:
                granted = [
                    await queries.reserve_care_slot(session, message, day=day, per_day=per_day)
                    for message, day in care
                ]
        except IntegrityError:
            granted = []
            for message, day in care:
                try:
                    async with self._sessionmaker.begin() as session:
                        ok = await queries.reserve_care_slot(
                            session, message, day=day, per_day=per_day
                        )
                except IntegrityError:
                    ok = False
                granted.append(ok)
        kept: list[OutboxMessage] = []
        for (message, _day), ok in zip(care, granted, strict=True):
            if ok:
                kept.append(message)
                continue
            recipient = recipients.get(message.customer_id or 0)
            zone = self._policy.zone(recipient.timezone if recipient else None)
            later.append((message, self._policy.next_day_opening(now, zone), True))
        return kept

    async def _idle_wait(self) -> float:
        """Seconds until the next pending row falls due, at most one poll interval."""
        poll = self._rules.dispatch.poll_seconds
        async with self._sessionmaker() as session:
            due = await queries.next_due(session)
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

    async def _start(self, held: _Held) -> None:
        message = held.message
        try:
            request = self._render(message, held.recipient)
        except Exception as error:  # a payload that can never be sent: say why, move on
            # The error's type only: its text can quote the payload (a customer's words);
            # the reason is kept on the row (``carebot outbox``).
            logger.warning(
                "outbox row %s has a bad payload (%s)", message.id, type(error).__name__
            )
            async with self._sessionmaker.begin() as session:
                await self._give_up(session, message, f"bad payload: {error!r}", self._clock.now())
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

    def _render(self, message: OutboxMessage, recipient: Recipient | None) -> _Request:
        """The API call for a row, texts in the customer's current language. Payload forms
        (see ``storage.outbox`` for the builders): ``text`` (ready, plain or ``html``), ``key``
        + ``params`` (a catalogue text), ``copy`` (copyMessage; optional ``caption`` in HTML or
        ``remove_caption``), ``copy_many`` (copyMessages), ``media_group`` (sendMediaGroup of
        file ids), ``topic`` (create/edit/close/reopen a forum topic); with optional
        ``buttons``, ``thread_id`` and ``reply_to``."""
        payload = message.payload
        language = recipient.language if recipient else payload.get("language", DEFAULT_LANGUAGE)
        kwargs: dict[str, Any] = {"chat_id": message.chat_id}
        thread_id = int(payload["thread_id"]) if payload.get("thread_id") else None
        if "topic" in payload:
            return self._topic_request(kwargs, payload["topic"], thread_id)
        if thread_id is not None:
            kwargs["message_thread_id"] = thread_id
        if payload.get("reply_to"):
            kwargs["reply_parameters"] = ReplyParameters(
                int(payload["reply_to"]), allow_sending_without_reply=True
            )
        if payload.get("buttons"):
            kwargs["reply_markup"] = InlineKeyboardMarkup(
                [[self._button(language, button) for button in row] for row in payload["buttons"]]
            )
        if "copy_many" in payload:
            group = payload["copy_many"]
            kwargs.pop("reply_markup", None)
            kwargs.pop("reply_parameters", None)
            kwargs["from_chat_id"] = int(group["from_chat_id"])
            kwargs["message_ids"] = [int(item) for item in group["message_ids"]]
            return _Request("copy_messages", kwargs)
        if "media_group" in payload:
            kwargs.pop("reply_markup", None)
            kwargs["media"] = [_input_media(item) for item in payload["media_group"]]
            return _Request("send_media_group", kwargs)
        if "copy" in payload:
            copy = payload["copy"]
            kwargs["from_chat_id"] = int(copy["from_chat_id"])
            kwargs["message_id"] = int(copy["message_id"])
            if copy.get("caption") is not None:
                kwargs["caption"] = str(copy["caption"])
                kwargs["parse_mode"] = ParseMode.HTML
            elif copy.get("remove_caption"):
                kwargs["caption"] = ""  # an empty caption replaces the original one
            return _Request("copy_message", kwargs)
        if "text" in payload:
            kwargs["text"] = str(payload["text"])
            kwargs["parse_mode"] = ParseMode.HTML if payload.get("html") else None
        else:
            kwargs["text"] = self._text(language, payload["key"], payload.get("params") or {})
            kwargs["parse_mode"] = ParseMode.HTML
        return _Request("send_message", kwargs)

    @staticmethod
    def _topic_request(
        kwargs: dict[str, Any], topic: dict[str, Any], thread_id: int | None
    ) -> _Request:
        action = topic.get("action")
        if action == "create":
            return _Request("create_forum_topic", {**kwargs, "name": str(topic["name"])})
        if thread_id is None:
            raise ValueError(f"topic action {action!r} needs a thread_id")
        kwargs["message_thread_id"] = thread_id
        if action == "edit":
            return _Request("edit_forum_topic", {**kwargs, "name": str(topic["name"])})
        if action in ("close", "reopen"):
            return _Request(f"{action}_forum_topic", kwargs)
        raise ValueError(f"unknown topic action {action!r}")

    def _text(self, language: str, key: str, params: dict[str, Any]) -> str:
        resolved = {
            name: self._text(language, value["key"], value.get("params") or {})
            if isinstance(value, dict)
            else value
            for name, value in params.items()
        }
        return self._texts.render(language, key, **resolved)

    def _button(self, language: str, button: dict[str, Any]) -> InlineKeyboardButton:
        label = button.get("text") or self._text(
            language, button["key"], button.get("params") or {}
        )
        if "url" in button:
            return InlineKeyboardButton(label, url=str(button["url"]))
        return InlineKeyboardButton(label, callback_data=str(button["data"]))

    async def _send(self, message: OutboxMessage, request: _Request, ticket: Ticket) -> None:
        """One API call, then its outcome written in one short transaction."""
        outcome = _Outcome(message)
        try:
            result = await getattr(self._bot, request.method)(**request.kwargs)
            outcome.message_ids = _message_ids(result)
        except RetryAfter as error:
            outcome.pause = retry_after_seconds(error)
            outcome.error = "429 flood control"
            self.limiter.pause(outcome.pause)  # at once: no other send may start meanwhile
        except ChatMigrated as error:
            outcome.new_chat_id = int(error.new_chat_id)
            outcome.error = "chat migrated"
        except Forbidden as error:
            outcome.error, outcome.permanent, outcome.unreachable = f"403 {error}", True, True
        except BadRequest as error:
            text = str(error)
            outcome.error, outcome.permanent = f"400 {text}", True
            outcome.unreachable = any(part in text.lower() for part in UNREACHABLE_400)
        except InvalidToken as error:
            logger.critical("Telegram refused the bot token; pausing the dispatcher")
            outcome.pause = INVALID_TOKEN_PAUSE
            outcome.error = f"invalid token: {type(error).__name__}"
            self.limiter.pause(outcome.pause)
        except TelegramError as error:  # timeouts, 5xx, network: worth another try
            outcome.error = f"{type(error).__name__}: {error}"
        finally:
            self.limiter.end(ticket)
            self._busy_chats.discard(message.chat_id)
        await self._record(outcome)

    async def _record(self, outcome: _Outcome) -> None:
        """Write the outcome (and let the row's hooks react in the same transaction). If a hook
        fails, the outcome is written without it: a sent message must never be sent again
        because of what happens after."""
        try:
            async with self._sessionmaker.begin() as session:
                counter, more = await self._write_outcome(session, outcome, with_hooks=True)
        except Exception:
            if outcome.message.kind not in self.hooks:
                raise
            logger.exception("outbox hook for row %s failed", outcome.message.id)
            async with self._sessionmaker.begin() as session:
                counter, more = await self._write_outcome(session, outcome, with_hooks=False)
        setattr(self.counters, counter, getattr(self.counters, counter) + 1)
        if more:
            self._table_drained = False

    async def _write_outcome(
        self, session: AsyncSession, outcome: _Outcome, *, with_hooks: bool
    ) -> tuple[str, bool]:
        """Record one outcome; returns the counter it adds to and whether rows became due."""
        message = outcome.message
        now = self._clock.now()
        hook = self.hooks.get(message.kind) if with_hooks else None
        more = False
        if outcome.message_ids is not None:
            counter = "sent"
            first = outcome.message_ids[0] if outcome.message_ids else None
            await queries.mark_sent(session, message.id, telegram_message_id=first, now=now)
            if hook is not None:
                more = await hook.sent(session, message, outcome.message_ids, now)
        elif outcome.pause is not None:
            # Not the message's fault: back in line, no attempt counted; everything waits.
            counter = "rate_limited"
            logger.warning("Telegram asked to wait %.1f s; all sends paused", outcome.pause)
            await queries.release(session, [message.id], now=now)
            more = True
        elif outcome.new_chat_id is not None:
            counter = "retried"
            await queries.change_chat(session, message.id, outcome.new_chat_id)
            await queries.release(session, [message.id], now=now)
            more = True
        elif outcome.permanent:
            error = outcome.error or "failed"
            await queries.finish(
                session, message.id, state=queries.State.FAILED, error=error, now=now
            )
            if outcome.unreachable and message.customer_id is not None:
                await queries.mark_unreachable(session, message.customer_id, now)
            counter = "failed"
            logger.info("outbox row %s failed for good: %s", message.id, error)
            if hook is not None:
                more = await hook.failed(
                    session, message, error, unreachable=outcome.unreachable, dead=False, now=now
                )
        else:
            attempt = message.attempts + 1
            error = outcome.error or "error"
            if attempt >= self._rules.retry.max_attempts:
                await queries.finish(
                    session, message.id, state=queries.State.DEAD, error=error, now=now
                )
                counter = "dead"
                logger.warning("outbox row %s is dead after %d attempts", message.id, attempt)
                if hook is not None:
                    more = await hook.failed(
                        session, message, error, unreachable=False, dead=True, now=now
                    )
            else:
                due = now + timedelta(seconds=self._backoff(attempt))
                await queries.retry_later(session, message.id, due_at=due, error=error, now=now)
                counter = "retried"
        return counter, more

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random."""
        retry = self._rules.retry
        ceiling = min(retry.backoff_max_seconds, retry.backoff_base_seconds * 2 ** (attempt - 1))
        return ceiling / 2 + self._random.uniform(0, ceiling / 2)

    # -- giving rows back ---------------------------------------------------------------------

    async def _give_back(self, rows: list[_Held]) -> None:
        for held in rows:
            with contextlib.suppress(ValueError):
                self._held.remove(held)
        async with self._sessionmaker.begin() as session:
            await queries.release(
                session, [held.message.id for held in rows], now=self._clock.now()
            )
        self._table_drained = False

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


_INPUT_MEDIA = {
    "photo": InputMediaPhoto,
    "video": InputMediaVideo,
    "document": InputMediaDocument,
    "audio": InputMediaAudio,
}


def _input_media(item: dict[str, Any]) -> InputMedia:
    """One album item: a file id already on Telegram, its caption in HTML."""
    media_class = _INPUT_MEDIA[str(item["type"])]
    caption = item.get("caption")
    return media_class(
        media=str(item["media"]),
        caption=caption,
        parse_mode=ParseMode.HTML if caption else None,
    )


def _message_ids(result: object) -> list[int]:
    """What an API call created: message ids, or the new topic's thread id."""
    if isinstance(result, tuple | list):
        return [int(item.message_id) for item in result]
    if isinstance(result, Message | MessageId):
        return [int(result.message_id)]
    if isinstance(result, ForumTopic):
        return [int(result.message_thread_id)]
    return []


def _send_order(message: OutboxMessage) -> tuple[int, datetime, int]:
    return (-message.priority, message.due_at, message.id)


def retry_after_seconds(error: RetryAfter) -> float:
    """How long Telegram asked to wait, in seconds (PTB gives an int or a timedelta; reading
    the int is deprecated, without being wrong)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def create_dispatcher(
    bot: Bot,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    texts: Texts,
    rules: OutboxRules,
    clock: Clock,
    default_timezone: str,
    hooks: Mapping[str, OutcomeHooks] | None = None,
) -> Dispatcher:
    """A dispatcher with the lock that fits the database (``scheduler.locks``)."""
    return Dispatcher(
        bot,
        sessionmaker,
        texts=texts,
        rules=rules,
        clock=clock,
        default_timezone=default_timezone,
        lock=lock_for(engine, exclusive=rules.dispatch.exclusive),
        hooks=hooks,
    )
