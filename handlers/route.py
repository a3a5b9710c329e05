"""Where a customer's free text goes: the one place that decides, in this order.

1. The answer to a survey's free-text question, when one waits (``surveys.flow``).
2. The customer's open ticket, relayed to staff (``handlers.tickets.relay``), unless a profile
   question waits.
3. Too long for anything below: said so.
4. The answer to a profile question that waits: birthday, time zone
   (``handlers.onboarding.registration``).
5. The knowledge base's answer (``handlers.answers.answering``), or a pointer to ``/help``
   without one.

Outside the complaint flow, a customer's media goes to their open ticket too, else gets
onboarding's "text please" (``route_media``); an edit of a message in a ticket is relayed to
it (``route_edit``).

Free of Telegram: plain values and a session in, replies out; the caller owns the transaction.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.kernel.config import GeneralConfig
from bot.kernel.replies import Reply
from handlers.answers import answering
from handlers.answers.kb import KnowledgeBase
from handlers.onboarding.registration import (
    Person,
    answer_pending_question,
    ensure_customer,
    unsupported_input,
)
from handlers.tickets.desk import Incoming
from handlers.tickets.lifecycle import TicketDesk
from handlers.tickets.relay import relay_customer_edit, relay_from_customer
from storage import customers as customer_queries
from surveys import flow as surveys_flow


async def route_text(
    session: AsyncSession,
    person: Person,
    text: str,
    rules: GeneralConfig,
    now: datetime,
    knowledge: KnowledgeBase | None = None,
    *,
    message: Incoming | None = None,
    desk: TicketDesk | None = None,
) -> Reply | list[Reply]:
    """A customer's free text, taken by the first that wants it (see the module's list)."""
    customer, _ = await ensure_customer(session, person, rules, now)
    if customer.awaiting and customer.awaiting.startswith(surveys_flow.AWAITING):
        answered = await surveys_flow.answer_text(session, desk, customer, text, now)
        if answered is not None:
            return answered
    if desk is not None and message is not None and customer.awaiting is None:
        relayed = await relay_from_customer(session, desk, customer, message, now)
        if relayed is not None:
            return relayed
    limit = rules.chat.max_text_length
    if len(text) > limit:
        return Reply("too_long", customer.language, {"length": len(text), "limit": limit})
    profile = await answer_pending_question(session, customer, text, now)
    if profile is not None:
        return profile
    if knowledge is None:
        return Reply("fallback", customer.language)
    return await answering.answer_question(session, customer, text, knowledge, now)


async def route_media(
    session: AsyncSession,
    person: Person,
    message: Incoming,
    rules: GeneralConfig,
    now: datetime,
    desk: TicketDesk,
) -> list[Reply]:
    """A photo, document, voice, ... outside the complaint flow: to the customer's ticket if
    they have one (registered on first contact), else onboarding's polite "text please"."""
    customer, _ = await ensure_customer(session, person, rules, now)
    replies = await relay_from_customer(session, desk, customer, message, now)
    if replies is None:
        replies = [await unsupported_input(session, person, rules, now)]
    return replies


async def route_edit(
    session: AsyncSession, user_id: int, message: Incoming, desk: TicketDesk, now: datetime
) -> bool:
    """A customer edited a message: relayed to the topic marked as edited, if it was part of
    a ticket. False when the sender is not a customer (nothing was looked at)."""
    customer = await customer_queries.get_for_update(session, user_id)
    if customer is None:
        return False
    await relay_customer_edit(session, desk, customer, message, now)
    return True
