"""Outbox payloads and send failures as plain values (no database, no Telegram server): every
JSON shape rows have been stored in reads back as its typed payload and is written again as it
was; Telegram's errors become the reasons the desk's rules act on, with the texts stored so far."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from bot.kernel.replies import TextRef
from scheduler.dispatcher.telegram import failure_of, stored_failure
from storage.failures import Reason
from storage.payloads import (
    CareTag,
    CatalogueText,
    Copy,
    CopyMany,
    MediaGroup,
    MediaItem,
    OutboxButton,
    ReadyText,
    TopicAction,
    TopicChange,
    Unreadable,
    from_json,
    to_json,
)

STORED: list[tuple[dict[str, Any], object]] = [
    ({"text": "hi", "html": False}, ReadyText("hi")),
    (
        {
            "text": "<b>card</b>",
            "html": True,
            "buttons": [[{"text": "Claim", "data": "tk:1:claim"}]],
            "thread_id": 7,
            "delivery": 3,
            "ticket": 1,
        },
        ReadyText(
            "<b>card</b>",
            html=True,
            buttons=[[OutboxButton("Claim", data="tk:1:claim")]],
            thread_id=7,
            delivery=3,
            ticket=1,
        ),
    ),
    (
        {
            "text": "Happy birthday",
            "html": False,
            "buttons": [[{"key": "care_button_stop", "data": "care:stop"}]],
            "care": {"occasion": "birthday", "day": "2026-11-23", "tier": "vip"},
            "expires_at": "2026-11-23T14:00:00+00:00",
        },
        ReadyText(
            "Happy birthday",
            buttons=[[OutboxButton(TextRef("care_button_stop"), data="care:stop")]],
            care=CareTag("birthday", "2026-11-23", "vip"),
            expires_at=datetime(2026, 11, 23, 14, tzinfo=UTC),
        ),
    ),
    (
        {
            "key": "welcome",
            "params": {"name": "Li", "nested": {"key": "language_name", "params": {}}},
            "buttons": [[{"key": "open", "params": {"n": 1}, "url": "https://example.com"}]],
            "language": "zh",
        },
        CatalogueText(
            TextRef("welcome", {"name": "Li", "nested": TextRef("language_name")}),
            buttons=[[OutboxButton(TextRef("open", {"n": 1}), url="https://example.com")]],
            language="zh",
        ),
    ),
    (
        {"copy": {"from_chat_id": 5, "message_id": 9, "caption": "<i>c</i>"}, "reply_to": 4},
        Copy(5, 9, "<i>c</i>", reply_to=4),
    ),
    (
        {"copy": {"from_chat_id": 5, "message_id": 9, "remove_caption": True}},
        Copy(5, 9, None, True),
    ),
    ({"copy_many": {"from_chat_id": 5, "message_ids": [1, 2]}}, CopyMany(5, [1, 2])),
    (
        {
            "media_group": [
                {"type": "photo", "media": "f1", "caption": "x"},
                {"type": "photo", "media": "f2"},
            ]
        },
        MediaGroup([MediaItem("photo", "f1", "x"), MediaItem("photo", "f2")]),
    ),
    ({"topic": {"action": "create", "name": "T 1"}}, TopicChange(TopicAction.CREATE, "T 1")),
    (
        {"topic": {"action": "close"}, "thread_id": 12, "delivery": 2, "ticket": 1},
        TopicChange(TopicAction.CLOSE, thread_id=12, delivery=2, ticket=1),
    ),
]


@pytest.mark.parametrize(("stored", "payload"), STORED)
def test_every_stored_shape_reads_and_writes_as_it_was(
    stored: dict[str, Any], payload: object
) -> None:
    assert from_json(stored) == payload
    assert to_json(from_json(stored)) == stored


def test_what_is_no_send_is_unreadable_and_keeps_the_desks_ids() -> None:
    erased = from_json({"erased": True})
    assert isinstance(erased, Unreadable) and to_json(erased) == {"erased": True}
    broken = from_json({"topic": {"action": "rename"}, "delivery": 4, "ticket": 2})
    assert isinstance(broken, Unreadable) and isinstance(broken.problem, ValueError)
    assert (broken.delivery, broken.ticket) == (4, 2)
    missing = from_json({"params": {}})
    assert isinstance(missing, Unreadable) and repr(missing.problem) == "KeyError('key')"


@pytest.mark.parametrize(
    ("error", "reason", "description", "permanent"),
    [
        (
            Forbidden("Forbidden: bot was blocked by the user"),
            Reason.UNREACHABLE,
            "403 Forbidden: bot was blocked by the user",
            True,
        ),
        (BadRequest("Chat not found"), Reason.UNREACHABLE, "400 Chat not found", True),
        (
            BadRequest("Message thread not found"),
            Reason.TOPIC_DELETED,
            "400 Message thread not found",
            True,
        ),
        (BadRequest("Topic_closed"), Reason.TOPIC_CLOSED, "400 Topic_closed", True),
        (
            BadRequest("Topic_not_modified"),
            Reason.TOPIC_NOT_MODIFIED,
            "400 Topic_not_modified",
            True,
        ),
        (
            BadRequest("Message to copy not found"),
            Reason.MESSAGE_GONE,
            "400 Message to copy not found",
            True,
        ),
        (
            BadRequest("Message caption is too long"),
            Reason.CAPTION_TOO_LONG,
            "400 Message caption is too long",
            True,
        ),
        (BadRequest("Can't parse entities"), Reason.REFUSED, "400 Can't parse entities", True),
        (RetryAfter(3), Reason.FLOOD, "429 flood control", False),
        (ChatMigrated(-1001), Reason.CHAT_MIGRATED, "chat migrated", False),
        (TimedOut(), Reason.TRANSIENT, "TimedOut: Timed out", False),
        (NetworkError("500"), Reason.TRANSIENT, "NetworkError: 500", False),
    ],
)
def test_telegrams_errors_become_reasons(
    error: TelegramError, reason: Reason, description: str, permanent: bool
) -> None:
    failure = failure_of(error)
    assert (failure.reason, failure.description, failure.permanent) == (
        reason,
        description,
        permanent,
    )


def test_a_stored_text_gives_back_only_the_topic_reasons() -> None:
    assert stored_failure("400 Topic_closed", True).reason is Reason.TOPIC_CLOSED
    assert stored_failure("400 Message thread not found", True).reason is Reason.TOPIC_DELETED
    blocked = stored_failure("403 Forbidden: bot was blocked by the user", True)
    assert blocked.reason is Reason.UNKNOWN and not blocked.unreachable
    assert stored_failure("cancelled", False).description == "cancelled"
