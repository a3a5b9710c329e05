"""The web server beside a polling bot (``CAREBOT_SERVE_WEB``), and ``/readyz``: ready with the
database reachable, its schema current and the dispatcher running; not ready (503) when the
database goes away, and ready again when it is back."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from sqlalchemy.engine import make_url
from telegram.ext import ApplicationBuilder

from bot.context import CONTEXT_TYPES
from bot.kernel.clock import ManualClock
from bot.kernel.config import load_config
from bot.kernel.texts import Texts
from bot.runner import serve
from bot.sandbox.api import LocalBotApi
from bot.web import Readiness, build_web_app
from storage.migrate import HEAD_REVISION
from tests.auxil import databases
from tests.auxil.harness import START, TOKEN, harness_settings
from tests.auxil.processes import free_port
from tests.test_metrics import serving


async def _get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as client, client.get(url) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


def _web_app(database_url: str, *, dispatcher_alive: bool = True) -> Any:
    """The web app of a bot that is not running (only /readyz is looked at)."""
    application = (
        ApplicationBuilder().token(TOKEN).updater(None).context_types(CONTEXT_TYPES).build()
    )
    readiness = Readiness(database_url, dispatcher_alive=lambda: dispatcher_alive)
    return build_web_app(application, readiness=readiness)


@pytest.fixture
async def polling_bot(local_api: LocalBotApi, database_url: str) -> AsyncIterator[str]:
    """``carebot run`` in polling mode with the web server on; yields its root URL."""
    port = free_port()
    settings = harness_settings(
        local_api, database_url, serve_web=True, listen_host="127.0.0.1", listen_port=port
    )
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve(
            settings,
            rules=load_config(settings.config_dir),
            texts=Texts.load(),
            clock=ManualClock(START),
            stop=stop,
        )
    )
    root = f"http://127.0.0.1:{port}"
    for _ in range(500):
        if task.done():
            task.result()  # surface a start-up failure
        try:
            status, _ = await _get(f"{root}/healthz")
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.02)
            continue
        if status == 200:
            break
    yield root
    stop.set()
    await asyncio.wait_for(task, timeout=15)


async def test_a_polling_bot_serves_health_readiness_and_metrics(polling_bot: str) -> None:
    status, body = await _get(f"{polling_bot}/readyz")
    assert status == 200, body
    assert body == {
        "status": "ready",
        "checks": {"database": "ok", "migrations": "ok", "dispatcher": "ok"},
    }
    status, text = await _get(f"{polling_bot}/metrics")
    assert status == 200
    assert "carebot_outbox_rows" in text and "carebot_outbox_sends_total" in text
    status, _ = await _get(f"{polling_bot}/dashboard/")
    assert status == 404  # no CAREBOT_DASHBOARD_URL: no dashboard


async def test_readiness_fails_while_the_sqlite_file_is_away_and_recovers(
    sqlite_template: Path, tmp_path: Path
) -> None:
    database_url = databases.sqlite_copy(sqlite_template, tmp_path)
    path = Path(str(make_url(database_url).database))
    away = tmp_path / "moved-away.db"
    async with serving(_web_app(database_url)) as root:
        assert (await _get(f"{root}/readyz"))[0] == 200
        os.replace(path, away)
        status, body = await _get(f"{root}/readyz")
        assert status == 503
        assert body["checks"]["database"].startswith("unreachable")
        assert path.name not in os.listdir(path.parent)  # the probe did not create an empty one
        os.replace(away, path)
        assert (await _get(f"{root}/readyz"))[0] == 200


async def _admin(statement: str) -> None:
    dsn = make_url(databases.POSTGRES_ADMIN_URL).set(drivername="postgresql")
    connection = await asyncpg.connect(dsn.render_as_string(hide_password=False), timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def test_readiness_fails_while_postgres_is_away_and_recovers() -> None:
    """A throwaway database of our own, renamed away and back (the server stays up)."""
    url = databases.create_empty_postgres_database()
    name = str(make_url(url).database)
    head = HEAD_REVISION
    connection = await asyncpg.connect(
        make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:  # only the revision matters to /readyz
        await connection.execute(
            "CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY);"
            f"INSERT INTO alembic_version VALUES ('{head}')"
        )
    finally:
        await connection.close()
    try:
        async with serving(_web_app(url)) as root:
            assert (await _get(f"{root}/readyz"))[0] == 200
            await _admin(f'ALTER DATABASE "{name}" RENAME TO "{name}_away"')
            status, body = await _get(f"{root}/readyz")
            assert status == 503
            assert body["checks"]["database"].startswith("unreachable")
            await _admin(f'ALTER DATABASE "{name}_away" RENAME TO "{name}"')
            assert (await _get(f"{root}/readyz"))[0] == 200
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}_away" WITH (FORCE)')
        databases.drop_postgres_database(url)


async def test_readiness_names_an_old_schema_and_a_stopped_dispatcher(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        connection.execute("INSERT INTO alembic_version VALUES ('0008')")
    url = f"sqlite+aiosqlite:///{path}"
    async with serving(_web_app(url, dispatcher_alive=False)) as root:
        status, body = await _get(f"{root}/readyz")
    assert status == 503
    assert body["checks"] == {
        "database": "ok",
        "migrations": f"at 0008, expected {HEAD_REVISION}",
        "dispatcher": "not running",
    }
