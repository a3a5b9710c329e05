"""The question flow, free of Telegram: one question per message, each answer saved at once.

A response follows the definition it was sent with (``survey_definitions``, see
``surveys.planner``), so the flow needs only the database and the ticket desk. Buttons carry
``sv:<response>:<question position>:<value>`` (value: a score, an option's index or ``skip``);
a free-text question sets ``customer.awaiting`` to ``survey:<response>`` and the customer's next
message is its answer (``answer_text``, called first by ``handlers.route``).

A scored answer at or below the survey's threshold marks the response low; its recovery ticket
opens when the response is finished (at once) or left unfinished (by the planner, later):
``open_recovery``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.kernel.replies import Alert, Button, Reply, TextRef
from bot.kernel.survey_config import (
    RecoveryDefaults,
    SurveyDefinition,
    definition_from_json,
    recovery_threshold,
)
from storage import customers as customer_queries
from storage.models import Customer, SurveyAnswer, SurveyResponse
from storage.payloads import OutboxButton
from storage.tickets.bans import get_ban
from surveys import queries
from surveys.desk import Desk

CB_SURVEY = "sv:"
CALLBACK = re.compile(r"^sv:(\d{1,18}):(\d{1,2}):(skip|\d{1,2})$")
AWAITING = "survey:"
SOURCE_SURVEY = "survey"
MAX_TEXT = 4000
_DEFAULTS = RecoveryDefaults()


@dataclass(frozen=True)
class ButtonSpec:
    """An answer button: a ready ``label`` (from the survey file) or a catalogue ``key``."""

    data: str
    label: str | None = None
    key: str | None = None

    def reply_button(self) -> Button:
        if self.label is not None:
            return Button("survey_option", self.data, {"label": self.label})
        return Button(self.key or "survey_button_skip", self.data)

    def outbox_button(self) -> OutboxButton:
        if self.label is not None:
            return OutboxButton(self.label, data=self.data)
        return OutboxButton(TextRef(self.key or "survey_button_skip"), data=self.data)


def awaiting_marker(response_id: int) -> str:
    return f"{AWAITING}{response_id}"


def buttons_for(
    survey: SurveyDefinition, position: int, response_id: int, language: str
) -> list[list[ButtonSpec]]:
    """The answer buttons of the question at ``position`` (none for free text), and Skip when
    it is optional."""
    question = survey.questions[position]
    prefix = f"{CB_SURVEY}{response_id}:{position}:"
    rows: list[list[ButtonSpec]] = []
    if question.type == "scale":
        labels = question.scale_labels()
        rows.append(
            [ButtonSpec(f"{prefix}{score}", label=labels[score - 1]) for score in range(1, 6)]
        )
    elif question.type == "nps":
        rows.append([ButtonSpec(f"{prefix}{score}", label=str(score)) for score in range(6)])
        rows.append([ButtonSpec(f"{prefix}{score}", label=str(score)) for score in range(6, 11)])
    elif question.type == "choice":
        rows.extend(
            [ButtonSpec(f"{prefix}{index}", label=option.label(language))]
            for index, option in enumerate(question.options)
        )
    if question.optional:
        rows.append([ButtonSpec(f"{prefix}skip", key="survey_button_skip")])
    return rows


def question_reply(
    survey: SurveyDefinition, position: int, response_id: int, language: str
) -> Reply:
    question = survey.questions[position]
    buttons = [
        [spec.reply_button() for spec in row]
        for row in buttons_for(survey, position, response_id, language)
    ]
    return Reply("survey_question", language, {"question": question.text.get(language)}, buttons)


def answer_label(survey: SurveyDefinition, answer: SurveyAnswer, language: str) -> str | None:
    """How an answer reads (None: skipped)."""
    found = survey.question(answer.question_id)
    if answer.score is not None:
        if found is not None and found[1].type == "scale":
            return found[1].scale_labels()[answer.score - 1]
        return f"{answer.score}/10"
    if answer.choice is not None and found is not None:
        option = next((o for o in found[1].options if o.id == answer.choice), None)
        return option.label(language) if option else answer.choice
    return answer.text


_PARSED: dict[str, SurveyDefinition] = {}


async def definition_of(session: AsyncSession, response: SurveyResponse) -> SurveyDefinition:
    """The definition this response was sent with (parsed once per content)."""
    digest, data = await queries.definition(session, response.definition_id)
    parsed = _PARSED.get(digest)
    if parsed is None:
        parsed = _PARSED[digest] = definition_from_json(data)
    return parsed


def is_closed(response: SurveyResponse, now: datetime) -> bool:
    return response.closed_at is not None or now >= response.expires_at


# --- answering ----------------------------------------------------------------------------------


async def press_button(
    session: AsyncSession, desk: Desk | None, user_id: int, data: str, now: datetime
) -> Reply | list[Reply] | Alert | None:
    """A tap on an answer button; None for a sender we do not know."""
    customer = await customer_queries.get_for_update(session, user_id)
    if customer is None:
        return None
    language = customer.language
    match = CALLBACK.match(data)
    response = await queries.lock_response(session, int(match[1])) if match else None
    if match is None or response is None or response.customer_id != customer.id:
        return Alert("button_expired", language)
    if is_closed(response, now):
        return Alert("survey_closed", language)
    survey = await definition_of(session, response)
    position = int(match[2])
    if position >= len(survey.questions):
        return Alert("button_expired", language)
    question = survey.questions[position]
    if question.id != response.current_question:
        return Alert("survey_already_answered", language)
    values: dict[str, Any] = {}
    value = match[3]
    if value == "skip":
        if not question.optional:
            return Alert("button_expired", language)
    elif question.scored:
        score = int(value)
        low, high = (1, 5) if question.type == "scale" else (0, 10)
        if not low <= score <= high:
            return Alert("button_expired", language)
        values["score"] = score
    elif question.type == "choice" and int(value) < len(question.options):
        values["choice"] = question.options[int(value)].id
    else:
        return Alert("button_expired", language)
    answer = await _save(session, survey, response, position, values, now)
    if answer is None:
        return Alert("survey_already_answered", language)
    shown = answer_label(survey, answer, language)
    answered = Reply(
        "survey_answered",
        language,
        {
            "question": question.text.get(language),
            "answer": shown if shown is not None else TextRef("survey_skipped"),
        },
        replace_message=True,
    )
    return [answered, *await _advance(session, desk, survey, response, customer, position, now)]


async def answer_text(
    session: AsyncSession, desk: Desk | None, customer: Customer, text: str, now: datetime
) -> list[Reply] | None:
    """The customer's message while a free-text question waits (``customer.awaiting``); None
    when that survey has closed meanwhile (the message is then handled as any other)."""
    marker = customer.awaiting or ""
    response_id = marker.removeprefix(AWAITING)
    customer.awaiting = None
    if not marker.startswith(AWAITING) or not response_id.isdigit():
        return None
    response = await queries.lock_response(session, int(response_id))
    if response is None or response.customer_id != customer.id or is_closed(response, now):
        return None
    survey = await definition_of(session, response)
    found = survey.question(response.current_question)
    if found is None or found[1].type != "text":
        return None
    position = found[0]
    await _save(session, survey, response, position, {"text": text[:MAX_TEXT]}, now)
    return await _advance(session, desk, survey, response, customer, position, now)


async def _save(
    session: AsyncSession,
    survey: SurveyDefinition,
    response: SurveyResponse,
    position: int,
    values: dict[str, Any],
    now: datetime,
) -> SurveyAnswer | None:
    """Store one answer and what it says about the response (partial, low)."""
    question = survey.questions[position]
    row = {
        "response_id": response.id,
        "question_id": question.id,
        "position": position,
        "kind": question.type,
        "dimension": question.dimension,
        "score": values.get("score"),
        "choice": values.get("choice"),
        "text": values.get("text"),
        "answered_at": now,
    }
    if not await queries.add_answer(session, row):
        return None
    score = values.get("score")
    if score is not None and score <= recovery_threshold(survey, question.type):
        response.low_score = True
    response.status = queries.PARTIAL
    response.last_answer_at = now
    response.updated_at = now
    return SurveyAnswer(**row)


async def _advance(
    session: AsyncSession,
    desk: Desk | None,
    survey: SurveyDefinition,
    response: SurveyResponse,
    customer: Customer,
    position: int,
    now: datetime,
) -> list[Reply]:
    """Ask the next question that applies, or finish: thanks, and recovery for a low score."""
    language = customer.language
    scores = {
        answer.question_id: answer.score for answer in await queries.answers(session, response.id)
    }
    following = survey.next_question(position, scores)
    if following is not None:
        index = survey.questions.index(following)
        response.current_question = following.id
        if following.type == "text":
            customer.awaiting = awaiting_marker(response.id)
        return [question_reply(survey, index, response.id, language)]
    response.current_question = None
    response.status = queries.COMPLETE
    response.completed_at = response.closed_at = now
    if customer.awaiting == awaiting_marker(response.id):
        customer.awaiting = None
    if response.low_score:
        await open_recovery(session, desk, response, now)
        thanks = desk.answer_promise("survey_thanks_recovery") if desk else None
        return [Reply(thanks or "survey_thanks_recovery", language)]
    return [Reply("survey_thanks", language)]


# --- recovery -----------------------------------------------------------------------------------


async def open_recovery(
    session: AsyncSession, desk: Desk | None, response: SurveyResponse, now: datetime
) -> int | None:
    """A ticket in the staff group (the card, then the answers) for a low score; priority by
    the customer's tier. Once per response; not for a banned customer. Returns the ticket id."""
    if desk is None or response.recovered_at is not None:
        return None
    response.recovered_at = now
    customer = await session.get(Customer, response.customer_id)
    if customer is None or customer.erased_at is not None:
        return None
    if await get_ban(session, customer.id) is not None:
        return None
    survey = await definition_of(session, response)
    category = survey.recovery.category or _DEFAULTS.category
    if desk.rules.category(category) is None:
        category = "other"
    ticket_id = await desk.open_recovery_ticket(
        session,
        customer,
        source=SOURCE_SURVEY,
        category=category,
        subject=desk.staff_text("survey_recovery_subject", survey=survey.id),
        text=await recovery_text(session, desk, survey, response),
        now=now,
    )
    response.recovery_ticket_id = ticket_id
    return ticket_id


async def recovery_text(
    session: AsyncSession, desk: Desk, survey: SurveyDefinition, response: SurveyResponse
) -> str:
    """The answers as staff read them (questions in the staff group's language)."""
    language = desk.staff_language
    lines = []
    for answer in await queries.answers(session, response.id):
        found = survey.question(answer.question_id)
        label = answer_label(survey, answer, language)
        lines.append(
            desk.staff_text(
                "survey_recovery_line",
                question=found[1].text.get(language) if found else answer.question_id,
                answer=label if label is not None else desk.staff_text("survey_skipped"),
            )
        )
    head = desk.staff_text("survey_recovery_head", survey=survey.id, subject=response.subject)
    return "\n".join([head, *lines])
