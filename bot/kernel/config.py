"""Business rules an operator edits: TOML files in ``CAREBOT_CONFIG_DIR``, validated at start-up.

Each file maps onto a pydantic model; an error names the file, the key and what was expected.
Later features add their own files (care plans, SLAs, surveys, knowledge base) beside these.
"""

from __future__ import annotations

import itertools
import re
from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bot.kernel.campaign_config import Campaign, load_campaigns
from bot.kernel.care_config import CareConfig
from bot.kernel.files import ConfigError, known, load_config_file
from bot.kernel.hours import DutyHoursConfig, GroupHoursConfig, HoursConfig
from bot.kernel.loyalty_config import DISABLED, LoyaltyConfig
from bot.kernel.recommend_config import RecommendConfig
from bot.kernel.survey_config import SurveyConfig, load_surveys
from bot.kernel.texts import LANGUAGES


def is_time_zone(name: str) -> bool:
    """Whether ``name`` is an IANA time zone this machine knows (``Asia/Shanghai``)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CustomerConfig(StrictModel):
    default_timezone: str = "Asia/Shanghai"
    default_country: str = Field(default="CN", pattern=r"^[A-Z]{2}$")
    default_language: str = "en"

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if not is_time_zone(value):
            raise ValueError("expected an IANA time zone such as Asia/Shanghai")
        return value

    @field_validator("default_language")
    @classmethod
    def _known_language(cls, value: str) -> str:
        if value not in LANGUAGES:
            raise ValueError(f"expected one of {', '.join(LANGUAGES)}")
        return value


class ChatConfig(StrictModel):
    max_text_length: int = Field(default=4000, ge=1, le=100_000)


class GeneralConfig(StrictModel):
    """``customers.toml``: defaults for new customers and limits on what they send."""

    customers: CustomerConfig = CustomerConfig()
    chat: ChatConfig = ChatConfig()


class QuietHoursConfig(StrictModel):
    """No proactive message between ``start`` and ``end``, in the customer's local time."""

    enabled: bool = True
    start: time = time(21, 0)
    end: time = time(9, 0)

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHoursConfig:
        if self.enabled and self.start == self.end:
            raise ValueError("start and end are equal: set enabled = false instead")
        return self


class CareCapConfig(StrictModel):
    max_per_day: int = Field(default=1, ge=1, le=24)


class LimitConfig(StrictModel):
    # Telegram allows 30/s overall, 1/s per private chat and 20/min per group; raise these only
    # against a local test server.
    per_second: int = Field(default=30, ge=1, le=10_000)
    per_private_chat_second: int = Field(default=1, ge=1, le=10_000)
    per_group_minute: int = Field(default=20, ge=1, le=10_000)


class RetryConfig(StrictModel):
    max_attempts: int = Field(default=5, ge=1, le=100)
    backoff_base_seconds: float = Field(default=2.0, gt=0, le=3600)
    backoff_max_seconds: float = Field(default=600.0, gt=0, le=86_400)


class DispatchConfig(StrictModel):
    batch_size: int = Field(default=50, ge=1, le=1000)
    concurrency: int = Field(default=4, ge=1, le=64)
    lease_seconds: float = Field(default=120.0, ge=1, le=3600)
    poll_seconds: float = Field(default=1.0, gt=0, le=60)
    exclusive: bool = True
    keep_sent_days: int = Field(default=90, ge=1, le=3650)


class InboxConfig(StrictModel):
    max_attempts: int = Field(default=5, ge=1, le=100)
    retry_seconds: float = Field(default=1.0, gt=0, le=3600)
    batch_size: int = Field(default=100, ge=1, le=1000)
    sweep_seconds: float = Field(default=10.0, gt=0, le=3600)


class OutboxConfig(StrictModel):
    """``outbox.toml``: when proactive messages may go out and how the dispatcher sends; and
    how what arrives is handled from the inbox."""

    quiet_hours: QuietHoursConfig = QuietHoursConfig()
    care: CareCapConfig = CareCapConfig()
    limits: LimitConfig = LimitConfig()
    retry: RetryConfig = RetryConfig()
    dispatch: DispatchConfig = DispatchConfig()
    inbox: InboxConfig = InboxConfig()


# --- tiers.toml: RFM scores, tiers, lifecycle stages, churn signals ---

TIER_NAME = r"^[a-z][a-z0-9_]{0,31}$"
CONDITION_FIELDS = ("r_score", "f_score", "m_score", "recency_days", "frequency", "monetary")
CONDITION_OPS = (">=", "<=", "==", ">", "<")
_CONDITION = re.compile(r"^\s*([a-z_]+)\s*(>=|<=|==|>|<)\s*(\d+(?:\.\d{1,2})?)\s*$")
_CONDITION_EXPECTED = (
    f"expected '<field> <op> <number>' with field one of {', '.join(CONDITION_FIELDS)} "
    f"and op one of {', '.join(CONDITION_OPS)}, e.g. 'm_score >= 4'"
)


class TierCondition(StrictModel):
    """One condition of a tier rule, written in the file as ``"m_score >= 4"``."""

    field: str
    op: str
    value: Decimal

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data: object) -> object:
        if not isinstance(data, str):
            raise ValueError(_CONDITION_EXPECTED)
        match = _CONDITION.match(data)
        if match is None or match[1] not in CONDITION_FIELDS:
            raise ValueError(_CONDITION_EXPECTED)
        field, op, value = match[1], match[2], Decimal(match[3])
        if field != "monetary" and value != value.to_integral_value():
            raise ValueError(f"expected a whole number for {field}")
        if field.endswith("_score") and not 1 <= value <= 5:
            raise ValueError(f"expected a score between 1 and 5 for {field}")
        return {"field": field, "op": op, "value": value}

    def __str__(self) -> str:
        return f"{self.field} {self.op} {self.value}"


class TierRule(StrictModel):
    """A tier: it applies when every condition of any one list in ``when`` holds."""

    name: str = Field(pattern=TIER_NAME)
    # What staff read (the dashboard): the tier's display name in each language; without
    # them, the name itself ("vip" -> "VIP", "important" -> "Important").
    en: str | None = Field(default=None, min_length=1, max_length=40)
    zh: str | None = Field(default=None, min_length=1, max_length=40)
    when: list[list[TierCondition]] = []
    # Days without an order after which a customer of this tier is at risk, when their own
    # median gap between orders is not known yet (fewer than stages.own_gap_min_orders orders).
    at_risk_days: int = Field(default=90, ge=1, le=3650)

    @field_validator("when")
    @classmethod
    def _no_empty_alternative(cls, value: list[list[TierCondition]]) -> list[list[TierCondition]]:
        if any(not conditions for conditions in value):
            raise ValueError("expected at least one condition in each list")
        return value

    def label(self, language: str) -> str:
        """The display name in ``language`` (``en``/``zh``), else the name made readable."""
        own = self.zh if language == "zh" else self.en
        return own or readable_name(self.name)


def readable_name(name: str) -> str:
    """A rule file's identifier as a person reads it when it has no display name: short ones
    in capitals ("vip" -> "VIP"), others capitalised with spaces ("at_risk" -> "At risk")."""
    return name.upper() if len(name) <= 4 else name.replace("_", " ").capitalize()


class FixedThresholds(StrictModel):
    """The smallest value that earns scores 2, 3, 4 and 5 (``scores.method = "fixed"``)."""

    recency_days: list[int] = [365, 180, 90, 30]
    frequency: list[int] = [2, 3, 5, 10]
    monetary: list[Decimal] = [Decimal(500), Decimal(1500), Decimal(5000), Decimal(15000)]

    @field_validator("recency_days")
    @classmethod
    def _falling(cls, value: list[int]) -> list[int]:
        if len(value) != 4 or any(a <= b for a, b in itertools.pairwise(value)) or value[-1] < 0:
            raise ValueError("expected 4 day counts, largest first, e.g. [365, 180, 90, 30]")
        return value

    @field_validator("frequency", "monetary")
    @classmethod
    def _rising(cls, value: list[Any]) -> list[Any]:
        if len(value) != 4 or any(a >= b for a, b in itertools.pairwise(value)) or value[0] < 0:
            raise ValueError("expected 4 numbers, smallest first, e.g. [2, 3, 5, 10]")
        return value


class ScoreConfig(StrictModel):
    method: Literal["quintile", "fixed"] = "quintile"
    window_days: int = Field(default=365, ge=1, le=3650)
    fixed: FixedThresholds = FixedThresholds()


class StageConfig(StrictModel):
    new_days: int = Field(default=30, ge=1, le=3650)
    churned_days: int = Field(default=365, ge=2, le=3650)
    at_risk_factor: float = Field(default=1.5, ge=1.0, le=100.0)
    own_gap_min_orders: int = Field(default=3, ge=2, le=1000)
    at_risk_min_days: int = Field(default=7, ge=0, le=3650)

    @model_validator(mode="after")
    def _ordered(self) -> StageConfig:
        if self.churned_days <= self.new_days:
            raise ValueError("expected churned_days to be larger than new_days")
        return self


class ChurnConfig(StrictModel):
    period_days: int = Field(default=90, ge=1, le=1825)
    drop_percent: int = Field(default=50, ge=1, le=100)
    min_orders: int = Field(default=2, ge=1, le=100_000)
    min_spend: Decimal = Field(default=Decimal(300), ge=0)


class OrderConfig(StrictModel):
    """How the orders file is read."""

    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    timezone: str = "Asia/Shanghai"
    calling_code: str = Field(default="86", pattern=r"^[1-9][0-9]{0,2}$")
    rates: dict[str, Decimal] = {}

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if not is_time_zone(value):
            raise ValueError("expected an IANA time zone such as Asia/Shanghai")
        return value

    @field_validator("rates")
    @classmethod
    def _rates(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for code, rate in value.items():
            if not re.fullmatch(r"[A-Z]{3}", code) or rate <= 0:
                raise ValueError(f"{code}: expected a 3-letter code and a rate above 0")
        return value


class TierScheduleConfig(StrictModel):
    # The nightly full run (new quintile boundaries, every customer) at this shop-local time.
    full_at: time = time(3, 0)
    # Customers whose orders changed are recomputed this often (minutes).
    incremental_minutes: int = Field(default=10, ge=1, le=1440)


class TierConfig(StrictModel):
    """``tiers.toml``: how orders become RFM scores, a tier, a lifecycle stage, churn signals."""

    orders: OrderConfig = OrderConfig()
    scores: ScoreConfig = ScoreConfig()
    stages: StageConfig = StageConfig()
    churn: ChurnConfig = ChurnConfig()
    schedule: TierScheduleConfig = TierScheduleConfig()
    tiers: list[TierRule] = [
        TierRule.model_validate({"name": "vip", "at_risk_days": 60, "when": [["m_score >= 5"]]}),
        TierRule.model_validate({"name": "normal", "at_risk_days": 180}),
    ]

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, value: list[TierRule]) -> list[TierRule]:
        names = [tier.name for tier in value]
        if not value:
            raise ValueError("expected at least one tier")
        if len(set(names)) != len(names):
            raise ValueError(f"expected distinct tier names, got {', '.join(names)}")
        if value[-1].when:
            raise ValueError("expected the last tier to be the default: no `when`")
        for tier in value[:-1]:
            if not tier.when:
                raise ValueError(f"{tier.name}: expected `when` (only the last tier has none)")
        return value

    @property
    def default_tier(self) -> str:
        return self.tiers[-1].name


# --- tickets.toml: complaint categories, priorities, SLAs by tier, the staff desk ---

PRIORITIES = ("low", "normal", "high", "urgent")
CODE = r"^[a-z][a-z0-9_]{0,31}$"
TicketPriority = Literal["low", "normal", "high", "urgent"]


class TicketNumberConfig(StrictModel):
    """Human ticket numbers: a prefix per kind of ticket and a zero-padded counter."""

    complaint: str = Field(default="C", pattern=r"^[A-Z]{1,3}$")
    question: str = Field(default="Q", pattern=r"^[A-Z]{1,3}$")
    digits: int = Field(default=6, ge=3, le=12)


class TicketCategory(StrictModel):
    """A complaint category: a button in the flow, labelled in both languages."""

    code: str = Field(pattern=CODE)
    zh: str = Field(min_length=1, max_length=40)
    en: str = Field(min_length=1, max_length=40)
    priority: TicketPriority = "normal"

    def label(self, language: str) -> str:
        return self.zh if language == "zh" else self.en


class TicketPriorityConfig(StrictModel):
    """A ticket's priority is the higher of its tier's and its category's."""

    tiers: dict[str, TicketPriority] = {"vip": "high", "important": "normal", "normal": "low"}
    default: TicketPriority = "normal"


class SlaTarget(StrictModel):
    first_response_minutes: int = Field(ge=1, le=60 * 24 * 30)
    resolution_hours: int = Field(ge=1, le=24 * 365)


class SlaConfig(StrictModel):
    """Deadlines from the customer's tier (VIP shorter); a reminder goes into the ticket's
    topic ``remind_before_minutes`` before a deadline, an escalation into the General topic
    when it passes."""

    remind_before_minutes: int = Field(default=10, ge=0, le=60 * 24)
    fallback_tier: str = "normal"
    check_seconds: int = Field(default=60, ge=5, le=3600)
    tiers: dict[str, SlaTarget] = {
        "vip": SlaTarget(first_response_minutes=15, resolution_hours=8),
        "important": SlaTarget(first_response_minutes=30, resolution_hours=24),
        "normal": SlaTarget(first_response_minutes=60, resolution_hours=48),
    }

    @model_validator(mode="after")
    def _fallback_known(self) -> SlaConfig:
        if self.fallback_tier not in self.tiers:
            raise ValueError(
                f"fallback_tier {self.fallback_tier!r} has no entry in sla.tiers "
                f"(known: {', '.join(self.tiers) or 'none'})"
            )
        return self

    def target(self, tier: str) -> SlaTarget:
        return self.tiers.get(tier) or self.tiers[self.fallback_tier]


class ComplaintFlowConfig(StrictModel):
    max_description_items: int = Field(default=20, ge=1, le=100)
    recent_orders: int = Field(default=5, ge=0, le=10)


class ReopenConfig(StrictModel):
    """What a customer's message does after their ticket was closed."""

    # Within this many hours of closing, the closed ticket is reopened.
    window_hours: int = Field(default=72, ge=0, le=24 * 365)
    # After that and up to this many days after closing, a new ticket is opened; later the
    # message is answered like any other (knowledge base). 0: never open one this way.
    follow_up_days: int = Field(default=14, ge=0, le=3650)
    # A ticket staff marked resolved closes by itself when the customer does not answer.
    auto_close_resolved_hours: int = Field(default=48, ge=1, le=24 * 365)


class RelayConfig(StrictModel):
    """How messages travel between a customer's private chat and the ticket's topic."""

    staff_name_prefix: bool = True
    staff_language: str = "en"
    album_grace_seconds: float = Field(default=1.5, ge=0, le=30)
    title_delay_seconds: float = Field(default=30, ge=0, le=3600)
    summary_messages: int = Field(default=15, ge=1, le=100)
    staff_check_seconds: int = Field(default=60, ge=0, le=3600)

    @field_validator("staff_language")
    @classmethod
    def _known_language(cls, value: str) -> str:
        if value not in LANGUAGES:
            raise ValueError(f"expected one of {', '.join(LANGUAGES)}")
        return value


class FloodConfig(StrictModel):
    """More than ``max_messages`` from one customer within ``per_seconds`` are kept but not
    relayed; the customer is told once."""

    max_messages: int = Field(default=10, ge=1, le=1000)
    per_seconds: int = Field(default=60, ge=1, le=86_400)


class CannedReply(StrictModel):
    code: str = Field(pattern=CODE)
    title: str = Field(min_length=1, max_length=40)
    zh: str = Field(min_length=1, max_length=4000)
    en: str = Field(min_length=1, max_length=4000)

    def text(self, language: str) -> str:
        return self.zh if language == "zh" else self.en


AssignMode = Literal["manual", "round_robin", "least_open"]
StaffRole = Literal["agent", "lead"]
MAIN_GROUP = "main"
"""The staff group a bare ``/setup`` sets up, where tickets go that no routing rule sends
elsewhere (and those routed to a group not set up yet)."""
ROUTING_SOURCES = ("complaint", "question", "survey", "follow_up", "care")
"""What opened a ticket: the complaint flow, a knowledge-base hand-off, a survey's low score
(recovery), a message after a closed ticket (follow-up), a care message's "problem" button."""
ROUTING_KEYS = ("category", "language", "tier", "source")


def _as_list(value: object) -> object:
    """A routing or skill key written as one value or as a list of them."""
    return [value] if isinstance(value, str) else value


class DeskGroupConfig(StrictModel):
    """``[groups.<name>]``: how a staff group hands out its tickets."""

    assign: AssignMode = "manual"
    """manual: staff /claim; round_robin: in turn among the staff on duty (/duty on);
    least_open: to the one on duty with the fewest open tickets."""
    reassign_missed_first_reply: bool = True
    """A ticket whose first-reply deadline passes unanswered goes (once) to another on duty."""
    escalate_to_leads: bool = True
    """The missed deadline's escalation mentions the group's leads."""
    hours: GroupHoursConfig | None = None
    """``[groups.<name>.hours]``: the group's business hours (None: the desk's ``[hours]``)."""


class RoutingRule(StrictModel):
    """``[[routing]]``: tickets matching every key given go to ``group`` (first match wins);
    a key takes one value or a list; a rule without keys matches every ticket."""

    group: str = Field(pattern=CODE)
    category: list[str] = []
    language: list[str] = []
    tier: list[str] = []
    source: list[str] = []

    _lists = field_validator("category", "language", "tier", "source", mode="before")(
        classmethod(lambda cls, value: _as_list(value))
    )

    @field_validator("language")
    @classmethod
    def _known_languages(cls, value: list[str]) -> list[str]:
        return known(value, LANGUAGES, "language")

    @field_validator("source")
    @classmethod
    def _known_sources(cls, value: list[str]) -> list[str]:
        return known(value, ROUTING_SOURCES, "source")

    def matches(self, *, category: str, language: str, tier: str, source: str) -> bool:
        """Whether a ticket with these facts goes to this rule's group."""
        facts = {"category": category, "language": language, "tier": tier, "source": source}
        return all(
            not getattr(self, key) or facts[key] in getattr(self, key) for key in ROUTING_KEYS
        )


class StaffRule(StrictModel):
    """``[[staff]]``: a staff member's role and skills (by Telegram user id). An agent may not
    assign a ticket to someone else nor take over another's; a lead may. ``groups``: the
    groups whose lead they are (none: all); ``categories`` / ``languages``: the tickets
    auto-assignment prefers to give them (none: any); ``hours``: when ``/duty on`` counts
    ("mon-fri 09:00-18:00" or a weekday table; none: always)."""

    user_id: int
    role: StaffRole = "agent"
    groups: list[str] = []
    categories: list[str] = []
    languages: list[str] = []
    hours: DutyHoursConfig | None = None
    """Duty hours in the zone of the group they are on duty in (None: whenever ``/duty on``)."""

    _lists = field_validator("groups", "categories", "languages", mode="before")(
        classmethod(lambda cls, value: _as_list(value))
    )

    @field_validator("languages")
    @classmethod
    def _known_languages(cls, value: list[str]) -> list[str]:
        return known(value, LANGUAGES, "language")

    def can_take(self, category: str, language: str) -> bool:
        """Whether the ticket fits this member's skills (no skills listed: every ticket)."""
        return (not self.categories or category in self.categories) and (
            not self.languages or language in self.languages
        )


class DeskConfig(StrictModel):
    """``[desk]``: what holds for every staff group."""

    default_role: StaffRole = "lead"
    """The role of staff not listed in ``[[staff]]`` (lead: everyone may assign, as with one
    group and no roles)."""


class TicketConfig(StrictModel):
    """``tickets.toml``: categories, priorities, SLAs by tier, business hours, reopening,
    relays, canned replies."""

    numbers: TicketNumberConfig = TicketNumberConfig()
    categories: list[TicketCategory] = [
        TicketCategory(code="delivery", zh="🚚 物流配送", en="🚚 Delivery"),
        TicketCategory(code="quality", zh="📦 商品质量", en="📦 Product quality", priority="high"),
        TicketCategory(code="service", zh="🙋 服务态度", en="🙋 Service attitude"),
        TicketCategory(code="billing", zh="💳 账单支付", en="💳 Billing", priority="high"),
        TicketCategory(code="other", zh="📝 其他", en="📝 Other", priority="low"),
    ]
    priority: TicketPriorityConfig = TicketPriorityConfig()
    sla: SlaConfig = SlaConfig()
    hours: HoursConfig = HoursConfig()
    flow: ComplaintFlowConfig = ComplaintFlowConfig()
    reopen: ReopenConfig = ReopenConfig()
    relay: RelayConfig = RelayConfig()
    flood: FloodConfig = FloodConfig()
    canned: list[CannedReply] = []
    desk: DeskConfig = DeskConfig()
    groups: dict[str, DeskGroupConfig] = {}
    routing: list[RoutingRule] = []
    staff: list[StaffRule] = []

    @field_validator("categories")
    @classmethod
    def _categories(cls, value: list[TicketCategory]) -> list[TicketCategory]:
        codes = [category.code for category in value]
        if not value:
            raise ValueError("expected at least one category")
        if len(set(codes)) != len(codes):
            raise ValueError(f"expected distinct category codes, got {', '.join(codes)}")
        return value

    @field_validator("canned")
    @classmethod
    def _canned(cls, value: list[CannedReply]) -> list[CannedReply]:
        codes = [reply.code for reply in value]
        if len(set(codes)) != len(codes):
            raise ValueError(f"expected distinct canned reply codes, got {', '.join(codes)}")
        return value

    @field_validator("groups")
    @classmethod
    def _group_names(cls, value: dict[str, DeskGroupConfig]) -> dict[str, DeskGroupConfig]:
        for name in value:
            if not re.match(CODE, name):
                raise ValueError(f"group name {name!r}: expected lower-case letters, digits, _")
        return value

    @field_validator("routing")
    @classmethod
    def _routing_categories(
        cls, value: list[RoutingRule], info: ValidationInfo
    ) -> list[RoutingRule]:
        known = [category.code for category in info.data.get("categories", [])]
        for index, rule in enumerate(value):
            for code in rule.category:
                if code not in (*known, "question"):
                    raise ValueError(
                        f"rule {index + 1} (group {rule.group!r}): unknown category {code!r} "
                        f"(known: {', '.join(known)}, question)"
                    )
        return value

    @field_validator("staff")
    @classmethod
    def _staff(cls, value: list[StaffRule], info: ValidationInfo) -> list[StaffRule]:
        known = [category.code for category in info.data.get("categories", [])]
        seen: set[int] = set()
        for index, member in enumerate(value):
            if member.user_id in seen:
                raise ValueError(f"entry {index + 1}: user_id {member.user_id} is listed twice")
            seen.add(member.user_id)
            for code in member.categories:
                if code not in (*known, "question"):
                    raise ValueError(
                        f"entry {index + 1} (user_id {member.user_id}): unknown category "
                        f"{code!r} (known: {', '.join(known)}, question)"
                    )
        return value

    def group_rules(self, name: str) -> DeskGroupConfig:
        """How the group ``name`` hands out tickets (not listed: manual)."""
        return self.groups.get(name) or DeskGroupConfig()

    def hours_of(self, group: str) -> HoursConfig:
        """The business hours of the group ``group``'s tickets: its ``[groups.<name>.hours]``,
        else the desk's ``[hours]``."""
        return self.group_rules(group).hours or self.hours

    def route(self, *, category: str, language: str, tier: str, source: str) -> str:
        """The group the first matching ``[[routing]]`` rule names (none: ``main``)."""
        facts = {"category": category, "language": language, "tier": tier, "source": source}
        rule = next((rule for rule in self.routing if rule.matches(**facts)), None)
        return rule.group if rule is not None else MAIN_GROUP

    def member(self, user_id: int) -> StaffRule | None:
        return next((member for member in self.staff if member.user_id == user_id), None)

    def role_of(self, user_id: int) -> StaffRole:
        """``[[staff]]``'s role for the member, else ``desk.default_role``."""
        member = self.member(user_id)
        return member.role if member is not None else self.desk.default_role

    def leads_of(self, group: str) -> list[int]:
        """The user ids of the group's leads (``[[staff]]`` with role lead)."""
        return [
            member.user_id
            for member in self.staff
            if member.role == "lead" and (not member.groups or group in member.groups)
        ]

    def category(self, code: str) -> TicketCategory | None:
        return next((category for category in self.categories if category.code == code), None)

    def canned_reply(self, code: str) -> CannedReply | None:
        return next((reply for reply in self.canned if reply.code == code), None)

    def priority_of(self, tier: str, category: str) -> int:
        """0 (low) to 3 (urgent): the higher of the tier's and the category's."""
        by_tier = PRIORITIES.index(self.priority.tiers.get(tier, self.priority.default))
        found = self.category(category)
        by_category = PRIORITIES.index(found.priority) if found else 1
        return max(by_tier, by_category)


class Config(StrictModel):
    """All rule files, loaded together at start-up."""

    general: GeneralConfig
    outbox: OutboxConfig = OutboxConfig()
    tiers: TierConfig = TierConfig()
    tickets: TicketConfig = TicketConfig()
    care: CareConfig = CareConfig()
    surveys: SurveyConfig = SurveyConfig()
    loyalty: LoyaltyConfig = DISABLED
    recommend: RecommendConfig = RecommendConfig()
    campaigns: dict[str, Campaign] = {}


def load_config(config_dir: Path) -> Config:
    """Load and validate every rule file in ``config_dir`` (the first error stops it)."""
    general = load_config_file(config_dir / "customers.toml", GeneralConfig)
    outbox = load_config_file(config_dir / "outbox.toml", OutboxConfig)
    tiers = load_config_file(config_dir / "tiers.toml", TierConfig)
    tickets = load_config_file(config_dir / "tickets.toml", TicketConfig)
    care = load_config_file(config_dir / "care.toml", CareConfig)
    tier_names = [tier.name for tier in tiers.tiers]
    loyalty = load_loyalty(config_dir / "loyalty.toml", tier_names)
    _check_routing_tiers(config_dir / "tickets.toml", tickets, tier_names)
    recommend = load_config_file(config_dir / "recommend.toml", RecommendConfig)
    _check_recommendations_used(config_dir / "care.toml", care, recommend)
    return Config(
        general=general,
        outbox=outbox,
        tiers=tiers,
        tickets=tickets,
        care=care,
        loyalty=loyalty,
        surveys=load_surveys(
            config_dir / "surveys",
            tiers=tier_names,
            categories=[category.code for category in tickets.categories],
        ),
        recommend=recommend,
        campaigns=load_campaigns(
            config_dir / "campaigns", tiers=tier_names, recommendations=recommend.enabled
        ),
    )


def load_loyalty(path: Path, tiers: list[str]) -> LoyaltyConfig:
    """``loyalty.toml`` (no file: no points programme); its tier sections must be tiers of
    ``tiers.toml``."""
    if not path.exists():
        return DISABLED
    loyalty = load_config_file(path, LoyaltyConfig)
    for name in loyalty.tiers:
        if name not in tiers:
            raise ConfigError(
                f"{path}: tiers.{name}: not a tier of tiers.toml (known: {', '.join(tiers)})"
            )
    return loyalty


def _check_routing_tiers(path: Path, tickets: TicketConfig, tiers: list[str]) -> None:
    """Routing rules name tiers of ``tiers.toml``; an unknown one stops start-up."""
    for index, rule in enumerate(tickets.routing):
        for tier in rule.tier:
            if tier not in tiers:
                raise ConfigError(
                    f"{path}: routing.{index}.tier: unknown tier {tier!r} "
                    f"(tiers.toml has {', '.join(tiers)})"
                )


def _check_recommendations_used(path: Path, care: CareConfig, recommend: RecommendConfig) -> None:
    """A care template with ``{recommendations}`` needs the recommendations job on."""
    if recommend.enabled:
        return
    for key in care.templates_using("recommendations"):
        raise ConfigError(
            f"{path}: {key}: uses {{recommendations}} but recommend.toml has enabled = false"
        )
