"""Why an outbox row was not sent, as the rules read it (``SendFailure``): a reason to act on,
whether trying again is pointless, and the text stored on the row and logged.

Only the dispatcher's Telegram side (``scheduler.dispatcher.telegram``) reads Telegram's errors
into a failure; outcome hooks (the ticket desk's) act on ``reason``, never on the text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    UNREACHABLE = "unreachable"
    """The customer blocked the bot, or the chat is gone for it (a 403, a 400 "chat not
    found"); also a row skipped because its customer is unreachable or erased."""
    TOPIC_DELETED = "topic_deleted"
    """The forum topic the row was for no longer exists."""
    TOPIC_CLOSED = "topic_closed"
    """Staff closed the forum topic: nothing can be sent into it until it is reopened."""
    TOPIC_NOT_MODIFIED = "topic_not_modified"
    """The topic already has that name or state."""
    MESSAGE_GONE = "message_gone"
    """The message to copy was deleted meanwhile."""
    CAPTION_TOO_LONG = "caption_too_long"
    """Telegram refused the caption (see ``storage.payloads.CAPTION_LIMIT``)."""
    REFUSED = "refused"
    """Any other request Telegram will never accept (a 400)."""
    FLOOD = "flood"
    """A 429: every send waits; the row goes back in line."""
    CHAT_MIGRATED = "chat_migrated"
    """The group became a supergroup: the row goes again to its new id."""
    INVALID_TOKEN = "invalid_token"
    """Telegram refused the bot's token: the dispatcher pauses."""
    TRANSIENT = "transient"
    """A timeout, a 5xx or a network error: worth another try."""
    SKIPPED = "skipped"
    """Not tried: no consent to care messages, say (``scheduler.policy``)."""
    BAD_PAYLOAD = "bad_payload"
    """The row's payload can never be sent."""
    UNKNOWN = "unknown"
    """Read back from a stored row (``FailureReader``) with nothing more to go on."""


@dataclass(frozen=True)
class SendFailure:
    reason: Reason
    description: str
    """What is stored on the row (``last_error``) and logged: "403 Forbidden: …", "400 …"."""
    permanent: bool = False
    """Trying again is pointless: the row fails for good at once."""

    @property
    def unreachable(self) -> bool:
        """The customer cannot be written to any more (the row's customer is marked so)."""
        return self.reason is Reason.UNREACHABLE


FailureReader = Callable[[str, bool], SendFailure]
"""Reads a stored ``description`` (and whether the row failed for good) back into a failure: the
dispatcher's Telegram side gives one (``stored_failure``) for replaying a row's outcome."""
