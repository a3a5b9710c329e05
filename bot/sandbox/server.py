"""The HTTP side of the sandbox: the aiohttp app (``/bot<token>/<method>`` and file downloads),
request decoding into typed parameters, routing to the emulated methods with faults applied,
and the two ways updates leave the queue: ``getUpdates`` long polling and webhook delivery."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from aiohttp import web

from bot.sandbox.core import WebhookConfig
from bot.sandbox.faults import FaultsMixin
from bot.sandbox.protocol import (
    CANONICAL,
    MAX_UPLOAD_SIZE,
    SECRET_HEADER,
    ApiError,
    Handler,
    JSONDict,
    bad_request,
    chat_id_param,
    words,
)
from bot.sandbox.records import ApiCall, UploadedFile, WebhookAttempt

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Request decoding: each parameter by its name
# --------------------------------------------------------------------------------------------

_INT_PARAMS = frozenset(
    words(
        "message_id message_thread_id reply_to_message_id offset limit timeout user_id "
        "icon_color max_connections cache_time duration width height length until_date "
        "live_period heading proximity_alert_radius direct_messages_topic_id"
    )
)
_FLOAT_PARAMS = frozenset(["latitude", "longitude", "horizontal_accuracy"])
_BOOL_PARAMS = frozenset(
    words(
        "disable_notification protect_content allow_sending_without_reply show_alert "
        "drop_pending_updates disable_web_page_preview has_spoiler show_caption_above_media "
        "disable_content_type_detection supports_streaming allow_paid_broadcast for_channels "
        "only_if_banned revoke_messages is_big remove_caption"
    )
)
_JSON_PARAMS = frozenset(
    words(
        "reply_markup reply_parameters entities caption_entities media commands scope "
        "link_preview_options allowed_updates message_ids menu_button rights reaction options "
        "explanation_entities question_entities results permissions"
    )
)
_CHAT_ID_PARAMS = frozenset({"chat_id", "from_chat_id"})


def _number(convert: Callable[[Any], Any]) -> Callable[[str, Any], Any]:
    def decode(name: str, value: Any) -> Any:
        try:
            return convert(value)
        except (TypeError, ValueError) as exc:
            raise bad_request(f"invalid {name} specified") from exc

    return decode


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return bool(value)


def _json(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError as exc:
        if name == "reply_markup":
            raise bad_request("can't parse reply keyboard markup JSON object") from exc
        raise bad_request(f"can't parse {name} JSON object") from exc


def _string(name: str, value: Any) -> Any:
    return value if isinstance(value, str) else str(value)


_DECODERS: dict[str, Callable[[str, Any], Any]] = {
    **dict.fromkeys(_CHAT_ID_PARAMS, _number(chat_id_param)),
    **dict.fromkeys(_INT_PARAMS, _number(int)),
    **dict.fromkeys(_FLOAT_PARAMS, _number(float)),
    **dict.fromkeys(_BOOL_PARAMS, _boolean),
    **dict.fromkeys(_JSON_PARAMS, _json),
    "text": _string,
    "caption": _string,
}
"""How each known parameter is decoded from a query string, form field or JSON value; others
are kept as they came."""


def decode_param(name: str, value: Any) -> Any:
    if isinstance(value, UploadedFile) or value is None:
        return value
    decoder = _DECODERS.get(name)
    return value if decoder is None else decoder(name, value)


def update_chat(update: JSONDict) -> int | str:
    """The chat whose queue an update joins for webhook delivery (its id if it has none)."""
    for value in update.values():
        if isinstance(value, dict):
            chat = value.get("chat") or (value.get("message") or {}).get("chat")
            if isinstance(chat, dict) and isinstance(chat.get("id"), int):
                return int(chat["id"])
            sender = value.get("from")
            if isinstance(sender, dict) and isinstance(sender.get("id"), int):
                return int(sender["id"])
    return f"update {update['update_id']}"  # a queue of its own


class ServerMixin(FaultsMixin):
    """The aiohttp app and its lifecycle, request handling, and update delivery."""

    app: web.Application
    _runner: web.AppRunner | None
    _root_url: str | None

    def _init_server(self, handlers: dict[str, Handler]) -> None:
        self._runner = None
        self._root_url = None
        self._handlers = handlers
        self.app = web.Application(client_max_size=MAX_UPLOAD_SIZE + 1024 * 1024)
        self.app.router.add_route("*", "/bot{token}/{method}", self._on_request)
        self.app.router.add_get("/file/bot{token}/{path:.+}", self._on_file)
        self.app.on_shutdown.append(self._on_shutdown)

    def _update_handlers(self) -> dict[str, Handler]:
        return {
            "getUpdates": self._m_get_updates,
            "setWebhook": self._m_set_webhook,
            "deleteWebhook": self._m_delete_webhook,
            "getWebhookInfo": self._m_get_webhook_info,
        }

    # ----------------------------------------------------------------------------------------
    # Lifecycle
    # ----------------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0: any free port); returns the root URL."""
        if self._runner is not None:
            return self.root_url
        self._closing = False
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self._root_url = f"http://{shown}:{bound_port}"
        return self._root_url

    async def stop(self) -> None:
        self._closing = True
        await self._shutdown_background()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def root_url(self) -> str:
        if self._root_url is None:
            raise RuntimeError("LocalBotApi is not started")
        return self._root_url

    @property
    def base_url(self) -> str:
        """For ``Bot(base_url=...)``."""
        return f"{self.root_url}/bot"

    @property
    def base_file_url(self) -> str:
        """For ``Bot(base_file_url=...)``."""
        return f"{self.root_url}/file/bot"

    async def _on_shutdown(self, _app: web.Application) -> None:
        self._closing = True
        await self._shutdown_background()

    async def _shutdown_background(self) -> None:
        self._wake_poller("closing")
        await self._stop_webhook_task()
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    # ----------------------------------------------------------------------------------------
    # HTTP
    # ----------------------------------------------------------------------------------------

    async def _on_request(self, request: web.Request) -> web.Response:
        raw_method = request.match_info["method"]
        method = CANONICAL.get(raw_method.lower(), raw_method)
        call = ApiCall(method=method, params={}, at=time.monotonic())
        self.calls.append(call)
        try:
            if request.match_info["token"] != self.token:
                raise ApiError(401, "Unauthorized")
            handler = self._handlers.get(method)
            if handler is None:
                if method in CANONICAL.values():
                    raise ApiError(
                        501, f"Not Implemented: {method} is not supported by the local Bot API"
                    )
                raise ApiError(404, "Not Found: method not found")
            call.params = await self._read_params(request)
            if self.latency > 0:
                await asyncio.sleep(self.latency)
            self._check_faults(method, call.params)
            result = await handler(call.params)
        except ApiError as error:
            call.status, call.error = error.code, error.description
            self._notify()
            return web.json_response(error.body(), status=error.code)
        except Exception as exc:
            logger.exception("local Bot API failed on %s", method)
            description = f"Internal Server Error: local Bot API bug: {exc!r}"
            self.server_errors.append(f"{method}: {exc!r}")
            call.status, call.error = 500, description
            self._notify()
            body = {"ok": False, "error_code": 500, "description": description}
            return web.json_response(body, status=500)
        call.status, call.result = 200, result
        self._notify()
        return web.json_response({"ok": True, "result": result})

    async def _on_file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(ApiError(401, "Unauthorized").body(), status=401)
        stored = self._files_by_path.get(request.match_info["path"])
        if stored is None:
            return web.json_response(ApiError(404, "Not Found").body(), status=404)
        return web.Response(
            body=stored.data, content_type=stored.mime_type or "application/octet-stream"
        )

    async def _read_params(self, request: web.Request) -> JSONDict:
        raw: dict[str, Any] = dict(request.query) if request.query_string else {}
        if request.can_read_body:
            content_type = request.content_type
            if content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError as exc:
                    raise bad_request("can't parse JSON object") from exc
                if not isinstance(body, dict):
                    raise bad_request("can't parse JSON object")
                raw.update(body)
            elif content_type == "application/x-www-form-urlencoded":
                body_text = (await request.read()).decode(request.charset or "utf-8")
                raw.update(parse_qsl(body_text, keep_blank_values=True))
            elif content_type == "multipart/form-data":
                form = await request.post()
                for key, value in form.items():
                    if isinstance(value, web.FileField):
                        raw[key] = UploadedFile(
                            key, value.filename, value.content_type, value.file.read()
                        )
                    else:
                        raw[key] = value
        return {key: decode_param(key, value) for key, value in raw.items()}

    # ----------------------------------------------------------------------------------------
    # Long polling
    # ----------------------------------------------------------------------------------------

    def _confirm(self, offset: int) -> None:
        updates = self._updates
        if offset < 0:
            while len(updates) > -offset:
                updates.popleft()
        else:
            while updates and updates[0]["update_id"] < offset:
                updates.popleft()

    async def _m_get_updates(self, p: JSONDict) -> list[JSONDict]:
        if self._webhook is not None:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = p.get("offset")
        if offset:
            self._confirm(offset)
        limit = min(max(p.get("limit") or 100, 1), 100)
        timeout = max(p.get("timeout") or 0, 0)
        self._wake_poller("conflict")  # Telegram ends an older pending request
        if not self._updates and timeout > 0 and not self._closing:
            reason = await self._wait_for_update(timeout)
            if reason == "conflict":
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; "
                    "make sure that only one bot instance is running",
                )
            if reason == "webhook":
                return []
        return list(itertools.islice(self._updates, limit))

    async def _wait_for_update(self, timeout: float) -> str:  # noqa: ASYNC109
        """Why the long poll ends: "update", "conflict", "webhook", "closing" or "timeout"."""
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._poll_waiter = waiter
        try:
            return await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            return "timeout"
        finally:
            if self._poll_waiter is waiter:
                self._poll_waiter = None

    # ----------------------------------------------------------------------------------------
    # Webhook
    # ----------------------------------------------------------------------------------------

    async def _m_set_webhook(self, p: JSONDict) -> bool:
        url = p.get("url") or ""
        if not url:
            return await self._m_delete_webhook(p)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        if not self.allow_remote_webhooks and parts.hostname not in (
            "127.0.0.1",
            "localhost",
            "::1",
        ):
            raise bad_request(
                "bad webhook: the local Bot API only delivers to loopback addresses "
                "(set allow_remote_webhooks)"
            )
        secret = p.get("secret_token") or None
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise bad_request("secret token contains unallowed characters")
        if p.get("drop_pending_updates"):
            self._updates.clear()
        await self._stop_webhook_task()
        self._webhook = WebhookConfig(
            url=url,
            secret_token=secret,
            max_connections=p.get("max_connections") or 40,
            allowed_updates=p.get("allowed_updates"),
            ip_address=p.get("ip_address"),
        )
        self._wake_poller("webhook")
        self._webhook_wakeup = asyncio.Event()
        self._webhook_task = asyncio.create_task(self._webhook_loop(self._webhook))
        return True

    async def _m_delete_webhook(self, p: JSONDict) -> bool:
        await self._stop_webhook_task()
        self._webhook = None
        if p.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _m_get_webhook_info(self, p: JSONDict) -> JSONDict:
        info: JSONDict = {
            "url": "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        hook = self._webhook
        if hook is not None:
            info["url"] = hook.url
            info["max_connections"] = hook.max_connections
            if hook.ip_address:
                info["ip_address"] = hook.ip_address
            if hook.allowed_updates is not None:
                info["allowed_updates"] = hook.allowed_updates
            if hook.last_error_date is not None:
                info["last_error_date"] = hook.last_error_date
                info["last_error_message"] = hook.last_error_message
        return info

    async def _stop_webhook_task(self) -> None:
        task, self._webhook_task = self._webhook_task, None
        self._webhook_wakeup = None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _webhook_loop(self, hook: WebhookConfig) -> None:
        """Deliver pending updates as Telegram does: up to ``max_connections`` requests at
        once, but one at a time per chat (a chat's updates arrive in order); a failed update
        is retried after a pause that doubles, and holds back the later updates of its chat."""
        in_flight: dict[int | str, asyncio.Task[None]] = {}  # by chat
        delays: dict[int, float] = {}  # by id() of a pending update that failed
        try:
            while self._webhook is hook and not self._closing:
                wakeup = self._webhook_wakeup
                if wakeup is None:
                    return
                wakeup.clear()
                waiting: set[int | str] = set()
                for update in list(self._updates):
                    if len(in_flight) >= hook.max_connections:
                        break
                    chat = update_chat(update)
                    if chat in in_flight or chat in waiting:
                        waiting.add(chat)
                        continue
                    waiting.add(chat)
                    in_flight[chat] = asyncio.create_task(
                        self._deliver_one(hook, update, delays, in_flight, chat)
                    )
                await wakeup.wait()
        finally:
            for task in in_flight.values():
                task.cancel()

    async def _deliver_one(
        self,
        hook: WebhookConfig,
        update: JSONDict,
        delays: dict[int, float],
        in_flight: dict[int | str, asyncio.Task[None]],
        chat: int | str,
    ) -> None:
        try:
            if await self._post_update(hook, update):
                delays.pop(id(update), None)
                with contextlib.suppress(ValueError):
                    self._updates.remove(update)
            else:
                delay = delays.get(id(update), self.webhook_retry_delay)
                delays[id(update)] = min(delay * 2, self.webhook_max_retry_delay)
                await asyncio.sleep(delay)
        finally:
            in_flight.pop(chat, None)
            if self._webhook_wakeup is not None:
                self._webhook_wakeup.set()

    async def _post_update(self, hook: WebhookConfig, update: JSONDict) -> bool:
        if self._client is None:
            self._client = aiohttp.ClientSession(trust_env=False)
        headers = {"Content-Type": "application/json"}
        if hook.secret_token:
            headers[SECRET_HEADER] = hook.secret_token
        status: int | None = None
        error: str | None = None
        try:
            async with self._client.post(
                hook.url,
                data=json.dumps(update),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.webhook_timeout),
            ) as response:
                await response.read()
                status = response.status
                if not 200 <= status < 300:
                    error = f"Wrong response from the webhook: {status} {response.reason}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"Connection failed: {exc!r}"
        self.webhook_attempts.append(
            WebhookAttempt(update["update_id"], status, error, time.monotonic())
        )
        if error is not None:
            hook.last_error_date, hook.last_error_message = self._now(), error
        self._notify()
        return error is None
