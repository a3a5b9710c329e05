"""What an outbox row sends, as typed values: one frozen dataclass per kind of send, and the one
place they become the row's JSON ``payload`` and back (``to_json``/``from_json``).

The JSON is the shape rows have always had, so rows queued by an older carebot read as they are:

- ``ReadyText``: ``{"text": ..., "html": ...}``, a text sent as it is (plain unless ``html``);
- ``CatalogueText``: ``{"key": ..., "params": {...}}``, a catalogue text rendered at send time
  in the recipient's language; a parameter may itself be ``{"key": ..., "params": ...}``;
- ``Copy``: ``{"copy": {"from_chat_id", "message_id", "caption"?, "remove_caption"?}}``;
- ``CopyMany``: ``{"copy_many": {"from_chat_id", "message_ids"}}``;
- ``MediaGroup``: ``{"media_group": [{"type", "media", "caption"?}, ...]}``;
- ``TopicChange``: ``{"topic": {"action": "create"|"edit"|"close"|"reopen", "name"?}}``;
- ``EditText``: ``{"edit": {"message_id", "text", "html"}}``, a message of the bot's edited
  (its buttons replaced by ``buttons``; none: they go);

each with the optional ``buttons`` (rows of ``{"key"|"text": ..., "params"?, "data"|"url": ...}``),
``thread_id``, ``reply_to``, ``language`` (for rows without a customer), the ticket desk's
``delivery`` and ``ticket`` ids (``merged``: the other deliveries a row of merged texts carries),
and care's ``care`` tag and ``expires_at``. A stored payload that
is no kind of send (erased by ``/forget``, or malformed) reads as ``Unreadable``: its row fails
when it is sent, and its ids still reach the desk's outcome hooks.

Telegram's limits the rules plan with (``CAPTION_LIMIT``, ``ALBUM_LIMIT``) are here too: they
bound what a payload may carry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from bot.kernel.replies import TextRef

CAPTION_LIMIT = 1024
"""The longest caption (characters) Telegram takes from a bot; a longer one is refused."""

ALBUM_LIMIT = 10
"""The most items one media group (album) may have."""

ERASED_PAYLOAD: dict[str, Any] = {"erased": True}
"""What an erased row's payload becomes (``/forget``): the row stays for the counts."""


@dataclass(frozen=True)
class OutboxButton:
    """An inline button: a catalogue text (``TextRef``) or a ready label, sending ``data`` or
    opening ``url``."""

    label: TextRef | str
    data: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class CareTag:
    """What care planned a row for (the stale check and the reports read it)."""

    occasion: str
    day: str
    tier: str


@dataclass(frozen=True, kw_only=True)
class Payload:
    """What every kind of send may carry besides its content."""

    buttons: Sequence[Sequence[OutboxButton]] = ()
    thread_id: int | None = None
    reply_to: int | None = None
    language: str | None = None
    """The language of a row without a customer (messages to the staff group)."""
    delivery: int | None = None
    """The ticket desk's delivery this row is an attempt of (``handlers.tickets``)."""
    ticket: int | None = None
    merged: Sequence[int] = ()
    """The desk's deliveries this row carries besides ``delivery`` (consecutive texts of a
    topic sent as one message while its group has no room left)."""
    care: CareTag | None = None
    expires_at: datetime | None = None
    """Care: the row is stale from then on (a greeting past its day)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "buttons", tuple(tuple(row) for row in self.buttons))
        object.__setattr__(self, "merged", tuple(self.merged))


@dataclass(frozen=True)
class ReadyText(Payload):
    text: str
    html: bool = False


@dataclass(frozen=True)
class CatalogueText(Payload):
    text: TextRef


@dataclass(frozen=True)
class Copy(Payload):
    """copyMessage; ``caption`` (HTML) replaces the original one, ``remove_caption`` drops it."""

    from_chat_id: int
    message_id: int
    caption: str | None = None
    remove_caption: bool = False


@dataclass(frozen=True)
class CopyMany(Payload):
    """copyMessages (an album that cannot be sent as files): no buttons, no reply."""

    from_chat_id: int
    message_ids: Sequence[int]

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "message_ids", tuple(self.message_ids))


@dataclass(frozen=True)
class MediaItem:
    """One album item: a file already on Telegram, its caption in HTML."""

    kind: str
    """photo, video, document or audio."""
    media: str
    caption: str | None = None


@dataclass(frozen=True)
class MediaGroup(Payload):
    """sendMediaGroup of files already on Telegram: no buttons."""

    items: Sequence[MediaItem]

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "items", tuple(self.items))


class TopicAction(StrEnum):
    CREATE = "create"
    EDIT = "edit"
    CLOSE = "close"
    REOPEN = "reopen"


@dataclass(frozen=True)
class TopicChange(Payload):
    """Create, rename, close or reopen a forum topic (``name`` for create and edit)."""

    action: TopicAction
    name: str | None = None


@dataclass(frozen=True)
class EditText(Payload):
    """editMessageText of a message the bot sent (the ticket card kept true): the new text and
    buttons. Telegram's "message is not modified" counts as done."""

    message_id: int
    text: str
    html: bool = False


@dataclass(frozen=True)
class Unreadable(Payload):
    """A stored payload that is no kind of send (erased, or malformed): ``problem`` says why,
    ``raw`` is what was stored. Its common fields are read as far as they go."""

    raw: Mapping[str, Any] = field(default_factory=dict)
    problem: Exception | None = None


# -- JSON ----------------------------------------------------------------------------------------


def to_json(payload: Payload) -> dict[str, Any]:
    """The row's JSON for a payload (the shape ``from_json`` reads)."""
    body: dict[str, Any]
    match payload:
        case ReadyText():
            body = {"text": payload.text, "html": payload.html}
        case CatalogueText():
            body = {"key": payload.text.key, "params": _params_json(payload.text.params)}
        case Copy():
            copy: dict[str, Any] = {
                "from_chat_id": payload.from_chat_id,
                "message_id": payload.message_id,
            }
            if payload.caption is not None:
                copy["caption"] = payload.caption
            if payload.remove_caption:
                copy["remove_caption"] = True
            body = {"copy": copy}
        case CopyMany():
            body = {
                "copy_many": {
                    "from_chat_id": payload.from_chat_id,
                    "message_ids": list(payload.message_ids),
                }
            }
        case MediaGroup():
            body = {"media_group": [_item_json(item) for item in payload.items]}
        case TopicChange():
            topic: dict[str, Any] = {"action": payload.action.value}
            if payload.name is not None:
                topic["name"] = payload.name
            body = {"topic": topic}
        case EditText():
            body = {
                "edit": {
                    "message_id": payload.message_id,
                    "text": payload.text,
                    "html": payload.html,
                }
            }
        case Unreadable():
            return dict(payload.raw)
        case _:
            raise TypeError(f"not a payload: {payload!r}")
    if payload.buttons:
        body["buttons"] = [[_button_json(button) for button in row] for row in payload.buttons]
    for name in ("thread_id", "reply_to", "language", "delivery", "ticket"):
        value = getattr(payload, name)
        if value is not None:
            body[name] = value
    if payload.merged:
        body["merged"] = list(payload.merged)
    if payload.care is not None:
        care = payload.care
        body["care"] = {"occasion": care.occasion, "day": care.day, "tier": care.tier}
    if payload.expires_at is not None:
        body["expires_at"] = payload.expires_at.isoformat()
    return body


def from_json(raw: Mapping[str, Any]) -> Payload:
    """A row's payload as a typed value; never raises (what is no kind of send reads as
    ``Unreadable``, with the error its reading raised)."""
    common = _common(raw)
    try:
        return _body(raw, common)
    except Exception as error:
        return Unreadable(raw=dict(raw), problem=error, **common)


def _body(raw: Mapping[str, Any], common: dict[str, Any]) -> Payload:
    """The kind of send, in the order the dispatcher has always looked for them."""
    buttons = _buttons(raw.get("buttons"))
    if "topic" in raw:
        topic = raw["topic"]
        action = TopicAction(topic.get("action"))
        name = str(topic["name"]) if action in (TopicAction.CREATE, TopicAction.EDIT) else None
        return TopicChange(action, name, buttons=buttons, **common)
    if "edit" in raw:
        edit = raw["edit"]
        return EditText(
            int(edit["message_id"]),
            str(edit["text"]),
            bool(edit.get("html")),
            buttons=buttons,
            **common,
        )
    if "copy_many" in raw:
        group = raw["copy_many"]
        return CopyMany(
            int(group["from_chat_id"]),
            [int(item) for item in group["message_ids"]],
            buttons=buttons,
            **common,
        )
    if "media_group" in raw:
        items = [
            MediaItem(str(item["type"]), str(item["media"]), item.get("caption"))
            for item in raw["media_group"]
        ]
        return MediaGroup(items, buttons=buttons, **common)
    if "copy" in raw:
        copy = raw["copy"]
        caption = copy.get("caption")
        return Copy(
            int(copy["from_chat_id"]),
            int(copy["message_id"]),
            str(caption) if caption is not None else None,
            bool(copy.get("remove_caption")),
            buttons=buttons,
            **common,
        )
    if "text" in raw:
        return ReadyText(str(raw["text"]), bool(raw.get("html")), buttons=buttons, **common)
    return CatalogueText(_text_ref(raw), buttons=buttons, **common)


def _common(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The fields any payload may carry, read leniently: a missing or odd value is None (a
    thread or reply id of 0 too, as the dispatcher always took it)."""
    care = raw.get("care")
    language = raw.get("language")
    return {
        "thread_id": _id(raw.get("thread_id")) or None,
        "reply_to": _id(raw.get("reply_to")) or None,
        "language": str(language) if language is not None else None,
        "delivery": _id(raw.get("delivery")),
        "ticket": _id(raw.get("ticket")),
        "merged": _ids(raw.get("merged")),
        "care": CareTag(str(care.get("occasion")), str(care.get("day")), str(care.get("tier")))
        if isinstance(care, Mapping)
        else None,
        "expires_at": _moment(raw.get("expires_at")),
    }


def _id(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _ids(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(item for item in value if _id(item) is not None)


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _text_ref(raw: Mapping[str, Any]) -> TextRef:
    """``{"key": ..., "params": ...}``: a parameter that is a mapping is a text of its own."""
    params = raw.get("params") or {}
    return TextRef(
        str(raw["key"]),
        {
            name: _text_ref(value) if isinstance(value, Mapping) else value
            for name, value in params.items()
        },
    )


def _params_json(params: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: {"key": value.key, "params": _params_json(value.params)}
        if isinstance(value, TextRef)
        else value
        for name, value in params.items()
    }


def _buttons(raw: Any) -> list[list[OutboxButton]]:
    if not raw:
        return []
    return [[_button(button) for button in row] for row in raw]


def _button(raw: Mapping[str, Any]) -> OutboxButton:
    label: TextRef | str = str(raw["text"]) if raw.get("text") else _text_ref(raw)
    if "url" in raw:
        return OutboxButton(label, url=str(raw["url"]))
    return OutboxButton(label, data=str(raw["data"]))


def _button_json(button: OutboxButton) -> dict[str, Any]:
    if isinstance(button.label, TextRef):
        entry: dict[str, Any] = {"key": button.label.key}
        if button.label.params:
            entry["params"] = _params_json(button.label.params)
    else:
        entry = {"text": button.label}
    if button.url is not None:
        entry["url"] = button.url
    else:
        entry["data"] = button.data
    return entry


def _item_json(item: MediaItem) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": item.kind, "media": item.media}
    if item.caption:
        entry["caption"] = item.caption
    return entry
