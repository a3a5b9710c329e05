"""Waiting for a condition instead of sleeping: for what nothing signals (a row in the
database, a line in a log, a request the local server is still holding)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable


async def eventually(
    check: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float = 5.0,  # noqa: ASYNC109
    interval: float = 0.02,
    description: str = "the condition",
) -> None:
    """Wait until ``check()`` (a plain or a coroutine function) holds, looking every
    ``interval`` seconds; fail the test after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        outcome = check()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {description}")
        await asyncio.sleep(interval)
