"""Business rules an operator edits: TOML files in ``CAREBOT_CONFIG_DIR``, validated at start-up.

Each file maps onto a pydantic model; an error names the file, the key and what was expected.
Later features add their own files (care plans, SLAs, surveys, knowledge base) beside these.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.texts import LANGUAGES


class RulesError(Exception):
    """A rule file is missing or invalid; the message names the file and key."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CustomerRules(StrictModel):
    default_timezone: str = "Asia/Shanghai"
    default_country: str = Field(default="CN", pattern=r"^[A-Z]{2}$")
    default_language: str = "en"

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("expected an IANA time zone such as Asia/Shanghai") from None
        return value

    @field_validator("default_language")
    @classmethod
    def _known_language(cls, value: str) -> str:
        if value not in LANGUAGES:
            raise ValueError(f"expected one of {', '.join(LANGUAGES)}")
        return value


class ChatRules(StrictModel):
    max_text_length: int = Field(default=4000, ge=1, le=100_000)


class GeneralRules(StrictModel):
    """``customers.toml``: defaults for new customers and limits on what they send."""

    customers: CustomerRules = CustomerRules()
    chat: ChatRules = ChatRules()


class Rules(StrictModel):
    """All rule files, loaded together at start-up."""

    general: GeneralRules


Model = TypeVar("Model", bound=BaseModel)


def load_rule_file(path: Path, model: type[Model]) -> Model:
    """Parse one TOML rule file into ``model``; raises RulesError naming file and key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RulesError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{path}: not valid TOML: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        raise RulesError(f"{path}: {key}: {message}") from None


def load_rules(config_dir: Path) -> Rules:
    """Load and validate every rule file in ``config_dir``."""
    return Rules(general=load_rule_file(config_dir / "customers.toml", GeneralRules))
