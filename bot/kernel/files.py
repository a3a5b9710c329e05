"""Reading one operator rule file (TOML) into its schema, with errors that name the file and
the key: shared by every config schema of the kernel."""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError


class ConfigError(Exception):
    """A rule file is missing or invalid; the message names the file and key."""


Model = TypeVar("Model", bound=BaseModel)


def load_config_file(path: Path, model: type[Model]) -> Model:
    """Parse one TOML rule file into ``model``; raises ConfigError naming file and key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        raise ConfigError(f"{path}: {key}: {message}") from None


def known(values: list[str], allowed: Sequence[str], what: str) -> list[str]:
    """``values`` unchanged when each is one of ``allowed``; else a ValueError naming the first
    that is not (pydantic adds the file's key)."""
    for value in values:
        if value not in allowed:
            raise ValueError(f"unknown {what} {value!r}: expected one of {', '.join(allowed)}")
    return values
