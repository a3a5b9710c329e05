"""Telegram's send limits as sliding windows (design, Principle 2).

Telegram allows a bot about 30 messages per second overall, 1 per second in one private chat
and 20 per minute in one group, and answers 429 with ``retry_after`` beyond that. "30 per
second" is checked here in *any* sliding window, not on average: PTB's ``AIORateLimiter`` is a
leaky bucket (aiolimiter) that starts with a full bucket and lets up to twice the rate through
in one sliding second, so it cannot give this guarantee (``bench/dispatch.py`` measures it).

How the guarantee is kept whatever the network latency: Telegram sees a request at some moment
between its start and the arrival of its answer, so a send counts against every window from
when it *starts* until ``window`` seconds after it *ends*. A new send may start only when fewer
than ``limit`` sends are in flight or ended less than ``window`` ago, in each window it belongs to
(overall, its chat). Then any ``window``-long interval at the server holds at most ``limit``
arrivals. The price is one network round trip per window (about 29.9 msg/s instead of 30 over a
loopback server, about 28.5 over a 50 ms link).

The time source is injected (``time.monotonic`` by default), so tests drive it by hand.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# A little slack against clock granularity between this process and the server's timestamps.
EPSILON = 0.001
IN_FLIGHT_POLL = 0.01


@dataclass(frozen=True)
class Limits:
    """Sends allowed per sliding window; ``per_second`` is for the whole bot."""

    per_second: int = 30
    per_private_chat_second: int = 1
    per_group_minute: int = 20
    second: float = 1.0
    minute: float = 60.0


@dataclass
class _Window:
    """Sends of one scope: how many are on the wire, and when the finished ones ended."""

    limit: int
    length: float
    ends: deque[float] = field(default_factory=deque)
    in_flight: int = 0

    def forget_before(self, moment: float) -> None:
        while self.ends and self.ends[0] <= moment:
            self.ends.popleft()

    def delay(self, now: float) -> float:
        """Seconds until one more send may start in this window (``inf``: wait for an end)."""
        self.forget_before(now - self.length - EPSILON)
        excess = self.in_flight + len(self.ends) - self.limit + 1
        if excess <= 0:
            return 0.0
        if excess > len(self.ends):
            return math.inf
        return max(0.0, self.ends[excess - 1] + self.length + EPSILON - now)

    @property
    def idle(self) -> bool:
        return self.in_flight == 0 and not self.ends


@dataclass(frozen=True)
class Ticket:
    """A send that has started; hand it back to ``SlidingWindowLimiter.end`` when it ends."""

    chat_id: int


def is_group(chat_id: int) -> bool:
    """Telegram gives users positive ids and groups, supergroups and channels negative ones."""
    return chat_id < 0


class SlidingWindowLimiter:
    """Decides when the next send may start; see the module docstring for the rule.

    Not thread-safe; meant for one asyncio task (the dispatcher) plus the sends it starts.
    """

    def __init__(
        self, limits: Limits = Limits(), *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._overall = _Window(limits.per_second, limits.second)
        self._chats: dict[int, _Window] = {}
        self._paused_until = -math.inf
        self._started = 0

    def now(self) -> float:
        return self._clock()

    def _chat_window(self, chat_id: int) -> _Window:
        window = self._chats.get(chat_id)
        if window is None:
            if is_group(chat_id):
                window = _Window(self.limits.per_group_minute, self.limits.minute)
            else:
                window = _Window(self.limits.per_private_chat_second, self.limits.second)
            self._chats[chat_id] = window
        return window

    def pause_delay(self) -> float:
        """Seconds left of a 429 pause."""
        return max(0.0, self._paused_until - self.now())

    def overall_delay(self) -> float:
        """Seconds until any send may start (the overall window and a 429 pause)."""
        return max(self.pause_delay(), self._overall.delay(self.now()))

    def chat_delay(self, chat_id: int) -> float:
        """Seconds until this chat's own window allows a send (``inf``: one is on the wire)."""
        window = self._chats.get(chat_id)
        return 0.0 if window is None else window.delay(self.now())

    def room(self, chat_id: int) -> int:
        """How many more sends this chat's own window takes now (0: the next one waits). The
        ticket desk asks it of a group before it builds a topic's next window: with no room,
        consecutive texts go as one message (``handlers.tickets.lanes``)."""
        window = self._chats.get(chat_id)
        if window is None:
            return self._chat_limit(chat_id)
        window.forget_before(self.now() - window.length - EPSILON)
        return max(0, window.limit - window.in_flight - len(window.ends))

    def _chat_limit(self, chat_id: int) -> int:
        limits = self.limits
        return limits.per_group_minute if is_group(chat_id) else limits.per_private_chat_second

    def delay(self, chat_id: int) -> float:
        """Seconds until a send to ``chat_id`` may start; 0 means now."""
        return max(self.overall_delay(), self.chat_delay(chat_id))

    def waiting_chats(self) -> dict[int, float]:
        """Chats that cannot take a send now, with the seconds until they can (``inf``: one is
        on the wire). Chats whose windows emptied are forgotten on the way."""
        now = self.now()
        waiting: dict[int, float] = {}
        for chat_id in list(self._chats):
            window = self._chats[chat_id]
            wait = window.delay(now)
            if wait > 0:
                waiting[chat_id] = wait
            elif window.idle:
                del self._chats[chat_id]
        return waiting

    def begin(self, chat_id: int) -> Ticket:
        """Count a send that starts now; call only when ``delay(chat_id)`` is 0."""
        if self.delay(chat_id) > 0:
            raise RuntimeError("send started before the limiter allowed it")
        self._overall.in_flight += 1
        self._chat_window(chat_id).in_flight += 1
        self._started += 1
        if self._started % 1000 == 0:
            self._forget_idle_chats()
        return Ticket(chat_id)

    def end(self, ticket: Ticket) -> None:
        """The send's answer arrived (or it failed): its windows run from now."""
        moment = self.now()
        for window in (self._overall, self._chat_window(ticket.chat_id)):
            window.in_flight -= 1
            window.ends.append(moment)

    def pause(self, seconds: float) -> None:
        """Telegram said 429 ``retry_after``: nothing starts for ``seconds`` from now."""
        self._paused_until = max(self._paused_until, self.now() + seconds)

    async def acquire(self, chat_id: int) -> Ticket:
        """Wait until a send to ``chat_id`` may start, then count it (for simple callers)."""
        while True:
            wait = self.delay(chat_id)
            if wait <= 0:
                return self.begin(chat_id)
            # ``inf``: the window is full of sends still on the wire; look again shortly.
            await asyncio.sleep(wait if math.isfinite(wait) else IN_FLIGHT_POLL)

    def _forget_idle_chats(self) -> None:
        """Drop chats whose windows are empty, so memory follows the active chats only."""
        now = self.now()
        for chat_id in list(self._chats):
            window = self._chats[chat_id]
            window.forget_before(now - window.length - EPSILON)
            if window.idle:
                del self._chats[chat_id]

    @property
    def tracked_chats(self) -> int:
        return len(self._chats)


def max_in_sliding_window(moments: Iterable[float], window: float) -> int:
    """The most events in any half-open interval ``[t, t + window)`` (tests and the bench
    measure a run with it: the busiest window always starts at an event)."""
    times = sorted(moments)
    best = 0
    first = 0
    for last, moment in enumerate(times):
        while moment - times[first] >= window:
            first += 1
        best = max(best, last - first + 1)
    return best
