"""``answerCallbackQuery``: answering the button presses the tests deliver (each query can be
answered once; answers are kept in ``answered_callbacks``)."""

from __future__ import annotations

from bot.sandbox.core import SandboxCore
from bot.sandbox.protocol import ApiError, Handler, JSONDict, bad_request

_QUERY_INVALID = (
    "Bad Request: query is too old and response timeout expired or query ID is invalid"
)


class CallbacksMixin(SandboxCore):
    def _callback_handlers(self) -> dict[str, Handler]:
        return {"answerCallbackQuery": self._m_answer_callback_query}

    async def _m_answer_callback_query(self, p: JSONDict) -> bool:
        query_id = p.get("callback_query_id")
        if query_id not in self._open_callbacks:
            raise ApiError(400, _QUERY_INVALID)
        text = p.get("text")
        if isinstance(text, str) and len(text) > 200:
            raise bad_request("MESSAGE_TOO_LONG")
        self._open_callbacks.discard(query_id)
        self.answered_callbacks.append(p)
        return True
