"""The single error handler: log the update id and the error, never message texts or phones."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.ext import ContextTypes

from storage.engine import mark_unit_failed

logger = logging.getLogger("carebot.errors")


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log first (with the traceback; exception messages from PTB carry no user text); the
    update's unit of work rolls back, and the inbox tries the update again (``bot.inbox``)."""
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
