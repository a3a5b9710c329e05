"""``campaigns/*.toml``: one message to a segment of customers per file (README: Campaigns).

Loaded with the other rule files (``bot.kernel.config.load_config``) and by every ``carebot
campaign`` command, so a mistake stops start-up with the file and the key. The campaign's name is
the file's name without ``.toml`` (``spring_tea.toml`` is ``carebot campaign send spring_tea``).
This module stays free of ``bot.kernel.config`` so that one can import it.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import date, time
from decimal import Decimal
from pathlib import Path

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bot.kernel.care_config import (
    CARE_LANGUAGES,
    RECOMMENDATIONS,
    Template,
    list_on_its_own_line,
    template_fields,
)
from bot.kernel.files import ConfigError, known, load_config_file

CAMPAIGN_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,47}$")
STAGES = ("prospect", "new", "active", "at_risk", "churned")
"""The lifecycle stages of ``tiers.toml``'s job (``storage.tiers.spec.STAGES``)."""
COUPON_PLACEHOLDERS = frozenset({"coupon", "discount", "min_spend", "valid_until"})
PLACEHOLDERS = frozenset({"name", RECOMMENDATIONS}) | COUPON_PLACEHOLDERS
MAX_BUTTONS = 3


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Segment(_Strict):
    """Who gets the campaign: every condition given holds (a list: any of its values).
    Consent to care messages is always required; customers who blocked the bot, erased their
    data or are not on Telegram are never in a segment."""

    tiers: list[str] = []
    stages: list[str] = []
    languages: list[str] = []
    last_order_after: date | None = None
    """Their latest order was placed on or after this (shop-local) day."""
    last_order_before: date | None = None
    """Their latest order was placed before this (shop-local) day (they have one)."""
    bought_categories: list[str] = []
    """They bought a product of one of these categories (order lines of counted orders)."""
    points_at_least: int | None = Field(default=None, ge=1)

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, value: list[str]) -> list[str]:
        return known(value, STAGES, "stage")

    @field_validator("languages")
    @classmethod
    def _known_languages(cls, value: list[str]) -> list[str]:
        return known(value, CARE_LANGUAGES, "language")

    @model_validator(mode="after")
    def _ordered(self) -> Segment:
        after, before = self.last_order_after, self.last_order_before
        if after is not None and before is not None and not after < before:
            raise ValueError("last_order_after must be before last_order_before")
        return self


class Button(_Strict):
    """A link under the message (Telegram opens it: presses cannot be counted)."""

    en: str = Field(min_length=1, max_length=40)
    zh: str = Field(min_length=1, max_length=40)
    url: str = Field(pattern=r"^https?://\S+$", max_length=1000)

    def label(self, language: str) -> str:
        return self.zh if language == "zh" else self.en


class CampaignCoupon(_Strict):
    """A single-use coupon per recipient (``coupons.kind`` campaign)."""

    discount_percent: int = Field(ge=1, le=100)
    min_spend: Decimal = Field(default=Decimal(0), ge=0)
    valid_days: int = Field(default=14, ge=1, le=3650)
    """Valid until the end of the customer's local day this many days after it was queued."""


class Window(_Strict):
    """From ``start`` to ``end`` (both included), messages fall due between ``from`` and
    ``until``, the customer's local time; what has not gone out by ``until`` on ``end`` is
    dropped. Quiet hours and the daily cap still apply (``outbox.toml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    start: date
    end: date
    from_: time = Field(default=time(10, 0), alias="from")
    until: time = time(20, 0)

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.end < self.start:
            raise ValueError("end must not be before start")
        if not self.from_ < self.until:
            raise ValueError("from must be before until (the hours cannot wrap midnight)")
        return self


class Campaign(_Strict):
    """One ``campaigns/<name>.toml``."""

    name: str = Field(default="", exclude=True)
    """The file's name (set by the loader; the file may not set it)."""
    title: Template
    """What staff read (the CLI, the dashboard), in both languages."""
    segment: Segment = Segment()
    coupon: CampaignCoupon | None = None
    message: Template
    buttons: list[Button] = Field(default=[], max_length=MAX_BUTTONS)
    window: Window

    @field_validator("message")
    @classmethod
    def _placeholders(cls, message: Template, info: ValidationInfo) -> Template:
        with_coupon = info.data.get("coupon") is not None
        allowed = PLACEHOLDERS if with_coupon else PLACEHOLDERS - COUPON_PLACEHOLDERS
        for language in CARE_LANGUAGES:
            text = message.get(language)
            unknown = template_fields(text) - allowed
            if unknown:
                names = ", ".join(f"{{{name}}}" for name in sorted(unknown))
                known = ", ".join(f"{{{name}}}" for name in sorted(allowed))
                hint = "" if with_coupon else "; the coupon's need a [coupon] section"
                raise ValueError(
                    f"{language}: unknown placeholder {names} (allowed: {known}{hint})"
                )
            if not list_on_its_own_line(text, RECOMMENDATIONS):
                raise ValueError(f"{language}: {{{RECOMMENDATIONS}}} must be alone on its line")
        return message

    def uses(self, placeholder: str) -> bool:
        """Whether the message uses ``{placeholder}`` in either language."""
        return any(
            placeholder in template_fields(self.message.get(language))
            for language in CARE_LANGUAGES
        )


def load_campaigns(
    directory: Path, *, tiers: Collection[str], recommendations: bool
) -> dict[str, Campaign]:
    """Every ``*.toml`` of ``directory`` as a campaign, by name; no directory, no campaigns.
    ``tiers``: the tiers of ``tiers.toml``; ``recommendations``: whether ``recommend.toml`` is
    on (``{recommendations}`` needs it)."""
    if not directory.is_dir():
        return {}
    campaigns: dict[str, Campaign] = {}
    for path in sorted(directory.glob("*.toml")):
        if not CAMPAIGN_NAME.match(path.stem):
            raise ConfigError(
                f"{path}: file name: expected lower-case letters, digits, - and _ "
                "(the campaign's name), e.g. spring_tea.toml"
            )
        campaign = load_config_file(path, Campaign)
        if campaign.name:
            raise ConfigError(f"{path}: name: unknown key (the name is the file's name)")
        campaign = campaign.model_copy(update={"name": path.stem})
        for index, tier in enumerate(campaign.segment.tiers):
            if tier not in tiers:
                raise ConfigError(
                    f"{path}: segment.tiers.{index}: unknown tier {tier!r} "
                    f"(tiers.toml has {', '.join(tiers)})"
                )
        if campaign.uses(RECOMMENDATIONS) and not recommendations:
            raise ConfigError(
                f"{path}: message: uses {{{RECOMMENDATIONS}}} but recommend.toml has "
                "enabled = false"
            )
        campaigns[campaign.name] = campaign
    return campaigns
