"""What the offline commands (``import``, ``tiers``, ``report``) share: settings without a bot
token, the rule files, a database session factory, the clock, and one-line start-up errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import typer
from pydantic import ValidationError, field_validator

from bot.kernel.clock import Clock, SystemClock
from bot.kernel.config import Config, load_config
from bot.kernel.files import ConfigError
from bot.kernel.texts import CatalogueError
from bot.runner import StartupError
from bot.settings import EXAMPLE_CONFIG_DIR, EXPECTED, DatabaseSettings, SettingsError
from storage.engine import Sessions, create_engine, create_sessionmaker, parse_database_url
from storage.migrate import upgrade_if_behind

T = TypeVar("T")

# The commands' clock; tests replace it with a ManualClock.
clock: Clock = SystemClock()


class ToolSettings(DatabaseSettings):
    """The database and the rule files (no token: these commands never talk to Telegram)."""

    config_dir: Path = EXAMPLE_CONFIG_DIR
    staff_chat_id: int | None = None
    """For the commands that queue something into the staff group (``customer forget``); None:
    the group ``/setup`` stored."""

    @field_validator("staff_chat_id", mode="before")
    @classmethod
    def _staff_chat_id(cls, value: object) -> object:
        """Empty: none (the group ``/setup`` stored is used)."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("config_dir")
    @classmethod
    def _config_dir(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError("not a directory")
        return value


def load_tool_settings() -> ToolSettings:
    try:
        return ToolSettings()
    except ValidationError as exc:
        field = str(exc.errors()[0]["loc"][0]) if exc.errors()[0]["loc"] else "?"
        expected = EXPECTED.get(field, "a valid value")
        raise SettingsError(
            f"invalid setting CAREBOT_{field.upper()}: expected {expected}"
        ) from None


STARTUP_ERRORS = (SettingsError, ConfigError, CatalogueError, StartupError)


def or_exit(step: Callable[[], T]) -> T:
    """Run a start-up step; a known start-up error becomes one line on stderr and exit code 2."""
    try:
        return step()
    except STARTUP_ERRORS as error:
        typer.echo(f"carebot: {error}", err=True)
        raise typer.Exit(2) from None


@dataclass(frozen=True)
class Tool:
    settings: ToolSettings
    rules: Config
    clock: Clock


def open_tool() -> Tool:
    """Settings and rules, validated; an embedded SQLite database is brought up to date (as
    ``carebot run`` does), PostgreSQL is upgraded on purpose with ``carebot db upgrade``."""
    settings = or_exit(load_tool_settings)
    rules = or_exit(lambda: load_config(settings.config_dir))
    if parse_database_url(settings.database_url).get_backend_name() == "sqlite":
        upgrade_if_behind(settings.database_url)
    return Tool(settings, rules, clock)


@asynccontextmanager
async def database(tool: Tool) -> AsyncIterator[Sessions]:
    engine = create_engine(tool.settings.database_url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


def money(cents: int, currency: str) -> str:
    """``12,345.60 CNY``."""
    return f"{cents / 100:,.2f} {currency}"
