"""End to end: the complaint flow and the whole ticket loop, through the real Application, the
outbox dispatcher and the local Bot API server, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from bot.kernel.texts import Markup
from bot.sandbox.records import FakeUser
from bot.settings import EXAMPLE_CONFIG_DIR
from handlers.answers.kb import load_knowledge_base
from handlers.tickets.desk import KIND_CUSTOMER, KIND_TOPIC
from storage.models import ComplaintDraft, Customer, Order, Outbox, Ticket
from storage.tickets.rows import ticket_by_number
from tests.auxil.harness import Harness
from tests.auxil.tickets import (
    STAFF,
    count,
    desk_ticket,
    file_complaint,
    lanes_idle,
    latest_ticket,
    messages,
    staff_member,
    staff_says,
    ticket,
    topic_of,
    wait_edited,
    wait_message,
    wait_text,
    wait_topics,
)


class TestWholeLoop:
    async def test_complaint_topic_replies_close_and_confirmation(self, harness: Harness) -> None:
        api = harness.api
        li = api.add_user(5001, "小丽", language_code="zh-hans")
        anna = staff_member(api, 7001, "Anna", "anna")

        # The customer files a complaint with a text and a photo.
        number = await file_complaint(harness, li, texts=("包裹破了",), photos=1)
        assert number == "C-000001"
        thread = await topic_of(harness, number)

        # The topic: named with number, tier and status; the card first, then the copies.
        [topic] = await wait_topics(api)
        assert topic.message_thread_id == thread
        assert topic.name == "C-000001 · Normal · 🆕 new · 小丽"
        in_topic = await api.wait_for_sent(STAFF, 3, thread_id=thread)
        card, copied_text, copied_photo = in_topic[:3]
        assert card.text is not None and card.text.startswith("🎫 <b>C-000001</b>")
        assert "小丽" in card.text and "中文" in card.text
        assert ("🙋 Claim", "tk:1:claim") in card.buttons()
        assert ("✅ Close", "tk:1:close") in card.buttons()
        assert copied_text.method == "copyMessage" and copied_text.text == "包裹破了"
        assert copied_photo.kind == "photo" and copied_photo.caption == "photo 1"

        # Staff answer with a text and a photo: the customer gets both, named, in Chinese.
        before = len(api.sent(li.id))
        await staff_says(api, anna, thread, "非常抱歉，我们马上处理")
        await api.send_photo(anna, caption="这是补发单", chat_id=STAFF, message_thread_id=thread)
        reply, photo = (await api.wait_for_sent(li.id, before + 2))[before:]
        assert reply.text == harness.text(
            "zh", "ticket_staff_says", name="Anna", text=Markup("非常抱歉，我们马上处理")
        )
        assert photo.kind == "photo" and photo.copied_from is not None
        assert photo.caption == harness.text(
            "zh", "ticket_staff_caption", name="Anna", caption=Markup("这是补发单")
        )

        # The customer answers: the answer is copied into the topic.
        answer = await api.send_text(li, "好的，谢谢")
        await wait_message(
            api,
            STAFF,
            lambda m: m.copied_from == (li.id, answer["message"]["message_id"]),
            thread_id=thread,
        )

        # Staff close: the customer is asked, in Chinese, and confirms.
        await staff_says(api, anna, thread, "/close")
        question = await wait_text(
            api, li.id, harness.text("zh", "ticket_resolved_question", number=number)
        )
        assert [data for _, data in question.buttons()] == ["tr:1:yes", "tr:1:no"]
        await api.press_button(li, question, "tr:1:yes")
        thanks = harness.text("zh", "ticket_closed_thanks", number=number)
        await wait_edited(api, li.id, question.message_id, thanks)
        await wait_text(
            api, STAFF, harness.text("en", "ticket_customer_confirmed"), thread_id=thread
        )
        await lanes_idle(harness, number)

        closed = await ticket(harness, number)
        assert closed.status == "closed" and closed.open_customer_id is None
        assert closed.first_response_at == closed.opened_at == harness.clock.now()
        assert closed.resolved_at is not None and closed.closed_at is not None
        [topic] = api.topics(STAFF)
        assert topic.closed and topic.name == "C-000001 · Normal · 🔒 closed · 小丽"
        history = await messages(harness, number)
        assert [m.direction for m in history if m.direction != "event"] == [
            "in",
            "in",
            "out",
            "out",
            "in",
        ]
        assert all(m.state == "relayed" for m in history if m.direction in ("in", "out"))

    async def test_recent_orders_are_offered_and_a_typed_number_is_kept(
        self, harness: Harness
    ) -> None:
        api = harness.api
        tom = api.add_user(5002, "Tom")
        await api.send_text(tom, "/start")
        await api.wait_for_sent(tom.id, 2)  # welcome, consent question
        now = harness.clock.now()
        async with harness.sessionmaker.begin() as session:
            customer = (
                await session.execute(select(Customer).where(Customer.telegram_user_id == tom.id))
            ).scalar_one()
            for index, external in enumerate(("A-1001", "A-1002")):
                session.add(
                    Order(
                        external_id=external,
                        customer_id=customer.id,
                        amount_cents=12_300 + index,
                        currency="CNY",
                        value_cents=12_300 + index,
                        status="delivered",
                        placed_at=now - timedelta(days=10 - index),
                        placed_day=0,
                        created_at=now,
                        updated_at=now,
                    )
                )
        await api.send_text(tom, "/complaint")
        menu = (await api.wait_for_sent(tom.id, 3))[-1]
        await api.press_button(tom, menu, "cf:cat:quality")
        orders = (await api.wait_for_sent(tom.id, 4))[-1]
        assert orders.text == harness.text("en", "complaint_order_pick")
        labels = [label for label, _ in orders.buttons()]
        assert labels[:2] == [
            "A-1002 · 2026-11-14 · 123.01 CNY",
            "A-1001 · 2026-11-13 · 123.00 CNY",
        ]
        await api.send_text(tom, "Z-999")  # typed instead: kept as typed
        await api.wait_for_sent(tom.id, 5)
        async with harness.sessionmaker() as session:
            draft = (await session.execute(select(ComplaintDraft))).scalar_one()
        assert (draft.step, draft.order_ref, draft.order_id) == ("description", "Z-999", None)


class TestFlow:
    async def test_cancel_mid_flow_leaves_nothing(self, harness: Harness) -> None:
        api = harness.api
        eva = api.add_user(5010, "Eva")
        await api.send_text(eva, "/complaint")
        menu = (await api.wait_for_sent(eva.id, 1))[-1]
        await api.press_button(eva, menu, "cf:cat:billing")
        order = (await api.wait_for_sent(eva.id, 2))[-1]
        await api.press_button(eva, order, "cf:skip")
        await api.wait_for_sent(eva.id, 3)
        await api.send_text(eva, "I was charged twice")
        await api.send_photo(eva, caption="receipt")
        await api.wait_for_sent(eva.id, 5)

        await api.send_text(eva, "/cancel")
        cancelled = (await api.wait_for_sent(eva.id, 6))[-1]
        assert cancelled.text == harness.text("en", "complaint_cancelled")
        assert await count(harness, ComplaintDraft) == 0
        assert await count(harness, Ticket) == 0
        assert await count(harness, Outbox, Outbox.kind.in_([KIND_TOPIC, KIND_CUSTOMER])) == 0
        assert api.topics(STAFF) == []

        # The flow is over: the old buttons are expired, free text is for the knowledge base.
        await api.press_button(eva, order, "cf:skip")
        await api.wait_for(lambda: len(api.answered_callbacks) >= 3)
        assert api.answered_callbacks[-1]["text"] == harness.text("en", "button_expired")
        await api.send_text(eva, "where is my parcel")
        answer = (await api.wait_for_sent(eva.id, 7))[-1]
        assert answer.text != harness.text("en", "complaint_added", count=3)
        assert await count(harness, ComplaintDraft) == 0

    async def test_a_restart_mid_flow_resumes_at_the_same_step(self, harness: Harness) -> None:
        api = harness.api
        bo = api.add_user(5011, "Bo")
        await api.send_text(bo, "/complaint")
        menu = (await api.wait_for_sent(bo.id, 1))[-1]
        await api.press_button(bo, menu, "cf:cat:service")
        order = (await api.wait_for_sent(bo.id, 2))[-1]
        await api.press_button(bo, order, "cf:skip")
        await api.wait_for_sent(bo.id, 3)
        await api.send_text(bo, "The courier was rude")
        await api.wait_for_sent(bo.id, 4)

        await harness.restart()  # a new Application (and dispatcher) on the same database

        await api.send_text(bo, "and threw the box")
        added = (await api.wait_for_sent(bo.id, 5))[-1]
        assert added.text == harness.text("en", "complaint_added", count=2)
        await api.press_button(bo, added, "cf:done")
        confirm = (await api.wait_for_sent(bo.id, 6))[-1]
        assert "Category: 🙋 Service attitude" in (confirm.text or "")
        await api.press_button(bo, confirm, "cf:send")
        await api.wait_for_sent(bo.id, 7)
        created = await latest_ticket(harness, bo.id)
        assert created is not None and created.category == "service"
        thread = await topic_of(harness, created.number)
        copies = await api.wait_for_sent(STAFF, 3, thread_id=thread)
        assert [m.text for m in copies[1:3]] == ["The courier was rude", "and threw the box"]

    async def test_a_customer_with_an_open_ticket_writes_into_it(self, harness: Harness) -> None:
        api = harness.api
        cy = api.add_user(5012, "Cy")
        number = await file_complaint(harness, cy)
        thread = await topic_of(harness, number)

        # /complaint again: no second ticket, the customer is pointed at the open one.
        before = len(api.sent(cy.id))
        await api.send_text(cy, "/complaint")
        again = (await api.wait_for_sent(cy.id, before + 1))[-1]
        assert again.text == harness.text("en", "complaint_already_open", number=number)
        # Free text goes to the ticket, not to the knowledge base (no answer at all).
        sent = await api.send_text(cy, "where is my parcel")
        await wait_message(
            api,
            STAFF,
            lambda m: m.copied_from == (cy.id, sent["message"]["message_id"]),
            thread_id=thread,
        )
        await lanes_idle(harness, number)
        assert len(api.sent(cy.id)) == before + 1
        assert await count(harness, Ticket) == 1
        found = await ticket(harness, number)
        assert found.status == "open"  # no staff reply yet


class TestReopening:
    async def _closed(self, harness: Harness, user_id: int) -> tuple[FakeUser, str, int]:
        api = harness.api
        user = api.add_user(user_id, "Dee")
        staff = staff_member(api, 7002, "Max")
        number, thread = await desk_ticket(harness, user)
        await staff_says(api, staff, thread, "/close")
        question = await wait_text(
            api, user.id, harness.text("en", "ticket_resolved_question", number=number)
        )
        await api.press_button(user, question, f"tr:{(await ticket(harness, number)).id}:yes")
        thanks = harness.text("en", "ticket_closed_thanks", number=number)
        await wait_edited(api, user.id, question.message_id, thanks)
        await lanes_idle(harness, number)
        assert api.topics(STAFF)[0].closed
        return user, number, thread

    async def test_writing_within_the_window_reopens_the_ticket_and_its_topic(
        self, harness: Harness
    ) -> None:
        api = harness.api
        user, number, thread = await self._closed(harness, 5020)
        harness.clock.advance(timedelta(hours=70))
        sent = await api.send_text(user, "It broke again")
        await wait_text(api, user.id, harness.text("en", "ticket_reopened_notice", number=number))
        await wait_message(
            api,
            STAFF,
            lambda m: m.copied_from == (user.id, sent["message"]["message_id"]),
            thread_id=thread,
        )
        found = await ticket(harness, number)
        assert (found.status, found.reopen_count) == ("waiting_staff", 1)
        assert not api.topics(STAFF)[0].closed
        assert await count(harness, Ticket) == 1

    async def test_later_a_follow_up_ticket_opens_and_much_later_the_kb_answers(
        self, harness: Harness
    ) -> None:
        api = harness.api
        user, _, _ = await self._closed(harness, 5021)
        harness.clock.advance(timedelta(days=5))
        await api.send_text(user, "One more problem")
        await wait_text(
            api, user.id, harness.text("en", "ticket_follow_up_opened", number="C-000002")
        )
        follow_up = await ticket(harness, "C-000002")
        assert (follow_up.source, follow_up.category) == ("follow_up", "delivery")
        await topic_of(harness, "C-000002")
        assert len(api.topics(STAFF)) == 2


class TestHandoff:
    async def test_talk_to_a_person_opens_a_question_ticket(self, harness: Harness) -> None:
        api = harness.api
        gus = api.add_user(5030, "Gus")
        await api.send_text(gus, "what is the capital of france")
        reply = (await api.wait_for_sent(gus.id, 1))[0]
        person = next(data for _, data in reply.buttons() if data.startswith("kb:person:"))
        await api.press_button(gus, reply, person)
        await wait_text(api, gus.id, harness.text("en", "kb_handoff_requested"))
        thread = await topic_of(harness, "Q-000001")
        card = (await api.wait_for_sent(STAFF, 1, thread_id=thread))[0]
        assert "❓ what is the capital of france" in (card.text or "")
        found = await ticket(harness, "Q-000001")
        assert (found.source, found.category, found.subject) == (
            "question",
            "question",
            "what is the capital of france",
        )
        # A second press changes nothing; what Gus writes now goes to the ticket.
        await api.press_button(gus, reply, person)
        sent = await api.send_text(gus, "hello?")
        await wait_message(
            api,
            STAFF,
            lambda m: m.copied_from == (gus.id, sent["message"]["message_id"]),
            thread_id=thread,
        )
        assert await count(harness, Ticket) == 1

    async def test_thumbs_down_opens_a_question_ticket_with_the_answer_given(
        self, harness: Harness
    ) -> None:
        api = harness.api
        ida = api.add_user(5031, "Ida", language_code="en")
        await api.send_text(ida, "Where is my parcel?")
        answer = (await api.wait_for_sent(ida.id, 1))[0]
        down = next(data for _, data in answer.buttons() if data.startswith("kb:down:"))
        await api.press_button(ida, answer, down)
        await wait_text(api, ida.id, harness.text("en", "kb_handoff_requested"))
        thread = await topic_of(harness, "Q-000001")
        card, given = await api.wait_for_sent(STAFF, 2, thread_id=thread)
        assert "❓ Where is my parcel?" in (card.text or "")  # as the customer typed it
        entry = load_knowledge_base(EXAMPLE_CONFIG_DIR).entry("tracking")
        assert entry is not None
        assert given.text == harness.text(
            "en", "ticket_kb_answer_given", entry="tracking", answer=Markup(entry.answer.en)
        )
        found = await ticket(harness, "Q-000001")
        assert (found.source, found.category, found.customer_id) == (
            "question",
            "question",
            (await harness.customer(ida.id)).id,  # type: ignore[union-attr]
        )
        # What Ida writes next goes to the ticket, not to the knowledge base.
        sent = await api.send_text(ida, "it says delivered but it is not here")
        await wait_message(
            api,
            STAFF,
            lambda m: m.copied_from == (ida.id, sent["message"]["message_id"]),
            thread_id=thread,
        )
        assert await count(harness, Ticket) == 1


async def test_forget_erases_what_the_customer_wrote_in_tickets(harness: Harness) -> None:
    api = harness.api
    hal = api.add_user(5040, "Hal")
    number, thread = await desk_ticket(harness, hal)
    secret = (await api.send_text(hal, "my secret address"))["message"]["message_id"]
    await wait_message(api, STAFF, lambda m: m.copied_from == (hal.id, secret), thread_id=thread)
    before = len(api.sent(hal.id))
    await api.send_text(hal, "/forget")
    confirm = (await api.wait_for_sent(hal.id, before + 1))[-1]
    await api.press_button(hal, confirm, "forget:yes")
    await api.wait_for_sent(hal.id, before + 2)
    history = await messages(harness, number)
    assert [m.text for m in history if m.direction == "in"] == [None]
    async with harness.sessionmaker() as session:
        kept = await ticket_by_number(session, number)
    assert kept is not None  # the ticket stays for the statistics
