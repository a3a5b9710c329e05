"""What a send comes to, and writing it back: the Bot API call a row became (``Request``), what
came of it (``Outcome``), the hooks a feature registers for its rows (``OutcomeHooks``), and
``OutcomeRecorder``, which records an outcome in one transaction with the row's hook (a sent
row, a pause, a migrated chat, a failure for good, or another try after a backoff)."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.kernel.clock import Clock
from bot.kernel.config import OutboxConfig
from storage import outbox as outbox_queries
from storage.failures import Reason, SendFailure
from storage.outbox import OutboxMessage

# The package's one logger: its records keep the name they had when the dispatcher was a module.
logger = logging.getLogger("scheduler.dispatcher")


@dataclass
class DispatchCounters:
    """What the dispatcher did since it started (the benchmark and the logs read these)."""

    sent: int = 0
    failed: int = 0
    dead: int = 0
    retried: int = 0
    rate_limited: int = 0
    deferred: int = 0
    unreachable: int = 0
    """Sends that could not connect to Telegram: back in line, no attempt counted."""


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
        failure: SendFailure,
        *,
        dead: bool,
        now: datetime,
    ) -> bool:
        """The row failed for good, or ran out of attempts (``dead``); act on
        ``failure.reason``, never on its text."""
        ...

    async def retrying(
        self, session: AsyncSession, message: OutboxMessage, failure: SendFailure, now: datetime
    ) -> bool:
        """The row goes again after a backoff (a timeout, a 5xx): rows queued behind it that
        must not overtake it can be taken back here."""
        ...


@runtime_checkable
class SeesRoom(Protocol):
    """Hooks that want to know how many more sends a chat takes right now (the ticket desk
    merges a topic's queued texts into one message when its group has none left); the
    dispatcher hands them ``DispatchLoop.room`` when it starts."""

    def use_room(self, room: Callable[[int], int]) -> None: ...


@dataclass(frozen=True)
class Request:
    """One Bot API call: the ``telegram.Bot`` method and its keyword arguments."""

    method: str
    kwargs: dict[str, Any]


@dataclass
class Outcome:
    """What to write back after one API call."""

    message: OutboxMessage
    message_ids: list[int] | None = None
    """What Telegram created (empty for topic changes); None when the call failed."""
    failure: SendFailure | None = None
    """Why the call failed (``scheduler.dispatcher.telegram`` reads it from Telegram's error)."""
    pause: float | None = None
    new_chat_id: int | None = None
    unreachable: bool = False
    """No connection to Telegram could be opened: nothing was sent (every send is paused)."""


class OutcomeRecorder:
    """Writes what became of each row, counting it in ``counters``; ``hooks`` is the
    dispatcher's own mapping (a hook added to it later is heard too)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        rules: OutboxConfig,
        clock: Clock,
        rng: random.Random,
        hooks: dict[str, OutcomeHooks],
        counters: DispatchCounters,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._rules = rules
        self._clock = clock
        self._random = rng
        self.hooks = hooks
        self.counters = counters

    async def record(self, outcome: Outcome) -> bool:
        """Write the outcome (and let the row's hooks react in the same transaction); True when
        rows became due. If a hook fails, the outcome is written without it: a sent message must
        never be sent again because of what happens after."""
        try:
            async with self._sessionmaker.begin() as session:
                counter, more = await self._write(session, outcome, with_hooks=True)
        except Exception:
            if outcome.message.kind not in self.hooks:
                raise
            logger.exception("outbox hook for row %s failed", outcome.message.id)
            async with self._sessionmaker.begin() as session:
                counter, more = await self._write(session, outcome, with_hooks=False)
        setattr(self.counters, counter, getattr(self.counters, counter) + 1)
        return more

    async def give_up(
        self, session: AsyncSession, message: OutboxMessage, failure: SendFailure, now: datetime
    ) -> bool:
        """Fail a row without calling Telegram (no consent, erased customer, bad payload); True
        when its hook queued more rows."""
        await outbox_queries.finish(
            session,
            message.id,
            state=outbox_queries.State.FAILED,
            error=failure.description,
            now=now,
            attempted=False,
        )
        hook = self.hooks.get(message.kind)
        return hook is not None and await hook.failed(
            session, message, failure, dead=False, now=now
        )

    # -- one outcome ----------------------------------------------------------------------------

    async def _write(
        self, session: AsyncSession, outcome: Outcome, *, with_hooks: bool
    ) -> tuple[str, bool]:
        """Record one outcome; returns the counter it adds to and whether rows became due."""
        message = outcome.message
        now = self._clock.now()
        hook = self.hooks.get(message.kind) if with_hooks else None
        if outcome.message_ids is not None:
            return "sent", await self._write_sent(session, outcome.message_ids, message, hook, now)
        if outcome.pause is not None:
            return "rate_limited", await self._write_paused(session, message, outcome.pause, now)
        if outcome.unreachable:
            # Not the message's fault and nothing was sent: back in line, no attempt counted.
            await outbox_queries.release(session, [message.id], now=now)
            return "unreachable", True
        if outcome.new_chat_id is not None:
            return "retried", await self._write_migrated(
                session, message, outcome.new_chat_id, now
            )
        failure = outcome.failure or SendFailure(Reason.TRANSIENT, "error")
        if failure.permanent:
            return "failed", await self._write_failed(session, message, failure, hook, now)
        return await self._write_error(session, message, failure, hook, now)

    @staticmethod
    async def _write_sent(
        session: AsyncSession,
        message_ids: list[int],
        message: OutboxMessage,
        hook: OutcomeHooks | None,
        now: datetime,
    ) -> bool:
        first = message_ids[0] if message_ids else None
        await outbox_queries.mark_sent(session, message.id, telegram_message_id=first, now=now)
        if hook is not None:
            return await hook.sent(session, message, message_ids, now)
        return False

    @staticmethod
    async def _write_paused(
        session: AsyncSession, message: OutboxMessage, pause: float, now: datetime
    ) -> bool:
        # Not the message's fault: back in line, no attempt counted; everything waits.
        logger.warning("Telegram asked to wait %.1f s; all sends paused", pause)
        await outbox_queries.release(session, [message.id], now=now)
        return True

    @staticmethod
    async def _write_migrated(
        session: AsyncSession, message: OutboxMessage, new_chat_id: int, now: datetime
    ) -> bool:
        await outbox_queries.change_chat(session, message.id, new_chat_id)
        await outbox_queries.release(session, [message.id], now=now)
        return True

    @staticmethod
    async def _write_failed(
        session: AsyncSession,
        message: OutboxMessage,
        failure: SendFailure,
        hook: OutcomeHooks | None,
        now: datetime,
    ) -> bool:
        """Telegram will never accept the row (a 400, or the chat is gone for this bot)."""
        error = failure.description
        await outbox_queries.finish(
            session, message.id, state=outbox_queries.State.FAILED, error=error, now=now
        )
        if failure.unreachable and message.customer_id is not None:
            await outbox_queries.mark_unreachable(session, message.customer_id, now)
        logger.info("outbox row %s failed for good: %s", message.id, error)
        if hook is not None:
            return await hook.failed(session, message, failure, dead=False, now=now)
        return False

    async def _write_error(
        self,
        session: AsyncSession,
        message: OutboxMessage,
        failure: SendFailure,
        hook: OutcomeHooks | None,
        now: datetime,
    ) -> tuple[str, bool]:
        """A timeout, 5xx or network error: another try after a backoff, or dead after the
        last attempt."""
        error = failure.description
        attempt = message.attempts + 1
        if attempt >= self._rules.retry.max_attempts:
            await outbox_queries.finish(
                session, message.id, state=outbox_queries.State.DEAD, error=error, now=now
            )
            logger.warning("outbox row %s is dead after %d attempts", message.id, attempt)
            if hook is not None:
                return "dead", await hook.failed(session, message, failure, dead=True, now=now)
            return "dead", False
        due = now + timedelta(seconds=self._backoff(attempt))
        await outbox_queries.retry_later(session, message.id, due_at=due, error=error, now=now)
        if hook is not None:
            return "retried", await hook.retrying(session, message, failure, now)
        return "retried", False

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random."""
        retry = self._rules.retry
        ceiling = min(retry.backoff_max_seconds, retry.backoff_base_seconds * 2 ** (attempt - 1))
        return ceiling / 2 + self._random.uniform(0, ceiling / 2)
