"""``recommend.toml``: what is bought together and what each customer is recommended (README:
Recommendations). Loaded with the other rule files (``bot.kernel.config.load_config``)."""

from __future__ import annotations

from datetime import time

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Together(_Strict):
    """When two products count as bought together, and which pairs are kept."""

    window_days: int = Field(default=90, ge=0, le=365)
    """0: in the same order; N: by the same customer within N days of each other."""
    min_support: int = Field(default=2, ge=1, le=1_000_000)
    """At least this many customers bought both."""
    min_confidence: float = Field(default=0.05, gt=0, le=1)
    """At least this share of a product's buyers also bought the other."""
    neighbours: int = Field(default=20, ge=1, le=200)
    """Each product keeps its best this many partners (by confidence)."""


class RecommendSchedule(_Strict):
    """The nightly run at ``at`` shop time (``tiers.toml`` ``[orders] timezone``), checked
    every ``check_minutes``; once a day, whichever process gets there first."""

    at: time = time(4, 0)
    check_minutes: int = Field(default=15, ge=1, le=1440)


class RecommendConfig(_Strict):
    """The whole ``recommend.toml``."""

    enabled: bool = True
    top_k: int = Field(default=3, ge=1, le=10)
    """Products recommended per customer (and listed by ``{recommendations}``)."""
    fill_with_bestsellers: bool = True
    """Complete a list shorter than ``top_k`` with the products most customers bought."""
    together: Together = Together()
    schedule: RecommendSchedule = RecommendSchedule()
