"""End to end: customers talk to the real Application over HTTP through the local Bot API."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from bot.logs import configure_logging
from storage.models import Customer, InboxUpdate
from tests.auxil.harness import TOKEN, Harness
from tests.auxil.waiting import eventually


async def _count(harness: Harness, model: type, *where: object) -> int:
    async with harness.sessionmaker() as session:
        result = await session.execute(select(func.count()).select_from(model).where(*where))
        return int(result.scalar_one())


def _buttons(message: object) -> list[tuple[str, str]]:
    markup = getattr(message, "reply_markup", None) or {}
    return [
        (button["text"], button.get("callback_data", ""))
        for row in markup.get("inline_keyboard", [])
        for button in row
    ]


async def _open_profile_field(harness: Harness, user: object, field: str) -> None:
    api = harness.api
    before = len(api.sent(user.id))  # type: ignore[attr-defined]
    await api.send_text(user, "/profile")
    card = (await api.wait_for_sent(user.id, before + 1))[-1]  # type: ignore[attr-defined]
    await api.press_button(user, card, f"profile:{field}")
    await api.wait_for_sent(user.id, before + 2)  # type: ignore[attr-defined]


class TestStart:
    async def test_greets_each_customer_in_their_language(self, harness: Harness) -> None:
        api = harness.api
        li = api.add_user(1001, "小丽", language_code="zh-hans")
        tom = api.add_user(1002, "Tom", language_code="en-GB")
        await api.send_text(li, "/start")
        await api.send_text(tom, "/start")

        li_sent = await api.wait_for_sent(li.id, 2)
        tom_sent = await api.wait_for_sent(tom.id, 2)
        assert li_sent[0].text == harness.text("zh", "welcome", name="小丽")
        assert li_sent[1].text == harness.text("zh", "consent_question")
        assert tom_sent[0].text == harness.text("en", "welcome", name="Tom")
        assert [data for _, data in _buttons(tom_sent[1])] == ["consent:yes", "consent:no"]
        li_row = await harness.customer(li.id)
        assert li_row is not None and li_row.language == "zh"
        assert li_row.timezone == "Asia/Shanghai" and li_row.country == "CN"

    async def test_second_start_neither_duplicates_nor_resets(self, harness: Harness) -> None:
        api = harness.api
        ann = api.add_user(1003, "Ann", language_code="en")
        await api.send_text(ann, "/start")
        consent_question = (await api.wait_for_sent(ann.id, 2))[1]
        await api.press_button(ann, consent_question, "consent:yes")
        await api.wait_for_sent(ann.id, 3)

        await api.send_text(ann, "/start")
        sent = await api.wait_for_sent(ann.id, 4)
        assert sent[3].text == harness.text("en", "welcome_back", name="Ann")
        assert await _count(harness, Customer, Customer.telegram_user_id == ann.id) == 1
        row = await harness.customer(ann.id)
        assert row is not None and row.consent is True  # not reset, and not asked again
        help_answer = await harness.barrier(ann)
        assert api.sent(ann.id)[4:] == [help_answer]  # no consent question after welcome_back


class TestLanguage:
    async def test_switch_changes_every_later_reply(self, harness: Harness) -> None:
        api = harness.api
        bob = api.add_user(1010, "Bob", language_code="en")
        await api.send_text(bob, "/language")
        menu = (await api.wait_for_sent(bob.id, 1))[0]
        assert menu.text == harness.text("en", "language_prompt")
        assert _buttons(menu) == [("中文", "lang:zh"), ("English", "lang:en")]

        await api.press_button(bob, menu, "lang:zh")
        await api.wait_for(
            lambda: (
                api.message(bob.id, menu.message_id)["text"] == harness.text("zh", "language_set")
            ),
            description="the menu replaced by the confirmation",
        )

        await api.send_text(bob, "/help")
        sent = await api.wait_for_sent(bob.id, 2)
        assert sent[-1].text == harness.text("zh", "help")
        row = await harness.customer(bob.id)
        assert row is not None and row.language == "zh" and row.language_chosen


class TestBirthday:
    async def test_valid_and_invalid_dates(self, harness: Harness) -> None:
        api = harness.api
        cai = api.add_user(1020, "蔡", language_code="zh")
        await _open_profile_field(harness, cai, "birthday")
        assert api.sent(cai.id)[-1].text == harness.text("zh", "birthday_prompt")

        await api.send_text(cai, "1990-02-30")
        invalid = (await api.wait_for_sent(cai.id, 3))[-1]
        reason = harness.text("zh", "birthday_reason_impossible")
        assert invalid.text == harness.text(
            "zh", "birthday_invalid", value="1990-02-30", reason=reason
        )
        row = await harness.customer(cai.id)
        assert row is not None and row.birth_month is None and row.birth_year is None

        await api.send_text(cai, "1990-05-17")
        saved = (await api.wait_for_sent(cai.id, 4))[-1]
        assert saved.text == harness.text("zh", "birthday_saved", birthday="1990-05-17")
        row = await harness.customer(cai.id)
        assert row is not None
        assert (row.birth_year, row.birth_month, row.birth_day) == (1990, 5, 17)

    async def test_chinese_month_day_without_year(self, harness: Harness) -> None:
        api = harness.api
        user = api.add_user(1021, "王", language_code="zh")
        await _open_profile_field(harness, user, "birthday")
        await api.send_text(user, "2月29日")
        saved = (await api.wait_for_sent(user.id, 3))[-1]
        assert saved.text == harness.text("zh", "birthday_saved", birthday="02-29")
        row = await harness.customer(user.id)
        assert row is not None and (row.birth_year, row.birth_month, row.birth_day) == (
            None,
            2,
            29,
        )


class TestContact:
    async def test_only_the_customers_own_contact_is_kept(self, harness: Harness) -> None:
        api = harness.api
        eve = api.add_user(1030, "Eve", language_code="en")
        await _open_profile_field(harness, eve, "phone")
        prompt = api.sent(eve.id)[-1]
        assert prompt.reply_markup["keyboard"][0][0]["request_contact"] is True

        await api.send_contact(eve, "+15550001111", contact_user_id=4242)
        refused = (await api.wait_for_sent(eve.id, 3))[-1]
        assert refused.text == harness.text("en", "phone_not_own")
        row = await harness.customer(eve.id)
        assert row is not None and row.phone is None

        await api.send_contact(eve, "8613800001111", contact_user_id=eve.id)
        saved = (await api.wait_for_sent(eve.id, 4))[-1]
        assert saved.text == harness.text("en", "phone_saved")
        assert saved.reply_markup == {"remove_keyboard": True}
        row = await harness.customer(eve.id)
        assert row is not None and row.phone == "+8613800001111"


class TestStopAndForget:
    async def test_stop_turns_care_messages_off(self, harness: Harness) -> None:
        api = harness.api
        fay = api.add_user(1040, "Fay", language_code="en")
        await api.send_text(fay, "/start")
        question = (await api.wait_for_sent(fay.id, 2))[1]
        await api.press_button(fay, question, "consent:yes")
        await api.wait_for_sent(fay.id, 3)
        row = await harness.customer(fay.id)
        assert row is not None and row.consent is True

        await api.send_text(fay, "/stop")
        sent = await api.wait_for_sent(fay.id, 4)
        assert sent[-1].text == harness.text("en", "stop_done")
        assert "/profile" in sent[-1].text
        row = await harness.customer(fay.id)
        assert row is not None and row.consent is False

    async def test_forget_erases_personal_data_and_start_begins_fresh(
        self, harness: Harness
    ) -> None:
        api = harness.api
        gus = api.add_user(1050, "Gus", language_code="en")
        await api.send_text(gus, "/start")
        await api.wait_for_sent(gus.id, 2)
        await api.send_contact(gus, "+15550002222", contact_user_id=gus.id)
        await api.wait_for_sent(gus.id, 3)
        await api.send_text(gus, "my order never came")
        await api.wait_for_sent(gus.id, 4)
        original = await harness.customer(gus.id)
        assert original is not None and original.phone == "+15550002222"

        await api.send_text(gus, "/forget")
        confirm = (await api.wait_for_sent(gus.id, 5))[-1]
        assert confirm.text == harness.text("en", "forget_confirm")
        await api.press_button(gus, confirm, "forget:yes")
        done = (await api.wait_for_sent(gus.id, 6))[-1]
        assert done.text == harness.text("en", "forget_done")

        assert await harness.customer(gus.id) is None
        async with harness.sessionmaker() as session:
            erased = await session.get(Customer, original.id)
            assert erased is not None and erased.erased_at is not None
            assert (erased.name, erased.phone, erased.telegram_user_id) == (None, None, None)
            messages = (
                (
                    await session.execute(
                        select(InboxUpdate).where(InboxUpdate.customer_id == original.id)
                    )
                )
                .scalars()
                .all()
            )
        # The count of messages stays; their content and the sender's ids do not.
        assert len(messages) >= 3
        assert all(m.text is None and m.sender_user_id is None for m in messages)

        await api.send_text(gus, "/start")
        fresh = (await api.wait_for_sent(gus.id, 8))[-2]
        assert fresh.text == harness.text("en", "welcome", name="Gus")
        new_row = await harness.customer(gus.id)
        assert new_row is not None and new_row.id != original.id and new_row.phone is None


class TestUnexpectedInput:
    @pytest.mark.parametrize("kind", ["sticker", "voice", "location"])
    async def test_unsupported_kinds_get_a_polite_reply(self, harness: Harness, kind: str) -> None:
        api = harness.api
        hal = api.add_user(1060, "Hal", language_code="en")
        if kind == "location":
            await api.send_location(hal, 31.23, 121.47)
        else:
            await getattr(api, f"send_{kind}")(hal)
        reply = (await api.wait_for_sent(hal.id, 1))[0]
        assert reply.text == harness.text("en", "unsupported_input")
        assert await _count(harness, InboxUpdate, InboxUpdate.kind == kind) == 1

    async def test_edit_is_stored_not_answered(self, harness: Harness) -> None:
        api = harness.api
        ivy = api.add_user(1061, "Ivy", language_code="en")
        update = await api.send_text(ivy, "hello")
        await api.wait_for_sent(ivy.id, 1)
        await api.edit_message(ivy, update["message"]["message_id"], "hello, edited")
        await api.send_text(ivy, "/help")
        sent = await api.wait_for_sent(ivy.id, 2)
        assert sent[1].text == harness.text("en", "help")
        assert await _count(harness, InboxUpdate, InboxUpdate.edited.is_(True)) == 1

    async def test_very_long_text_is_kept_and_answered(self, harness: Harness) -> None:
        api = harness.api
        jay = api.add_user(1062, "Jay", language_code="en")
        await api.send_text(jay, "x" * 10_000)
        reply = (await api.wait_for_sent(jay.id, 1))[0]
        assert reply.text == harness.text("en", "too_long", length=10_000, limit=4000)
        async with harness.sessionmaker() as session:
            stored = (await session.execute(select(InboxUpdate.text))).scalar_one()
        assert stored is not None and len(stored) == 10_000

    async def test_button_from_an_old_keyboard_is_answered_harmlessly(
        self, harness: Harness
    ) -> None:
        api = harness.api
        kim = api.add_user(1063, "Kim", language_code="zh")
        await api.send_text(kim, "/help")
        message = (await api.wait_for_sent(kim.id, 1))[0]
        await api.press_button(kim, message, "v0:survey:42:5")
        await api.wait_for(lambda: bool(api.answered_callbacks), description="the button answered")
        answer = api.answered_callbacks[-1]
        assert answer["text"] == harness.text("zh", "button_expired")
        await api.send_text(kim, "/help")  # the bot is still alive and well
        assert (await api.wait_for_sent(kim.id, 2))[-1].text == harness.text("zh", "help")

    async def test_message_in_an_unknown_group_is_ignored(self, harness: Harness) -> None:
        api = harness.api
        api.add_group(-100777, "Random group", forum=False)
        lee = api.add_user(1064, "Lee", language_code="en")
        await api.send_text(lee, "/start", chat_id=-100777)
        await api.send_text(lee, "/help")
        sent = await api.wait_for_sent(lee.id, 1)
        assert sent[0].text == harness.text("en", "help")
        assert api.sent(-100777) == []
        assert await _count(harness, InboxUpdate, InboxUpdate.chat_id == -100777) == 0

    async def test_failed_reply_loses_nothing_and_logs_no_private_data(
        self, harness: Harness, restore_logging: None
    ) -> None:
        api = harness.api
        mia = api.add_user(1065, "Mia", language_code="en")
        api.block(mia.id)
        stream = io.StringIO()
        configure_logging("DEBUG", secrets=[TOKEN], stream=stream)
        update = await api.send_text(mia, "call me at +8613900001234")
        await eventually(
            lambda: "error while handling update" in stream.getvalue(),
            description="the failed reply logged",
        )
        logged = stream.getvalue()
        assert f"error while handling update {update['update_id']}: Forbidden" in logged
        assert "+8613900001234" not in logged
        assert TOKEN not in logged
        assert await _count(harness, InboxUpdate, InboxUpdate.sender_user_id == mia.id) == 1


async def test_a_customer_who_writes_again_is_reachable_again(harness: Harness) -> None:
    api = harness.api
    ned = api.add_user(1070, "Ned", language_code="en")
    await api.send_text(ned, "/start")
    await api.wait_for_sent(ned.id, 2)
    async with harness.sessionmaker.begin() as session:
        row = (
            await session.execute(select(Customer).where(Customer.telegram_user_id == ned.id))
        ).scalar_one()
        row.reachable = False  # as the dispatcher marks a customer who blocked the bot
    await api.send_text(ned, "/help")
    await api.wait_for_sent(ned.id, 3)
    refreshed = await harness.customer(ned.id)
    assert refreshed is not None and refreshed.reachable is True
