"""The one renderer of what the bot shows: a catalogue text with its (nested) parameters in a
language, inline keyboards, and Telegram's "message is not modified" recognised. The handlers'
replies (``handlers._edge.render``), the staff desk's answers (``handlers.staff.telegram``) and
the dispatcher's sends (``scheduler.dispatcher.telegram``) all go through it, so a text or a
button looks the same whoever sends it.

The kernel's only module with Telegram (``tests.auxil.imports`` lets it): both edges import it,
and neither may import the other's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest

from bot.kernel.replies import TextRef
from bot.kernel.texts import Texts


def render_ref(texts: Texts, language: str, ref: TextRef) -> str:
    """A catalogue text in ``language``; parameters that are texts themselves (``TextRef``, at
    any depth) are rendered first, in the same language."""
    return texts.render(language, ref.key, **resolve_params(texts, language, ref.params))


def resolve_params(texts: Texts, language: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters with texts rendered; a list of texts becomes their lines."""
    return {name: _resolve(texts, language, value) for name, value in params.items()}


def _resolve(texts: Texts, language: str, value: Any) -> Any:
    if isinstance(value, TextRef):
        return render_ref(texts, language, value)
    if isinstance(value, list) and value and all(isinstance(item, TextRef) for item in value):
        return "\n".join(render_ref(texts, language, item) for item in value)
    return value


def render_label(texts: Texts, language: str, label: TextRef | str) -> str:
    """A button's label: a catalogue text, or a ready one as it is."""
    return render_ref(texts, language, label) if isinstance(label, TextRef) else label


def inline_button(
    label: str, *, data: str | None = None, url: str | None = None
) -> InlineKeyboardButton:
    """A button that opens ``url`` when it has one, else sends ``data``."""
    if url:
        return InlineKeyboardButton(label, url=url)
    return InlineKeyboardButton(label, callback_data=data)


def inline_keyboard(
    rows: Iterable[Iterable[InlineKeyboardButton]],
) -> InlineKeyboardMarkup | None:
    """The rows as an inline keyboard; None when there are none."""
    keyboard = [list(row) for row in rows]
    return InlineKeyboardMarkup(keyboard) if keyboard else None


def is_not_modified(error: BadRequest) -> bool:
    """Telegram refused an edit that changes nothing ("message is not modified")."""
    return "not modified" in str(error).lower()
