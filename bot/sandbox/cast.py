"""Who exists in the sandbox, as the tests and the demo set it up: users (and their private
chats), groups, their members, and the forum topics staff create, close, reopen or delete."""

from __future__ import annotations

from bot.sandbox.core import ChatState, chat_key
from bot.sandbox.methods.forum import FORUM_ICON_COLORS, ForumMixin
from bot.sandbox.protocol import JSONDict, MemberStatus
from bot.sandbox.records import FakeGroup, FakeUser, ForumTopicInfo


class CastMixin(ForumMixin):
    """Users, groups, members and topics (test side)."""

    def add_user(
        self,
        user_id: int,
        first_name: str,
        *,
        language_code: str | None = "en",
        username: str | None = None,
        last_name: str | None = None,
        started: bool = True,
    ) -> FakeUser:
        """A Telegram user and their private chat with the bot (``started=False``: the user
        never opened the bot, so the bot can't write first)."""
        user = FakeUser(user_id, first_name, language_code, username, last_name)
        self._users[user_id] = user
        brief: JSONDict = {"id": user_id, "type": "private", "first_name": first_name}
        if last_name:
            brief["last_name"] = last_name
        if username:
            brief["username"] = username
        existing = self._chats.get(user_id)
        if existing is not None and existing.type == "private":
            existing.brief, existing.user, existing.started = brief, user, started
        else:
            self._chats[user_id] = ChatState(
                id=user_id, type="private", brief=brief, user=user, started=started
            )
        if username:
            self._chats_by_username[username.lower()] = self._chats[user_id]
        return user

    def user(self, user_id: int) -> FakeUser:
        return self._users[user_id]

    def add_group(
        self,
        chat_id: int,
        title: str,
        *,
        forum: bool = True,
        username: str | None = None,
        bot_status: MemberStatus = "administrator",
        supergroup: bool = True,
    ) -> FakeGroup:
        """A supergroup (a forum by default; ``supergroup=False``: a basic group, never a
        forum) with the bot in it as ``bot_status``."""
        forum = forum and supergroup
        kind = "supergroup" if supergroup else "group"
        brief: JSONDict = {"id": chat_id, "type": kind, "title": title}
        if username:
            brief["username"] = username
        if forum:
            brief["is_forum"] = True
        chat = ChatState(
            id=chat_id,
            type=kind,
            brief=brief,
            title=title,
            is_forum=forum,
            username=username,
        )
        chat.members[self.bot_id] = bot_status
        chat.last_message_id = 1  # message 1 is the group's creation; thread 1 is "General"
        self._chats[chat_id] = chat
        if username:
            self._chats_by_username[username.lower()] = chat
        return FakeGroup(chat_id, title, forum, username)

    def add_member(
        self,
        chat_id: int,
        user_id: int | FakeUser,
        status: MemberStatus = "member",
        *,
        rights: JSONDict | None = None,
    ) -> None:
        """Set what getChatMember answers for the user in the group (the bot's id works too);
        ``rights``: an administrator's rights that differ from the defaults (all but promoting
        members), e.g. ``{"can_manage_topics": False}``."""
        if status not in ("member", "administrator", "creator", "left", "kicked"):
            raise ValueError(f"unsupported member status {status!r}")
        chat = self._group(chat_id)
        chat.members[chat_key(user_id)] = status
        chat.rights.pop(chat_key(user_id), None)
        if rights:
            chat.rights[chat_key(user_id)] = dict(rights)

    def create_topic(
        self,
        chat_id: int,
        name: str,
        *,
        icon_color: int = FORUM_ICON_COLORS[0],
        by: FakeUser | None = None,
    ) -> ForumTopicInfo:
        """A topic created by staff. With ``by``, the service message is also delivered."""
        chat = self._group(chat_id)
        topic, service = self._new_topic(chat, name, icon_color, None, by)
        topic.created_by_bot = False
        if by is not None:
            self._deliver({"message": service})
        return topic

    def close_topic(self, chat_id: int, thread_id: int, *, by: FakeUser | None = None) -> None:
        """Staff close a topic: the bot's sends into it answer TOPIC_CLOSED."""
        self._staff_close(chat_id, thread_id, by, closed=True)

    def reopen_topic(self, chat_id: int, thread_id: int, *, by: FakeUser | None = None) -> None:
        self._staff_close(chat_id, thread_id, by, closed=False)

    def _staff_close(
        self, chat_id: int, thread_id: int, by: FakeUser | None, *, closed: bool
    ) -> None:
        chat = self._group(chat_id)
        self._topic(chat, thread_id).closed = closed
        event = "forum_topic_closed" if closed else "forum_topic_reopened"
        service = self._service_message(chat, thread_id, {event: {}}, by)
        if by is not None:
            self._deliver({"message": service})

    def delete_topic(self, chat_id: int, thread_id: int) -> None:
        """Staff delete a topic and its messages (Telegram tells the bot nothing)."""
        chat = self._group(chat_id)
        self._remove_topic(chat, self._topic(chat, thread_id))

    def topics(self, chat_id: int) -> list[ForumTopicInfo]:
        """Every topic of the group, deleted ones included (flagged), in creation order."""
        return list(self._group(chat_id).topics.values())

    def _group(self, chat_id: int) -> ChatState:
        chat = self._chats.get(chat_id)
        if chat is None or chat.type == "private":
            raise KeyError(f"no group {chat_id}: add it with add_group()")
        return chat

    @staticmethod
    def _topic(chat: ChatState, thread_id: int) -> ForumTopicInfo:
        topic = chat.topics.get(thread_id)
        if topic is None:
            raise KeyError(f"no topic {thread_id} in chat {chat.id}")
        return topic
