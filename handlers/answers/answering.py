"""Knowledge-base answers, free of Telegram: a customer's text in, a reply out.

A confident match is answered at once with "👍 / 👎 talk to a person" under it; a middle-band
match offers the best three questions as buttons (a press answers); below that the customer is
told so and offered a person. Every question is recorded (normalised text, entry, score, outcome,
time) with the feedback it gets, for ``carebot report kb``, and as typed: a hand-off gives staff
the customer's own words, never the normalised matching text.

``request_handoff`` records the request and opens a ticket (``handlers.tickets.lifecycle``):
staff see the question in the ticket's topic and the customer's next messages go there.
The caller owns the transaction; these functions only ``flush``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.kernel.replies import Alert, Button, Reply
from bot.kernel.texts import Markup
from handlers.answers.kb import Entry, KnowledgeBase
from handlers.answers.matching import Band, MatchResult
from handlers.tickets.desk import SOURCE_COMPLAINT, SOURCE_QUESTION, Desk
from handlers.tickets.lifecycle import open_ticket, push_topic_text
from storage import customers as customer_queries
from storage import kb as kb_queries
from storage.models import Customer, KbHandoff, KbQuestion
from storage.tickets.bans import get_ban

# Callback data: kb:<action>:<question id>[:<entry id>] (at most 64 bytes with a 32-byte id).
CB_PREFIX = "kb:"
CALLBACK = re.compile(r"^kb:(up|down|person|complaint|pick):(\d{1,18})(?::([a-z0-9_-]{1,32}))?$")
SUGGESTION_LABEL = 60

HANDOFF_QUESTION = "question"
HANDOFF_COMPLAINT = "complaint"


async def request_handoff(
    session: AsyncSession,
    customer_id: int,
    question: str,
    answer_id: str | None,
    *,
    now: datetime,
    kind: str = HANDOFF_QUESTION,
    desk: Desk | None = None,
    answer_given: Entry | None = None,
) -> KbHandoff:
    """A customer wants a person: the request is recorded in ``kb_handoffs`` and, with a
    ``desk``, a ticket opens ("question", or "complaint" for an entry's complaint button) with
    the question as its subject, unless the customer already has one open (a banned customer
    gets none). The answer that did not help (``answer_given``) follows the card into the
    topic, so staff see what the customer was already told."""
    handoff = await kb_queries.record_handoff(
        session,
        customer_id=customer_id,
        question=question,
        entry_id=answer_id,
        kind=kind,
        requested_at=now,
    )
    customer = await session.get(Customer, customer_id)
    if desk is not None and customer is not None and await get_ban(session, customer_id) is None:
        ticket, opened = await open_ticket(
            session,
            desk,
            customer,
            source=SOURCE_QUESTION if kind == HANDOFF_QUESTION else SOURCE_COMPLAINT,
            category=SOURCE_QUESTION if kind == HANDOFF_QUESTION else "other",
            subject=question,
            now=now,
        )
        if opened and answer_given is not None:
            answer = answer_given.answer.get(desk.staff_language)
            text = desk.staff_text(
                "ticket_kb_answer_given", entry=answer_given.id, answer=Markup(answer)
            )
            await push_topic_text(session, desk, ticket, text, now)
    return handoff


def _as_typed(row: KbQuestion) -> str:
    """The question as the customer typed it, for staff (the normalised text only matched it;
    a question recorded before carebot kept the typed text has only that)."""
    return row.typed or row.question


def _promise(desk: Desk | None, key: str) -> str:
    """``key``, or what it says while no staff group is connected (``Desk.answer_promise``)."""
    return desk.answer_promise(key) if desk is not None else key


def answer_reply(entry: Entry, language: str, question_id: int) -> Reply:
    """An entry's answer with its own buttons, then 👍 / 👎 talk to a person."""
    rows: list[list[Button]] = []
    for button in entry.buttons:
        if button.link is not None and button.label is not None:
            label = Markup(button.label.get(language))
            rows.append([Button("kb_link_button", "", {"label": label}, url=button.link)])
        elif button.action == "complaint":
            rows.append([Button("kb_complaint_button", f"kb:complaint:{question_id}")])
        elif button.action == "person":
            rows.append([Button("kb_person_button", f"kb:person:{question_id}")])
    rows.append(
        [
            Button("kb_helpful_button", f"kb:up:{question_id}"),
            Button("kb_unhelpful_button", f"kb:down:{question_id}"),
        ]
    )
    return Reply("kb_answer", language, {"answer": Markup(entry.answer.get(language))}, rows)


def _suggestion_label(entry: Entry, language: str) -> Markup:
    question = (entry.questions.zh if language == "zh" else entry.questions.en)[0]
    if len(question) > SUGGESTION_LABEL:
        question = question[: SUGGESTION_LABEL - 1] + "…"
    return Markup(question)


_OUTCOME = {
    Band.ANSWER: kb_queries.ANSWERED,
    Band.SUGGEST: kb_queries.SUGGESTED,
    Band.NONE: kb_queries.UNANSWERED,
}


@dataclass(frozen=True)
class Answer:
    """What the knowledge base makes of a question, before it is recorded."""

    match: MatchResult
    band: Band
    entries: list[Entry]
    """The matched entries still in the knowledge base, best first."""

    @property
    def outcome(self) -> str:
        return _OUTCOME[self.band]

    def reply(self, language: str, question_id: int) -> Reply:
        """Answer, suggest, or offer a person; the buttons carry the recorded question's id."""
        if self.band is Band.ANSWER:
            return answer_reply(self.entries[0], language, question_id)
        person = [Button("kb_person_button", f"kb:person:{question_id}")]
        if self.band is Band.SUGGEST:
            choices = [
                [
                    Button(
                        "kb_suggestion_button",
                        f"kb:pick:{question_id}:{entry.id}",
                        {"question": _suggestion_label(entry, language)},
                    )
                ]
                for entry in self.entries
            ]
            return Reply("kb_suggest", language, buttons=[*choices, person])
        return Reply("kb_no_answer", language, buttons=[person])


def find_answer(text: str, knowledge: KnowledgeBase) -> Answer:
    """Match ``text`` in the knowledge base (no database: the caller records the question)."""
    match = knowledge.index.match(text)
    entries = [
        entry for found in match.matches if (entry := knowledge.entry(found.entry_id)) is not None
    ]
    return Answer(match, match.band if entries else Band.NONE, entries)


async def answer_question(
    session: AsyncSession,
    customer: Customer,
    text: str,
    knowledge: KnowledgeBase,
    now: datetime,
) -> Reply:
    """Free text from a customer who is in no flow: answer, suggest, or offer a person."""
    answer = find_answer(text, knowledge)
    best = answer.match.best
    question_id = await kb_queries.record_question(
        session,
        customer_id=customer.id,
        language=customer.language,
        question=answer.match.normalised or text.strip(),
        typed=text.strip(),
        entry_id=best.entry_id if best else None,
        score=best.score if best else 0.0,
        outcome=answer.outcome,
        asked_at=now,
    )
    return answer.reply(customer.language, question_id)


async def press_button(
    session: AsyncSession,
    user_id: int,
    data: str,
    knowledge: KnowledgeBase,
    now: datetime,
    desk: Desk | None = None,
) -> Reply | Alert:
    """A button under a knowledge-base reply: 👍, 👎, a suggestion, a person, a complaint."""
    customer = await customer_queries.get_by_telegram_id(session, user_id)
    language = customer.language if customer else "en"
    parsed = CALLBACK.match(data)
    if customer is None or parsed is None:
        return Alert("button_expired", language)
    action, question_id, entry_id = parsed.group(1), int(parsed.group(2)), parsed.group(3)
    row = await kb_queries.get_question_for_update(session, question_id)
    if row is None or row.customer_id != customer.id:
        return Alert("button_expired", language)
    match action:
        case "up" | "down" if row.feedback is not None:
            return Alert("kb_feedback_already", language)
        case "up":
            row.feedback, row.feedback_at = kb_queries.HELPFUL, now
            return Alert("kb_thanks", language)
        case "down":
            row.feedback, row.feedback_at = kb_queries.UNHELPFUL, now
            await request_handoff(
                session,
                customer.id,
                _as_typed(row),
                row.entry_id,
                now=now,
                desk=desk,
                answer_given=knowledge.entry(row.entry_id or ""),
            )
            return Reply(_promise(desk, "kb_handoff_requested"), language)
        case "person":
            await request_handoff(
                session, customer.id, _as_typed(row), row.entry_id, now=now, desk=desk
            )
            return Reply(_promise(desk, "kb_handoff_requested"), language)
        case "complaint":
            await request_handoff(
                session,
                customer.id,
                _as_typed(row),
                row.entry_id,
                now=now,
                kind=HANDOFF_COMPLAINT,
                desk=desk,
            )
            return Reply(_promise(desk, "kb_complaint_requested"), language)
    entry = knowledge.entry(entry_id or "")
    if entry is None:
        return Alert("button_expired", language)
    row.outcome, row.entry_id = kb_queries.PICKED, entry.id
    return answer_reply(entry, language, row.id)
