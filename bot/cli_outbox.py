"""``carebot outbox …``: the operator's view of the outbox, and a dispatcher-only process.

``stats``, ``dead``, ``retry`` and ``cancel`` need only the database (``CAREBOT_DATABASE_URL``);
``drain`` runs the dispatcher without the rest of the bot (a separate worker process: on
SQLite it stands by while the bot's own dispatcher holds the database, see
``scheduler.locks``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Bot

from bot.cli_tools import or_exit
from bot.inbox import database_away
from bot.kernel.clock import Clock, SystemClock
from bot.kernel.config import Config, load_config
from bot.kernel.texts import Texts
from bot.logs import configure_logging
from bot.runner import (
    StartupError,
    check_schema,
    connect,
    create_desk_dispatcher,
    listen_for_shutdown,
)
from bot.settings import Settings, load_database_settings, load_settings
from handlers.staff.setup import load_stored_group
from handlers.tickets.lifecycle import TicketDesk
from scheduler.staff_group import staff_group_jobs
from scheduler.wiring import build_scheduler
from storage import outbox as outbox_queries
from storage.engine import create_engine, create_sessionmaker, parse_database_url
from storage.migrate import upgrade

outbox_app = typer.Typer(
    rich_markup_mode=None,
    help="The outbox: queued messages, dead ones, the dispatcher.",
    no_args_is_help=True,
)


T = TypeVar("T")
BUSY_ATTEMPTS = 5
BUSY_PAUSE_SECONDS = 0.5


def with_session(work: Callable[[AsyncSession, datetime], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction on the configured database (``outbox``, ``inbox``)."""
    settings = or_exit(load_database_settings)
    now = SystemClock().now()

    async def run() -> T:
        engine = create_engine(settings.database_url)
        try:
            attempt = 1
            while True:
                try:
                    async with create_sessionmaker(engine).begin() as session:
                        return await work(session, now)
                except Exception as error:
                    # A running bot writes the same database: a moment later it is free.
                    if not database_away(error) or attempt == BUSY_ATTEMPTS:
                        raise
                await asyncio.sleep(BUSY_PAUSE_SECONDS * attempt)
                attempt += 1
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except Exception as error:
        if not database_away(error):
            raise
        typer.echo(
            f"carebot: the database stayed busy or unreachable ({type(error).__name__}); "
            "try again",
            err=True,
        )
        raise typer.Exit(2) from None


def ago(moment: datetime, now: datetime) -> str:
    """``5 min ago`` / ``in 2 h``: how far a moment is from now, for an operator."""
    seconds = int((now - moment).total_seconds())
    if seconds < 0:
        return f"in {span(-seconds)}"
    return f"{span(seconds)} ago"


def span(seconds: int) -> str:
    """A duration in its largest whole unit (d, h, min, s)."""
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


@outbox_app.command("stats")
def stats() -> None:
    """Rows by state and kind, how late the oldest waiting row is, and each group's queue."""

    async def work(session: AsyncSession, now: datetime) -> None:
        result = await outbox_queries.stats(session)
        if not result.counts:
            typer.echo("the outbox is empty")
            return
        typer.echo(f"{'state':<10} {'kind':<32} {'rows':>9}")
        for (state, kind), count in sorted(result.counts.items()):
            typer.echo(f"{state:<10} {kind:<32} {count:>9}")
        if result.oldest_due is not None:
            due = result.oldest_due.isoformat(timespec="seconds")
            typer.echo(f"oldest waiting row due {due} ({ago(result.oldest_due, now)})")
        else:
            typer.echo("nothing waiting")
        _group_queues(await outbox_queries.group_queues(session, now), now)

    with_session(work)


def _group_queues(queues: list[outbox_queries.GroupQueue], now: datetime) -> None:
    """Each group's queue (Telegram takes 20 messages a minute into a group)."""
    if not queues:
        return
    typer.echo(f"{'group':<16} {'chat':>16} {'waiting':>9}  oldest wait")
    for queue in queues:
        name = queue.name or "-"
        wait = span(max(0, int((now - queue.oldest_due).total_seconds())))
        typer.echo(f"{name:<16} {queue.chat_id:>16} {queue.waiting:>9}  {wait}")


@outbox_app.command("dead")
def dead(limit: int = typer.Option(100, min=1, help="Show at most this many rows.")) -> None:
    """Rows that failed on every attempt (newest first); requeue them with "retry"."""

    async def work(session: AsyncSession, now: datetime) -> None:
        rows = await outbox_queries.list_dead(session, limit=limit)
        if not rows:
            typer.echo("no dead messages")
            return
        typer.echo(f"{'id':>8} {'kind':<20} {'chat':>16} {'tries':>5}  {'dead since':<12} error")
        for row in rows:
            typer.echo(
                f"{row.id:>8} {row.kind:<20} {row.chat_id:>16} {row.attempts:>5}  "
                f"{ago(row.updated_at, now):<12} {row.last_error or ''}"
            )

    with_session(work)


@outbox_app.command("retry")
def retry(
    ids: list[int] = typer.Argument(None, help="Row ids (dead, failed or cancelled)."),  # noqa: B008
    all_dead: bool = typer.Option(False, "--all-dead", help="Requeue every dead row."),
) -> None:
    """Send rows again from the first attempt: by id, or --all-dead."""
    if bool(ids) == all_dead:
        typer.echo("carebot: give row ids or --all-dead (not both)", err=True)
        raise typer.Exit(2)

    async def work(session: AsyncSession, now: datetime) -> int:
        return await outbox_queries.retry(session, now=now, message_ids=None if all_dead else ids)

    count = with_session(work)
    typer.echo(f"requeued {count} message{'s' if count != 1 else ''}")


@outbox_app.command("cancel")
def cancel(
    kind: str = typer.Option(..., "--kind", help="Cancel every unsent row of this kind."),
) -> None:
    """Cancel unsent rows of one kind (a broadcast sent by mistake); they stay in the table."""

    async def work(session: AsyncSession, now: datetime) -> int:
        return await outbox_queries.cancel_kind(session, kind, now=now)

    count = with_session(work)
    typer.echo(f"cancelled {count} message{'s' if count != 1 else ''} of kind {kind}")


@outbox_app.command("drain")
def drain() -> None:
    """Run only the dispatcher until SIGINT/SIGTERM (a separate worker process)."""
    settings = or_exit(load_settings)
    configure_logging(settings.log_level, secrets=[settings.token], log_format=settings.log_format)
    rules = or_exit(lambda: load_config(settings.config_dir))
    texts = or_exit(Texts.load)
    if parse_database_url(settings.database_url).get_backend_name() == "sqlite":
        upgrade(settings.database_url)  # as `carebot run` does for the embedded default
    _run_async(serve_dispatcher(settings, rules=rules, texts=texts))


def _run_async(main: Coroutine[Any, Any, None]) -> None:
    try:
        asyncio.run(main)
    except StartupError as error:
        typer.echo(f"carebot: {error}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass


async def serve_dispatcher(
    settings: Settings,
    *,
    rules: Config,
    texts: Texts,
    clock: Clock | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """The dispatcher alone, with its own ``telegram.Bot``, until ``stop`` or a signal."""
    await check_schema(settings)
    stop = stop or asyncio.Event()
    stop_listening = listen_for_shutdown(stop)
    engine = create_engine(settings.database_url)
    api = settings.telegram_api_url
    try:
        bot = Bot(settings.token, base_url=f"{api}/bot", base_file_url=f"{api}/file/bot")
        await connect(bot, settings)
        async with bot:
            sessions = create_sessionmaker(engine)
            clock = clock or SystemClock()
            desk = TicketDesk.from_config(rules, texts, settings.staff_chat_id)
            async with sessions() as session:  # the group /setup stored, re-read as it runs
                await load_stored_group(session, desk.group)
            dispatcher = create_desk_dispatcher(
                bot, engine, sessions, desk=desk, rules=rules, texts=texts, clock=clock
            )
            jobs = build_scheduler(staff_group_jobs(sessions, desk), clock)
            jobs.start()
            try:
                await dispatcher.run(stop)
            finally:
                jobs.shutdown(wait=False)
    finally:
        await engine.dispose()
        stop_listening()
