"""The staff group: thin PTB callbacks over ``handlers.staff.commands``.

Everything here happens in ticket topics of the staff forum group: a staff member's message
goes to the customer, ``/note`` and ``!`` messages stay internal, and ``/claim``, ``/assign``,
``/close``, ``/reopen``, ``/canned``, ``/card``, ``/ban`` and ``/unban`` act on the topic's
ticket. Only members of the group may: membership is asked of Telegram (``getChatMember``)
outside any database transaction and remembered for ``relay.staff_check_seconds``; the same
answers keep the dashboard to members (``dashboard_staff_check``) and ``/assign`` to them.
``/dashboard`` answers with its sign-in link only in the member's private chat.

``/setup`` in any group makes it the staff group (``handlers.staff.setup`` holds the rule);
``check_staff_group`` asks Telegram what the group lacks, after ``/setup`` and at start-up
(``connect_staff_group``). Which group is the staff group is the desk's ``StaffGroup``, read
by the handlers' filter on every update: ``/setup`` may move it while the bot runs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import (
    Bot,
    Chat,
    LinkPreviewOptions,
    Message,
    Update,
    User,
)
from telegram.constants import ChatType
from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bot.kernel.render import inline_button, inline_keyboard, is_not_modified
from handlers._edge.context import BotData, CareContext
from handlers.staff import commands
from handlers.staff import setup as group_setup
from handlers.staff.commands import DashboardAnswer, MemberCache
from handlers.staff.setup import GroupFacts, Problem, SetupAnswer, SetupRequest
from handlers.tickets.desk import CB_TICKET, Desk, Staff, StaffGroup, StaffReply
from handlers.tickets.telegram import incoming_of, wake_dispatcher
from storage.engine import after_commit

logger = logging.getLogger(__name__)

ANONYMOUS_ADMIN = "GroupAnonymousBot"
T = TypeVar("T")
Work = Callable[[AsyncSession, Staff, datetime], Awaitable[StaffReply | None]]
COMMANDS = ("claim", "close", "reopen", "ban", "unban", "card", "canned", "move")


def _staff(user: User) -> Staff:
    return Staff(user.id, user.first_name, user.username)


def _member_cache(data: BotData, desk: Desk) -> MemberCache:
    """The membership answers (this module owns ``BotData.members``: made on first use)."""
    if data.members is None:
        data.members = MemberCache(desk.rules.relay.staff_check_seconds)
    return data.members


async def _is_member(
    bot: Bot, data: BotData, desk: Desk, user_id: int, chat_id: int | None = None
) -> tuple[bool | None, bool]:
    """Whether ``user_id`` is in the staff group ``chat_id`` (None: the main one; None back:
    Telegram could not say this time, so nothing is remembered), and whether that was just
    asked of Telegram (by this caller: the callers of one lookup in flight share it)."""
    if chat_id is None:
        chat_id = desk.staff_chat_id
    if chat_id is None:
        return False, False

    async def ask() -> bool | None:
        try:
            member = await bot.get_chat_member(chat_id, user_id)
        except BadRequest:
            return False
        except TelegramError:
            return None  # unknown this time: refuse, ask again next time
        return commands.counts_as_staff(member.status, getattr(member, "is_member", None))

    is_staff, asked = await _member_cache(data, desk).answer(chat_id, user_id, ask)
    return is_staff, asked and is_staff is not None


async def _membership(
    context: CareContext, message: Message | None, user: User, chat_id: int | None
) -> tuple[Staff, bool, bool]:
    """Who acts, whether they are staff of the group ``chat_id`` (None: of the main one), and
    whether that was just asked of Telegram."""
    desk = context.desk
    if chat_id is None:
        chat_id = desk.staff_chat_id
    if (
        message is not None
        and message.sender_chat is not None
        and message.sender_chat.id == chat_id
    ):
        # An anonymous admin writing as the group.
        return Staff(user.id, message.sender_chat.title or ANONYMOUS_ADMIN), True, False
    is_staff, fresh = await _is_member(context.bot, context.bot_data, desk, user.id, chat_id)
    return _staff(user), bool(is_staff), fresh


def dashboard_staff_check(bot: Bot, data: BotData) -> Callable[[int], Awaitable[bool | None]]:
    """The dashboard's check that a signed-in person is still in the staff group, on every
    request: the same ``getChatMember`` answers, remembered in the same cache for
    ``relay.staff_check_seconds``, as staff commands use (``data`` is the bot's ``bot_data``)."""

    async def check(user_id: int) -> bool | None:
        unknown = False
        for chat_id in data.desk.group.chats.values():  # a member of any staff group
            is_staff, _ = await _is_member(bot, data, data.desk, user_id, chat_id)
            if is_staff:
                return True
            unknown = unknown or is_staff is None
        return None if unknown else False

    return check


async def _reply(update: Update, context: CareContext, result: StaffReply | None) -> None:
    """Answer in the topic (or as a toast / by editing the pressed message for buttons), once
    the update's unit of work has committed."""
    await after_commit(lambda: _send(update, result))


async def _send(update: Update, result: StaffReply | None) -> None:
    query = update.callback_query
    if result is None:
        if query is not None:
            await query.answer()
        return
    markup = inline_keyboard(
        [inline_button(label, data=data) for label, data in row] for row in result.buttons
    )
    if query is not None:
        if result.alert:
            await query.answer(result.text)
            return
        await query.answer()
        message = query.message
        if result.replace and isinstance(message, Message):
            try:
                await message.edit_text(result.text, reply_markup=markup)
                return
            except BadRequest as error:
                if is_not_modified(error):
                    return
        if isinstance(message, Message):
            await message.reply_text(result.text, reply_markup=markup, do_quote=False)
        return
    message = update.effective_message
    if message is not None:
        await message.reply_text(result.text, reply_markup=markup, do_quote=False)


async def _admit(
    update: Update, context: CareContext, *, refuse: bool = True
) -> tuple[Staff, bool] | None:
    """The acting staff member and whether their membership was just asked of Telegram; None
    (with a refusal unless ``refuse`` is off) for anyone else."""
    message = update.effective_message
    user = update.effective_user
    if user is None:
        return None
    if user.is_bot and (message is None or message.sender_chat is None):
        # Other bots; an anonymous admin writes as GroupAnonymousBot with a sender chat.
        return None
    staff, allowed, fresh = await _membership(
        context, message if update.callback_query is None else None, user, _staff_chat(update)
    )
    if not allowed:
        if refuse:
            refusal = commands.refusal(context.desk)
            if update.callback_query is not None:
                refusal = StaffReply(refusal.text, alert=True)
            await _reply(update, context, refusal)
        return None
    return staff, fresh


def _staff_chat(update: Update) -> int | None:
    """The staff group the update is from (a button's: its message's), None for a private
    chat (the main group's membership counts there)."""
    chat = update.effective_chat
    if chat is None or chat.type == ChatType.PRIVATE:
        return None
    return chat.id


async def _run(
    update: Update,
    context: CareContext,
    work: Work,
    *,
    refuse: bool = True,
) -> None:
    """Check membership, then run ``work(session, staff)`` in one transaction and answer."""
    admitted = await _admit(update, context, refuse=refuse)
    if admitted is None:
        return
    result = await _as_staff(context, admitted, work)
    wake_dispatcher(context)
    await _reply(update, context, result)


async def _as_staff(
    context: CareContext,
    admitted: tuple[Staff, bool],
    work: Callable[[AsyncSession, Staff, datetime], Awaitable[T]],
) -> T:
    """Run ``work`` for an admitted staff member in one transaction (remembering them when
    Telegram was just asked)."""
    staff, fresh = admitted
    deps = context.deps
    now = deps.clock.now()
    async with deps.sessionmaker.begin() as session:
        if fresh:
            await commands.remember(session, staff, True, now)
        return await work(session, staff, now)


async def write(update: Update, context: CareContext) -> None:
    """A message in a topic: relayed to the customer (``!…``: a note)."""
    message = update.effective_message
    if message is None:
        return
    desk = context.desk

    async def work(session: AsyncSession, staff: Staff, now: datetime) -> StaffReply | None:
        return await commands.message(
            session,
            desk,
            message.message_thread_id,
            staff,
            incoming_of(message),
            now,
            chat_id=message.chat.id,
        )

    await _run(update, context, work)


async def edit(update: Update, context: CareContext) -> None:
    """A staff member edited a reply: the customer sees the new text, marked."""
    message = update.edited_message
    if message is None:
        return
    desk, chat_id = context.desk, message.chat.id

    async def work(session: AsyncSession, staff: Staff, now: datetime) -> None:
        await commands.edit(
            session, desk, message.message_thread_id, incoming_of(message), now, chat_id=chat_id
        )

    await _run(update, context, work, refuse=False)


async def note(update: Update, context: CareContext) -> None:
    """``/note text``."""
    message = update.effective_message
    if message is None:
        return
    desk = context.desk

    async def work(session: AsyncSession, staff: Staff, now: datetime) -> StaffReply | None:
        return await commands.note(
            session,
            desk,
            message.message_thread_id,
            staff,
            incoming_of(message),
            now,
            chat_id=message.chat.id,
        )

    await _run(update, context, work)


async def command(update: Update, context: CareContext) -> None:
    """``/claim``, ``/close``, ``/reopen``, ``/ban``, ``/unban``, ``/card``, ``/canned``,
    ``/move <group>``."""
    message = update.effective_message
    if message is None or not message.text:
        return
    words = message.text.split()
    name = words[0].lstrip("/").split("@")[0].lower()
    argument = words[1] if len(words) > 1 else ""
    desk = context.desk

    async def work(session: AsyncSession, staff: Staff, now: datetime) -> StaffReply | None:
        return await commands.command(
            session,
            desk,
            message.message_thread_id,
            staff,
            name,
            now,
            chat_id=message.chat.id,
            argument=argument,
        )

    await _run(update, context, work)


async def assign(update: Update, context: CareContext) -> None:
    """``/assign @name`` or ``/assign`` replying to the assignee's message (whose membership is
    asked of Telegram as the sender's is: a non-member is refused)."""
    message = update.effective_message
    if message is None:
        return
    desk = context.desk
    args = context.args or []
    username = args[0] if args and args[0].startswith("@") else None
    replied = message.reply_to_message
    target_user = (
        replied.from_user
        if replied is not None
        and replied.from_user is not None
        and not replied.from_user.is_bot
        and replied.message_id != message.message_thread_id
        else None
    )
    admitted = await _admit(update, context)
    if admitted is None:
        return
    staff, fresh = admitted
    target = _staff(target_user) if target_user is not None else None
    target_is_staff, target_fresh = (
        await _is_member(context.bot, context.bot_data, desk, target_user.id, message.chat.id)
        if target_user is not None
        else (None, False)
    )
    deps = context.deps
    now = deps.clock.now()
    async with deps.sessionmaker.begin() as session:
        if fresh:
            await commands.remember(session, staff, True, now)
        if target is not None and target_fresh:
            await commands.remember(session, target, bool(target_is_staff), now)
        result = await commands.assign(
            session,
            desk,
            message.message_thread_id,
            staff,
            username,
            target,
            now,
            replied_is_staff=bool(target_is_staff),
            chat_id=message.chat.id,
        )
    wake_dispatcher(context)
    await _reply(update, context, result)


async def press(update: Update, context: CareContext) -> None:
    """A button under a card or a canned-reply menu."""
    query = update.callback_query
    if query is None:
        return
    desk = context.desk

    pressed = query.message.message_id if query.message is not None else None

    async def work(session: AsyncSession, staff: Staff, now: datetime) -> StaffReply:
        return await commands.press(session, desk, staff, query.data or "", now, pressed)

    await _run(update, context, work)


async def duty(update: Update, context: CareContext) -> None:
    """``/duty on|off`` (or a bare ``/duty``: who is on duty) in a staff group."""
    message = update.effective_message
    if message is None:
        return
    desk, chat_id = context.desk, message.chat.id
    argument = " ".join(context.args or [])

    async def work(session: AsyncSession, staff: Staff, now: datetime) -> StaffReply:
        return await commands.duty(session, desk, chat_id, staff, argument, now)

    await _run(update, context, work)


NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


async def dashboard(update: Update, context: CareContext) -> None:
    """``/dashboard`` privately or in the staff group: a one-time dashboard sign-in link, sent
    only to the member's private chat and without a link preview (a preview would fetch it)."""
    message = update.effective_message
    user = update.effective_user
    if message is None or user is None:
        return
    desk = context.desk
    links = context.bot_data.login_links
    in_group = message.chat.type != ChatType.PRIVATE
    if in_group and message.sender_chat is not None:
        # An anonymous admin: no private chat to send a link to.
        answer = commands.dashboard_unreachable(desk)
        await after_commit(lambda: _send_dashboard(context.bot, message, user.id, answer))
        return
    admitted = await _admit(update, context)
    if admitted is None:
        return

    async def link(session: AsyncSession, staff: Staff, now: datetime) -> DashboardAnswer:
        return await commands.dashboard_link(session, desk, links, staff, now, in_group=in_group)

    answer = await _as_staff(context, admitted, link)
    await after_commit(lambda: _send_dashboard(context.bot, message, user.id, answer))


async def _send_dashboard(
    bot: Bot, message: Message, user_id: int, answer: DashboardAnswer
) -> None:
    """The link to the member's private chat; in the group only words without a link (that
    it was sent, or, when the bot may not write to them first, how to get it)."""
    if answer.private is not None:
        try:
            await bot.send_message(user_id, answer.private, link_preview_options=NO_PREVIEW)
        except (Forbidden, BadRequest):
            # They never started the bot (or blocked it): nothing reached them.
            if message.chat.type != ChatType.PRIVATE:
                await message.reply_text(answer.unreachable, do_quote=False)
            return
    if answer.here is not None:
        await message.reply_text(answer.here, do_quote=False, link_preview_options=NO_PREVIEW)


class InStaffGroup(filters.MessageFilter):
    """Messages in a staff group as this process knows them now (``/setup`` may move one)."""

    def __init__(self, group: StaffGroup) -> None:
        super().__init__(name="InStaffGroup")
        self._group = group

    def filter(self, message: Message) -> bool:
        return self._group.name_of(message.chat.id) is not None


def build_handlers(group: StaffGroup) -> list[BaseHandler[Update, CareContext, Any]]:
    """The staff group's handlers (they match nothing while there is no staff group), and
    ``/setup`` in any group."""
    staff = InStaffGroup(group)
    in_topic = staff & filters.IS_TOPIC_MESSAGE
    new = filters.UpdateType.MESSAGE
    return [
        CommandHandler("setup", setup, filters=filters.ChatType.GROUPS & new),
        CommandHandler("note", note, filters=in_topic & new),
        CommandHandler("assign", assign, filters=staff & new),
        CommandHandler("duty", duty, filters=staff & new),
        CommandHandler("dashboard", dashboard, filters=(staff | filters.ChatType.PRIVATE) & new),
        CommandHandler(COMMANDS, command, filters=staff & new),
        CallbackQueryHandler(press, pattern=f"^{CB_TICKET}"),
        MessageHandler(
            in_topic & new & ~filters.COMMAND & ~filters.StatusUpdate.ALL & ~filters.VIA_BOT, write
        ),
        MessageHandler(in_topic & filters.UpdateType.EDITED_MESSAGE & ~filters.COMMAND, edit),
    ]


# --- /setup and the staff group's check ----------------------------------------------------------


async def _status(bot: Bot, chat_id: int, user_id: int) -> tuple[str, bool | None]:
    """``getChatMember``: the user's status in the chat and, when restricted, whether they are
    still a member; ("left", None) when Telegram cannot say (nothing is allowed on that)."""
    try:
        member = await bot.get_chat_member(chat_id, user_id)
    except TelegramError:
        return "left", None
    return member.status, getattr(member, "is_member", None)


async def setup(update: Update, context: CareContext) -> None:
    """``/setup [name]`` in a group: make it the staff desk ``name`` (``main`` without one;
    ``handlers.staff.setup`` decides who may); the answer, the group's check and its problems
    follow the commit."""
    message = update.effective_message
    chat = update.effective_chat
    user = update.effective_user
    if message is None or chat is None or user is None:
        return
    deps, desk, bot = context.deps, context.desk, context.bot
    name = (context.args[0] if context.args else group_setup.MAIN).lower()
    async with deps.sessionmaker.begin() as session:  # the stored groups, as of now
        await group_setup.load_stored_group(session, desk.group)
    current = desk.group.chat_of(name)
    # An anonymous administrator writes as the group itself: only administrators can.
    anonymous = message.sender_chat is not None and message.sender_chat.id == chat.id
    admin_here = anonymous or group_setup.is_admin((await _status(bot, chat.id, user.id))[0])
    staff_member = False
    if current is not None and current != chat.id and not anonymous:
        staff_member = commands.counts_as_staff(*await _status(bot, current, user.id))
    request = SetupRequest(
        chat_id=chat.id,
        supergroup=chat.type == Chat.SUPERGROUP,
        title=chat.title,
        user_id=user.id,
        admin_here=admin_here,
        current=current,
        staff_member=staff_member,
        name=name,
        here_is=desk.group.name_of(chat.id),
    )
    async with deps.sessionmaker.begin() as session:
        answer = await group_setup.setup(session, desk, request, deps.clock.now())
    await after_commit(lambda: _after_setup(context, message, answer))


async def _after_setup(context: CareContext, message: Message, answer: SetupAnswer) -> None:
    """Committed: this process uses the group at once (the others within
    ``STAFF_GROUP_REFRESH``), the group hears the answer, then what it lacks."""
    data, desk = context.bot_data, context.desk
    if answer.connected is not None:
        desk.group.set(answer.name, answer.connected)
    wake = data.wake
    if wake is not None:
        wake()  # the waiting tickets' topics
    await message.reply_text(answer.text, do_quote=False)
    if answer.connected is None:
        return
    for problem in await check_staff_group(context.bot, answer.connected):
        await context.bot.send_message(answer.connected, desk.staff_text(problem.key))


async def check_staff_group(bot: Bot, chat_id: int) -> list[Problem]:
    """Ask Telegram what the staff group is (``getChat``) and what the bot may do there
    (``getChatMember``); each problem is logged as one WARNING line. A group the bot cannot
    read at all is one WARNING line too (nothing can be said in it)."""
    try:
        chat = await bot.get_chat(chat_id)
        member = await bot.get_chat_member(chat_id, bot.id)
    except TelegramError as error:
        logger.warning(
            "staff group %s cannot be checked (%s): is the bot still in it?",
            chat_id,
            type(error).__name__,
        )
        return []
    facts = GroupFacts(
        is_forum=bool(chat.is_forum),
        bot_status=member.status,
        can_manage_topics=bool(getattr(member, "can_manage_topics", False)),
    )
    return group_setup.problems_of(chat_id, facts)


async def connect_staff_group(bot: Bot, data: BotData) -> None:
    """At start-up, before any update is handled: the stored staff groups (``main`` fixed by
    ``CAREBOT_STAFF_CHAT_ID`` when set) into the desk, topics made before tickets knew their
    chat given the main group's, then each group's check, its problems queued for its General
    topic; without a main group, one WARNING saying how to connect one."""
    deps, desk = data.deps, data.desk
    async with deps.sessionmaker.begin() as session:
        chat_id = await group_setup.load_at_start(session, desk.group)
    if chat_id is None:
        logger.warning(group_setup.NO_STAFF_GROUP)
    for group_chat in desk.group.chats.values():
        problems = await check_staff_group(bot, group_chat)
        if problems:
            async with deps.sessionmaker.begin() as session:
                await group_setup.queue_problems(
                    session, desk, group_chat, problems, deps.clock.now()
                )
