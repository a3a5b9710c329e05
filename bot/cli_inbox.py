"""``carebot inbox …``: the operator's view of what arrived: updates by state, the parked ones,
and putting them back once their cause is fixed. Only the database is needed
(``CAREBOT_DATABASE_URL``); a running bot picks retried updates up at its next sweep
(``inbox.sweep_seconds``), or at its next start."""

from __future__ import annotations

from datetime import datetime

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from bot.cli_outbox import ago, with_session
from storage import inbox as inbox_queries

inbox_app = typer.Typer(
    rich_markup_mode=None,
    help="The inbox: updates received, waiting, handled or parked.",
    no_args_is_help=True,
)


@inbox_app.command("stats")
def stats() -> None:
    """Updates by state, and how long the oldest pending one has waited."""

    async def work(session: AsyncSession, now: datetime) -> None:
        result = await inbox_queries.stats(session)
        if not result.by_state:
            typer.echo("the inbox is empty")
            return
        typer.echo(f"{'state':<10} {'updates':>9}")
        for state, count in sorted(result.by_state.items()):
            typer.echo(f"{state:<10} {count:>9}")
        if result.oldest_pending is not None:
            received = result.oldest_pending.isoformat(timespec="seconds")
            typer.echo(
                f"oldest pending update received {received} ({ago(result.oldest_pending, now)})"
            )
        else:
            typer.echo("nothing pending")

    with_session(work)


@inbox_app.command("failed")
def failed(limit: int = typer.Option(100, min=1, help="Show at most this many.")) -> None:
    """Updates parked after their last attempt (oldest first); put them back with "retry"."""

    async def work(session: AsyncSession, now: datetime) -> None:
        rows = await inbox_queries.parked(session, limit=limit)
        if not rows:
            typer.echo("no parked updates")
            return
        typer.echo(
            f"{'id':>8} {'update':>10} {'kind':<8} {'chat':>16} {'topic':>7} {'tries':>5}  "
            f"{'received':<12} error"
        )
        for row in rows:
            typer.echo(
                f"{row.id:>8} {row.update_id:>10} {row.kind:<8} {row.chat_id or '-':>16} "
                f"{row.thread_id or '-':>7} {row.attempts:>5}  "
                f"{ago(row.received_at, now):<12} {row.error or ''}"
            )

    with_session(work)


@inbox_app.command("retry")
def retry(
    ids: list[int] = typer.Argument(None, help="Inbox ids of parked updates."),  # noqa: B008
    all_failed: bool = typer.Option(False, "--all-failed", help="Every parked update."),
) -> None:
    """Handle parked updates again, from a fresh first attempt: by id, or --all-failed."""
    if bool(ids) == all_failed:
        typer.echo("carebot: give inbox ids or --all-failed (not both)", err=True)
        raise typer.Exit(2)

    async def work(session: AsyncSession, _now: datetime) -> list[int]:
        return await inbox_queries.retry(session, None if all_failed else ids)

    retried = with_session(work)
    if ids:
        missing = sorted(set(ids) - set(retried))
        if missing:
            listed = ", ".join(map(str, missing))
            typer.echo(f"carebot: not parked (unknown, pending or handled): {listed}", err=True)
    typer.echo(f"{len(retried)} update{'s' if len(retried) != 1 else ''} back to pending")
    if ids and len(retried) != len(set(ids)):
        raise typer.Exit(1)
