"""End to end: the relay between customers and ticket topics under Telegram's realities —
server errors, albums, edits, deleted and closed topics, long captions, bursts, floods, two
customers at once, a customer who blocked the bot — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select

from handlers.tickets.desk import KIND_TOPIC
from handlers.tickets.lifecycle import open_ticket
from storage.models import Customer, Outbox, Ticket, TicketMessage
from tests.auxil.harness import Harness
from tests.auxil.tickets import (
    STAFF,
    count,
    desk_ticket,
    lanes_idle,
    messages,
    open_ticket_for,
    staff_member,
    staff_reply_text,
    staff_says,
    ticket,
    topic_of,
    wait_message,
    wait_stored,
    wait_text,
    wait_topics,
)


def _id(update: dict[str, object]) -> int:
    message = update["message"]
    assert isinstance(message, dict)
    return int(message["message_id"])


class TestNothingLost:
    async def test_copy_failing_with_500_twice_arrives_once(self, harness: Harness) -> None:
        api = harness.api
        ada = api.add_user(8001, "Ada")
        number, thread = await desk_ticket(harness, ada)
        await lanes_idle(harness, number)

        api.fail("copyMessage", error_code=500, times=2)
        sent = _id(await api.send_text(ada, "Are you there?"))
        await wait_message(api, STAFF, lambda m: m.copied_from == (ada.id, sent), thread_id=thread)
        await lanes_idle(harness, number)
        copies = [m for m in api.sent(STAFF, thread_id=thread) if m.copied_from == (ada.id, sent)]
        assert len(copies) == 1
        attempts = [c for c in api.calls_of("copyMessage") if c.params.get("message_id") == sent]
        assert [c.status for c in attempts] == [500, 500, 200]

    async def test_a_429_on_a_relay_is_waited_out(self, harness: Harness) -> None:
        api = harness.api
        bea = api.add_user(8002, "Bea")
        number, thread = await desk_ticket(harness, bea)
        await lanes_idle(harness, number)
        api.fail("copyMessage", error_code=429, retry_after=1, times=1)
        sent = _id(await api.send_text(bea, "hello?"))
        copy = await wait_message(
            api, STAFF, lambda m: m.copied_from == (bea.id, sent), thread_id=thread, within=8
        )
        first = next(c for c in api.calls_of("copyMessage") if c.status == 429)
        assert copy.at - first.at >= 0.9  # Telegram's retry_after was honoured

    async def test_a_reply_to_a_customer_who_blocked_the_bot_is_marked_undelivered(
        self, harness: Harness
    ) -> None:
        api = harness.api
        cy = api.add_user(8003, "Cy")
        pat = staff_member(api, 7201, "Pat")
        number, thread = await desk_ticket(harness, cy)
        api.block(cy)
        reply = await staff_says(api, pat, thread, "Here is your refund")
        reason = harness.text("en", "ticket_reason_blocked")
        notice = await wait_text(
            api, STAFF, harness.text("en", "ticket_undelivered", reason=reason), thread_id=thread
        )
        assert notice.reply_to_message_id == _id(reply)
        [out] = [m for m in await messages(harness, number) if m.direction == "out"]
        assert out.state == "undelivered"


class TestTelegramRealities:
    async def test_an_album_arrives_as_one_album(self, harness: Harness) -> None:
        api = harness.api
        dee = api.add_user(8004, "Dee")
        number, thread = await desk_ticket(harness, dee)
        await lanes_idle(harness, number)

        assert harness.dispatch_clock is not None
        harness.dispatch_clock.restart()  # the album's grace starts now, in real time
        for index in range(3):
            await api.send_photo(dee, caption=f"side {index + 1}", media_group_id="album-1")
        album = await api.wait_for_sent(STAFF, 4, thread_id=thread)  # the card, 3 photos
        photos = [m for m in album if m.kind == "photo"]
        assert len(photos) == 3
        assert len({m.media_group_id for m in photos}) == 1 and photos[0].media_group_id
        assert [m.caption for m in photos] == ["side 1", "side 2", "side 3"]
        assert len(api.calls_of("sendMediaGroup")) == 1
        await lanes_idle(harness, number)
        stored = [m for m in await messages(harness, number) if m.kind == "photo"]
        assert [m.copy_message_id for m in stored] == [m.message_id for m in photos]

    async def test_an_edit_shows_up_marked_and_the_original_is_kept(
        self, harness: Harness
    ) -> None:
        api = harness.api
        eli = api.add_user(8005, "Eli")
        number, thread = await desk_ticket(harness, eli)
        sent = _id(await api.send_text(eli, "order 1234"))
        copy = await wait_message(
            api, STAFF, lambda m: m.copied_from == (eli.id, sent), thread_id=thread
        )
        await api.edit_message(eli, sent, "order 1243, sorry")
        marked = await wait_text(
            api,
            STAFF,
            harness.text("en", "ticket_edited_marker", text="order 1243, sorry"),
            thread_id=thread,
        )
        assert marked.reply_to_message_id == copy.message_id
        history = [m for m in await messages(harness, number) if m.chat_message_id == sent]
        assert [(m.text, m.edit_of_id is None) for m in history] == [
            ("order 1234", True),
            ("order 1243, sorry", False),
        ]

    async def test_a_deleted_topic_is_recreated_with_the_history(self, harness: Harness) -> None:
        api = harness.api
        fox = api.add_user(8006, "Fox")
        zed = staff_member(api, 7202, "Zed")
        number, thread = await desk_ticket(harness, fox)
        first = _id(await api.send_text(fox, "the lid is cracked"))
        await wait_message(
            api, STAFF, lambda m: m.copied_from == (fox.id, first), thread_id=thread
        )
        await staff_says(api, zed, thread, "Can you send a photo?")
        await wait_text(
            api, fox.id, staff_reply_text(harness, "en", "Zed", "Can you send a photo?")
        )
        await lanes_idle(harness, number)

        api.delete_topic(STAFF, thread)
        sent = _id(await api.send_text(fox, "here it is"))
        topics = await wait_topics(api, 2)
        [new] = topics
        assert new.message_thread_id != thread and new.name.startswith(number)
        copy = await wait_message(
            api, STAFF, lambda m: m.copied_from == (fox.id, sent), thread_id=new.message_thread_id
        )
        card, summary = api.sent(STAFF, thread_id=new.message_thread_id)[:2]
        assert (card.text or "").startswith(f"🎫 <b>{number}</b>")
        assert "the lid is cracked" in (summary.text or "")
        assert "Can you send a photo?" in (summary.text or "")
        assert "here it is" not in (summary.text or "")  # it follows as a copy
        assert copy.message_id > summary.message_id
        assert (await ticket(harness, number)).topic_thread_id == new.message_thread_id

    async def test_a_topic_closed_by_staff_is_reopened_when_the_customer_writes(
        self, harness: Harness
    ) -> None:
        api = harness.api
        gil = api.add_user(8007, "Gil")
        number, thread = await desk_ticket(harness, gil)
        await lanes_idle(harness, number)
        api.close_topic(STAFF, thread)
        sent = _id(await api.send_text(gil, "anyone?"))
        await wait_message(api, STAFF, lambda m: m.copied_from == (gil.id, sent), thread_id=thread)
        assert not api.topics(STAFF)[0].closed
        assert len(api.calls_of("reopenForumTopic")) == 1

    async def test_a_caption_over_the_limit_falls_back_to_text(self, harness: Harness) -> None:
        api = harness.api
        hal = api.add_user(8008, "Hal")
        _, thread = await desk_ticket(harness, hal)
        long_caption = "x" * 1500  # premium users may send captions up to 4096 characters
        sent = _id(await api.send_photo(hal, caption=long_caption))
        copy = await wait_message(
            api, STAFF, lambda m: m.copied_from == (hal.id, sent), thread_id=thread
        )
        assert copy.kind == "photo"
        assert copy.caption == harness.text("en", "ticket_caption_below")
        await wait_text(
            api,
            STAFF,
            harness.text("en", "ticket_caption_overflow", text=long_caption),
            thread_id=thread,
        )


class TestOrder:
    async def test_a_burst_before_the_topic_exists_makes_one_topic_in_order(
        self, harness: Harness
    ) -> None:
        api = harness.api
        ivy = api.add_user(8009, "Ivy")
        api.fail("createForumTopic", error_code=500, times=1)  # the topic is late
        opened = await open_ticket_for(harness, ivy)
        sent = [_id(await api.send_text(ivy, f"message {n}")) for n in range(8)]
        await wait_topics(api, 1)
        thread = await topic_of(harness, opened.number)
        copies = await api.wait_for_sent(STAFF, 9, thread_id=thread)
        assert [m.copied_from for m in copies[1:]] == [(ivy.id, n) for n in sent]
        assert len(api.topics(STAFF)) == 1
        assert await count(harness, Ticket) == 1

    async def test_two_customers_interleaved_never_cross(self, harness: Harness) -> None:
        api = harness.api
        jo = api.add_user(8010, "Jo")
        kai = api.add_user(8011, "Kai")
        sam = staff_member(api, 7203, "Sam")
        one = await open_ticket_for(harness, jo)
        two = await open_ticket_for(harness, kai)
        thread_one = await topic_of(harness, one.number)
        thread_two = await topic_of(harness, two.number)
        for round_ in range(3):
            await api.send_text(jo, f"jo {round_}")
            await staff_says(api, sam, thread_two, f"to kai {round_}")
            await api.send_text(kai, f"kai {round_}")
            await staff_says(api, sam, thread_one, f"to jo {round_}")
        await api.wait_for_sent(STAFF, 4, thread_id=thread_one)
        await api.wait_for_sent(STAFF, 4, thread_id=thread_two)
        await api.wait_for_sent(jo.id, 5)  # welcome, consent question, 3 replies
        await api.wait_for_sent(kai.id, 5)
        await lanes_idle(harness, one.number)
        await lanes_idle(harness, two.number)

        def relayed(chat: int, thread: int | None = None) -> list[str]:
            return [m.body or "" for m in api.sent(chat, thread_id=thread) if m.body]

        assert [t for t in relayed(STAFF, thread_one) if not t.startswith("🎫")] == [
            "jo 0",
            "jo 1",
            "jo 2",
        ]
        assert [t for t in relayed(STAFF, thread_two) if not t.startswith("🎫")] == [
            "kai 0",
            "kai 1",
            "kai 2",
        ]
        assert [t for t in relayed(jo.id) if "Sam" in t] == [
            staff_reply_text(harness, "en", "Sam", f"to jo {n}") for n in range(3)
        ]
        assert [t for t in relayed(kai.id) if "Sam" in t] == [
            staff_reply_text(harness, "en", "Sam", f"to kai {n}") for n in range(3)
        ]

    async def test_a_flood_is_throttled_with_one_notice(self, harness: Harness) -> None:
        api = harness.api
        leo = api.add_user(8012, "Leo")
        opened = await open_ticket_for(harness, leo)
        thread = await topic_of(harness, opened.number)
        limit = harness.rules.tickets.flood.max_messages
        for n in range(limit + 3):
            await api.send_text(leo, f"spam {n}")
        await wait_text(api, leo.id, harness.text("en", "ticket_flood_notice"))
        await wait_stored(harness, opened.number, "in", limit + 3)
        states = [m.state for m in await messages(harness, opened.number) if m.direction == "in"]
        assert states.count("throttled") == 3
        # A minute later the customer is heard again. Their message is handled after the
        # spam and copied behind it: once its copy is there, all the spam's effects are too.
        harness.clock.advance(timedelta(seconds=harness.rules.tickets.flood.per_seconds + 1))
        sent = _id(await api.send_text(leo, "calm now"))
        await wait_message(api, STAFF, lambda m: m.copied_from == (leo.id, sent), thread_id=thread)
        copies = [m for m in api.sent(STAFF, thread_id=thread) if m.copied_from]
        assert [m.body for m in copies] == [*(f"spam {n}" for n in range(limit)), "calm now"]
        notices = [
            m for m in api.sent(leo.id) if m.body == harness.text("en", "ticket_flood_notice")
        ]
        assert len(notices) == 1


CONCURRENT_OPENINGS = 6


async def test_concurrent_openings_for_one_customer_make_one_ticket(harness: Harness) -> None:
    """Two bot processes (or a double tap) opening a ticket at the same moment: one ticket,
    one topic; on PostgreSQL the sessions really are concurrent."""
    api = harness.api
    mia = api.add_user(8013, "Mia")
    await api.send_text(mia, "/start")
    await api.wait_for_sent(mia.id, 2)

    async def open_one() -> str:
        async with harness.sessionmaker.begin() as session:
            customer = (
                await session.execute(select(Customer).where(Customer.telegram_user_id == mia.id))
            ).scalar_one()
            found, _ = await open_ticket(
                session,
                harness.desk,
                customer,
                source="question",
                category="question",
                now=harness.clock.now(),
            )
            return found.number

    numbers = await asyncio.gather(*(open_one() for _ in range(CONCURRENT_OPENINGS)))
    assert set(numbers) == {"Q-000001"}
    assert await count(harness, Ticket) == 1
    assert harness.dispatcher is not None
    harness.dispatcher.wake()
    await topic_of(harness, "Q-000001")
    await lanes_idle(harness, "Q-000001")  # nothing else on its way to the staff group
    assert len(api.topics(STAFF)) == 1
    assert await count(harness, TicketMessage, TicketMessage.text == "opened") == 1


async def test_back_and_forth_renames_the_topic_once_after_the_delay(harness: Harness) -> None:
    """A group takes 20 bot messages a minute: a lively conversation must not spend them on
    renaming its topic at every message."""
    api = harness.api
    relay = harness.rules.tickets.relay.model_copy(update={"title_delay_seconds": 30})
    harness.use_ticket_rules(harness.rules.tickets.model_copy(update={"relay": relay}))
    nia = api.add_user(8014, "Nia")
    ray = staff_member(api, 7204, "Ray")
    number, thread = await desk_ticket(harness, nia)
    assert harness.dispatch_clock is not None
    harness.dispatch_clock.restart()  # the delay is counted in real time from here

    for n in range(2):
        await staff_says(api, ray, thread, f"question {n}")
        await wait_text(api, nia.id, staff_reply_text(harness, "en", "Ray", f"question {n}"))
        answer = (nia.id, _id(await api.send_text(nia, f"answer {n}")))
        await wait_message(api, STAFF, lambda m, a=answer: m.copied_from == a, thread_id=thread)
    # The one rename waits in the outbox until the delay is over: the dispatcher only sends
    # what is due.
    async with harness.sessionmaker() as session:
        waiting = await session.execute(
            select(Outbox.due_at, Outbox.payload).where(
                Outbox.kind == KIND_TOPIC, Outbox.state.in_(["pending", "claimed"])
            )
        )
        renames = [due for due, payload in waiting if "topic" in payload]
    assert renames == [harness.clock.now() + timedelta(seconds=30)]
    assert api.calls_of("editForumTopic") == []
    assert api.topics(STAFF)[0].name == f"{number} · Normal · 🆕 new · Nia"

    harness.clock.advance(timedelta(seconds=31))
    await api.wait_for(lambda: "⏳ waiting for us" in api.topics(STAFF)[0].name)
    await lanes_idle(harness, number)
    assert len([c for c in api.calls_of("editForumTopic") if c.ok]) == 1

    # Resolving renames at once.
    await staff_says(api, ray, thread, "/close")
    await api.wait_for(lambda: "✅ resolved" in api.topics(STAFF)[0].name)
