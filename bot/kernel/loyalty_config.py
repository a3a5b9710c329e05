"""``loyalty.toml``: points from delivered orders, tier multipliers and benefits, expiry, the
welcome bonus, reversal on refund or cancellation, and redeeming points into a coupon (README:
Loyalty points).

Loaded with the other rule files (``bot.kernel.config.load_config``); this module stays free of
``bot.kernel.config`` so that one can import it. A shop without a ``loyalty.toml`` has no
points programme (``enabled = false``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Reversible = Literal["refunded", "cancelled"]
_ROUNDING = {"floor": ROUND_FLOOR, "round": ROUND_HALF_UP, "ceil": ROUND_CEILING}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BothLanguages(_Strict):
    """A text in both languages."""

    en: str = Field(min_length=1, max_length=1000)
    zh: str = Field(min_length=1, max_length=1000)

    def get(self, language: str) -> str:
        return self.zh if language == "zh" else self.en


class TierPoints(_Strict):
    """What a tier earns (``multiplier`` times the base rate) and the benefits it is told."""

    multiplier: Decimal = Field(default=Decimal(1), ge=0, le=100)
    benefits: BothLanguages


class Expiry(_Strict):
    """When points expire. ``end_of_year``: at the end of the year ``years`` after the one they
    were earned in (``years = 1``: points of 2026 expire after 31 December 2027); ``days``:
    at the end of the day ``days`` after they were earned. Shop time (tiers.toml [orders]
    timezone). ``reminder_days_before``: a reminder that many days before (0: none)."""

    mode: Literal["end_of_year", "days"] = "end_of_year"
    years: int = Field(default=1, ge=0, le=10)
    days: int = Field(default=365, ge=1, le=3650)
    reminder_days_before: int = Field(default=30, ge=0, le=365)

    def last_day(self, earned: date) -> date:
        """The last day points earned on ``earned`` (a shop-local day) still count."""
        if self.mode == "days":
            return earned + timedelta(days=self.days)
        return date(earned.year + self.years, 12, 31)

    def longest(self) -> timedelta:
        """An upper bound on how long points live (older earnings have all expired)."""
        if self.mode == "days":
            return timedelta(days=self.days + 2)
        return timedelta(days=366 * (self.years + 1) + 2)


class Redeem(_Strict):
    """``points`` points are worth ``value`` off (shop currency); at least ``minimum_points``
    at a time, in multiples of ``points``. The coupon is valid ``valid_days`` days, from an
    order of at least ``min_spend``."""

    points: int = Field(default=100, ge=1, le=1_000_000)
    value: Decimal = Field(default=Decimal(1), gt=0, le=1_000_000, decimal_places=2)
    minimum_points: int = Field(default=100, ge=1, le=100_000_000)
    valid_days: int = Field(default=90, ge=1, le=3650)
    min_spend: Decimal = Field(default=Decimal(0), ge=0, decimal_places=2)

    @model_validator(mode="after")
    def _minimum_is_a_multiple(self) -> Redeem:
        if self.minimum_points % self.points:
            raise ValueError(
                f"minimum_points ({self.minimum_points}) must be a multiple of points "
                f"({self.points})"
            )
        return self

    def value_cents(self, points: int) -> int:
        """What ``points`` points are worth, in hundredths of the shop's currency."""
        return int((self.value * 100 * points / self.points).to_integral_value(ROUND_FLOOR))


class LoyaltyConfig(_Strict):
    """The whole ``loyalty.toml``."""

    enabled: bool = True
    points_per_unit: Decimal = Field(default=Decimal(1), ge=0, le=10_000)
    """Points per unit of the shop's currency of a delivered order's value."""
    rounding: Literal["floor", "round", "ceil"] = "floor"
    welcome_bonus: int = Field(default=0, ge=0, le=1_000_000)
    """Points for a customer whose Telegram chat is linked to the shop's customer record."""
    reverse_on: list[Reversible] = ["refunded", "cancelled"]
    """Statuses that take an order's points back."""
    recent_movements: int = Field(default=5, ge=1, le=20)
    """How many movements ``/points`` lists."""
    fallback_tier: str = "normal"
    expiry: Expiry = Expiry()
    redeem: Redeem = Redeem()
    tiers: dict[str, TierPoints] = {}

    @field_validator("reverse_on")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("expected each status once")
        return value

    @model_validator(mode="after")
    def _fallback_exists(self) -> LoyaltyConfig:
        if self.enabled and self.fallback_tier not in self.tiers:
            raise ValueError(f"fallback_tier {self.fallback_tier!r} has no [tiers] section")
        return self

    def tier(self, name: str) -> TierPoints:
        """The rules of tier ``name`` (the fallback tier's for one without a section)."""
        return self.tiers.get(name) or self.tiers[self.fallback_tier]

    def points_for(self, value_cents: int, tier: str) -> int:
        """The points an order worth ``value_cents`` earns a customer of ``tier``."""
        exact = Decimal(value_cents) / 100 * self.points_per_unit * self.tier(tier).multiplier
        return max(int(exact.to_integral_value(_ROUNDING[self.rounding])), 0)

    def expires_at(self, earned_at: datetime, zone: ZoneInfo) -> datetime:
        """The moment points earned at ``earned_at`` stop counting: the start of the day after
        their last day, in ``zone`` (the shop's), as UTC."""
        last = self.expiry.last_day(earned_at.astimezone(zone).date())
        following = datetime.combine(last + timedelta(days=1), time(0, 0), tzinfo=zone)
        return following.astimezone(UTC)


DISABLED = LoyaltyConfig(enabled=False)
"""No ``loyalty.toml``: no points."""
