"""The bot under test: the real Application, polling the local Bot API server over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from bot.local_api import LocalBotApi
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram.ext import Application

from bot.app import build_application
from bot.rules import Rules, load_rules
from bot.settings import EXAMPLE_CONFIG_DIR, Settings, load_settings
from bot.texts import Texts
from scheduler.clock import ManualClock
from storage.engine import create_engine, create_sessionmaker
from storage.models import Customer

TOKEN = "123456:TEST-TOKEN-carebot"
STAFF_CHAT_ID = -1001000000001
START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@dataclass
class Harness:
    api: LocalBotApi
    application: Application
    sessionmaker: async_sessionmaker[AsyncSession]
    clock: ManualClock
    texts: Texts
    rules: Rules
    settings: Settings

    def text(self, language: str, key: str, **params: Any) -> str:
        """The rendered catalogue text, as the customer should see it (HTML tags stripped by
        Telegram are kept here exactly as sent)."""
        return self.texts.render(language, key, **params)

    async def customer(self, telegram_user_id: int) -> Customer | None:
        async with self.sessionmaker() as session:
            result = await session.execute(
                select(Customer).where(Customer.telegram_user_id == telegram_user_id)
            )
            return result.scalar_one_or_none()


def harness_settings(api: LocalBotApi, database_url: str, **extra: Any) -> Settings:
    return load_settings(
        telegram_token=api.token,
        telegram_api_url=api.root_url,
        database_url=database_url,
        staff_chat_id=STAFF_CHAT_ID,
        config_dir=Path(EXAMPLE_CONFIG_DIR),
        **extra,
    )


@pytest.fixture
async def local_api() -> AsyncIterator[LocalBotApi]:
    api = LocalBotApi(TOKEN)
    await api.start()
    api.add_group(STAFF_CHAT_ID, "Staff", forum=True)
    yield api
    await api.stop()


@pytest.fixture
async def harness(local_api: LocalBotApi, database_url: str) -> AsyncIterator[Harness]:
    """The bot polling the local server, on a fresh database of each kind."""
    settings = harness_settings(local_api, database_url)
    engine = create_engine(database_url)
    sessionmaker = create_sessionmaker(engine)
    clock = ManualClock(START)
    texts = Texts.load()
    rules = load_rules(settings.config_dir)
    application = build_application(
        settings, rules=rules, texts=texts, sessionmaker=sessionmaker, clock=clock
    )
    async with application:
        await application.start()
        assert application.updater is not None
        await application.updater.start_polling(poll_interval=0, timeout=1)
        yield Harness(local_api, application, sessionmaker, clock, texts, rules, settings)
        await application.updater.stop()
        await application.stop()
    await engine.dispose()
