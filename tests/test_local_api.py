"""The local Bot API server: python-telegram-bot talks to it over real HTTP."""

from __future__ import annotations

import asyncio
import json
import struct
import time
import zlib
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest
from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaDocument,
    InputMediaPhoto,
    ReplyKeyboardMarkup,
    Update,
)
from telegram.error import BadRequest, Conflict, Forbidden, NetworkError, RetryAfter
from telegram.ext import (
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    ConversationHandler,
    MessageHandler,
    filters,
)

from bot.sandbox.api import LocalBotApi
from bot.sandbox.entities import parse_html, parse_markdown_v2
from tests.auxil.local_api_fixtures import ptb_bot, webhook_receiver
from tests.auxil.waiting import eventually

TOKEN = "4242:LOCAL-API-TEST"
BOT_ID = 4242
BOT_USERNAME = "local_api_test_bot"
GROUP = -1001234567890


def png(width: int, height: int) -> bytes:
    """A valid (grey) PNG image of the given size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


pytestmark = [
    pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning"),
    pytest.mark.filterwarnings("ignore:If 'per_message=False'"),
]


def _polling(api: LocalBotApi) -> bool:
    """Whether a getUpdates call is being held by the server (a long poll waiting)."""
    return any(call.method == "getUpdates" and not call.status for call in api.calls)


def seconds(value: int | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


@pytest.fixture
async def api() -> AsyncIterator[LocalBotApi]:
    async with LocalBotApi(TOKEN, bot_id=BOT_ID, bot_username=BOT_USERNAME) as server:
        yield server


@pytest.fixture
async def bot(api: LocalBotApi) -> AsyncIterator[Bot]:
    async with ptb_bot(api) as ptb:
        yield ptb


class TestProtocol:
    async def test_get_me(self, api: LocalBotApi, bot: Bot) -> None:
        me = await bot.get_me()
        assert (me.id, me.username, me.is_bot) == (BOT_ID, BOT_USERNAME, True)
        assert api.calls_of("getme")[-1].ok

    async def test_tokens_methods_and_body_encodings(self, api: LocalBotApi) -> None:
        user = api.add_user(7, "Ann")
        root = api.root_url
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{root}/bot1:WRONG/getMe") as response:
                assert response.status == 401
                assert await response.json() == {
                    "ok": False,
                    "error_code": 401,
                    "description": "Unauthorized",
                }
            async with http.post(f"{root}/bot{TOKEN}/noSuchMethod") as response:
                assert response.status == 404
                assert (await response.json())["description"] == "Not Found: method not found"
            async with http.get(f"{root}/bot{TOKEN}/GETME") as response:
                assert (await response.json())["result"]["id"] == BOT_ID
            markup = {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}
            payload = {"chat_id": user.id, "text": "json", "reply_markup": markup}
            async with http.post(f"{root}/bot{TOKEN}/sendMessage", json=payload) as response:
                body = await response.json()
                assert body["ok"] and body["result"]["reply_markup"] == markup
            form = {"chat_id": str(user.id), "text": "form", "reply_markup": json.dumps(markup)}
            async with http.post(f"{root}/bot{TOKEN}/sendmessage", data=form) as response:
                assert (await response.json())["result"]["text"] == "form"
            query = f"{root}/bot{TOKEN}/sendMessage?chat_id={user.id}&text=query"
            async with http.get(query) as response:
                assert (await response.json())["ok"]
        assert [m.text for m in api.sent(user.id)] == ["json", "form", "query"]
        assert api.sent(user.id)[1].reply_markup == markup
        assert [c.method for c in api.calls][-3:] == ["sendMessage"] * 3


class TestSending:
    async def test_message_is_returned_and_recorded(self, api: LocalBotApi, bot: Bot) -> None:
        user = api.add_user(1001, "Li", language_code="zh-hans")
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Yes 👍", callback_data="yes")]])
        message = await bot.send_message(
            user.id, "<b>Hi</b> 😀 <i>there</i>\n", parse_mode="HTML", reply_markup=keyboard
        )
        assert message.text == "Hi 😀 there"
        assert message.from_user is not None and message.from_user.id == BOT_ID
        assert message.chat.type == "private" and message.chat.first_name == "Li"
        assert [(e.type, e.offset, e.length) for e in message.entities] == [
            ("bold", 0, 2),
            ("italic", 6, 5),  # the emoji counts 2 UTF-16 units
        ]
        assert message.parse_entity(message.entities[1]) == "there"
        assert message.reply_markup == keyboard

        sent = await api.wait_for_sent(user.id)
        assert sent[0].text == "<b>Hi</b> 😀 <i>there</i>\n"  # as the bot sent it
        assert sent[0].kind == "text" and sent[0].method == "sendMessage"
        assert sent[0].buttons() == [("Yes 👍", "yes")]
        assert api.message(user.id, message.message_id)["text"] == "Hi 😀 there"
        assert api.last_sent(user.id).message_id == message.message_id

    async def test_reply_keyboards_and_replies(self, api: LocalBotApi, bot: Bot) -> None:
        user = api.add_user(1002, "Tom")
        update = await api.send_text(user, "hello")
        keyboard = ReplyKeyboardMarkup([["Share"]], one_time_keyboard=True)
        message = await bot.send_message(
            user.id,
            "pick",
            reply_markup=keyboard,
            reply_to_message_id=update["message"]["message_id"],
        )
        assert message.reply_to_message is not None
        assert message.reply_to_message.text == "hello"
        assert message.reply_markup is None  # Telegram only echoes inline keyboards
        assert api.last_sent(user.id).reply_markup == keyboard.to_dict()
        with pytest.raises(BadRequest, match="replied not found"):
            await bot.send_message(user.id, "x", reply_to_message_id=999)

    @pytest.mark.parametrize(
        ("text", "error"),
        [
            ("a < b", 'Unsupported start tag ""'),
            ("<b>bold</i>", 'expected "</b>", found "</i>"'),
            ("<b>open", 'Can\'t find end tag corresponding to start tag "b"'),
            ("<br>", 'Unsupported start tag "br"'),
            ('<span class="x">s</span>', 'must have class "tg-spoiler"'),
        ],
    )
    async def test_html_errors(self, api: LocalBotApi, bot: Bot, text: str, error: str) -> None:
        user = api.add_user(1003, "Ann")
        with pytest.raises(BadRequest, match=r"(?i)parse entities") as caught:
            await bot.send_message(user.id, text, parse_mode="HTML")
        assert error.lower() in caught.value.message.lower()
        assert api.sent(user.id) == []
        assert api.calls[-1].status == 400

    async def test_markdown_v2_needs_escapes(self, api: LocalBotApi, bot: Bot) -> None:
        user = api.add_user(1004, "Bob")
        with pytest.raises(BadRequest, match=r"(?i)character '\.' is reserved"):
            await bot.send_message(user.id, "Price: 1.5", parse_mode="MarkdownV2")
        message = await bot.send_message(user.id, r"*Price*: 1\.5", parse_mode="MarkdownV2")
        assert message.text == "Price: 1.5" and message.entities[0].type == "bold"

    async def test_length_limits(self, api: LocalBotApi, bot: Bot) -> None:
        user = api.add_user(1005, "Cai")
        with pytest.raises(BadRequest, match=r"(?i)message is too long"):
            await bot.send_message(user.id, "x" * 4097)
        assert (await bot.send_message(user.id, f"<b>{'x' * 4096}</b>", parse_mode="HTML")).text
        with pytest.raises(BadRequest, match=r"(?i)text is empty"):
            await bot.send_message(user.id, "<b> </b>", parse_mode="HTML")
        with pytest.raises(BadRequest, match=r"(?i)caption is too long"):
            await bot.send_photo(user.id, png(2, 2), caption="y" * 1025)

    async def test_unknown_chat_and_unstarted_user(self, api: LocalBotApi, bot: Bot) -> None:
        with pytest.raises(BadRequest, match=r"(?i)chat not found"):
            await bot.send_message(999, "hi")
        shy = api.add_user(1006, "Shy", started=False)
        with pytest.raises(Forbidden, match=r"(?i)can't initiate conversation"):
            await bot.send_message(shy.id, "hi")
        await api.send_text(shy, "/start")
        assert (await bot.send_message(shy.id, "hi")).text == "hi"


class TestFaults:
    async def test_blocked_user(self, api: LocalBotApi, bot: Bot) -> None:
        user = api.add_user(2001, "Mia")
        api.block(user.id)
        with pytest.raises(Forbidden, match=r"(?i)bot was blocked by the user"):
            await bot.send_message(user.id, "hi")
        with pytest.raises(Forbidden):
            await bot.send_chat_action(user.id, "typing")
        api.unblock(user.id)
        await bot.send_message(user.id, "hi again")
        assert [m.text for m in api.sent(user.id)] == ["hi again"]

    async def test_retry_after(self, api: LocalBotApi, bot: Bot) -> None:
        user = api.add_user(2002, "Ned")
        api.fail("sendMessage", error_code=429, retry_after=1)
        with pytest.raises(RetryAfter) as caught:
            await bot.send_message(user.id, "hi")
        assert seconds(caught.value.retry_after) == 1
        assert api.calls[-1].error == "Too Many Requests: retry after 1"
        await bot.send_message(user.id, "hi")  # only the next call failed

    async def test_server_error_is_a_network_error(self, api: LocalBotApi, bot: Bot) -> None:
        user = api.add_user(2003, "Oli")
        api.fail("sendmessage", error_code=500, times=2)
        for _ in range(2):
            with pytest.raises(NetworkError) as caught:
                await bot.send_message(user.id, "hi")
            assert type(caught.value) is NetworkError
            assert "Internal Server Error" in caught.value.message
        await bot.send_message(user.id, "hi")

    async def test_faults_by_chat_and_rate_limit(self, api: LocalBotApi, bot: Bot) -> None:
        one, two = api.add_user(2004, "One"), api.add_user(2005, "Two")
        api.fail("sendMessage", error_code=400, description="Bad Request: boom", chat_id=one.id)
        await bot.send_message(two.id, "fine")
        with pytest.raises(BadRequest, match=r"(?i)boom"):
            await bot.send_message(one.id, "boom")
        api.rate_limit(retry_after=2, times=2)
        await bot.get_me()  # not a sending method
        for _ in range(2):
            with pytest.raises(RetryAfter) as caught:
                await bot.send_photo(one.id, png(1, 1))
            assert seconds(caught.value.retry_after) == 2
        await bot.send_message(one.id, "ok now")
        with pytest.raises(ValueError, match="unknown Bot API method"):
            api.fail("sendMesage", error_code=400)

    async def test_latency(self, api: LocalBotApi, bot: Bot) -> None:
        api.set_latency(0.1)
        started = time.monotonic()
        await bot.get_me()
        assert time.monotonic() - started >= 0.1
        api.set_latency(0)


class TestEditing:
    async def test_edits_and_deletes(self, api: LocalBotApi, bot: Bot) -> None:
        user = api.add_user(3001, "Eve")
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Go", callback_data="go")]])
        message = await bot.send_message(user.id, "one", reply_markup=keyboard)
        with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
            await bot.edit_message_text("one", user.id, message.message_id, reply_markup=keyboard)
        edited = await bot.edit_message_text(
            "<b>two</b>", user.id, message.message_id, parse_mode="HTML"
        )
        assert not isinstance(edited, bool) and edited.text == "two"
        stored = api.message(user.id, message.message_id)
        assert stored["text"] == "two" and "reply_markup" not in stored and stored["edit_date"]
        await bot.edit_message_reply_markup(user.id, message.message_id, reply_markup=keyboard)
        assert api.message(user.id, message.message_id)["reply_markup"] == keyboard.to_dict()
        with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
            await bot.edit_message_text("x", user.id, 999)
        update = await api.send_text(user, "mine")
        with pytest.raises(BadRequest, match=r"(?i)can't be edited"):
            await bot.edit_message_text("x", user.id, update["message"]["message_id"])
        assert await bot.delete_message(user.id, message.message_id)
        assert api.sent(user.id)[0].deleted
        with pytest.raises(BadRequest, match=r"(?i)message to delete not found"):
            await bot.delete_message(user.id, message.message_id)

    async def test_user_edit_and_button_press(self, api: LocalBotApi, bot: Bot) -> None:
        user = api.add_user(3002, "Fay")
        update = await api.send_text(user, "hello")
        edit = await api.edit_message(user, update["message"]["message_id"], "/help now")
        parsed = Update.de_json(edit, bot)
        assert parsed.edited_message is not None and parsed.edited_message.edit_date
        assert parsed.edited_message.entities[0].type == "bot_command"
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Go", callback_data="go")]])
        message = await bot.send_message(user.id, "menu", reply_markup=keyboard)
        press = await api.press_button(user, api.last_sent(user.id), "go")
        query = Update.de_json(press, bot).callback_query
        assert query is not None and query.data == "go"
        assert query.message is not None and query.message.message_id == message.message_id
        assert await bot.answer_callback_query(query.id, text="done")
        assert api.answered_callbacks[-1]["text"] == "done"
        with pytest.raises(BadRequest, match=r"(?i)query id is invalid"):
            await bot.answer_callback_query(query.id)


class TestUpdates:
    async def test_long_polling_and_offset(self, api: LocalBotApi, bot: Bot) -> None:
        user = api.add_user(4001, "Gus", username="gus")
        poll = asyncio.create_task(bot.get_updates(timeout=5))
        await eventually(lambda: _polling(api), description="the long poll held by the server")
        assert not poll.done()
        started = time.monotonic()
        sent = await api.send_text(user, f"/start@{BOT_USERNAME} hi")
        updates = await poll
        assert time.monotonic() - started < 1
        assert [u.update_id for u in updates] == [sent["update_id"]]
        message = updates[0].message
        assert message is not None and message.from_user is not None
        assert message.from_user.username == "gus"
        command = message.entities[0]
        assert (command.type, command.offset, command.length) == (
            "bot_command",
            0,
            len(f"/start@{BOT_USERNAME}"),
        )
        await api.send_text(user, "second")
        again = await bot.get_updates(timeout=0)
        assert len(again) == 2  # nothing confirmed yet
        rest = await bot.get_updates(offset=sent["update_id"] + 1, timeout=0)
        assert [u.message.text for u in rest if u.message] == ["second"]
        assert await bot.get_updates(offset=rest[0].update_id + 1, timeout=0) == ()
        assert api.pending_updates == []

    async def test_newer_poll_ends_the_older(self, api: LocalBotApi, bot: Bot) -> None:
        first = asyncio.create_task(bot.get_updates(timeout=5))
        await eventually(lambda: _polling(api), description="the long poll held by the server")
        async with ptb_bot(api) as other_instance:
            assert await other_instance.get_updates(timeout=0) == ()
        with pytest.raises(Conflict, match=r"(?i)terminated by other getUpdates"):
            await first

    async def test_webhook_delivery_with_secret_and_retry(
        self, api: LocalBotApi, bot: Bot
    ) -> None:
        user = api.add_user(4002, "Hal")
        async with webhook_receiver(statuses=[500]) as receiver:
            assert await bot.set_webhook(receiver.url, secret_token="s3cret")
            with pytest.raises(Conflict, match=r"(?i)webhook is active"):
                await bot.get_updates()
            update = await api.send_text(user, "via webhook")
            await receiver.wait_for(2)
            assert receiver.received == [("s3cret", update), ("s3cret", update)]
            await api.wait_for(lambda: not api.pending_updates)
            assert [a.status for a in api.webhook_attempts] == [500, 200]
            info = await bot.get_webhook_info()
            assert info.url == receiver.url and info.pending_update_count == 0
            assert info.last_error_message and "500" in info.last_error_message
            second = await api.send_text(user, "again")
            await receiver.wait_for(3)
            assert receiver.received[-1][1]["update_id"] == second["update_id"]
            assert await bot.delete_webhook()
        await api.send_text(user, "polled")
        assert [u.message.text for u in await bot.get_updates() if u.message] == ["polled"]

    async def test_webhook_delivers_chats_in_parallel_and_each_chat_in_order(
        self, api: LocalBotApi, bot: Bot
    ) -> None:
        ann, bob, cy = (
            api.add_user(4003, "Ann"),
            api.add_user(4004, "Bob"),
            api.add_user(4005, "Cy"),
        )
        async with webhook_receiver() as receiver:
            receiver.release = asyncio.Event()
            assert await bot.set_webhook(receiver.url)
            first = await api.send_text(ann, "one")
            second = await api.send_text(ann, "two")
            other = await api.send_text(bob, "hi")
            # Ann's first and Bob's message are in flight together; Ann's second waits. Cy's,
            # sent after it, is posted in a later pass over the queue than Ann's second would
            # have been.
            await receiver.wait_for(2)
            later = await api.send_text(cy, "later")
            await receiver.wait_for(3)
            assert [u for _, u in receiver.received] == [first, other, later]
            receiver.release.set()
            await receiver.wait_for(4)
            assert receiver.received[-1][1] == second
            await api.wait_for(lambda: not api.pending_updates)
            assert await bot.delete_webhook()

    async def test_webhook_must_be_local(self, api: LocalBotApi, bot: Bot) -> None:
        with pytest.raises(BadRequest, match=r"(?i)loopback"):
            await bot.set_webhook("https://example.com/hook")


class TestApplication:
    async def test_handlers_fire_over_polling(self, api: LocalBotApi) -> None:
        user = api.add_user(5001, "Ivy", language_code="en")
        asked = 0

        async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
            assert update.effective_message is not None
            keyboard = [[InlineKeyboardButton("Yes", callback_data="consent:yes")]]
            await update.effective_message.reply_text(
                "<b>Welcome</b>", parse_mode="HTML", reply_markup=InlineKeyboardMarkup(keyboard)
            )
            return 1

        async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
            query = update.callback_query
            assert query is not None
            await query.answer("saved")
            await query.edit_message_text(f"You chose {query.data}")
            return 2

        async def name(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
            nonlocal asked
            asked += 1
            message = update.effective_message
            assert message is not None
            await message.reply_text(f"Nice to meet you, {message.text}")
            return ConversationHandler.END

        conversation = ConversationHandler(
            entry_points=[CommandHandler("start", start)],
            states={
                1: [CallbackQueryHandler(pressed, pattern="^consent:")],
                2: [MessageHandler(filters.TEXT & ~filters.COMMAND, name)],
            },
            fallbacks=[],
        )
        application = (
            ApplicationBuilder()
            .token(TOKEN)
            .base_url(f"{api.root_url}/bot")
            .base_file_url(f"{api.root_url}/file/bot")
            .build()
        )
        application.add_handler(conversation)
        async with application:
            await application.start()
            assert application.updater is not None
            await application.updater.start_polling(poll_interval=0, timeout=1)
            try:
                await api.send_text(user, "/start")
                welcome = (await api.wait_for_sent(user.id, 1))[0]
                assert welcome.text == "<b>Welcome</b>"
                assert api.message(user.id, welcome.message_id)["text"] == "Welcome"
                await api.press_button(user, welcome, "consent:yes")
                await api.wait_for(
                    lambda: (
                        api.message(user.id, welcome.message_id)["text"] == "You chose consent:yes"
                    ),
                    description="the edit",
                )
                assert api.answered_callbacks[-1]["text"] == "saved"
                await api.send_text(user, "Ivy")
                sent = await api.wait_for_sent(user.id, 2)
                assert sent[-1].text == "Nice to meet you, Ivy" and asked == 1
            finally:
                await application.updater.stop()
                await application.stop()
        assert api.server_errors == []

    async def test_wait_for_sent_explains_a_timeout(self, api: LocalBotApi, bot: Bot) -> None:
        user = api.add_user(5002, "Jay")
        await bot.send_message(user.id, "only one")
        api.block(user.id)
        with pytest.raises(Forbidden):
            await bot.send_message(user.id, "blocked")
        with pytest.raises(AssertionError) as caught:
            await api.wait_for_sent(user.id, 2, timeout=0.05)
        report = str(caught.value)
        assert "'only one'" in report and "bot was blocked" in report


class TestForum:
    async def test_topic_lifecycle(self, api: LocalBotApi, bot: Bot) -> None:
        api.add_group(GROUP, "Staff", forum=True)
        topic = await bot.create_forum_topic(GROUP, "Ticket #1 Ann", icon_color=16766590)
        thread = topic.message_thread_id
        message = await bot.send_message(GROUP, "new ticket", message_thread_id=thread)
        assert message.message_thread_id == thread and message.is_topic_message
        assert message.chat.is_forum and message.chat.title == "Staff"
        assert message.reply_to_message is not None
        assert message.reply_to_message.forum_topic_created is not None
        assert [m.text for m in api.sent(GROUP, thread_id=thread)] == ["new ticket"]

        assert await bot.close_forum_topic(GROUP, thread)
        with pytest.raises(BadRequest, match=r"(?i)TOPIC_CLOSED"):
            await bot.send_message(GROUP, "closed?", message_thread_id=thread)
        with pytest.raises(BadRequest, match=r"(?i)TOPIC_NOT_MODIFIED"):
            await bot.close_forum_topic(GROUP, thread)
        assert api.topics(GROUP)[0].closed
        assert await bot.reopen_forum_topic(GROUP, thread)
        assert await bot.edit_forum_topic(GROUP, thread, name="Ticket #1 Ann (VIP)")
        assert api.topics(GROUP)[0].name == "Ticket #1 Ann (VIP)"
        await bot.send_message(GROUP, "open again", message_thread_id=thread)

        assert await bot.delete_forum_topic(GROUP, thread)
        with pytest.raises(BadRequest, match=r"(?i)message thread not found"):
            await bot.send_message(GROUP, "gone?", message_thread_id=thread)
        assert api.topics(GROUP)[0].deleted

        other = await bot.create_forum_topic(GROUP, "Ticket #2")
        api.delete_topic(GROUP, other.message_thread_id)  # staff delete it by hand
        with pytest.raises(BadRequest, match=r"(?i)message thread not found"):
            await bot.send_message(GROUP, "x", message_thread_id=other.message_thread_id)

    async def test_not_a_forum_and_staff_messages(self, api: LocalBotApi, bot: Bot) -> None:
        api.add_group(-100555, "Plain", forum=False)
        with pytest.raises(BadRequest, match=r"(?i)not a forum"):
            await bot.create_forum_topic(-100555, "x")
        api.add_group(GROUP, "Staff")
        topic = await bot.create_forum_topic(GROUP, "Ticket")
        staff = api.add_user(6001, "Kim")
        api.add_member(GROUP, staff, "administrator")
        await api.send_text(
            staff, "/close", chat_id=GROUP, message_thread_id=topic.message_thread_id
        )
        (update,) = await bot.get_updates()
        assert update.message is not None and update.message.is_topic_message
        assert update.message.message_thread_id == topic.message_thread_id
        assert update.message.chat.type == "supergroup"
        member = await bot.get_chat_member(GROUP, staff.id)
        assert member.status == "administrator"
        assert (await bot.get_chat_member(GROUP, 12345)).status == "left"
        assert (await bot.get_chat_member(GROUP, BOT_ID)).status == "administrator"
        chat = await bot.get_chat(GROUP)
        assert chat.is_forum and chat.title == "Staff"

    async def test_copy_customer_photo_into_topic(self, api: LocalBotApi, bot: Bot) -> None:
        api.add_group(GROUP, "Staff")
        user = api.add_user(6002, "Lee")
        update = await api.send_photo(user, caption="my receipt", data=png(800, 600))
        source = update["message"]
        assert source["photo"][-1]["width"] == 800
        topic = await bot.create_forum_topic(GROUP, "Ticket Lee")
        copied = await bot.copy_message(
            GROUP, user.id, source["message_id"], message_thread_id=topic.message_thread_id
        )
        record = api.last_sent(GROUP)
        assert record.message_id == copied.message_id and record.method == "copyMessage"
        assert record.kind == "photo" and record.caption == "my receipt"
        assert record.copied_from == (user.id, source["message_id"])
        assert record.message_thread_id == topic.message_thread_id
        assert record.message["photo"] == source["photo"]
        assert record.file_id == source["photo"][-1]["file_id"]
        with pytest.raises(BadRequest, match=r"(?i)message to copy not found"):
            await bot.copy_message(GROUP, user.id, 999)
        forwarded = await bot.forward_message(GROUP, user.id, source["message_id"])
        assert forwarded.forward_origin is not None and forwarded.photo


class TestFiles:
    async def test_upload_then_download(self, api: LocalBotApi, bot: Bot) -> None:
        user = api.add_user(7001, "Mo")
        image = png(640, 480)
        message = await bot.send_photo(user.id, image, caption="<i>receipt</i>", parse_mode="HTML")
        assert message.caption == "receipt" and message.photo[-1].width == 640
        file = await bot.get_file(message.photo[-1].file_id)
        assert bytes(await file.download_as_bytearray()) == image
        record = api.last_sent(user.id)
        assert record.kind == "photo" and api.file_bytes(record.file_id or "") == image

        document = await bot.send_document(user.id, b"a,b\n1,2\n", filename="report.csv")
        assert document.document is not None and document.document.file_name == "report.csv"
        file = await bot.get_file(document.document.file_id)
        assert file.file_path and file.file_path.endswith(".csv")
        assert bytes(await file.download_as_bytearray()) == b"a,b\n1,2\n"
        with pytest.raises(BadRequest, match=r"(?i)can't use file of type Document as Photo"):
            await bot.send_photo(user.id, document.document.file_id)
        with pytest.raises(BadRequest, match=r"(?i)wrong file identifier"):
            await bot.send_photo(user.id, "no-such-file-id")

    async def test_customer_files_can_be_fetched(self, api: LocalBotApi, bot: Bot) -> None:
        user = api.add_user(7002, "Ned")
        update = await api.send_voice(user, data=b"OggS voice bytes")
        file = await bot.get_file(update["message"]["voice"]["file_id"])
        assert bytes(await file.download_as_bytearray()) == b"OggS voice bytes"
        parsed = Update.de_json((await api.send_sticker(user)), bot)
        assert parsed.message is not None and parsed.message.sticker is not None
        located = Update.de_json((await api.send_location(user, 31.23, 121.47)), bot)
        assert located.message is not None and located.message.location is not None
        contact = await api.send_contact(user, "+15550001111", contact_user_id=user.id)
        parsed_contact = Update.de_json(contact, bot).message
        assert parsed_contact is not None and parsed_contact.contact is not None
        assert parsed_contact.contact.user_id == user.id

    async def test_media_group(self, api: LocalBotApi, bot: Bot) -> None:
        user = api.add_user(7003, "Oz")
        earlier = await api.send_photo(user)
        known_id = earlier["message"]["photo"][-1]["file_id"]
        messages = await bot.send_media_group(
            user.id,
            [
                InputMediaPhoto(png(10, 10), caption="<b>first</b>", parse_mode="HTML"),
                InputMediaPhoto(known_id, caption="second"),
            ],
        )
        assert len(messages) == 2
        assert messages[0].media_group_id and messages[0].media_group_id == (
            messages[1].media_group_id
        )
        assert messages[0].caption == "first" and messages[1].photo[-1].file_id == known_id
        records = api.sent(user.id)
        assert [r.method for r in records] == ["sendMediaGroup"] * 2
        assert [r.caption for r in records] == ["<b>first</b>", "second"]
        documents = await bot.send_media_group(
            user.id,
            [InputMediaDocument(b"one", filename="a.txt"), InputMediaDocument(b"two")],
        )
        assert documents[0].document is not None and documents[0].document.file_name == "a.txt"


class TestEveryMethod:
    async def test_ptb_parses_every_answer(self, api: LocalBotApi, bot: Bot) -> None:
        user = api.add_user(8001, "Pat")
        api.add_group(GROUP, "Staff")
        chat = user.id
        text = await bot.send_message(chat, "t")
        audio = await bot.send_audio(chat, b"ID3 audio", filename="a.mp3", duration=3)
        assert audio.audio is not None and audio.audio.duration
        video = await bot.send_video(chat, b"video", filename="v.mp4", width=640, height=360)
        assert video.video is not None and video.video.width == 640
        animation = await bot.send_animation(chat, b"gif", filename="a.gif")
        assert animation.animation is not None and animation.document is not None
        voice = await bot.send_voice(chat, b"OggS", caption="<b>v</b>", parse_mode="HTML")
        assert voice.voice is not None and voice.caption == "v"
        note = await bot.send_video_note(chat, b"note")
        assert note.video_note is not None
        sticker = await bot.send_sticker(chat, b"RIFFwebp")
        assert sticker.sticker is not None
        assert (await bot.send_location(chat, 1.5, 2.5)).location is not None
        assert (await bot.send_venue(chat, 1.5, 2.5, "Shop", "Main St 1")).venue is not None
        assert (await bot.send_contact(chat, "+1555", "Pat")).contact is not None
        assert (await bot.send_dice(chat)).dice is not None
        assert await bot.send_chat_action(chat, "typing")
        with pytest.raises(BadRequest, match=r"(?i)wrong parameter action"):
            await bot.send_chat_action(chat, "dancing")
        caption = await bot.edit_message_caption(chat, voice.message_id, caption="new")
        assert not isinstance(caption, bool) and caption.caption == "new"
        with pytest.raises(BadRequest, match=r"(?i)no caption"):
            await bot.edit_message_caption(chat, text.message_id, caption="x")
        copies = await bot.copy_messages(GROUP, chat, [text.message_id, voice.message_id])
        assert len(copies) == 2 and api.last_sent(GROUP).caption == "new"
        forwards = await bot.forward_messages(GROUP, chat, [text.message_id])
        assert len(forwards) == 1
        assert await bot.delete_messages(chat, [text.message_id, audio.message_id])
        assert await bot.pin_chat_message(GROUP, forwards[0].message_id)
        assert await bot.set_message_reaction(chat, video.message_id, "👍")
        admins = await bot.get_chat_administrators(GROUP)
        assert [a.user.id for a in admins] == [BOT_ID]
        assert await bot.get_chat_member_count(GROUP) == 1
        private = await bot.get_chat(chat)
        assert private.type == "private" and private.first_name == "Pat"
        assert (await bot.get_chat_member(chat, chat)).status == "member"
        assert await bot.set_my_name("Care")
        assert (await bot.get_my_name()).name == "Care"
        assert await bot.set_my_description("Helps")
        assert (await bot.get_my_description()).description == "Helps"
        assert (await bot.get_my_short_description()).short_description == ""
        assert (await bot.get_chat_menu_button()).type == "default"
        assert await bot.get_forum_topic_icon_stickers() == ()
        info = await bot.get_webhook_info()
        assert info.url == "" and info.pending_update_count == 0
        assert await bot.log_out() and await bot.close()
        assert api.server_errors == []
        assert all(call.status in (200, 400) for call in api.calls)


class TestBotSettings:
    async def test_commands_round_trip(self, api: LocalBotApi, bot: Bot) -> None:
        assert await bot.set_my_commands([("start", "Start"), ("help", "Help")])
        assert await bot.set_my_commands([("start", "开始")], language_code="zh")
        assert api.my_commands() == [
            {"command": "start", "description": "Start"},
            {"command": "help", "description": "Help"},
        ]
        assert [c.description for c in await bot.get_my_commands(language_code="zh")] == ["开始"]
        with pytest.raises(BadRequest, match=r"(?i)BOT_COMMAND_INVALID"):
            await bot.set_my_commands([("Bad-Command", "x")])
        assert await bot.delete_my_commands(language_code="zh")
        assert await bot.get_my_commands(language_code="zh") == ()


class TestParsers:
    def test_html_entities(self) -> None:
        text, entities = parse_html(
            '&lt;x&gt; <a href="https://t.me/x?a=1&amp;b=2">link</a> '
            '<pre><code class="language-python">print(1)</code></pre> &#128512;'
        )
        assert text == "<x> link print(1) 😀"
        assert entities == [
            {"type": "text_link", "offset": 4, "length": 4, "url": "https://t.me/x?a=1&b=2"},
            {"type": "pre", "offset": 9, "length": 8, "language": "python"},
        ]

    def test_markdown_v2_entities(self) -> None:
        text, entities = parse_markdown_v2(r"*b _i_* [l](https://x\.y) `c\`` ||s||")
        assert text == "b i l c` s"
        assert [(e["type"], e["offset"], e["length"]) for e in entities] == [
            ("bold", 0, 3),
            ("italic", 2, 1),
            ("text_link", 4, 1),
            ("code", 6, 2),
            ("spoiler", 9, 1),
        ]
