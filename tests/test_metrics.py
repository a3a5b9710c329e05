"""``/metrics`` after a scripted session: updates counted and timed by handler, one log line
per update (ids, never texts), outbox depth and open tickets as in the database, SLA breaches,
sends by result and 429s."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from bot.web import build_web_app, metrics_of
from storage import outbox as outbox_queries
from tests.auxil.harness import Harness
from tests.auxil.outbox import queue_text
from tests.auxil.tickets import lanes_idle, open_ticket_for, ticket, topic_of

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
SECRET_TEXT = "my phone is +8613800000000"


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """The web app on a free local port; yields its root URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def scrape(root: str) -> Samples:
    async with aiohttp.ClientSession() as client, client.get(f"{root}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def update_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "carebot.updates"]


async def test_metrics_follow_a_scripted_session(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    api = harness.api
    assert harness.dispatcher is not None
    metrics_of(harness.application).watch_dispatcher(harness.dispatcher.counters)
    caplog.set_level(logging.INFO, logger="carebot.updates")
    async with serving(build_web_app(harness.application)) as root:
        before = await scrape(root)
        assert value(before, "carebot_updates_handled_total", handler="onboarding.on_start") == 0

        # A customer registers and writes something private.
        mia = api.add_user(3001, "Mia", language_code="en")
        await api.send_text(mia, "/start")
        await api.wait_for_sent(mia.id, 1)
        await api.send_text(mia, SECRET_TEXT)
        await api.wait_for(
            lambda: len(update_lines(caplog)) == 2, timeout=5, description="two updates handled"
        )
        replies = len(api.sent(mia.id))

        # A message from the outbox meets Telegram's flood control once, then goes out.
        customer = await harness.customer(mia.id)
        assert customer is not None
        api.fail("sendMessage", error_code=429, retry_after=1, chat_id=mia)
        async with harness.sessionmaker.begin() as session:
            await queue_text(
                session,
                "notice:mia",
                mia.id,
                customer_id=customer.id,
                now=harness.clock.now(),
                transactional=True,  # no consent asked: Mia has not answered yet
            )
        harness.dispatcher.wake()
        await api.wait_for_sent(mia.id, replies + 1, timeout=10)

        # A VIP's ticket, left unanswered past its first-reply deadline.
        ned = api.add_user(3002, "Ned", language_code="en")
        opened = await open_ticket_for(harness, ned, tier="vip")
        await topic_of(harness, opened.number)
        await lanes_idle(harness, opened.number)
        harness.clock.advance(timedelta(hours=2))
        stored = await ticket(harness, opened.number)

        after = await scrape(root)

    # Updates: both /start commands by their handler, timed; the free text by its handler.
    start = {"handler": "onboarding.on_start", "result": "handled"}
    assert value(after, "carebot_updates_handled_total", **start) == 2
    assert value(after, "carebot_handler_seconds_count", handler="onboarding.on_start") == 2
    handled = sum(
        sample
        for (name, labels), sample in after.items()
        if name == "carebot_updates_handled_total"
    )
    assert handled == 3

    # The database's figures, read at scrape time.
    async with harness.sessionmaker() as session:
        stats = await outbox_queries.stats(session)
    for state in outbox_queries.State:
        in_db = sum(count for (s, _), count in stats.counts.items() if s == state.value)
        assert value(after, "carebot_outbox_rows", state=state.value) == in_db, state
    assert value(after, "carebot_tickets_open", status=stored.status) == 1
    now = harness.clock.now()
    assert stored.first_response_at is None and stored.first_response_due < now
    assert value(after, "carebot_sla_breaches", deadline="first_response") == 1
    expected_resolution = 1 if stored.resolution_due < now else 0
    assert value(after, "carebot_sla_breaches", deadline="resolution") == expected_resolution

    # Sends by result, and the one 429.
    sent_rows = sum(count for (s, _), count in stats.counts.items() if s == "sent")
    assert value(after, "carebot_outbox_sends_total", result="sent") == sent_rows >= 2
    assert value(after, "carebot_outbox_sends_total", result="rate_limited") == 1
    assert value(after, "carebot_telegram_429_total") == 1

    # One log line per update, with ids and the handler, never what was written.
    lines = update_lines(caplog)
    assert len(lines) == 3
    assert [getattr(r, "handler", None) for r in lines].count("onboarding.on_start") == 2
    for record in lines:
        assert isinstance(getattr(record, "update_id", None), int)
        assert getattr(record, "result", None) == "handled"
        assert getattr(record, "duration_ms", -1) >= 0
    everything = "\n".join(record.getMessage() for record in caplog.records)
    assert SECRET_TEXT not in everything
    assert harness.settings.token not in everything
