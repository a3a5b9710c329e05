"""What the buttons under care messages (``scheduler.care``) do: "stop these messages" and a
follow-up visit's "all good" / "there is a problem". A campaign's "stop" carries its recipient
(``care:stop:<recipient>``, ``scheduler.campaigns``): the press is counted for the campaign.
Free of Telegram: the button's data and the presser's id in, the reply out; the caller owns
the transaction.

"There is a problem" opens a complaint ticket about the order (its topic appears in the staff
group), unless the customer already has one open or is banned from tickets.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.kernel.replies import Alert, Reply
from handlers.tickets.desk import SOURCE_CARE, Desk
from handlers.tickets.lifecycle import open_ticket
from storage import campaigns as campaign_queries
from storage import care as care_queries
from storage import customers as customer_queries
from storage.tickets.bans import get_ban
from storage.tickets.purchases import customer_order

CALLBACK = re.compile(r"^care:(stop|good|problem)(?::(\d{1,18}))?$")
PROBLEM_SUBJECT = "Follow-up visit: the customer reports a problem with this order"


async def press_care_button(
    session: AsyncSession,
    desk: Desk | None,
    user_id: int,
    data: str,
    now: datetime,
) -> Reply | Alert | None:
    """What a tap on a care message's button does; None for an unknown sender or button."""
    match = CALLBACK.match(data)
    customer = await customer_queries.get_by_telegram_id(session, user_id)
    if match is None or customer is None or customer.erased_at is not None:
        return None
    language = customer.language
    action, reference = match[1], match[2]
    if action == "stop":
        if reference:  # a campaign's message: the press is counted for it
            await campaign_queries.mark_pressed(session, int(reference), customer.id, now)
        changed = await care_queries.withdraw_consent(session, customer.id, now)
        return Reply("care_stopped" if changed else "care_already_stopped", language)
    if action == "good":
        return Alert("care_thanks_good", language)
    order = await customer_order(session, customer.id, int(reference)) if reference else None
    if desk is not None and await get_ban(session, customer.id) is None:
        await open_ticket(
            session,
            desk,
            customer,
            source=SOURCE_CARE,
            category="other",
            subject=PROBLEM_SUBJECT,
            now=now,
            order_id=order.id if order else None,
            order_ref=order.external_id if order else None,
        )
    return Reply(desk.answer_promise("care_problem") if desk else "care_problem", language)
