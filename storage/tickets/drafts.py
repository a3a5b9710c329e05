"""Complaint drafts: the complaint flow's conversation, one per customer, kept across restarts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ComplaintDraft, Customer


async def get_draft(session: AsyncSession, customer_id: int) -> ComplaintDraft | None:
    result = await session.execute(
        select(ComplaintDraft)
        .where(ComplaintDraft.customer_id == customer_id)
        .execution_options(populate_existing=True)
    )
    return result.scalar_one_or_none()


async def start_draft(
    session: AsyncSession, customer_id: int, step: str, now: datetime
) -> ComplaintDraft:
    """A fresh draft at ``step`` (an earlier one of the customer is replaced)."""
    await delete_draft(session, customer_id)
    draft = ComplaintDraft(
        customer_id=customer_id, step=step, items=[], started_at=now, updated_at=now
    )
    session.add(draft)
    await session.flush()
    return draft


async def delete_draft(session: AsyncSession, customer_id: int) -> bool:
    result = await session.execute(
        delete(ComplaintDraft).where(ComplaintDraft.customer_id == customer_id)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def draft_steps(session: AsyncSession) -> list[tuple[int, int, str]]:
    """(chat id, Telegram user id, step) of every draft: the conversations to resume."""
    result = await session.execute(
        select(Customer.chat_id, Customer.telegram_user_id, ComplaintDraft.step)
        .join(Customer, Customer.id == ComplaintDraft.customer_id)
        .where(Customer.chat_id.is_not(None), Customer.telegram_user_id.is_not(None))
    )
    return [(int(chat or 0), int(user or 0), str(step)) for chat, user, step in result]


async def remember_prompt(
    session: AsyncSession, telegram_user_id: int, message_id: int | None
) -> None:
    """The flow's latest message with step buttons in the customer's chat (None: none now);
    nothing when the draft is gone (the flow ended)."""
    await session.execute(
        update(ComplaintDraft)
        .where(
            ComplaintDraft.customer_id
            == select(Customer.id)
            .where(Customer.telegram_user_id == telegram_user_id)
            .scalar_subquery()
        )
        .values(prompt_message_id=message_id)
    )
