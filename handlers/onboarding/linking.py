"""Linking a Telegram account to the customer the shop imported: plain rules, no Telegram.

Customers imported from the shop's CSV (with their orders) are usually not on Telegram yet.
Two ways link them, both ending in the same merge (``merge``):

* **link code** (works for everybody): every imported customer gets a one-time code; the shop
  sends them the deep link ``https://t.me/<bot>?start=<code>`` (``carebot import link-codes``
  writes the list). ``/start <code>`` links them and uses the code up.
* **phone** (automatic): when a customer shares their own number with the contact button
  (Telegram vouches that it is theirs), the imported customer with that number and no Telegram
  account yet is linked - only when exactly one matches.

The imported row is kept (orders, RFM, tier history point at it); the row ``/start`` created
is folded into it and deleted.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from storage import linking as link_queries
from storage.models import Customer

LINK_CODE = re.compile(r"^[A-Z2-7]{12}$")

LINKED = "link_done"
UNKNOWN_CODE = "link_code_unknown"
ALREADY_LINKED = "link_already"


async def merge(
    session: AsyncSession, imported: Customer, registered: Customer, now: datetime
) -> Customer:
    """Fold the row ``/start`` registered into the imported one and return the imported one.

    What Telegram or the customer told us in the chat wins (their account, language, consent,
    a verified phone, the birthday they typed); what only the shop knows stays (name when
    Telegram gave none, time zone, country, tier, stage, orders).
    """
    telegram_user_id, chat_id = registered.telegram_user_id, registered.chat_id
    await link_queries.release_telegram_identity(session, registered)
    imported.telegram_user_id = telegram_user_id
    imported.chat_id = chat_id
    imported.username = registered.username
    imported.name = imported.name or registered.name
    imported.language = registered.language
    imported.language_chosen = registered.language_chosen
    imported.consent = registered.consent
    imported.consent_answered = registered.consent_answered
    imported.reachable = registered.reachable
    imported.awaiting = registered.awaiting
    imported.phone = registered.phone or imported.phone
    if registered.birth_month and registered.birth_day:
        imported.birth_year = registered.birth_year
        imported.birth_month = registered.birth_month
        imported.birth_day = registered.birth_day
        imported.birthday_lunar = registered.birthday_lunar
    imported.created_at = min(imported.created_at, registered.created_at)
    imported.updated_at = now
    imported.link_code = None
    await session.flush()
    await link_queries.move_dependents(session, imported.id, registered.id)
    await link_queries.delete_customer(session, registered)
    return imported


async def link_by_code(
    session: AsyncSession, customer: Customer, payload: str, now: datetime
) -> tuple[Customer, str | None]:
    """``/start <payload>``: link when the payload is a link code.

    Returns the customer to go on with and the catalogue key to answer with (None: the payload
    is not a link code, so ``/start`` goes on as usual).
    """
    code = payload.strip().upper()
    if not LINK_CODE.match(code):
        return customer, None
    imported = await link_queries.find_by_link_code(session, code)
    if imported is None:
        return customer, UNKNOWN_CODE
    if customer.external_id is not None:
        # This Telegram account already is a shop customer: two shop records are not merged
        # automatically (staff can, knowing which is right).
        return customer, ALREADY_LINKED
    return await merge(session, imported, customer, now), LINKED


async def link_by_phone(
    session: AsyncSession, customer: Customer, now: datetime
) -> tuple[Customer, bool]:
    """After a verified phone was saved: link the one imported customer with that number."""
    if customer.external_id is not None or not customer.phone:
        return customer, False
    matches = await link_queries.find_by_phone(session, customer.phone)
    if len(matches) != 1:
        return customer, False
    return await merge(session, matches[0], customer, now), True
