"""Surveys end to end through the local Bot API server, on SQLite and PostgreSQL: CSAT after a
ticket with its recovery ticket, the delivery survey left halfway (partial answers, one
reminder, expiry), fatigue and open tickets with the injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from bot.kernel.texts import Markup
from bot.sandbox.records import FakeUser, SentMessage
from storage.models import Customer, SurveyAnswer, SurveyResponse, Ticket
from surveys.planner import PlanReport, SurveyPlanner
from tests.auxil.harness import STAFF_CHAT_ID, Harness
from tests.auxil.outbox import add_customer
from tests.auxil.tickets import (
    desk_ticket,
    lanes_idle,
    live_topics,
    plain,
    staff_member,
    staff_says,
    topic_of,
    wait_edited,
    wait_text,
)
from tests.test_care import add_order

STAFF = STAFF_CHAT_ID


async def plan(harness: Harness, at: datetime | None = None) -> PlanReport:
    """One run of the survey job at ``at`` (default: the harness clock), then send."""
    async with harness.sessionmaker.begin() as session:
        report = await SurveyPlanner(harness.rules.surveys).run(
            session, harness.desk, at or harness.clock.now()
        )
    assert harness.dispatcher is not None
    harness.dispatcher.wake()
    return report


async def responses(harness: Harness) -> list[SurveyResponse]:
    async with harness.sessionmaker() as session:
        result = await session.execute(select(SurveyResponse).order_by(SurveyResponse.id))
        return list(result.scalars())


async def answers_of(harness: Harness, response_id: int) -> list[tuple[str, object]]:
    async with harness.sessionmaker() as session:
        result = await session.execute(
            select(SurveyAnswer)
            .where(SurveyAnswer.response_id == response_id)
            .order_by(SurveyAnswer.position)
        )
        return [
            (a.question_id, a.score if a.score is not None else a.choice or a.text)
            for a in result.scalars()
        ]


async def give_consent(harness: Harness, user: FakeUser) -> None:
    async with harness.sessionmaker.begin() as session:
        await session.execute(
            update(Customer)
            .where(Customer.telegram_user_id == user.id)
            .values(consent=True, consent_answered=True)
        )


async def close_ticket(harness: Harness, user: FakeUser, number: str, thread: int) -> None:
    """Staff /close, the customer confirms: the ticket is closed."""
    api = harness.api
    anna = staff_member(api, 9001, "Anna")
    await staff_says(api, anna, thread, "/close")
    question = await wait_text(
        api, user.id, harness.text("en", "ticket_resolved_question", number=number)
    )
    async with harness.sessionmaker() as session:
        ticket_id = (
            await session.execute(select(Ticket.id).where(Ticket.number == number))
        ).scalar_one()
    await api.press_button(user, question, f"tr:{ticket_id}:yes")
    await wait_edited(
        api,
        user.id,
        question.message_id,
        harness.text("en", "ticket_closed_thanks", number=number),
    )
    await lanes_idle(harness, number)


def labels(message: SentMessage) -> list[str]:
    return [label for label, _ in message.buttons()]


class TestCsat:
    async def test_a_low_score_asks_what_went_wrong_and_opens_a_recovery_ticket(
        self, harness: Harness
    ) -> None:
        api = harness.api
        ming = api.add_user(5001, "Ming", language_code="en")
        number, thread = await desk_ticket(harness, ming, tier="vip")
        await give_consent(harness, ming)
        await close_ticket(harness, ming, number, thread)
        before = len(api.sent(ming.id))

        report = await plan(harness)
        [response] = await responses(harness)
        assert report.invited == [response.id]
        assert (response.survey_id, response.subject, response.tier, response.category) == (
            "csat",
            f"ticket:{number}",
            "vip",
            "delivery",
        )
        question = "How satisfied are you with how we handled it?"
        invitation = (await api.wait_for_sent(ming.id, before + 1))[-1]
        assert invitation.text == plain(
            harness.text(
                "en",
                "survey_invitation",
                intro=f"Your ticket {number} is closed.",
                question=question,
            )
        )
        assert invitation.buttons() == [
            (label, f"sv:{response.id}:0:{score}")
            for score, label in enumerate(["😠 1", "🙁 2", "😐 3", "🙂 4", "😍 5"], start=1)
        ]
        # Planning again sends nothing more: the survey is not asked twice about a ticket.
        assert (await plan(harness)).invited == []

        await api.press_button(ming, invitation, f"sv:{response.id}:0:2")
        await wait_edited(
            api,
            ming.id,
            invitation.message_id,
            harness.text("en", "survey_answered", question=question, answer="🙁 2"),
        )
        follow_up = (await api.wait_for_sent(ming.id, before + 2))[-1]
        assert follow_up.text == plain(
            harness.text(
                "en",
                "survey_question",
                question="We are sorry. What went wrong? Please tell us in a message.",
            )
        )
        assert follow_up.buttons() == [
            (harness.text("en", "survey_button_skip"), f"sv:{response.id}:1:skip")
        ]
        # The same button again: already answered, nothing changes.
        await api.press_button(ming, invitation, f"sv:{response.id}:0:5")

        await api.send_text(ming, "The courier was rude & late")
        thanks = (await api.wait_for_sent(ming.id, before + 3))[-1]
        assert thanks.text == harness.text("en", "survey_thanks_recovery")
        assert await answers_of(harness, response.id) == [
            ("score", 2),
            ("what_went_wrong", "The courier was rude & late"),
        ]
        [done] = await responses(harness)
        assert done.status == "complete" and done.low_score and done.closed_at is not None
        assert done.recovery_ticket_id is not None

        # The recovery ticket: a new topic with the card (scores included), then the answers.
        async with harness.sessionmaker() as session:
            recovery = await session.get(Ticket, done.recovery_ticket_id)
        assert recovery is not None and recovery.number != number
        assert (recovery.source, recovery.category, recovery.priority) == ("survey", "other", 2)
        recovery_thread = await topic_of(harness, recovery.number)
        await lanes_idle(harness, recovery.number)
        sent = [m.text or "" for m in api.sent(STAFF, thread_id=recovery_thread)]
        scores = harness.text(
            "en", "survey_card_scores", scores=Markup("Service attitude 2/5 (2026-11-23)")
        )
        assert any(scores in text for text in sent), sent
        expected = "\n".join(
            [
                harness.text(
                    "en", "survey_recovery_head", survey="csat", subject=f"ticket:{number}"
                ),
                harness.text("en", "survey_recovery_line", question=question, answer="🙁 2"),
                harness.text(
                    "en",
                    "survey_recovery_line",
                    question="We are sorry. What went wrong? Please tell us in a message.",
                    answer="The courier was rude & late",
                ),
            ]
        )
        assert expected in sent
        assert len(live_topics(api)) == 2


async def toast(harness: Harness, count: int) -> str:
    """The text of the ``count``-th answered button press (a toast)."""
    api = harness.api
    await api.wait_for(
        lambda: len(api.answered_callbacks) >= count, description=f"{count} answered presses"
    )
    return str(api.answered_callbacks[count - 1].get("text"))


async def delivered_customer(harness: Harness, user: FakeUser, **extra: object) -> tuple[int, int]:
    """A customer with consent and an order delivered three days ago: (customer, order)."""
    async with harness.sessionmaker.begin() as session:
        customer = await add_customer(session, user.id, name=user.first_name, **extra)
        order = await add_order(
            session,
            customer,
            f"E-{user.id}",
            placed=datetime(2026, 11, 18, 2, 0, tzinfo=UTC),
            delivered_at=datetime(2026, 11, 20, 8, 0, tzinfo=UTC),
        )
    return customer, order


class TestDelivery:
    async def test_halfway_keeps_partial_answers_one_reminder_then_closed(
        self, harness: Harness
    ) -> None:
        api = harness.api
        lan = api.add_user(5101, "Lan", language_code="en")
        await delivered_customer(harness, lan)
        start = harness.clock.now()

        report = await plan(harness)
        [response] = await responses(harness)
        assert report.invited == [response.id] and response.survey_id == "delivery"
        assert response.subject == "order:E-5101"
        [invitation] = await api.wait_for_sent(lan.id, 1)
        assert invitation.text == plain(
            harness.text(
                "en",
                "survey_invitation",
                intro="How was your order E-5101?",
                question="Delivery speed",
            )
        )
        await api.press_button(lan, invitation, f"sv:{response.id}:0:4")
        second = (await api.wait_for_sent(lan.id, 2))[-1]
        assert second.text == plain(
            harness.text("en", "survey_question", question="Service attitude")
        )
        assert [data for _, data in second.buttons()] == [
            f"sv:{response.id}:1:{score}" for score in range(1, 6)
        ]
        # The customer stops here: the answer is kept, the response is partial.
        [halfway] = await responses(harness)
        assert halfway.status == "partial" and halfway.current_question == "service_attitude"
        assert await answers_of(harness, response.id) == [("delivery_speed", 4)]

        # No reminder before 24 hours of silence; one at 24 hours; never a second.
        assert (await plan(harness, start + timedelta(hours=23))).reminded == 0
        harness.clock.advance(timedelta(hours=24))
        assert (await plan(harness)).reminded == 1
        reminder = (await api.wait_for_sent(lan.id, 3))[-1]
        assert reminder.text == plain(
            harness.text("en", "survey_reminder", question="Service attitude")
        )
        assert reminder.buttons() == second.buttons()
        harness.clock.advance(timedelta(hours=48))
        assert (await plan(harness)).reminded == 0

        # 120 hours after the invitation the survey closes; it stays partial, answers kept.
        harness.clock.set(start + timedelta(hours=120))
        assert (await plan(harness)).expired == 1
        [closed] = await responses(harness)
        assert closed.status == "partial" and closed.closed_at == harness.clock.now()
        assert await answers_of(harness, response.id) == [("delivery_speed", 4)]
        await api.press_button(lan, reminder, f"sv:{response.id}:1:5")
        assert await toast(harness, 2) == harness.text("en", "survey_closed")
        assert len(api.sent(lan.id)) == 3
        assert await answers_of(harness, response.id) == [("delivery_speed", 4)]
        # And the survey is never sent again about this order.
        assert (await plan(harness)).invited == []


class TestFatigue:
    async def test_one_survey_per_fortnight_and_none_while_a_ticket_is_open(
        self, harness: Harness
    ) -> None:
        """Hua has a delivery and is due for NPS (registered long ago): one survey, the other
        only after the 14-day fatigue period. Bo is due for NPS but has a ticket open: nothing
        until it closes, then the CSAT (exempt) and still no NPS that day."""
        api = harness.api
        start = harness.clock.now()
        long_ago = start - timedelta(days=200)
        hua = api.add_user(5201, "Hua", language_code="en")
        bo = api.add_user(5202, "Bo", language_code="en")
        await delivered_customer(harness, hua, created_at=long_ago)
        async with harness.sessionmaker.begin() as session:
            bo_id = await add_customer(session, bo.id, name="Bo", created_at=long_ago)
        number, thread = await desk_ticket(harness, bo)

        await plan(harness)
        assert [(r.survey_id, r.customer_id) for r in await responses(harness)] == [
            ("delivery", hua_id := (await responses(harness))[0].customer_id)
        ]
        for days in (1, 13):
            assert (await plan(harness, start + timedelta(days=days))).invited == []

        # Bo's ticket closes on day 13: the CSAT goes at once, NPS waits (fatigue).
        harness.clock.set(start + timedelta(days=13))
        await close_ticket(harness, bo, number, thread)
        await plan(harness)
        assert [(r.survey_id, r.customer_id) for r in await responses(harness)][1:] == [
            ("csat", bo_id)
        ]
        # Day 14 and a minute: Hua's fortnight is over, NPS goes; Bo's is not.
        harness.clock.set(start + timedelta(days=14, minutes=1))
        await plan(harness)
        assert [(r.survey_id, r.customer_id) for r in await responses(harness)][2:] == [
            ("nps", hua_id)
        ]
        harness.clock.set(start + timedelta(days=27, minutes=1))
        await plan(harness)
        assert [(r.survey_id, r.customer_id) for r in await responses(harness)][3:] == [
            ("nps", bo_id)
        ]
        # NPS is periodic: not again within its 90 days.
        assert (await plan(harness, start + timedelta(days=100))).invited == []


class TestNps:
    async def test_a_detractor_who_stops_gets_a_recovery_ticket_after_the_wait(
        self, harness: Harness
    ) -> None:
        """In Chinese: NPS 3 (≤ 6), then silence: the recovery ticket opens 60 minutes later."""
        api = harness.api
        wei = api.add_user(5301, "Wei", language_code="zh")
        start = harness.clock.now()
        async with harness.sessionmaker.begin() as session:
            await add_customer(
                session, wei.id, name="Wei", language="zh", created_at=start - timedelta(days=91)
            )
        await plan(harness)
        [response] = await responses(harness)
        assert (response.survey_id, response.subject) == ("nps", "period:2026-11-23")
        [invitation] = await api.wait_for_sent(wei.id, 1)
        question = "您有多大可能向朋友推荐我们？（0 = 完全不会，10 = 非常可能）"
        assert invitation.text == plain(harness.text("zh", "survey_question", question=question))
        assert [data for _, data in invitation.buttons()] == [
            f"sv:{response.id}:0:{score}" for score in range(11)
        ]
        # Somebody else's press changes nothing.
        other = api.add_user(5302, "Other", language_code="en")
        await api.send_text(other, "/start")
        await api.wait_for_sent(other.id, 1)
        await api.press_button(other, invitation, f"sv:{response.id}:0:9")
        assert await toast(harness, 1) == harness.text("en", "button_expired")

        await api.press_button(wei, invitation, f"sv:{response.id}:0:3")
        reason = (await api.wait_for_sent(wei.id, 2))[-1]
        assert labels(reason) == ["💰 价格", "📦 质量", "🚚 配送", "🙋 服务", "跳过 ⏭"]
        [low] = await responses(harness)
        assert low.low_score and low.status == "partial" and low.recovery_ticket_id is None

        assert (await plan(harness, start + timedelta(minutes=59))).recovered == 0
        harness.clock.set(start + timedelta(minutes=61))
        assert (await plan(harness)).recovered == 1
        [recovered] = await responses(harness)
        assert recovered.recovery_ticket_id is not None and recovered.status == "partial"
        async with harness.sessionmaker() as session:
            ticket = await session.get(Ticket, recovered.recovery_ticket_id)
        assert ticket is not None
        thread = await topic_of(harness, ticket.number)
        await lanes_idle(harness, ticket.number)
        english = (
            "How likely are you to recommend us to a friend? (0 = not at all, 10 = very likely)"
        )
        assert api.sent(STAFF, thread_id=thread)[-1].text == "\n".join(
            [
                harness.text(
                    "en", "survey_recovery_head", survey="nps", subject="period:2026-11-23"
                ),
                harness.text("en", "survey_recovery_line", question=english, answer="3/10"),
            ]
        )
        # Once only; answering the rest later does not open another.
        await api.press_button(wei, reason, f"sv:{response.id}:1:skip")
        thanks = (await api.wait_for_sent(wei.id, 3))[-1]
        assert thanks.text == harness.text("zh", "survey_thanks_recovery")
        assert await answers_of(harness, response.id) == [("recommend", 3), ("reason", None)]
        assert len(live_topics(api)) == 1
