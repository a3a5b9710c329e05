"""``carebot kb …``: the knowledge base in ``CAREBOT_CONFIG_DIR/kb/``.

``check`` validates the files and says what is wrong where (file, key), exit code 2 on an
error. ``reload`` checks them the same way (an error changes nothing), then raises the reload
version in the database (``storage.kb.request_reload``); every running bot on that database
loads the new files within a few seconds, without a restart, even when the config directory is
read-only. SIGHUP reloads one process too (``kill -HUP <pid>``, ``docker kill -s HUP``).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import typer
from pydantic import ValidationError, field_validator
from sqlalchemy.exc import SQLAlchemyError

from bot.cli_texts import counted, say
from bot.runner import database_error
from bot.settings import EXAMPLE_CONFIG_DIR, EXPECTED, DatabaseSettings
from handlers.answers.kb import KnowledgeBase, KnowledgeBaseError, kb_files, load_knowledge_base
from storage.engine import create_engine, create_sessionmaker, parse_database_url
from storage.kb import request_reload
from storage.migrate import upgrade_if_behind

kb_app = typer.Typer(
    rich_markup_mode=None,
    help="The knowledge base: check and reload its files.",
    no_args_is_help=True,
)


class ConfigDirSettings(DatabaseSettings):
    """Only ``CAREBOT_CONFIG_DIR`` (no token needed), from the same sources as the bot's."""

    config_dir: Path = EXAMPLE_CONFIG_DIR

    @field_validator("config_dir")
    @classmethod
    def _is_directory(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError("not a directory")
        return value


def _config_dir() -> Path:
    return _settings().config_dir


def _settings() -> ConfigDirSettings:
    try:
        return ConfigDirSettings()
    except ValidationError as error:
        location = error.errors()[0]["loc"]
        field = str(location[0]) if location else "config_dir"
        expected = EXPECTED.get(field, "a valid value")
        typer.echo(
            f"carebot: invalid setting CAREBOT_{field.upper()}: expected {expected}", err=True
        )
        raise typer.Exit(2) from None


ConfigDirOption = typer.Option(None, "--config-dir", help="Instead of CAREBOT_CONFIG_DIR.")


def _checked(directory: Path) -> KnowledgeBase:
    """The knowledge base in ``directory``, or exit 2 naming the file and key at fault."""
    try:
        knowledge = load_knowledge_base(directory)
    except KnowledgeBaseError as error:
        typer.echo(f"carebot: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        say(
            "cli_kb_ok",
            entries=counted("entries", len(knowledge.entries)),
            files=counted("files", len(kb_files(directory))),
        )
    )
    return knowledge


@kb_app.command("check")
def check(config_dir: Path | None = ConfigDirOption) -> None:
    """Validate the knowledge-base files: what is wrong, in which file and key (exit code 2)."""
    _checked(config_dir or _config_dir())


async def _request_reload(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            return await request_reload(session, datetime.now(UTC))
    finally:
        await engine.dispose()


@kb_app.command("reload")
def reload(config_dir: Path | None = ConfigDirOption) -> None:
    """Check the knowledge-base files, then make the running bots load them (no restart)."""
    settings = _settings()
    directory = config_dir or settings.config_dir
    try:
        _checked(directory)
    except typer.Exit:
        typer.echo(f"carebot: {say('cli_kb_not_reloaded')}", err=True)
        raise
    url = settings.database_url
    try:
        if parse_database_url(url).get_backend_name() == "sqlite":
            upgrade_if_behind(url)  # as `carebot run` does for the embedded database
        version = asyncio.run(_request_reload(url))
    except (SQLAlchemyError, OSError) as error:
        typer.echo(f"carebot: {database_error(url, error, doing='reach')}", err=True)
        typer.echo(f"carebot: {say('cli_kb_not_reloaded')}", err=True)
        raise typer.Exit(2) from None
    typer.echo(say("cli_kb_reloaded", version=version))
