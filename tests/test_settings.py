"""Start-up settings: a missing or malformed value stops the process with one clear line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from bot.kernel.config import load_config
from bot.kernel.files import ConfigError
from bot.settings import EXAMPLE_CONFIG_DIR, SettingsError, load_settings
from tests.auxil.processes import CAREBOT, carebot_env


def _run_carebot(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CAREBOT, *args],
        cwd=tmp_path,
        env={**carebot_env(), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_missing_token_is_one_line_without_traceback(tmp_path: Path) -> None:
    result = _run_carebot(tmp_path, "run")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "carebot: missing setting CAREBOT_TELEGRAM_TOKEN: expected the bot token from "
        "@BotFather, like 123456789:AA..."
    ]
    assert not (tmp_path / "carebot.db").exists()


def test_malformed_database_url_is_one_line(tmp_path: Path) -> None:
    token = "123456:SECRET-never-shown"
    result = _run_carebot(
        tmp_path,
        "run",
        CAREBOT_TELEGRAM_TOKEN=token,
        CAREBOT_DATABASE_URL="mysql://root@localhost/shop",
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("carebot: invalid setting CAREBOT_DATABASE_URL: expected ")
    assert "Traceback" not in result.stderr and token not in result.stderr


def test_malformed_token_is_named_but_never_echoed() -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(telegram_token="not a token at all")
    assert "CAREBOT_TELEGRAM_TOKEN" in str(error.value)
    assert "not a token at all" not in str(error.value)


def test_settings_come_from_carebot_toml_and_env_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("CAREBOT_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "carebot.toml").write_text(
        'telegram_token = "111:from-toml"\nstaff_chat_id = -100123\n', encoding="utf-8"
    )
    (tmp_path / ".env").write_text("CAREBOT_STAFF_CHAT_ID=-100456\n", encoding="utf-8")
    settings = load_settings()
    assert settings.token == "111:from-toml"
    assert settings.staff_chat_id == -100456  # .env outranks carebot.toml
    monkeypatch.setenv("CAREBOT_STAFF_CHAT_ID", "-100789")
    assert load_settings().staff_chat_id == -100789  # the environment outranks both


def test_rule_file_error_names_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "customers.toml").write_text(
        (EXAMPLE_CONFIG_DIR / "customers.toml")
        .read_text()
        .replace('"Asia/Shanghai"', '"Mars/Olympus"'),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path)
    assert str(error.value) == (
        f"{tmp_path / 'customers.toml'}: customers.default_timezone: "
        "expected an IANA time zone such as Asia/Shanghai"
    )


def test_unknown_rule_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / "customers.toml").write_text("[chat]\nmax_lenght = 10\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"customers\.toml: chat\.max_lenght: unknown key"):
        load_config(tmp_path)


def test_shipped_rules_load() -> None:
    rules = load_config(EXAMPLE_CONFIG_DIR)
    assert rules.general.customers.default_timezone == "Asia/Shanghai"
