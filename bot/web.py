"""The aiohttp server: the Telegram webhook (secret checked), ``/healthz`` (alive),
``/readyz`` (database reachable, migrations current, dispatcher running), ``/metrics``
(Prometheus) and the staff dashboard under ``/dashboard``.

Webhook mode always serves it; polling mode serves it when ``CAREBOT_SERVE_WEB`` or
``CAREBOT_DASHBOARD_URL`` is set (``bot.runner``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from bot.context import CareApplication, inbox_of
from bot.inbox import update_id_of
from bot.metrics import CONTENT_TYPE, BotMetrics, instrument_handlers
from bot.settings import Settings
from dashboard.auth import LoginLinks
from dashboard.core import STATIC_DIR, Dashboard
from dashboard.pages.routes import mount
from handlers.staff.telegram import dashboard_staff_check
from storage.engine import create_engine
from storage.migrate import HEAD_REVISION, current_revision

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
READY_TIMEOUT_SECONDS = 5.0
DISPATCHER_TASK = "dispatcher"  # the name scheduler.wiring.Background gives its task
FAVICON = STATIC_DIR / "favicon.svg"


def dashboard_secret(token: str) -> bytes:
    """The key signing dashboard sessions: derived from the bot token, so every replica agrees
    and a new token signs everybody out."""
    return hashlib.sha256(b"carebot-dashboard:" + token.encode()).digest()


def dispatcher_task_running() -> bool:
    """Whether this process's outbox dispatcher task is alive (``Background`` names it)."""
    return any(
        task.get_name() == DISPATCHER_TASK and not task.done() for task in asyncio.all_tasks()
    )


class Readiness:
    """``/readyz``: a fresh connection each probe (a pooled one can outlive the database)."""

    def __init__(
        self, database_url: str, *, dispatcher_alive: Callable[[], bool] = dispatcher_task_running
    ) -> None:
        self._url = make_url(database_url)
        self._engine = create_engine(database_url, poolclass=NullPool)
        self._head = HEAD_REVISION
        self._dispatcher_alive = dispatcher_alive

    def _sqlite_file_missing(self) -> bool:
        """SQLite would create a missing file on connect: a moved or deleted database."""
        database = self._url.database
        return (
            self._url.get_backend_name() == "sqlite"
            and database not in (None, "", ":memory:")
            and not Path(str(database)).exists()
        )

    async def check(self) -> dict[str, str]:
        """Each check's verdict: "ok" or what is wrong (never a URL or a secret)."""
        checks = {"database": "ok", "migrations": "ok", "dispatcher": "ok"}
        try:
            if self._sqlite_file_missing():
                raise FileNotFoundError("database file missing")
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                current = await current_revision(self._engine)
        except Exception as error:  # any failure to reach the database means "not ready"
            checks["database"] = f"unreachable ({type(error).__name__})"
            checks["migrations"] = "unknown"
        else:
            if current != self._head:
                checks["migrations"] = f"at {current or 'none'}, expected {self._head}"
        if not self._dispatcher_alive():
            checks["dispatcher"] = "not running"
        return checks

    async def close(self) -> None:
        await self._engine.dispose()


def wire_operations(application: CareApplication, settings: Settings) -> BotMetrics:
    """Per-update metrics and logs for every registered handler, and (with a dashboard URL)
    the login links ``/dashboard`` answers with. Call after the handlers are added."""
    metrics = metrics_of(application)
    instrument_handlers(application)
    inbox_of(application).observer = metrics.observe_update
    if settings.dashboard_url is not None:
        application.bot_data.login_links = LoginLinks(settings.dashboard_url)
    return metrics


def metrics_of(application: CareApplication) -> BotMetrics:
    """The process's metrics (made with the Application: ``bot.context.AppData``)."""
    return application.bot_data.metrics


def dashboard_for(application: CareApplication, settings: Settings) -> Dashboard:
    """The dashboard on the bot's database, clock and shop time zone."""
    deps = application.bot_data.deps
    return Dashboard(
        sessionmaker=deps.reports,
        secret=dashboard_secret(settings.token),
        clock=deps.clock,
        timezone=deps.rules.general.customers.default_timezone,
        secure_cookies=(settings.dashboard_url or "").startswith("https://"),
        staff_check=dashboard_staff_check(application.bot, application.bot_data),
        rules=deps.rules,
    )


async def _update_in(request: web.Request) -> tuple[dict[str, Any] | None, str]:
    """A webhook body as an update object, or None and what is wrong with it: not JSON,
    nested too deeply to read, not an object, or without a usable ``update_id``."""
    try:
        data = await request.json()
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
        return None, "the body is not JSON, or nests too deeply"
    if not isinstance(data, dict):
        return None, f"the body is {_json_kind(data)}"
    if update_id_of(data) is None:
        return None, "no update_id that is an integer from 0 to 2**63-1"
    return data, ""


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number"}
    return next((name for kind, name in names.items() if isinstance(value, kind)), "a number")


RouteHandler = Callable[[web.Request], Awaitable[web.Response]]


def _webhook_handler(application: CareApplication, secret: str | None) -> RouteHandler:
    """``POST`` of the webhook: Telegram's secret token checked, the body checked to be an
    update, then stored in the inbox (handled from there)."""

    async def webhook(request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), (secret or "").encode()):
            logger.warning("webhook call refused: wrong or missing secret token")
            return web.json_response({"ok": False, "error": "forbidden"}, status=403)
        data, refused = await _update_in(request)
        if data is None:
            # One line, nothing of the body: it may be a customer's words.
            logger.warning("webhook call refused: not an update object (%s)", refused)
            return web.json_response(
                {"ok": False, "error": f"not an update object: {refused}"}, status=400
            )
        # Committed to the inbox before Telegram hears "200": a crash before that makes
        # Telegram deliver it again (recognised by its update_id). It is handled from there.
        await inbox_of(application).receive([data])
        return web.json_response({"ok": True})

    return webhook


def _readyz_handler(readiness: Readiness) -> RouteHandler:
    """``GET /readyz``: 200 with every check "ok", else 503; the checks' verdicts either way."""

    async def readyz(_request: web.Request) -> web.Response:
        checks = await readiness.check()
        ready = all(verdict == "ok" for verdict in checks.values())
        body: dict[str, Any] = {"status": "ready" if ready else "not ready", "checks": checks}
        return web.json_response(body, status=200 if ready else 503)

    return readyz


def build_web_app(
    application: CareApplication,
    *,
    webhook_path: str | None = None,
    secret: str | None = None,
    readiness: Readiness | None = None,
    dashboard: Dashboard | None = None,
) -> web.Application:
    """``POST webhook_path`` (when given, with ``secret``), ``GET /healthz``, ``GET /metrics``,
    ``GET /readyz`` (with ``readiness``) and the dashboard (with ``dashboard``)."""
    metrics = metrics_of(application)

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def prometheus(_request: web.Request) -> web.Response:
        try:
            deps = application.bot_data.deps
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                await metrics.refresh(deps.reports, deps.clock.now())
        except Exception as error:  # the process's own figures are still worth serving
            logger.warning("metrics: database figures unavailable (%s)", type(error).__name__)
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    async def favicon(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(FAVICON, headers={"Content-Type": "image/svg+xml"})

    app = web.Application()
    # Where browsers look for an icon on any page here (the dashboard's pages link it too).
    app.router.add_get("/favicon.ico", favicon)
    if webhook_path is not None:
        app.router.add_post(webhook_path, _webhook_handler(application, secret))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", prometheus)
    if readiness is not None:
        app.router.add_get("/readyz", _readyz_handler(readiness))

        async def close_readiness(_app: web.Application) -> None:
            await readiness.close()

        app.on_cleanup.append(close_readiness)
    if dashboard is not None:
        mount(app, dashboard)
    return app


async def start_web_server(
    application: CareApplication, settings: Settings, *, webhook: bool
) -> web.AppRunner:
    """Serve the web app on ``listen_host:listen_port`` (with the webhook route when
    ``webhook``, the dashboard when ``dashboard_url`` is set); ``cleanup()`` the runner."""
    web_app = build_web_app(
        application,
        webhook_path=settings.webhook_path if webhook else None,
        secret=settings.effective_webhook_secret if webhook else None,
        readiness=Readiness(settings.database_url),
        dashboard=dashboard_for(application, settings) if settings.dashboard_url else None,
    )
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.listen_host, settings.listen_port).start()
    logger.info("web server listening on %s:%s", settings.listen_host, settings.listen_port)
    return runner
