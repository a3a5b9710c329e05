"""``care.toml``: greetings, follow-up visits and retention offers per tier (README: Care plans).

Loaded with the other rule files (``bot.kernel.config.load_config``); this module stays free of
``bot.kernel.config`` so that one can import it. Templates are written inline in both languages and
checked here for placeholders the occasion does not provide.
"""

from __future__ import annotations

import string
from datetime import time
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

OCCASIONS = ("birthday", "holiday", "followup", "after_ticket", "retention")
RECOMMENDATIONS = "recommendations"
"""The placeholder that lists the customer's recommended products (``recommend.toml``)."""
PLACEHOLDERS: dict[str, frozenset[str]] = {
    "birthday": frozenset({"name", RECOMMENDATIONS}),
    "holiday": frozenset({"name", "holiday"}),
    "followup": frozenset({"name", "order", RECOMMENDATIONS}),
    "after_ticket": frozenset({"name", "ticket"}),
    "retention": frozenset(
        {"name", "coupon", "discount", "min_spend", "valid_until", RECOMMENDATIONS}
    ),
}
CARE_LANGUAGES = ("en", "zh")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def template_fields(template: str) -> set[str]:
    """The ``{placeholder}`` names of ``template``; raises ValueError on a malformed one."""
    fields: set[str] = set()
    for _literal, field, spec, conversion in string.Formatter().parse(template):
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise ValueError(f"placeholder {{{field}}} must be a plain name like {{name}}")
        fields.add(field)
    return fields


class Template(_Strict):
    """One message in both languages."""

    en: str = Field(min_length=1)
    zh: str = Field(min_length=1)

    def get(self, language: str) -> str:
        return self.zh if language == "zh" else self.en


def list_on_its_own_line(template: str, placeholder: str) -> bool:
    """Whether ``{placeholder}`` (a list of several lines) appears at most once, alone on its
    line; a template without it passes."""
    token = f"{{{placeholder}}}"
    lines = [line for line in template.split("\n") if token in line]
    return not lines or (len(lines) == 1 and lines[0].strip() == token)


class Templates(_Strict):
    birthday: Template
    holiday: Template
    followup: Template
    after_ticket: Template
    retention: Template

    @model_validator(mode="after")
    def _known_placeholders(self) -> Templates:
        for occasion in OCCASIONS:
            template: Template = getattr(self, occasion)
            for language in CARE_LANGUAGES:
                unknown = template_fields(template.get(language)) - PLACEHOLDERS[occasion]
                if unknown:
                    allowed = ", ".join(f"{{{name}}}" for name in sorted(PLACEHOLDERS[occasion]))
                    raise ValueError(
                        f"{occasion}.{language}: unknown placeholder "
                        f"{', '.join(f'{{{name}}}' for name in sorted(unknown))} "
                        f"(allowed: {allowed})"
                    )
                if not list_on_its_own_line(template.get(language), RECOMMENDATIONS):
                    raise ValueError(
                        f"{occasion}.{language}: {{{RECOMMENDATIONS}}} must stand once on a line "
                        "of its own (it is a list)"
                    )
        return self

    def using(self, placeholder: str) -> list[str]:
        """The occasions whose template uses ``placeholder`` in either language."""
        return [
            occasion
            for occasion in OCCASIONS
            if any(
                placeholder in template_fields(getattr(self, occasion).get(language))
                for language in CARE_LANGUAGES
            )
        ]


class FollowupCadence(_Strict):
    """Visits after a delivery: ``first_days`` after it, then every ``every_days`` (0: none
    more) up to ``max_visits`` in all; ``after_ticket_days`` after a ticket is resolved (0: no
    visit)."""

    first_days: int = Field(ge=1, le=365)
    every_days: int = Field(default=0, ge=0, le=365)
    max_visits: int = Field(default=1, ge=1, le=24)
    after_ticket_days: int = Field(default=0, ge=0, le=365)

    def visit_offsets(self) -> list[int]:
        """Days after delivery on which a visit falls, in order."""
        if self.every_days == 0:
            return [self.first_days]
        return [self.first_days + k * self.every_days for k in range(self.max_visits)]


class Offer(_Strict):
    """A retention coupon: percent off, days it stays valid, minimum spend (shop currency)."""

    discount_percent: int = Field(ge=1, le=100)
    valid_days: int = Field(ge=1, le=365)
    min_spend: Decimal = Field(default=Decimal(0), ge=0)


class TierCare(_Strict):
    followup: FollowupCadence
    offer: Offer
    templates: Templates


class SendWindow(_Strict):
    """Today's messages go out from ``start`` (customer-local); greetings not sent by ``end``
    are dropped, and nothing is planned for today after ``end``."""

    start: time = time(10, 0)
    end: time = time(20, 0)

    @model_validator(mode="after")
    def _ordered(self) -> SendWindow:
        if not self.start < self.end:
            raise ValueError("start must be before end (the window cannot wrap midnight)")
        return self


class CountryHolidays(_Strict):
    """Which of a country's public holidays (English names as the ``holidays`` package gives
    them) are greeted; each on its first day of the year only."""

    names: list[str] = Field(min_length=1)


class HolidayConfig(_Strict):
    countries: dict[str, CountryHolidays] = {}

    @field_validator("countries")
    @classmethod
    def _known_countries(cls, value: dict[str, CountryHolidays]) -> dict[str, CountryHolidays]:
        import holidays

        supported = holidays.list_supported_countries()
        for code in value:
            if code not in supported:
                raise ValueError(f"{code}: not a country the holidays package knows")
        return value


class RetentionConfig(_Strict):
    period_days: int = Field(default=90, ge=1, le=3650)
    """At most one offer per customer in this many days."""


class CareConfig(_Strict):
    """The whole ``care.toml``."""

    enabled: bool = True
    send: SendWindow = SendWindow()
    fallback_tier: str = "normal"
    """Customers whose tier has no section here are treated as this tier."""
    anonymous_name: Template = Template(en="there", zh="亲")
    """What ``{name}`` becomes for a customer without a name."""
    holidays: HolidayConfig = HolidayConfig()
    retention: RetentionConfig = RetentionConfig()
    tiers: dict[str, TierCare] = {}

    @model_validator(mode="after")
    def _fallback_exists(self) -> CareConfig:
        if self.tiers and self.fallback_tier not in self.tiers:
            raise ValueError(f"fallback_tier {self.fallback_tier!r} has no [tiers] section")
        return self

    def tier(self, name: str) -> TierCare:
        """The rules for customers of tier ``name`` (the fallback tier for unknown names)."""
        return self.tiers.get(name) or self.tiers[self.fallback_tier]

    def templates_using(self, placeholder: str) -> list[str]:
        """Keys (``tiers.vip.templates.followup``) of the templates using ``placeholder``."""
        return [
            f"tiers.{name}.templates.{occasion}"
            for name, tier in self.tiers.items()
            for occasion in tier.templates.using(placeholder)
        ]
