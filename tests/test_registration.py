"""Onboarding and the profile (``handlers.onboarding.registration``) without Telegram, on SQLite
and PostgreSQL: registration on first contact (once, in the customer's language), consent,
``/stop``, the language switch, each profile button, the answers to profile questions, the
shared contact, and ``/forget`` with the fresh start after it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.kernel.config import load_config
from bot.kernel.replies import Alert, Keyboard, Reply, TextRef
from bot.kernel.texts import Texts
from bot.settings import EXAMPLE_CONFIG_DIR
from handlers.onboarding import registration
from handlers.onboarding.registration import (
    AWAITING_BIRTHDAY,
    AWAITING_TIMEZONE,
    Person,
    ensure_customer,
)
from handlers.tickets.lifecycle import TicketDesk
from storage import customers as customer_queries
from storage.models import Customer, InboxUpdate
from tests.auxil.units import unit_of_work

CONFIG = load_config(EXAMPLE_CONFIG_DIR)
GENERAL = CONFIG.general
DESK = TicketDesk.from_config(CONFIG, Texts.load(), None)
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
ANN = Person(user_id=7301, chat_id=7301, first_name="Ann", last_name="Lee", username="annlee")
WEI = Person(user_id=7302, chat_id=7302, first_name="伟", language_code="zh-hans")
BOB = Person(user_id=7303, chat_id=7303, first_name="Bob", language_code="en-GB")

Sessions = async_sessionmaker[AsyncSession]


async def customer(sessionmaker: Sessions, user_id: int = ANN.user_id) -> Customer:
    async with sessionmaker() as session:
        found = await session.execute(select(Customer).where(Customer.telegram_user_id == user_id))
        return found.scalar_one()


async def customers(sessionmaker: Sessions) -> int:
    async with sessionmaker() as session:
        return int(
            (await session.execute(select(func.count()).select_from(Customer))).scalar_one()
        )


async def start(sessionmaker: Sessions, person: Person = ANN, now: datetime = NOW) -> list[Reply]:
    async with sessionmaker.begin() as session:
        return await registration.start(session, person, GENERAL, now)


async def profile(sessionmaker: Sessions, action: str) -> Reply | list[Reply] | Alert:
    async with sessionmaker.begin() as session:
        return await registration.profile_action(session, ANN.user_id, action, LATER)


async def answer(sessionmaker: Sessions, text: str) -> Reply | None:
    async with sessionmaker.begin() as session:
        found = await customer_queries.get_for_update(session, ANN.user_id)
        assert found is not None
        return await registration.answer_pending_question(session, found, text, LATER)


async def one_reply(sessionmaker: Sessions, action: str) -> Reply:
    """The one reply a profile button answers with."""
    result = await profile(sessionmaker, action)
    assert isinstance(result, list) and len(result) == 1, result
    return result[0]


def keys(replies: list[Reply]) -> list[str]:
    return [reply.key for reply in replies]


async def test_first_contact_registers_once_and_asks_consent_until_answered(
    sessionmaker: Sessions,
) -> None:
    first = await start(sessionmaker)
    assert keys(first) == ["welcome", "consent_question"]
    assert first[0].params == {"name": "Ann Lee"}
    assert [button.data for row in first[1].buttons for button in row] == [
        "consent:yes",
        "consent:no",
    ]
    registered = await customer(sessionmaker)
    assert (
        registered.chat_id,
        registered.name,
        registered.username,
        registered.language,
        registered.timezone,
        registered.country,
        registered.consent_answered,
        registered.created_at,
    ) == (ANN.chat_id, "Ann Lee", "annlee", "en", "Asia/Shanghai", "CN", False, NOW)

    again = await start(sessionmaker, now=LATER)
    assert keys(again) == ["welcome_back", "consent_question"]
    assert await customers(sessionmaker) == 1

    async with sessionmaker.begin() as session:
        consented = await registration.set_consent(session, ANN.user_id, "yes", LATER)
    assert consented == Reply("consent_on", "en")
    renamed = Person(ANN.user_id, ANN.chat_id, "Annie", None, "annie")
    assert keys(await start(sessionmaker, renamed, LATER)) == ["welcome_back"]
    stored = await customer(sessionmaker)
    assert (stored.name, stored.username, stored.consent, stored.created_at) == (
        "Annie",
        "annie",
        True,
        NOW,
    )
    assert await customers(sessionmaker) == 1


async def test_the_language_follows_telegrams_code_until_the_customer_chooses(
    sessionmaker: Sessions,
) -> None:
    greeting = await start(sessionmaker, WEI)
    assert {reply.language for reply in greeting} == {"zh"}
    assert (await customer(sessionmaker, WEI.user_id)).language == "zh"
    await start(sessionmaker, BOB)
    assert (await customer(sessionmaker, BOB.user_id)).language == "en"

    async with sessionmaker.begin() as session:
        menu = await registration.ask_language(session, WEI, GENERAL, NOW)
    assert [button.data for row in menu.buttons for button in row] == ["lang:zh", "lang:en"]
    async with sessionmaker.begin() as session:
        chosen = await registration.choose_language(session, WEI.user_id, "en", LATER)
        nonsense = await registration.choose_language(session, WEI.user_id, "fr", LATER)
        stranger = await registration.choose_language(session, 1, "zh", LATER)
    assert chosen == Reply("language_set", "en", replace_message=True)
    assert (nonsense, stranger) == (Alert("button_expired", "en"), Alert("button_expired", "zh"))
    switched = await customer(sessionmaker, WEI.user_id)
    assert (switched.language, switched.language_chosen, switched.updated_at) == (
        "en",
        True,
        LATER,
    )
    async with sessionmaker.begin() as session:
        helped = await registration.help_text(session, WEI, GENERAL, LATER)
    assert helped == Reply("help", "en")


async def test_stop_and_consent_buttons_set_the_flags(sessionmaker: Sessions) -> None:
    await start(sessionmaker)
    await profile(sessionmaker, "birthday")
    async with sessionmaker.begin() as session:
        stopped = await registration.stop(session, ANN, GENERAL, LATER)
    assert stopped == Reply("stop_done", "en")
    found = await customer(sessionmaker)
    assert (found.consent, found.consent_answered, found.awaiting) == (False, True, None)

    async with sessionmaker.begin() as session:
        assert await registration.set_consent(session, ANN.user_id, "yes", LATER) == Reply(
            "consent_on", "en"
        )
    assert (await customer(sessionmaker)).consent is True
    async with sessionmaker.begin() as session:
        assert await registration.set_consent(session, ANN.user_id, "no", LATER) == Reply(
            "consent_off", "en"
        )
        assert await registration.set_consent(session, 1, "yes", LATER) == Alert(
            "button_expired", "en"
        )
    assert (await customer(sessionmaker)).consent is False


async def test_each_profile_button_asks_or_toggles(sessionmaker: Sessions) -> None:
    await start(sessionmaker)
    assert await profile(sessionmaker, "birthday") == [Reply("birthday_prompt", "en")]
    assert (await customer(sessionmaker)).awaiting == AWAITING_BIRTHDAY
    assert await profile(sessionmaker, "timezone") == [Reply("timezone_prompt", "en")]
    assert (await customer(sessionmaker)).awaiting == AWAITING_TIMEZONE
    assert await profile(sessionmaker, "phone") == [
        Reply("phone_prompt", "en", keyboard=Keyboard.REQUEST_CONTACT)
    ]
    assert (await customer(sessionmaker)).awaiting is None

    card = await one_reply(sessionmaker, "lunar")
    assert (card.key, card.replace_message, card.params["lunar"]) == (
        "profile_card",
        True,
        TextRef("yes"),
    )
    assert (await customer(sessionmaker)).birthday_lunar is True
    card = await one_reply(sessionmaker, "consent")
    assert card.params["consent"] == TextRef("yes")
    found = await customer(sessionmaker)
    assert (found.consent, found.consent_answered) == (True, True)
    assert (await one_reply(sessionmaker, "language")).key == "language_prompt"

    assert await profile(sessionmaker, "explode") == Alert("button_expired", "en")
    async with sessionmaker.begin() as session:
        stranger = await registration.profile_action(session, 1, "birthday", LATER)
    assert stranger == Alert("button_expired", "en")


async def test_profile_answers_are_saved_or_refused_with_the_reason(
    sessionmaker: Sessions,
) -> None:
    await start(sessionmaker)
    assert await answer(sessionmaker, "1990-05-17") is None  # nothing was asked

    await profile(sessionmaker, "birthday")
    future = await answer(sessionmaker, "2030-01-01")
    assert future == Reply(
        "birthday_invalid",
        "en",
        {"value": "2030-01-01", "reason": TextRef("birthday_reason_future")},
    )
    assert (await customer(sessionmaker)).awaiting == AWAITING_BIRTHDAY  # still asked
    assert await answer(sessionmaker, "5月17日") == Reply(
        "birthday_saved", "en", {"birthday": "05-17"}
    )
    found = await customer(sessionmaker)
    assert (found.birth_year, found.birth_month, found.birth_day, found.awaiting) == (
        None,
        5,
        17,
        None,
    )

    await profile(sessionmaker, "timezone")
    assert await answer(sessionmaker, "Mars/Olympus") == Reply(
        "timezone_invalid", "en", {"value": "Mars/Olympus"}
    )
    assert await answer(sessionmaker, " Europe/Berlin ") == Reply(
        "timezone_saved", "en", {"timezone": "Europe/Berlin"}
    )
    found = await customer(sessionmaker)
    assert (found.timezone, found.awaiting) == ("Europe/Berlin", None)


async def test_only_the_customers_own_contact_is_kept(sessionmaker: Sessions) -> None:
    await start(sessionmaker)
    async with sessionmaker.begin() as session:
        other = await registration.save_contact(session, ANN, 42, "8613900000000", GENERAL, LATER)
    assert other == Reply("phone_not_own", "en", keyboard=Keyboard.REQUEST_CONTACT)
    assert (await customer(sessionmaker)).phone is None
    async with sessionmaker.begin() as session:
        own = await registration.save_contact(
            session, ANN, ANN.user_id, "8613900001234", GENERAL, LATER
        )
    assert own == Reply("phone_saved", "en", keyboard=Keyboard.REMOVE)
    assert (await customer(sessionmaker)).phone == "+8613900001234"


async def test_messages_before_registration_follow_the_customer_and_writing_means_reachable(
    sessionmaker: Sessions,
) -> None:
    async with sessionmaker.begin() as session:
        session.add(
            InboxUpdate(
                update_id=1,
                chat_id=ANN.chat_id,
                telegram_message_id=1,
                sender_user_id=ANN.user_id,
                kind="text",
                text="hello?",
                edited=False,
                received_at=NOW,
            )
        )
    await start(sessionmaker)
    registered = await customer(sessionmaker)
    async with sessionmaker() as session:
        owner = (await session.execute(select(InboxUpdate.customer_id))).scalar_one()
    assert owner == registered.id

    async with sessionmaker.begin() as session:
        blocked = await session.get(Customer, registered.id)
        assert blocked is not None
        blocked.reachable = False
    async with sessionmaker.begin() as session:
        again, new = await ensure_customer(session, ANN, GENERAL, LATER)
        assert (again.id, new, again.reachable) == (registered.id, False, True)
    found = await customer(sessionmaker)
    assert (found.reachable, found.updated_at) == (True, LATER)


async def test_forget_asks_first_then_erases_and_a_later_start_is_a_stranger(
    sessionmaker: Sessions, caplog: pytest.LogCaptureFixture
) -> None:
    await start(sessionmaker)
    async with sessionmaker.begin() as session:
        await registration.save_contact(session, ANN, ANN.user_id, "+8613900001234", GENERAL, NOW)
        asked = await registration.ask_forget(session, ANN, GENERAL, NOW)
    assert [button.data for row in asked.buttons for button in row] == ["forget:yes", "forget:no"]

    async with sessionmaker.begin() as session:
        kept = await registration.confirm_forget(session, DESK, ANN.user_id, "forget:no", LATER)
    assert kept == Reply("forget_cancelled", "en", replace_message=True)
    assert (await customer(sessionmaker)).phone == "+8613900001234"

    caplog.set_level(logging.WARNING, logger="storage.customers")
    async with unit_of_work(sessionmaker) as session:
        done = await registration.confirm_forget(session, DESK, ANN.user_id, "forget:yes", LATER)
    assert done == Reply("forget_done", "en", keyboard=Keyboard.REMOVE)
    assert "checkpoint" not in caplog.text  # SQLite's log emptied once the erasure committed
    async with sessionmaker() as session:
        erased = (await session.execute(select(Customer))).scalar_one()
    assert (
        erased.telegram_user_id,
        erased.chat_id,
        erased.name,
        erased.username,
        erased.phone,
        erased.erased_at,
    ) == (None, None, None, None, None, LATER)

    async with sessionmaker.begin() as session:
        twice = await registration.confirm_forget(session, DESK, ANN.user_id, "forget:yes", LATER)
    assert twice == Alert("button_expired", "en")
    assert keys(await start(sessionmaker, now=LATER)) == ["welcome", "consent_question"]
    assert await customers(sessionmaker) == 2


async def test_what_has_no_rule_points_to_help_in_the_customers_language(
    sessionmaker: Sessions,
) -> None:
    await start(sessionmaker, WEI)
    async with sessionmaker.begin() as session:
        assert await registration.fallback(session, WEI, GENERAL, NOW) == Reply("fallback", "zh")
        assert await registration.unsupported_input(session, WEI, GENERAL, NOW) == Reply(
            "unsupported_input", "zh"
        )
        assert await registration.expired_button(session, WEI.user_id, "x", NOW) == Alert(
            "button_expired", "zh"
        )
        assert await registration.expired_button(session, 1, "x", NOW) == Alert(
            "button_expired", "en"
        )
