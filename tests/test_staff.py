"""End to end: staff in the ticket topics — notes, membership, commands, card buttons, canned
replies, bans — through the real Application and the local Bot API server, on both
databases."""

from __future__ import annotations

from bot.kernel.texts import Markup
from storage.models import TicketMessage
from tests.auxil.harness import Harness
from tests.auxil.tickets import (
    STAFF,
    count,
    desk_ticket,
    lanes_idle,
    messages,
    staff_member,
    staff_reply_text,
    staff_says,
    ticket,
    wait_edited,
    wait_message,
    wait_text,
)


async def _callback_answer(harness: Harness, count_: int) -> dict[str, object]:
    api = harness.api
    await api.wait_for(lambda: len(api.answered_callbacks) >= count_, description="an answer")
    return api.answered_callbacks[count_ - 1]


class TestNotes:
    async def test_notes_are_kept_and_never_relayed(self, harness: Harness) -> None:
        api = harness.api
        ann = api.add_user(6001, "Ann")
        max_ = staff_member(api, 7101, "Max")
        number, thread = await desk_ticket(harness, ann)
        before = len(api.sent(ann.id))

        await staff_says(api, max_, thread, "!she called twice already")
        await staff_says(api, max_, thread, "/note refund approved by finance")
        await staff_says(api, max_, thread, "We are on it")
        await wait_text(api, ann.id, staff_reply_text(harness, "en", "Max", "We are on it"))
        await lanes_idle(harness, number)
        assert len(api.sent(ann.id)) == before + 1
        notes = [m.text for m in await messages(harness, number) if m.direction == "note"]
        assert notes == ["she called twice already", "refund approved by finance"]
        assert all(
            "refund" not in (m.body or "") and "twice" not in (m.body or "")
            for m in api.sent(ann.id)
        )


class TestMembership:
    async def test_a_non_members_close_is_refused_and_nothing_is_relayed(
        self, harness: Harness
    ) -> None:
        api = harness.api
        bea = api.add_user(6002, "Bea")
        number, thread = await desk_ticket(harness, bea)
        outsider = api.add_user(6099, "Mallory")
        api.add_member(STAFF, outsider, "left")
        before = len(api.sent(bea.id))

        await api.send_text(outsider, "/close", chat_id=STAFF, message_thread_id=thread)
        await wait_text(api, STAFF, harness.text("en", "ticket_not_staff"), thread_id=thread)
        await api.send_text(outsider, "I'm staff, honest", chat_id=STAFF, message_thread_id=thread)
        await api.wait_for(
            lambda: (
                len(
                    [
                        m
                        for m in api.sent(STAFF, thread_id=thread)
                        if m.body == harness.text("en", "ticket_not_staff")
                    ]
                )
                >= 2
            )
        )
        found = await ticket(harness, number)
        assert found.status == "open" and found.resolved_at is None
        assert len(api.sent(bea.id)) == before
        assert await count(harness, TicketMessage, TicketMessage.direction == "out") == 0
        # The membership check was asked of Telegram and remembered.
        assert len(api.calls_of("getChatMember")) == 1

    async def test_a_non_members_button_is_refused(self, harness: Harness) -> None:
        api = harness.api
        cal = api.add_user(6003, "Cal")
        number, thread = await desk_ticket(harness, cal)
        card = api.sent(STAFF, thread_id=thread)[0]
        outsider = api.add_user(6098, "Eve")
        answered = len(api.answered_callbacks)
        await api.press_button(outsider, card, f"tk:{(await ticket(harness, number)).id}:claim")
        answer = await _callback_answer(harness, answered + 1)
        assert answer["text"] == harness.text("en", "ticket_not_staff")
        assert (await ticket(harness, number)).assignee_user_id is None


class TestCard:
    async def test_an_old_cards_buttons_after_close_are_answered_harmlessly(
        self, harness: Harness
    ) -> None:
        api = harness.api
        dan = api.add_user(6004, "Dan")
        ops = staff_member(api, 7102, "Ops")
        number, thread = await desk_ticket(harness, dan)
        card = api.sent(STAFF, thread_id=thread)[0]
        ticket_id = (await ticket(harness, number)).id

        await staff_says(api, ops, thread, "/close")
        question = await wait_text(
            api, dan.id, harness.text("en", "ticket_resolved_question", number=number)
        )
        await api.press_button(dan, question, f"tr:{ticket_id}:yes")
        await wait_edited(
            api,
            dan.id,
            question.message_id,
            harness.text("en", "ticket_closed_thanks", number=number),
        )
        await lanes_idle(harness, number)
        in_topic = len(api.sent(STAFF, thread_id=thread))
        answered = len(api.answered_callbacks)

        for data in (
            f"tk:{ticket_id}:claim",
            f"tk:{ticket_id}:close",
            f"tk:{ticket_id}:priority:3",
        ):
            await api.press_button(ops, card, data)
        await api.press_button(ops, card, "tk:999:claim")  # a ticket that never existed
        await api.press_button(dan, question, f"tr:{ticket_id}:no")  # the customer, too late
        await api.wait_for(lambda: len(api.answered_callbacks) >= answered + 5)
        texts = sorted(str(answer["text"]) for answer in api.answered_callbacks[answered:])
        closed = harness.text("en", "ticket_already_closed")
        stale = harness.text("en", "ticket_button_stale")
        assert texts == sorted(
            [closed, closed, closed, stale, harness.text("en", "button_expired")]
        )
        after = await ticket(harness, number)
        assert (after.status, after.assignee_user_id, after.priority) == ("closed", None, 1)
        # Each press was answered once its unit of work committed: whatever it queued for the
        # topic (the bot may write there only through the lanes while it is closed) has gone
        # out once the lanes are idle.
        await lanes_idle(harness, number)
        assert len(api.sent(STAFF, thread_id=thread)) == in_topic

    async def test_claim_priority_and_card(self, harness: Harness) -> None:
        api = harness.api
        eli = api.add_user(6005, "Eli")
        kim = staff_member(api, 7103, "Kim")
        number, thread = await desk_ticket(harness, eli)
        card = api.sent(STAFF, thread_id=thread)[0]
        ticket_id = (await ticket(harness, number)).id

        await api.press_button(kim, card, f"tk:{ticket_id}:claim")
        await wait_text(
            api, STAFF, harness.text("en", "ticket_claimed", name="Kim"), thread_id=thread
        )
        await api.press_button(kim, card, f"tk:{ticket_id}:priority:3")
        await api.wait_for(
            lambda: "🔥 urgent" in api.message(STAFF, card.message_id).get("text", "")
        )
        found = await ticket(harness, number)
        assert (found.assignee_user_id, found.assignee_name, found.priority) == (7103, "Kim", 3)

        await staff_says(api, kim, thread, "/card")
        again = await wait_message(
            api,
            STAFF,
            lambda m: m.message_id != card.message_id and (m.text or "").startswith("🎫"),
            thread_id=thread,
        )
        assert "Assignee: Kim" in (again.text or "")


class TestCommands:
    async def test_assign_by_username(self, harness: Harness) -> None:
        api = harness.api
        fay = api.add_user(6006, "Fay")
        lead = staff_member(api, 7104, "Lead")
        bob = staff_member(api, 7105, "Bob", username="bob_cs")
        number, thread = await desk_ticket(harness, fay)

        await staff_says(api, lead, thread, "/assign @bob_cs")  # Bob never wrote here
        await wait_text(
            api,
            STAFF,
            harness.text("en", "ticket_assign_unknown", username="bob_cs"),
            thread_id=thread,
        )
        await staff_says(api, bob, thread, "!hi, I can take it")  # now the bot knows him
        await staff_says(api, lead, thread, "/assign @bob_cs")
        mention = Markup('<a href="tg://user?id=7105">Bob</a>')
        await wait_text(
            api,
            STAFF,
            harness.text("en", "ticket_assigned", name=mention, by="Lead"),
            thread_id=thread,
        )
        assert (await ticket(harness, number)).assignee_user_id == 7105

    async def test_assign_in_reply_to_a_non_member_is_refused_and_to_a_member_works(
        self, harness: Harness
    ) -> None:
        """``/assign`` replying to someone's message asks Telegram whether they are in the
        staff group, as the sender's own membership is asked: a customer or an outsider who
        wrote in the topic is refused and the ticket keeps no assignee."""
        api = harness.api
        kai = api.add_user(6011, "Kai")
        lead = staff_member(api, 7110, "Lead")
        number, thread = await desk_ticket(harness, kai)
        outsider = api.add_user(6097, "Oscar")
        api.add_member(STAFF, outsider, "left")
        said = await api.send_text(
            outsider, "I'll take it", chat_id=STAFF, message_thread_id=thread
        )
        await wait_text(api, STAFF, harness.text("en", "ticket_not_staff"), thread_id=thread)

        await api.send_text(
            lead,
            "/assign",
            chat_id=STAFF,
            message_thread_id=thread,
            reply_to_message_id=said["message"]["message_id"],
        )
        await wait_text(
            api,
            STAFF,
            harness.text("en", "ticket_assign_not_staff", name="Oscar"),
            thread_id=thread,
        )
        found = await ticket(harness, number)
        assert (found.assignee_user_id, found.assignee_name) == (None, None)
        assert not [m for m in await messages(harness, number) if m.text == "assigned:6097"]

        bob = staff_member(api, 7111, "Bob")
        said = await staff_says(api, bob, thread, "!I can take it")
        await api.send_text(
            lead,
            "/assign",
            chat_id=STAFF,
            message_thread_id=thread,
            reply_to_message_id=said["message"]["message_id"],
        )
        mention = Markup('<a href="tg://user?id=7111">Bob</a>')
        await wait_text(
            api,
            STAFF,
            harness.text("en", "ticket_assigned", name=mention, by="Lead"),
            thread_id=thread,
        )
        assert (await ticket(harness, number)).assignee_user_id == 7111

    async def test_canned_reply_goes_out_in_the_customers_language(self, harness: Harness) -> None:
        api = harness.api
        gao = api.add_user(6007, "高", language_code="zh")
        sue = staff_member(api, 7106, "Sue")
        number, thread = await desk_ticket(harness, gao)

        await staff_says(api, sue, thread, "/canned")
        menu = await wait_text(
            api, STAFF, harness.text("en", "ticket_canned_menu"), thread_id=thread
        )
        assert menu.buttons()[0][0] == "👋 Greeting"
        await api.press_button(sue, menu, menu.buttons()[1][1])  # "Ask for a photo"
        canned = harness.rules.tickets.canned[1]
        await wait_text(
            api, gao.id, harness.text("zh", "ticket_staff_says", name="Sue", text=canned.zh)
        )
        await wait_edited(
            api,
            STAFF,
            menu.message_id,
            harness.text("en", "ticket_canned_sent", title=canned.title),
        )
        found = await ticket(harness, number)
        assert found.first_response_at is not None and found.status == "waiting_customer"

    async def test_reopen_after_close(self, harness: Harness) -> None:
        api = harness.api
        hu = api.add_user(6008, "Hu")
        lee = staff_member(api, 7107, "Lee")
        number, thread = await desk_ticket(harness, hu)
        await staff_says(api, lee, thread, "/reopen")
        await wait_text(api, STAFF, harness.text("en", "ticket_not_closed"), thread_id=thread)
        await staff_says(api, lee, thread, "/close")
        await wait_text(api, hu.id, harness.text("en", "ticket_resolved_question", number=number))
        await staff_says(api, lee, thread, "/reopen")
        await wait_text(api, hu.id, harness.text("en", "ticket_reopened_notice", number=number))
        found = await ticket(harness, number)
        assert (found.status, found.resolved_at, found.reopen_count) == ("waiting_staff", None, 1)


class TestBan:
    async def test_ban_stops_relays_with_a_polite_notice_and_unban_restores_them(
        self, harness: Harness
    ) -> None:
        api = harness.api
        ivy = api.add_user(6009, "Ivy")
        mod = staff_member(api, 7108, "Mod")
        number, thread = await desk_ticket(harness, ivy)
        await staff_says(api, mod, thread, "/ban")
        await wait_text(
            api, STAFF, harness.text("en", "ticket_banned_staff", name="Mod"), thread_id=thread
        )
        in_topic = len(api.sent(STAFF, thread_id=thread))

        await api.send_text(ivy, "spam 1")
        await wait_text(api, ivy.id, harness.text("en", "ticket_banned_notice"))
        before = len(api.sent(ivy.id))
        await api.send_text(ivy, "spam 2")  # no second notice the same day
        await api.send_text(ivy, "/complaint")
        refused = (await api.wait_for_sent(ivy.id, before + 1))[before:]
        assert [m.text for m in refused] == [harness.text("en", "ticket_banned_notice")]
        assert len(api.sent(STAFF, thread_id=thread)) == in_topic
        states = [m.state for m in await messages(harness, number) if m.direction == "in"]
        assert states[-2:] == ["banned", "banned"]

        await staff_says(api, mod, thread, "/unban")
        await wait_text(
            api, STAFF, harness.text("en", "ticket_unbanned_staff", name="Mod"), thread_id=thread
        )
        sent = (await api.send_text(ivy, "sorry"))["message"]["message_id"]
        await wait_message(api, STAFF, lambda m: m.copied_from == (ivy.id, sent), thread_id=thread)


async def test_without_the_name_prefix_staff_replies_go_as_written(harness: Harness) -> None:
    api = harness.api
    relay = harness.rules.tickets.relay.model_copy(update={"staff_name_prefix": False})
    harness.use_ticket_rules(harness.rules.tickets.model_copy(update={"relay": relay}))
    jon = api.add_user(6010, "Jon")
    amy = staff_member(api, 7109, "Amy")
    _, thread = await desk_ticket(harness, jon)
    before = len(api.sent(jon.id))
    await staff_says(api, amy, thread, "Your parcel left the warehouse today.")
    photo = await api.send_photo(amy, caption="tracking", chat_id=STAFF, message_thread_id=thread)
    reply, copy = (await api.wait_for_sent(jon.id, before + 2))[before:]
    assert reply.text == "Your parcel left the warehouse today."
    assert copy.copied_from == (STAFF, photo["message"]["message_id"])
    assert copy.caption == "tracking"  # the original caption, untouched
    assert "caption" not in copy.params
