"""The staff group set up from Telegram, free of Telegram: who may make a group the staff desk
with ``/setup``, what is stored and said, and what a group lacks for the desk (checked at
start-up and after ``/setup``).

The edge (``handlers.staff.telegram``) asks Telegram the facts first (the sender's membership,
then, after the commit, the group itself) and passes them in as plain values.

- ``CAREBOT_STAFF_CHAT_ID`` fixes the group: ``/setup`` elsewhere is refused.
- No staff group yet: an administrator of the group where ``/setup`` is sent makes it the staff
  group; the first one to commit wins (a compare-and-set on the one stored row).
- A staff group already: only a member of it may move the desk (the old group's topics stay
  there as they are; open tickets get new topics in the new group).
- ``/setup <name>`` does the same for the named group (``vip``, ``intl``: routing rules in
  ``tickets.toml`` send tickets there); a bare ``/setup`` is ``main``'s. A chat is one group
  only; the setting fixes ``main`` alone.

Accepted, the tickets that waited for a group (or whose topics were in the old one) get their
topics in the same transaction (``handlers.tickets.lanes.give_topics``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.kernel.config import CODE
from handlers.tickets.desk import Desk, StaffGroup
from handlers.tickets.lanes import give_topics
from storage import outbox as outbox_queries
from storage.outbox import Priority
from storage.payloads import ReadyText
from storage.staff_group import (
    MAIN,
    adopt_topics,
    forget_topics,
    set_staff_group,
    stored_staff_groups,
)

logger = logging.getLogger(__name__)

ADMIN_STATUSES = frozenset({"creator", "administrator"})
KIND_STAFF_GROUP = "staff.group"
NO_STAFF_GROUP = (
    "no staff group yet: tickets open and wait for it. Add the bot to a forum supergroup "
    "(Topics on) as an administrator with the right 'Manage topics', and send /setup there "
    "(or set CAREBOT_STAFF_CHAT_ID)"
)
"""The WARNING every start logs while there is no staff group."""


@dataclass(frozen=True)
class SetupRequest:
    """``/setup`` as the edge saw it, with what Telegram said of the sender."""

    chat_id: int
    supergroup: bool
    """A supergroup (forums are supergroups); a basic group changes its id when Topics are
    turned on, so it cannot be the staff group."""
    title: str | None
    user_id: int
    admin_here: bool
    """The sender is an administrator of this group (or an anonymous one)."""
    current: int | None
    """The staff group stored when the edge asked (None: none yet)."""
    staff_member: bool
    """The sender is a member of ``current`` (Telegram's ``getChatMember`` there)."""
    name: str = MAIN
    """The group's name (``/setup vip``; a bare ``/setup``: main)."""
    here_is: str | None = None
    """The name of the staff group this chat is already (None: none)."""


@dataclass(frozen=True)
class SetupAnswer:
    """What to say in the group where ``/setup`` was sent; ``connected``: the group is the
    staff desk (now or already): this process uses it at once and the edge checks it."""

    text: str
    connected: int | None = None
    name: str = MAIN


def is_admin(status: str) -> bool:
    return status in ADMIN_STATUSES


async def setup(
    session: AsyncSession, desk: Desk, request: SetupRequest, now: datetime
) -> SetupAnswer:
    """``/setup [name]`` in a group: the rule, then (accepted) the stored row and the waiting
    topics."""
    here, name = request.chat_id, request.name
    refused = _refusal(desk, request)
    if refused is not None:
        return refused
    stored = await set_staff_group(
        session,
        expected=request.current,
        chat_id=here,
        title=request.title,
        user_id=request.user_id,
        now=now,
        name=name,
    )
    if not stored:
        return SetupAnswer(desk.staff_text("setup_changed"))
    if request.current is not None:
        await _moved_away(session, desk, request, now)
    group = desk.group
    connected = StaffGroup(group.chat_id, group.fixed, dict(group.others), group.warned)
    connected.set(name, here)
    # This transaction's view of the desk.
    waiting = await give_topics(session, replace(desk, group=connected), now)
    logger.info(
        "staff group %r set by /setup: chat %s (before: %s); %d ticket topic(s) on their way",
        name,
        here,
        request.current,
        waiting,
    )
    if name == MAIN:
        return SetupAnswer(desk.staff_text("setup_done"), connected=here)
    return SetupAnswer(desk.staff_text("setup_done_named", name=name), connected=here, name=name)


def _refusal(desk: Desk, request: SetupRequest) -> SetupAnswer | None:
    """Why this ``/setup`` changes nothing (the answer says it), or None: it goes ahead."""
    here, name = request.chat_id, request.name
    already = SetupAnswer(desk.staff_text("setup_already"), connected=here, name=name)
    if not re.match(CODE, name):
        return SetupAnswer(desk.staff_text("setup_bad_name", name=name[:40]))
    if name == MAIN and desk.group.fixed:
        if here == desk.staff_chat_id:
            return already
        return SetupAnswer(desk.staff_text("setup_fixed"))
    if request.current == here:
        return already
    if request.here_is is not None and request.here_is != name:
        return SetupAnswer(desk.staff_text("setup_other_group", name=request.here_is))
    if not request.supergroup:
        return SetupAnswer(desk.staff_text("setup_basic_group"))
    if request.current is None and not request.admin_here:
        return SetupAnswer(desk.staff_text("setup_not_admin"))
    if request.current is not None and not request.staff_member:
        return SetupAnswer(desk.staff_text("setup_not_staff"))
    return None


async def _moved_away(
    session: AsyncSession, desk: Desk, request: SetupRequest, now: datetime
) -> None:
    """The desk leaves ``request.current``: its thread ids mean nothing in the new group, and
    the old group is told where the desk went."""
    assert request.current is not None
    await forget_topics(session, request.current)
    await outbox_queries.enqueue(
        session,
        dedupe_key=f"staff-group:moved:{request.current}:{request.chat_id}:{now.isoformat()}",
        chat_id=request.current,
        kind=KIND_STAFF_GROUP,
        payload=ReadyText(
            desk.staff_text("setup_moved", title=request.title or str(request.chat_id)),
            html=True,
        ),
        due_at=now,
        now=now,
        priority=Priority.NOTICE,
    )


async def load_at_start(session: AsyncSession, group: StaffGroup) -> int | None:
    """``load_stored_group`` at start-up; topics made before tickets knew their chat (the
    setting fixed the group, so the migration could not tell) are the main group's."""
    chat_id = await load_stored_group(session, group)
    if chat_id is not None:
        await adopt_topics(session, chat_id)
    return chat_id


async def load_stored_group(session: AsyncSession, group: StaffGroup) -> int | None:
    """Bring ``group`` up to date with the stored rows (the setting, when set, stays ``main``);
    returns ``main``'s chat id."""
    group.load(await stored_staff_groups(session))
    return group.chat_id


# --- what a staff group needs ------------------------------------------------------------------


@dataclass(frozen=True)
class GroupFacts:
    """What Telegram says of a group and of the bot in it (``getChat``, ``getChatMember``)."""

    is_forum: bool
    bot_status: str
    can_manage_topics: bool


@dataclass(frozen=True)
class Problem:
    """Something the staff group lacks: the text for its General topic and the log's words."""

    key: str
    log: str
    applies: Callable[[GroupFacts], bool]


PROBLEMS = (
    Problem(
        "setup_problem_not_forum",
        "is not a forum: turn on Topics in the group's settings",
        lambda facts: not facts.is_forum,
    ),
    Problem(
        "setup_problem_not_admin",
        "the bot is not an administrator there: make it one, with the right 'Manage topics'",
        lambda facts: not is_admin(facts.bot_status),
    ),
    Problem(
        "setup_problem_no_topics_right",
        "the bot may not manage topics there: give it the administrator right 'Manage topics'",
        lambda facts: is_admin(facts.bot_status) and not facts.can_manage_topics,
    ),
)
"""Each need of a staff group, in the order they are reported."""


def problems_of(chat_id: int, facts: GroupFacts) -> list[Problem]:
    """What the group lacks, each logged as one WARNING line."""
    found = [problem for problem in PROBLEMS if problem.applies(facts)]
    for problem in found:
        logger.warning("staff group %s: %s", chat_id, problem.log)
    return found


async def queue_problems(
    session: AsyncSession, desk: Desk, chat_id: int, problems: list[Problem], now: datetime
) -> None:
    """One message per problem in the group's General topic (at start-up; processes starting
    in the same minute say it once)."""
    minute = now.strftime("%Y-%m-%dT%H:%M")
    for problem in problems:
        await outbox_queries.enqueue(
            session,
            dedupe_key=f"staff-group:{chat_id}:{problem.key}:{minute}",
            chat_id=chat_id,
            kind=KIND_STAFF_GROUP,
            payload=ReadyText(desk.staff_text(problem.key), html=True),
            due_at=now,
            now=now,
            priority=Priority.NOTICE,
        )
