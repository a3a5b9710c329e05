"""The dispatcher's Telegram side, the one module of the package that imports ``telegram``: a
row's payload rendered into a Bot API call, the call made and Telegram's answer or error read
into an outcome (``BotApi``); and ``Dispatcher``, the loop bound to a ``telegram.Bot``, which
the bot, the tests and the benchmark start (``create_dispatcher`` picks the lock)."""

from __future__ import annotations

import logging
import random
import time
import warnings
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from telegram import (
    Bot,
    ForumTopic,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
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
    RetryAfter,
    TelegramError,
)
from telegram.warnings import PTBDeprecationWarning

from bot.kernel.clock import Clock
from bot.kernel.config import OutboxConfig
from bot.kernel.texts import DEFAULT_LANGUAGE, Texts
from scheduler.dispatcher.loop import DispatchLoop
from scheduler.dispatcher.outcomes import Outcome, OutcomeHooks, Request
from scheduler.limiter import SlidingWindowLimiter
from scheduler.locks import DispatchLock, lock_for
from storage.outbox import OutboxMessage, Recipient

# The package's one logger: its records keep the name they had when the dispatcher was a module.
logger = logging.getLogger("scheduler.dispatcher")

INVALID_TOKEN_PAUSE = 60.0
# 400 descriptions meaning the chat itself is gone for this bot (same as a 403).
UNREACHABLE_400 = ("chat not found", "user not found", "peer_id_invalid", "chat_id_invalid")


class BotApi:
    """Rows into Bot API calls through ``bot``, texts from ``texts``."""

    def __init__(self, bot: Bot, texts: Texts) -> None:
        self._bot = bot
        self._texts = texts

    def render(self, message: OutboxMessage, recipient: Recipient | None) -> Request:
        """The API call for a row, texts in the customer's current language. Payload forms
        (see ``storage.outbox`` for the builders): ``text`` (ready, plain or ``html``), ``key``
        + ``params`` (a catalogue text), ``copy`` (copyMessage; optional ``caption`` in HTML or
        ``remove_caption``), ``copy_many`` (copyMessages), ``media_group`` (sendMediaGroup of
        file ids), ``topic`` (create/edit/close/reopen a forum topic); with optional
        ``buttons``, ``thread_id`` and ``reply_to``."""
        payload = message.payload
        language = recipient.language if recipient else payload.get("language", DEFAULT_LANGUAGE)
        kwargs: dict[str, Any] = {"chat_id": message.chat_id}
        thread_id = int(payload["thread_id"]) if payload.get("thread_id") else None
        if "topic" in payload:
            return _topic_request(kwargs, payload["topic"], thread_id)
        if thread_id is not None:
            kwargs["message_thread_id"] = thread_id
        if payload.get("reply_to"):
            kwargs["reply_parameters"] = ReplyParameters(
                int(payload["reply_to"]), allow_sending_without_reply=True
            )
        if payload.get("buttons"):
            kwargs["reply_markup"] = InlineKeyboardMarkup(
                [[self._button(language, button) for button in row] for row in payload["buttons"]]
            )
        if "copy_many" in payload:
            return _copy_many_request(kwargs, payload["copy_many"])
        if "media_group" in payload:
            kwargs.pop("reply_markup", None)
            kwargs["media"] = [_input_media(item) for item in payload["media_group"]]
            return Request("send_media_group", kwargs)
        if "copy" in payload:
            return _copy_request(kwargs, payload["copy"])
        if "text" in payload:
            kwargs["text"] = str(payload["text"])
            kwargs["parse_mode"] = ParseMode.HTML if payload.get("html") else None
        else:
            kwargs["text"] = self._text(language, payload["key"], payload.get("params") or {})
            kwargs["parse_mode"] = ParseMode.HTML
        return Request("send_message", kwargs)

    async def call(
        self, message: OutboxMessage, request: Request, pause: Callable[[float], None]
    ) -> Outcome:
        """Make one API call and read what Telegram answered into an outcome. A 429 or a
        refused token calls ``pause`` at once: no other send may start meanwhile."""
        outcome = Outcome(message)
        try:
            result = await getattr(self._bot, request.method)(**request.kwargs)
            outcome.message_ids = _message_ids(result)
        except RetryAfter as error:
            outcome.pause = retry_after_seconds(error)
            outcome.error = "429 flood control"
            pause(outcome.pause)
        except ChatMigrated as error:
            outcome.new_chat_id = int(error.new_chat_id)
            outcome.error = "chat migrated"
        except Forbidden as error:
            outcome.error, outcome.permanent, outcome.unreachable = f"403 {error}", True, True
        except BadRequest as error:
            text = str(error)
            outcome.error, outcome.permanent = f"400 {text}", True
            outcome.unreachable = any(part in text.lower() for part in UNREACHABLE_400)
        except InvalidToken as error:
            logger.critical("Telegram refused the bot token; pausing the dispatcher")
            outcome.pause = INVALID_TOKEN_PAUSE
            outcome.error = f"invalid token: {type(error).__name__}"
            pause(outcome.pause)
        except TelegramError as error:  # timeouts, 5xx, network: worth another try
            outcome.error = f"{type(error).__name__}: {error}"
        return outcome

    def _text(self, language: str, key: str, params: dict[str, Any]) -> str:
        resolved = {
            name: self._text(language, value["key"], value.get("params") or {})
            if isinstance(value, dict)
            else value
            for name, value in params.items()
        }
        return self._texts.render(language, key, **resolved)

    def _button(self, language: str, button: dict[str, Any]) -> InlineKeyboardButton:
        label = button.get("text") or self._text(
            language, button["key"], button.get("params") or {}
        )
        if "url" in button:
            return InlineKeyboardButton(label, url=str(button["url"]))
        return InlineKeyboardButton(label, callback_data=str(button["data"]))


def _topic_request(
    kwargs: dict[str, Any], topic: dict[str, Any], thread_id: int | None
) -> Request:
    action = topic.get("action")
    if action == "create":
        return Request("create_forum_topic", {**kwargs, "name": str(topic["name"])})
    if thread_id is None:
        raise ValueError(f"topic action {action!r} needs a thread_id")
    kwargs["message_thread_id"] = thread_id
    if action == "edit":
        return Request("edit_forum_topic", {**kwargs, "name": str(topic["name"])})
    if action in ("close", "reopen"):
        return Request(f"{action}_forum_topic", kwargs)
    raise ValueError(f"unknown topic action {action!r}")


def _copy_many_request(kwargs: dict[str, Any], group: dict[str, Any]) -> Request:
    """copyMessages: no buttons, no reply."""
    kwargs.pop("reply_markup", None)
    kwargs.pop("reply_parameters", None)
    kwargs["from_chat_id"] = int(group["from_chat_id"])
    kwargs["message_ids"] = [int(item) for item in group["message_ids"]]
    return Request("copy_messages", kwargs)


def _copy_request(kwargs: dict[str, Any], copy: dict[str, Any]) -> Request:
    kwargs["from_chat_id"] = int(copy["from_chat_id"])
    kwargs["message_id"] = int(copy["message_id"])
    if copy.get("caption") is not None:
        kwargs["caption"] = str(copy["caption"])
        kwargs["parse_mode"] = ParseMode.HTML
    elif copy.get("remove_caption"):
        kwargs["caption"] = ""  # an empty caption replaces the original one
    return Request("copy_message", kwargs)


_INPUT_MEDIA = {
    "photo": InputMediaPhoto,
    "video": InputMediaVideo,
    "document": InputMediaDocument,
    "audio": InputMediaAudio,
}


def _input_media(item: dict[str, Any]) -> InputMedia:
    """One album item: a file id already on Telegram, its caption in HTML."""
    media_class = _INPUT_MEDIA[str(item["type"])]
    caption = item.get("caption")
    return media_class(
        media=str(item["media"]),
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
            BotApi(bot, texts),
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
