"""The ``carebot`` command. Each subcommand validates what it needs and fails in one line."""

from __future__ import annotations

import asyncio

import typer
from sqlalchemy.exc import SQLAlchemyError

from bot.cli_campaign import campaign_app
from bot.cli_customer import customer_app
from bot.cli_import import import_app
from bot.cli_inbox import inbox_app
from bot.cli_kb import kb_app
from bot.cli_outbox import outbox_app
from bot.cli_plan import plan_command
from bot.cli_points import points_app
from bot.cli_recommend import recommend_app
from bot.cli_report import report_app
from bot.cli_texts import cli_language, say
from bot.cli_tiers import tiers_app
from bot.cli_tools import or_exit
from bot.kernel.config import load_config
from bot.kernel.texts import Texts
from bot.logs import configure_logging
from bot.runner import StartupError, database_error, serve
from bot.settings import load_database_settings, load_settings
from handlers.answers.kb import load_knowledge_base
from storage.engine import parse_database_url
from storage.migrate import HEAD_REVISION, revision_of, upgrade

app = typer.Typer(
    rich_markup_mode=None,
    help="carebot — customer care on Telegram: tickets, surveys, tiers and proactive care.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(rich_markup_mode=None, help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(outbox_app, name="outbox")
app.add_typer(inbox_app, name="inbox")
app.add_typer(kb_app, name="kb")
app.add_typer(report_app, name="report")
app.add_typer(import_app, name="import")
app.add_typer(tiers_app, name="tiers")
app.add_typer(customer_app, name="customer")
app.add_typer(points_app, name="points")
app.add_typer(recommend_app, name="recommend")
app.add_typer(campaign_app, name="campaign")
app.command("plan")(plan_command)


@app.callback()
def check_cli_language() -> None:
    """carebot — customer care on Telegram: tickets, surveys, tiers and proactive care."""
    or_exit(cli_language)  # an unknown CAREBOT_CLI_LANGUAGE: one line before anything runs


@app.command()
def run() -> None:
    """Run the bot: long polling, or a webhook server when CAREBOT_WEBHOOK_URL is set."""
    settings = or_exit(load_settings)
    configure_logging(settings.log_level, secrets=[settings.token], log_format=settings.log_format)
    rules = or_exit(lambda: load_config(settings.config_dir))
    knowledge = or_exit(lambda: load_knowledge_base(settings.config_dir))  # fail fast
    texts = or_exit(Texts.load)
    if parse_database_url(settings.database_url).get_backend_name() == "sqlite":
        # The embedded default upgrades itself, so the first command just works. PostgreSQL is
        # shared by several processes: it is upgraded on purpose, with `carebot db upgrade`.
        or_exit(lambda: _upgrade_embedded(settings.database_url))
    try:
        asyncio.run(serve(settings, rules=rules, texts=texts, knowledge=knowledge))
    except StartupError as error:
        typer.echo(f"carebot: {error}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass


def _upgrade_embedded(database_url: str) -> None:
    """Bring a SQLite database to this version's schema; one that cannot be opened or written
    stops start-up with one line (``StartupError``)."""
    try:
        current = asyncio.run(revision_of(database_url))
    except Exception as error:  # a missing folder, a directory, not a database
        raise database_error(database_url, error) from None
    if current == HEAD_REVISION:
        return
    try:
        upgrade(database_url)
    except (SQLAlchemyError, OSError) as error:  # read-only, disk full
        raise database_error(database_url, error, doing="upgrade") from None


@app.command()
def demo(
    port: int = typer.Option(
        8080, min=0, max=65535, help="Port of the page on 127.0.0.1 (0: any free port)."
    ),
) -> None:
    """Try carebot in a browser, no bot token needed: the bot, a sample shop and a chat page
    where you play customers and staff side by side, on one local URL."""
    from bot.demo import run_demo  # the sandbox's parts load only for this command

    configure_logging("WARNING", secrets=[])
    try:
        asyncio.run(run_demo(port, ready=lambda url: typer.echo(f"carebot demo: open {url}")))
    except OSError as error:  # the port is taken
        typer.echo(f"carebot demo: {error.strerror or error}; try --port 0", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass


@db_app.command("current")
def db_current() -> None:
    """Show the database's schema revision and whether it is the one this carebot needs
    (exit code 0 when current, 1 when not, 2 when the database cannot be read)."""
    settings = or_exit(load_database_settings)
    try:
        current = asyncio.run(revision_of(settings.database_url))
    except Exception as error:  # unreachable, refused, not a database: one line
        typer.echo(f"carebot: {database_error(settings.database_url, error)}", err=True)
        raise typer.Exit(2) from None
    typer.echo(schema_verdict(current))
    if current != HEAD_REVISION:
        raise typer.Exit(1)


def schema_verdict(current: str | None) -> str:
    """One line: the revision, and current or what to do."""
    if current is None:
        return say("cli_db_empty", head=HEAD_REVISION)
    if current == HEAD_REVISION:
        return say("cli_db_current", current=current)
    if current > HEAD_REVISION:  # revisions are zero-padded numbers
        return say("cli_db_ahead", current=current, head=HEAD_REVISION)
    return say("cli_db_behind", current=current, head=HEAD_REVISION)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database schema to this version of carebot."""
    settings = or_exit(load_database_settings)
    try:
        upgrade(settings.database_url)
    except (SQLAlchemyError, OSError) as error:  # unreachable, refused, read-only
        typer.echo(
            f"carebot: {database_error(settings.database_url, error, doing='upgrade')}", err=True
        )
        raise typer.Exit(2) from None
    typer.echo("database schema is up to date")


def main() -> None:
    app()
