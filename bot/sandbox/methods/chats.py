"""Chats and their members: ``getChat``, ``getChatMember``, ``getChatAdministrators``,
``getChatMemberCount``, and the methods that only check their chat (or message) exists:
pinning, reactions, ``leaveChat``."""

from __future__ import annotations

from bot.sandbox.core import SandboxCore
from bot.sandbox.protocol import Handler, JSONDict, bad_request

_ADMINISTRATOR_RIGHTS = {
    "can_be_edited": False,
    "is_anonymous": False,
    "can_manage_chat": True,
    "can_delete_messages": True,
    "can_manage_video_chats": True,
    "can_restrict_members": True,
    "can_promote_members": False,
    "can_change_info": True,
    "can_invite_users": True,
    "can_post_stories": False,
    "can_edit_stories": False,
    "can_delete_stories": False,
    "can_pin_messages": True,
    "can_manage_topics": True,
}
"""What an administrator (the bot included) may do, as getChatMember reports it."""
_MEMBER_EXTRAS: dict[str, JSONDict] = {
    "creator": {"is_anonymous": False},
    "administrator": _ADMINISTRATOR_RIGHTS,
    "kicked": {"until_date": 0},
}
_PRESENT = ("member", "administrator", "creator")


class ChatsMixin(SandboxCore):
    def _chat_handlers(self) -> dict[str, Handler]:
        return {
            "getChat": self._m_get_chat,
            "getChatMember": self._m_get_chat_member,
            "getChatAdministrators": self._m_get_chat_administrators,
            "getChatMemberCount": self._m_get_chat_member_count,
            "setMessageReaction": self._m_message_true,
            "pinChatMessage": self._m_message_true,
            "unpinChatMessage": self._m_chat_true,
            "unpinAllChatMessages": self._m_chat_true,
            "leaveChat": self._m_chat_true,
            "unpinAllForumTopicMessages": self._m_chat_true,
        }

    async def _m_chat_true(self, p: JSONDict) -> bool:
        self._chat(p.get("chat_id"))
        return True

    async def _m_message_true(self, p: JSONDict) -> bool:
        chat = self._chat(p.get("chat_id"))
        if p.get("message_id") not in chat.messages:
            raise bad_request("message not found")
        return True

    async def _m_get_chat(self, p: JSONDict) -> JSONDict:
        chat = self._chat(p.get("chat_id"))
        return {
            **chat.brief,
            "accent_color_id": abs(chat.id) % 7,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }

    def _user_dict(self, user_id: int) -> JSONDict:
        if user_id == self.bot_id:
            return dict(self.bot_user)
        user = self._users.get(user_id)
        if user is not None:
            return user.to_dict()
        return {"id": user_id, "is_bot": False, "first_name": f"User {user_id}"}

    def _member(self, user_id: int, status: str, rights: JSONDict | None = None) -> JSONDict:
        member: JSONDict = {"status": status, "user": self._user_dict(user_id)}
        member.update(_MEMBER_EXTRAS.get(status, {}))
        if status == "administrator":
            member.update(rights or {})
        return member

    async def _m_get_chat_member(self, p: JSONDict) -> JSONDict:
        chat = self._chat(p.get("chat_id"))
        user_id = p.get("user_id")
        if not isinstance(user_id, int):
            raise bad_request("user_id is empty")
        if chat.type == "private":
            status = "member" if user_id in (chat.id, self.bot_id) else "left"
            if user_id == self.bot_id and chat.id in self._blocked:
                status = "kicked"
        else:
            status = chat.members.get(user_id, "left")
        return self._member(user_id, status, chat.rights.get(user_id))

    async def _m_get_chat_administrators(self, p: JSONDict) -> list[JSONDict]:
        chat = self._chat(p.get("chat_id"))
        if chat.type == "private":
            raise bad_request("there are no administrators in the private chat")
        return [
            self._member(user_id, status, chat.rights.get(user_id))
            for user_id, status in chat.members.items()
            if status in ("creator", "administrator")
        ]

    async def _m_get_chat_member_count(self, p: JSONDict) -> int:
        chat = self._chat(p.get("chat_id"))
        if chat.type == "private":
            return 2
        return sum(1 for status in chat.members.values() if status in _PRESENT)
