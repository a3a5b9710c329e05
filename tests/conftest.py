"""Fixtures shared by all tests. Storage tests run on SQLite and on PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.logs import NOISY_LOGGERS
from storage.engine import create_engine, create_sessionmaker
from tests.auxil import databases

pytest_plugins = ["tests.auxil.harness"]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return databases.create_sqlite_template(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    url = databases.create_postgres_database()
    yield url
    databases.drop_postgres_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        return databases.sqlite_copy(sqlite_template, tmp_path)
    url: str = request.getfixturevalue("postgres_url")
    databases.truncate_all(url)
    return url


@pytest.fixture
async def sessionmaker(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    yield create_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Undo ``configure_logging`` (it replaces the root handlers) after a test that calls it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    names = (*NOISY_LOGGERS, "telegram")
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, saved in levels.items():
        logging.getLogger(name).setLevel(saved)


@pytest.fixture(autouse=True)
def english_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``carebot`` command speaks English in tests whatever the machine's locale (a test
    that wants Chinese sets ``CAREBOT_CLI_LANGUAGE=zh``)."""
    monkeypatch.setenv("CAREBOT_CLI_LANGUAGE", "en")
