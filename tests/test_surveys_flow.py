"""The survey flow's rules without Telegram, on SQLite and PostgreSQL: a response follows the
definition it was sent with, a free-text answer after the survey closed is an ordinary
message, ``/forget`` erases free-text answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.kernel.config import load_config
from bot.kernel.replies import Alert, Reply
from bot.kernel.survey_config import Localized
from bot.kernel.texts import Texts
from handlers.onboarding.registration import Person, confirm_forget
from handlers.route import route_text
from handlers.tickets.lifecycle import TicketDesk
from storage.models import Customer, Outbox, SurveyAnswer, SurveyDefinition, SurveyResponse
from surveys import flow
from surveys import queries as survey_queries
from surveys.planner import SurveyPlanner
from tests.auxil.outbox import add_customer
from tests.auxil.units import unit_of_work

CONFIG = Path(__file__).resolve().parents[1] / "bot" / "example_config"
RULES = load_config(CONFIG)
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
DESK = TicketDesk.from_config(RULES, Texts.load(), None)


def edited_planner() -> SurveyPlanner:
    """The shipped surveys with the NPS follow-up question reworded."""
    nps = RULES.surveys.survey("nps")
    assert nps is not None
    reason = nps.questions[1].model_copy(update={"text": Localized(en="Reworded?", zh="改过的？")})
    edited = nps.model_copy(update={"questions": [nps.questions[0], reason]})
    surveys = [edited if s.id == "nps" else s for s in RULES.surveys.surveys]
    return SurveyPlanner(RULES.surveys.model_copy(update={"surveys": surveys}))


async def nps_response(sessionmaker: async_sessionmaker[AsyncSession], user_id: int) -> int:
    async with sessionmaker.begin() as session:
        await add_customer(session, user_id, created_at=NOW - timedelta(days=100))
    async with sessionmaker.begin() as session:
        report = await SurveyPlanner(RULES.surveys).run(session, None, NOW)
    [response_id] = report.invited
    return response_id


async def test_a_response_follows_the_definition_it_was_sent_with(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    response_id = await nps_response(sessionmaker, 8001)
    # The operator rewords a question; the next run stores the new content beside the old.
    async with sessionmaker.begin() as session:
        await edited_planner().run(session, None, NOW + timedelta(minutes=1))
    async with sessionmaker.begin() as session:
        result = await flow.press_button(session, DESK, 8001, f"sv:{response_id}:0:9", NOW)
    assert isinstance(result, list)
    assert result[1].params["question"] == "What matters most to you?"
    async with sessionmaker() as session:
        stored = await session.execute(
            select(SurveyDefinition.survey_id).order_by(SurveyDefinition.id)
        )
        assert list(stored.scalars()) == ["csat", "delivery", "nps", "nps"]


async def test_a_text_after_the_survey_closed_is_an_ordinary_message(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker.begin() as session:
        await add_customer(session, 8002, created_at=NOW - timedelta(days=100))
    async with sessionmaker.begin() as session:
        customer = (
            await session.execute(select(Customer).where(Customer.telegram_user_id == 8002))
        ).scalar_one()
        # A delivery survey waiting at its free-text comment.
        delivery = RULES.surveys.survey("delivery")
        assert delivery is not None
        definition = await survey_queries.definition_id(
            session, "delivery", delivery.digest, delivery.model_dump(mode="json"), NOW
        )
        response_id = await survey_queries.insert_response(
            session,
            {
                "definition_id": definition,
                "survey_id": "delivery",
                "customer_id": customer.id,
                "subject": "order:X",
                "tier": "normal",
                "status": "partial",
                "current_question": "comment",
                "low_score": False,
                "invited_at": NOW,
                "expires_at": NOW + timedelta(hours=1),
                "updated_at": NOW,
            },
        )
        assert response_id is not None
        customer.awaiting = flow.awaiting_marker(response_id)
    person = Person(user_id=8002, chat_id=8002, first_name="Eight")
    later = NOW + timedelta(hours=2)
    async with sessionmaker.begin() as session:
        reply = await route_text(session, person, "hello", RULES.general, later)
    assert isinstance(reply, Reply) and reply.key == "fallback"
    async with sessionmaker() as session:
        assert (await session.get(SurveyResponse, response_id)).status == "partial"  # type: ignore[union-attr]
        stored = await session.execute(select(SurveyAnswer))
        assert list(stored.scalars()) == []
        customer = (
            await session.execute(select(Customer).where(Customer.telegram_user_id == 8002))
        ).scalar_one()
        assert customer.awaiting is None
    # Within the time, the same text would have been the answer.
    async with sessionmaker.begin() as session:
        customer = (
            await session.execute(select(Customer).where(Customer.telegram_user_id == 8002))
        ).scalar_one()
        customer.awaiting = flow.awaiting_marker(response_id)
    async with sessionmaker.begin() as session:
        replies = await route_text(session, person, "all fine", RULES.general, NOW)
    assert isinstance(replies, list) and replies[0].key == "survey_thanks"
    async with unit_of_work(sessionmaker) as session:
        await confirm_forget(session, DESK, 8002, "forget:yes", NOW)
    async with sessionmaker() as session:
        [answer] = (await session.execute(select(SurveyAnswer))).scalars()
        assert (answer.question_id, answer.text) == ("comment", None)


async def test_buttons_that_mean_nothing(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    response_id = await nps_response(sessionmaker, 8003)
    for data in (f"sv:{response_id}:0:11", f"sv:{response_id}:7:1", "sv:999:0:1", "sv:x"):
        async with sessionmaker.begin() as session:
            result = await flow.press_button(session, DESK, 8003, data, NOW)
        assert result == Alert("button_expired", "en"), data
    async with sessionmaker.begin() as session:
        assert await flow.press_button(session, DESK, 9999, f"sv:{response_id}:0:1", NOW) is None
    async with sessionmaker.begin() as session:
        result = await flow.press_button(session, DESK, 8003, f"sv:{response_id}:0:skip", NOW)
    assert result == Alert("button_expired", "en")  # the NPS question is not optional


async def test_an_unsent_invitation_is_cancelled_when_the_survey_expires(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """No dispatcher runs here: the invitation is still queued when the NPS survey's 168 hours
    are over. It is cancelled, the response is expired, and no reminder was ever planned (the
    invitation never went out)."""
    response_id = await nps_response(sessionmaker, 8004)
    planner = SurveyPlanner(RULES.surveys)
    async with sessionmaker.begin() as session:
        report = await planner.run(session, DESK, NOW + timedelta(hours=100))
    assert report.reminded == 0
    async with sessionmaker.begin() as session:
        report = await planner.run(session, DESK, NOW + timedelta(hours=168))
    assert report.expired == 1
    async with sessionmaker() as session:
        response = await session.get(SurveyResponse, response_id)
        assert response is not None and response.status == "expired"
        states = await session.execute(select(Outbox.dedupe_key, Outbox.state))
        assert list(states) == [(f"survey:{response_id}:invite", "cancelled")]
