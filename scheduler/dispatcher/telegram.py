"""The dispatcher's Telegram side, the one module of the package that imports ``telegram``: a
row's payload rendered into a Bot API call (texts and buttons through ``bot.kernel.render``),
the call made and Telegram's answer or error read into an outcome (``BotApi``; an error into a
``SendFailure`` by ``failure_of``, the one place Telegram's error texts are read); and
``Dispatcher``, the loop bound to a ``telegram.Bot``, which the bot, the tests and the benchmark
start (``create_dispatcher`` picks the lock)."""

from __future__ import annotations

import logging
import random
import time
import warnings
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import aiohttp
import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from telegram import (
    Bot,
    ForumTopic,
    InputMedia,
    InputMediaAudio,
    InputMediaDocument,
    InputMediaPhoto,
    InputMediaVideo,
    Message,
    MessageId,
    ReplyParameters,
)
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.warnings import PTBDeprecationWarning

from bot.kernel.clock import Clock
from bot.kernel.config import OutboxConfig
from bot.kernel.render import (
    inline_button,
    inline_keyboard,
    is_not_modified,
    render_label,
    render_ref,
)
from bot.kernel.texts import DEFAULT_LANGUAGE, Texts
from scheduler.dispatcher.loop import DispatchLoop
from scheduler.dispatcher.outcomes import Outcome, OutcomeHooks, Request
from scheduler.limiter import SlidingWindowLimiter
from scheduler.locks import DispatchLock, lock_for
from storage.failures import Reason, SendFailure
from storage.outbox import OutboxMessage, Recipient
from storage.payloads import (
    CatalogueText,
    Copy,
    CopyMany,
    EditText,
    MediaGroup,
    MediaItem,
    Payload,
    ReadyText,
    TopicAction,
    TopicChange,
    Unreadable,
)

# The package's one logger: its records keep the name they had when the dispatcher was a module.
logger = logging.getLogger("scheduler.dispatcher")

INVALID_TOKEN_PAUSE = 60.0
# Telegram's 400 descriptions (lowercased parts) and what they mean; the first match wins.
BAD_REQUESTS: tuple[tuple[tuple[str, ...], Reason], ...] = (
    # The chat itself is gone for this bot (same as a 403).
    (
        ("chat not found", "user not found", "peer_id_invalid", "chat_id_invalid"),
        Reason.UNREACHABLE,
    ),
    (("thread not found", "topic_deleted", "topic_id_invalid"), Reason.TOPIC_DELETED),
    (("topic_closed",), Reason.TOPIC_CLOSED),
    (("topic_not_modified",), Reason.TOPIC_NOT_MODIFIED),
    (("to copy not found",), Reason.MESSAGE_GONE),
    (("caption is too long", "media_caption_too_long"), Reason.CAPTION_TOO_LONG),
)
# What a row replayed from its stored text may still be acted on for (``stored_failure``).
STORED_REASONS = (Reason.TOPIC_DELETED, Reason.TOPIC_CLOSED, Reason.TOPIC_NOT_MODIFIED)


UNREACHABLE_FIRST_PAUSE = 1.0
UNREACHABLE_MAX_PAUSE = 30.0
"""Telegram unreachable: every send pauses 1 s, then twice as long at each failure in a row,
at most 30 s; the row goes back in line without an attempt counted."""
NOT_CONNECTED = (
    aiohttp.ClientConnectorError,  # carebot's transport (``bot.http``)
    aiohttp.ConnectionTimeoutError,
    httpx.ConnectError,  # PTB's default one
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)


def never_sent(error: TelegramError) -> bool:
    """Whether the request never left this machine: no connection to the Bot API could be
    opened (refused, no route, a connect timeout). Telegram cannot have acted on it."""
    return (
        isinstance(error, NetworkError)  # TimedOut too
        and not isinstance(error, BadRequest)
        and isinstance(error.__cause__, NOT_CONNECTED)
    )


class BotApi:
    """Rows into Bot API calls through ``bot``, texts from ``texts``."""

    def __init__(
        self, bot: Bot, texts: Texts, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._bot = bot
        self._texts = texts
        self._monotonic = monotonic
        self._unreachable_streak = 0
        self._unreachable_until = -float("inf")

    def render(self, message: OutboxMessage, recipient: Recipient | None) -> Request:
        """The API call for a row (``storage.payloads`` has the kinds of send), texts in the
        customer's current language (a row without a customer: the payload's, else the
        default)."""
        payload = message.payload
        language = recipient.language if recipient else payload.language or DEFAULT_LANGUAGE
        kwargs: dict[str, Any] = {"chat_id": message.chat_id}
        if isinstance(payload, TopicChange):
            return _topic_request(kwargs, payload)
        if isinstance(payload, Unreadable):
            raise payload.problem or ValueError("no kind of send")
        if isinstance(payload, EditText):  # no thread, no reply: the message is there
            return self._edit_request(kwargs, language, payload)
        if payload.thread_id is not None:
            kwargs["message_thread_id"] = payload.thread_id
        if isinstance(payload, CopyMany):  # no buttons, no reply
            kwargs["from_chat_id"] = payload.from_chat_id
            kwargs["message_ids"] = list(payload.message_ids)
            return Request("copy_messages", kwargs)
        self._reply_to(kwargs, payload)
        if isinstance(payload, MediaGroup):  # no buttons
            kwargs["media"] = [_input_media(item) for item in payload.items]
            return Request("send_media_group", kwargs)
        self._buttons(kwargs, language, payload)
        if isinstance(payload, Copy):
            return _copy_request(kwargs, payload)
        if isinstance(payload, ReadyText):
            kwargs["text"] = payload.text
            kwargs["parse_mode"] = ParseMode.HTML if payload.html else None
        elif isinstance(payload, CatalogueText):
            kwargs["text"] = render_ref(self._texts, language, payload.text)
            kwargs["parse_mode"] = ParseMode.HTML
        else:
            raise ValueError(f"no kind of send: {type(payload).__name__}")
        return Request("send_message", kwargs)

    def _edit_request(self, kwargs: dict[str, Any], language: str, edit: EditText) -> Request:
        """editMessageText: the text and the buttons as they are now (none: they go)."""
        kwargs["message_id"] = edit.message_id
        kwargs["text"] = edit.text
        kwargs["parse_mode"] = ParseMode.HTML if edit.html else None
        self._buttons(kwargs, language, edit)
        return Request("edit_message_text", kwargs)

    @staticmethod
    def _reply_to(kwargs: dict[str, Any], payload: Payload) -> None:
        if payload.reply_to is not None:
            kwargs["reply_parameters"] = ReplyParameters(
                payload.reply_to, allow_sending_without_reply=True
            )

    def _buttons(self, kwargs: dict[str, Any], language: str, payload: Payload) -> None:
        markup = inline_keyboard(
            [
                inline_button(
                    render_label(self._texts, language, button.label),
                    data=button.data,
                    url=button.url,
                )
                for button in row
            ]
            for row in payload.buttons
        )
        if markup is not None:
            kwargs["reply_markup"] = markup

    async def call(
        self, message: OutboxMessage, request: Request, pause: Callable[[float], None]
    ) -> Outcome:
        """Make one API call and read what Telegram answered into an outcome (a failure with
        its reason: ``failure_of``). A 429 or a refused token calls ``pause`` at once: no other
        send may start meanwhile."""
        outcome = Outcome(message)
        try:
            result = await getattr(self._bot, request.method)(**request.kwargs)
            outcome.message_ids = _message_ids(result)
            self._unreachable_streak = 0
        except RetryAfter as error:
            outcome.pause = retry_after_seconds(error)
            outcome.failure = failure_of(error)
            pause(outcome.pause)
        except ChatMigrated as error:
            outcome.new_chat_id = int(error.new_chat_id)
            outcome.failure = failure_of(error)
        except InvalidToken as error:
            logger.critical("Telegram refused the bot token; pausing the dispatcher")
            outcome.pause = INVALID_TOKEN_PAUSE
            outcome.failure = failure_of(error)
            pause(outcome.pause)
        except BadRequest as error:
            # An edit to what the message already shows has nothing left to do: done.
            if request.method == "edit_message_text" and is_not_modified(error):
                outcome.message_ids = []
            else:
                outcome.failure = failure_of(error)
        except TelegramError as error:
            outcome.failure = failure_of(error)
            if never_sent(error):
                outcome.unreachable = True
                self._pause_unreachable(error, pause)
        return outcome

    def _pause_unreachable(self, error: TelegramError, pause: Callable[[float], None]) -> None:
        """Telegram cannot be reached: pause every send with a growing delay, in one WARNING
        line (the sends failing together during one pause add nothing)."""
        now = self._monotonic()
        if now < self._unreachable_until:
            return
        self._unreachable_streak += 1
        delay = min(
            UNREACHABLE_FIRST_PAUSE * 2 ** (self._unreachable_streak - 1), UNREACHABLE_MAX_PAUSE
        )
        self._unreachable_until = now + delay
        logger.warning(
            "Telegram unreachable (%s: %s): outbox sends paused, retrying in %g s",
            type(error).__name__,
            error,
            delay,
        )
        pause(delay)


def failure_of(error: TelegramError) -> SendFailure:
    """What Telegram's error means for the row: the one place its error texts are read. The
    description stored on the row is the one carebot has always stored."""
    if isinstance(error, RetryAfter):
        return SendFailure(Reason.FLOOD, "429 flood control")
    if isinstance(error, ChatMigrated):
        return SendFailure(Reason.CHAT_MIGRATED, "chat migrated")
    if isinstance(error, Forbidden):
        return SendFailure(Reason.UNREACHABLE, f"403 {error}", permanent=True)
    if isinstance(error, BadRequest):
        text = str(error)
        return SendFailure(_bad_request_reason(text), f"400 {text}", permanent=True)
    if isinstance(error, InvalidToken):
        return SendFailure(Reason.INVALID_TOKEN, f"invalid token: {type(error).__name__}")
    # Timeouts, 5xx, network: worth another try.
    return SendFailure(Reason.TRANSIENT, f"{type(error).__name__}: {error}")


def _bad_request_reason(text: str) -> Reason:
    lowered = text.lower()
    for parts, reason in BAD_REQUESTS:
        if any(part in lowered for part in parts):
            return reason
    return Reason.REFUSED


def stored_failure(description: str, permanent: bool) -> SendFailure:
    """A failure read back from the text stored on its row (``last_error``), for a row whose
    outcome is replayed to its hook (``handlers.tickets.outcomes.recover_one``): only the topic
    reasons count, as they always did for a replay; anything else is ``UNKNOWN`` (never
    ``UNREACHABLE``: the customer was marked when it happened)."""
    reason = _bad_request_reason(description)
    return SendFailure(
        reason if reason in STORED_REASONS else Reason.UNKNOWN, description, permanent=permanent
    )


def _topic_request(kwargs: dict[str, Any], topic: TopicChange) -> Request:
    action = topic.action
    if action is TopicAction.CREATE:
        return Request("create_forum_topic", {**kwargs, "name": topic.name})
    if topic.thread_id is None:
        raise ValueError(f"topic action {action.value!r} needs a thread_id")
    kwargs["message_thread_id"] = topic.thread_id
    if action is TopicAction.EDIT:
        return Request("edit_forum_topic", {**kwargs, "name": topic.name})
    return Request(f"{action.value}_forum_topic", kwargs)


def _copy_request(kwargs: dict[str, Any], copy: Copy) -> Request:
    kwargs["from_chat_id"] = copy.from_chat_id
    kwargs["message_id"] = copy.message_id
    if copy.caption is not None:
        kwargs["caption"] = copy.caption
        kwargs["parse_mode"] = ParseMode.HTML
    elif copy.remove_caption:
        kwargs["caption"] = ""  # an empty caption replaces the original one
    return Request("copy_message", kwargs)


_INPUT_MEDIA = {
    "photo": InputMediaPhoto,
    "video": InputMediaVideo,
    "document": InputMediaDocument,
    "audio": InputMediaAudio,
}


def _input_media(item: MediaItem) -> InputMedia:
    """One album item: a file id already on Telegram, its caption in HTML."""
    media_class = _INPUT_MEDIA[item.kind]
    caption = item.caption
    return media_class(
        media=item.media,
        caption=caption,
        parse_mode=ParseMode.HTML if caption else None,
    )


def _message_ids(result: object) -> list[int]:
    """What an API call created: message ids, or the new topic's thread id."""
    if isinstance(result, tuple | list):
        return [int(item.message_id) for item in result]
    if isinstance(result, Message | MessageId):
        return [int(result.message_id)]
    if isinstance(result, ForumTopic):
        return [int(result.message_thread_id)]
    return []


def retry_after_seconds(error: RetryAfter) -> float:
    """How long Telegram asked to wait, in seconds (PTB gives an int or a timedelta; reading
    the int is deprecated, without being wrong)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class Dispatcher(DispatchLoop):
    """Drains the outbox through ``bot``; start ``run()`` as a task, or ``run_until_idle()`` in
    tests/bench."""

    def __init__(
        self,
        bot: Bot,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        texts: Texts,
        rules: OutboxConfig,
        clock: Clock,
        default_timezone: str,
        lock: DispatchLock | None = None,
        limiter: SlidingWindowLimiter | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        hooks: Mapping[str, OutcomeHooks] | None = None,
    ) -> None:
        super().__init__(
            BotApi(bot, texts, monotonic=monotonic),
            sessionmaker,
            rules=rules,
            clock=clock,
            default_timezone=default_timezone,
            lock=lock,
            limiter=limiter,
            monotonic=monotonic,
            rng=rng,
            hooks=hooks,
        )


def create_dispatcher(
    bot: Bot,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    texts: Texts,
    rules: OutboxConfig,
    clock: Clock,
    default_timezone: str,
    hooks: Mapping[str, OutcomeHooks] | None = None,
) -> Dispatcher:
    """A dispatcher with the lock that fits the database (``scheduler.locks``)."""
    return Dispatcher(
        bot,
        sessionmaker,
        texts=texts,
        rules=rules,
        clock=clock,
        default_timezone=default_timezone,
        lock=lock_for(engine, exclusive=rules.dispatch.exclusive),
        hooks=hooks,
    )
