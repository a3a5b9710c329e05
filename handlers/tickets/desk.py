"""The ticket desk's vocabulary: what it needs from the configuration (``Desk``), messages and
staff as plain values, the outbox kinds, delivery actions and callback prefixes it uses, and
the labels staff read (categories, statuses, priorities, tiers, topic titles)."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Self
from zoneinfo import ZoneInfo

from bot.kernel.config import PRIORITIES, Config, TicketConfig
from bot.kernel.texts import Markup, Texts
from storage.models import Customer, Ticket

KIND_TOPIC = "ticket.topic"


KIND_CUSTOMER = "ticket.reply"


KIND_ESCALATION = "ticket.escalation"


OUTBOX_KINDS = (KIND_TOPIC, KIND_CUSTOMER)
"""Outbox kinds whose results come back through ``DeliveryHooks``."""


MAX_TRIES = 5


LANE_WINDOW = 10
"""Deliveries of one lane in the outbox at once (``handlers.tickets.lanes.pump``). More than one
only with one dispatcher per database (``outbox.dispatch.exclusive``): it sends a chat's rows one
at a time in the order they were queued, which is what keeps the lane in order. Ten matches the
rows of one chat a claim holds (``scheduler.dispatcher.claims.HELD_PER_CHAT``)."""


CREATE_RETRY_AFTER = timedelta(minutes=5)


STRANDED_AFTER = timedelta(minutes=1)


BAN_NOTICE_EVERY = timedelta(hours=24)


SUMMARY_TEXT = 120


TOPIC_TITLE_LIMIT = 128


# Callback data: staff buttons tk:<ticket>:<action>[:<arg>], the customer's tr:<ticket>:yes|no.
CB_TICKET = "tk:"


CB_RESOLUTION = "tr:"


# Delivery actions.
CREATE_TOPIC = "create_topic"


TITLE = "title"


CLOSE_TOPIC = "close_topic"


REOPEN_TOPIC = "reopen_topic"


CARD = "card"


SUMMARY = "summary"


TEXT = "text"


COPY = "copy"


ALBUM = "album"


EDIT = "edit"


NOTICE = "notice"


CANNED = "canned"


TOPIC_ACTIONS = (TITLE, CLOSE_TOPIC, REOPEN_TOPIC)


SOURCE_COMPLAINT = "complaint"


SOURCE_QUESTION = "question"


SOURCE_FOLLOW_UP = "follow_up"


@dataclass
class StaffGroup:
    """Which group is the staff desk, as this process knows it (the desk, the inbox and the
    staff handlers share one): ``CAREBOT_STAFF_CHAT_ID`` (``fixed``), or what ``/setup``
    stored, which the process that ran it sets at once and every process re-reads every
    ``STAFF_GROUP_REFRESH`` (``scheduler.staff_group``). None: no staff group yet."""

    chat_id: int | None = None
    fixed: bool = False

    @classmethod
    def from_setting(cls, staff_chat_id: int | None) -> StaffGroup:
        """The group ``CAREBOT_STAFF_CHAT_ID`` fixes, or (None) one ``/setup`` will set."""
        return cls(staff_chat_id, fixed=staff_chat_id is not None)


STAFF_GROUP_REFRESH = timedelta(seconds=10)
"""How often a process re-reads the stored staff group (another one may have run /setup)."""


WAITING_FOR_DESK = {
    key: f"{key}_no_desk"
    for key in (
        "complaint_opened",
        "kb_handoff_requested",
        "kb_complaint_requested",
        "care_problem",
        "ticket_follow_up_opened",
        "survey_thanks_recovery",
    )
}
"""Texts promising a customer that a person will answer, and what they say instead while no
staff group is connected (the ticket waits for it)."""


@dataclass(frozen=True)
class Desk:
    """What the desk needs from the configuration, built once by the composition root."""

    rules: TicketConfig
    texts: Texts
    group: StaffGroup = field(default_factory=StaffGroup)
    currency: str = "CNY"
    zone: str = "Asia/Shanghai"
    lane_window: int = LANE_WINDOW
    """Deliveries of a lane in the outbox at once (1 when several dispatchers may run)."""

    @classmethod
    def from_config(
        cls, rules: Config, texts: Texts, staff_group: StaffGroup | int | None
    ) -> Self:
        """``staff_group``: the one the process shares, or the setting's chat id (None:
        none until ``/setup``)."""
        if not isinstance(staff_group, StaffGroup):
            staff_group = StaffGroup.from_setting(staff_group)
        return cls(
            rules=rules.tickets,
            texts=texts,
            group=staff_group,
            currency=rules.tiers.orders.currency,
            zone=rules.tiers.orders.timezone,
            lane_window=LANE_WINDOW if rules.outbox.dispatch.exclusive else 1,
        )

    @property
    def staff_chat_id(self) -> int | None:
        """The staff group's chat id as this process knows it now (None: not connected)."""
        return self.group.chat_id

    def answer_promise(self, key: str) -> str:
        """``key`` (a text telling the customer a person will answer), or while no staff group
        is connected the text saying a person will answer once it is."""
        return key if self.staff_chat_id is not None else WAITING_FOR_DESK.get(key, key)

    @property
    def staff_language(self) -> str:
        return self.rules.relay.staff_language

    def staff_text(self, key: str, **params: Any) -> str:
        """A text for the staff group, in its language."""
        return self.texts.render(self.staff_language, key, **params)

    def when(self, moment: datetime | None) -> str:
        """A moment as staff read it: shop time, minutes."""
        if moment is None:
            return "—"
        return moment.astimezone(ZoneInfo(self.zone)).strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class Incoming:
    """A message someone sent (a customer in private, staff in a topic), as plain values."""

    chat_id: int
    message_id: int
    kind: str
    text: str | None = None
    html: str | None = None
    media_group_id: str | None = None
    file_id: str | None = None


@dataclass(frozen=True)
class Staff:
    """A staff member acting in the group."""

    user_id: int
    name: str
    username: str | None = None

    @property
    def mention(self) -> str:
        return f'<a href="tg://user?id={self.user_id}">{html.escape(self.name)}</a>'


@dataclass(frozen=True)
class StaffReply:
    """What the bot answers staff in the topic (already in the staff language): a message, or a
    toast for a pressed button; ``replace`` edits the message whose button was pressed."""

    text: str
    buttons: list[list[tuple[str, str]]] = field(default_factory=list)
    alert: bool = False
    replace: bool = False


def category_label(desk: Desk, code: str, language: str) -> str:
    category = desk.rules.category(code)
    if category is not None:
        return category.label(language)
    if code == SOURCE_QUESTION:
        return desk.texts.render(language, "ticket_category_question")
    return code


def status_label(desk: Desk, status: str) -> str:
    return desk.staff_text(f"ticket_status_{status}")


def priority_label(desk: Desk, priority: int) -> str:
    return desk.staff_text(f"ticket_priority_{PRIORITIES[max(0, min(priority, 3))]}")


def tier_label(tier: str) -> str:
    return tier.upper() if len(tier) <= 4 else tier.capitalize()


def topic_title(desk: Desk, ticket: Ticket, customer: Customer | None) -> str:
    """Ticket number, tier, status and customer, as the topic is named (at most 128); only the
    number once the customer has erased their data (``/forget``)."""
    if customer is not None and customer.erased_at is not None:
        return ticket.number
    name = (customer.name if customer else None) or desk.staff_text("ticket_anonymous")
    title = desk.staff_text(
        "ticket_topic_title",
        number=ticket.number,
        tier=tier_label(ticket.tier),
        status=status_label(desk, ticket.status),
        name=Markup(name),
    )
    return title[:TOPIC_TITLE_LIMIT]
