"""Helpers for tests that talk to ``bot.sandbox.api.LocalBotApi``: a PTB ``Bot`` pointed at it,
and a tiny webhook receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from telegram import Bot

from bot.sandbox.api import LocalBotApi
from bot.sandbox.protocol import SECRET_HEADER


@asynccontextmanager
async def ptb_bot(api: LocalBotApi) -> AsyncIterator[Bot]:
    """An initialized ``telegram.Bot`` using the local server (over real HTTP)."""
    bot = Bot(api.token, base_url=api.base_url, base_file_url=api.base_file_url)
    async with bot:
        yield bot


@dataclass
class WebhookReceiver:
    """Answers webhook POSTs with the queued statuses (then 200) and records what came; while
    ``release`` is unset, each POST is recorded but not answered yet."""

    statuses: list[int] = field(default_factory=list)
    release: asyncio.Event | None = None
    received: list[tuple[str | None, dict[str, Any]]] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                await self._changed.wait()
                self._changed.clear()

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append((request.headers.get(SECRET_HEADER), await request.json()))
        self._changed.set()
        if self.release is not None:
            await self.release.wait()
        status = self.statuses.pop(0) if self.statuses else 200
        return web.json_response({"ok": status == 200}, status=status)


@asynccontextmanager
async def webhook_receiver(statuses: list[int] | None = None) -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver(statuses=list(statuses or []))
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()
