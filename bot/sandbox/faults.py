"""Fault injection: users blocking the bot, Telegram-shaped errors on chosen methods (or chats),
flood control (429 with ``retry_after``) and latency; and the check every request passes."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable

from bot.sandbox.core import FailRule, SandboxCore, chat_key
from bot.sandbox.protocol import (
    BLOCKABLE_METHODS,
    CANONICAL,
    GROUP_LIMITED_METHODS,
    SENDING_METHODS,
    ApiError,
    JSONDict,
)
from bot.sandbox.records import FakeGroup, FakeUser

_GENERIC_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict",
    500: "Internal Server Error",
    502: "Bad Gateway",
}


class FaultsMixin(SandboxCore):
    """``block``, ``unblock``, ``fail``, ``rate_limit``, ``limit_groups``, ``set_latency``,
    ``clear_faults``."""

    def limit_groups(self, per_window: int = 20, window: float = 60.0) -> None:
        """Enforce Telegram's flood limit on groups: a message, edit or topic change into a
        group (negative chat id) beyond ``per_window`` of them arrived in the last ``window``
        seconds answers 429 with ``retry_after``. 20 in 60 s is Telegram's; tests and
        benchmarks scale time down (20 in 6 s is the same shape, ten times faster)."""
        self._group_limit = (per_window, window)
        self._group_arrivals.clear()

    def _check_group_limit(self, method: str, params: JSONDict) -> None:
        target = params.get("chat_id")
        if (
            self._group_limit is None
            or method not in GROUP_LIMITED_METHODS
            or not isinstance(target, int)
            or target >= 0
        ):
            return
        limit, window = self._group_limit
        now = time.monotonic()
        arrivals = self._group_arrivals.setdefault(target, deque())
        while arrivals and arrivals[0] <= now - window:
            arrivals.popleft()
        if len(arrivals) >= limit:
            retry_after = max(1, math.ceil(arrivals[0] + window - now))
            raise ApiError(
                429,
                f"Too Many Requests: retry after {retry_after}",
                {"retry_after": retry_after},
            )
        arrivals.append(now)

    def block(self, chat_id: int | FakeUser, *, notify: bool = False) -> None:
        """The user blocks the bot: sends and edits to the chat answer 403. ``notify`` also
        delivers the ``my_chat_member`` update Telegram sends."""
        key = chat_key(chat_id)
        self._blocked.add(key)
        if notify:
            self._deliver_member_update(key, "member", "kicked")

    def unblock(self, chat_id: int | FakeUser, *, notify: bool = False) -> None:
        key = chat_key(chat_id)
        self._blocked.discard(key)
        if notify:
            self._deliver_member_update(key, "kicked", "member")

    def fail(
        self,
        method: str | Iterable[str],
        *,
        error_code: int,
        description: str | None = None,
        times: int = 1,
        chat_id: int | str | FakeUser | FakeGroup | None = None,
        retry_after: int | None = None,
        after: int = 0,
    ) -> None:
        """The next ``times`` calls of ``method`` ("*" for any; case-insensitive; optionally
        only those addressed to ``chat_id``) fail with a Telegram-shaped error; with
        ``after``, only once that many such calls went through."""
        if isinstance(chat_id, FakeUser | FakeGroup):
            chat_id = chat_id.id
        names = [method] if isinstance(method, str) else list(method)
        methods: frozenset[str] | None
        if "*" in names:
            methods = None
        else:
            canonical = []
            for name in names:
                if name.lower() not in CANONICAL:
                    raise ValueError(f"unknown Bot API method {name!r}")
                canonical.append(CANONICAL[name.lower()])
            methods = frozenset(canonical)
        parameters: JSONDict | None = None
        if error_code == 429:
            retry_after = 1 if retry_after is None else retry_after
            description = description or f"Too Many Requests: retry after {retry_after}"
        if retry_after is not None:
            parameters = {"retry_after": retry_after}
        if description is None:
            description = _GENERIC_DESCRIPTIONS.get(error_code, "Error")
        error = ApiError(error_code, description, parameters)
        self._fail_rules.append(FailRule(methods, error, times, chat_id, after))

    def rate_limit(self, retry_after: int = 2, times: int = 1) -> None:
        """The next ``times`` message-sending calls (any method) answer 429."""
        self.fail(SENDING_METHODS, error_code=429, retry_after=retry_after, times=times)

    def clear_faults(self) -> None:
        self._fail_rules.clear()
        self._group_limit = None
        self._blocked.clear()
        self.latency = 0.0

    def set_latency(self, seconds: float) -> None:
        """Delay every request by ``seconds`` before handling it."""
        self.latency = max(0.0, seconds)

    def _check_faults(self, method: str, params: JSONDict) -> None:
        self._check_group_limit(method, params)
        if self._fail_rules:
            target = params.get("chat_id")
            for rule in self._fail_rules:
                if rule.methods is not None and method not in rule.methods:
                    continue
                if rule.chat_id is not None and rule.chat_id != target:
                    continue
                if rule.after > 0:
                    rule.after -= 1
                    continue
                rule.times -= 1
                if rule.times <= 0:
                    self._fail_rules.remove(rule)
                raise rule.error
        if (
            self._blocked
            and method in BLOCKABLE_METHODS
            and params.get("chat_id") in self._blocked
        ):
            raise ApiError(403, "Forbidden: bot was blocked by the user")

    def _deliver_member_update(self, chat_id: int, old: str, new: str) -> None:
        user = self._users.get(chat_id)
        chat = self._chats.get(chat_id)
        if user is None or chat is None:
            return
        bot = dict(self.bot_user)
        self._deliver(
            {
                "my_chat_member": {
                    "chat": dict(chat.brief),
                    "from": user.to_dict(),
                    "date": self._now(),
                    "old_chat_member": {"status": old, "user": bot, **_until(old)},
                    "new_chat_member": {"status": new, "user": bot, **_until(new)},
                }
            }
        )


def _until(status: str) -> JSONDict:
    return {"until_date": 0} if status == "kicked" else {}
