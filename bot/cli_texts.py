"""What the ``carebot`` command prints for people, from the text catalogue in Chinese and
English: ``CAREBOT_CLI_LANGUAGE`` (``zh`` or ``en``) when set, else the terminal's locale
(``LC_ALL``, ``LC_MESSAGES``, ``LANG`` starting with ``zh``), else English. Counts come with
their noun in real plurals (``cli_<noun>_one`` for 1, ``cli_<noun>_other`` otherwise), and
moments with their time zone."""

from __future__ import annotations

import os
from datetime import datetime
from functools import cache
from zoneinfo import ZoneInfo

from bot.kernel.texts import LANGUAGES, Texts
from bot.settings import SettingsError

CLI_LANGUAGE_SETTING = "CAREBOT_CLI_LANGUAGE"
LOCALE_VARIABLES = ("LC_ALL", "LC_MESSAGES", "LANG")


def cli_language() -> str:
    """The language of the command's output (see the module docstring); an unknown
    ``CAREBOT_CLI_LANGUAGE`` is a one-line ``SettingsError``."""
    chosen = os.environ.get(CLI_LANGUAGE_SETTING, "").strip().lower()
    if chosen:
        if chosen not in LANGUAGES:
            raise SettingsError(
                f"invalid setting {CLI_LANGUAGE_SETTING}: expected one of {', '.join(LANGUAGES)}"
            )
        return chosen
    for variable in LOCALE_VARIABLES:
        value = os.environ.get(variable, "")
        if value:
            return "zh" if value.lower().startswith("zh") else "en"
    return "en"


@cache
def _texts() -> Texts:
    return Texts.load()


def say(key: str, /, **params: object) -> str:
    """The catalogue's ``key`` in the command's language, as plain text (no HTML escaping)."""
    return _texts().raw(cli_language(), key).format_map(params)


def counted(noun: str, number: int) -> str:
    """``number`` with its noun (``cli_<noun>_one`` / ``_other``): "1 customer", "2 customers",
    "2 位客户"."""
    form = "one" if number == 1 else "other"
    return say(f"cli_{noun}_{form}", count=f"{number:,}")


def listing(parts: list[str]) -> str:
    """Parts joined the language's way ("a, b" / "a，b")."""
    return say("cli_list_separator").join(parts)


def zoned(moment: datetime, zone: str) -> str:
    """A moment in ``zone``, labelled with it: ``2026-11-23 17:00 Asia/Shanghai``."""
    return f"{moment.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M} {zone}"
