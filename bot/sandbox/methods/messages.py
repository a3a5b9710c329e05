"""Methods that create messages other than single files: ``sendMessage``, locations, venues,
contacts, dice, media groups, chat actions, and copying and forwarding messages."""

from __future__ import annotations

import contextlib

from bot.sandbox.core import ChatState
from bot.sandbox.methods.files import FilesMixin
from bot.sandbox.methods.posting import Target, caption_content, message_ids, text_content
from bot.sandbox.protocol import CONTENT_KEYS, ApiError, Handler, JSONDict, bad_request, kind_of

CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
_MEDIA_GROUP_TYPES = ("photo", "video", "document", "audio")


class MessagesMixin(FilesMixin):
    """Sending, copying and forwarding."""

    def _message_handlers(self) -> dict[str, Handler]:
        return {
            "sendMessage": self._m_send_message,
            "sendLocation": self._m_send_location,
            "sendVenue": self._m_send_venue,
            "sendContact": self._m_send_contact,
            "sendDice": self._m_send_dice,
            "sendChatAction": self._m_send_chat_action,
            "sendMediaGroup": self._m_send_media_group,
            "copyMessage": self._m_copy_message,
            "copyMessages": self._m_copy_messages,
            "forwardMessage": self._m_forward_message,
            "forwardMessages": self._m_forward_messages,
        }

    async def _m_send_message(self, p: JSONDict) -> JSONDict:
        target = self._target(p)
        content = text_content(p)
        return self._post(
            target, content, "sendMessage", p, text=p["text"], parse_mode=p.get("parse_mode")
        )

    async def _m_send_location(self, p: JSONDict) -> JSONDict:
        target = self._target(p)
        latitude, longitude = p.get("latitude"), p.get("longitude")
        if latitude is None or longitude is None:
            raise bad_request("wrong latitude or longitude specified")
        content = {"location": {"latitude": latitude, "longitude": longitude}}
        return self._post(target, content, "sendLocation", p)

    async def _m_send_venue(self, p: JSONDict) -> JSONDict:
        target = self._target(p)
        location = {"latitude": p.get("latitude"), "longitude": p.get("longitude")}
        venue = {"location": location, "title": p.get("title"), "address": p.get("address")}
        if None in location.values() or not venue["title"] or not venue["address"]:
            raise bad_request("venue title, address and location are required")
        return self._post(target, {"venue": venue, "location": location}, "sendVenue", p)

    async def _m_send_contact(self, p: JSONDict) -> JSONDict:
        target = self._target(p)
        if not p.get("phone_number") or not p.get("first_name"):
            raise bad_request("phone number and first name must be non-empty")
        contact = {
            key: p[key]
            for key in ("phone_number", "first_name", "last_name", "vcard")
            if p.get(key)
        }
        return self._post(target, {"contact": contact}, "sendContact", p)

    async def _m_send_dice(self, p: JSONDict) -> JSONDict:
        target = self._target(p)
        emoji = p.get("emoji") or "🎲"
        dice = {"emoji": emoji, "value": 1 + next(self._file_seq) % 6}
        return self._post(target, {"dice": dice}, "sendDice", p)

    async def _m_send_chat_action(self, p: JSONDict) -> bool:
        chat = self._writable_chat(p.get("chat_id"))
        if p.get("action") not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        self._thread(chat, p.get("message_thread_id"))
        return True

    async def _m_send_media_group(self, p: JSONDict) -> list[JSONDict]:
        target = self._target({**p, "reply_markup": None})
        items = p.get("media")
        if not isinstance(items, list) or not 2 <= len(items) <= 10:
            raise bad_request("media group must contain 2-10 items")
        prepared = [(item, self._media_group_item(p, item)) for item in items]
        group_id = str(next(self._media_group_seq))
        return [
            self._post(
                target,
                content,
                "sendMediaGroup",
                p,
                caption=item.get("caption") or None,
                parse_mode=item.get("parse_mode", p.get("parse_mode")),
                media_group_id=group_id,
            )
            for item, content in prepared
        ]

    def _media_group_item(self, p: JSONDict, item: object) -> JSONDict:
        """The content of one InputMedia of a media group."""
        if not isinstance(item, dict) or item.get("type") not in _MEDIA_GROUP_TYPES:
            raise bad_request("unsupported media type in the media group")
        kind = item["type"]
        stored = self._resolve_file(
            {**p, **{k: v for k, v in item.items() if k != "media"}},
            "media",
            kind,
            item.get("media"),
        )
        content = self._file_content(kind, stored)
        caption_content(
            item.get("caption"),
            item.get("parse_mode", p.get("parse_mode")),
            item.get("caption_entities"),
            content,
        )
        if item.get("has_spoiler"):
            content["has_media_spoiler"] = True
        return content

    # Copies and forwards

    def _source_message(self, p: JSONDict, missing: str) -> tuple[ChatState, JSONDict]:
        source_chat = self._chat(p.get("from_chat_id"), "from_chat_id")
        message_id = p.get("message_id")
        if not message_id:
            raise bad_request("message identifier is not specified")
        source = source_chat.messages.get(message_id)
        if source is None:
            raise bad_request(missing)
        return source_chat, source

    @staticmethod
    def _copied_content(source: JSONDict, action: str) -> JSONDict:
        if source.get("has_protected_content"):
            raise bad_request("message has protected content and can't be forwarded")
        content = {key: source[key] for key in CONTENT_KEYS if key in source}
        if kind_of(content) == "service":
            raise bad_request(f"message can't be {action}")
        return content

    def _copy(self, p: JSONDict, target: Target, method: str) -> JSONDict:
        source_chat, source = self._source_message(p, "message to copy not found")
        content = self._copied_content(source, "copied")
        if "caption" in p and kind_of(content) not in ("text", "service"):
            caption_content(
                p.get("caption"), p.get("parse_mode"), p.get("caption_entities"), content
            )
        elif p.get("remove_caption"):
            content.pop("caption", None)
            content.pop("caption_entities", None)
        return self._post(
            target,
            content,
            method,
            p,
            caption=p.get("caption") or None,
            parse_mode=p.get("parse_mode"),
            copied_from=(source_chat.id, source["message_id"]),
        )

    async def _m_copy_message(self, p: JSONDict) -> JSONDict:
        target = self._target(p)
        message = self._copy(p, target, "copyMessage")
        return {"message_id": message["message_id"]}

    async def _m_copy_messages(self, p: JSONDict) -> list[JSONDict]:
        target = self._target({**p, "reply_markup": None, "reply_parameters": None})
        results = []
        for message_id in message_ids(p):
            with contextlib.suppress(ApiError):
                copy = self._copy({**p, "message_id": message_id}, target, "copyMessages")
                results.append({"message_id": copy["message_id"]})
        if not results:
            raise bad_request("messages to copy not found")
        return results

    def _forward(self, p: JSONDict, target: Target, method: str) -> JSONDict:
        source_chat, source = self._source_message(p, "message to forward not found")
        content = self._copied_content(source, "forwarded")
        origin: JSONDict
        sender = source.get("from")
        if source_chat.type == "private" or sender is not None:
            origin = {"type": "user", "sender_user": sender, "date": source["date"]}
        else:
            origin = {"type": "chat", "sender_chat": source_chat.brief, "date": source["date"]}
        return self._post(
            target,
            content,
            method,
            p,
            copied_from=(source_chat.id, source["message_id"]),
            extra={"forward_origin": origin},
        )

    async def _m_forward_message(self, p: JSONDict) -> JSONDict:
        target = self._target({**p, "reply_markup": None})
        return self._forward(p, target, "forwardMessage")

    async def _m_forward_messages(self, p: JSONDict) -> list[JSONDict]:
        target = self._target({**p, "reply_markup": None})
        results = []
        for message_id in message_ids(p):
            with contextlib.suppress(ApiError):
                message = self._forward({**p, "message_id": message_id}, target, "forwardMessages")
                results.append({"message_id": message["message_id"]})
        if not results:
            raise bad_request("messages to forward not found")
        return results
