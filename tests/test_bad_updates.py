"""What arrives that is not a good update. A webhook body that is no update object is refused
with 400, one log line and nothing stored. An update python-telegram-bot cannot parse (or whose
fields cannot be stored) is parked at once, in polling and webhook mode: one WARNING naming its
``update_id`` and nothing of it, no retries, its conversation goes on, the offset moves past."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from bot.context import inbox_of
from bot.sandbox.api import LocalBotApi
from bot.sandbox.records import FakeUser
from bot.settings import Settings
from bot.web import SECRET_HEADER
from storage.engine import create_engine, create_sessionmaker
from storage.models import InboxUpdate
from tests.auxil.harness import WEBHOOK_SECRET, Harness
from tests.test_inbox import _cli

PRIVATE_WORDS = "my phone is 13900001234 and my secret words"


def _message(user: FakeUser, **changes: Any) -> dict[str, Any]:
    """A private text message from ``user`` as Telegram sends it, with ``changes``."""
    return {
        "message_id": 900,
        "date": 1_700_000_000,
        "chat": {"id": user.id, "type": "private", "first_name": user.first_name},
        "from": {"id": user.id, "is_bot": False, "first_name": user.first_name},
        "text": PRIVATE_WORDS,
        **changes,
    }


def _unreadable(user: FakeUser) -> list[dict[str, Any]]:
    """Updates PTB cannot parse (a chat that is a string, a date that is not a number) and one
    it parses but whose text cannot be stored (a number)."""
    return [
        {"message": _message(user, chat="private chat")},
        {"message": _message(user, date="tomorrow")},
        {"message": _message(user, text=13900001234)},
    ]


async def _rows(sessionmaker: Any) -> list[InboxUpdate]:
    async with sessionmaker() as session:
        result = await session.execute(select(InboxUpdate).order_by(InboxUpdate.id))
        return list(result.scalars())


def _about(caplog: pytest.LogCaptureFixture, update_id: int) -> list[logging.LogRecord]:
    return [record for record in caplog.records if str(update_id) in record.getMessage()]


async def _parked_once(
    caplog: pytest.LogCaptureFixture, sessionmaker: Any, update_ids: list[int], errors: list[str]
) -> None:
    """Each update parked unread with one attempt and its error's type, logged in one WARNING
    line naming it; nothing logged or stored holds what it says."""
    rows = {row.update_id: row for row in await _rows(sessionmaker)}
    for update_id, error in zip(update_ids, errors, strict=True):
        row = rows[update_id]
        assert (row.state, row.kind, row.attempts, row.error, row.text) == (
            "failed",
            "invalid",
            1,
            error,
            None,
        )
        (line,) = _about(caplog, update_id)
        assert line.levelno == logging.WARNING
        assert "cannot be read" in line.getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "secret words" not in caplog.text
    assert "13900001234" not in caplog.text


async def test_an_unparsable_update_is_parked_at_once_and_polling_goes_on(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    api = harness.api
    ada = api.add_user(5101, "Ada", language_code="en")
    await api.send_text(ada, "/start")
    answered = len(await api.wait_for_sent(ada.id, 2))  # the greeting and the consent question
    bad = [(await api.send_raw_update(update))["update_id"] for update in _unreadable(ada)]
    await api.send_text(ada, "where is my parcel")  # the same conversation goes on
    await api.wait_for_sent(ada.id, answered + 1)
    await api.wait_for(lambda: not api.pending_updates, description="every update confirmed")
    # Instead of waiting for the periodic sweeps: a sweep now finds nothing to try again.
    assert await inbox_of(harness.application).sweep(everything=True) == 0
    await _parked_once(
        caplog, harness.sessionmaker, bad, ["TypeError", "TypeError", "UnreadableUpdate"]
    )
    assert [row.state for row in await _rows(harness.sessionmaker)].count("pending") == 0

    listed = await _cli(harness, "failed")
    assert listed.returncode == 0, listed.stderr
    assert str(bad[0]) in listed.stdout and "TypeError" in listed.stdout
    assert "secret words" not in listed.stdout

    # Put back by an operator, it is read again and parked again at once, not handled.
    caplog.clear()
    retried = await _cli(harness, "retry", "--all-failed")
    assert "3 updates back to pending" in retried.stdout, retried.stderr
    await api.wait_for(
        lambda: len([r for r in caplog.records if "cannot be read" in r.getMessage()]) == 3,
        timeout=5,
        description="the retried updates parked again",
    )
    rows = {row.update_id: row for row in await _rows(harness.sessionmaker)}
    assert [(rows[i].state, rows[i].attempts) for i in bad] == [("failed", 1)] * 3
    assert len(api.sent(ada.id)) == answered + 1
    assert "secret words" not in caplog.text


async def test_forget_clears_a_parked_unparsable_update(harness: Harness) -> None:
    """What is kept of it for a retry is the customer's: ``/forget`` finds it by its sender."""
    api = harness.api
    ida = api.add_user(5102, "Ida", language_code="en")
    await api.send_text(ida, "/start")
    before = len(await api.wait_for_sent(ida.id, 2))  # the greeting and the consent question
    await api.send_raw_update(_unreadable(ida)[0])
    await api.wait_for(lambda: not api.pending_updates, description="the update confirmed")
    await api.send_text(ida, "/forget")
    confirm = (await api.wait_for_sent(ida.id, before + 1))[-1]
    await api.press_button(ida, confirm, "forget:yes")
    await api.wait_for_sent(ida.id, before + 2)  # answered once the erasure committed
    (parked,) = [row for row in await _rows(harness.sessionmaker) if row.state == "failed"]
    assert (parked.payload, parked.sender_user_id, parked.chat_id) == (None, None, None)


NOT_UPDATES = [
    ("[]", "an array"),
    ('"x"', "a string"),
    ("null", "null"),
    ("42", "a number"),
    ("{}", "update_id"),
    ('{"update_id": "7"}', "update_id"),
    ('{"update_id": true, "message": {}}', "update_id"),
    ('{"update_id": 1.5}', "update_id"),
    ('{"update_id": -1}', "update_id"),
    ('{"update_id": 99999999999999999999999}', "update_id"),
    ("[" * 100_000 + "]" * 100_000, "nests too deeply"),
    ('{"update_id": 7, "message": ', "not JSON"),
    (b"\xff\xfe not utf-8", "not JSON"),
]


async def test_a_webhook_body_that_is_not_an_update_is_refused_with_400(
    webhook_bot: tuple[LocalBotApi, Settings], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    _, settings = webhook_bot
    async with aiohttp.ClientSession() as client:
        for body, reason in NOT_UPDATES:
            caplog.clear()
            async with client.post(
                str(settings.webhook_url),
                data=body,
                headers={SECRET_HEADER: WEBHOOK_SECRET, "Content-Type": "application/json"},
            ) as response:
                assert response.status == 400, (body[:40], await response.text())
                answer = await response.json()
            assert answer["ok"] is False and reason in answer["error"], answer
            (line,) = [r for r in caplog.records if r.name == "bot.web"]
            assert line.levelno == logging.WARNING
            assert reason in line.getMessage()
            assert len(line.getMessage()) < 200  # nothing of the body
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            stored = await session.execute(select(func.count()).select_from(InboxUpdate))
            assert stored.scalar() == 0
    finally:
        await engine.dispose()


async def test_an_unparsable_update_is_parked_at_once_in_webhook_mode(
    webhook_bot: tuple[LocalBotApi, Settings], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    api, settings = webhook_bot
    eve = api.add_user(5103, "Eve", language_code="en")
    await api.send_text(eve, "/start")
    answered = len(await api.wait_for_sent(eve.id, 2))  # the greeting and the consent question
    bad = [(await api.send_raw_update(update))["update_id"] for update in _unreadable(eve)]
    await api.send_text(eve, "where is my parcel")
    await api.wait_for_sent(eve.id, answered + 1)
    await api.wait_for(lambda: not api.pending_updates, description="every update accepted")
    # Accepted once each (200: Telegram must not send them again).
    for update_id in bad:
        attempts = [a for a in api.webhook_attempts if a.update_id == update_id]
        assert [a.status for a in attempts] == [200]
    engine = create_engine(settings.database_url)
    try:
        sessionmaker = create_sessionmaker(engine)
        await _parked_once(
            caplog, sessionmaker, bad, ["TypeError", "TypeError", "UnreadableUpdate"]
        )
        # Nothing pending: the process's sweeps have nothing to try again.
        assert [row.state for row in await _rows(sessionmaker)].count("pending") == 0
    finally:
        await engine.dispose()
