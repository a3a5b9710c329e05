"""Loyalty points rules, free of Telegram (README: Loyalty points): what ``/points`` shows,
``/redeem`` turning points into a single-use coupon, and staff adjustments. Plain values and a
session in, replies out; the caller owns the transaction (one per update or command).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.kernel.config import Config, GeneralConfig, TierConfig
from bot.kernel.loyalty_config import LoyaltyConfig
from bot.kernel.replies import Alert, Button, Reply, TextRef
from handlers.loyalty.ledger import Ledger, replay
from handlers.onboarding.registration import Person, ensure_customer
from storage import customers as customer_queries
from storage import points as point_queries
from storage.care import coupon_code
from storage.models import Customer
from storage.points import ADJUST, EARN, REDEEM, REVERSE, Movement

CB_REDEEM = "pts:redeem:"
MAX_CODE_DRAWS = 5


@dataclass(frozen=True)
class Programme:
    """What the points rules read from the rule files: ``loyalty.toml``, the tiers' display
    names, the shop's currency and time zone."""

    rules: LoyaltyConfig
    tiers: TierConfig
    currency: str
    zone: ZoneInfo

    @classmethod
    def from_config(cls, config: Config) -> Programme:
        orders = config.tiers.orders
        return cls(config.loyalty, config.tiers, orders.currency, ZoneInfo(orders.timezone))

    def money(self, cents: int) -> str:
        """``12.50 CNY`` (``5 CNY`` for whole amounts)."""
        return f"{Decimal(cents) / 100:.2f}".removesuffix(".00") + f" {self.currency}"

    def last_day(self, expires_at: datetime) -> date:
        """The last shop-local day points expiring at ``expires_at`` still count."""
        return (expires_at.astimezone(self.zone) - timedelta(seconds=1)).date()

    def tier_label(self, tier: str, language: str) -> str:
        found = next((rule for rule in self.tiers.tiers if rule.name == tier), None)
        return found.label(language) if found else tier

    def rate(self) -> TextRef:
        redeem = self.rules.redeem
        value = self.money(redeem.value_cents(redeem.points))
        return TextRef("points_rate", {"points": redeem.points, "value": value})


async def ledger_of(session: AsyncSession, customer_id: int) -> tuple[list[Movement], Ledger]:
    """A customer's movements (oldest first) and the ledger they add up to."""
    movements = await point_queries.movements_of(session, customer_id)
    return movements, replay(movements)


async def balance_of(session: AsyncSession, customer_id: int, now: datetime) -> int:
    """The points a customer may spend now."""
    _movements, ledger = await ledger_of(session, customer_id)
    return ledger.balance(now)


def _signed(points: int) -> str:
    return f"+{points}" if points > 0 else str(points)


def movement_ref(programme: Programme, movement: Movement) -> TextRef:
    """One movement as the customer reads it: day, points, what for."""
    what: TextRef
    if movement.kind in (EARN, REVERSE):
        what = TextRef(f"points_kind_{movement.kind}", {"order": movement.order or "—"})
    elif movement.kind == REDEEM:
        what = TextRef("points_kind_redeem", {"coupon": movement.coupon or "—"})
    else:
        what = TextRef(f"points_kind_{movement.kind}")
    return TextRef(
        "points_movement",
        {
            "date": movement.created_at.astimezone(programme.zone).date().isoformat(),
            "points": _signed(movement.points),
            "what": what,
        },
    )


def _expiring_ref(programme: Programme, ledger: Ledger, now: datetime) -> TextRef:
    soon = ledger.expiring(now)
    if not soon:
        return TextRef("points_nothing_expiring")
    moment, points = next(iter(soon.items()))
    day = programme.last_day(moment).isoformat()
    return TextRef("points_expiring", {"points": points, "date": day})


async def show_points(
    session: AsyncSession, programme: Programme, customer: Customer, now: datetime
) -> Reply:
    """``/points``: the balance, what expires soonest, the latest movements and the benefits
    of the customer's tier."""
    language = customer.language
    if not programme.rules.enabled:
        return Reply("points_disabled", language)
    if customer.external_id is None:
        return Reply("points_not_linked", language)
    movements, ledger = await ledger_of(session, customer.id)
    shown = [m for m in movements if m.points != 0][-programme.rules.recent_movements :]
    lines = [movement_ref(programme, m) for m in reversed(shown)]
    return Reply(
        "points_card",
        language,
        {
            "balance": ledger.balance(now),
            "tier": programme.tier_label(customer.tier, language),
            "expiring": _expiring_ref(programme, ledger, now),
            "movements": lines or TextRef("points_no_movements"),
            "benefits": programme.rules.tier(customer.tier).benefits.get(language),
            "minimum": programme.rules.redeem.minimum_points,
            "rate": programme.rate(),
        },
    )


def _choices(programme: Programme, balance: int) -> list[int]:
    """The amounts offered as buttons: the minimum, twice it, and all that can be redeemed."""
    redeem = programme.rules.redeem
    most = balance // redeem.points * redeem.points
    wanted = [redeem.minimum_points, 2 * redeem.minimum_points, most]
    return sorted({amount for amount in wanted if redeem.minimum_points <= amount <= most})


async def ask_redeem(
    session: AsyncSession,
    programme: Programme,
    customer: Customer,
    argument: str | None,
    now: datetime,
    new_code: Callable[[], str] = coupon_code,
) -> Reply:
    """``/redeem``: without an amount, the choices as buttons; ``/redeem 500`` redeems 500
    points at once. Anything else is answered with what was wrong, and changes nothing."""
    language = customer.language
    refusal = _cannot_redeem(programme, customer)
    if refusal is not None:
        return refusal
    if argument is None:
        balance = await balance_of(session, customer.id, now)
        choices = _choices(programme, balance)
        if not choices:
            return _too_few(programme, language, balance)
        buttons = [
            [
                Button(
                    "points_redeem_button",
                    f"{CB_REDEEM}{amount}",
                    {"points": amount, "value": _value(programme, amount)},
                )
            ]
            for amount in choices
        ]
        return Reply(
            "points_redeem_choose",
            language,
            {"balance": balance, "rate": programme.rate()},
            buttons=buttons,
        )
    text = argument.strip()
    if not text.isdigit() or len(text) > 9:
        return _invalid(programme, language, text)
    return await redeem(session, programme, customer, int(text), now, new_code)


def _cannot_redeem(programme: Programme, customer: Customer) -> Reply | None:
    if not programme.rules.enabled:
        return Reply("points_disabled", customer.language)
    if customer.external_id is None:
        return Reply("points_not_linked", customer.language)
    return None


def _value(programme: Programme, points: int) -> str:
    return programme.money(programme.rules.redeem.value_cents(points))


def _too_few(programme: Programme, language: str, balance: int) -> Reply:
    minimum = programme.rules.redeem.minimum_points
    return Reply("points_redeem_too_few", language, {"balance": balance, "minimum": minimum})


def _invalid(programme: Programme, language: str, text: str) -> Reply:
    redeem = programme.rules.redeem
    return Reply(
        "points_redeem_invalid",
        language,
        {"value": text[:20], "minimum": redeem.minimum_points, "step": redeem.points},
    )


async def _issue_coupon(
    session: AsyncSession,
    programme: Programme,
    customer: Customer,
    points: int,
    now: datetime,
    new_code: Callable[[], str],
) -> tuple[str, date]:
    """Store the coupon ``points`` points buy and the redeem movement; (code, last day)."""
    rules = programme.rules.redeem
    today = now.astimezone(programme.zone).date()
    last_day = today + timedelta(days=rules.valid_days)
    valid_until = datetime.combine(last_day + timedelta(days=1), time(0, 0), programme.zone)
    coupon = {
        "customer_id": customer.id,
        "tier": customer.tier,
        "discount_percent": 0,
        "value_cents": rules.value_cents(points),
        "min_spend_cents": int((rules.min_spend * 100).to_integral_value()),
        "issued_day": today.isoformat(),
        "issued_at": now,
        "valid_until": valid_until.astimezone(UTC) - timedelta(seconds=1),
    }
    for _ in range(MAX_CODE_DRAWS):
        code = new_code()
        coupon_id = await point_queries.add_coupon(session, {**coupon, "code": code})
        if coupon_id is not None:
            break
    else:  # pragma: no cover - five taken codes in a row out of 2**40
        raise RuntimeError("no free coupon code")
    await point_queries.insert_movements(
        session,
        [
            {
                "key": f"redeem:coupon:{coupon_id}",
                "customer_id": customer.id,
                "kind": REDEEM,
                "points": -points,
                "coupon_id": coupon_id,
                "tier": customer.tier,
                "created_at": now,
            }
        ],
    )
    return code, last_day


async def redeem(
    session: AsyncSession,
    programme: Programme,
    customer: Customer,
    points: int,
    now: datetime,
    new_code: Callable[[], str] = coupon_code,
    *,
    replace_message: bool = False,
) -> Reply:
    """Turn ``points`` points into a single-use coupon worth the rule file's rate: the coupon
    and the ledger's redeem movement in the caller's transaction. Too few points, an amount
    under the minimum or not a multiple of the step: a reply saying so, nothing changed."""
    language = customer.language
    refusal = _cannot_redeem(programme, customer)
    if refusal is not None:
        return refusal
    rules = programme.rules.redeem
    if points < rules.minimum_points or points % rules.points:
        return _invalid(programme, language, str(points))
    balance = await balance_of(session, customer.id, now)
    if points > balance:
        return _too_few(programme, language, balance)
    value_cents = rules.value_cents(points)
    code, last_day = await _issue_coupon(session, programme, customer, points, now, new_code)
    return Reply(
        "points_redeemed",
        language,
        {
            "points": points,
            "value": programme.money(value_cents),
            "code": code,
            "valid_until": last_day.isoformat(),
            "balance": balance - points,
        },
        replace_message=replace_message,
    )


class AdjustError(ValueError):
    """An adjustment refused, with the reason (nothing was written)."""


async def adjust(
    session: AsyncSession,
    programme: Programme,
    customer: Customer,
    amount: int,
    reason: str,
    now: datetime,
) -> int:
    """Add (or take, when negative) points by hand, with the reason in the ledger; returns the
    new balance. Raises AdjustError for a zero amount, an empty reason, or taking more than
    the customer has."""
    reason = reason.strip()
    if amount == 0:
        raise AdjustError("AMOUNT: expected a whole number other than 0, e.g. 200 or -50")
    if not reason:
        raise AdjustError("--reason: expected a text saying why")
    if customer.erased_at is not None:
        raise AdjustError(f"customer {customer.id} erased their data")
    # Locked, as /redeem locks it: two changes of one balance wait for each other.
    await session.execute(select(Customer.id).where(Customer.id == customer.id).with_for_update())
    balance = await balance_of(session, customer.id, now)
    if balance + amount < 0:
        raise AdjustError(f"customer {customer.id} has {balance} points; cannot take {-amount}")
    row = {
        "key": f"adjust:{customer.id}:{uuid.uuid4().hex}",
        "customer_id": customer.id,
        "kind": ADJUST,
        "points": amount,
        "tier": customer.tier,
        "reason": reason[:500],
        "created_at": now,
    }
    if amount > 0:
        row["expires_at"] = programme.rules.expires_at(now, programme.zone)
    await point_queries.insert_movements(session, [row])
    return balance + amount


# --- the commands, from the person who sent them ---


async def points_command(
    session: AsyncSession,
    programme: Programme,
    person: Person,
    general: GeneralConfig,
    now: datetime,
) -> Reply:
    """``/points`` from ``person`` (registered on first contact)."""
    customer, _ = await ensure_customer(session, person, general, now)
    return await show_points(session, programme, customer, now)


async def redeem_command(
    session: AsyncSession,
    programme: Programme,
    person: Person,
    general: GeneralConfig,
    argument: str | None,
    now: datetime,
) -> Reply:
    """``/redeem`` or ``/redeem AMOUNT`` from ``person``."""
    customer, _ = await ensure_customer(session, person, general, now)
    return await ask_redeem(session, programme, customer, argument, now)


async def press_redeem(
    session: AsyncSession, programme: Programme, user_id: int, data: str, now: datetime
) -> Reply | Alert:
    """A ``/redeem`` choice button: redeem that amount (checked again: the balance may have
    changed since the buttons were shown); the message with the buttons becomes the answer."""
    customer = await customer_queries.get_for_update(session, user_id)
    amount = data.removeprefix(CB_REDEEM)
    if customer is None or not amount.isdigit():
        return Alert("button_expired", customer.language if customer else "en")
    return await redeem(session, programme, customer, int(amount), now, replace_message=True)
