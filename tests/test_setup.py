"""End to end: the bot sets its staff group up itself. ``/setup`` in a forum supergroup, by an
administrator, makes it the staff desk; what the group lacks is reported in the log and in the
group; tickets opened before wait honestly and get their topics; ``CAREBOT_STAFF_CHAT_ID`` wins;
other groups are ignored with one log line. Through the real Application and the local Bot API
server, on both databases."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from bot.sandbox.api import LocalBotApi
from handlers.staff.telegram import connect_staff_group
from handlers.tickets.lifecycle import TicketDesk
from scheduler.staff_group import StaffGroupWatch
from storage.models import InboxUpdate, StaffGroupSetting
from storage.staff_group import set_staff_group
from tests.auxil.harness import Harness, running_harness
from tests.auxil.tickets import (
    STAFF,
    count,
    file_complaint,
    staff_member,
    staff_reply_text,
    staff_says,
    ticket,
    topic_of,
    wait_message,
    wait_text,
)

PLAIN = -1002000000001
"""A supergroup without Topics."""
NO_RIGHTS = -1002000000002
"""A forum where the bot is an administrator without "Manage topics"."""
BASIC = -2000000003
"""A basic group (no Topics possible without a new id)."""
ELSEWHERE = -1002000000004


@pytest.fixture
async def no_desk(local_api: LocalBotApi, database_url: str) -> AsyncIterator[Harness]:
    """The bot without ``CAREBOT_STAFF_CHAT_ID``: no staff group until ``/setup``."""
    async with running_harness(local_api, database_url, staff_chat_id=None) as harness:
        yield harness


async def _stored(harness: Harness) -> int | None:
    async with harness.sessionmaker() as session:
        return (await session.execute(select(StaffGroupSetting.chat_id))).scalar_one_or_none()


def _warnings(caplog: pytest.LogCaptureFixture, *words: str) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and all(w in record.getMessage() for w in words)
    ]


async def test_a_complaint_waits_honestly_and_gets_its_topic_once_an_admin_runs_setup(
    no_desk: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness, api = no_desk, no_desk.api
    caplog.set_level(logging.INFO)
    await connect_staff_group(harness.application.bot, harness.application.bot_data)
    assert len(_warnings(caplog, "no staff group yet", "/setup")) == 1

    ann = api.add_user(6101, "Ann")
    number = await file_complaint(harness, ann, texts=("The lid was cracked",))
    assert api.sent(ann.id)[-1].text == harness.text(
        "en", "complaint_opened_no_desk", number=number
    )
    assert api.topics(STAFF) == [] and (await ticket(harness, number)).topic_thread_id is None

    mallory = api.add_user(6102, "Mallory")  # writes in the group: a plain member
    await api.send_text(mallory, "/setup", chat_id=STAFF)
    await wait_text(api, STAFF, harness.text("en", "setup_not_admin"))
    assert await _stored(harness) is None

    boss = api.add_user(6103, "Boss")
    api.add_member(STAFF, boss, "creator")
    await api.send_text(boss, "/setup", chat_id=STAFF)
    await wait_text(api, STAFF, harness.text("en", "setup_done"))
    assert await _stored(harness) == STAFF
    thread = await topic_of(harness, number)
    await wait_message(
        api, STAFF, lambda m: "The lid was cracked" in (m.body or ""), thread_id=thread
    )
    assert not _warnings(caplog, f"staff group {STAFF}")  # a forum, the bot may manage topics

    # Staff answer from the topic; a process started before /setup picks the group up.
    anna = staff_member(api, 7101, "Anna")
    await staff_says(api, anna, thread, "A new one is on its way")
    await wait_text(
        api, ann.id, staff_reply_text(harness, "en", "Anna", "A new one is on its way")
    )
    other = TicketDesk.from_config(harness.rules, harness.texts, None)
    await StaffGroupWatch(harness.sessionmaker, other).run(harness.clock.now())
    assert other.staff_chat_id == STAFF


async def test_what_a_staff_group_lacks_is_logged_and_said_in_it(
    no_desk: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness, api = no_desk, no_desk.api
    caplog.set_level(logging.WARNING)
    boss = api.add_user(6201, "Boss")
    api.add_group(BASIC, "Basic", supergroup=False)
    api.add_member(BASIC, boss, "administrator")
    await api.send_text(boss, "/setup", chat_id=BASIC)
    await wait_text(api, BASIC, harness.text("en", "setup_basic_group"))

    api.add_group(PLAIN, "Plain", forum=False)
    api.add_member(PLAIN, boss, "administrator")
    await api.send_text(boss, "/setup", chat_id=PLAIN)
    await wait_text(api, PLAIN, harness.text("en", "setup_done"))
    not_forum = harness.text("en", "setup_problem_not_forum")
    await wait_text(api, PLAIN, not_forum)
    assert len(_warnings(caplog, f"staff group {PLAIN}", "not a forum")) == 1
    assert len(_warnings(caplog, f"staff group {PLAIN}")) == 1  # the bot is an admin there
    # At the next start: the log, and through the outbox the group's General topic.
    await connect_staff_group(harness.application.bot, harness.application.bot_data)
    await api.wait_for(lambda: [m.body for m in api.sent(PLAIN)].count(not_forum) == 2)
    assert len(_warnings(caplog, f"staff group {PLAIN}", "not a forum")) == 2

    # Moving the desk takes a member of the current staff group; the bot lacks a right there.
    api.add_group(NO_RIGHTS, "Desk", forum=True)
    api.add_member(NO_RIGHTS, api.bot_id, "administrator", rights={"can_manage_topics": False})
    stranger = api.add_user(6202, "Stranger")
    api.add_member(NO_RIGHTS, stranger, "creator")
    await api.send_text(stranger, "/setup", chat_id=NO_RIGHTS)
    await wait_text(api, NO_RIGHTS, harness.text("en", "setup_not_staff"))
    await api.send_text(boss, "/setup", chat_id=NO_RIGHTS)
    await wait_text(api, NO_RIGHTS, harness.text("en", "setup_done"))
    await wait_text(api, NO_RIGHTS, harness.text("en", "setup_problem_no_topics_right"))
    assert len(_warnings(caplog, f"staff group {NO_RIGHTS}", "may not manage topics")) == 1
    await wait_text(api, PLAIN, harness.text("en", "setup_moved", title="Desk"))
    assert await _stored(harness) == NO_RIGHTS


async def test_the_setting_wins_over_setup(harness: Harness) -> None:
    api = harness.api
    api.add_group(ELSEWHERE, "Elsewhere", forum=True)
    owner = api.add_user(6301, "Owner")
    api.add_member(ELSEWHERE, owner, "creator")
    await api.send_text(owner, "/setup", chat_id=ELSEWHERE)
    await wait_text(api, ELSEWHERE, harness.text("en", "setup_fixed"))
    assert await _stored(harness) is None and harness.desk.staff_chat_id == STAFF

    anna = staff_member(api, 7301, "Anna")
    await api.send_text(anna, "/setup", chat_id=STAFF)
    await wait_text(api, STAFF, harness.text("en", "setup_already"))
    assert await _stored(harness) is None


async def test_an_unknown_groups_messages_log_its_id_and_title_and_nothing_else(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    api = harness.api
    caplog.set_level(logging.INFO)  # carebot's default level (PTB's own DEBUG lines hold all)
    api.add_group(ELSEWHERE, "Book club", forum=False)
    zed = api.add_user(6401, "Zed", last_name="Quintana", username="zedq")
    await api.send_text(zed, "my parcel 4711 never came", chat_id=ELSEWHERE)
    await api.send_text(zed, "hello again", chat_id=ELSEWHERE)
    await api.wait_for(lambda: not api.pending_updates, description="the updates fetched")

    [line] = [r for r in caplog.records if str(ELSEWHERE) in r.getMessage()]  # one, not two
    assert line.levelno == logging.INFO and "Book club" in line.getMessage()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in ("parcel", "4711", "hello again", "Zed", "Quintana", "zedq", "6401"):
        assert secret not in logged
    assert await count(harness, InboxUpdate, InboxUpdate.chat_id == ELSEWHERE) == 0


async def test_a_staff_group_set_up_by_another_process_is_heard_at_once(
    no_desk: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness, api = no_desk, no_desk.api
    caplog.set_level(logging.INFO)
    async with harness.sessionmaker.begin() as session:  # /setup in another process
        now = harness.clock.now()
        assert await set_staff_group(
            session, expected=None, chat_id=STAFF, title="Staff", user_id=1, now=now
        )
    anna = staff_member(api, 7501, "Anna")
    await api.send_text(anna, "/claim", chat_id=STAFF)  # in General: no ticket's topic
    await wait_text(api, STAFF, harness.text("en", "ticket_not_a_ticket_topic"))
    assert harness.desk.staff_chat_id == STAFF
    assert not [r for r in caplog.records if "not the staff group" in r.getMessage()]
