"""End to end: the staff side shows the truth (issue 18, part 4) — the card at the top of a
topic edited through the outbox when the ticket changes, its buttons fitting the state; notes
acknowledged; the complaint flow's old step buttons taken away; ``/help`` naming
``/complaint`` and free questions; the knowledge base handing staff the question as typed;
membership lookups shared while in flight. Through the real Application and the local Bot
API server, on both databases."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import func, select

from bot.sandbox.api import LocalBotApi
from bot.sandbox.records import FakeUser, SentMessage
from storage.models import InboxUpdate
from tests.auxil.harness import Harness
from tests.auxil.tickets import (
    STAFF,
    desk_ticket,
    lanes_idle,
    latest_ticket,
    plain,
    staff_member,
    staff_says,
    ticket,
    topic_of,
    wait_message,
    wait_text,
)


def card_state(api: LocalBotApi, card: SentMessage) -> tuple[str, list[str]]:
    """The card as Telegram shows it now: its text and its buttons' labels."""
    stored = api.message(STAFF, card.message_id)
    rows = (stored.get("reply_markup") or {}).get("inline_keyboard", [])
    return str(stored.get("text", "")), [button["text"] for row in rows for button in row]


async def wait_card(
    api: LocalBotApi, card: SentMessage, fits: Any, description: str
) -> tuple[str, list[str]]:
    """Wait until the card's (text, labels) satisfy ``fits``."""
    await api.wait_for(lambda: fits(*card_state(api, card)), description=description)
    return card_state(api, card)


def has_buttons(api: LocalBotApi, chat: FakeUser, message: SentMessage) -> bool:
    return bool(api.message(chat.id, message.message_id).get("reply_markup"))


class TestCard:
    async def test_the_card_follows_claim_close_and_the_customers_confirmation(
        self, harness: Harness
    ) -> None:
        api = harness.api
        eli = api.add_user(6101, "Eli")
        kim = staff_member(api, 7201, "Kim")
        number, thread = await desk_ticket(harness, eli)
        card = api.sent(STAFF, thread_id=thread)[0]
        ticket_id = (await ticket(harness, number)).id
        words = harness.text

        text, labels = card_state(api, card)
        assert labels == [
            words("en", "ticket_button_claim"),
            words("en", "ticket_button_close"),
            words("en", "ticket_priority_low"),
            "● normal",  # the chosen priority: its name, no icon under a bullet
            words("en", "ticket_priority_high"),
            words("en", "ticket_priority_urgent"),
        ]
        assert "Assignee: nobody yet" in text

        # Claimed: the card says who, and offers no claim any more.
        await api.press_button(kim, card, f"tk:{ticket_id}:claim")
        text, labels = await wait_card(
            api, card, lambda text, _: "Assignee: Kim" in text, "the card to name Kim"
        )
        assert words("en", "ticket_button_claim") not in labels
        assert words("en", "ticket_button_close") in labels

        # A priority picked on the card: a toast, and the card (text and bullet) follows.
        answered = len(api.answered_callbacks)
        await api.press_button(kim, card, f"tk:{ticket_id}:priority:3")
        text, labels = await wait_card(
            api, card, lambda _, labels: "● urgent" in labels, "the urgent bullet"
        )
        assert "🔥 urgent" in text and "▪️ normal" in labels
        await api.wait_for(lambda: len(api.answered_callbacks) > answered)
        assert api.answered_callbacks[answered]["text"] == words(
            "en", "ticket_priority_set", priority="🔥 urgent", name="Kim"
        )

        # /close: resolved, the card offers reopening instead of closing.
        await staff_says(api, kim, thread, "/close")
        resolved = words("en", "ticket_status_resolved")
        text, labels = await wait_card(
            api, card, lambda text, _: resolved in text, "the card to say resolved"
        )
        assert words("en", "ticket_button_close") not in labels
        assert words("en", "ticket_button_reopen") in labels

        # The customer confirms: closed, only "reopen" is left.
        question = await wait_text(
            api, eli.id, words("en", "ticket_resolved_question", number=number)
        )
        await api.press_button(eli, question, f"tr:{ticket_id}:yes")
        closed = words("en", "ticket_status_closed")
        text, labels = await wait_card(
            api, card, lambda text, _: closed in text, "the card to say closed"
        )
        assert labels == [words("en", "ticket_button_reopen")]

        # Its reopen button reopens the ticket, and the card offers closing again.
        await api.press_button(kim, card, f"tk:{ticket_id}:reopen")
        text, labels = await wait_card(
            api,
            card,
            lambda _, labels: words("en", "ticket_button_close") in labels,
            "the card to offer closing again",
        )
        assert (await ticket(harness, number)).status == "waiting_staff"
        await lanes_idle(harness, number)
        # Every change edited the one card: no second card in the topic.
        cards = [m for m in api.sent(STAFF, thread_id=thread) if (m.text or "").startswith("🎫")]
        assert cards == [card]

    async def test_a_conversation_reads_in_conversation_on_the_card_without_an_edit_a_message(
        self, harness: Harness
    ) -> None:
        api = harness.api
        ida = api.add_user(6102, "Ida")
        max_ = staff_member(api, 7202, "Max")
        number, thread = await desk_ticket(harness, ida)
        card = api.sent(STAFF, thread_id=thread)[0]

        await staff_says(api, max_, thread, "Looking into it")
        in_conversation = harness.text("en", "ticket_status_in_conversation")
        await wait_card(api, card, lambda text, _: in_conversation in text, "in conversation")
        await lanes_idle(harness, number)
        edits = len(api.calls_of("editMessageText"))
        received = len(api.sent(ida))

        # The status now flips with every message (waiting for us, waiting for the customer):
        # the topic's title follows after a pause, the card already says what is true.
        for turn in range(3):
            await api.send_text(ida, f"still nothing, day {turn}")
            await staff_says(api, max_, thread, f"checking again, {turn}")
        await api.wait_for_sent(ida, received + 3)
        await lanes_idle(harness, number)
        assert len(api.calls_of("editMessageText")) == edits
        assert in_conversation in card_state(api, card)[0]


class TestNotes:
    async def test_a_note_is_acknowledged_in_the_topic(self, harness: Harness) -> None:
        api = harness.api
        ann = api.add_user(6103, "Ann")
        max_ = staff_member(api, 7203, "Max")
        number, thread = await desk_ticket(harness, ann)
        before = len(api.sent(ann.id))

        await staff_says(api, max_, thread, "/note refund approved by finance")
        saved = harness.text("en", "ticket_note_saved")
        await wait_text(api, STAFF, saved, thread_id=thread)
        await staff_says(api, max_, thread, "!she called twice")
        await api.wait_for(
            lambda: [m.body for m in api.sent(STAFF, thread_id=thread)].count(saved) == 2,
            description="both notes acknowledged",
        )
        await lanes_idle(harness, number)
        assert len(api.sent(ann.id)) == before  # nothing reached the customer
        assert harness.text("zh", "ticket_note_saved") == "📝 备注已保存，未发给客户。"


class TestStepButtons:
    async def test_each_steps_buttons_go_once_the_step_is_over(self, harness: Harness) -> None:
        api = harness.api
        uma = api.add_user(6104, "Uma")
        sent = len(api.sent(uma.id))

        async def next_message() -> SentMessage:
            nonlocal sent
            sent += 1
            return (await api.wait_for_sent(uma.id, sent))[-1]

        await api.send_text(uma, "/complaint")
        menu = await next_message()
        await api.press_button(uma, menu, "cf:cat:delivery")
        order = await next_message()
        assert "cf:skip" in [data for _, data in order.buttons()]
        assert not has_buttons(api, uma, menu)  # pressed: the categories are gone

        await api.send_text(uma, "A-1029")  # typed instead of pressing Skip
        describe = await next_message()
        await api.wait_for(lambda: not has_buttons(api, uma, order), description="no Skip")

        await api.send_text(uma, "The box was crushed")
        first = await next_message()
        await api.wait_for(lambda: not has_buttons(api, uma, describe), description="describe")
        await api.send_text(uma, "and wet")
        second = await next_message()
        await api.wait_for(lambda: not has_buttons(api, uma, first), description="older Done")
        assert has_buttons(api, uma, second)  # the step goes on: its latest Done stays

        await api.send_text(uma, "/done")  # typed instead of pressing Done
        confirm = await next_message()
        await api.wait_for(lambda: not has_buttons(api, uma, second), description="last Done")
        assert [data for _, data in confirm.buttons()] == ["cf:send", "cf:cancel"]

        await api.press_button(uma, confirm, "cf:send")
        opened = await next_message()
        assert opened.text == harness.text(
            "en", "complaint_opened", number=(await _ticket_number(harness, uma))
        )
        await api.wait_for(lambda: not has_buttons(api, uma, confirm), description="Send")
        assert all(not has_buttons(api, uma, m) for m in api.sent(uma.id))

    async def test_a_reminder_without_buttons_keeps_the_steps_buttons(
        self, harness: Harness
    ) -> None:
        api = harness.api
        vic = api.add_user(6105, "Vic")
        await api.send_text(vic, "/complaint")
        menu = (await api.wait_for_sent(vic.id, 1))[-1]
        await api.send_text(vic, "/done")  # nothing to finish yet: a reminder
        reminder = (await api.wait_for_sent(vic.id, 2))[-1]
        assert reminder.text == harness.text("en", "complaint_pick_category_first")
        assert has_buttons(api, vic, menu)  # the categories are still the way on

        await api.send_text(vic, "/cancel")
        await api.wait_for_sent(vic.id, 3)
        await api.wait_for(lambda: not has_buttons(api, vic, menu), description="cancelled")


async def _ticket_number(harness: Harness, user: FakeUser) -> str:
    found = await latest_ticket(harness, user.id)
    assert found is not None
    return found.number


class TestHelp:
    async def test_help_and_the_greeting_name_complaints_and_free_questions(
        self, harness: Harness
    ) -> None:
        api = harness.api
        for user_id, code, language, own_words in (
            (6106, "en", "en", "in your own words"),
            (6107, "zh-hans", "zh", "用您自己的话提问"),
        ):
            user = api.add_user(user_id, "Wen", language_code=code)
            await api.send_text(user, "/start")
            greeting = (await api.wait_for_sent(user.id, 1))[0]
            await api.send_text(user, "/help")
            help_ = await wait_text(api, user.id, harness.text(language, "help"))
            for said in (greeting.text or "", help_.text or ""):
                assert "/complaint" in said and own_words in said, said


class TestHandoff:
    async def test_staff_get_the_question_as_typed(self, harness: Harness) -> None:
        api = harness.api
        for user_id, code, typed in (
            (6108, "en", "I'm NOT happy, where's my parcel??? Order #A-1029"),
            (6109, "zh-hant", "我的包裹到底在哪裡？訂單還沒收到，請幫我查詢"),
        ):
            user = api.add_user(user_id, "Han", language_code=code)
            await api.send_text(user, typed)
            answer = (await api.wait_for_sent(user.id, 1))[0]
            person = next(
                data for _, data in answer.buttons() if data.startswith(("kb:person:", "kb:down:"))
            )
            await api.press_button(user, answer, person)
            await api.wait_for_sent(user.id, 2)
            number = await _ticket_number(harness, user)
            thread = await topic_of(harness, number)
            card = await wait_message(
                api, STAFF, lambda m: (m.text or "").startswith("🎫"), thread_id=thread
            )
            shown = api.message(STAFF, card.message_id)["text"]
            assert f"❓ {typed}" in shown, shown
            assert plain(harness.text("en", "ticket_card_subject", subject=typed)) in shown


class TestMembershipLookups:
    async def test_twenty_topics_answered_at_once_by_three_staff_ask_telegram_three_times(
        self, harness: Harness
    ) -> None:
        api = harness.api
        staff = [staff_member(api, 7301 + index, f"Staff{index}") for index in range(3)]
        topics = [api.create_topic(STAFF, f"topic {index}") for index in range(20)]
        api.set_latency(0.02)  # every lookup is still in flight when the others want it
        before = len(api.calls_of("getChatMember"))
        await asyncio.gather(
            *(
                staff_says(api, member, topic.message_thread_id, f"hello from {member.id}")
                for member in staff
                for topic in topics
            )
        )
        await api.wait_for(
            lambda: len(api.calls_of("getChatMember")) - before >= 3,
            description="the three lookups",
        )
        # Once every update is handled, nobody asked again.
        await harness.barrier(api.add_user(6110, "Zoe"))
        await _inbox_idle(harness)
        assert len(api.calls_of("getChatMember")) - before == 3


async def _inbox_idle(harness: Harness) -> None:
    """Wait until every stored update has been handled."""

    async def pending() -> int:
        async with harness.sessionmaker() as session:
            result = await session.execute(
                select(func.count()).select_from(InboxUpdate).where(InboxUpdate.state == "pending")
            )
            return int(result.scalar_one())

    for _ in range(500):
        if await pending() == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("updates still pending")
