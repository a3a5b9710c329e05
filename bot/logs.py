"""Logging set-up: ids, not texts; secrets (the token) never reach a log line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import TextIO

# Libraries whose lines below WARNING carry URLs with the token or per-query chatter.
NOISY_LOGGERS = ("httpx", "httpcore", "aiosqlite", "apscheduler")


class RedactingFormatter(logging.Formatter):
    """Replaces every secret in the fully formatted line, tracebacks included."""

    def __init__(self, fmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        self._secrets = [secret for secret in secrets if secret]

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        for secret in self._secrets:
            line = line.replace(secret, "<redacted>")
        return line


def configure_logging(level: str, secrets: Iterable[str], stream: TextIO | None = None) -> None:
    """Log to stderr at ``level``. Never below INFO for PTB (its DEBUG lines carry message
    texts) nor below WARNING for HTTP clients (URLs carry the token); any secret left anywhere
    is redacted."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # PTB's DEBUG lines print whole updates (customers' texts and phone numbers).
    logging.getLogger("telegram").setLevel(max(logging.INFO, logging.getLevelName(level)))
