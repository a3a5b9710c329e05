"""Shop data for tier tests: customers and orders placed a number of days before "today"."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.kernel.config import TierConfig
from storage import orders as order_queries
from storage.models import Customer, RfmScore

SHOP_ZONE = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # 17:00 in Shanghai: "today" is 2026-11-23
TODAY = (date(2026, 11, 23) - date(1970, 1, 1)).days

# An order: (days before today, yuan, status).
Order = tuple[int, int, str]


def tier_rules(**overrides: Any) -> TierConfig:
    """The rules the tests work their numbers out with (independent of the shipped example)."""
    data: dict[str, Any] = {
        "orders": {"currency": "CNY", "timezone": "Asia/Shanghai", "rates": {"USD": 7}},
        "scores": {"method": "quintile", "window_days": 365},
        "stages": {
            "new_days": 30,
            "churned_days": 365,
            "at_risk_factor": 1.5,
            "own_gap_min_orders": 3,
            "at_risk_min_days": 7,
        },
        "churn": {"period_days": 90, "drop_percent": 50, "min_orders": 2, "min_spend": 300},
        "tiers": [
            {
                "name": "vip",
                "at_risk_days": 60,
                "when": [["m_score >= 5", "f_score >= 4"], ["monetary >= 10000"]],
            },
            {
                "name": "important",
                "at_risk_days": 90,
                "when": [["m_score >= 4"], ["f_score >= 4", "r_score >= 3"]],
            },
            {"name": "normal", "at_risk_days": 180},
        ],
    }
    for key, value in overrides.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return TierConfig.model_validate(data)


def placed(days_ago: int, today: date = date(2026, 11, 23)) -> datetime:
    """Noon shop time, ``days_ago`` days before ``today``."""
    local = datetime.combine(today - timedelta(days=days_ago), time(12), SHOP_ZONE)
    return local.astimezone(UTC)


async def add_customer(session: AsyncSession, external_id: str, **values: Any) -> Customer:
    customer = Customer(
        external_id=external_id,
        name=values.pop("name", f"Customer {external_id}"),
        timezone="Asia/Shanghai",
        country="CN",
        language="zh",
        created_at=NOW,
        updated_at=NOW,
        **values,
    )
    session.add(customer)
    await session.flush()
    return customer


def order_rows(
    histories: dict[str, list[Order]], prefix: str = "O", today: int = TODAY
) -> list[order_queries.OrderRow]:
    rows = []
    for external_id, history in histories.items():
        for index, (days_ago, yuan, status) in enumerate(history):
            rows.append(
                order_queries.OrderRow(
                    line=len(rows) + 2,
                    external_id=f"{prefix}-{external_id}-{index}",
                    customer_external_id=external_id,
                    amount_cents=yuan * 100,
                    currency="CNY",
                    value_cents=yuan * 100,
                    status=status,
                    placed_at=placed(days_ago),
                    placed_day=today - days_ago,
                )
            )
    return rows


async def customers_by_name(session: AsyncSession) -> dict[str, Customer]:
    result = await session.execute(select(Customer))
    return {str(customer.external_id): customer for customer in result.scalars()}


async def rfm_by_name(session: AsyncSession) -> dict[str, RfmScore]:
    result = await session.execute(
        select(Customer.external_id, RfmScore).join(RfmScore, RfmScore.customer_id == Customer.id)
    )
    return {str(name): rfm for name, rfm in result.all()}
