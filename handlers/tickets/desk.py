"""The ticket desk's vocabulary: what it needs from the configuration (``Desk``), messages and
staff as plain values, the outbox kinds, delivery actions and callback prefixes it uses, and
the labels staff read (categories, statuses, priorities, tiers, topic titles)."""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Self
from zoneinfo import ZoneInfo

from bot.kernel.config import PRIORITIES, Config, TicketConfig, readable_name
from bot.kernel.hours import BusinessHours
from bot.kernel.texts import Markup, Texts
from storage.models import Customer, Ticket
from storage.staff_group import MAIN
from storage.tickets.statuses import WAITING
from storage.tiers.spec import STAGES

logger = logging.getLogger(__name__)

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


CARD_EDIT = "card_edit"
"""The card at the top of the topic edited to show the ticket as it is now."""


SUMMARY = "summary"


TEXT = "text"


COPY = "copy"


ALBUM = "album"


EDIT = "edit"


NOTICE = "notice"


CANNED = "canned"


TOPIC_ACTIONS = (TITLE, CLOSE_TOPIC, REOPEN_TOPIC, CARD_EDIT)
"""What only makes sense in the topic that exists: without it there is nothing to do (a new
topic gets a new card)."""


SOURCE_COMPLAINT = "complaint"


SOURCE_QUESTION = "question"


SOURCE_FOLLOW_UP = "follow_up"


SOURCE_CARE = "care"
"""A care message's "something is wrong" button (a follow-up visit, 回访)."""


MAIN_GROUP = MAIN
"""The group a bare ``/setup`` sets up; tickets no routing rule sends elsewhere go there."""


@dataclass
class StaffGroup:
    """Which groups are the staff desk, as this process knows them (the desk, the inbox and the
    staff handlers share one): ``main`` (``chat_id``) is ``CAREBOT_STAFF_CHAT_ID`` (``fixed``)
    or what ``/setup`` stored; the other named groups (``others``) are what ``/setup <name>``
    stored. The process that ran ``/setup`` sets them at once and every process re-reads them
    every ``STAFF_GROUP_REFRESH`` (``scheduler.staff_group``). None: no main group yet."""

    chat_id: int | None = None
    fixed: bool = False
    others: dict[str, int] = field(default_factory=dict)
    warned: set[str] = field(default_factory=set)
    """Routed-to groups not set up yet, already logged (one WARNING each)."""

    @classmethod
    def from_setting(cls, staff_chat_id: int | None) -> StaffGroup:
        """The group ``CAREBOT_STAFF_CHAT_ID`` fixes, or (None) one ``/setup`` will set."""
        return cls(staff_chat_id, fixed=staff_chat_id is not None)

    @property
    def chats(self) -> dict[str, int]:
        """Every group known: name → chat id (``main`` first)."""
        main = {MAIN: self.chat_id} if self.chat_id is not None else {}
        return {**main, **self.others}

    def chat_of(self, name: str) -> int | None:
        return self.chat_id if name == MAIN else self.others.get(name)

    def name_of(self, chat_id: int) -> str | None:
        """The name of the staff group ``chat_id`` is (None: none)."""
        return next((name for name, chat in self.chats.items() if chat == chat_id), None)

    def load(self, stored: dict[str, int]) -> None:
        """Take the stored groups (``main`` stays the setting's when it fixes it)."""
        if not self.fixed:
            self.chat_id = stored.get(MAIN)
        self.others = {
            name: chat for name, chat in stored.items() if name != MAIN and chat != self.chat_id
        }

    def set(self, name: str, chat_id: int) -> None:
        """``/setup`` in this process made ``chat_id`` the group ``name``."""
        if name == MAIN:
            if not self.fixed:
                self.chat_id = chat_id
            return
        self.others[name] = chat_id


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
    tier_names: dict[str, str] = field(default_factory=dict)
    """Each tier's display name in the staff's language (``tiers.toml``)."""
    dimension_names: dict[str, str] = field(default_factory=dict)
    """Each survey dimension's display name in the staff's language (``surveys/settings.toml``)."""
    hours: BusinessHours = field(default_factory=BusinessHours)
    """The desk's business hours (``tickets.toml`` ``[hours]``): SLA clocks run only then."""
    group_hours: dict[str, BusinessHours] = field(default_factory=dict)
    """The groups with hours of their own (``[groups.<name>.hours]``), by name."""
    duty_hours: dict[tuple[int, str], BusinessHours] = field(default_factory=dict)
    """Staff members' duty hours (``[[staff]]`` ``hours``) by (member, group), made on first use
    in that group's time zone."""
    customer_zone: str = "Asia/Shanghai"
    """The time zone of a customer who has none of their own (``customers.toml``)."""
    points: bool = False
    """Whether the shop has a points programme (``loyalty.toml``): the card shows the balance."""
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
        language = rules.tickets.relay.staff_language
        return cls(
            rules=rules.tickets,
            texts=texts,
            group=staff_group,
            currency=rules.tiers.orders.currency,
            zone=rules.tiers.orders.timezone,
            tier_names={tier.name: tier.label(language) for tier in rules.tiers.tiers},
            dimension_names={
                name: rules.surveys.dimension_label(name, language) or readable_name(name)
                for name in rules.surveys.dimensions
            },
            hours=rules.tickets.hours.calendar(),
            group_hours={
                name: group.hours.calendar()
                for name, group in rules.tickets.groups.items()
                if group.hours is not None
            },
            customer_zone=rules.general.customers.default_timezone,
            points=rules.loyalty.enabled,
            lane_window=LANE_WINDOW if rules.outbox.dispatch.exclusive else 1,
        )

    @property
    def staff_chat_id(self) -> int | None:
        """The staff group's chat id as this process knows it now (None: not connected)."""
        return self.group.chat_id

    def topic_chat(self, ticket: Ticket) -> int | None:
        """The chat of the ticket's topic: where it is, or (none yet) its group's (None: that
        group is not set up yet, the topic waits)."""
        if ticket.topic_thread_id is not None and ticket.staff_chat_id is not None:
            return ticket.staff_chat_id
        return self.group.chat_of(ticket.staff_group)

    def hours_of(self, group: str) -> BusinessHours:
        """The business hours of the group ``group``'s tickets: its own, else the desk's."""
        return self.group_hours.get(group, self.hours)

    def group_zone(self, group: str) -> ZoneInfo:
        """The time zone of the group ``group``'s hours (its staff's duty hours are in it)."""
        return ZoneInfo(self.rules.hours_of(group).timezone)

    def duty_hours_of(self, user_id: int, group: str) -> BusinessHours | None:
        """The member's duty hours in ``group``'s time zone (None: none in the rule file)."""
        member = self.rules.member(user_id)
        if member is None or member.hours is None:
            return None
        key = (user_id, group)
        if key not in self.duty_hours:
            self.duty_hours[key] = member.hours.calendar(self.rules.hours_of(group).timezone)
        return self.duty_hours[key]

    def route(self, *, category: str, language: str, tier: str, source: str) -> str:
        """The group a new ticket goes to: the first matching ``[[routing]]`` rule's, or
        ``main``; a group not set up yet falls back to ``main`` (one WARNING per group)."""
        name = self.rules.route(category=category, language=language, tier=tier, source=source)
        if name == MAIN or self.group.chat_of(name) is not None:
            return name
        if name not in self.group.warned:
            self.group.warned.add(name)
            logger.warning(
                "tickets routed to staff group %r go to %r: %r is not set up yet "
                "(send /setup %s in it)",
                name,
                MAIN,
                name,
                name,
            )
        return MAIN

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

    def when(self, moment: datetime | None, group: str | None = None) -> str:
        """A moment as staff read it, to the minute: in shop time, or in the time zone of
        ``group``'s own business hours when it has some (its staff work by that clock)."""
        if moment is None:
            return "—"
        zone = self.zone
        if group is not None and group in self.group_hours:
            zone = self.rules.hours_of(group).timezone
        return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


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


def card_status_label(desk: Desk, status: str) -> str:
    """The card's status: both waiting statuses read "in conversation", so the card stays true
    through a lively conversation without an edit per message (the topic's title, renamed after
    a pause, tells who owes the next word)."""
    if status in WAITING:
        return desk.staff_text("ticket_status_in_conversation")
    return status_label(desk, status)


def priority_label(desk: Desk, priority: int) -> str:
    return desk.staff_text(f"ticket_priority_{PRIORITIES[max(0, min(priority, 3))]}")


def tier_label(desk: Desk, tier: str) -> str:
    return desk.tier_names.get(tier) or readable_name(tier)


def stage_label(desk: Desk, stage: str | None) -> str:
    """A lifecycle stage as staff read it ("at risk", "有流失风险"); "—" when not computed yet."""
    if stage is None:
        return "—"
    return desk.staff_text(f"customer_stage_{stage}") if stage in STAGES else readable_name(stage)


def dimension_label(desk: Desk, dimension: str | None) -> str:
    if not dimension:
        return ""
    return desk.dimension_names.get(dimension) or readable_name(dimension)


def topic_title(desk: Desk, ticket: Ticket, customer: Customer | None) -> str:
    """Ticket number, tier, status and customer, as the topic is named (at most 128); only the
    number once the customer has erased their data (``/forget``)."""
    if customer is not None and customer.erased_at is not None:
        return ticket.number
    name = (customer.name if customer else None) or desk.staff_text("ticket_anonymous")
    title = desk.staff_text(
        "ticket_topic_title",
        number=ticket.number,
        tier=tier_label(desk, ticket.tier),
        status=status_label(desk, ticket.status),
        name=Markup(name),
    )
    return title[:TOPIC_TITLE_LIMIT]
