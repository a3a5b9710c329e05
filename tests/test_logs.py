"""Structured logs: JSON lines off a terminal, text on one; never the token nor a phone number,
nor what a customer wrote (a database error's values included), even at DEBUG."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from bot.logs import configure_logging
from bot.settings import SettingsError, load_settings
from storage.engine import create_engine
from tests.auxil.harness import TOKEN, Harness


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def log_lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def json_records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log_lines(stream)]


@pytest.fixture
def stream(restore_logging: None) -> io.StringIO:
    """Logging configured as ``carebot run`` does it, writing to a pipe (not a terminal)."""
    captured = io.StringIO()
    configure_logging("INFO", secrets=[TOKEN], stream=captured)
    return captured


class TestJsonLines:
    def test_a_record_is_one_json_object_with_its_extra_fields(self, stream: io.StringIO) -> None:
        logging.getLogger("carebot.updates").info(
            "update handled",
            extra={"update_id": 812, "handler": "start", "duration_ms": 4.25, "result": "ok"},
        )
        (record,) = json_records(stream)
        assert record["level"] == "INFO"
        assert record["logger"] == "carebot.updates"
        assert record["message"] == "update handled"
        assert record["time"].endswith("+00:00")
        assert record["update_id"] == 812
        assert record["handler"] == "start"
        assert record["duration_ms"] == 4.25
        assert record["result"] == "ok"

    def test_an_exception_comes_as_a_field_of_the_same_line(self, stream: io.StringIO) -> None:
        try:
            raise RuntimeError("dispatcher lost its lease")
        except RuntimeError:
            logging.getLogger("scheduler").exception("send failed", extra={"outbox_id": 3})
        (line,) = log_lines(stream)
        record = json.loads(line)
        assert record["level"] == "ERROR"
        assert record["outbox_id"] == 3
        assert "RuntimeError: dispatcher lost its lease" in record["exception"]

    def test_an_extra_field_named_like_ours_does_not_replace_it(self, stream: io.StringIO) -> None:
        logging.getLogger("carebot").warning("tier moved", extra={"level": "vip"})
        (record,) = json_records(stream)
        assert record["level"] == "WARNING"
        assert record["extra_level"] == "vip"

    def test_text_and_values_that_json_cannot_hold_are_kept_readable(
        self, stream: io.StringIO
    ) -> None:
        logging.getLogger("carebot").info("工单已关闭", extra={"reasons": {"csat", "late"}})
        (record,) = json_records(stream)
        assert record["message"] == "工单已关闭"
        assert "csat" in record["reasons"]


class TestRedaction:
    def test_the_token_never_comes_out(self, stream: io.StringIO) -> None:
        logger = logging.getLogger("telegram.ext")
        url = f"https://api.telegram.org/bot{TOKEN}/getUpdates"
        logger.warning("request to %s failed", url, extra={"url": url})
        try:
            raise ConnectionError(f"cannot reach {url}")
        except ConnectionError:
            logger.exception("network error")
        assert TOKEN not in stream.getvalue()
        first, second = json_records(stream)
        assert first["message"] == (
            "request to https://api.telegram.org/bot<redacted>/getUpdates failed"
        )
        assert first["url"] == "https://api.telegram.org/bot<redacted>/getUpdates"
        assert "bot<redacted>" in second["exception"]

    @pytest.mark.parametrize(
        "phone",
        [
            "+8613900001234",
            "+86 139 0000 1234",
            "8613900001234",
            "139-0000-1234",
            "(555) 123-4567",
        ],
    )
    def test_a_phone_number_never_comes_out(self, stream: io.StringIO, phone: str) -> None:
        logger = logging.getLogger("handlers.onboarding.telegram")
        logger.info("contact from customer 42: %s", phone, extra={"shared": f"tel {phone}"})
        (line,) = log_lines(stream)
        assert phone not in line
        record = json.loads(line)
        assert record["message"] == "contact from customer 42: <phone>"
        assert record["shared"] == "tel <phone>"

    def test_fields_that_hold_a_customers_words_are_dropped(self, stream: io.StringIO) -> None:
        logging.getLogger("handlers").info(
            "message stored", extra={"text": "my order never came", "phone_number": "12"}
        )
        (record,) = json_records(stream)
        assert record["text"] == "<redacted>"
        assert record["phone_number"] == "<redacted>"

    def test_ids_dates_and_durations_are_not_taken_for_phones(self, stream: io.StringIO) -> None:
        message = (
            "update 812345678 in chat -1001000000001 from user 7012345678 "
            "on 2026-11-23 09:00:00 took 12.5 ms, ticket T-20261123-0042"
        )
        logging.getLogger("carebot").info(message, extra={"chat_id": -1001000000001})
        (record,) = json_records(stream)
        assert record["message"] == message
        assert record["chat_id"] == -1001000000001


class TestChoosingTheFormat:
    def test_a_terminal_gets_readable_text_with_the_extra_fields(
        self, restore_logging: None
    ) -> None:
        terminal = Terminal()
        configure_logging("INFO", secrets=[TOKEN], stream=terminal)
        logging.getLogger("carebot.updates").info(
            "update handled for %s", "+8613900001234", extra={"update_id": 9, "result": "ok"}
        )
        (line,) = log_lines(terminal)
        assert line.endswith(
            " INFO carebot.updates: update handled for <phone> update_id=9 result=ok"
        )
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)

    @pytest.mark.parametrize(
        ("stream", "log_format", "is_json"),
        [(Terminal(), "json", True), (io.StringIO(), "text", False)],
    )
    def test_a_setting_forces_either(
        self, restore_logging: None, stream: io.StringIO, log_format: Any, is_json: bool
    ) -> None:
        configure_logging("INFO", secrets=[TOKEN], stream=stream, log_format=log_format)
        logging.getLogger("carebot").info("ready")
        (line,) = log_lines(stream)
        assert line.startswith("{") is is_json

    def test_the_setting_is_read_and_checked(self) -> None:
        settings = load_settings(telegram_token=TOKEN, log_format="json")
        assert settings.log_format == "json"
        with pytest.raises(SettingsError, match="CAREBOT_LOG_FORMAT: expected one of auto"):
            load_settings(telegram_token=TOKEN, log_format="xml")

    def test_debug_from_telegram_and_http_clients_stays_quiet(self, stream: io.StringIO) -> None:
        configure_logging("DEBUG", secrets=[TOKEN], stream=stream)
        logging.getLogger("telegram.ext.Updater").debug("update {'text': 'hello'}")
        logging.getLogger("httpx").info("HTTP Request: POST .../getUpdates")
        logging.getLogger("carebot").debug("planner ran")
        assert [record["message"] for record in json_records(stream)] == ["planner ran"]


async def test_the_running_bot_logs_one_json_line_per_update_without_its_text(
    harness: Harness, restore_logging: None
) -> None:
    stream = io.StringIO()
    configure_logging("INFO", secrets=[TOKEN], stream=stream)
    api = harness.api
    ada = api.add_user(1301, "Ada", language_code="en")
    update = await api.send_text(ada, "my number is +8613900001234, please call")
    await api.wait_for_sent(ada.id, 1)
    for _ in range(200):
        if f'"update_id": {update["update_id"]}' in stream.getvalue():
            break
        await asyncio.sleep(0.01)
    lines = [json.loads(line) for line in log_lines(stream)]
    (handled,) = [line for line in lines if line.get("update_id") == update["update_id"]]
    assert handled["level"] == "INFO"
    assert {"handler", "duration_ms", "result"} <= set(handled)
    assert isinstance(handled["duration_ms"], float | int)
    assert "+8613900001234" not in stream.getvalue()
    assert "please call" not in stream.getvalue()


PRIVATE = "a refund please, call me on 13900001234, secret words xyzzy"
"""What a customer writes; the faults below are set off by the word "refund" in it."""


async def test_a_database_error_is_logged_without_the_values_it_quotes(
    database_url: str, stream: io.StringIO
) -> None:
    """SQLAlchemy's parameters are hidden; PostgreSQL's own message and detail ("Failing row
    contains (...)") give way to its SQLSTATE and the constraint's name."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text("CREATE TABLE said (words TEXT CHECK (words NOT LIKE '%refund%'))")
            )
        with pytest.raises(IntegrityError) as caught:
            async with engine.begin() as connection:
                await connection.execute(
                    text("INSERT INTO said VALUES (:words)"), {"words": PRIVATE}
                )
    finally:
        async with engine.begin() as connection:
            await connection.execute(text("DROP TABLE IF EXISTS said"))
        await engine.dispose()
    logger = logging.getLogger("carebot.errors")
    try:
        raise caught.value
    except IntegrityError as error:
        logger.exception("storing failed: %s", error)
    (record,) = json_records(stream)
    assert "xyzzy" not in stream.getvalue() and "13900001234" not in stream.getvalue()
    assert "INSERT INTO said" in record["message"]  # still says what failed
    assert "IntegrityError" in record["exception"]
    if database_url.startswith("postgresql"):
        assert "sqlstate=23514 constraint_name=said_words_check" in record["exception"]


async def _break_questions(harness: Harness, on: bool) -> None:
    """A real fault of the database while a customer's question is stored: a constraint
    (PostgreSQL, whose error quotes the failing row) or a trigger (SQLite)."""
    async with harness.sessionmaker.begin() as session:
        postgres = session.get_bind().dialect.name == "postgresql"
        if postgres and on:
            statement = (
                "ALTER TABLE kb_questions ADD CONSTRAINT no_refunds "
                "CHECK (question NOT LIKE '%refund%') NOT VALID"
            )
        elif postgres:
            statement = "ALTER TABLE kb_questions DROP CONSTRAINT IF EXISTS no_refunds"
        elif on:
            statement = (
                "CREATE TRIGGER no_refunds BEFORE INSERT ON kb_questions "
                "WHEN NEW.question LIKE '%refund%' BEGIN SELECT RAISE(ABORT, 'no refunds'); END"
            )
        else:
            statement = "DROP TRIGGER IF EXISTS no_refunds"
        await session.execute(text(statement))


async def test_at_debug_nothing_a_customer_sent_reaches_the_log(
    harness: Harness, restore_logging: None
) -> None:
    """The running bot at DEBUG, through a database error while handling a customer's message
    and an update it cannot parse: the log names updates and errors, never what the customer
    wrote, their phone number, their name, nor the bot token."""
    stream = io.StringIO()
    configure_logging("DEBUG", secrets=[TOKEN], stream=stream)
    api = harness.api
    ada = api.add_user(1302, "Adafirstname", language_code="en", username="adausername")
    await api.send_text(ada, "/start")
    await api.wait_for_sent(ada.id, 2)  # the greeting and the consent question
    await _break_questions(harness, on=True)
    try:
        failing = await api.send_text(ada, f"where is my parcel? {PRIVATE}")
        parked = f"update {failing['update_id']} (inbox #"
        await api.wait_for(
            lambda: parked in stream.getvalue() and "parked after" in stream.getvalue(),
            timeout=15,
            description="the failing update parked",
        )
    finally:
        await _break_questions(harness, on=False)
    unparsable = await api.send_raw_update(
        {
            "message": {
                "message_id": 77,
                "date": "tomorrow",
                "chat": {"id": ada.id, "type": "private", "first_name": "Adafirstname"},
                "from": {"id": ada.id, "is_bot": False, "first_name": "Adafirstname"},
                "text": f"and again: {PRIVATE} +86 139 0000 1234",
            }
        }
    )
    answered = len(api.sent(ada.id))
    # The bot goes on. The unparsable update came before /profile, so it was stored, and
    # its line logged, before /profile was even handled.
    await api.send_text(ada, "/profile")
    await api.wait_for_sent(ada.id, answered + 1)

    logged = stream.getvalue()
    records = json_records(stream)
    errors = [r for r in records if r["logger"] == "carebot.errors"]
    assert errors and all(r["message"].endswith("IntegrityError") for r in errors)
    assert all("kb_questions" in r["exception"] for r in errors)  # the traceback is there
    for private in ("xyzzy", "secret words", "a refund please", "where is my parcel", "and again"):
        assert private not in logged, private
    for phone in ("13900001234", "139 0000 1234"):
        assert phone not in logged, phone
    for who in ("Adafirstname", "adausername"):
        assert who not in logged, who
    assert TOKEN not in logged
    (line,) = [r for r in records if f"update {unparsable['update_id']} " in r["message"]]
    assert line["level"] == "WARNING" and "cannot be read" in line["message"]
