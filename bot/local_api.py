"""A local Telegram Bot API server for end-to-end tests, benchmarks and the demo sandbox.

python-telegram-bot talks to it over real HTTP exactly as it would to ``api.telegram.org``::

    api = LocalBotApi(token)
    root = await api.start()  # "http://127.0.0.1:PORT"
    bot = Bot(token, base_url=f"{root}/bot", base_file_url=f"{root}/file/bot")

Requests arrive as ``POST {root}/bot<token>/<method>`` (JSON, url-encoded or multipart bodies,
query strings too). Responses follow the Bot API: ``{"ok": true, "result": ...}`` or a
Telegram-shaped error whose HTTP status equals ``error_code``.

The same object is the tests' side of the conversation: it plays customers and staff
(``send_text``, ``press_button``, ...), records what the bot did (``calls``, ``sent``,
``message``, ``answered_callbacks``, ``topics``), and injects faults (``block``, ``fail``,
``rate_limit``, ``delete_topic``, ``set_latency``). Everything runs on one event loop; the
test-side methods must be called from that loop.

Deliberate simplifications: no inline mode, payments, games, sticker sets, business or
channel features; ``allowed_updates`` is stored but not used for filtering; URLs given as files
are never fetched (the file is registered without content); ``text`` of stored messages is
Telegram's (markup removed, ``entities`` added) while ``SentMessage.text`` is what the bot sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import mimetypes
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from aiohttp import web

__all__ = [
    "ApiCall",
    "FakeGroup",
    "FakeUser",
    "ForumTopicInfo",
    "LocalBotApi",
    "SentMessage",
    "UploadedFile",
    "WebhookAttempt",
    "parse_html",
    "parse_markdown",
    "parse_markdown_v2",
    "sent_texts",
]

logger = logging.getLogger(__name__)

JSONDict = dict[str, Any]
MemberStatus = Literal["member", "administrator", "creator", "left", "kicked"]

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_DOWNLOAD_SIZE = 20 * 1024 * 1024
MAX_UPLOAD_SIZE = 50 * 1024 * 1024
FORUM_ICON_COLORS = (7322096, 16766590, 13338331, 9367192, 16749490, 16478047)
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


def _words(text: str) -> list[str]:
    return text.split()


# Every Bot API method this server knows by name (for case-insensitive lookup). Methods that
# are known but not implemented answer 501 rather than Telegram's 404 for unknown names.
KNOWN_METHODS = _words(
    "getUpdates setWebhook deleteWebhook getWebhookInfo getMe logOut close sendMessage "
    "forwardMessage forwardMessages copyMessage copyMessages sendPhoto sendAudio "
    "sendDocument sendVideo sendAnimation sendVoice sendVideoNote sendPaidMedia "
    "sendMediaGroup sendLocation sendVenue sendContact sendPoll sendChecklist sendDice "
    "sendMessageDraft sendChatAction setMessageReaction getUserProfilePhotos "
    "setUserEmojiStatus getFile banChatMember unbanChatMember restrictChatMember "
    "promoteChatMember setChatAdministratorCustomTitle banChatSenderChat "
    "unbanChatSenderChat setChatPermissions exportChatInviteLink createChatInviteLink "
    "editChatInviteLink createChatSubscriptionInviteLink editChatSubscriptionInviteLink "
    "revokeChatInviteLink approveChatJoinRequest declineChatJoinRequest setChatPhoto "
    "deleteChatPhoto setChatTitle setChatDescription pinChatMessage unpinChatMessage "
    "unpinAllChatMessages leaveChat getChat getChatAdministrators getChatMemberCount "
    "getChatMember setChatStickerSet deleteChatStickerSet getForumTopicIconStickers "
    "createForumTopic editForumTopic closeForumTopic reopenForumTopic deleteForumTopic "
    "unpinAllForumTopicMessages editGeneralForumTopic closeGeneralForumTopic "
    "reopenGeneralForumTopic hideGeneralForumTopic unhideGeneralForumTopic "
    "unpinAllGeneralForumTopicMessages answerCallbackQuery getUserChatBoosts "
    "getBusinessConnection setMyCommands deleteMyCommands getMyCommands setMyName getMyName "
    "setMyDescription getMyDescription setMyShortDescription getMyShortDescription "
    "setChatMenuButton getChatMenuButton setMyDefaultAdministratorRights "
    "getMyDefaultAdministratorRights editMessageText editMessageCaption editMessageMedia "
    "editMessageLiveLocation stopMessageLiveLocation editMessageChecklist "
    "editMessageReplyMarkup stopPoll deleteMessage deleteMessages sendSticker getStickerSet "
    "getCustomEmojiStickers uploadStickerFile createNewStickerSet addStickerToSet "
    "answerInlineQuery answerWebAppQuery savePreparedInlineMessage sendInvoice "
    "createInvoiceLink answerShippingQuery answerPreCheckoutQuery getStarTransactions "
    "refundStarPayment setPassportDataErrors sendGame setGameScore getGameHighScores "
    "getAvailableGifts sendGift verifyUser verifyChat"
)
_CANONICAL = {name.lower(): name for name in KNOWN_METHODS}

# Methods that create messages: rate_limit() applies to these, block() to these and edits.
SENDING_METHODS = frozenset(
    _words(
        "sendMessage forwardMessage forwardMessages copyMessage copyMessages sendPhoto "
        "sendAudio sendDocument sendVideo sendAnimation sendVoice sendVideoNote sendPaidMedia "
        "sendMediaGroup sendLocation sendVenue sendContact sendPoll sendDice sendSticker "
        "sendInvoice sendGame"
    )
)
_BLOCKABLE_METHODS = SENDING_METHODS | {
    "sendChatAction",
    "editMessageText",
    "editMessageCaption",
    "editMessageReplyMarkup",
    "editMessageMedia",
}

_INT_PARAMS = frozenset(
    _words(
        "message_id message_thread_id reply_to_message_id offset limit timeout user_id "
        "icon_color max_connections cache_time duration width height length until_date "
        "live_period heading proximity_alert_radius direct_messages_topic_id"
    )
)
_FLOAT_PARAMS = frozenset(["latitude", "longitude", "horizontal_accuracy"])
_BOOL_PARAMS = frozenset(
    _words(
        "disable_notification protect_content allow_sending_without_reply show_alert "
        "drop_pending_updates disable_web_page_preview has_spoiler show_caption_above_media "
        "disable_content_type_detection supports_streaming allow_paid_broadcast for_channels "
        "only_if_banned revoke_messages is_big remove_caption"
    )
)
_JSON_PARAMS = frozenset(
    _words(
        "reply_markup reply_parameters entities caption_entities media commands scope "
        "link_preview_options allowed_updates message_ids menu_button rights reaction options "
        "explanation_entities question_entities results permissions"
    )
)
_CHAT_ID_PARAMS = frozenset({"chat_id", "from_chat_id"})

_MEDIA_KINDS = (
    "animation",
    "photo",
    "document",
    "voice",
    "video",
    "audio",
    "sticker",
    "video_note",
    "location",
    "venue",
    "contact",
    "dice",
    "poll",
    "text",
)
_CONTENT_KEYS = (
    *_MEDIA_KINDS,
    "entities",
    "caption",
    "caption_entities",
    "has_media_spoiler",
    "show_caption_above_media",
    "link_preview_options",
)
_FILE_DIRS = {
    "photo": ("photos", ".jpg"),
    "document": ("documents", ""),
    "voice": ("voice", ".oga"),
    "video": ("videos", ".mp4"),
    "audio": ("music", ".mp3"),
    "sticker": ("stickers", ".webp"),
    "animation": ("animations", ".mp4"),
    "video_note": ("video_notes", ".mp4"),
}
_DEFAULT_MIME = {
    "photo": "image/jpeg",
    "voice": "audio/ogg",
    "video": "video/mp4",
    "audio": "audio/mpeg",
    "sticker": "image/webp",
    "animation": "video/mp4",
    "video_note": "video/mp4",
    "document": "application/octet-stream",
}
_INLINE_BUTTON_ACTIONS = frozenset(
    _words(
        "url callback_data login_url switch_inline_query switch_inline_query_current_chat "
        "switch_inline_query_chosen_chat copy_text callback_game pay web_app"
    )
)
_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
_QUERY_INVALID = (
    "Bad Request: query is too old and response timeout expired or query ID is invalid"
)
_GENERIC_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict",
    500: "Internal Server Error",
    502: "Bad Gateway",
}
# A 1x1 PNG: the content of photos that the test side "sends" without giving bytes.
_TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6300010000050001"
    "0d0a2db40000000049454e44ae426082"
)


# --------------------------------------------------------------------------------------------
# Public records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeUser:
    """A Telegram user played by the tests. Their private chat with the bot has ``id == id``."""

    id: int
    first_name: str
    language_code: str | None = "en"
    username: str | None = None
    last_name: str | None = None
    is_bot: bool = False

    def to_dict(self) -> JSONDict:
        data: JSONDict = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        if self.last_name:
            data["last_name"] = self.last_name
        if self.username:
            data["username"] = self.username
        if self.language_code:
            data["language_code"] = self.language_code
        return data


@dataclass(frozen=True)
class FakeGroup:
    id: int
    title: str
    is_forum: bool
    username: str | None = None


@dataclass
class UploadedFile:
    """A file part of a multipart request, as found in ``ApiCall.params``."""

    field_name: str
    filename: str | None
    content_type: str | None
    data: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"<UploadedFile {self.field_name}={self.filename!r} {len(self.data)} bytes>"


@dataclass
class ApiCall:
    """One request the bot made. ``status`` is 0 while the request is still being handled."""

    method: str
    params: JSONDict
    at: float
    status: int = 0
    error: str | None = None
    result: Any = None

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class SentMessage:
    """A message the bot created. ``text``/``caption``/``reply_markup`` are as the bot sent them
    (markup included); ``message`` is the stored Message dict (kept current by edits)."""

    chat_id: int
    message_id: int
    method: str
    kind: str
    text: str | None
    caption: str | None
    parse_mode: str | None
    reply_markup: JSONDict | None
    message_thread_id: int | None
    reply_to_message_id: int | None
    media_group_id: str | None
    file_id: str | None
    copied_from: tuple[int, int] | None
    at: float
    message: JSONDict = field(repr=False)
    params: JSONDict = field(repr=False)
    deleted: bool = False

    @property
    def body(self) -> str | None:
        """The text of a text message or the caption of any other."""
        return self.text if self.text is not None else self.caption

    def buttons(self) -> list[tuple[str, str]]:
        """``(label, callback_data or url)`` of the inline keyboard sent with the message."""
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [
            (button.get("text", ""), button.get("callback_data", button.get("url", "")))
            for row in rows
            for button in row
        ]


@dataclass
class ForumTopicInfo:
    chat_id: int
    message_thread_id: int
    name: str
    icon_color: int
    icon_custom_emoji_id: str | None = None
    closed: bool = False
    deleted: bool = False
    created_by_bot: bool = True


@dataclass
class WebhookAttempt:
    """One POST of an update to the webhook: ``status`` None when the connection failed."""

    update_id: int
    status: int | None
    error: str | None
    at: float


# --------------------------------------------------------------------------------------------
# Internal state
# --------------------------------------------------------------------------------------------


class ApiError(Exception):
    """A Telegram-shaped error: answered with HTTP status ``code``."""

    def __init__(self, code: int, description: str, parameters: JSONDict | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def body(self) -> JSONDict:
        data: JSONDict = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            data["parameters"] = self.parameters
        return data


def _bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


@dataclass
class _Chat:
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
    topics: dict[int, ForumTopicInfo] = field(default_factory=dict)
    last_message_id: int = 0

    def next_message_id(self) -> int:
        self.last_message_id += 1
        return self.last_message_id


@dataclass
class _StoredFile:
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
class _FailRule:
    methods: frozenset[str] | None  # None: any method
    error: ApiError
    times: int
    chat_id: int | str | None


def _update_chat(update: JSONDict) -> int | str:
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


@dataclass
class _Webhook:
    url: str
    secret_token: str | None
    max_connections: int
    allowed_updates: list[str] | None
    ip_address: str | None
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass
class _Target:
    chat: _Chat
    thread_id: int | None
    reply_to: JSONDict | None
    markup: JSONDict | None


# --------------------------------------------------------------------------------------------
# Formatting: HTML, MarkdownV2 and Markdown, as Telegram parses them
# --------------------------------------------------------------------------------------------


class EntityParseError(Exception):
    """The text of ``Bad Request: can't parse entities: ...``."""


def _u16(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's entity offsets."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))


_HTML_TAG_ENTITIES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_HTML_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def _is_tag_char(char: str) -> bool:
    return char.isascii() and (char.isalnum() or char == "-")


def _decode_html_entity(text: str, index: int) -> tuple[str | None, int]:
    end = text.find(";", index + 1, index + 12)
    if end < 0:
        return None, index
    body = text[index + 1 : end]
    if body in _HTML_NAMED_ENTITIES:
        return _HTML_NAMED_ENTITIES[body], end + 1
    code: int | None = None
    if (
        body[:2] in ("#x", "#X")
        and body[2:]
        and all(c in "0123456789abcdefABCDEF" for c in body[2:])
    ):
        code = int(body[2:], 16)
    elif body[:1] == "#" and body[1:].isdigit():
        code = int(body[1:])
    if code is not None and 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
        return chr(code), end + 1
    return None, index


def _decode_html_entities(text: str) -> str:
    out: list[str] = []
    index = 0
    while index < len(text):
        if text[index] == "&":
            decoded, after = _decode_html_entity(text, index)
            if decoded is not None:
                out.append(decoded)
                index = after
                continue
        out.append(text[index])
        index += 1
    return "".join(out)


def parse_html(text: str) -> tuple[str, list[JSONDict]]:
    """Telegram's HTML parse mode: the plain text and its entities, or EntityParseError."""
    out: list[str] = []
    offset = 0  # UTF-16 length of out
    stack: list[tuple[str, dict[str, str], int]] = []
    pre_languages: dict[int, str] = {}
    entities: list[JSONDict] = []
    n = len(text)
    i = 0
    while i < n:
        char = text[i]
        if char == "&":
            decoded, after = _decode_html_entity(text, i)
            if decoded is not None:
                out.append(decoded)
                offset += _u16(decoded)
                i = after
                continue
        if char != "<":
            out.append(char)
            offset += 2 if ord(char) > 0xFFFF else 1
            i += 1
            continue
        begin = i
        i += 1
        if i < n and text[i] == "/":
            i += 1
            start = i
            while i < n and _is_tag_char(text[i]):
                i += 1
            name = text[start:i].lower()
            if not stack:
                raise EntityParseError(
                    f"Unexpected end tag at byte offset {_byte_offset(text, begin)}"
                )
            while i < n and text[i].isspace():
                i += 1
            if i >= n or text[i] != ">":
                raise EntityParseError(
                    f"Unclosed end tag at byte offset {_byte_offset(text, begin)}"
                )
            i += 1
            open_name, attributes, entity_start = stack.pop()
            if name != open_name:
                raise EntityParseError(
                    f"Unmatched end tag at byte offset {_byte_offset(text, begin)}, "
                    f'expected "</{open_name}>", found "</{name}>"'
                )
            length = offset - entity_start
            depth = len(stack)
            if open_name == "code" and stack and stack[-1][0] == "pre":
                language = attributes.get("class", "")
                if language.startswith("language-") and len(language) > len("language-"):
                    pre_languages[depth - 1] = language[len("language-") :]
                continue
            if length <= 0:
                pre_languages.pop(depth, None)
                continue
            entity: JSONDict = {
                "type": _HTML_TAG_ENTITIES[open_name],
                "offset": entity_start,
                "length": length,
            }
            if open_name == "a":
                href = attributes.get("href")
                if not href:
                    continue
                entity["url"] = href
            elif open_name == "pre":
                language = pre_languages.pop(depth, "")
                if language:
                    entity["language"] = language
            elif open_name == "blockquote" and "expandable" in attributes:
                entity["type"] = "expandable_blockquote"
            elif open_name == "tg-emoji":
                entity["custom_emoji_id"] = attributes["emoji-id"]
            entities.append(entity)
            continue
        start = i
        while i < n and _is_tag_char(text[i]):
            i += 1
        name = text[start:i].lower()
        if name not in _HTML_TAG_ENTITIES:
            raise EntityParseError(
                f'Unsupported start tag "{name}" at byte offset {_byte_offset(text, begin)}'
            )
        attributes = {}
        while True:
            while i < n and text[i].isspace():
                i += 1
            if i >= n:
                raise EntityParseError(
                    f"Unclosed start tag at byte offset {_byte_offset(text, begin)}"
                )
            if text[i] == ">":
                i += 1
                break
            start = i
            while i < n and text[i].isascii() and (text[i].isalnum() or text[i] in "-_"):
                i += 1
            attribute = text[start:i].lower()
            if not attribute:
                raise EntityParseError(
                    f'Empty attribute name in the tag "{name}" at byte offset '
                    f"{_byte_offset(text, begin)}"
                )
            while i < n and text[i].isspace():
                i += 1
            if i < n and text[i] != "=" and attribute == "expandable":
                attributes[attribute] = ""
                continue
            if i >= n or text[i] != "=":
                raise EntityParseError(
                    "Expected equal sign in declaration of an attribute of the tag "
                    f'"{name}" at byte offset {_byte_offset(text, begin)}'
                )
            i += 1
            while i < n and text[i].isspace():
                i += 1
            if i >= n:
                raise EntityParseError(
                    f"Unclosed start tag at byte offset {_byte_offset(text, begin)}"
                )
            if text[i] in "\"'":
                end = text.find(text[i], i + 1)
                if end < 0:
                    raise EntityParseError(
                        f'Unclosed start tag "{name}" at byte offset {_byte_offset(text, begin)}'
                    )
                value = _decode_html_entities(text[i + 1 : end])
                i = end + 1
            else:
                start = i
                while i < n and text[i].isascii() and (text[i].isalnum() or text[i] in "-._"):
                    i += 1
                value = text[start:i]
            attributes[attribute] = value
        if name == "span" and attributes.get("class") != "tg-spoiler":
            raise EntityParseError(
                f'Tag "span" must have class "tg-spoiler" at byte offset '
                f"{_byte_offset(text, begin)}"
            )
        if name == "tg-emoji" and not attributes.get("emoji-id", "").isdigit():
            raise EntityParseError(
                f'Custom emoji entity must contain a valid "emoji-id" attribute at byte offset '
                f"{_byte_offset(text, begin)}"
            )
        stack.append((name, attributes, offset))
    if stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
}


def parse_markdown_v2(text: str) -> tuple[str, list[JSONDict]]:
    """Telegram's MarkdownV2 parse mode (block quotes are accepted but not turned into
    entities)."""
    out: list[str] = []
    offset = 0
    # (entity type, UTF-16 start, index in text where the marker began, language)
    stack: list[tuple[str, int, int, str]] = []
    entities: list[JSONDict] = []
    n = len(text)
    i = 0

    def emit(char: str) -> None:
        nonlocal offset
        out.append(char)
        offset += 2 if ord(char) > 0xFFFF else 1

    while i < n:
        char = text[i]
        if char == "\\" and i + 1 < n and 0 < ord(text[i + 1]) <= 126:
            emit(text[i + 1])
            i += 2
            continue
        top = stack[-1][0] if stack else None
        if top in ("code", "pre"):
            closing = char == "`" and (top == "code" or text.startswith("```", i))
            if not closing:
                emit(char)
                i += 1
                continue
        elif char not in _MDV2_RESERVED:
            emit(char)
            i += 1
            continue
        elif char == ">" and (i == 0 or text[i - 1] == "\n"):
            i += 1  # a block quote line: the marker is dropped
            continue
        closes = False
        width = 1
        if top is not None:
            if top == "code":
                closes = char == "`"
            elif top == "pre":
                closes, width = char == "`", 3
            elif top == "text_link" or top == "custom_emoji":
                closes = char == "]"
            elif top == "bold":
                closes = char == "*"
            elif top == "strikethrough":
                closes = char == "~"
            elif top == "spoiler":
                closes, width = text.startswith("||", i), 2
            elif top == "underline":
                closes, width = text.startswith("__", i), 2
            elif top == "italic":
                closes = char == "_" and not (
                    text.startswith("__", i) and any(e[0] == "underline" for e in stack)
                )
        if closes:
            kind, start, _, language = stack.pop()
            i += width
            entity: JSONDict = {"type": kind, "offset": start, "length": offset - start}
            if kind in ("text_link", "custom_emoji"):
                url = ""
                if i < n and text[i] == "(":
                    j = i + 1
                    url_chars: list[str] = []
                    while j < n and text[j] != ")":
                        if text[j] == "\\" and j + 1 < n:
                            j += 1
                        url_chars.append(text[j])
                        j += 1
                    if j >= n:
                        raise EntityParseError(
                            f"Can't find end of a URL at byte offset {_byte_offset(text, i)}"
                        )
                    url = "".join(url_chars)
                    i = j + 1
                if kind == "custom_emoji":
                    match = re.fullmatch(r"tg://emoji\?id=(\d+)", url)
                    if match is None:
                        raise EntityParseError("Custom emoji entity must contain a tg://emoji URL")
                    entity["custom_emoji_id"] = match.group(1)
                elif not url:
                    continue
                else:
                    entity["url"] = url
            if kind == "pre" and language:
                entity["language"] = language
            if entity["length"] > 0:
                entities.append(entity)
            continue
        begin = i
        language = ""
        if char == "*":
            kind = "bold"
        elif char == "~":
            kind = "strikethrough"
        elif char == "_":
            if text.startswith("__", i):
                kind, width = "underline", 2
            else:
                kind = "italic"
        elif char == "|" and text.startswith("||", i):
            kind, width = "spoiler", 2
        elif char == "[":
            kind = "text_link"
        elif char == "!" and text.startswith("![", i):
            kind, width = "custom_emoji", 2
        elif char == "`":
            if text.startswith("```", i):
                kind, width = "pre", 3
                newline = text.find("\n", i + 3)
                header = text[i + 3 : newline] if newline >= 0 else ""
                if newline >= 0 and header and not any(c.isspace() for c in header):
                    language = header
                    width = 3 + len(header) + 1
            else:
                kind = "code"
        else:
            raise EntityParseError(
                f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
            )
        stack.append((kind, offset, begin, language))
        i += width
    if stack:
        kind, _, begin, _ = stack[-1]
        raise EntityParseError(
            f"Can't find end of {_MDV2_NAMES[kind]} entity at byte offset "
            f"{_byte_offset(text, begin)}"
        )
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def parse_markdown(text: str) -> tuple[str, list[JSONDict]]:
    """Telegram's legacy Markdown parse mode (no nesting)."""
    out: list[str] = []
    entities: list[JSONDict] = []
    offset = 0
    n = len(text)
    i = 0
    while i < n:
        char = text[i]
        if char == "\\" and i + 1 < n and text[i + 1] in "_*`[":
            out.append(text[i + 1])
            offset += 1
            i += 2
            continue
        if char not in "_*`[":
            out.append(char)
            offset += _u16(char)
            i += 1
            continue
        begin = i
        url = ""
        language = ""
        if char == "[":
            end = text.find("]", i + 1)
            if end < 0 or not text.startswith("(", end + 1) or text.find(")", end + 2) < 0:
                raise EntityParseError(
                    "Can't find end of the entity starting at byte offset "
                    f"{_byte_offset(text, begin)}"
                )
            inner = text[i + 1 : end]
            close = text.find(")", end + 2)
            url = text[end + 2 : close]
            i = close + 1
            kind = "text_link"
        elif text.startswith("```", i):
            end = text.find("```", i + 3)
            if end < 0:
                raise EntityParseError(
                    "Can't find end of the entity starting at byte offset "
                    f"{_byte_offset(text, begin)}"
                )
            inner = text[i + 3 : end]
            newline = inner.find("\n")
            if newline > 0 and not any(c.isspace() for c in inner[:newline]):
                language, inner = inner[:newline], inner[newline + 1 :]
            i = end + 3
            kind = "pre"
        else:
            end = text.find(char, i + 1)
            if end < 0:
                raise EntityParseError(
                    "Can't find end of the entity starting at byte offset "
                    f"{_byte_offset(text, begin)}"
                )
            inner = text[i + 1 : end]
            i = end + 1
            kind = {"*": "bold", "_": "italic", "`": "code"}[char]
        length = _u16(inner)
        if length:
            entity: JSONDict = {"type": kind, "offset": offset, "length": length}
            if url:
                entity["url"] = url
            if language:
                entity["language"] = language
            entities.append(entity)
        out.append(inner)
        offset += length
    return "".join(out), entities


def _trim(text: str, entities: list[JSONDict]) -> tuple[str, list[JSONDict]]:
    """Telegram strips leading and trailing whitespace; entities are shifted and clipped."""
    left = text.lstrip()
    result = left.rstrip()
    if len(result) == len(text):
        return text, entities
    lead = _u16(text[: len(text) - len(left)])
    total = _u16(result)
    trimmed: list[JSONDict] = []
    for entity in entities:
        start = max(entity["offset"] - lead, 0)
        end = min(entity["offset"] + entity["length"] - lead, total)
        if end > start:
            trimmed.append({**entity, "offset": start, "length": end - start})
    return result, trimmed


_COMMAND_RE = re.compile(r"(?<![\w/@])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?")


def _command_entities(text: str) -> list[JSONDict]:
    """``bot_command`` entities, as Telegram adds to messages from users."""
    entities: list[JSONDict] = []
    position = 0
    offset = 0
    for match in _COMMAND_RE.finditer(text):
        offset += _u16(text[position : match.start()])
        length = _u16(match.group())
        entities.append({"type": "bot_command", "offset": offset, "length": length})
        offset += length
        position = match.end()
    return entities


def _image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG, GIF or JPEG image, without decoding it."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xD8, 0x01, 0xFF) or 0xD0 <= marker <= 0xD7:
                i += 1 if marker == 0xFF else 2
                continue
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height = int.from_bytes(data[i + 5 : i + 7], "big")
                width = int.from_bytes(data[i + 7 : i + 9], "big")
                return width, height
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def _embedded(message: JSONDict) -> JSONDict:
    """A message as embedded in another one (``reply_to_message``): one level deep."""
    return {key: value for key, value in message.items() if key != "reply_to_message"}


def _kind_of(message: JSONDict) -> str:
    for kind in _MEDIA_KINDS:
        if kind in message:
            return kind
    return "service"


def _chat_key(value: int | FakeUser | FakeGroup) -> int:
    return value if isinstance(value, int) else value.id


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------

_Handler = Callable[[JSONDict], Awaitable[Any]]


class LocalBotApi:
    """The local Bot API server and the tests' handle on it. See the module docstring."""

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
        self._chats: dict[int, _Chat] = {}
        self._chats_by_username: dict[str, _Chat] = {}
        self._sent: dict[int, list[SentMessage]] = {}
        self._sent_index: dict[tuple[int, int], SentMessage] = {}
        self._files: dict[str, _StoredFile] = {}
        self._files_by_path: dict[str, _StoredFile] = {}
        self._file_seq = itertools.count(1)
        self._media_group_seq = itertools.count(13_000_000_000_000_001)
        self._callback_seq = itertools.count(4_000_000_000_000_001)
        self._open_callbacks: set[str] = set()
        self._blocked: set[int] = set()
        self._fail_rules: list[_FailRule] = []

        self._updates: deque[JSONDict] = deque()
        self._update_seq = 0
        self._poll_waiter: asyncio.Future[str] | None = None
        self._webhook: _Webhook | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self._webhook_wakeup: asyncio.Event | None = None
        self._client: aiohttp.ClientSession | None = None
        self._changed = asyncio.Event()
        self._closing = False

        self._runner: web.AppRunner | None = None
        self._root_url: str | None = None
        self._handlers: dict[str, _Handler] = self._build_handlers()

        self.app = web.Application(client_max_size=MAX_UPLOAD_SIZE + 1024 * 1024)
        self.app.router.add_route("*", "/bot{token}/{method}", self._on_request)
        self.app.router.add_get("/file/bot{token}/{path:.+}", self._on_file)
        self.app.on_shutdown.append(self._on_shutdown)

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

    async def __aenter__(self) -> LocalBotApi:
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
        method = _CANONICAL.get(raw_method.lower(), raw_method)
        call = ApiCall(method=method, params={}, at=time.monotonic())
        self.calls.append(call)
        try:
            if request.match_info["token"] != self.token:
                raise ApiError(401, "Unauthorized")
            handler = self._handlers.get(method)
            if handler is None:
                if method in _CANONICAL.values():
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
                    raise _bad("can't parse JSON object") from exc
                if not isinstance(body, dict):
                    raise _bad("can't parse JSON object")
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
        return {key: self._decode_param(key, value) for key, value in raw.items()}

    @staticmethod
    def _decode_param(name: str, value: Any) -> Any:
        if isinstance(value, UploadedFile) or value is None:
            return value
        try:
            if name in _CHAT_ID_PARAMS:
                if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
                    return int(value)
                return value
            if name in _INT_PARAMS:
                return int(value)
            if name in _FLOAT_PARAMS:
                return float(value)
        except (TypeError, ValueError) as exc:
            raise _bad(f"invalid {name} specified") from exc
        if name in _BOOL_PARAMS:
            if isinstance(value, str):
                return value.strip().lower() in ("true", "1")
            return bool(value)
        if name in _JSON_PARAMS and isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError as exc:
                if name == "reply_markup":
                    raise _bad("can't parse reply keyboard markup JSON object") from exc
                raise _bad(f"can't parse {name} JSON object") from exc
        if name in ("text", "caption") and not isinstance(value, str):
            return str(value)
        return value

    # ----------------------------------------------------------------------------------------
    # Fault injection
    # ----------------------------------------------------------------------------------------

    def block(self, chat_id: int | FakeUser, *, notify: bool = False) -> None:
        """The user blocks the bot: sends and edits to the chat answer 403. ``notify`` also
        delivers the ``my_chat_member`` update Telegram sends."""
        key = _chat_key(chat_id)
        self._blocked.add(key)
        if notify:
            self._deliver_member_update(key, "member", "kicked")

    def unblock(self, chat_id: int | FakeUser, *, notify: bool = False) -> None:
        key = _chat_key(chat_id)
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
    ) -> None:
        """The next ``times`` calls of ``method`` ("*" for any; case-insensitive; optionally
        only those addressed to ``chat_id``) fail with a Telegram-shaped error."""
        if isinstance(chat_id, FakeUser | FakeGroup):
            chat_id = chat_id.id
        names = [method] if isinstance(method, str) else list(method)
        methods: frozenset[str] | None
        if "*" in names:
            methods = None
        else:
            canonical = []
            for name in names:
                if name.lower() not in _CANONICAL:
                    raise ValueError(f"unknown Bot API method {name!r}")
                canonical.append(_CANONICAL[name.lower()])
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
        self._fail_rules.append(_FailRule(methods, error, times, chat_id))

    def rate_limit(self, retry_after: int = 2, times: int = 1) -> None:
        """The next ``times`` message-sending calls (any method) answer 429."""
        self.fail(SENDING_METHODS, error_code=429, retry_after=retry_after, times=times)

    def clear_faults(self) -> None:
        self._fail_rules.clear()
        self._blocked.clear()
        self.latency = 0.0

    def set_latency(self, seconds: float) -> None:
        """Delay every request by ``seconds`` before handling it."""
        self.latency = max(0.0, seconds)

    def _check_faults(self, method: str, params: JSONDict) -> None:
        if self._fail_rules:
            target = params.get("chat_id")
            for rule in self._fail_rules:
                if rule.methods is not None and method not in rule.methods:
                    continue
                if rule.chat_id is not None and rule.chat_id != target:
                    continue
                rule.times -= 1
                if rule.times <= 0:
                    self._fail_rules.remove(rule)
                raise rule.error
        if (
            self._blocked
            and method in _BLOCKABLE_METHODS
            and params.get("chat_id") in self._blocked
        ):
            raise ApiError(403, "Forbidden: bot was blocked by the user")

    # ----------------------------------------------------------------------------------------
    # Users, groups, topics (test side)
    # ----------------------------------------------------------------------------------------

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
            self._chats[user_id] = _Chat(
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
    ) -> FakeGroup:
        """A supergroup (a forum by default) with the bot in it as ``bot_status``."""
        brief: JSONDict = {"id": chat_id, "type": "supergroup", "title": title}
        if username:
            brief["username"] = username
        if forum:
            brief["is_forum"] = True
        chat = _Chat(
            id=chat_id,
            type="supergroup",
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
        self, chat_id: int, user_id: int | FakeUser, status: MemberStatus = "member"
    ) -> None:
        """Set what getChatMember answers for the user in the group (the bot's id works too)."""
        if status not in ("member", "administrator", "creator", "left", "kicked"):
            raise ValueError(f"unsupported member status {status!r}")
        self._group(chat_id).members[_chat_key(user_id)] = status

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
        chat = self._group(chat_id)
        self._topic(chat, thread_id).closed = True
        service = self._service_message(chat, thread_id, {"forum_topic_closed": {}}, by)
        if by is not None:
            self._deliver({"message": service})

    def reopen_topic(self, chat_id: int, thread_id: int, *, by: FakeUser | None = None) -> None:
        chat = self._group(chat_id)
        self._topic(chat, thread_id).closed = False
        service = self._service_message(chat, thread_id, {"forum_topic_reopened": {}}, by)
        if by is not None:
            self._deliver({"message": service})

    def delete_topic(self, chat_id: int, thread_id: int) -> None:
        """Staff delete a topic and its messages (Telegram tells the bot nothing)."""
        chat = self._group(chat_id)
        self._remove_topic(chat, self._topic(chat, thread_id))

    def topics(self, chat_id: int) -> list[ForumTopicInfo]:
        """Every topic of the group, deleted ones included (flagged), in creation order."""
        return list(self._group(chat_id).topics.values())

    def _group(self, chat_id: int) -> _Chat:
        chat = self._chats.get(chat_id)
        if chat is None or chat.type == "private":
            raise KeyError(f"no group {chat_id}: add it with add_group()")
        return chat

    @staticmethod
    def _topic(chat: _Chat, thread_id: int) -> ForumTopicInfo:
        topic = chat.topics.get(thread_id)
        if topic is None:
            raise KeyError(f"no topic {thread_id} in chat {chat.id}")
        return topic

    # ----------------------------------------------------------------------------------------
    # Playing users (test side)
    # ----------------------------------------------------------------------------------------

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
        entities = _command_entities(text)
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
        stored = self._store_file("photo", data if data is not None else _TINY_PNG)
        if data is None:
            stored.width, stored.height = width, height
        content = self._user_caption({"photo": self._photo_sizes(stored)}, caption)
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
        content = self._user_caption({"document": self._media_object(stored)}, caption)
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
        content = self._user_caption({"voice": self._media_object(stored)}, caption)
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
        content = self._user_caption({"video": self._media_object(stored)}, caption)
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
        sticker = self._media_object(stored)
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
        entities = _command_entities(new_text)
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
        chat = self._chats.get(target_chat)
        if chat is None:
            raise KeyError(f"unknown chat {target_chat}")
        stored = chat.messages.get(message_id)
        if stored is not None:
            if stored.get("from", {}).get("id") != self.bot_id:
                raise ValueError(f"message {message_id} in chat {target_chat} is not the bot's")
            shown = dict(stored)
        elif (target_chat, message_id) in self._sent_index:
            shown = {"chat": dict(chat.brief), "message_id": message_id, "date": 0}
        else:
            raise KeyError(f"no message {message_id} in chat {target_chat}")
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

    async def send_raw_update(self, update: JSONDict) -> JSONDict:
        """Deliver any update as given (``update_id`` is assigned when missing)."""
        return self._deliver(dict(update))

    def _chat_for(self, user: FakeUser, chat_id: int | None) -> _Chat:
        key = user.id if chat_id is None else chat_id
        chat = self._chats.get(key)
        if chat is None:
            if chat_id is None:
                raise KeyError(f"unknown user {user.id}: add it with add_user()")
            raise KeyError(f"unknown chat {chat_id}: add it with add_group()")
        return chat

    def _user_caption(self, content: JSONDict, caption: str | None) -> JSONDict:
        if caption:
            content["caption"] = caption
            entities = _command_entities(caption)
            if entities:
                content["caption_entities"] = entities
        return content

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
            message["reply_to_message"] = _embedded(replied)
        elif "message_thread_id" in message:
            created = chat.messages.get(message["message_thread_id"])
            if created is not None:
                message["reply_to_message"] = _embedded(created)
        if media_group_id is not None:
            message["media_group_id"] = media_group_id
        message.update(content)
        chat.messages[message["message_id"]] = message
        if chat.type == "private":
            chat.started = True
        return self._deliver({"message": dict(message)})

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
                    "old_chat_member": {"status": old, "user": bot, **self._until(old)},
                    "new_chat_member": {"status": new, "user": bot, **self._until(new)},
                }
            }
        )

    @staticmethod
    def _until(status: str) -> JSONDict:
        return {"until_date": 0} if status == "kicked" else {}

    # ----------------------------------------------------------------------------------------
    # Updates: queue, long polling, webhook
    # ----------------------------------------------------------------------------------------

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
            waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self._poll_waiter = waiter
            try:
                reason = await asyncio.wait_for(waiter, timeout)
            except TimeoutError:
                reason = "timeout"
            finally:
                if self._poll_waiter is waiter:
                    self._poll_waiter = None
            if reason == "conflict":
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; "
                    "make sure that only one bot instance is running",
                )
            if reason == "webhook":
                return []
        return list(itertools.islice(self._updates, limit))

    async def _m_set_webhook(self, p: JSONDict) -> bool:
        url = p.get("url") or ""
        if not url:
            return await self._m_delete_webhook(p)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        if not self.allow_remote_webhooks and parts.hostname not in (
            "127.0.0.1",
            "localhost",
            "::1",
        ):
            raise _bad(
                "bad webhook: the local Bot API only delivers to loopback addresses "
                "(set allow_remote_webhooks)"
            )
        secret = p.get("secret_token") or None
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise _bad("secret token contains unallowed characters")
        if p.get("drop_pending_updates"):
            self._updates.clear()
        await self._stop_webhook_task()
        self._webhook = _Webhook(
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

    async def _webhook_loop(self, hook: _Webhook) -> None:
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
                    chat = _update_chat(update)
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
        hook: _Webhook,
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

    async def _post_update(self, hook: _Webhook, update: JSONDict) -> bool:
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

    # ----------------------------------------------------------------------------------------
    # Reading what the bot did (test side)
    # ----------------------------------------------------------------------------------------

    def sent(self, chat_id: int | FakeUser, *, thread_id: int | None = None) -> list[SentMessage]:
        """Messages the bot created in the chat (optionally in one topic), oldest first."""
        messages = self._sent.get(_chat_key(chat_id), [])
        if thread_id is None:
            return list(messages)
        return [m for m in messages if m.message_thread_id == thread_id]

    def last_sent(self, chat_id: int | FakeUser, *, thread_id: int | None = None) -> SentMessage:
        messages = self.sent(chat_id, thread_id=thread_id)
        if not messages:
            raise AssertionError(f"the bot sent nothing to chat {_chat_key(chat_id)}")
        return messages[-1]

    def message(self, chat_id: int | FakeUser, message_id: int) -> JSONDict:
        """The stored Message (as Telegram keeps it: markup removed, entities, edits applied)."""
        chat = self._chats.get(_chat_key(chat_id))
        if chat is None or message_id not in chat.messages:
            raise KeyError(f"no message {message_id} in chat {_chat_key(chat_id)}")
        return chat.messages[message_id]

    def history(self, chat_id: int | FakeUser) -> list[JSONDict]:
        """Every stored message of the chat (users', the bot's, service), oldest first."""
        chat = self._chats.get(_chat_key(chat_id))
        return [] if chat is None else list(chat.messages.values())

    def calls_of(self, method: str) -> list[ApiCall]:
        name = _CANONICAL.get(method.lower(), method)
        return [call for call in self.calls if call.method == name]

    def my_commands(self, language_code: str = "", scope: str = "default") -> list[JSONDict]:
        return self.commands.get((scope, language_code), [])

    def file_bytes(self, file_id: str) -> bytes:
        return self._files[file_id].data

    async def wait_for(
        self,
        predicate: Callable[[], bool],
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
        description: str = "the condition",
    ) -> None:
        """Wait until ``predicate()`` holds; rechecked whenever the server's state changes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {description}\n{self.dump()}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def wait_for_sent(
        self,
        chat_id: int | FakeUser,
        count: int = 1,
        *,
        thread_id: int | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[SentMessage]:
        """Wait until the bot has sent at least ``count`` messages to the chat (topic); returns
        all of them."""
        key = _chat_key(chat_id)

        def enough() -> bool:
            messages = self._sent.get(key, [])
            if thread_id is None:
                return len(messages) >= count
            return sum(1 for m in messages if m.message_thread_id == thread_id) >= count

        where = f"chat {key}" + (f" thread {thread_id}" if thread_id is not None else "")
        try:
            await self.wait_for(enough, timeout=timeout, description=f"{count} sent to {where}")
        except AssertionError:
            got = self.sent(key, thread_id=thread_id)
            raise AssertionError(
                f"expected at least {count} message(s) sent to {where} within {timeout}s, "
                f"got {len(got)}\n{self.dump(key)}"
            ) from None
        return self.sent(key, thread_id=thread_id)

    async def wait_for_call(
        self,
        method: str,
        count: int = 1,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[ApiCall]:
        """Wait until the bot made (and the server answered) ``count`` calls of ``method``."""
        name = _CANONICAL.get(method.lower(), method)

        def done() -> list[ApiCall]:
            return [c for c in self.calls if c.method == name and c.status]

        await self.wait_for(
            lambda: len(done()) >= count, timeout=timeout, description=f"{count} {name} call(s)"
        )
        return done()

    def dump(self, chat_id: int | None = None) -> str:
        """A readable account of what the bot did, for assertion messages."""
        lines: list[str] = []
        chats = [chat_id] if chat_id is not None else list(self._sent)
        for key in chats:
            lines.append(f"sent to chat {key}:")
            for m in self._sent.get(key, []):
                body = (m.body or "")[:160].replace("\n", "\\n")
                thread = f" thread={m.message_thread_id}" if m.message_thread_id else ""
                lines.append(f"  #{m.message_id} {m.method} {m.kind}{thread}: {body!r}")
            if not self._sent.get(key):
                lines.append("  (nothing)")
        failed = [c for c in self.calls if c.status not in (0, 200)][-10:]
        if failed:
            lines.append("failed calls (last 10):")
            for c in failed:
                target = c.params.get("chat_id", "")
                lines.append(f"  {c.method} chat={target} -> {c.status} {c.error}")
        recent = [c for c in self.calls if c.method != "getUpdates"][-10:]
        lines.append("recent calls (last 10, getUpdates omitted):")
        lines.extend(f"  {c.method} {c.params.get('chat_id', '')} -> {c.status}" for c in recent)
        lines.append(f"pending updates: {len(self._updates)}")
        if self.server_errors:
            lines.append(f"local Bot API bugs: {self.server_errors[-5:]}")
        return "\n".join(lines)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _now(self) -> int:
        return int(self.time_source())

    # ----------------------------------------------------------------------------------------
    # Method table
    # ----------------------------------------------------------------------------------------

    def _build_handlers(self) -> dict[str, _Handler]:
        media = {
            "sendPhoto": "photo",
            "sendDocument": "document",
            "sendVoice": "voice",
            "sendVideo": "video",
            "sendAudio": "audio",
            "sendSticker": "sticker",
            "sendAnimation": "animation",
            "sendVideoNote": "video_note",
        }
        handlers: dict[str, _Handler] = {
            "getMe": self._m_get_me,
            "getUpdates": self._m_get_updates,
            "setWebhook": self._m_set_webhook,
            "deleteWebhook": self._m_delete_webhook,
            "getWebhookInfo": self._m_get_webhook_info,
            "logOut": self._m_true,
            "close": self._m_true,
            "sendMessage": self._m_send_message,
            "editMessageText": self._m_edit_message_text,
            "editMessageCaption": self._m_edit_message_caption,
            "editMessageReplyMarkup": self._m_edit_message_reply_markup,
            "deleteMessage": self._m_delete_message,
            "deleteMessages": self._m_delete_messages,
            "answerCallbackQuery": self._m_answer_callback_query,
            "copyMessage": self._m_copy_message,
            "copyMessages": self._m_copy_messages,
            "forwardMessage": self._m_forward_message,
            "forwardMessages": self._m_forward_messages,
            "sendMediaGroup": self._m_send_media_group,
            "sendLocation": self._m_send_location,
            "sendVenue": self._m_send_venue,
            "sendContact": self._m_send_contact,
            "sendDice": self._m_send_dice,
            "sendChatAction": self._m_send_chat_action,
            "setMessageReaction": self._m_message_true,
            "pinChatMessage": self._m_message_true,
            "unpinChatMessage": self._m_chat_true,
            "unpinAllChatMessages": self._m_chat_true,
            "leaveChat": self._m_chat_true,
            "setMyCommands": self._m_set_my_commands,
            "getMyCommands": self._m_get_my_commands,
            "deleteMyCommands": self._m_delete_my_commands,
            "getChat": self._m_get_chat,
            "getChatMember": self._m_get_chat_member,
            "getChatAdministrators": self._m_get_chat_administrators,
            "getChatMemberCount": self._m_get_chat_member_count,
            "createForumTopic": self._m_create_forum_topic,
            "editForumTopic": self._m_edit_forum_topic,
            "closeForumTopic": self._m_close_forum_topic,
            "reopenForumTopic": self._m_reopen_forum_topic,
            "deleteForumTopic": self._m_delete_forum_topic,
            "unpinAllForumTopicMessages": self._m_chat_true,
            "getForumTopicIconStickers": self._m_empty_list,
            "getFile": self._m_get_file,
        }
        for name in ("setMyName", "setMyDescription", "setMyShortDescription"):
            handlers[name] = self._settings_setter(name)
        handlers["setChatMenuButton"] = self._settings_setter("setChatMenuButton")
        handlers["setMyDefaultAdministratorRights"] = self._settings_setter(
            "setMyDefaultAdministratorRights"
        )
        handlers["getMyName"] = self._settings_getter("setMyName", "name")
        handlers["getMyDescription"] = self._settings_getter("setMyDescription", "description")
        handlers["getMyShortDescription"] = self._settings_getter(
            "setMyShortDescription", "short_description"
        )
        handlers["getChatMenuButton"] = self._m_get_chat_menu_button
        for method, kind in media.items():
            handlers[method] = self._media_sender(method, kind)
        return handlers

    def _settings_setter(self, name: str) -> _Handler:
        async def setter(p: JSONDict) -> bool:
            self.bot_settings[name] = p
            return True

        return setter

    def _settings_getter(self, name: str, key: str) -> _Handler:
        async def getter(p: JSONDict) -> JSONDict:
            return {key: self.bot_settings.get(name, {}).get(key, "")}

        return getter

    def _media_sender(self, method: str, kind: str) -> _Handler:
        async def send(p: JSONDict) -> JSONDict:
            return self._send_media(p, method, kind)

        return send

    # ----------------------------------------------------------------------------------------
    # Bot API: helpers shared by the methods
    # ----------------------------------------------------------------------------------------

    def _chat(self, value: Any, name: str = "chat_id") -> _Chat:
        if value is None or value == "":
            raise _bad(f"{name} is empty")
        chat: _Chat | None
        if isinstance(value, int):
            chat = self._chats.get(value)
        elif isinstance(value, str) and value.startswith("@"):
            chat = self._chats_by_username.get(value[1:].lower())
        else:
            chat = None
        if chat is None:
            raise _bad("chat not found")
        return chat

    def _writable_chat(self, value: Any) -> _Chat:
        chat = self._chat(value)
        if chat.type == "private":
            if not chat.started:
                raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
        else:
            status = chat.members.get(self.bot_id, "left")
            if status == "kicked":
                raise ApiError(403, "Forbidden: bot was kicked from the supergroup chat")
            if status == "left":
                raise ApiError(403, "Forbidden: bot is not a member of the supergroup chat")
        return chat

    def _thread(self, chat: _Chat, value: Any) -> int | None:
        """The topic a message goes to: None for the General topic and non-forum chats."""
        if not value or not chat.is_forum or value == 1:
            return None
        topic = chat.topics.get(value)
        if topic is None or topic.deleted:
            raise _bad("message thread not found")
        if topic.closed:
            raise _bad("TOPIC_CLOSED")
        return int(value)

    def _target(self, p: JSONDict) -> _Target:
        chat = self._writable_chat(p.get("chat_id"))
        thread_id = self._thread(chat, p.get("message_thread_id"))
        reply_to: JSONDict | None = None
        reply = p.get("reply_parameters")
        if not isinstance(reply, dict):
            reply = {}
            if p.get("reply_to_message_id"):
                reply = {
                    "message_id": p["reply_to_message_id"],
                    "allow_sending_without_reply": p.get("allow_sending_without_reply", False),
                }
        if reply.get("message_id"):
            source = chat
            if reply.get("chat_id") not in (None, chat.id):
                source = self._chat(self._decode_param("chat_id", reply["chat_id"]))
            reply_to = source.messages.get(int(reply["message_id"]))
            if reply_to is None and not reply.get("allow_sending_without_reply"):
                raise _bad("message to be replied not found")
            if reply_to is not None and thread_id is None and source is chat:
                replied_thread = reply_to.get("message_thread_id")
                if replied_thread and reply_to.get("is_topic_message"):
                    thread_id = self._thread(chat, replied_thread)
        markup = self._markup(p.get("reply_markup"))
        return _Target(chat, thread_id, reply_to, markup)

    @staticmethod
    def _markup(markup: Any, *, inline_only: bool = False) -> JSONDict | None:
        if markup is None or markup == "":
            return None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            rows = markup["inline_keyboard"]
            if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
                raise _bad(
                    'field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of '
                    "Arrays"
                )
            for row in rows:
                for button in row:
                    if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                        raise _bad("can't parse inline keyboard button: Text must be a String")
                    actions = _INLINE_BUTTON_ACTIONS.intersection(button)
                    if not actions:
                        raise _bad("text buttons are unallowed in the inline keyboard")
                    if "callback_data" in button:
                        data = button["callback_data"]
                        if not isinstance(data, str) or not 1 <= len(data.encode()) <= 64:
                            raise _bad("BUTTON_DATA_INVALID")
                    if "url" in button and not re.match(
                        r"(https?|tg)://", str(button["url"]), re.IGNORECASE
                    ):
                        raise _bad(
                            f"inline keyboard button URL '{button['url']}' is invalid: "
                            "Wrong HTTP URL"
                        )
            return markup
        if inline_only:
            raise _bad("inline keyboard expected")
        if "keyboard" in markup:
            rows = markup["keyboard"]
            if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
                raise _bad('field "keyboard" of the ReplyKeyboardMarkup must be an Array')
            for row in rows:
                for button in row:
                    text = button if isinstance(button, str) else button.get("text")
                    if not isinstance(text, str) or not text:
                        raise _bad("can't parse keyboard button: Text must be non-empty")
            return markup
        if markup.get("remove_keyboard") or markup.get("force_reply"):
            return markup
        raise _bad("can't parse reply keyboard markup JSON object")

    @staticmethod
    def _format(text: str, parse_mode: Any, entities: Any) -> tuple[str, list[JSONDict]]:
        mode = parse_mode.lower() if isinstance(parse_mode, str) else ""
        try:
            if mode == "html":
                plain, found = parse_html(text)
            elif mode == "markdownv2":
                plain, found = parse_markdown_v2(text)
            elif mode == "markdown":
                plain, found = parse_markdown(text)
            elif mode == "":
                plain = text
                found = [e for e in entities if isinstance(e, dict)] if entities else []
            else:
                raise _bad("unsupported parse_mode")
        except EntityParseError as exc:
            raise _bad(f"can't parse entities: {exc}") from exc
        return _trim(plain, found)

    def _text_content(self, p: JSONDict) -> JSONDict:
        text = p.get("text")
        if not text:
            raise _bad("message text is empty")
        plain, entities = self._format(text, p.get("parse_mode"), p.get("entities"))
        if not plain:
            raise _bad("message text is empty")
        if len(plain) > MAX_TEXT_LENGTH:
            raise _bad("message is too long")
        content: JSONDict = {"text": plain}
        if entities:
            content["entities"] = entities
        options = p.get("link_preview_options")
        if isinstance(options, dict) and options:
            content["link_preview_options"] = options
        elif p.get("disable_web_page_preview"):
            content["link_preview_options"] = {"is_disabled": True}
        return content

    def _caption_content(
        self, caption: Any, parse_mode: Any, entities: Any, content: JSONDict
    ) -> JSONDict:
        content.pop("caption", None)
        content.pop("caption_entities", None)
        if caption:
            plain, found = self._format(str(caption), parse_mode, entities)
            if len(plain) > MAX_CAPTION_LENGTH:
                raise _bad("message caption is too long")
            if plain:
                content["caption"] = plain
            if found:
                content["caption_entities"] = found
        return content

    def _post(
        self,
        target: _Target,
        content: JSONDict,
        method: str,
        params: JSONDict,
        *,
        text: str | None = None,
        caption: str | None = None,
        parse_mode: str | None = None,
        copied_from: tuple[int, int] | None = None,
        media_group_id: str | None = None,
        extra: JSONDict | None = None,
    ) -> JSONDict:
        """Create a bot message in the target chat, store and record it."""
        chat = target.chat
        message: JSONDict = {
            "message_id": chat.next_message_id(),
            "from": self.bot_user,
            "chat": dict(chat.brief),
            "date": self._now(),
        }
        if target.thread_id is not None:
            message["message_thread_id"] = target.thread_id
            message["is_topic_message"] = True
        if target.reply_to is not None:
            message["reply_to_message"] = _embedded(target.reply_to)
        elif target.thread_id is not None and target.thread_id in chat.messages:
            message["reply_to_message"] = _embedded(chat.messages[target.thread_id])
        if media_group_id is not None:
            message["media_group_id"] = media_group_id
        if extra:
            message.update(extra)
        message.update(content)
        if target.markup is not None and "inline_keyboard" in target.markup:
            message["reply_markup"] = target.markup
        if params.get("protect_content"):
            message["has_protected_content"] = True
        chat.messages[message["message_id"]] = message
        kind = _kind_of(message)
        file_id: str | None = None
        if kind == "photo":
            file_id = message["photo"][-1]["file_id"]
        elif isinstance(message.get(kind), dict):
            file_id = message[kind].get("file_id")
        record = SentMessage(
            chat_id=chat.id,
            message_id=message["message_id"],
            method=method,
            kind=kind,
            text=text if text is not None else message.get("text"),
            caption=caption if caption is not None else message.get("caption"),
            parse_mode=parse_mode,
            reply_markup=target.markup,
            message_thread_id=target.thread_id,
            reply_to_message_id=(
                target.reply_to["message_id"] if target.reply_to is not None else None
            ),
            media_group_id=media_group_id,
            file_id=file_id,
            copied_from=copied_from,
            at=time.monotonic(),
            message=message,
            params=params,
        )
        self._sent.setdefault(chat.id, []).append(record)
        self._sent_index[(chat.id, record.message_id)] = record
        self._notify()
        return message

    def _service_message(
        self, chat: _Chat, thread_id: int | None, content: JSONDict, by: FakeUser | None
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

    # ----------------------------------------------------------------------------------------
    # Bot API: files
    # ----------------------------------------------------------------------------------------

    def _store_file(
        self,
        kind: str,
        data: bytes,
        *,
        file_name: str | None = None,
        mime_type: str | None = None,
        width: int | None = None,
        height: int | None = None,
        duration: int | None = None,
    ) -> _StoredFile:
        number = next(self._file_seq)
        directory, extension = _FILE_DIRS.get(kind, ("documents", ""))
        if kind == "document" and file_name and "." in file_name:
            extension = "." + file_name.rsplit(".", 1)[1][:10]
        prefix = {"photo": "AgAC", "sticker": "CAAC", "voice": "AwAC"}.get(kind, "BQAC")
        stored = _StoredFile(
            kind=kind,
            file_id=f"{prefix}{kind[:3]}{number:08d}LocalBotApi",
            file_unique_id=f"AQAD{number:08d}",
            file_path=f"{directory}/file_{number}{extension}",
            data=data,
            file_name=file_name,
            mime_type=mime_type or _DEFAULT_MIME.get(kind),
            width=width,
            height=height,
            duration=duration,
        )
        if kind in ("photo", "sticker") and (width is None or height is None):
            size = _image_size(data)
            if size is not None:
                stored.width, stored.height = size
        self._files[stored.file_id] = stored
        self._files_by_path[stored.file_path] = stored
        return stored

    def _photo_sizes(self, stored: _StoredFile) -> list[JSONDict]:
        if stored.photo_sizes is not None:
            return stored.photo_sizes
        width, height = stored.width or 640, stored.height or 480
        sizes: list[JSONDict] = []
        largest = max(width, height)
        if largest > 320:
            scale = 320 / largest
            thumb = _StoredFile(
                kind="photo",
                file_id=stored.file_id + "-m",
                file_unique_id=stored.file_unique_id + "m",
                file_path=stored.file_path.replace(".jpg", "_m.jpg"),
                data=stored.data,
                mime_type=stored.mime_type,
                width=max(1, round(width * scale)),
                height=max(1, round(height * scale)),
            )
            self._files[thumb.file_id] = thumb
            self._files_by_path[thumb.file_path] = thumb
            sizes.append(self._photo_size(thumb))
        sizes.append(self._photo_size(stored))
        for entry in [stored] + [self._files[s["file_id"]] for s in sizes[:-1]]:
            entry.photo_sizes = sizes
        return sizes

    @staticmethod
    def _photo_size(stored: _StoredFile) -> JSONDict:
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
            "width": stored.width or 640,
            "height": stored.height or 480,
        }

    @staticmethod
    def _media_object(stored: _StoredFile) -> JSONDict:
        media: JSONDict = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
        }
        kind = stored.kind
        if kind in ("video", "animation", "sticker"):
            media["width"] = stored.width or (512 if kind == "sticker" else 1280)
            media["height"] = stored.height or (512 if kind == "sticker" else 720)
        if kind in ("video", "animation", "voice", "audio", "video_note"):
            media["duration"] = stored.duration or 0
        if kind == "video_note":
            media["length"] = stored.width or 240
        if kind == "sticker":
            media.update(type="regular", is_animated=False, is_video=False)
        if kind in ("document", "video", "animation", "audio") and stored.file_name:
            media["file_name"] = stored.file_name
        if kind != "sticker" and stored.mime_type:
            media["mime_type"] = stored.mime_type
        return media

    def _resolve_file(self, p: JSONDict, name: str, kind: str, value: Any = None) -> _StoredFile:
        """The file a parameter designates: an upload, an attach:// part, a file_id or a URL
        (URLs are registered without being fetched)."""
        value = p.get(name) if value is None else value
        if isinstance(value, str) and value.startswith("attach://"):
            value = p.get(value[len("attach://") :])
            if value is None:
                raise _bad("wrong file identifier/HTTP URL specified")
        if value is None or value == "":
            raise _bad(f"there is no {name} in the request")
        meta: JSONDict = {
            key: p[key] for key in ("duration", "width", "height") if isinstance(p.get(key), int)
        }
        if isinstance(value, UploadedFile):
            if len(value.data) > MAX_UPLOAD_SIZE:
                raise ApiError(413, "Request Entity Too Large")
            mime = value.content_type
            if not mime or mime == "application/octet-stream":
                mime = mimetypes.guess_type(value.filename or "")[0] or mime
            return self._store_file(
                kind, value.data, file_name=value.filename, mime_type=mime, **meta
            )
        if not isinstance(value, str):
            raise _bad("wrong file identifier/HTTP URL specified")
        if re.match(r"https?://", value):
            file_name = urlsplit(value).path.rsplit("/", 1)[-1] or None
            return self._store_file(kind, b"", file_name=file_name, **meta)
        stored = self._files.get(value)
        if stored is None:
            raise _bad("wrong file identifier/HTTP URL specified")
        if (stored.kind == "photo") != (kind == "photo"):
            shown = {"photo": "Photo", "video_note": "VideoNote"}.get(
                stored.kind, stored.kind.capitalize()
            )
            wanted = {"photo": "Photo", "video_note": "VideoNote"}.get(kind, kind.capitalize())
            raise _bad(f"can't use file of type {shown} as {wanted}")
        return stored

    def _file_content(self, kind: str, stored: _StoredFile) -> JSONDict:
        if kind == "photo":
            return {"photo": self._photo_sizes(stored)}
        media = self._media_object(stored) if stored.kind == kind else None
        if media is None:
            as_kind = _StoredFile(**{**stored.__dict__, "kind": kind})
            media = self._media_object(as_kind)
        content: JSONDict = {kind: media}
        if kind == "animation":
            document = self._media_object(_StoredFile(**{**stored.__dict__, "kind": "document"}))
            content["document"] = document
        return content

    def _send_media(self, p: JSONDict, method: str, kind: str) -> JSONDict:
        target = self._target(p)
        stored = self._resolve_file(p, kind, kind)
        content = self._file_content(kind, stored)
        if kind == "sticker" and isinstance(p.get("emoji"), str):
            content["sticker"]["emoji"] = p["emoji"]
        if kind == "audio":
            for key in ("title", "performer"):
                if p.get(key):
                    content["audio"][key] = p[key]
        if kind != "sticker":
            self._caption_content(
                p.get("caption"), p.get("parse_mode"), p.get("caption_entities"), content
            )
            if p.get("has_spoiler"):
                content["has_media_spoiler"] = True
            if p.get("show_caption_above_media"):
                content["show_caption_above_media"] = True
        return self._post(
            target,
            content,
            method,
            p,
            caption=p.get("caption") or None,
            parse_mode=p.get("parse_mode"),
        )

    async def _m_get_file(self, p: JSONDict) -> JSONDict:
        stored = self._files.get(p.get("file_id") or "")
        if stored is None:
            raise _bad("invalid file_id")
        if len(stored.data) > MAX_DOWNLOAD_SIZE:
            raise _bad("file is too big")
        return stored.get_file()

    # ----------------------------------------------------------------------------------------
    # Bot API: methods
    # ----------------------------------------------------------------------------------------

    async def _m_true(self, p: JSONDict) -> bool:
        return True

    async def _m_empty_list(self, p: JSONDict) -> list[Any]:
        return []

    async def _m_chat_true(self, p: JSONDict) -> bool:
        self._chat(p.get("chat_id"))
        return True

    async def _m_message_true(self, p: JSONDict) -> bool:
        chat = self._chat(p.get("chat_id"))
        if p.get("message_id") not in chat.messages:
            raise _bad("message not found")
        return True

    async def _m_get_me(self, p: JSONDict) -> JSONDict:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _m_send_message(self, p: JSONDict) -> JSONDict:
        target = self._target(p)
        content = self._text_content(p)
        return self._post(
            target, content, "sendMessage", p, text=p["text"], parse_mode=p.get("parse_mode")
        )

    async def _m_send_location(self, p: JSONDict) -> JSONDict:
        target = self._target(p)
        latitude, longitude = p.get("latitude"), p.get("longitude")
        if latitude is None or longitude is None:
            raise _bad("wrong latitude or longitude specified")
        content = {"location": {"latitude": latitude, "longitude": longitude}}
        return self._post(target, content, "sendLocation", p)

    async def _m_send_venue(self, p: JSONDict) -> JSONDict:
        target = self._target(p)
        location = {"latitude": p.get("latitude"), "longitude": p.get("longitude")}
        venue = {"location": location, "title": p.get("title"), "address": p.get("address")}
        if None in location.values() or not venue["title"] or not venue["address"]:
            raise _bad("venue title, address and location are required")
        return self._post(target, {"venue": venue, "location": location}, "sendVenue", p)

    async def _m_send_contact(self, p: JSONDict) -> JSONDict:
        target = self._target(p)
        if not p.get("phone_number") or not p.get("first_name"):
            raise _bad("phone number and first name must be non-empty")
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
            raise _bad("wrong parameter action in request")
        self._thread(chat, p.get("message_thread_id"))
        return True

    async def _m_send_media_group(self, p: JSONDict) -> list[JSONDict]:
        target = self._target({**p, "reply_markup": None})
        items = p.get("media")
        if not isinstance(items, list) or not 2 <= len(items) <= 10:
            raise _bad("media group must contain 2-10 items")
        prepared: list[tuple[JSONDict, JSONDict]] = []
        for item in items:
            if not isinstance(item, dict) or item.get("type") not in (
                "photo",
                "video",
                "document",
                "audio",
            ):
                raise _bad("unsupported media type in the media group")
            kind = item["type"]
            stored = self._resolve_file(
                {**p, **{k: v for k, v in item.items() if k != "media"}},
                "media",
                kind,
                item.get("media"),
            )
            content = self._file_content(kind, stored)
            self._caption_content(
                item.get("caption"),
                item.get("parse_mode", p.get("parse_mode")),
                item.get("caption_entities"),
                content,
            )
            if item.get("has_spoiler"):
                content["has_media_spoiler"] = True
            prepared.append((item, content))
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

    def _source_message(self, p: JSONDict, missing: str) -> tuple[_Chat, JSONDict]:
        source_chat = self._chat(p.get("from_chat_id"), "from_chat_id")
        message_id = p.get("message_id")
        if not message_id:
            raise _bad("message identifier is not specified")
        source = source_chat.messages.get(message_id)
        if source is None:
            raise _bad(missing)
        return source_chat, source

    def _copied_content(self, source: JSONDict, action: str) -> JSONDict:
        if source.get("has_protected_content"):
            raise _bad("message has protected content and can't be forwarded")
        content = {key: source[key] for key in _CONTENT_KEYS if key in source}
        if _kind_of(content) == "service":
            raise _bad(f"message can't be {action}")
        return content

    def _copy(self, p: JSONDict, target: _Target, method: str) -> JSONDict:
        source_chat, source = self._source_message(p, "message to copy not found")
        content = self._copied_content(source, "copied")
        if "caption" in p and _kind_of(content) not in ("text", "service"):
            self._caption_content(
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
        for message_id in self._message_ids(p):
            with contextlib.suppress(ApiError):
                copy = self._copy({**p, "message_id": message_id}, target, "copyMessages")
                results.append({"message_id": copy["message_id"]})
        if not results:
            raise _bad("messages to copy not found")
        return results

    @staticmethod
    def _message_ids(p: JSONDict) -> list[int]:
        ids = p.get("message_ids")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
            raise _bad("message_ids must contain 1-100 message identifiers")
        return [int(i) for i in ids]

    def _forward(self, p: JSONDict, target: _Target, method: str) -> JSONDict:
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
        for message_id in self._message_ids(p):
            with contextlib.suppress(ApiError):
                message = self._forward({**p, "message_id": message_id}, target, "forwardMessages")
                results.append({"message_id": message["message_id"]})
        if not results:
            raise _bad("messages to forward not found")
        return results

    def _editable(self, p: JSONDict) -> JSONDict:
        if p.get("inline_message_id"):
            raise _bad("MESSAGE_ID_INVALID")
        chat = self._chat(p.get("chat_id"))
        message_id = p.get("message_id")
        if not message_id:
            raise _bad("message identifier is not specified")
        message = chat.messages.get(message_id)
        if message is None:
            raise _bad("message to edit not found")
        if message.get("from", {}).get("id") != self.bot_id:
            raise _bad("message can't be edited")
        return message

    @staticmethod
    def _inline_markup(p: JSONDict) -> JSONDict | None:
        markup = LocalBotApi._markup(p.get("reply_markup"), inline_only=True)
        return markup if markup and markup.get("inline_keyboard") else None

    def _apply_edit(self, message: JSONDict, changes: JSONDict, markup: JSONDict | None) -> None:
        before = {key: message.get(key) for key in changes}
        if before == changes and message.get("reply_markup") == markup:
            raise ApiError(400, _NOT_MODIFIED)
        for key, value in changes.items():
            if value is None:
                message.pop(key, None)
            else:
                message[key] = value
        if markup is None:
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = markup
        message["edit_date"] = self._now()

    async def _m_edit_message_text(self, p: JSONDict) -> JSONDict:
        message = self._editable(p)
        markup = self._inline_markup(p)
        if "text" not in message:
            raise _bad("there is no text in the message to edit")
        content = self._text_content(p)
        content.setdefault("entities", None)
        self._apply_edit(message, content, markup)
        return message

    async def _m_edit_message_caption(self, p: JSONDict) -> JSONDict:
        message = self._editable(p)
        markup = self._inline_markup(p)
        if _kind_of(message) in ("text", "service", "sticker", "location", "contact", "dice"):
            raise _bad("there is no caption in the message to edit")
        content = self._caption_content(
            p.get("caption"), p.get("parse_mode"), p.get("caption_entities"), {}
        )
        content.setdefault("caption", None)
        content.setdefault("caption_entities", None)
        self._apply_edit(message, content, markup)
        return message

    async def _m_edit_message_reply_markup(self, p: JSONDict) -> JSONDict:
        message = self._editable(p)
        self._apply_edit(message, {}, self._inline_markup(p))
        return message

    async def _m_delete_message(self, p: JSONDict) -> bool:
        chat = self._chat(p.get("chat_id"))
        if not self._delete(chat, p.get("message_id")):
            raise _bad("message to delete not found")
        return True

    async def _m_delete_messages(self, p: JSONDict) -> bool:
        chat = self._chat(p.get("chat_id"))
        for message_id in self._message_ids(p):
            self._delete(chat, message_id)
        return True

    def _delete(self, chat: _Chat, message_id: Any) -> bool:
        if chat.messages.pop(message_id, None) is None:
            return False
        record = self._sent_index.get((chat.id, message_id))
        if record is not None:
            record.deleted = True
        return True

    async def _m_answer_callback_query(self, p: JSONDict) -> bool:
        query_id = p.get("callback_query_id")
        if query_id not in self._open_callbacks:
            raise ApiError(400, _QUERY_INVALID)
        text = p.get("text")
        if isinstance(text, str) and len(text) > 200:
            raise _bad("MESSAGE_TOO_LONG")
        self._open_callbacks.discard(query_id)
        self.answered_callbacks.append(p)
        return True

    # Commands and bot settings

    @staticmethod
    def _scope_key(scope: Any) -> str:
        if not isinstance(scope, dict) or scope.get("type", "default") == "default":
            return "default"
        parts = [str(scope.get("type"))]
        parts += [str(scope[key]) for key in ("chat_id", "user_id") if key in scope]
        return ":".join(parts)

    @staticmethod
    def _language(p: JSONDict) -> str:
        language = p.get("language_code") or ""
        if language and not re.fullmatch(r"[a-z]{2}", language):
            raise _bad("invalid language code specified")
        return str(language)

    async def _m_set_my_commands(self, p: JSONDict) -> bool:
        commands = p.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad("commands must be an Array of at most 100 BotCommand")
        for command in commands:
            if not isinstance(command, dict) or not re.fullmatch(
                r"[a-z0-9_]{1,32}", str(command.get("command", ""))
            ):
                raise _bad("BOT_COMMAND_INVALID")
            description = command.get("description")
            if not isinstance(description, str) or not 1 <= len(description) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
        key = (self._scope_key(p.get("scope")), self._language(p))
        self.commands[key] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        return True

    async def _m_get_my_commands(self, p: JSONDict) -> list[JSONDict]:
        return self.commands.get((self._scope_key(p.get("scope")), self._language(p)), [])

    async def _m_delete_my_commands(self, p: JSONDict) -> bool:
        self.commands.pop((self._scope_key(p.get("scope")), self._language(p)), None)
        return True

    async def _m_get_chat_menu_button(self, p: JSONDict) -> JSONDict:
        button = self.bot_settings.get("setChatMenuButton", {}).get("menu_button")
        return button if isinstance(button, dict) else {"type": "default"}

    # Chats and members

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

    def _member(self, user_id: int, status: str) -> JSONDict:
        member: JSONDict = {"status": status, "user": self._user_dict(user_id)}
        if status == "creator":
            member["is_anonymous"] = False
        elif status == "administrator":
            member.update(
                can_be_edited=False,
                is_anonymous=False,
                can_manage_chat=True,
                can_delete_messages=True,
                can_manage_video_chats=True,
                can_restrict_members=True,
                can_promote_members=False,
                can_change_info=True,
                can_invite_users=True,
                can_post_stories=False,
                can_edit_stories=False,
                can_delete_stories=False,
                can_pin_messages=True,
                can_manage_topics=True,
            )
        elif status == "kicked":
            member["until_date"] = 0
        return member

    async def _m_get_chat_member(self, p: JSONDict) -> JSONDict:
        chat = self._chat(p.get("chat_id"))
        user_id = p.get("user_id")
        if not isinstance(user_id, int):
            raise _bad("user_id is empty")
        if chat.type == "private":
            status = "member" if user_id in (chat.id, self.bot_id) else "left"
            if user_id == self.bot_id and chat.id in self._blocked:
                status = "kicked"
        else:
            status = chat.members.get(user_id, "left")
        return self._member(user_id, status)

    async def _m_get_chat_administrators(self, p: JSONDict) -> list[JSONDict]:
        chat = self._chat(p.get("chat_id"))
        if chat.type == "private":
            raise _bad("there are no administrators in the private chat")
        return [
            self._member(user_id, status)
            for user_id, status in chat.members.items()
            if status in ("creator", "administrator")
        ]

    async def _m_get_chat_member_count(self, p: JSONDict) -> int:
        chat = self._chat(p.get("chat_id"))
        if chat.type == "private":
            return 2
        present = ("member", "administrator", "creator")
        return sum(1 for status in chat.members.values() if status in present)

    # Forum topics

    def _forum(self, p: JSONDict) -> _Chat:
        chat = self._chat(p.get("chat_id"))
        if not chat.is_forum:
            raise _bad("the chat is not a forum")
        if chat.members.get(self.bot_id) not in ("administrator", "creator"):
            raise _bad("not enough rights to manage topics")
        return chat

    def _existing_topic(self, chat: _Chat, p: JSONDict) -> ForumTopicInfo:
        topic = chat.topics.get(p.get("message_thread_id") or 0)
        if topic is None or topic.deleted:
            raise _bad("message thread not found")
        return topic

    def _new_topic(
        self,
        chat: _Chat,
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

    async def _m_create_forum_topic(self, p: JSONDict) -> JSONDict:
        chat = self._forum(p)
        name = p.get("name") or ""
        if not name.strip():
            raise _bad("TOPIC_TITLE_EMPTY")
        if len(name) > 128:
            raise _bad("TOPIC_TITLE_INVALID")
        icon_color = p.get("icon_color") or FORUM_ICON_COLORS[0]
        if icon_color not in FORUM_ICON_COLORS:
            raise _bad("ICON_COLOR_INVALID")
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
                raise _bad("TOPIC_TITLE_INVALID")
            topic.name = edited["name"] = name
        if emoji is not None and (emoji or None) != topic.icon_custom_emoji_id:
            topic.icon_custom_emoji_id = emoji or None
            edited["icon_custom_emoji_id"] = emoji
        if not edited:
            raise _bad("TOPIC_NOT_MODIFIED")
        self._service_message(chat, topic.message_thread_id, {"forum_topic_edited": edited}, None)
        return True

    async def _m_close_forum_topic(self, p: JSONDict) -> bool:
        chat = self._forum(p)
        topic = self._existing_topic(chat, p)
        if topic.closed:
            raise _bad("TOPIC_NOT_MODIFIED")
        topic.closed = True
        self._service_message(chat, topic.message_thread_id, {"forum_topic_closed": {}}, None)
        return True

    async def _m_reopen_forum_topic(self, p: JSONDict) -> bool:
        chat = self._forum(p)
        topic = self._existing_topic(chat, p)
        if not topic.closed:
            raise _bad("TOPIC_NOT_MODIFIED")
        topic.closed = False
        self._service_message(chat, topic.message_thread_id, {"forum_topic_reopened": {}}, None)
        return True

    async def _m_delete_forum_topic(self, p: JSONDict) -> bool:
        chat = self._forum(p)
        self._remove_topic(chat, self._existing_topic(chat, p))
        return True

    def _remove_topic(self, chat: _Chat, topic: ForumTopicInfo) -> None:
        topic.deleted = True
        thread_id = topic.message_thread_id
        doomed = [
            message_id
            for message_id, message in chat.messages.items()
            if message.get("message_thread_id") == thread_id or message_id == thread_id
        ]
        for message_id in doomed:
            self._delete(chat, message_id)


def sent_texts(messages: Sequence[SentMessage]) -> list[str | None]:
    """The text or caption of each message, for compact assertions."""
    return [m.body for m in messages]
