"""What surveys need of the ticket desk, as a protocol: the staff group's language and texts,
the ticket categories, and opening a recovery ticket. The desk
(``handlers.tickets.lifecycle.TicketDesk``) is one; surveys never import the handlers, which
import surveys (a survey's free-text answer comes through the customer's chat)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from bot.kernel.config import TicketConfig
from storage.models import Customer


class Desk(Protocol):
    """The ticket desk as surveys see it."""

    @property
    def rules(self) -> TicketConfig: ...

    @property
    def staff_language(self) -> str: ...

    def staff_text(self, key: str, **params: Any) -> str: ...

    def answer_promise(self, key: str) -> str:
        """The text key telling a customer a person will answer (another while no staff group
        is connected)."""
        ...

    async def open_recovery_ticket(
        self,
        session: AsyncSession,
        customer: Customer,
        *,
        source: str,
        category: str,
        subject: str,
        text: str,
        now: datetime,
    ) -> int:
        """Open (or find) the customer's ticket and post ``text`` (HTML) in its topic; its id."""
        ...
