"""Concurrent updates without reordering a conversation.

PTB's stock processor either handles one update at a time or runs them all concurrently, which
can reorder two messages from one customer. Here updates of different conversations (a private
chat, or one forum topic of the staff group) run concurrently, and updates of the same
conversation run one after another in the order they arrived.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

ConversationKey = tuple[int, int | None]


def conversation_key(update: object) -> ConversationKey | None:
    """The chat (and forum topic) an update belongs to; None when it belongs to none."""
    if not isinstance(update, Update) or update.effective_chat is None:
        return None
    message = update.effective_message
    thread_id = message.message_thread_id if message is not None else None
    return update.effective_chat.id, thread_id


class PerConversationUpdateProcessor(BaseUpdateProcessor):
    """Up to ``max_concurrent_updates`` at once; strictly sequential within a conversation."""

    def __init__(self, max_concurrent_updates: int) -> None:
        super().__init__(max_concurrent_updates)
        self._locks: dict[ConversationKey, asyncio.Lock] = {}
        self._holders: dict[ConversationKey, int] = {}
        # Wraps each update's handling once its turn has come (bot.metrics: count, time, log).
        self.observer: Callable[[object, Awaitable[Any]], Awaitable[None]] | None = None

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        if self.observer is not None:
            coroutine = self.observer(update, coroutine)
        key = conversation_key(update)
        if key is None:
            await coroutine
            return
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._holders[key] = self._holders.get(key, 0) + 1
        try:
            async with lock:  # asyncio.Lock wakes waiters first-come, first-served
                await coroutine
        finally:
            self._holders[key] -= 1
            if self._holders[key] == 0:
                del self._holders[key]
                del self._locks[key]

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to release."""
