"""The sliding-window limiter, driven by a hand-moved monotonic clock."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from scheduler.limiter import Limits, SlidingWindowLimiter, max_in_sliding_window


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


def _send(limiter: SlidingWindowLimiter, clock: FakeTime, chat_id: int, latency: float) -> float:
    """Wait for the limiter, send, return the moment the request started."""
    wait = limiter.delay(chat_id)
    assert math.isfinite(wait)
    clock.advance(wait)
    ticket = limiter.begin(chat_id)
    started = clock.now
    clock.advance(latency)
    limiter.end(ticket)
    return started


class TestOverallWindow:
    def test_thirty_go_at_once_the_thirty_first_waits_a_second(self) -> None:
        clock = FakeTime()
        limiter = SlidingWindowLimiter(clock=clock)
        starts = [_send(limiter, clock, 1000 + n, latency=0.0) for n in range(31)]
        assert starts[29] == starts[0]
        assert starts[30] - starts[0] >= 1.0
        assert max_in_sliding_window(starts, 1.0) == 30

    def test_any_arrival_inside_each_request_keeps_thirty_per_second(self) -> None:
        """The server may see a request at any moment between its start and its answer;
        whatever those moments are, no sliding second holds more than 30."""
        rng = random.Random(4)
        clock = FakeTime()
        limiter = SlidingWindowLimiter(clock=clock)
        arrivals = []
        for n in range(3000):
            wait = limiter.delay(n)
            clock.advance(wait)
            ticket = limiter.begin(n)
            start = clock.now
            latency = rng.choice([0.0, 0.001, 0.02, 0.2, rng.random()])
            clock.advance(latency)
            arrivals.append(start + rng.random() * latency)
            limiter.end(ticket)
        assert max_in_sliding_window(arrivals, 1.0) <= 30

    def test_sustained_rate_loses_only_the_round_trip(self) -> None:
        clock = FakeTime()
        limiter = SlidingWindowLimiter(clock=clock)
        starts = [_send(limiter, clock, 1000 + n, latency=0.002) for n in range(3000)]
        # The first 30 go at once; every later one waits for its place in the window.
        rate = (len(starts) - 30) / (starts[-1] - starts[0])
        assert 29.5 < rate < 30

    def test_sends_on_the_wire_hold_their_place(self) -> None:
        clock = FakeTime()
        limiter = SlidingWindowLimiter(Limits(per_second=2), clock=clock)
        first = limiter.begin(1)
        limiter.begin(2)
        assert limiter.delay(3) == math.inf  # both still on the wire: their end is unknown
        clock.advance(5)
        limiter.end(first)
        assert limiter.delay(3) == pytest.approx(1.0, abs=0.01)


class TestChats:
    def test_a_private_chat_gets_one_message_per_second_after_the_last_answer(self) -> None:
        clock = FakeTime()
        limiter = SlidingWindowLimiter(clock=clock)
        starts = [_send(limiter, clock, 42, latency=0.05) for _ in range(5)]
        gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
        assert all(gap >= 1.05 for gap in gaps)
        assert limiter.delay(7) == 0  # other chats are not held up

    def test_a_group_gets_twenty_in_any_minute(self) -> None:
        clock = FakeTime()
        limiter = SlidingWindowLimiter(clock=clock)
        starts = [_send(limiter, clock, -100_200, latency=0.01) for _ in range(45)]
        assert max_in_sliding_window(starts, 60.0) == 20
        assert starts[20] - starts[0] >= 60.0

    def test_a_chat_with_a_send_on_the_wire_waits_for_it(self) -> None:
        clock = FakeTime()
        limiter = SlidingWindowLimiter(clock=clock)
        limiter.begin(42)
        assert limiter.delay(42) == math.inf
        with pytest.raises(RuntimeError):
            limiter.begin(42)

    def test_idle_chats_are_forgotten(self) -> None:
        clock = FakeTime()
        limiter = SlidingWindowLimiter(Limits(per_second=10_000), clock=clock)
        for chat_id in range(1500):
            _send(limiter, clock, chat_id, latency=0.0)
            clock.advance(0.01)
        assert limiter.tracked_chats < 1500


class TestPause:
    def test_429_pauses_every_chat(self) -> None:
        clock = FakeTime()
        limiter = SlidingWindowLimiter(clock=clock)
        limiter.pause(2)
        assert limiter.delay(1) == pytest.approx(2)
        assert limiter.delay(-100_300) == pytest.approx(2)
        clock.advance(2)
        assert limiter.delay(1) == 0

    async def test_acquire_waits_out_the_window(self) -> None:
        limiter = SlidingWindowLimiter(Limits(per_second=1, second=0.05))
        first = await limiter.acquire(1)
        limiter.end(first)
        started = limiter.now()
        second = await limiter.acquire(2)
        limiter.end(second)
        assert limiter.now() - started >= 0.05


def test_max_in_sliding_window_uses_half_open_windows() -> None:
    assert max_in_sliding_window([], 1.0) == 0
    assert max_in_sliding_window([0.0, 1.0, 2.0], 1.0) == 1
    assert max_in_sliding_window([0.0, 0.5, 0.999, 1.0], 1.0) == 3
