"""The sandbox's shared state: the internal records (chats, stored files, fault rules, the
webhook) and ``SandboxCore``, the base every part of ``LocalBotApi`` builds on: it owns the
state, the update queue and the change notifications."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from bot.sandbox.protocol import ApiError, Handler, JSONDict, bad_request
from bot.sandbox.records import ApiCall, ForumTopicInfo, SentMessage, WebhookAttempt

if TYPE_CHECKING:
    from bot.sandbox.records import FakeGroup, FakeUser


@dataclass
class ChatState:
    id: int
    type: str
    brief: JSONDict
    title: str | None = None
    is_forum: bool = False
    username: str | None = None
    user: FakeUser | None = None
    started: bool = True
    messages: dict[int, JSONDict] = field(default_factory=dict)
    members: dict[int, str] = field(default_factory=dict)
    rights: dict[int, JSONDict] = field(default_factory=dict)
    """Administrator rights that differ from ``_ADMINISTRATOR_RIGHTS``, per member."""
    topics: dict[int, ForumTopicInfo] = field(default_factory=dict)
    last_message_id: int = 0

    def next_message_id(self) -> int:
        self.last_message_id += 1
        return self.last_message_id


@dataclass
class StoredFile:
    kind: str
    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes = field(repr=False)
    file_name: str | None = None
    mime_type: str | None = None
    width: int | None = None
    height: int | None = None
    duration: int | None = None
    photo_sizes: list[JSONDict] | None = None

    def get_file(self) -> JSONDict:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": len(self.data),
            "file_path": self.file_path,
        }


@dataclass
class FailRule:
    methods: frozenset[str] | None  # None: any method
    error: ApiError
    times: int
    chat_id: int | str | None
    after: int = 0  # matching calls that still go through before the rule fails any


@dataclass
class WebhookConfig:
    url: str
    secret_token: str | None
    max_connections: int
    allowed_updates: list[str] | None
    ip_address: str | None
    last_error_date: int | None = None
    last_error_message: str | None = None


def chat_key(value: int | FakeUser | FakeGroup) -> int:
    return value if isinstance(value, int) else value.id


class SandboxCore:
    """The state of the local Bot API server, and what every part needs: chats by id, the
    update queue, the clock and the "something changed" event."""

    def __init__(
        self,
        token: str = "123456:TEST-TOKEN",
        *,
        bot_id: int = 123456,
        bot_username: str = "carebot_test_bot",
        bot_first_name: str = "Carebot",
    ) -> None:
        self.token = token
        self.bot_id = bot_id
        self.bot_username = bot_username
        self.bot_user: JSONDict = {
            "id": bot_id,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
        }
        # Knobs.
        self.time_source: Callable[[], float] = time.time
        """Where message dates come from (unix seconds)."""
        self.latency = 0.0
        self.webhook_retry_delay = 0.05
        """First pause before redelivering to a failing webhook; doubles up to the max."""
        self.webhook_max_retry_delay = 1.0
        self.webhook_timeout = 30.0
        self.allow_remote_webhooks = False
        """Only loopback webhook URLs are accepted unless this is set."""

        # What the bot did.
        self.calls: list[ApiCall] = []
        self.answered_callbacks: list[JSONDict] = []
        self.commands: dict[tuple[str, str], list[JSONDict]] = {}
        """setMyCommands, by (scope, language_code): scope "default", "chat:ID", ..."""
        self.bot_settings: dict[str, JSONDict] = {}
        """Last parameters of setMyName, setMyDescription, setChatMenuButton, ..."""
        self.webhook_attempts: list[WebhookAttempt] = []
        self.server_errors: list[str] = []
        """Bugs of this server (requests answered 500 because of an exception)."""

        self._users: dict[int, FakeUser] = {}
        self._chats: dict[int, ChatState] = {}
        self._chats_by_username: dict[str, ChatState] = {}
        self._sent: dict[int, list[SentMessage]] = {}
        self._sent_index: dict[tuple[int, int], SentMessage] = {}
        self._files: dict[str, StoredFile] = {}
        self._files_by_path: dict[str, StoredFile] = {}
        self._file_seq = itertools.count(1)
        self._media_group_seq = itertools.count(13_000_000_000_000_001)
        self._callback_seq = itertools.count(4_000_000_000_000_001)
        self._open_callbacks: set[str] = set()
        self._blocked: set[int] = set()
        self._fail_rules: list[FailRule] = []
        self._group_limit: tuple[int, float] | None = None
        """Messages a group takes per window of seconds (``limit_groups``); None: no limit."""
        self._group_arrivals: dict[int, deque[float]] = {}

        self._updates: deque[JSONDict] = deque()
        self._update_seq = 0
        self._poll_waiter: asyncio.Future[str] | None = None
        self._webhook: WebhookConfig | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self._webhook_wakeup: asyncio.Event | None = None
        self._client: aiohttp.ClientSession | None = None
        self._changed = asyncio.Event()
        self._closing = False
        self._handlers: dict[str, Handler] = {}

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _now(self) -> int:
        return int(self.time_source())

    # The update queue (delivered by getUpdates or the webhook, see bot.sandbox.server)

    def _deliver(self, update: JSONDict) -> JSONDict:
        update_id = update.get("update_id")
        if isinstance(update_id, int):
            self._update_seq = max(self._update_seq, update_id)
        else:
            self._update_seq += 1
            update = {"update_id": self._update_seq, **update}
        self._updates.append(update)
        self._wake_poller("update")
        if self._webhook_wakeup is not None:
            self._webhook_wakeup.set()
        self._notify()
        return update

    @property
    def pending_updates(self) -> list[JSONDict]:
        """Updates not yet confirmed by getUpdates nor accepted by the webhook."""
        return list(self._updates)

    def _wake_poller(self, reason: str) -> None:
        waiter = self._poll_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(reason)

    # Chats and their messages

    def _chat(self, value: Any, name: str = "chat_id") -> ChatState:
        if value is None or value == "":
            raise bad_request(f"{name} is empty")
        chat: ChatState | None
        if isinstance(value, int):
            chat = self._chats.get(value)
        elif isinstance(value, str) and value.startswith("@"):
            chat = self._chats_by_username.get(value[1:].lower())
        else:
            chat = None
        if chat is None:
            raise bad_request("chat not found")
        return chat

    def _service_message(
        self, chat: ChatState, thread_id: int | None, content: JSONDict, by: FakeUser | None
    ) -> JSONDict:
        message: JSONDict = {
            "message_id": chat.next_message_id(),
            "from": by.to_dict() if by is not None else self.bot_user,
            "chat": dict(chat.brief),
            "date": self._now(),
        }
        if thread_id is not None:
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
        message.update(content)
        chat.messages[message["message_id"]] = message
        return message

    def _delete(self, chat: ChatState, message_id: Any) -> bool:
        if chat.messages.pop(message_id, None) is None:
            return False
        record = self._sent_index.get((chat.id, message_id))
        if record is not None:
            record.deleted = True
        return True
