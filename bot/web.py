"""The aiohttp server of webhook mode: the Telegram webhook (secret checked) and ``/healthz``."""

from __future__ import annotations

import hmac
import json
import logging

from aiohttp import web
from telegram import Update
from telegram.ext import Application

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def build_web_app(application: Application, *, webhook_path: str, secret: str) -> web.Application:
    """Routes: ``POST webhook_path`` for Telegram, ``GET /healthz`` for liveness probes."""

    async def webhook(request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), secret.encode()):
            logger.warning("webhook call refused: wrong or missing secret token")
            return web.json_response({"ok": False, "error": "forbidden"}, status=403)
        try:
            data = await request.json()
            update = Update.de_json(data, application.bot)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            return web.json_response({"ok": False, "error": "malformed update"}, status=400)
        # Handled before answering: the inbound message is committed by the time Telegram
        # hears "200", so a crash before that makes Telegram redeliver instead of losing it.
        await application.process_update(update)
        return web.json_response({"ok": True})

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post(webhook_path, webhook)
    app.router.add_get("/healthz", healthz)
    return app
