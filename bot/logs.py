"""Logging set-up: ids, not texts; secrets (the token) and phone numbers never reach a log line.

On a terminal a line reads ``time LEVEL logger: message key=value ...``; anywhere else (a file,
journald, a container's log collector) it is one JSON object per line with ``time``, ``level``,
``logger``, ``message`` and every field given with ``extra=``, so ``logger.info("update handled",
extra={"update_id": 7, "handler": "start", "duration_ms": 3.1, "result": "ok"})`` comes out as
fields a log pipeline can filter on.

A database error is written without the values it quotes: SQLAlchemy's parameters are hidden
(``storage.engine``), and PostgreSQL's own message and detail (``Failing row contains (...)``,
``invalid input syntax for type integer: "..."``) are replaced by the error's SQLSTATE and the
names of the constraint, table and column; SQLite's messages, fixed texts of the engine, stay.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import sys
import traceback
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from sqlalchemy.exc import StatementError

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


# Where an exception comes from the database driver: its message may quote stored values.
_DRIVER_MODULES = ("asyncpg", "sqlalchemy.dialects")
# Fields of a PostgreSQL error that name things, never values.
_NAMING_FIELDS = ("sqlstate", "constraint_name", "table_name", "column_name")


def _type_name(error: BaseException) -> str:
    kind = type(error)
    if kind.__module__ in ("builtins", "__main__"):
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def error_text(error: BaseException) -> str:
    """What an exception says, fit for a log: a database error without the values it quotes
    (see the module docstring), anything else as ``str()`` gives it."""
    if isinstance(error, StatementError):
        cause = error.orig
        said = f"({_type_name(cause)}) {error_text(cause)}" if cause is not None else ""
        return f"{said} [SQL: {error.statement}]".strip()
    if isinstance(error, sqlite3.Error):
        return str(error)
    if type(error).__module__.startswith(_DRIVER_MODULES):
        names = [
            f"{name}={value}"
            for name in _NAMING_FIELDS
            if isinstance(value := getattr(error, name, None), str) and value
        ]
        return " ".join(["message withheld (may quote values)", *names])
    return str(error)


def format_exception(error: BaseException) -> str:
    """The traceback of ``error`` and its causes as Python prints it, each exception's text
    given by ``error_text``."""
    chain: list[tuple[BaseException, str | None]] = []
    seen: set[int] = set()
    current: BaseException | None = error
    link: str | None = None
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, "direct cause"
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, "context"
        else:
            current = None
    parts: list[str] = []
    for failure, joined_by in reversed(chain):
        if failure.__traceback__ is not None:
            parts.append("Traceback (most recent call last):\n")
            parts.extend(traceback.format_tb(failure.__traceback__))
        said = error_text(failure)
        parts.append(f"{_type_name(failure)}: {said}\n" if said else f"{_type_name(failure)}\n")
        if joined_by == "direct cause":
            parts.append(
                "\nThe above exception was the direct cause of the following exception:\n\n"
            )
        elif joined_by == "context":
            parts.append(
                "\nDuring handling of the above exception, another exception occurred:\n\n"
            )
    return "".join(parts).rstrip("\n")


def _message(record: logging.LogRecord) -> str:
    """The record's message, an exception among its arguments given by ``error_text``."""
    args = record.args
    if isinstance(args, tuple) and any(isinstance(arg, BaseException) for arg in args):
        args = tuple(error_text(arg) if isinstance(arg, BaseException) else arg for arg in args)
        return str(record.msg) % args
    return record.getMessage()


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
        "message": redact(_message(record)),
    }
    for name, value in record.__dict__.items():
        if name in _RECORD_ATTRIBUTES or name.startswith("_"):
            continue
        key = f"extra_{name}" if name in _OWN_FIELDS else name
        fields[key] = _extra_value(name, value, redact)
    if record.exc_info and record.exc_info[1] is not None:
        fields["exception"] = redact(format_exception(record.exc_info[1]))
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


# Alembic's set-up chatter ("setup plugin ...", "Context impl SQLiteImpl.", "Will assume
# non-transactional DDL."): DEBUG lines, not INFO. "Running upgrade a -> b" stays INFO.
ALEMBIC_CHATTER_LOGGERS = ("alembic.runtime.plugins", "alembic.runtime.migration")


class DemoteAlembicChatter(logging.Filter):
    """Alembic's INFO lines other than "Running upgrade ..." become DEBUG lines, shown only
    when the root logger is at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or record.getMessage().startswith("Running upgrade"):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


_DEMOTE_ALEMBIC = DemoteAlembicChatter()


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
    for chatty in ALEMBIC_CHATTER_LOGGERS:
        chatty_logger = logging.getLogger(chatty)
        if _DEMOTE_ALEMBIC not in chatty_logger.filters:
            chatty_logger.addFilter(_DEMOTE_ALEMBIC)
    # PTB's DEBUG lines print whole updates (customers' texts and phone numbers).
    logging.getLogger("telegram").setLevel(max(logging.INFO, logging.getLevelName(level)))
