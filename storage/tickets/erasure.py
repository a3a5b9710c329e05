"""``/forget`` on the desk: what the customer's tickets said, erased; the tickets stay."""

from __future__ import annotations

from sqlalchemy import case, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Ticket, TicketMessage
from storage.tickets.drafts import delete_draft
from storage.tickets.messages import IN


async def erase_customer_tickets(session: AsyncSession, customer_id: int) -> list[Ticket]:
    """``/forget`` on the desk: every text of the customer's tickets (theirs, and the staff's
    replies and notes, which may quote them), who wrote theirs, their files, the tickets'
    subject, order reference and topic title, and their complaint draft. The tickets stay,
    anonymous, for the statistics; they are returned, for their deliveries and topics."""
    mine = select(Ticket.id).where(Ticket.customer_id == customer_id).scalar_subquery()
    theirs = TicketMessage.direction == IN
    await session.execute(
        update(TicketMessage)
        .where(TicketMessage.ticket_id.in_(mine))
        .values(
            text=None,
            html=None,
            media_file_id=None,
            author_user_id=case((theirs, None), else_=TicketMessage.author_user_id),
            author_name=case((theirs, None), else_=TicketMessage.author_name),
        )
    )
    await session.execute(
        update(Ticket)
        .where(Ticket.customer_id == customer_id)
        .values(subject=None, order_ref=None, topic_title=None)
    )
    await delete_draft(session, customer_id)
    result = await session.execute(
        select(Ticket)
        .where(Ticket.customer_id == customer_id)
        .order_by(Ticket.id)
        .execution_options(populate_existing=True)
    )
    return list(result.scalars())
