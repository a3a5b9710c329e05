"""`serve()` in webhook mode: the secret is checked, updates are handled, /healthz answers."""

from __future__ import annotations

import aiohttp
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from bot.kernel.config import load_config
from bot.kernel.texts import Texts
from bot.runner import StartupError, periodic_jobs, serve
from bot.sandbox.api import LocalBotApi
from bot.settings import EXAMPLE_CONFIG_DIR, Settings
from bot.web import SECRET_HEADER
from handlers.tickets.lifecycle import TicketDesk
from storage.engine import create_engine
from storage.models import InboxUpdate
from tests.auxil.harness import WEBHOOK_SECRET, harness_settings
from tests.auxil.processes import free_port


async def test_wrong_secret_is_refused_right_secret_is_handled(
    webhook_bot: tuple[LocalBotApi, Settings],
) -> None:
    api, settings = webhook_bot
    url = str(settings.webhook_url)
    user = api.add_user(2001, "Wendy", language_code="en")
    forged = {
        "update_id": 999_001,
        "message": {
            "message_id": 1,
            "date": 1_700_000_000,
            "chat": {"id": user.id, "type": "private", "first_name": "Wendy"},
            "from": {"id": user.id, "is_bot": False, "first_name": "Wendy"},
            "text": "/start",
            "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
        },
    }
    async with aiohttp.ClientSession() as client:
        for headers in ({}, {SECRET_HEADER: "wrong"}):
            async with client.post(url, json=forged, headers=headers) as response:
                assert response.status == 403
        async with client.get(f"http://127.0.0.1:{settings.listen_port}/healthz") as response:
            assert response.status == 200
            assert (await response.json()) == {"status": "ok"}
    # The local server delivers a real update to the webhook with the right secret. Had the
    # forged /start been taken, it would have been handled first: this one would be a
    # "welcome back", and the inbox would hold it.
    await api.send_text(user, "/start")
    sent = await api.wait_for_sent(user.id, 2)
    assert sent[0].text == Texts.load().render("en", "welcome", name="Wendy")
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            stored = await connection.execute(select(InboxUpdate.update_id))
            assert forged["update_id"] not in list(stored.scalars())
    finally:
        await engine.dispose()
    assert len(api.sent(user.id)) == 2
    texts = Texts.load()
    zh_menu = api.my_commands("zh")
    assert zh_menu[0]["description"] == texts.render("zh", "command_start")
    assert [c["command"] for c in api.my_commands()][:2] == ["start", "profile"]
    webhook_call = next(call for call in api.calls if call.method == "setWebhook")
    assert webhook_call.params["secret_token"] == WEBHOOK_SECRET
    assert webhook_call.params["url"] == url


def test_the_bot_process_schedules_each_periodic_job_once() -> None:
    rules = load_config(EXAMPLE_CONFIG_DIR)
    desk = TicketDesk.from_config(rules, Texts.load(), -100)
    jobs = periodic_jobs(async_sessionmaker(), rules, desk)
    ids = [job.id for job in jobs]
    assert len(ids) == len(set(ids))
    assert set(ids) == {
        "outbox.prune",
        "outbox.report",
        "care.plan",
        "points.settle",
        "points.expire",
        "staff_group.refresh",
        "tickets.sla",
        "tiers.recompute",
        "recommend.compute",
        "surveys.plan",
    }


async def test_a_refused_token_stops_start_up_with_one_line_naming_the_setting(
    local_api: LocalBotApi, database_url: str
) -> None:
    settings = harness_settings(local_api, database_url).model_copy(
        update={"telegram_token": SecretStr("999999:NOT-THIS-BOTS-TOKEN")}
    )
    with pytest.raises(StartupError) as error:
        await serve(settings, rules=load_config(settings.config_dir), texts=Texts.load())
    assert str(error.value) == (
        "the Bot API refused the bot token (CAREBOT_TELEGRAM_TOKEN): check it with @BotFather"
    )


async def test_an_unreachable_bot_api_stops_start_up_with_one_line(
    local_api: LocalBotApi, database_url: str
) -> None:
    root = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    settings = harness_settings(local_api, database_url).model_copy(
        update={"telegram_api_url": root}
    )
    with pytest.raises(StartupError) as error:
        await serve(settings, rules=load_config(settings.config_dir), texts=Texts.load())
    message = str(error.value)
    assert message.startswith(f"cannot reach the Bot API at {root} (CAREBOT_TELEGRAM_API_URL): ")
    assert settings.token not in message
