"""The single error handler: log the update id and the error, never message texts or phones."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.error import BadRequest, NetworkError
from telegram.ext import ContextTypes

from storage.engine import mark_unit_failed

logger = logging.getLogger("carebot.errors")


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log first: the update id and the error's type on the line, the traceback below it
    (PTB's messages carry no user text; a database error's values are left out:
    ``storage.engine`` hides its parameters, ``bot.logs`` withholds PostgreSQL's message and
    detail); the update's unit of work rolls back, and the inbox tries the update again
    (``bot.inbox``)."""
    update_id = update.update_id if isinstance(update, Update) else None
    error = context.error
    if error is not None:
        mark_unit_failed(error)
    log_update_error(update_id, error)


def unreachable(error: BaseException | None) -> bool:
    """Telegram could not be reached (a network error, not an answer from Telegram): the
    traceback says nothing more than its one line."""
    return isinstance(error, NetworkError) and not isinstance(error, BadRequest)


def log_update_error(update_id: int | None, error: BaseException | None) -> None:
    """One update's error: its type on the line and the traceback below it; Telegram being
    unreachable is one line with PTB's reason and no traceback."""
    if unreachable(error):
        logger.warning(
            "error while handling update %s: Telegram unreachable (%s: %s)",
            update_id,
            type(error).__name__,
            error,
        )
        return
    logger.error(
        "error while handling update %s: %s",
        update_id,
        type(error).__name__,
        exc_info=(type(error), error, error.__traceback__) if error else None,
    )
