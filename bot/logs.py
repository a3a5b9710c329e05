"""Logging set-up: ids, not texts; secrets (the token) and phone numbers never reach a log line.

On a terminal a line reads ``time LEVEL logger: message key=value ...``; anywhere else (a file,
journald, a container's log collector) it is one JSON object per line with ``time``, ``level``,
``logger``, ``message`` and every field given with ``extra=``, so ``logger.info("update handled",
extra={"update_id": 7, "handler": "start", "duration_ms": 3.1, "result": "ok"})`` comes out as
fields a log pipeline can filter on.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

LogFormat = Literal["auto", "json", "text"]

# Libraries whose lines below WARNING carry URLs with the token or per-query chatter.
NOISY_LOGGERS = ("httpx", "httpcore", "aiosqlite", "apscheduler")

REDACTED = "<redacted>"
PHONE_REDACTED = "<phone>"

# ``extra=`` fields whose values are private whatever they hold (a customer's words, a phone).
PRIVATE_FIELDS = frozenset({"text", "caption", "phone", "phone_number"})

# Phone numbers as customers type them or Telegram sends them, but not the ids, dates and
# durations logs are made of: "+86 139 0000 1234", "8613900001234" (11-15 bare digits; chat ids
# are negative and user ids shorter), "139-0000-1234", "(555) 123-4567".
PHONE_PATTERN = re.compile(
    r"\+\d[\d\s().-]{5,}\d"
    r"|(?<![\w+-])(?:\d{11,15}"
    r"|1[3-9]\d[ -]\d{4}[ -]\d{4}"
    r"|\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4})(?!\w)"
)

# Attributes every LogRecord has: anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
_OWN_FIELDS = ("time", "level", "logger", "message", "exception")


class Redactor:
    """Removes the secrets and phone numbers from a piece of log text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = [secret for secret in secrets if secret]

    def secrets(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def __call__(self, text: str) -> str:
        return PHONE_PATTERN.sub(PHONE_REDACTED, self.secrets(text))


def _extra_value(name: str, value: Any, redact: Redactor) -> Any:
    if name in PRIVATE_FIELDS:
        return REDACTED
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


def log_fields(record: logging.LogRecord, redact: Redactor) -> dict[str, Any]:
    """The record as fields: time (UTC, ISO 8601), level, logger, message, then the ``extra=``
    fields (one named like ours gets an ``extra_`` prefix), then the traceback if any."""
    fields: dict[str, Any] = {
        "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname,
        "logger": record.name,
        "message": redact(record.getMessage()),
    }
    for name, value in record.__dict__.items():
        if name in _RECORD_ATTRIBUTES or name.startswith("_"):
            continue
        key = f"extra_{name}" if name in _OWN_FIELDS else name
        fields[key] = _extra_value(name, value, redact)
    if record.exc_info:
        fields["exception"] = redact(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        fields["exception"] = redact(record.exc_text)
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for machines."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._redact = Redactor(secrets)

    def format(self, record: logging.LogRecord) -> str:
        line = json.dumps(log_fields(record, self._redact), ensure_ascii=False, default=str)
        return self._redact.secrets(line)  # a secret that slipped in another way


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...`` and the traceback below, for people."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._redact = Redactor(secrets)

    def format(self, record: logging.LogRecord) -> str:
        fields = log_fields(record, self._redact)
        exception = fields.pop("exception", None)
        line = "{time} {level} {logger}: {message}".format(**fields)
        extras = [f"{key}={value}" for key, value in fields.items() if key not in _OWN_FIELDS]
        if extras:
            line = " ".join([line, *extras])
        if exception:
            line = f"{line}\n{exception}"
        return self._redact.secrets(line)


def wants_json(log_format: LogFormat, stream: TextIO) -> bool:
    """JSON unless asked for text or writing to a terminal."""
    if log_format != "auto":
        return log_format == "json"
    isatty = getattr(stream, "isatty", None)
    return not (callable(isatty) and isatty())


def configure_logging(
    level: str,
    secrets: Iterable[str],
    stream: TextIO | None = None,
    log_format: LogFormat = "auto",
) -> None:
    """Log to stderr at ``level``, as JSON lines or text (see ``wants_json``). Never below INFO
    for PTB (its DEBUG lines carry message texts) nor below WARNING for HTTP clients (URLs carry
    the token); any secret or phone number left anywhere is redacted."""
    target = stream or sys.stderr
    handler = logging.StreamHandler(target)
    formatter = JsonFormatter if wants_json(log_format, target) else TextFormatter
    handler.setFormatter(formatter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # PTB's DEBUG lines print whole updates (customers' texts and phone numbers).
    logging.getLogger("telegram").setLevel(max(logging.INFO, logging.getLevelName(level)))
