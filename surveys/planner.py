"""Sending surveys: invitations, one reminder, expiry, and the recovery tickets of unfinished
low-scored responses. One periodic job runs ``SurveyPlanner.run`` (``scheduler.surveys``).

Invitations are found in the database, not pushed by the events: tickets closed (CSAT),
orders delivered ``after_days`` ago, customers due for the periodic survey (NPS). Each becomes
a response row — unique per (survey, customer, subject), so a survey is never asked twice about
the same thing, whoever races to plan it — and an outbox row with the first question. The
outbox applies consent, quiet hours and the daily cap when it sends.

Fatigue (``settings.toml``): at most one survey per customer in ``fatigue.days`` across all
surveys, none while a ticket is open; surveys with ``fatigue_exempt`` (CSAT) are sent anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot.kernel.replies import TextRef
from bot.kernel.survey_config import (
    ORDER_DELIVERED,
    PERIODIC,
    TICKET_CLOSED,
    Recovery,
    SurveyConfig,
    SurveyDefinition,
)
from storage import outbox
from storage.models import Customer
from storage.payloads import CatalogueText, OutboxButton
from surveys import flow, queries
from surveys.desk import Desk

KIND_INVITATION = "survey.invitation"
KIND_REMINDER = "survey.reminder"
BATCH = 1000


@dataclass
class PlanReport:
    """What one run did."""

    invited: list[int] = field(default_factory=list)
    reminded: int = 0
    expired: int = 0
    recovered: int = 0


class SurveyPlanner:
    """Plans the surveys of ``rules`` (see the module docstring)."""

    def __init__(self, rules: SurveyConfig) -> None:
        self.rules = rules
        self._definition_ids: dict[str, int] = {}
        self._periodic_checked: dict[str, datetime] = {}

    def snapshot(self, survey: SurveyDefinition) -> SurveyDefinition:
        """The survey as stored with its responses: recovery thresholds of ``settings.toml``
        filled in, so a response keeps them."""
        recovery = Recovery(
            scale_at_most=self.rules.threshold(survey, "scale"),
            nps_at_most=self.rules.threshold(survey, "nps"),
            category=self.rules.recovery_category(survey),
        )
        return survey.model_copy(update={"recovery": recovery})

    async def _definition_id(
        self, session: AsyncSession, survey: SurveyDefinition, now: datetime
    ) -> int:
        digest = survey.digest
        key = f"{survey.id}:{digest}"
        found = self._definition_ids.get(key)
        if found is None:
            found = await queries.definition_id(
                session, survey.id, digest, survey.model_dump(mode="json"), now
            )
        self._definition_ids[key] = found
        return found

    def _audience(self, survey: SurveyDefinition, now: datetime) -> queries.Audience:
        days = self.rules.settings.fatigue.days
        return queries.Audience(
            tiers=tuple(survey.tiers),
            exempt=survey.fatigue_exempt,
            fatigue_since=now - timedelta(days=days) if days else None,
        )

    async def candidates(
        self, session: AsyncSession, survey: SurveyDefinition, now: datetime, limit: int
    ) -> list[tuple[str, queries.Candidate]]:
        """Who gets ``survey`` now, with the subject of each: ``ticket:<number>``,
        ``order:<external id>`` or ``period:<date>``. A subject is only looked for within
        the survey's lifetime (a survey that would already have expired is not sent)."""
        trigger = survey.trigger
        audience = self._audience(survey, now)
        lookback = timedelta(hours=survey.expire_after_hours)
        if trigger.on == TICKET_CLOSED:
            until = now - timedelta(minutes=trigger.delay_minutes)
            found = await queries.closed_tickets(
                session,
                survey.id,
                audience,
                closed_from=until - lookback,
                closed_until=until,
                limit=limit,
            )
            return [(f"ticket:{c.ticket_number}", c) for c in found]
        if trigger.on == ORDER_DELIVERED:
            until = now - timedelta(days=trigger.after_days or 0)
            found = await queries.delivered_orders(
                session,
                survey.id,
                audience,
                delivered_from=until - lookback,
                delivered_until=until,
                limit=limit,
            )
            return [(f"order:{c.order_ref}", c) for c in found]
        assert trigger.on == PERIODIC
        found = await queries.periodic_customers(
            session,
            survey.id,
            audience,
            last_before=now - timedelta(days=trigger.every_days or 1),
            limit=limit,
        )
        return [(f"period:{now.date().isoformat()}", c) for c in found]

    async def invite(self, session: AsyncSession, now: datetime) -> list[int]:
        """Queue today's invitations (exempt surveys first); returns the new responses' ids."""
        budget = self.rules.settings.planner.max_invitations_per_run
        taken: set[int] = set()
        invited: list[int] = []
        surveys = sorted(
            (survey for survey in self.rules.surveys if survey.enabled),
            key=lambda survey: not survey.fatigue_exempt,
        )
        for survey in surveys:
            if budget <= 0:
                break
            if survey.trigger.on == PERIODIC and not self._periodic_due(survey, now):
                continue
            stored = self.snapshot(survey)
            definition_id = await self._definition_id(session, stored, now)
            for subject, candidate in await self.candidates(session, survey, now, budget):
                if candidate.customer_id in taken and not survey.fatigue_exempt:
                    continue
                response_id = await queries.insert_response(
                    session,
                    {
                        "definition_id": definition_id,
                        "survey_id": survey.id,
                        "customer_id": candidate.customer_id,
                        "subject": subject[:100],
                        "ticket_id": candidate.ticket_id,
                        "order_id": candidate.order_id,
                        "tier": candidate.tier,
                        "category": candidate.category,
                        "status": queries.INVITED,
                        "current_question": survey.questions[0].id,
                        "low_score": False,
                        "invited_at": now,
                        "expires_at": now + timedelta(hours=survey.expire_after_hours),
                        "updated_at": now,
                    },
                )
                if response_id is None:
                    continue
                taken.add(candidate.customer_id)
                invited.append(response_id)
                budget -= 1
                await self._queue_invitation(session, stored, response_id, candidate, now)
        return invited

    def _periodic_due(self, survey: SurveyDefinition, now: datetime) -> bool:
        """Whether to look for a periodic survey's customers at this run (in memory: a
        restarted process looks at once)."""
        every = timedelta(minutes=self.rules.settings.planner.periodic_check_minutes)
        last = self._periodic_checked.get(survey.id)
        if last is not None and last <= now < last + every:
            return False
        self._periodic_checked[survey.id] = now
        return True

    async def _queue_invitation(
        self,
        session: AsyncSession,
        survey: SurveyDefinition,
        response_id: int,
        candidate: queries.Candidate,
        now: datetime,
    ) -> None:
        language = candidate.language
        question = survey.questions[0].text.get(language)
        if survey.intro is not None:
            intro = survey.intro.get(language).format(
                ticket=candidate.ticket_number, order=candidate.order_ref
            )
            payload = CatalogueText(
                TextRef("survey_invitation", {"intro": intro, "question": question}),
                buttons=self._buttons(survey, 0, response_id, language),
            )
        else:
            payload = CatalogueText(
                TextRef("survey_question", {"question": question}),
                buttons=self._buttons(survey, 0, response_id, language),
            )
        if survey.questions[0].type == "text":
            customer = await session.get(Customer, candidate.customer_id)
            if customer is not None:
                customer.awaiting = flow.awaiting_marker(response_id)
        await outbox.enqueue(
            session,
            dedupe_key=queries.invite_key(response_id),
            chat_id=candidate.chat_id,
            kind=KIND_INVITATION,
            payload=payload,
            due_at=now,
            now=now,
            customer_id=candidate.customer_id,
            priority=outbox.Priority.CARE,
        )

    @staticmethod
    def _buttons(
        survey: SurveyDefinition, position: int, response_id: int, language: str
    ) -> list[list[OutboxButton]]:
        return [
            [spec.outbox_button() for spec in row]
            for row in flow.buttons_for(survey, position, response_id, language)
        ]

    async def remind(self, session: AsyncSession, now: datetime) -> int:
        """One reminder per response, its survey's delay after the invitation was delivered
        (or after the last answer), re-asking the question that waits."""
        delays = [s.remind_after_hours for s in self.rules.surveys if s.remind_after_hours > 0]
        shortest = min(delays, default=0.0)
        reminded = 0
        for response, quiet_since in await queries.due_reminders(
            session, answered_before=now - timedelta(hours=shortest), now=now, limit=BATCH
        ):
            survey = await flow.definition_of(session, response)
            hours = survey.remind_after_hours
            found = survey.question(response.current_question)
            if hours <= 0 or found is None or quiet_since + timedelta(hours=hours) > now:
                continue
            customer = await session.get(Customer, response.customer_id)
            if customer is None or customer.chat_id is None:
                continue
            language = customer.language
            response.reminded_at = now
            await outbox.enqueue(
                session,
                dedupe_key=queries.reminder_key(response.id),
                chat_id=customer.chat_id,
                kind=KIND_REMINDER,
                payload=CatalogueText(
                    TextRef("survey_reminder", {"question": found[1].text.get(language)}),
                    buttons=self._buttons(survey, found[0], response.id, language),
                ),
                due_at=now,
                now=now,
                customer_id=customer.id,
                priority=outbox.Priority.CARE,
            )
            reminded += 1
        return reminded

    async def expire(self, session: AsyncSession, now: datetime) -> int:
        """Close the responses whose time ran out: unanswered ones become expired, partial ones
        stay partial; their unsent messages are cancelled and a waiting free-text question is
        forgotten."""
        due = await queries.due_expiry(session, now, BATCH)
        for response in due:  # customers before responses: the answering handlers' lock order
            await queries.clear_awaiting(
                session, [response.customer_id], flow.awaiting_marker(response.id)
            )
        for response in due:
            response.closed_at = now
            response.updated_at = now
            if response.status == queries.INVITED:
                response.status = queries.EXPIRED
        await queries.cancel_unsent(
            session,
            [key for r in due for key in (queries.invite_key(r.id), queries.reminder_key(r.id))],
            now,
        )
        return len(due)

    async def recover(self, session: AsyncSession, desk: Desk | None, now: datetime) -> int:
        """Recovery tickets for low scores in responses left unfinished (or closed before the
        flow could open one)."""
        wait = timedelta(minutes=self.rules.settings.recovery.wait_minutes)
        opened = 0
        for response in await queries.due_recovery(session, quiet_before=now - wait, limit=BATCH):
            if await flow.open_recovery(session, desk, response, now) is not None:
                opened += 1
        return opened

    async def run(self, session: AsyncSession, desk: Desk | None, now: datetime) -> PlanReport:
        """One pass: close what expired, open pending recoveries, remind, invite (one planner
        at a time across processes)."""
        await queries.lock_planning(session)
        report = PlanReport()
        report.expired = await self.expire(session, now)
        report.recovered = await self.recover(session, desk, now)
        report.reminded = await self.remind(session, now)
        report.invited = await self.invite(session, now)
        return report
