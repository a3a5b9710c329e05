"""Message catalogues: every text a customer sees, in Chinese and English.

One TOML file per language (``zh.toml``, ``en.toml``), flat keys, named ``{placeholders}``.
TOML rather than gettext: operators edit these files, keys are stable identifiers used by code,
and the start-up check (same keys, same placeholders in both languages) needs no build step.
"""

from __future__ import annotations

import html
import string
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "en"
CATALOGUE_DIR = Path(__file__).parent


class Markup(str):
    """A parameter inserted verbatim: Telegram HTML validated elsewhere (knowledge-base answers),
    or a button label (plain text, which Telegram does not parse)."""


class CatalogueError(Exception):
    """A catalogue is inconsistent; the message names the file and the key."""


def language_from_code(language_code: str | None) -> str:
    """Telegram's ``language_code``: anything starting with ``zh`` is Chinese, the rest English."""
    return "zh" if (language_code or "").lower().startswith("zh") else "en"


def placeholders(template: str) -> set[str]:
    """The named fields a template uses."""
    return {field for _, field, _, _ in string.Formatter().parse(template) if field}


class Texts:
    """Renders catalogue entries; parameters are HTML-escaped (messages use parse_mode HTML)."""

    def __init__(self, catalogues: Mapping[str, Mapping[str, str]]) -> None:
        self._catalogues = catalogues

    @classmethod
    def load(cls, directory: Path = CATALOGUE_DIR) -> Texts:
        catalogues: dict[str, dict[str, str]] = {}
        for language in LANGUAGES:
            path = directory / f"{language}.toml"
            try:
                raw = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise CatalogueError(f"{path}: {exc}") from None
            for key, value in raw.items():
                if not isinstance(value, str):
                    raise CatalogueError(f"{path}: {key}: expected a string")
            catalogues[language] = raw
        cls._check_parity(directory, catalogues)
        return cls(catalogues)

    @staticmethod
    def _check_parity(directory: Path, catalogues: Mapping[str, Mapping[str, str]]) -> None:
        reference = catalogues[DEFAULT_LANGUAGE]
        for language, catalogue in catalogues.items():
            path = directory / f"{language}.toml"
            missing = sorted(set(reference) - set(catalogue))
            extra = sorted(set(catalogue) - set(reference))
            if missing or extra:
                key = (missing or extra)[0]
                where = "missing here" if missing else f"missing in {DEFAULT_LANGUAGE}.toml"
                raise CatalogueError(f"{path}: {key}: {where}")
            for key, template in catalogue.items():
                if placeholders(template) != placeholders(reference[key]):
                    raise CatalogueError(
                        f"{path}: {key}: placeholders {sorted(placeholders(template))} differ "
                        f"from {DEFAULT_LANGUAGE}.toml {sorted(placeholders(reference[key]))}"
                    )

    def key_set(self) -> set[str]:
        return set(self._catalogues[DEFAULT_LANGUAGE])

    def render(self, language: str, key: str, /, **params: Any) -> str:
        """The text for ``key`` in ``language`` with HTML-escaped parameters (``Markup`` as is)."""
        catalogue = self._catalogues.get(language) or self._catalogues[DEFAULT_LANGUAGE]
        escaped = {
            name: value if isinstance(value, Markup) else html.escape(str(value), quote=False)
            for name, value in params.items()
        }
        return catalogue[key].format_map(escaped)

    def raw(self, language: str, key: str) -> str:
        """The unrendered template (for texts that are themselves inserted into others)."""
        catalogue = self._catalogues.get(language) or self._catalogues[DEFAULT_LANGUAGE]
        return catalogue[key]
