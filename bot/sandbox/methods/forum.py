"""Forum topics: ``createForumTopic``, ``editForumTopic``, ``closeForumTopic``,
``reopenForumTopic``, ``deleteForumTopic`` (and the topic bookkeeping the tests' staff share)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot.sandbox.core import ChatState, SandboxCore
from bot.sandbox.protocol import Handler, JSONDict, bad_request
from bot.sandbox.records import ForumTopicInfo

if TYPE_CHECKING:
    from bot.sandbox.records import FakeUser

FORUM_ICON_COLORS = (7322096, 16766590, 13338331, 9367192, 16749490, 16478047)


class ForumMixin(SandboxCore):
    def _forum_handlers(self) -> dict[str, Handler]:
        return {
            "createForumTopic": self._m_create_forum_topic,
            "editForumTopic": self._m_edit_forum_topic,
            "closeForumTopic": self._m_close_forum_topic,
            "reopenForumTopic": self._m_reopen_forum_topic,
            "deleteForumTopic": self._m_delete_forum_topic,
            "getForumTopicIconStickers": self._m_empty_list,
        }

    async def _m_empty_list(self, p: JSONDict) -> list[Any]:
        return []

    def _forum(self, p: JSONDict) -> ChatState:
        chat = self._chat(p.get("chat_id"))
        if not chat.is_forum:
            raise bad_request("the chat is not a forum")
        status = chat.members.get(self.bot_id)
        rights = chat.rights.get(self.bot_id, {})
        if status != "creator" and (
            status != "administrator" or not rights.get("can_manage_topics", True)
        ):
            raise bad_request("not enough rights to manage topics")
        return chat

    @staticmethod
    def _existing_topic(chat: ChatState, p: JSONDict) -> ForumTopicInfo:
        topic = chat.topics.get(p.get("message_thread_id") or 0)
        if topic is None or topic.deleted:
            raise bad_request("message thread not found")
        return topic

    def _new_topic(
        self,
        chat: ChatState,
        name: str,
        icon_color: int,
        icon_custom_emoji_id: str | None,
        by: FakeUser | None,
    ) -> tuple[ForumTopicInfo, JSONDict]:
        created: JSONDict = {"name": name, "icon_color": icon_color}
        if icon_custom_emoji_id:
            created["icon_custom_emoji_id"] = icon_custom_emoji_id
        thread_id = chat.last_message_id + 1
        service = self._service_message(chat, thread_id, {"forum_topic_created": created}, by)
        topic = ForumTopicInfo(chat.id, thread_id, name, icon_color, icon_custom_emoji_id)
        chat.topics[thread_id] = topic
        return topic, service

    def _remove_topic(self, chat: ChatState, topic: ForumTopicInfo) -> None:
        topic.deleted = True
        thread_id = topic.message_thread_id
        doomed = [
            message_id
            for message_id, message in chat.messages.items()
            if message.get("message_thread_id") == thread_id or message_id == thread_id
        ]
        for message_id in doomed:
            self._delete(chat, message_id)

    async def _m_create_forum_topic(self, p: JSONDict) -> JSONDict:
        chat = self._forum(p)
        name = p.get("name") or ""
        if not name.strip():
            raise bad_request("TOPIC_TITLE_EMPTY")
        if len(name) > 128:
            raise bad_request("TOPIC_TITLE_INVALID")
        icon_color = p.get("icon_color") or FORUM_ICON_COLORS[0]
        if icon_color not in FORUM_ICON_COLORS:
            raise bad_request("ICON_COLOR_INVALID")
        emoji = p.get("icon_custom_emoji_id") or None
        topic, _ = self._new_topic(chat, name, icon_color, emoji, None)
        result: JSONDict = {
            "message_thread_id": topic.message_thread_id,
            "name": topic.name,
            "icon_color": topic.icon_color,
        }
        if emoji:
            result["icon_custom_emoji_id"] = emoji
        return result

    async def _m_edit_forum_topic(self, p: JSONDict) -> bool:
        chat = self._forum(p)
        topic = self._existing_topic(chat, p)
        name = p.get("name")
        emoji = p.get("icon_custom_emoji_id")
        edited: JSONDict = {}
        if name is not None and name != topic.name:
            if not name.strip() or len(name) > 128:
                raise bad_request("TOPIC_TITLE_INVALID")
            topic.name = edited["name"] = name
        if emoji is not None and (emoji or None) != topic.icon_custom_emoji_id:
            topic.icon_custom_emoji_id = emoji or None
            edited["icon_custom_emoji_id"] = emoji
        if not edited:
            raise bad_request("TOPIC_NOT_MODIFIED")
        self._service_message(chat, topic.message_thread_id, {"forum_topic_edited": edited}, None)
        return True

    async def _m_close_forum_topic(self, p: JSONDict) -> bool:
        return self._set_topic_closed(p, closed=True)

    async def _m_reopen_forum_topic(self, p: JSONDict) -> bool:
        return self._set_topic_closed(p, closed=False)

    def _set_topic_closed(self, p: JSONDict, *, closed: bool) -> bool:
        chat = self._forum(p)
        topic = self._existing_topic(chat, p)
        if topic.closed == closed:
            raise bad_request("TOPIC_NOT_MODIFIED")
        topic.closed = closed
        event = "forum_topic_closed" if closed else "forum_topic_reopened"
        self._service_message(chat, topic.message_thread_id, {event: {}}, None)
        return True

    async def _m_delete_forum_topic(self, p: JSONDict) -> bool:
        chat = self._forum(p)
        self._remove_topic(chat, self._existing_topic(chat, p))
        return True
