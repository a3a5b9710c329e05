"""Every customer-facing text exists in Chinese and English, with the same placeholders."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.kernel.texts import CATALOGUE_DIR, CatalogueError, Texts, language_from_code, placeholders


def test_shipped_catalogues_have_the_same_keys_and_placeholders() -> None:
    texts = Texts.load()
    assert "welcome" in texts.key_set()
    for key in texts.key_set():
        assert placeholders(texts.raw("zh", key)) == placeholders(texts.raw("en", key)), key
        assert texts.raw("zh", key) != "" and texts.raw("en", key) != ""


def _copy_catalogues(tmp_path: Path) -> Path:
    for language in ("zh", "en"):
        shutil.copy(CATALOGUE_DIR / f"{language}.toml", tmp_path / f"{language}.toml")
    return tmp_path


def test_a_key_missing_in_one_language_is_named(tmp_path: Path) -> None:
    directory = _copy_catalogues(tmp_path)
    zh = directory / "zh.toml"
    zh.write_text(
        "\n".join(
            line for line in zh.read_text().splitlines() if not line.startswith("stop_done")
        ),
        encoding="utf-8",
    )
    with pytest.raises(CatalogueError, match=r"zh\.toml: stop_done: missing here"):
        Texts.load(directory)


def test_a_placeholder_mismatch_is_named(tmp_path: Path) -> None:
    directory = _copy_catalogues(tmp_path)
    en = directory / "en.toml"
    en.write_text(
        en.read_text().replace("Time zone set to {timezone}.", "Time zone set to {zone}."),
        encoding="utf-8",
    )
    with pytest.raises(CatalogueError, match=r"timezone_saved: placeholders"):
        Texts.load(directory)


def test_parameters_are_html_escaped() -> None:
    texts = Texts.load()
    assert "&lt;b&gt;" in texts.render("en", "welcome_back", name="<b>")


@pytest.mark.parametrize(
    ("code", "language"),
    [("zh", "zh"), ("zh-hans", "zh"), ("zh-TW", "zh"), ("en", "en"), ("ru", "en"), (None, "en")],
)
def test_language_from_telegram_code(code: str | None, language: str) -> None:
    assert language_from_code(code) == language
