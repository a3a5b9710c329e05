"""Reading what the bot did (test side): messages sent per chat and topic, stored messages,
calls, commands, files; waiting until something happens; and ``dump``, the readable account
assertion messages carry."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from bot.sandbox.core import SandboxCore, chat_key
from bot.sandbox.protocol import JSONDict, canonical
from bot.sandbox.records import ApiCall, SentMessage

if TYPE_CHECKING:
    from bot.sandbox.records import FakeUser


class ObserveMixin(SandboxCore):
    def sent(self, chat_id: int | FakeUser, *, thread_id: int | None = None) -> list[SentMessage]:
        """Messages the bot created in the chat (optionally in one topic), oldest first."""
        messages = self._sent.get(chat_key(chat_id), [])
        if thread_id is None:
            return list(messages)
        return [m for m in messages if m.message_thread_id == thread_id]

    def last_sent(self, chat_id: int | FakeUser, *, thread_id: int | None = None) -> SentMessage:
        messages = self.sent(chat_id, thread_id=thread_id)
        if not messages:
            raise AssertionError(f"the bot sent nothing to chat {chat_key(chat_id)}")
        return messages[-1]

    def message(self, chat_id: int | FakeUser, message_id: int) -> JSONDict:
        """The stored Message (as Telegram keeps it: markup removed, entities, edits applied)."""
        chat = self._chats.get(chat_key(chat_id))
        if chat is None or message_id not in chat.messages:
            raise KeyError(f"no message {message_id} in chat {chat_key(chat_id)}")
        return chat.messages[message_id]

    def history(self, chat_id: int | FakeUser) -> list[JSONDict]:
        """Every stored message of the chat (users', the bot's, service), oldest first."""
        chat = self._chats.get(chat_key(chat_id))
        return [] if chat is None else list(chat.messages.values())

    def calls_of(self, method: str) -> list[ApiCall]:
        name = canonical(method)
        return [call for call in self.calls if call.method == name]

    def my_commands(self, language_code: str = "", scope: str = "default") -> list[JSONDict]:
        return self.commands.get((scope, language_code), [])

    def file_bytes(self, file_id: str) -> bytes:
        return self._files[file_id].data

    async def wait_for(
        self,
        predicate: Callable[[], bool],
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
        description: str = "the condition",
    ) -> None:
        """Wait until ``predicate()`` holds; rechecked whenever the server's state changes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {description}\n{self.dump()}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def wait_for_sent(
        self,
        chat_id: int | FakeUser,
        count: int = 1,
        *,
        thread_id: int | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[SentMessage]:
        """Wait until the bot has sent at least ``count`` messages to the chat (topic); returns
        all of them."""
        key = chat_key(chat_id)

        def enough() -> bool:
            messages = self._sent.get(key, [])
            if thread_id is None:
                return len(messages) >= count
            return sum(1 for m in messages if m.message_thread_id == thread_id) >= count

        where = f"chat {key}" + (f" thread {thread_id}" if thread_id is not None else "")
        try:
            await self.wait_for(enough, timeout=timeout, description=f"{count} sent to {where}")
        except AssertionError:
            got = self.sent(key, thread_id=thread_id)
            raise AssertionError(
                f"expected at least {count} message(s) sent to {where} within {timeout}s, "
                f"got {len(got)}\n{self.dump(key)}"
            ) from None
        return self.sent(key, thread_id=thread_id)

    async def wait_for_call(
        self,
        method: str,
        count: int = 1,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[ApiCall]:
        """Wait until the bot made (and the server answered) ``count`` calls of ``method``."""
        name = canonical(method)

        def done() -> list[ApiCall]:
            return [c for c in self.calls if c.method == name and c.status]

        await self.wait_for(
            lambda: len(done()) >= count, timeout=timeout, description=f"{count} {name} call(s)"
        )
        return done()

    def dump(self, chat_id: int | None = None) -> str:
        """A readable account of what the bot did, for assertion messages."""
        lines: list[str] = []
        chats = [chat_id] if chat_id is not None else list(self._sent)
        for key in chats:
            lines.append(f"sent to chat {key}:")
            for m in self._sent.get(key, []):
                body = (m.body or "")[:160].replace("\n", "\\n")
                thread = f" thread={m.message_thread_id}" if m.message_thread_id else ""
                lines.append(f"  #{m.message_id} {m.method} {m.kind}{thread}: {body!r}")
            if not self._sent.get(key):
                lines.append("  (nothing)")
        failed = [c for c in self.calls if c.status not in (0, 200)][-10:]
        if failed:
            lines.append("failed calls (last 10):")
            for c in failed:
                target = c.params.get("chat_id", "")
                lines.append(f"  {c.method} chat={target} -> {c.status} {c.error}")
        recent = [c for c in self.calls if c.method != "getUpdates"][-10:]
        lines.append("recent calls (last 10, getUpdates omitted):")
        lines.extend(f"  {c.method} {c.params.get('chat_id', '')} -> {c.status}" for c in recent)
        lines.append(f"pending updates: {len(self._updates)}")
        if self.server_errors:
            lines.append(f"local Bot API bugs: {self.server_errors[-5:]}")
        return "\n".join(lines)
