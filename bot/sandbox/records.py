"""The sandbox's public records of what happened: requests (``ApiCall``, ``UploadedFile``),
messages the bot created (``SentMessage``), forum topics and webhook deliveries; and who plays
the people (``FakeUser``, ``FakeGroup``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.sandbox.protocol import JSONDict


@dataclass
class UploadedFile:
    """A file part of a multipart request, as found in ``ApiCall.params``."""

    field_name: str
    filename: str | None
    content_type: str | None
    data: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"<UploadedFile {self.field_name}={self.filename!r} {len(self.data)} bytes>"


@dataclass
class ApiCall:
    """One request the bot made. ``status`` is 0 while the request is still being handled."""

    method: str
    params: JSONDict
    at: float
    status: int = 0
    error: str | None = None
    result: Any = None

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class SentMessage:
    """A message the bot created. ``text``/``caption``/``reply_markup`` are as the bot sent them
    (markup included); ``message`` is the stored Message dict (kept current by edits)."""

    chat_id: int
    message_id: int
    method: str
    kind: str
    text: str | None
    caption: str | None
    parse_mode: str | None
    reply_markup: JSONDict | None
    message_thread_id: int | None
    reply_to_message_id: int | None
    media_group_id: str | None
    file_id: str | None
    copied_from: tuple[int, int] | None
    at: float
    message: JSONDict = field(repr=False)
    params: JSONDict = field(repr=False)
    deleted: bool = False

    @property
    def body(self) -> str | None:
        """The text of a text message or the caption of any other."""
        return self.text if self.text is not None else self.caption

    def buttons(self) -> list[tuple[str, str]]:
        """``(label, callback_data or url)`` of the inline keyboard sent with the message."""
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [
            (button.get("text", ""), button.get("callback_data", button.get("url", "")))
            for row in rows
            for button in row
        ]


@dataclass
class ForumTopicInfo:
    chat_id: int
    message_thread_id: int
    name: str
    icon_color: int
    icon_custom_emoji_id: str | None = None
    closed: bool = False
    deleted: bool = False
    created_by_bot: bool = True


@dataclass
class WebhookAttempt:
    """One POST of an update to the webhook: ``status`` None when the connection failed."""

    update_id: int
    status: int | None
    error: str | None
    at: float


def sent_texts(messages: Sequence[SentMessage]) -> list[str | None]:
    """The text or caption of each message, for compact assertions."""
    return [m.body for m in messages]


@dataclass(frozen=True)
class FakeUser:
    """A Telegram user played by the tests. Their private chat with the bot has ``id == id``."""

    id: int
    first_name: str
    language_code: str | None = "en"
    username: str | None = None
    last_name: str | None = None
    is_bot: bool = False

    def to_dict(self) -> JSONDict:
        data: JSONDict = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        if self.last_name:
            data["last_name"] = self.last_name
        if self.username:
            data["username"] = self.username
        if self.language_code:
            data["language_code"] = self.language_code
        return data


@dataclass(frozen=True)
class FakeGroup:
    id: int
    title: str
    is_forum: bool
    username: str | None = None
