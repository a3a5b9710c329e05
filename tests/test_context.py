"""The typed context: ``build_application`` builds every service once into ``bot_data`` (an
``AppData``), every callback's ``context`` is a ``CareContext`` reading them as typed
attributes, and the persistence never stores that ``bot_data``. No Bot API, no database
connection: nothing here handles an update."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from telegram.ext import ApplicationBuilder

from bot.app import build_application
from bot.context import AppData, CareApplication, inbox_of
from bot.kernel.clock import ManualClock
from bot.kernel.config import load_config
from bot.kernel.texts import Texts
from bot.metrics import BotMetrics
from bot.settings import EXAMPLE_CONFIG_DIR, load_settings
from bot.web import metrics_of
from dashboard.auth import LoginLinks
from handlers._edge.context import BotData, CareContext
from handlers.answers.kb import KbLibrary
from handlers.tickets.lifecycle import TicketDesk
from storage.engine import create_engine, create_sessionmaker
from tests.auxil.harness import STAFF_CHAT_ID, START, TOKEN


@pytest.fixture
async def built(tmp_path: Path) -> AsyncIterator[Any]:
    """``build_application`` with what ``carebot run`` gives it (the database never opened)."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'never-opened.db'}")

    def build(**settings: Any) -> CareApplication:
        values = load_settings(
            telegram_token=TOKEN,
            telegram_api_url="http://127.0.0.1:9",
            database_url="sqlite+aiosqlite:///unused.db",
            staff_chat_id=STAFF_CHAT_ID,
            config_dir=Path(EXAMPLE_CONFIG_DIR),
            **settings,
        )
        return build_application(
            values,
            rules=load_config(values.config_dir),
            texts=Texts.load(),
            sessionmaker=create_sessionmaker(engine),
            clock=ManualClock(START),
        )

    yield build
    await engine.dispose()


async def test_build_application_fills_the_typed_bot_data_once(built: Any) -> None:
    application = built()
    assert application.context_types.context is CareContext
    assert application.context_types.bot_data is AppData
    data = application.bot_data
    assert isinstance(data, AppData)
    assert isinstance(data.desk, TicketDesk)
    assert data.desk.staff_chat_id == STAFF_CHAT_ID
    assert data.desk.group.fixed  # CAREBOT_STAFF_CHAT_ID wins over /setup
    assert data.desk.rules == data.deps.rules.tickets
    assert isinstance(data.kb, KbLibrary)
    assert inbox_of(application) is data.inbox
    assert isinstance(metrics_of(application), BotMetrics)
    # Not configured, or made by their owner when first needed.
    assert data.login_links is None  # no CAREBOT_DASHBOARD_URL
    assert data.members is None  # handlers.staff.telegram makes it on first use
    assert data.wake is None  # no dispatcher in this process yet (bot.runner sets it)
    with pytest.raises(AttributeError):
        data.unknown = 1  # type: ignore[attr-defined]  # slots: no stray keys


async def test_the_dashboard_url_brings_the_login_links(built: Any) -> None:
    application = built(dashboard_url="https://care.example.com")
    assert isinstance(application.bot_data.login_links, LoginLinks)


async def test_a_callback_context_reads_the_same_services(built: Any) -> None:
    application = built()
    context = CareContext(application)
    assert context.bot_data is application.bot_data
    assert context.deps is application.bot_data.deps
    assert context.desk is application.bot_data.desk
    replaced = TicketDesk.from_config(
        application.bot_data.deps.rules, application.bot_data.deps.texts, None
    )
    application.bot_data.desk = replaced  # as the test harness does
    assert context.desk is replaced
    with pytest.raises(AttributeError):
        context.bot_data = BotData()  # type: ignore[misc]


async def test_the_persistence_never_stores_the_services(built: Any) -> None:
    """PTB would deep-copy a stored ``bot_data`` and want it back from ``get_bot_data``."""
    persistence = built().persistence
    assert persistence is not None
    assert persistence.store_data.bot_data is False


def test_an_application_without_the_context_types_is_refused() -> None:
    application = ApplicationBuilder().token(TOKEN).updater(None).build()
    with pytest.raises(TypeError, match="BotData"):
        CareContext(application).bot_data  # noqa: B018
