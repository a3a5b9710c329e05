"""``carebot kb …``: the knowledge base in ``CAREBOT_CONFIG_DIR/kb/``.

``reload`` checks the files first (an error names the file and the key and changes nothing),
then touches ``kb/.reload``; every running bot that shares the config directory loads the new
files on its next question, without a restart. A bot whose config directory this command
cannot write to is reloaded with SIGHUP instead (``kill -HUP <pid>``, ``systemctl reload``,
``docker kill -s HUP``).
"""

from __future__ import annotations

import time
from pathlib import Path

import typer
from pydantic import ValidationError, field_validator

from bot.settings import EXAMPLE_CONFIG_DIR, DatabaseSettings
from handlers.answers.kb import KnowledgeBaseError, kb_files, load_knowledge_base, reload_marker

kb_app = typer.Typer(help="The knowledge base: check and reload its files.", no_args_is_help=True)


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
    try:
        return ConfigDirSettings().config_dir
    except ValidationError:
        typer.echo(
            "carebot: invalid setting CAREBOT_CONFIG_DIR: expected a directory holding the "
            "rule files (see the shipped example_config)",
            err=True,
        )
        raise typer.Exit(2) from None


@kb_app.command("reload")
def reload(
    config_dir: Path | None = typer.Option(  # noqa: B008 - typer's idiom
        None, "--config-dir", help="Instead of CAREBOT_CONFIG_DIR."
    ),
) -> None:
    """Check the knowledge-base files, then make the running bots load them (no restart)."""
    directory = config_dir or _config_dir()
    try:
        knowledge = load_knowledge_base(directory)
    except KnowledgeBaseError as error:
        typer.echo(f"carebot: {error}", err=True)
        typer.echo("carebot: nothing reloaded; the bots keep the previous version", err=True)
        raise typer.Exit(2) from None
    marker = reload_marker(directory)
    try:
        marker.parent.mkdir(exist_ok=True)
        marker.write_text(f"{time.time_ns()}\n", encoding="utf-8")
    except OSError as error:
        typer.echo(
            f"carebot: cannot write {marker}: {error.strerror}; send the bot SIGHUP instead",
            err=True,
        )
        raise typer.Exit(2) from None
    typer.echo(
        f"knowledge base OK: {len(knowledge.entries)} entries in {len(kb_files(directory))} "
        "files; running bots load it on their next question"
    )
