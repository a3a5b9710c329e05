"""Knowledge-base answers (``handlers.answers.answering``) without Telegram, on SQLite and
PostgreSQL: what a question gets (an answer, suggestions, a person) and how it is recorded, and
what each button under a reply does: feedback once, a suggestion picked, a person or a complaint
asked for (a ticket, at most one open), and buttons that are not the presser's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.kernel.config import load_config
from bot.kernel.replies import Alert, Reply
from bot.kernel.texts import Texts
from bot.settings import EXAMPLE_CONFIG_DIR
from handlers.answers import answering
from handlers.answers.kb import load_knowledge_base
from handlers.onboarding.registration import Person, ensure_customer
from handlers.tickets.lifecycle import TicketDesk
from storage.models import KbHandoff, KbQuestion, Ticket, TicketDelivery
from storage.tickets.bans import ban

CONFIG = load_config(EXAMPLE_CONFIG_DIR)
KNOWLEDGE = load_knowledge_base(EXAMPLE_CONFIG_DIR)
DESK = TicketDesk.from_config(CONFIG, Texts.load(), -1001000000001)
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
ANN = Person(user_id=7401, chat_id=7401, first_name="Ann", language_code="en")
BEN = Person(user_id=7402, chat_id=7402, first_name="Ben", language_code="en")

Sessions = async_sessionmaker[AsyncSession]


async def ask(sessionmaker: Sessions, text: str, person: Person = ANN) -> tuple[Reply, int]:
    """The reply to ``text`` and the id of the recorded question."""
    async with sessionmaker.begin() as session:
        customer, _ = await ensure_customer(session, person, CONFIG.general, NOW)
        reply = await answering.answer_question(session, customer, text, KNOWLEDGE, NOW)
        last = await session.execute(select(func.max(KbQuestion.id)))
        return reply, int(last.scalar_one())


async def press(sessionmaker: Sessions, data: str, person: Person = ANN) -> Reply | Alert:
    async with sessionmaker.begin() as session:
        return await answering.press_button(
            session, person.user_id, data, KNOWLEDGE, LATER, desk=DESK
        )


async def question(sessionmaker: Sessions, question_id: int) -> KbQuestion:
    async with sessionmaker() as session:
        found = await session.get(KbQuestion, question_id)
    assert found is not None
    return found


async def tickets(sessionmaker: Sessions) -> list[tuple[str, str, str, str | None]]:
    """(number, source, category, subject) of every ticket."""
    async with sessionmaker() as session:
        rows = await session.execute(
            select(Ticket.number, Ticket.source, Ticket.category, Ticket.subject).order_by(
                Ticket.id
            )
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


async def handoffs(sessionmaker: Sessions) -> list[tuple[str, str | None, str]]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(KbHandoff.question, KbHandoff.entry_id, KbHandoff.kind).order_by(KbHandoff.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def data_of(reply: Reply) -> list[str]:
    return [button.data for row in reply.buttons for button in row]


async def test_a_confident_match_is_answered_with_the_entrys_buttons_and_recorded(
    sessionmaker: Sessions,
) -> None:
    reply, question_id = await ask(sessionmaker, "  Where is my PARCEL ")
    tracking = KNOWLEDGE.entry("tracking")
    assert tracking is not None
    assert (reply.key, str(reply.params["answer"])) == ("kb_answer", tracking.answer.get("en"))
    [link], feedback = reply.buttons
    assert (link.url, link.data) == ("https://shop.example.com/orders", "")
    assert [button.data for button in feedback] == [
        f"kb:up:{question_id}",
        f"kb:down:{question_id}",
    ]
    recorded = await question(sessionmaker, question_id)
    assert (recorded.question, recorded.entry_id, recorded.outcome, recorded.feedback) == (
        "where is my parcel",
        "tracking",
        "answered",
        None,
    )
    assert recorded.score >= 90


async def test_a_vague_question_gets_suggestions_and_a_picked_one_is_answered(
    sessionmaker: Sessions,
) -> None:
    reply, question_id = await ask(sessionmaker, "order")
    assert reply.key == "kb_suggest"
    suggested = [data.rsplit(":", 1)[1] for data in data_of(reply)[:-1]]
    assert suggested == ["tracking", "shipping-time", "modify-order"]
    assert data_of(reply)[-1] == f"kb:person:{question_id}"
    assert (await question(sessionmaker, question_id)).outcome == "suggested"

    picked = await press(sessionmaker, f"kb:pick:{question_id}:modify-order")
    assert isinstance(picked, Reply) and picked.key == "kb_answer"
    assert f"kb:person:{question_id}" in data_of(picked)  # the entry's own "talk to a person"
    recorded = await question(sessionmaker, question_id)
    assert (recorded.outcome, recorded.entry_id) == ("picked", "modify-order")
    gone = await press(sessionmaker, f"kb:pick:{question_id}:no-such-entry")
    assert gone == Alert("button_expired", "en")


async def test_no_answer_offers_a_person_only(sessionmaker: Sessions) -> None:
    reply, question_id = await ask(sessionmaker, "what is the capital of france")
    assert (reply.key, data_of(reply)) == ("kb_no_answer", [f"kb:person:{question_id}"])
    assert (await question(sessionmaker, question_id)).outcome == "unanswered"
    assert await tickets(sessionmaker) == []


async def test_thumbs_up_is_counted_once_and_opens_nothing(sessionmaker: Sessions) -> None:
    _, question_id = await ask(sessionmaker, "how can I return an item")
    assert await press(sessionmaker, f"kb:up:{question_id}") == Alert("kb_thanks", "en")
    assert await press(sessionmaker, f"kb:down:{question_id}") == Alert(
        "kb_feedback_already", "en"
    )
    recorded = await question(sessionmaker, question_id)
    assert (recorded.feedback, recorded.feedback_at) == ("helpful", LATER)
    assert (await tickets(sessionmaker), await handoffs(sessionmaker)) == ([], [])


async def test_thumbs_down_hands_over_with_the_answer_that_did_not_help(
    sessionmaker: Sessions,
) -> None:
    _, question_id = await ask(sessionmaker, "how can I return an item")
    assert await press(sessionmaker, f"kb:down:{question_id}") == Reply(
        "kb_handoff_requested", "en"
    )
    assert (await question(sessionmaker, question_id)).feedback == "unhelpful"
    # Staff get the question as the customer typed it (the normalised text only matched it).
    assert await handoffs(sessionmaker) == [
        ("how can I return an item", "return-policy", "question")
    ]
    assert await tickets(sessionmaker) == [
        ("Q-000001", "question", "question", "how can I return an item")
    ]
    async with sessionmaker() as session:
        topic_texts = (
            await session.execute(
                select(TicketDelivery.payload)
                .where(TicketDelivery.lane == "topic", TicketDelivery.action == "text")
                .order_by(TicketDelivery.id)
            )
        ).scalars()
        [told] = [payload["html"] for payload in topic_texts]
    assert "return-policy" in told  # staff see which answer the customer already had


async def test_a_person_or_a_complaint_opens_one_ticket_at_most(sessionmaker: Sessions) -> None:
    _, first = await ask(sessionmaker, "my parcel arrived damaged")
    assert await press(sessionmaker, f"kb:complaint:{first}") == Reply(
        "kb_complaint_requested", "en"
    )
    _, second = await ask(sessionmaker, "what is the capital of france")
    assert await press(sessionmaker, f"kb:person:{second}") == Reply("kb_handoff_requested", "en")
    # Both requests are recorded; the second joins the ticket the first opened.
    assert [kind for _, _, kind in await handoffs(sessionmaker)] == ["complaint", "question"]
    assert await tickets(sessionmaker) == [
        ("C-000001", "complaint", "other", "my parcel arrived damaged")
    ]


async def test_a_banned_customers_request_is_recorded_but_opens_no_ticket(
    sessionmaker: Sessions,
) -> None:
    _, question_id = await ask(sessionmaker, "what is the capital of france")
    async with sessionmaker.begin() as session:
        customer, _ = await ensure_customer(session, ANN, CONFIG.general, NOW)
        await ban(session, customer.id, by_user_id=1, by_name="Max", now=NOW)
    assert await press(sessionmaker, f"kb:person:{question_id}") == Reply(
        "kb_handoff_requested", "en"
    )
    assert len(await handoffs(sessionmaker)) == 1
    assert await tickets(sessionmaker) == []


async def test_buttons_that_are_not_the_pressers_or_mean_nothing_expire(
    sessionmaker: Sessions,
) -> None:
    _, anns = await ask(sessionmaker, "how can I return an item")
    await ask(sessionmaker, "where is my parcel", BEN)
    expired = Alert("button_expired", "en")
    for data in (f"kb:up:{anns + 100}", "kb:explode:1", "kb:up:x", "lang:en"):
        assert await press(sessionmaker, data) == expired, data
    assert await press(sessionmaker, f"kb:person:{anns}", BEN) == expired
    async with sessionmaker.begin() as session:
        stranger = await answering.press_button(
            session, 1, f"kb:up:{anns}", KNOWLEDGE, LATER, desk=DESK
        )
    assert stranger == expired
    assert (await question(sessionmaker, anns)).feedback is None
    assert (await tickets(sessionmaker), await handoffs(sessionmaker)) == ([], [])
