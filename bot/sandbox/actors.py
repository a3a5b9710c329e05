"""The tests' and the demo's actors: ``FakeUser`` and ``FakeGroup``, and what a user does, each
delivered to the bot as an update: sending text, contacts, photos, documents, voice, video,
stickers, locations or any content, editing their message, pressing an inline button."""

from __future__ import annotations

from bot.sandbox.core import ChatState
from bot.sandbox.entities import command_entities
from bot.sandbox.methods.files import TINY_PNG, FilesMixin, media_object
from bot.sandbox.protocol import JSONDict, embedded
from bot.sandbox.records import FakeUser, SentMessage


class ActorsMixin(FilesMixin):
    """Playing users (test side). Every ``send_*`` takes ``chat_id`` (default: the user's
    private chat), ``message_thread_id`` and ``reply_to_message_id``, and returns the update."""

    async def send_text(
        self,
        user: FakeUser,
        text: str,
        *,
        chat_id: int | None = None,
        message_thread_id: int | None = None,
        reply_to_message_id: int | None = None,
    ) -> JSONDict:
        """The user sends ``text``; commands get their ``bot_command`` entities."""
        content: JSONDict = {"text": text}
        entities = command_entities(text)
        if entities:
            content["entities"] = entities
        return self._user_message(user, content, chat_id, message_thread_id, reply_to_message_id)

    async def send_contact(
        self,
        user: FakeUser,
        phone_number: str,
        *,
        contact_user_id: int | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        chat_id: int | None = None,
        message_thread_id: int | None = None,
        reply_to_message_id: int | None = None,
    ) -> JSONDict:
        contact: JSONDict = {
            "phone_number": phone_number,
            "first_name": first_name or user.first_name,
        }
        if last_name:
            contact["last_name"] = last_name
        if contact_user_id is not None:
            contact["user_id"] = contact_user_id
        return self._user_message(
            user, {"contact": contact}, chat_id, message_thread_id, reply_to_message_id
        )

    async def send_photo(
        self,
        user: FakeUser,
        *,
        caption: str | None = None,
        media_group_id: str | None = None,
        chat_id: int | None = None,
        message_thread_id: int | None = None,
        reply_to_message_id: int | None = None,
        data: bytes | None = None,
        width: int = 1280,
        height: int = 960,
    ) -> JSONDict:
        """A photo (``data`` optional: a tiny PNG is stored, shown as ``width`` x ``height``)."""
        stored = self._store_file("photo", data if data is not None else TINY_PNG)
        if data is None:
            stored.width, stored.height = width, height
        content = _user_caption({"photo": self._photo_sizes(stored)}, caption)
        return self._user_message(
            user, content, chat_id, message_thread_id, reply_to_message_id, media_group_id
        )

    async def send_document(
        self,
        user: FakeUser,
        *,
        file_name: str = "document.pdf",
        mime_type: str = "application/pdf",
        data: bytes = b"%PDF-1.4 local test document",
        caption: str | None = None,
        media_group_id: str | None = None,
        chat_id: int | None = None,
        message_thread_id: int | None = None,
        reply_to_message_id: int | None = None,
    ) -> JSONDict:
        stored = self._store_file("document", data, file_name=file_name, mime_type=mime_type)
        content = _user_caption({"document": media_object(stored)}, caption)
        return self._user_message(
            user, content, chat_id, message_thread_id, reply_to_message_id, media_group_id
        )

    async def send_voice(
        self,
        user: FakeUser,
        *,
        duration: int = 3,
        data: bytes = b"OggS local test voice",
        caption: str | None = None,
        chat_id: int | None = None,
        message_thread_id: int | None = None,
        reply_to_message_id: int | None = None,
    ) -> JSONDict:
        stored = self._store_file("voice", data, duration=duration)
        content = _user_caption({"voice": media_object(stored)}, caption)
        return self._user_message(user, content, chat_id, message_thread_id, reply_to_message_id)

    async def send_video(
        self,
        user: FakeUser,
        *,
        duration: int = 5,
        width: int = 1280,
        height: int = 720,
        data: bytes = b"\x00\x00\x00\x18ftypmp42 local test video",
        caption: str | None = None,
        media_group_id: str | None = None,
        chat_id: int | None = None,
        message_thread_id: int | None = None,
        reply_to_message_id: int | None = None,
    ) -> JSONDict:
        stored = self._store_file("video", data, duration=duration, width=width, height=height)
        content = _user_caption({"video": media_object(stored)}, caption)
        return self._user_message(
            user, content, chat_id, message_thread_id, reply_to_message_id, media_group_id
        )

    async def send_sticker(
        self,
        user: FakeUser,
        *,
        emoji: str = "👍",
        chat_id: int | None = None,
        message_thread_id: int | None = None,
        reply_to_message_id: int | None = None,
    ) -> JSONDict:
        stored = self._store_file("sticker", b"RIFF local test sticker", width=512, height=512)
        sticker = media_object(stored)
        sticker["emoji"] = emoji
        return self._user_message(
            user, {"sticker": sticker}, chat_id, message_thread_id, reply_to_message_id
        )

    async def send_location(
        self,
        user: FakeUser,
        latitude: float,
        longitude: float,
        *,
        chat_id: int | None = None,
        message_thread_id: int | None = None,
        reply_to_message_id: int | None = None,
    ) -> JSONDict:
        location = {"latitude": latitude, "longitude": longitude}
        return self._user_message(
            user, {"location": location}, chat_id, message_thread_id, reply_to_message_id
        )

    async def send_content(
        self,
        user: FakeUser,
        content: JSONDict,
        *,
        chat_id: int | None = None,
        message_thread_id: int | None = None,
        reply_to_message_id: int | None = None,
    ) -> JSONDict:
        """The user sends a message with arbitrary ``content`` fields (e.g. ``{"poll": ...}``)."""
        return self._user_message(
            user, dict(content), chat_id, message_thread_id, reply_to_message_id
        )

    async def edit_message(
        self, user: FakeUser, message_id: int, new_text: str, *, chat_id: int | None = None
    ) -> JSONDict:
        """The user edits their message (its text, or its caption): an ``edited_message``."""
        chat = self._chat_for(user, chat_id)
        message = chat.messages.get(message_id)
        if message is None or message.get("from", {}).get("id") != user.id:
            raise KeyError(f"no message {message_id} from user {user.id} in chat {chat.id}")
        key = "text" if "text" in message else "caption"
        message[key] = new_text
        message.pop("entities" if key == "text" else "caption_entities", None)
        entities = command_entities(new_text)
        if entities:
            message["entities" if key == "text" else "caption_entities"] = entities
        message["edit_date"] = self._now()
        return self._deliver({"edited_message": dict(message)})

    async def press_button(
        self,
        user: FakeUser,
        message: SentMessage | JSONDict | int,
        callback_data: str,
        *,
        chat_id: int | None = None,
    ) -> JSONDict:
        """The user presses an inline button of the bot's ``message`` (a SentMessage, a message
        dict or a message id in ``chat_id``, default the user's private chat)."""
        if isinstance(message, SentMessage):
            target_chat, message_id = message.chat_id, message.message_id
        elif isinstance(message, dict):
            target_chat, message_id = message["chat"]["id"], message["message_id"]
        else:
            target_chat, message_id = (chat_id if chat_id is not None else user.id), message
        shown = self._pressed_message(target_chat, message_id)
        query_id = str(next(self._callback_seq))
        self._open_callbacks.add(query_id)
        query = {
            "id": query_id,
            "from": user.to_dict(),
            "message": shown,
            "chat_instance": str(7_000_000_000_000_000_000 + target_chat),
            "data": callback_data,
        }
        return self._deliver({"callback_query": query})

    def _pressed_message(self, chat_id: int, message_id: int) -> JSONDict:
        """The bot's message as a callback query shows it (a stub once it is deleted)."""
        chat = self._chats.get(chat_id)
        if chat is None:
            raise KeyError(f"unknown chat {chat_id}")
        stored = chat.messages.get(message_id)
        if stored is not None:
            if stored.get("from", {}).get("id") != self.bot_id:
                raise ValueError(f"message {message_id} in chat {chat_id} is not the bot's")
            return dict(stored)
        if (chat_id, message_id) in self._sent_index:
            return {"chat": dict(chat.brief), "message_id": message_id, "date": 0}
        raise KeyError(f"no message {message_id} in chat {chat_id}")

    async def send_raw_update(self, update: JSONDict) -> JSONDict:
        """Deliver any update as given (``update_id`` is assigned when missing)."""
        return self._deliver(dict(update))

    def _chat_for(self, user: FakeUser, chat_id: int | None) -> ChatState:
        key = user.id if chat_id is None else chat_id
        chat = self._chats.get(key)
        if chat is None:
            if chat_id is None:
                raise KeyError(f"unknown user {user.id}: add it with add_user()")
            raise KeyError(f"unknown chat {chat_id}: add it with add_group()")
        return chat

    def _user_message(
        self,
        user: FakeUser,
        content: JSONDict,
        chat_id: int | None,
        thread_id: int | None,
        reply_to_message_id: int | None,
        media_group_id: str | None = None,
    ) -> JSONDict:
        if user.id not in self._users:
            self._users[user.id] = user
        chat = self._chat_for(user, chat_id)
        if chat.type != "private":
            chat.members.setdefault(user.id, "member")
        message: JSONDict = {
            "message_id": chat.next_message_id(),
            "from": user.to_dict(),
            "chat": dict(chat.brief),
            "date": self._now(),
        }
        if thread_id is not None and chat.is_forum and thread_id != 1:
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
        if reply_to_message_id is not None:
            replied = chat.messages.get(reply_to_message_id)
            if replied is None:
                raise KeyError(f"no message {reply_to_message_id} in chat {chat.id}")
            message["reply_to_message"] = embedded(replied)
        elif "message_thread_id" in message:
            created = chat.messages.get(message["message_thread_id"])
            if created is not None:
                message["reply_to_message"] = embedded(created)
        if media_group_id is not None:
            message["media_group_id"] = media_group_id
        message.update(content)
        chat.messages[message["message_id"]] = message
        if chat.type == "private":
            chat.started = True
        return self._deliver({"message": dict(message)})


def _user_caption(content: JSONDict, caption: str | None) -> JSONDict:
    if caption:
        content["caption"] = caption
        entities = command_entities(caption)
        if entities:
            content["caption_entities"] = entities
    return content
