"""What a rule answers, as plain data: text keys and buttons, rendered later in the customer's
language. Rules return these; handlers turn them into Telegram messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


@dataclass(frozen=True)
class TextRef:
    """A catalogue entry used as a parameter of another one (rendered in the same language)."""

    key: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Button:
    """An inline button: a catalogue key for its label and the callback data it sends."""

    key: str
    data: str
    params: dict[str, Any] = field(default_factory=dict)
    url: str | None = None
    """A link button: opens ``url`` instead of sending ``data``."""


class Keyboard(Enum):
    """The reply keyboard (under the input field) to show with a reply."""

    KEEP = "keep"
    REQUEST_CONTACT = "request_contact"
    REMOVE = "remove"


@dataclass(frozen=True)
class Reply:
    key: str
    language: str
    params: dict[str, Any] = field(default_factory=dict)
    buttons: list[list[Button]] = field(default_factory=list)
    keyboard: Keyboard = Keyboard.KEEP
    replace_message: bool = False
    """Edit the message whose button was pressed instead of sending a new one."""


@dataclass(frozen=True)
class Alert:
    """A short answer to a button press (shown as a toast), e.g. for an expired keyboard."""

    key: str
    language: str
