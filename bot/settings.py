"""Process settings (design, Contract): environment, `.env` and `carebot.toml`, checked once."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from storage.engine import parse_database_url

EXAMPLE_CONFIG_DIR = Path(__file__).parent / "example_config"
TOKEN_PATTERN = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{1,128}$")
PLACEHOLDER_TOKENS = {"token", "changeme", "your-token", "your_token", "123:abc"}

# What each setting expects, for the one-line start-up error.
EXPECTED = {
    "telegram_token": "the bot token from @BotFather, like 123456789:AA...",
    "telegram_api_url": "an http(s) URL of a Bot API server root, like https://api.telegram.org",
    "staff_chat_id": "the integer id of the staff forum supergroup, like -1001234567890",
    "database_url": "sqlite+aiosqlite:///carebot.db or postgresql+asyncpg://user@host/dbname",
    "config_dir": "a directory holding the rule files (see the shipped example_config)",
    "webhook_url": "an https URL Telegram can post updates to, like https://bot.example.com/telegram",
    "webhook_secret": "1-256 characters among A-Z, a-z, 0-9, _ and -",
    "listen_host": "an address to listen on, like 0.0.0.0",
    "listen_port": "a TCP port between 1 and 65535",
    "log_level": "one of DEBUG, INFO, WARNING, ERROR",
    "dashboard_url": "the public http(s) root of the web server, like https://bot.example.com",
    "serve_web": "true or false",
    "log_format": "one of auto (JSON unless on a terminal), json, text",
}


class SettingsError(Exception):
    """A setting is missing or malformed; the message is one line meant for the operator."""


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("not an http(s) URL")
    return value.rstrip("/")


class DatabaseSettings(BaseSettings):
    """What the database commands need (``carebot db upgrade`` runs without a token)."""

    model_config = SettingsConfigDict(
        env_prefix="CAREBOT_",
        env_file=".env",
        env_file_encoding="utf-8",
        toml_file="carebot.toml",
        extra="ignore",
        hide_input_in_errors=True,
    )

    database_url: str = Field(default="sqlite+aiosqlite:///carebot.db", repr=False)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        parse_database_url(value)
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            TomlConfigSettingsSource(settings_cls),
        )


class Settings(DatabaseSettings):
    """Everything the bot process needs to start; rules live in files under ``config_dir``."""

    telegram_token: SecretStr
    telegram_api_url: str = "https://api.telegram.org"
    staff_chat_id: int | None = None
    config_dir: Path = EXAMPLE_CONFIG_DIR
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    listen_host: str = "0.0.0.0"
    listen_port: int = Field(default=8080, ge=1, le=65535)
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "text"] = "auto"
    # The public root of this process's web server (the dashboard's sign-in links start with
    # it); setting it turns the dashboard on, and the web server on in polling mode too.
    dashboard_url: str | None = None
    # Serve /healthz, /readyz and /metrics in polling mode too (webhook mode always does).
    serve_web: bool = False

    @field_validator("staff_chat_id", mode="before")
    @classmethod
    def _staff_chat_id(cls, value: object) -> object:
        """Empty (``CAREBOT_STAFF_CHAT_ID=`` in an env file): none, ``/setup`` chooses."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("dashboard_url")
    @classmethod
    def _dashboard_url(cls, value: str | None) -> str | None:
        return _check_http_url(value) if value else None

    @field_validator("telegram_token")
    @classmethod
    def _token_shape(cls, value: SecretStr) -> SecretStr:
        token = value.get_secret_value().strip()
        if token.lower() in PLACEHOLDER_TOKENS or not TOKEN_PATTERN.match(token):
            raise ValueError("malformed token")
        return SecretStr(token)

    @field_validator("telegram_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        return _check_http_url(value)

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        return _check_http_url(value) if value else None

    @field_validator("config_dir")
    @classmethod
    def _config_dir(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError("not a directory")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _secret_shape(cls, value: SecretStr | None) -> SecretStr | None:
        secret = value.get_secret_value() if value is not None else None
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise ValueError("malformed secret")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("unknown level")
        return value.upper()

    @property
    def token(self) -> str:
        return self.telegram_token.get_secret_value()

    @property
    def effective_webhook_secret(self) -> str:
        """The configured secret, or one derived from the token so every replica agrees on it."""
        if self.webhook_secret is not None:
            return self.webhook_secret.get_secret_value()
        return hashlib.sha256(b"carebot-webhook:" + self.token.encode()).hexdigest()[:48]

    @property
    def webhook_path(self) -> str:
        path = urlsplit(self.webhook_url).path if self.webhook_url else ""
        return path or "/telegram"


SettingsModel = TypeVar("SettingsModel", bound=DatabaseSettings)


def _validated(model: type[SettingsModel], overrides: dict[str, Any]) -> SettingsModel:
    try:
        return model(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            what = "missing" if error["type"] == "missing" else "invalid"
            expected = EXPECTED.get(field, "a valid value")
            problems.append(f"{what} setting CAREBOT_{field.upper()}: expected {expected}")
        raise SettingsError("; ".join(problems)) from None


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the bot's settings; raises SettingsError naming the bad setting."""
    return _validated(Settings, overrides)


def load_database_settings(**overrides: Any) -> DatabaseSettings:
    """Only the database URL (for ``carebot db ...``, which needs no token)."""
    return _validated(DatabaseSettings, overrides)
