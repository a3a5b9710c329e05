"""Helpers for outbox tests: customers, queued messages, a dispatcher on the local Bot API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram import Bot

from bot.kernel.clock import Clock, SystemClock
from bot.kernel.config import OutboxConfig
from bot.kernel.texts import Texts
from bot.sandbox.api import LocalBotApi
from bot.sandbox.records import ApiCall
from scheduler.dispatcher.telegram import Dispatcher
from scheduler.locks import lock_for
from storage import outbox as outbox_queries
from storage.models import Customer, Outbox
from storage.outbox import Priority
from storage.payloads import ReadyText

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


async def add_customer(session: AsyncSession, user_id: int, **overrides: Any) -> int:
    """A registered customer with consent (tests switch what they need off)."""
    values: dict[str, Any] = {
        "telegram_user_id": user_id,
        "chat_id": user_id,
        "name": f"Customer {user_id}",
        "language": "en",
        "timezone": "Asia/Shanghai",
        "country": "CN",
        "consent": True,
        "consent_answered": True,
        "reachable": True,
        "created_at": NOW,
        "updated_at": NOW,
    }
    values.update(overrides)
    result = await session.execute(insert(Customer).values(**values).returning(Customer.id))
    return int(result.scalar_one())


async def queue_text(
    session: AsyncSession,
    key: str,
    chat_id: int,
    *,
    now: datetime = NOW,
    due_at: datetime | None = None,
    customer_id: int | None = None,
    text: str | None = None,
    kind: str = "care",
    priority: Priority = Priority.CARE,
    transactional: bool = False,
) -> bool:
    return await outbox_queries.enqueue(
        session,
        dedupe_key=key,
        chat_id=chat_id,
        kind=kind,
        payload=ReadyText(text or key),
        due_at=due_at or now,
        now=now,
        customer_id=customer_id,
        priority=priority,
        transactional=transactional,
    )


async def rows(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, Outbox]:
    """Every outbox row by dedupe key, fresh from the database."""
    async with sessionmaker() as session:
        result = await session.execute(select(Outbox))
        return {row.dedupe_key: row for row in result.scalars()}


async def count_rows(sessionmaker: async_sessionmaker[AsyncSession], *where: Any) -> int:
    async with sessionmaker() as session:
        result = await session.execute(select(func.count()).select_from(Outbox).where(*where))
        return int(result.scalar_one())


def fast_rules(**sections: dict[str, Any]) -> OutboxConfig:
    """``outbox.toml`` with short waits for tests; ``sections`` override single keys."""
    data: dict[str, dict[str, Any]] = {
        "retry": {"backoff_base_seconds": 0.05, "backoff_max_seconds": 0.2},
        "dispatch": {"poll_seconds": 0.05, "lease_seconds": 30},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return OutboxConfig.model_validate(data)


def dispatcher_for(
    bot: Bot,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    rules: OutboxConfig | None = None,
    clock: Clock | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> Dispatcher:
    """A dispatcher with the real lock for the sessionmaker's database."""
    engine = sessionmaker.kw["bind"]
    rules = rules or fast_rules()
    return Dispatcher(
        bot,
        sessionmaker,
        texts=Texts.load(),
        rules=rules,
        clock=clock or SystemClock(),
        default_timezone="Asia/Shanghai",
        lock=lock_for(engine, exclusive=rules.dispatch.exclusive),
        monotonic=monotonic,
    )


@asynccontextmanager
async def running(dispatcher: Dispatcher) -> AsyncIterator[Dispatcher]:
    """``dispatcher.run()`` in a task for the duration of the block."""
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        yield dispatcher
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def drain(dispatcher: Dispatcher) -> None:
    """Send everything due now (or fail the test after 30 s)."""
    async with asyncio.timeout(30):
        await dispatcher.run_until_idle()


def message_calls(api: LocalBotApi) -> list[ApiCall]:
    """Every sendMessage/copyMessage the server answered, in arrival order."""
    return [c for c in api.calls if c.method in ("sendMessage", "copyMessage") and c.status]


def delivered(api: LocalBotApi) -> list[ApiCall]:
    return [c for c in message_calls(api) if c.ok]
