"""The single error handler: log the update id and the error, never message texts or phones."""

from __future__ import annotations

import logging

from telegram import Update
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
    logger.error(
        "error while handling update %s: %s",
        update_id,
        type(error).__name__,
        exc_info=(type(error), error, error.__traceback__) if error else None,
    )
