"""One conversation stays in order; different conversations run side by side."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

from telegram import Chat, Message, Update, User

from bot.update_processor import PerConversationUpdateProcessor, conversation_key


def _update(update_id: int, chat_id: int, thread_id: int | None = None) -> Update:
    chat = Chat(chat_id, Chat.PRIVATE if chat_id > 0 else Chat.SUPERGROUP)
    message = Message(
        message_id=update_id,
        date=datetime(2026, 1, 1, tzinfo=UTC),
        chat=chat,
        from_user=User(7, "u", is_bot=False),
        text="hi",
        message_thread_id=thread_id,
    )
    return Update(update_id, message=message)


def test_conversation_key_separates_forum_topics() -> None:
    assert conversation_key(_update(1, 42)) == (42, None)
    assert conversation_key(_update(2, -100, thread_id=5)) == (-100, 5)
    assert conversation_key(object()) is None


async def test_same_chat_in_order_other_chats_concurrently() -> None:
    processor = PerConversationUpdateProcessor(16)
    finished: dict[int, list[int]] = {1: [], 2: [], 3: []}
    running = 0
    peak = 0
    rng = random.Random(4)

    async def handle(chat_id: int, sequence: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(rng.uniform(0, 0.01))  # later messages often finish "faster"
        finished[chat_id].append(sequence)
        running -= 1

    tasks = []
    update_id = 0
    for sequence in range(20):
        for chat_id in finished:
            update_id += 1
            coroutine = handle(chat_id, sequence)
            tasks.append(
                asyncio.create_task(
                    processor.process_update(_update(update_id, chat_id), coroutine)
                )
            )
    await asyncio.gather(*tasks)
    for chat_id, order in finished.items():
        assert order == list(range(20)), chat_id
    assert peak == 3  # one per chat at a time, all three chats at once
