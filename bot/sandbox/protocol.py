"""Bot API facts shared by the sandbox: method names, limits, Telegram-shaped errors and a few
helpers on message dicts."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Literal

JSONDict = dict[str, Any]
MemberStatus = Literal["member", "administrator", "creator", "left", "kicked"]
Handler = Callable[[JSONDict], Awaitable[Any]]
"""An emulated Bot API method: decoded parameters in, the ``result`` out."""

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_DOWNLOAD_SIZE = 20 * 1024 * 1024
MAX_UPLOAD_SIZE = 50 * 1024 * 1024


def words(text: str) -> list[str]:
    return text.split()


# Every Bot API method this server knows by name (for case-insensitive lookup). Methods that
# are known but not implemented answer 501 rather than Telegram's 404 for unknown names.
KNOWN_METHODS = words(
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
CANONICAL = {name.lower(): name for name in KNOWN_METHODS}
"""Lower-cased method name -> its Bot API spelling."""

# Methods that create messages: rate_limit() applies to these, block() to these and edits.
SENDING_METHODS = frozenset(
    words(
        "sendMessage forwardMessage forwardMessages copyMessage copyMessages sendPhoto "
        "sendAudio sendDocument sendVideo sendAnimation sendVoice sendVideoNote sendPaidMedia "
        "sendMediaGroup sendLocation sendVenue sendContact sendPoll sendDice sendSticker "
        "sendInvoice sendGame"
    )
)
BLOCKABLE_METHODS = SENDING_METHODS | {
    "sendChatAction",
    "editMessageText",
    "editMessageCaption",
    "editMessageReplyMarkup",
    "editMessageMedia",
}

GROUP_LIMITED_METHODS = BLOCKABLE_METHODS - {"sendChatAction"} | {
    "createForumTopic",
    "editForumTopic",
    "closeForumTopic",
    "reopenForumTopic",
}
"""What counts against a group's messages a minute (``FaultsMixin.limit_groups``)."""


def canonical(method: str) -> str:
    """The Bot API spelling of a method name given in any case (unknown names unchanged)."""
    return CANONICAL.get(method.lower(), method)


MEDIA_KINDS = (
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
CONTENT_KEYS = (
    *MEDIA_KINDS,
    "entities",
    "caption",
    "caption_entities",
    "has_media_spoiler",
    "show_caption_above_media",
    "link_preview_options",
)


def kind_of(message: JSONDict) -> str:
    """The kind of content a message dict holds (its first media key), or "service"."""
    for kind in MEDIA_KINDS:
        if kind in message:
            return kind
    return "service"


def embedded(message: JSONDict) -> JSONDict:
    """A message as embedded in another one (``reply_to_message``): one level deep."""
    return {key: value for key, value in message.items() if key != "reply_to_message"}


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


def bad_request(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


def chat_id_param(value: Any) -> Any:
    """A ``chat_id``: an int when written as one, else as given (a @username, or whatever came:
    rejected as "chat not found")."""
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return value
